package chaos

import (
	"strings"
	"testing"
	"time"
)

func TestWritesBack(t *testing.T) {
	every := func(from, to, step int) []time.Time {
		var out []time.Time
		for ms := from; ms <= to; ms += step {
			out = append(out, at(ms))
		}
		return out
	}
	cases := []struct {
		name string
		acks []time.Time
		want time.Duration
	}{
		{"no pause: the first ack after the fault", every(-90, 5000, 20), 10 * time.Millisecond},
		{"a failover: the end of the pause", append(every(-100, 40, 20), every(1800, 5000, 20)...), 1800 * time.Millisecond},
		{"two pauses: the longest", append(append(every(0, 500, 20), every(900, 1000, 20)...), every(3000, 5000, 20)...), 3000 * time.Millisecond},
		{"writes stopped from the fault", every(0, 2000, 20)[:0], 10 * time.Second},
		{"a pause just after the fault, none later", every(700, 5000, 20), 700 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := WritesBack(tc.acks, at(0), at(10000)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var ms []int64
	for i := int64(100); i >= 1; i-- {
		ms = append(ms, i)
	}
	if p := percentiles(ms); p != (Percentiles{N: 100, P50: 50, P99: 99, Max: 100}) {
		t.Errorf("percentiles(1..100) = %+v", p)
	}
	if p := percentiles([]int64{7}); p != (Percentiles{N: 1, P50: 7, P99: 7, Max: 7}) {
		t.Errorf("percentiles(7) = %+v", p)
	}
	if p := percentiles(nil); p != (Percentiles{}) {
		t.Errorf("percentiles() = %+v", p)
	}
}

func TestReportAdd(t *testing.T) {
	r := NewReport(5, 1, 3, 3, time.Second)
	s := Schedule{Seed: 5, Round: 1, Faults: []Fault{{Kind: Kill, Target: TargetPrimary, For: 2 * time.Second},
		{Kind: SwitchoverRequest, Target: TargetCluster, At: time.Second}}}
	r.Add(s, RoundResult{Round: 1}, []Violation{violation(Durability, "lost")}, Checks{Durability: 3, Liveness: 2}, 1500*time.Millisecond)
	r.Add(Schedule{Seed: 5, Round: 2, Faults: []Fault{{Kind: Kill}}}, RoundResult{Round: 2}, nil, Checks{Durability: 3}, 500*time.Millisecond)
	if r.Rounds != 2 || r.Kinds["kill"] != 2 || r.Kinds["switchover-request"] != 1 || r.Checks["durability"] != 6 || r.Checks["liveness"] != 2 {
		t.Errorf("report = %+v", r)
	}
	if len(r.Violations) != 1 || r.Violations[0].Round != 1 || r.Violations[0].Seed != 5 || r.Violations[0].Name != "durability" {
		t.Errorf("violations = %+v", r.Violations)
	}
	if p := r.WritesBack["kill"]; p.N != 2 || p.P50 != 500 || p.P99 != 1500 {
		t.Errorf("writes back = %+v", p)
	}
	if r.RoundsRun[0].Violations != 1 || r.RoundsRun[1].WritesBack != 500 {
		t.Errorf("rounds = %+v", r.RoundsRun)
	}
}

// TestReportSelfRepairs: quarantines that repaired themselves are timed apart from
// the campaign's runbook steps, which count as an operator's.
func TestReportSelfRepairs(t *testing.T) {
	r := NewReport(1, 1, 3, 1, time.Second)
	r.Rounds = 20
	r.Quarantines = []Quarantine{
		{Round: 1, Node: "db1", ByItself: true, HealthyMS: 3000, Repair: "by itself (rejoin) in 3s"},
		{Round: 4, Node: "db2", ByItself: true, HealthyMS: 1000, Repair: "by itself (rebuild) in 1s"},
		{Round: 9, Node: "db3", Repair: "operator step (still quarantined after 1m30s): runbook (...)"},
	}
	if got := r.SelfRepairs(); got.N != 2 || got.P50 != 1000 || got.P99 != 3000 {
		t.Errorf("self repairs %+v, want n=2 p50 1000 p99 3000", got)
	}
	if got := r.OperatorSteps(); got != 1 {
		t.Errorf("operator steps %d, want 1", got)
	}
	var b strings.Builder
	r.Print(&b)
	if want := "quarantines at a round's end: 3, repaired by themselves 2 (healthy replica after p50 1000 ms, p99 3000 ms), operator steps 1 (5.0 per 100 rounds)"; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
}
