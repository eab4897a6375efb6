//go:build integration

package failover_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// failOverOnFullDisk fills db1's disk under a writer and waits until db1 is fenced
// off and another node is the writable primary; it returns that node.
func failOverOnFullDisk(t *testing.T, c sbCluster, w *sandbox.Writer) string {
	t.Helper()
	ctx := context.Background()
	sandboxtest.WaitFor(t, 5*time.Second, "writes acknowledged before the fault", func() bool { return len(w.Acks()) > 20 })
	if err := c.Fault(ctx, "db1", sandbox.DiskFull); err != nil {
		t.Fatal(err)
	}
	var primary string
	sandboxtest.WaitFor(t, 20*time.Second, "a failover away from db1", func() bool {
		snap := c.snapshot(t)
		primary = snap.Primary.Node
		n, ok := snap.Nodes["db1"]
		return primary != "db1" && snap.Leader == primary && ok && n.Role != cluster.RolePrimary && n.Role != cluster.RoleUnknown
	})
	return primary
}

// checkReplica holds a rejoined node to what any replica must be: its GTID set within
// the primary's, both threads running from the primary, the semi-sync replica side on.
func checkReplica(t *testing.T, c sbCluster, node, primary string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status := func(name string) replication.Status {
		in, err := replication.New(sandboxtest.RootDB(t, c.Cluster, name), replication.Config{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		st, err := in.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	pn, err := c.Node(primary)
	if err != nil {
		t.Fatal(err)
	}
	var st replication.Status
	sandboxtest.WaitFor(t, 10*time.Second, node+" caught up with "+primary, func() bool {
		st = status(node)
		return status(primary).Executed.Contain(st.Executed) && st.Executed.Contain(status(primary).Executed)
	})
	if st.Role != replication.RoleReplica || st.IOThread != replication.ThreadRunning || st.SQLThread != replication.ThreadRunning ||
		st.SourceHost != pn.IP || !st.ReadOnly {
		t.Errorf("%s: role %s, IO %s, SQL %s, source %s, read_only %v: want a read_only replica of %s, both threads running",
			node, st.Role, st.IOThread, st.SQLThread, st.SourceHost, st.ReadOnly, primary)
	}
	if !st.SemiSync.ReplicaEnabled || !st.SemiSync.ReplicaActive {
		t.Errorf("%s: semi-sync replica side enabled %v, active %v: want both", node, st.SemiSync.ReplicaEnabled, st.SemiSync.ReplicaActive)
	}
	if !st.GTIDStrictMode {
		t.Errorf("%s: gtid_strict_mode off", node)
	}
}

// TestRejoinAfterDiskFull: the old primary, failed over for a full disk and
// quarantined for the phantom GTIDs of the writes the fence killed, rejoins as a
// replica by itself once its disk is freed, with nothing lost, and the history says
// so.
func TestRejoinAfterDiskFull(t *testing.T) {
	c := upCluster(t, "rjdf", 1)
	ctx := context.Background()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	primary := failOverOnFullDisk(t, c, w)
	quarantined := false
	sandboxtest.WaitFor(t, 10*time.Second, "db1 quarantined, its errant GTIDs looked up", func() bool {
		n := c.snapshot(t).Nodes["db1"]
		quarantined = n.Role == cluster.RoleQuarantined
		return quarantined && len(n.ErrantTxns) > 0
	})
	for _, tx := range c.snapshot(t).Nodes["db1"].ErrantTxns {
		if tx.Kind != replication.ErrantPhantom {
			t.Errorf("errant %+v: want every one a phantom", tx)
		}
	}
	time.Sleep(time.Second) // the disk is still full: it must stay quarantined
	if n := c.snapshot(t).Nodes["db1"]; n.Role != cluster.RoleQuarantined {
		t.Fatalf("db1 is %s with its disk still full, want quarantined", n.Role)
	}
	freed := time.Now()
	if err := c.Fault(ctx, "db1", sandbox.FreeDisk); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 30*time.Second, "db1 rejoining by itself", func() bool {
		n := c.snapshot(t).Nodes["db1"]
		return n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning
	})
	t.Logf("db1 rejoined %s after its disk was freed", time.Since(freed).Round(time.Millisecond))
	w.Stop()
	checkReplica(t, c, "db1", primary)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, node := range []string{primary, "db1"} {
		lost, err := w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, node))
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes are not on %s: %v", len(lost), node, lost)
		}
	}
	hist, err := c.store.History(qctx, 1)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history: %v %v", hist, err)
	}
	if ev := hist[0]; ev.Kind != cluster.EventRejoin || ev.From != "db1" || ev.To != primary || ev.Manual ||
		len(ev.Discarded) == 0 || !strings.Contains(ev.Reason, "phantom") {
		t.Errorf("history event %+v: want an automatic rejoin of db1 listing the phantom GTIDs", ev)
	}
}

// TestRejoinDiscardErrant: a SUPER user writes on the fenced old primary after the
// failover (once its disk has room again): a real errant transaction. The node stays
// quarantined, `baton rejoin` refuses without --discard-errant, and with it the node
// rejoins and the history lists the discarded GTIDs.
func TestRejoinDiscardErrant(t *testing.T) {
	// A person decides on real errant transactions (the rejoin mode manual).
	c := upClusterSpec(t, sandbox.Spec{Name: "rjer", Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, EtcdMembers: 1, ManualRejoin: true})
	ctx := context.Background()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	primary := failOverOnFullDisk(t, c, w)
	// Its agent stopped, so that it does not repair the phantoms before the write.
	sandboxtest.WaitFor(t, 10*time.Second, "db1 fenced", func() bool {
		return c.snapshot(t).Nodes["db1"].Role == cluster.RoleQuarantined
	})
	for _, f := range []sandbox.Fault{sandbox.KillAgent, sandbox.FreeDisk} {
		if err := c.Fault(ctx, "db1", f); err != nil {
			t.Fatal(err)
		}
	}
	db := sandboxtest.RootDB(t, c.Cluster, "db1")
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// On one connection, made now: the fence killed the pool's older ones. The
	// semi-sync source side is still on (nothing turns it off on a quarantined node):
	// off first, or the commit waits for an acknowledgement no replica sends.
	var errantGTID string
	sandboxtest.WaitFor(t, 15*time.Second, "the SUPER user's write on db1", func() bool {
		conn, err := db.Conn(qctx)
		if err != nil {
			return false
		}
		defer conn.Close()
		if _, err := conn.ExecContext(qctx, "SET GLOBAL rpl_semi_sync_master_enabled = OFF"); err != nil {
			return false
		}
		if _, err := conn.ExecContext(qctx, "INSERT INTO sandbox.t(v) VALUES ('errant')"); err != nil {
			t.Logf("write on db1: %v", err)
			return false
		}
		return conn.QueryRowContext(qctx, "SELECT @@gtid_binlog_pos").Scan(&errantGTID) == nil
	})
	if err := c.Fault(ctx, "db1", sandbox.StartAgent); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 15*time.Second, "db1 quarantined, its errant GTIDs looked up", func() bool {
		n := c.snapshot(t).Nodes["db1"]
		return n.Role == cluster.RoleQuarantined && len(n.ErrantTxns) > 0
	})
	time.Sleep(2 * time.Second) // the disk has room: it must stay quarantined all the same
	n := c.snapshot(t).Nodes["db1"]
	if n.Role != cluster.RoleQuarantined {
		t.Fatalf("db1 is %s after a real errant write, want quarantined", n.Role)
	}
	real := 0
	for _, tx := range n.ErrantTxns {
		if tx.Kind != replication.ErrantPhantom {
			real++
		}
	}
	if real == 0 {
		t.Fatalf("errant %+v: want the SUPER user's write (%s) reported as not a phantom", n.ErrantTxns, errantGTID)
	}

	out, errOut, code := runBaton(t, c, "rejoin", "db1", "--yes")
	if code != 1 || !strings.Contains(errOut, "--discard-errant") {
		t.Fatalf("baton rejoin without --discard-errant: exit %d, stdout %q, stderr %q: want refused (1) naming --discard-errant", code, out, errOut)
	}
	if _, _, code := runBaton(t, c, "rejoin", primary, "--discard-errant", "--yes"); code != 1 {
		t.Errorf("baton rejoin of the primary of record: exit %d, want refused (1)", code)
	}
	if _, _, code := runBaton(t, c, "rejoin", "db9", "--yes"); code != 2 {
		t.Errorf("baton rejoin of an unknown node: exit %d, want bad input (2)", code)
	}
	if n := c.snapshot(t).Nodes["db1"]; n.Role != cluster.RoleQuarantined {
		t.Fatalf("db1 is %s after refused requests, want quarantined", n.Role)
	}

	out, errOut, code = runBaton(t, c, "rejoin", "db1", "--discard-errant", "--yes")
	if code != 0 {
		t.Fatalf("baton rejoin --discard-errant: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Logf("baton rejoin --discard-errant:\n%s", out)
	sandboxtest.WaitFor(t, 15*time.Second, "db1 replicating", func() bool {
		n := c.snapshot(t).Nodes["db1"]
		return n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning
	})
	w.Stop()
	checkReplica(t, c, "db1", primary)
	hist, err := c.store.History(qctx, 1)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history: %v %v", hist, err)
	}
	ev := hist[0]
	if ev.Kind != cluster.EventRejoin || !ev.Manual || !slices.Contains(ev.Discarded, errantGTID) {
		t.Errorf("history event %+v: want a manual rejoin discarding %s", ev, errantGTID)
	}
	lost, err := w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, primary))
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes are not on %s", len(lost), primary)
	}
	if rec, ok := c.snapshot(t).ErrantRecords["db1"]; ok {
		t.Errorf("errant record %+v still there after db1 rejoined", rec)
	}
}

// TestRejoinPurgedRealErrant: the old primary holds a real errant transaction,
// complete in its binary log; its agent finds it real and records that. Then what a
// DBA does to free a disk: FLUSH BINARY LOGS; PURGE BINARY LOGS TO the newest, and
// the agent restarts. The transaction is in no binary log now, but it stays real
// (never a phantom), nothing resets the server's binlog GTID state, and only an
// operator's discard makes the node rejoin.
func TestRejoinPurgedRealErrant(t *testing.T) {
	c := upClusterSpec(t, sandbox.Spec{Name: "rjpg", Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, EtcdMembers: 1, ManualRejoin: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// db1's agent gone, its server healthy: an operator's forced failover fences it
	// over the network and promotes another node.
	if err := c.Fault(ctx, "db1", sandbox.KillAgent); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 10*time.Second, "db1's agent gone from etcd", func() bool {
		_, ok := c.snapshot(t).Nodes["db1"]
		return !ok
	})
	if out, errOut, code := runBaton(t, c, "failover", "--force", "--yes"); code != 0 {
		t.Fatalf("baton failover --force: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	primary := c.snapshot(t).Primary.Node
	if primary == "db1" {
		t.Fatal("db1 still the primary of record after the failover")
	}
	// A real errant transaction on db1 (fenced read_only; root writes all the same).
	db := sandboxtest.RootDB(t, c.Cluster, "db1")
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var errantGTID, stateBefore string
	for _, q := range []string{"SET GLOBAL rpl_semi_sync_master_enabled = OFF", "INSERT INTO sandbox.t(v) VALUES ('errant, then purged')"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s on db1: %v", q, err)
		}
	}
	if err := conn.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos, @@gtid_binlog_state").Scan(&errantGTID, &stateBefore); err != nil {
		t.Fatal(err)
	}
	if err := c.Fault(ctx, "db1", sandbox.StartAgent); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 15*time.Second, "db1 quarantined, "+errantGTID+" found real and recorded", func() bool {
		snap := c.snapshot(t)
		rec, ok := snap.ErrantRecords["db1"]
		return snap.Nodes["db1"].Role == cluster.RoleQuarantined && ok && slices.Contains(rec.Real, errantGTID)
	})
	lease := c.snapshot(t).NodeLeases["db1"]

	// Rotate and purge as a DBA does, again while a dump thread still holds the old
	// file (the agent's own lookup of its errant GTIDs reads the binary log as a
	// replica would, and the server may not have ended that thread yet).
	if err := c.Fault(ctx, "db1", sandbox.PurgeBinlogs); err != nil {
		t.Fatal(err)
	}
	var newest, pos, doDB, ignoreDB string
	if err := conn.QueryRowContext(ctx, "SHOW MASTER STATUS").Scan(&newest, &pos, &doDB, &ignoreDB); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	for rows.Next() {
		var name, size string
		if err := rows.Scan(&name, &size); err != nil {
			t.Fatal(err)
		}
		logs = append(logs, name)
	}
	rows.Close()
	if len(logs) != 1 || logs[0] != newest {
		t.Fatalf("binary logs after the purge: %v, want only %s", logs, newest)
	}
	for _, f := range []sandbox.Fault{sandbox.KillAgent, sandbox.StartAgent} {
		if err := c.Fault(ctx, "db1", f); err != nil {
			t.Fatal(err)
		}
	}
	sandboxtest.WaitFor(t, 15*time.Second, "db1's restarted agent looking its errant GTIDs up", func() bool {
		snap := c.snapshot(t)
		n, ok := snap.Nodes["db1"]
		return ok && snap.NodeLeases["db1"] != lease && n.Role == cluster.RoleQuarantined && len(n.ErrantTxns) > 0
	})
	time.Sleep(3 * time.Second) // several passes: time to repair, if it (wrongly) would
	n := c.snapshot(t).Nodes["db1"]
	if n.Role != cluster.RoleQuarantined {
		t.Errorf("db1 is %s after its binary logs were purged and its agent restarted, want quarantined", n.Role)
	}
	found := false
	for _, tx := range n.ErrantTxns {
		if tx.Kind == replication.ErrantPhantom {
			t.Errorf("errant %+v: a purged GTID taken for a phantom", tx)
		}
		if tx.GTID == errantGTID {
			found = true
			if tx.Kind != replication.ErrantReal || !strings.Contains(tx.Note, "recorded") {
				t.Errorf("errant %+v: want it still real, from the recorded finding", tx)
			}
		}
	}
	if !found {
		t.Errorf("errant %+v: %s not listed", n.ErrantTxns, errantGTID)
	}
	var stateAfter string
	if err := conn.QueryRowContext(ctx, "SELECT @@gtid_binlog_state").Scan(&stateAfter); err != nil {
		t.Fatal(err)
	}
	if stateAfter != stateBefore {
		t.Fatalf("db1's gtid_binlog_state went from %s to %s over a real errant transaction (%s)", stateBefore, stateAfter, errantGTID)
	}
	t.Logf("after the purge and an agent restart: quarantined, gtid_binlog_state %s, errant %+v", stateAfter, n.ErrantTxns)

	// The operator's discard still works on purged binary logs.
	out, errOut, code := runBaton(t, c, "rejoin", "db1", "--discard-errant", "--yes")
	if code != 0 {
		t.Fatalf("baton rejoin --discard-errant: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	sandboxtest.WaitFor(t, 15*time.Second, "db1 replicating", func() bool {
		n := c.snapshot(t).Nodes["db1"]
		return n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning
	})
	checkReplica(t, c, "db1", primary)
	if rec, ok := c.snapshot(t).ErrantRecords["db1"]; ok {
		t.Errorf("errant record %+v still there after db1 rejoined", rec)
	}
}

// runBaton runs the baton binary against the cluster; stdin is not a terminal.
func runBaton(t *testing.T, c sbCluster, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sandboxtest.Binary(t), args...)
	cmd.Env = append(os.Environ(), "BATON_ETCD="+strings.Join(c.Etcd, ","), "BATON_CLUSTER="+c.Name)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run baton %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestCutPrimaryRejoinsByItself: the primary is cut off the network while a
// client's commits are binlogged on it and wait for a semi-sync acknowledgement
// that cannot come; the replicas fail it over. Once the network heals, the old
// primary has real errant transactions (those commits, and Baton's own heartbeat
// writes): with the rejoin mode archive-and-repair (the sandbox's), it archives
// them, undoes them in place and follows the new primary, with no operator step.
// The archive holds every GTID it undid, and no acknowledged write is lost.
func TestCutPrimaryRejoinsByItself(t *testing.T) {
	c := upCluster(t, "rjcut", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	sandboxtest.WaitFor(t, 5*time.Second, "writes acknowledged before the fault", func() bool { return len(w.Acks()) > 20 })
	if err := c.Fault(ctx, "db1", sandbox.CutNetwork); err != nil {
		t.Fatal(err)
	}
	// One more commit straight on db1 (its socket, not the cut network), certain to
	// be binlogged there and to wait for an acknowledgement no replica can send.
	db := sandboxtest.RootDB(t, c.Cluster, "db1")
	go func() {
		wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
		defer wcancel()
		_, _ = db.ExecContext(wctx, "INSERT INTO sandbox.t(v) VALUES ('cut off, never acknowledged')")
	}()
	var primary string
	sandboxtest.WaitFor(t, 30*time.Second, "a failover away from db1", func() bool {
		snap := c.snapshot(t)
		primary = snap.Primary.Node
		return primary != "db1" && snap.Leader == primary
	})
	time.Sleep(time.Second)
	if err := c.Fault(ctx, "db1", sandbox.HealNetwork); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	var ev *cluster.Event
	sandboxtest.WaitFor(t, 60*time.Second, "db1 a replica again, its errant writes undone", func() bool {
		snap := c.snapshot(t)
		n := snap.Nodes["db1"]
		if n.Role != cluster.RoleReplica || !n.IORunning || !n.SQLRunning {
			return false
		}
		hist, err := c.store.History(ctx, 5)
		if err != nil {
			return false
		}
		for _, e := range hist {
			if e.Kind == cluster.EventRejoin && e.From == "db1" {
				ev = &e
				return true
			}
		}
		return false
	})
	t.Logf("db1 rejoined %s after the network healed: %s", time.Since(healed).Round(time.Millisecond), ev.Reason)
	if ev.Manual || ev.Archive == "" || !strings.Contains(ev.Reason, "undone in place") {
		t.Fatalf("rejoin event %+v: want an automatic undo naming its archive", ev)
	}
	archive, err := os.ReadFile(ev.Archive)
	if err != nil {
		t.Fatalf("the archive %s: %v", ev.Archive, err)
	}
	undone := 0
	for _, g := range ev.Discarded {
		if strings.Contains(string(archive), "GTID "+g+" ") {
			undone++
		}
	}
	if undone == 0 {
		t.Fatalf("the archive holds none of the forgotten GTIDs %v", ev.Discarded)
	}
	if !strings.Contains(string(archive), "cut off, never acknowledged") {
		t.Error("the archive lacks the commit made on db1 after the cut")
	}
	t.Logf("archive %s: %d bytes, %d of the %d forgotten GTIDs (the others were phantoms)", ev.Archive, len(archive), undone, len(ev.Discarded))
	w.Stop()
	checkReplica(t, c, "db1", primary)
	qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
	defer qcancel()
	for _, node := range []string{primary, "db1"} {
		lost, err := w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, node))
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes are not on %s: %v", len(lost), node, lost)
		}
	}
	var n int
	if err := db.QueryRowContext(qctx, "SELECT COUNT(*) FROM sandbox.t WHERE v = 'cut off, never acknowledged'").Scan(&n); err != nil || n != 0 {
		t.Errorf("the unacknowledged commit is still in db1's table (%d rows, %v): it was not undone", n, err)
	}
}
