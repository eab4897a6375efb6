package failover

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestWaitAddress: the flow's address step (a cluster with a virtual IP) ends when
// the new primary publishes, at the new epoch, that it holds the address: not at
// its announcement as primary (before the address moves), nor on a status of an
// older epoch; and it gives up after addressTimeout, or PromoteTimeout if shorter.
func TestWaitAddress(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "addr")
	ctx := t.Context()
	put := func(n cluster.NodeStatus) {
		if err := store.PutNode(ctx, 0, n); err != nil {
			t.Error(err)
		}
	}
	f := &flow{c: &Coordinator{cfg: CoordinatorConfig{Store: store, PromoteTimeout: 3 * time.Second}}}
	put(cluster.NodeStatus{Node: "db2", Role: cluster.RoleReplica, Epoch: 4, VIP: true})
	steps := []struct {
		after time.Duration
		n     cluster.NodeStatus
	}{
		{100 * time.Millisecond, cluster.NodeStatus{Node: "db2", Role: cluster.RolePrimary, Epoch: 5}},
		{400 * time.Millisecond, cluster.NodeStatus{Node: "db2", Role: cluster.RolePrimary, Epoch: 5, VIP: true}},
	}
	start := time.Now()
	for _, s := range steps {
		time.AfterFunc(s.after, func() { put(s.n) })
	}
	note, err := f.waitAddress(ctx, cluster.Primary{Node: "db2", Epoch: 5})
	if took := time.Since(start); err != nil || took < 400*time.Millisecond || !strings.Contains(note, "db2 holds the virtual IP") {
		t.Fatalf("address: %q, %v after %s: want it once db2 says it holds the address at epoch 5 (400 ms)", note, err, took)
	}
	start = time.Now()
	if _, err := f.waitAddress(ctx, cluster.Primary{Node: "db3", Epoch: 5}); err == nil || time.Since(start) > addressTimeout+time.Second {
		t.Fatalf("address of a node that never says it holds it: %v after %s, want an error after %s", err, time.Since(start), addressTimeout)
	}
	f.c.cfg.PromoteTimeout = 200 * time.Millisecond
	start = time.Now()
	if _, err := f.waitAddress(ctx, cluster.Primary{Node: "db3", Epoch: 5}); err == nil || time.Since(start) > time.Second {
		t.Fatalf("with a shorter PromoteTimeout: %v after %s", err, time.Since(start))
	}

	snap := cluster.Snapshot{}
	snap.Nodes = map[string]cluster.NodeStatus{"db1": {Node: "db1"}, "db2": {Node: "db2"}}
	if hasAddress(snap) {
		t.Fatal("no node holds a virtual IP: the cluster has none")
	}
	snap.Nodes["db1"] = cluster.NodeStatus{Node: "db1", VIP: true}
	if !hasAddress(snap) {
		t.Fatal("db1 holds the virtual IP: the cluster has one")
	}
}
