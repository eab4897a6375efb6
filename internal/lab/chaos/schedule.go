// Package chaos is `baton-lab bench chaos`: a randomized fault campaign against one
// real sandbox cluster (agents, semi-sync, a virtual IP, three etcd members), with an
// independent checker. Each round draws one fault or two overlapping ones from the
// sandbox's fault matrix (Draw, pure: the same seed and round give the same
// schedule), injects them, heals everything, lets the cluster settle, and checks the
// invariants over what it observed (Check, pure): no acknowledged write lost, never
// two servers taking writes, one writable primary of record soon after healing, and
// etcd, the servers and the virtual IP agreeing.
//
// It only observes Baton from outside, as an application and an operator would: the
// writer's and the monitor's acknowledged writes, etcd's keys, the servers' variables
// and the kernel's addresses. It never reads an agent's memory and never repairs
// what Baton should have repaired, except a node quarantined for a person to act on,
// which it repairs the way the runbook says and records.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Kind is a fault the campaign draws.
type Kind int

// The kinds. Server faults act on a node's mariadbd, agent faults on its baton agent,
// etcd faults on the etcd members, requests are an operator's.
const (
	KindUnknown Kind = iota
	DiskFull
	FreezeWrites
	Stop
	Kill
	CutNetwork
	ReadonlyFS
	ExhaustConnections
	CutEtcd           // the node's agent cut from etcd
	KillAgent         // SIGKILL of the agent
	StopAgent         // SIGSTOP of the agent for longer than session_ttl
	EtcdMemberStop    // one etcd member stopped (the raft leader, or another)
	EtcdAllStop       // every etcd member stopped: an etcd outage
	SwitchoverRequest // `baton switchover` filed during the other fault
	FailoverRequest   // `baton failover` filed during the other fault
	kindEnd           // not a kind: the end of the list
)

func (k Kind) String() string {
	switch k {
	case DiskFull:
		return "disk-full"
	case FreezeWrites:
		return "freeze-writes"
	case Stop:
		return "stop"
	case Kill:
		return "kill"
	case CutNetwork:
		return "cut-network"
	case ReadonlyFS:
		return "readonly-fs"
	case ExhaustConnections:
		return "exhaust-connections"
	case CutEtcd:
		return "cut-etcd"
	case KillAgent:
		return "kill-agent"
	case StopAgent:
		return "stop-agent"
	case EtcdMemberStop:
		return "etcd-member-stop"
	case EtcdAllStop:
		return "etcd-all-stop"
	case SwitchoverRequest:
		return "switchover-request"
	case FailoverRequest:
		return "failover-request"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Kinds lists every kind the campaign draws.
func Kinds() []Kind {
	var out []Kind
	for k := DiskFull; k < kindEnd; k++ {
		out = append(out, k)
	}
	return out
}

// Class is what a kind acts on: two faults of one class never hit the same node.
type Class int

// The classes.
const (
	ClassUnknown Class = iota
	ClassServer
	ClassAgent
	ClassEtcd
	ClassRequest
)

func (c Class) String() string {
	switch c {
	case ClassServer:
		return "server"
	case ClassAgent:
		return "agent"
	case ClassEtcd:
		return "etcd"
	case ClassRequest:
		return "request"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Class says what k acts on.
func (k Kind) Class() Class {
	switch {
	case k >= DiskFull && k <= ExhaustConnections:
		return ClassServer
	case k >= CutEtcd && k <= StopAgent:
		return ClassAgent
	case k == EtcdMemberStop || k == EtcdAllStop:
		return ClassEtcd
	case k == SwitchoverRequest || k == FailoverRequest:
		return ClassRequest
	}
	return ClassUnknown
}

// Target is the node a fault hits, named by its role when the fault is injected.
type Target int

// The targets.
const (
	TargetUnknown     Target = iota
	TargetPrimary            // the primary of record
	TargetReplica            // one of the others, by Fault.Index
	TargetCoordinator        // the elected coordinator's node (the primary's when none)
	TargetEtcd               // etcd members: by Fault.Index, -1 the raft leader; every one for EtcdAllStop
	TargetCluster            // a request to the cluster
)

func (t Target) String() string {
	switch t {
	case TargetPrimary:
		return "primary"
	case TargetReplica:
		return "replica"
	case TargetCoordinator:
		return "coordinator"
	case TargetEtcd:
		return "etcd"
	case TargetCluster:
		return "cluster"
	}
	return fmt.Sprintf("target(%d)", int(t))
}

// Fault is one fault of a round: injected At after the round starts on Target and
// healed For later (requests are never healed: For is 0).
type Fault struct {
	Kind   Kind          `json:"kind"`
	Target Target        `json:"target"`
	Index  int           `json:"index"` // which replica or etcd member (-1: the etcd leader)
	At     time.Duration `json:"at_ns"`
	For    time.Duration `json:"for_ns"`
}

func (f Fault) String() string {
	t := f.Target.String()
	switch {
	case f.Target == TargetReplica:
		t = fmt.Sprintf("replica#%d", f.Index)
	case f.Kind == EtcdMemberStop && f.Index < 0:
		t = "etcd leader"
	case f.Kind == EtcdMemberStop:
		t = fmt.Sprintf("etcd member#%d", f.Index)
	}
	if f.Kind.Class() == ClassRequest {
		return fmt.Sprintf("%s at %s", f.Kind, f.At.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s on %s at %s for %s", f.Kind, t, f.At.Round(time.Millisecond), f.For.Round(time.Millisecond))
}

// Schedule is one round's faults, drawn from the campaign's seed and the round.
type Schedule struct {
	Seed   uint64  `json:"seed"`
	Round  int     `json:"round"`
	Faults []Fault `json:"faults"`
}

func (s Schedule) String() string {
	parts := make([]string, len(s.Faults))
	for i, f := range s.Faults {
		parts[i] = f.String()
	}
	return fmt.Sprintf("seed %d round %d: %s", s.Seed, s.Round, strings.Join(parts, "; "))
}

// End is when the round's last fault is healed.
func (s Schedule) End() time.Duration {
	var end time.Duration
	for _, f := range s.Faults {
		end = max(end, f.At+f.For)
	}
	return end
}

// Bounds of the schedule. A stopped agent stays stopped longer than the sandbox's
// session_ttl (3 s), so that its lease runs out.
const (
	minFor          = 2 * time.Second
	maxFor          = 8 * time.Second
	minStopAgentFor = 4 * time.Second
	minSecondFor    = time.Second
	maxSecondFor    = 6 * time.Second
)

// Draw draws round's schedule from seed: the same pair always gives the same
// schedule (a PCG seeded with both), so one round can be replayed alone. members is
// the number of etcd members: with one, no member is stopped alone.
//
// The first fault is a node fault or an etcd fault; half of the rounds add a second,
// overlapping one (starting while the first holds): another fault, or an operator's
// request arriving during the first. Two faults of one class never hit the same role,
// and two etcd faults are never drawn together.
func Draw(seed uint64, round, members int) Schedule {
	r := rand.New(rand.NewPCG(seed, uint64(round)))
	s := Schedule{Seed: seed, Round: round}
	first := drawFault(r, members, false)
	first.For = between(r, minFor, maxFor)
	if first.Kind == StopAgent {
		first.For = between(r, minStopAgentFor, maxFor)
	}
	s.Faults = append(s.Faults, first)
	if r.IntN(2) == 0 {
		return s
	}
	var second Fault
	for {
		second = drawFault(r, members, true)
		if compatible(first, second) {
			break
		}
	}
	second.At = between(r, 300*time.Millisecond, first.For-300*time.Millisecond)
	switch {
	case second.Kind.Class() == ClassRequest:
		second.For = 0
	case second.Kind == StopAgent:
		second.For = between(r, minStopAgentFor, maxFor)
	default:
		second.For = between(r, minSecondFor, maxSecondFor)
	}
	s.Faults = append(s.Faults, second)
	return s
}

func drawFault(r *rand.Rand, members int, second bool) Fault {
	kinds := Kinds()
	for {
		k := kinds[r.IntN(len(kinds))]
		switch {
		case k.Class() == ClassRequest && !second:
			continue
		case k == EtcdMemberStop && members < 3:
			continue
		}
		f := Fault{Kind: k}
		switch k.Class() {
		case ClassServer:
			f.Target = []Target{TargetPrimary, TargetPrimary, TargetReplica}[r.IntN(3)]
		case ClassAgent:
			f.Target = []Target{TargetPrimary, TargetCoordinator, TargetReplica}[r.IntN(3)]
		case ClassEtcd:
			f.Target = TargetEtcd
			if k == EtcdMemberStop {
				f.Index = r.IntN(members+1) - 1 // -1: the raft leader
			}
		case ClassRequest:
			f.Target = TargetCluster
		}
		if f.Target == TargetReplica {
			f.Index = r.IntN(2)
		}
		return f
	}
}

// compatible says whether b may overlap a: not two etcd faults, and not two faults
// of one class on one role (a killed server cannot also be stopped).
func compatible(a, b Fault) bool {
	if a.Kind.Class() == ClassEtcd && b.Kind.Class() == ClassEtcd {
		return false
	}
	if a.Kind.Class() != b.Kind.Class() {
		return true
	}
	return a.Target != b.Target || (a.Target == TargetReplica && a.Index != b.Index)
}

// SettleBound is how long the cluster may take to settle after the round's faults
// are healed: Settle, or, after a full disk, 75 s: MariaDB notices freed space only
// at its next retry, up to 60 s later, and until then the server's replication
// threads (and SHOW SLAVE STATUS) wait.
func (s Schedule) SettleBound() time.Duration {
	for _, f := range s.Faults {
		if f.Kind == DiskFull {
			return 75 * time.Second
		}
	}
	return Settle
}

// WriteBackBound is how soon after healing a write through the virtual IP must be
// acknowledged: LiveBound, or the full-disk bound when every replica's disk was full
// (nodes is the cluster's size). Then no replica can acknowledge a semi-sync commit
// until MariaDB notices the freed space, at its next retry (every 60 s), and the
// primary rightly takes no write before.
func (s Schedule) WriteBackBound(nodes int) time.Duration {
	full := map[int]bool{}
	for _, f := range s.Faults {
		if f.Kind == DiskFull && f.Target == TargetReplica {
			full[f.Index] = true
		}
	}
	if nodes > 1 && len(full) >= nodes-1 {
		return s.SettleBound()
	}
	return LiveBound
}

// Settle is how long the campaign waits for the cluster to settle after healing.
const Settle = 30 * time.Second

func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	d := lo + time.Duration(r.Int64N(int64(hi-lo)))
	return d.Round(100 * time.Millisecond)
}
