package failover

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestWithdrawLeftoverIntent: a flow whose withdrawal etcd did not answer in time
// leaves its intent on the coordinator's lease, which lives on. The coordinator's
// next pass withdraws it (else every decision waits for a flow "in progress" and the
// old primary stays fenced for as long as the session lives); an intent on another
// coordinator's lease, or one this coordinator no longer leads for, stays.
func TestWithdrawLeftoverIntent(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "left")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	core, logs := observer.New(zap.InfoLevel)
	c, err := NewCoordinator(CoordinatorConfig{Node: "db3", Store: store, Cluster: &cluster.Cache{}, Servers: &Servers{},
		Policy: cluster.Policy{FailoverBlock: time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: time.Second}, CatchupTimeout: time.Second, Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	session := func() *concurrency.Session {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(30))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	mine, other := session(), session()
	e := concurrency.NewElection(mine, store.Keys.Coordinator())
	if err := e.Campaign(ctx, "db3"); err != nil {
		t.Fatal(err)
	}
	g := cluster.CoordinatorGuard(e.Key(), e.Rev())
	if err := store.BootstrapPrimary(ctx, g, cluster.Primary{Node: "db2", Epoch: 8}); err != nil {
		t.Fatal(err)
	}
	put := func(lease clientv3.LeaseID) cluster.Snapshot {
		t.Helper()
		snap, err := store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.PutIntent(ctx, g, lease, snap.PrimaryModRev, cluster.Intent{Kind: cluster.FlowFailover, Epoch: 8, From: "db2"}); err != nil {
			t.Fatal(err)
		}
		snap, err = store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Intent == nil || snap.IntentLease != lease || snap.IntentModRev == 0 {
			t.Fatalf("the snapshot does not show the intent on lease %x: %+v lease %x rev %d", lease, snap.Intent, snap.IntentLease, snap.IntentModRev)
		}
		return snap
	}

	// Another coordinator's intent (another session's lease): left alone.
	snap := put(other.Lease())
	if c.withdrawLeftover(ctx, mine.Lease(), g, snap) {
		t.Fatal("withdrew an intent on another coordinator's lease")
	}
	if now, _ := store.Load(ctx); now.Intent == nil {
		t.Fatal("another coordinator's intent is gone")
	}

	// Its own, but no longer the elected coordinator (the guard fails): left alone.
	snap = put(mine.Lease())
	stale := cluster.CoordinatorGuard(e.Key(), e.Rev()+1000)
	if c.withdrawLeftover(ctx, mine.Lease(), stale, snap) {
		t.Fatal("withdrew an intent without leading")
	}
	if now, _ := store.Load(ctx); now.Intent == nil {
		t.Fatal("the intent is gone though the coordinator's guard failed")
	}

	// Its own, leading, but the intent was changed since it was read: left alone.
	changed := put(mine.Lease())
	if c.withdrawLeftover(ctx, mine.Lease(), g, snap) {
		t.Fatal("withdrew an intent at a revision it had not read")
	}

	// Its own, leading, as read: withdrawn.
	if !c.withdrawLeftover(ctx, mine.Lease(), g, changed) {
		t.Fatal("did not withdraw its own leftover intent")
	}
	if now, _ := store.Load(ctx); now.Intent != nil || now.IntentModRev != 0 {
		t.Fatalf("the intent is still there: %+v", now.Intent)
	}
	if logs.FilterMessage("withdrew a leftover intent of this coordinator's: its flow ended without withdrawing it").Len() != 1 {
		t.Fatal("the withdrawal was not logged once")
	}
	// No intent: nothing to do.
	if now, _ := store.Load(ctx); c.withdrawLeftover(ctx, mine.Lease(), g, now) {
		t.Fatal("withdrew an intent that does not exist")
	}
}
