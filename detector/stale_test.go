package detector

import (
	"testing"
	"time"
)

// TestStaleWait: a replica's next round falls when its newest heartbeat would reach
// the stale age, never sooner than staleMinWait, and only for a replica whose lag is
// known and not stale yet, and whose newest heartbeat is the one the round before
// saw (the heartbeats seem to have stopped).
func TestStaleWait(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	seen := time.Date(2026, 12, 7, 19, 0, 0, 0, time.UTC)
	replica := func(lag time.Duration) Round {
		return Round{Role: Replica, Replication: &Replication{HeartbeatLag: lag, HeartbeatSeen: seen}}
	}
	cases := []struct {
		name     string
		r        Round
		stale    time.Duration
		lastSeen time.Time
		want     time.Duration
		ok       bool
	}{
		{"no new heartbeat: at the crossing", replica(ms(600)), ms(1000), seen, ms(400), true},
		{"near the crossing", replica(ms(950)), ms(1000), seen, ms(50), true},
		{"at the crossing but for a microsecond: not without pause", replica(ms(1000) - time.Microsecond), ms(1000), seen, staleMinWait, true},
		{"a new heartbeat since the round before: the usual rhythm", replica(ms(600)), ms(1000), seen.Add(-500 * time.Millisecond), 0, false},
		{"a late replica applying heartbeats just under stale", replica(ms(950)), ms(1000), seen.Add(-500 * time.Millisecond), 0, false},
		{"none seen arriving yet", Round{Role: Replica, Replication: &Replication{HeartbeatLag: ms(600)}}, ms(1000), time.Time{}, 0, false},
		{"already stale: the usual rhythm", replica(ms(1000)), ms(1000), seen, 0, false},
		{"long stale", replica(ms(5000)), ms(1000), seen, 0, false},
		{"lag unknown", replica(-1), ms(1000), seen, 0, false},
		{"replication not read", Round{Role: Replica}, ms(1000), seen, 0, false},
		{"a primary's round", Round{Role: Primary, Replication: &Replication{HeartbeatLag: ms(600), HeartbeatSeen: seen}}, ms(1000), seen, 0, false},
		{"off", replica(ms(600)), 0, seen, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := staleWait(c.r, c.stale, c.lastSeen)
			if got != c.want || ok != c.ok {
				t.Errorf("staleWait = %s %v, want %s %v", got, ok, c.want, c.ok)
			}
		})
	}
}

// TestTurnedStale: the first round at or past the stale age says so, once.
func TestTurnedStale(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	cases := []struct {
		last, now, stale time.Duration
		want             bool
	}{
		{ms(900), ms(1000), ms(1000), true},
		{ms(400), ms(1300), ms(1000), true},
		{-1, ms(1300), ms(1000), true}, // unknown before: reached now
		{ms(1000), ms(1500), ms(1000), false},
		{ms(900), ms(950), ms(1000), false},
		{ms(1500), ms(100), ms(1000), false}, // a heartbeat again
		{ms(1500), -1, ms(1000), false},
		{ms(900), ms(1000), 0, false}, // off
	}
	for _, c := range cases {
		if got := turnedStale(c.last, c.now, c.stale); got != c.want {
			t.Errorf("turnedStale(%s, %s, %s) = %v, want %v", c.last, c.now, c.stale, got, c.want)
		}
	}
}

// TestHeartbeatLagOfReport: only a replica's report has a heartbeat lag.
func TestHeartbeatLagOfReport(t *testing.T) {
	rep := &Replication{HeartbeatLag: time.Second}
	if got := heartbeatLag(Report{Role: Replica, Replication: rep}); got != time.Second {
		t.Errorf("replica: %s", got)
	}
	if got := heartbeatLag(Report{Role: Primary, Replication: rep}); got != -1 {
		t.Errorf("primary: %s, want -1", got)
	}
	if got := heartbeatLag(Report{Role: Replica}); got != -1 {
		t.Errorf("no replication read: %s, want -1", got)
	}
}
