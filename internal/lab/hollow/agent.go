package hollow

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
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
	LateRenewals atomic.Int64 // renewals later than session_ttl - fence_margin (the real agent fences then)
	Fenced       atomic.Int64 // nodes fenced for a late renewal
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
	var lease clientv3.LeaseID
	for attempt := 0; ctx.Err() == nil; attempt++ {
		s, err := newSession(ctx, cli, t.SessionTTL, lease)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(min(sessionBackoff(attempt), time.Second)):
			}
			continue
		}
		attempt = 0
		lease = s.Lease()
		stats.Sessions.Add(1)
		g, gctx2 := errgroup.WithContext(ctx)
		g.Go(func() error { return rec.Run(gctx2, s) })
		g.Go(func() error { return coord.Run(gctx2, s) })
		g.Go(func() error {
			err := watchRenewal(gctx2, cli, s, t, stats)
			if err != nil {
				stats.Fenced.Add(1)
				rec.FenceLocal(context.WithoutCancel(gctx2), err.Error())
			}
			return err
		})
		_ = g.Wait()
		if ctx.Err() != nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = store.ReleaseLeader(rctx, s.Lease())
			_ = s.Close()
			rcancel()
			return nil
		}
		stats.SessionsLost.Add(1)
		// Not revoked: the next session resumes the lease if etcd still has it.
		s.Orphan()
	}
	return nil
}

// sessionTimeout bounds each etcd call that makes a session, as the real agent's
// (3 probe timeouts, at least a second): a grant that waits longer is given up, and
// the lease it may still make expires unused.
const sessionTimeout = time.Second

// newSession makes a session as the real agent does (internal/agent): on lease old
// while etcd still has it, else on a new lease. Resuming matters at scale: every
// lease granted for nothing is one more for etcd to revoke when it expires, and a
// revocation is a commit of etcd's backend of its own.
func newSession(ctx context.Context, cli *clientv3.Client, ttl time.Duration, old clientv3.LeaseID) (*concurrency.Session, error) {
	secs := int(ttl.Seconds())
	if old != clientv3.NoLease {
		tctx, cancel := context.WithTimeout(ctx, sessionTimeout)
		resp, err := cli.TimeToLive(tctx, old)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read lease %x: %w", old, err)
		}
		if resp.TTL > 0 {
			return concurrency.NewSession(cli, concurrency.WithLease(old), concurrency.WithTTL(secs), concurrency.WithContext(ctx))
		}
	}
	gctx, cancel := context.WithTimeout(ctx, sessionTimeout)
	resp, err := cli.Grant(gctx, int64(secs))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("grant a lease: %w", err)
	}
	return concurrency.NewSession(cli, concurrency.WithLease(resp.ID), concurrency.WithTTL(secs), concurrency.WithContext(ctx))
}

// sessionBackoff is the real agent's wait before making a session again: 200 ms
// doubling, capped by the caller at a second.
func sessionBackoff(attempt int) time.Duration { return 200 * time.Millisecond << min(attempt, 4) }

// watchRenewal is the real agent's: an error when the lease was not renewed for
// session_ttl - fence_margin.
func watchRenewal(ctx context.Context, cli *clientv3.Client, s *concurrency.Session, t Timings, stats *Stats) error {
	ka, err := cli.KeepAlive(ctx, s.Lease())
	if err != nil {
		return err
	}
	limit := t.SessionTTL - t.FenceMargin
	last := time.Now()
	tick := time.NewTicker(limit / 10)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			return errors.New("etcd session lost")
		case resp, ok := <-ka:
			if !ok {
				return errors.New("keep-alive ended")
			}
			if resp != nil {
				last = time.Now()
			}
		case <-tick.C:
			if since := time.Since(last); since > limit {
				stats.LateRenewals.Add(1)
				return fmt.Errorf("etcd session not renewed for %s", since.Round(time.Millisecond))
			}
		}
	}
}
