package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// embeddedEtcd is a one-member etcd in the test process, ended with the test.
func embeddedEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, _ := sandboxtest.Etcd(t)
	return cli
}

// elect makes node the coordinator in a new session and returns the session and
// the guard of its election.
func elect(t *testing.T, ctx context.Context, cli *clientv3.Client, store *cluster.Store, node string) (*concurrency.Session, cluster.Guard) {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := concurrency.NewElection(s, store.Keys.Coordinator())
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.Campaign(cctx, node); err != nil {
		t.Fatalf("campaign of %s: %v", node, err)
	}
	return s, cluster.CoordinatorGuard(e.Key(), e.Rev())
}

// TestStaleCoordinatorWrites: a coordinator that announced a flow and then lost its
// election (its session gone) can neither withdraw nor commit once a successor has
// announced its own flow; and the successor itself can finish only the intent it
// announced, not one of an older revision.
func TestStaleCoordinatorWrites(t *testing.T) {
	ctx := context.Background()
	cli := embeddedEtcd(t)
	store := cluster.NewStore(cli, "stale")

	sA, gA := elect(t, ctx, cli, store, "db2")
	old := cluster.Primary{Node: "db1", Addr: "198.18.0.1:3306", Epoch: 1}
	if err := store.BootstrapPrimary(ctx, gA, old); err != nil {
		t.Fatal(err)
	}
	snap, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revA, err := store.PutIntent(ctx, gA, sA.Lease(), snap.PrimaryModRev, cluster.Intent{Kind: "failover", Epoch: 1, From: "db1"})
	if err != nil {
		t.Fatal(err)
	}

	// A stalls past its lease: etcd revokes it, its election key and intent go.
	if err := sA.Close(); err != nil {
		t.Fatal(err)
	}
	sB, gB := elect(t, ctx, cli, store, "db3")
	revB, err := store.PutIntent(ctx, gB, sB.Lease(), snap.PrimaryModRev, cluster.Intent{Kind: "failover", Epoch: 1, From: "db1", To: "db3"})
	if err != nil {
		t.Fatal(err)
	}

	stale := cluster.Primary{Node: "db2", Epoch: 2}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"A withdraws", func() error { return store.DeleteIntent(ctx, gA, revA) }},
		{"A commits", func() error { return store.CommitPrimary(ctx, gA, snap.PrimaryModRev, revA, stale, nil) }},
		{"A commits naming B's intent", func() error { return store.CommitPrimary(ctx, gA, snap.PrimaryModRev, revB, stale, nil) }},
		{"A withdraws naming B's intent", func() error { return store.DeleteIntent(ctx, gA, revB) }},
		{"B withdraws A's intent", func() error { return store.DeleteIntent(ctx, gB, revA) }},
		{"B commits A's intent", func() error { return store.CommitPrimary(ctx, gB, snap.PrimaryModRev, revA, stale, nil) }},
		{"B commits no intent", func() error { return store.CommitPrimary(ctx, gB, snap.PrimaryModRev, 0, stale, nil) }},
		// What a flow checks before a step it cannot undo (salvage): a deposed
		// coordinator no longer owns its intent, nor anyone another's.
		{"A holds its intent", func() error { return store.HoldsIntent(ctx, gA, revA) }},
		{"A holds B's intent", func() error { return store.HoldsIntent(ctx, gA, revB) }},
		{"B holds A's intent", func() error { return store.HoldsIntent(ctx, gB, revA) }},
	} {
		err := tc.do()
		if err == nil {
			t.Errorf("%s: succeeded, want refused", tc.name)
		} else if tc.name != "B commits no intent" && !errors.Is(err, cluster.ErrConflict) {
			t.Errorf("%s: %v, want ErrConflict", tc.name, err)
		}
		now, err := store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if now.Intent == nil || now.Intent.To != "db3" {
			t.Fatalf("%s: intent = %+v, want B's (to db3) untouched", tc.name, now.Intent)
		}
		if now.Primary != old || now.PrimaryModRev != snap.PrimaryModRev {
			t.Fatalf("%s: primary = %+v (rev %d), want %+v (rev %d) untouched", tc.name, now.Primary, now.PrimaryModRev, old, snap.PrimaryModRev)
		}
	}

	if err := store.HoldsIntent(ctx, gB, revB); err != nil {
		t.Fatalf("B holds its own intent: %v", err)
	}

	// B finishes what it announced, with the anti-flap block on its own lease.
	next := cluster.Primary{Node: "db3", Epoch: 2}
	lease, err := store.GrantBlock(ctx, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	block := &cluster.Block{FailoverBlock: cluster.FailoverBlock{Epoch: 2, To: "db3", For: 5 * time.Minute}, Lease: lease}
	if err := store.CommitPrimary(ctx, gB, snap.PrimaryModRev, revB, next, block); err != nil {
		t.Fatalf("B commits its own intent: %v", err)
	}
	now, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now.Intent != nil || now.Primary.Node != "db3" {
		t.Fatalf("after B's commit: intent %+v, primary %+v; want no intent, primary db3", now.Intent, now.Primary)
	}
	if err := store.HoldsIntent(ctx, gB, revB); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("B holds its committed intent: %v, want ErrConflict (it is gone)", err)
	}
	if now.Block == nil || now.Block.Epoch != 2 || now.Block.To != "db3" {
		t.Fatalf("after B's commit: block %+v, want epoch 2 to db3", now.Block)
	}
	if ttl, err := store.LeaseTTL(ctx, lease); err != nil || ttl < 4*time.Minute {
		t.Fatalf("anti-flap lease TTL = %s (%v), want about 5m", ttl, err)
	}
	// The window ends when etcd ends the lease, whatever any clock says.
	if err := store.RevokeLease(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if now, err = store.Load(ctx); err != nil || now.Block != nil {
		t.Fatalf("after the lease ended: block %+v (%v), want none", now.Block, err)
	}
}

// TestNodeStatusVerdictJSON: a node status keeps its verdict as the detector's name
// in etcd, so that agents of other versions and `baton status --json` read the same
// words; an unknown name leaves the status readable, its verdict unknown.
func TestNodeStatusVerdictJSON(t *testing.T) {
	b, err := json.Marshal(cluster.NodeStatus{Node: "db1", Verdict: detector.Unwritable})
	if err != nil || !strings.Contains(string(b), `"verdict":"unwritable"`) {
		t.Fatalf("marshalled %s, %v: want the verdict as \"unwritable\"", b, err)
	}
	var n cluster.NodeStatus
	if err := json.Unmarshal([]byte(`{"node":"db1","verdict":"frozen","role":"primary"}`), &n); err != nil ||
		n.Node != "db1" || n.Verdict != detector.Unknown {
		t.Fatalf("status with an unknown verdict read as %+v, %v: want it readable, verdict unknown", n, err)
	}
}

// TestRequestConflicts: every way a request cannot be filed, updated or withdrawn
// because something else holds it is an ErrConflict, so that callers tell it apart
// from an etcd failure with errors.Is, and withdrawing deletes only a pending
// request that is still the one filed.
func TestRequestConflicts(t *testing.T) {
	cli := embeddedEtcd(t)
	store := cluster.NewStore(cli, "req")
	ctx := context.Background()
	first := cluster.Request{ID: "switchover-1", Kind: cluster.RequestSwitchover, Epoch: 1, At: time.Now().UTC(), State: cluster.RequestPending}
	if err := store.PutRequest(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := first
	second.ID = "switchover-2"
	err := store.PutRequest(ctx, second)
	var pending *cluster.PendingError
	if !errors.Is(err, cluster.ErrConflict) || !errors.As(err, &pending) || err.Error() != "another switchover request (switchover-1) is pending" {
		t.Fatalf("a second request while one is pending: %v, want a PendingError that is an ErrConflict", err)
	}
	rejoin := cluster.RejoinRequest{ID: "rejoin-1", Node: "db1", At: time.Now().UTC(), State: cluster.RequestPending}
	if err := store.PutRejoin(ctx, rejoin); err != nil {
		t.Fatal(err)
	}
	rejoin.ID = "rejoin-2"
	if err := store.PutRejoin(ctx, rejoin); !errors.Is(err, cluster.ErrConflict) || !errors.As(err, &pending) {
		t.Fatalf("a second rejoin request while one is pending: %v, want a PendingError", err)
	}

	// Another request's id withdraws nothing.
	if started, err := store.WithdrawRequest(ctx, "switchover-0"); started != nil || err != nil {
		t.Fatalf("withdraw another request: %v, %v", started, err)
	}
	if cur, err := store.Request(ctx); err != nil || cur == nil || cur.ID != "switchover-1" {
		t.Fatalf("after withdrawing another id the request is %+v, %v", cur, err)
	}
	// A started request is not withdrawn.
	running := first
	running.State = cluster.RequestRunning
	if err := store.UpdateRequest(ctx, nil, running); err != nil {
		t.Fatal(err)
	}
	if started, err := store.WithdrawRequest(ctx, "switchover-1"); err != nil || started == nil || started.State != cluster.RequestRunning {
		t.Fatalf("withdraw a running request: %+v, %v; want it returned, not deleted", started, err)
	}
	// A pending one is.
	if err := store.UpdateRequest(ctx, nil, first); err != nil {
		t.Fatal(err)
	}
	if started, err := store.WithdrawRequest(ctx, "switchover-1"); started != nil || err != nil {
		t.Fatalf("withdraw a pending request: %+v, %v", started, err)
	}
	if cur, err := store.Request(ctx); err != nil || cur != nil {
		t.Fatalf("after the withdrawal the request is %+v, %v; want none", cur, err)
	}
	// Updating a request that is gone, or replaced, is a conflict too.
	if err := store.UpdateRequest(ctx, nil, running); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("update a withdrawn request: %v, want ErrConflict", err)
	}
	if err := store.PutRequest(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := store.UpdateRequest(ctx, nil, running); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("update a replaced request: %v, want ErrConflict", err)
	}
}
