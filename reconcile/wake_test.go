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
		if got := r.primaryTurnedFailed(context.Background(), &seen); got != st.want {
			t.Errorf("%s: woke %v, want %v", st.name, got, st.want)
		}
	}
}
