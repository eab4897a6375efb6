package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestTwoAgentsOnePolicy: two agents whose files differ publish one cluster policy
// (the first one's); the second's disagreement shows in /status.
func TestTwoAgentsOnePolicy(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "shop")
	ctx := context.Background()
	agentFor := func(node, timings string) *Agent {
		t.Helper()
		return testAgent(t, strings.Replace(minimalYAML, "node: db1", "node: "+node, 1)+timings)
	}
	a1 := agentFor("db1", "")
	a2 := agentFor("db2", "timings:\n  failover_block: 1m\n  switchover_max_lag: 3s\n")
	a1.publishPolicy(ctx, store)
	a2.publishPolicy(ctx, store)
	for _, a := range []*Agent{a1, a2} {
		p := a.cfg.Policy()
		// What each agent's reconciler publishes.
		if err := store.PutNode(ctx, 0, cluster.NodeStatus{Node: a.cfg.Node, Policy: &p}); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Policy == nil || snap.Policy.Policy != a1.cfg.Policy() || snap.Policy.SetBy != "db1" {
		t.Fatalf("cluster policy %+v, want db1's file's", snap.Policy)
	}
	v := policyView(snap, a2.cfg.Policy())
	b, err := json.Marshal(View{Node: "db2", Policy: v})
	if err != nil {
		t.Fatal(err)
	}
	want := `"disagreements":[{"node":"db2","diff":["failover_block 1m0s (cluster: 5m0s)","switchover_max_lag 3s (cluster: 1s)"]}]`
	if !strings.Contains(string(b), want) {
		t.Fatalf("/status JSON %s\nlacks %s", b, want)
	}
	if v.Cluster.Policy.FailoverBlock != 5*time.Minute || v.File.FailoverBlock != time.Minute {
		t.Fatalf("policy view %+v", v)
	}
}
