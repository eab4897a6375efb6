package failover

import (
	"errors"
	"testing"
	"time"
)

// TestRetry: an automatic failover that did not complete is not tried again at once:
// the waits double from RetryMin up to RetryMax, a new primary of record starts
// afresh, and a completed failover forgets the tries. The clock is the test's.
func TestRetry(t *testing.T) {
	db1 := Primary{Node: "db1", Epoch: 3}
	refused := errors.New("no safe candidate: db3 unreachable")
	type step struct {
		at      time.Duration // since t0
		primary Primary
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
				{at: 3 * time.Second, primary: Primary{Node: "db2", Epoch: 4}, hold: 0, fail: true},
				{at: 3 * time.Second, primary: Primary{Node: "db2", Epoch: 4}, hold: 2 * time.Second},
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
	cfg := CoordinatorConfig{Node: "db1", Store: &Store{}, Servers: &Servers{}, CatchupTimeout: time.Second, Policy: policy(),
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
