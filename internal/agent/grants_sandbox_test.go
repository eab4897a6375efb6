//go:build integration

package agent

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// TestGrantsOnMariaDB checks the MariaDB privilege list against a real MariaDB 10.11:
// an account with exactly AdminPrivileges runs Baton's own code through a switchover
// and back (bootstrap, probes, fence, catch-up, promote, follow, semi-sync); for each
// privilege, an account without it is named by CheckGrants and fails a statement Baton
// runs; and SUPER stands in for exactly the privileges the list says it does.
func TestGrantsOnMariaDB(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "agt-grants", Nodes: 2, SemiSync: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n1, n2 := &c.Nodes[0], &c.Nodes[1]
	root1, root2 := sandboxtest.RootDB(t, c, n1.Name), sandboxtest.RootDB(t, c, n2.Name)
	need := AdminPrivileges(replication.FlavorMariaDB, true)

	// A fresh start: Bootstrap, run by the limited account, must create the schema.
	sandboxtest.Exec(t, ctx, root1, "DROP DATABASE IF EXISTS baton")
	waitReplica(t, ctx, root1, root2)
	// An application account whose connection the fence must find and kill.
	for _, db := range []*sql.DB{root1, root2} {
		execLocal(t, ctx, db, "DROP USER IF EXISTS 'app'@'%'", "CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw'")
	}
	app := newAppConn(t, ctx, n1)

	t.Run("the list is enough", func(t *testing.T) {
		createAccount(t, ctx, []*sql.DB{root1, root2}, "bt_all", grantStatements(need))
		u1, u2 := accountDB(t, n1, "bt_all"), accountDB(t, n2, "bt_all")
		for _, db := range []*sql.DB{u1, u2} {
			if err := CheckGrants(ctx, db, GrantOptions{SemiSync: true}); err != nil {
				t.Fatalf("CheckGrants with exactly the listed privileges: %v", err)
			}
		}
		if err := detector.Bootstrap(ctx, u1); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		waitReplica(t, ctx, root1, root2)
		p1, p2 := prober(t, n1, "bt_all"), prober(t, n2, "bt_all")
		if r := p1.Write(ctx); r.Class != detector.OK {
			t.Fatalf("write probe on the primary: %s %s", r.Class, r.Detail)
		}
		if r := p2.Storage(ctx); r.Class != detector.OK {
			t.Fatalf("storage probe on the read_only replica: %s %s", r.Class, r.Detail)
		}
		if rep := p2.Replication(ctx); rep.Probe.Class != detector.OK || rep.IORunning != "Yes" || rep.SQLRunning != "Yes" {
			t.Fatalf("replication probe: %+v", rep)
		}

		in1, in2 := instance(t, u1, n1.Name), instance(t, u2, n2.Name)
		switchover(t, ctx, c, in1, in2, n2, app)
		if r := p2.Write(ctx); r.Class != detector.OK {
			t.Fatalf("write probe on the new primary: %s %s", r.Class, r.Detail)
		}
		if r := p1.Storage(ctx); r.Class != detector.OK {
			t.Fatalf("storage probe on the old primary, now a replica: %s %s", r.Class, r.Detail)
		}
		app = newAppConn(t, ctx, n2)
		switchover(t, ctx, c, in2, in1, n1, app)
		if err := in2.StopIO(ctx); err != nil {
			t.Fatalf("stop IO thread: %v", err)
		}
		if err := in2.StartReplication(ctx); err != nil {
			t.Fatalf("start replication: %v", err)
		}
		app = newAppConn(t, ctx, n1)
	})
	if t.Failed() {
		return
	}
	waitReplica(t, ctx, root1, root2)

	w := witnesses{c: c, n1: n1, n2: n2, root1: root1, root2: root2, app: &app}
	for i, p := range need {
		t.Run("without "+p.String(), func(t *testing.T) {
			var grants []Privilege
			for j, q := range need {
				if j != i {
					grants = append(grants, q)
				}
			}
			name := fmt.Sprintf("bt_no%d", i)
			createAccount(t, ctx, []*sql.DB{root1, root2}, name, grantStatements(grants))
			db := accountDB(t, n1, name)
			err := CheckGrants(ctx, db, GrantOptions{SemiSync: true})
			var mg *MissingGrantsError
			if !errors.As(err, &mg) || len(mg.Missing) != 1 || mg.Missing[0].Name != p.Name || mg.Missing[0].Schema != p.Schema {
				t.Fatalf("CheckGrants without %s: %v", p, err)
			}
			wantGrant := fmt.Sprintf("GRANT %s ON %s TO '%s'@'%%'", p.Name, p.On(), name)
			if !strings.Contains(err.Error(), wantGrant) {
				t.Fatalf("error does not say %q: %v", wantGrant, err)
			}
			if werr := w.run(t, ctx, p, name); werr == nil {
				t.Fatalf("without %s, Baton's statement still succeeds: the privilege is not needed", p)
			} else {
				t.Logf("without %s: %v", p, werr)
			}

			// With SUPER in its place.
			name = fmt.Sprintf("bt_super%d", i)
			createAccount(t, ctx, []*sql.DB{root1, root2}, name, append(grantStatements(grants), "GRANT SUPER ON *.*"))
			checkErr := CheckGrants(ctx, accountDB(t, n1, name), GrantOptions{SemiSync: true})
			werr := w.run(t, ctx, p, name)
			if (werr == nil) != p.bySuper {
				t.Fatalf("SUPER instead of %s: statement error %v, but the list says SUPER covers it: %v", p, werr, p.bySuper)
			}
			if (checkErr == nil) != p.bySuper {
				t.Fatalf("SUPER instead of %s: CheckGrants says %v", p, checkErr)
			}
		})
	}

	t.Run("the statements in the docs", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
		if err != nil {
			t.Fatal(err)
		}
		stmts := docSQL(t, string(b), "-- MariaDB 10.11")
		for _, db := range []*sql.DB{root1, root2} {
			execLocal(t, ctx, db, "DROP USER IF EXISTS 'baton'@'%'", "DROP USER IF EXISTS 'repl'@'%'")
			execLocal(t, ctx, db, stmts...)
		}
		mc := socketConfig(n1, "baton", "change-me")
		conn, err := mysql.NewConnector(mc)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		if err := CheckGrants(ctx, db, GrantOptions{SemiSync: true}); err != nil {
			t.Fatalf("the documented grants: %v", err)
		}
		rc, _ := mysql.NewConnector(socketConfig(n1, "repl", "change-me-too"))
		rdb := sql.OpenDB(rc)
		defer rdb.Close()
		if err := CheckPrivileges(ctx, rdb, replication.FlavorUnknown, ReplicationPrivileges(replication.FlavorMariaDB)); err != nil {
			t.Fatalf("the documented replication account: %v", err)
		}
		// The MySQL block at least parses into statements for the same accounts.
		if my := docSQL(t, string(b), "-- MySQL 8.0.23 or later"); len(my) != len(stmts) {
			t.Fatalf("MySQL block: %q", my)
		}
	})

	t.Run("role", func(t *testing.T) {
		// Privileges through the account's default role count (MariaDB's SHOW GRANTS
		// lists the active role's grants).
		for _, db := range []*sql.DB{root1, root2} {
			execLocal(t, ctx, db, "DROP ROLE IF EXISTS bt_role", "CREATE ROLE bt_role")
			for _, g := range grantStatements(need) {
				execLocal(t, ctx, db, g+" TO bt_role")
			}
		}
		createAccount(t, ctx, []*sql.DB{root1, root2}, "bt_roled", nil)
		for _, db := range []*sql.DB{root1, root2} {
			execLocal(t, ctx, db, "GRANT bt_role TO 'bt_roled'@'%'", "SET DEFAULT ROLE bt_role FOR 'bt_roled'@'%'")
		}
		if err := CheckGrants(ctx, accountDB(t, n1, "bt_roled"), GrantOptions{SemiSync: true}); err != nil {
			t.Fatalf("privileges through the default role: %v", err)
		}
		// On MariaDB the admin account reads binary logs over the replication
		// protocol (the errant archive) anyway: replicating with it asks for nothing
		// more.
		if err := CheckGrants(ctx, accountDB(t, n1, "bt_roled"), GrantOptions{SemiSync: true, Replicates: true}); err != nil {
			t.Fatalf("replicating account with the admin privileges: %v", err)
		}
	})
}

// witnesses run, as an account, one statement Baton runs that needs a privilege, and
// put the servers back as they were.
type witnesses struct {
	c            *sandbox.Cluster
	n1, n2       *sandbox.Node // primary, replica
	root1, root2 *sql.DB
	app          **sql.Conn
}

func (w witnesses) run(t *testing.T, ctx context.Context, p Privilege, account string) error {
	t.Helper()
	u1, u2 := accountDB(t, w.n1, account), accountDB(t, w.n2, account)
	exec := func(db *sql.DB, q string) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := db.ExecContext(ctx, q)
		return err
	}
	if p.Schema != "" {
		if p.Name == "CREATE" {
			// Bootstrap recreates a missing table.
			sandboxtest.Exec(t, ctx, w.root1, "DROP TABLE baton.storage_probe")
			err := detector.Bootstrap(ctx, u1)
			if err != nil {
				if err := detector.Bootstrap(ctx, w.root1); err != nil {
					t.Fatalf("restore the baton schema: %v", err)
				}
			}
			waitReplica(t, ctx, w.root1, w.root2)
			return err
		}
		// SELECT, INSERT and UPDATE: the write probe's heartbeat upsert needs all three.
		r := prober(t, w.n1, account).Write(ctx)
		if r.Class != detector.OK {
			return fmt.Errorf("write probe: %s: %s", r.Class, r.Detail)
		}
		return nil
	}
	switch p.Name {
	case "READ_ONLY ADMIN":
		return exec(u2, "SET GLOBAL read_only = ON")
	case "REPLICATION SLAVE ADMIN":
		return exec(u2, "SET GLOBAL rpl_semi_sync_slave_enabled = @@GLOBAL.rpl_semi_sync_slave_enabled")
	case "RELOAD":
		// On the primary, which has no replication to forget.
		return exec(u1, "RESET SLAVE ALL")
	case "SLAVE MONITOR":
		_, err := instance(t, u2, w.n2.Name).Status(ctx)
		return err
	case "BINLOG ADMIN":
		r := prober(t, w.n2, account).Storage(ctx)
		if r.Class != detector.OK {
			return fmt.Errorf("storage probe: %s: %s", r.Class, r.Detail)
		}
		return nil
	case "BINLOG MONITOR":
		// Against a primary that has nothing: every GTID of the replica is errant, and
		// its binary logs are read.
		_, err := instance(t, u2, w.n2.Name).InspectErrant(ctx,
			replication.Server{ServerID: 999, Executed: replication.MustParseGTIDSet(replication.FlavorMariaDB, "")}, 5*time.Second)
		return err
	case "CONNECTION ADMIN":
		id := connID(t, ctx, *w.app)
		err := exec(u1, "KILL CONNECTION "+strconv.FormatInt(id, 10))
		if err == nil {
			*w.app = newAppConn(t, ctx, w.n1)
		}
		return err
	case "PROCESS":
		// Fence finds the connections to kill in the process list: without PROCESS it
		// silently finds none.
		rep, err := instance(t, u1, w.n1.Name).Fence(ctx)
		sandboxtest.Exec(t, ctx, w.root1, "SET GLOBAL read_only = OFF")
		alive := (*w.app).PingContext(ctx) == nil
		if !alive {
			*w.app = newAppConn(t, ctx, w.n1)
		}
		if err != nil {
			return err
		}
		if rep.Killed == 0 || alive {
			return fmt.Errorf("fence killed %d connections, the application's is alive: %v", rep.Killed, alive)
		}
		return nil
	case "REPLICATION MASTER ADMIN":
		return exec(u1, "SET GLOBAL rpl_semi_sync_master_enabled = @@GLOBAL.rpl_semi_sync_master_enabled")
	case "REPLICATION SLAVE":
		// The archive of errant transactions reads the binary log over the replication
		// protocol: against a primary that has nothing, every transaction is errant.
		_, err := accountTools(t, w.n2, account).Archive(ctx, nothingErrant(t, ctx, w.c, w.n2), nothing, "witness",
			filepath.Join(t.TempDir(), "archive.sql"))
		return err
	case "BINLOG REPLAY":
		// The flashback is BINLOG statements: one of them, harmless (a format
		// description event), read from the binary log by Baton's full account.
		return accountTools(t, w.n2, account).Apply(ctx, formatDescription(t, ctx, w.c, w.n2))
	}
	t.Fatalf("no witness statement for %s", p)
	return nil
}

// switchover moves the primary from in1 to in2 the way Baton's flows do, as the
// accounts of in1 and in2, and checks the application connection was killed.
func switchover(t *testing.T, ctx context.Context, c *sandbox.Cluster, from, to *replication.Instance, toNode *sandbox.Node, app *sql.Conn) {
	t.Helper()
	rep, err := from.Fence(ctx)
	if err != nil || !rep.ReadOnly {
		t.Fatalf("fence %s: %+v %v", from.Name(), rep, err)
	}
	if app.PingContext(ctx) == nil {
		t.Fatalf("fence %s left the application's connection alive (killed %d)", from.Name(), rep.Killed)
	}
	st, err := from.Status(ctx)
	if err != nil {
		t.Fatalf("status of %s: %v", from.Name(), err)
	}
	if err := to.WaitExecuted(ctx, st.Executed, 10*time.Second); err != nil {
		t.Fatalf("catch up %s: %v", to.Name(), err)
	}
	if err := to.Promote(ctx); err != nil {
		t.Fatalf("promote %s: %v", to.Name(), err)
	}
	src := replication.Source{Host: toNode.IP, Port: toNode.Port, User: c.ReplUser, Password: c.ReplPassword}
	if err := from.Follow(ctx, src, nil); err != nil {
		t.Fatalf("%s follows %s: %v", from.Name(), to.Name(), err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := from.Status(ctx)
		if err == nil && st.IOThread == replication.ThreadRunning && st.SQLThread == replication.ThreadRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not replicate from %s: %+v %v", from.Name(), to.Name(), st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// docSQL returns the statements of the ```sql block of doc that starts with first.
func docSQL(t *testing.T, doc, first string) []string {
	t.Helper()
	i := strings.Index(doc, "```sql\n"+first+"\n")
	if i < 0 {
		t.Fatalf("no sql block starting %q in the docs", first)
	}
	block := doc[i+len("```sql\n"):]
	block = block[:strings.Index(block, "```")]
	var out []string
	for _, s := range strings.Split(block, ";") {
		var lines []string
		for _, l := range strings.Split(s, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "--") {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			out = append(out, strings.Join(lines, " "))
		}
	}
	return out
}

func grantStatements(ps []Privilege) []string {
	var out []string
	for _, p := range ps {
		out = append(out, "GRANT "+p.Name+" ON "+p.On())
	}
	return out
}

// createAccount makes 'name'@'%' on every server, unreplicated (each server gets the
// same account at once, with no wait for replication), with the grants (statements
// without their TO clause).
func createAccount(t *testing.T, ctx context.Context, roots []*sql.DB, name string, grants []string) {
	t.Helper()
	acct := "'" + name + "'@'%'"
	for _, db := range roots {
		stmts := []string{"DROP USER IF EXISTS " + acct, "CREATE USER " + acct + " IDENTIFIED BY 'pw-" + name + "'"}
		for _, g := range grants {
			stmts = append(stmts, g+" TO "+acct)
		}
		execLocal(t, ctx, db, stmts...)
	}
}

// execLocal runs statements on one server without binlogging them.
func execLocal(t *testing.T, ctx context.Context, db *sql.DB, stmts ...string) {
	t.Helper()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin = 0"); err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// waitReplica waits until the replica has executed everything the primary has.
func waitReplica(t *testing.T, ctx context.Context, primary, replica *sql.DB) {
	t.Helper()
	var pos string
	if err := primary.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	var res int
	if err := replica.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 20)", pos).Scan(&res); err != nil || res != 0 {
		t.Fatalf("replica did not reach %s: %d %v", pos, res, err)
	}
}

func socketConfig(n *sandbox.Node, user, password string) *mysql.Config {
	mc := mysql.NewConfig()
	mc.Net, mc.Addr, mc.User, mc.Passwd = "unix", n.Socket, user, password
	mc.Timeout, mc.ReadTimeout, mc.WriteTimeout = 2*time.Second, 10*time.Second, 10*time.Second
	mc.Logger = &mysql.NopLogger{} // the kills the test makes are expected
	return mc
}

func accountDB(t *testing.T, n *sandbox.Node, account string) *sql.DB {
	t.Helper()
	conn, err := mysql.NewConnector(socketConfig(n, account, "pw-"+account))
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	return db
}

func newAppConn(t *testing.T, ctx context.Context, n *sandbox.Node) *sql.Conn {
	t.Helper()
	conn, err := mysql.NewConnector(socketConfig(n, "app", "app-pw"))
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("application connection to %s: %v", n.Name, err)
	}
	if err := c.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func connID(t *testing.T, ctx context.Context, c *sql.Conn) int64 {
	t.Helper()
	var id int64
	if err := c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatalf("application connection: %v", err)
	}
	return id
}

func instance(t *testing.T, db *sql.DB, name string) *replication.Instance {
	t.Helper()
	in, err := replication.New(db, replication.Config{Name: name, Timeout: 5 * time.Second, SemiSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func prober(t *testing.T, n *sandbox.Node, account string) *detector.Prober {
	t.Helper()
	p, err := detector.NewProber(detector.ProberConfig{
		DSN: socketConfig(n, account, "pw-"+account).FormatDSN(), Node: "agt-" + n.Name, Timeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// nothing is a primary that has no transaction: every GTID of a server is errant
// against it.
var nothing = replication.Server{ServerID: 999, Executed: replication.MustParseGTIDSet(replication.FlavorMariaDB, "")}

// accountTools runs MariaDB's client programs as account on n's server.
func accountTools(t *testing.T, n *sandbox.Node, account string) replication.Tools {
	return replication.Tools{Addr: "unix:" + n.Socket, User: account, Password: "pw-" + account, Dir: t.TempDir()}
}

// nothingErrant is n's errant evidence against nothing, read by the sandbox's full
// account.
func nothingErrant(t *testing.T, ctx context.Context, c *sandbox.Cluster, n *sandbox.Node) replication.ErrantEvidence {
	t.Helper()
	db, err := c.AdminDB(n.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ev, err := instance(t, db, n.Name).InspectErrant(ctx, nothing, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// formatDescription is a script of one BINLOG statement, the format description
// event of n's binary log, read by the sandbox's full account.
func formatDescription(t *testing.T, ctx context.Context, c *sandbox.Cluster, n *sandbox.Node) string {
	t.Helper()
	dir := t.TempDir()
	tools := replication.Tools{Addr: "unix:" + n.Socket, User: c.AdminUser, Password: c.AdminPassword, Dir: dir}
	path := filepath.Join(dir, "all.sql")
	if _, err := tools.Archive(ctx, nothingErrant(t, ctx, c, n), nothing, "witness", path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "BINLOG '")
	j := strings.Index(s[max(i, 0):], "'/*!*/;")
	if i < 0 || j < 0 {
		t.Fatalf("no BINLOG statement in %s", path)
	}
	script := filepath.Join(dir, "fde.sql")
	if err := os.WriteFile(script, []byte("DELIMITER /*!*/;\n"+s[i:i+j+len("'/*!*/;")]+"\nDELIMITER ;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return script
}
