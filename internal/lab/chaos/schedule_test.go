package chaos

import (
	"reflect"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/failpoint"
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
	pairs, pauses := 0, 0
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
			if first.At != 0 || first.Kind.OneShot() || first.Kind.Class() == ClassUnknown {
				t.Fatalf("%s: bad first fault", s)
			}
			for _, f := range s.Faults {
				seen[f.Kind]++
				lo, hi := minSecondFor, maxFor
				switch f.Kind {
				case RestartAgent:
					lo, hi = minRestartAgentFor, maxRestartAgentFor
				case Restart:
					lo, hi = minRestartFor, maxRestartFor
				}
				switch {
				case f.Kind.OneShot() && f.For != 0:
					t.Fatalf("%s: a one-shot fault is held", s)
				case !f.Kind.OneShot() && (f.For < lo || f.For > hi):
					t.Fatalf("%s: %s held %s, out of bounds", s, f.Kind, f.For)
				case f.Kind == StopAgent && f.For <= 3*time.Second:
					t.Fatalf("%s: agent stopped %s, not longer than session_ttl", s, f.For)
				case f.Kind.Class() == ClassServer && f.Target != TargetPrimary && f.Target != TargetReplica:
					t.Fatalf("%s: server fault on %s", s, f.Target)
				case f.Target == TargetReplica && (f.Index < 0 || f.Index > 1):
					t.Fatalf("%s: replica index %d", s, f.Index)
				case f.Kind == PauseAt && f != first:
					t.Fatalf("%s: a pause that is not the round's first fault", s)
				case f.Kind != PauseAt && f.Point != "":
					t.Fatalf("%s: a step named for %s", s, f.Kind)
				case f.Hard && f.Kind != RestartAgent:
					t.Fatalf("%s: SIGKILL drawn for %s", s, f.Kind)
				}
			}
			if first.Kind == PauseAt {
				pauses++
				if len(s.Faults) != 2 {
					t.Fatalf("%s: a pause without its trigger", s)
				}
				continue
			}
			if len(s.Faults) == 2 {
				pairs++
				second := s.Faults[1]
				last := max(first.For, 2*time.Second)
				if second.Kind == PurgeBinlogs {
					last += purgeAfterHeal
				}
				if second.At <= 0 || second.At >= last {
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
	if pauses < 150 || pauses > 250 {
		t.Errorf("%d rounds of 1000 pause an agent, want about a fifth", pauses)
	}
	if pairs < 320 || pairs > 480 {
		t.Errorf("%d rounds of %d without a pause have two faults, want about half", pairs, 1000-pauses)
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

// TestDrawPause checks that each pause comes with a trigger that can make its agent
// reach the step, and that every step and both agents' roles are drawn.
func TestDrawPause(t *testing.T) {
	seen := map[string]int{}
	for seed := uint64(1); seed <= 20; seed++ {
		for round := 1; round <= 100; round++ {
			s := Draw(seed, round, 3)
			if s.Faults[0].Kind != PauseAt {
				continue
			}
			p, tr := s.Faults[0], s.Faults[1]
			seen[p.Point+" on "+p.Target.String()]++
			if p.For < minPauseFor || p.For > maxPauseFor || tr.At < 300*time.Millisecond || tr.At > 3*time.Second {
				t.Fatalf("%s: pause or trigger out of bounds", s)
			}
			ok := false
			switch {
			case p.Point == failpoint.AfterStartSlave && p.Target == TargetReplica:
				ok = tr.Kind == Restart && tr.Target == TargetReplica && tr.Index == p.Index ||
					tr.Kind.Class() == ClassRequest && tr.Target == TargetCluster ||
					tr.Target == TargetPrimary && (tr.Kind == Kill || tr.Kind == Stop || tr.Kind == CutNetwork || tr.Kind == FreezeNode)
			case p.Point == failpoint.AfterStartSlave:
				ok = tr.Kind == SwitchoverRequest && tr.Target == TargetCluster
			case p.Target == TargetReplica:
				ok = tr.Kind == SwitchoverRequest && tr.Target == TargetReplica && tr.Index == p.Index ||
					tr.Target == TargetPrimary && (tr.Kind == Kill || tr.Kind == Stop || tr.Kind == CutNetwork || tr.Kind == FreezeNode)
			default:
				ok = tr.Kind == Restart && tr.Target == TargetPrimary
			}
			if !ok || p.Target != TargetReplica && p.Target != TargetPrimary {
				t.Fatalf("%s: the trigger cannot make the agent reach %s", s, p.Point)
			}
		}
	}
	for _, want := range []string{"after-start-slave on replica", "after-start-slave on primary", "before-promote on replica",
		"before-promote on primary", "before-vip-acquire on replica", "before-vip-acquire on primary"} {
		if seen[want] == 0 {
			t.Errorf("%s never drawn in 2000 rounds (%v)", want, seen)
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
		{Fault{Kind: FreezeNode, Target: TargetPrimary}, Fault{Kind: Kill, Target: TargetPrimary}, false},
		{Fault{Kind: FreezeNode, Target: TargetPrimary}, Fault{Kind: RestartAgent, Target: TargetPrimary}, false},
		{Fault{Kind: Restart, Target: TargetReplica, Index: 1}, Fault{Kind: FreezeNode, Target: TargetReplica, Index: 1}, false},
		{Fault{Kind: FreezeNode, Target: TargetPrimary}, Fault{Kind: RestartAgent, Target: TargetReplica}, true},
		{Fault{Kind: Restart, Target: TargetPrimary}, Fault{Kind: RestartAgent, Target: TargetPrimary}, true},
		{Fault{Kind: FreezeNode, Target: TargetPrimary}, Fault{Kind: PurgeBinlogs, Target: TargetPrimary}, true},
		{Fault{Kind: DiskFull, Target: TargetPrimary}, Fault{Kind: PurgeBinlogs, Target: TargetPrimary}, true},
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

// Seed 209 round 24: the primary stopped 7.9 s, a replica's disk full from 7.2 s
// for 5.7 s. The other replica was promoted; the old primary came back quarantined
// (errant); the replica with the full disk could acknowledge nothing until MariaDB
// noticed the freed space (writes back 54 s after healing). Every node left to
// acknowledge had its disk full: the full-disk bound.
func TestAckersFullBound(t *testing.T) {
	s := Schedule{Faults: []Fault{{Kind: Stop, Target: TargetPrimary}, {Kind: DiskFull, Target: TargetReplica, Index: 1}}}
	final := func(roles map[string]string) Cluster {
		c := Cluster{Primary: "db2", Nodes: map[string]NodeState{}}
		for n, r := range roles {
			c.Nodes[n] = NodeState{Name: n, Role: cluster.Role(r)}
		}
		return c
	}
	cases := []struct {
		name  string
		full  []string
		final Cluster
		want  time.Duration
	}{
		{"the one acker left had its disk full", []string{"db3"}, final(map[string]string{"db1": "quarantined", "db2": "primary", "db3": "replica"}), 75 * time.Second},
		{"another replica could acknowledge", []string{"db3"}, final(map[string]string{"db1": "replica", "db2": "primary", "db3": "replica"}), LiveBound},
		{"the full disk was the new primary's", []string{"db2"}, final(map[string]string{"db1": "quarantined", "db2": "primary", "db3": "replica"}), LiveBound},
		{"nobody left to acknowledge", []string{"db3"}, final(map[string]string{"db1": "quarantined", "db2": "primary", "db3": "quarantined"}), LiveBound},
		{"no full disk", nil, final(map[string]string{"db1": "quarantined", "db2": "primary", "db3": "replica"}), LiveBound},
	}
	for _, tc := range cases {
		if got := s.AckersFullBound(LiveBound, tc.full, tc.final); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
