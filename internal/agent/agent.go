// Package agent is the Baton daemon that runs on every database node: it probes the
// local server (detector), publishes its status to etcd, takes part in the
// coordinator election (failover.Coordinator), brings its node into line with the
// primary of record (reconcile.Reconciler) and serves read-only HTTP for load
// balancers, status pages and Prometheus. It owns the node's etcd session: when the
// session cannot be renewed in time it fences its node before the lease expires.
//
// Logs go to stderr and the cluster's state lives in etcd; on local disk it keeps
// only a failsafe promise to hold off failovers (state_dir), which must outlive a
// restart of the agent.
package agent

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/internal/session"
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
	// sv is salvage, both sides (salvage.go); set by Run.
	sv *salvager
	// donor streams backups of this node's server to nodes being rebuilt; set by
	// Run before the HTTP server starts.
	donor *donor
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
		StateDir: a.cfg.StatePath(), Log: a.log.With(zap.String("component", "failsafe"))}
	if a.cfg.FailsafeOn() {
		fc.Secret = []byte(a.cfg.PeerSecret.Reveal())
	}
	return fc
}

// Run runs the agent until ctx ends. It fails at start when its etcd user lacks a
// permission or the local server a grant Baton needs, saying which; it waits for an
// etcd it cannot reach.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg
	// First: a promise to hold off failovers given by an earlier agent on this node
	// (failsafe mode) holds for what is left of it, whatever this agent does next.
	if err := a.fs.restore(); err != nil {
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
	var mover reconcile.VIP
	keptVIP := false
	if cfg.VIP != nil {
		m, err := vip.New(*cfg.VIP, a.log.With(zap.String("component", "vip")))
		if err != nil {
			return err
		}
		mover = vipAdapter{m: m, ctx: ctx}
		// Before anything waits for the local server (a stopped mysqld): a virtual IP
		// still configured here was left by an agent that stopped or died
		// (a restart, SIGKILL), maybe long before a failover moved the primary
		// elsewhere. It stays only when etcd, read now, still names this node the
		// primary of record: the restart of the primary's agent then costs no write,
		// and the reconciler's first pass fences the node if that changes. Otherwise,
		// or when etcd cannot be read at once, it goes before anything else: the
		// reconciler takes it again once this node is the writable primary.
		// It stays only as long as the local server answers too (below).
		if keptVIP = keepLeftoverVIP(a.readAtStart(ctx, store), cfg.Node); keptVIP {
			a.log.Info("the virtual IP an earlier agent left configured stays: etcd still names this node the primary of record")
		} else if err := dropLeftoverVIP(ctx, mover, a.log); err != nil {
			return err
		}
	}
	// No reconciler will run to fence this node or move the address if the agent
	// stops at start: a kept virtual IP must not outlive it.
	dropKeptVIP := func() {
		if keptVIP {
			if derr := dropLeftoverVIP(ctx, mover, a.log); derr != nil {
				a.log.Error("the kept virtual IP could not be dropped", zap.Error(derr))
			}
		}
	}
	// The etcd side of the start-up checks, before the MySQL side: an agent whose
	// etcd user lacks a permission stops here, naming it, without touching its
	// server. It waits for an etcd that does not answer; the leftover virtual IP was
	// decided on above, at once.
	if err := a.checkEtcdAccess(ctx, cli); err != nil {
		if errors.Is(err, ErrEtcdAccess) {
			dropKeptVIP()
		}
		return err
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
		dropKeptVIP()
		return err
	}
	if vars, err := serverSettings(ctx, db); err != nil {
		a.log.Warn("server settings not checked", zap.Error(err))
	} else {
		for _, w := range settingWarnings(vars, cfg.SemiSync) {
			a.log.Warn("server setting", zap.String("warning", w))
		}
	}
	local, err := replication.New(db, replication.Config{Name: cfg.Node, Timeout: replicationTimeout(cfg), SemiSync: cfg.SemiSync,
		Logger: a.log.With(zap.String("component", "replication"))})
	if err != nil {
		return err
	}
	defer local.Close() // its spare connection, which closing the pool leaves open

	// etcd answered the access check; it may have gone since (the grants check can
	// take seconds).
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
	// What the reconciler acts on changed: a pass now, not at its next tick.
	kick := func() {
		if rec != nil {
			rec.Kick()
		}
	}
	det, err := a.newDetector(ctx, db, dsn, func(ch detector.Change, _ detector.Report) {
		a.log.Info("verdict", zap.String("from", ch.From.String()), zap.String("to", ch.To.String()), zap.String("reason", ch.Reason))
		kick()
	}, func(detector.Report) { kick() })
	if err != nil {
		return err
	}
	fc, err := a.newForecaster(ctx, db, dsn)
	if err != nil {
		return err
	}
	peer := &reconcile.PeerWatch{
		Self: cfg.Node, DSN: cfg.PeerDSN, Interval: cfg.Timings.ProbeInterval, Timeout: cfg.Timings.ProbeTimeout,
		FailAfter: cfg.Timings.PeerFailAfter, Log: a.log.With(zap.String("component", "peer")),
		OnChange: kick,
	}
	tools, archiveDir := a.archiveTools()
	rebuild, canDonate := a.rebuildConfig(ctx, local, db)
	rec, err = reconcile.NewReconciler(reconcile.ReconcilerConfig{
		Node: cfg.Node, Addr: cfg.MySQL.Address, Agent: cfg.AgentAddr(), HeldOff: a.fs.heldOff,
		Store: store, Cluster: cache, Local: local, LocalDB: db, Detector: det, Forecasts: fc.Forecasts, Tools: tools, ArchiveDir: archiveDir,
		Rebuild: rebuild, CanDonate: canDonate,
		Peer: peer, VIP: mover, Repl: conns.repl, Policy: cfg.Policy(),
		Priority: cfg.Candidate.Priority, NoPromote: cfg.Candidate.NoPromote,
		ConfirmLag: cfg.Timings.ConfirmLag, Tick: cfg.Timings.ProbeInterval, Log: a.log, SemiSync: cfg.SemiSync,
		EndServer: a.endServerFunc(),
	})
	if err != nil {
		return err
	}
	a.donor.busy = func() string {
		if p := rec.Rebuilding(); p != nil {
			return cfg.Node + " is being rebuilt itself"
		}
		return ""
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	var salvage failover.Salvager
	a.sv = a.newSalvager()
	a.sv.db, a.sv.local = db, local
	// Where the server keeps its files: salvage reads its binary logs, and the
	// pid file names the process to end when it hangs (endserver.go).
	if err := a.sv.learnFiles(ctx, db); err != nil {
		a.log.Warn("where the server keeps its binary logs and pid file is not known yet", zap.Error(err))
	} else if why := a.sv.relayWritable(); why != "" && a.sv.on() {
		a.log.Warn("salvage onto this node goes through a session of Baton's account, not its SQL thread (slower): " + why)
	}
	a.sv.settleRelayLeftover(ctx)
	a.checkCanEnd()
	if a.sv.on() {
		salvage = a.sv
	}
	coord, err := failover.NewCoordinator(failover.CoordinatorConfig{
		Node: cfg.Node, Store: store, Cluster: cache, Servers: conns.servers, Repl: conns.repl,
		Policy:         cfg.Policy(),
		CatchupTimeout: cfg.Timings.CatchupTimeout, LongWrite: cfg.Timings.LongWrite, Tick: cfg.Timings.ProbeInterval,
		Salvage: salvage, SalvageTimeout: cfg.Timings.SalvageTimeout,
		Hooks: hookRunner{hooks: cfg.Hooks, cluster: cfg.Cluster, node: cfg.Node}, Log: a.log, HeldOff: a.fs.heldOff,
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
	work := []session.Work{{Name: "reconciler", Run: rec.Run}, {Name: "coordinator", Run: coord.Run}}
	sessions, err := a.sessionRunner(cli, rec, work, state)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(gctx) })
	g.Go(func() error { return det.Run(gctx) })
	g.Go(func() error { return fc.Run(gctx) })
	g.Go(func() error { return peer.Run(gctx) })
	// Rebuilds run for the agent's lifetime, apart from the session's work: one
	// outlives an etcd session that lapses meanwhile.
	g.Go(func() error { return rec.RunRebuilds(gctx) })
	g.Go(func() error { return a.serveHTTP(gctx, store, rec, det, state, reg, metrics) })
	g.Go(func() error {
		a.sv.watch(gctx, db, func() cluster.NodeStatus { n, _ := rec.Current(); return n }, cfg.Timings.ProbeInterval)
		return nil
	})
	g.Go(func() error { return sessions.Run(gctx) })
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

// archiveTools are the client programs that archive and undo this node's errant
// transactions, run as Baton's account against the local server, and the archive
// directory (made 0700). Without the programs (mariadb-client not installed) or the
// directory, nothing real is undone or discarded by this agent: it says so once.
func (a *Agent) archiveTools() (reconcile.Archiver, string) {
	cfg := a.cfg
	dir := cfg.ArchivePath()
	for _, prog := range []string{"mariadb-binlog", "mariadb"} {
		if _, err := exec.LookPath(prog); err != nil {
			a.log.Warn("errant transactions cannot be archived, so a quarantined node never undoes or discards them: install mariadb-client", zap.Error(err))
			return nil, ""
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		a.log.Warn("errant transactions cannot be archived, so a quarantined node never undoes or discards them", zap.String("archive_dir", dir), zap.Error(err))
		return nil, ""
	}
	t := replication.Tools{Addr: cfg.LocalAddr(), User: cfg.MySQL.User, Password: cfg.MySQL.Password.Reveal(), Dir: cfg.StatePath()}
	if tls := cfg.MySQL.TLS; tls != nil {
		t.TLS, t.TLSCA, t.TLSCert, t.TLSKey, t.SkipVerify = true, tls.CA, tls.Cert, tls.Key, tls.InsecureSkipVerify
	}
	return t, dir
}

// rebuildConfig is what the reconciler needs to rebuild this node from a donor,
// and whether this agent can give backups itself; it sets a.donor, the endpoint
// that gives them. What is missing (the server's commands, the backup programs, a
// peer secret) is said once, and published in the node's status.
func (a *Agent) rebuildConfig(ctx context.Context, local *replication.Instance, db *sql.DB) (*reconcile.RebuildConfig, bool) {
	cfg := a.cfg
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	flavor, err := local.Flavor(fctx)
	cancel()
	if err != nil {
		a.log.Warn("the server's flavor is not known yet: the rebuild's programs are MariaDB's", zap.Error(err))
	}
	prog := replication.DefaultBackupPrograms(flavor)
	canDonate, unable := rebuildAbility(cfg, prog, exec.LookPath)
	if unable != "" {
		a.log.Warn("this node is not rebuilt by its agent: "+unable, zap.Bool("gives_backups", canDonate))
	}
	var secret []byte
	if cfg.PeerSecret != "" {
		secret = []byte(cfg.PeerSecret.Reveal())
	}
	log := a.log.With(zap.String("component", "rebuild"))
	tools := replication.Tools{Addr: cfg.LocalAddr(), User: cfg.MySQL.User, Password: cfg.MySQL.Password.Reveal(), Dir: cfg.StatePath()}
	if tls := cfg.MySQL.TLS; tls != nil {
		tools.TLS, tools.TLSCA, tools.TLSCert, tools.TLSKey, tools.SkipVerify = true, tls.CA, tls.Cert, tls.Key, tls.InsecureSkipVerify
	}
	a.donor = &donor{cluster: cfg.Cluster, node: cfg.Node, secret: secret, maxRate: int64(cfg.Rebuild.MaxRate),
		stall: reconcile.DefaultStallTimeout, timeout: cfg.Rebuild.Timeout, log: log, facts: donorFacts(local, db),
		backup: func(ctx context.Context, w io.Writer) error { return tools.Backup(ctx, prog, w) },
		busy:   func() string { return "" }}
	if !canDonate {
		a.donor.secret = nil // answers that it gives no backup
	}
	return &reconcile.RebuildConfig{
		Fetcher: newBackupClient(cfg.Cluster, cfg.Node, secret), Control: serverCommands{cfg: cfg.Server, cluster: cfg.Cluster, node: cfg.Node, log: log},
		Restorer: backupRestorer{prog: prog}, Files: local, StateDir: cfg.StatePath(), Unable: unable,
		Timeout: cfg.Rebuild.Timeout, CommandTimeout: cfg.Server.CommandTimeout,
	}, canDonate
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

func (a *Agent) newDetector(ctx context.Context, db *sql.DB, dsn string, onChange func(detector.Change, detector.Report), onStale func(detector.Report)) (*detector.Detector, error) {
	cfg := a.cfg
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	loc, err := detector.AskLocations(pctx, db)
	cancel()
	if err != nil {
		a.log.Warn("the server's binlog and relay log locations are not known: their disks are not watched", zap.Error(err))
	}
	if cfg.Datadir != "" {
		loc.Datadir = cfg.Datadir
	}
	return detector.New(detector.Config{
		DSN: dsn, Node: cfg.Node, Role: detector.Replica,
		Interval: cfg.Timings.ProbeInterval, Timeout: cfg.Timings.ProbeTimeout,
		FailAfter: cfg.Timings.FailAfter, RecoverAfter: cfg.Timings.RecoverAfter,
		DiskWindow: cfg.Timings.DiskWindow, DiskHorizon: cfg.Timings.DiskHorizon,
		Datadir: loc.Datadir, BinlogDir: loc.BinlogDir, RelayLogDir: loc.RelayLogDir, OnChange: onChange,
		// A heartbeat turning confirm_lag old is what the coordinator waits for to
		// confirm a primary that stopped writing: seen when it happens, and published
		// at once (the reconciler publishes the crossing).
		StaleAfter: cfg.Timings.ConfirmLag, OnStale: onStale,
		Logger: a.log.With(zap.String("component", "detector")),
	})
}

// newForecaster is the detector's slow loop on the local server, on a connection of
// its own. Without a privilege that shows the tables' definitions it runs all the
// same, and says, in its auto-increment forecast and once in the log, what to grant.
func (a *Agent) newForecaster(ctx context.Context, db *sql.DB, dsn string) (*detector.Forecaster, error) {
	cfg := a.cfg
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	hidden, err := SeesTables(gctx, db)
	cancel()
	switch {
	case err != nil:
		// Read the keys anyway: those it cannot see are missing, not misreported.
		a.log.Warn("whether every table's auto-increment key is visible was not checked", zap.Error(err))
	case hidden != "":
		a.log.Warn("auto-increment keys not forecast", zap.String("why", hidden))
	}
	return detector.NewForecaster(detector.ForecasterConfig{
		DSN: dsn, Interval: cfg.Forecast.Interval, Timeout: cfg.Forecast.Timeout, Window: cfg.Forecast.Window,
		HistoryLimit: cfg.Forecast.HistoryLimit, Tables: cfg.Forecast.Tables, TablesHidden: hidden,
		Logger: a.log.With(zap.String("component", "forecast")),
	})
}

// sessionRunner keeps the agent's etcd session and runs the coordinator and the
// reconciler under it (internal/session): when the session cannot be renewed before
// ttl - fence_margin, the node is fenced, unless failsafe mode keeps the primary
// (failsafeHooks), and a session is made again, on the same lease while etcd still
// has it. A node that promised a kept primary to hold off failovers
// (failsafe.holdOff) makes none until then.
func (a *Agent) sessionRunner(cli *clientv3.Client, node localNode, work []session.Work, state *sessionState) (*session.Runner, error) {
	t := a.cfg.Timings
	cfg := session.Config{
		Client: cli, TTL: t.SessionTTL, FenceMargin: t.FenceMargin,
		CallTimeout: max(time.Second, 3*t.ProbeTimeout), Work: work,
		Fence:   func(ctx context.Context, why error) { node.FenceLocal(ctx, why.Error()) },
		HeldOff: a.fs.holdoffLeft,
		OnUp: func(lease clientv3.LeaseID, _ bool) {
			a.fs.resumed()
			state.set(true, lease)
		},
		OnDown: func(error) { state.set(false, 0) },
		Release: func(ctx context.Context, lease clientv3.LeaseID) {
			// A clean stop hands the leader key and the election over at once.
			_ = cluster.NewStore(cli, a.cfg.Cluster).ReleaseLeader(ctx, lease)
		},
		Log: a.log.With(zap.String("component", "session")),
	}
	if a.fs.on() {
		cfg.Failsafe = &failsafeHooks{a: a, cli: cli, node: node}
	}
	r, err := session.New(cfg)
	if err != nil {
		return nil, err
	}
	a.fs.attach(r.Interrupt)
	return r, nil
}

// localNode is what the session needs of the reconciler besides its Run: whether
// this node is the writable primary on a lease, the cluster as last read, and the
// fence without etcd.
type localNode interface {
	WritablePrimary(lease clientv3.LeaseID) bool
	Current() (cluster.NodeStatus, cluster.Snapshot)
	FenceLocal(ctx context.Context, why string)
}

// failsafeHooks are failsafe mode as the session sees it. A writable primary whose
// renewal is late asks its peers (failsafe.confirm) early enough to know before the
// fence deadline; if they all confirm, it is kept instead of fenced, and
// keepPrimary runs until a session is made again.
type failsafeHooks struct {
	a     *Agent
	cli   *clientv3.Client
	node  localNode
	asked time.Time // the latest check's start; only the renewal watch uses it
}

// Lead is a check's time: its answers must be in before the fence deadline.
func (h *failsafeHooks) Lead() time.Duration { return h.a.fs.cfg.CheckTimeout }

func (h *failsafeHooks) Late(ctx context.Context, lease clientv3.LeaseID, since time.Duration) {
	a := h.a
	if !h.node.WritablePrimary(lease) || time.Since(h.asked) < a.cfg.Timings.ProbeInterval {
		return
	}
	h.asked = time.Now()
	_, snap := h.node.Current()
	keep, note, _ := a.fs.confirm(ctx, failsafePeers(a.cfg.Node, snap), snap.Primary.Epoch)
	a.log.Info("failsafe: etcd session renewal late; peers asked", zap.Duration("since_renewal", since.Round(time.Millisecond)),
		zap.Bool("all_confirm", keep), zap.String("answers", note))
}

func (h *failsafeHooks) Keep(lease clientv3.LeaseID, late error) bool {
	a := h.a
	if !h.node.WritablePrimary(lease) {
		return false
	}
	if a.fs.startKeeping(lease) {
		a.log.Warn("failsafe: primary kept without etcd", zap.String("why", a.fs.view().Note))
		return true
	}
	// Failsafe mode could not keep it: say why, in /status too.
	a.fs.setState(FailsafeFenced, late.Error()+"; failsafe check: "+a.fs.lastCheck())
	return false
}

func (h *failsafeHooks) Kept(ctx context.Context, lease clientv3.LeaseID) error {
	return h.a.keepPrimary(ctx, h.cli, lease, h.node)
}

// keepPrimary runs while failsafe mode keeps the primary without an etcd session.
// Every probe_interval it renews the old lease if etcd answers again (a session is
// then made on it, which ends ctx), else asks every peer again; the moment a check
// fails, or the keep window ends, it returns why the node must be fenced. Each
// round is bounded by the keep window: a check still under way when it ends cannot
// keep the node past it.
func (a *Agent) keepPrimary(ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID, rec localNode) error {
	f := a.fs
	const ranOut = "the last confirmation ran out before a new one came in"
	fence := func(why string) error {
		if ctx.Err() != nil {
			return nil // a session took over: the reconciler decides again
		}
		f.stopKeeping(FailsafeFenced, why)
		a.log.Error("failsafe: fencing the primary", zap.String("why", why))
		return errors.New("failsafe: " + why)
	}
	// renew renews the lease once: when etcd answers again, the lease protects the
	// node as before failsafe mode (its leader key cannot go before it expires).
	renew := func(ctx context.Context) bool {
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
		until := f.validUntil()
		if !time.Now().Before(until) {
			return fence(ranOut)
		}
		rctx, cancel := context.WithDeadline(ctx, until)
		renewed := renew(rctx)
		var keep, etcdSeen bool
		var note string
		if !renewed {
			_, snap := rec.Current()
			keep, note, etcdSeen = f.confirm(rctx, failsafePeers(a.cfg.Node, snap), snap.Primary.Epoch)
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case renewed:
		case keep:
			f.stillKept("primary kept, " + note)
		case !time.Now().Before(f.validUntil()):
			return fence(ranOut + " (" + note + ")")
		case etcdSeen:
			// etcd came back for a peer between this node's renewal and the peer's
			// answer: it may be back for this node too.
			rctx, cancel := context.WithDeadline(ctx, f.validUntil())
			ok := renew(rctx)
			cancel()
			if !ok {
				return fence(note)
			}
		default:
			return fence(note)
		}
		select {
		case <-ctx.Done():
			return nil
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

// checkEtcdAccess runs the etcd access check (etcdaccess.go) until it has a verdict:
// a permission the agent lacks stops it at start, naming it; an etcd that does not
// answer is waited for, as in waitForEtcd. etcd without authentication is a warning.
func (a *Agent) checkEtcdAccess(ctx context.Context, cli *clientv3.Client) error {
	user := a.cfg.Etcd.EtcdUser()
	wait := 250 * time.Millisecond
	var told time.Time
	for {
		acc, err := CheckEtcdAccess(ctx, cli, a.cfg.Cluster, a.cfg.Node, user)
		var denied *EtcdAccessError
		switch {
		case err == nil:
			if acc.AuthKnown && !acc.AuthEnabled {
				a.log.Warn("etcd authentication is off: whoever reaches etcd can write this cluster's keys and so choose its primary; see docs/security.md")
			}
			return nil
		case errors.As(err, &denied):
			return fmt.Errorf("etcd: %w", err)
		case ctx.Err() != nil:
			return err
		}
		if time.Since(told) >= 10*time.Second {
			a.log.Warn("waiting for etcd before starting, to check the agent's permissions (check etcd.endpoints if this lasts)", zap.Strings("endpoints", a.cfg.Etcd.Endpoints), zap.Error(err))
			told = time.Now()
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
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
// readAtStart reads the cluster's state once, within a second: what an agent that
// starts knows before its session; a zero snapshot when etcd does not answer at once.
func (a *Agent) readAtStart(ctx context.Context, store *cluster.Store) cluster.Snapshot {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	snap, err := store.Load(rctx)
	if err != nil {
		a.log.Info("etcd not read at start; a leftover virtual IP is dropped", zap.Error(err))
		return cluster.Snapshot{}
	}
	return snap
}

// keepLeftoverVIP says whether a virtual IP found configured at start may stay: only
// when etcd names this node the primary of record. A zero snapshot (etcd not read)
// never reads as such.
func keepLeftoverVIP(snap cluster.Snapshot, node string) bool {
	return node != "" && snap.Rev != 0 && snap.Primary.Node == node
}

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
