//go:build integration

package replication_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// TestApplyRelay: transactions db1 logged while db2's IO thread was stopped are
// copied from db1's binary log files (as a failed primary's agent copies them) and
// applied by db2's replication SQL thread, from a relay log file written as its
// agent writes it: db2 gets db1's rows and GTIDs (row and statement events, DDL,
// a statement Baton's account has no grant for: the SQL thread needs none), its
// slave_parallel_threads is put back, and nothing is applied after it returns. A
// stale guard starts nothing and changes nothing; an apply cut at its deadline
// leaves a prefix; a transaction that fails on db2 stops it there, and says so.
func TestApplyRelay(t *testing.T) {
	sb := sandboxtest.Up(t, sandbox.Spec{Name: "relay", Nodes: 2})
	c := newCluster(t, sb)
	n1, err := sb.Node("db1")
	if err != nil {
		t.Fatal(err)
	}
	n2, err := sb.Node("db2")
	if err != nil {
		t.Fatal(err)
	}
	c.exec(t, "db1", "CREATE TABLE sandbox.relay (id INT PRIMARY KEY, v TEXT) DEFAULT CHARSET=utf8mb4")
	waitAll(t, c, "db1", "db2")
	// As a replica just pointed at its source (Follow's CHANGE MASTER) has it: no
	// source binary log file named yet.
	c.exec(t, "db2", "STOP SLAVE", "RESET SLAVE")
	ctx := ctxFor(t, 2*time.Minute)

	type copied struct {
		txns  []replication.BinlogTxn
		relay []byte
		g     replication.SalvageGuard
	}
	// copyTail reads what db2 lacks from db1's files, and db2's guard.
	copyTail := func() copied {
		t.Helper()
		st := c.status(t, "db2")
		files, err := replication.BinlogIndex(filepath.Join(n1.Datadir, "mysql-bin.index"), n1.Datadir)
		if err != nil {
			t.Fatal(err)
		}
		files, _, err = replication.BinlogFilesFrom(files, st.Executed)
		if err != nil {
			t.Fatal(err)
		}
		tl, err := replication.ReadBinlogTail(ctx, "", files, st.Executed, replication.MaxSalvage)
		if err != nil || tl.Stopped != "" {
			t.Fatalf("read db1's tail: %v (stopped %q)", err, tl.Stopped)
		}
		plan, err := replication.CheckSalvage(tl.BinlogPrint, st.Executed)
		if err != nil {
			t.Fatal(err)
		}
		relay, err := replication.SalvageRelay(files, tl.Txns, replication.MaxSalvage)
		if err != nil {
			t.Fatal(err)
		}
		return copied{tl.Txns, relay, replication.SalvageGuard{BinlogState: st.MariaDB.BinlogState, SlavePos: st.MariaDB.SlavePos, SlavePosAfter: plan.After.Position()}}
	}
	threads := func() int {
		t.Helper()
		var n int
		if err := c.root["db2"].QueryRowContext(ctxFor(t, 5*time.Second), "SELECT @@GLOBAL.slave_parallel_threads").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	checksum := func(node string) string {
		t.Helper()
		var tbl, sum string
		if err := c.root[node].QueryRowContext(ctxFor(t, 5*time.Second), "CHECKSUM TABLE sandbox.relay").Scan(&tbl, &sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	same := func(a, b replication.GTIDSet) bool { return a.Contain(b) && b.Contain(a) }

	var stmts []string
	for i := 1; i <= 1000; i++ {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO sandbox.relay VALUES (%d, 'row %d')", i, i))
	}
	stmts = append(stmts,
		"SET SESSION binlog_format = 'STATEMENT'",
		"INSERT INTO sandbox.relay VALUES (1001, 'a;b\n/*!*/;\nc')",
		"SET SESSION binlog_format = 'ROW'",
		"CREATE TABLE sandbox.relay_ddl (id INT PRIMARY KEY)",
		"UPDATE sandbox.relay SET v = CONCAT(v, '!') WHERE id BETWEEN 10 AND 20")
	c.exec(t, "db1", stmts...)
	cp := copyTail()
	if len(cp.txns) != 1003 {
		t.Fatalf("read %d transactions, want the 1003 db1 logged", len(cp.txns))
	}
	start := time.Now()
	res, err := c.inst["db2"].ApplyRelay(ctxFor(t, 2*time.Second), cp.relay, cp.txns, cp.g)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("applied %d transactions (%d bytes) in %s with %d workers, through %s", len(cp.txns), len(cp.relay), time.Since(start), res.Threads, res.File)
	st2, st1 := c.status(t, "db2"), c.status(t, "db1")
	if !same(st2.Executed, st1.Executed) {
		t.Fatalf("db2 executed %s, db1 %s: want the same GTIDs", st2.Executed, st1.Executed)
	}
	if checksum("db2") != checksum("db1") {
		t.Fatal("db2's rows differ from db1's after the relay apply")
	}
	if st2.MariaDB.SlavePos != cp.g.SlavePosAfter || st2.SQLThread != replication.ThreadStopped || st2.IOThread != replication.ThreadStopped {
		t.Fatalf("db2: slave pos %q, SQL thread %s, IO thread %s: want %q and replication stopped", st2.MariaDB.SlavePos, st2.SQLThread, st2.IOThread, cp.g.SlavePosAfter)
	}
	if st2.MariaDB.UsingGTID != "Slave_Pos" {
		t.Fatalf("db2's Using_Gtid %q after the apply, want Slave_Pos as before", st2.MariaDB.UsingGTID)
	}
	if _, err := os.Stat(res.File); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the relay log file of the salvage is still there (%v): a START SLAVE would read it", err)
	}
	if res.Threads != 16 || threads() != 0 {
		t.Fatalf("applied with %d workers, slave_parallel_threads now %d: want 16, put back to 0", res.Threads, threads())
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(res.File), ".baton-salvage*"))
	if len(leftovers) > 0 {
		t.Fatalf("files left in the relay log directory: %v", leftovers)
	}

	// The same copy behind the same guard: db2 changed since: nothing starts, the
	// relay log file written is put back.
	_, err = c.inst["db2"].ApplyRelay(ctxFor(t, 2*time.Second), cp.relay, cp.txns, cp.g)
	if !errors.Is(err, replication.ErrRelayNotStarted) || !strings.Contains(err.Error(), "changed since the flow read it") {
		t.Fatalf("a stale guard: %v, want not started, the candidate changed", err)
	}
	if got := c.status(t, "db2").Executed; !same(got, st2.Executed) || threads() != 0 {
		t.Fatalf("a refused apply changed db2: %s -> %s, slave_parallel_threads %d", st2.Executed, got, threads())
	}
	// A copy that is not what its list says: refused before anything.
	bad := append([]byte(nil), cp.relay...)
	bad[len(bad)-5] ^= 1
	if _, err := c.inst["db2"].ApplyRelay(ctxFor(t, 2*time.Second), bad, cp.txns, cp.g); !errors.Is(err, replication.ErrRelayNotStarted) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("a damaged copy: %v, want not started, its checksum", err)
	}

	// More than a short deadline allows: cut, a prefix applied, nothing after it
	// returned, the workers put back.
	more := make([]string, 0, 20000)
	for i := 2001; i <= 22000; i++ {
		more = append(more, fmt.Sprintf("INSERT INTO sandbox.relay VALUES (%d, 'late')", i))
	}
	c.exec(t, "db1", more...)
	cp = copyTail()
	// A server whose SQL thread would leave a transaction out while counting its
	// GTID as applied: refused before anything (the session's apply does not skip).
	c.exec(t, "db2", "SET GLOBAL slave_exec_mode = 'IDEMPOTENT'")
	_, err = c.inst["db2"].ApplyRelay(ctxFor(t, 2*time.Second), cp.relay, cp.txns, cp.g)
	c.exec(t, "db2", "SET GLOBAL slave_exec_mode = 'STRICT'")
	if !errors.Is(err, replication.ErrRelayNotStarted) || !strings.Contains(err.Error(), "IDEMPOTENT") {
		t.Fatalf("slave_exec_mode IDEMPOTENT: %v, want not started, and why", err)
	}
	_, err = c.inst["db2"].ApplyRelay(ctxFor(t, 600*time.Millisecond), cp.relay, cp.txns, cp.g)
	if err == nil {
		t.Fatalf("20000 transactions applied within 600ms: make the test's load larger")
	}
	if errors.Is(err, replication.ErrRelayNotStarted) || errors.Is(err, replication.ErrSessionNotEnded) {
		t.Fatalf("a cut apply: %v, want started and ended", err)
	}
	after := c.status(t, "db2")
	time.Sleep(time.Second)
	if later := c.status(t, "db2").Executed; !same(after.Executed, later) {
		t.Fatalf("db2 went on applying after the apply returned: %s -> %s", after.Executed, later)
	}
	var n, maxID int
	if err := c.root["db2"].QueryRowContext(ctxFor(t, 5*time.Second), "SELECT COUNT(*), COALESCE(MAX(id), 2000) FROM sandbox.relay WHERE id > 2000").Scan(&n, &maxID); err != nil {
		t.Fatal(err)
	}
	if n != maxID-2000 || n == 0 || threads() != 0 || after.SQLThread != replication.ThreadStopped {
		t.Fatalf("db2 has %d of the late rows up to id %d, slave_parallel_threads %d, SQL thread %s: want a prefix, 0, stopped", n, maxID, threads(), after.SQLThread)
	}
	t.Logf("cut at its deadline: %d of 20000 applied (%v)", n, err)

	// The coordinator settling an apply its candidate's agent left (killed in the
	// middle): the lock holder's session ended, replication stopped, the worker
	// count and Using_Gtid put back, the relay logs discarded.
	holder, err := c.root["db2"].Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	var got1 int
	if err := holder.QueryRowContext(ctx, "SELECT GET_LOCK(?, 1)", replication.ReplicationLock).Scan(&got1); err != nil || got1 != 1 {
		t.Fatalf("take the replication lock: %d, %v", got1, err)
	}
	var index string
	if err := c.root["db2"].QueryRowContext(ctx, "SELECT @@GLOBAL.relay_log_index").Scan(&index); err != nil {
		t.Fatal(err)
	}
	c.exec(t, "db2", "STOP SLAVE", "FLUSH RELAY LOGS")
	b, err := os.ReadFile(filepath.Join(n2.Datadir, filepath.Base(index)))
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Fields(string(b))
	c.exec(t, "db2", "SET GLOBAL slave_parallel_threads = 16",
		fmt.Sprintf("CHANGE MASTER TO RELAY_LOG_FILE = '%s', RELAY_LOG_POS = 4", filepath.Base(names[len(names)-1])))
	if st := c.status(t, "db2"); st.MariaDB.UsingGTID != "No" {
		t.Fatalf("Using_Gtid %q after CHANGE MASTER TO RELAY_LOG_FILE, want No (what the takeover puts back)", st.MariaDB.UsingGTID)
	}
	if err := c.inst["db2"].TakeOverRelay(ctxFor(t, 5*time.Second), replication.RelaySettings{Threads: 0, UsingGTID: "Slave_Pos"}, replication.GTIDSet{}, 0); err != nil {
		t.Fatal(err)
	}
	if err := holder.PingContext(ctx); err == nil {
		t.Fatal("the replication lock's holder still runs after the takeover")
	}
	if st := c.status(t, "db2"); st.MariaDB.UsingGTID != "Slave_Pos" || threads() != 0 || st.SQLThread != replication.ThreadStopped {
		t.Fatalf("after the takeover: Using_Gtid %q, slave_parallel_threads %d, SQL thread %s; want Slave_Pos, 0, stopped", st.MariaDB.UsingGTID, threads(), st.SQLThread)
	}

	// The rest, then a transaction that fails on db2 (its row is there already):
	// the SQL thread stops there, what came before it is applied, it and what
	// follows are not.
	cp = copyTail()
	if _, err := c.inst["db2"].ApplyRelay(ctxFor(t, 20*time.Second), cp.relay, cp.txns, cp.g); err != nil {
		t.Fatal(err)
	}
	c.exec(t, "db2", "SET SESSION sql_log_bin = 0", "INSERT INTO sandbox.relay VALUES (30002, 'only on db2')")
	c.exec(t, "db1", "INSERT INTO sandbox.relay VALUES (30001, 'before')", "INSERT INTO sandbox.relay VALUES (30002, 'clash')",
		"INSERT INTO sandbox.relay VALUES (30003, 'after')")
	cp = copyTail()
	_, err = c.inst["db2"].ApplyRelay(ctxFor(t, 5*time.Second), cp.relay, cp.txns, cp.g)
	if err == nil || !strings.Contains(err.Error(), "stopped short") || !strings.Contains(err.Error(), "Duplicate") {
		t.Fatalf("a transaction that fails on db2: %v, want the SQL thread stopped on it", err)
	}
	var got string
	if err := c.root["db2"].QueryRowContext(ctxFor(t, 5*time.Second), "SELECT GROUP_CONCAT(v ORDER BY id) FROM sandbox.relay WHERE id > 30000").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "before,only on db2" || threads() != 0 {
		t.Fatalf("db2 has %q after the failed transaction, slave_parallel_threads %d: want before and its own row, 0", got, threads())
	}
	t.Logf("stopped on db2's own row: %v", err)
	if b, err := os.ReadFile(filepath.Join(sb.Dir, "db2", "error.log")); err == nil && strings.Contains(string(b), "[ERROR] Slave SQL") {
		t.Logf("db2's error log names the failed transaction, as replication's errors are")
	}
}
