package cluster

import (
	"time"

	"github.com/baton-ha/baton/detector"
)

// Milestone is a step of a failover away from a primary, as etcd shows it. The demo,
// the benchmarks and the tests time a failover by these, and by nothing else read
// from etcd. They are listed in the order a failover reaches them.
type Milestone int

// Milestones of a failover away from the old primary. Each later one implies the
// earlier ones, except MilestoneVIP and MilestoneRecorded, which follow
// MilestonePromoted in either order, and MilestoneRejoined, which needs a person or a
// restart on a server whose failure lasts.
const (
	// MilestoneDetected: the old primary's agent published an unwritable or
	// unreachable verdict, or its status is gone (its agent's lease ended), or a
	// coordinator has already decided (it saw the failure without the agent).
	MilestoneDetected Milestone = iota + 1
	// MilestoneDecided: a coordinator announced a flow away from the old primary
	// (the intent), or has already committed one.
	MilestoneDecided
	// MilestoneCommitted: another node is the primary of record, at a higher epoch.
	MilestoneCommitted
	// MilestonePromoted: committed, and the new primary holds the leader key: its
	// agent makes its server writable.
	MilestonePromoted
	// MilestoneVIP: promoted, and the new primary's agent reports the virtual IP,
	// no other agent does.
	MilestoneVIP
	// MilestoneRecorded: committed, and the history's newest event is the move from
	// the old primary to the new one.
	MilestoneRecorded
	// MilestoneRejoined: committed, and the old primary replicates from the new one,
	// read_only, both threads running.
	MilestoneRejoined
)

var milestoneNames = [...]string{"", "detected", "decided", "committed", "promoted", "vip", "recorded", "rejoined"}

func (m Milestone) String() string {
	if m < MilestoneDetected || m > MilestoneRejoined {
		return "unknown"
	}
	return milestoneNames[m]
}

// FailoverMilestones lists the milestones of a failover away from old (the primary of
// record before the fault) that hold in snap, in order.
func FailoverMilestones(old Primary, snap Snapshot) []Milestone {
	var out []Milestone
	committed := snap.Primary.Node != "" && snap.Primary.Node != old.Node && snap.Primary.Epoch > old.Epoch
	decided := committed || (snap.Intent != nil && snap.Intent.From == old.Node && snap.Intent.Epoch == old.Epoch)
	st, present := snap.Nodes[old.Node]
	if decided || !present || st.Verdict == detector.Unwritable || st.Verdict == detector.Unreachable {
		out = append(out, MilestoneDetected)
	}
	if decided {
		out = append(out, MilestoneDecided)
	}
	if !committed {
		return out
	}
	out = append(out, MilestoneCommitted)
	newp := snap.Primary.Node
	if snap.Leader == newp {
		out = append(out, MilestonePromoted)
		holders := 0
		for _, n := range snap.Nodes {
			if n.VIP {
				holders++
			}
		}
		if holders == 1 && snap.Nodes[newp].VIP {
			out = append(out, MilestoneVIP)
		}
	}
	if e := snap.LastEvent; e != nil && e.From == old.Node && e.To == newp {
		out = append(out, MilestoneRecorded)
	}
	if present && st.Role == RoleReplica && st.ReadOnly && st.IORunning && st.SQLRunning && st.Source == snap.Primary.Addr {
		out = append(out, MilestoneRejoined)
	}
	return out
}

// FailoverTimeline times the milestones of one failover away from a primary: when
// each first held. It is not safe for concurrent use.
type FailoverTimeline struct {
	old     Primary
	start   time.Time
	reached map[Milestone]time.Time
}

// NewFailoverTimeline starts timing a failover away from old, from start (the fault).
func NewFailoverTimeline(old Primary, start time.Time) *FailoverTimeline {
	return &FailoverTimeline{old: old, start: start, reached: map[Milestone]time.Time{}}
}

// Observe takes a state of the cluster seen at time at and returns the milestones it
// reaches for the first time.
func (t *FailoverTimeline) Observe(snap Snapshot, at time.Time) []Milestone {
	var out []Milestone
	for _, m := range FailoverMilestones(t.old, snap) {
		if _, ok := t.reached[m]; !ok {
			t.reached[m] = at
			out = append(out, m)
		}
	}
	return out
}

// At is when m first held, and whether it has.
func (t *FailoverTimeline) At(m Milestone) (time.Time, bool) {
	at, ok := t.reached[m]
	return at, ok
}

// Since is the time from the start to m, and whether m has held.
func (t *FailoverTimeline) Since(m Milestone) (time.Duration, bool) {
	at, ok := t.reached[m]
	if !ok {
		return 0, false
	}
	return at.Sub(t.start), true
}
