package detector

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// ProberConfig configures a Prober.
type ProberConfig struct {
	// DSN is the go-sql-driver DSN of the server, with a user that has the grants in
	// docs/detector.md. Its timeouts are replaced by the probe's.
	DSN string
	// Node names the writer in baton.heartbeat and baton.storage_probe: the local
	// node's name, also when probing a peer.
	Node string
	// Timeout is every probe's deadline, connect included.
	Timeout time.Duration
	// KillTimeout bounds the KILL QUERY sent for a probe that missed its deadline;
	// default Timeout.
	KillTimeout time.Duration
	// Dial, when set, makes the connections (for a server in another network
	// namespace); default net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *zap.Logger
}

// Prober runs the probes against one server, each kind on its own connection pool of
// at most one connection, so that a hung probe of one kind never holds up another.
// At most one probe of a kind is in flight: asking for a probe while the previous one
// of the kind still runs returns TimedOut at once. A probe that misses its deadline
// counts as failed at once, but its statement is not abandoned: the Prober sends
// KILL QUERY for it through a separate, already established connection and keeps the
// probe's own connection, so hung probes never pile up on the server, and a server
// that refuses new connections (a busy application's writes hung on a full disk
// exhaust them) cannot blind the write probe: it goes on writing on its established
// connection. The kind stays busy until the statement has ended; one the KILL cannot
// end (a commit waiting for disk space) keeps it busy, and every probe of the kind
// meanwhile reports that the previous one still runs. Only after statementLimit is
// the connection given up.
//
// A Prober is safe for concurrent use. The agent uses one against a peer, with the
// Primary role, to confirm that peer's verdict.
type Prober struct {
	node        string
	timeout     time.Duration
	killTimeout time.Duration
	log         *zap.Logger

	ping, write, storage, repl lane
	admin                      *sql.DB // KILL QUERY

	seq        atomic.Uint64
	epoch      atomic.Uint64
	heartbeats heartbeatWatch
	adminWarm  atomic.Bool
	kills      sync.WaitGroup
}

// lane is one kind of probe: its pool, its pinned connection and its in-flight flag.
type lane struct {
	name  string
	db    *sql.DB
	fresh bool // a new connection every probe (liveness: connect is part of the probe)

	busy    atomic.Bool
	started atomic.Int64 // unix ns of the probe in flight
	// waiting is the server state read for the statement in flight when it missed
	// its deadline, for the rounds that find it still running.
	waiting atomic.Pointer[string]

	// Owned by the probe in flight (guarded by busy).
	conn *sql.Conn
	id   atomic.Int64 // server thread id of conn; read by a probe that finds the lane busy
}

// NewProber checks the configuration and opens the pools (no connection is made
// before the first probe).
func NewProber(cfg ProberConfig) (*Prober, error) {
	if cfg.Node == "" {
		return nil, errors.New("new prober: node: required (the name written into baton.heartbeat)")
	}
	if len(cfg.Node) > 64 {
		return nil, fmt.Errorf("new prober: node: %q is longer than 64 characters", cfg.Node)
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("new prober: timeout: %s, must be positive", cfg.Timeout)
	}
	if cfg.KillTimeout < 0 {
		return nil, fmt.Errorf("new prober: kill timeout: %s, must not be negative", cfg.KillTimeout)
	}
	if cfg.KillTimeout == 0 {
		cfg.KillTimeout = cfg.Timeout
	}
	base, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("new prober: dsn: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	p := &Prober{
		node:        cfg.Node,
		timeout:     cfg.Timeout,
		killTimeout: cfg.KillTimeout,
		log:         cfg.Logger,
	}
	open := func(tune func(*mysql.Config)) (*sql.DB, error) {
		c := base.Clone()
		// The context deadline ends a probe; the socket timeouts are a backstop only,
		// longer, because the driver reports a socket timeout as a lost connection and
		// loses the difference between "slow" and "gone".
		c.Timeout = cfg.Timeout
		c.ReadTimeout = statementLimit + time.Second
		c.WriteTimeout = 2*cfg.Timeout + time.Second
		c.InterpolateParams = true // one round trip, no server-side statement
		c.Logger = &mysql.NopLogger{}
		c.DBName = ""
		c.MultiStatements = false
		if cfg.Dial != nil {
			c.DialFunc = cfg.Dial
		}
		if tune != nil {
			tune(c)
		}
		conn, err := mysql.NewConnector(c)
		if err != nil {
			return nil, err
		}
		db := sql.OpenDB(conn)
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		return db, nil
	}
	pools := []struct {
		l    *lane
		name string
		tune func(*mysql.Config)
	}{
		{&p.ping, "liveness", nil},
		// Found rows, not changed rows: 0 then means only "the read_only guard held".
		{&p.write, "write", func(c *mysql.Config) { c.ClientFoundRows = true }},
		// Not binlogged: no GTID on a replica, nothing replicated anywhere.
		{&p.storage, "storage", func(c *mysql.Config) {
			c.ClientFoundRows = true
			c.Params = cloneParams(c.Params)
			c.Params["sql_log_bin"] = "0"
		}},
		{&p.repl, "replication", nil},
	}
	for _, pl := range pools {
		db, err := open(pl.tune)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("new prober: %s pool: %w", pl.name, err)
		}
		pl.l.name, pl.l.db = pl.name, db
	}
	p.ping.fresh = true
	p.ping.db.SetMaxIdleConns(0)
	if p.admin, err = open(nil); err != nil {
		p.Close()
		return nil, fmt.Errorf("new prober: admin pool: %w", err)
	}
	return p, nil
}

func cloneParams(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// SetEpoch sets the primary epoch written with each heartbeat.
func (p *Prober) SetEpoch(e uint64) { p.epoch.Store(e) }

// Close waits for kills in flight (each until its statement has ended, at most
// statementLimit) and closes the pools.
func (p *Prober) Close() error {
	p.kills.Wait()
	var errs []error
	for _, l := range []*lane{&p.ping, &p.write, &p.storage, &p.repl} {
		if l.db == nil {
			continue
		}
		if l.busy.CompareAndSwap(false, true) {
			l.drop()
		}
		errs = append(errs, l.db.Close())
	}
	if p.admin != nil {
		errs = append(errs, p.admin.Close())
	}
	return errors.Join(errs...)
}

// Ping is the liveness probe: a new connection and SELECT 1.
func (p *Prober) Ping(ctx context.Context) Result {
	return p.run(ctx, &p.ping, func(ctx context.Context, c *sql.Conn) error {
		var one int
		return c.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	})
}

// heartbeatSQL is the write probe. The read_only guard keeps a privileged user (which
// read_only does not stop) from writing binlogged rows on a server someone made
// read_only: it inserts nothing there, and the probe reports ReadOnlyRefused.
const heartbeatSQL = "INSERT INTO " + Schema + "." + HeartbeatTable + " (node, seq, ts, server_id, epoch) " +
	"SELECT ?, ?, UTC_TIMESTAMP(6), @@server_id, ? FROM DUAL WHERE @@read_only = 0 " +
	"ON DUPLICATE KEY UPDATE seq = VALUES(seq), ts = VALUES(ts), server_id = VALUES(server_id), epoch = VALUES(epoch)"

// errReadOnlyGuard is what the write probe reports when its guard found read_only on.
var errReadOnlyGuard = errors.New("read_only is ON")

// Write is the write probe for a primary: a binlogged upsert of this node's row in
// baton.heartbeat, committed (autocommit) before the deadline or failed.
func (p *Prober) Write(ctx context.Context) Result {
	r := p.run(ctx, &p.write, func(ctx context.Context, c *sql.Conn) error {
		res, err := c.ExecContext(ctx, heartbeatSQL, p.node, p.seq.Add(1), p.epoch.Load())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return errReadOnlyGuard
		}
		return nil
	})
	return r
}

const storageSQL = "INSERT INTO " + Schema + "." + StorageTable + " (node, seq, ts) VALUES (?, ?, UTC_TIMESTAMP(6)) " +
	"ON DUPLICATE KEY UPDATE seq = VALUES(seq), ts = VALUES(ts)"

// Storage is the storage probe for a replica: an upsert into the local table on a
// connection with sql_log_bin=0, so it makes no GTID and replicates nowhere. On a
// read_only replica it needs READ_ONLY ADMIN (MariaDB 10.11+; SUPER before).
func (p *Prober) Storage(ctx context.Context) Result {
	return p.run(ctx, &p.storage, func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, storageSQL, p.node, p.seq.Add(1))
		return err
	})
}

// Replication reads the replica's threads, last errors and heartbeat lag.
func (p *Prober) Replication(ctx context.Context) *Replication {
	rep := &Replication{HeartbeatLag: -1}
	rep.Probe = p.run(ctx, &p.repl, func(ctx context.Context, c *sql.Conn) error {
		if err := readSlaveStatus(ctx, c, rep); err != nil {
			return err
		}
		var us sql.NullInt64
		var ts sql.NullString
		err := c.QueryRowContext(ctx, "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(ts), UTC_TIMESTAMP(6)), CAST(MAX(ts) AS CHAR) FROM "+
			Schema+"."+HeartbeatTable).Scan(&us, &ts)
		if err != nil {
			return fmt.Errorf("read heartbeat lag: %w", err)
		}
		if us.Valid {
			rep.HeartbeatLag = time.Duration(us.Int64) * time.Microsecond
			rep.HeartbeatSeen = p.heartbeats.observe(ts.String, time.Now())
		}
		return nil
	})
	return rep
}

// heartbeatWatch remembers the newest heartbeat a replica has applied and when the
// replication probe first saw it, on this host's clock: whether heartbeats still
// arrive, with no clock of the primary's involved.
type heartbeatWatch struct {
	mu   sync.Mutex
	ts   string
	seen time.Time
	// known: a change was seen, so seen is when this heartbeat arrived (to within a
	// round), not when the probe started watching.
	known bool
}

// observe records the newest heartbeat's timestamp as read at now and returns when
// the probe first saw it: zero until a first change was seen (when the heartbeat
// found at the start arrived is not known).
func (w *heartbeatWatch) observe(ts string, now time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.seen.IsZero():
		w.ts, w.seen = ts, now
		return time.Time{}
	case ts != w.ts:
		w.ts, w.seen, w.known = ts, now, true
	case !w.known:
		return time.Time{}
	}
	return w.seen
}

// readSlaveStatus reads the few SHOW SLAVE STATUS columns the detector judges, by name
// (their positions differ between versions and flavors).
func readSlaveStatus(ctx context.Context, c *sql.Conn, rep *Replication) error {
	rows, err := c.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return fmt.Errorf("show slave status: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return fmt.Errorf("show slave status: %w", err)
	}
	if !rows.Next() {
		return rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return fmt.Errorf("show slave status: %w", err)
	}
	rep.Configured = true
	for i, col := range cols {
		v := vals[i].String
		switch col {
		case "Slave_IO_Running":
			rep.IORunning = v
		case "Slave_SQL_Running":
			rep.SQLRunning = v
		case "Last_IO_Errno":
			fmt.Sscan(v, &rep.LastIOErrno) //nolint:errcheck // empty stays 0
		case "Last_IO_Error":
			rep.LastIOError = v
		case "Last_SQL_Errno":
			fmt.Sscan(v, &rep.LastSQLErrno) //nolint:errcheck
		case "Last_SQL_Error":
			rep.LastSQLError = v
		}
	}
	return rows.Err()
}

// statementLimit is how long a probe's statement may run on its established
// connection, KILL QUERY included, before the connection is given up. It is a
// backstop, far beyond the probe deadline: a commit waiting for disk space cannot be
// killed, and giving up its connection early would have the next probe ask for a new
// one, which a server out of connections refuses.
const statementLimit = 30 * time.Second

// run runs one probe on its lane under the probe deadline and classifies the outcome.
func (p *Prober) run(ctx context.Context, l *lane, probe func(context.Context, *sql.Conn) error) Result {
	start := time.Now()
	if !l.busy.CompareAndSwap(false, true) {
		running := start.Sub(time.Unix(0, l.started.Load()))
		// The statement is the one a missed deadline already asked about: ask the
		// server again only when that found nothing.
		var waiting string
		if last := l.waiting.Load(); last != nil {
			waiting = *last
		} else {
			waiting = p.waiting(ctx, l.id.Load())
		}
		return Result{Class: TimedOut, Latency: running,
			Detail:  fmt.Sprintf("previous %s probe still running after %s", l.name, fmtLatency(running)),
			Waiting: waiting, Overrun: OverrunPrevious}
	}
	l.started.Store(start.UnixNano())
	l.waiting.Store(nil)
	pctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	if err := l.connect(pctx); err != nil {
		l.drop()
		l.busy.Store(false)
		class, detail := Classify(err)
		return Result{Class: class, Latency: time.Since(start), Detail: detail}
	}
	if l.fresh {
		// The liveness probe: connecting is part of it, and the connection is closed
		// after it, so the deadline ends it (the driver closes the socket).
		err := probe(pctx, l.conn)
		l.release()
		return p.outcome(err, time.Since(start), pctx.Err() != nil)
	}
	p.warmAdmin(pctx)
	// The statement runs under its own, far longer limit: cancelling it at the probe
	// deadline would make the driver close the established connection.
	sctx, scancel := context.WithTimeout(ctx, statementLimit)
	done := make(chan error, 1)
	conn, id := l.conn, l.id.Load()
	go func() { done <- probe(sctx, conn) }()
	// What a slow statement waits for is asked from half the deadline on, beside
	// it, so that the answer is in hand at the deadline: asked after it, a frozen
	// server would hold the round for the question's own deadline too, and delay
	// the verdict by as much.
	asked := make(chan string, 1)
	ask := time.AfterFunc(p.timeout/2, func() { asked <- p.waiting(ctx, id) })
	select {
	case err := <-done:
		ask.Stop()
		scancel()
		lat := time.Since(start)
		p.settle(l, err)
		return p.outcome(err, lat, lat > p.timeout)
	case <-pctx.Done():
	}
	// Deadline missed with the statement still running on the server: kill it and
	// keep the lane busy until it has ended.
	lat := time.Since(start)
	// Asked before the KILL ends the wait it would name; not asked at all when
	// connecting took most of the deadline.
	var waiting string
	if !ask.Stop() {
		select {
		case waiting = <-asked: // its own deadline ends with the probe's
		case <-time.After(p.timeout / 4):
		}
	}
	if waiting != "" {
		l.waiting.Store(&waiting)
	}
	p.kills.Add(1)
	go func() {
		defer p.kills.Done()
		defer scancel()
		p.settle(l, p.killUntilEnded(context.WithoutCancel(ctx), l.name, id, done))
	}()
	return Result{Class: TimedOut, Latency: lat, Detail: "no answer before the deadline", Waiting: waiting}
}

// waiting asks the server, on the KILL connection, what thread id's statement waits
// for (its PROCESSLIST state), within half the probe timeout: "" when it cannot
// tell (a frozen server, a KILL holding the connection). It names a cause the probe
// alone cannot see, such as a commit waiting for a semi-sync acknowledgement.
func (p *Prober) waiting(ctx context.Context, id int64) string {
	if id == 0 {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout/2)
	defer cancel()
	var state sql.NullString
	if err := p.admin.QueryRowContext(ctx, "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&state); err != nil {
		return ""
	}
	return state.String
}

// outcome classifies a probe's error. late: it finished after the deadline, which
// fails it even without an error (a commit slower than the deadline fails).
func (p *Prober) outcome(err error, lat time.Duration, late bool) Result {
	if errors.Is(err, errReadOnlyGuard) {
		return Result{Class: ReadOnlyRefused, Latency: lat, Detail: err.Error()}
	}
	if err == nil && late {
		return Result{Class: TimedOut, Latency: lat, Detail: "finished after the deadline"}
	}
	class, detail := Classify(err)
	return Result{Class: class, Latency: lat, Detail: detail}
}

// settle ends a pinned lane's probe once its statement has returned: the connection
// is kept when the server answered (success, or a server error such as the KILL's
// "interrupted"), dropped after a driver error (lost, or given up at statementLimit).
func (p *Prober) settle(l *lane, err error) {
	var me *mysql.MySQLError
	if err != nil && !errors.Is(err, errReadOnlyGuard) && !errors.As(err, &me) {
		l.drop()
	}
	l.busy.Store(false)
}

// warmAdmin makes sure the KILL connection is established while the server still
// takes connections: a kill is needed most when it may no longer (ping errors are
// ignored; the kill retries).
func (p *Prober) warmAdmin(ctx context.Context) {
	if p.adminWarm.Load() {
		return
	}
	if err := p.admin.PingContext(ctx); err == nil {
		p.adminWarm.Store(true)
	}
}

// killRetry is the pause between two KILL QUERY of an abandoned statement that
// the server did not take.
const killRetry = time.Second

// killUntilEnded sends KILL QUERY for an abandoned statement, again every killRetry
// while the server does not take it, until the statement has ended (done), and
// returns the statement's error. A frozen server takes no KILL; once it runs again, a
// statement it then resumes may wait for good: a binlogged write waiting for a
// semi-sync acknowledgement no replica will send holds its commit lock, outlives the
// connection the driver gives up at statementLimit, and blocks SET GLOBAL read_only,
// so the node could never be fenced (the fence spares Baton's own connections).
func (p *Prober) killUntilEnded(ctx context.Context, what string, id int64, done <-chan error) error {
	for {
		if p.kill(ctx, what, id) {
			return <-done
		}
		select {
		case err := <-done:
			return err
		case <-time.After(killRetry):
		}
	}
}

// kill ends a statement the probe abandoned, and says whether the server took the
// KILL (or the thread had ended). Errors are logged, not returned: a frozen server
// will not take the KILL either, and an ended thread is "unknown".
func (p *Prober) kill(ctx context.Context, what string, id int64) bool {
	ctx, cancel := context.WithTimeout(ctx, p.killTimeout)
	defer cancel()
	start := time.Now()
	_, err := p.admin.ExecContext(ctx, fmt.Sprintf("KILL QUERY %d", id))
	var me *mysql.MySQLError
	switch {
	case err == nil:
		p.log.Debug("killed abandoned probe", zap.String("probe", what), zap.Int64("thread", id),
			zap.Duration("took", time.Since(start)))
	case errors.As(err, &me) && me.Number == 1094: // ER_NO_SUCH_THREAD: it ended on its own
	default:
		p.log.Info("could not kill abandoned probe", zap.String("probe", what), zap.Int64("thread", id), zap.Error(err))
		return false
	}
	return true
}

// connect gives the lane a connection: a new one for a fresh lane, otherwise the
// pinned one, made (and its thread id learned) when missing.
func (l *lane) connect(ctx context.Context) error {
	if l.conn != nil {
		return nil
	}
	c, err := l.db.Conn(ctx)
	if err != nil {
		return err
	}
	if l.fresh {
		l.conn = c
		return nil
	}
	var id int64
	if err := c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		c.Close()
		return err
	}
	l.conn = c
	l.id.Store(id)
	return nil
}

// release ends a probe that leaves the lane's connection usable (closing a fresh one).
func (l *lane) release() {
	if l.fresh {
		l.drop()
	}
	l.busy.Store(false)
}

// drop closes the lane's connection; the next probe makes a new one.
func (l *lane) drop() {
	if l.conn != nil {
		_ = l.conn.Close()
	}
	l.conn = nil
	l.id.Store(0)
}

// Round runs the probes that apply to role concurrently and returns them for Assess.
// It returns within the probe timeout plus a small grace even if a probe does not: a
// probe that has not returned by then counts as timed out and keeps its kind busy, so
// the next round reports it as still running instead of starting another.
func (p *Prober) Round(ctx context.Context, role Probes) Round {
	r := Round{At: time.Now(), Role: role, Timeout: p.timeout}
	type outcome struct {
		kind string
		res  Result
		rep  *Replication
	}
	// Buffered for every probe, so that one returning after the round is over does
	// not block its goroutine; only this goroutine writes into r.
	results := make(chan outcome, 3)
	pending := map[string]bool{}
	launch := func(kind string, probe func() outcome) {
		pending[kind] = true
		go func() { results <- probe() }()
	}
	launch("liveness", func() outcome { return outcome{kind: "liveness", res: p.Ping(ctx)} })
	switch role {
	case Primary:
		launch("write", func() outcome { return outcome{kind: "write", res: p.Write(ctx)} })
	case Replica:
		launch("storage", func() outcome { return outcome{kind: "storage", res: p.Storage(ctx)} })
		launch("replication", func() outcome {
			rep := p.Replication(ctx)
			return outcome{kind: "replication", res: rep.Probe, rep: rep}
		})
	}
	set := func(o outcome) {
		res := o.res
		switch o.kind {
		case "liveness":
			r.Ping = &res
		case "write":
			r.Write = &res
		case "storage":
			r.Storage = &res
		case "replication":
			if o.rep == nil {
				o.rep = &Replication{HeartbeatLag: -1, Probe: res}
			}
			r.Replication = o.rep
		}
	}
	guard := time.NewTimer(p.timeout + p.timeout/2 + 50*time.Millisecond)
	defer guard.Stop()
wait:
	for len(pending) > 0 {
		select {
		case o := <-results:
			delete(pending, o.kind)
			set(o)
		case <-guard.C:
			break wait
		}
	}
	for kind := range pending {
		late := time.Since(r.At)
		set(outcome{kind: kind, res: Result{Class: TimedOut, Latency: late,
			Detail: fmt.Sprintf("%s probe did not return in %s", kind, fmtLatency(late)), Overrun: OverrunNoReturn}})
	}
	return r
}
