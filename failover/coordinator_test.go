package failover

import (
	"errors"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// TestRetry: an automatic failover that did not complete is not tried again at once:
// the waits double from RetryMin up to RetryMax, a new primary of record starts
// afresh, and a completed failover forgets the tries. The clock is the test's.
func TestRetry(t *testing.T) {
	db1 := cluster.Primary{Node: "db1", Epoch: 3}
	refused := errors.New("no safe candidate: db3 unreachable")
	type step struct {
		at      time.Duration // since t0
		primary cluster.Primary
		fail    bool          // a try at this time did not complete
		done    bool          // a try at this time completed
		hold    time.Duration // wanted hold before acting at this time
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{
			name: "first try is not held",
			steps: []step{
				{at: 0, primary: db1, hold: 0},
			},
		},
		{
			name: "waits double, bounded",
			steps: []step{
				{at: 0, primary: db1, fail: true},
				{at: 500 * time.Millisecond, primary: db1, hold: 1500 * time.Millisecond},
				{at: 2 * time.Second, primary: db1, hold: 0, fail: true},
				{at: 2 * time.Second, primary: db1, hold: 4 * time.Second},
				{at: 6 * time.Second, primary: db1, hold: 0, fail: true},
				{at: 6 * time.Second, primary: db1, hold: 8 * time.Second},
				{at: 14 * time.Second, primary: db1, fail: true},
				{at: 14 * time.Second, primary: db1, hold: 10 * time.Second}, // 16s capped at RetryMax
				{at: 24 * time.Second, primary: db1, fail: true},
				{at: 24 * time.Second, primary: db1, hold: 10 * time.Second},
			},
		},
		{
			name: "a new primary of record starts afresh",
			steps: []step{
				{at: 0, primary: db1, fail: true},
				{at: 2 * time.Second, primary: db1, fail: true},
				{at: 3 * time.Second, primary: cluster.Primary{Node: "db2", Epoch: 4}, hold: 0, fail: true},
				{at: 3 * time.Second, primary: cluster.Primary{Node: "db2", Epoch: 4}, hold: 2 * time.Second},
			},
		},
		{
			name: "a completed failover forgets the tries",
			steps: []step{
				{at: 0, primary: db1, fail: true},
				{at: 2 * time.Second, primary: db1, done: true},
				{at: 2 * time.Second, primary: db1, hold: 0, fail: true},
				{at: 2 * time.Second, primary: db1, hold: 2 * time.Second},
			},
		},
		{
			// An injected clock without a monotonic reading jumps back: the hold grows
			// by the jump, never shrinks. (time.Now's monotonic reading keeps a real
			// coordinator's waits immune to steps of the wall clock.)
			name: "clock stepped back",
			steps: []step{
				{at: time.Minute, primary: db1, fail: true},
				{at: 30 * time.Second, primary: db1, hold: 32 * time.Second},
			},
		},
	}
	t0 := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := retry{min: 2 * time.Second, max: 10 * time.Second}
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				if got := r.hold(now, s.primary); got != s.hold {
					t.Fatalf("step %d: hold = %s, want %s", i, got, s.hold)
				}
				switch {
				case s.fail:
					r.failed(now, s.primary, refused)
				case s.done:
					r.done()
				}
			}
		})
	}
}

func TestCoordinatorConfigRetry(t *testing.T) {
	cfg := CoordinatorConfig{Node: "db1", Store: &cluster.Store{}, Cluster: &cluster.Cache{}, Servers: &Servers{}, CatchupTimeout: time.Second, Policy: policy(),
		RetryMin: time.Minute, RetryMax: time.Second}
	if err := cfg.validate(); err == nil {
		t.Fatal("retry_max below retry_min accepted")
	}
	cfg.RetryMin, cfg.RetryMax = 0, 0
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.RetryMin != DefaultRetryMin || cfg.RetryMax != DefaultRetryMax {
		t.Fatalf("defaults = %s, %s; want %s, %s", cfg.RetryMin, cfg.RetryMax, DefaultRetryMin, DefaultRetryMax)
	}
}

// TestVerdictClock: the semi-sync grace runs from the coordinator's first sight of
// the primary's current verdict, on the coordinator's clock, whatever time the
// primary's clock stamped on it; a new verdict, or a new primary, starts it again.
func TestVerdictClock(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	primaryAt := func(node string, verdict detector.Verdict, since time.Time) cluster.View {
		v := cluster.View{Primary: cluster.Primary{Node: node}, Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Verdict: verdict, VerdictSince: since},
			"db2": {Node: "db2", Verdict: detector.Healthy, VerdictSince: since},
		}}
		return v
	}
	// The primary's clock runs an hour ahead of the coordinator's.
	skewed := t0.Add(time.Hour)
	steps := []struct {
		name string
		at   time.Duration // the coordinator's clock, since t0
		v    cluster.View
		want time.Time
	}{
		{"first sight of an unwritable verdict stamped an hour ahead", 0, primaryAt("db1", detector.Unwritable, skewed), t0},
		{"the same verdict later: first sight kept", 4 * time.Second, primaryAt("db1", detector.Unwritable, skewed), t0},
		{"the primary's agent gone: nothing to time", 5 * time.Second, func() cluster.View {
			v := primaryAt("db1", detector.Unwritable, skewed)
			delete(v.Nodes, "db1")
			return v
		}(), time.Time{}},
		{"back with the same verdict: first sight kept", 6 * time.Second, primaryAt("db1", detector.Unwritable, skewed), t0},
		{"a new verdict: seen now", 7 * time.Second, primaryAt("db1", detector.Healthy, skewed.Add(7*time.Second)), t0.Add(7 * time.Second)},
		{"unwritable again, stamped in the coordinator's past", 8 * time.Second, primaryAt("db1", detector.Unwritable, t0.Add(-time.Hour)), t0.Add(8 * time.Second)},
		{"the same verdict, restamped (the agent restarted)", 9 * time.Second, primaryAt("db1", detector.Unwritable, t0.Add(-time.Minute)), t0.Add(9 * time.Second)},
		{"a new primary of record: seen now", 10 * time.Second, primaryAt("db2", detector.Healthy, t0.Add(-time.Minute)), t0.Add(10 * time.Second)},
		{"no primary of record", 11 * time.Second, cluster.View{Nodes: primaryAt("db1", detector.Healthy, t0).Nodes}, time.Time{}},
	}
	var c verdictClock
	for _, s := range steps {
		if got := c.observe(t0.Add(s.at), s.v); !got.Equal(s.want) {
			t.Errorf("%s: first seen %v, want %v", s.name, got, s.want)
		}
	}
}
