//go:build integration

package sandbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// exec runs one statement on a fresh connection with its own deadline, so a hung
// statement never holds a pooled connection that later checks would reuse.
func execWithin(db *sql.DB, d time.Duration, q string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	conn, err := db.Conn(ctx)
	if err != nil {
		return time.Since(start), err
	}
	defer conn.Close() // a cancelled connection is closed by the driver and never reused
	_, err = conn.ExecContext(ctx, q)
	return time.Since(start), err
}

func TestReplicationByGTID(t *testing.T) {
	t.Parallel()
	c := sandboxtest.Up(t, sandbox.Spec{Name: "sbx-repl", Nodes: 3, SemiSync: true})
	if got := c.Nodes[0].Role; got != "primary" {
		t.Fatalf("db1 role = %q, want primary", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := sandboxtest.RootDB(t, c, "db1")
	if _, err := p.ExecContext(ctx, "INSERT INTO sandbox.t(v) VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	var pos string
	if err := p.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes[1:] {
		db := sandboxtest.RootDB(t, c, n.Name)
		var res int
		if err := db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 5)", pos).Scan(&res); err != nil || res != 0 {
			t.Fatalf("%s did not reach %s: res=%d err=%v", n.Name, pos, res, err)
		}
		var v string
		if err := db.QueryRowContext(ctx, "SELECT v FROM sandbox.t WHERE v='hello'").Scan(&v); err != nil {
			t.Fatalf("%s: row not replicated: %v", n.Name, err)
		}
		var ro int
		if err := db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&ro); err != nil || ro != 1 {
			t.Fatalf("%s: read_only = %d (%v), want 1", n.Name, ro, err)
		}
	}
	// The admin user reaches every node over the bridge from the client namespace.
	for _, n := range c.Nodes {
		dsn, err := c.TCPDSN(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DialFunc = sandbox.DialContext(c.ClientNetNS)
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(conn)
		var id int
		err = db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id)
		db.Close()
		if err != nil || id != n.ServerID {
			t.Fatalf("%s over TCP from the client namespace: server_id=%d err=%v", n.Name, id, err)
		}
	}
}

// TestFaults checks that each fault behaves as FAULTS.md says, and that its inverse
// mends it. The faults share one cluster; each leaves it whole.
func TestFaults(t *testing.T) {
	t.Parallel()
	c := sandboxtest.Up(t, sandbox.Spec{Name: "sbx-fault", Nodes: 2})
	ctx := context.Background()
	fault := func(node string, f sandbox.Fault) {
		t.Helper()
		if err := c.Fault(ctx, node, f); err != nil {
			t.Fatalf("%s on %s: %v", f, node, err)
		}
	}
	db := sandboxtest.RootDB(t, c, "db1")
	write := "INSERT INTO sandbox.t(v) VALUES ('x')"
	writesWork := func(what string) {
		t.Helper()
		if _, err := execWithin(db, 5*time.Second, write); err != nil {
			t.Fatalf("%s: write failed: %v", what, err)
		}
	}
	// pingAnswers: the server still answers reads (while writeHangs: writes do not,
	// for 3 s). How fast it answers is logged, not held to: a loaded machine adds
	// its own delays.
	pingAnswers := func(what string) {
		t.Helper()
		d, err := execWithin(db, 2*time.Second, "SELECT 1")
		if err != nil {
			t.Fatalf("%s: SELECT 1 failed after %s: %v; want an answer", what, d, err)
		}
		t.Logf("%s: SELECT 1 answered in %s", what, d.Round(time.Millisecond))
	}
	writeHangs := func(what string) {
		t.Helper()
		if d, err := execWithin(db, 3*time.Second, write); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: write returned after %s with %v; want it still hanging at 3s", what, d, err)
		}
	}

	t.Run("freeze-writes", func(t *testing.T) {
		fault("db1", sandbox.FreezeWrites)
		pingAnswers("frozen writes")
		writeHangs("frozen writes")
		fault("db1", sandbox.ThawWrites)
		writesWork("thawed")
	})
	t.Run("stop", func(t *testing.T) {
		fault("db1", sandbox.Stop)
		if d, err := execWithin(db, time.Second, "SELECT 1"); err == nil {
			t.Fatalf("stopped server answered SELECT 1 in %s", d)
		}
		fault("db1", sandbox.Cont)
		writesWork("continued")
	})
	t.Run("kill", func(t *testing.T) {
		pid := c.Nodes[0].PID
		fault("db1", sandbox.Kill)
		// Refused, not hung: nothing listens any more.
		d, err := execWithin(db, 2*time.Second, "SELECT 1")
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("killed server: SELECT 1 returned after %s with %v; want refused, not answered or hung", d, err)
		}
		fault("db1", sandbox.Start)
		if c.Nodes[0].PID == pid {
			t.Fatalf("pid unchanged after start")
		}
		writesWork("restarted") // the recorded primary is made writable again
	})
	t.Run("cut-network", func(t *testing.T) {
		dial := sandbox.DialContext(c.ClientNetNS)
		addr := net.JoinHostPort(c.Nodes[0].IP, "3306")
		fault("db1", sandbox.CutNetwork)
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := dial(dctx, "tcp", addr)
		cancel()
		if err == nil {
			conn.Close()
			t.Fatal("connected to a cut-off node")
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("cut network: %v; want a timeout (packets dropped), not a refusal", err)
		}
		pingAnswers("cut network, over the socket") // the server itself is fine
		fault("db1", sandbox.HealNetwork)
		dctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		conn, err = dial(dctx, "tcp", addr)
		if err != nil {
			t.Fatalf("healed network: %v", err)
		}
		conn.Close()
	})
	t.Run("exhaust-connections", func(t *testing.T) {
		fault("db1", sandbox.ExhaustConnections)
		adb, err := c.AdminDB("db1")
		if err != nil {
			t.Fatal(err)
		}
		defer adb.Close()
		_, err = execWithin(adb, 2*time.Second, "SELECT 1")
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1040 {
			t.Fatalf("with connections exhausted: %v; want error 1040", err)
		}
		fault("db1", sandbox.ReleaseConnections)
		if _, err := execWithin(adb, 2*time.Second, "SELECT 1"); err != nil {
			t.Fatalf("released: %v", err)
		}
	})
	t.Run("readonly-fs", func(t *testing.T) {
		fault("db1", sandbox.ReadonlyFS)
		pingAnswers("read-only filesystem")
		// Small writes may still land in InnoDB's buffers; the binlog write must not.
		if _, err := execWithin(db, 3*time.Second, "INSERT INTO sandbox.fill(v) SELECT REPEAT('x', 16384) FROM sandbox.seq_1_to_4"); err == nil {
			t.Fatal("a 64 KiB binlogged write succeeded on a read-only filesystem")
		}
		fault("db1", sandbox.WritableFS)
		writesWork("repaired filesystem")
	})
	t.Run("shutdown", func(t *testing.T) {
		pid := c.Nodes[0].PID
		fault("db1", sandbox.Shutdown)
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Fatalf("mariadbd (pid %d) still there after a clean shutdown", pid)
		}
		if b, err := os.ReadFile(c.Nodes[0].ErrorLog); err != nil || !strings.Contains(string(b), "Shutdown complete") {
			t.Fatalf("no clean shutdown in the error log (%v)", err)
		}
		fault("db1", sandbox.Shutdown.Inverse())
		writesWork("started after a clean shutdown")
	})
	t.Run("purge-binlogs", func(t *testing.T) {
		writesWork("before the purge")
		// As a careful DBA does: nothing is purged that a replica has yet to fetch.
		var pos string
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
			t.Fatal(err)
		}
		var res int
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := sandboxtest.RootDB(t, c, "db2").QueryRowContext(wctx, "SELECT MASTER_GTID_WAIT(?, 15)", pos).Scan(&res); err != nil || res != 0 {
			t.Fatalf("db2 did not catch up to %s before the purge: %d %v", pos, res, err)
		}
		binlogs := func() []string {
			t.Helper()
			rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var names []string
			for rows.Next() {
				var name string
				var size any
				if err := rows.Scan(&name, &size); err != nil {
					t.Fatal(err)
				}
				names = append(names, name)
			}
			return names
		}
		var before, after string
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_state").Scan(&before); err != nil {
			t.Fatal(err)
		}
		was := binlogs()
		fault("db1", sandbox.PurgeBinlogs)
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_state").Scan(&after); err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("gtid_binlog_state %q after the purge, %q before", after, before)
		}
		// Rotated, and nothing older than the file being written before is left (that
		// one stays while a replica's dump thread still reads it).
		now := binlogs()
		newest := was[len(was)-1]
		if now[len(now)-1] <= newest || now[0] < newest {
			t.Fatalf("binary logs %v after the purge, %v before: want a new one, and none older than %s", now, was, newest)
		}
		if sandbox.PurgeBinlogs.Inverse() != 0 {
			t.Fatalf("purge-binlogs has an inverse: %s", sandbox.PurgeBinlogs.Inverse())
		}
	})
	t.Run("freeze-node", func(t *testing.T) {
		fault("db1", sandbox.FreezeNode)
		if d, err := execWithin(db, time.Second, "SELECT 1"); err == nil {
			t.Fatalf("frozen node answered SELECT 1 in %s", d)
		}
		fault("db1", sandbox.ThawNode)
		writesWork("thawed node")
	})
	t.Run("bad input", func(t *testing.T) {
		if err := c.Fault(ctx, "db9", sandbox.Kill); err == nil || !strings.Contains(err.Error(), "unknown node") {
			t.Fatalf("unknown node: %v", err)
		}
		if _, err := sandbox.ParseFault("explode"); err == nil || !strings.Contains(err.Error(), "unknown fault") {
			t.Fatalf("unknown fault: %v", err)
		}
		if err := c.Fault(ctx, "db1", sandbox.FreeDisk); err == nil {
			t.Fatal("free-disk without a full disk succeeded")
		}
	})
	// Replication survived all of it.
	var pos string
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	var res int
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := sandboxtest.RootDB(t, c, "db2").QueryRowContext(rctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res); err != nil || res != 0 {
		t.Fatalf("db2 did not catch up to %s after the faults: %d %v", pos, res, err)
	}
}

// TestDiskFull runs alone: freeing the disk takes MariaDB up to 60 s to notice.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	c := sandboxtest.Up(t, sandbox.Spec{Name: "sbx-disk", Nodes: 2})
	ctx := context.Background()
	// MariaDB retries a write on a full disk every 60 s: the client must wait longer.
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User = "unix", c.Nodes[0].Socket, "root"
	cfg.Timeout, cfg.ReadTimeout = 2*time.Second, 90*time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	if err := c.Fault(ctx, "db1", sandbox.DiskFull); err != nil {
		t.Fatal(err)
	}
	if d, err := execWithin(db, 2*time.Second, "SELECT 1"); err != nil {
		t.Fatalf("disk full: SELECT 1 failed after %s: %v; want an answer (reads need no disk space)", d, err)
	}
	if d, err := execWithin(db, 3*time.Second, "INSERT INTO sandbox.t(v) VALUES ('x')"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("disk full: INSERT returned after %s with %v; want still hanging at 3s", d, err)
	}
	if err := c.Fault(ctx, "db1", sandbox.FreeDisk); err != nil {
		t.Fatal(err)
	}
	if d, err := execWithin(db, 75*time.Second, "INSERT INTO sandbox.t(v) VALUES ('after')"); err != nil {
		t.Fatalf("disk freed: INSERT failed after %s: %v", d, err)
	}
}

func TestDownLeavesNothingAndUpAfterCrash(t *testing.T) {
	t.Parallel()
	spec := sandbox.Spec{Name: "sbx-crash", Nodes: 2, Binary: sandboxtest.Binary(t), LabBinary: sandboxtest.LabBinary(t)}
	ctx := context.Background()
	c, err := sandbox.Up(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sandbox.Up(ctx, spec, nil); !errors.Is(err, sandbox.ErrRunning) {
		c.Down(ctx)
		t.Fatalf("second up of a running sandbox: %v, want ErrRunning", err)
	}
	// A crash: every process dies, namespaces, mounts and files stay.
	for _, n := range c.Nodes {
		syscall.Kill(n.PID, syscall.SIGKILL)
	}
	for _, m := range c.EtcdMembers {
		syscall.Kill(m.PID, syscall.SIGKILL)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	c, err = sandbox.Up(ctx, spec, nil)
	if err != nil {
		t.Fatalf("up after a crashed run: %v", err)
	}
	t.Logf("up after crash took %s", time.Since(start))
	pids := []int{}
	for _, n := range c.Nodes {
		pids = append(pids, n.PID)
	}
	for _, m := range c.EtcdMembers {
		pids = append(pids, m.PID)
	}
	start = time.Now()
	if err := c.Down(ctx); err != nil {
		t.Fatalf("down: %v", err)
	}
	t.Logf("down took %s", time.Since(start).Round(time.Millisecond))
	for _, p := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); !strings.Contains(string(b), ") Z") {
				t.Errorf("process %d still running after down", p)
			}
		}
	}
	if entries, _ := os.ReadDir("/run/netns"); true {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "baton-sbx-crash-") {
				t.Errorf("namespace %s left behind", e.Name())
			}
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), "/sbx-crash/") {
		t.Error("a mount was left behind")
	}
	out, _ := exec.Command("losetup", "-a").CombinedOutput()
	if strings.Contains(string(out), "/sbx-crash/") {
		t.Errorf("a loop device was left behind: %s", out)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s left behind", c.Dir)
	}
}

func TestCLIBadInput(t *testing.T) {
	t.Parallel()
	bin := sandboxtest.LabBinary(t)
	root := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"sandbox", "up", "--root", root, "--name", "bad", "--nodes", "0"}, "nodes"},
		{[]string{"sandbox", "up", "--root", root, "--name", "Bad_Name"}, "sandbox name"},
		{[]string{"sandbox", "up", "--root", root, "--name", "bad", "--etcd-members", "2"}, "etcd-members"},
		{[]string{"sandbox", "fault", "--root", root, "--name", "nosuch", "--node", "db1", "kill"}, "not up"},
		{[]string{"sandbox", "fault", "--root", root, "--name", "nosuch", "--node", "db1", "explode"}, "unknown fault"},
		{[]string{"sandbox", "status", "--root", root, "--name", "nosuch"}, "not up"},
	}
	for _, tc := range cases {
		cmd := exec.Command(bin, tc.args...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("%v: exit %v, want non-zero", tc.args, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v: output %q, want one line mentioning %q", tc.args, out, tc.want)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) > 1 { // the template cache may not even be made
		t.Errorf("bad input left %v in %s", entries, filepath.Base(root))
	}
}

// TestSpecNamesMissingBinaries: a sandbox needs both executables, baton for its
// agents and baton-lab for its helper processes; a spec without one is refused before
// anything is made, with the field named.
func TestSpecNamesMissingBinaries(t *testing.T) {
	t.Parallel()
	root, bin, lab := t.TempDir(), sandboxtest.Binary(t), sandboxtest.LabBinary(t)
	for _, tc := range []struct {
		name        string
		binary, lab string
		want        string
	}{
		{"no baton", "", lab, "binary: the path of the baton executable is required"},
		{"no baton-lab", bin, "", "lab binary: the path of the baton-lab executable is required"},
		{"baton-lab missing on disk", bin, filepath.Join(root, "nosuch"), "lab binary: "},
	} {
		_, err := sandbox.Up(context.Background(), sandbox.Spec{Name: "sbx-spec", Nodes: 1, Root: root, Binary: tc.binary, LabBinary: tc.lab}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: Up = %v, want an error starting %q", tc.name, err, tc.want)
		}
	}
}

// TestEtcdOutage: one member of three stopped keeps a quorum (writes go on); all
// stopped is an outage (writes fail); started again, the cluster answers on its data.
func TestEtcdOutage(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "sbx-etcd", Nodes: 1, EtcdMembers: 3})
	ctx := context.Background()
	cli, err := c.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// A write may fail once on the connection to the member just stopped (reset by
	// peer: the client does not resend a write already sent); a quorum means the
	// next one gets through. Retried within limit, as any client would.
	put := func(v string, limit time.Duration) error {
		deadline := time.Now().Add(limit)
		for {
			pctx, cancel := context.WithTimeout(ctx, time.Until(deadline))
			_, err := cli.Put(pctx, "/outage-test", v)
			cancel()
			if err == nil || time.Now().After(deadline) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := put("before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.StopEtcd(ctx, "nosuch"); err == nil || !strings.Contains(err.Error(), `unknown etcd member "nosuch"`) {
		t.Fatalf("stop an unknown member: %v", err)
	}
	one := c.EtcdMembers[1].Name
	if err := c.StopEtcd(ctx, one); err != nil {
		t.Fatal(err)
	}
	if err := put("quorum kept", 10*time.Second); err != nil {
		t.Fatalf("with %s stopped (2 of 3 up): %v", one, err)
	}
	if err := c.StopEtcd(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := put("outage", time.Second); err == nil {
		t.Fatal("a write succeeded with every etcd member stopped")
	}
	if err := c.StartEtcd(ctx, ""); err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Get(gctx, "/outage-test")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "quorum kept" {
		t.Fatalf("after the outage: %v %v", resp, err)
	}
}

// TestRebuild: a replica with a transaction nobody else has is rebuilt from the
// primary: it then replicates, has the primary's rows and none of its own, and keeps
// the primary's whole binlog state (here an entry of a server id 3 that was primary
// once), so that it can be promoted later without the others looking errant.
func TestRebuild(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "sbx-rebuild", Nodes: 2, SemiSync: true})
	p, r := sandboxtest.RootDB(t, c, "db1"), sandboxtest.RootDB(t, c, "db2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := p.Conn(ctx) // one session: server_id is the session's
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SET SESSION server_id = 3", "INSERT INTO sandbox.t(v) VALUES ('from an old primary')",
		"SET SESSION server_id = 1", "INSERT INTO sandbox.t(v) VALUES ('a')"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close()
	sandboxtest.Exec(t, ctx, r, "SET GLOBAL read_only = OFF", "INSERT INTO sandbox.t(v) VALUES ('errant')", "SET GLOBAL read_only = ON")
	if err := c.Rebuild(ctx, "db2", "db1"); err != nil {
		t.Fatal(err)
	}
	sandboxtest.Exec(t, ctx, p, "INSERT INTO sandbox.t(v) VALUES ('after')")
	var pos string
	if err := p.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	var res int
	if err := r.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 10)", pos).Scan(&res); err != nil || res != 0 {
		t.Fatalf("the rebuilt replica did not reach %s: %d %v", pos, res, err)
	}
	var vs []string
	rows, err := r.QueryContext(ctx, "SELECT v FROM sandbox.t WHERE v IN ('from an old primary', 'a', 'errant', 'after') ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	rows.Close()
	if got := strings.Join(vs, ","); got != "from an old primary,a,after" {
		t.Errorf("rows on the rebuilt replica: %s", got)
	}
	var state, ro string
	if err := r.QueryRowContext(ctx, "SELECT @@gtid_binlog_state, @@read_only").Scan(&state, &ro); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(state, "0-3-") || strings.Contains(state, "0-2-") || ro != "1" {
		t.Errorf("rebuilt replica: gtid_binlog_state %q (want the primary's history, none of its own), read_only %s", state, ro)
	}
}

// TestAgentStopsCleanlyAndStartsWithEnv: term-agent waits for the agent's clean exit,
// which hands the leader key over; start-agent then starts it with the environment
// SetAgentEnv gave it (a failpoint, for a build with the tag).
func TestAgentStopsCleanlyAndStartsWithEnv(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "sbx-agent", Nodes: 1, WithAgents: true})
	ctx := context.Background()
	cli, err := c.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	leader := func() bool {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := cli.Get(gctx, "/baton/"+c.Name+"/leader")
		return err == nil && len(resp.Kvs) == 1
	}
	old := c.Nodes[0].AgentPID
	if err := c.SetAgentEnv("db1", []string{"BATON_FAILPOINT=before-promote"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Fault(ctx, "db1", sandbox.TermAgent); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", old)); err == nil {
		t.Fatalf("agent (pid %d) still there after term-agent", old)
	}
	if leader() {
		t.Fatal("the leader key outlived the agent's clean stop")
	}
	if err := c.Fault(ctx, "db1", sandbox.TermAgent.Inverse()); err != nil {
		t.Fatal(err)
	}
	pid := c.Nodes[0].AgentPID
	// Read until the process has exec'd: between its fork and its exec, /proc shows
	// the parent's environment.
	sandboxtest.WaitFor(t, 5*time.Second, "the agent started with the environment SetAgentEnv gave it", func() bool {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(env), "\x00BATON_FAILPOINT=before-promote\x00") || strings.HasPrefix(string(env), "BATON_FAILPOINT=before-promote\x00")
	})
	sandboxtest.WaitFor(t, 15*time.Second, "the restarted agent takes the leader key", leader)
}
