package chaos

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is what a campaign found: `baton-lab bench chaos --json` prints it.
type Report struct {
	Seed        uint64 `json:"seed"`
	FromRound   int    `json:"from_round"`
	Rounds      int    `json:"rounds"` // rounds run
	Nodes       int    `json:"nodes"`
	EtcdMembers int    `json:"etcd_members"`
	// FailoverBlockMS is the anti-flap window the campaign set as the cluster's
	// policy, so that every round may fail over.
	FailoverBlockMS int64          `json:"failover_block_ms"`
	Kinds           map[string]int `json:"fault_kinds"` // faults drawn, by kind
	Checks          map[string]int `json:"checks"`      // assertions made, by invariant
	// WritesBack is, by the round's first fault, the time from its injection to the
	// end of the longest pause of the writer's acknowledged writes that followed.
	WritesBack  map[string]Percentiles `json:"writes_back_ms"`
	Quarantines []Quarantine           `json:"quarantines"`
	Rebuilds    int                    `json:"rebuilds"` // clusters brought up again to repair a node
	// ReadyRepairs counts the nodes the campaign repaired by the runbook before a
	// round because they were not healthy replicas after settling: operator steps.
	ReadyRepairs int `json:"ready_repairs"`
	// Pauses counts the agents armed at each named step, and how many reached it.
	Pauses     map[string]PauseCount `json:"pauses"`
	Violations []RoundViolation      `json:"violations"`
	Errors     []string              `json:"errors,omitempty"` // the campaign's own failures (an injection refused)
	RoundsRun  []RoundResult         `json:"rounds_run"`
	LogDir     string                `json:"log_dir,omitempty"` // where a failed round's logs are kept
	Seconds    float64               `json:"seconds"`

	writesBack map[string][]int64
}

// Percentiles summarise a set of durations, in milliseconds.
type Percentiles struct {
	N   int   `json:"n"`
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

// PauseCount is how many agents were armed at a step, and how many stopped there.
type PauseCount struct {
	Armed   int `json:"armed"`
	Reached int `json:"reached"`
}

// Pause counts one agent armed at point.
func (r *Report) Pause(point string, reached bool) {
	c := r.Pauses[point]
	c.Armed++
	if reached {
		c.Reached++
	}
	r.Pauses[point] = c
}

// Quarantine is a node the cluster quarantined during a round, and how the campaign
// repaired it.
type Quarantine struct {
	Round  int    `json:"round"`
	Node   string `json:"node"`
	Reason string `json:"reason"`
	Faults string `json:"faults"` // the round's schedule
	Repair string `json:"repair"`
	// ByItself: the node was a healthy replica again within SelfRepairBound with no
	// step of the campaign's, HealthyMS after the round's end; else the campaign
	// took the runbook's steps (an operator's).
	ByItself  bool  `json:"by_itself"`
	HealthyMS int64 `json:"healthy_ms,omitempty"`
}

// RoundViolation is a violation with what it takes to replay it.
type RoundViolation struct {
	Seed     uint64 `json:"seed"`
	Round    int    `json:"round"`
	Schedule string `json:"schedule"`
	Violation
}

// RoundResult is one round in short.
type RoundResult struct {
	Round       int    `json:"round"`
	Schedule    string `json:"schedule"`
	Resolved    string `json:"resolved"` // the faults with the nodes they hit
	PrimaryFrom string `json:"primary_from"`
	PrimaryTo   string `json:"primary_to"`
	WritesBack  int64  `json:"writes_back_ms"`
	Violations  int    `json:"violations"`
}

// NewReport returns an empty report.
func NewReport(seed uint64, from, nodes, members int, block time.Duration) *Report {
	return &Report{Seed: seed, FromRound: from, Nodes: nodes, EtcdMembers: members, FailoverBlockMS: block.Milliseconds(),
		Kinds: map[string]int{}, Checks: map[string]int{}, WritesBack: map[string]Percentiles{}, Pauses: map[string]PauseCount{},
		Quarantines: []Quarantine{}, Violations: []RoundViolation{}, RoundsRun: []RoundResult{},
		writesBack: map[string][]int64{}}
}

// Add records one round.
func (r *Report) Add(s Schedule, res RoundResult, vs []Violation, checks Checks, back time.Duration) {
	r.Rounds++
	for _, f := range s.Faults {
		r.Kinds[f.Name()]++
	}
	for i := Durability; i < invariantEnd; i++ {
		r.Checks[i.String()] += checks[i]
	}
	for _, v := range vs {
		r.Violations = append(r.Violations, RoundViolation{Seed: s.Seed, Round: s.Round, Schedule: s.String(), Violation: v})
	}
	k := s.Faults[0].Kind.String()
	r.writesBack[k] = append(r.writesBack[k], back.Milliseconds())
	r.WritesBack[k] = percentiles(r.writesBack[k])
	res.Violations = len(vs)
	res.WritesBack = back.Milliseconds()
	r.RoundsRun = append(r.RoundsRun, res)
}

// percentiles by nearest rank.
func percentiles(ms []int64) Percentiles {
	if len(ms) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	rank := func(p float64) int64 {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Percentiles{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// pauseMin is the shortest pause between two acknowledged writes that counts as
// writes stopping: the writer writes every 20 ms.
const pauseMin = 200 * time.Millisecond

// WritesBack is the time from the fault (from) to the end of the longest pause in
// the writer's acknowledgements (acks, in order) between from and to: when writes
// came back. A fault that paused nothing (no pause of pauseMin or more) gives the
// time to the first ack after it; no ack at all after from gives to - from.
func WritesBack(acks []time.Time, from, to time.Time) time.Duration {
	last := from
	var gap, end, first time.Duration
	found := false
	for _, a := range acks {
		if a.Before(from) || a.After(to) {
			continue
		}
		if !found {
			first = a.Sub(from)
		}
		if g := a.Sub(last); g >= pauseMin && g > gap {
			gap, end = g, a.Sub(from)
		}
		last, found = a, true
	}
	switch {
	case !found:
		return to.Sub(from)
	case gap == 0:
		return first
	}
	return end
}

// Print writes the report for a person.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "seed %d, rounds %d-%d (%d), %d nodes, %d etcd members, %.0f s\n", r.Seed, r.FromRound, r.FromRound+r.Rounds-1, r.Rounds,
		r.Nodes, r.EtcdMembers, r.Seconds)
	fmt.Fprintf(w, "faults drawn: %s\n", counts(r.Kinds))
	fmt.Fprintf(w, "checks made: %s\n", counts(r.Checks))
	if len(r.Pauses) > 0 {
		var ps []string
		for p, c := range r.Pauses {
			ps = append(ps, fmt.Sprintf("%s %d/%d", p, c.Reached, c.Armed))
		}
		sort.Strings(ps)
		fmt.Fprintf(w, "pauses reached/armed: %s\n", strings.Join(ps, ", "))
	}
	var ks []string
	for k := range r.WritesBack {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		p := r.WritesBack[k]
		fmt.Fprintf(w, "writes back after %s: p50 %d ms, p99 %d ms (n=%d)\n", k, p.P50, p.P99, p.N)
	}
	for _, q := range r.Quarantines {
		fmt.Fprintf(w, "quarantined: round %d %s: %s (repaired: %s)\n", q.Round, q.Node, q.Reason, q.Repair)
	}
	if len(r.Quarantines) > 0 || r.ReadyRepairs > 0 {
		sr := r.SelfRepairs()
		fmt.Fprintf(w, "quarantines at a round's end: %d, repaired by themselves %d (healthy replica after p50 %d ms, p99 %d ms), operator steps %d (%.1f per 100 rounds)\n",
			len(r.Quarantines), sr.N, sr.P50, sr.P99, r.OperatorSteps(), 100*float64(r.OperatorSteps())/float64(max(r.Rounds, 1)))
	}
	if r.Rebuilds > 0 {
		fmt.Fprintf(w, "clusters rebuilt: %d\n", r.Rebuilds)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "campaign error: %s\n", e)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(w, "VIOLATION %s: %s [%s]\n", v.Name, v.Detail, v.Schedule)
	}
	fmt.Fprintf(w, "%d violations\n", len(r.Violations))
}

func counts(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// SelfRepairs are the times, from a round's end, until each node quarantined then
// was a healthy replica again by itself.
func (r *Report) SelfRepairs() Percentiles {
	var ms []int64
	for _, q := range r.Quarantines {
		if q.ByItself {
			ms = append(ms, q.HealthyMS)
		}
	}
	return percentiles(ms)
}

// OperatorSteps counts what the campaign repaired by the runbook: the quarantines
// that did not repair themselves within SelfRepairBound, and the nodes not healthy
// before a round.
func (r *Report) OperatorSteps() int {
	n := r.ReadyRepairs
	for _, q := range r.Quarantines {
		if !q.ByItself {
			n++
		}
	}
	return n
}
