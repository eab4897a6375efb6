package detector

import (
	"strings"
	"testing"
	"time"
)

// clock is an injected clock for the machine: each round is 500 ms after the last.
type clock struct{ t time.Time }

func (c *clock) next() time.Time {
	c.t = c.t.Add(500 * time.Millisecond)
	return c.t
}

func TestMachine(t *testing.T) {
	const (
		H  = Healthy
		W  = Unwritable
		U  = Unreachable
		RO = ReadOnly
		O  = Overloaded
	)
	type step struct {
		in   Verdict
		want Verdict // verdict after the round
		emit bool    // whether the round emits a change
	}
	cases := []struct {
		name                    string
		failAfter, recoverAfter int
		steps                   []step
	}{
		{"first healthy round decides at once", 3, 3, []step{{H, H, true}, {H, H, false}, {H, H, false}}},
		{"first failed round is only suspect", 3, 3, []step{{W, Suspect, true}, {W, Suspect, false}, {W, W, true}}},
		{"three failures make unwritable, emitted once", 3, 3, []step{
			{H, H, true}, {W, Suspect, true}, {W, Suspect, false}, {W, W, true}, {W, W, false}, {W, W, false}}},
		{"the latest failure kind wins at fail_after", 3, 3, []step{
			{H, H, true}, {W, Suspect, true}, {U, Suspect, false}, {U, U, true}}},
		{"a success in between resets the count", 3, 3, []step{
			{H, H, true}, {W, Suspect, true}, {W, Suspect, false}, {H, Suspect, false}, {W, Suspect, false}, {W, Suspect, false}, {W, W, true}}},
		{"flapping stays suspect", 3, 3, []step{
			{H, H, true}, {W, Suspect, true}, {H, Suspect, false}, {W, Suspect, false}, {H, Suspect, false}, {W, Suspect, false}, {H, Suspect, false}}},
		{"suspect recovers after recover_after successes", 3, 3, []step{
			{H, H, true}, {W, Suspect, true}, {H, Suspect, false}, {H, Suspect, false}, {H, H, true}}},
		{"failure recovers after recover_after successes", 3, 2, []step{
			{H, H, true}, {U, Suspect, true}, {U, Suspect, false}, {U, U, true}, {H, U, false}, {H, H, true}, {H, H, false}}},
		{"recovery interrupted by a failure starts over", 2, 2, []step{
			{H, H, true}, {W, Suspect, true}, {W, W, true}, {H, W, false}, {W, W, false}, {H, W, false}, {H, H, true}}},
		{"a failure changes kind after fail_after rounds of the new kind", 2, 2, []step{
			{H, H, true}, {W, Suspect, true}, {W, W, true}, {U, W, false}, {U, U, true}}},
		{"alternating kinds keep the first failure", 2, 2, []step{
			{W, Suspect, true}, {W, W, true}, {U, W, false}, {W, W, false}, {U, W, false}, {W, W, false}}},
		{"read_only set by hand is a verdict of its own", 3, 3, []step{
			{H, H, true}, {RO, Suspect, true}, {RO, Suspect, false}, {RO, RO, true}, {RO, RO, false}}},
		{"overloaded is a verdict of its own", 3, 3, []step{
			{H, H, true}, {O, Suspect, true}, {O, Suspect, false}, {O, O, true}}},
		{"fail_after 1 skips suspect", 1, 1, []step{
			{H, H, true}, {W, W, true}, {H, H, true}, {U, U, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMachine(tc.failAfter, tc.recoverAfter)
			if err != nil {
				t.Fatal(err)
			}
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			for i, s := range tc.steps {
				at := clk.next()
				ch, emitted := m.Observe(Observation{At: at, Verdict: s.in, Reason: "round " + s.in.String()})
				got, _, since := m.Verdict()
				if got != s.want || emitted != s.emit {
					t.Fatalf("step %d (%s): verdict %s emitted %v, want %s emitted %v", i, s.in, got, emitted, s.want, s.emit)
				}
				if emitted {
					if ch.To != got || ch.At != at || !since.Equal(at) || ch.Reason == "" {
						t.Fatalf("step %d: change %+v does not match verdict %s at %s", i, ch, got, at)
					}
				}
			}
		})
	}
}

func TestMachineReasonsAndDurations(t *testing.T) {
	m, err := NewMachine(3, 3)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	obs := func(v Verdict, reason string) (Change, bool) {
		return m.Observe(Observation{At: clk.next(), Verdict: v, Reason: reason})
	}
	obs(Healthy, "probes ok")
	ch, _ := obs(Unwritable, "write probe did not finish in 300ms")
	if ch.From != Healthy || ch.To != Suspect || ch.Lasted != 500*time.Millisecond {
		t.Fatalf("first failure: %+v", ch)
	}
	if !strings.Contains(ch.Reason, "write probe did not finish in 300ms") || !strings.Contains(ch.Reason, "1 of 3") {
		t.Fatalf("suspect reason %q does not say what failed and how far from a verdict", ch.Reason)
	}
	obs(Unwritable, "write probe did not finish in 300ms")
	ch, _ = obs(Unwritable, "write probe did not finish in 300ms")
	if ch.To != Unwritable || !strings.Contains(ch.Reason, "3 failed rounds in a row") {
		t.Fatalf("unwritable: %+v", ch)
	}
	if m.Pending() {
		t.Fatal("a settled unwritable verdict is not pending")
	}
	obs(Healthy, "probes ok: write 2.0ms")
	if !m.Pending() {
		t.Fatal("a success during unwritable should make a change pending")
	}
	obs(Healthy, "probes ok: write 2.0ms")
	ch, ok := obs(Healthy, "probes ok: write 2.0ms")
	if !ok || ch.To != Healthy || ch.Lasted != 1500*time.Millisecond {
		t.Fatalf("recovery: %+v %v", ch, ok)
	}
	if !strings.Contains(ch.Reason, "3 healthy rounds in a row after unwritable for 1.5s") {
		t.Fatalf("recovery reason %q", ch.Reason)
	}
	if m.Pending() {
		t.Fatal("healthy and settled is not pending")
	}
}

func TestNewMachineRefusesBadCounts(t *testing.T) {
	for _, c := range [][2]int{{0, 1}, {1, 0}, {-1, 3}} {
		if _, err := NewMachine(c[0], c[1]); err == nil {
			t.Errorf("NewMachine(%d, %d) accepted", c[0], c[1])
		}
	}
}

// TestMachineCertain: a certain failure (nothing listens on the server's port) is
// taken at once, from any verdict but its own; a healthy round is never certain,
// and recovery still takes recover_after rounds.
func TestMachineCertain(t *testing.T) {
	type step struct {
		in      Verdict
		certain bool
		want    Verdict
		emit    bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"healthy, then certain: unreachable at once", []step{
			{Healthy, false, Healthy, true}, {Unreachable, true, Unreachable, true}, {Unreachable, true, Unreachable, false}}},
		{"unknown, then certain: unreachable at once", []step{{Unreachable, true, Unreachable, true}}},
		{"suspect (a timeout), then certain", []step{
			{Healthy, false, Healthy, true}, {Unreachable, false, Suspect, true}, {Unreachable, true, Unreachable, true}}},
		{"unwritable, then certain: unreachable at once", []step{
			{Healthy, false, Healthy, true}, {Unwritable, true, Unwritable, true}, {Unreachable, true, Unreachable, true}}},
		{"an uncertain failure still waits", []step{
			{Healthy, false, Healthy, true}, {Unreachable, false, Suspect, true}, {Unreachable, false, Suspect, false}, {Unreachable, false, Unreachable, true}}},
		{"recovery after a certain failure takes recover_after rounds", []step{
			{Healthy, false, Healthy, true}, {Unreachable, true, Unreachable, true}, {Healthy, false, Unreachable, false},
			{Healthy, false, Unreachable, false}, {Healthy, false, Healthy, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMachine(3, 3)
			if err != nil {
				t.Fatal(err)
			}
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			for i, s := range tc.steps {
				ch, emitted := m.Observe(Observation{At: clk.next(), Verdict: s.in, Reason: "round " + s.in.String(), Certain: s.certain})
				got, _, _ := m.Verdict()
				if got != s.want || emitted != s.emit {
					t.Fatalf("step %d (%s certain=%v): verdict %s emitted %v, want %s emitted %v", i, s.in, s.certain, got, emitted, s.want, s.emit)
				}
				if emitted && s.certain && !strings.Contains(ch.Reason, "certain: not waiting for 3 failed rounds") {
					t.Fatalf("step %d: reason %q does not say the failure was certain", i, ch.Reason)
				}
			}
		})
	}
}

// TestMachineAfresh: after Afresh (a promotion: the probes changed) the next round
// decides as from Unknown; a healthy verdict is kept as it is.
func TestMachineAfresh(t *testing.T) {
	type step struct {
		afresh  bool // Afresh before this round
		in      Verdict
		certain bool
		want    Verdict
		emit    bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"suspect (the old probes), then a healthy round: healthy at once", []step{
			{false, Healthy, false, Healthy, true}, {false, Unreachable, false, Suspect, true},
			{true, Healthy, false, Healthy, true}}},
		{"without it a suspect recovers after recover_after rounds", []step{
			{false, Healthy, false, Healthy, true}, {false, Unreachable, false, Suspect, true},
			{false, Healthy, false, Suspect, false}, {false, Healthy, false, Suspect, false}, {false, Healthy, false, Healthy, true}}},
		{"suspect two rounds, then a failed round: counted from one again", []step{
			{false, Healthy, false, Healthy, true}, {false, Unwritable, false, Suspect, true}, {false, Unwritable, false, Suspect, false},
			{true, Unwritable, false, Suspect, false}, {false, Unwritable, false, Suspect, false}, {false, Unwritable, false, Unwritable, true}}},
		{"a failure, then a failed round: suspect, as from unknown", []step{
			{false, Unreachable, true, Unreachable, true},
			{true, Unwritable, false, Suspect, true}, {false, Unwritable, false, Suspect, false}, {false, Unwritable, false, Unwritable, true}}},
		{"a failure, then a healthy round: healthy at once", []step{
			{false, Unreachable, true, Unreachable, true}, {true, Healthy, false, Healthy, true}}},
		{"a certain failure still decides at once", []step{
			{false, Healthy, false, Healthy, true}, {false, Unwritable, false, Suspect, true},
			{true, Unreachable, true, Unreachable, true}}},
		{"healthy is kept: a failed round is only suspect", []step{
			{false, Healthy, false, Healthy, true}, {true, Unwritable, false, Suspect, true}, {false, Healthy, false, Suspect, false}}},
		{"afresh lasts one round only", []step{
			{false, Healthy, false, Healthy, true}, {false, Unwritable, false, Suspect, true},
			{true, Unwritable, false, Suspect, false}, {false, Healthy, false, Suspect, false}, {false, Healthy, false, Suspect, false}, {false, Healthy, false, Healthy, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMachine(3, 3)
			if err != nil {
				t.Fatal(err)
			}
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			for i, s := range tc.steps {
				if s.afresh {
					m.Afresh()
				}
				_, emitted := m.Observe(Observation{At: clk.next(), Verdict: s.in, Reason: "round " + s.in.String(), Certain: s.certain})
				got, _, _ := m.Verdict()
				if got != s.want || emitted != s.emit {
					t.Fatalf("step %d (afresh=%v %s certain=%v): verdict %s emitted %v, want %s emitted %v", i, s.afresh, s.in, s.certain, got, emitted, s.want, s.emit)
				}
			}
		})
	}
}

// TestPromoted: only a promotion's first round starts the count afresh: replica
// probes, then a primary's at a higher epoch. A primary of record that probed as a
// replica for a flow that was abandoned, back at its own epoch, keeps its evidence.
func TestPromoted(t *testing.T) {
	cases := []struct {
		name             string
		last, role       Probes
		lastEpoch, epoch uint64
		want             bool
	}{
		{"a replica promoted at a new epoch", Replica, Primary, 4, 5, true},
		{"the first primary round of an agent on the primary (no primary round yet)", Replica, Primary, 0, 4, true},
		{"back to primary at its own epoch after an abandoned flow", Replica, Primary, 4, 4, false},
		{"the epoch not set (zero)", Replica, Primary, 0, 0, false},
		{"primary rounds go on", Primary, Primary, 4, 5, false},
		{"demoted", Primary, Replica, 4, 5, false},
		{"replica rounds go on", Replica, Replica, 4, 5, false},
	}
	for _, tc := range cases {
		if got := promoted(tc.last, tc.role, tc.lastEpoch, tc.epoch); got != tc.want {
			t.Errorf("%s: promoted = %v, want %v", tc.name, got, tc.want)
		}
	}
}
