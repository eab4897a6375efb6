package detector

import (
	"testing"
	"time"
)

// TestHeartbeatWatch: when the newest heartbeat arrived is when a new one was first
// seen, on this host's clock, and unknown (zero) until one was.
func TestHeartbeatWatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var w heartbeatWatch
	steps := []struct {
		ts   string
		at   int
		want int // ms since t0 of the time returned, -1 for the zero time
	}{
		{"a", 0, -1},   // first sight: when it arrived is not known
		{"a", 500, -1}, // still not known
		{"b", 1000, 1000},
		{"b", 1500, 1000},
		{"c", 2000, 2000},
		{"c", 2500, 2000},
		{"c", 4000, 2000}, // the heartbeats stopped
		{"d", 4500, 4500},
	}
	for i, s := range steps {
		got := w.observe(s.ts, at(s.at))
		want := time.Time{}
		if s.want >= 0 {
			want = at(s.want)
		}
		if !got.Equal(want) {
			t.Errorf("step %d (%s at %dms): seen %v, want %v", i, s.ts, s.at, got, want)
		}
	}
}
