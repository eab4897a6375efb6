package reconcile

import (
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// NodeAction is what a reconciler is to do with its own node at one pass. The zero
// value is NodeWait: doing nothing is the one reading of an unset action that can
// never make a server writable.
type NodeAction int

// Node actions.
const (
	// NodeWait: nothing to do at this pass; wait for etcd or the server to change.
	NodeWait NodeAction = iota
	// NodeReadServer: what etcd alone decides is done; read the local server and
	// analyse again.
	NodeReadServer
	// NodeFenceForIntent: a flow is moving the primary away from this node, the
	// primary of record: make its server read_only now, keep the virtual IP and the
	// leader key until the commit.
	NodeFenceForIntent
	// NodeAwaitBootstrap: no primary of record, and the server is not a writable
	// candidate for the first one: probe it as a replica.
	NodeAwaitBootstrap
	// NodePrepareBootstrap: no primary of record, and the server is writable and
	// replicates from none: create the heartbeat table, probe it as a primary.
	NodePrepareBootstrap
	// NodeHoldPrimary: the primary of record holds the leader key: keep the virtual
	// IP, probe the server as a primary.
	NodeHoldPrimary
	// NodeMakeWritable: as NodeHoldPrimary, and the server is read_only: turn
	// read_only off first.
	NodeMakeWritable
	// NodeKeepPaused: the primary of record holds the leader key and its server is
	// read_only, but the cluster is paused: a person set it, leave it.
	NodeKeepPaused
	// NodePromote: the primary of record, and the leader key is free: take it, then
	// make the server writable, then take the virtual IP.
	NodePromote
	// NodeQuarantine: the server has transactions the primary of record lacks: it
	// must not replicate from it; a person decides.
	NodeQuarantine
	// NodeReconnecting: replicating from the primary of record, the IO thread
	// reconnecting by itself: leave it.
	NodeReconnecting
	// NodeFollow: replicate from the primary of record (rejoin, repoint, or restart
	// stopped threads).
	NodeFollow
	// NodeRepairErrant: a quarantined node whose errant GTIDs are all phantoms (or
	// that an operator asked to discard real ones): reset its binlog GTID state to
	// what its binary logs hold, then follow the primary of record.
	NodeRepairErrant
	// NodeUndoErrant: a quarantined node whose real errant transactions may be
	// undone in place (UndoCheck): archive them, undo them with flashback, reset
	// its binlog GTID state, then follow the primary of record.
	NodeUndoErrant
	// NodeRebuild: a node its agent cannot repair in place (or an operator's
	// request): rebuild it from a donor's backup, its old datadir kept; or, with
	// Resume, finish or roll back a rebuild an earlier agent left half done.
	NodeRebuild
)

func (a NodeAction) String() string {
	switch a {
	case NodeWait:
		return "wait"
	case NodeReadServer:
		return "read_server"
	case NodeFenceForIntent:
		return "fence_for_intent"
	case NodeAwaitBootstrap:
		return "await_bootstrap"
	case NodePrepareBootstrap:
		return "prepare_bootstrap"
	case NodeHoldPrimary:
		return "hold_primary"
	case NodeMakeWritable:
		return "make_writable"
	case NodeKeepPaused:
		return "keep_paused"
	case NodePromote:
		return "promote"
	case NodeQuarantine:
		return "quarantine"
	case NodeReconnecting:
		return "reconnecting"
	case NodeFollow:
		return "follow"
	case NodeRepairErrant:
		return "repair_errant"
	case NodeUndoErrant:
		return "undo_errant"
	case NodeRebuild:
		return "rebuild"
	}
	return fmt.Sprintf("node_action(%d)", int(a))
}

// LocalRead says whether, and how, the local server was read at this pass.
type LocalRead int

// Local reads.
const (
	// LocalUnread: not read yet at this pass; nothing is known of the server.
	LocalUnread LocalRead = iota
	// LocalOK: Self.Status holds what the server answered.
	LocalOK
	// LocalFailed: the server did not answer in time (Self.ReadErr says how).
	LocalFailed
)

func (l LocalRead) String() string {
	switch l {
	case LocalUnread:
		return "unread"
	case LocalOK:
		return "ok"
	case LocalFailed:
		return "failed"
	}
	return fmt.Sprintf("local_read(%d)", int(l))
}

// Self is this node as its reconciler sees it at one pass: with the cluster's
// Snapshot, the input of Analyze.
type Self struct {
	Node string
	// Lease is this agent's session lease: the leader key is this node's only when
	// it is attached to it.
	Lease clientv3.LeaseID
	Read  LocalRead
	// Status is the local server's, when Read is LocalOK; its zero value reads as a
	// writable primary, so nothing looks at it otherwise.
	Status  replication.Status
	ReadErr error
	// VIPHeld: this node holds the virtual IP, as read at this pass.
	VIPHeld bool
	// FlowFenced identifies the latest flow the server was fenced for (IntentKey),
	// "" when none; FlowFencedEpoch is that flow's epoch.
	FlowFenced      string
	FlowFencedEpoch uint64
	// SemiSync: the cluster is configured for semi-sync replication; a writable
	// primary must have its source side on.
	SemiSync bool
	// ErrantCheck is what the reconciler found in its server's binary logs about the
	// errant GTIDs it quarantined the node for; nil when it has not looked.
	ErrantCheck *ErrantCheck
	// InspectBackoff: the latest look into the binary logs failed a moment ago; do
	// not ask for another yet.
	InspectBackoff bool
	// InspectErr says why the latest look into the binary logs failed, "" when it
	// did not (or none was made).
	InspectErr string
	// UndoRefused says why the flashback of the current errant set (ErrantCheck's)
	// was refused, a refusal that would come again (the script does not reverse
	// every transaction): it is rebuilt instead. "" when none was.
	UndoRefused string
	// DiskRoom: the detector's latest round read every data filesystem with room
	// (see DiskRoom) and the storage probe, if any, wrote.
	DiskRoom bool
	// CanArchive: the reconciler can archive errant transactions (it has the
	// client programs and an archive directory); without it nothing real is undone.
	CanArchive bool
	// Rebuild is what the reconciler knows of rebuilding this node.
	Rebuild RebuildSelf
}

// RebuildSelf is a node's rebuild as its reconciler knows it at one pass.
type RebuildSelf struct {
	// Running is the rebuild under way, nil when none: until it is over nothing
	// else touches the node, which stays quarantined.
	Running *cluster.RebuildProgress
	// Interrupted: an earlier agent left a rebuild half done (its journal is in
	// the state directory) and none runs: it is resumed before anything else.
	Interrupted bool
	// Stuck: a rebuild left the node in a state its agent cannot mend now (a
	// rollback that failed, waiting to be tried again; a journal it cannot read):
	// the node waits, quarantined, saying why.
	Stuck string
	// Able: this agent can rebuild its node (the server's stop and start commands,
	// the backup programs, a peer secret); Unable says why not. False is the zero
	// value: no rebuild.
	Able   bool
	Unable string
	// Backoff: the latest rebuild failed a moment ago: none is started by itself
	// yet (an operator's request is carried out all the same). Failed is that
	// failure.
	Backoff bool
	Failed  *cluster.RebuildProgress
}

// ErrantCheck is the evidence about a quarantined node's errant GTIDs: Errant is the
// set looked up (Analysis.Errant at the time), Evidence what the binlog said.
type ErrantCheck struct {
	Errant   string
	Evidence replication.ErrantEvidence
}

// Analysis is Analyze's answer: one action, and what goes with it.
type Analysis struct {
	Action NodeAction
	Reason string
	// Err is what went wrong behind a NodeWait, for the log.
	Err error
	// Fence asks for the node to be fenced before Action: the virtual IP let go, the
	// server made read_only (unless ServerFenced), the leader key released.
	Fence    bool
	FenceWhy string
	// ServerFenced: the server was fenced (or that was tried) for the flow that moved
	// the primary away; only the virtual IP and the leader key are left to let go.
	ServerFenced bool
	// Role is what the node is recorded as once Action is done; "" leaves it.
	Role cluster.Role
	// Probe is how the detector is to probe the server once Action is done;
	// detector.NoRole leaves it.
	Probe detector.Probes
	// Epoch is the primary epoch acted on (the flow's for NodeFenceForIntent).
	Epoch uint64
	// IntentKey identifies the flow of NodeFenceForIntent.
	IntentKey string
	// Source is where NodeFollow points replication (user and password are the
	// reconciler's); Following says it already does: a restart, not a rejoin.
	Source    replication.Source
	Following bool
	// Errant is the GTID set of NodeQuarantine and NodeRepairErrant.
	Errant string
	// Inspect asks, with NodeQuarantine, to look the errant GTIDs up in the local
	// binary logs against Primary (the primary of record's identity and GTID set).
	Inspect bool
	Primary replication.Server
	// Discard: NodeRepairErrant discards real errant transactions, on Request.
	Discard bool
	// Request is the operator's rejoin request NodeRepairErrant carries out; Answer
	// is the reply to write to a rejoin request at this pass (a refusal), nil for none.
	Request    *cluster.RejoinRequest
	RequestRev int64
	Answer     *cluster.RejoinRequest
	// Donor is the node whose backup NodeRebuild copies; RebuildRequest the
	// operator's request it carries out (nil when the agent decided by itself),
	// RebuildRev that request's mod revision; Resume says NodeRebuild is to finish
	// or roll back an interrupted rebuild. RebuildAnswer is the reply to write to a
	// rebuild request at this pass (a refusal), nil for none.
	Donor          string
	RebuildRequest *cluster.RebuildRequest
	RebuildRev     int64
	Resume         bool
	RebuildAnswer  *cluster.RebuildRequest
	// RepairSemiSync asks, with NodeHoldPrimary, to turn the semi-sync source side
	// back on: the primary writes without the protection it is configured with (someone
	// or something turned it off), and every commit is acknowledged before any replica
	// has it.
	RepairSemiSync bool
}

// IntentKey identifies a flow: the same intent read twice gives the same key.
func IntentKey(in cluster.Intent) string {
	return fmt.Sprintf("%d/%s/%s", in.Epoch, in.Kind, in.Started.Format(time.RFC3339Nano))
}

// Analyze says what the reconciler is to do with its own node. It is pure: the same
// snapshot and self always give the same answer. Called with s.Read == LocalUnread
// it decides only what etcd alone decides (so that a hung local server never holds
// up fencing) and answers NodeReadServer when the server is to be read.
//
// It never answers NodePromote, NodeMakeWritable or NodeHoldPrimary unless this node
// is named, its lease is known, it is the primary of record and no flow is moving
// the primary away from it; and NodePromote only on a server read at this pass.
func Analyze(snap cluster.Snapshot, s Self) Analysis {
	me := s.Node
	if me == "" || s.Lease == clientv3.NoLease {
		return Analysis{Action: NodeWait, Reason: "this node's name or session lease is unknown"}
	}
	p := snap.Primary
	holds := snap.Leader == me && snap.LeaderLease == s.Lease
	if in := snap.Intent; in != nil && in.From == me && p.Node == me {
		key := IntentKey(*in)
		if key == s.FlowFenced {
			return Analysis{Action: NodeWait, Reason: fmt.Sprintf("fenced for the %s away from this node already", in.Kind)}
		}
		why := fmt.Sprintf("a %s away from this node is in progress", in.Kind)
		return Analysis{Action: NodeFenceForIntent, Reason: why, FenceWhy: why, Role: cluster.RoleFenced, Probe: detector.Replica,
			Epoch: in.Epoch, IntentKey: key}
	}
	notPrimary := "not the primary of record (now " + p.Node + ")"
	if s.Read == LocalUnread {
		a := Analysis{Action: NodeReadServer, Reason: "read the local server"}
		if holds && p.Node != me {
			// Trying again to fence a server fenced for the flow would only hold the
			// leader key longer.
			a.Fence, a.FenceWhy = true, notPrimary
			a.ServerFenced = s.FlowFenced != "" && s.FlowFencedEpoch == p.Epoch-1
		}
		return a
	}
	if rb := s.Rebuild; rb.Running != nil || rb.Interrupted || rb.Stuck != "" {
		return analyzeRebuilding(snap, s, holds)
	}
	st := s.Status
	read := s.Read == LocalOK
	switch {
	case p.Node == "":
		if read && !st.ReadOnly && st.Role == replication.RolePrimary {
			return Analysis{Action: NodePrepareBootstrap, Role: cluster.RoleUnknown, Probe: detector.Primary,
				Reason: "no primary of record yet; the server is writable and replicates from none"}
		}
		return Analysis{Action: NodeAwaitBootstrap, Role: cluster.RoleUnknown, Probe: detector.Replica,
			Reason: "no primary of record yet; the server is not a writable primary"}
	case p.Node == me:
		a := analyzePrimary(snap, s, holds)
		if req, ok := snap.Rebuilds[me]; ok && req.Pending() {
			a.RebuildAnswer = rebuildAnswer(req, cluster.RequestRefused, me+" is the primary of record: it is never rebuilt (fail it over first)")
			a.RebuildRev = snap.RebuildModRev[me]
		}
		return a
	}
	return withRebuildRequest(snap, s, analyzeReplica(snap, s, holds, notPrimary))
}

// analyzePrimary is Analyze for the primary of record.
func analyzePrimary(snap cluster.Snapshot, s Self, holds bool) Analysis {
	p := snap.Primary
	read := s.Read == LocalOK
	switch {
	case holds && read && s.Status.ReadOnly && snap.Settings.Paused:
		return Analysis{Action: NodeKeepPaused, Role: cluster.RolePrimary, Epoch: p.Epoch,
			Reason: "the primary of record is read_only and the cluster is paused: a person set it"}
	case holds && read && s.Status.ReadOnly:
		return Analysis{Action: NodeMakeWritable, Role: cluster.RolePrimary, Probe: detector.Primary, Epoch: p.Epoch,
			Reason: "the primary of record is read_only: turning it off (pause the cluster to keep read_only on the primary)"}
	case holds && read && s.SemiSync && s.Status.SemiSync.Available && !s.Status.SemiSync.SourceEnabled:
		return Analysis{Action: NodeHoldPrimary, Role: cluster.RolePrimary, Probe: detector.Primary, Epoch: p.Epoch, RepairSemiSync: true,
			Reason: "the primary of record writes with the semi-sync source side off: turning it back on"}
	case holds:
		return Analysis{Action: NodeHoldPrimary, Role: cluster.RolePrimary, Probe: detector.Primary, Epoch: p.Epoch,
			Reason: "the primary of record holds the leader key"}
	case snap.Leader != "":
		// The old primary's agent still holds it: it lets go once fenced, or its lease
		// expires. Never writable before that.
		return Analysis{Action: NodeWait, Role: cluster.RoleFenced,
			Reason: "the primary of record, but " + snap.Leader + "'s session still holds the leader key"}
	case !read:
		return Analysis{Action: NodeWait, Err: s.ReadErr, Reason: "the primary of record, but the local server does not answer"}
	}
	return Analysis{Action: NodePromote, Role: cluster.RolePrimary, Probe: detector.Primary, Epoch: p.Epoch,
		Reason: "the primary of record, and the leader key is free"}
}

// analyzeReplica is Analyze for every node but the primary of record.
func analyzeReplica(snap cluster.Snapshot, s Self, holds bool, notPrimary string) Analysis {
	p := snap.Primary
	st := s.Status
	read := s.Read == LocalOK
	a := Analysis{Probe: detector.Replica, Epoch: p.Epoch}
	if holds || s.VIPHeld || (read && !st.ReadOnly) {
		a.Fence, a.FenceWhy = true, notPrimary
	}
	wait := func(role cluster.Role, err error, format string, args ...any) Analysis {
		a.Action, a.Role, a.Err, a.Reason = NodeWait, role, err, fmt.Sprintf(format, args...)
		return a
	}
	if !read {
		// Not logged: the detector's verdict says it, and this would at every pass.
		return wait("", nil, "the local server does not answer")
	}
	if in := snap.Intent; in != nil {
		return wait("", nil, "a %s from %s is in progress: replication is the coordinator's", in.Kind, in.From)
	}
	host, port, err := replication.SplitAddr(p.Addr)
	if err != nil {
		return wait("", fmt.Errorf("primary of record %s has no usable address %q: %w", p.Node, p.Addr, err), "the primary of record has no usable address")
	}
	a.Source = replication.Source{Host: host, Port: port}
	a.Following = st.Role == replication.RoleReplica && st.SourceHost == host && st.SourcePort == port
	// Only a server with nothing the primary lacks may follow it: checked before a
	// rejoin, and while following too, for a replica the flow repointed that had
	// received the old primary's last events after the new one was ranked (it then
	// fails on error 1236, and would be repointed forever). The primary's GTID set as
	// its agent published it since its promotion: an older one would lack what this
	// node received just before, and make it look errant. The primary's own newer
	// writes are never errant, so a published set behind a following replica is fine.
	ps, ok := snap.Nodes[p.Node]
	published := ok && ps.GTID != "" && ps.Role == cluster.RolePrimary && ps.Epoch == p.Epoch
	if !a.Following && !published && !holdsNothingMore(st, p) {
		return wait(cluster.RoleFenced, nil, "waiting for %s to publish its GTID set as primary at epoch %d", p.Node, p.Epoch)
	}
	if published {
		pset, err := replication.ParseGTIDSet(st.Executed.Flavor(), ps.GTID)
		if err != nil {
			return wait("", fmt.Errorf("parse the primary's GTID set: %w", err), "the primary's GTID set does not parse")
		}
		errant, err := replication.Errant(st.Server(), replication.Server{ServerID: p.ServerID, ServerUUID: p.ServerUUID, Executed: pset})
		if err != nil {
			return wait("", fmt.Errorf("errant check: %w", err), "the errant check failed")
		}
		if !errant.IsEmpty() {
			a.Action, a.Role, a.Errant = NodeQuarantine, cluster.RoleQuarantined, errant.String()
			a.Primary = replication.Server{ServerID: p.ServerID, ServerUUID: p.ServerUUID, Executed: pset}
			return analyzeErrant(snap, s, a)
		}
	}
	if req, ok := snap.Rejoins[s.Node]; ok && req.Pending() {
		a.Answer, a.RequestRev = answer(req, cluster.RequestRefused, "not quarantined: no errant transactions against the primary of record"), snap.RejoinModRev[s.Node]
	}
	if a.Following && st.SQLThread != replication.ThreadRunning && divergedErrno(st.LastSQLErrno) {
		// The replica's rows differ from the primary's although its GTID set does not
		// say so (a row committed in InnoDB whose binlog write failed, on a read-only
		// filesystem, is one way): restarting replication fails again on the same
		// event. A person rebuilds it; until then it is never promoted.
		a.Action, a.Role = NodeQuarantine, cluster.RoleQuarantined
		return autoRebuild(snap, s, a, fmt.Sprintf("data diverged from the primary of record: replication stopped on error %d (%s)",
			st.LastSQLErrno, st.LastSQLError))
	}
	if a.Following && st.IOThread != replication.ThreadRunning && purgedErr(st.LastIOErrno, st.LastIOError) {
		// The primary no longer has the binary logs that hold what this replica has
		// yet to fetch (a DBA purged them while it was stopped or cut off): no
		// restart of replication fetches them. It is rebuilt, as diverged data is
		// (or a person puts the files back); until then it is never promoted.
		a.Action, a.Role = NodeQuarantine, cluster.RoleQuarantined
		return autoRebuild(snap, s, a, fmt.Sprintf("the binary logs this replica needs were purged on the primary of record: replication stopped on error %d (%s)",
			st.LastIOErrno, st.LastIOError))
	}
	if a.Following && st.IOThread == replication.ThreadConnecting && st.SQLThread == replication.ThreadRunning {
		// Reconnecting to the primary of record by itself: leave it. Restarting it
		// would wait for a connect that may hang, and block the coordinator's STOP
		// SLAVE behind it.
		a.Action, a.Role, a.Reason = NodeReconnecting, cluster.RoleReplica, "reconnecting to the primary of record by itself"
		return a
	}
	a.Action, a.Role = NodeFollow, cluster.RoleReplica
	a.Reason = "replicate from the primary of record " + p.Node
	return a
}

// holdsNothingMore says whether the flow's commit of p shows that the server (st)
// has nothing p lacks: every transaction of st is in the set p was seen to apply
// before the commit (Primary.Executed), so it may follow p before p publishes its
// own set. Only ever a permission to follow: a set that is not known, does not
// parse or lacks something says nothing, and the replica waits for the published
// set, on which alone it may be quarantined.
func holdsNothingMore(st replication.Status, p cluster.Primary) bool {
	if p.Executed == "" || st.Executed.Flavor() == replication.FlavorUnknown {
		return false
	}
	set, err := replication.ParseGTIDSet(st.Executed.Flavor(), p.Executed)
	if err != nil {
		return false
	}
	errant, err := replication.Errant(st.Server(), replication.Server{ServerID: p.ServerID, ServerUUID: p.ServerUUID, Executed: set})
	return err == nil && errant.IsEmpty()
}

// analyzeErrant is Analyze for a node with errant GTIDs (a, NodeQuarantine): it
// stays quarantined, unless the evidence of its binary logs allows a repair.
//
// A repair (NodeRepairErrant) happens on its own only when every errant GTID is a
// phantom (absent from the binary logs: nothing written is lost), and on an
// operator's request also for real ones when the request says to discard them; and
// in both cases only when the server is read_only and needs no fence (it holds
// neither the leader key nor the virtual IP), it is not the primary of record (it
// cannot be: Analyze comes here for other nodes only) and no flow is in progress
// (none could name it as candidate meanwhile: analyzeReplica waits while an intent
// exists, and Rank never picks a server with errant GTIDs), and the detector finds
// room on its disk again (a repair writes a new binlog file).
func analyzeErrant(snap cluster.Snapshot, s Self, a Analysis) Analysis {
	var req *cluster.RejoinRequest
	if r, ok := snap.Rejoins[s.Node]; ok && r.Pending() {
		req = &r
		a.RequestRev = snap.RejoinModRev[s.Node]
	}
	check := s.ErrantCheck
	if check == nil || check.Errant != a.Errant {
		a.Inspect = !s.InspectBackoff
		a.Reason = "this server has transactions the primary never had: looking them up in its binary logs"
		if s.InspectErr != "" {
			a.Reason += fmt.Sprintf(" (the last look failed: %s; tried again every %s)", s.InspectErr, inspectBackoff)
		}
		return a
	}
	ev := check.Evidence
	verdict, why := CheckRejoin(a.Errant, ev.Txns, req)
	blocked := ""
	switch {
	case a.Fence:
		blocked = "it must be fenced first"
	case !s.Status.ReadOnly:
		blocked = "its server is writable"
	case !s.DiskRoom:
		blocked = "its disk has no room yet"
	}
	real := ev.Real()
	var realGTIDs []string
	for _, t := range real {
		realGTIDs = append(realGTIDs, t.GTID)
	}
	switch {
	case req != nil && (verdict == RejoinRefused || verdict == RejoinUnchecked):
		a.Answer = answer(*req, cluster.RequestRefused, why)
	case req != nil && blocked != "":
		a.Answer = answer(*req, cluster.RequestRefused, "not now: "+blocked)
	case req != nil:
		a.Action, a.Request, a.Discard = NodeRepairErrant, req, verdict == RejoinDiscard
		a.Reason = fmt.Sprintf("%s asked to rejoin: ", orUnknown(req.By))
		if verdict == RejoinPhantoms {
			a.Reason += "every errant GTID is a phantom (in no binary log)"
		} else {
			a.Reason += "real errant transactions " + strings.Join(realGTIDs, ", ") + " discarded on request"
		}
		return a
	case verdict == RejoinPhantoms && blocked == "":
		a.Action = NodeRepairErrant
		a.Reason = "every errant GTID (" + strings.Join(ev.GTIDs(), ", ") + ") is a phantom: numbered, in no binary log; the disk has room; read_only"
		return a
	}
	if verdict == RejoinPhantoms {
		a.Reason = "every errant GTID is a phantom (in no binary log); not repaired yet: " + blocked
		return a
	}
	undo, why := UndoCheck(ev, rejoinMode(snap))
	if undo && s.UndoRefused != "" {
		undo, why = false, "their flashback was refused: "+s.UndoRefused
	}
	switch {
	case undo && blocked == "" && s.CanArchive:
		a.Action = NodeUndoErrant
		a.Reason = "real errant transactions " + strings.Join(realGTIDs, ", ") + " archived, then undone in place: " + why
	case undo && !s.CanArchive:
		a.Reason = "real errant transactions (" + strings.Join(realGTIDs, ", ") + ") could be undone (" + why + "), but this agent cannot archive them (no client programs or archive directory): " +
			"baton rejoin " + s.Node + " --discard-errant --yes once they are kept elsewhere"
	case undo:
		a.Reason = "real errant transactions (" + strings.Join(realGTIDs, ", ") + ") to undo in place (" + why + "); not yet: " + blocked
	default:
		return autoRebuild(snap, s, a, "real errant transactions in the binary log ("+strings.Join(realGTIDs, ", ")+"), not undone in place: "+why)
	}
	return a
}

// autoRebuild is Analyze for a quarantined node its agent cannot repair in place
// (a, NodeQuarantine; stuck says why): with the rejoin mode archive-and-repair it is
// rebuilt from a donor (NodeRebuild) when its agent can, its server is read_only and
// needs no fence, no rebuild failed a moment ago and a healthy donor exists
// (ChooseDonor); it is never the primary of record (Analyze comes here for other
// nodes only) and no flow is in progress (analyzeReplica waits while an intent
// exists). Otherwise it stays quarantined, its reason saying why and the command a
// person runs. Pure.
func autoRebuild(snap cluster.Snapshot, s Self, a Analysis, stuck string) Analysis {
	rebuild := "baton rebuild " + s.Node + " --yes"
	manual := rebuild + " (its old datadir is kept)"
	if a.Errant != "" {
		manual = "baton rejoin " + s.Node + " --discard-errant --yes (archived first), or " + manual
	}
	rb := s.Rebuild
	switch {
	case !rejoinMode(snap).Repairs():
		a.Reason = stuck + "; rejoin mode " + rejoinMode(snap).String() + ": a person decides: " + manual
		return a
	case !rb.Able:
		a.Reason = stuck + "; not rebuilt by itself: this agent cannot rebuild its node (" + orDash(rb.Unable) + "): a person decides: " + manual
		return a
	case a.Fence || !s.Status.ReadOnly:
		a.Reason = stuck + "; to be rebuilt once fenced"
		return a
	case rb.Backoff:
		a.Reason = stuck + "; the last rebuild failed, tried again later (or " + rebuild + ")"
		if rb.Failed != nil {
			a.Reason = stuck + "; the last rebuild failed (" + rb.Failed.Error + "), tried again later (or " + rebuild + ")"
		}
		return a
	}
	donor, err := ChooseDonor(snap, s.Node, s.Status.Flavor.String(), "")
	if err != nil {
		a.Reason = stuck + "; not rebuilt: " + err.Error()
		return a
	}
	a.Action, a.Donor = NodeRebuild, donor
	a.Reason = stuck + "; rebuilt from " + donor + "'s backup (rejoin mode " + string(cluster.RejoinArchiveAndRepair) + "), its old datadir kept"
	return a
}

// withRebuildRequest carries out an operator's pending rebuild request for a node
// that is not the primary of record, a being Analyze's answer without it: the node
// is rebuilt (NodeRebuild) when its server answers, is read_only and needs no fence,
// its agent can rebuild it and a donor fits (the one asked for, or ChooseDonor's);
// the request is refused, with the reason, when the server does not answer, the
// agent cannot, or no donor fits. While a flow is in progress, a repair in place is
// under way, its errant transactions are being looked up (to archive them), or the
// node is being fenced at this pass, it waits. Pure.
func withRebuildRequest(snap cluster.Snapshot, s Self, a Analysis) Analysis {
	req, ok := snap.Rebuilds[s.Node]
	if !ok || !req.Pending() {
		return a
	}
	rev := snap.RebuildModRev[s.Node]
	refuse := func(why string) Analysis {
		a.RebuildAnswer, a.RebuildRev = rebuildAnswer(req, cluster.RequestRefused, why), rev
		return a
	}
	switch {
	case snap.Intent != nil:
		return a // the coordinator's flow first; carried out after it
	case a.Action == NodeRepairErrant || a.Action == NodeUndoErrant:
		return a // a repair in place first (a rejoin request, or Baton's own writes)
	case a.Inspect:
		return a // its errant transactions looked up first, so that they are archived
	case s.Read != LocalOK:
		return refuse("not now: its server does not answer")
	case !s.Rebuild.Able:
		return refuse("this agent cannot rebuild its node: " + orDash(s.Rebuild.Unable))
	case a.Fence || !s.Status.ReadOnly:
		return a // fenced at this pass; carried out at the next
	case a.Source.Host == "":
		return a // the primary of record has no usable address yet: nothing to follow
	}
	donor, err := ChooseDonor(snap, s.Node, s.Status.Flavor.String(), req.From)
	if err != nil {
		return refuse(err.Error())
	}
	a.Action, a.Role, a.Donor, a.RebuildRequest, a.RebuildRev = NodeRebuild, cluster.RoleQuarantined, donor, &req, rev
	a.Reason = fmt.Sprintf("%s asked to rebuild this node from %s's backup", orUnknown(req.By), donor)
	return a
}

// analyzeRebuilding is Analyze for a node being rebuilt, or left half rebuilt by an
// earlier agent (its journal found at start): it stays quarantined and never
// writable (a server found writable, or a leader key or virtual IP held, is fenced),
// whoever the primary of record is; requests for it are refused; and an interrupted
// rebuild is resumed (NodeRebuild with Resume: finished or rolled back) before
// anything else. Pure.
func analyzeRebuilding(snap cluster.Snapshot, s Self, holds bool) Analysis {
	a := Analysis{Action: NodeWait, Role: cluster.RoleQuarantined, Probe: detector.Replica, Epoch: snap.Primary.Epoch}
	if holds || s.VIPHeld || (s.Read == LocalOK && !s.Status.ReadOnly) {
		a.Fence, a.FenceWhy = true, "being rebuilt: never writable before the rebuild is over"
	}
	if req, ok := snap.Rebuilds[s.Node]; ok && req.Pending() {
		a.RebuildAnswer, a.RebuildRev = rebuildAnswer(req, cluster.RequestRefused, "a rebuild of this node is under way already"), snap.RebuildModRev[s.Node]
	}
	if req, ok := snap.Rejoins[s.Node]; ok && req.Pending() {
		a.Answer, a.RequestRev = answer(req, cluster.RequestRefused, "this node is being rebuilt"), snap.RejoinModRev[s.Node]
	}
	switch rb := s.Rebuild; {
	case rb.Running != nil:
		a.Reason = fmt.Sprintf("being rebuilt from %s's backup: %s", rb.Running.From, rb.Running.Step)
		return a
	case !rb.Interrupted:
		a.Reason = "a rebuild left this node to mend: " + rb.Stuck
		return a
	}
	a.Action, a.Resume = NodeRebuild, true
	a.Reason = "a rebuild an earlier agent left half done: finish it, or put the old datadir back"
	return a
}

// rebuildAnswer is req with its outcome.
func rebuildAnswer(req cluster.RebuildRequest, st cluster.RequestState, why string) *cluster.RebuildRequest {
	req.State, req.Error = st, why
	return &req
}

// rejoinMode is the cluster's rejoin mode: manual when its policy is missing or
// unreadable.
func rejoinMode(snap cluster.Snapshot) cluster.RejoinMode {
	if snap.Policy == nil {
		return cluster.RejoinManual
	}
	return snap.Policy.Policy.Rejoin
}

// answer is req with its outcome.
func answer(req cluster.RejoinRequest, st cluster.RequestState, why string) *cluster.RejoinRequest {
	req.State, req.Error = st, why
	return &req
}

func orUnknown(s string) string {
	if s == "" {
		return "an operator"
	}
	return s
}

// purgedErr says whether a replication IO error means the source purged binary
// logs the replica has yet to fetch: MariaDB's fatal error 1236 "Could not find
// GTID state requested by slave in any binlog files ... purged", MySQL's
// ER_SOURCE_HAS_PURGED_REQUIRED_GTIDS (13114). Other fatal binlog errors (1236
// says many things) may pass with a restart, and are left to it.
func purgedErr(n int, msg string) bool {
	return (n == 1236 || n == 13114) && strings.Contains(msg, "purged")
}

// divergedErrno says whether a replication SQL error means the replica's data
// differs from its source's: a row to insert already there (1062), a row to
// change or delete missing (1032).
func divergedErrno(n int) bool { return n == 1062 || n == 1032 }

// DiskRoom says whether a detector report shows room on the data disks: each read,
// none under 2% free (the detector's own "full or nearly" mark), and the storage
// probe, when it ran, wrote. No disks read is no evidence of room.
func DiskRoom(rep detector.Report) bool {
	if len(rep.Disks) == 0 || rep.At.IsZero() {
		return false
	}
	for _, d := range rep.Disks {
		if d.Err != "" || d.Total == 0 || d.Free < d.Total/50 {
			return false
		}
	}
	return rep.Storage == nil || rep.Storage.Class == detector.OK
}
