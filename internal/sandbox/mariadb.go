package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Requirements reports, in one line a person can act on, what this machine lacks to run
// a sandbox; nil when nothing.
func Requirements() error {
	if os.Geteuid() != 0 {
		return errors.New("the sandbox needs root (network namespaces, loop mounts): run it as root")
	}
	var missing []string
	for _, bin := range []string{"mariadbd", "mariadb-install-db", "ip", "bridge", "mkfs.ext4", "losetup", "mount", "umount", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: install them with `apt-get install -y mariadb-server iproute2 e2fsprogs util-linux` (or `make deps`)", strings.Join(missing, ", "))
	}
	if _, err := user.Lookup("mysql"); err != nil {
		return errors.New("no mysql user: install mariadb-server (apt-get install -y mariadb-server)")
	}
	return nil
}

// ensureTemplate makes, once per root, a freshly initialised datadir to copy for each
// node: mariadb-install-db takes about a second, a copy much less. Concurrent callers
// (test packages run in parallel) serialise on a lock file.
func ensureTemplate(ctx context.Context, root string) (string, error) {
	tmpl := filepath.Join(root, ".template")
	done := filepath.Join(tmpl, ".complete")
	if _, err := os.Stat(done); err == nil {
		return tmpl, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(root, ".template.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock template: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if _, err := os.Stat(done); err == nil {
		return tmpl, nil
	}
	_ = os.RemoveAll(tmpl)
	work := tmpl + ".work"
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	if err := run(ctx, "chown", "mysql:mysql", work); err != nil {
		return "", err
	}
	if err := run(ctx, "mariadb-install-db", "--no-defaults", "--user=mysql", "--datadir="+work,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
		"--innodb-log-file-size=16M", "--innodb-buffer-pool-size=32M"); err != nil {
		return "", fmt.Errorf("initialise template datadir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, ".complete"), []byte(time.Now().UTC().Format(time.RFC3339)), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(work, tmpl); err != nil {
		return "", err
	}
	return tmpl, nil
}

// prepareDisk gives a node its own small ext4 filesystem, so that disk-full and
// read-only faults hit that node alone, and copies the template datadir onto it.
func prepareDisk(ctx context.Context, n *Node, tmpl string, sizeMB int) error {
	for _, d := range []string{n.Dir, n.Mount} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	f, err := os.Create(n.Image)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(sizeMB) << 20); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", n.Image); err != nil {
		return err
	}
	// errors=remount-ro: a filesystem error makes it read-only, as on real servers.
	if err := run(ctx, "mount", "-o", "loop,errors=remount-ro", n.Image, n.Mount); err != nil {
		return err
	}
	if err := run(ctx, "cp", "-a", tmpl, n.Datadir); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(n.Datadir, ".complete"))
	if err := run(ctx, "chown", "-R", "mysql:mysql", n.Dir); err != nil {
		return err
	}
	// On disk, not only in the page cache: a later readonly-fs fault discards what
	// was never written back.
	return syncFS(n.Mount)
}

// syncFS writes back everything cached for the filesystem holding dir (`sync -f`).
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// mariadbArgs is the command line of a node's server. Every node starts read_only: a
// server that restarts must not take writes until something (the sandbox at first
// bring-up, Baton afterwards) decides it is the primary.
func (c *Cluster) mariadbArgs(n *Node) []string {
	args := []string{
		"mariadbd", "--no-defaults", "--user=mysql",
		"--datadir=" + n.Datadir,
		"--socket=" + n.Socket,
		"--pid-file=" + filepath.Join(n.Dir, "mariadbd.pid"),
		"--log-error=" + n.ErrorLog,
		"--bind-address=0.0.0.0", "--port=" + strconv.Itoa(n.Port),
		"--server-id=" + strconv.Itoa(n.ServerID),
		"--report-host=" + n.IP,
		"--log-bin=mysql-bin", "--relay-log=relay-bin", "--log-slave-updates",
		"--binlog-format=ROW", "--gtid-strict-mode=1", "--slave-net-timeout=4",
		"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
		"--skip-name-resolve", "--max-connections=60",
		"--plugin-load-add=ha_blackhole",
		"--read-only=ON",
		// As Baton's docs ask: a restarted replica waits for its agent to point it
		// at the primary of record, instead of reconnecting to its old source (a
		// deposed primary, perhaps, whose pending commits it would fetch and
		// acknowledge).
		"--skip-slave-start",
		"--tmpdir=" + n.Dir, // temp files off the node's own filesystem
	}
	if c.PKI != nil {
		// TCP takes TLS only (the unix socket counts as secure); the certificate
		// names the node's address.
		args = append(args, "--ssl-ca="+c.PKI.CA, "--ssl-cert="+n.ServerCert, "--ssl-key="+n.ServerKey,
			"--require-secure-transport=ON", "--tls-version=TLSv1.2,TLSv1.3")
	}
	if c.SemiSync {
		args = append(args, "--rpl-semi-sync-slave-enabled=ON",
			"--rpl-semi-sync-master-wait-point=AFTER_SYNC",
			"--rpl-semi-sync-master-timeout="+strconv.Itoa(semiSyncTimeoutMS),
			// A stopping semi-sync IO thread connects to its source to kill its dump
			// thread, and STOP SLAVE waits for that: up to 5 s by default when the
			// source is frozen or cut off, which would hold up a failover.
			"--rpl-semi-sync-slave-kill-conn-timeout=1")
		// The master side is turned on at run time, on the primary alone: on a replica
		// (log_slave_updates) it would make the SQL thread wait for acks from replicas
		// it does not have; on a primary before its replicas connect, every commit would.
	}
	return args
}

// semiSyncTimeoutMS is large on purpose: a primary whose replicas stopped acknowledging
// must stop committing, not fall back to asynchronous replication and lose writes.
const semiSyncTimeoutMS = 3600000

// makeWritable makes a node the writable primary: read_only off and, in a semi-sync
// sandbox, the master side of semi-sync on.
func (c *Cluster) makeWritable(ctx context.Context, n *Node) error {
	stmts := []string{"SET GLOBAL read_only = OFF"}
	if c.SemiSync {
		stmts = append(stmts, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
	}
	if err := rootExec(ctx, n, 5*time.Second, stmts...); err != nil {
		return fmt.Errorf("%s: make writable: %w", n.Name, err)
	}
	return nil
}

// startServer starts a node's mariadbd in its namespace and waits until it answers.
func (c *Cluster) startServer(ctx context.Context, n *Node) error {
	pidFile := filepath.Join(n.Dir, "mariadbd.pid")
	_ = os.Remove(pidFile)
	if _, err := startIn(n.NetNS, n.Dir, filepath.Join(n.Dir, "mariadbd.out"), c.mariadbArgs(n)...); err != nil {
		return err
	}
	pid, err := readPIDFile(ctx, pidFile, 30*time.Second)
	if err != nil {
		return fmt.Errorf("start %s: %w (see %s)", n.Name, err, n.ErrorLog)
	}
	n.PID = pid
	return waitReady(ctx, n, 30*time.Second)
}

// waitReady waits until root can run a query through the node's socket.
func waitReady(ctx context.Context, n *Node, limit time.Duration) error {
	db, err := openSocketDB(n.Socket, "root", "")
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(limit)
	for {
		qctx, cancel := withTimeout(ctx, time.Second)
		err := db.QueryRowContext(qctx, "SELECT 1").Scan(new(int))
		cancel()
		if err == nil {
			return nil
		}
		if !alive(n.PID) {
			return fmt.Errorf("%s: mariadbd exited during start-up (see %s)", n.Name, n.ErrorLog)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not answering after %s: %w", n.Name, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rootExec runs statements in order as root on one connection to node n, all within
// limit.
func rootExec(ctx context.Context, n *Node, limit time.Duration, stmts ...string) error {
	db, err := openSocketDB(n.Socket, "root", "")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := withTimeout(ctx, limit)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstWords(s), err)
		}
	}
	return nil
}

func firstWords(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// setupPrimary creates the users and the sandbox's own schema on the first primary.
// It is binlogged, so replicas receive it through replication, with GTIDs.
func (c *Cluster) setupPrimary(ctx context.Context, n *Node) error {
	admin := quote(c.AdminUser) + "@'%'"
	stmts := []string{
		"CREATE USER IF NOT EXISTS " + quote(c.ReplUser) + "@'%' IDENTIFIED BY " + quote(c.ReplPassword),
		"GRANT REPLICATION SLAVE ON *.* TO " + quote(c.ReplUser) + "@'%'",
		// Baton's account gets exactly what the documentation lists, no more, so every
		// test on a sandbox also checks that list.
		"CREATE USER IF NOT EXISTS " + admin + " IDENTIFIED BY " + quote(c.AdminPassword),
	}
	stmts = append(stmts, adminGrants(admin)...)
	stmts = append(stmts,
		"CREATE DATABASE IF NOT EXISTS sandbox",
		// BLACKHOLE keeps nothing but binlogs every row: the disk-full fault uses it to
		// make the binlog grow on a full filesystem without InnoDB failing first.
		"CREATE TABLE IF NOT EXISTS sandbox.fill (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT) ENGINE=BLACKHOLE",
		"CREATE TABLE IF NOT EXISTS sandbox.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(255), at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))",
		// The workload's tables (workload.go): what a writer had acknowledged, and
		// which server accepted a write when.
		"CREATE TABLE IF NOT EXISTS sandbox.writes (run VARCHAR(32) NOT NULL, seq BIGINT NOT NULL, server_id INT UNSIGNED NOT NULL, at TIMESTAMP(6) NOT NULL, PRIMARY KEY (run, seq))",
		"CREATE TABLE IF NOT EXISTS sandbox.split (node VARCHAR(16) PRIMARY KEY, at TIMESTAMP(6) NOT NULL, n BIGINT NOT NULL)",
		// An application's account: no privilege beyond its data, so read_only applies.
		"CREATE USER IF NOT EXISTS "+quote(c.AppUser)+"@'%' IDENTIFIED BY "+quote(c.AppPassword),
		"GRANT SELECT, INSERT, UPDATE, DELETE ON sandbox.* TO "+quote(c.AppUser)+"@'%'",
	)
	return rootExec(ctx, n, 20*time.Second, stmts...)
}

// adminGrants are the privileges of Baton's account on MariaDB 10.11, as
// docs/configuration.md lists them for a cluster with semi-sync (every sandbox gets
// that list, so that semi-sync can be switched on any of them); internal/agent's
// tests check that they are exactly what the agent asks for.
func adminGrants(account string) []string {
	return []string{
		"GRANT READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR, BINLOG ADMIN, BINLOG MONITOR, CONNECTION ADMIN, PROCESS, REPLICATION MASTER ADMIN, REPLICATION SLAVE, BINLOG REPLAY ON *.* TO " + account,
		"GRANT SELECT, INSERT, UPDATE, CREATE ON baton.* TO " + account,
		// Optional: every table's columns, for the auto-increment forecasts.
		"GRANT REFERENCES ON *.* TO " + account,
	}
}

// follow makes node n a GTID replica of primary: over TLS, the source's certificate
// checked, in a secure sandbox (as its agents' mysql.replication.tls says).
func (c *Cluster) follow(ctx context.Context, n, primary *Node) error {
	ssl := ""
	if c.PKI != nil {
		ssl = fmt.Sprintf(", MASTER_SSL=1, MASTER_SSL_CA=%s, MASTER_SSL_VERIFY_SERVER_CERT=1", quote(c.PKI.CA))
	}
	return rootExec(ctx, n, 20*time.Second,
		"STOP SLAVE",
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%d, MASTER_USER=%s, MASTER_PASSWORD=%s, "+
			"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1%s",
			quote(primary.IP), primary.Port, quote(c.ReplUser), quote(c.ReplPassword), ssl),
		"START SLAVE",
		"SET GLOBAL read_only = ON",
	)
}

// waitReplicated waits until replica has executed everything primary has binlogged.
func waitReplicated(ctx context.Context, primary, replica *Node, limit time.Duration) error {
	pdb, err := openSocketDB(primary.Socket, "root", "")
	if err != nil {
		return err
	}
	defer pdb.Close()
	rdb, err := openSocketDB(replica.Socket, "root", "")
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := withTimeout(ctx, limit+2*time.Second)
	defer cancel()
	var pos string
	if err := pdb.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return fmt.Errorf("read %s gtid_binlog_pos: %w", primary.Name, err)
	}
	var res int
	if err := rdb.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, limit.Seconds()).Scan(&res); err != nil {
		return fmt.Errorf("wait for %s to reach %s: %w", replica.Name, pos, err)
	}
	if res != 0 {
		return fmt.Errorf("%s did not reach GTID %s within %s", replica.Name, pos, limit)
	}
	return nil
}

// liveRole asks a node what it is now: "replica" when it has replication configured,
// "primary" when it has none and is writable, "read_only" when neither, "down" when
// it does not answer.
func liveRole(ctx context.Context, n *Node) string {
	if !alive(n.PID) {
		return "down"
	}
	db, err := openSocketDB(n.Socket, "root", "")
	if err != nil {
		return "down"
	}
	defer db.Close()
	ctx, cancel := withTimeout(ctx, time.Second)
	defer cancel()
	var ro int
	if err := db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&ro); err != nil {
		return "down"
	}
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return "down"
	}
	replicating := rows.Next()
	rows.Close()
	switch {
	case replicating:
		return "replica"
	case ro == 0:
		return "primary"
	default:
		return "read_only"
	}
}
