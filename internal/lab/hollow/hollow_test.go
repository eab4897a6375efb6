package hollow

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestHollowFailover runs two scripted clusters of three hollow agents against a real
// etcd: both bootstrap; the primary of one turns unwritable and the real control loops
// fail it over to a replica, the old primary fenced; the other cluster does not move.
func TestHollowFailover(t *testing.T) {
	cli, endpoint := sandboxtest.Etcd(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	pool := &Pool{}
	clusters := []*Cluster{NewCluster("h1", 3), NewCluster("h2", 3)}
	stats := &Stats{}
	for _, c := range clusters {
		pool.Add(c)
		for _, s := range c.Servers() {
			a := &Agent{Server: s, Endpoints: []string{endpoint}, Pool: pool, Stats: stats}
			wg.Add(1)
			go func() { defer wg.Done(); _ = a.Run(ctx) }()
		}
	}
	wg.Add(1)
	go func() { defer wg.Done(); Write(ctx, clusters, 100*time.Millisecond) }()

	primary := func(c *Cluster) cluster.Snapshot {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		snap, _ := cluster.NewStore(cli, c.Name).Load(lctx)
		return snap
	}
	for _, c := range clusters {
		sandboxtest.WaitFor(t, 20*time.Second, c.Name+" bootstrapped with db1 holding the leader key", func() bool {
			s := primary(c)
			return s.Primary.Node == "db1" && s.Primary.Epoch == 1 && s.Leader == "db1" && len(s.Nodes) == 3
		})
	}
	faulted := time.Now()
	clusters[0].Server("db1").SetUnwritable(true)
	var after cluster.Snapshot
	sandboxtest.WaitFor(t, 20*time.Second, "h1 failed over", func() bool {
		after = primary(clusters[0])
		return after.Primary.Node != "db1" && after.Primary.Epoch == 2 && after.Leader == after.Primary.Node
	})
	t.Logf("h1: %s promoted %s after the fault", after.Primary.Node, time.Since(faulted).Round(time.Millisecond))
	sandboxtest.WaitFor(t, 10*time.Second, "the new primary writable, the old one read_only", func() bool {
		return clusters[0].Server(after.Primary.Node).Writable() && !clusters[0].Server("db1").Writable()
	})
	if s := primary(clusters[1]); s.Primary.Node != "db1" || s.Primary.Epoch != 1 {
		t.Fatalf("h2 moved without a fault: %+v", s.Primary)
	}
	if n := stats.LateRenewals.Load(); n != 0 {
		t.Errorf("%d late lease renewals with 6 agents", n)
	}
}
