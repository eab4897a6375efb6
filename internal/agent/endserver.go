package agent

// Ending a hung server: a failover deposing this node, whose mysqld answers
// nothing (reconcile: detector.Report.Hangs), cannot make that server read_only;
// the reconciler then asks the agent to end it (reconcile.ReconcilerConfig.EndServer,
// docs/architecture.md, "Reconciler and self-fencing"). Nothing of the data goes:
// InnoDB and the binary log recover at the next start, as after any crash, and the
// agent rejoins the node as a replica.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// endServer ends the mysqld named by pidFile with SIGKILL, and returns once the
// process has exited (gone, or a zombie its parent has not reaped: either way its
// sockets are closed), within ctx. The process is held by a pidfd from the checks
// to the signal, so a pid reused meanwhile is never signalled. It refuses a pid
// file it cannot read, one written after hungSince (a server started since the
// hang was seen, which is not the hung one; a zero hungSince is not known, and
// refused), a process that is not mariadbd or mysqld (a stale file, its pid
// reused), and one whose working directory, when readable, is not datadir (a pid
// of another PID namespace, another instance).
func endServer(ctx context.Context, pidFile, datadir string, hungSince time.Time) (string, error) {
	if hungSince.IsZero() {
		return "", errors.New("since when the server hangs is not known")
	}
	pid, written, err := readPidFile(pidFile)
	if err != nil {
		return "", err
	}
	if pid == 1 {
		return "", fmt.Errorf("pid file %s names process 1: not ended (its namespace's init)", pidFile)
	}
	if written.After(hungSince) {
		return "", fmt.Errorf("pid file %s was written at %s, after the server was found hung at %s: a server started since, not the hung one",
			pidFile, written.UTC().Format(time.RFC3339Nano), hungSince.UTC().Format(time.RFC3339Nano))
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return "", fmt.Errorf("process %d of %s: %w", pid, pidFile, err)
	}
	defer unix.Close(fd)
	if err := isServer(pid, pidFile, datadir); err != nil {
		return "", err
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		return "", fmt.Errorf("SIGKILL process %d: %w", pid, err)
	}
	start := time.Now()
	for !exited(pid) {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("process %d was sent SIGKILL but had not exited after %s (stuck in the kernel?): %w",
				pid, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return fmt.Sprintf("process %d (%s) ended with SIGKILL, gone after %s", pid, pidFile, time.Since(start).Round(time.Millisecond)), nil
}

// readPidFile reads the process id a server's pid file holds, and when the file
// was written (the server writes it as it starts). An error wraps fs.ErrNotExist
// when there is no such file.
func readPidFile(pidFile string) (int, time.Time, error) {
	if pidFile == "" {
		return 0, time.Time{}, errors.New("the server's pid file is not known: the server never answered this agent")
	}
	f, err := os.Open(pidFile)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("pid file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("pid file: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, time.Time{}, fmt.Errorf("pid file %s holds %q, not a process id", pidFile, strings.TrimSpace(string(b)))
	}
	return pid, fi.ModTime(), nil
}

// isServer checks that pid is the server: mariadbd or mysqld by name, and, when
// its working directory can be read (root, or the server's own user), datadir,
// where mysqld works.
func isServer(pid int, pidFile, datadir string) error {
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return fmt.Errorf("process %d of %s: %w", pid, pidFile, err)
	}
	switch name := strings.TrimSpace(string(comm)); name {
	case "mariadbd", "mysqld":
	default:
		return fmt.Errorf("process %d of %s is %s, not the server: the pid file is stale", pid, pidFile, name)
	}
	if datadir == "" {
		return nil
	}
	cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
	if err != nil {
		return nil // not ours to read: the name alone says it
	}
	if filepath.Clean(cwd) != filepath.Clean(datadir) {
		return fmt.Errorf("process %d of %s works in %s, not the server's datadir %s: another server's (another PID namespace?)", pid, pidFile, cwd, datadir)
	}
	return nil
}

// exited says whether pid has exited: no such process, or a zombie.
func exited(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	z, _ := zombie(pid)
	return z
}

// zombie says whether pid has exited and waits for its parent to reap it (state Z
// or X, what follows the last ')' of its stat); an error when its state cannot be
// read.
func zombie(pid int) (bool, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false, fmt.Errorf("process %d: stat unreadable", pid)
	}
	return b[i+2] == 'Z' || b[i+2] == 'X', nil
}

// endServerFunc is the reconciler's EndServer: this node's server, through the pid
// file it named when it last answered; nil when kill_frozen_primary is off.
func (a *Agent) endServerFunc() func(ctx context.Context, hungSince time.Time) (string, error) {
	if !a.cfg.KillFrozenOn() {
		return nil
	}
	return func(ctx context.Context, hungSince time.Time) (string, error) {
		if a.sv == nil {
			return "", errors.New("the server's files are not known yet")
		}
		a.sv.mu.Lock()
		files := a.sv.files
		a.sv.mu.Unlock()
		return endServer(ctx, files.PidFile, files.Datadir, hungSince)
	}
}

// checkCanEnd warns, at start, when kill_frozen_primary is on but the agent may not
// signal its server (EPERM: another user's process, and no CAP_KILL), rather than
// at the first failover that needs it.
func (a *Agent) checkCanEnd() {
	if !a.cfg.KillFrozenOn() || a.sv == nil {
		return
	}
	a.sv.mu.Lock()
	pidFile := a.sv.files.PidFile
	a.sv.mu.Unlock()
	pid, _, err := readPidFile(pidFile)
	if err != nil {
		return
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.EPERM) {
		a.log.Warn("kill_frozen_primary is on, but this agent may not signal its server: a frozen primary would be left frozen; "+
			"give the agent CAP_KILL (deploy/baton-agent.service does) or run it as the server's user, or set kill_frozen_primary: false",
			zap.Int("pid", pid), zap.String("pid_file", pidFile))
	}
}
