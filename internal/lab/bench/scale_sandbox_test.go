//go:build integration

package bench

import (
	"context"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestScaleSmall runs the scale benchmark small: 4 clusters of hollow agents on a
// 1-member etcd of its own, 2 primaries failed; both are decided and committed, no
// other cluster moves, no lease renewal is late, and etcd's load is measured.
func TestScaleSmall(t *testing.T) {
	sandboxtest.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Scale(ctx, ScaleConfig{Clusters: 4, Nodes: 3, EtcdMembers: 1, Duration: 20 * time.Second, Fail: 2, Seed: 7,
		Bin: lab.Binaries{Baton: sandboxtest.Binary(t), Lab: sandboxtest.LabBinary(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Committed != 2 || res.Decided != 2 || res.FalseFailovers != 0 || res.LateRenewals != 0 {
		t.Fatalf("committed %d decided %d of 2, false failovers %d, late renewals %d", res.Committed, res.Decided, res.FalseFailovers, res.LateRenewals)
	}
	if res.Idle.BytesPerSAgent <= 0 || res.Idle.RequestsPerSAgent <= 0 || len(res.Members) != 1 || res.Members[0].RSSMiB <= 0 {
		t.Fatalf("etcd load not measured: %+v %+v", res.Idle, res.Members)
	}
	if res.DecisionP50MS <= 0 || res.CommitP99MS < res.DecisionP50MS {
		t.Fatalf("decision p50 %d ms, commit p99 %d ms", res.DecisionP50MS, res.CommitP99MS)
	}
}
