package detector

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// Defaults of a Forecaster; docs/configuration.md ("forecast") explains them.
const (
	DefaultForecastInterval = 30 * time.Second
	DefaultForecastTimeout  = 2 * time.Second
	DefaultForecastWindow   = 15 * time.Minute
	// DefaultHistoryLimit is the history list length the purge lag is forecast
	// against when the server sets no innodb_max_purge_lag: far beyond what a server
	// whose purge keeps up ever holds, and short of the undo that fills a disk.
	DefaultHistoryLimit = 1_000_000
	// DefaultForecastTables is how many auto-increment keys are reported: those that
	// run out first.
	DefaultForecastTables = 5
)

// watchedKeysCap bounds the auto-increment keys a Forecaster keeps trends of (the
// fullest ones): memory stays bounded on a server with many tables.
const watchedKeysCap = 1000

// hotKeys is how many auto-increment keys are read at every read besides those
// reported: the fullest. The others are read at each full scan (keyScanEvery), which
// opens every table's definition and is what the forecasts cost the server.
const hotKeys = 20

// ForecasterConfig configures a Forecaster.
type ForecasterConfig struct {
	// DSN of the local server (go-sql-driver format); its timeouts are replaced.
	DSN string
	// Dial, when set, makes the connection (a server in another network namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Interval between two reads; Timeout bounds each read, every statement of it
	// and its connect included; Window is the span of the growth rates' fits
	// (estimated once half a window is in).
	Interval time.Duration
	Timeout  time.Duration
	Window   time.Duration
	// HistoryLimit is the history list length the purge lag is forecast against,
	// unless the server sets innodb_max_purge_lag (then that).
	HistoryLimit uint64
	// Tables is how many auto-increment keys are reported, those that run out first.
	Tables int
	// TablesHidden, when set, says why Baton's account cannot see the tables (a
	// missing privilege): auto-increment keys are not read, and their forecast is
	// unknown with this reason.
	TablesHidden string
	Logger       *zap.Logger
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

func (c ForecasterConfig) withDefaults() ForecasterConfig {
	c.Interval = cmp.Or(c.Interval, DefaultForecastInterval)
	c.Timeout = cmp.Or(c.Timeout, DefaultForecastTimeout)
	c.Window = cmp.Or(c.Window, DefaultForecastWindow)
	c.HistoryLimit = cmp.Or(c.HistoryLimit, DefaultHistoryLimit)
	c.Tables = cmp.Or(c.Tables, DefaultForecastTables)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate checks a configuration after defaults and names the first bad field.
func (c ForecasterConfig) Validate() error {
	c = c.withDefaults()
	if _, err := mysql.ParseDSN(c.DSN); err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	switch {
	case c.Interval < 0:
		return fmt.Errorf("forecast interval: %s, must be positive", c.Interval)
	case c.Timeout < 0:
		return fmt.Errorf("forecast timeout: %s, must be positive", c.Timeout)
	case c.Timeout >= c.Interval:
		return fmt.Errorf("forecast timeout: %s must be below the interval (%s): a read must be over before the next", c.Timeout, c.Interval)
	case c.Window < 2*c.Interval:
		return fmt.Errorf("forecast window: %s must span at least two intervals (%s): a rate needs two reads", c.Window, 2*c.Interval)
	case c.Tables < 0:
		return fmt.Errorf("forecast tables: %d, must not be negative", c.Tables)
	}
	return nil
}

// Forecaster reads, every Interval and within Timeout, what else than disk space
// can stop the local server's writes: its auto-increment keys, InnoDB's history list
// and oldest open transaction, its connections; and forecasts when each runs out.
// It is the detector's slow loop: its own goroutine and its own connection, never
// part of a probe round, so a slow read (a server with many tables) delays no probe
// and no failover. Its memory is bounded (watchedKeysCap trends of at most trendCap
// samples).
type Forecaster struct {
	cfg     ForecasterConfig
	log     *zap.Logger
	db      *sql.DB
	running atomic.Bool

	// Owned by Run's goroutine.
	trends  map[string]*Trend
	flavor  string // "mariadb" or "mysql", once read
	lastErr string
	// The auto-increment keys of the latest full scan (at most watchedKeysCap), by
	// name, the latest forecast of each, and when that scan was.
	keys     map[string]key
	keyFC    map[string]Forecast
	lastScan time.Time
	scans    atomic.Int64 // full scans made, for a tool that measures them

	mu     sync.Mutex
	latest []Forecast
}

// NewForecaster checks the configuration (naming the bad field) and opens the pool;
// no connection is made before Run.
func NewForecaster(cfg ForecasterConfig) (*Forecaster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new forecaster: %w", err)
	}
	cfg = cfg.withDefaults()
	c, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("new forecaster: dsn: %w", err)
	}
	c.Timeout = cfg.Timeout
	c.ReadTimeout = cfg.Timeout + time.Second // a backstop: the context ends a read
	c.WriteTimeout = cfg.Timeout + time.Second
	c.Logger = &mysql.NopLogger{}
	c.DBName = ""
	c.MultiStatements = false
	if cfg.Dial != nil {
		c.DialFunc = cfg.Dial
	}
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return nil, fmt.Errorf("new forecaster: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return &Forecaster{cfg: cfg, log: cfg.Logger, db: db, trends: map[string]*Trend{}, keys: map[string]key{}, keyFC: map[string]Forecast{}}, nil
}

// Forecasts returns the latest forecasts, nil before the first read.
func (f *Forecaster) Forecasts() []Forecast {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.latest)
}

// Run reads at once, then every Interval, until ctx ends; then it closes its
// connection and returns nil. It may run once.
func (f *Forecaster) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("forecaster: Run called twice")
	}
	defer f.db.Close()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		start := time.Now()
		out := f.read(ctx)
		if ctx.Err() != nil {
			return nil
		}
		f.mu.Lock()
		f.latest = out
		f.mu.Unlock()
		timer.Reset(max(0, f.cfg.Interval-time.Since(start)))
	}
}

// Scans is how many full scans of the auto-increment keys were made.
func (f *Forecaster) Scans() int64 { return f.scans.Load() }

// ReadOnce reads the server once, as Run does every Interval, and returns the
// forecasts; for a tool that measures what a read costs. Not while Run runs.
func (f *Forecaster) ReadOnce(ctx context.Context) []Forecast { return f.read(ctx) }

// read is one read of the server, within Timeout: every forecast, those that could
// not be read unknown with the reason.
func (f *Forecaster) read(ctx context.Context) []Forecast {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	now := f.cfg.Now()
	conn, err := f.db.Conn(ctx)
	if err != nil {
		return f.failed(fmt.Errorf("connect: %w", err))
	}
	defer conn.Close()
	var maxConns, maxPurgeLag uint64
	var version string
	if err := conn.QueryRowContext(ctx, "SELECT @@version, @@max_connections, @@innodb_max_purge_lag").Scan(&version, &maxConns, &maxPurgeLag); err != nil {
		return f.failed(fmt.Errorf("read max_connections: %w", err))
	}
	f.flavor = "mysql"
	if strings.Contains(strings.ToLower(version), "mariadb") {
		f.flavor = "mariadb"
	}
	out := []Forecast{f.connections(ctx, conn, now, maxConns), f.purgeLag(ctx, conn, now, maxPurgeLag)}
	out = append(out, f.autoIncrement(ctx, conn, now)...)
	f.note(out)
	return out
}

// failed is every forecast unknown, for a read that could not start.
func (f *Forecaster) failed(err error) []Forecast {
	out := []Forecast{
		{Resource: ResourceConnections, Name: "connections", Err: err.Error()},
		{Resource: ResourcePurgeLag, Name: "history list", Err: err.Error()},
		{Resource: ResourceAutoIncrement, Name: "*", Err: err.Error()},
	}
	f.note(out)
	return out
}

// note logs the forecasts' errors when they change, not at every read.
func (f *Forecaster) note(out []Forecast) {
	var errs []string
	for _, fc := range out {
		if fc.Err != "" {
			errs = append(errs, fc.Title()+": "+fc.Err)
		}
	}
	msg := strings.Join(errs, "; ")
	if msg == f.lastErr {
		return
	}
	if msg == "" {
		f.log.Info("forecasts read again")
	} else {
		f.log.Warn("forecasts not read", zap.String("why", msg))
	}
	f.lastErr = msg
}

// trend returns the trend kept under key, made on first use.
func (f *Forecaster) trend(key string, noisy bool) *Trend {
	t, ok := f.trends[key]
	if !ok {
		if noisy {
			t = NewNoisyTrend(f.cfg.Window, f.cfg.Window/2)
		} else {
			t = NewTrend(f.cfg.Window, f.cfg.Window/2)
		}
		f.trends[key] = t
	}
	return t
}

// forecast adds a reading to the trend under key and forecasts from it.
func (f *Forecaster) forecast(fc Forecast, key string, noisy bool, now time.Time, used, limit uint64, exhaustedAt float64) Forecast {
	t := f.trend(key, noisy)
	t.Add(now, limit-min(used, limit), limit)
	rate, ok := t.Rate()
	fc.Used, fc.Limit = float64(used), float64(limit)
	fc.Rate, fc.RateKnown = rate, ok
	fc.Outlook, fc.Left = Foresee(fc.Used, fc.Limit, rate, ok, exhaustedAt)
	return fc
}

// connections forecasts Threads_connected against max_connections.
func (f *Forecaster) connections(ctx context.Context, conn *sql.Conn, now time.Time, maxConns uint64) Forecast {
	fc := Forecast{Resource: ResourceConnections, Name: "connections"}
	var name string
	var n uint64
	if err := conn.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Threads_connected'").Scan(&name, &n); err != nil {
		fc.Err = fmt.Sprintf("read Threads_connected: %v", err)
		return fc
	}
	return f.forecast(fc, "connections", true, now, n, maxConns, 1)
}

// purgeLag forecasts the history list length against its limit, with the oldest
// open transaction (what holds purge back).
func (f *Forecaster) purgeLag(ctx context.Context, conn *sql.Conn, now time.Time, maxPurgeLag uint64) Forecast {
	fc := Forecast{Resource: ResourcePurgeLag, Name: "history list", Detail: "limit " + strconv.FormatUint(f.cfg.HistoryLimit, 10) + ", forecast.history_limit"}
	limit := f.cfg.HistoryLimit
	if maxPurgeLag > 0 {
		limit = maxPurgeLag
		fc.Detail = "limit " + strconv.FormatUint(maxPurgeLag, 10) + ", innodb_max_purge_lag: writes are delayed beyond it"
	}
	enabled := "ENABLED = 1" // MariaDB
	if f.flavor == "mysql" {
		enabled = "STATUS = 'enabled'"
	}
	var length uint64
	var on bool
	err := conn.QueryRowContext(ctx, "SELECT `COUNT`, "+enabled+" FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'").Scan(&length, &on)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		fc.Err = "the server has no trx_rseg_history_len metric"
		return fc
	case err != nil:
		fc.Err = fmt.Sprintf("read the history list length: %v", err)
		return fc
	case !on:
		fc.Err = "the trx_rseg_history_len metric is off: SET GLOBAL innodb_monitor_enable = 'trx_rseg_history_len'"
		return fc
	}
	oldest, err := oldestTrx(ctx, conn)
	if err != nil {
		fc.Err = err.Error()
		return fc
	}
	fc = f.forecast(fc, "purge_lag", false, now, length, limit, 1)
	fc.Oldest = oldest
	return fc
}

// oldestTrx reads the oldest open InnoDB transaction, nil when none is open.
func oldestTrx(ctx context.Context, conn *sql.Conn) (*Trx, error) {
	var t Trx
	var us int64
	err := conn.QueryRowContext(ctx, "SELECT t.trx_mysql_thread_id, TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)), "+
		"IFNULL(p.USER, ''), IFNULL(p.HOST, '') FROM information_schema.INNODB_TRX t "+
		"LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id ORDER BY t.trx_started LIMIT 1").Scan(&t.Thread, &us, &t.User, &t.Host)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read the oldest open transaction: %w", err)
	}
	t.Age = time.Duration(max(0, us)) * time.Microsecond
	return &t, nil
}

// autoIncrementSQL lists every auto-increment key with its next value. It opens
// every table's definition: the server stops it at the read's deadline.
const autoIncrementSQL = "SELECT t.TABLE_SCHEMA, t.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, t.AUTO_INCREMENT " +
	"FROM information_schema.TABLES t JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME " +
	"WHERE t.AUTO_INCREMENT IS NOT NULL AND c.EXTRA LIKE '%auto_increment%' " +
	"AND t.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"

// key is one auto-increment key as read.
type key struct {
	schema, table              string
	name, dataType, columnType string
	next                       uint64
	max                        uint64
}

// keyScanEvery is how often every auto-increment key is read (a full scan): a
// third of the window, so that every key's rate has samples enough, and never
// more often than the reads.
func (f *Forecaster) keyScanEvery() time.Duration {
	return max(f.cfg.Interval, f.cfg.Window/3)
}

// autoIncrement forecasts the auto-increment keys and reports the Tables that run
// out first. Every key is read at a full scan, every keyScanEvery; in between only
// the keys reported and the hotKeys fullest are read again, by name, which opens
// those tables alone; the others keep their forecast from their latest reading.
func (f *Forecaster) autoIncrement(ctx context.Context, conn *sql.Conn, now time.Time) []Forecast {
	if f.cfg.TablesHidden != "" {
		return []Forecast{{Resource: ResourceAutoIncrement, Name: "*", Err: f.cfg.TablesHidden}}
	}
	full := f.lastScan.IsZero() || now.Sub(f.lastScan) >= f.keyScanEvery()
	var keys []key
	var err error
	if full {
		keys, err = f.readKeys(ctx, conn)
	} else {
		keys, err = f.readSomeKeys(ctx, conn, f.hot())
	}
	if err != nil {
		return []Forecast{{Resource: ResourceAutoIncrement, Name: "*", Err: err.Error()}}
	}
	if full {
		// The fullest first; beyond the cap, keys are neither kept nor forecast.
		slices.SortFunc(keys, func(a, b key) int {
			return cmp.Compare(float64(b.next)/float64(b.max), float64(a.next)/float64(a.max))
		})
		if len(keys) > watchedKeysCap {
			keys = keys[:watchedKeysCap]
		}
		clear(f.keys)
		f.lastScan = now
		f.scans.Add(1)
	}
	read := map[string]bool{}
	for _, k := range keys {
		read[k.name] = true
		f.keys[k.name] = k
		fc := Forecast{Resource: ResourceAutoIncrement, Name: k.name, Detail: k.columnType}
		// Exhausted once the next value is the column's largest: at most that one is
		// left, and the insert after it fails.
		f.keyFC[k.name] = f.forecast(fc, "auto_increment:"+k.name, false, now, k.next-1, k.max, 2)
	}
	for name := range f.keyFC {
		if _, ok := f.keys[name]; !ok {
			delete(f.keyFC, name) // a table dropped, or no longer among the fullest
		}
	}
	for id := range f.trends {
		if name, ok := strings.CutPrefix(id, "auto_increment:"); ok {
			if _, kept := f.keys[name]; !kept {
				delete(f.trends, id)
			}
		}
	}
	return f.soonest()
}

// soonest is the latest forecasts of the keys, those that run out first first, at
// most Tables of them.
func (f *Forecaster) soonest() []Forecast {
	out := make([]Forecast, 0, len(f.keyFC))
	for _, fc := range f.keyFC {
		out = append(out, fc)
	}
	slices.SortFunc(out, func(a, b Forecast) int {
		switch {
		case Sooner(a, b):
			return -1
		case Sooner(b, a):
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out[:min(len(out), f.cfg.Tables)]
}

// hot lists the keys read at every read: those that run out first (the reported
// ones, by their latest forecasts) and the hotKeys fullest.
func (f *Forecaster) hot() []key {
	seen := map[string]bool{}
	var out []key
	add := func(name string) {
		if k, ok := f.keys[name]; ok && !seen[name] {
			seen[name] = true
			out = append(out, k)
		}
	}
	for _, fc := range f.soonest() {
		add(fc.Name)
	}
	fullest := make([]key, 0, len(f.keys))
	for _, k := range f.keys {
		fullest = append(fullest, k)
	}
	slices.SortFunc(fullest, func(a, b key) int {
		return cmp.Or(cmp.Compare(float64(b.next)/float64(b.max), float64(a.next)/float64(a.max)), cmp.Compare(a.name, b.name))
	})
	for _, k := range fullest[:min(len(fullest), hotKeys)] {
		add(k.name)
	}
	return out
}

// readSomeKeys reads the next value of each of keys again, by schema and table
// name (the server opens those tables alone), within what is left of the read's
// deadline. A key whose table is gone is not returned.
func (f *Forecaster) readSomeKeys(ctx context.Context, conn *sql.Conn, keys []key) ([]key, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	left, err := timeLeft(ctx)
	if err != nil {
		return nil, err
	}
	parts := make([]string, len(keys))
	args := make([]any, 0, 2*len(keys))
	byTable := map[string]key{}
	for i, k := range keys {
		parts[i] = "SELECT TABLE_SCHEMA, TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?"
		args = append(args, k.schema, k.table)
		byTable[k.schema+"."+k.table] = k
	}
	q, err := f.limited(ctx, conn, strings.Join(parts, " UNION ALL "), left)
	if err != nil {
		return nil, err
	}
	rows, err := conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read the auto-increment keys: %w", err)
	}
	defer rows.Close()
	var out []key
	for rows.Next() {
		var schema, table string
		var next sql.Null[uint64] // BIGINT UNSIGNED goes beyond int64
		if err := rows.Scan(&schema, &table, &next); err != nil {
			return nil, fmt.Errorf("read the auto-increment keys: %w", err)
		}
		k, ok := byTable[schema+"."+table]
		if !ok || !next.Valid || next.V == 0 {
			continue
		}
		k.next = next.V
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the auto-increment keys: %w", err)
	}
	return out, nil
}

// readKeys reads every auto-increment key, within what is left of the read's
// deadline, enforced by the server too.
func (f *Forecaster) readKeys(ctx context.Context, conn *sql.Conn) ([]key, error) {
	left, err := timeLeft(ctx)
	if err != nil {
		return nil, err
	}
	q, err := f.limited(ctx, conn, autoIncrementSQL, left)
	if err != nil {
		return nil, err
	}
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read the auto-increment keys: %w", err)
	}
	defer rows.Close()
	var keys []key
	for rows.Next() {
		var schema, table, column string
		var k key
		if err := rows.Scan(&schema, &table, &column, &k.dataType, &k.columnType, &k.next); err != nil {
			return nil, fmt.Errorf("read the auto-increment keys: %w", err)
		}
		var ok bool
		if k.max, ok = IntegerMax(k.dataType, k.columnType); !ok || k.next == 0 {
			continue // a float key, say: nothing to forecast against
		}
		k.schema, k.table, k.name = schema, table, schema+"."+table+"."+column
		k.columnType = columnTypeName(k.dataType, k.columnType)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the auto-increment keys: %w", err)
	}
	return keys, nil
}

// timeLeft is what is left of the read's deadline (a second without one), for the
// server to stop a query at; an error when nothing is.
func timeLeft(ctx context.Context) (time.Duration, error) {
	left := time.Second
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	if left <= 10*time.Millisecond {
		return 0, errors.New("read the auto-increment keys: no time left in the read")
	}
	return left, nil
}

// limited is query (a SELECT, or SELECTs joined by UNION ALL) stopped by the server
// too after left: MariaDB's max_statement_time, MySQL's MAX_EXECUTION_TIME hint (on
// its first SELECT, which bounds the statement). On MySQL it also makes the session
// read AUTO_INCREMENT afresh (MySQL caches it in the data dictionary for a day).
func (f *Forecaster) limited(ctx context.Context, conn *sql.Conn, query string, left time.Duration) (string, error) {
	if f.flavor != "mysql" {
		return fmt.Sprintf("SET STATEMENT max_statement_time = %.3f FOR %s", left.Seconds(), query), nil
	}
	if _, err := conn.ExecContext(ctx, "SET SESSION information_schema_stats_expiry = 0"); err != nil {
		return "", fmt.Errorf("read the auto-increment keys: %w", err)
	}
	return strings.Replace(query, "SELECT ", fmt.Sprintf("SELECT /*+ MAX_EXECUTION_TIME(%d) */ ", left.Milliseconds()), 1), nil
}

// IntegerMax is the largest value of an integer column type, from the
// information_schema's DATA_TYPE ("int") and COLUMN_TYPE ("int(10) unsigned");
// false for a type that is not an integer.
func IntegerMax(dataType, columnType string) (uint64, bool) {
	bits := map[string]uint{"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}[strings.ToLower(dataType)]
	if bits == 0 {
		return 0, false
	}
	if strings.Contains(strings.ToLower(columnType), "unsigned") {
		if bits == 64 {
			return ^uint64(0), true
		}
		return 1<<bits - 1, true
	}
	return 1<<(bits-1) - 1, true
}

// columnTypeName is a column's type without its display width: "int unsigned".
func columnTypeName(dataType, columnType string) string {
	name := strings.ToLower(dataType)
	if strings.Contains(strings.ToLower(columnType), "unsigned") {
		name += " unsigned"
	}
	return name
}
