package hollow

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/internal/session"
	"github.com/baton-ha/baton/reconcile"
	"github.com/baton-ha/baton/replication"
)

// Timings are a hollow agent's, the real agent's defaults unless set.
type Timings struct {
	SessionTTL  time.Duration // 3 s
	FenceMargin time.Duration // 1 s
	Tick        time.Duration // probe_interval, 500 ms
	FailAfter   time.Duration // how long a fault takes to become a verdict, 1 s (fail_after rounds)
}

func (t Timings) withDefaults() Timings {
	if t.SessionTTL <= 0 {
		t.SessionTTL = 3 * time.Second
	}
	if t.FenceMargin <= 0 {
		t.FenceMargin = time.Second
	}
	if t.Tick <= 0 {
		t.Tick = 500 * time.Millisecond
	}
	if t.FailAfter < 0 {
		t.FailAfter = 0
	}
	return t
}

// Policy is the failover policy hollow clusters run with: the real defaults, with a
// failover block short enough for a benchmark.
func Policy() cluster.Policy {
	return cluster.Policy{FailoverBlock: time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: time.Second}
}

// Stats are counted across hollow agents.
type Stats struct {
	Sessions     atomic.Int64 // sessions made
	SessionsLost atomic.Int64 // sessions that ended before the agent stopped
	LateRenewals atomic.Int64 // renewals later than session_ttl - fence_margin (the agent fences then)
	Fenced       atomic.Int64 // nodes fenced without etcd (a late renewal, a lost session)
}

// Agent is one hollow agent: the real reconciler and coordinator of one node, under
// an etcd session of its own client, against a scripted server and detector.
type Agent struct {
	Server    *Server
	Endpoints []string
	Pool      *Pool
	Timings   Timings
	Stats     *Stats
	Log       *zap.Logger
}

// Run runs the agent until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	t := a.Timings.withDefaults()
	log := a.Log
	if log == nil {
		log = zap.NewNop()
	}
	stats := a.Stats
	if stats == nil {
		stats = &Stats{}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: a.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: t.SessionTTL / 3, DialKeepAliveTimeout: t.SessionTTL / 3, PermitWithoutStream: true})
	if err != nil {
		return fmt.Errorf("hollow agent %s/%s: etcd client: %w", a.Server.c.Name, a.Server.Name, err)
	}
	defer cli.Close()
	store := cluster.NewStore(cli, a.Server.c.Name)
	// One watched cache per agent, as the real agent has.
	cache, err := cluster.NewCache(store, log)
	if err != nil {
		return err
	}
	go func() { _ = cache.Run(ctx) }()
	det := NewDetector(a.Server, t.FailAfter)
	rec, err := reconcile.NewReconciler(reconcile.ReconcilerConfig{Node: a.Server.Name, Addr: a.Server.Addr, Store: store, Cluster: cache, Local: a.Server,
		Detector: det, Repl: replication.Source{User: "repl"}, SemiSync: true, ConfirmLag: Policy().ConfirmLag, Tick: t.Tick,
		Policy: Policy(), Log: log})
	if err != nil {
		return err
	}
	coord, err := failover.NewCoordinator(failover.CoordinatorConfig{Node: a.Server.Name, Store: store, Cluster: cache, Servers: a.Pool,
		Policy: Policy(), Repl: replication.Source{User: "repl"}, CatchupTimeout: 10 * time.Second, Tick: t.Tick, Log: log})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, _, _ = store.CreatePolicy(pctx, cluster.PolicyRecord{Policy: Policy(), SetBy: a.Server.Name, At: time.Now().UTC()})
	cancel()
	// The real agent's session (internal/session), its timings as the agent's
	// defaults give them: what a benchmark measures is the product's.
	r, err := session.New(session.Config{
		Client: cli, TTL: t.SessionTTL, FenceMargin: t.FenceMargin, CallTimeout: time.Second,
		Work: []session.Work{{Name: "reconciler", Run: rec.Run}, {Name: "coordinator", Run: coord.Run}},
		Fence: func(ctx context.Context, why error) {
			if errors.Is(why, session.ErrNotRenewed) {
				stats.LateRenewals.Add(1)
			}
			stats.Fenced.Add(1)
			rec.FenceLocal(ctx, why.Error())
		},
		OnUp: func(clientv3.LeaseID, bool) { stats.Sessions.Add(1) },
		OnDown: func(why error) {
			if why != nil {
				stats.SessionsLost.Add(1)
			}
		},
		Release: func(ctx context.Context, lease clientv3.LeaseID) { _ = store.ReleaseLeader(ctx, lease) },
		Log:     log,
	})
	if err != nil {
		return fmt.Errorf("hollow agent %s/%s: %w", a.Server.c.Name, a.Server.Name, err)
	}
	return r.Run(ctx)
}
