package reconcile

import (
	"context"
	"testing"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// snapReader serves the snapshot it holds.
type snapReader struct{ snap cluster.Snapshot }

func (s *snapReader) Snapshot(context.Context) (cluster.Snapshot, error) { return s.snap, nil }
func (s *snapReader) Subscribe(func(string) bool) (<-chan struct{}, func()) {
	return make(chan struct{}), func() {}
}

// TestPrimaryTurnedFailed: another node's status wakes a pass once when the
// primary's verdict turns to a failure, not at every publish of it, nor for a
// replica's, nor when this node is the primary.
func TestPrimaryTurnedFailed(t *testing.T) {
	rd := &snapReader{}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db2", Cluster: rd}}
	view := func(primary string, verdicts map[string]detector.Verdict) {
		nodes := map[string]cluster.NodeStatus{}
		for n, v := range verdicts {
			nodes[n] = cluster.NodeStatus{Node: n, Verdict: v}
		}
		rd.snap = cluster.Snapshot{View: cluster.View{Primary: cluster.Primary{Node: primary, Epoch: 1}, Nodes: nodes}}
	}
	var seen string
	steps := []struct {
		name     string
		primary  string
		verdicts map[string]detector.Verdict
		want     bool
	}{
		{"primary healthy", "db1", map[string]detector.Verdict{"db1": detector.Healthy, "db2": detector.Healthy}, false},
		{"a replica turns degraded", "db1", map[string]detector.Verdict{"db1": detector.Healthy, "db3": detector.Degraded}, false},
		{"the primary turns suspect", "db1", map[string]detector.Verdict{"db1": detector.Suspect}, true},
		{"the primary publishes suspect again", "db1", map[string]detector.Verdict{"db1": detector.Suspect}, false},
		{"the primary turns unreachable", "db1", map[string]detector.Verdict{"db1": detector.Unreachable}, true},
		{"the primary's agent gone", "db1", map[string]detector.Verdict{"db3": detector.Healthy}, false},
		{"back, unreachable: a change from nothing", "db1", map[string]detector.Verdict{"db1": detector.Unreachable}, true},
		{"this node is the primary, failing", "db2", map[string]detector.Verdict{"db2": detector.Unwritable}, false},
		{"the primary's verdict unknown", "db1", map[string]detector.Verdict{"db1": detector.Unknown}, false},
	}
	for _, st := range steps {
		view(st.primary, st.verdicts)
		if got := r.primaryNews(context.Background(), &seen); got != st.want {
			t.Errorf("%s: woke %v, want %v", st.name, got, st.want)
		}
	}
}

// TestPrimaryAnnounces: another node's status wakes a pass once when the primary of
// record announces itself as primary at the epoch of record with its GTID set (a
// replica follows it then, not at its tick), not before it does, not for an
// announcement at an older epoch, nor again at every publish of it.
func TestPrimaryAnnounces(t *testing.T) {
	rd := &snapReader{}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db3", Cluster: rd}}
	view := func(epoch uint64, st cluster.NodeStatus) {
		st.Node, st.Verdict = "db2", detector.Healthy
		rd.snap = cluster.Snapshot{View: cluster.View{Primary: cluster.Primary{Node: "db2", Epoch: epoch},
			Nodes: map[string]cluster.NodeStatus{"db2": st}}}
	}
	var seen string
	steps := []struct {
		name  string
		epoch uint64
		st    cluster.NodeStatus
		want  bool
	}{
		{"committed, db2 still a replica", 2, cluster.NodeStatus{Role: cluster.RoleReplica, Epoch: 1, GTID: "0-1-5"}, false},
		{"db2 primary at the old epoch", 2, cluster.NodeStatus{Role: cluster.RolePrimary, Epoch: 1, GTID: "0-1-5"}, false},
		{"db2 primary at epoch 2, no GTID set", 2, cluster.NodeStatus{Role: cluster.RolePrimary, Epoch: 2}, false},
		{"db2 announces epoch 2", 2, cluster.NodeStatus{Role: cluster.RolePrimary, Epoch: 2, GTID: "0-1-5"}, true},
		{"db2 publishes again", 2, cluster.NodeStatus{Role: cluster.RolePrimary, Epoch: 2, GTID: "0-2-9"}, false},
		{"a new epoch recorded, db2 not yet announced at it", 3, cluster.NodeStatus{Role: cluster.RolePrimary, Epoch: 2, GTID: "0-2-9"}, false},
		{"db2 announces epoch 3", 3, cluster.NodeStatus{Role: cluster.RolePrimary, Epoch: 3, GTID: "0-2-9"}, true},
	}
	for _, st := range steps {
		view(st.epoch, st.st)
		if got := r.primaryNews(context.Background(), &seen); got != st.want {
			t.Errorf("%s: woke %v, want %v", st.name, got, st.want)
		}
	}
}
