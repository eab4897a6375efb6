package detector

import (
	"testing"
	"time"
)

// TestHeartbeatWatch: the time since the heartbeats stopped arriving is counted on
// this host's clock from when a new one was first seen, and unknown until one was.
func TestHeartbeatWatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var w heartbeatWatch
	steps := []struct {
		ts   string
		at   int
		want time.Duration
	}{
		{"a", 0, -1},   // first sight: when it arrived is not known
		{"a", 500, -1}, // still not known
		{"b", 1000, 0}, // arrived within the last round
		{"b", 1500, 500 * time.Millisecond},
		{"c", 2000, 0},
		{"c", 2500, 500 * time.Millisecond},
		{"c", 4000, 2 * time.Second}, // the heartbeats stopped
		{"d", 4500, 0},
	}
	for i, s := range steps {
		if got := w.observe(s.ts, at(s.at)); got != s.want {
			t.Errorf("step %d (%s at %dms): idle %s, want %s", i, s.ts, s.at, got, s.want)
		}
	}
}
