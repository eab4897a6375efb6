package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

func TestReplicaLag(t *testing.T) {
	const interval, confirm = 500 * time.Millisecond, time.Second
	cases := []struct {
		name      string
		heartbeat time.Duration
		caughtUp  bool
		confirm   time.Duration
		want      time.Duration
	}{
		{"caught up, heartbeat of this interval: no sawtooth", 480 * time.Millisecond, true, confirm, 0},
		{"caught up, one heartbeat late", 740 * time.Millisecond, true, confirm, 0},
		{"caught up but the heartbeat stopped: reported as it is", 800 * time.Millisecond, true, confirm, 800 * time.Millisecond},
		{"relay log not applied: the heartbeat's age", 300 * time.Millisecond, false, confirm, 300 * time.Millisecond},
		{"never hides a lag that confirms a stopped primary", 700 * time.Millisecond, true, 600 * time.Millisecond, 700 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := replicaLag(tc.heartbeat, tc.caughtUp, interval, tc.confirm); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestCurrentShowsFenceAtOnce: a node that starts fencing itself stops reporting the
// primary role before its next pass publishes a new status, so /primary refuses at
// once.
func TestCurrentShowsFenceAtOnce(t *testing.T) {
	r := &Reconciler{log: zap.NewNop()}
	r.current = cluster.NodeStatus{Node: "db1", Role: cluster.RolePrimary, Verdict: detector.Healthy}
	r.role = cluster.RolePrimary
	if n, _ := r.Current(); n.Role != cluster.RolePrimary {
		t.Fatalf("role before the fence = %s", n.Role)
	}
	r.setRole(cluster.RoleFenced)
	if n, _ := r.Current(); n.Role != cluster.RoleFenced {
		t.Fatalf("role once fencing started = %s, want fenced", n.Role)
	}
	if r.current.Role != cluster.RolePrimary {
		t.Fatal("Current changed the published status")
	}
}

// TestPublishNow: what is published at once, and what waits for PublishEvery.
func TestPublishNow(t *testing.T) {
	marks := publishMarks{confirmLag: time.Second, switchoverMaxLag: 500 * time.Millisecond, gtidStep: 1000}
	base := cluster.NodeStatus{Node: "db2", Addr: "198.18.0.2:3306", Role: cluster.RoleReplica, Verdict: detector.Healthy, ServerRead: true,
		Flavor: "mariadb", GTID: "0-1-5000", IORunning: true, SQLRunning: true, LagMS: 0, StorageOK: true, WriteMS: 2.5, PingMS: 0.4,
		DiskFree: 10 << 30, Reason: "probes ok: write 2.5ms", At: time.Unix(100, 0)}
	with := func(f func(*cluster.NodeStatus)) cluster.NodeStatus { n := base; f(&n); return n }
	cases := []struct {
		name string
		b    cluster.NodeStatus
		want bool
	}{
		{"nothing", base, false},
		{"latencies, disk, wording, time", with(func(n *cluster.NodeStatus) {
			n.WriteMS, n.PingMS, n.DiskFree, n.Reason, n.At = 40, 9, 9<<30, "probes ok: write 40ms", time.Unix(130, 0)
		}), false},
		{"gtid a little further", with(func(n *cluster.NodeStatus) { n.GTID = "0-1-5999" }), false},
		{"gtid a step further", with(func(n *cluster.NodeStatus) { n.GTID = "0-1-6000" }), true},
		{"gtid of another server at the same count", with(func(n *cluster.NodeStatus) { n.GTID = "0-2-5000" }), false},
		{"gtid unparsable", with(func(n *cluster.NodeStatus) { n.GTID = "garbage" }), true},
		{"lag within switchover_max_lag", with(func(n *cluster.NodeStatus) { n.LagMS = 400 }), false},
		{"lag over switchover_max_lag", with(func(n *cluster.NodeStatus) { n.LagMS = 600 }), true},
		{"lag unknown", with(func(n *cluster.NodeStatus) { n.LagMS = -1 }), true},
		{"lag at confirm_lag", with(func(n *cluster.NodeStatus) { n.LagMS = 1000 }), true},
		{"verdict", with(func(n *cluster.NodeStatus) { n.Verdict = detector.Suspect }), true},
		{"io thread", with(func(n *cluster.NodeStatus) { n.IORunning = false }), true},
		{"replication error", with(func(n *cluster.NodeStatus) { n.ReplError = "Duplicate entry" }), true},
		{"semi-sync", with(func(n *cluster.NodeStatus) { n.SemiSync = cluster.SemiSyncReplicaOff }), true},
		{"semi-sync replicas connected, from none", with(func(n *cluster.NodeStatus) { n.SemiSyncClients = 1 }), true},
		{"server identity", with(func(n *cluster.NodeStatus) { n.ServerID = 7 }), true},
		{"policy", with(func(n *cluster.NodeStatus) { n.Policy = &cluster.Policy{ConfirmLag: time.Second} }), true},
		{"primary view", with(func(n *cluster.NodeStatus) { n.PrimaryView = &cluster.PeerView{Node: "db1", Reachable: true} }), true},
	}
	for _, tc := range cases {
		if got := publishNow(base, tc.b, marks); got != tc.want {
			t.Errorf("%s: publishNow = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A lag that keeps growing past confirm_lag is published at each doubling.
	var published []int64
	last := with(func(n *cluster.NodeStatus) { n.LagMS = 1200 })
	for ms := int64(1200); ms <= 9000; ms += 100 {
		n := with(func(n *cluster.NodeStatus) { n.LagMS = ms })
		if publishNow(last, n, marks) {
			published = append(published, ms)
			last = n
		}
	}
	if want := []int64{2000, 4000, 8000}; !slices.Equal(published, want) {
		t.Errorf("a growing lag was published at %v ms, want %v", published, want)
	}
}

// countVIP counts what the reconciler asks of the virtual IP.
type countVIP struct{ acquired, released int }

func (v *countVIP) Acquire(context.Context) error      { v.acquired++; return nil }
func (v *countVIP) Release(context.Context) error      { v.released++; return nil }
func (v *countVIP) Held(context.Context) (bool, error) { return v.acquired > v.released, nil }
func (v *countVIP) Seal()                              {}
func (v *countVIP) Unseal()                            {}

// TestLocalFenceStands: once the agent fenced its node without etcd in a session, a
// pass that still sees the node as the writable primary of record (a view from
// before, e.g. the cache's while etcd is cut off) neither takes the virtual IP back
// nor reports the primary role.
func TestLocalFenceStands(t *testing.T) {
	v := &countVIP{}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db1", VIP: v}, log: zap.NewNop(), role: cluster.RolePrimary}
	r.mu.Lock()
	r.localFence = "etcd session not renewed for 2.1s"
	r.mu.Unlock()
	for _, action := range []NodeAction{NodeHoldPrimary, NodeMakeWritable, NodePromote} {
		r.act(context.Background(), cluster.Snapshot{}, 1, Analysis{Action: action, Role: cluster.RolePrimary})
		if v.acquired != 0 {
			t.Fatalf("%s: the virtual IP was taken back", action)
		}
		if n, _ := r.Current(); n.Role != cluster.RoleFenced {
			t.Fatalf("%s: role %s, want fenced", action, n.Role)
		}
	}
}

// A replica whose disk just filled is still "healthy" by its verdict (hysteresis) but
// must not read as a fit candidate: its promotion would fail on the relay logs
// (a fault campaign promoted one and RESET SLAVE ALL failed with error 1373).
func TestStorageOKLooksAtTheLatestRound(t *testing.T) {
	ok := &detector.Result{Class: detector.OK}
	failed := &detector.Result{Class: detector.StorageFailed}
	roomy := detector.Disk{Path: "/d", Total: 1 << 30, Free: 100 << 20}
	for _, tc := range []struct {
		name string
		rep  detector.Report
		want bool
	}{
		{"probe ok, room", detector.Report{Verdict: detector.Healthy, Storage: ok, Disks: []detector.Disk{roomy}}, true},
		{"probe ok, no disks configured", detector.Report{Verdict: detector.Healthy, Storage: ok}, true},
		{"probe failed", detector.Report{Verdict: detector.Healthy, Storage: failed, Disks: []detector.Disk{roomy}}, false},
		{"healthy verdict, disk full", detector.Report{Verdict: detector.Healthy, Storage: ok,
			Disks: []detector.Disk{roomy, {Path: "/b", Total: 1 << 30, Free: 0}}}, false},
		{"healthy verdict, disk under 1 MiB", detector.Report{Verdict: detector.Healthy, Storage: ok,
			Disks: []detector.Disk{{Path: "/d", Total: 1 << 30, Free: 4096}}}, false},
		{"filesystem unreadable", detector.Report{Verdict: detector.Healthy, Storage: ok,
			Disks: []detector.Disk{{Path: "/d", Err: "permission denied"}}}, false},
		{"zero disk", detector.Report{Verdict: detector.Healthy, Storage: ok, Disks: []detector.Disk{{}}}, false},
		{"no storage probe, healthy", detector.Report{Verdict: detector.Healthy, Disks: []detector.Disk{roomy}}, true},
		{"no storage probe, degraded", detector.Report{Verdict: detector.Degraded, Disks: []detector.Disk{roomy}}, false},
		{"zero report", detector.Report{}, false},
	} {
		if got := storageOK(tc.rep); got != tc.want {
			t.Errorf("%s: storageOK = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAwaitsAck(t *testing.T) {
	roomy := detector.Disk{Path: "/d", Total: 1 << 30, Free: 100 << 20}
	full := detector.Disk{Path: "/d", Total: 1 << 30, Free: 0}
	waiting := replication.SemiSync{Available: true, SourceEnabled: true, SourceActive: true, WaitSessions: 2}
	for _, tc := range []struct {
		name string
		ss   replication.SemiSync
		rep  detector.Report
		want bool
	}{
		{"unwritable, commits waiting, disk roomy", waiting, detector.Report{Verdict: detector.Unwritable, Disks: []detector.Disk{roomy}}, true},
		{"suspect, commits waiting", waiting, detector.Report{Verdict: detector.Suspect, Disks: []detector.Disk{roomy}}, true},
		{"healthy: commits wait for a moment under load", waiting, detector.Report{Verdict: detector.Healthy, Disks: []detector.Disk{roomy}}, false},
		{"unwritable, nothing waiting", replication.SemiSync{Available: true, SourceEnabled: true}, detector.Report{Verdict: detector.Unwritable}, false},
		{"unwritable on a full disk: commits wait for space", waiting, detector.Report{Verdict: detector.Unwritable, Disks: []detector.Disk{roomy, full}}, false},
		{"zero report", waiting, detector.Report{}, false},
		{"zero semi-sync", replication.SemiSync{}, detector.Report{Verdict: detector.Unwritable}, false},
	} {
		if got := awaitsAck(tc.ss, tc.rep); got != tc.want {
			t.Errorf("%s: awaitsAck = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// followServer is a server whose Follow answers err; nothing else of it is called.
// With changes set, its Follow would change replication: like a real server's, it
// then asks confirm first. It counts the changes made.
type followServer struct {
	Local
	err     error
	changes bool
	calls   int
	applied int
}

func (s *followServer) Follow(ctx context.Context, _ replication.Source, confirm func(context.Context) error) error {
	s.calls++
	if s.changes && confirm != nil {
		if err := confirm(ctx); err != nil {
			return err
		}
	}
	s.applied++
	return s.err
}

// reportDetector reports rep.
type reportDetector struct{ rep detector.Report }

func (d reportDetector) Report() detector.Report { return d.rep }
func (reportDetector) SetRole(detector.Probes)   {}
func (reportDetector) SetEpoch(uint64)           {}

// A replica whose relay log MariaDB cannot open any more is quarantined with what a
// person must do, not left re-running CHANGE MASTER as a replica (a fault campaign
// found one doing so twice a second); once Follow works again, it is a replica.
func TestFollowOnUnusableRelayLog(t *testing.T) {
	srv := &followServer{err: fmt.Errorf("follow: %w", replication.ErrRelayLogUnusable)}
	det := reportDetector{rep: detector.Report{Verdict: detector.Degraded, Reason: "replication IO thread stopped on error 2003"}}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db2", Local: srv, Detector: det, Now: time.Now}, log: zap.NewNop(), role: cluster.RoleReplica}
	// Replicating from the primary with both threads running, as last read: Follow
	// only checks, no fresh read of etcd first (TestFollowConfirmsTheView).
	r.local = &replication.Status{IOThread: replication.ThreadRunning, SQLThread: replication.ThreadRunning}
	snap := failedOver()
	a := Analysis{Action: NodeFollow, Role: cluster.RoleReplica, Probe: detector.Replica, Source: replication.Source{Host: "198.18.0.2", Port: 3306}, Following: true}
	r.follow(t.Context(), snap, a)
	if n := r.build(snap); n.Role != cluster.RoleQuarantined || !strings.Contains(n.Reason, "restart mariadbd") {
		t.Fatalf("published %s with reason %q, want quarantined saying to restart mariadbd", n.Role, n.Reason)
	}

	srv.err = errors.New("connect: connection refused") // any other failure: no quarantine news
	r.follow(t.Context(), snap, a)
	if n := r.build(snap); n.Role != cluster.RoleQuarantined {
		t.Fatalf("role after another follow error = %s, want quarantined still", n.Role)
	}

	srv.err = nil // restarted: Follow works
	r.follow(t.Context(), snap, a)
	if n := r.build(snap); n.Role != cluster.RoleReplica || strings.Contains(n.Reason, "mariadbd") {
		t.Fatalf("after Follow worked: %s, %q; want a replica with the detector's reason", n.Role, n.Reason)
	}
}

// A quarantine for diverged data publishes its reason (there are no errant GTIDs to
// show); a later errant quarantine shows its GTIDs, not the old reason.
func TestQuarantineReason(t *testing.T) {
	det := reportDetector{rep: detector.Report{Verdict: detector.Degraded, Reason: "replication SQL thread stopped on error 1062"}}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db2", Detector: det, Now: time.Now}, log: zap.NewNop(), role: cluster.RoleReplica}
	snap := steady()
	r.act(t.Context(), snap, leases["db2"], Analysis{Action: NodeQuarantine, Role: cluster.RoleQuarantined, Probe: detector.Replica,
		Reason: "data diverged from the primary of record: replication stopped on error 1062"})
	if n := r.build(snap); n.Role != cluster.RoleQuarantined || !strings.HasPrefix(n.Reason, "data diverged") || n.Errant != "" {
		t.Fatalf("published %s, reason %q, errant %q; want quarantined with the divergence", n.Role, n.Reason, n.Errant)
	}
	r.act(t.Context(), snap, leases["db2"], Analysis{Action: NodeQuarantine, Role: cluster.RoleQuarantined, Probe: detector.Replica,
		Errant: "0-2-7", Reason: "errant transactions 0-2-7"})
	if n := r.build(snap); n.Errant != "0-2-7" || strings.HasPrefix(n.Reason, "data diverged") {
		t.Fatalf("published errant %q, reason %q; want the errant GTIDs and not the old reason", n.Errant, n.Reason)
	}
}

// A replica about to (re)start replication on its cached view confirms it first with
// a fresh read (Follow calls it under the server's replication lock): a failover flow
// may have stopped its IO thread a moment ago, its intent not yet in the cache, and
// restarting it would fetch the old primary's last commits (fault campaign rounds,
// seed 33 round 20 and seed 41 round 19).
func TestFollowConfirmsTheView(t *testing.T) {
	ctx := t.Context()
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "shop")
	srv := &followServer{changes: true}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db3", Local: srv, Store: store, Now: time.Now}, log: zap.NewNop(), role: cluster.RoleReplica}
	view := failedOver()
	a := Analysis{Action: NodeFollow, Role: cluster.RoleReplica, Source: replication.Source{Host: "198.18.0.2", Port: 3306}, Following: true}

	r.follow(ctx, view, a) // etcd has no primary yet
	if srv.calls != 1 || srv.applied != 0 {
		t.Fatalf("Follow called %d times, changed replication %d times; want 1 call and no change on a view etcd does not show", srv.calls, srv.applied)
	}
	if err := store.BootstrapPrimary(ctx, nil, view.Primary); err != nil {
		t.Fatal(err)
	}
	r.follow(ctx, view, a)
	if srv.applied != 1 {
		t.Fatal("replication not changed on a view etcd confirms")
	}
	fresh, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutIntent(ctx, nil, 0, fresh.PrimaryModRev, cluster.Intent{Kind: "failover", Epoch: view.Primary.Epoch, From: "db2", To: "db3"}); err != nil {
		t.Fatal(err)
	}
	r.follow(ctx, view, a) // the cached view has no flow; etcd has one
	if srv.applied != 1 {
		t.Fatal("replication changed while etcd shows a failover under way")
	}
	if r.role == cluster.RoleQuarantined {
		t.Fatal("a changed view quarantined the node")
	}
}

// TestCheckPolicyLogsOncePerChange: a node whose file disagrees says so once per
// change, not at every pass.
func TestCheckPolicyLogsOncePerChange(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	file := cluster.Policy{FailoverBlock: time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: time.Second}
	r := &Reconciler{cfg: ReconcilerConfig{Policy: file}, log: zap.New(core)}
	shared := file
	shared.FailoverBlock = 5 * time.Minute
	other := shared
	other.ConfirmLag = 2 * time.Second
	steps := []struct {
		snap cluster.Snapshot
		want string // message logged at this pass, "" for none
	}{
		{cluster.Snapshot{}, ""},
		{cluster.Snapshot{Policy: &cluster.PolicyRecord{Policy: file}}, ""},
		{cluster.Snapshot{Policy: &cluster.PolicyRecord{Policy: shared}}, "disagrees"},
		{cluster.Snapshot{Policy: &cluster.PolicyRecord{Policy: shared}}, ""},
		{cluster.Snapshot{Policy: &cluster.PolicyRecord{Policy: other}}, "disagrees"},
		{cluster.Snapshot{PolicyErr: "parse policy: EOF"}, "unreadable"},
		{cluster.Snapshot{PolicyErr: "parse policy: EOF"}, ""},
		{cluster.Snapshot{Policy: &cluster.PolicyRecord{Policy: file}}, "agrees"},
		{cluster.Snapshot{Policy: &cluster.PolicyRecord{Policy: file}}, ""},
		{cluster.Snapshot{Policy: &cluster.PolicyRecord{Policy: shared}}, "disagrees"},
		{cluster.Snapshot{}, ""}, // the key deleted: nothing to compare with, and no false "agrees"
		{cluster.Snapshot{Policy: &cluster.PolicyRecord{Policy: file}}, ""},
	}
	for i, s := range steps {
		before := logs.Len()
		r.checkPolicy(s.snap)
		got := logs.All()[before:]
		switch {
		case s.want == "" && len(got) != 0:
			t.Fatalf("pass %d: logged %q, want nothing", i, got[0].Message)
		case s.want != "" && (len(got) != 1 || !strings.Contains(got[0].Message, s.want)):
			t.Fatalf("pass %d: logged %v, want one line with %q", i, got, s.want)
		}
	}
}

// raceServer is the local server of a pass that checked "not fenced" and then
// promotes, while the agent's local fence runs: its Promote waits until release is
// closed. It keeps the order in which read_only was turned off and on.
type raceServer struct {
	Local
	mu       sync.Mutex
	readOnly bool
	ops      []string
	entered  chan struct{}
	release  chan struct{}
}

func (s *raceServer) Promote(context.Context) error {
	close(s.entered)
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readOnly = false
	s.ops = append(s.ops, "promote")
	return nil
}

func (s *raceServer) Fence(context.Context) (replication.FenceReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readOnly = true
	s.ops = append(s.ops, "fence")
	return replication.FenceReport{ReadOnly: true}, nil
}

// sealVIP is a virtual IP with the fence's latch, as vip.Mover has it.
type sealVIP struct {
	mu                 sync.Mutex
	held, sealed       bool
	acquired, released int
}

func (v *sealVIP) Acquire(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.sealed {
		return errors.New("sealed")
	}
	v.held = true
	v.acquired++
	return nil
}

func (v *sealVIP) Release(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.held = false
	v.released++
	return nil
}

func (v *sealVIP) Held(context.Context) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.held, nil
}
func (v *sealVIP) Seal()   { v.mu.Lock(); v.sealed = true; v.mu.Unlock() }
func (v *sealVIP) Unseal() { v.mu.Lock(); v.sealed = false; v.mu.Unlock() }

// TestLocalFenceRacesAPass: the agent fences its node without etcd (its lease
// renewal is late) while a reconciler pass that already checked "not fenced" is
// making the server writable. Whatever the interleaving, the fence is what stands:
// the server ends read_only and the virtual IP is neither held nor taken again.
func TestLocalFenceRacesAPass(t *testing.T) {
	srv := &raceServer{entered: make(chan struct{}), release: make(chan struct{})}
	v := &sealVIP{}
	det := &reportDetector{}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db1", Local: srv, VIP: v, Detector: det, FenceTimeout: time.Second, Now: time.Now},
		log: zap.NewNop(), role: cluster.RolePrimary}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.act(t.Context(), cluster.Snapshot{}, 1, Analysis{Action: NodeMakeWritable, Role: cluster.RolePrimary, Probe: detector.Primary})
	}()
	<-srv.entered // the pass checked, and its Promote is under way
	r.FenceLocal(t.Context(), "etcd session not renewed for 2.1s")
	close(srv.release)
	<-done
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if !srv.readOnly {
		t.Fatalf("server writable after the local fence (operations %v): the pass's Promote undid it", srv.ops)
	}
	if held, _ := v.Held(t.Context()); held {
		t.Fatal("the virtual IP is held after the local fence")
	}
	// Every later pass of this session finds the mover sealed, and the next session
	// (Run's start) unseals it.
	if err := v.Acquire(t.Context()); err == nil {
		t.Fatal("the virtual IP could be taken again in the fenced session")
	}
}

// TestQuarantinedStatusSaysWhy: a quarantined node publishes the quarantine's reason
// (why, and what comes next), not its detector's "no replication configured", and no
// lag: it replicates nothing, and its heartbeat's age growing is no lag.
func TestQuarantinedStatusSaysWhy(t *testing.T) {
	det := reportDetector{rep: detector.Report{Verdict: detector.Degraded, Reason: "replica has no replication configured (SHOW SLAVE STATUS is empty)",
		Replication: &detector.Replication{HeartbeatLag: 42 * time.Second}}}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db1", Detector: det, Now: time.Now, Tick: 500 * time.Millisecond, ConfirmLag: time.Second},
		log: zap.NewNop(), role: cluster.RoleQuarantined}
	why := "real errant transactions in the binary log (0-1-44): rejoin mode is manual; a person decides: baton rejoin db1 --discard-errant --yes"
	r.setStuck(why)
	r.errantSet("0-1-44")
	r.local = &replication.Status{Flavor: replication.FlavorMariaDB, ReadOnly: true}
	n := r.build(cluster.Snapshot{})
	if n.Reason != why || n.LagMS != -1 {
		t.Fatalf("published reason %q, lag %d: want the quarantine's reason and no lag", n.Reason, n.LagMS)
	}
	// A replica of the primary has its lag; so has one quarantined with its source
	// kept, its SQL thread stopped on diverged data.
	r.role = cluster.RoleReplica
	r.local = &replication.Status{Flavor: replication.FlavorMariaDB, ReadOnly: true, SourceHost: "198.18.0.12", SourcePort: 3306,
		IOThread: replication.ThreadRunning, SQLThread: replication.ThreadRunning}
	if n := r.build(cluster.Snapshot{}); n.LagMS < 0 {
		t.Fatalf("a replicating node's lag: %d, want its heartbeat's", n.LagMS)
	}
	r.role = cluster.RoleQuarantined
	r.local.SQLThread = replication.ThreadStopped
	if n := r.build(cluster.Snapshot{}); n.LagMS < 0 {
		t.Fatalf("a quarantined replica's lag, its source kept: %d, want its heartbeat's", n.LagMS)
	}
}
