package cluster

import (
	"fmt"
	"time"
)

// Policy holds the settings Decide weighs. Every coordinator and the CLI decide with
// one Policy, the cluster's, kept under the policy key (see PolicyRecord). The zero
// Policy is not valid (Validate): ConfirmLag must be positive.
type Policy struct {
	// FailoverBlock is the anti-flap window after an automatic or manual failover.
	FailoverBlock time.Duration `json:"failover_block_ns"`
	// ConfirmLag is the heartbeat lag at which a replica confirms that the primary
	// stopped writing.
	ConfirmLag time.Duration `json:"confirm_lag_ns"`
	// SwitchoverMaxLag is the most lag a switchover candidate may have.
	SwitchoverMaxLag time.Duration `json:"switchover_max_lag_ns"`
	// Rejoin is what a quarantined node with real errant transactions does by
	// itself; "" reads as RejoinManual.
	Rejoin RejoinMode `json:"rejoin,omitempty"`
}

// RejoinMode says what a quarantined node whose errant transactions are real (in its
// binary log) does by itself. Errant transactions that touch Baton's own schema
// alone (its heartbeat writes, binlogged as a cut came) are Baton's: they are
// archived and undone whatever the mode.
type RejoinMode string

// Rejoin modes.
const (
	// RejoinManual, the default (and what "" reads as): the node stays quarantined
	// with its reason; a person reads its errant transactions and decides (baton
	// rejoin --discard-errant: archived first, then discarded).
	RejoinManual RejoinMode = "manual"
	// RejoinArchiveAndRepair: the node archives its errant transactions (the
	// archive a DBA reads and re-applies), undoes them in place with MariaDB's
	// flashback when they are row changes, few enough, and follows the primary.
	// Those flashback cannot undo stay quarantined with the command that would.
	RejoinArchiveAndRepair RejoinMode = "archive-and-repair"
)

func (m RejoinMode) String() string {
	if m == "" {
		return string(RejoinManual)
	}
	return string(m)
}

// Valid says whether m is a mode ("" included: manual).
func (m RejoinMode) Valid() bool {
	return m == "" || m == RejoinManual || m == RejoinArchiveAndRepair
}

// Repairs says whether m lets a node undo real errant transactions by itself.
func (m RejoinMode) Repairs() bool { return m == RejoinArchiveAndRepair }

// View is the cluster as read from etcd in one revision: the input of Decide.
type View struct {
	Primary  Primary // zero when the cluster has none yet
	Leader   string  // node whose agent holds the leader key, "" when none
	Settings Settings
	Nodes    map[string]NodeStatus // nodes whose agents are alive
	Request  *Request              // a pending operator request, or nil
	Intent   *Intent               // a flow in progress, or nil
	// Block is the anti-flap mark of the latest failover, nil when none is in force.
	Block *FailoverBlock
	// Members are every node ever seen with a live agent, by node, whether or not
	// its agent is alive now.
	Members map[string]Member
	// PrimaryVerdictSeen is when the deciding coordinator first saw the primary's
	// current verdict (its node and VerdictSince), on the coordinator's own clock,
	// the one Decide's now reads: the semi-sync grace is timed from it. Zero when
	// not known: no grace.
	PrimaryVerdictSeen time.Time
}

// FailoverBlock marks the anti-flap window after a failover. It is a key on an etcd
// lease of the window's length, written in the failover's commit: the window ends
// when etcd expires the lease, timed by the etcd leader alone. Comparing one node's
// wall clock with the time another node wrote would let a coordinator whose clock
// runs ahead fail over again at once, and one whose clock runs behind block for as
// long as the skew. An etcd leader change renews leases, so the window can only grow
// by an election, never shrink. Deleting the key lifts the block.
type FailoverBlock struct {
	Epoch uint64        `json:"epoch"` // the epoch the failover committed
	To    string        `json:"to"`
	For   time.Duration `json:"for_ns"`
	// At is the committing coordinator's wall clock: for people, never compared.
	At time.Time `json:"at"`
}

// Action is what the coordinator is to do.
type Action int

// Actions.
const (
	NoAction      Action = iota
	Bootstrap            // record the one writable server as primary, epoch 1
	Failover             // replace a failed primary
	Switchover           // move a healthy primary, planned
	RefuseRequest        // answer an operator's request with the reason
)

func (a Action) String() string {
	switch a {
	case NoAction:
		return "none"
	case Bootstrap:
		return "bootstrap"
	case Failover:
		return "failover"
	case Switchover:
		return "switchover"
	case RefuseRequest:
		return "refuse"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Decision is Decide's answer.
type Decision struct {
	Action Action
	// From is the primary being replaced; To the chosen node for a bootstrap or a
	// requested target, else "" and the flow ranks Candidates.
	From string
	To   string
	// Candidates are the nodes the flow may promote, by name (ranked later on fresh
	// GTID sets read from the servers).
	Candidates []string
	Manual     bool
	Reason     string
}

// CoordinatorStatus is what the elected coordinator decided last, under the
// decision key on its session lease, for `baton status`: a refused or failed
// failover is visible there, with when it is tried again.
type CoordinatorStatus struct {
	Node   string `json:"node"`
	Action string `json:"action"`
	Reason string `json:"reason"`
	// Tries counts the automatic failovers of this primary that did not complete;
	// LastError says why the latest did not, RetryAt when the next may start.
	Tries     int       `json:"tries,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	RetryAt   time.Time `json:"retry_at,omitempty"`
}
