//go:build integration

package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/internal/status"
)

// The operator commands, run as the real binary against real sandbox clusters (three
// MariaDB servers with semi-sync, their agents, a virtual IP, an embedded etcd).

func TestMain(m *testing.M) { sandboxtest.Main(m) }

type cliCluster struct {
	*sandbox.Cluster
	store *cluster.Store
}

// upCLICluster brings up a cluster for the operator commands. manualRejoin sets the
// cluster's rejoin mode to manual: a replica whose data diverged then stays
// quarantined, lagging, instead of being rebuilt by its agent within seconds.
func upCLICluster(t *testing.T, name string, manualRejoin bool) cliCluster {
	t.Helper()
	c := sandboxtest.Up(t, sandbox.Spec{Name: name, Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, ManualRejoin: manualRejoin})
	cli, err := c.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The sandbox's directory goes with it: keep what the agents warned about.
		for _, n := range c.Nodes {
			b, err := os.ReadFile(n.AgentLog)
			if err != nil {
				t.Logf("agent log of %s: %v", n.Name, err)
				continue
			}
			var lines []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"msg":"step"`) {
					lines = append(lines, l)
				}
			}
			t.Logf("agent log of %s, warnings and steps (last 40):\n%s", n.Name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	cc := cliCluster{Cluster: c, store: cluster.NewStore(cli, c.Name)}
	cc.waitHealthy(t, "db1", 30*time.Second)
	return cc
}

// baton runs the binary with the cluster in its environment; stdin is not a terminal.
func (c cliCluster) baton(t *testing.T, args ...string) (stdout, stderr string, code int) {
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

func (c cliCluster) snapshot(t *testing.T) cluster.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := c.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// healthy says whether primary is the writable primary of record and every other node
// replicates from it, both threads running, caught up; "" when so, else what is not.
func healthyCluster(snap cluster.Snapshot, primary string) string {
	if snap.Primary.Node != primary || snap.Leader != primary || snap.Intent != nil {
		return "primary " + snap.Primary.Node + ", leader " + snap.Leader
	}
	if len(snap.Nodes) != 3 {
		return "not every agent is publishing"
	}
	for _, n := range snap.Nodes {
		if n.Verdict != detector.Healthy {
			return n.Node + " is " + n.Verdict.String()
		}
		if n.Node == primary {
			continue
		}
		if n.Role != cluster.RoleReplica || n.Source != snap.Primary.Addr || !n.IORunning || !n.SQLRunning ||
			n.LagMS < 0 || n.LagMS > 500 || !n.StorageOK {
			b, _ := json.Marshal(n)
			return "replica not in line: " + string(b)
		}
	}
	return ""
}

func (c cliCluster) waitHealthy(t *testing.T, primary string, limit time.Duration) {
	t.Helper()
	var why string
	deadline := time.Now().Add(limit)
	for {
		if why = healthyCluster(c.snapshot(t), primary); why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not healthy with primary %s within %s: %s", primary, limit, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unchanged checks that the primary of record is still want and no request was filed.
func (c cliCluster) unchanged(t *testing.T, want cluster.Primary, what string) {
	t.Helper()
	snap := c.snapshot(t)
	if snap.Primary.Node != want.Node || snap.Primary.Epoch != want.Epoch {
		t.Errorf("%s changed the primary: %s epoch %d, want %s epoch %d", what, snap.Primary.Node, snap.Primary.Epoch, want.Node, want.Epoch)
	}
	if snap.Request != nil && snap.Request.State == cluster.RequestPending {
		t.Errorf("%s left a pending request: %+v", what, snap.Request)
	}
}

// oneLine checks an error message is one line that mentions want.
func oneLine(t *testing.T, what, stderr, want string) {
	t.Helper()
	s := strings.TrimRight(stderr, "\n")
	if s == "" || strings.Contains(s, "\n") || !strings.Contains(s, want) {
		t.Errorf("%s: stderr = %q, want one line mentioning %q", what, stderr, want)
	}
}

// gapDuring is the longest time between two acknowledged writes around [from, to].
func gapDuring(acks []sandbox.Ack, from, to time.Time) time.Duration {
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		if acks[i].At.Before(from) || acks[i-1].At.After(to) {
			continue
		}
		gap = max(gap, acks[i].At.Sub(acks[i-1].At))
	}
	return gap
}

// TestSwitchover: pre-checks and refusals change nothing; two switchovers in a row
// each hand writes over from the old primary to the new one (never both), lose none,
// and leave the old primary following the new one. How long writes were blocked is
// logged: it is a benchmark's figure (docs/BENCHMARKS.md), not what this test holds
// the code to.
func TestSwitchover(t *testing.T) {
	// Manual rejoin: the subtest that breaks a replica needs it to stay broken and
	// lagging; with archive-and-repair its agent rebuilt it before the lag showed.
	c := upCLICluster(t, "cli-sw", true)
	ctx := context.Background()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	sandboxtest.WaitFor(t, 5*time.Second, "writes acknowledged", func() bool { return len(w.Acks()) > 20 })
	start := c.snapshot(t).Primary
	if start.Node != "db1" || start.Epoch != 1 {
		t.Fatalf("primary at start = %s epoch %d, want db1 epoch 1", start.Node, start.Epoch)
	}

	t.Run("bad input: exit 2, one line, nothing changed", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"unknown node", []string{"switchover", "--to", "db9", "--yes"}, `unknown node "db9"`},
			{"bad flag", []string{"switchover", "--to", "db2", "--yes", "--bogus"}, "flag provided but not defined: -bogus"},
			{"bad flag value", []string{"switchover", "--to", "db2", "--timeout", "soon"}, `invalid value "soon"`},
			{"etcd unreachable", []string{"switchover", "--to", "db2", "--yes", "--etcd", "unix:///nonexistent:2379"}, "unreachable"},
			{"no terminal and no --yes", []string{"switchover", "--to", "db2"}, "pass --yes"},
			{"stray argument", []string{"switchover", "db2", "--yes"}, "--to"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, stderr, code := c.baton(t, tc.args...)
				if code != exitBadInput {
					t.Errorf("exit %d, want %d; stdout %q stderr %q", code, exitBadInput, out, stderr)
				}
				oneLine(t, tc.name, stderr, tc.want)
				if strings.Contains(out, "USAGE") || strings.Contains(out, "Incorrect Usage") {
					t.Errorf("usage text printed on a bad flag: %q", out)
				}
				c.unchanged(t, start, tc.name)
			})
		}
	})

	t.Run("dry run shows every pre-check and changes nothing", func(t *testing.T) {
		out, stderr, code := c.baton(t, "switchover", "--to", "db2", "--dry-run")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, stderr)
		}
		t.Logf("switchover --dry-run:\n%s", out)
		for _, want := range []string{"plan: switchover from db1 (epoch 1) to db2 (dry run)", "db2 (target): ", "ms behind, IO/SQL running, healthy, storage ok, no errant GTIDs",
			"verdict: safe", "nothing changed"} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run output lacks %q", want)
			}
		}
		c.unchanged(t, start, "dry run")
	})

	t.Run("failover of a healthy primary without --force is refused", func(t *testing.T) {
		out, stderr, code := c.baton(t, "failover", "--yes")
		if code != exitRefused {
			t.Errorf("exit %d, want %d: %s%s", code, exitRefused, out, stderr)
		}
		oneLine(t, "failover", stderr, "is healthy")
		c.unchanged(t, start, "failover without --force")
	})

	switchover := func(t *testing.T, from, to string, epoch uint64) requestResult {
		t.Helper()
		began := time.Now()
		out, stderr, code := c.baton(t, "switchover", "--to", to, "--yes", "--json")
		ended := time.Now()
		var res requestResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("switchover --json output %q (stderr %q): %v", out, stderr, err)
		}
		if code != 0 || !res.OK {
			t.Fatalf("switchover to %s: exit %d, %s%s", to, code, out, stderr)
		}
		if res.From != from || res.To != to || res.Epoch != epoch || len(res.Steps) < 5 || res.Error != "" {
			t.Errorf("result = %+v, want %s -> %s epoch %d with its steps", res, from, to, epoch)
		}
		// The writer's own view: the longest pause between acknowledged writes, and the
		// handover: the old primary's last acknowledged write, the new one's first.
		fromID, toID := uint32(mustNode(t, c, from).ServerID), uint32(mustNode(t, c, to).ServerID)
		sandboxtest.WaitFor(t, 20*time.Second, "a write acknowledged by "+to, func() bool {
			_, ok := w.FirstAckAfter(began, fromID)
			return ok
		})
		acks := w.Acks()
		gap := gapDuring(acks, began, ended)
		var lastOld, firstNew sandbox.Ack
		for _, a := range acks {
			if a.ServerID == fromID {
				lastOld = a
			}
			if a.ServerID == toID && firstNew.Seq == 0 && !a.At.Before(began) {
				firstNew = a
			}
		}
		handover := firstNew.At.Sub(lastOld.At)
		var steps []string
		for _, s := range res.Steps {
			steps = append(steps, s.Name+" "+time.Duration(s.TookMS*int64(time.Millisecond)).String())
		}
		t.Logf("switchover %s -> %s: command %d ms, flow %d ms, write_block_ms %d; writer: longest gap %s, last write on %s to first on %s %s; steps: %s",
			from, to, res.TotalMS, res.FlowMS, res.WriteBlockMS, gap.Round(time.Millisecond), from, to, handover.Round(time.Millisecond), strings.Join(steps, ", "))
		if res.WriteBlockMS <= 0 {
			t.Errorf("write_block_ms = %d, want the flow's measure of it (a promote step done)", res.WriteBlockMS)
		}
		if handover <= 0 {
			t.Errorf("%s acknowledged write %d at %s, after %s's first (%d at %s): two primaries took writes",
				from, lastOld.Seq, lastOld.At.Format("15:04:05.000"), to, firstNew.Seq, firstNew.At.Format("15:04:05.000"))
		}
		// The old primary becomes a replica of the new one, and every replica follows it.
		c.waitHealthy(t, to, 15*time.Second)
		return res
	}

	t.Run("switchover to db2, then back to db1", func(t *testing.T) {
		switchover(t, "db1", "db2", 2)
		switchover(t, "db2", "db1", 3)
	})
	if t.Failed() {
		return
	}

	t.Run("no acknowledged write lost, replication healthy", func(t *testing.T) {
		db, err := c.RootDB("db1")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		sandboxtest.WaitFor(t, 20*time.Second, "writes acknowledged by db1 again", func() bool {
			acks := w.Acks()
			return len(acks) > 0 && acks[len(acks)-1].ServerID == uint32(mustNode(t, c, "db1").ServerID)
		})
		// Stopped first: a write acknowledged a moment before Lost reads the rows was
		// once not yet visible to it, though every server had it a moment later.
		w.Stop()
		time.Sleep(100 * time.Millisecond)
		lost, err := w.Lost(qctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes are not on db1: %v", len(lost), lost)
			c.explainLost(t, w, lost)
		}
		t.Logf("%d writes acknowledged, longest gap %s", len(w.Acks()), w.MaxGap().Round(time.Millisecond))
		for _, name := range []string{"db2", "db3"} {
			rdb, err := c.RootDB(name)
			if err != nil {
				t.Fatal(err)
			}
			var io, sqlRunning string
			cols, rows := showSlaveStatus(t, qctx, rdb)
			rdb.Close()
			for i, col := range cols {
				switch col {
				case "Slave_IO_Running":
					io = rows[i]
				case "Slave_SQL_Running":
					sqlRunning = rows[i]
				}
			}
			if io != "Yes" || sqlRunning != "Yes" {
				t.Errorf("%s: Slave_IO_Running %q, Slave_SQL_Running %q, want Yes/Yes", name, io, sqlRunning)
			}
		}
	})

	t.Run("history lists both switchovers, newest first", func(t *testing.T) {
		out, stderr, code := c.baton(t, "history", "--json", "--limit", "2")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var events []historyEvent
		if err := json.Unmarshal([]byte(out), &events); err != nil {
			t.Fatal(err)
		}
		if len(events) != 2 || events[0].To != "db1" || events[1].To != "db2" || events[0].Kind != "switchover" ||
			!events[0].Manual || events[0].WriteBlockMS == nil || len(events[0].Steps) < 5 {
			t.Errorf("history = %s, want the switchover to db1 then the one to db2", out)
		}
		out, _, _ = c.baton(t, "history", "--limit", "1")
		t.Logf("history --limit 1:\n%s", out)
	})

	t.Run("switchover to a replica whose SQL thread stopped and lags is refused", func(t *testing.T) {
		before := c.snapshot(t).Primary
		mend := breakReplica(t, c, before.Node, "db2")
		sandboxtest.WaitFor(t, 15*time.Second, "db2 published with its SQL thread stopped and lagging", func() bool {
			n := c.snapshot(t).Nodes["db2"]
			return !n.SQLRunning && n.LagMS > 1000
		})
		out, stderr, code := c.baton(t, "switchover", "--to", "db2", "--yes")
		t.Logf("switchover to the broken replica:\n%s%s", out, stderr)
		if code != exitRefused {
			t.Errorf("exit %d, want %d", code, exitRefused)
		}
		oneLine(t, "refusal", stderr, "refused")
		// The agent quarantines the replica for diverged data (a duplicate key) and
		// stops restarting its SQL thread; the lag, past switchover_max_lag, stays.
		if !strings.Contains(out, "FAIL db2 (target)") || !strings.Contains(out, "ms behind (over 1s)") {
			t.Errorf("the plan does not show db2's failing checks: %q", out)
		}
		c.unchanged(t, before, "refused switchover")
		mend()
		c.waitHealthy(t, before.Node, 15*time.Second)
	})
}

// explainLost says, for each lost write, when and by which server it was acknowledged
// and which servers have it.
func (c cliCluster) explainLost(t *testing.T, w *sandbox.Writer, lost []int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acks := map[int64]sandbox.Ack{}
	for _, a := range w.Acks() {
		acks[a.Seq] = a
	}
	for _, seq := range lost {
		var on []string
		for _, n := range c.Nodes {
			db, err := c.RootDB(n.Name)
			if err != nil {
				continue
			}
			var sid int
			var at string
			if err := db.QueryRowContext(ctx, "SELECT server_id, CAST(at AS CHAR) FROM sandbox.writes WHERE seq = ? ORDER BY at DESC LIMIT 1", seq).Scan(&sid, &at); err == nil {
				on = append(on, fmt.Sprintf("%s (written by server %d at %s)", n.Name, sid, at))
			}
			db.Close()
		}
		a := acks[seq]
		t.Logf("lost write %d: acknowledged by server %d at %s; present on %v", seq, a.ServerID, a.At.UTC().Format("15:04:05.000000"), on)
	}
}

func mustNode(t *testing.T, c cliCluster, name string) *sandbox.Node {
	t.Helper()
	n, err := c.Node(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPauseResume: a paused cluster does not fail over from a full disk, and shows
// the primary unwritable; once resumed it fails over.
func TestPauseResume(t *testing.T) {
	c := upCLICluster(t, "cli-pause", false)
	ctx := context.Background()
	if out, stderr, code := c.baton(t, "pause"); code != 0 || !strings.Contains(out, "paused by") {
		t.Fatalf("pause: exit %d: %s%s", code, out, stderr)
	}
	st := c.snapshot(t).Settings
	if !st.Paused || !strings.Contains(st.PausedBy, "@") || time.Since(st.PausedAt) > time.Minute {
		t.Fatalf("settings after pause = %+v, want paused by user@host just now", st)
	}
	faulted := time.Now()
	if err := c.Fault(ctx, "db1", sandbox.DiskFull); err != nil {
		t.Fatal(err)
	}
	for time.Since(faulted) < 6*time.Second || c.snapshot(t).Nodes["db1"].Verdict != detector.Unwritable {
		if p := c.snapshot(t).Primary; p.Node != "db1" || p.Epoch != 1 {
			t.Fatalf("a paused cluster failed over: primary %s epoch %d", p.Node, p.Epoch)
		}
		if time.Since(faulted) > 20*time.Second {
			t.Fatalf("db1 not seen unwritable within 20s of a full disk: %+v", c.snapshot(t).Nodes["db1"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, stderr, code := c.baton(t, "status", "--json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	var cs status.Cluster
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatal(err)
	}
	var verdict detector.Verdict
	for _, n := range cs.Nodes {
		if n.Name == "db1" {
			verdict = n.Verdict
		}
	}
	if !cs.Paused || cs.Primary != "db1" || verdict != detector.Unwritable {
		t.Errorf("status while paused: paused %v, primary %s, db1 verdict %s; want paused, db1, unwritable", cs.Paused, cs.Primary, verdict)
	}
	human, _, _ := c.baton(t, "status")
	t.Logf("status while paused, %s after the disk filled:\n%s", time.Since(faulted).Round(time.Millisecond), human)

	resumed := time.Now()
	if out, stderr, code := c.baton(t, "resume"); code != 0 || !strings.Contains(out, "expect a failover") {
		t.Fatalf("resume: exit %d: %s%s", code, out, stderr)
	}
	var snap cluster.Snapshot
	sandboxtest.WaitFor(t, 15*time.Second, "a failover after resume", func() bool {
		snap = c.snapshot(t)
		return snap.Primary.Node != "db1" && snap.Leader == snap.Primary.Node
	})
	t.Logf("after resume: %s promoted (epoch %d) in %s", snap.Primary.Node, snap.Primary.Epoch, time.Since(resumed).Round(time.Millisecond))
	if snap.Settings.Paused {
		t.Errorf("still paused after resume: %+v", snap.Settings)
	}
	if out, _, code := c.baton(t, "resume"); code != 0 || !strings.Contains(out, "not paused") {
		t.Errorf("a second resume: exit %d, %q; want 0 and 'not paused'", code, out)
	}
}

// showSlaveStatus returns SHOW SLAVE STATUS's columns and values.
func showSlaveStatus(t *testing.T, ctx context.Context, db *sql.DB) ([]string, []string) {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("SHOW SLAVE STATUS: no row: not a replica")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(cols))
	for i, v := range vals {
		out[i] = v.String
	}
	return cols, out
}

// breakReplica makes node's SQL thread stop on an error while the writer goes on, so
// that it lags: a row written on node alone (not binlogged) collides with the same row
// written on the primary. A SQL thread stopped by hand (STOP SLAVE SQL_THREAD) does not
// stay stopped: the node's reconciler starts replication again within a pass. It
// returns a function that mends the replica.
func breakReplica(t *testing.T, c cliCluster, primary, node string) (mend func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pdb, err := c.RootDB(primary)
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	rdb, err := c.RootDB(node)
	if err != nil {
		t.Fatal(err)
	}
	run := func(db *sql.DB, q string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	run(pdb, "CREATE DATABASE IF NOT EXISTS clitest")
	run(pdb, "CREATE TABLE IF NOT EXISTS clitest.collide (id INT PRIMARY KEY)")
	sandboxtest.WaitFor(t, 10*time.Second, "clitest.collide replicated to "+node, func() bool {
		var n int
		err := rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'clitest' AND table_name = 'collide'").Scan(&n)
		return err == nil && n == 1
	})
	local := func(q string) {
		t.Helper()
		conn, err := rdb.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, s := range []string{"SET SESSION sql_log_bin = 0", q} {
			if _, err := conn.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s on %s: %v", s, node, err)
			}
		}
	}
	local("INSERT INTO clitest.collide VALUES (1)")
	run(pdb, "INSERT INTO clitest.collide VALUES (1)")
	return func() {
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// As a DBA does for a replica quarantined for diverged data: mend the rows,
		// start replication; its agent ends the quarantine.
		local("DELETE FROM clitest.collide WHERE id = 1")
		local("START SLAVE")
		rdb.Close()
	}
}
