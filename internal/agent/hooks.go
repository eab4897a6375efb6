package agent

// The operator's hooks: what runs before and after a failover or switchover, with
// what environment, for how long.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// hookOutputLimit caps how much of a hook's output is kept for the log.
const hookOutputLimit = 4 << 10

// HookEvent is the moment a hook runs at.
type HookEvent int

// Hook events.
const (
	PreFailover HookEvent = iota + 1
	PostFailover
	PreSwitchover
	PostSwitchover
)

// String returns the event's name as in the configuration file, e.g. "pre_failover".
func (e HookEvent) String() string {
	switch e {
	case PreFailover:
		return "pre_failover"
	case PostFailover:
		return "post_failover"
	case PreSwitchover:
		return "pre_switchover"
	case PostSwitchover:
		return "post_switchover"
	}
	return fmt.Sprintf("hook_event(%d)", int(e))
}

// Argv returns the command configured for e, nil when none is.
func (h Hooks) Argv(e HookEvent) []string {
	switch e {
	case PreFailover:
		return h.PreFailover
	case PostFailover:
		return h.PostFailover
	case PreSwitchover:
		return h.PreSwitchover
	case PostSwitchover:
		return h.PostSwitchover
	}
	return nil
}

func (h Hooks) validate() error {
	for _, e := range []HookEvent{PreFailover, PostFailover, PreSwitchover, PostSwitchover} {
		argv := h.Argv(e)
		if len(argv) == 0 {
			continue
		}
		field := "hooks." + e.String()
		if !filepath.IsAbs(argv[0]) {
			return fmt.Errorf("config: %s: %q: the program must be an absolute path (hooks run without a shell or PATH search)", field, argv[0])
		}
		// Checked now, not at failover time: a missing pre hook would make every
		// failover fail.
		fi, err := os.Stat(argv[0])
		if err != nil {
			return fmt.Errorf("config: %s: %w", field, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("config: %s: %s is not an executable file", field, argv[0])
		}
	}
	if h.Timeout <= 0 {
		return fmt.Errorf("config: hooks.timeout (%s): must be positive", h.Timeout)
	}
	return nil
}

// HookRun is what a hook is told about the flow it runs in, through its environment.
type HookRun struct {
	Event   HookEvent
	Cluster string
	// Node is the node whose agent runs the hook (the coordinator).
	Node       string
	OldPrimary string
	NewPrimary string
	// NewPrimaryAddr is the new primary's host:port.
	NewPrimaryAddr string
	// Epoch is the primary epoch the flow commits (or committed).
	Epoch  uint64
	Reason string
	// Result and Error are for post hooks: "done" or "failed", and why.
	Result string
	Error  string
}

// Env returns the hook's whole environment. The agent's own environment is not
// passed on: it may hold the BATON_*_PASSWORD secrets.
func (r HookRun) Env() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"BATON_EVENT=" + r.Event.String(),
		"BATON_CLUSTER=" + r.Cluster,
		"BATON_NODE=" + r.Node,
		"BATON_OLD_PRIMARY=" + r.OldPrimary,
		"BATON_NEW_PRIMARY=" + r.NewPrimary,
		"BATON_NEW_PRIMARY_ADDR=" + r.NewPrimaryAddr,
		"BATON_EPOCH=" + strconv.FormatUint(r.Epoch, 10),
		"BATON_REASON=" + r.Reason,
		"BATON_RESULT=" + r.Result,
		"BATON_ERROR=" + r.Error,
	}
}

// ErrNoHook says no hook is configured for the event.
var ErrNoHook = errors.New("agent: no hook configured")

// Run runs the hook of run.Event, without a shell, with run's environment (Env), stdin
// empty, in its own process group, and waits at most hooks.timeout (and ctx): then the
// whole group is killed. It returns the start of the combined output (4 KiB at most),
// for the log, and an error when the hook could not run, timed out or exited non-zero.
// ErrNoHook when none is configured.
func (h Hooks) Run(ctx context.Context, run HookRun) ([]byte, error) {
	argv := h.Argv(run.Event)
	if len(argv) == 0 {
		return nil, ErrNoHook
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = run.Env()
	cmd.Dir = "/"
	out := &limitedBuffer{limit: hookOutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A hook's children (a shell's sleep) hold its output pipe open: kill the group,
	// and stop waiting for the pipe soon after.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil && err != nil {
		return out.Bytes(), fmt.Errorf("hook %s: killed after %s: %w", run.Event, timeout, ctx.Err())
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("hook %s: %w", run.Event, err)
	}
	return out.Bytes(), nil
}

// limitedBuffer keeps the first limit bytes written to it and drops the rest, so a
// chatty hook cannot grow the agent's memory.
type limitedBuffer struct {
	buf   bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte { return b.buf.Bytes() }
