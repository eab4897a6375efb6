package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/baton-ha/baton/detector"
)

func TestFailoverMilestones(t *testing.T) {
	old := Primary{Node: "db1", Addr: "198.18.0.11:3306", Epoch: 1}
	newp := Primary{Node: "db2", Addr: "198.18.0.12:3306", Epoch: 2}
	healthy := func(name string, role Role) NodeStatus {
		return NodeStatus{Node: name, Role: role, Verdict: detector.Healthy, ServerRead: true}
	}
	// before is the cluster before the fault: db1 primary, leader and VIP holder.
	before := func() Snapshot {
		p := healthy("db1", RolePrimary)
		p.VIP = true
		return Snapshot{View: View{Primary: old, Leader: "db1", Nodes: map[string]NodeStatus{
			"db1": p, "db2": healthy("db2", RoleReplica), "db3": healthy("db3", RoleReplica)}}}
	}
	with := func(fn func(*Snapshot)) Snapshot {
		s := before()
		fn(&s)
		return s
	}
	unwritable := func(s *Snapshot) {
		n := s.Nodes["db1"]
		n.Verdict = detector.Unwritable
		s.Nodes["db1"] = n
	}
	committed := func(s *Snapshot) {
		unwritable(s)
		s.Primary, s.Leader = newp, ""
		n := s.Nodes["db1"]
		n.Role, n.VIP = RoleFenced, false
		s.Nodes["db1"] = n
	}
	promoted := func(s *Snapshot) {
		committed(s)
		s.Leader = "db2"
	}
	tests := []struct {
		name string
		snap Snapshot
		want []Milestone
	}{
		{"steady: nothing", before(), nil},
		{"old primary suspect: nothing", with(func(s *Snapshot) {
			n := s.Nodes["db1"]
			n.Verdict = detector.Suspect
			s.Nodes["db1"] = n
		}), nil},
		{"unwritable verdict", with(unwritable), []Milestone{MilestoneDetected}},
		{"unreachable verdict", with(func(s *Snapshot) {
			n := s.Nodes["db1"]
			n.Verdict = detector.Unreachable
			s.Nodes["db1"] = n
		}), []Milestone{MilestoneDetected}},
		{"status gone with its agent", with(func(s *Snapshot) { delete(s.Nodes, "db1") }), []Milestone{MilestoneDetected}},
		{"intent away from the old primary: decided implies detected", with(func(s *Snapshot) {
			s.Intent = &Intent{Kind: "failover", From: "db1", Epoch: 1}
		}), []Milestone{MilestoneDetected, MilestoneDecided}},
		{"intent of an earlier epoch is not this failover", with(func(s *Snapshot) {
			s.Intent = &Intent{Kind: "failover", From: "db1", Epoch: 0}
		}), nil},
		{"intent away from another node is not this failover", with(func(s *Snapshot) {
			s.Intent = &Intent{Kind: "switchover", From: "db3", Epoch: 1}
		}), nil},
		{"committed, leader key not yet taken", with(committed),
			[]Milestone{MilestoneDetected, MilestoneDecided, MilestoneCommitted}},
		{"same node again at a higher epoch is no failover away from it", with(func(s *Snapshot) {
			s.Primary.Epoch = 2
		}), nil},
		{"promoted", with(promoted),
			[]Milestone{MilestoneDetected, MilestoneDecided, MilestoneCommitted, MilestonePromoted}},
		{"promoted, VIP on the new primary only", with(func(s *Snapshot) {
			promoted(s)
			n := s.Nodes["db2"]
			n.VIP = true
			s.Nodes["db2"] = n
		}), []Milestone{MilestoneDetected, MilestoneDecided, MilestoneCommitted, MilestonePromoted, MilestoneVIP}},
		{"VIP reported by two agents: not moved", with(func(s *Snapshot) {
			promoted(s)
			for _, name := range []string{"db1", "db2"} {
				n := s.Nodes[name]
				n.VIP = true
				s.Nodes[name] = n
			}
		}), []Milestone{MilestoneDetected, MilestoneDecided, MilestoneCommitted, MilestonePromoted}},
		{"recorded in the history", with(func(s *Snapshot) {
			promoted(s)
			s.LastEvent = &Event{Kind: "failover", From: "db1", To: "db2", Epoch: 2}
		}), []Milestone{MilestoneDetected, MilestoneDecided, MilestoneCommitted, MilestonePromoted, MilestoneRecorded}},
		{"an older event is not this failover", with(func(s *Snapshot) {
			promoted(s)
			s.LastEvent = &Event{Kind: "switchover", From: "db3", To: "db1", Epoch: 1}
		}), []Milestone{MilestoneDetected, MilestoneDecided, MilestoneCommitted, MilestonePromoted}},
		{"old primary rejoined as a replica of the new one", with(func(s *Snapshot) {
			promoted(s)
			n := healthy("db1", RoleReplica)
			n.ReadOnly, n.IORunning, n.SQLRunning, n.Source = true, true, true, newp.Addr
			s.Nodes["db1"] = n
		}), []Milestone{MilestoneDetected, MilestoneDecided, MilestoneCommitted, MilestonePromoted, MilestoneRejoined}},
		{"old primary a replica with its SQL thread stopped: not rejoined", with(func(s *Snapshot) {
			promoted(s)
			n := healthy("db1", RoleReplica)
			n.ReadOnly, n.IORunning, n.Source = true, true, newp.Addr
			s.Nodes["db1"] = n
		}), []Milestone{MilestoneDetected, MilestoneDecided, MilestoneCommitted, MilestonePromoted}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FailoverMilestones(old, tt.snap); !slices.Equal(got, tt.want) {
				t.Errorf("FailoverMilestones = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFailoverTimeline(t *testing.T) {
	old := Primary{Node: "db1", Epoch: 1}
	t0 := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	tl := NewFailoverTimeline(old, t0)
	gone := Snapshot{View: View{Primary: old, Nodes: map[string]NodeStatus{}}}
	if got := tl.Observe(gone, t0.Add(time.Second)); !slices.Equal(got, []Milestone{MilestoneDetected}) {
		t.Fatalf("first observe = %v, want [detected]", got)
	}
	done := Snapshot{View: View{Primary: Primary{Node: "db2", Epoch: 2}, Leader: "db2", Nodes: map[string]NodeStatus{}}}
	got := tl.Observe(done, t0.Add(3*time.Second))
	if want := []Milestone{MilestoneDecided, MilestoneCommitted, MilestonePromoted}; !slices.Equal(got, want) {
		t.Fatalf("second observe = %v, want %v (detected already reached)", got, want)
	}
	if d, ok := tl.Since(MilestoneDetected); !ok || d != time.Second {
		t.Errorf("detected after %s, %v; want 1s: the first time it held", d, ok)
	}
	if d, ok := tl.Since(MilestonePromoted); !ok || d != 3*time.Second {
		t.Errorf("promoted after %s, %v; want 3s", d, ok)
	}
	if _, ok := tl.Since(MilestoneRejoined); ok {
		t.Error("rejoined reached without being seen")
	}
	if s := MilestoneVIP.String(); s != "vip" {
		t.Errorf("MilestoneVIP.String() = %q", s)
	}
	if s := Milestone(0).String(); s != "unknown" {
		t.Errorf("the zero Milestone reads %q, want unknown", s)
	}
}
