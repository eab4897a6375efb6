package agent

// Ending a hung server: a failover deposing this node, whose mysqld answers
// nothing (the detector's liveness probe timed out fail_after rounds in a row),
// cannot make that server read_only; the reconciler then asks the agent to end it
// (reconcile.ReconcilerConfig.EndServer, docs/architecture.md, "Fence"). Nothing
// of the data goes: InnoDB and the binary log recover at the next start, as after
// any crash, and the agent rejoins the node as a replica.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// endServer ends the mysqld named by pidFile with SIGKILL, and returns once the
// process is gone (exited, or a zombie its parent has not reaped: either way its
// sockets are closed), within ctx. It refuses a pid file it cannot read and a
// process that is not mariadbd or mysqld (a stale file, its pid reused).
func endServer(ctx context.Context, pidFile string) (string, error) {
	if pidFile == "" {
		return "", errors.New("the server's pid file is not known: the server never answered this agent")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return "", fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return "", fmt.Errorf("pid file %s holds %q, not a process id", pidFile, strings.TrimSpace(string(b)))
	}
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return "", fmt.Errorf("process %d of %s: %w", pid, pidFile, err)
	}
	switch name := strings.TrimSpace(string(comm)); name {
	case "mariadbd", "mysqld":
	default:
		return "", fmt.Errorf("process %d of %s is %s, not the server: the pid file is stale", pid, pidFile, name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return "", fmt.Errorf("SIGKILL process %d: %w", pid, err)
	}
	start := time.Now()
	for !processGone(pid) {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("process %d was sent SIGKILL but had not exited after %s (stuck in the kernel?): %w",
				pid, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return fmt.Sprintf("process %d (%s) ended with SIGKILL, gone after %s", pid, pidFile, time.Since(start).Round(time.Millisecond)), nil
}

// processGone says whether pid has exited: no such process, or a zombie (state Z
// or X, what follows the last ')' of its stat).
func processGone(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}

// endServerFunc is the reconciler's EndServer: this node's server, through the pid
// file it named when it last answered; nil when kill_frozen_primary is off.
func (a *Agent) endServerFunc() func(ctx context.Context) (string, error) {
	if !a.cfg.KillFrozenOn() {
		return nil
	}
	return func(ctx context.Context) (string, error) {
		if a.sv == nil {
			return "", errors.New("the server's files are not known yet")
		}
		a.sv.mu.Lock()
		pidFile := a.sv.files.PidFile
		a.sv.mu.Unlock()
		return endServer(ctx, pidFile)
	}
}
