package sandbox

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
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Fault is a way to break (or mend) one node, as real outages do. See FAULTS.md.
type Fault int

// The faults, each followed by its inverse.
const (
	DiskFull           Fault = iota + 1 // fill the node's filesystem until binlog writes hang
	FreeDisk                            // remove the filler; MariaDB resumes at its next retry (up to 60 s); a quarantined old primary's agent then forgets its phantom GTIDs
	FreezeWrites                        // hold FLUSH TABLES WITH READ LOCK on a session
	ThawWrites                          // release it
	Stop                                // SIGSTOP mariadbd
	Cont                                // SIGCONT mariadbd; one ended meanwhile (its agent ends a frozen primary a failover deposes) is started again, as systemd would
	Kill                                // SIGKILL mariadbd
	Start                               // start mariadbd again on its data (read_only, as any restart)
	CutNetwork                          // drop every packet to and from the node
	HealNetwork                         // forward them again
	ReadonlyFS                          // a filesystem error turns the node's filesystem read-only
	WritableFS                          // repair it: stop the server, fsck, mount, start
	ExhaustConnections                  // hold every connection the server allows
	ReleaseConnections                  // close them
	KillAgent                           // SIGKILL the node's baton agent (the server is fine)
	StartAgent                          // start it again
	CutEtcd                             // drop the node's packets to every etcd member, and only those
	HealEtcd                            // route them again
	StopAgent                           // SIGSTOP the node's baton agent: frozen, its lease runs out, its server untouched
	ContAgent                           // SIGCONT it
	FreezeNode                          // SIGSTOP the node's mariadbd and its agent together, as a paused VM
	ThawNode                            // SIGCONT both, the server first
	Shutdown                            // a clean shutdown of mariadbd (SIGTERM, as a DBA's restart begins); Start starts it again
	TermAgent                           // SIGTERM the node's agent and wait until it exits (it hands the leader key over); StartAgent starts it again
	PurgeBinlogs                        // FLUSH BINARY LOGS, then PURGE BINARY LOGS TO the newest: a DBA freeing a full disk; it has no inverse
	faultEnd                            // not a fault: the end of the list
)

func (f Fault) String() string {
	switch f {
	case DiskFull:
		return "disk-full"
	case FreeDisk:
		return "free-disk"
	case FreezeWrites:
		return "freeze-writes"
	case ThawWrites:
		return "thaw-writes"
	case Stop:
		return "stop"
	case Cont:
		return "cont"
	case Kill:
		return "kill"
	case Start:
		return "start"
	case CutNetwork:
		return "cut-network"
	case HealNetwork:
		return "heal-network"
	case ReadonlyFS:
		return "readonly-fs"
	case WritableFS:
		return "writable-fs"
	case ExhaustConnections:
		return "exhaust-connections"
	case ReleaseConnections:
		return "release-connections"
	case KillAgent:
		return "kill-agent"
	case StartAgent:
		return "start-agent"
	case CutEtcd:
		return "cut-etcd"
	case HealEtcd:
		return "heal-etcd"
	case StopAgent:
		return "stop-agent"
	case ContAgent:
		return "cont-agent"
	case FreezeNode:
		return "freeze-node"
	case ThawNode:
		return "thaw-node"
	case Shutdown:
		return "shutdown"
	case TermAgent:
		return "term-agent"
	case PurgeBinlogs:
		return "purge-binlogs"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// Faults lists every fault.
func Faults() []Fault {
	var out []Fault
	for f := DiskFull; f < faultEnd; f++ {
		out = append(out, f)
	}
	return out
}

// ParseFault reads a fault's name, as `baton-lab sandbox fault` takes it.
func ParseFault(s string) (Fault, error) {
	for _, f := range Faults() {
		if f.String() == s {
			return f, nil
		}
	}
	var names []string
	for _, f := range Faults() {
		names = append(names, f.String())
	}
	return 0, fmt.Errorf("unknown fault %q: use one of %s", s, strings.Join(names, ", "))
}

// Inverse is the fault that undoes f; 0 when nothing does (PurgeBinlogs).
func (f Fault) Inverse() Fault {
	switch f {
	case Shutdown:
		return Start
	case TermAgent:
		return StartAgent
	case PurgeBinlogs:
		return 0
	}
	if f%2 == 1 {
		return f + 1
	}
	return f - 1
}

// Fault injects (or mends) a fault on one node and records what it needs to undo it.
func (c *Cluster) Fault(ctx context.Context, node string, f Fault) error {
	if _, err := c.Node(node); err != nil {
		return err
	}
	if f < DiskFull || f >= faultEnd {
		return fmt.Errorf("unknown fault %d", int(f))
	}
	return c.update(func() error {
		n, err := c.Node(node) // as the state file has it now
		if err != nil {
			return err
		}
		start := time.Now()
		if err := c.inject(ctx, n, f); err != nil {
			return fmt.Errorf("%s on %s: %w", f, node, err)
		}
		c.log.Info("fault injected", zap.String("node", node), zap.Stringer("fault", f), zap.Duration("took", time.Since(start)))
		return nil
	})
}

func (c *Cluster) inject(ctx context.Context, n *Node, f Fault) error {
	switch f {
	case DiskFull:
		return c.fillDisk(ctx, n)
	case FreeDisk:
		return os.Remove(filepath.Join(n.Mount, "filler")) // absent is an error: nothing to free
	case FreezeWrites:
		return c.startHolder(ctx, n, "lock")
	case ThawWrites:
		return c.stopHolder(ctx, n, "lock")
	case Stop:
		return c.signal(n, syscall.SIGSTOP)
	case Cont:
		if !alive(n.PID) {
			// Ended while stopped: an agent ends its frozen server when a failover
			// deposes it. Started again, as its supervisor (systemd) would.
			c.log.Info("mariadbd is gone (ended while stopped): started again, as a supervisor would", zap.String("node", n.Name))
			return c.restart(ctx, n)
		}
		return c.signal(n, syscall.SIGCONT)
	case Kill:
		if err := c.signal(n, syscall.SIGKILL); err != nil {
			return err
		}
		_ = syscall.Kill(n.PID, syscall.SIGCONT) // a stopped process dies only once continued
		return waitGone(ctx, n.PID, 10*time.Second)
	case Start:
		if alive(n.PID) {
			return fmt.Errorf("mariadbd is running (pid %d)", n.PID)
		}
		return c.restart(ctx, n)
	case CutNetwork:
		return setPort(ctx, c.BridgeNetNS, n.BridgePort, false)
	case HealNetwork:
		return setPort(ctx, c.BridgeNetNS, n.BridgePort, true)
	case ReadonlyFS:
		return readonlyFS(n)
	case WritableFS:
		return c.repairFS(ctx, n)
	case ExhaustConnections:
		return c.startHolder(ctx, n, "conns")
	case ReleaseConnections:
		return c.stopHolder(ctx, n, "conns")
	case KillAgent:
		if !alive(n.AgentPID) {
			return fmt.Errorf("no agent running (start the sandbox with --with-agents)")
		}
		return kill(ctx, n.AgentPID)
	case StartAgent:
		if n.AgentConfig == "" {
			return fmt.Errorf("the sandbox has no agents (start it with --with-agents)")
		}
		return c.startAgent(n)
	case CutEtcd:
		return c.routeEtcd(ctx, n, "add")
	case HealEtcd:
		return c.routeEtcd(ctx, n, "del")
	case StopAgent, ContAgent:
		if !alive(n.AgentPID) {
			return fmt.Errorf("no agent running (start the sandbox with --with-agents)")
		}
		sig := syscall.SIGSTOP
		if f == ContAgent {
			sig = syscall.SIGCONT
		}
		return stopOrSignal(n.AgentPID, sig)
	case FreezeNode:
		if err := c.signal(n, syscall.SIGSTOP); err != nil {
			return err
		}
		if alive(n.AgentPID) {
			return stopOrSignal(n.AgentPID, syscall.SIGSTOP)
		}
		return nil
	case ThawNode:
		// Whatever is left stopped goes on, even if one of the two died meanwhile.
		var errs []error
		if alive(n.PID) {
			errs = append(errs, syscall.Kill(n.PID, syscall.SIGCONT))
		}
		if alive(n.AgentPID) {
			errs = append(errs, syscall.Kill(n.AgentPID, syscall.SIGCONT))
		}
		return errors.Join(errs...)
	case Shutdown:
		return shutdown(ctx, n)
	case TermAgent:
		if !alive(n.AgentPID) {
			return fmt.Errorf("no agent running (start the sandbox with --with-agents)")
		}
		return terminate(ctx, n.AgentPID, agentStopLimit)
	case PurgeBinlogs:
		return purgeBinlogs(ctx, n)
	}
	return fmt.Errorf("unknown fault %d", int(f))
}

// Bounds of a clean stop: past them the process is killed and the fault fails,
// saying so (a server or an agent that does not stop when asked is a finding).
const (
	shutdownLimit  = 60 * time.Second
	agentStopLimit = 15 * time.Second
)

// shutdown stops a node's mariadbd cleanly, as `systemctl stop` does (SIGTERM), and
// waits until it is gone; a stopped (SIGSTOP) server is continued first.
func shutdown(ctx context.Context, n *Node) error {
	if !alive(n.PID) {
		return fmt.Errorf("mariadbd is not running")
	}
	return terminate(ctx, n.PID, shutdownLimit)
}

// terminate sends SIGTERM to pid (and SIGCONT, so that a stopped process sees it)
// and waits until it exits; after limit it is killed, and that is an error.
func terminate(ctx context.Context, pid int, limit time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	if err := waitGone(ctx, pid, limit); err != nil {
		if kerr := kill(context.WithoutCancel(ctx), pid); kerr != nil {
			return fmt.Errorf("%w; then SIGKILL: %v", err, kerr)
		}
		return fmt.Errorf("did not exit within %s of SIGTERM: killed", limit)
	}
	return nil
}

// purgeBinlogs is what a DBA does to free a full disk: rotate the binary log, then
// purge every file before the new one. MariaDB keeps gtid_binlog_state (the new
// file's Gtid_list holds it), but the purged files' events are gone. A file that a
// replica's dump thread still reads is kept (MariaDB warns); the DBA runs the purge
// again, every 100 ms for up to 2 s, until only the new file is left.
func purgeBinlogs(ctx context.Context, n *Node) error {
	db, err := openSocketDB(n.Socket, "root", "")
	if err != nil {
		return err
	}
	defer db.Close()
	qctx, cancel := withTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := db.Conn(qctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(qctx, "FLUSH BINARY LOGS"); err != nil {
		return fmt.Errorf("flush binary logs: %w", err)
	}
	files, err := binaryLogs(qctx, conn)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("no binary log")
	}
	newest := files[len(files)-1]
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := conn.ExecContext(qctx, "PURGE BINARY LOGS TO "+quote(newest)); err != nil {
			return fmt.Errorf("purge binary logs to %s: %w", newest, err)
		}
		if files, err = binaryLogs(qctx, conn); err != nil || len(files) <= 1 || time.Now().After(deadline) {
			return err
		}
		select {
		case <-qctx.Done():
			return qctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// binaryLogs lists a server's binary log files, oldest first.
func binaryLogs(ctx context.Context, conn *sql.Conn) ([]string, error) {
	rows, err := conn.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("show binary logs: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		var name string
		vals[0] = &name
		for i := 1; i < len(vals); i++ {
			vals[i] = new(any)
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, rows.Err()
}

func (c *Cluster) signal(n *Node, sig syscall.Signal) error {
	if !alive(n.PID) {
		return fmt.Errorf("mariadbd is not running")
	}
	return stopOrSignal(n.PID, sig)
}

// stopOrSignal sends sig to pid; for SIGSTOP it returns once every thread of the
// process is stopped. kill(2) returns before that: one thread takes the signal and
// stops the others, and meanwhile another can still answer a query (seen once in a
// full run: a frozen server answered SELECT 1 in 0.3 ms).
func stopOrSignal(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil || sig != syscall.SIGSTOP {
		return err
	}
	deadline := time.Now().Add(2 * time.Second)
	for !allStopped(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d: not every thread stopped 2s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// allStopped says whether every thread of pid is stopped ("T" in its stat); a
// process that is gone is not.
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			return false
		}
		// "pid (comm) S ...": the state follows the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

// restart starts a node's server on its data, read_only as any restart. A sandbox
// without agents makes its recorded primary writable again, since nothing else would;
// with agents, Baton decides.
func (c *Cluster) restart(ctx context.Context, n *Node) error {
	if err := c.startServer(ctx, n); err != nil {
		return err
	}
	if n.Role != "primary" || c.WithAgents {
		return nil
	}
	return c.makeWritable(ctx, n)
}

// fillDisk fills the node's filesystem, then, on a writable server, makes the binlog
// grow so that from now on every binlogged write waits for space, as FAULTS.md shows:
// a full disk alone lets small writes through on pre-allocated space for a while.
func (c *Cluster) fillDisk(ctx context.Context, n *Node) error {
	path := filepath.Join(n.Mount, "filler")
	if _, err := os.Stat(path); err == nil {
		return errors.New("the disk is already full (free-disk first)")
	}
	if err := fill(path, n.Mount); err != nil {
		return err
	}
	db, err := openSocketDB(n.Socket, "root", "")
	if err != nil {
		return err
	}
	defer db.Close() // in-flight statements keep their connection until they end
	qctx, cancel := withTimeout(ctx, 2*time.Second)
	defer cancel()
	var ro int
	if err := db.QueryRowContext(qctx, "SELECT @@read_only").Scan(&ro); err != nil || ro == 1 {
		// A replica (or a server not answering): its next relay-log or binlog write
		// hangs on its own; a write here would be an errant transaction.
		return nil
	}
	// 64 KiB through BLACKHOLE: nothing stored, all of it binlogged, more than the
	// binlog file's last block can hold. It hangs, and every binlogged write after it
	// waits behind it. It is left hanging: the fault is in place once it has started.
	done := make(chan error, 1)
	go func() {
		wctx, wcancel := withTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer wcancel()
		_, err := db.ExecContext(wctx, "INSERT INTO sandbox.fill(v) SELECT REPEAT('x', 16384) FROM sandbox.seq_1_to_4")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			return errors.New("a 64 KiB binlogged write succeeded on the full disk; binlog writes are not blocked")
		}
		return fmt.Errorf("binlogged write on the full disk failed instead of waiting for space: %w", err)
	case <-time.After(300 * time.Millisecond):
		return nil
	}
}

// fill writes a file until the filesystem has no space left, as root, so the reserved
// blocks go too.
func fill(path, mount string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create filler: %w", err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(mount, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", mount, err)
	}
	size := int64(st.Bfree) * st.Bsize
	// fallocate takes all free blocks at once; what it cannot take (metadata for the
	// extents), small writes take.
	for size > 1<<20 {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err == nil {
			break
		}
		size -= size / 8
	}
	buf := make([]byte, 64<<10)
	if _, err := f.Seek(0, 2); err != nil {
		return err
	}
	for i := 0; i < 100000; i++ {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			return fmt.Errorf("fill: %w", err)
		}
	}
	for _, sz := range []int{4096, 512, 1} {
		for i := 0; i < 64; i++ {
			if _, err := f.Write(buf[:sz]); err != nil {
				break
			}
		}
	}
	_ = f.Sync()
	return nil
}

// readonlyFS makes the node's filesystem read-only the way it happens to real servers:
// a filesystem error with errors=remount-ro. (A plain `mount -o remount,ro` is refused
// while mariadbd holds files open for writing.)
func readonlyFS(n *Node) error {
	dev, err := mountSource(n.Mount)
	if err != nil {
		return err
	}
	// What was written so far survives, as on a real server whose disk fails later.
	if err := syncFS(n.Mount); err != nil {
		return err
	}
	trigger := filepath.Join("/sys/fs/ext4", filepath.Base(dev), "trigger_fs_error")
	if err := os.WriteFile(trigger, []byte("baton sandbox readonly-fs"), 0o200); err != nil {
		return fmt.Errorf("trigger a filesystem error on %s: %w", dev, err)
	}
	return nil
}

// repairFS is what a person does for a filesystem that went read-only after an error:
// stop the server, unmount, fsck, mount, start again.
func (c *Cluster) repairFS(ctx context.Context, n *Node) error {
	if alive(n.PID) {
		if err := kill(ctx, n.PID); err != nil {
			return err
		}
	}
	if err := unmount(ctx, n.Mount, n.Image); err != nil {
		return err
	}
	// e2fsck exits 1 when it fixed something: that is success here.
	if out, err := output(ctx, "e2fsck", "-fy", n.Image); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			return fmt.Errorf("fsck: %w: %s", err, out)
		}
	}
	if err := run(ctx, "mount", "-o", "loop,errors=remount-ro", n.Image, n.Mount); err != nil {
		return err
	}
	return c.restart(ctx, n)
}

func mountSource(dir string) (string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == dir {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("%s is not mounted", dir)
}

// lock serialises changes to the sandbox across processes.
func (c *Cluster) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(c.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock sandbox: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock sandbox: %w", err)
	}
	return func() { f.Close() }, nil
}

// routeEtcd adds (or deletes) a blackhole route to every etcd member in the node's
// namespace: the node's agent loses etcd, and nothing else changes (replicas and
// clients still reach its server). Packets are dropped, not refused, as a firewall
// rule or a routing fault would.
//
//	ip -n NS route add blackhole ETCD_IP/32
func (c *Cluster) routeEtcd(ctx context.Context, n *Node, op string) error {
	for _, m := range c.EtcdMembers {
		if err := run(ctx, "ip", "-n", n.NetNS, "route", op, "blackhole", m.IP+"/32"); err != nil {
			return err
		}
	}
	return nil
}
