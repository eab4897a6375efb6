//go:build integration

package replication_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// TestApplySalvage: transactions db1 logged while db2's IO thread was stopped are
// read from db1's binary log files (as a failed primary's agent reads them) and
// applied to db2 over one connection of Baton's account, many transactions a
// query: what the mariadb client would make of the print (row and
// statement events, a literal holding a semicolon and a line ending in the print's
// delimiter, text in four-byte UTF-8 after the print's "\C" command, DDL, an
// ANALYZE TABLE, whose answer is a result set, a transaction under sql_mode
// ORACLE) is what db2 gets, with db1's GTIDs. A stale
// guard applies nothing; an apply cut at its deadline leaves a prefix and nothing
// applied after it returns.
func TestApplySalvage(t *testing.T) {
	sb := sandboxtest.Up(t, sandbox.Spec{Name: "salv", Nodes: 2})
	c := newCluster(t, sb)
	n1, err := sb.Node("db1")
	if err != nil {
		t.Fatal(err)
	}
	n2, err := sb.Node("db2")
	if err != nil {
		t.Fatal(err)
	}
	c.exec(t, "db1", "CREATE TABLE sandbox.salv (id INT PRIMARY KEY, v TEXT) DEFAULT CHARSET=utf8mb4")
	waitAll(t, c, "db1", "db2")
	twice(t, "StopIO db2", c.inst["db2"].StopIO)

	pad := strings.Repeat("x", 900)
	var stmts []string
	for i := 1; i <= 300; i++ {
		stmts = append(stmts, fmt.Sprintf("INSERT INTO sandbox.salv VALUES (%d, '%s')", i, pad))
	}
	stmts = append(stmts,
		"SET SESSION binlog_format = 'STATEMENT'",
		"INSERT INTO sandbox.salv VALUES (1001, 'a;b\n/*!*/;\nc')",
		// Logged as a statement, and answered with a result set when applied.
		"ANALYZE TABLE sandbox.salv",
		"SET NAMES utf8mb4",
		"INSERT INTO sandbox.salv VALUES (1002, 'h\u00e9llo \u2713 \U0001D11E')",
		"CREATE TABLE sandbox.salv_ddl (id INT PRIMARY KEY, note VARCHAR(20) DEFAULT 'x;y')",
		"SET SESSION binlog_format = 'ROW'",
		"UPDATE sandbox.salv SET v = CONCAT(v, '!') WHERE id BETWEEN 10 AND 20",
		// The print sets each event's sql_mode: the statement that ends each of the
		// apply's queries must read the same under ORACLE's syntax.
		"SET SESSION sql_mode = 'ORACLE'",
		"INSERT INTO sandbox.salv VALUES (1003, 'oracle')",
		"SET SESSION sql_mode = DEFAULT")
	c.exec(t, "db1", stmts...)
	// Statement events and DDL run as SQL, with the applying account's privileges:
	// Baton's holds none on the application's tables (the first error stops the
	// apply, below); this site's account is given them here.
	grant := fmt.Sprintf("GRANT ALL ON sandbox.* TO '%s'@'%%'", sb.AdminUser)
	c.exec(t, "db2", "SET SESSION sql_log_bin = 0", grant)

	ctx := ctxFor(t, time.Minute)
	d := replication.Dialer{User: sb.AdminUser, Password: sb.AdminPassword}
	tail := func(node *sandbox.Node, after replication.GTIDSet) replication.BinlogTail {
		t.Helper()
		files, err := replication.BinlogIndex(filepath.Join(node.Datadir, "mysql-bin.index"), node.Datadir)
		if err != nil {
			t.Fatal(err)
		}
		files, _, err = replication.BinlogFilesFrom(files, after)
		if err != nil {
			t.Fatal(err)
		}
		tl, err := replication.ReadBinlogTail(ctx, "", files, after, 0)
		if err != nil {
			t.Fatal(err)
		}
		if tl.Stopped != "" {
			t.Fatalf("the read stopped: %s", tl.Stopped)
		}
		return tl
	}
	guard := func(tl replication.BinlogTail) (replication.SalvageGuard, replication.SalvagePlan) {
		t.Helper()
		st := c.status(t, "db2")
		plan, err := replication.CheckSalvage(tl.BinlogPrint, st.Executed)
		if err != nil {
			t.Fatal(err)
		}
		return replication.SalvageGuard{BinlogState: st.MariaDB.BinlogState, SlavePos: st.MariaDB.SlavePos, SlavePosAfter: plan.After.Position()}, plan
	}
	rows := func(node string) string {
		t.Helper()
		var b strings.Builder
		r, err := c.root[node].QueryContext(ctxFor(t, 5*time.Second), "SELECT id, v FROM sandbox.salv ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for r.Next() {
			var id int
			var v string
			if err := r.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%d=%s\n", id, v)
		}
		return b.String()
	}

	tl := tail(n1, c.status(t, "db2").Executed)
	if len(tl.Txns) != 306 {
		t.Fatalf("read %d transactions, want the 306 db1 logged", len(tl.Txns))
	}
	g, plan := guard(tl)
	start := time.Now()
	if err := replication.ApplySalvage(ctx, d, "unix:"+n2.Socket, tl.Script, g); err != nil {
		t.Fatal(err)
	}
	t.Logf("applied %d transactions (%d bytes of print) in %s", len(tl.Txns), len(tl.Script), time.Since(start))
	if got, want := rows("db2"), rows("db1"); got != want {
		t.Fatalf("db2's rows differ from db1's after the salvage")
	}
	if !strings.Contains(rows("db2"), "1002=h\u00e9llo \u2713 \U0001D11E\n") || !strings.Contains(rows("db2"), "1001=a;b\n/*!*/;\nc\n") {
		t.Fatal("db2 lacks the four-byte text or the literal with the print's delimiter")
	}
	st2, st1 := c.status(t, "db2"), c.status(t, "db1")
	if !st2.Executed.Contain(st1.Executed) || !st1.Executed.Contain(st2.Executed) {
		t.Fatalf("db2 executed %s, db1 %s: want the same GTIDs", st2.Executed, st1.Executed)
	}
	if st2.MariaDB.SlavePos != plan.After.Position() || st2.SQLThread != replication.ThreadStopped {
		t.Fatalf("db2 slave pos %q sql %s: want %q and replication stopped", st2.MariaDB.SlavePos, st2.SQLThread, plan.After.Position())
	}

	// The same print behind the same guard again: db2 changed since, refused.
	if err := replication.ApplySalvage(ctx, d, "unix:"+n2.Socket, tl.Script, g); err == nil || !strings.Contains(err.Error(), "changed since the flow read it") {
		t.Fatalf("a stale guard: %v, want the candidate changed", err)
	}
	if got := c.status(t, "db2").Executed; !got.Contain(st2.Executed) || !st2.Executed.Contain(got) {
		t.Fatalf("a refused apply changed db2: %s -> %s", st2.Executed, got)
	}

	// More than a short deadline allows: cut, whole transactions only, and
	// nothing applied once it returned.
	more := make([]string, 0, 3000)
	for i := 2001; i <= 5000; i++ {
		more = append(more, fmt.Sprintf("INSERT INTO sandbox.salv VALUES (%d, 'late')", i))
	}
	c.exec(t, "db1", more...)
	tl = tail(n1, c.status(t, "db2").Executed)
	g, _ = guard(tl)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = replication.ApplySalvage(short, d, "unix:"+n2.Socket, tl.Script, g)
	cancel()
	if err == nil {
		t.Fatalf("3000 transactions applied within 200ms: make the test's load larger")
	}
	after := c.status(t, "db2").Executed
	time.Sleep(time.Second)
	if later := c.status(t, "db2").Executed; !after.Contain(later) {
		t.Fatalf("db2 went on applying after the apply returned: %s -> %s", after, later)
	}
	var n, maxID int
	if err := c.root["db2"].QueryRowContext(ctxFor(t, 5*time.Second), "SELECT COUNT(*), COALESCE(MAX(id), 2000) FROM sandbox.salv WHERE id > 2000").Scan(&n, &maxID); err != nil {
		t.Fatal(err)
	}
	if n != maxID-2000 {
		t.Fatalf("db2 has %d of the late rows up to id %d: not a prefix", n, maxID)
	}
	t.Logf("cut at its deadline: %d of 3000 applied (%v)", n, err)

	// A statement the account may not run stops the apply there: what came before
	// it is applied, it and what follows are not.
	c.exec(t, "db2", "SET SESSION sql_log_bin = 0", strings.Replace(strings.Replace(grant, "GRANT", "REVOKE", 1), " TO ", " FROM ", 1))
	c.exec(t, "db1", "INSERT INTO sandbox.salv VALUES (1101, 'row before')",
		"SET SESSION binlog_format = 'STATEMENT'", "INSERT INTO sandbox.salv VALUES (1102, 'statement')",
		"SET SESSION binlog_format = 'ROW'", "INSERT INTO sandbox.salv VALUES (1103, 'row after')")
	tl = tail(n1, c.status(t, "db2").Executed)
	g, _ = guard(tl)
	err = replication.ApplySalvage(ctx, d, "unix:"+n2.Socket, tl.Script, g)
	if err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("a statement the account may not run: %v, want denied", err)
	}
	if got := rows("db2"); !strings.Contains(got, "1101=row before\n") || strings.Contains(got, "1102=") || strings.Contains(got, "1103=") {
		t.Fatalf("after a denied statement db2 has 1101 %v, 1102 %v, 1103 %v: want 1101 only",
			strings.Contains(got, "1101="), strings.Contains(got, "1102="), strings.Contains(got, "1103="))
	}
}
