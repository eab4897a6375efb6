//go:build integration

package failover_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/reconcile"
)

// checksums are CHECKSUM TABLE's answers for tables on db.
func checksums(t *testing.T, db *sql.DB, tables ...string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "CHECKSUM TABLE "+strings.Join(tables, ", "))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var sum sql.NullInt64
		if err := rows.Scan(&name, &sum); err != nil {
			t.Fatal(err)
		}
		out[name] = sum.Int64
	}
	return out
}

// sameData waits until node has the primary's data, table by table.
func sameData(t *testing.T, c sbCluster, node, primary string, tables ...string) {
	t.Helper()
	pdb, ndb := sandboxtest.RootDB(t, c.Cluster, primary), sandboxtest.RootDB(t, c.Cluster, node)
	var p, n map[string]int64
	sandboxtest.WaitFor(t, 20*time.Second, node+"'s data checksums equal to "+primary+"'s", func() bool {
		p, n = checksums(t, pdb, tables...), checksums(t, ndb, tables...)
		return fmt.Sprint(p) == fmt.Sprint(n)
	})
	t.Logf("checksums on %s and %s: %v", primary, node, p)
}

// rebuildEvent is the newest rebuild event of node in the history, nil when none.
func rebuildEvent(t *testing.T, c sbCluster, node string) *cluster.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hist, err := c.store.History(ctx, 10)
	if err != nil {
		return nil
	}
	for _, e := range hist {
		if e.Kind == cluster.EventRebuild && e.From == node {
			return &e
		}
	}
	return nil
}

// TestRebuildErrantDDL: a replica gets a DDL statement written on it directly: an
// errant transaction flashback cannot undo. Its agent finds it real, quarantines
// the node and, with the rejoin mode archive-and-repair (the sandbox's), rebuilds
// it by itself from the other replica while a writer goes on: the node replicates
// again, with the primary's data (checksums) and without the errant table; its old
// datadir is kept, whole, beside the new one; the errant transaction is archived;
// the history records the rebuild; no acknowledged write is lost.
func TestRebuildErrantDDL(t *testing.T) {
	c := upCluster(t, "rbddl", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w := c.NewWriter(20*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	sandboxtest.WaitFor(t, 10*time.Second, "writes acknowledged", func() bool { return len(w.Acks()) > 20 })
	primary := c.snapshot(t).Primary.Node
	if primary != "db1" {
		t.Fatalf("primary of record %s, want db1", primary)
	}
	db3 := sandboxtest.RootDB(t, c.Cluster, "db3")
	conn, err := db3.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var errantGTID string
	if _, err := conn.ExecContext(ctx, "CREATE TABLE sandbox.errant_ddl (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&errantGTID); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	t.Logf("errant DDL on db3: %s", errantGTID)
	n3, _ := c.Node("db3")
	datadir := n3.Datadir

	steps := map[cluster.RebuildStep]bool{}
	quarantined := false
	var ev *cluster.Event
	start := time.Now()
	sandboxtest.WaitFor(t, 3*time.Minute, "db3 rebuilt by itself and replicating", func() bool {
		n := c.snapshot(t).Nodes["db3"]
		quarantined = quarantined || n.Role == cluster.RoleQuarantined
		if p := n.Rebuild; p != nil {
			steps[p.Step] = true
		}
		if ev == nil {
			ev = rebuildEvent(t, c, "db3")
		}
		return ev != nil && n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning && n.Errant == ""
	})
	t.Logf("db3 rebuilt in %s (event: %s, steps seen in its status: %v)", time.Since(start).Round(time.Second), ev.Reason, steps)
	if !quarantined || len(steps) == 0 {
		t.Errorf("quarantined %v, rebuild steps seen %v: want the quarantine and the rebuild visible in the status", quarantined, steps)
	}
	if ev.Manual || ev.Donor != "db2" || ev.To != primary || ev.Bytes <= 0 || ev.Kept == "" || ev.Archive == "" {
		t.Errorf("event %+v: want an automatic rebuild of db3 from db2, with its bytes, the kept datadir and the archive", ev)
	}
	// The old datadir, kept whole beside the new one: it still holds the errant table.
	if filepath.Dir(ev.Kept) != filepath.Dir(datadir) {
		t.Errorf("old datadir kept at %s, not beside %s", ev.Kept, datadir)
	}
	if _, err := os.Stat(filepath.Join(ev.Kept, "sandbox", "errant_ddl.frm")); err != nil {
		t.Errorf("the kept datadir lacks the node's own errant table: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(datadir), "*.baton-new-*")); len(left) > 0 {
		t.Errorf("copies left: %v", left)
	}
	archive, err := os.ReadFile(ev.Archive)
	if err != nil || !strings.Contains(string(archive), "errant_ddl") {
		t.Errorf("archive %s: %v, holding the DDL %v", ev.Archive, err, strings.Contains(string(archive), "errant_ddl"))
	}
	w.Stop()
	checkReplica(t, c, "db3", primary)
	sameData(t, c, "db3", primary, "sandbox.writes", "sandbox.t", "mysql.user")
	var k int
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	defer qcancel()
	if err := db3.QueryRowContext(qctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'sandbox' AND TABLE_NAME = 'errant_ddl'").Scan(&k); err != nil || k != 0 {
		t.Errorf("db3 still has the errant table (%d, %v)", k, err)
	}
	for _, node := range []string{primary, "db3"} {
		lost, err := w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, node))
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes are not on %s", len(lost), node)
		}
	}
	if rec, ok := c.snapshot(t).ErrantRecords["db3"]; ok {
		t.Errorf("errant record %+v left after the rebuild", rec)
	}
}

// divergeRow makes node's copy of a row differ from the primary's without an
// errant GTID (deleted on node alone, unlogged), then has the primary change it:
// the node's SQL thread stops on error 1032, and its agent quarantines it for
// diverged data.
func divergeRow(t *testing.T, c sbCluster, node, primary string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sandboxtest.Exec(t, ctx, sandboxtest.RootDB(t, c.Cluster, primary), "INSERT INTO sandbox.t (id, v) VALUES (424242, 'to diverge')")
	ndb := sandboxtest.RootDB(t, c.Cluster, node)
	sandboxtest.WaitFor(t, 10*time.Second, node+" has the row", func() bool {
		var n int
		return ndb.QueryRowContext(ctx, "SELECT COUNT(*) FROM sandbox.t WHERE id = 424242").Scan(&n) == nil && n == 1
	})
	conn, err := ndb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION sql_log_bin = 0", "DELETE FROM sandbox.t WHERE id = 424242"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	sandboxtest.Exec(t, ctx, sandboxtest.RootDB(t, c.Cluster, primary), "UPDATE sandbox.t SET v = 'changed on the primary' WHERE id = 424242")
	sandboxtest.WaitFor(t, 20*time.Second, node+" quarantined for diverged data", func() bool {
		n := c.snapshot(t).Nodes[node]
		return n.Role == cluster.RoleQuarantined && strings.Contains(n.Reason, "diverged")
	})
}

// batonInBackground runs the baton binary against the cluster in the background;
// wait returns its outputs and exit code.
func batonInBackground(t *testing.T, c sbCluster, args ...string) (wait func() (string, string, int)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	cmd := exec.CommandContext(ctx, sandboxtest.Binary(t), args...)
	cmd.Env = append(os.Environ(), "BATON_ETCD="+strings.Join(c.Etcd, ","), "BATON_CLUSTER="+c.Name)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return func() (string, string, int) {
		defer cancel()
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return out.String(), errb.String(), 0
		case errors.As(err, &ee):
			return out.String(), errb.String(), ee.ExitCode()
		}
		t.Fatalf("run baton %v: %v", args, err)
		return "", "", -1
	}
}

// TestRebuildByHandAtTheWorstMoments: with the rejoin mode manual a diverged
// replica stays quarantined, its reason naming `baton rebuild`; the command refuses
// bad input and unsafe asks and changes nothing. Then a slow donor (1 MiB/s) and a
// rebuild by hand, interrupted at the worst moments, each during the copy: the
// donor's agent dies; the node's own agent dies and starts again; the node's disk
// fills. Each time the node keeps its old datadir and its running server, stays
// quarantined, and says why. Last, a switchover makes the donor the primary during
// the copy: the rebuild goes on, and the node follows the new primary with its data.
func TestRebuildByHandAtTheWorstMoments(t *testing.T) {
	c := upClusterSpec(t, sandbox.Spec{Name: "rbhand", Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, EtcdMembers: 1,
		ManualRejoin: true, RebuildMaxRate: "1MiB"})
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	divergeRow(t, c, "db3", "db1")
	if n := c.snapshot(t).Nodes["db3"]; !n.CanRebuild || !strings.Contains(n.Reason, "baton rebuild db3 --yes") {
		t.Fatalf("db3: can rebuild %v (%s), reason %q: want it able, naming the command", n.CanRebuild, n.RebuildUnable, n.Reason)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rebuild", "db9", "--yes"}, 2, "unknown node"},
		{[]string{"rebuild", "db3", "--from", "db9", "--yes"}, 2, "donor"},
		{[]string{"rebuild", "db1", "--yes"}, 1, "primary of record"},
		{[]string{"rebuild", "db3", "--from", "db1", "--yes"}, 1, "not a replica"},
		{[]string{"rebuild", "db3", "--from", "db3", "--yes"}, 2, "its own donor"},
	} {
		out, errOut, code := runBaton(t, c, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("baton %v: exit %d, stdout %q, stderr %q; want %d with %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
	if _, ok := c.snapshot(t).Rebuilds["db3"]; ok {
		t.Fatal("a refused command filed a request")
	}
	n3, _ := c.Node("db3")
	datadir := n3.Datadir
	// checkIntact holds db3 to what an interrupted rebuild leaves: quarantined, its
	// server running on its old datadir (the row deleted there still missing), no
	// copy left beside it, nothing kept aside, the failure said.
	checkIntact := func(why ...string) {
		t.Helper()
		var n cluster.NodeStatus
		sandboxtest.WaitFor(t, 90*time.Second, "db3's failed rebuild put back", func() bool {
			n = c.snapshot(t).Nodes["db3"]
			return n.Rebuild != nil && n.Rebuild.Step == cluster.RebuildFailed && n.ServerRead
		})
		said := false
		for _, w := range why {
			said = said || strings.Contains(n.Rebuild.Error, w)
		}
		if n.Role != cluster.RoleQuarantined || !said {
			t.Errorf("db3: role %s, rebuild %+v; want quarantined, failed with one of %q", n.Role, n.Rebuild, why)
		}
		t.Logf("db3 after the failure: %s", n.Rebuild.Error)
		var k int
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		defer qcancel()
		if err := sandboxtest.RootDB(t, c.Cluster, "db3").QueryRowContext(qctx, "SELECT COUNT(*) FROM sandbox.t WHERE id = 424242").Scan(&k); err != nil || k != 0 {
			t.Errorf("db3's data: the row it lacked is %d (%v): not its old datadir", k, err)
		}
		left, _ := filepath.Glob(filepath.Join(filepath.Dir(datadir), "*.baton-*"))
		if len(left) > 0 {
			t.Errorf("left beside the datadir: %v", left)
		}
	}
	// duringCopy starts a rebuild by hand and, once db3's status shows the copy
	// under way for a few seconds, runs fault; it returns the command's result.
	duringCopy := func(fault func()) (string, string, int) {
		t.Helper()
		// The donor must be fit when asked (the command refuses one that is not, as
		// it should): a freshly started cluster's replica is suspect until the
		// primary's bootstrap has made the storage probe's table and recover_after
		// rounds have passed.
		sandboxtest.WaitFor(t, 20*time.Second, "db2 a fit donor", func() bool {
			s := c.snapshot(t)
			return reconcile.DonorUnfit(s, "db3", "", s.Nodes["db2"]) == ""
		})
		wait := batonInBackground(t, c, "rebuild", "db3", "--from", "db2", "--yes")
		sandboxtest.WaitFor(t, 60*time.Second, "db3's copy under way", func() bool {
			p := c.snapshot(t).Nodes["db3"].Rebuild
			return p != nil && p.Step == cluster.RebuildStream
		})
		time.Sleep(3 * time.Second)
		if p := c.snapshot(t).Nodes["db3"].Rebuild; p == nil || p.Step != cluster.RebuildStream {
			t.Fatalf("the copy is over before the fault: %+v", p)
		}
		fault()
		return wait()
	}

	t.Run("the donor's agent dies mid-stream", func(t *testing.T) {
		killedLease := c.snapshot(t).NodeLeases["db2"]
		_, errOut, code := duringCopy(func() {
			if err := c.Fault(ctx, "db2", sandbox.KillAgent); err != nil {
				t.Fatal(err)
			}
		})
		if code != 1 || !strings.Contains(errOut, "failed") {
			t.Errorf("baton rebuild: exit %d, %q; want failed (1)", code, errOut)
		}
		checkIntact("copy db2's backup")
		if err := c.Fault(ctx, "db2", sandbox.StartAgent); err != nil {
			t.Fatal(err)
		}
		// The killed agent's status stays in etcd until its lease runs out: only the
		// new agent's (a new lease) says db2 gives backups again.
		sandboxtest.WaitFor(t, 20*time.Second, "db2 a donor again, by its new agent", func() bool {
			s := c.snapshot(t)
			n := s.Nodes["db2"]
			return s.NodeLeases["db2"] != 0 && s.NodeLeases["db2"] != killedLease && n.CanDonate && n.IORunning && n.SQLRunning && n.LagMS >= 0
		})
	})
	t.Run("the node's agent dies mid-stream and starts again", func(t *testing.T) {
		_, errOut, code := duringCopy(func() {
			for _, f := range []sandbox.Fault{sandbox.KillAgent, sandbox.StartAgent} {
				if err := c.Fault(ctx, "db3", f); err != nil {
					t.Fatal(err)
				}
			}
		})
		if code != 1 {
			t.Errorf("baton rebuild: exit %d, %q; want failed (1)", code, errOut)
		}
		checkIntact("the agent stopped during step stream")
	})
	t.Run("the node's disk fills during the copy", func(t *testing.T) {
		_, errOut, code := duringCopy(func() {
			if err := c.Fault(ctx, "db3", sandbox.DiskFull); err != nil {
				t.Fatal(err)
			}
		})
		if code != 1 {
			t.Errorf("baton rebuild: exit %d, %q; want failed (1)", code, errOut)
		}
		// Freed first: while its relay log waits for space the server's replication
		// status cannot be read.
		if err := c.Fault(ctx, "db3", sandbox.FreeDisk); err != nil {
			t.Fatal(err)
		}
		checkIntact("No space left on device", "Errcode: 28", "errno: 28", "error 28")
	})
	t.Run("a switchover to the donor during the copy", func(t *testing.T) {
		out, errOut, code := duringCopy(func() {
			if out, errOut, code := runBaton(t, c, "switchover", "--to", "db2", "--yes"); code != 0 {
				t.Fatalf("baton switchover: exit %d, %q %q", code, out, errOut)
			}
		})
		if code != 0 {
			t.Fatalf("baton rebuild: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		t.Logf("baton rebuild:\n%s", out)
		snap := c.snapshot(t)
		if snap.Primary.Node != "db2" {
			t.Fatalf("primary of record %s after the switchover, want db2", snap.Primary.Node)
		}
		ev := rebuildEvent(t, c, "db3")
		if ev == nil || !ev.Manual || ev.Donor != "db2" || ev.To != "db2" || !strings.Contains(ev.Reason, "moved to db2") {
			t.Fatalf("rebuild event %+v: want db3 rebuilt by hand from db2, following db2, the switchover said", ev)
		}
		if _, err := os.Stat(filepath.Join(ev.Kept, "ibdata1")); err != nil {
			t.Errorf("the old datadir kept at %s: %v", ev.Kept, err)
		}
		sandboxtest.WaitFor(t, 30*time.Second, "db3 replicating from db2", func() bool {
			n := c.snapshot(t).Nodes["db3"]
			return n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning
		})
		checkReplica(t, c, "db3", "db2")
		sameData(t, c, "db3", "db2", "sandbox.t", "sandbox.writes")
	})
}
