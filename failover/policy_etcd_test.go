package failover

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestPolicyOneSourceInEtcd: two agents whose files disagree yield one cluster
// policy (the first one's, created with a create-only transaction), the second is
// reported as disagreeing, and both decide with the cluster's.
func TestPolicyOneSourceInEtcd(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "pol")
	ctx := context.Background()
	fileA := cluster.Policy{FailoverBlock: 5 * time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: time.Second}
	fileB := cluster.Policy{FailoverBlock: time.Minute, ConfirmLag: 3 * time.Second, SwitchoverMaxLag: time.Second}

	cur, created, err := store.CreatePolicy(ctx, cluster.PolicyRecord{Policy: fileA, SetBy: "db1"})
	if err != nil || !created || cur.Policy != fileA {
		t.Fatalf("first agent: %+v created=%v %v", cur, created, err)
	}
	cur, created, err = store.CreatePolicy(ctx, cluster.PolicyRecord{Policy: fileB, SetBy: "db2"})
	if err != nil || created || cur.Policy != fileA || cur.SetBy != "db1" {
		t.Fatalf("second agent overwrote or misread the policy: %+v created=%v %v", cur, created, err)
	}
	if _, _, err := store.CreatePolicy(ctx, cluster.PolicyRecord{SetBy: "db3"}); err == nil {
		t.Fatal("a zero policy was accepted")
	}
	for name, p := range map[string]cluster.Policy{"db1": fileA, "db2": fileB} {
		p := p
		if err := store.PutNode(ctx, 0, cluster.NodeStatus{Node: name, Policy: &p}); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, own := range []cluster.Policy{fileA, fileB} {
		p, src, _, err := cluster.EffectivePolicy(snap, own)
		if err != nil || p != fileA || src != cluster.PolicyFromEtcd {
			t.Fatalf("own %v: decided with %v from %s (%v), want the cluster's", own, p, src, err)
		}
	}
	want := []cluster.PolicyDisagreement{{Node: "db2", Diff: []string{"failover_block 1m0s (cluster: 5m0s)", "confirm_lag 3s (cluster: 1s)"}}}
	if got := cluster.PolicyDisagreements(snap.Policy, snap.Nodes); !reflect.DeepEqual(got, want) {
		t.Fatalf("disagreements %+v, want %+v", got, want)
	}

	// The operator's path: compared against the revision read.
	if err := store.PutPolicy(ctx, snap.PolicyModRev-1, cluster.PolicyRecord{Policy: fileB, SetBy: "operator"}); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("stale apply: %v, want a conflict", err)
	}
	if err := store.PutPolicy(ctx, snap.PolicyModRev, cluster.PolicyRecord{Policy: fileB, SetBy: "operator"}); err != nil {
		t.Fatal(err)
	}
	snap, _ = store.Load(ctx)
	if snap.Policy == nil || snap.Policy.Policy != fileB {
		t.Fatalf("applied policy not read back: %+v", snap.Policy)
	}

	// An unreadable key: reported, and a coordinator falls back on its own file.
	if _, err := cli.Put(ctx, store.Keys.Policy(), `{"policy":{}}`); err != nil {
		t.Fatal(err)
	}
	snap, err = store.Load(ctx)
	if err != nil {
		t.Fatalf("an unreadable policy made the whole state unreadable: %v", err)
	}
	if snap.Policy != nil || snap.PolicyErr == "" {
		t.Fatalf("zero policy read as %+v (err %q)", snap.Policy, snap.PolicyErr)
	}
	if p, src, _, err := cluster.EffectivePolicy(snap, fileB); err != nil || p != fileB || src != cluster.PolicyFromFile {
		t.Fatalf("unreadable key: %v from %s (%v)", p, src, err)
	}
	if _, _, err := store.CreatePolicy(ctx, cluster.PolicyRecord{Policy: fileA, SetBy: "db1"}); err == nil {
		t.Fatal("an unreadable existing policy was reported as fine")
	}
}

// TestCoordinatorPolicy: the coordinator creates the cluster's policy from its file
// when there is none, decides with the cluster's when there is one, and with its own
// file's only while the cluster's is unreadable.
func TestCoordinatorPolicy(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "coord")
	ctx := context.Background()
	own := cluster.Policy{FailoverBlock: time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: 2 * time.Second}
	core, logs := observer.New(zap.InfoLevel)
	c, err := NewCoordinator(CoordinatorConfig{Node: "db1", Store: store, Cluster: &cluster.Cache{}, Servers: &Servers{}, Policy: own,
		CatchupTimeout: time.Second, Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCoordinator(CoordinatorConfig{Node: "db1", Store: store, Cluster: &cluster.Cache{}, Servers: &Servers{}, CatchupTimeout: time.Second}); err == nil {
		t.Fatal("a coordinator without a valid policy of its own was accepted")
	}
	var last string
	decide := func() cluster.Policy {
		t.Helper()
		snap, err := store.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.policy(ctx, &snap, &last)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := decide(); p != own {
		t.Fatalf("no policy yet: decided with %v, want its own", p)
	}
	snap, _ := store.Load(ctx)
	if snap.Policy == nil || snap.Policy.Policy != own || snap.Policy.SetBy != "db1" {
		t.Fatalf("the coordinator did not create the cluster's policy: %+v", snap.Policy)
	}
	shared := cluster.Policy{FailoverBlock: 10 * time.Minute, ConfirmLag: 3 * time.Second, SwitchoverMaxLag: time.Second}
	if err := store.PutPolicy(ctx, snap.PolicyModRev, cluster.PolicyRecord{Policy: shared, SetBy: "operator"}); err != nil {
		t.Fatal(err)
	}
	if p := decide(); p != shared {
		t.Fatalf("decided with %v, want the cluster's %v", p, shared)
	}
	if _, err := cli.Put(ctx, store.Keys.Policy(), "garbage"); err != nil {
		t.Fatal(err)
	}
	if p := decide(); p != own {
		t.Fatalf("unreadable policy: decided with %v, want its own file's", p)
	}
	if n := logs.FilterMessage("deciding with this node's own policy").Len(); n != 1 {
		t.Fatalf("logged the fallback %d times, want once", n)
	}
	if p := decide(); p != own {
		t.Fatalf("unreadable policy, again: %v", p)
	}
	if n := logs.FilterMessage("deciding with this node's own policy").Len(); n != 1 {
		t.Fatalf("logged the fallback %d times over two passes, want once", n)
	}
	// The coordinator never overwrites an unreadable key: an operator fixes it.
	if b, _ := cli.Get(ctx, store.Keys.Policy()); string(b.Kvs[0].Value) != "garbage" {
		t.Fatalf("the unreadable policy was overwritten: %s", b.Kvs[0].Value)
	}
}
