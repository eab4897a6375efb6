package replication

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// DefaultTimeout bounds one call to a server when Config.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// DefaultHeartbeat is the replication heartbeat Follow asks for when
// Config.HeartbeatPeriod is zero: well under the slave_net_timeout Baton
// expects (4 s), so a silent source is noticed quickly.
const DefaultHeartbeat = time.Second

// maxKillReserve caps the part of a call's time kept back to kill a
// statement that overran.
const maxKillReserve = 500 * time.Millisecond

// Config configures an Instance.
type Config struct {
	// Name identifies the node in errors and logs. Required.
	Name string
	// Timeout bounds each call (Status, Fence, Promote, ...); never longer
	// than the caller's context. Zero means DefaultTimeout.
	Timeout time.Duration
	// Flavor, if set, skips detection.
	Flavor Flavor
	// HeartbeatPeriod is the MASTER/SOURCE_HEARTBEAT_PERIOD Follow sets.
	// Zero means DefaultHeartbeat.
	HeartbeatPeriod time.Duration
	// SemiSync says the cluster runs semi-synchronous replication: Promote
	// then turns the source side on before the server takes writes, and
	// Follow turns it off (a replica with log_slave_updates would otherwise
	// wait for acknowledgements from replicas it does not have) and the
	// replica side on before starting replication.
	SemiSync bool
	// Logger receives one line per change made to the server. Nil: no logs.
	Logger *zap.Logger
	// NoSpare: no spare connection is kept for kills (an Instance for one call,
	// whose pool ends with it). A long-lived Instance keeps one; Close ends it.
	NoSpare bool
}

// Instance is one MySQL or MariaDB server. It is safe for concurrent use.
//
// The *sql.DB should allow at least two open connections: a statement that
// overruns its deadline is killed through a second connection (the first is
// closed by then, so one also works, at the cost of a new connection).
type Instance struct {
	db        *sql.DB
	name      string
	timeout   time.Duration
	heartbeat time.Duration
	semiSync  bool
	log       *zap.Logger

	mu     sync.Mutex
	flavor Flavor

	spare spare
}

// spare is one connection an Instance keeps open for kills, taken once a call has
// connected and checked every spareCheckEvery. A server whose every connection is
// taken (error 1040: a busy primary whose writes hang on a full disk) still lets
// an administrator in once more, and Fence's SET GLOBAL read_only takes that one:
// the kills that release it, and the kill of the statement itself at its
// deadline, then had no connection at all (measured: read_only failed, and a
// client's write stayed hung on the old primary until its own deadline).
type spare struct {
	// lock: one user at a time; a channel, so that waiting for it keeps a deadline.
	lock    chan struct{}
	s       *serverConn
	checked time.Time
	closed  bool // Close was called, or Config.NoSpare: none is opened
}

// spareCheckEvery: how often the spare connection is pinged (a network cut or a
// server restart ends an idle connection; its session's wait_timeout is set to
// spareWaitTimeout, so the server's own, perhaps a few minutes, does not).
const (
	spareCheckEvery  = time.Minute
	spareWaitTimeout = 24 * time.Hour
	spareUpkeep      = 2 * time.Second // bounds opening or pinging it
)

// keepSpare opens the spare connection if there is none, or pings it if it was not
// checked for spareCheckEvery, in the background within spareUpkeep: a call never
// waits for it. It does nothing while the spare is in use. Best effort: without a
// spare, kills connect as before.
func (in *Instance) keepSpare() {
	sp := &in.spare
	select {
	case sp.lock <- struct{}{}:
	default:
		return
	}
	if sp.closed || sp.s != nil && time.Since(sp.checked) < spareCheckEvery {
		<-sp.lock
		return
	}
	go func() {
		defer func() { <-sp.lock }()
		ctx, cancel := context.WithTimeout(context.Background(), spareUpkeep)
		defer cancel()
		if sp.s != nil {
			if err := sp.s.conn.PingContext(ctx); err == nil {
				sp.checked = time.Now()
				return
			}
			sp.s.close()
			sp.s = nil
		}
		s, err := in.open(ctx)
		if err != nil {
			return
		}
		if _, err := s.conn.ExecContext(ctx, "SET SESSION wait_timeout = "+strconv.Itoa(int(spareWaitTimeout.Seconds()))); err != nil {
			s.close()
			return
		}
		sp.s, sp.checked = s, time.Now()
	}()
}

// Close ends the spare connection and keeps another from being opened; the pool,
// the caller's, stays open. It waits for an upkeep or a kill on the spare in
// flight (each bounded by its deadline). Calls may still be made.
func (in *Instance) Close() {
	sp := &in.spare
	sp.lock <- struct{}{}
	defer func() { <-sp.lock }()
	sp.closed = true
	if sp.s != nil {
		sp.s.close()
		sp.s = nil
	}
}

// errNoSpare: the server takes no new connection and the Instance holds no spare.
var errNoSpare = errors.New("no spare connection held")

// onSpare runs fn on the spare connection, within ctx: waiting for the spare keeps
// ctx's deadline, and a spare not used (the deadline passed meanwhile) is kept. A
// failure of fn that is not the server's answer (a broken connection, the deadline
// during a statement, which go-sql-driver meets by closing the connection) ends
// the spare; the next call opens another.
func (in *Instance) onSpare(ctx context.Context, fn func(ctx context.Context, s *serverConn) error) error {
	sp := &in.spare
	select {
	case sp.lock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for the spare connection: %w", ctx.Err())
	}
	defer func() { <-sp.lock }()
	if sp.s == nil {
		return errNoSpare
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := fn(ctx, sp.s)
	var me *mysql.MySQLError
	if err != nil && !errors.As(err, &me) {
		sp.s.close()
		sp.s = nil
	}
	return err
}

// orSpare runs fn on the spare connection when err (a failed call or connect)
// says the server takes no new connection for want of a free one, and returns
// what fn returned; otherwise, or when the Instance holds no spare, err.
func (in *Instance) orSpare(ctx context.Context, err error, fn func(ctx context.Context, s *serverConn) error) error {
	if !connLimit(err) {
		return err
	}
	if serr := in.onSpare(ctx, fn); !errors.Is(serr, errNoSpare) {
		return serr
	}
	return err
}

// connLimit says whether err is a server refusing a new connection for want of a
// free one: too many connections (1040), or too many for the account (1203, 1226).
func connLimit(err error) bool {
	return isErrno(err, 1040) || isErrno(err, 1203) || isErrno(err, 1226)
}

// New returns an Instance for the server behind db. It does not connect:
// the flavor is detected on the first call unless cfg.Flavor is set.
func New(db *sql.DB, cfg Config) (*Instance, error) {
	switch {
	case db == nil:
		return nil, errors.New("replication: db is nil")
	case cfg.Name == "":
		return nil, errors.New("replication: config Name is empty")
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("replication: config Timeout %s is negative", cfg.Timeout)
	case cfg.HeartbeatPeriod < 0:
		return nil, fmt.Errorf("replication: config HeartbeatPeriod %s is negative", cfg.HeartbeatPeriod)
	case cfg.HeartbeatPeriod > 0 && cfg.HeartbeatPeriod < time.Millisecond:
		return nil, fmt.Errorf("replication: config HeartbeatPeriod %s is below the servers' 1ms resolution", cfg.HeartbeatPeriod)
	case cfg.Flavor < FlavorUnknown || cfg.Flavor > FlavorMySQL:
		return nil, fmt.Errorf("replication: config Flavor %d is not a Flavor", int(cfg.Flavor))
	}
	in := &Instance{
		spare:     spare{lock: make(chan struct{}, 1), closed: cfg.NoSpare},
		db:        db,
		name:      cfg.Name,
		timeout:   cfg.Timeout,
		heartbeat: cfg.HeartbeatPeriod,
		semiSync:  cfg.SemiSync,
		log:       cfg.Logger,
		flavor:    cfg.Flavor,
	}
	if in.timeout == 0 {
		in.timeout = DefaultTimeout
	}
	if in.heartbeat == 0 {
		in.heartbeat = DefaultHeartbeat
	}
	if in.log == nil {
		in.log = zap.NewNop()
	}
	in.log = in.log.With(zap.String("node", cfg.Name))
	return in, nil
}

// Name is the node name from Config.
func (in *Instance) Name() string { return in.name }

// Flavor returns the server's flavor, asking the server the first time.
func (in *Instance) Flavor(ctx context.Context) (Flavor, error) {
	if f := in.knownFlavor(); f != FlavorUnknown {
		return f, nil
	}
	ctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	s, err := in.open(ctx)
	if err != nil {
		return FlavorUnknown, fmt.Errorf("detect flavor of %s: %w", in.name, err)
	}
	defer s.close()
	return s.flavor, nil
}

func (in *Instance) knownFlavor() Flavor {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.flavor
}

// serverConn is one dedicated connection for the duration of a call, with what
// is needed to kill its statement from elsewhere.
type serverConn struct {
	in                 *Instance
	conn               *sql.Conn
	id                 int64
	flavor             Flavor
	noBackslashEscapes bool
	broken             bool
}

// open takes a connection and learns its id, its sql_mode and (once) the
// server's flavor, in one round trip. ctx must carry the call's deadline.
func (in *Instance) open(ctx context.Context) (*serverConn, error) {
	c, err := in.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &serverConn{in: in, conn: c}
	var mode, version, comment string
	err = c.QueryRowContext(ctx, "SELECT CONNECTION_ID(), @@SESSION.sql_mode, @@GLOBAL.version, @@GLOBAL.version_comment").
		Scan(&s.id, &mode, &version, &comment)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("identify connection: %w", err)
	}
	s.noBackslashEscapes = strings.Contains(strings.ToUpper(mode), "NO_BACKSLASH_ESCAPES")
	in.mu.Lock()
	if in.flavor == FlavorUnknown {
		in.flavor = DetectFlavor(version, comment)
	}
	s.flavor = in.flavor
	in.mu.Unlock()
	return s, nil
}

func (s *serverConn) close() { s.conn.Close() }

// exec runs a statement that changes the server. It gets the call's time
// minus a reserve; if it has not finished by then, the driver closes the
// connection (go-sql-driver cancels that way: the server does not notice a
// closed socket while a statement waits on a lock or a full disk) and the
// statement is killed server-side through another connection, within the
// reserve, so that it cannot take effect later.
func (s *serverConn) exec(ctx context.Context, query string) error {
	return s.execAs(ctx, query, query)
}

// execAs is exec with its errors naming the statement as what (a long
// statement's text would drown them).
func (s *serverConn) execAs(ctx context.Context, what, query string) error {
	if s.broken {
		return fmt.Errorf("%s: connection already abandoned", what)
	}
	stmtCtx, cancel := context.WithDeadline(ctx, stmtDeadline(ctx))
	defer cancel()
	_, err := s.conn.ExecContext(stmtCtx, query)
	if err == nil {
		return nil
	}
	var me *mysql.MySQLError
	if stmtCtx.Err() == nil && errors.As(err, &me) {
		return fmt.Errorf("%s: %w", what, err) // the server answered: the statement ended
	}
	// It overran its deadline, or the connection broke (reset, the driver's socket
	// timeout) with the statement perhaps still running on the server: it is ended
	// there too.
	s.broken = true
	return abandoned(what, err, stmtCtx.Err(), s.kill(ctx))
}

// abandoned is the error of a statement given up (its deadline passed: late is
// that error; or, late nil, its connection broke with err) and killed server-side
// (kerr: the kill's failure, nil when the session was seen to end).
func abandoned(what string, err, late, kerr error) error {
	switch {
	case late != nil && kerr != nil:
		return fmt.Errorf("%s: did not finish in time (%w), and %w", what, late, kerr)
	case late != nil:
		return fmt.Errorf("%s: did not finish in time, killed server-side: %w", what, late)
	case kerr != nil:
		return fmt.Errorf("%s: the connection broke (%w), and %w", what, err, kerr)
	}
	return fmt.Errorf("%s: the connection broke, killed server-side: %w", what, err)
}

// stmtDeadline keeps back min(a quarter of the remaining time, 500ms) of
// ctx's deadline for a kill.
func stmtDeadline(ctx context.Context) time.Time {
	dl, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(DefaultTimeout)
	}
	reserve := min(time.Until(dl)/4, maxKillReserve)
	return dl.Add(-reserve)
}

// ErrSessionNotEnded: a session Baton abandoned (its statement overran, or its
// connection broke) was killed, but its end was not seen: what it was doing may
// still take effect.
var ErrSessionNotEnded = errors.New("replication: an abandoned session's end was not seen")

// kill ends this connection server-side, and waits until it has ended. It runs
// even when the caller's context was cancelled, but never past the call's
// deadline; an error wraps ErrSessionNotEnded.
func (s *serverConn) kill(ctx context.Context) error {
	s.conn.Close()
	return s.in.endSession(ctx, s.id)
}

// endSession kills session id, which its holder has closed, and waits until it
// has ended: as kill says.
func (in *Instance) endSession(ctx context.Context, id int64) error {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(maxKillReserve)
	}
	kctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	defer cancel()
	err := in.killConn(kctx, id)
	if err != nil {
		in.log.Warn("could not kill an overrunning statement", zap.Int64("connection", id), zap.Error(err))
		return fmt.Errorf("%w: %v", ErrSessionNotEnded, err)
	}
	in.log.Info("killed an overrunning statement", zap.Int64("connection", id))
	return nil
}

// killConn runs KILL CONNECTION id on a fresh connection and waits, within ctx,
// until the session is gone. An id that is already gone (error 1094) is not an
// error.
func (in *Instance) killConn(ctx context.Context, id int64) error {
	end := func(ctx context.Context, c *sql.Conn) error {
		if err := killOn(ctx, c, id); err != nil {
			return err
		}
		return awaitGone(ctx, c, id)
	}
	c, err := in.db.Conn(ctx)
	if err != nil {
		return in.orSpare(ctx, fmt.Errorf("connect to kill %d: %w", id, err), func(ctx context.Context, s *serverConn) error {
			return end(ctx, s.conn)
		})
	}
	defer c.Close()
	return end(ctx, c)
}

func killOn(ctx context.Context, c *sql.Conn, id int64) error {
	_, err := c.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(id, 10))
	if err != nil && !isErrno(err, 1094) {
		return fmt.Errorf("kill connection %d: %w", id, err)
	}
	return nil
}

// awaitGone waits, within ctx, until session id is gone from the server: KILL
// returns before the session ends, and a commit already under way would land
// after it.
func awaitGone(ctx context.Context, c *sql.Conn, id int64) error {
	for {
		var n int
		if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n); err != nil {
			return fmt.Errorf("connection %d killed, its end not seen: %w", id, err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("connection %d killed, still there: %w", id, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// queryRows reads a result set as column name -> value maps; SQL NULL cells
// are left out.
func (s *serverConn) queryRows(ctx context.Context, query string) ([]map[string]string, error) {
	rows, err := s.conn.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("%s: %w", query, err)
		}
		m := make(map[string]string, len(cols))
		for i, c := range cols {
			if vals[i].Valid {
				m[c] = vals[i].String
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	return out, nil
}

// queryKV reads a two-column (name, value) result such as SHOW VARIABLES,
// names lower-cased.
func (s *serverConn) queryKV(ctx context.Context, query string) (map[string]string, error) {
	rows, err := s.queryRows(ctx, query)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range rows {
		out[strings.ToLower(r["Variable_name"])] = r["Value"]
	}
	return out, nil
}

// status reads the server's Status on this session.
func (s *serverConn) status(ctx context.Context) (Status, error) {
	g, err := s.queryRows(ctx, globalsQuery(s.flavor))
	if err != nil {
		return Status{}, err
	}
	rows, err := s.queryRows(ctx, replicaStatusQuery(s.flavor))
	if err != nil {
		return Status{}, err
	}
	vars, err := s.queryKV(ctx, "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'")
	if err != nil {
		return Status{}, err
	}
	stat, err := s.queryKV(ctx, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'")
	if err != nil {
		return Status{}, err
	}
	return buildStatus(s.flavor, g, rows, vars, stat)
}

// buildStatus makes a Status from what the server answered: the row of
// globalsQuery, the rows of SHOW SLAVE/REPLICA STATUS, and the semi-sync
// variables and status counters (names lower-cased).
func buildStatus(f Flavor, globals, replicaRows []map[string]string, vars, stat map[string]string) (Status, error) {
	var st Status
	if len(globals) != 1 {
		return st, fmt.Errorf("server variables: %d rows", len(globals))
	}
	if err := applyGlobals(&st, f, globals[0]); err != nil {
		return st, err
	}
	row, err := pickReplicaRow(replicaRows)
	if err != nil {
		return st, err
	}
	st.Role = RolePrimary
	if row != nil {
		if err := applyReplicaRow(&st, f, row); err != nil {
			return st, fmt.Errorf("%s: %w", replicaStatusQuery(f), err)
		}
	}
	st.SemiSync = parseSemiSync(vars, stat)
	return st, nil
}

// isErrno reports whether err is a server error with that number.
func isErrno(err error, n uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == n
}
