package chaos

import (
	"reflect"
	"testing"
	"time"
)

func TestDrawIsReplayable(t *testing.T) {
	for round := 1; round <= 50; round++ {
		a, b := Draw(7, round, 3), Draw(7, round, 3)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round %d drawn twice differs: %s vs %s", round, a, b)
		}
	}
	// Another seed gives another campaign.
	same := 0
	for round := 1; round <= 20; round++ {
		if reflect.DeepEqual(Draw(7, round, 3).Faults, Draw(8, round, 3).Faults) {
			same++
		}
	}
	if same > 2 {
		t.Errorf("seeds 7 and 8 drew %d identical rounds of 20", same)
	}
}

// TestDrawRules draws many rounds and checks every schedule against the rules of the
// matrix, and that every kind is drawn.
func TestDrawRules(t *testing.T) {
	seen := map[Kind]int{}
	pairs := 0
	for seed := uint64(1); seed <= 20; seed++ {
		for round := 1; round <= 50; round++ {
			s := Draw(seed, round, 3)
			if s.Seed != seed || s.Round != round {
				t.Fatalf("%s: seed/round not recorded", s)
			}
			if n := len(s.Faults); n < 1 || n > 2 {
				t.Fatalf("%s: %d faults", s, n)
			}
			first := s.Faults[0]
			if first.At != 0 || first.Kind.Class() == ClassRequest || first.Kind.Class() == ClassUnknown {
				t.Fatalf("%s: bad first fault", s)
			}
			for _, f := range s.Faults {
				seen[f.Kind]++
				switch {
				case f.Kind.Class() == ClassRequest && f.For != 0:
					t.Fatalf("%s: a request is held", s)
				case f.Kind.Class() != ClassRequest && (f.For < minSecondFor || f.For > maxFor):
					t.Fatalf("%s: %s held %s, out of bounds", s, f.Kind, f.For)
				case f.Kind == StopAgent && f.For <= 3*time.Second:
					t.Fatalf("%s: agent stopped %s, not longer than session_ttl", s, f.For)
				case f.Kind.Class() == ClassServer && f.Target != TargetPrimary && f.Target != TargetReplica:
					t.Fatalf("%s: server fault on %s", s, f.Target)
				case f.Target == TargetReplica && (f.Index < 0 || f.Index > 1):
					t.Fatalf("%s: replica index %d", s, f.Index)
				}
			}
			if len(s.Faults) == 2 {
				pairs++
				second := s.Faults[1]
				if second.At <= 0 || second.At >= first.For {
					t.Fatalf("%s: the second fault does not overlap the first", s)
				}
				if !compatible(first, second) {
					t.Fatalf("%s: incompatible faults drawn together", s)
				}
			}
			if s.End() > 2*maxFor {
				t.Fatalf("%s: ends at %s", s, s.End())
			}
		}
	}
	for _, k := range Kinds() {
		if seen[k] == 0 {
			t.Errorf("%s never drawn in 1000 rounds", k)
		}
	}
	if pairs < 400 || pairs > 600 {
		t.Errorf("%d rounds of 1000 with two faults, want about half", pairs)
	}
	// One etcd member: never a member stopped alone.
	for round := 1; round <= 200; round++ {
		for _, f := range Draw(3, round, 1).Faults {
			if f.Kind == EtcdMemberStop {
				t.Fatalf("round %d: etcd member stopped with one member", round)
			}
		}
	}
}

func TestCompatible(t *testing.T) {
	cases := []struct {
		a, b Fault
		want bool
	}{
		{Fault{Kind: Kill, Target: TargetPrimary}, Fault{Kind: Stop, Target: TargetPrimary}, false},
		{Fault{Kind: Kill, Target: TargetPrimary}, Fault{Kind: KillAgent, Target: TargetPrimary}, true},
		{Fault{Kind: Kill, Target: TargetPrimary}, Fault{Kind: DiskFull, Target: TargetReplica}, true},
		{Fault{Kind: Kill, Target: TargetReplica, Index: 0}, Fault{Kind: Stop, Target: TargetReplica, Index: 0}, false},
		{Fault{Kind: Kill, Target: TargetReplica, Index: 0}, Fault{Kind: Stop, Target: TargetReplica, Index: 1}, true},
		{Fault{Kind: EtcdAllStop, Target: TargetEtcd}, Fault{Kind: EtcdMemberStop, Target: TargetEtcd}, false},
		{Fault{Kind: EtcdAllStop, Target: TargetEtcd}, Fault{Kind: SwitchoverRequest, Target: TargetCluster}, true},
		{Fault{Kind: StopAgent, Target: TargetCoordinator}, Fault{Kind: CutEtcd, Target: TargetCoordinator}, false},
	}
	for _, tc := range cases {
		if got := compatible(tc.a, tc.b); got != tc.want {
			t.Errorf("compatible(%s, %s) = %t, want %t", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestKindStrings(t *testing.T) {
	names := map[string]bool{}
	for _, k := range Kinds() {
		s := k.String()
		if names[s] || k.Class() == ClassUnknown {
			t.Errorf("kind %d: %q duplicated or without a class", int(k), s)
		}
		names[s] = true
	}
	if KindUnknown.String() != "kind(0)" || KindUnknown.Class() != ClassUnknown {
		t.Errorf("the zero kind reads as %q, class %s", KindUnknown, KindUnknown.Class())
	}
}

func TestSettleBound(t *testing.T) {
	cases := []struct {
		faults []Fault
		want   time.Duration
	}{
		{[]Fault{{Kind: Kill}}, Settle},
		{[]Fault{{Kind: Kill}, {Kind: SwitchoverRequest}}, Settle},
		{[]Fault{{Kind: DiskFull}}, 75 * time.Second},
		{[]Fault{{Kind: ReadonlyFS}, {Kind: DiskFull, Target: TargetReplica}}, 75 * time.Second},
	}
	for _, tc := range cases {
		if got := (Schedule{Faults: tc.faults}).SettleBound(); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.faults, got, tc.want)
		}
	}
}

// Every replica's disk full: no semi-sync acknowledgement is possible until MariaDB's
// next retry, so the write-back bound is the full-disk one (seed 33 round 23 waited
// 54 s, against 15 s); one replica's disk full leaves the other to acknowledge.
func TestWriteBackBound(t *testing.T) {
	full := func(i int) Fault { return Fault{Kind: DiskFull, Target: TargetReplica, Index: i} }
	cases := []struct {
		name   string
		faults []Fault
		nodes  int
		want   time.Duration
	}{
		{"no fault", nil, 3, LiveBound},
		{"one replica of two full", []Fault{full(0)}, 3, LiveBound},
		{"both replicas full", []Fault{full(0), full(1)}, 3, 75 * time.Second},
		{"the same replica twice", []Fault{full(1), full(1)}, 3, LiveBound},
		{"the primary full", []Fault{{Kind: DiskFull, Target: TargetPrimary}}, 3, LiveBound},
		{"two nodes, the replica full", []Fault{full(0)}, 2, 75 * time.Second},
		{"nodes unknown", []Fault{full(0), full(1)}, 0, LiveBound},
	}
	for _, tc := range cases {
		if got := (Schedule{Faults: tc.faults}).WriteBackBound(tc.nodes); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
