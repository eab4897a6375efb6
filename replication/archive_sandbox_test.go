//go:build integration

package replication_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// TestArchiveAndFlashback: a replica cut from its primary takes real errant
// transactions (an application's update, delete and insert, and a write to Baton's
// own heartbeat table). Baton's account archives them from the server's binary log
// (every errant GTID read back, re-appliable, decoded), undoes them with MariaDB's
// flashback on a session that binlogs nothing, forgets their GTIDs (RepairErrant)
// and follows the primary again: the data equals the primary's, and replication
// applies the primary's later writes to the same rows cleanly.
func TestArchiveAndFlashback(t *testing.T) {
	sb := sandboxtest.Up(t, sandbox.Spec{Name: "arch", Nodes: 2})
	c := newCluster(t, sb)
	c.exec(t, "db1", "CREATE TABLE sandbox.acct (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO sandbox.acct VALUES (1,'a'),(2,'b'),(3,'c')",
		"CREATE DATABASE IF NOT EXISTS baton", "CREATE TABLE IF NOT EXISTS baton.heartbeat_test (node VARCHAR(64) PRIMARY KEY, seq BIGINT)",
		"INSERT INTO baton.heartbeat_test VALUES ('db2', 1)")
	waitAll(t, c, "db1", "db2")
	primary := c.status(t, "db1").Server()

	twice(t, "StopIO db2", c.inst["db2"].StopIO)
	c.exec(t, "db2", "STOP SLAVE",
		"UPDATE sandbox.acct SET v='errant' WHERE id=2", "DELETE FROM sandbox.acct WHERE id=3",
		"INSERT INTO sandbox.acct VALUES (4,'new')", "UPDATE baton.heartbeat_test SET seq = 2 WHERE node = 'db2'")
	ctx := ctxFor(t, time.Minute)
	ev, err := c.inst["db2"].InspectErrant(ctx, primary, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// db1 has none of server 2's GTIDs, so every sequence of server 2 up to its last
	// is looked up; only its 4 writes are in the binary log.
	real := ev.Real()
	var realGTIDs []string
	for _, tx := range real {
		realGTIDs = append(realGTIDs, tx.GTID)
		if !tx.RowsOnly || !tx.Transactional || len(tx.Tables) != 1 {
			t.Fatalf("%+v: want row events on one InnoDB table", tx)
		}
	}
	if len(real) != 4 {
		t.Fatalf("errant %+v: want 4 real transactions", ev.Txns)
	}
	n2, err := sb.Node("db2")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tools := replication.Tools{Addr: "unix:" + n2.Socket, User: sb.AdminUser, Password: sb.AdminPassword, Dir: dir}
	path := filepath.Join(dir, "archive", "db2-errant.sql")
	got, err := tools.Archive(ctx, ev, primary, "node db2\nerrant "+ev.Errant.String(), path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.GTIDs, ",") != strings.Join(realGTIDs, ",") {
		t.Fatalf("archive holds %v, want %v", got.GTIDs, realGTIDs)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-- node db2", "BINLOG '", "### UPDATE `sandbox`.`acct`", "### DELETE FROM `sandbox`.`acct`",
		"### INSERT INTO `sandbox`.`acct`", "@2='errant'", "`baton`.`heartbeat_test`"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("archive lacks %q", want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, %v: want 0600", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".baton-client-*")); len(left) != 0 {
		t.Errorf("client options files left behind: %v", left)
	}

	checksum := func(node, table string) string {
		var name, sum string
		if err := c.root[node].QueryRowContext(ctxFor(t, 5*time.Second), "CHECKSUM TABLE "+table).Scan(&name, &sum); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	fb := filepath.Join(dir, "archive", "db2-flashback.sql")
	if err := tools.Flashback(ctx, ev, primary, fb); err != nil {
		t.Fatal(err)
	}
	stateBefore := c.status(t, "db2").MariaDB.BinlogState
	if err := tools.Undo(ctx, fb, ev.Errant.String()); err != nil {
		t.Fatal(err)
	}
	if st := c.status(t, "db2").MariaDB.BinlogState; st != stateBefore {
		t.Fatalf("the flashback was binlogged: gtid_binlog_state %s -> %s", stateBefore, st)
	}
	// The same errant set again (an agent restarted after the undo, before it forgot
	// the GTIDs): refused, nothing undone twice.
	if err := tools.Undo(ctx, fb, ev.Errant.String()); !errors.Is(err, replication.ErrUndoneBefore) {
		t.Fatalf("second undo of the same set: %v, want ErrUndoneBefore", err)
	}
	// A flashback cut off in the middle (a statement that fails after some rows
	// were reversed) changes nothing: it is one transaction.
	broken := filepath.Join(dir, "archive", "broken.sql")
	b2, _ := os.ReadFile(fb)
	if err := os.WriteFile(broken, append(b2, []byte("\nDELIMITER ;\nSELECT * FROM sandbox.no_such_table;\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	sumBefore := checksum("db2", "sandbox.acct")
	if err := tools.Undo(ctx, broken, "another set"); err == nil || errors.Is(err, replication.ErrUndoneBefore) {
		t.Fatalf("a failing flashback: %v, want an error", err)
	}
	if got := checksum("db2", "sandbox.acct"); got != sumBefore {
		t.Fatal("a failing flashback changed rows")
	}
	for _, table := range []string{"sandbox.acct", "baton.heartbeat_test"} {
		if a, b := checksum("db1", table), checksum("db2", table); a != b {
			t.Errorf("%s after the flashback: checksum %s on db2, %s on db1", table, b, a)
		}
	}
	ev, err = c.inst["db2"].InspectErrant(ctx, primary, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.inst["db2"].RepairErrant(ctx, ev, true); err != nil {
		t.Fatal(err)
	}
	twice(t, "Follow db1", func(ctx2 context.Context) error { return c.inst["db2"].Follow(ctx2, c.source("db1"), nil) })
	c.exec(t, "db1", "UPDATE sandbox.acct SET v='later' WHERE id IN (2,3)", "UPDATE baton.heartbeat_test SET seq = 5 WHERE node = 'db2'")
	waitAll(t, c, "db1", "db2")
	st := c.status(t, "db2")
	if st.LastSQLErrno != 0 || st.SQLThread != replication.ThreadRunning {
		t.Fatalf("db2 after the undo: SQL thread %s, error %d %q", st.SQLThread, st.LastSQLErrno, st.LastSQLError)
	}
	for _, table := range []string{"sandbox.acct", "baton.heartbeat_test"} {
		if a, b := checksum("db1", table), checksum("db2", table); a != b {
			t.Errorf("%s after the primary's later writes: checksum %s on db2, %s on db1", table, b, a)
		}
	}

	// An errant write to a MyISAM table: no rollback could take its undo back, so
	// the evidence says so and Flashback writes nothing.
	c.exec(t, "db1", "CREATE TABLE sandbox.plain (id INT PRIMARY KEY) ENGINE=MyISAM")
	waitAll(t, c, "db1", "db2")
	primary = c.status(t, "db1").Server()
	twice(t, "StopIO db2", c.inst["db2"].StopIO)
	c.exec(t, "db2", "STOP SLAVE", "INSERT INTO sandbox.plain VALUES (1)")
	ev, err = c.inst["db2"].InspectErrant(ctx, primary, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if real := ev.Real(); len(real) != 1 || !real[0].RowsOnly || real[0].Transactional || strings.Join(real[0].Tables, ",") != "sandbox.plain" {
		t.Fatalf("a MyISAM insert: %+v, want one real row change, not transactional", ev.Txns)
	}
	fb2 := filepath.Join(dir, "archive", "db2-myisam-flashback.sql")
	if err := tools.Flashback(ctx, ev, primary, fb2); !errors.Is(err, replication.ErrNotUndoable) {
		t.Fatalf("flashback of a MyISAM insert: %v, want ErrNotUndoable", err)
	}
	// One statement that changes an InnoDB table and a MyISAM one: whatever ends its
	// binlog group, one of its tables is not InnoDB, so it is not transactional.
	c.exec(t, "db2", "UPDATE sandbox.acct a, sandbox.plain p SET a.v = 'mixed', p.id = 3 WHERE a.id = 1 AND p.id = 1")
	ev, err = c.inst["db2"].InspectErrant(ctx, primary, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var mixed *replication.ErrantTxn
	for i, tx := range ev.Txns {
		if tx.Kind == replication.ErrantReal && len(tx.Tables) == 2 {
			mixed = &ev.Txns[i]
		}
	}
	if mixed == nil || mixed.Transactional || !mixed.RowsOnly {
		t.Fatalf("an update of an InnoDB and a MyISAM table: %+v, want one real row change of two tables, not transactional", ev.Txns)
	}
}
