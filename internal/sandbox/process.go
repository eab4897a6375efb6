package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startIn starts a detached process inside a network namespace, with its output
// appended to logFile and dir as its working directory. It enters only the network
// namespace (`nsenter --net`, which execs in place, so the pid is the program's own):
// `ip netns exec` would also give it a private mount namespace holding copies of every
// node's filesystem, which could then never be unmounted for real. The process outlives the caller; while
// the caller lives, it is reaped when it exits so it never lingers as a zombie.
func startIn(ns, dir, logFile string, argv ...string) (int, error) {
	return startInEnv(ns, dir, logFile, nil, argv...)
}

// startInEnv is startIn with env added to the process's environment.
func startInEnv(ns, dir, logFile string, env []string, argv ...string) (int, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	args := append([]string{"--net=/run/netns/" + ns, "--"}, argv...)
	cmd := exec.Command("nsenter", args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s in %s: %w", argv[0], ns, err)
	}
	go cmd.Wait() //nolint:errcheck // reaping only; the exit is observed through the pid
	return cmd.Process.Pid, nil
}

// alive says whether pid is a running (or stopped) process, not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may itself hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// cmdline returns the command line of pid, arguments separated by spaces.
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// kill sends SIGKILL to pid (and SIGCONT, so a stopped process dies too) and waits,
// bounded, until it is gone.
func kill(ctx context.Context, pid int) error {
	if !alive(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGCONT)
	return waitGone(ctx, pid, 5*time.Second)
}

func waitGone(ctx context.Context, pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still running after %s", pid, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// readPIDFile reads a pid file, waiting for it to appear.
func readPIDFile(ctx context.Context, path string, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no pid in %s after %s", path, limit)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
