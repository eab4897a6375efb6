package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/internal/status"
)

// TestUnblock: after an automatic failover the anti-flap block is shown wherever
// automatic failover is (status text and JSON: OFF, why, time left, the command),
// `baton unblock` lifts it and the history says who did, and status shows
// automatic failover on again. With no block in force it changes nothing.
func TestUnblock(t *testing.T) {
	cli, endpoint := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "ub")
	ctx := context.Background()
	if err := store.BootstrapPrimary(ctx, nil, cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", ServerID: 1, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	// The block as a failover's commit writes it: on a lease of its length.
	lease, err := store.GrantBlock(ctx, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cluster.FailoverBlock{Epoch: 2, To: "db2", For: 5 * time.Minute, At: time.Now().UTC()})
	if _, err := cli.Put(ctx, store.Keys.FailoverBlock(), string(b), clientv3.WithLease(lease)); err != nil {
		t.Fatal(err)
	}
	args := []string{"--etcd", endpoint, "--cluster", "ub"}
	statusOf := func() status.Cluster {
		t.Helper()
		out, err := runCLI(t, statusCommand(), append(args, "--json")...)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		var st status.Cluster
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json %q: %v", out, err)
		}
		return st
	}
	st := statusOf()
	af := st.AutomaticFailover
	if af.On || af.Blocked == nil || af.Blocked.To != "db2" || af.Blocked.LeftMS <= 0 || af.Blocked.LeftMS > (5*time.Minute).Milliseconds() ||
		!strings.Contains(af.Why, "baton unblock") {
		t.Fatalf("status --json while blocked: %+v (blocked %+v): want automatic failover off, the block to db2 with its time left, the command", af, af.Blocked)
	}
	text, err := runCLI(t, statusCommand(), args...)
	if err != nil || !strings.Contains(text, "automatic failover: OFF (blocked by the anti-flap window (5m0s,") {
		t.Fatalf("status text while blocked (%v):\n%s", err, text)
	}

	out, err := runCLI(t, unblockCommand(), args...)
	if err != nil || !strings.Contains(out, "lifted") {
		t.Fatalf("unblock: %q %v", out, err)
	}
	if st := statusOf(); !st.AutomaticFailover.On || st.AutomaticFailover.Blocked != nil {
		t.Fatalf("status after unblock: %+v, want automatic failover on", st.AutomaticFailover)
	}
	hist, err := store.History(ctx, 1)
	if err != nil || len(hist) != 1 || hist[0].Kind != cluster.EventUnblock || !hist[0].Manual || !strings.Contains(hist[0].Reason, "lifted the anti-flap block") {
		t.Fatalf("history %+v %v: want an unblock event", hist, err)
	}
	rev := snapRev(t, store)
	out, err = runCLI(t, unblockCommand(), args...)
	if err != nil || !strings.Contains(out, "no anti-flap block in force") {
		t.Fatalf("unblock with none in force: %q %v", out, err)
	}
	if snapRev(t, store) != rev {
		t.Error("unblock with no block in force wrote to etcd")
	}
}

func snapRev(t *testing.T, store *cluster.Store) int64 {
	t.Helper()
	snap, err := store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap.Rev
}

// TestSwitchoverToThePrimary: a switchover to the primary of record is bad input
// (exit 2), refused before any request is filed.
func TestSwitchoverToThePrimary(t *testing.T) {
	cli, endpoint := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "sw")
	ctx := context.Background()
	if err := store.BootstrapPrimary(ctx, nil, cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", ServerID: 1, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutNode(ctx, 0, cluster.NodeStatus{Node: "db1", Role: cluster.RolePrimary}); err != nil {
		t.Fatal(err)
	}
	rev := snapRev(t, store)
	_, err := runCLI(t, switchoverCommand(), "--etcd", endpoint, "--cluster", "sw", "--to", "db1", "--yes")
	if code := exitCode(err); code != exitBadInput || !strings.Contains(err.Error(), "primary of record already") {
		t.Fatalf("switchover --to the primary: exit %d (%v), want %d", code, err, exitBadInput)
	}
	if snapRev(t, store) != rev {
		t.Error("a refused switchover wrote to etcd")
	}
}
