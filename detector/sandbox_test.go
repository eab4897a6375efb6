//go:build integration

package detector_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// watched is a running detector and every verdict change it made.
type watched struct {
	d      *detector.Detector
	mu     sync.Mutex
	seen   []detector.Change
	notify chan struct{}
	stop   func()
}

func watch(t *testing.T, cfg detector.Config) *watched {
	t.Helper()
	w := &watched{notify: make(chan struct{}, 1)}
	cfg.OnChange = func(ch detector.Change, _ detector.Report) {
		w.mu.Lock()
		w.seen = append(w.seen, ch)
		w.mu.Unlock()
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	d, err := detector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("detector run: %v", err)
			}
		})
	}
	t.Cleanup(w.stop)
	return w
}

// mark returns how many changes have been seen, to look only at later ones.
func (w *watched) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// since returns the changes after a mark.
func (w *watched) since(mark int) []detector.Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]detector.Change(nil), w.seen[mark:]...)
}

// await waits for a change to want after mark and returns it with the time it came.
func (w *watched) await(t *testing.T, mark int, want detector.Verdict, within time.Duration) detector.Change {
	t.Helper()
	deadline := time.After(within)
	for {
		for _, ch := range w.since(mark) {
			if ch.To == want {
				return ch
			}
		}
		select {
		case <-w.notify:
		case <-deadline:
			rep := w.d.Report()
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			t.Fatalf("no %s verdict within %s; changes %s; now %s (%s), latest round %s (%s)",
				want, within, describe(w.since(mark)), rep.Verdict, rep.Reason, rep.RoundVerdict, rep.RoundReason)
		}
	}
}

func describe(chs []detector.Change) string {
	var parts []string
	for _, c := range chs {
		parts = append(parts, fmt.Sprintf("%s->%s (%s)", c.From, c.To, c.Reason))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func fault(t *testing.T, c *sandbox.Cluster, node string, f sandbox.Fault) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.Fault(ctx, node, f); err != nil {
		t.Fatalf("fault %s on %s: %v", f, node, err)
	}
	return time.Now()
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func gtidPos(t *testing.T, db *sql.DB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var pos string
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	return pos
}

// staleProbes counts the server threads running a probe statement for longer than a
// probe lives (300 ms) plus its kill (300 ms) and some slack: hung probes that were
// not killed. It describes every probe thread, for the failure message.
func staleProbes(t *testing.T, db *sql.DB) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT ID, TIME_MS, STATE FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO baton.%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	var desc []string
	for rows.Next() {
		var id int64
		var ms float64
		var state sql.NullString
		if err := rows.Scan(&id, &ms, &state); err != nil {
			t.Fatal(err)
		}
		if ms > 1500 {
			n++
		}
		desc = append(desc, fmt.Sprintf("thread %d %q for %.0fms", id, state.String, ms))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n, strings.Join(desc, ", ")
}

// TestFaults runs a primary detector (over TCP from the client namespace, as a remote
// observer would) and a replica detector (over the unix socket, with the disks) on one
// cluster, and walks the primary through the sandbox's faults, each undone before
// the next.
func TestFaults(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "det-faults", Nodes: 2})
	p := sandboxtest.RootDB(t, c, "db1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := detector.Bootstrap(ctx, p); err != nil {
		t.Fatal(err)
	}
	pos := gtidPos(t, p)
	if err := detector.Bootstrap(ctx, p); err != nil {
		t.Fatal(err)
	}
	if again := gtidPos(t, p); again != pos {
		t.Fatalf("a second bootstrap wrote to the binlog: %s -> %s", pos, again)
	}
	r := sandboxtest.RootDB(t, c, "db2")
	var res int
	if err := r.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 5)", gtidPos(t, p)).Scan(&res); err != nil || res != 0 {
		t.Fatalf("replica did not get the baton schema: %d %v", res, err)
	}
	if err := detector.Bootstrap(ctx, r); err != nil {
		t.Fatalf("bootstrap on a replica that has the tables: %v", err)
	}

	db1, _ := c.Node("db1")
	tcp, err := c.TCPDSN("db1")
	if err != nil {
		t.Fatal(err)
	}
	prim := watch(t, detector.Config{
		DSN: tcp, Node: "observer", Role: detector.Primary,
		Dial: sandbox.DialContext(c.ClientNetNS), Datadir: db1.Datadir,
		// The sandbox's disks are 256 MB: a restart allocating its files looks like
		// filling within the default horizon there.
		DiskHorizon: 20 * time.Second,
	})
	sock2, err := c.SocketDSN("db2")
	if err != nil {
		t.Fatal(err)
	}
	db2, _ := c.Node("db2")
	repl := watch(t, detector.Config{DSN: sock2, Node: "db2", Role: detector.Replica, Datadir: db2.Datadir, DiskHorizon: 20 * time.Second})

	prim.await(t, 0, detector.Healthy, 3*time.Second)
	repl.await(t, 0, detector.Healthy, 3*time.Second)

	t.Run("replica reports heartbeat lag", func(t *testing.T) {
		time.Sleep(time.Second)
		rep := repl.d.Report()
		if rep.Replication == nil || !rep.Replication.Configured || rep.Replication.IORunning != "Yes" {
			t.Fatalf("replication state %+v", rep.Replication)
		}
		// A few hundred ms on an idle machine; the bound only catches a lag measured
		// wrong (clocks, time zones: hours, or negative), not a slow machine.
		if lag := rep.Replication.HeartbeatLag; lag < 0 || lag > 10*time.Second {
			t.Fatalf("heartbeat lag %s on a healthy replica fed every 500ms", lag)
		}
		t.Logf("heartbeat lag %s", rep.Replication.HeartbeatLag)
		if rep.Storage == nil || rep.Storage.Class != detector.OK || rep.Write != nil {
			t.Fatalf("replica probes: storage %+v write %+v", rep.Storage, rep.Write)
		}
		if len(rep.Disks) != 1 || rep.Disks[0].Total == 0 {
			t.Fatalf("replica disks %+v", rep.Disks)
		}
	})

	t.Run("storage probe makes no GTID on the replica", func(t *testing.T) {
		time.Sleep(1500 * time.Millisecond)
		// The replica's binlog only holds the primary's transactions (server_id 1),
		// never one of its own (server_id 2).
		if pos := gtidPos(t, r); strings.Contains(pos, "-2-") {
			t.Fatalf("replica made a GTID of its own: %s", pos)
		}
	})

	t.Run("the documented grants are enough", func(t *testing.T) {
		// docs/detector.md: the grants of a probe user. Created on the primary, so the
		// replica gets the users through replication.
		for _, q := range []string{
			"CREATE USER 'probe'@'%' IDENTIFIED BY 'pw'",
			"GRANT SELECT, INSERT, UPDATE ON baton.* TO 'probe'@'%'",
			"GRANT BINLOG ADMIN, READ_ONLY ADMIN, SLAVE MONITOR ON *.* TO 'probe'@'%'",
			// The same without READ_ONLY ADMIN, which SUPER no longer implies in 10.11.
			"CREATE USER 'probe_nro'@'%' IDENTIFIED BY 'pw'",
			"GRANT SELECT, INSERT, UPDATE ON baton.* TO 'probe_nro'@'%'",
			"GRANT BINLOG ADMIN, SLAVE MONITOR, SUPER ON *.* TO 'probe_nro'@'%'",
		} {
			exec(t, p, q)
		}
		var res int
		if err := r.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 5)", gtidPos(t, p)).Scan(&res); err != nil || res != 0 {
			t.Fatalf("replica did not get the users: %d %v", res, err)
		}
		dsn := func(user, node string) string {
			n, _ := c.Node(node)
			return user + ":pw@unix(" + n.Socket + ")/"
		}
		pw := watch(t, detector.Config{DSN: dsn("probe", "db1"), Node: "db1", Role: detector.Primary})
		rw := watch(t, detector.Config{DSN: dsn("probe", "db2"), Node: "db2", Role: detector.Replica})
		nro := watch(t, detector.Config{DSN: dsn("probe_nro", "db2"), Node: "db2", Role: detector.Replica})
		pw.await(t, 0, detector.Healthy, 3*time.Second)
		rw.await(t, 0, detector.Healthy, 3*time.Second)
		ch := nro.await(t, 0, detector.Misconfigured, 4*time.Second)
		if !strings.Contains(ch.Reason, "READ_ONLY ADMIN") {
			t.Fatalf("without READ_ONLY ADMIN: %q", ch.Reason)
		}
		pw.stop()
		rw.stop()
		nro.stop()
	})

	t.Run("read_only set by hand", func(t *testing.T) {
		m := prim.mark()
		exec(t, p, "SET GLOBAL read_only = ON")
		before := gtidPos(t, p)
		ch := prim.await(t, m, detector.ReadOnly, 3*time.Second)
		if !strings.Contains(ch.Reason, "read_only") {
			t.Errorf("reason %q", ch.Reason)
		}
		// The detector's user has every privilege, read_only does not stop it: the
		// probe's own guard must.
		if after := gtidPos(t, p); after != before {
			t.Fatalf("write probe wrote on a read_only server: %s -> %s", before, after)
		}
		m = prim.mark()
		exec(t, p, "SET GLOBAL read_only = OFF")
		prim.await(t, m, detector.Healthy, 4*time.Second)
		for _, ch := range prim.since(0) {
			if ch.To.Failed() {
				t.Fatalf("read_only made a failure verdict: %+v", ch)
			}
		}
	})

	t.Run("freeze-writes", func(t *testing.T) {
		m := prim.mark()
		at := fault(t, c, "db1", sandbox.FreezeWrites)
		ch := prim.await(t, m, detector.Unwritable, 4*time.Second)
		t.Logf("unwritable %s after the fault: %s", ch.At.Sub(at).Round(time.Millisecond), ch.Reason)
		hung := strings.Contains(ch.Reason, "write probe did not finish in 300ms") || strings.Contains(ch.Reason, "write probe still running from the previous round")
		if !hung || !strings.Contains(ch.Reason, "the commit waits for a lock (server state") {
			t.Errorf("reason %q", ch.Reason)
		}
		// Hung probes are killed: none lives on.
		for i := 0; i < 8; i++ {
			time.Sleep(250 * time.Millisecond)
			if n, desc := staleProbes(t, p); n > 0 {
				t.Fatalf("%d probe statements older than 1.5s on the server (%s): hung probes pile up", n, desc)
			}
		}
		// A peer confirming the verdict with one round of its own, over TCP.
		peer, err := detector.NewProber(detector.ProberConfig{DSN: tcp, Node: "db2", Timeout: 300 * time.Millisecond,
			Dial: sandbox.DialContext(c.ClientNetNS)})
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		round := peer.Round(context.Background(), detector.Primary)
		if v, reason := detector.Assess(round); v != detector.Unwritable || round.Ping.Class != detector.OK {
			t.Fatalf("one round from a peer: %s (%s), ping %+v", v, reason, round.Ping)
		}
		m = prim.mark()
		fault(t, c, "db1", sandbox.ThawWrites)
		prim.await(t, m, detector.Healthy, 4*time.Second)
	})

	// A primary whose commits wait for a semi-sync acknowledgement nobody sends (no
	// semi-sync replica: here db2's replica side is off) is unwritable, and the
	// reason names the acknowledgement, read from the server, not a disk or a lock.
	t.Run("commits waiting for a semi-sync ACK", func(t *testing.T) {
		m := prim.mark()
		exec(t, p, "SET GLOBAL rpl_semi_sync_master_timeout = 60000")
		exec(t, p, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
		defer exec(t, p, "SET GLOBAL rpl_semi_sync_master_timeout = 10000")
		ch := prim.await(t, m, detector.Unwritable, 4*time.Second)
		if !strings.Contains(ch.Reason, "waits for a semi-sync acknowledgement") || !strings.Contains(ch.Reason, "Waiting for semi-sync ACK") {
			t.Errorf("reason %q, want the semi-sync acknowledgement named", ch.Reason)
		}
		m = prim.mark()
		// Turning the source side off releases the waiting commits.
		exec(t, p, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
		prim.await(t, m, detector.Healthy, 6*time.Second)
	})

	t.Run("exhaust-connections is overloaded, not unreachable", func(t *testing.T) {
		m := prim.mark()
		fault(t, c, "db1", sandbox.ExhaustConnections)
		prim.await(t, m, detector.Overloaded, 4*time.Second)
		time.Sleep(time.Second)
		m2 := prim.mark()
		fault(t, c, "db1", sandbox.ReleaseConnections)
		prim.await(t, m2, detector.Healthy, 5*time.Second)
		for _, ch := range prim.since(m) {
			if ch.To.Failed() {
				t.Fatalf("too many connections made a failure verdict: %+v", ch)
			}
		}
	})

	t.Run("stop", func(t *testing.T) {
		m := prim.mark()
		at := fault(t, c, "db1", sandbox.Stop)
		ch := prim.await(t, m, detector.Unreachable, 4*time.Second)
		t.Logf("unreachable %s after the fault: %s", ch.At.Sub(at).Round(time.Millisecond), ch.Reason)
		m = prim.mark()
		fault(t, c, "db1", sandbox.Cont)
		prim.await(t, m, detector.Healthy, 5*time.Second)
	})

	t.Run("cut-network", func(t *testing.T) {
		m := prim.mark()
		at := fault(t, c, "db1", sandbox.CutNetwork)
		ch := prim.await(t, m, detector.Unreachable, 4*time.Second)
		t.Logf("unreachable %s after the fault: %s", ch.At.Sub(at).Round(time.Millisecond), ch.Reason)
		m = prim.mark()
		fault(t, c, "db1", sandbox.HealNetwork)
		prim.await(t, m, detector.Healthy, 5*time.Second)
	})

	// A busy application's writes hang (on a full disk, behind a global read lock) and
	// pile up until the server refuses new connections: the write probe must still see
	// that writes hang, on its own established connection, rather than turn the
	// verdict into overloaded.
	for _, tc := range []struct {
		fault sandbox.Fault
		heal  []sandbox.Fault
	}{
		{sandbox.FreezeWrites, []sandbox.Fault{sandbox.ReleaseConnections, sandbox.ThawWrites}},
		{sandbox.DiskFull, []sandbox.Fault{sandbox.ReleaseConnections, sandbox.FreeDisk, sandbox.Kill, sandbox.Start}},
	} {
		t.Run(tc.fault.String()+", then connections exhausted, stays unwritable", func(t *testing.T) {
			m := prim.mark()
			fault(t, c, "db1", tc.fault)
			prim.await(t, m, detector.Unwritable, 6*time.Second)
			m = prim.mark()
			fault(t, c, "db1", sandbox.ExhaustConnections)
			time.Sleep(4 * time.Second)
			rep := prim.d.Report()
			if rep.Ping == nil || rep.Ping.Class != detector.Busy {
				t.Errorf("connections are not exhausted: ping %+v", rep.Ping)
			}
			if rep.Verdict != detector.Unwritable || rep.RoundVerdict != detector.Unwritable {
				t.Fatalf("with connections exhausted: verdict %s, round %s (%s); changes %s",
					rep.Verdict, rep.RoundVerdict, rep.RoundReason, describe(prim.since(m)))
			}
			if chs := prim.since(m); len(chs) > 0 {
				t.Fatalf("verdict changed with connections exhausted: %s", describe(chs))
			}
			m = prim.mark()
			for _, f := range tc.heal {
				fault(t, c, "db1", f)
			}
			prim.await(t, m, detector.Healthy, 10*time.Second)
		})
	}

	t.Run("disk-full, then kill and start", func(t *testing.T) {
		m := prim.mark()
		at := fault(t, c, "db1", sandbox.DiskFull)
		ch := prim.await(t, m, detector.Unwritable, 6*time.Second)
		t.Logf("unwritable %s after the fault: %s", ch.At.Sub(at).Round(time.Millisecond), ch.Reason)
		if !strings.Contains(ch.Reason, "full disk") {
			t.Errorf("reason %q does not point at the full disk", ch.Reason)
		}
		// The first writer waiting for disk space leads the binlog group commit; a
		// probe queued behind it in "Commit" cannot be killed until the leader ends,
		// and it holds the heartbeat row, so later probes wait on that row lock, where
		// KILL QUERY does end them. One stuck probe at most, however long it lasts.
		for i := 0; i < 8; i++ {
			time.Sleep(250 * time.Millisecond)
			if n, desc := staleProbes(t, p); n > 1 {
				t.Fatalf("%d probe statements older than 1.5s on a full disk (%s): hung probes pile up", n, desc)
			}
		}
		// Freeing the disk lets MariaDB resume only at its next retry, up to 60 s
		// later: kill and restart instead, which also tests the crash.
		fault(t, c, "db1", sandbox.FreeDisk)
		m = prim.mark()
		at = fault(t, c, "db1", sandbox.Kill)
		ch = prim.await(t, m, detector.Unreachable, 4*time.Second)
		t.Logf("unreachable %s after kill: %s", ch.At.Sub(at).Round(time.Millisecond), ch.Reason)
		m = prim.mark()
		fault(t, c, "db1", sandbox.Start)
		prim.await(t, m, detector.Healthy, 10*time.Second)
	})

	t.Run("a filling disk is degraded before it is full", func(t *testing.T) {
		// A detector of its own, with a short window, so the test takes seconds.
		fill := watch(t, detector.Config{DSN: sock2, Node: "db2", Role: detector.Replica, Datadir: db2.Datadir,
			DiskWindow: 3 * time.Second, DiskHorizon: time.Minute})
		fill.await(t, 0, detector.Healthy, 3*time.Second)
		f, err := os.Create(filepath.Join(db2.Mount, "growing"))
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		m := fill.mark()
		buf := make([]byte, 1<<20)
		var ch *detector.Change
		for i := 0; i < 80 && ch == nil; i++ { // 8 MiB/s, 80 MiB at most
			if _, err := f.Write(buf); err != nil {
				t.Fatal(err)
			}
			_ = f.Sync()
			time.Sleep(125 * time.Millisecond)
			for _, c := range fill.since(m) {
				if c.To == detector.Degraded {
					ch = &c
				}
			}
		}
		if ch == nil {
			t.Fatalf("no degraded verdict while the disk filled at 8 MiB/s: %s; latest round %s",
				describe(fill.since(m)), fill.d.Report().RoundReason)
		}
		if !strings.Contains(ch.Reason, "will be full in about") {
			t.Fatalf("reason %q", ch.Reason)
		}
		t.Logf("degraded: %s", ch.Reason)
		fill.stop()
	})

	t.Run("readonly-fs on the replica", func(t *testing.T) {
		// mariadbd aborts when InnoDB cannot write its log, so the storage probe's
		// degraded verdict often loses the race with the crash.
		m := repl.mark()
		fault(t, c, "db2", sandbox.ReadonlyFS)
		deadline := time.After(6 * time.Second)
		for {
			var got *detector.Change
			for _, ch := range repl.since(m) {
				if ch.To == detector.Degraded || ch.To == detector.Unreachable {
					got = &ch
				}
			}
			if got != nil {
				t.Logf("replica %s: %s", got.To, got.Reason)
				break
			}
			select {
			case <-repl.notify:
			case <-deadline:
				t.Fatalf("no degraded or unreachable verdict: %s", describe(repl.since(m)))
			}
		}
	})

	t.Run("readonly-fs on the primary", func(t *testing.T) {
		m := prim.mark()
		at := fault(t, c, "db1", sandbox.ReadonlyFS)
		deadline := time.After(6 * time.Second)
		for {
			var got *detector.Change
			for _, ch := range prim.since(m) {
				if ch.To.Failed() {
					got = &ch
					break
				}
			}
			if got != nil {
				t.Logf("%s %s after the fault: %s", got.To, got.At.Sub(at).Round(time.Millisecond), got.Reason)
				break
			}
			select {
			case <-prim.notify:
			case <-deadline:
				t.Fatalf("no failure verdict for a read-only filesystem: %s; latest round %s", describe(prim.since(m)), prim.d.Report().RoundReason)
			}
		}
	})
}

// TestAbandonedProbeKilledAfterFreeze: a write probe sent to a frozen server misses
// its deadline and its KILL QUERY is not taken (the server is stopped). Once the
// server runs again the statement resumes and blocks (here behind a global read lock;
// in the campaign that found it, a commit waiting for a semi-sync acknowledgement
// that never came, which kept SET GLOBAL read_only from ever fencing the old
// primary). The prober keeps sending KILL QUERY until the statement has ended.
func TestAbandonedProbeKilledAfterFreeze(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "det-kill", Nodes: 1})
	root := sandboxtest.RootDB(t, c, "db1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := detector.Bootstrap(ctx, root); err != nil {
		t.Fatal(err)
	}
	dsn, err := c.SocketDSN("db1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := detector.NewProber(detector.ProberConfig{DSN: dsn, Node: "db1", Timeout: 300 * time.Millisecond,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// A second prober with a longer deadline, to time a probe on a frozen server.
	slow, err := detector.NewProber(detector.ProberConfig{DSN: dsn, Node: "db1", Timeout: time.Second,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	// The write lanes' and the KILL's connections are established while all is well.
	for _, p := range []*detector.Prober{p, slow} {
		if r := p.Write(ctx); r.Class != detector.OK {
			t.Fatalf("write probe on a healthy server: %+v", r)
		}
	}
	fault(t, c, "db1", sandbox.FreezeWrites)
	defer fault(t, c, "db1", sandbox.ThawWrites)
	fault(t, c, "db1", sandbox.Stop)
	if r := p.Write(ctx); r.Class != detector.TimedOut {
		t.Fatalf("write probe on a frozen server: %+v", r)
	}
	// A frozen server costs the probe its deadline, no more: what the statement
	// waits for is asked beside it, not after the deadline (which cost half the
	// deadline again, and delayed every verdict on a frozen primary by as much).
	start := time.Now()
	if r := slow.Write(ctx); r.Class != detector.TimedOut {
		t.Fatalf("write probe (1s deadline) on a frozen server: %+v", r)
	}
	if took := time.Since(start); took > 1300*time.Millisecond {
		t.Errorf("the write probe on a frozen server returned after %s: want its 1s deadline", took.Round(time.Millisecond))
	}
	time.Sleep(time.Second) // the first KILL QUERY times out on the frozen server
	fault(t, c, "db1", sandbox.Cont)
	sandboxtest.WaitFor(t, 4*time.Second, "the abandoned write probe killed once the server runs again", func() bool {
		qctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var n int
		err := root.QueryRowContext(qctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO baton.%'").Scan(&n)
		return err == nil && n == 0
	})
}

// TestPromotedVerdictAfresh: a replica whose source died is suspect (its IO thread
// cannot reconnect); promoted by hand, with the detector's probes set to a
// primary's, the first primary round decides: healthy at once, not after
// recover_after healthy rounds, since what the replica's probes found says nothing
// of the primary. The change of probes starts that round at once.
func TestPromotedVerdictAfresh(t *testing.T) {
	c, r := bootstrappedPair(t, "det-promote")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sock2 := socketDSN(t, c, "db2")
	db2, _ := c.Node("db2")
	// recover_after 3: without the fresh start the promoted server would need three
	// healthy rounds. A 4 s interval (2 s while a change is pending): a round that
	// waited for its time would come well after the second the test allows.
	w := watch(t, detector.Config{DSN: sock2, Node: "db2", Role: detector.Replica, Datadir: db2.Datadir, DiskHorizon: 20 * time.Second,
		FailAfter: 3, RecoverAfter: 3, Interval: 4 * time.Second})
	w.await(t, 0, detector.Healthy, 3*time.Second)

	// The source gone, its IO thread then stopped on the connection error, as a
	// failover's stop_io leaves a replica.
	fault(t, c, "db1", sandbox.Kill)
	sandboxtest.WaitFor(t, 10*time.Second, "db2's IO thread failing to reconnect", func() bool {
		rows, err := r.QueryContext(ctx, "SHOW SLAVE STATUS")
		if err != nil {
			return false
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if !rows.Next() || rows.Scan(ptrs...) != nil {
			return false
		}
		for i, c := range cols {
			if c == "Last_IO_Errno" {
				return vals[i].String != "" && vals[i].String != "0"
			}
		}
		return false
	})
	exec(t, r, "STOP SLAVE IO_THREAD")
	w.await(t, 0, detector.Suspect, 15*time.Second)

	// Promoted by hand, as the reconciler does, then the probes changed.
	for _, q := range []string{"STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = OFF"} {
		exec(t, r, q)
	}
	mark, rounds := w.mark(), w.d.Report().Rounds
	set := time.Now()
	w.d.SetEpoch(2) // as the agent does: the new epoch first, then the probes
	w.d.SetRole(detector.Primary)
	ch := w.await(t, mark, detector.Healthy, 10*time.Second)
	rep := w.d.Report()
	if took := ch.At.Sub(set); took > time.Second {
		t.Errorf("healthy %s after the probes changed: want a round at once, not at the next interval", took.Round(time.Millisecond))
	}
	if ch.From == detector.Healthy || strings.Contains(ch.Reason, "healthy rounds in a row") {
		t.Errorf("change %s -> %s (%s): want the first primary round to decide", ch.From, ch.To, ch.Reason)
	}
	// The round under way when the probes changed (a replica's) and the primary's.
	if n := rep.Rounds - rounds; n > 2 {
		t.Errorf("healthy %d rounds after the probes changed: want the first primary round", n)
	}
	if rep.Role != detector.Primary || rep.Write == nil {
		t.Errorf("report role %s, write probe %+v: want a primary's round", rep.Role, rep.Write)
	}
}

// TestStaleHeartbeatSeenOnTime: a replica sees its primary's heartbeat reach
// StaleAfter when it does, not at its next round, each of three times the
// primary stops writing it; never while heartbeats come.
func TestStaleHeartbeatSeenOnTime(t *testing.T) {
	c, _ := bootstrappedPair(t, "det-stale")
	sock1, sock2 := socketDSN(t, c, "db1"), socketDSN(t, c, "db2")
	const stale = time.Second
	var mu sync.Mutex
	var seen []detector.Report
	staleSeen := make(chan struct{}, 1)
	// The default 500 ms interval: a round that waited for its turn would find the
	// heartbeat anywhere from 1 s to 1.5 s old (about one chance in eight under
	// 1.06 s).
	replica := watch(t, detector.Config{DSN: sock2, Node: "db2", Role: detector.Replica, Interval: 500 * time.Millisecond,
		StaleAfter: stale, OnStale: func(rep detector.Report) {
			mu.Lock()
			seen = append(seen, rep)
			mu.Unlock()
			select {
			case staleSeen <- struct{}{}:
			default:
			}
		}})
	var lags []time.Duration
	for try := 1; try <= 3; try++ {
		// The primary's detector writes a heartbeat every 500 ms.
		primary := watch(t, detector.Config{DSN: sock1, Node: "db1", Role: detector.Primary, Interval: 500 * time.Millisecond})
		primary.await(t, 0, detector.Healthy, 5*time.Second)
		time.Sleep(time.Second)
		// Forget what was seen while the heartbeats were stopped (before this try's
		// primary started): from here on they come every 500 ms.
		mu.Lock()
		seen = nil
		mu.Unlock()
		select {
		case <-staleSeen:
		default:
		}
		time.Sleep(2 * time.Second)
		mu.Lock()
		early := len(seen)
		if early != 0 {
			mu.Unlock()
			t.Fatalf("try %d: stale %d times while the primary wrote its heartbeat every 500 ms (lag %s)", try, early, seen[0].Replication.HeartbeatLag)
		}
		mu.Unlock()

		primary.stop() // the heartbeats stop
		select {
		case <-staleSeen:
		case <-time.After(5 * time.Second):
			t.Fatalf("try %d: no stale heartbeat seen 5 s after the primary stopped writing (latest %+v)", try, replica.d.Report().Replication)
		}
		mu.Lock()
		rep := seen[0]
		seen = nil
		mu.Unlock()
		lag := rep.Replication.HeartbeatLag
		if lag < stale {
			t.Fatalf("try %d: OnStale with a heartbeat lag of %s, under %s", try, lag, stale)
		}
		lags = append(lags, lag)
		t.Logf("try %d: seen stale at a heartbeat lag of %s", try, lag.Round(time.Millisecond))
	}
	// The middle of the three, so that one round a loaded machine delays does not
	// decide: without the asked-for round two of three would fall under the bar
	// about one time in twenty-five.
	slices.Sort(lags)
	if median := lags[1]; median > stale+60*time.Millisecond {
		t.Errorf("the heartbeat was %v old when seen stale: want the round at %s, not at the next interval", lags, stale)
	}
}

// bootstrappedPair brings up a 2-node sandbox, creates Baton's schema on db1 and
// waits until db2 replicated it; it returns the sandbox and db2's root pool.
func bootstrappedPair(t *testing.T, name string) (*sandbox.Cluster, *sql.DB) {
	t.Helper()
	c := sandboxtest.Up(t, sandbox.Spec{Name: name, Nodes: 2})
	p := sandboxtest.RootDB(t, c, "db1")
	r := sandboxtest.RootDB(t, c, "db2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := detector.Bootstrap(ctx, p); err != nil {
		t.Fatal(err)
	}
	var res int
	if err := r.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 5)", gtidPos(t, p)).Scan(&res); err != nil || res != 0 {
		t.Fatalf("replica did not get the baton schema: %d %v", res, err)
	}
	return c, r
}

// socketDSN is a node's DSN over its unix socket.
func socketDSN(t *testing.T, c *sandbox.Cluster, node string) string {
	t.Helper()
	dsn, err := c.SocketDSN(node)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// TestExitSeenAtOnce: a killed server is unreachable, certain, as soon as it is
// gone, not at the next round: with a 3 s interval a round that waited for its
// turn would come after the 250 ms allowed in most of three kills. A connection of
// the probe's account killed by someone else (as a fence kills clients) only
// brings a round forward: no failure.
func TestExitSeenAtOnce(t *testing.T) {
	c, _ := bootstrappedPair(t, "det-exit")
	p := sandboxtest.RootDB(t, c, "db1")
	tcp, err := c.TCPDSN("db1")
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := mysql.ParseDSN(tcp)
	if err != nil {
		t.Fatal(err)
	}
	const interval = 3 * time.Second
	w := watch(t, detector.Config{DSN: tcp, Node: "db1", Role: detector.Primary,
		Dial: sandbox.DialContext(c.ClientNetNS), Interval: interval})
	w.await(t, 0, detector.Healthy, 5*time.Second)

	time.Sleep(interval) // the watch is connected
	m := w.mark()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := p.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", dsn.User)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) < 2 {
		t.Fatalf("%d connections of %s: want the probes' and the watch's", len(ids), dsn.User)
	}
	for _, id := range ids {
		if _, err := p.ExecContext(ctx, "KILL CONNECTION ?", id); err != nil && !strings.Contains(err.Error(), "1094") {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	for _, ch := range w.since(m) {
		if ch.To != detector.Healthy && ch.To != detector.Suspect {
			t.Fatalf("the probe account's connections killed: %s -> %s (%s), want no failure", ch.From, ch.To, ch.Reason)
		}
	}

	fast := 0
	for i := 0; i < 3; i++ {
		time.Sleep(interval + 500*time.Millisecond) // the watch connected again
		m := w.mark()
		at := fault(t, c, "db1", sandbox.Kill)
		ch := w.await(t, m, detector.Unreachable, 2*interval)
		took := ch.At.Sub(at)
		t.Logf("kill %d: unreachable after %s: %s", i+1, took.Round(time.Millisecond), ch.Reason)
		if !strings.Contains(ch.Reason, "certain") {
			t.Errorf("kill %d: %q, want the certain verdict", i+1, ch.Reason)
		}
		if took <= 250*time.Millisecond {
			fast++
		}
		m = w.mark()
		fault(t, c, "db1", sandbox.Start)
		w.await(t, m, detector.Healthy, 20*time.Second)
	}
	if fast < 2 {
		t.Errorf("%d of 3 kills seen within 250 ms, want at least 2: the server's exit was not watched", fast)
	}
}
