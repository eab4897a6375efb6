// Package agent is the Baton daemon that runs on every database node: it probes the
// local server (detector), publishes its status to etcd, takes part in the
// coordinator election (failover.Coordinator), brings its node into line with the
// primary of record (failover.Reconciler) and serves read-only HTTP for load
// balancers, status pages and Prometheus. It owns the node's etcd session: when the
// session cannot be renewed in time it fences its node before the lease expires.
//
// It needs no local disk: logs go to stderr, state lives in etcd.
package agent

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/reconcile"
	"github.com/baton-ha/baton/replication"
	"github.com/baton-ha/baton/vip"
)

// Agent is one node's daemon.
type Agent struct {
	cfg Config
	log *zap.Logger
	// fs is failsafe mode (off without a peer secret).
	fs *failsafe
}

// New checks the configuration and returns an Agent; it connects to nothing yet.
func New(cfg Config, log *zap.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	a := &Agent{cfg: cfg, log: log.With(zap.String("cluster", cfg.Cluster), zap.String("node", cfg.Node))}
	a.fs = newFailsafe(a.failsafeConfig())
	return a, nil
}

// failsafeConfig is failsafe mode's configuration from the agent's: no secret (off)
// unless FailsafeOn.
func (a *Agent) failsafeConfig() failsafeConfig {
	t := a.cfg.Timings
	fc := failsafeConfig{Cluster: a.cfg.Cluster, Node: a.cfg.Node, SessionTTL: t.SessionTTL, FenceMargin: t.FenceMargin,
		Interval: t.ProbeInterval, EtcdTimeout: t.ProbeTimeout, CheckTimeout: 2*t.ProbeTimeout + 100*time.Millisecond,
		Log: a.log.With(zap.String("component", "failsafe"))}
	if a.cfg.FailsafeOn() {
		fc.Secret = []byte(a.cfg.PeerSecret.Reveal())
	}
	return fc
}

// Run runs the agent until ctx ends. It fails at start when the local server lacks a
// grant Baton needs or etcd cannot be reached, saying which.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg
	var mover reconcile.VIP
	if cfg.VIP != nil {
		m, err := vip.New(*cfg.VIP, a.log.With(zap.String("component", "vip")))
		if err != nil {
			return err
		}
		mover = vipAdapter{m: m, ctx: ctx}
		// Before anything else: a virtual IP still configured here was left by an
		// agent that died without letting it go (SIGKILL), maybe long before a
		// failover moved the primary elsewhere. Only a node holding the leader key may
		// hold it, and this agent holds nothing yet; the reconciler takes it again
		// once this node is the writable primary.
		if err := dropLeftoverVIP(ctx, mover, a.log); err != nil {
			return err
		}
	}
	conns, err := cfg.connections(a.log)
	if err != nil {
		return err
	}
	defer conns.servers.Close()
	db, err := conns.dialer.Open(cfg.LocalAddr())
	if err != nil {
		return fmt.Errorf("local server: %w", err)
	}
	defer db.Close()
	dsn := conns.localDSN
	if err := a.checkGrants(ctx, db); err != nil {
		return err
	}
	if vars, err := serverSettings(ctx, db); err != nil {
		a.log.Warn("server settings not checked", zap.Error(err))
	} else {
		for _, w := range settingWarnings(vars) {
			a.log.Warn("server setting", zap.String("warning", w))
		}
	}
	local, err := replication.New(db, replication.Config{Name: cfg.Node, Timeout: replicationTimeout(cfg), SemiSync: cfg.SemiSync,
		Logger: a.log.With(zap.String("component", "replication"))})
	if err != nil {
		return err
	}

	ecfg, err := cfg.EtcdClientConfig(a.log.With(zap.String("component", "etcd")))
	if err != nil {
		return err
	}
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	store := cluster.NewStore(cli, cfg.Cluster)
	if err := a.waitForEtcd(ctx, store); err != nil {
		return fmt.Errorf("etcd %v unreachable: %w", cfg.Etcd.Endpoints, err)
	}
	a.publishPolicy(ctx, store)
	// One watched copy of the cluster's keys for the reconciler and the coordinator:
	// they look at it on every pass instead of reading etcd.
	cache, err := cluster.NewCache(store, a.log)
	if err != nil {
		return err
	}

	var rec *reconcile.Reconciler
	det, err := a.newDetector(ctx, db, dsn, func(ch detector.Change, _ detector.Report) {
		a.log.Info("verdict", zap.String("from", ch.From.String()), zap.String("to", ch.To.String()), zap.String("reason", ch.Reason))
		if rec != nil {
			rec.Kick()
		}
	})
	if err != nil {
		return err
	}
	peer := &reconcile.PeerWatch{
		Self: cfg.Node, DSN: cfg.PeerDSN, Interval: cfg.Timings.ProbeInterval, Timeout: cfg.Timings.ProbeTimeout,
		FailAfter: cfg.Timings.PeerFailAfter, Log: a.log.With(zap.String("component", "peer")),
		OnChange: func() {
			if rec != nil {
				rec.Kick()
			}
		},
	}
	rec, err = reconcile.NewReconciler(reconcile.ReconcilerConfig{
		Node: cfg.Node, Addr: cfg.MySQL.Address, Agent: cfg.AgentAddr(), HeldOff: a.fs.heldOff,
		Store: store, Cluster: cache, Local: local, LocalDB: db, Detector: det,
		Peer: peer, VIP: mover, Repl: conns.repl, Policy: cfg.Policy(),
		Priority: cfg.Candidate.Priority, NoPromote: cfg.Candidate.NoPromote,
		ConfirmLag: cfg.Timings.ConfirmLag, Tick: cfg.Timings.ProbeInterval, Log: a.log, SemiSync: cfg.SemiSync,
	})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	coord, err := failover.NewCoordinator(failover.CoordinatorConfig{
		Node: cfg.Node, Store: store, Cluster: cache, Servers: conns.servers, Repl: conns.repl,
		Policy:         cfg.Policy(),
		CatchupTimeout: cfg.Timings.CatchupTimeout, LongWrite: cfg.Timings.LongWrite, Tick: cfg.Timings.ProbeInterval,
		Hooks: hookRunner{hooks: cfg.Hooks, cluster: cfg.Cluster, node: cfg.Node}, Log: a.log,
		OnFlow: func(kind cluster.Action, result cluster.RequestState) {
			if kind == cluster.Switchover {
				metrics.CountSwitchover(result)
			} else {
				metrics.CountFailover(result)
			}
		},
	})
	if err != nil {
		return err
	}

	state := &sessionState{}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(gctx) })
	g.Go(func() error { return det.Run(gctx) })
	g.Go(func() error { return peer.Run(gctx) })
	g.Go(func() error { return a.serveHTTP(gctx, store, rec, state, reg, metrics) })
	work := []sessionWork{{Name: "reconciler", Run: rec.Run}, {Name: "coordinator", Run: coord.Run}}
	g.Go(func() error { return a.sessions(gctx, cli, rec, work, state) })
	a.log.Info("agent started", zap.String("mysql", cfg.MySQL.Address), zap.Strings("etcd", cfg.Etcd.Endpoints),
		zap.Bool("failsafe", a.fs.on()), zap.String("agent", cfg.AgentAddr()))
	if !a.fs.on() {
		a.log.Warn("failsafe mode is off: when no agent can reach etcd, the primary fences itself and writes stop until etcd is back; set peer_secret_file (or " + EnvPeerSecret + ") on every node to turn it on")
	}
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// publishPolicy makes this file's failover policy the cluster's if the cluster has
// none yet (create-only: the first agent's file wins). An existing one is left alone;
// the reconciler reports a disagreement. A failure is logged only: the coordinator
// creates the key too when it finds none.
func (a *Agent) publishPolicy(ctx context.Context, store *cluster.Store) {
	own := a.cfg.Policy()
	cur, created, err := store.CreatePolicy(ctx, cluster.PolicyRecord{Policy: own, SetBy: a.cfg.Node, At: time.Now().UTC()})
	switch {
	case err != nil:
		a.log.Warn("publish the failover policy", zap.Error(err))
	case created:
		a.log.Info("the cluster's failover policy is this file's", zap.Stringer("policy", own))
	default:
		a.log.Info("the cluster's failover policy", zap.Stringer("policy", cur.Policy), zap.String("set_by", cur.SetBy),
			zap.Strings("this_file_differs", own.Diff(cur.Policy)))
	}
}

// connections are the agent's ways to database servers, all built from one
// replication.Dialer (mysql.user, mysql.tls, mysql.connect_timeout), so that no path
// loses a setting: its own server's, the coordinator's to every node, and what
// replicas are pointed at (mysql.replication).
type connections struct {
	dialer replication.Dialer
	// localDSN is the local server's, for the detector (which takes a DSN).
	localDSN string
	servers  *failover.Servers
	// repl is the account and TLS settings replicas connect to the primary with.
	repl replication.Source
}

func (c Config) connections(log *zap.Logger) (connections, error) {
	d, err := c.Dialer()
	if err != nil {
		return connections{}, err
	}
	dsn, err := c.MySQLDSN(true)
	if err != nil {
		return connections{}, err
	}
	repl, err := c.ReplicationSource(c.MySQL.Address)
	if err != nil {
		return connections{}, err
	}
	// A catch-up wait runs server-side for up to catchup_timeout: the coordinator's
	// socket timeout must outlast it.
	sd := d
	sd.IOTimeout = max(30*time.Second, 2*c.Timings.CatchupTimeout)
	servers := &failover.Servers{Dialer: sd, Timeout: replicationTimeout(c), Log: log.With(zap.String("component", "servers"))}
	return connections{dialer: d, localDSN: dsn, servers: servers, repl: repl}, nil
}

// replicationTimeout bounds each call to a server made by the reconciler and the
// coordinator: longer than a probe (a promotion does several statements), short
// enough that a hung server cannot stall a flow.
func replicationTimeout(cfg Config) time.Duration {
	return max(2*time.Second, 4*cfg.Timings.ProbeTimeout)
}

func (a *Agent) newDetector(ctx context.Context, db *sql.DB, dsn string, onChange func(detector.Change, detector.Report)) (*detector.Detector, error) {
	cfg := a.cfg
	datadir, binlogDir := cfg.Datadir, ""
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	dd, bd, err := detector.Paths(pctx, db)
	cancel()
	if err == nil {
		if datadir == "" {
			datadir = dd
		}
		binlogDir = bd
	}
	return detector.New(detector.Config{
		DSN: dsn, Node: cfg.Node, Role: detector.Replica,
		Interval: cfg.Timings.ProbeInterval, Timeout: cfg.Timings.ProbeTimeout,
		FailAfter: cfg.Timings.FailAfter, RecoverAfter: cfg.Timings.RecoverAfter,
		DiskWindow: cfg.Timings.DiskWindow, DiskHorizon: cfg.Timings.DiskHorizon,
		Datadir: datadir, BinlogDir: binlogDir, OnChange: onChange,
		Logger: a.log.With(zap.String("component", "detector")),
	})
}

// sessions keeps an etcd session and runs the coordinator and the reconciler under
// it. When the session cannot be renewed before ttl - fence_margin, the node is
// fenced, unless failsafe mode keeps the primary (keepPrimary), and a session is made
// again: on the same lease while etcd still has it (the leader key and the node's
// status are then still this agent's), else on a new one. A node that promised a
// kept primary to hold off failovers (failsafe.holdOff) makes none until then.
func (a *Agent) sessions(ctx context.Context, cli *clientv3.Client, node localNode, work []sessionWork, state *sessionState) error {
	var lease clientv3.LeaseID
	defer a.fs.stopKeeper()
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil
		}
		a.fs.waitHoldoff(ctx)
		s, err := a.session(ctx, cli, lease)
		if err != nil {
			// Not longer than a second: when etcd is back, every agent must renew its
			// lease within session_ttl of etcd's new leader, or its keys (the leader
			// key, its status) go and a failover may follow for nothing.
			wait := min(backoff(attempt), time.Second)
			if kept, _ := a.fs.kept(); kept {
				// A kept primary takes its session back as soon as etcd answers.
				wait = a.cfg.Timings.ProbeInterval
				a.log.Debug("etcd session", zap.Error(err))
			} else {
				a.log.Warn("etcd session", zap.Error(err))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		attempt = 0
		a.fs.stopKeeper() // the session takes over from failsafe mode
		a.fs.resumed()
		resumed := s.Lease() == lease
		lease = s.Lease()
		state.set(true, lease)
		a.log.Info("etcd session", zap.String("lease", fmt.Sprintf("%x", lease)), zap.Bool("resumed", resumed))
		sctx, cancel := context.WithCancel(ctx)
		a.fs.attach(cancel)
		err = a.underSession(ctx, sctx, cli, s, node, work, state)
		a.fs.detach()
		cancel()
		if ctx.Err() != nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			// A clean stop hands the leader key and the election over at once.
			_ = cluster.NewStore(cli, a.cfg.Cluster).ReleaseLeader(rctx, lease)
			_ = s.Close()
			rcancel()
			return nil
		}
		if why := a.fs.heldOff(); err == nil && why != "" {
			err = errors.New(why) // ended by the promise made to a kept primary
		}
		a.log.Warn("etcd session ended", zap.Error(err))
		// Not revoked: the next session resumes the lease if etcd still has it.
		s.Orphan()
	}
}

// errKeptByFailsafe ends a session whose renewal failed while failsafe mode keeps
// the primary.
var errKeptByFailsafe = errors.New("etcd session not renewed in time; failsafe mode keeps the primary, every peer confirming etcd is unreachable")

// session makes an etcd session: on lease old while etcd still has it, else on a
// new lease. Each call to etcd is bounded.
func (a *Agent) session(ctx context.Context, cli *clientv3.Client, old clientv3.LeaseID) (*concurrency.Session, error) {
	ttl := int(a.cfg.Timings.SessionTTL.Seconds())
	timeout := max(time.Second, 3*a.cfg.Timings.ProbeTimeout)
	if old != clientv3.NoLease {
		tctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := cli.TimeToLive(tctx, old)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read lease %x: %w", old, err)
		}
		if resp.TTL > 0 {
			return concurrency.NewSession(cli, concurrency.WithLease(old), concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		}
	}
	gctx, cancel := context.WithTimeout(ctx, timeout)
	resp, err := cli.Grant(gctx, int64(ttl))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("grant a lease: %w", err)
	}
	return concurrency.NewSession(cli, concurrency.WithLease(resp.ID), concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
}

func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 4)
	return d
}

// localNode is what the session loop needs of the reconciler besides its Run: whether
// this node is the writable primary on a lease, the cluster as last read, and the
// fence without etcd.
type localNode interface {
	WritablePrimary(lease clientv3.LeaseID) bool
	Current() (cluster.NodeStatus, cluster.Snapshot)
	FenceLocal(ctx context.Context, why string)
}

// sessionWork is a part of the agent that runs under an etcd session: the reconciler,
// the coordinator. Run blocks until ctx ends or the session is lost.
type sessionWork struct {
	Name string
	Run  func(context.Context, *concurrency.Session) error
}

// underSession runs the session's work (reconciler, coordinator) and the renewal
// watch until the session ends or cannot be renewed in time. Only the renewal watch
// (or ctx) ends a session: work that fails on its own (a campaign for coordinator
// cut by a lost etcd connection) is started again within it. Were its error to end
// the session, the watch would end with it, and a primary whose etcd is gone would
// stay writable with neither a fence nor a failsafe check. When failsafe mode keeps
// the primary, its keeper starts at once, under the agent's context actx. The
// session is reported down the moment the watch ends: the work may take a while
// longer to end (an election's resignation waits for etcd, with no deadline).
func (a *Agent) underSession(actx, ctx context.Context, cli *clientv3.Client, s *concurrency.Session, node localNode, work []sessionWork, state *sessionState) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.runUnderSession(ctx, s, w)
		}()
	}
	err := a.watchRenewal(ctx, cli, s, node)
	state.set(false, 0)
	switch {
	case errors.Is(err, errKeptByFailsafe):
		a.fs.runKeeper(actx, func(kctx context.Context) { a.keepPrimary(kctx, cli, s.Lease(), node) })
	case err != nil:
		node.FenceLocal(context.WithoutCancel(ctx), err.Error())
	}
	cancel()
	wg.Wait()
	return err
}

// runUnderSession runs w until ctx ends or the session is lost, starting it again
// (after a pause) whenever it ends before.
func (a *Agent) runUnderSession(ctx context.Context, s *concurrency.Session, w sessionWork) {
	for attempt := 0; ; attempt++ {
		err := w.Run(ctx, s)
		select {
		case <-ctx.Done():
			return
		case <-s.Done():
			return
		default:
		}
		wait := min(backoff(attempt), time.Second)
		a.log.Warn(w.Name+" stopped; starting it again in the same etcd session", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return
		case <-s.Done():
			return
		case <-time.After(wait):
		}
	}
}

// watchRenewal returns an error when the session's lease has not been renewed for
// ttl - fence_margin: the lease may expire soon, and with it the leader key, so the
// node must stop taking writes before another can start. Failsafe mode: a writable
// primary whose renewal is late asks its peers (failsafe.confirm) early enough to
// know by then; if they all confirm, it returns errKeptByFailsafe instead, and is
// not fenced.
func (a *Agent) watchRenewal(ctx context.Context, cli *clientv3.Client, s *concurrency.Session, rec localNode) error {
	ka, err := cli.KeepAlive(ctx, s.Lease())
	if err != nil {
		return fmt.Errorf("watch lease renewal: %w", err)
	}
	limit := a.cfg.Timings.SessionTTL - a.cfg.Timings.FenceMargin
	// A confirmation must be in before the limit: the first check starts one check's
	// time (and a tick) before it.
	early := limit - a.fs.cfg.CheckTimeout - limit/20
	last := time.Now() // monotonic
	var asked time.Time
	t := time.NewTicker(limit / 20)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			return errors.New("etcd session lost")
		case resp, ok := <-ka:
			if !ok {
				return errors.New("etcd lease keep-alive ended")
			}
			if resp != nil {
				last = time.Now()
			}
		case <-t.C:
			since := time.Since(last)
			primary := a.fs.on() && rec.WritablePrimary(s.Lease())
			if primary && since > early && time.Since(asked) >= a.cfg.Timings.ProbeInterval {
				asked = time.Now()
				_, snap := rec.Current()
				keep, note, _ := a.fs.confirm(ctx, failsafePeers(a.cfg.Node, snap), snap.Primary.Epoch)
				a.log.Info("failsafe: etcd session renewal late; peers asked", zap.Duration("since_renewal", since.Round(time.Millisecond)),
					zap.Bool("all_confirm", keep), zap.String("answers", note))
			}
			if since := time.Since(last); since > limit {
				if primary && a.fs.startKeeping(s.Lease()) {
					a.log.Warn("failsafe: primary kept without etcd", zap.String("why", a.fs.view().Note))
					return errKeptByFailsafe
				}
				err := fmt.Errorf("etcd session not renewed for %s (limit %s = session_ttl - fence_margin)", since.Round(time.Millisecond), limit)
				if primary {
					// Failsafe mode could not keep it: say why, in /status too.
					a.fs.setState(FailsafeFenced, err.Error()+"; failsafe check: "+a.fs.lastCheck())
				}
				return err
			}
		}
	}
}

// keepPrimary runs while failsafe mode keeps the primary without an etcd session.
// Every probe_interval it renews the old lease if etcd answers again (the session
// loop then takes over and ends ctx), else asks every peer again; the moment a check
// fails, or the last confirmation runs out, it fences the node.
func (a *Agent) keepPrimary(ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID, rec localNode) {
	f := a.fs
	fence := func(why string) {
		if ctx.Err() != nil {
			return // a session took over: the reconciler decides again
		}
		f.stopKeeping(FailsafeFenced, why)
		a.log.Error("failsafe: fencing the primary", zap.String("why", why))
		rec.FenceLocal(context.WithoutCancel(ctx), "failsafe: "+why)
	}
	// renew renews the lease once: when etcd answers again, the lease protects the
	// node as before failsafe mode (its leader key cannot go before it expires).
	renew := func() bool {
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, f.cfg.EtcdTimeout)
		_, err := cli.KeepAliveOnce(rctx, lease)
		cancel()
		if err == nil {
			f.renewed(start, "etcd answers again: lease renewed, the session resumes")
		}
		return err == nil
	}
	for {
		if !time.Now().Before(f.validUntil()) {
			fence("the last confirmation ran out before a new one came in")
			return
		}
		if !renew() {
			_, snap := rec.Current()
			keep, note, etcdSeen := f.confirm(ctx, failsafePeers(a.cfg.Node, snap), snap.Primary.Epoch)
			switch {
			case keep:
				f.stillKept("primary kept, " + note)
			case etcdSeen && renew():
				// etcd came back for a peer between this node's renewal and the
				// peer's answer: it is back for this node too.
			default:
				fence(note)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(a.cfg.Timings.ProbeInterval, max(0, time.Until(f.validUntil())))):
		}
	}
}

// waitForEtcd reads the cluster's state until it succeeds: an agent started during
// an etcd outage (a restart by its supervisor, a reboot) comes up once etcd is back
// instead of exiting, which would leave its node without an agent for good where
// nothing restarts it. It says so at once and then every 10 s; it returns the last
// error only when ctx ends.
func (a *Agent) waitForEtcd(ctx context.Context, store *cluster.Store) error {
	const most = 2 * time.Second
	wait := 250 * time.Millisecond
	var told time.Time
	for {
		_, err := store.Load(ctx)
		if err == nil {
			if !told.IsZero() {
				a.log.Info("etcd reachable: starting")
			}
			return nil
		}
		if time.Since(told) >= 10*time.Second {
			a.log.Warn("waiting for etcd before starting (check etcd.endpoints if this lasts)", zap.Strings("endpoints", a.cfg.Etcd.Endpoints), zap.Error(err))
			told = time.Now()
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, most)
	}
}

func (a *Agent) checkGrants(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := CheckGrants(gctx, db, GrantOptions{SemiSync: a.cfg.SemiSync, Replicates: a.cfg.MySQL.Replication.User == ""})
		cancel()
		var missing *MissingGrantsError
		if err == nil || errors.As(err, &missing) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		// The server may still be starting: wait for it rather than fail.
		a.log.Warn("check grants", zap.Error(err))
		time.Sleep(time.Second)
	}
}

// sessionState is the etcd session as the HTTP server reports it.
type sessionState struct {
	mu    sync.Mutex
	up    bool
	lease clientv3.LeaseID
}

func (s *sessionState) set(up bool, lease clientv3.LeaseID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up, s.lease = up, lease
}

func (s *sessionState) get() (bool, clientv3.LeaseID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up, s.lease
}

// vipAdapter fits vip.Mover to the reconciler. The agent's long-lived context is
// given to Acquire, so the second gratuitous ARP burst is not cut short by a pass's
// deadline.
type vipAdapter struct {
	m   *vip.Mover
	ctx context.Context
}

func (v vipAdapter) Acquire(ctx context.Context) error {
	_, err := v.m.Acquire(v.ctx)
	return err
}
func (v vipAdapter) Release(ctx context.Context) error      { return v.m.Release(ctx) }
func (v vipAdapter) Held(ctx context.Context) (bool, error) { return v.m.Held(ctx) }
func (v vipAdapter) Seal()                                  { v.m.Seal() }
func (v vipAdapter) Unseal()                                { v.m.Unseal() }

// hookRunner runs the configured hooks for the coordinator.
type hookRunner struct {
	hooks   Hooks
	cluster string
	node    string
}

func (h hookRunner) Run(ctx context.Context, c failover.HookCall) error {
	var ev HookEvent
	switch c.Stage {
	case cluster.HookPreFailover:
		ev = PreFailover
	case cluster.HookPostFailover:
		ev = PostFailover
	case cluster.HookPreSwitchover:
		ev = PreSwitchover
	case cluster.HookPostSwitchover:
		ev = PostSwitchover
	default:
		return fmt.Errorf("unknown hook stage %q", c.Stage)
	}
	_, err := h.hooks.Run(ctx, HookRun{Event: ev, Cluster: h.cluster, Node: h.node, OldPrimary: c.OldPrimary,
		NewPrimary: c.NewPrimary, NewPrimaryAddr: c.NewPrimaryAddr, Epoch: c.Epoch, Reason: c.Reason, Result: c.Result, Error: c.Error})
	if errors.Is(err, ErrNoHook) {
		return nil
	}
	return err
}

// dropLeftoverVIP releases the virtual IP if this node holds it, within a second.
func dropLeftoverVIP(ctx context.Context, mover reconcile.VIP, log *zap.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	held, err := mover.Held(ctx)
	if err != nil {
		return fmt.Errorf("read the virtual IP at start: %w", err)
	}
	if !held {
		return nil
	}
	if err := mover.Release(ctx); err != nil {
		return fmt.Errorf("drop the virtual IP left by an earlier agent: %w", err)
	}
	log.Warn("dropped the virtual IP an earlier agent left configured; it is taken again once this node is the writable primary")
	return nil
}
