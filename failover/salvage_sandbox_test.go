//go:build integration

package failover_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/internal/failpoint"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestSalvage: one sandbox with asynchronous replication (as many sites run it),
// one failover per subtest, each away from the primary of the moment: the replicas
// held 2 s behind while the primary acknowledges writes, then its mysqld dies.
//   - acknowledged writes: its agent alive, the failover salvages what no replica
//     received from its binary logs; every acknowledged write is on the new
//     primary and the other replica, and the old primary, restarted, rejoins as a
//     plain replica (nothing errant).
//   - without the agent: its agent dead too, the failover goes on without salvage
//     and its history says so; what only the old primary had is in its archive
//     when it comes back.
//   - agent dies mid-transfer: its agent killed once it has read its binary logs,
//     before its answer is sent; the failover goes on without salvage, in time,
//     and says so; the writes are in the old primary's archive when it returns.
//   - candidate fails while applying: the candidate's mysqld killed while the
//     coordinator is about to apply; the flow refuses and says which candidate
//     failed, and once that server is back the next try salvages everything.
//   - candidate's agent dies mid-apply: killed once its server's SQL thread
//     applies the salvage; the thread is stopped by the coordinator, the failover
//     goes on, and every acknowledged write is on the new primary.
//   - torn tail: its last binary log file ends in the middle of a transaction (a
//     crash during a write); every whole transaction is salvaged, the torn one is
//     not, and the history says it stopped there.
//
// The subtests run in order, each on the cluster the one before left: one that
// fails skips those after it.
func TestSalvage(t *testing.T) {
	// The agents run baton built with -tags failpoint: unarmed, it is the product;
	// two subtests arm a step to stop an agent at the worst moment.
	c := upClusterSpec(t, sandbox.Spec{Name: "salv", Nodes: 3, SemiSync: false, WithAgents: true, VIP: true, EtcdMembers: 1,
		Binary: sandboxtest.FailpointBinary(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	failed := false
	run := func(name string, f func(t *testing.T)) {
		if failed {
			t.Run(name, func(t *testing.T) { t.Skip("a subtest before failed: the cluster is not as this one needs it") })
			return
		}
		failed = !t.Run(name, f)
	}

	run("acknowledged writes", func(t *testing.T) {
		old, others := steady(t, c)
		w, held, at := lagThenFail(t, ctx, c, old, others, 10*time.Millisecond, sandbox.Kill)
		primary, ev := failoverEvent(t, ctx, c, old, at)
		sandboxtest.WaitFor(t, 10*time.Second, "a write acknowledged by the new primary", func() bool {
			_, ok := w.FirstAckAfter(time.Now().Add(-time.Second), 0)
			return ok
		})
		w.Stop()
		s := ev.Salvage
		if s == nil || s.From != old || s.To != primary || s.Applied < held || s.File == "" || s.Pos <= 0 || s.LeftBehind != "" {
			t.Fatalf("salvage record %+v: want %s's %d or more transactions applied to %s, with their file and position, nothing left behind", s, old, held, primary)
		}
		inTime(t, ev)
		t.Logf("salvaged %d transactions (%s to %s) from %s:%d to %s:%d (read %s, applied %s); %d writes acknowledged by %s alone",
			s.Applied, s.First, s.Last, s.File, s.Pos, s.EndFile, s.EndPos, s.Read, s.Apply, held, old)
		noneLost(t, ctx, c, w, primary)
		other := others[0]
		if other == primary {
			other = others[1]
		}
		sandboxtest.WaitFor(t, 15*time.Second, other+" has every acknowledged write", func() bool {
			return lostOn(ctx, c, w, other) == 0
		})

		// The old primary comes back: nothing errant, a plain replica.
		if err := c.Fault(ctx, old, sandbox.Start); err != nil {
			t.Fatal(err)
		}
		replicaOf(t, c, old, primary)
		for _, e := range historySince(t, ctx, c, at) {
			if e.Kind == cluster.EventRejoin && e.From == old {
				t.Errorf("%s needed a rejoin (%s, discarded %v): it had transactions the new primary lacked", old, e.Reason, e.Discarded)
			}
		}
		noneLost(t, ctx, c, w, old)
	})

	run("without the agent", func(t *testing.T) {
		old, others := steady(t, c)
		// Fewer writes than a node undoes by itself (reconcile.MaxUndo): the old
		// primary archives and undoes them on its own when it comes back.
		w, held, at := lagThenFail(t, ctx, c, old, others, 30*time.Millisecond, sandbox.KillAgent, sandbox.Kill)
		primary, ev := failoverEvent(t, ctx, c, old, at)
		w.Stop()
		s := ev.Salvage
		if s == nil || s.Applied != 0 || !strings.Contains(s.LeftBehind, "its agent is not running") {
			t.Fatalf("salvage record %+v: want nothing applied, and the history saying %s's agent was not running", s, old)
		}
		if step := stepNamed(ev, "salvage"); step == nil || step.Error == "" {
			t.Errorf("salvage step %+v: want it recorded, failed, saying why", step)
		}
		lost := lostSeqs(t, ctx, c, w, primary)
		if len(lost) == 0 {
			t.Fatalf("every acknowledged write is on %s although %s alone acknowledged %d: the test did not hold the replicas behind", primary, old, held)
		}
		t.Logf("%d acknowledged writes only on %s's disk (%s alone acknowledged %d)", len(lost), old, old, held)

		archivedOnReturn(t, ctx, c, old, primary, at, lost)
	})

	run("agent dies mid-transfer", func(t *testing.T) {
		old, _ := steady(t, c)
		arm(t, ctx, c, old, failpoint.SalvageAnswer)
		old, others := steady(t, c)
		n, err := c.Node(old)
		if err != nil {
			t.Fatal(err)
		}
		w, held, at := lagThenFail(t, ctx, c, old, others, 30*time.Millisecond, sandbox.Kill)
		sandboxtest.WaitFor(t, 20*time.Second, old+"'s agent stopped with its answer read, not sent", func() bool { return procState(n.AgentPID) == 'T' })
		if err := c.Fault(ctx, old, sandbox.KillAgent); err != nil {
			t.Fatal(err)
		}
		primary, ev := failoverEvent(t, ctx, c, old, at)
		w.Stop()
		s := ev.Salvage
		if s == nil || s.Applied != 0 || !strings.Contains(s.LeftBehind, "its agent gave nothing") {
			t.Fatalf("salvage record %+v: want nothing applied, and the history saying %s's agent gave nothing", s, old)
		}
		inTime(t, ev)
		lost := lostSeqs(t, ctx, c, w, primary)
		if len(lost) == 0 {
			t.Fatalf("every acknowledged write is on %s although %s alone acknowledged %d: the test did not hold the replicas behind", primary, old, held)
		}
		t.Logf("%d acknowledged writes only on %s's disk (%s alone acknowledged %d)", len(lost), old, old, held)
		archivedOnReturn(t, ctx, c, old, primary, at, lost)
	})

	run("candidate fails while applying", func(t *testing.T) {
		// The coordinator is one of the replicas' agents, armed to stop before the
		// apply.
		old, others, agents, unarm := armReplicas(t, ctx, c, failpoint.BeforeSalvageApply)
		defer unarm()
		w, held, at := lagThenFail(t, ctx, c, old, others, 10*time.Millisecond, sandbox.Kill)
		coord := stoppedAgent(t, agents, "a coordinator stopped before the apply")
		cand := rankedCandidate(t, agents[coord].AgentLog)
		t.Logf("%s's agent coordinates, stopped before applying to %s: %s's mysqld killed", coord, cand, cand)
		if err := c.Fault(ctx, cand, sandbox.Kill); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(agents[coord].AgentPID, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		said := "candidate " + cand + " failed while"
		sandboxtest.WaitFor(t, 10*time.Second, "the coordinator saying "+said, func() bool {
			return strings.Contains(readFile(agents[coord].AgentLog), said)
		})
		if snap := c.snapshot(t); snap.Primary.Node != old {
			t.Fatalf("primary of record %s: the flow went on without its candidate", snap.Primary.Node)
		}
		// Back, the candidate is read again, and the next try salvages.
		if err := c.Fault(ctx, cand, sandbox.Start); err != nil {
			t.Fatal(err)
		}
		primary, ev := failoverEvent(t, ctx, c, old, at)
		sandboxtest.WaitFor(t, 10*time.Second, "a write acknowledged by the new primary", func() bool {
			_, ok := w.FirstAckAfter(time.Now().Add(-time.Second), 0)
			return ok
		})
		w.Stop()
		if s := ev.Salvage; s == nil || s.To != primary || s.Applied < held || s.LeftBehind != "" {
			t.Fatalf("salvage record %+v: want %s's %d or more transactions applied to %s, nothing left behind", s, old, held, primary)
		}
		inTime(t, ev)
		noneLost(t, ctx, c, w, primary)
		if err := c.Fault(ctx, old, sandbox.Start); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{old, cand} {
			if n != primary {
				replicaOf(t, c, n, primary)
			}
		}
	})

	run("candidate's agent dies mid-apply", func(t *testing.T) {
		// Every replica's agent is armed: the candidate's stops once its server's
		// SQL thread applies the salvage, holding the replication lock, and is
		// killed there. The thread goes on; the coordinator (or, when the
		// candidate's agent was the coordinator, the next one) stops it, and the
		// failover goes on with what the candidate has.
		old, others, agents, unarm := armReplicas(t, ctx, c, failpoint.SalvageRelayStarted)
		defer unarm()
		w, held, at := lagThenFail(t, ctx, c, old, others, 10*time.Millisecond, sandbox.Kill)
		cand := stoppedAgent(t, agents, "a candidate's agent stopped with its SQL thread applying")
		for _, f := range []sandbox.Fault{sandbox.KillAgent, sandbox.StartAgent} {
			if err := c.Fault(ctx, cand, f); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s's agent killed while its SQL thread applied the salvage, and started again", cand)
		primary, ev := failoverEvent(t, ctx, c, old, at)
		sandboxtest.WaitFor(t, 10*time.Second, "a write acknowledged by the new primary", func() bool {
			_, ok := w.FirstAckAfter(time.Now().Add(-time.Second), 0)
			return ok
		})
		w.Stop()
		inTime(t, ev)
		if s := ev.Salvage; s != nil {
			t.Logf("salvage record: %d applied by %q, left behind %q", s.Applied, s.Via, s.LeftBehind)
		}
		// The killed agent's SQL thread went on, given the apply's time: every
		// write the old primary acknowledged is on the new one.
		noneLost(t, ctx, c, w, primary)
		t.Logf("%d writes acknowledged by %s alone, all on %s", held, old, primary)
		if err := c.Fault(ctx, old, sandbox.Start); err != nil {
			t.Fatal(err)
		}
		for _, n := range append(others, old) {
			if n != primary {
				replicaOf(t, c, n, primary)
			}
		}
		// The worker count the apply raised is back on every node: put back by the
		// coordinator taking over, or, when the killed agent was the coordinator,
		// by that agent when it started again.
		for _, n := range append(others, old) {
			sandboxtest.WaitFor(t, 15*time.Second, n+"'s slave_parallel_threads back to 0", func() bool {
				db, err := c.RootDB(n)
				if err != nil {
					return false
				}
				defer db.Close()
				qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				var threads int
				return db.QueryRowContext(qctx, "SELECT @@GLOBAL.slave_parallel_threads").Scan(&threads) == nil && threads == 0
			})
		}
	})

	run("torn tail", func(t *testing.T) {
		old, others := steady(t, c)
		n, err := c.Node(old)
		if err != nil {
			t.Fatal(err)
		}
		// Frozen, then its last binary log file cut 10 bytes short (inside the last
		// transaction's last event), then killed: as a crash in the middle of a write
		// leaves it. The failover comes seconds later.
		var torn string
		tear := func(ctx context.Context) error {
			last, err := lastBinlog(n.Datadir)
			if err != nil {
				return err
			}
			st, err := os.Stat(last)
			if err != nil {
				return err
			}
			torn = filepath.Base(last)
			return os.Truncate(last, st.Size()-10)
		}
		w, held, at := lagThenFail(t, ctx, c, old, others, 10*time.Millisecond, sandbox.Stop, tear, sandbox.Kill)
		primary, ev := failoverEvent(t, ctx, c, old, at)
		sandboxtest.WaitFor(t, 10*time.Second, "a write acknowledged by the new primary", func() bool {
			_, ok := w.FirstAckAfter(time.Now().Add(-time.Second), 0)
			return ok
		})
		w.Stop()
		s := ev.Salvage
		if s == nil || s.Applied < held-1 || s.EndFile != torn || !strings.Contains(s.LeftBehind, "incomplete") {
			t.Fatalf("salvage record %+v: want %d or more transactions applied, up to %s's torn end, and the torn one said left behind", s, held-1, torn)
		}
		if step := stepNamed(ev, "salvage"); step == nil || step.Error == "" {
			t.Errorf("salvage step %+v: want it failed, saying what stayed behind", step)
		}
		inTime(t, ev)
		t.Logf("salvaged %d transactions up to %s:%d; left behind: %s", s.Applied, s.EndFile, s.EndPos, s.LeftBehind)
		// The torn transaction may be the writer's last acknowledged write (its
		// acknowledgement came before the cut): that one alone may be missing.
		lastBefore := int64(0)
		for _, a := range w.Acks() {
			if a.ServerID == uint32(n.ServerID) {
				lastBefore = a.Seq
			}
		}
		for _, seq := range lostSeqs(t, ctx, c, w, primary) {
			if seq != lastBefore {
				t.Errorf("acknowledged write %d is not on %s: only the torn one (%d) may be", seq, primary, lastBefore)
			}
		}
	})
}

// inTime fails the test when the failover's salvage step took longer than its
// deadline (failover.DefaultSalvageTimeout), with some slack for a loaded machine.
func inTime(t *testing.T, ev cluster.Event) {
	t.Helper()
	step := stepNamed(ev, "salvage")
	if step == nil {
		t.Fatalf("no salvage step in %+v", ev.Steps)
	}
	if limit := failover.DefaultSalvageTimeout + 200*time.Millisecond; step.Took > limit {
		t.Errorf("the salvage step took %s: over its deadline (%s)", step.Took, limit)
	}
}

// archivedOnReturn starts the old primary's server and agent again and waits for
// it to archive what it alone had (lost: the acknowledged writes the new primary
// lacks), undo it and rejoin as a replica of primary.
func archivedOnReturn(t *testing.T, ctx context.Context, c sbCluster, old, primary string, at time.Time, lost []int64) {
	t.Helper()
	for _, f := range []sandbox.Fault{sandbox.Start, sandbox.StartAgent} {
		if err := c.Fault(ctx, old, f); err != nil {
			t.Fatal(err)
		}
	}
	var rejoin *cluster.Event
	sandboxtest.WaitFor(t, 60*time.Second, old+" archiving its errant writes and rejoining", func() bool {
		for _, e := range historySince(t, ctx, c, at) {
			if e.Kind == cluster.EventRejoin && e.From == old {
				rejoin = &e
				return true
			}
		}
		return false
	})
	if rejoin.Archive == "" {
		t.Fatalf("rejoin %+v: no archive", rejoin)
	}
	archived, err := archivedWrites(rejoin.Archive)
	if err != nil {
		t.Fatal(err)
	}
	var missing []int64
	for _, seq := range lost {
		if !archived[seq] {
			missing = append(missing, seq)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of the %d acknowledged writes missing from %s are not in %s's archive %s: %v", len(missing), len(lost), primary, old, rejoin.Archive, missing)
	}
	t.Logf("all %d in the archive %s (%s)", len(lost), rejoin.Archive, rejoin.Reason)
	replicaOf(t, c, old, primary)
}

// arm starts node's agent again with the failpoint named (internal/failpoint),
// once: a later start is unarmed.
func arm(t *testing.T, ctx context.Context, c sbCluster, node, point string) {
	t.Helper()
	if err := c.SetAgentEnv(node, []string{failpoint.Env + "=" + point}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.SetAgentEnv(node, nil) }()
	termStartAgent(t, ctx, c, node)
	n, err := c.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	said := fmt.Sprintf("failpoint: armed [%s] (pid %d)", point, n.AgentPID)
	sandboxtest.WaitFor(t, 5*time.Second, node+"'s agent saying "+said, func() bool { return strings.Contains(readFile(n.AgentLog), said) })
}

// armReplicas arms point in the agents of the replicas of the primary of the
// moment, then starts the primary's agent again (its campaign is then the
// newest: a replica's agent coordinates), and returns the primary, the replicas,
// their agents, and what ends the test's arming: an agent stopped is let go, and
// every replica's agent started again unarmed (a step an agent did not reach
// stays armed otherwise, and would stop a later flow).
func armReplicas(t *testing.T, ctx context.Context, c sbCluster, point string) (string, []string, map[string]*sandbox.Node, func()) {
	t.Helper()
	old, others := steady(t, c)
	for _, r := range others {
		arm(t, ctx, c, r, point)
	}
	termStartAgent(t, ctx, c, old)
	old, others = steady(t, c)
	agents := map[string]*sandbox.Node{}
	for _, r := range others {
		n, err := c.Node(r)
		if err != nil {
			t.Fatal(err)
		}
		agents[r] = n
	}
	return old, others, agents, func() {
		for r, n := range agents {
			if procState(n.AgentPID) == 'T' {
				_ = syscall.Kill(n.AgentPID, syscall.SIGCONT)
			}
			termStartAgent(t, ctx, c, r)
		}
	}
}

// stoppedAgent waits until one of agents is stopped at its failpoint, and names it.
func stoppedAgent(t *testing.T, agents map[string]*sandbox.Node, what string) string {
	t.Helper()
	var name string
	sandboxtest.WaitFor(t, 20*time.Second, what, func() bool {
		for r, n := range agents {
			if procState(n.AgentPID) == 'T' {
				name = r
				return true
			}
		}
		return false
	})
	return name
}

// termStartAgent stops node's agent (SIGTERM, as a supervisor's restart), starts
// it again and waits for its new session in etcd.
func termStartAgent(t *testing.T, ctx context.Context, c sbCluster, node string) {
	t.Helper()
	oldLease := c.snapshot(t).NodeLeases[node]
	for _, f := range []sandbox.Fault{sandbox.TermAgent, sandbox.StartAgent} {
		if err := c.Fault(ctx, node, f); err != nil {
			t.Fatal(err)
		}
	}
	sandboxtest.WaitFor(t, 15*time.Second, node+"'s new agent in etcd", func() bool {
		snap := c.snapshot(t)
		_, ok := snap.Nodes[node]
		return ok && snap.NodeLeases[node] != oldLease
	})
}

// procState is a process's state letter in /proc (T: stopped), 0 when gone.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// rankedCandidate is the candidate of the last failover rank step in an agent's
// log (its note starts with the candidate's name).
func rankedCandidate(t *testing.T, agentLog string) string {
	t.Helper()
	cand := ""
	for _, l := range strings.Split(readFile(agentLog), "\n") {
		var e struct{ Msg, Step, Note string }
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "step" && e.Step == "rank" {
			cand, _, _ = strings.Cut(e.Note, ":")
		}
	}
	if cand == "" {
		t.Fatalf("no rank step in %s", agentLog)
	}
	return cand
}

// fault is a sandbox fault, or what a test does to a node itself.
type fault interface{}

// steady lifts the anti-flap block a failover before left (as `baton unblock`
// does), waits for a primary of record that holds the leader key, and two
// replicas replicating from it, and returns their names.
func steady(t *testing.T, c sbCluster) (primary string, replicas []string) {
	t.Helper()
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.store.LiftBlock(lctx, "salvage test"); err != nil && !errors.Is(err, cluster.ErrNoBlock) {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 60*time.Second, "a primary with two replicas replicating from it", func() bool {
		snap := c.snapshot(t)
		primary, replicas = snap.Primary.Node, nil
		pn, err := c.Node(primary)
		if primary == "" || snap.Leader != primary || err != nil {
			return false
		}
		for _, n := range c.Nodes {
			if n.Name == primary {
				continue
			}
			st, ok := snap.Nodes[n.Name]
			if !ok || st.Role != cluster.RoleReplica || !st.IORunning || !st.SQLRunning || !strings.HasPrefix(st.Source, pn.IP+":") {
				return false
			}
			replicas = append(replicas, n.Name)
		}
		return len(replicas) == 2
	})
	return primary, replicas
}

// lagThenFail writes through the virtual IP every interval while the replicas are
// held 2 s behind (their IO threads stopped), then injects faults on the primary
// (a sandbox.Fault, or a func(context.Context) error) and lets the replicas go. It
// returns the writer (still writing), the number of writes the primary alone
// acknowledged, and when the faults began.
func lagThenFail(t *testing.T, ctx context.Context, c sbCluster, primary string, replicas []string, interval time.Duration, faults ...fault) (*sandbox.Writer, int, time.Time) {
	t.Helper()
	w := c.NewWriter(interval, time.Second)
	w.Start(ctx)
	t.Cleanup(w.Stop)
	sandboxtest.WaitFor(t, 10*time.Second, "writes acknowledged before the lag", func() bool { return len(w.Acks()) > 20 })
	release, err := c.HoldBehind(ctx, replicas...)
	if err != nil {
		t.Fatal(err)
	}
	before := len(w.Acks())
	time.Sleep(2 * time.Second)
	at := time.Now()
	for _, f := range faults {
		var err error
		switch f := f.(type) {
		case sandbox.Fault:
			err = c.Fault(ctx, primary, f)
		case func(context.Context) error:
			err = f(ctx)
		default:
			t.Fatalf("fault %T", f)
		}
		if err != nil {
			release()
			t.Fatal(err)
		}
	}
	release()
	onlyOnPrimary := len(w.Acks()) - before
	if onlyOnPrimary < 20 {
		t.Fatalf("only %d writes acknowledged while the replicas were held behind", onlyOnPrimary)
	}
	return w, onlyOnPrimary, at
}

// failoverEvent waits for a failover away from old that started after at, and
// returns the new primary and the history's event.
func failoverEvent(t *testing.T, ctx context.Context, c sbCluster, old string, at time.Time) (string, cluster.Event) {
	t.Helper()
	var primary string
	sandboxtest.WaitFor(t, 30*time.Second, "a failover away from "+old, func() bool {
		snap := c.snapshot(t)
		primary = snap.Primary.Node
		return primary != old && snap.Leader == primary
	})
	// The event is recorded at the flow's end, after the promotion.
	var ev *cluster.Event
	sandboxtest.WaitFor(t, 20*time.Second, "the failover in the history", func() bool {
		for _, e := range historySince(t, ctx, c, at) {
			if e.Kind == cluster.EventFailover && e.From == old {
				ev = &e
				return true
			}
		}
		return false
	})
	var steps []string
	for _, s := range ev.Steps {
		steps = append(steps, s.Name+" "+s.Took.Round(time.Millisecond).String())
		if s.Name == "salvage" {
			t.Logf("salvage step: %s; note %q; error %q", s.Took.Round(time.Millisecond), s.Note, s.Error)
		}
	}
	t.Logf("failover %s to %s in %s: %s", old, ev.To, ev.Took.Round(time.Millisecond), strings.Join(steps, ", "))
	return primary, *ev
}

// historySince is the history's events that started at or after at.
func historySince(t *testing.T, ctx context.Context, c sbCluster, at time.Time) []cluster.Event {
	t.Helper()
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	hist, err := c.store.History(hctx, 20)
	if err != nil {
		return nil
	}
	return slices.DeleteFunc(hist, func(e cluster.Event) bool { return e.Started.Before(at) })
}

func stepNamed(ev cluster.Event, name string) *cluster.Step {
	for i := range ev.Steps {
		if ev.Steps[i].Name == name {
			return &ev.Steps[i]
		}
	}
	return nil
}

// replicaOf waits for node to be a plain replica of primary: replicating, read
// only, nothing errant.
func replicaOf(t *testing.T, c sbCluster, node, primary string) {
	t.Helper()
	pn, err := c.Node(primary)
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 60*time.Second, node+" replicating from "+primary, func() bool {
		n, ok := c.snapshot(t).Nodes[node]
		return ok && n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning && n.ReadOnly && n.Errant == "" &&
			strings.HasPrefix(n.Source, pn.IP+":")
	})
}

func lostSeqs(t *testing.T, ctx context.Context, c sbCluster, w *sandbox.Writer, node string) []int64 {
	t.Helper()
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	lost, err := w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, node))
	if err != nil {
		t.Fatal(err)
	}
	return lost
}

func noneLost(t *testing.T, ctx context.Context, c sbCluster, w *sandbox.Writer, node string) {
	t.Helper()
	if lost := lostSeqs(t, ctx, c, w, node); len(lost) > 0 {
		t.Fatalf("%d acknowledged writes are not on %s: %v", len(lost), node, lost)
	}
}

// lostOn counts the acknowledged writes node lacks, -1 when it cannot be read.
func lostOn(ctx context.Context, c sbCluster, w *sandbox.Writer, node string) int {
	db, err := c.RootDB(node)
	if err != nil {
		return -1
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lost, err := w.Lost(qctx, db)
	if err != nil {
		return -1
	}
	return len(lost)
}

// lastBinlog is the last file of the binary log index in datadir.
func lastBinlog(datadir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(datadir, "mysql-bin.index"))
	if err != nil {
		return "", err
	}
	lines := strings.Fields(string(b))
	if len(lines) == 0 {
		return "", os.ErrNotExist
	}
	last := lines[len(lines)-1]
	if !filepath.IsAbs(last) {
		last = filepath.Join(datadir, last)
	}
	return last, nil
}

// archivedWrites reads the sequence numbers of the writer's rows in an archive
// (mariadb-binlog --verbose: "### INSERT INTO `sandbox`.`writes`", then "###   @2=N").
func archivedWrites(path string) (map[int64]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[int64]bool{}
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "### INSERT INTO `sandbox`.`writes`"):
			in = true
		case strings.HasPrefix(l, "### INSERT") || strings.HasPrefix(l, "### UPDATE") || strings.HasPrefix(l, "### DELETE") || !strings.HasPrefix(l, "###"):
			in = false
		case in && strings.HasPrefix(l, "###   @2="):
			v := strings.TrimPrefix(l, "###   @2=")
			if i := strings.IndexByte(v, ' '); i >= 0 {
				v = v[:i]
			}
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				out[n] = true
			}
		}
	}
	return out, sc.Err()
}
