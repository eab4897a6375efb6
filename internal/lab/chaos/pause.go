package chaos

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/failpoint"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// pauseWatch is one agent armed at a named step: it stops itself there (SIGSTOP,
// internal/failpoint) and the watcher continues it hold later, as a thawed VM goes
// on. An agent that has not reached the step by the deadline is disarmed: started
// again without the step named.
type pauseWatch struct {
	node, point string
	pid         int
	hold        time.Duration
	deadline    time.Time
	c           *sandbox.Cluster // the watcher's own copy of the sandbox's state
	done        chan struct{}

	once sync.Once // the SIGCONT
	// Set by the watcher, read once done is closed.
	reached, ended time.Time
	outcome, err   string
}

// arm starts node's agent again (SIGTERM, as a supervisor's restart) with the step
// named in its environment, checks that it says it is armed (only a build with
// -tags failpoint does), and starts watching it.
func (r *runner) arm(ctx context.Context, node, point string, hold time.Duration, deadline time.Time) (*pauseWatch, error) {
	c := r.e.c
	if err := c.SetAgentEnv(node, []string{failpoint.Env + "=" + point}); err != nil {
		return nil, err
	}
	// Only this start: any later one (a kill-agent's heal, a rebuild) is unarmed.
	defer func() { _ = c.SetAgentEnv(node, nil) }()
	n, err := c.Node(node)
	if err != nil {
		return nil, err
	}
	logFrom := fileSize(n.AgentLog)
	if err := c.Fault(ctx, node, sandbox.TermAgent); err != nil {
		return nil, fmt.Errorf("stop the agent to arm it: %w", err)
	}
	if err := c.Fault(ctx, node, sandbox.StartAgent); err != nil {
		return nil, fmt.Errorf("start the agent armed: %w", err)
	}
	if n, err = c.Node(node); err != nil {
		return nil, err
	}
	said := fmt.Sprintf("failpoint: armed [%s] (pid %d)", point, n.AgentPID)
	if err := lab.Until(ctx, 5*time.Second, func() bool { return strings.Contains(tail(n.AgentLog, logFrom), said) }); err != nil {
		return nil, fmt.Errorf("the agent of %s does not say %q: its baton (%s) is not built with -tags failpoint", node, said, c.Binary)
	}
	wc, err := sandbox.Open("", c.Name, nil)
	if err != nil {
		return nil, err
	}
	w := &pauseWatch{node: node, point: point, pid: n.AgentPID, hold: hold, deadline: deadline, c: wc, done: make(chan struct{})}
	go w.run(context.WithoutCancel(ctx))
	return w, nil
}

// run waits for the agent to stop at its step, holds it, and continues it; or
// disarms it at the deadline.
func (w *pauseWatch) run(ctx context.Context) {
	defer close(w.done)
	for {
		switch procState(w.pid) {
		case 0, 'Z', 'X':
			w.ended, w.outcome = time.Now(), "the armed agent exited before it reached the step"
			return
		case 'T':
			w.reached = time.Now()
		}
		if !w.reached.IsZero() {
			break
		}
		if time.Now().After(w.deadline) {
			w.disarm(ctx)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(w.hold)
	w.cont()
	w.ended = time.Now()
	w.outcome = fmt.Sprintf("stopped at %s, continued %s later", w.point, w.hold)
}

// cont continues the paused agent, once.
func (w *pauseWatch) cont() {
	w.once.Do(func() { _ = syscall.Kill(w.pid, syscall.SIGCONT) })
}

// disarm starts the agent again without the step named: it did not reach it in
// time, and must not stop at it in a later round.
func (w *pauseWatch) disarm(ctx context.Context) {
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	w.ended = time.Now()
	w.outcome = fmt.Sprintf("not reached by %s: disarmed (agent restarted)", stamp(w.deadline))
	if procState(w.pid) == 'T' {
		w.outcome = "reached as it was disarmed: continued, then restarted"
	}
	w.cont()
	if err := w.c.Fault(dctx, w.node, sandbox.TermAgent); err != nil {
		w.err = "disarm: " + err.Error()
	}
	if err := w.c.Fault(dctx, w.node, sandbox.StartAgent); err != nil {
		w.err = strings.TrimPrefix(w.err+"; start again: "+err.Error(), "; ")
	}
	w.ended = time.Now()
}

// procState is the state letter of a process ('T': stopped), 0 when it is gone.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tail is what path holds from offset on (at most 1 MiB).
func tail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b)
}
