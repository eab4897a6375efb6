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
	const interval = 500 * time.Millisecond
	cases := []struct {
		name            string
		heartbeat, idle time.Duration
		nothingToApply  bool
		want            time.Duration
	}{
		{"caught up, heartbeat of this interval: no sawtooth", 480 * time.Millisecond, 100 * time.Millisecond, true, 0},
		{"caught up, heartbeats arriving, a clock ahead of the primary's", 1624 * time.Millisecond, 400 * time.Millisecond, true, 0},
		{"caught up, one heartbeat late", 1200 * time.Millisecond, 900 * time.Millisecond, true, 0},
		{"caught up but no heartbeat for over three intervals: the part the rhythm does not explain",
			1800 * time.Millisecond, 1600 * time.Millisecond, true, 1300 * time.Millisecond},
		{"caught up, when the heartbeat arrived not known yet", 300 * time.Millisecond, -1, true, 0},
		{"caught up, arrival not known, heartbeat old", 2 * time.Second, -1, true, 1500 * time.Millisecond},
		{"applying a transaction received a moment ago: within the rhythm", 300 * time.Millisecond, 100 * time.Millisecond, false, 0},
		{"behind by seconds: the age less one interval", 10*time.Second + 200*time.Millisecond, 50 * time.Millisecond, false, 9700 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := replicaLag(tc.heartbeat, tc.idle, tc.nothingToApply, interval); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestPublishedLag: a caught-up replica publishes lag 0 and the heartbeat's age as
// read; when the primary stops writing, the lag may stay low but the heartbeat's age
// rises past confirm_lag, and that is published at once, as before: a stopped
// primary is still confirmed.
func TestPublishedLag(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	pos := func(s string) replication.GTIDSet { return replication.MustParseGTIDSet(replication.FlavorMariaDB, s) }
	det := &reportDetector{}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db2", Detector: det, Now: func() time.Time { return now }, Tick: 500 * time.Millisecond, ConfirmLag: time.Second},
		log: zap.NewNop(), role: cluster.RoleReplica}
	r.local = &replication.Status{Flavor: replication.FlavorMariaDB, ReadOnly: true, SourceHost: "198.18.0.11", SourcePort: 3306,
		IOThread: replication.ThreadRunning, SQLThread: replication.ThreadRunning, Executed: pos("0-1-100"), Retrieved: pos("0-1-100")}
	report := func(age, idle time.Duration) {
		det.rep = detector.Report{Verdict: detector.Healthy, Replication: &detector.Replication{HeartbeatLag: age, HeartbeatSeen: now.Add(-idle)}}
	}
	marks := publishMarks{confirmLag: time.Second, switchoverMaxLag: time.Second, gtidStep: 1000}

	report(1624*time.Millisecond, 300*time.Millisecond) // caught up; this host's clock 1.2 s ahead
	caughtUp := r.build(cluster.Snapshot{})
	if caughtUp.LagMS != 0 || caughtUp.HeartbeatMS != 1624 {
		t.Fatalf("caught up: lag %d, heartbeat %d; want 0 and 1624", caughtUp.LagMS, caughtUp.HeartbeatMS)
	}
	report(400*time.Millisecond, 200*time.Millisecond)
	fresh := r.build(cluster.Snapshot{})

	report(1400*time.Millisecond, 1400*time.Millisecond) // the primary stopped writing
	stopped := r.build(cluster.Snapshot{})
	if stopped.LagMS != 0 || stopped.HeartbeatAge() != 1400 {
		t.Fatalf("stopped primary, 1.4 s: lag %d, heartbeat age %d; want lag 0 (heartbeats stopped less than 3 intervals ago) and 1400", stopped.LagMS, stopped.HeartbeatAge())
	}
	if !publishNow(fresh, stopped, marks) {
		t.Fatal("a heartbeat age crossing confirm_lag was not published at once")
	}
	report(3*time.Second, 3*time.Second)
	if n := r.build(cluster.Snapshot{}); n.LagMS != 2500 || !publishNow(stopped, n, marks) {
		t.Fatalf("no heartbeat for 3 s: lag %d, want 2500, published at once (a doubling)", n.LagMS)
	}

	r.local.Executed = pos("0-1-90") // behind: ten transactions to apply
	report(10*time.Second, 100*time.Millisecond)
	if n := r.build(cluster.Snapshot{}); n.LagMS != 9500 || n.HeartbeatMS != 10000 {
		t.Fatalf("behind: lag %d, heartbeat %d; want 9500 and 10000", n.LagMS, n.HeartbeatMS)
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
		DiskFree: 10 << 30, Reason: "probes ok: write 2.5ms", At: time.Unix(100, 0), HeartbeatMS: 300,
		Forecasts: []detector.Forecast{
			{Resource: detector.ResourceDisk, Name: "/data", Used: 1 << 30, Limit: 11 << 30, RateKnown: true, Outlook: detector.OutlookSteady},
			{Resource: detector.ResourceAutoIncrement, Name: "shop.orders.id", Used: 1000, Limit: 2147483647, RateKnown: true, Rate: 1,
				Outlook: detector.OutlookFilling, Left: 600 * 24 * time.Hour},
		}}
	with := func(f func(*cluster.NodeStatus)) cluster.NodeStatus {
		n := base
		n.Forecasts = slices.Clone(base.Forecasts)
		f(&n)
		return n
	}
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
		{"heartbeat age within its rhythm", with(func(n *cluster.NodeStatus) { n.HeartbeatMS = 900 }), false},
		{"heartbeat age at confirm_lag, the lag still 0", with(func(n *cluster.NodeStatus) { n.HeartbeatMS = 1000 }), true},
		{"forecast figures", with(func(n *cluster.NodeStatus) {
			n.Forecasts[0].Used, n.Forecasts[1].Used, n.Forecasts[1].Left = 2<<30, 2000, 500*24*time.Hour
		}), false},
		{"the disk starts filling within a day", with(func(n *cluster.NodeStatus) {
			n.Forecasts[0].Outlook, n.Forecasts[0].Left = detector.OutlookFilling, 20*time.Hour
		}), true},
		{"the disk fills, but lasts more than a day", with(func(n *cluster.NodeStatus) {
			n.Forecasts[0].Outlook, n.Forecasts[0].Left = detector.OutlookFilling, 30*time.Hour
		}), false},
		{"the disk runs out unknown: its rate is no longer measured", with(func(n *cluster.NodeStatus) {
			n.Forecasts[0].Outlook, n.Forecasts[0].RateKnown = detector.OutlookUnknown, false
		}), true},
		{"an auto-increment key runs out", with(func(n *cluster.NodeStatus) { n.Forecasts[1].Outlook = detector.OutlookExhausted }), true},
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
	// A disk that fills within a day is published again each time its time left
	// halves (or doubles): a failover ranks the candidates by it.
	var runways []time.Duration
	filling := func(left time.Duration) cluster.NodeStatus {
		return with(func(n *cluster.NodeStatus) {
			n.Forecasts[0].Outlook, n.Forecasts[0].Left = detector.OutlookFilling, left
		})
	}
	lastRw := filling(4 * time.Hour)
	for left := 4 * time.Hour; left >= time.Minute; left -= 30 * time.Second {
		if n := filling(left); publishNow(lastRw, n, marks) {
			runways = append(runways, left)
			lastRw = n
		}
	}
	if want := []time.Duration{2 * time.Hour, time.Hour, 30 * time.Minute, 15 * time.Minute, 7*time.Minute + 30*time.Second,
		3*time.Minute + 30*time.Second, 1*time.Minute + 30*time.Second}; !slices.Equal(runways, want) {
		t.Errorf("a shrinking runway was published at %v, want %v", runways, want)
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

// TestForecastsPublished: a node publishes a forecast for each filesystem its server
// writes and those of its slow loop, and its disk figures cover the relay log's
// filesystem too.
func TestForecastsPublished(t *testing.T) {
	det := reportDetector{rep: detector.Report{Verdict: detector.Healthy, Disks: []detector.Disk{
		{Path: "/data", Holds: "datadir, binlog", Total: 10 << 30, Free: 5 << 30, RateKnown: true},
		{Path: "/relay", Holds: "relay log", Total: 1 << 30, Free: 100 << 20, FillRate: 1 << 20, RateKnown: true, TimeToFull: 100 * time.Second},
	}}}
	key := detector.Forecast{Resource: detector.ResourceAutoIncrement, Name: "shop.orders.id", Detail: "int", Used: 2147483000, Limit: 2147483647,
		Rate: 10, RateKnown: true, Outlook: detector.OutlookFilling, Left: 64 * time.Second}
	r := &Reconciler{cfg: ReconcilerConfig{Node: "db2", Detector: det, Now: time.Now, Forecasts: func() []detector.Forecast { return []detector.Forecast{key} }},
		log: zap.NewNop(), role: cluster.RoleReplica}
	n := r.build(cluster.Snapshot{})
	if len(n.Forecasts) != 3 {
		t.Fatalf("forecasts %+v, want the two disks' and the key's", n.Forecasts)
	}
	if d := n.Forecasts[0]; d.Name != "/data" || d.Detail != "datadir, binlog" || d.Outlook != detector.OutlookSteady {
		t.Errorf("datadir's forecast %+v", d)
	}
	if d := n.Forecasts[1]; d.Name != "/relay" || d.Says() != "full in about 2m" {
		t.Errorf("relay log's forecast %+v (%s)", d, d.Says())
	}
	if n.Forecasts[2] != key {
		t.Errorf("the slow loop's forecast %+v", n.Forecasts[2])
	}
	if n.DiskFree != 100<<20 || n.DiskTimeToFull != 100*time.Second || n.Runway().Name != "/relay" {
		t.Errorf("disk free %d, time to full %s, runway %+v: want the relay log's filesystem", n.DiskFree, n.DiskTimeToFull, n.Runway())
	}
}

// TestMarksFollowThePolicy: a heartbeat age crossing the cluster policy's
// confirm_lag is published at once, whatever this agent's file says: that policy is
// what the coordinator confirms with.
func TestMarksFollowThePolicy(t *testing.T) {
	cfg := ReconcilerConfig{ConfirmLag: time.Second, GTIDStep: 1000, Policy: cluster.Policy{SwitchoverMaxLag: time.Second}}
	withPolicy := func(confirm, maxLag time.Duration) cluster.Snapshot {
		var s cluster.Snapshot
		s.Policy = &cluster.PolicyRecord{Policy: cluster.Policy{ConfirmLag: confirm, SwitchoverMaxLag: maxLag}}
		return s
	}
	cases := []struct {
		name       string
		snap       cluster.Snapshot
		confirmLag time.Duration
		maxLag     time.Duration
	}{
		{"no policy in etcd: the file", cluster.Snapshot{}, time.Second, time.Second},
		{"the cluster's policy", withPolicy(3*time.Second, 2*time.Second), 3 * time.Second, 2 * time.Second},
		{"a policy without confirm_lag: the file's", withPolicy(0, 2*time.Second), time.Second, 2 * time.Second},
	}
	for _, tc := range cases {
		m := marksFor(cfg, tc.snap)
		if m.confirmLag != tc.confirmLag || m.switchoverMaxLag != tc.maxLag || m.gtidStep != 1000 {
			t.Errorf("%s: marks %+v, want confirm_lag %s, switchover_max_lag %s", tc.name, m, tc.confirmLag, tc.maxLag)
		}
	}
	// With the policy's 3 s, an age going from 2.5 s to 3.1 s is news; with the
	// file's 1 s marks (1, 2, 4 s) it was not.
	before := cluster.NodeStatus{LagMS: 0, HeartbeatMS: 2500}
	after := cluster.NodeStatus{LagMS: 0, HeartbeatMS: 3100}
	if !publishNow(before, after, marksFor(cfg, withPolicy(3*time.Second, time.Second))) {
		t.Error("a heartbeat age crossing the policy's 3 s confirm_lag is not published at once")
	}
	if publishNow(before, after, marksFor(cfg, cluster.Snapshot{})) {
		t.Error("with the file's 1 s marks, 2.5 s -> 3.1 s should not be news (the test's premise)")
	}
}
