package sandbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// A workload is what an application sees of a failover: a Writer inserts numbered
// rows through one address (the virtual IP, or whichever server takes writes) from
// the client namespace and remembers which were acknowledged; a SplitBrainMonitor
// writes to every server directly, as an application that bypasses the virtual IP
// would, and records when each accepted a write. Both use the application's account,
// to which read_only applies.

// Ack is one acknowledged write: it committed between Sent and At.
type Ack struct {
	Seq      int64
	ServerID uint32
	Sent     time.Time // the write was sent
	At       time.Time // its acknowledgement arrived
}

// Writer inserts rows one after another, each under a deadline, and records the
// acknowledged ones.
type Writer struct {
	c        *Cluster
	run      string
	addrs    []string
	interval time.Duration
	timeout  time.Duration

	mu       sync.Mutex
	acks     []Ack
	failures int
	lastErr  string
	refusals []time.Time
	done     chan struct{}
	cancel   context.CancelFunc
}

// NewWriter returns a writer to the cluster's virtual IP when it has one, else to
// whichever node accepts writes (a refused or failed write moves it to the next).
// interval is the pause between writes; timeout each write's deadline.
func (c *Cluster) NewWriter(interval, timeout time.Duration) *Writer {
	var addrs []string
	if c.VIP != "" {
		ip, _, _ := net.ParseCIDR(c.VIP)
		addrs = []string{net.JoinHostPort(ip.String(), "3306")}
	} else {
		for _, n := range c.Nodes {
			addrs = append(addrs, net.JoinHostPort(n.IP, strconv.Itoa(n.Port)))
		}
	}
	return &Writer{c: c, run: secret()[:16], addrs: addrs, interval: interval, timeout: timeout}
}

// appDB opens the application's pool to addr from the client namespace.
func (c *Cluster) appDB(addr string, timeout time.Duration) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = c.AppUser, c.AppPassword
	cfg.Net, cfg.Addr = "tcp", addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = timeout, 2*timeout, 2*timeout
	cfg.DialFunc = DialContext(c.ClientNetNS)
	tc, err := c.MySQLTLS()
	if err != nil {
		return nil, err
	}
	cfg.TLS = tc // nil in a plain-text sandbox
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return db, nil
}

// Start starts writing until Stop.
func (w *Writer) Start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go w.loop(ctx)
}

// Stop stops writing and waits for the last write to end.
func (w *Writer) Stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
}

func (w *Writer) loop(ctx context.Context) {
	defer close(w.done)
	dbs := make([]*sql.DB, len(w.addrs))
	defer func() {
		for _, db := range dbs {
			if db != nil {
				db.Close()
			}
		}
	}()
	cur := 0
	for seq := int64(1); ctx.Err() == nil; seq++ {
		if dbs[cur] == nil {
			db, err := w.c.appDB(w.addrs[cur], w.timeout)
			if err != nil {
				w.fail(err)
				return
			}
			dbs[cur] = db
		}
		sent := time.Now()
		wctx, cancel := context.WithTimeout(ctx, w.timeout)
		// The server that acknowledged is what the INSERT itself returns: a separate
		// SELECT @@server_id could run on another connection, hence (through a load
		// balancer) on another server, when the pool replaces a broken one in between.
		var sid uint32
		err := dbs[cur].QueryRowContext(wctx, "INSERT INTO sandbox.writes(run, seq, server_id, at) VALUES (?, ?, @@server_id, NOW(6)) RETURNING server_id", w.run, seq).Scan(&sid)
		cancel()
		if err == nil {
			w.mu.Lock()
			w.acks = append(w.acks, Ack{Seq: seq, ServerID: sid, Sent: sent, At: time.Now()})
			w.mu.Unlock()
		} else if ctx.Err() == nil {
			w.fail(err)
			// As an application does: a connection the server answered on (a refusal:
			// read_only) is kept; a broken or hung one is dropped. Without a virtual IP
			// the next server is tried.
			var me *mysql.MySQLError
			if errors.As(err, &me) {
				w.mu.Lock()
				w.refusals = append(w.refusals, time.Now())
				w.mu.Unlock()
			} else {
				dbs[cur].Close()
				dbs[cur] = nil
			}
			cur = (cur + 1) % len(w.addrs)
		}
		select {
		case <-ctx.Done():
		case <-time.After(w.interval):
		}
	}
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures++
	w.lastErr = err.Error()
}

// Acks returns the acknowledged writes so far, in order.
func (w *Writer) Acks() []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Ack(nil), w.acks...)
}

// Failures is how many writes failed, and the last error.
func (w *Writer) Failures() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failures, w.lastErr
}

// RefusedBetween is how many writes a server refused (answered with an error, e.g.
// read_only: a fenced primary) between from and to; writes that timed out or lost
// their connection are not refusals.
func (w *Writer) RefusedBetween(from, to time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, at := range w.refusals {
		if !at.Before(from) && !at.After(to) {
			n++
		}
	}
	return n
}

// FirstAckAfter returns the first write acknowledged at or after t by a server other
// than notServer (0: any server).
func (w *Writer) FirstAckAfter(t time.Time, notServer uint32) (Ack, bool) {
	for _, a := range w.Acks() {
		if !a.At.Before(t) && a.ServerID != notServer {
			return a, true
		}
	}
	return Ack{}, false
}

// MaxGap is the longest time between two acknowledged writes.
func (w *Writer) MaxGap() time.Duration {
	acks := w.Acks()
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		gap = max(gap, acks[i].At.Sub(acks[i-1].At))
	}
	return gap
}

// Lost returns the acknowledged writes that the server behind db does not have. The
// acknowledgements are taken before the rows are read, so a writer still running
// cannot make a write acknowledged in between look lost.
func (w *Writer) Lost(ctx context.Context, db *sql.DB) ([]int64, error) {
	acks := w.Acks()
	rows, err := db.QueryContext(ctx, "SELECT seq FROM sandbox.writes WHERE run = ?", w.run)
	if err != nil {
		return nil, fmt.Errorf("read the writer's rows: %w", err)
	}
	defer rows.Close()
	have := map[int64]bool{}
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		have[s] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var lost []int64
	for _, a := range acks {
		if !have[a.Seq] {
			lost = append(lost, a.Seq)
		}
	}
	return lost, nil
}

// SplitBrainMonitor writes to every node directly every Interval and records when
// each accepted a write.
type SplitBrainMonitor struct {
	c        *Cluster
	interval time.Duration
	mu       sync.Mutex
	accepted map[string][]time.Time
	accepts  []Accept
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// NewSplitBrainMonitor returns a monitor that tries a write on every node each
// interval.
func (c *Cluster) NewSplitBrainMonitor(interval time.Duration) *SplitBrainMonitor {
	return &SplitBrainMonitor{c: c, interval: interval, accepted: map[string][]time.Time{}}
}

// Start starts the monitor until Stop.
func (m *SplitBrainMonitor) Start(ctx context.Context) {
	ctx, m.cancel = context.WithCancel(ctx)
	for _, n := range m.c.Nodes {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.watch(ctx, n)
		}()
	}
}

// Stop stops the monitor.
func (m *SplitBrainMonitor) Stop() {
	if m.cancel != nil {
		m.cancel()
		m.wg.Wait()
	}
}

func (m *SplitBrainMonitor) watch(ctx context.Context, n Node) {
	timeout := 300 * time.Millisecond
	addr := net.JoinHostPort(n.IP, strconv.Itoa(n.Port))
	var db *sql.DB
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		if db == nil {
			var err error
			if db, err = m.c.appDB(addr, timeout); err != nil {
				return
			}
		}
		sent := time.Now()
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := db.ExecContext(wctx, "INSERT INTO sandbox.split(node, at, n) VALUES (?, NOW(6), 1) ON DUPLICATE KEY UPDATE at = NOW(6), n = n + 1", n.Name)
		cancel()
		if err == nil {
			m.mu.Lock()
			now := time.Now()
			m.accepted[n.Name] = append(m.accepted[n.Name], now)
			m.accepts = append(m.accepts, Accept{Node: n.Name, Sent: sent, At: now})
			m.mu.Unlock()
		} else {
			var me *mysql.MySQLError
			if !errors.As(err, &me) { // a refusal keeps the connection; anything else drops it
				db.Close()
				db = nil
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Accept is one write a server accepted from the monitor: it committed between Sent
// and At.
type Accept struct {
	Node string
	Sent time.Time
	At   time.Time
}

// Accepts returns every write accepted so far, in the order the acknowledgements
// arrived.
func (m *SplitBrainMonitor) Accepts() []Accept {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Accept(nil), m.accepts...)
}

// SplitBrain is the total time during which two or more servers accepted writes: the
// run is cut into slots of twice the interval, and a slot in which two servers
// accepted a write counts whole.
func (m *SplitBrainMonitor) SplitBrain() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	slot := 2 * m.interval
	writers := map[int64]map[string]bool{}
	for node, ts := range m.accepted {
		for _, t := range ts {
			k := t.UnixNano() / int64(slot)
			if writers[k] == nil {
				writers[k] = map[string]bool{}
			}
			writers[k][node] = true
		}
	}
	var n int64
	for _, w := range writers {
		if len(w) > 1 {
			n++
		}
	}
	return time.Duration(n) * slot
}

// Writable lists the nodes that accepted a write at or after t.
func (m *SplitBrainMonitor) Writable(t time.Time) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for node, ts := range m.accepted {
		if len(ts) > 0 && !ts[len(ts)-1].Before(t) {
			out = append(out, node)
		}
	}
	sort.Strings(out)
	return out
}
