package reconcile

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// A quarantined node's way back is decided by one rule, CheckRejoin, applied twice:
// by `baton rejoin` before it files a request (PrecheckRejoin, on what the node's
// agent published in etcd) and by the node's agent on the request it finds (Analyze,
// on its own look into its binary logs). The command refuses at once what the agent
// would refuse, and never allows what the agent would not.

// RejoinVerdict is what the evidence about a quarantined node's errant GTIDs allows.
type RejoinVerdict int

// Rejoin verdicts.
const (
	// RejoinUnchecked: nothing is known of the errant GTIDs yet: the node's agent
	// looks them up in its binary logs first. Nothing is repaired on no evidence.
	RejoinUnchecked RejoinVerdict = iota
	// RejoinPhantoms: every errant GTID is a phantom (in no binary log): a repair
	// loses nothing written.
	RejoinPhantoms
	// RejoinDiscard: real errant transactions, and the operator's request says to
	// discard them.
	RejoinDiscard
	// RejoinRefused: no repair; the reason says why.
	RejoinRefused
)

func (v RejoinVerdict) String() string {
	switch v {
	case RejoinUnchecked:
		return "unchecked"
	case RejoinPhantoms:
		return "phantoms"
	case RejoinDiscard:
		return "discard"
	case RejoinRefused:
		return "refused"
	}
	return fmt.Sprintf("rejoin_verdict(%d)", int(v))
}

// CheckRejoin says what a repair of a quarantined node may do: errant is the node's
// errant GTID set now, txns what its binary logs say of each errant GTID, req the
// operator's rejoin request (nil for the agent's own repair of phantoms). The reason
// goes with RejoinRefused and RejoinUnchecked. Pure.
func CheckRejoin(errant string, txns []replication.ErrantTxn, req *cluster.RejoinRequest) (RejoinVerdict, string) {
	if req != nil && req.Errant != "" && req.Errant != errant {
		return RejoinRefused, fmt.Sprintf("the errant GTIDs are now %s, not %s as when the request was made: look again (baton status)", errant, req.Errant)
	}
	if len(txns) == 0 {
		return RejoinUnchecked, "its errant GTIDs are not looked up in its binary logs yet"
	}
	var real []string
	for _, t := range txns {
		if t.Kind != replication.ErrantPhantom {
			real = append(real, DescribeErrant(t))
		}
	}
	switch {
	case len(real) == 0:
		return RejoinPhantoms, ""
	case req != nil && req.DiscardErrant:
		return RejoinDiscard, ""
	}
	return RejoinRefused, fmt.Sprintf("real errant transactions, in its binlog:\n  %s\ngive --discard-errant to discard them (they are lost to the cluster), or rebuild the node",
		strings.Join(real, "\n  "))
}

// DescribeErrant says what one errant GTID is, with its first event when known.
func DescribeErrant(t replication.ErrantTxn) string {
	switch {
	case t.Kind == replication.ErrantPhantom:
		return t.GTID + ": phantom (in no binary log)"
	case t.First != nil:
		return fmt.Sprintf("%s: %s, first event %s", t.GTID, t.Kind, t.First)
	case t.Note != "":
		return fmt.Sprintf("%s: %s (%s)", t.GTID, t.Kind, t.Note)
	}
	return t.GTID + ": " + t.Kind.String()
}

// ErrUnknownNode says a rejoin names a node the cluster does not know: bad input.
var ErrUnknownNode = errors.New("unknown node")

// RejoinRefusal says why a rejoin may not be filed now.
type RejoinRefusal struct{ Why string }

func (r *RejoinRefusal) Error() string { return r.Why }

// PrecheckRejoin says whether an operator's rejoin of node, with discard, may be
// filed, on the cluster's state in etcd (snap): nil to file it; an error wrapping
// ErrUnknownNode for a node the cluster does not know; a *RejoinRefusal otherwise,
// saying why. The node's agent decides again on what it finds (Analyze),
// with the same rule for the errant transactions (CheckRejoin). Pure.
func PrecheckRejoin(snap cluster.Snapshot, node string, discard bool) error {
	n, live := snap.Nodes[node]
	_, member := snap.Members[node]
	refuse := func(format string, args ...any) error {
		return &RejoinRefusal{Why: fmt.Sprintf(format, args...)}
	}
	switch {
	case node == "":
		return fmt.Errorf("%w: the node name is empty", ErrUnknownNode)
	case !live && !member && node != snap.Primary.Node:
		known := make([]string, 0, len(snap.Nodes))
		for name := range snap.Nodes {
			known = append(known, name)
		}
		slices.Sort(known)
		return fmt.Errorf("%w %q (known: %s)", ErrUnknownNode, node, strings.Join(known, ", "))
	case node == snap.Primary.Node:
		return refuse("%s is the primary of record: it has nothing to rejoin", node)
	case snap.Leader == node:
		return refuse("%s holds the leader key: wait until its agent has fenced it", node)
	case !live:
		return refuse("%s's agent is not running: nothing would carry it out", node)
	case n.Role != cluster.RoleQuarantined:
		role := string(n.Role)
		if role == "" {
			role = "-"
		}
		return refuse("%s is not quarantined (role %s): nothing to rejoin", node, role)
	}
	// What the agent published is the evidence; none yet: the agent looks first, and
	// decides on the request once it has.
	req := cluster.RejoinRequest{Node: node, Errant: n.Errant, DiscardErrant: discard}
	if v, why := CheckRejoin(n.Errant, n.ErrantTxns, &req); v == RejoinRefused {
		return refuse("%s: %s", node, why)
	}
	return nil
}

// MaxUndo bounds how many real errant transactions a node undoes by itself: more is
// more than a cut-off primary writes in the seconds before its failover.
const MaxUndo = 100

// UndoCheck says whether a node may undo its real errant transactions in place
// (MariaDB's flashback) by itself, with the cluster's rejoin mode: every one
// written whole in its binary log (so that the archive holds it) as row events
// alone (what flashback reverses), at most MaxUndo, on MariaDB; and the mode
// allows it, or they touch Baton's own schema alone (its heartbeat writes, which
// no person needs to read). why says what stops it, or what allows it. Pure.
func UndoCheck(ev replication.ErrantEvidence, mode cluster.RejoinMode) (ok bool, why string) {
	if ev.Flavor != replication.FlavorMariaDB {
		return false, "only MariaDB's flashback can undo errant transactions in place"
	}
	real := ev.Real()
	if len(real) == 0 {
		return false, "no real errant transaction"
	}
	if len(real) > MaxUndo {
		return false, fmt.Sprintf("%d real errant transactions, more than the %d a node undoes by itself", len(real), MaxUndo)
	}
	own := true
	for _, t := range real {
		switch {
		case t.Kind != replication.ErrantReal || t.First == nil:
			return false, fmt.Sprintf("%s cannot be read from the binary log (%s): it could not be archived", t.GTID, orUnknownNote(t))
		case !t.RowsOnly && t.Note != "":
			return false, fmt.Sprintf("%s: %s: flashback cannot undo it", t.GTID, t.Note)
		case !t.RowsOnly:
			return false, fmt.Sprintf("%s is a statement or DDL (first event %s): flashback undoes row changes only", t.GTID, t.First)
		case !t.Transactional:
			return false, fmt.Sprintf("%s changes a non-transactional table (%s: its binlog group ends in a COMMIT statement, not an Xid, or one of them is not InnoDB): no rollback could take a failed undo back", t.GTID, strings.Join(t.Tables, ", "))
		}
		for _, table := range t.Tables {
			if !strings.HasPrefix(table, detector.Schema+".") {
				own = false
			}
		}
	}
	switch {
	case own:
		return true, "they touch Baton's own schema alone (" + detector.Schema + ".*)"
	case mode.Repairs():
		return true, "rejoin mode " + string(cluster.RejoinArchiveAndRepair)
	}
	return false, "rejoin mode is " + mode.String() + " (baton policy: rejoin " + string(cluster.RejoinArchiveAndRepair) + " lets nodes undo row changes by themselves)"
}

func orUnknownNote(t replication.ErrantTxn) string {
	if t.Note != "" {
		return t.Note
	}
	return t.Kind.String()
}
