package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// refusal is a flow that stopped before changing anything that matters because it
// found the move unsafe (no caught-up candidate, errant transactions).
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }

// flow is one failover or switchover, step by step, each step timed.
type flow struct {
	c       *Coordinator
	s       *concurrency.Session
	g       cluster.Guard
	snap    cluster.Snapshot
	d       cluster.Decision
	policy  cluster.Policy // the policy d was decided with
	started time.Time
	steps   []cluster.Step
	request *cluster.Request // the operator's request, when there is one: progress goes there
	mu      sync.Mutex
	// stoppedSilent are the replicas without an agent whose IO thread this flow
	// stopped: an abandoned flow restarts those, and no other without an agent
	// (one stopped by a person stays stopped).
	stoppedSilent []string
	// fenced: this flow's fence of the old primary's server succeeded (read_only
	// on, client connections killed).
	fenced bool
	// salvaged is what the salvage step did, for the history event.
	salvaged *cluster.Salvage
	// quiet: the steps are not written to the operator's request as they end,
	// from the announce until the new primary can take writes again and clients
	// can reach it: every step of that window is time writes are blocked, and a
	// write to etcd, synced to disk, competes with the window's own (the commit,
	// the leader key, the servers' replication changes). The next write after it,
	// or the request's final update, carries them.
	quiet bool
}

func (f *flow) kind() cluster.FlowKind { return f.d.Action.Flow() }

// step runs fn as a named step and records how long it took.
func (f *flow) step(ctx context.Context, name string, fn func() (string, error)) error {
	return f.run1(ctx, name, false, fn)
}

// bestEffort is step for a step whose failure does not stop the flow: it is
// recorded as such, so that what reads it does not call the flow's success an error.
func (f *flow) bestEffort(ctx context.Context, name string, fn func() (string, error)) {
	_ = f.run1(ctx, name, true, fn)
}

func (f *flow) run1(ctx context.Context, name string, bestEffort bool, fn func() (string, error)) error {
	start := time.Now()
	note, err := fn()
	st := cluster.Step{Name: name, Took: time.Since(start), Note: note, BestEffort: bestEffort}
	if err != nil {
		st.Error = err.Error()
	}
	f.record(ctx, st)
	f.c.log.Info("step", zap.Stringer("flow", f.kind()), zap.String("step", name), zap.Duration("took", st.Took),
		zap.String("note", note), zap.Error(err))
	return err
}

func (f *flow) record(ctx context.Context, st cluster.Step) {
	f.mu.Lock()
	f.steps = append(f.steps, st)
	steps := append([]cluster.Step(nil), f.steps...)
	quiet := f.quiet
	f.mu.Unlock()
	if f.request != nil && !quiet {
		r := *f.request
		r.Steps = steps
		if err := f.c.cfg.Store.UpdateRequest(context.WithoutCancel(ctx), f.g, r); err != nil {
			f.c.log.Debug("record progress", zap.Error(err))
		}
	}
}

func (f *flow) setQuiet(on bool) {
	f.mu.Lock()
	f.quiet = on
	f.mu.Unlock()
}

func (f *flow) instance(name string) (Server, error) {
	addr := ""
	if n, ok := f.snap.Nodes[name]; ok {
		addr = n.Addr
	}
	if m, ok := f.snap.Members[name]; ok && addr == "" {
		addr = m.Addr
	}
	if name == f.snap.Primary.Node && f.snap.Primary.Addr != "" {
		addr = f.snap.Primary.Addr
	}
	if addr == "" {
		return nil, fmt.Errorf("no address known for %s", name)
	}
	return f.c.cfg.Servers.Instance(name, addr)
}

// replicas are the live nodes other than the old primary.
func (f *flow) replicas() []string {
	var out []string
	for _, n := range sortedNodes(f.snap.Nodes) {
		if n.Node != f.d.From {
			out = append(out, n.Node)
		}
	}
	return out
}

// silent are the members other than the old primary whose agent is not running,
// in a failover: their servers may still run and hold transactions the live
// replicas lack (semi-sync may have had them acknowledge the latest commits), so
// the flow stops their IO threads and reads them before it promotes anyone. A
// switchover needs not: its candidate executes the old primary's final set.
func (f *flow) silent() []string {
	if f.d.Action != cluster.Failover {
		return nil
	}
	var out []string
	for name := range f.snap.Members {
		if _, live := f.snap.Nodes[name]; !live && name != f.d.From {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (f *flow) hook(stage cluster.HookStage, to string) HookCall {
	return HookCall{Stage: stage, OldPrimary: f.d.From, NewPrimary: to, NewPrimaryAddr: f.snap.Nodes[to].Addr,
		Epoch: f.snap.Primary.Epoch + 1, Reason: f.d.Reason}
}

// run carries out the flow. Up to the commit, an error leaves the primary of record
// as it was (the reconcilers restart replication once the intent is gone).
func (f *flow) run(ctx context.Context) (cluster.Event, error) {
	cfg := f.c.cfg
	log := f.c.log.With(zap.Stringer("flow", f.kind()), zap.String("from", f.d.From))
	log.Info("starting", zap.String("reason", f.d.Reason), zap.Strings("candidates", f.d.Candidates))
	var (
		target  replication.GTIDSet
		chosen  replication.Ranked
		fenceWG sync.WaitGroup
		// fenceEnded is closed when a failover's fence of the old primary ends.
		fenceEnded = make(chan struct{})
	)
	// What may refuse the flow comes before the intent: once it is announced, the old
	// primary fences itself.
	if cfg.Hooks != nil {
		if err := f.step(ctx, "pre_hook", func() (string, error) {
			return "", cfg.Hooks.Run(ctx, f.hook(f.kind().PreHook(), f.d.To))
		}); err != nil {
			return cluster.Event{}, &refusal{fmt.Sprintf("%s hook failed: %v", f.kind().PreHook(), err)}
		}
	}
	if f.d.Action == cluster.Switchover {
		if err := f.step(ctx, "rank", func() (string, error) {
			var err error
			chosen, err = f.rank(ctx)
			return chosen.Name + ": " + chosen.Reason, err
		}); err != nil {
			return cluster.Event{}, err
		}
		if err := f.step(ctx, "open_writes", func() (string, error) { return f.checkOpenWrites(ctx) }); err != nil {
			return cluster.Event{}, &refusal{err.Error()}
		}
	}
	intent := cluster.Intent{Kind: f.kind(), Epoch: f.snap.Primary.Epoch, From: f.d.From, To: f.d.To, Started: f.started.UTC()}
	var intentRev int64
	f.setQuiet(true)
	if err := f.step(ctx, "announce", func() (string, error) {
		if why := cfg.heldOff(); why != "" {
			return "", errors.New(why)
		}
		var err error
		intentRev, err = cfg.Store.PutIntent(ctx, f.g, f.s.Lease(), f.snap.PrimaryModRev, intent)
		return "", err
	}); err != nil {
		return cluster.Event{}, err
	}
	committed := false
	defer func() {
		if !committed {
			// Only a flow that still owns its intent may undo its stops: if the intent
			// is gone or another's (this coordinator was deposed, a successor's flow
			// runs), restarting replication would repoint replicas at the old primary
			// in the middle of that flow.
			if err := cfg.Store.DeleteIntent(context.WithoutCancel(ctx), f.g, intentRev); err != nil {
				log.Warn("withdraw intent; replication left as it is", zap.Error(err))
				return
			}
			f.restartReplication(context.WithoutCancel(ctx))
		}
	}()

	if f.d.Action == cluster.Failover {
		// Stop every replica's IO thread: with semi-sync the old primary can then no
		// longer get a commit acknowledged. Fence the old primary meanwhile, best
		// effort: a dead or frozen one only costs the fence its deadline.
		fenceWG.Add(1)
		go func() {
			defer close(fenceEnded)
			defer fenceWG.Done()
			f.bestEffort(ctx, "fence_old_primary", func() (string, error) { return f.fenceOld(ctx) })
		}()
		// A stop that fails is recorded here; rank then refuses any replica it reads
		// with its IO thread not stopped.
		f.bestEffort(ctx, "stop_io", func() (string, error) { return f.stopIO(ctx) })
		if err := f.step(ctx, "rank", func() (string, error) {
			var err error
			chosen, err = f.rank(ctx)
			return chosen.Name + ": " + chosen.Reason, err
		}); err != nil {
			fenceWG.Wait()
			return cluster.Event{}, err
		}
		target = chosen.Target
	} else {
		if err := f.step(ctx, "fence_old_primary", func() (string, error) {
			note, err := f.fenceOld(ctx)
			if err != nil {
				return note, fmt.Errorf("fence %s: %w", f.d.From, err)
			}
			return note, nil
		}); err != nil {
			return cluster.Event{}, &refusal{err.Error()}
		}
		if err := f.step(ctx, "final_gtid", func() (string, error) {
			old, err := f.instance(f.d.From)
			if err != nil {
				return "", err
			}
			st, err := old.Status(ctx)
			if err != nil {
				return "", fmt.Errorf("read %s's final GTID set: %w", f.d.From, err)
			}
			target = st.Executed
			return target.String(), nil
		}); err != nil {
			return cluster.Event{}, &refusal{err.Error()}
		}
	}

	if err := f.step(ctx, "catchup", func() (string, error) {
		in, err := f.instance(chosen.Name)
		if err != nil {
			return "", err
		}
		if err := in.WaitExecuted(ctx, target, cfg.CatchupTimeout); err != nil {
			return "", fmt.Errorf("%s did not apply %s within %s: %w", chosen.Name, target.Position(), cfg.CatchupTimeout, err)
		}
		return chosen.Name + " has " + target.Position(), nil
	}); err != nil {
		fenceWG.Wait()
		return cluster.Event{}, &refusal{err.Error()}
	}

	if f.d.Action == cluster.Failover {
		// What the old primary logged and no replica received, read from its disk by
		// its agent, applied to the candidate before it can take writes (salvage.go).
		var out salvageOutcome
		_ = f.step(ctx, "salvage", func() (string, error) {
			out = f.salvage(ctx, salvageRun{candidate: chosen.Name,
				waitFence: func() bool { fenceWG.Wait(); return f.oldFenced() },
				fencing: func() bool {
					select {
					case <-fenceEnded:
						return false
					default:
						return true
					}
				},
				owns: func(ctx context.Context) error { return cfg.Store.HoldsIntent(ctx, f.g, intentRev) }})
			return out.note, out.err
		})
		f.mu.Lock()
		f.salvaged = out.rec
		f.mu.Unlock()
		if out.refuse != nil {
			fenceWG.Wait()
			return cluster.Event{}, out.refuse
		}
		// A START SLAVE that landed after the ranking (an agent frozen inside Follow,
		// thawed now) would have its replica acknowledge the old primary's commits,
		// which the new primary lacks: seen again just before the commit.
		if err := f.step(ctx, "io_stopped", func() (string, error) { return f.checkIOStopped(ctx) }); err != nil {
			fenceWG.Wait()
			return cluster.Event{}, err
		}
	}

	now := cfg.Now().UTC()
	next := cluster.Primary{Node: chosen.Name, Addr: f.snap.Nodes[chosen.Name].Addr, ServerID: chosen.ServerID, ServerUUID: chosen.ServerUUID,
		Epoch: f.snap.Primary.Epoch + 1, Since: now, LastFailover: f.snap.Primary.LastFailover,
		// What the catch-up saw it apply: the other replicas may follow it from the
		// commit on, while it is promoted (cluster.Primary.Executed).
		Executed: target.String()}
	if f.d.Action == cluster.Failover {
		next.LastFailover = now
	}
	var block *cluster.Block
	if blocksAfter(f.d, f.policy) {
		// The anti-flap window is an etcd lease, so that no node's wall clock decides
		// when it ends. Without the lease the failover still goes on, unblocked after.
		lease, err := cfg.Store.GrantBlock(ctx, f.policy.FailoverBlock)
		if err != nil {
			log.Warn("no anti-flap block after this failover", zap.Error(err))
		} else {
			block = &cluster.Block{FailoverBlock: cluster.FailoverBlock{Epoch: next.Epoch, To: next.Node, For: f.policy.FailoverBlock, At: now}, Lease: lease}
		}
	}
	if err := f.step(ctx, "commit", func() (string, error) {
		if why := cfg.heldOff(); why != "" {
			return "", errors.New(why)
		}
		return fmt.Sprintf("primary %s epoch %d", next.Node, next.Epoch), cfg.Store.CommitPrimary(ctx, f.g, f.snap.PrimaryModRev, intentRev, next, block)
	}); err != nil {
		if block != nil {
			_ = cfg.Store.RevokeLease(context.WithoutCancel(ctx), block.Lease)
		}
		fenceWG.Wait()
		return cluster.Event{}, err
	}
	committed = true
	log.Info("committed", zap.String("to", next.Node), zap.Uint64("epoch", next.Epoch))
	f.bestEffort(ctx, "leader", func() (string, error) { return f.waitPromoted(ctx, next, false) })
	promoted := f.step(ctx, "promote", func() (string, error) { return f.waitPromoted(ctx, next, true) }) == nil
	if promoted && len(f.stoppedSilentNames()) > 0 {
		f.bestEffort(ctx, "repoint_silent", func() (string, error) { return f.repointSilent(ctx, next) })
	}
	if promoted {
		f.bestEffort(ctx, "can_commit", func() (string, error) { return f.waitCanCommit(ctx, next) })
	}
	if promoted && hasAddress(f.snap) {
		// The new primary announces itself before it moves the address: the flow
		// (its post hook, its event) ends once the address has moved too.
		f.bestEffort(ctx, "address", func() (string, error) { return f.waitAddress(ctx, next) })
	}
	fenceWG.Wait()
	f.setQuiet(false)
	if cfg.Hooks != nil {
		f.bestEffort(ctx, "post_hook", func() (string, error) {
			call := f.hook(f.kind().PostHook(), next.Node)
			call.Result = "done"
			return "", cfg.Hooks.Run(ctx, call)
		})
	}
	f.mu.Lock()
	ev := cluster.Event{Kind: f.kind().Event(), From: f.d.From, To: next.Node, Epoch: next.Epoch, Reason: f.d.Reason,
		Started: f.started.UTC(), Took: cfg.Now().Sub(f.started), Steps: append([]cluster.Step(nil), f.steps...), Manual: f.d.Manual,
		Detected: detectedAt(f.snap, f.d, f.started), Salvage: f.salvaged,
		Runway: runwayOf(f.snap, next.Node)}
	f.mu.Unlock()
	if err := cfg.Store.AppendHistory(context.WithoutCancel(ctx), ev); err != nil {
		log.Warn("record history", zap.Error(err))
	}
	log.Info("done", zap.String("to", next.Node), zap.Duration("took", ev.Took))
	return ev, nil
}

// detectedAt is when the primary was first seen failing, for an automatic failover's
// history event: since when its agent has published the failed verdict. Zero when
// not known (its agent gone, a manual flow, a switchover) or not before started (the
// agent's clock is not the coordinator's: a time after the flow began is not kept).
func detectedAt(snap cluster.Snapshot, d cluster.Decision, started time.Time) time.Time {
	if d.Action != cluster.Failover || d.Manual {
		return time.Time{}
	}
	n, ok := snap.Nodes[d.From]
	if !ok || n.VerdictSince.IsZero() || !n.VerdictSince.Before(started) {
		return time.Time{}
	}
	switch n.Verdict {
	case detector.Unwritable, detector.Unreachable:
		return n.VerdictSince.UTC()
	}
	return time.Time{}
}

// checkOpenWrites refuses a switchover while a write transaction has been open on the
// old primary for LongWrite or more: writes would stay blocked until it ends.
func (f *flow) checkOpenWrites(ctx context.Context) (string, error) {
	old, err := f.instance(f.d.From)
	if err != nil {
		return "", err
	}
	ws, err := old.OpenWrites(ctx, f.c.cfg.LongWrite)
	if err != nil {
		return "", err
	}
	if len(ws) == 0 {
		return fmt.Sprintf("no write open for %s or more", f.c.cfg.LongWrite), nil
	}
	w := ws[0]
	return "", fmt.Errorf("a write transaction has been open on %s for %s (thread %d, %d rows changed, %s): let it finish or kill it, then ask again",
		f.d.From, w.Age.Round(time.Second), w.ThreadID, w.RowsModified, w.State)
}

// fenceOld makes the old primary read_only and kills its client connections, within
// FenceTimeout.
func (f *flow) fenceOld(ctx context.Context) (string, error) {
	in, err := f.instance(f.d.From)
	if err != nil {
		return "", err
	}
	fctx, cancel := context.WithTimeout(ctx, f.c.cfg.FenceTimeout)
	defer cancel()
	rep, err := in.Fence(fctx)
	if err == nil && rep.ReadOnly {
		f.mu.Lock()
		f.fenced = true
		f.mu.Unlock()
	}
	return fmt.Sprintf("read_only=%v, %d connections killed", rep.ReadOnly, rep.Killed), err
}

// oldFenced says whether this flow's fence of the old primary's server succeeded.
func (f *flow) oldFenced() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fenced
}

// stopIOTimeout bounds STOP SLAVE IO_THREAD. The statement marks the thread to stop
// at once, so it reads (and acknowledges) nothing more; what it then waits for is the
// thread's exit, which with semi-sync includes connecting to the old primary to kill
// its dump thread: up to rpl_semi_sync_slave_kill_conn_timeout when that primary is
// frozen or cut off. Not worth waiting for: the statement is killed at its deadline,
// and the server finishes it (the thread exits), holding the replication lock until
// then.
const stopIOTimeout = 400 * time.Millisecond

// stopIOBusyTimeout bounds the second StopIO on a replica whose replication lock was
// held at the first: its agent is changing its replication (Follow, which confirmed
// before this flow announced itself that no flow runs), within
// replication.DefaultTimeout. The flow must not rank that replica before the change
// is done and its IO thread stopped after it: a START SLAVE landing after the ranking
// would fetch the old primary's last commits, which the new primary lacks.
const stopIOBusyTimeout = 3 * time.Second

// ioExitWait bounds how long rank waits for an IO thread still running to exit: a
// STOP SLAVE IO_THREAD killed at stopIOTimeout leaves the thread marked to stop (it
// reads and acknowledges nothing more) and, with semi-sync, connecting to a frozen
// or cut-off old primary to kill its dump thread, up to
// rpl_semi_sync_slave_kill_conn_timeout. Without this wait the flow refused, and the
// failover came only at the next attempt, seconds later.
const ioExitWait = 1500 * time.Millisecond

// awaitIOExit reads in's status again, every 50 ms, until its IO thread is
// stopped or ioExitWait has passed; it returns the latest status read.
func awaitIOExit(ctx context.Context, in Server, st replication.Status) (replication.Status, error) {
	deadline := time.Now().Add(ioExitWait)
	for st.IOThread != replication.ThreadStopped && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		next, err := in.Status(ctx)
		if err != nil {
			return st, err
		}
		st = next
	}
	return st, nil
}

// stopIO stops the IO thread of every replica it can reach, at once: the live ones
// and those whose agent is gone.
func (f *flow) stopIO(ctx context.Context) (string, error) {
	live := f.replicas()
	names := append(live, f.silent()...)
	errs := make([]error, len(names))
	waited := make([]bool, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := f.instance(name)
			if err == nil {
				err = stopIOWithin(ctx, in, stopIOTimeout)
				if errors.Is(err, replication.ErrBusy) {
					waited[i] = true
					err = stopIOWithin(ctx, in, stopIOBusyTimeout)
				}
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
				return
			}
			if i >= len(live) {
				f.mu.Lock()
				f.stoppedSilent = append(f.stoppedSilent, name)
				f.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	note := fmt.Sprintf("stopped on %s", strings.Join(names, ", "))
	for i, name := range names {
		if waited[i] {
			note += "; waited for " + name + "'s replication change to end"
		}
	}
	return note, errors.Join(errs...)
}

// checkIOStopped reads every replica the failover knows of (live, and those
// without an agent whose IO thread it stopped) and refuses while one has its IO
// thread not stopped, or, unless an operator forced the failover, cannot be read.
func (f *flow) checkIOStopped(ctx context.Context) (string, error) {
	names := append(f.replicas(), f.stoppedSilentNames()...)
	running := make([]string, len(names))
	unread := make([]string, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := f.instance(name)
			var st replication.Status
			if err == nil {
				st, err = in.Status(ctx)
			}
			switch {
			case err != nil:
				unread[i] = fmt.Sprintf("%s: %v", name, err)
			case st.IOThread != replication.ThreadStopped:
				running[i] = fmt.Sprintf("%s (IO thread %s)", name, st.IOThread)
			}
		}()
	}
	wg.Wait()
	running, unread = slices.DeleteFunc(running, isEmpty), slices.DeleteFunc(unread, isEmpty)
	if len(running) > 0 {
		return "", &refusal{fmt.Sprintf("replication started again after the ranking on %s: it may acknowledge the old primary's commits", strings.Join(running, ", "))}
	}
	if len(unread) > 0 && !f.forced() {
		return "", &refusal{fmt.Sprintf("a replica cannot be read before the commit (%s): its IO thread may run", strings.Join(unread, "; "))}
	}
	note := "IO thread stopped on " + strings.Join(names, ", ")
	if len(unread) > 0 {
		note += "; forced past replicas not read: " + strings.Join(unread, "; ")
	}
	return note, nil
}

func isEmpty(s string) bool { return s == "" }

// forced says whether an operator forced this flow (baton failover --force).
func (f *flow) forced() bool { return f.request != nil && f.request.Force }

func stopIOWithin(ctx context.Context, in Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return in.StopIO(ctx)
}

// restartReplication starts replication again on the replicas after an abandoned
// flow: the live ones (their reconcilers would too) and those without an agent whose
// IO thread the flow stopped.
func (f *flow) restartReplication(ctx context.Context) {
	f.mu.Lock()
	silent := append([]string(nil), f.stoppedSilent...)
	f.mu.Unlock()
	for _, name := range append(f.replicas(), silent...) {
		in, err := f.instance(name)
		if err == nil {
			err = in.StartReplication(ctx)
		}
		if err != nil {
			f.c.log.Warn("restart replication after an abandoned flow", zap.String("node", name), zap.Error(err))
		}
	}
}

// rank reads every replica's status from its server, the live ones and those
// whose agent is gone, and chooses (see choose).
func (f *flow) rank(ctx context.Context) (replication.Ranked, error) {
	names := f.replicas()
	silent := f.silent()
	all := append(append([]string(nil), names...), silent...)
	cands := make([]replication.Candidate, len(all))
	errs := make([]error, len(all))
	var ioRunning []string
	var wg sync.WaitGroup
	for i, name := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := f.instance(name)
			if err != nil {
				errs[i] = err
				return
			}
			st, err := in.Status(ctx)
			if err == nil && f.d.Action == cluster.Failover && st.IOThread != replication.ThreadStopped {
				st, err = awaitIOExit(ctx, in, st)
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
				return
			}
			if f.d.Action == cluster.Failover && st.IOThread != replication.ThreadStopped {
				f.mu.Lock()
				ioRunning = append(ioRunning, fmt.Sprintf("%s (IO thread %s)", name, st.IOThread))
				f.mu.Unlock()
			}
			c := st.Candidate(name)
			if n, ok := f.snap.Nodes[name]; ok {
				c.Priority, c.NoPromote, c.StorageOK, c.Runway = n.Priority, n.NoPromote, n.StorageOK, n.Runway()
			} else {
				c.Unpromotable = "its agent is not running"
			}
			cands[i] = c
		}()
	}
	wg.Wait()
	slices.Sort(ioRunning)
	in := choice{action: f.d.Action, to: f.d.To, allowed: f.d.Candidates, force: f.forced(), ioRunning: ioRunning}
	for i := range all {
		if errs[i] != nil {
			in.unread = append(in.unread, errs[i].Error())
			continue
		}
		in.read = append(in.read, cands[i])
	}
	if old, ok := f.snap.Nodes[f.d.From]; ok || f.snap.Primary.ServerID != 0 {
		ps := replication.Server{ServerID: f.snap.Primary.ServerID, ServerUUID: f.snap.Primary.ServerUUID}
		if ok && old.GTID != "" && len(in.read) > 0 {
			if set, err := replication.ParseGTIDSet(in.read[0].Executed.Flavor(), old.GTID); err == nil {
				ps.Executed = set
			}
		}
		in.primary = &ps
	}
	return choose(in)
}

// choice is what choose weighs: the replicas read from their servers, and those
// that could not be read.
type choice struct {
	action  cluster.Action
	to      string   // the requested target, "" for any
	allowed []string // the decision's candidates
	force   bool     // an operator's forced request
	primary *replication.Server
	// read are the replicas read; those whose agent is gone are Unpromotable.
	read []replication.Candidate
	// unread say which replicas could not be read, and why.
	unread []string
	// ioRunning are the replicas read whose IO thread is not stopped (a failover's
	// stop_io could not stop it), with its state.
	ioRunning []string
}

// choose ranks the replicas read and returns the best one the decision allows, or
// a refusal. A failover refuses while any replica cannot be read, whether or not its
// agent runs: its server may hold transactions every other replica lacks (with
// semi-sync, it may be the one that acknowledged the latest commits). Only an
// operator's forced request goes past it. Replicas whose agent is gone count for
// completeness when read, but are never chosen.
//
// A failover also refuses while a replica it read has its IO thread running (or
// connecting): that replica may still acknowledge the old primary's semi-sync
// commits after the ranking, and with the old primary unreachable they would never
// reach the new one. Force does not go past it: the replica answers, it is not gone.
func choose(in choice) (replication.Ranked, error) {
	if len(in.ioRunning) > 0 && in.action == cluster.Failover {
		return replication.Ranked{}, &refusal{fmt.Sprintf("the IO thread of %s could not be stopped: it may acknowledge the old primary's commits after the ranking "+
			"(its agent may hold the replication lock); tried again at the next attempt, or stop it by hand (STOP SLAVE IO_THREAD)",
			strings.Join(in.ioRunning, ", "))}
	}
	if len(in.unread) > 0 && in.action == cluster.Failover && !in.force {
		return replication.Ranked{}, &refusal{fmt.Sprintf("a replica cannot be read and may hold transactions the others lack (%s): "+
			"bring its server back, remove it from members/ if it is gone for good, or fail over by hand with `baton failover --force`",
			strings.Join(in.unread, "; "))}
	}
	ranked := replication.Rank(in.primary, in.read)
	allowed := map[string]bool{}
	for _, c := range in.allowed {
		allowed[c] = true
	}
	var why []string
	for _, r := range ranked {
		// A switchover waits for the candidate to execute the old primary's final set,
		// which holds every replica's transactions: one that merely lags is fine.
		fit := r.Eligible || (r.Incomplete && in.action == cluster.Switchover)
		if fit && allowed[r.Name] && (in.to == "" || r.Name == in.to) {
			if len(in.unread) > 0 && in.action == cluster.Failover {
				r.Reason += "; forced past replicas not read: " + strings.Join(in.unread, "; ")
			}
			return r, nil
		}
		why = append(why, r.Name+": "+r.Reason)
	}
	why = append(why, in.unread...)
	return replication.Ranked{}, &refusal{"no safe candidate: " + strings.Join(why, "; ")}
}

// waitPromoted waits until the new primary's agent holds the leader key (the old
// primary's agent let it go), or, with writable, until that agent reports its server
// writable (it announces that before it moves the virtual IP, if any, so that the
// replicas follow it meanwhile; the status after the move says it holds the address).
func (f *flow) waitPromoted(ctx context.Context, p cluster.Primary, writable bool) (string, error) {
	note, err := f.waitView(ctx, f.c.cfg.PromoteTimeout, func(snap cluster.Snapshot) (string, bool) {
		if snap.Leader != p.Node {
			return "", false
		}
		if !writable {
			return p.Node + " holds leader", true
		}
		n := snap.Nodes[p.Node]
		return p.Node + " writable", n.Role == cluster.RolePrimary && n.Epoch == p.Epoch && !n.ReadOnly
	})
	if err != nil {
		return "", fmt.Errorf("%s not promoted within %s: %w", p.Node, f.c.cfg.PromoteTimeout, err)
	}
	return note, nil
}

// waitView reads the cluster every 20 ms until done says so, for bound at most
// (errViewTimeout then).
func (f *flow) waitView(ctx context.Context, bound time.Duration, done func(cluster.Snapshot) (string, bool)) (string, error) {
	deadline := time.Now().Add(bound)
	for {
		if snap, err := f.c.cfg.Store.Load(ctx); err == nil {
			if note, ok := done(snap); ok {
				return note, nil
			}
		}
		if time.Now().After(deadline) {
			return "", errViewTimeout
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var errViewTimeout = errors.New("not seen in time")

// hasAddress says whether the cluster has a virtual IP: a node published that it
// held it when the flow read the cluster.
func hasAddress(snap cluster.Snapshot) bool {
	for _, n := range snap.Nodes {
		if n.VIP {
			return true
		}
	}
	return false
}

// addressTimeout bounds the address step: as long as an old primary keeps the
// address for the new one (reconcile.HandoverBound). A new primary that cannot
// take the address (its agent lacks the capability, say) does not hold the flow,
// and the next, for longer.
const addressTimeout = 2 * time.Second

// waitAddress waits (addressTimeout at most, PromoteTimeout if shorter) until the
// new primary's agent publishes that it holds the virtual IP.
func (f *flow) waitAddress(ctx context.Context, p cluster.Primary) (string, error) {
	bound := min(addressTimeout, f.c.cfg.PromoteTimeout)
	note, err := f.waitView(ctx, bound, func(snap cluster.Snapshot) (string, bool) {
		n := snap.Nodes[p.Node]
		return p.Node + " holds the virtual IP", n.Epoch == p.Epoch && n.VIP
	})
	if err != nil {
		return "", fmt.Errorf("%s does not say it holds the virtual IP after %s: %w", p.Node, bound, err)
	}
	return note, nil
}

func (f *flow) stoppedSilentNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stoppedSilent...)
}

// repointSilent points the replicas whose agent is gone (their IO threads stopped by
// this flow) at the new primary: nobody else would, and with semi-sync the new
// primary may have no other replica to acknowledge its commits. A replica with
// transactions the new primary lacks is left alone, stopped: its agent, when it
// comes back, quarantines it.
func (f *flow) repointSilent(ctx context.Context, next cluster.Primary) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.c.cfg.PromoteTimeout)
	defer cancel()
	host, port, err := replication.SplitAddr(next.Addr)
	if err != nil {
		return "", fmt.Errorf("new primary's address: %w", err)
	}
	pin, err := f.instance(next.Node)
	if err != nil {
		return "", err
	}
	pst, err := pin.Status(ctx)
	if err != nil {
		return "", fmt.Errorf("read the new primary: %w", err)
	}
	primary := replication.Server{ServerID: next.ServerID, ServerUUID: next.ServerUUID, Executed: pst.Executed}
	var done []string
	var errs []error
	for _, name := range f.stoppedSilentNames() {
		in, err := f.instance(name)
		if err == nil {
			err = f.repointOne(ctx, in, primary, f.c.cfg.Repl.At(host, port))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		done = append(done, name)
	}
	return "following " + next.Node + ": " + strings.Join(done, ", "), errors.Join(errs...)
}

func (f *flow) repointOne(ctx context.Context, in Server, primary replication.Server, src replication.Source) error {
	st, err := in.Status(ctx)
	if err != nil {
		return err
	}
	errant, err := replication.Errant(st.Server(), primary)
	if err != nil {
		return err
	}
	if !errant.IsEmpty() {
		return fmt.Errorf("left stopped: errant transactions %s", errant)
	}
	return in.Follow(ctx, src, nil) // this flow is the change under way: nothing to confirm
}

// waitCanCommit waits (PromoteTimeout at most) until the new primary can commit: with
// its semi-sync source side on, until a replica is connected to acknowledge. A flow
// whose new primary cannot commit is recorded with this step failed.
func (f *flow) waitCanCommit(ctx context.Context, next cluster.Primary) (string, error) {
	in, err := f.instance(next.Node)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(f.c.cfg.PromoteTimeout)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := in.Status(sctx)
		cancel()
		switch {
		case err != nil:
		case !st.SemiSync.Available || !st.SemiSync.SourceEnabled:
			return "no semi-sync: commits wait for nobody", nil
		case st.SemiSync.Clients > 0:
			return fmt.Sprintf("%d semi-sync replica(s) connected", st.SemiSync.Clients), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s has no semi-sync replica connected after %s: its commits wait (last read error: %v)", next.Node, f.c.cfg.PromoteTimeout, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// blocksAfter says whether the commit of decision d sets the anti-flap block: an
// automatic failover's, when the policy has one. An operator's failover sets none:
// the operator acted, and a block would keep the cluster's next failure (a
// different fault, minutes later) from being handled without a person.
func blocksAfter(d cluster.Decision, p cluster.Policy) bool {
	return d.Action == cluster.Failover && !d.Manual && p.FailoverBlock > 0
}
