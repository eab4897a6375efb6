package reconcile

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// TestKeepVIPForHandover: a deposed primary keeps the address only while another
// node is the primary of record, has not announced the address, and the bound has
// not passed.
func TestKeepVIPForHandover(t *testing.T) {
	now := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	deposed := func(newHolds bool) cluster.Snapshot {
		s := cluster.Snapshot{}
		s.Primary = cluster.Primary{Node: "db2", Epoch: 7}
		s.Nodes = map[string]cluster.NodeStatus{"db1": {Node: "db1"}, "db2": {Node: "db2", VIP: newHolds}}
		return s
	}
	noPrimary := cluster.Snapshot{}
	self := deposed(false)
	self.Primary.Node = "db1"
	cases := []struct {
		name  string
		snap  cluster.Snapshot
		since time.Time
		want  bool
	}{
		{"first look, the new primary has not announced it", deposed(false), time.Time{}, true},
		{"within the bound", deposed(false), now.Add(-HandoverBound / 2), true},
		{"the bound passed", deposed(false), now.Add(-HandoverBound), false},
		{"the new primary announces it", deposed(true), time.Time{}, false},
		{"no primary of record (zero snapshot)", noPrimary, time.Time{}, false},
		{"this node is the primary of record", self, time.Time{}, false},
	}
	for _, tc := range cases {
		if got := keepVIPForHandover(tc.snap, "db1", tc.since, now); got != tc.want {
			t.Errorf("%s: keep %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fenceOnly is a local server whose Fence succeeds (read_only) or fails.
type fenceOnly struct {
	Local
	err    error
	fences int
}

func (s *fenceOnly) Fence(context.Context) (replication.FenceReport, error) {
	s.fences++
	if s.err != nil {
		return replication.FenceReport{}, s.err
	}
	return replication.FenceReport{ReadOnly: true}, nil
}

// TestDeposedPrimaryHandsTheVIPOver: a deposed primary whose server the flow made
// read_only, or whose mysqld is not running, keeps the virtual IP after the commit
// until the new primary announces it, or HandoverBound passes; one whose server's
// state is not known (the flow's fence failed, and something listens) lets it go
// first, as always. The leader key goes at once in every case.
func TestDeposedPrimaryHandsTheVIPOver(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "handover")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	_, refusedErr := net.Dial("tcp", closed)
	class, detail := detector.Classify(refusedErr)
	notRunning := detector.Report{Rounds: 5, RoundVerdict: detector.Unreachable, Ping: &detector.Result{Class: class, Detail: detail}}
	frozen := detector.Report{Rounds: 5, RoundVerdict: detector.Unreachable, Ping: &detector.Result{Class: detector.TimedOut, Detail: "no answer"}}
	healthy := detector.Report{Rounds: 5, Ping: &detector.Result{Class: detector.OK}}

	deposed := func(newHolds bool) cluster.Snapshot {
		s := cluster.Snapshot{}
		s.Primary = cluster.Primary{Node: "db2", Epoch: 7}
		s.Nodes = map[string]cluster.NodeStatus{"db1": {Node: "db1"}, "db2": {Node: "db2", VIP: newHolds}}
		return s
	}
	now := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	ctx := t.Context()
	// leader puts the leader key on a fresh lease for db1, as the old primary's
	// agent holds it, and says whether it is still there.
	leader := func(t *testing.T) (clientv3.LeaseID, func() bool) {
		g, err := cli.Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Delete(ctx, store.Keys.Leader()); err != nil {
			t.Fatal(err)
		}
		if err := store.AcquireLeader(ctx, g.ID, "db1", 0); err != nil {
			t.Fatal(err)
		}
		return g.ID, func() bool {
			r, err := cli.Get(ctx, store.Keys.Leader())
			if err != nil {
				t.Fatal(err)
			}
			return len(r.Kvs) == 1
		}
	}
	det := &switchDetector{}
	newReconciler := func(srv Local, rep detector.Report) (*Reconciler, *countVIP) {
		v := &countVIP{acquired: 1}
		det.rep = rep
		r := &Reconciler{cfg: ReconcilerConfig{Node: "db1", Local: srv, VIP: v, Detector: det, Store: store,
			FenceTimeout: time.Second, Now: func() time.Time { return now }}, log: zap.NewNop(), role: cluster.RolePrimary}
		return r, v
	}
	intent := Analysis{FenceWhy: "a failover away from this node is in progress", IntentKey: "k", Epoch: 6}
	why := "not the primary of record (now db2)"

	t.Run("fenced read_only for the flow: kept until the new primary announces it", func(t *testing.T) {
		lease, held := leader(t)
		r, v := newReconciler(&fenceOnly{}, healthy)
		r.fenceForIntent(ctx, intent)
		r.fenceSelf(ctx, deposed(false), lease, why, true)
		if v.released != 0 || !r.handingOver() {
			t.Fatalf("released %d, handing over %v: want the address kept", v.released, r.handingOver())
		}
		if held() {
			t.Fatal("the leader key is still held while the address is handed over")
		}
		// The pass's second analysis, after the local read, asks for the fence
		// without saying the flow fenced the server: the flow's evidence stands.
		r.fenceSelf(ctx, deposed(false), lease, why, false)
		if v.released != 0 {
			t.Fatal("released at the analysis after the local read: the flow's fence made the server read_only")
		}
		now = now.Add(HandoverBound / 2)
		r.fenceSelf(ctx, deposed(false), lease, why, true)
		r.expireHandover(ctx, deposed(false))
		if v.released != 0 {
			t.Fatal("released within the bound, the new primary silent")
		}
		r.fenceSelf(ctx, deposed(true), lease, why, true)
		if v.released != 1 || r.handingOver() {
			t.Fatalf("released %d, handing over %v once the new primary holds it: want released", v.released, r.handingOver())
		}
	})
	t.Run("fenced for the flow, then a fence fails on a server that listens: let go", func(t *testing.T) {
		lease, _ := leader(t)
		srv := &fenceOnly{}
		r, v := newReconciler(srv, healthy)
		r.fenceForIntent(ctx, intent)
		srv.err = errors.New("context deadline exceeded")
		r.fenceSelf(ctx, deposed(false), lease, why, false)
		if v.released != 1 || r.handingOver() {
			t.Fatalf("released %d, handing over %v: the flow's evidence no longer holds", v.released, r.handingOver())
		}
	})
	t.Run("the bound passes: let go by the next pass, whatever it decides", func(t *testing.T) {
		lease, _ := leader(t)
		r, v := newReconciler(&fenceOnly{}, healthy)
		r.fenceForIntent(ctx, intent)
		r.fenceSelf(ctx, deposed(false), lease, why, true)
		now = now.Add(HandoverBound)
		r.expireHandover(ctx, deposed(false))
		if v.released != 1 || r.handingOver() {
			t.Fatalf("released %d after the bound: want 1", v.released)
		}
	})
	t.Run("the flow's fence failed and something listens: let go at once", func(t *testing.T) {
		lease, held := leader(t)
		r, v := newReconciler(&fenceOnly{err: errors.New("context deadline exceeded")}, frozen)
		r.fenceForIntent(ctx, intent)
		if v.released != 1 {
			t.Fatalf("released %d at the intent: a frozen server keeps no address", v.released)
		}
		v.acquired = 2 // held again, as if
		r.fenceSelf(ctx, deposed(false), lease, why, true)
		if v.released != 2 || r.handingOver() {
			t.Fatalf("released %d, handing over %v: a server that might take writes keeps no address", v.released, r.handingOver())
		}
		if held() {
			t.Fatal("the leader key is still held")
		}
	})
	t.Run("not fenced for a flow, server state unknown: the address goes first", func(t *testing.T) {
		lease, _ := leader(t)
		r, v := newReconciler(&fenceOnly{}, healthy)
		r.fenceSelf(ctx, deposed(false), lease, why, false)
		if v.released != 1 || r.handingOver() {
			t.Fatalf("released %d, handing over %v: want released before the fence", v.released, r.handingOver())
		}
	})
	t.Run("mysqld not running: kept from the intent, let go when something listens again", func(t *testing.T) {
		lease, held := leader(t)
		r, v := newReconciler(&fenceOnly{err: errors.New("connect: connection refused")}, notRunning)
		r.fenceForIntent(ctx, intent)
		if v.released != 0 || !r.handingOver() {
			t.Fatalf("released %d at the intent: a server not running refuses connections at once", v.released)
		}
		r.fenceSelf(ctx, deposed(false), lease, why, true)
		if v.released != 0 || held() {
			t.Fatalf("released %d, leader key held %v: want the address kept and the key gone", v.released, held())
		}
		det.rep = healthy // mysqld restarted: it should be read_only, but that is not known
		r.expireHandover(ctx, deposed(false))
		if v.released != 1 {
			t.Fatalf("released %d once something listens again: want 1", v.released)
		}
	})
	t.Run("the flow abandoned: the primary of record again, its address not dropped", func(t *testing.T) {
		r, v := newReconciler(&fenceOnly{err: errors.New("connect: connection refused")}, notRunning)
		r.fenceForIntent(ctx, intent)
		self := deposed(false)
		self.Primary.Node = "db1"
		now = now.Add(HandoverBound)
		r.expireHandover(ctx, self)
		if v.released != 0 || r.handingOver() {
			t.Fatalf("released %d, handing over %v: the primary of record's address is its pass's to decide", v.released, r.handingOver())
		}
	})
	t.Run("fenced for an older flow: the address goes first", func(t *testing.T) {
		lease, _ := leader(t)
		r, v := newReconciler(&fenceOnly{}, healthy)
		r.fenceForIntent(ctx, Analysis{FenceWhy: "a switchover away from this node is in progress", IntentKey: "old", Epoch: 4})
		r.fenceSelf(ctx, deposed(false), lease, why, false) // deposed at epoch 7, not 5
		if v.released != 1 || r.handingOver() {
			t.Fatalf("released %d, handing over %v: an older flow's fence says nothing of the server now", v.released, r.handingOver())
		}
	})
	t.Run("zero snapshot: let go at once", func(t *testing.T) {
		lease, _ := leader(t)
		r, v := newReconciler(&fenceOnly{}, healthy)
		r.fenceForIntent(ctx, intent)
		r.fenceSelf(ctx, cluster.Snapshot{}, lease, why, true)
		if v.released != 1 {
			t.Fatalf("released %d with no primary of record read: want 1", v.released)
		}
	})
}

// switchDetector is a detector whose report a test changes.
type switchDetector struct{ rep detector.Report }

func (d *switchDetector) Report() detector.Report { return d.rep }
func (*switchDetector) SetRole(detector.Probes)   {}
func (*switchDetector) SetEpoch(uint64)           {}

// promoteOnly is a server that goes writable when promoted; with unreadable set,
// its status cannot be read once it is.
type promoteOnly struct {
	Local
	writable, unreadable bool
	// gate, when set, holds a read of the promoted server until it is closed (for
	// up to 5 s, then the read fails).
	gate <-chan struct{}
}

func (s *promoteOnly) Promote(context.Context) error { s.writable = true; return nil }
func (s *promoteOnly) Status(context.Context) (replication.Status, error) {
	if s.writable && s.unreadable {
		return replication.Status{}, errors.New("connection refused")
	}
	if s.writable && s.gate != nil {
		select {
		case <-s.gate:
		case <-time.After(5 * time.Second):
			return replication.Status{}, errors.New("the read waited 5 s for the address to move")
		}
	}
	return replication.Status{Flavor: replication.FlavorMariaDB, ReadOnly: !s.writable,
		Executed: replication.MustParseGTIDSet(replication.FlavorMariaDB, "0-1-5")}, nil
}

// gateVIP opens gate when the address is acquired.
type gateVIP struct {
	countVIP
	gate chan struct{}
}

func (v *gateVIP) Acquire(ctx context.Context) error {
	if v.acquired == 0 {
		close(v.gate)
	}
	return v.countVIP.Acquire(ctx)
}

// TestNewPrimaryAnnouncesAsTheAddressMoves: a node taking the primary's place
// publishes itself as the writable primary at the epoch of record, with its GTID
// set, while it acquires the virtual IP: the address does not wait for the
// announcement (here the read the announcement needs waits for the address), and
// the announcement says the address is not held, even when its last pass saw it
// held: the old primary's handover ends only on the publish after the address
// moved. A server it cannot read once promoted is not announced: what it read
// before the promotion (read_only) would be published.
func TestNewPrimaryAnnouncesAsTheAddressMoves(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	ctx := t.Context()
	now := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name                string
		unreadable, vipHeld bool
		announced           bool
	}{
		{"read once writable", false, false, true},
		{"read once writable, the address seen held at the last pass", false, true, true},
		{"not readable once writable", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := cluster.NewStore(cli, "announce-"+strings.ReplaceAll(tc.name, " ", "-"))
			g, err := cli.Grant(ctx, 30)
			if err != nil {
				t.Fatal(err)
			}
			gate := make(chan struct{})
			v := &gateVIP{gate: gate}
			r := &Reconciler{cfg: ReconcilerConfig{Node: "db2", Local: &promoteOnly{unreadable: tc.unreadable, gate: gate}, VIP: v, Detector: &switchDetector{}, Store: store,
				StatusTimeout: 10 * time.Second, PublishEvery: time.Minute, Now: func() time.Time { return now }},
				log: zap.NewNop(), role: cluster.RoleReplica, vipHeld: tc.vipHeld}
			snap := cluster.Snapshot{}
			snap.Primary = cluster.Primary{Node: "db2", Epoch: 8}
			snap.Nodes = map[string]cluster.NodeStatus{"db2": {Node: "db2"}}
			start := time.Now()
			r.takePrimary(ctx, snap, g.ID, Analysis{Action: NodePromote, Role: cluster.RolePrimary, Epoch: 8})
			if v.acquired != 1 {
				t.Fatalf("acquired the address %d times, want 1", v.acquired)
			}
			if took := time.Since(start); took > 4*time.Second {
				t.Fatalf("the promotion took %s: the address waited for the announcement", took)
			}
			after, err := store.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n, published := after.Nodes["db2"]
			if !tc.announced {
				if published {
					t.Fatalf("published (role %s read_only %v): want nothing from a server not read", n.Role, n.ReadOnly)
				}
				return
			}
			if !published || n.Role != cluster.RolePrimary || n.Epoch != 8 || n.ReadOnly || n.GTID != "0-1-5" || n.VIP {
				t.Fatalf("announced: %v role %s epoch %d read_only %v gtid %q vip %v: want the writable primary at epoch 8 with its GTID set, not holding the address",
					published, n.Role, n.Epoch, n.ReadOnly, n.GTID, n.VIP)
			}
		})
	}
}

// TestHungServerEndedForTheFlow: a flow deposing a primary whose server answers
// nothing (the detector's verdict unreachable, its latest liveness probe timed
// out) ends the server rather than fence it by SQL; the address stays, since
// nothing listens now, until the detector, in a round started after the end,
// finds something listening again. A server that answers, or a full disk's, is
// never ended; an end that fails falls back to the SQL fence.
func TestHungServerEndedForTheFlow(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "hung")
	ctx := t.Context()
	hung := func(at time.Time) detector.Report {
		return detector.Report{Rounds: 9, At: at, Verdict: detector.Unreachable, RoundVerdict: detector.Unreachable, Since: at.Add(-time.Second),
			Ping: &detector.Result{Class: detector.TimedOut, Detail: "context deadline exceeded"}}
	}
	refused := func(at time.Time) detector.Report {
		return detector.Report{Rounds: 10, At: at, Verdict: detector.Unreachable, RoundVerdict: detector.Unreachable,
			Ping: &detector.Result{Class: detector.Refused, Detail: "connection refused"}}
	}
	healthy := func(at time.Time) detector.Report {
		return detector.Report{Rounds: 11, At: at, Verdict: detector.Healthy, Ping: &detector.Result{Class: detector.OK}}
	}
	diskFull := detector.Report{Rounds: 9, At: time.Now(), Verdict: detector.Unwritable, Ping: &detector.Result{Class: detector.OK},
		Write: &detector.Result{Class: detector.TimedOut}}
	now := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	intent := Analysis{FenceWhy: "a failover away from this node is in progress", IntentKey: "k", Epoch: 6}
	deposed := cluster.Snapshot{}
	deposed.Primary = cluster.Primary{Node: "db2", Epoch: 7}
	deposed.Nodes = map[string]cluster.NodeStatus{"db1": {Node: "db1"}, "db2": {Node: "db2"}}

	type ender struct {
		calls     int
		hungSince time.Time // as the last call was told
		err       error
	}
	setup := func(rep detector.Report, e *ender, fenceErr error) (*Reconciler, *countVIP, *fenceOnly, *switchDetector) {
		det := &switchDetector{rep: rep}
		srv := &fenceOnly{err: fenceErr}
		v := &countVIP{acquired: 1}
		cfg := ReconcilerConfig{Node: "db1", Local: srv, VIP: v, Detector: det, Store: store,
			FenceTimeout: 50 * time.Millisecond, Tick: 500 * time.Millisecond, Now: func() time.Time { return now }}
		if e != nil {
			cfg.EndServer = func(_ context.Context, hungSince time.Time) (string, error) {
				e.calls++
				e.hungSince = hungSince
				return "process 42 ended with SIGKILL", e.err
			}
		}
		return &Reconciler{cfg: cfg, log: zap.NewNop(), role: cluster.RolePrimary}, v, srv, det
	}
	frozen := errors.New("context deadline exceeded")

	t.Run("hung: ended, not fenced by SQL; the address stays while nothing listens", func(t *testing.T) {
		e := &ender{}
		r, v, srv, det := setup(hung(time.Now().Add(-time.Second)), e, frozen)
		g, err := cli.Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		r.fenceForIntent(ctx, intent)
		if e.calls != 1 || srv.fences != 0 {
			t.Fatalf("ended %d times, SQL fences %d: want ended once, no SQL fence", e.calls, srv.fences)
		}
		if want := det.rep.Since; !e.hungSince.Equal(want) {
			t.Errorf("told the hang began at %s, want the verdict's time %s (a server started since is not the hung one)", e.hungSince, want)
		}
		if v.released != 0 || !r.handingOver() {
			t.Fatalf("released %d, handing over %v: nothing listens, the address stays", v.released, r.handingOver())
		}
		// The round under way when the server was ended still says it hangs.
		r.fenceSelf(ctx, deposed, g.ID, "deposed", true)
		r.expireHandover(ctx, deposed)
		if v.released != 0 {
			t.Fatal("released on a round started before the end")
		}
		det.rep = refused(time.Now().Add(time.Second))
		r.expireHandover(ctx, deposed)
		if v.released != 0 {
			t.Fatal("released while the detector finds nothing listening")
		}
		det.rep = healthy(time.Now().Add(2 * time.Second)) // its supervisor started it again
		r.expireHandover(ctx, deposed)
		if v.released != 1 {
			t.Fatalf("released %d once something listens again: want 1", v.released)
		}
	})
	t.Run("a hang seen after the end, in a round started after it: the address goes", func(t *testing.T) {
		e := &ender{}
		r, v, _, det := setup(hung(time.Now().Add(-time.Second)), e, frozen)
		r.fenceForIntent(ctx, intent)
		det.rep = hung(time.Now().Add(time.Second)) // not what an ended server shows: trust the detector
		r.expireHandover(ctx, deposed)
		if v.released != 1 {
			t.Fatalf("released %d: want 1", v.released)
		}
	})
	t.Run("the end fails: fenced by SQL, best effort, and the address goes", func(t *testing.T) {
		e := &ender{err: errors.New("pid file: no such file")}
		r, v, srv, _ := setup(hung(time.Now().Add(-time.Second)), e, frozen)
		r.fenceForIntent(ctx, intent)
		if e.calls != 1 || srv.fences != 1 {
			t.Fatalf("ended %d, SQL fences %d: want one of each", e.calls, srv.fences)
		}
		if v.released != 1 || r.handingOver() {
			t.Fatalf("released %d, handing over %v: a server that may run keeps no address", v.released, r.handingOver())
		}
	})
	for name, rep := range map[string]detector.Report{
		"a server that answers": healthy(time.Now()),
		"a full disk":           diskFull,
		"a crashed server":      refused(time.Now()),
		"a zero report":         {},
	} {
		t.Run(name+" is never ended", func(t *testing.T) {
			e := &ender{}
			r, _, srv, _ := setup(rep, e, nil)
			r.fenceForIntent(ctx, intent)
			if e.calls != 0 || srv.fences != 1 {
				t.Fatalf("ended %d, SQL fences %d: want the SQL fence only", e.calls, srv.fences)
			}
		})
	}
	t.Run("a stale hang (the agent stalled since the round) is fenced by SQL, not ended", func(t *testing.T) {
		e := &ender{}
		r, _, srv, _ := setup(hung(time.Now().Add(-10*time.Second)), e, nil)
		r.fenceForIntent(ctx, intent)
		if e.calls != 0 || srv.fences != 1 {
			t.Fatalf("ended %d, SQL fences %d: want the SQL fence only", e.calls, srv.fences)
		}
	})
	t.Run("kill_frozen_primary off: a hung server is fenced by SQL only", func(t *testing.T) {
		r, v, srv, _ := setup(hung(time.Now().Add(-time.Second)), nil, frozen)
		r.fenceForIntent(ctx, intent)
		if srv.fences != 1 || v.released != 1 {
			t.Fatalf("SQL fences %d, released %d: want the fence tried and the address gone", srv.fences, v.released)
		}
	})
}

// statusCounter is a server whose status read hangs until its deadline, counting
// the reads.
type statusCounter struct {
	Local
	reads int
}

func (s *statusCounter) Status(ctx context.Context) (replication.Status, error) {
	s.reads++
	<-ctx.Done()
	return replication.Status{}, ctx.Err()
}

// TestHungServerNotRead: a pass does not wait on a server the detector finds hung
// (it would hold up a flow's intent to depose it for the read's deadline): the read
// is unknown at once, as a timed-out one. A suspicion (one failed round) still
// reads, within the stalled deadline.
func TestHungServerNotRead(t *testing.T) {
	hung := detector.Report{Rounds: 9, Verdict: detector.Unreachable, RoundVerdict: detector.Unreachable,
		Reason: "no answer to connect + SELECT 1 within 300ms", Ping: &detector.Result{Class: detector.TimedOut}}
	suspect := detector.Report{Rounds: 9, Verdict: detector.Suspect, RoundVerdict: detector.Unreachable,
		Ping: &detector.Result{Class: detector.TimedOut}}
	for _, tc := range []struct {
		name  string
		rep   detector.Report
		reads int
	}{{"hung", hung, 0}, {"suspect", suspect, 1}} {
		srv := &statusCounter{}
		r := &Reconciler{cfg: ReconcilerConfig{Node: "db1", Local: srv, Detector: &switchDetector{rep: tc.rep},
			StatusTimeout: 5 * time.Second, StalledStatusTimeout: 50 * time.Millisecond}, log: zap.NewNop()}
		start := time.Now()
		read, _, err := r.readLocal(t.Context())
		took := time.Since(start)
		if read != LocalFailed || err == nil || srv.reads != tc.reads {
			t.Errorf("%s: read %v, err %v, server read %d times: want failed, read %d times", tc.name, read, err, srv.reads, tc.reads)
		}
		if tc.reads == 0 && took > 20*time.Millisecond {
			t.Errorf("%s: took %s: the pass waited on the server", tc.name, took)
		}
	}
}
