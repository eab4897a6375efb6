package reconcile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/failpoint"
	"github.com/baton-ha/baton/replication"
)

// VIP moves the virtual IP on this node (vip.Mover in production).
type VIP interface {
	Acquire(ctx context.Context) error
	Release(ctx context.Context) error
	Held(ctx context.Context) (bool, error)
	// Seal makes every Acquire refuse, and stops one in flight, until Unseal: the
	// local fence's latch, so that a pass that checked "not fenced" just before
	// the fence cannot add the address back, or announce it, after the fence's
	// Release.
	Seal()
	Unseal()
}

// Detector is what the reconciler needs of the node's detector.
type Detector interface {
	Report() detector.Report
	SetRole(detector.Probes)
	SetEpoch(uint64)
}

// Local is what the reconciler says to its own node's server: a
// *replication.Instance, or in the hollow-agent benchmark a scripted stand-in.
type Local interface {
	Status(ctx context.Context) (replication.Status, error)
	Promote(ctx context.Context) error
	// Follow makes the server a replica of src. Before it changes anything it takes
	// the server's replication lock (replication.ReplicationLock) and calls confirm
	// (if not nil) with it held: an error leaves replication as it is.
	Follow(ctx context.Context, src replication.Source, confirm func(context.Context) error) error
	Fence(ctx context.Context) (replication.FenceReport, error)
	SetSemiSync(ctx context.Context, source, replica bool) error
	// InspectErrant looks the server's transactions that primary lacks up in its
	// binary logs; RepairErrant forgets those found to be phantoms (or, on an
	// operator's word, discards real ones).
	InspectErrant(ctx context.Context, primary replication.Server, timeout time.Duration) (replication.ErrantEvidence, error)
	RepairErrant(ctx context.Context, ev replication.ErrantEvidence, discard bool) error
}

var _ Local = (*replication.Instance)(nil)

// Archiver keeps a node's errant transactions and undoes them: replication.Tools
// (MariaDB's client programs) in production.
type Archiver interface {
	Archive(ctx context.Context, ev replication.ErrantEvidence, primary replication.Server, header, path string) (replication.Archived, error)
	Flashback(ctx context.Context, ev replication.ErrantEvidence, primary replication.Server, path string) error
	Undo(ctx context.Context, path, errant string) error
}

var _ Archiver = replication.Tools{}

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	Node string
	// Addr is where peers reach this node's server (host:port).
	Addr string
	// Agent is where the other agents reach this node's agent (published in its
	// status, kept under members/); may be empty.
	Agent string
	Store *cluster.Store
	// Cluster is where each pass reads the cluster (the agent's one cache, shared
	// with its coordinator) and what wakes it when a key it acts on changes.
	Cluster cluster.Reader
	Local   Local   // this node's server
	LocalDB *sql.DB // the same server, for the heartbeat bootstrap
	// Tools archives and undoes the node's errant transactions (replication.Tools),
	// into ArchiveDir; either unset: real errant transactions are never undone or
	// discarded by this agent (no archive, no repair).
	Tools      Archiver
	ArchiveDir string
	// Rebuild lets the reconciler rebuild its node from a donor's backup; nil:
	// never. CanDonate: this node's agent streams backups of its server to nodes
	// being rebuilt (published, for their choice of a donor).
	Rebuild   *RebuildConfig
	CanDonate bool
	Detector  Detector
	// Forecasts, when set, returns the latest forecasts of the node's slow loop
	// (detector.Forecaster: auto-increment keys, purge lag, connections), published
	// with those of its disks.
	Forecasts func() []detector.Forecast
	Peer      *PeerWatch // may be nil (single-node clusters, tests)
	VIP       VIP        // may be nil: no virtual IP
	// Repl is how this node's server connects to the primary of record when it
	// replicates: the account and the TLS settings (Host and Port are ignored: they
	// are the primary's).
	Repl replication.Source
	// SemiSync: the cluster runs semi-sync replication. The primary's source side is
	// kept on (repaired when found off), and its state is published.
	SemiSync  bool
	Priority  int
	NoPromote bool
	// Policy is the failover policy of this node's configuration file: published in
	// the node's status and compared with the cluster's (the policy key), a
	// disagreement logged once per change. Zero: not published.
	Policy cluster.Policy
	// FenceTimeout bounds fencing this node's own server.
	FenceTimeout time.Duration
	// EndServer ends the local mysqld (SIGKILL) and returns once it is gone, or
	// says why it could not; it refuses a server started after hungSince, the
	// detector's verdict time (not the hung one). A flow deposing this node calls
	// it, instead of a fence by SQL, when the detector says the server answers
	// nothing (Report.Hangs): such a server cannot be made read_only, and while it
	// lives, semi-sync replicas told to stop wait to reach it. nil: a hung server
	// is never ended (kill_frozen_primary: false).
	EndServer func(ctx context.Context, hungSince time.Time) (string, error)
	// StatusTimeout bounds reading the local server's status at each pass: a hung
	// server must not hold up what etcd asks of the node.
	StatusTimeout time.Duration
	// StalledStatusTimeout bounds that read instead when the detector's latest round
	// found the server unreachable (at most StatusTimeout).
	StalledStatusTimeout time.Duration
	// ConfirmLag is the heartbeat lag at which the coordinator takes a replica's word
	// that the primary stopped writing (Policy.ConfirmLag): a lag that crosses it is
	// published at once.
	ConfirmLag time.Duration
	// Tick is how often the node is looked at without a change in etcd.
	Tick time.Duration
	// PublishEvery is how often the status is published when nothing worth it
	// changed (publishNow): what only the operator reads (latencies, disk, a GTID
	// set that moved less than GTIDStep) is at most this old in etcd. The node's
	// liveness is its session lease, not this. DefaultPublishEvery when zero.
	PublishEvery time.Duration
	// GTIDStep is how many transactions the server's GTID set must have moved since
	// the status last published to be published at once (DefaultGTIDStep when zero).
	GTIDStep uint64
	Log      *zap.Logger
	// HeldOff, when it returns a reason, forbids making this node's server writable:
	// the agent promised a primary kept in failsafe mode not to take part in a
	// failover for a while (docs/architecture.md, "Failsafe mode"). nil: never.
	HeldOff func() string
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// Reconciler brings its own node into line with the primary of record: the primary
// of record holds the leader key, is writable and holds the virtual IP; every other
// node is read_only, holds no virtual IP and replicates from the primary of record.
// It publishes the node's status. It never decides a failover.
type Reconciler struct {
	cfg ReconcilerConfig
	log *zap.Logger

	mu        sync.Mutex
	role      cluster.Role
	fenced    string // why this node fenced itself, "" when not fenced
	stuck     string // why this node cannot replicate until a person acts, "" when it can
	errant    string
	archive   string // the latest archive of errant transactions this agent wrote
	local     *replication.Status
	localErr  error
	lastPub   cluster.NodeStatus
	lastPubAt time.Time
	current   cluster.NodeStatus // built at the latest pass
	// The latest flow that moved the primary away from this node (its server was
	// fenced for it, or that was tried).
	intentKey   string
	intentEpoch uint64
	vipHeld     bool // as of the latest pass
	// handoverSince is when this node, deposed, first kept the virtual IP for the
	// new primary to take (keepVIPForHandover); zero when it does not. handoverRO
	// says it keeps it because its server was made read_only (else: mysqld was not
	// running). flowFenceOK says the fence for the latest flow (intentKey) made the
	// server read_only.
	handoverSince time.Time
	handoverRO    bool
	flowFenceOK   bool
	// endedAt is when this agent ended its hung server for a flow (EndServer);
	// until the detector starts a round after it, that is the evidence that mysqld
	// is not running (notRunning). Zero: it never did.
	endedAt    time.Time
	snap       cluster.Snapshot // read at the latest pass
	policyNote string           // the disagreement with the cluster's policy last logged
	repaired   string           // the latest drift this reconciler repaired, for status
	rejoin     rejoinState
	rebuildSt  rebuildState
	// localFence says why the agent fenced this node without etcd (FenceLocal) during
	// the current session: until the next Run, nothing makes it writable again, even
	// a pass that looks at a view from before (the cache's, while etcd is cut off).
	localFence string
	kick       chan struct{}
}

// NewReconciler checks the configuration and returns a Reconciler.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	switch {
	case cfg.Node == "":
		return nil, errors.New("reconciler: node is required")
	case cfg.Addr == "":
		return nil, errors.New("reconciler: addr is required")
	case cfg.Store == nil || cfg.Cluster == nil || cfg.Local == nil || cfg.Detector == nil:
		return nil, errors.New("reconciler: store, cluster reader, local server and detector are required")
	case cfg.ConfirmLag <= 0:
		// No default: it must be the coordinator's, or a lag that confirms a failure
		// would wait for the next PublishEvery.
		return nil, fmt.Errorf("reconciler: confirm_lag (%s) must be positive", cfg.ConfirmLag)
	case cfg.Repl.User == "":
		return nil, errors.New("reconciler: repl.User is required (the account replicas connect to the primary with)")
	}
	if cfg.FenceTimeout <= 0 {
		cfg.FenceTimeout = 500 * time.Millisecond
	}
	if cfg.StatusTimeout <= 0 {
		cfg.StatusTimeout = time.Second
	}
	if cfg.StalledStatusTimeout <= 0 {
		cfg.StalledStatusTimeout = 200 * time.Millisecond
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 500 * time.Millisecond
	}
	if cfg.PublishEvery <= 0 {
		cfg.PublishEvery = DefaultPublishEvery
	}
	if cfg.GTIDStep == 0 {
		cfg.GTIDStep = DefaultGTIDStep
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reconciler{cfg: cfg, log: cfg.Log.With(zap.String("component", "reconciler")), role: cluster.RoleUnknown, kick: make(chan struct{}, 1)}
	r.rebuildSt.orders = make(chan rebuildOrder, 1)
	if rb := cfg.Rebuild; rb != nil {
		if rb.StateDir == "" {
			return nil, errors.New("reconciler: a rebuild needs a state directory for its journal")
		}
		r.cfg.Rebuild = withRebuildDefaults(*rb)
		// A journal left by an earlier agent: the rebuild it records is resumed
		// (finished or rolled back) before the node does anything else.
		if _, err := os.Stat(filepath.Join(rb.StateDir, rebuildJournalFile)); err == nil {
			r.rebuildSt.interrupted = true
			r.log.Warn("found a rebuild an earlier agent left half done: resuming it first", zap.String("journal", filepath.Join(rb.StateDir, rebuildJournalFile)))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reconciler: look for a rebuild's journal: %w", err)
		}
	}
	return r, nil
}

// withRebuildDefaults is cfg with its zero durations set to the defaults.
func withRebuildDefaults(cfg RebuildConfig) *RebuildConfig {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRebuildTimeout
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultRebuildBackoff
	}
	return &cfg
}

// Kick makes the reconciler look again now (the detector's verdict changed).
func (r *Reconciler) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Default publishing of a node's status.
const (
	// DefaultPublishEvery: a status nothing worth publishing happened to is written
	// again every 30 s, for the operator (latencies, disk, GTID set).
	DefaultPublishEvery = 30 * time.Second
	// DefaultGTIDStep: a GTID set 1,000 transactions further is published at once.
	DefaultGTIDStep = 1000
)

// Run reconciles on every change of the primary, leader or intent key, on Kick,
// and every Tick, until ctx ends or the session is lost. It blocks.
func (r *Reconciler) Run(ctx context.Context, s *concurrency.Session) error {
	r.mu.Lock()
	r.localFence = "" // a new session: etcd decides again
	if r.cfg.VIP != nil {
		r.cfg.VIP.Unseal()
	}
	r.mu.Unlock()
	tick := time.NewTicker(r.cfg.Tick)
	defer tick.Stop()
	changes, stop := r.cfg.Cluster.Subscribe(acted(r.cfg.Store.Keys))
	defer stop()
	// Another node's status wakes a pass only when the primary's verdict turns to a
	// failure, or a new primary announces itself (primaryNews); the handover's end
	// too.
	k := r.cfg.Store.Keys
	others, stopOthers := r.cfg.Cluster.Subscribe(func(key string) bool {
		return strings.HasPrefix(key, k.NodesPrefix()) && key != k.Node(r.cfg.Node)
	})
	defer stopOthers()
	var seen string
	for {
		r.pass(ctx, s)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return nil
			case <-s.Done():
				return errors.New("reconciler: etcd session lost")
			case <-changes:
				waiting = false
			case <-r.kick:
				waiting = false
			case <-tick.C:
				waiting = false
			case <-others:
				waiting = !r.primaryNews(ctx, &seen) && !r.handoverDone(ctx)
			}
		}
	}
}

// handoverDone says whether this node keeps the virtual IP for a new primary of
// record that now announces it holds it: the address is to go at once.
func (r *Reconciler) handoverDone(ctx context.Context) bool {
	if !r.handingOver() {
		return false
	}
	snap, err := r.read(ctx)
	if err != nil {
		return false
	}
	st, ok := snap.Nodes[snap.Primary.Node]
	return ok && snap.Primary.Node != r.cfg.Node && st.VIP
}

// primaryNews says whether the primary of record, another node, publishes news a
// pass acts on at once that it did not publish at the last look (seen holds that
// look): a failure verdict (this node's replication state, its IO thread cut off
// by a dead primary, then goes out for the coordinator to confirm the failure), or
// its announcement as primary at the epoch of record, with its GTID set (a replica
// then follows it at once, not at its next tick: under semi-sync the new primary
// commits nothing until a replica does).
func (r *Reconciler) primaryNews(ctx context.Context, seen *string) bool {
	snap, err := r.read(ctx)
	if err != nil {
		return false
	}
	p := snap.Primary.Node
	ps, ok := snap.Nodes[p]
	if p == "" || p == r.cfg.Node || !ok {
		*seen = ""
		return false
	}
	failed := ps.Verdict != detector.Healthy && ps.Verdict != detector.Unknown
	announced := ps.Role == cluster.RolePrimary && ps.Epoch == snap.Primary.Epoch && ps.GTID != ""
	verdict := p + " " + ps.Verdict.String()
	announce := fmt.Sprintf("%s %d %v", p, snap.Primary.Epoch, announced)
	prevVerdict, prevAnnounce, _ := strings.Cut(*seen, "|")
	*seen = verdict + "|" + announce
	return failed && verdict != prevVerdict || announced && announce != prevAnnounce
}

// acted says which keys a reconciler acts on at once when they change.
func acted(k cluster.Keys) func(key string) bool {
	return func(key string) bool {
		return key == k.Primary() || key == k.Leader() || key == k.Intent() || strings.HasPrefix(key, k.RejoinPrefix()) ||
			strings.HasPrefix(key, k.RebuildPrefix())
	}
}

// pass is one look at the cluster and the node, and what follows from it: Analyze
// decides, the act functions below carry it out.
func (r *Reconciler) pass(ctx context.Context, s *concurrency.Session) {
	snap, err := r.read(ctx)
	if err != nil {
		r.log.Warn("read cluster state", zap.Error(err))
		return
	}
	r.checkPolicy(snap)
	r.expireHandover(ctx, snap)
	lease := s.Lease()
	self := r.self(lease)
	// What etcd alone decides comes first, before anything that may wait on a hung
	// local server, so that a new primary can take the leader key at once.
	a := Analyze(snap, self)
	r.act(ctx, snap, lease, a)
	// The detector's verdict goes out now, not after a read of a server that may hang.
	r.publish(ctx, snap, lease)
	if a.Action != NodeReadServer {
		return
	}
	self.Read, self.Status, self.ReadErr = r.readLocal(ctx)
	if r.cfg.Peer != nil {
		_, agentAlive := snap.Nodes[snap.Primary.Node]
		r.cfg.Peer.SetTarget(snap.Primary.Node, snap.Primary.Addr, !agentAlive)
	}
	if r.cfg.VIP != nil && snap.Primary.Node != "" && snap.Primary.Node != r.cfg.Node {
		// Not known is held: the fence runs again, rather than an address kept.
		held, err := r.cfg.VIP.Held(ctx)
		self.VIPHeld = held || err != nil
	}
	r.act(ctx, snap, lease, Analyze(snap, self))
	if r.cfg.VIP != nil {
		held, err := r.cfg.VIP.Held(ctx)
		r.mu.Lock()
		r.vipHeld = held && err == nil
		r.mu.Unlock()
	}
	r.publish(ctx, snap, lease)
}

// read is the cluster's state for a pass.
func (r *Reconciler) read(ctx context.Context) (cluster.Snapshot, error) {
	return r.cfg.Cluster.Snapshot(ctx)
}

// self is this node as the reconciler knows it before the local server is read.
func (r *Reconciler) self(lease clientv3.LeaseID) Self {
	r.mu.Lock()
	defer r.mu.Unlock()
	self := Self{Node: r.cfg.Node, Lease: lease, FlowFenced: r.intentKey, FlowFencedEpoch: r.intentEpoch, SemiSync: r.cfg.SemiSync,
		CanArchive: r.cfg.Tools != nil && r.cfg.ArchiveDir != ""}
	r.rejoin.fill(&self, r.cfg.Detector.Report(), r.cfg.Now())
	self.Rebuild = r.rebuildSt.self(r.cfg.Rebuild, r.cfg.Now())
	return self
}

// readLocal reads the local server's status, within StatusTimeout (StalledStatusTimeout
// when the detector's last round found it unreachable: a server that did not answer
// then must not hold up this pass, and the reaction to the next change in etcd, for
// long).
func (r *Reconciler) readLocal(ctx context.Context) (LocalRead, replication.Status, error) {
	timeout := r.cfg.StatusTimeout
	rep := r.cfg.Detector.Report()
	if rep.Hangs() {
		// A server that answered no liveness probe for fail_after rounds would
		// hold the pass for the read's deadline, and with it what etcd asks of the
		// node meanwhile (a flow's intent to depose it). Not read: unknown, as a
		// read that timed out. The detector's next round that passes reads again.
		err := fmt.Errorf("not read: the detector finds the server hung (%s)", rep.Reason)
		r.mu.Lock()
		r.local, r.localErr = nil, err
		r.mu.Unlock()
		return LocalFailed, replication.Status{}, err
	}
	if rep.RoundVerdict == detector.Unreachable {
		timeout = min(timeout, r.cfg.StalledStatusTimeout)
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	st, err := r.cfg.Local.Status(sctx)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.local, r.localErr = nil, err
		return LocalFailed, replication.Status{}, err
	}
	r.local, r.localErr = &st, nil
	return LocalOK, st, nil
}

// act carries out an analysis: the fence first when asked, then the action.
func (r *Reconciler) act(ctx context.Context, snap cluster.Snapshot, lease clientv3.LeaseID, a Analysis) {
	if a.Fence {
		r.fenceSelf(ctx, snap, lease, a.FenceWhy, a.ServerFenced)
	}
	if a.Answer != nil {
		r.answerRejoin(ctx, a.RequestRev, *a.Answer)
	}
	if a.RebuildAnswer != nil {
		r.answerRebuildRequest(ctx, a.RebuildRev, *a.RebuildAnswer)
	}
	switch a.Action {
	case NodeWait, NodeReadServer:
		if a.Err != nil {
			r.log.Warn(a.Reason, zap.Error(a.Err))
		}
		r.probeAs(a.Probe)
		if a.Role != "" {
			r.setRole(a.Role)
		}
	case NodeFenceForIntent:
		r.fenceForIntent(ctx, a)
	case NodeAwaitBootstrap:
		r.probeAs(a.Probe)
		r.setRole(a.Role)
	case NodePrepareBootstrap:
		r.prepareBootstrap(ctx, a)
	case NodeKeepPaused:
		r.cfg.Detector.SetEpoch(a.Epoch)
		r.setRole(a.Role)
	case NodeMakeWritable, NodeHoldPrimary, NodePromote:
		if why := r.fencedLocally(); why != "" {
			r.log.Warn("not making the server writable: fenced without etcd in this session: "+why, zap.String("action", a.Action.String()))
			r.setRole(cluster.RoleFenced)
			return
		}
		if why := r.heldOff(); why != "" && a.Action != NodeHoldPrimary {
			// Not a step toward a writable server: a primary kept in failsafe mode
			// relies on this node's promise.
			r.log.Warn("not making the server writable: "+why, zap.String("action", a.Action.String()))
			r.setRole(cluster.RoleFenced)
			return
		}
		if a.Action == NodePromote {
			r.takePrimary(ctx, snap, lease, a)
		} else {
			r.holdPrimary(ctx, a)
		}
	case NodeQuarantine:
		r.probeAs(a.Probe)
		// The quarantine's reason is what the node's status says (not the detector's
		// "no replication configured"): why, and what happens next or the command.
		news := r.setStuck(a.Reason)
		if r.errantSet(a.Errant) || (news && a.Errant == "") {
			r.log.Error("quarantined: "+a.Reason, zap.String("errant", a.Errant), zap.String("primary", snap.Primary.Node))
		}
		r.setRole(a.Role)
		if a.Inspect {
			r.inspectErrant(ctx, snap, a)
		}
		r.rejoin.note(r.log, a.Reason)
	case NodeReconnecting:
		r.probeAs(a.Probe)
		r.setRole(a.Role)
	case NodeFollow:
		r.follow(ctx, snap, a)
	case NodeRepairErrant:
		r.repairErrant(ctx, snap, a)
	case NodeUndoErrant:
		r.undoErrant(ctx, snap, a)
	case NodeRebuild:
		r.probeAs(a.Probe)
		r.setRole(cluster.RoleQuarantined)
		r.log.Warn("rebuild: "+a.Reason, zap.String("donor", a.Donor), zap.Bool("resume", a.Resume))
		r.startRebuild(snap, a)
	}
}

func (r *Reconciler) probeAs(role detector.Probes) {
	if role != detector.NoProbes {
		r.cfg.Detector.SetRole(role)
	}
}

// prepareBootstrap readies a writable server to be recorded as the first primary:
// the heartbeat table is created, and its detector probes it as a primary.
func (r *Reconciler) prepareBootstrap(ctx context.Context, a Analysis) {
	if r.cfg.LocalDB != nil {
		if err := detector.Bootstrap(ctx, r.cfg.LocalDB); err != nil {
			r.log.Warn("create the baton schema", zap.Error(err))
			return
		}
	}
	r.probeAs(a.Probe)
	r.setRole(a.Role)
}

// holdPrimary keeps the primary of record, which holds the leader key, writable and
// behind the virtual IP.
func (r *Reconciler) holdPrimary(ctx context.Context, a Analysis) {
	r.cfg.Detector.SetEpoch(a.Epoch)
	switch {
	case a.Action == NodeMakeWritable:
		// The way every promotion goes: the configured protection (semi-sync source
		// side on, verified) before read_only goes off, never a bare read_only=OFF.
		r.log.Warn(a.Reason)
		if err := r.promoteLocal(ctx); err != nil {
			r.log.Warn("make the primary of record writable", zap.Error(err))
		}
	case a.RepairSemiSync:
		err := r.cfg.Local.SetSemiSync(ctx, true, false)
		if err != nil {
			r.log.Error("turn the semi-sync source side back on", zap.Error(err))
		} else {
			r.log.Warn("repaired: " + a.Reason)
			r.mu.Lock()
			r.repaired = fmt.Sprintf("%s: semi-sync source side turned back on", r.cfg.Now().UTC().Format(time.RFC3339))
			r.mu.Unlock()
		}
	}
	r.acquireVIP(ctx)
	if r.fencedLocally() != "" {
		return // fenced meanwhile, without etcd: the fence stands
	}
	r.probeAs(a.Probe)
	r.setRole(a.Role)
	r.setFenced("")
}

// takePrimary makes this node, the primary of record, the writable primary: the
// leader key first (at most one node holds it), then read_only off, then the
// virtual IP, so that the address leads to a writable server.
func (r *Reconciler) takePrimary(ctx context.Context, snap cluster.Snapshot, lease clientv3.LeaseID, a Analysis) {
	start := r.cfg.Now()
	if err := r.cfg.Store.AcquireLeader(ctx, lease, r.cfg.Node, snap.PrimaryModRev); err != nil {
		r.log.Warn("take the leader key", zap.Error(err))
		return
	}
	if err := r.promote(ctx); err != nil {
		r.log.Warn("promote", zap.Error(err))
		return // holding leader, read_only: the next pass makes it writable
	}
	r.cfg.Detector.SetEpoch(a.Epoch)
	r.probeAs(a.Probe)
	r.setRole(a.Role)
	r.setFenced("")
	// Announce the new primary while the address moves: neither waits for the
	// other. Replicas the commit's GTID set did not already let follow follow the
	// announcement (under semi-sync it commits nothing until one does); clients
	// meet the new primary at the address once its gratuitous ARP goes out. The
	// announcement (a status read and an etcd write, 10-25 ms) used to come first,
	// and the address waited for it. Only the server as read now, writable, is
	// announced, and never as holding the address: that the address moved is the
	// next publish's news, which alone ends the old primary's handover.
	announced := make(chan struct{})
	go func() {
		defer close(announced)
		if r.refreshLocal(ctx) {
			r.mu.Lock()
			r.vipHeld = false
			r.mu.Unlock()
			r.publish(ctx, snap, lease)
		}
	}()
	r.acquireVIP(ctx)
	<-announced
	r.log.Info("primary: writable", zap.Uint64("epoch", a.Epoch), zap.Duration("took", r.cfg.Now().Sub(start)))
	// Publish the server as it is now, writable, not as the pass found it.
	r.refreshLocal(ctx)
}

// refreshLocal reads the local server's status again, for the next publish: the
// server as it is now, not as the pass found it. It says whether it read it.
func (r *Reconciler) refreshLocal(ctx context.Context) bool {
	sctx, cancel := context.WithTimeout(ctx, r.cfg.StatusTimeout)
	defer cancel()
	now, err := r.cfg.Local.Status(sctx)
	if err != nil {
		return false
	}
	r.mu.Lock()
	r.local = &now
	r.mu.Unlock()
	return true
}

// promote makes the local server the writable primary.
func (r *Reconciler) promote(ctx context.Context) error {
	// With semi-sync (replication.Config.SemiSync) Promote turns the source side on
	// before read_only goes off.
	if err := r.promoteLocal(ctx); err != nil {
		return err
	}
	if r.cfg.LocalDB != nil {
		if err := detector.Bootstrap(ctx, r.cfg.LocalDB); err != nil {
			r.log.Warn("create the baton schema", zap.Error(err))
		}
	}
	return nil
}

// follow points the local server's replication at the primary of record, or
// restarts its stopped threads.
func (r *Reconciler) follow(ctx context.Context, snap cluster.Snapshot, a Analysis) {
	r.probeAs(a.Probe)
	if !a.Following {
		r.errantSet("") // the errant check passed
		r.forgetErrantRecord(ctx, snap, false)
	}
	src := r.cfg.Repl.At(a.Source.Host, a.Source.Port)
	if err := r.cfg.Local.Follow(ctx, src, r.confirmView(snap)); err != nil {
		if errors.Is(err, errViewChanged) {
			return // the next pass decides on what changed
		}
		if errors.Is(err, replication.ErrRelayLogUnusable) {
			// Nothing the agent can do mends it: a person must restart mariadbd. Until
			// then the node is quarantined with the reason, so that no flow ranks it
			// and the operator sees what to do; the next pass after the restart
			// follows, and ends the quarantine.
			why := "relay log unusable (CHANGE MASTER failed with error 1373, as after a relay log rotation on a full disk): restart mariadbd; it rejoins by itself"
			if r.setStuck(why) {
				r.log.Error("cannot replicate: quarantined", zap.String("primary", snap.Primary.Node), zap.String("why", why), zap.Error(err))
			}
			r.setRole(cluster.RoleQuarantined)
			return
		}
		r.log.Warn("follow the primary", zap.String("primary", snap.Primary.Node), zap.Error(err))
		return
	}
	if r.setStuck("") {
		r.log.Info("replicating again: quarantine for an unusable relay log ended")
	}
	if !a.Following {
		r.log.Info("replicating from the primary of record", zap.String("primary", snap.Primary.Node), zap.Uint64("epoch", a.Epoch))
	}
	r.setRole(a.Role)
	r.setFenced("")
}

// checkPolicy logs, once per change, whether this node's configuration file
// disagrees with the cluster's failover policy, or the cluster's is unreadable. The
// cluster's is what every coordinator decides with: a disagreeing file is a mistake
// to report, not a vote.
func (r *Reconciler) checkPolicy(snap cluster.Snapshot) {
	if r.cfg.Policy.Validate() != nil {
		return
	}
	var diff []string
	note := ""
	switch {
	case snap.PolicyErr != "":
		note = "unreadable: " + snap.PolicyErr
	case snap.Policy == nil:
		note = "missing" // nothing to compare with yet: an agent or the coordinator creates it
	default:
		diff = r.cfg.Policy.Diff(snap.Policy.Policy)
		note = strings.Join(diff, "; ")
	}
	r.mu.Lock()
	was := r.policyNote
	r.policyNote = note
	r.mu.Unlock()
	switch {
	case note == was:
	case snap.PolicyErr != "":
		r.log.Error("the cluster's failover policy in etcd is unreadable: coordinators decide with their own files' (fix it with baton policy apply)",
			zap.String("error", snap.PolicyErr))
	case snap.Policy == nil:
	case len(diff) > 0:
		r.log.Warn("this node's configuration file disagrees with the cluster's failover policy, which is the one used (see baton policy show)",
			zap.Strings("differs", diff), zap.String("set_by", snap.Policy.SetBy))
	case was != "" && was != "missing":
		r.log.Info("this node's configuration file agrees with the cluster's failover policy again")
	}
}

// fenceForIntent stops the primary of record from taking writes when a flow
// announces it is moving the primary away: read_only and client connections, once
// per flow. It keeps the virtual IP and the leader key until the commit, so that
// clients reconnecting meanwhile are refused at once by a read-only server rather
// than lose their connection attempt to an address nobody answers; a server that
// could not be fenced lets the virtual IP go now (frozen, cut off), unless nothing
// listens on its port: mysqld not running refuses connections at once, so the
// address stays a moment (handover.go).
//
// A server that answers nothing (Report.Hangs: the verdict unreachable, the
// latest liveness probe timed out; frozen, hung) cannot be made read_only; with
// EndServer the agent ends it instead: it then takes no write, however long it
// would have stayed frozen, and nothing listens on its port, so the replicas that
// the flow stops are not held up reaching it, and clients meet a refusal. Only on
// a fresh report (a round started within three ticks): an agent that stalled
// since may face a server that woke meanwhile, which the SQL fence then reaches.
func (r *Reconciler) fenceForIntent(ctx context.Context, a Analysis) {
	r.markFenced(a.FenceWhy)
	rep := r.cfg.Detector.Report()
	ended := r.cfg.EndServer != nil && rep.Hangs() && time.Since(rep.At) < 3*r.cfg.Tick && r.endServer(ctx, rep)
	ok := !ended && r.fenceServer(ctx)
	if !ok {
		if r.cfg.VIP != nil && r.notRunning() {
			// Nothing listens: a client's connection is reset at once, and it
			// tries again, rather than wait on an address nobody answers. Kept
			// for HandoverBound at most, and while nothing listens (expireHandover).
			r.log.Info("mysqld is not running: the virtual IP stays a moment, where connections are refused at once")
			r.startHandover(false)
		} else {
			r.releaseVIP(ctx)
		}
	}
	r.mu.Lock()
	r.intentKey, r.intentEpoch, r.flowFenceOK = a.IntentKey, a.Epoch, ok
	r.mu.Unlock()
}

// fenceSelf stops this node from taking writes: the virtual IP goes first (so no new
// client reaches it), then read_only and client connections, each with a deadline
// (unless already done for the flow: serverFenced), then the leader key, so that
// another node may become writable.
//
// A deposed primary whose server is known unable to take a write (made read_only
// by the flow's fence, or mysqld not running: its port refuses) keeps the virtual
// IP a moment more, until the new primary announces it (see handover.go); the
// leader key goes at once all the same. A server whose state is not known loses
// the address first, as always.
func (r *Reconciler) fenceSelf(ctx context.Context, snap cluster.Snapshot, lease clientv3.LeaseID, why string, serverFenced bool) {
	r.markFenced(why)
	r.mu.Lock()
	// The evidence that the server cannot take a write: the fence of the flow that
	// deposed this node made it read_only (whether or not this analysis says the
	// server was fenced for the flow: the one after the local read does not).
	since := r.handoverSince
	readOnly := r.flowFenceOK && r.intentKey != "" && snap.Primary.Epoch == r.intentEpoch+1
	r.mu.Unlock()
	notRunning := r.notRunning()
	keep := r.cfg.VIP != nil && (readOnly || notRunning) && keepVIPForHandover(snap, r.cfg.Node, since, r.cfg.Now())
	if !keep {
		r.releaseVIP(ctx)
	}
	if !serverFenced {
		switch {
		case r.fenceServer(ctx):
			readOnly = true
		case keep && !r.notRunning():
			// The fence failed now on a server that listens: what the flow's fence
			// showed may no longer hold, so the address goes.
			r.releaseVIP(ctx)
			keep = false
		}
	}
	if keep {
		if since.IsZero() {
			r.log.Info("deposed: the virtual IP stays until " + snap.Primary.Node + " announces it (this server cannot take a write)")
		}
		r.startHandover(readOnly)
	}
	if err := r.cfg.Store.ReleaseLeader(ctx, lease); err != nil {
		r.log.Warn("release the leader key", zap.Error(err))
	}
}

// endServer ends the local server, which the detector found hung (rep), for the
// flow moving the primary away: it says whether the server is gone.
func (r *Reconciler) endServer(ctx context.Context, rep detector.Report) bool {
	ectx, cancel := context.WithTimeout(ctx, endServerTimeout)
	defer cancel()
	note, err := r.cfg.EndServer(ectx, rep.Since)
	if err != nil {
		r.log.Warn("the server answers nothing and could not be ended: fencing it by SQL instead (best effort)",
			zap.String("detector", rep.Reason), zap.Error(err))
		return false
	}
	r.log.Warn("ended the server, which answers nothing, for the flow moving the primary away: it can take no write now; "+
		"its supervisor (systemd) starts it again and it rejoins as a replica", zap.String("detector", rep.Reason), zap.String("ended", note))
	r.mu.Lock()
	r.endedAt = time.Now()
	r.mu.Unlock()
	return true
}

// endServerTimeout bounds EndServer: SIGKILL, then the process's exit. A process
// stuck in the kernel (waiting on a disk) exits only once that wait ends.
const endServerTimeout = time.Second

// notRunning says whether mysqld is known not to run: the detector's latest round
// found nothing listening, or this agent ended the server and the detector has
// started no round since (a round started before may still report the hang).
func (r *Reconciler) notRunning() bool {
	rep := r.cfg.Detector.Report()
	if rep.NotRunning() {
		return true
	}
	r.mu.Lock()
	ended := r.endedAt
	r.mu.Unlock()
	return !ended.IsZero() && !rep.At.After(ended)
}

// startHandover records that this node keeps the virtual IP for the new primary
// (from now, unless it did already), and why: its server read_only, or not running.
func (r *Reconciler) startHandover(readOnly bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handoverSince.IsZero() {
		r.handoverSince = r.cfg.Now()
	}
	r.handoverRO = readOnly
}

// expireHandover lets the virtual IP go, whatever the pass then decides, once it
// was kept for HandoverBound, or when it was kept because mysqld was not running
// and something listens again (a server restarted: it should start read_only, but
// that is not known here).
func (r *Reconciler) expireHandover(ctx context.Context, snap cluster.Snapshot) {
	r.mu.Lock()
	since, readOnly := r.handoverSince, r.handoverRO
	if !since.IsZero() && snap.Primary.Node == r.cfg.Node && snap.Intent == nil {
		// The flow was abandoned: this node is the primary of record again, and
		// the pass decides about its address as for any primary.
		r.handoverSince = time.Time{}
		since = time.Time{}
	}
	r.mu.Unlock()
	if since.IsZero() {
		return
	}
	switch {
	case r.cfg.Now().Sub(since) >= HandoverBound:
		r.log.Info("the virtual IP kept for the new primary goes: " + HandoverBound.String() + " passed")
	case !readOnly && !r.notRunning():
		r.log.Info("the virtual IP kept while mysqld was not running goes: something listens again")
	default:
		return
	}
	r.releaseVIP(ctx)
}

// handingOver says whether this node keeps the virtual IP for the new primary.
func (r *Reconciler) handingOver() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.handoverSince.IsZero()
}

// FenceLocal fences this node without etcd: the agent calls it when its session
// cannot be renewed in time. The leader key is left to expire with the lease.
//
// A pass may be under way, past its "not fenced" check: the fence still stands.
// The virtual IP is sealed before it is released (the mover refuses, or stops, any
// Acquire until the next session), and a Promote that was in flight fences the
// server again when it returns (promote).
func (r *Reconciler) FenceLocal(ctx context.Context, why string) {
	r.mu.Lock()
	r.localFence = why
	r.mu.Unlock()
	if r.cfg.VIP != nil {
		r.cfg.VIP.Seal()
	}
	r.markFenced(why)
	r.releaseVIP(ctx)
	r.fenceServer(ctx)
}

// promoteLocal makes the local server writable (Local.Promote) unless the agent
// fenced the node without etcd in this session; a fence that came while Promote
// ran wins: the server is fenced again after it, so that whatever order the two
// reached the server in, read_only ends on.
func (r *Reconciler) promoteLocal(ctx context.Context) error {
	if why := r.fencedLocally(); why != "" {
		return fmt.Errorf("not promoting: fenced without etcd in this session: %s", why)
	}
	failpoint.Hit(failpoint.BeforePromote)
	err := r.cfg.Local.Promote(ctx)
	if why := r.fencedLocally(); why != "" {
		r.fenceServer(context.WithoutCancel(ctx))
		return fmt.Errorf("fenced without etcd while promoting (%s): fenced again", why)
	}
	return err
}

// markFenced records that the node is fenced, and why, and stops the binlogged
// heartbeat: what every fence does before it touches the server.
func (r *Reconciler) markFenced(why string) {
	if r.setFenced(why) {
		r.log.Warn("fencing this node", zap.String("why", why))
	}
	r.setRole(cluster.RoleFenced)
	r.cfg.Detector.SetRole(detector.Replica) // no binlogged heartbeat from here on
}

// fenceServer makes the local server read_only and drops its client connections,
// best effort within FenceTimeout; it says whether the server is read_only now.
func (r *Reconciler) fenceServer(ctx context.Context) bool {
	fctx, cancel := context.WithTimeout(ctx, r.cfg.FenceTimeout)
	rep, err := r.cfg.Local.Fence(fctx)
	cancel()
	ok := err == nil && rep.ReadOnly
	if !ok {
		r.log.Warn("fence the local server (best effort)", zap.Error(err), zap.Bool("read_only", rep.ReadOnly))
	}
	return ok
}

func (r *Reconciler) acquireVIP(ctx context.Context) {
	if r.cfg.VIP == nil || r.fencedLocally() != "" {
		return
	}
	failpoint.Hit(failpoint.BeforeVIPAcquire)
	if err := r.cfg.VIP.Acquire(ctx); err != nil {
		r.log.Warn("acquire the virtual IP", zap.Error(err))
	}
}

func (r *Reconciler) releaseVIP(ctx context.Context) {
	if r.cfg.VIP == nil {
		return
	}
	r.mu.Lock()
	r.handoverSince = time.Time{}
	r.mu.Unlock()
	if err := r.cfg.VIP.Release(ctx); err != nil {
		r.log.Warn("release the virtual IP", zap.Error(err))
	}
}

// fencedLocally says why the agent fenced this node without etcd in this session, ""
// when it did not.
func (r *Reconciler) fencedLocally() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.localFence
}

// heldOff says why this node must not make its server writable now, "" when it may.
func (r *Reconciler) heldOff() string {
	if r.cfg.HeldOff == nil {
		return ""
	}
	return r.cfg.HeldOff()
}

// WritablePrimary says whether, as of the latest pass, this node is the primary of
// record holding the leader key on lease with a writable server, not fenced: the
// only node failsafe mode may keep taking writes without etcd.
func (r *Reconciler) WritablePrimary(lease clientv3.LeaseID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return lease != clientv3.NoLease && r.role == cluster.RolePrimary && r.fenced == "" &&
		r.snap.Primary.Node == r.cfg.Node && r.snap.Leader == r.cfg.Node && r.snap.LeaderLease == lease &&
		r.local != nil && !r.local.ReadOnly
}

func (r *Reconciler) setRole(role cluster.Role) {
	r.mu.Lock()
	old := r.role
	r.role = role
	r.mu.Unlock()
	if old != role {
		r.log.Info("role", zap.String("from", string(old)), zap.String("to", string(role)))
	}
}

// errViewChanged: etcd no longer shows what the reconciler decided on.
var errViewChanged = errors.New("the cluster state changed since it was read")

// confirmView is Follow's confirmation that snap still holds: a fresh read of etcd
// must show the same primary and epoch, and no failover or switchover under way.
// Follow calls it only when it would change replication, and with the server's
// replication lock held, which a flow takes to stop the IO thread after announcing
// itself: so replication is started either before a flow stops it, or not at all.
// (Starting it on a cached view undid a flow's stop in a fault campaign round: the
// replica fetched the old primary's last commits, which the new primary lacked.)
func (r *Reconciler) confirmView(snap cluster.Snapshot) func(context.Context) error {
	return func(ctx context.Context) error {
		fresh, err := r.cfg.Store.Load(ctx)
		if err != nil {
			return fmt.Errorf("replication left as it is: cluster state not confirmed: %w", err)
		}
		if fresh.Intent != nil || fresh.Primary.Node != snap.Primary.Node || fresh.Primary.Epoch != snap.Primary.Epoch {
			return errViewChanged
		}
		return nil
	}
}

// setFenced records why the node is fenced; it says whether that is news.
func (r *Reconciler) setFenced(why string) bool { return r.record(&r.fenced, why) }

// setStuck records why the node cannot replicate until a person acts ("" when it
// can); it says whether that is news.
func (r *Reconciler) setStuck(why string) bool { return r.record(&r.stuck, why) }

func (r *Reconciler) errantSet(s string) bool { return r.record(&r.errant, s) }

// record sets one of the reconciler's reasons under its lock and says whether it
// changed.
func (r *Reconciler) record(field *string, v string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	news := *field != v
	*field = v
	return news
}

// Current returns the node's status as of the latest pass, and the cluster as read
// then. A fence shows at once, not at the next pass: from the moment the node starts
// fencing itself (e.g. its etcd session could not be renewed in time) its role is
// fenced, so a load balancer asking the agent's /primary stops sending writes to it
// while the fence is under way.
func (r *Reconciler) Current() (cluster.NodeStatus, cluster.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.current
	if r.role == cluster.RoleFenced {
		n.Role = cluster.RoleFenced
	}
	return n, r.snap
}

// publish writes the node's status when something worth it changed (publishNow),
// when etcd does not hold it on this session's lease (a new lease, a key deleted),
// or every PublishEvery.
func (r *Reconciler) publish(ctx context.Context, snap cluster.Snapshot, lease clientv3.LeaseID) {
	n := r.build(snap)
	marks := marksFor(r.cfg, snap)
	_, held := snap.Nodes[r.cfg.Node]
	held = held && snap.NodeLeases[r.cfg.Node] == lease
	r.mu.Lock()
	r.current, r.snap = n, snap
	changed := publishNow(r.lastPub, n, marks)
	due := r.cfg.Now().Sub(r.lastPubAt) >= r.cfg.PublishEvery
	r.mu.Unlock()
	if !changed && !due && held {
		return
	}
	if err := r.cfg.Store.PutNode(ctx, lease, n); err != nil {
		r.log.Warn("publish status", zap.Error(err))
		return
	}
	r.mu.Lock()
	r.lastPub, r.lastPubAt = n, r.cfg.Now()
	r.mu.Unlock()
}

func (r *Reconciler) build(snap cluster.Snapshot) cluster.NodeStatus {
	rep := r.cfg.Detector.Report()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := cluster.NodeStatus{
		Node: r.cfg.Node, Addr: r.cfg.Addr, Agent: r.cfg.Agent, Role: r.role,
		Verdict: rep.Verdict, Reason: rep.Reason, VerdictSince: rep.Since,
		LagMS: -1, HeartbeatMS: -1, Priority: r.cfg.Priority, NoPromote: r.cfg.NoPromote,
		Errant: r.errant, Epoch: snap.Primary.Epoch, At: r.cfg.Now().UTC(), Repaired: r.repaired,
	}
	if r.errant != "" {
		n.ErrantTxns = r.rejoin.txns(r.errant)
	}
	n.Archive = r.archive
	n.CanDonate = r.cfg.CanDonate
	rb := r.rebuildSt.self(r.cfg.Rebuild, r.cfg.Now())
	n.CanRebuild, n.RebuildUnable = rb.Able, rb.Unable
	n.Rebuild = r.rebuildSt.status()
	if rb.Stuck != "" && r.role == cluster.RoleQuarantined {
		n.Reason = rb.Stuck
	}
	if r.cfg.Policy.Validate() == nil {
		p := r.cfg.Policy
		n.Policy = &p
	}
	if rep.Verdict == detector.Healthy && rep.RoundReason != "" {
		// A healthy node's reason is what its latest probes measured, not what they
		// measured when it turned healthy (maybe as a replica, long ago).
		n.Reason = rep.RoundReason
	}
	if r.fenced != "" && n.Reason == "" {
		n.Reason = "fenced: " + r.fenced
	}
	if r.stuck != "" && r.role == cluster.RoleQuarantined {
		n.Reason = r.stuck
	}
	if st := r.local; st != nil {
		n.ServerRead = true
		n.ReadOnly, n.GTID, n.Flavor = st.ReadOnly, st.Executed.String(), st.Flavor.String()
		n.ServerID, n.ServerUUID = st.ServerID, st.ServerUUID
		if st.SourceHost != "" {
			n.Source = net.JoinHostPort(st.SourceHost, strconv.Itoa(st.SourcePort))
		}
		if r.cfg.SemiSync {
			n.SemiSync = semiSyncState(st.SemiSync, n.ReadOnly)
			n.SemiSyncTimeout = st.SemiSync.Timeout
			if n.SemiSync == cluster.SemiSyncOn {
				n.SemiSyncClients = st.SemiSync.Clients
				n.AwaitsAck = awaitsAck(st.SemiSync, rep)
			}
		}
		n.IORunning = st.IOThread == replication.ThreadRunning
		n.SQLRunning = st.SQLThread == replication.ThreadRunning
		switch {
		case st.LastIOError != "":
			n.ReplError = st.LastIOError
		case st.LastSQLError != "":
			n.ReplError = st.LastSQLError
		}
	}
	// A lag only for a node with a source: one with none (a quarantined deposed
	// primary) replicates nothing, and its heartbeat's age is no lag. A replica
	// quarantined with its source kept (its SQL thread stopped on diverged data)
	// has one: how far behind it is, what a switchover to it must weigh.
	if rep.Replication != nil && rep.Replication.HeartbeatLag >= 0 && n.Source != "" {
		hb := rep.Replication.HeartbeatLag
		n.HeartbeatMS = hb.Milliseconds()
		idle := time.Duration(-1)
		if seen := rep.Replication.HeartbeatSeen; !seen.IsZero() {
			idle = max(0, r.cfg.Now().Sub(seen))
		}
		n.LagMS = replicaLag(hb, idle, nothingToApply(r.local), r.cfg.Tick).Milliseconds()
	}
	n.StorageOK = storageOK(rep)
	if rep.Write != nil {
		n.WriteMS = float64(rep.Write.Latency.Microseconds()) / 1000
	}
	if rep.Ping != nil {
		n.PingMS = float64(rep.Ping.Latency.Microseconds()) / 1000
	}
	for _, d := range rep.Disks {
		if n.DiskFree == 0 || d.Free < n.DiskFree {
			n.DiskFree, n.DiskTimeToFull = d.Free, d.TimeToFull
		}
		n.Forecasts = append(n.Forecasts, d.Forecast())
	}
	if r.cfg.Forecasts != nil {
		n.Forecasts = append(n.Forecasts, r.cfg.Forecasts()...)
	}
	if r.cfg.Peer != nil && snap.Primary.Node != r.cfg.Node {
		n.PrimaryView = r.cfg.Peer.View()
	}
	n.VIP = r.vipHeld
	return n
}

// awaitsAck says whether a writable semi-sync primary's commits are stuck waiting
// for an acknowledgement: some wait for one now, its detector does not find it
// healthy, and none of its filesystems is full. Under load commits wait for an
// acknowledgement for a moment all the time; only a stuck write probe makes it news.
func awaitsAck(ss replication.SemiSync, rep detector.Report) bool {
	if ss.WaitSessions < 1 || rep.Verdict == detector.Healthy || rep.Verdict == detector.Unknown {
		return false
	}
	for _, d := range rep.Disks {
		if d.Full() {
			return false
		}
	}
	return true
}

// storageOK says whether the node's own write path worked at its latest round: its
// storage probe passed (or, without one, its verdict is healthy) and none of its
// filesystems is full or unreadable. It looks at the latest round, not the verdict,
// whose hysteresis would keep a replica whose disk just filled "healthy" for a few
// rounds: long enough to be ranked first and fail its promotion.
func storageOK(rep detector.Report) bool {
	for _, d := range rep.Disks {
		if d.Err != "" || d.Total == 0 || d.Full() {
			return false
		}
	}
	if rep.Storage != nil {
		return rep.Storage.Class == detector.OK
	}
	return rep.Verdict == detector.Healthy
}

// significant says whether a status change is worth publishing at once: what Decide
// and the operator look at, not the latencies; the heartbeat's age only when it
// crosses confirmLag, where Decide starts to count it; a forecast when something
// runs out or stops running out, and the node's runway when a failover would rank
// it differently (runwayMoved).
func significant(a, b cluster.NodeStatus, confirmLag time.Duration) bool {
	lagged := func(n cluster.NodeStatus) bool {
		age := n.HeartbeatAge()
		return age >= 0 && time.Duration(age)*time.Millisecond >= confirmLag
	}
	pv := func(v *cluster.PeerView) string {
		if v == nil {
			return ""
		}
		return v.Node + strconv.FormatBool(v.Reachable) + string(v.Write)
	}
	return a.Role != b.Role || a.Verdict != b.Verdict || a.ServerRead != b.ServerRead || a.ReadOnly != b.ReadOnly || a.IORunning != b.IORunning ||
		a.SQLRunning != b.SQLRunning || a.Source != b.Source || a.Epoch != b.Epoch || a.Errant != b.Errant ||
		a.StorageOK != b.StorageOK || pv(a.PrimaryView) != pv(b.PrimaryView) || a.VIP != b.VIP ||
		lagged(a) != lagged(b) || (b.Role == cluster.RoleQuarantined && a.Reason != b.Reason) || a.Archive != b.Archive ||
		exhausted(a) != exhausted(b) || runwayMoved(a.Runway(), b.Runway())
}

// runwayMoved says whether a node's runway moved enough since a was published for a
// failover to rank it differently: its place in a ranking (replication.RunwayRank),
// or, while it fills within replication.RunwayPlenty (where runways compare by time
// left), a time left halved or doubled. Its figures otherwise wait for the next
// PublishEvery: a rate moves a little at every round.
func runwayMoved(a, b detector.Forecast) bool {
	ra, rb := replication.RunwayRank(a), replication.RunwayRank(b)
	if ra != rb {
		return true
	}
	return ra == 1 && (a.Left >= 2*b.Left || b.Left >= 2*a.Left)
}

// exhausted names the node's resources that have run out.
func exhausted(n cluster.NodeStatus) string {
	var out []string
	for _, f := range n.Forecasts {
		if f.Outlook == detector.OutlookExhausted {
			out = append(out, string(f.Resource)+" "+f.Name)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// marksFor is publishNow's thresholds for a pass over snap: the cluster's policy
// when etcd holds one, which is what Decide confirms and ranks with, else this
// agent's file. With the file's confirm_lag alone, an operator's policy of 3 s had
// a heartbeat age crossing 3 s wait for the file's next mark (4 s) or the periodic
// publish before the coordinator saw it.
func marksFor(cfg ReconcilerConfig, snap cluster.Snapshot) publishMarks {
	m := publishMarks{confirmLag: cfg.ConfirmLag, switchoverMaxLag: cfg.Policy.SwitchoverMaxLag, gtidStep: cfg.GTIDStep}
	if snap.Policy != nil {
		m.switchoverMaxLag = snap.Policy.Policy.SwitchoverMaxLag
		if cl := snap.Policy.Policy.ConfirmLag; cl > 0 {
			m.confirmLag = cl
		}
	}
	return m
}

// publishMarks are the thresholds of publishNow.
type publishMarks struct {
	confirmLag, switchoverMaxLag time.Duration
	gtidStep                     uint64
}

// publishNow says whether status b is worth publishing at once, a having been
// published last: what Decide looks at (significant), a lag crossing the policy's
// switchover_max_lag (Decide's bar for a switchover candidate) or doubling past
// confirm_lag, a GTID set moved by gtidStep transactions or more, and what rarely
// changes and others read (the server's identity and address, the replication
// error, semi-sync, the node's configuration). Latencies, disk figures and the
// verdict's wording wait for the next PublishEvery.
func publishNow(a, b cluster.NodeStatus, m publishMarks) bool {
	if significant(a, b, m.confirmLag) {
		return true
	}
	if lagMark(a.LagMS, m) != lagMark(b.LagMS, m) || ageMark(a.HeartbeatAge(), m) != ageMark(b.HeartbeatAge(), m) {
		return true
	}
	if a.Addr != b.Addr || a.Agent != b.Agent || a.ServerID != b.ServerID || a.ServerUUID != b.ServerUUID || a.Flavor != b.Flavor ||
		a.ReplError != b.ReplError || a.SemiSync != b.SemiSync || (a.SemiSyncClients == 0) != (b.SemiSyncClients == 0) || a.AwaitsAck != b.AwaitsAck ||
		a.SemiSyncTimeout != b.SemiSyncTimeout || a.Priority != b.Priority || a.NoPromote != b.NoPromote ||
		a.Repaired != b.Repaired || !reflect.DeepEqual(a.Policy, b.Policy) ||
		a.CanDonate != b.CanDonate || a.CanRebuild != b.CanRebuild || a.RebuildUnable != b.RebuildUnable || rebuildMoved(a.Rebuild, b.Rebuild) {
		return true
	}
	return gtidMoved(a, b, m.gtidStep)
}

// lagMark is the band a lag is in: unknown, within switchover_max_lag, up to
// confirm_lag, then each doubling beyond it.
func lagMark(ms int64, m publishMarks) int {
	lag := time.Duration(ms) * time.Millisecond
	switch {
	case ms < 0:
		return -1
	case lag <= m.switchoverMaxLag:
		return 0
	case m.confirmLag <= 0 || lag < m.confirmLag:
		return 1
	}
	return 2 + bits.Len64(uint64(lag/m.confirmLag))
}

// ageMark is the band a heartbeat's age is in: unknown, under confirm_lag, then each
// doubling beyond it (Decide counts it from confirm_lag; below, its sawtooth is
// news to nobody).
func ageMark(ms int64, m publishMarks) int {
	age := time.Duration(ms) * time.Millisecond
	switch {
	case ms < 0:
		return -1
	case m.confirmLag <= 0 || age < m.confirmLag:
		return 0
	}
	return 1 + bits.Len64(uint64(age/m.confirmLag))
}

// gtidMoved says whether b's GTID set is step transactions or more away from a's;
// a set that does not parse moved when its text changed.
func gtidMoved(a, b cluster.NodeStatus, step uint64) bool {
	if a.GTID == b.GTID {
		return false
	}
	fa, erra := replication.ParseFlavor(a.Flavor)
	fb, errb := replication.ParseFlavor(b.Flavor)
	if erra != nil || errb != nil || fa != fb {
		return true
	}
	sa, erra := replication.ParseGTIDSet(fa, a.GTID)
	sb, errb := replication.ParseGTIDSet(fb, b.GTID)
	if erra != nil || errb != nil {
		return true
	}
	ca, cb := sa.Count(), sb.Count()
	return max(ca, cb)-min(ca, cb) >= step
}

// semiSyncState is what a node's status says of its semi-sync, in a cluster
// configured for it: a writable server's source side ("on"; "async" when it fell back
// after its timeout, so commits no longer wait for a replica; "off"), a read-only
// one's replica side ("replica on", "replica off").
func semiSyncState(ss replication.SemiSync, readOnly bool) cluster.SemiSyncState {
	switch {
	case !ss.Available:
		return cluster.SemiSyncUnavailable
	case readOnly && ss.ReplicaEnabled:
		return cluster.SemiSyncReplicaOn
	case readOnly:
		return cluster.SemiSyncReplicaOff
	case !ss.SourceEnabled:
		return cluster.SemiSyncOff
	case !ss.SourceActive:
		return cluster.SemiSyncAsync
	}
	return cluster.SemiSyncOn
}

// heartbeatsStop is how many probe intervals may pass without a new heartbeat
// before a replica stops counting as caught up: the primary writes one every
// interval, and a write may take up to the probe timeout (below the interval), so
// between two sightings by the replica's own rounds pass at most about two
// intervals and a half while heartbeats flow.
const heartbeatsStop = 3

// replicaLag is how far a replica is behind. The heartbeat's age alone is a
// sawtooth (the primary writes one every interval, so a replica that has everything
// sees ages from 0 to one interval, more under load) plus the skew between the two
// hosts' clocks. So:
//
//   - a replica with nothing to apply (its IO thread connected, everything it
//     received applied) while new heartbeats keep arriving (the newest was seen
//     arriving within heartbeatsStop intervals, on this host's clock) has
//     everything the primary wrote: 0;
//   - otherwise its delay lies between the heartbeat's age less one interval (the
//     heartbeat after the one it applied, written then, is not applied yet) and the
//     age: the lower end is reported, the part of the age the rhythm explains left
//     out.
//
// idle is how long the newest heartbeat has been the newest, negative when not
// known. The heartbeat's age itself, which rises when the primary stops writing
// whether or not the replica is behind, is published apart (NodeStatus.HeartbeatMS)
// for confirm_lag: this lag may be 0 while it rises.
func replicaLag(heartbeat, idle time.Duration, nothingToApply bool, interval time.Duration) time.Duration {
	if nothingToApply && idle >= 0 && idle <= heartbeatsStop*interval {
		return 0
	}
	return max(0, heartbeat-interval)
}

// nothingToApply says whether a replica's server, as last read, has applied
// everything its IO thread received and that thread is connected. An unknown
// received set says nothing: false.
func nothingToApply(st *replication.Status) bool {
	return st != nil && st.IOThread == replication.ThreadRunning && st.Retrieved.Flavor() != replication.FlavorUnknown &&
		st.Executed.Contain(st.Retrieved)
}

// rebuildMoved says whether a rebuild's progress is worth publishing at once: it
// started or ended, changed step or error, or its stream went another twentieth of
// the donor's estimate (8 MiB at least, 128 MiB at most).
func rebuildMoved(a, b *cluster.RebuildProgress) bool {
	switch {
	case a == nil || b == nil:
		return (a == nil) != (b == nil)
	case a.ID != b.ID || a.Step != b.Step || a.Error != b.Error:
		return true
	}
	step := min(max(b.Size/20, 8<<20), 128<<20)
	return a.Bytes/step != b.Bytes/step
}
