package reconcile

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

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

// TestDeposedPrimaryHandsTheVIPOver: a deposed primary whose server is read_only,
// or whose mysqld is not running, keeps the virtual IP after the commit until the
// new primary announces it, or HandoverBound passes; one whose server might still
// take a write (it could not be fenced, and something listens) lets it go at once.
// The leader key goes at once in every case.
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

	deposed := func(newHolds bool) cluster.Snapshot {
		s := cluster.Snapshot{}
		s.Primary = cluster.Primary{Node: "db2", Epoch: 7}
		s.Nodes = map[string]cluster.NodeStatus{"db1": {Node: "db1"}, "db2": {Node: "db2", VIP: newHolds}}
		return s
	}
	now := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	newReconciler := func(srv Local, rep detector.Report) (*Reconciler, *countVIP) {
		v := &countVIP{acquired: 1}
		r := &Reconciler{cfg: ReconcilerConfig{Node: "db1", Local: srv, VIP: v, Detector: reportDetector{rep: rep}, Store: store,
			FenceTimeout: time.Second, Now: func() time.Time { return now }}, log: zap.NewNop(), role: cluster.RolePrimary}
		return r, v
	}
	ctx := t.Context()
	why := "not the primary of record (now db2)"

	t.Run("read_only: kept until the new primary announces it", func(t *testing.T) {
		r, v := newReconciler(&fenceOnly{}, detector.Report{Rounds: 5})
		r.fenceSelf(ctx, deposed(false), 1, why, false)
		if v.released != 0 || !r.handingOver() {
			t.Fatalf("released %d, handing over %v: want the address kept", v.released, r.handingOver())
		}
		now = now.Add(HandoverBound / 2)
		r.fenceSelf(ctx, deposed(false), 1, why, true)
		if v.released != 0 {
			t.Fatal("released within the bound, the new primary silent")
		}
		r.fenceSelf(ctx, deposed(true), 1, why, true)
		if v.released != 1 || r.handingOver() {
			t.Fatalf("released %d, handing over %v once the new primary holds it: want released", v.released, r.handingOver())
		}
	})
	t.Run("read_only: let go at the bound", func(t *testing.T) {
		r, v := newReconciler(&fenceOnly{}, detector.Report{Rounds: 5})
		r.fenceSelf(ctx, deposed(false), 1, why, false)
		now = now.Add(HandoverBound)
		r.fenceSelf(ctx, deposed(false), 1, why, true)
		if v.released != 1 {
			t.Fatalf("released %d after the bound: want 1", v.released)
		}
	})
	t.Run("mysqld not running: kept", func(t *testing.T) {
		r, v := newReconciler(&fenceOnly{err: errors.New("connect: connection refused")}, notRunning)
		r.fenceSelf(ctx, deposed(false), 1, why, false)
		if v.released != 0 || !r.handingOver() {
			t.Fatalf("released %d: a server not running keeps the address for the new primary", v.released)
		}
	})
	t.Run("not fenced, and maybe running (frozen): let go at once", func(t *testing.T) {
		r, v := newReconciler(&fenceOnly{err: errors.New("context deadline exceeded")}, frozen)
		r.fenceSelf(ctx, deposed(false), 1, why, false)
		if v.released != 1 || r.handingOver() {
			t.Fatalf("released %d, handing over %v: a server that might take writes keeps no address", v.released, r.handingOver())
		}
	})
	t.Run("a flow's intent, mysqld not running: kept until the commit", func(t *testing.T) {
		r, v := newReconciler(&fenceOnly{err: errors.New("connect: connection refused")}, notRunning)
		r.fenceForIntent(ctx, Analysis{FenceWhy: "a failover away from this node is in progress", IntentKey: "k", Epoch: 6})
		if v.released != 0 {
			t.Fatalf("released %d at the intent: a server not running refuses connections at once", v.released)
		}
	})
	t.Run("a flow's intent, server frozen: let go at once", func(t *testing.T) {
		r, v := newReconciler(&fenceOnly{err: errors.New("context deadline exceeded")}, frozen)
		r.fenceForIntent(ctx, Analysis{FenceWhy: "a failover away from this node is in progress", IntentKey: "k", Epoch: 6})
		if v.released != 1 {
			t.Fatalf("released %d at the intent: a frozen server keeps no address", v.released)
		}
	})
	t.Run("zero snapshot: let go at once", func(t *testing.T) {
		r, v := newReconciler(&fenceOnly{}, detector.Report{Rounds: 5})
		r.fenceSelf(ctx, cluster.Snapshot{}, 1, why, false)
		if v.released != 1 {
			t.Fatalf("released %d with no primary of record read: want 1", v.released)
		}
	})
}
