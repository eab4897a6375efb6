//go:build integration

package replication_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// TestRealWriteFarPastATornWrite: a write hung on a nearly full disk, killed (as a
// fence kills it), leaves the part of it that fit in the binary log, past the
// server's stated position: measured on MariaDB 10.11, 24 KiB free and a 200 KB
// write leave 8,766 bytes, and every later event lies that much further into the
// file than its stated position says. A real transaction committed once the disk
// has room must not be called a phantom (an automatic rejoin would reset it, and
// keep no copy of a phantom): the lookup finds it from the file's real end, not
// only within 4 KiB of the stated one.
func TestRealWriteFarPastATornWrite(t *testing.T) {
	sb := sandboxtest.Up(t, sandbox.Spec{Name: "torn", Nodes: 2})
	c := newCluster(t, sb)
	c.exec(t, "db1", "CREATE TABLE sandbox.bh (v LONGTEXT) ENGINE=BLACKHOLE")
	waitAll(t, c, "db1", "db2")
	primary := c.status(t, "db1").Server()
	c.exec(t, "db2", "STOP SLAVE")

	n2, err := sb.Node("db2")
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(n2.Mount, "torn-filler")
	fillLeaving(t, n2.Mount, filler, 24<<10)
	defer os.Remove(filler)

	// A 200 KB binlogged write (BLACKHOLE: nothing stored, all of it binlogged)
	// hangs waiting for space, with what fit already in the file.
	root := c.root["db2"]
	hung := make(chan error, 1)
	go func() {
		_, err := root.ExecContext(ctxFor(t, time.Minute), "INSERT INTO sandbox.bh VALUES (REPEAT('z', 200000))")
		hung <- err
	}()
	var id int64
	sandboxtest.WaitFor(t, 10*time.Second, "the write waiting for space", func() bool {
		err := root.QueryRowContext(ctxFor(t, time.Second),
			"SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for someone to free space' AND INFO LIKE 'INSERT INTO sandbox.bh%'").Scan(&id)
		return err == nil
	})
	if _, err := root.ExecContext(ctxFor(t, 5*time.Second), fmt.Sprintf("KILL %d", id)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-hung:
		t.Logf("the hung write ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the killed write did not end")
	}
	// Gone on the server before the disk has room, as a fence waits for its kills:
	// a session still waiting would finish its write whole once there is room.
	sandboxtest.WaitFor(t, 70*time.Second, "the killed session gone", func() bool {
		var n int
		err := root.QueryRowContext(ctxFor(t, time.Second), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n)
		return err == nil && n == 0
	})
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The real transaction, once the disk has room.
	c.exec(t, "db2", "INSERT INTO sandbox.t(v) VALUES ('real, after a torn write')")

	// The setup is what the test is about: a drift past 4 KiB.
	var file, pos, state string
	var ignore1, ignore2 sql.NullString
	if err := root.QueryRowContext(ctxFor(t, 5*time.Second), "SHOW MASTER STATUS").Scan(&file, &pos, &ignore1, &ignore2); err != nil {
		t.Fatal(err)
	}
	if err := root.QueryRowContext(ctxFor(t, 5*time.Second), "SELECT @@gtid_binlog_state").Scan(&state); err != nil {
		t.Fatal(err)
	}
	var logBin string
	if err := root.QueryRowContext(ctxFor(t, 5*time.Second), "SELECT @@log_bin_basename").Scan(&logBin); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(filepath.Dir(logBin), file))
	if err != nil {
		t.Fatal(err)
	}
	stated, _ := strconv.ParseInt(pos, 10, 64)
	if drift := fi.Size() - stated; drift <= 4096 {
		t.Fatalf("setup: the file is %d bytes, its stated end %d: a drift of %d bytes, not past 4 KiB", fi.Size(), stated, drift)
	}
	t.Logf("%s: %d bytes, stated end %d, gtid_binlog_state %s", file, fi.Size(), stated, state)
	last := state[strings.LastIndexByte(state, ',')+1:] // domain 0: 0-<server>-<seq>

	ev, err := c.inst["db2"].InspectErrant(ctxFor(t, time.Minute), primary, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tx := range ev.Txns {
		if tx.GTID != last {
			continue
		}
		found = true
		if tx.Kind == replication.ErrantPhantom {
			t.Fatalf("the real transaction %s, committed after the torn write, is called a phantom (%s); unreadable: %s", tx.GTID, tx.Note, ev.UnreadableTail)
		}
		t.Logf("%s: %s (%s)", tx.GTID, tx.Kind, tx.Note)
	}
	if !found {
		t.Fatalf("errant %+v: %s is not among them", ev.Txns, last)
	}
	if !strings.Contains(ev.UnreadableTail, "written after") {
		t.Errorf("unreadable part %q: want it seen with events written after it", ev.UnreadableTail)
	}
}

// fillLeaving fills the filesystem at mount with one file, path, until left bytes
// are free.
func fillLeaving(t *testing.T, mount, path string, left int64) {
	t.Helper()
	syscall.Sync()
	var st syscall.Statfs_t
	if err := syscall.Statfs(mount, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free <= left {
		t.Fatalf("%s has %d bytes free, not more than %d", mount, free, left)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-left); err != nil {
		t.Fatal(err)
	}
}
