// Package chaos is `baton-lab bench chaos`: a randomized fault campaign against one
// real sandbox cluster (agents, semi-sync, a virtual IP, three etcd members), with an
// independent checker. Each round draws one fault or two overlapping ones from the
// sandbox's fault matrix (Draw, pure: the same seed and round give the same
// schedule): things that break and heal, what operators do (a clean restart of a
// server, a purge of binary logs, an agent restarted), a whole node frozen, and an
// agent paused at a named step of its own code (internal/failpoint: the agents run
// baton built with -tags failpoint). It injects them, heals everything, lets the
// cluster settle, and checks the invariants over what it observed (Check, pure): no
// acknowledged write lost, never two servers taking writes, one writable primary of
// record soon after healing, etcd, the servers and the virtual IP agreeing, and
// nothing forgotten unreported.
//
// The last, forgetting, is about what reached a binary log. From outside, the
// campaign reads every node's gtid_binlog_state every 200 ms (MariaDB's last GTID
// numbered per domain and server_id: it only grows, except by RESET MASTER with a
// new state set, or a restart, which reads it again from the binary logs; a purge
// keeps it). A GTID that leaves it must be reported: listed in a rejoin event of
// etcd's history (an agent's repair of its quarantined node, whose Discarded names
// every GTID it made the node forget, and says whether they were phantoms or an
// operator's discard), or in the campaign's own record of a rebuild; or it went
// with a restart of the server by the campaign. One known to be a real
// transaction on that node may not be forgotten as a phantom. Known real: its GTID
// event and its commit read in the node's newest binary log by the campaign (it
// looks up, on a node that is not the primary of record, the GTIDs of its own
// server_id the primary lacks, as soon as it sees them), or recorded real by the
// node's agent (errant/<node> in etcd, or its published errant transactions: the
// agent also takes as real a write a full disk cut off, so a restart, which drops
// such a write, is held only to what the campaign read whole). Not seen: a GTID
// numbered and forgotten between two reads (200 ms apart, longer while the server
// does not answer), and a real transaction that only a purged or older binary log
// held when the campaign looked.
//
// It only observes Baton from outside, as an application and an operator would: the
// writer's and the monitor's acknowledged writes, etcd's keys, the servers' variables
// and binary logs, and the kernel's addresses. It never reads an agent's memory and
// never repairs what Baton should have repaired, except a node quarantined for a
// person to act on, which it repairs the way the runbook says and records.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/failpoint"
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
	SwitchoverRequest // `baton switchover` filed during the other fault (to Target's node when it names one)
	FailoverRequest   // `baton failover` filed during the other fault
	Restart           // a DBA's clean restart of mariadbd: shut down, started again For later
	FreezeNode        // the node's agent and mariadbd frozen together (SIGSTOP both), as a paused VM
	RestartAgent      // the agent stopped (SIGTERM, or SIGKILL when Hard) and started again For later, as a supervisor does
	PauseAt           // the agent restarted armed at a named step (Point): it stops itself there, and is continued For later
	PurgeBinlogs      // a DBA frees the disk: FLUSH BINARY LOGS, PURGE BINARY LOGS TO the newest
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
	case Restart:
		return "restart"
	case FreezeNode:
		return "freeze-node"
	case RestartAgent:
		return "restart-agent"
	case PauseAt:
		return "pause-at"
	case PurgeBinlogs:
		return "purge-binlogs"
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
	ClassNode     // the server and the agent of one node together
	ClassOperator // a DBA's one-off action on a node, never healed
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
	case ClassNode:
		return "node"
	case ClassOperator:
		return "operator"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Class says what k acts on.
func (k Kind) Class() Class {
	switch k {
	case DiskFull, FreezeWrites, Stop, Kill, CutNetwork, ReadonlyFS, ExhaustConnections, Restart:
		return ClassServer
	case CutEtcd, KillAgent, StopAgent, RestartAgent, PauseAt:
		return ClassAgent
	case EtcdMemberStop, EtcdAllStop:
		return ClassEtcd
	case SwitchoverRequest, FailoverRequest:
		return ClassRequest
	case FreezeNode:
		return ClassNode
	case PurgeBinlogs:
		return ClassOperator
	}
	return ClassUnknown
}

// OneShot says whether k is done once and never healed (For is 0).
func (k Kind) OneShot() bool {
	c := k.Class()
	return c == ClassRequest || c == ClassOperator
}

// clash says whether two classes on one node would act on the same process.
func clash(a, b Class) bool {
	switch {
	case a == ClassOperator || b == ClassOperator:
		return false
	case a == b:
		return true
	case a == ClassNode:
		return b == ClassServer || b == ClassAgent
	case b == ClassNode:
		return a == ClassServer || a == ClassAgent
	}
	return false
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
	TargetQuarantined        // a node quarantined when the fault is injected; else the round's first primary
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
	case TargetQuarantined:
		return "quarantined"
	}
	return fmt.Sprintf("target(%d)", int(t))
}

// Fault is one fault of a round: injected At after the round starts on Target and
// healed For later (one-shot kinds, requests and a DBA's actions, are never healed:
// For is 0). A PauseAt is armed At (its agent restarted with the step named) and
// held For from when the agent stops at the step.
type Fault struct {
	Kind   Kind          `json:"kind"`
	Target Target        `json:"target"`
	Index  int           `json:"index"` // which replica or etcd member (-1: the etcd leader)
	At     time.Duration `json:"at_ns"`
	For    time.Duration `json:"for_ns"`
	Point  string        `json:"point,omitempty"` // PauseAt: the named step (internal/failpoint)
	Hard   bool          `json:"hard,omitempty"`  // RestartAgent: SIGKILL, not SIGTERM
}

// Name is the kind, with its step or signal when it has one: what the report counts.
func (f Fault) Name() string {
	switch {
	case f.Kind == PauseAt:
		return f.Kind.String() + ":" + f.Point
	case f.Kind == RestartAgent && f.Hard:
		return f.Kind.String() + ":kill"
	case f.Kind == RestartAgent:
		return f.Kind.String() + ":term"
	}
	return f.Kind.String()
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
	switch {
	case f.Kind.Class() == ClassRequest && f.Target == TargetReplica:
		return fmt.Sprintf("%s to %s at %s", f.Kind, t, f.At.Round(time.Millisecond))
	case f.Kind.Class() == ClassRequest:
		return fmt.Sprintf("%s at %s", f.Kind, f.At.Round(time.Millisecond))
	case f.Kind.OneShot():
		return fmt.Sprintf("%s on %s at %s", f.Kind, t, f.At.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s on %s at %s for %s", f.Name(), t, f.At.Round(time.Millisecond), f.For.Round(time.Millisecond))
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
	// A supervisor starts a stopped agent again within a moment (systemd's
	// Restart=always); a DBA's restart of a server takes a few seconds.
	minRestartAgentFor = 100 * time.Millisecond
	maxRestartAgentFor = 3 * time.Second
	minRestartFor      = 500 * time.Millisecond
	maxRestartFor      = 5 * time.Second
	// A pause at a named step: from a scheduler stall to a lease run out twice over.
	minPauseFor = time.Second
	maxPauseFor = 8 * time.Second
	// A DBA's purge may come after healing (a quarantined node's full disk freed).
	purgeAfterHeal = 4 * time.Second
)

// pauseShare is the share of rounds (one in pauseShare) that pause an agent at a
// named step.
const pauseShare = 5

// Draw draws round's schedule from seed: the same pair always gives the same
// schedule (a PCG seeded with both), so one round can be replayed alone. members is
// the number of etcd members: with one, no member is stopped alone.
//
// One round in pauseShare pauses an agent at a named step, with a second fault that
// makes the agent reach it (drawPause). Otherwise the first fault is a node fault
// or an etcd fault; half of the rounds add a second, overlapping one (starting while
// the first holds): another fault, an operator's request arriving during the first,
// or a DBA's purge of binary logs (during the first, or up to purgeAfterHeal after
// it); after an agent's short restart, within 2 s of its start. Two faults on one node never act on the same process, and two etcd faults
// are never drawn together.
func Draw(seed uint64, round, members int) Schedule {
	r := rand.New(rand.NewPCG(seed, uint64(round)))
	s := Schedule{Seed: seed, Round: round}
	if r.IntN(pauseShare) == 0 {
		s.Faults = drawPause(r)
		return s
	}
	first := drawFault(r, members, false)
	first.For = holdFor(r, first.Kind, false)
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
	// A short first fault (an agent restarted) is met by the second during it or
	// just after: within 2 s of its start.
	last := max(first.For, 2*time.Second) - 300*time.Millisecond
	if second.Kind == PurgeBinlogs {
		last = first.For + purgeAfterHeal
	}
	second.At = between(r, 300*time.Millisecond, last)
	second.For = holdFor(r, second.Kind, true)
	s.Faults = append(s.Faults, second)
	return s
}

// holdFor draws how long a fault of kind k holds.
func holdFor(r *rand.Rand, k Kind, second bool) time.Duration {
	switch {
	case k.OneShot():
		return 0
	case k == StopAgent:
		return between(r, minStopAgentFor, maxFor)
	case k == RestartAgent:
		return between(r, minRestartAgentFor, maxRestartAgentFor)
	case k == Restart:
		return between(r, minRestartFor, maxRestartFor)
	case second:
		return between(r, minSecondFor, maxSecondFor)
	}
	return between(r, minFor, maxFor)
}

func drawFault(r *rand.Rand, members int, second bool) Fault {
	kinds := Kinds()
	for {
		k := kinds[r.IntN(len(kinds))]
		switch {
		case k == PauseAt:
			continue // drawn with its trigger alone (drawPause)
		case k.OneShot() && !second:
			continue
		case k == EtcdMemberStop && members < 3:
			continue
		}
		f := Fault{Kind: k}
		switch k.Class() {
		case ClassServer, ClassNode:
			f.Target = []Target{TargetPrimary, TargetPrimary, TargetReplica}[r.IntN(3)]
		case ClassAgent:
			f.Target = []Target{TargetPrimary, TargetCoordinator, TargetReplica}[r.IntN(3)]
			f.Hard = k == RestartAgent && r.IntN(2) == 0
		case ClassEtcd:
			f.Target = TargetEtcd
			if k == EtcdMemberStop {
				f.Index = r.IntN(members+1) - 1 // -1: the raft leader
			}
		case ClassRequest:
			f.Target = TargetCluster
		case ClassOperator:
			f.Target = []Target{TargetPrimary, TargetReplica, TargetQuarantined}[r.IntN(3)]
		}
		if f.Target == TargetReplica {
			f.Index = r.IntN(2)
		}
		return f
	}
}

// drawPause draws a pause at a named step and what makes the agent reach it: the
// agent is armed at the round's start (PauseAt, At 0) and the trigger comes 0.3-3 s
// later.
//
//   - after-start-slave (a replica's agent starting replication): that replica's
//     server restarted, a failover or switchover (the replica follows the new
//     primary), or, armed on the primary, a switchover (the old primary follows).
//   - before-promote, before-vip-acquire (a candidate made the primary): a
//     switchover to the armed replica, a fault of the primary that a failover
//     follows (the coordinator picks the candidate: the armed replica or the
//     other), or, armed on the primary, its server restarted (it comes back
//     read_only, and its agent makes it writable again).
func drawPause(r *rand.Rand) []Fault {
	points := []string{failpoint.AfterStartSlave, failpoint.BeforePromote, failpoint.BeforeVIPAcquire}
	pause := Fault{Kind: PauseAt, Point: points[r.IntN(len(points))], Target: TargetReplica, Index: r.IntN(2)}
	pause.For = between(r, minPauseFor, maxPauseFor)
	trigger := Fault{Target: TargetPrimary}
	primaryFault := func() Kind { return []Kind{Kill, Stop, CutNetwork, FreezeNode}[r.IntN(4)] }
	switch c := r.IntN(3); {
	case pause.Point == failpoint.AfterStartSlave && c == 0:
		trigger = Fault{Kind: Restart, Target: TargetReplica, Index: pause.Index}
	case pause.Point == failpoint.AfterStartSlave && c == 1:
		trigger.Kind = []Kind{SwitchoverRequest, FailoverRequest, primaryFault()}[r.IntN(3)]
	case pause.Point == failpoint.AfterStartSlave:
		pause.Target, pause.Index = TargetPrimary, 0
		trigger = Fault{Kind: SwitchoverRequest, Target: TargetCluster}
	case c == 0:
		trigger = Fault{Kind: SwitchoverRequest, Target: TargetReplica, Index: pause.Index}
	case c == 1:
		trigger.Kind = primaryFault()
	default:
		pause.Target, pause.Index = TargetPrimary, 0
		trigger.Kind = Restart
	}
	if trigger.Kind.Class() == ClassRequest && trigger.Target == TargetPrimary {
		trigger.Target = TargetCluster
	}
	trigger.At = between(r, 300*time.Millisecond, 3*time.Second)
	trigger.For = holdFor(r, trigger.Kind, false)
	return []Fault{pause, trigger}
}

// compatible says whether b may overlap a: not two etcd faults, and not two faults
// on one role that act on the same process (a killed server cannot also be stopped).
func compatible(a, b Fault) bool {
	if a.Kind.Class() == ClassEtcd && b.Kind.Class() == ClassEtcd {
		return false
	}
	if !clash(a.Kind.Class(), b.Kind.Class()) {
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

// AckersFullBound is WriteBackBound once the round's nodes are known: the full-disk
// bound (SettleBound) also when every node left to acknowledge the final primary's
// commits (every other one not quarantined) had its disk full in the round (full
// names them), as when a replica's disk filled while the other replica was the
// primary that failed and is now quarantined; else bound. A cluster with no node
// left to acknowledge keeps bound: its writes cannot come back at all.
func (s Schedule) AckersFullBound(bound time.Duration, full []string, final Cluster) time.Duration {
	ackers := 0
	for _, n := range final.sorted() {
		if n.Name == final.Primary || n.Role == "quarantined" {
			continue
		}
		if !slices.Contains(full, n.Name) {
			return bound
		}
		ackers++
	}
	if ackers == 0 {
		return bound
	}
	return max(bound, s.SettleBound())
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
