//go:build integration

package failover_test

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// asyncCluster is a sandbox with asynchronous replication, as many sites run it.
func asyncCluster(t *testing.T, name string) sbCluster {
	t.Helper()
	return upClusterSpec(t, sandbox.Spec{Name: name, Nodes: 3, SemiSync: false, WithAgents: true, VIP: true, EtcdMembers: 1})
}

// lagThenFail writes through the virtual IP while the replicas are held 2 s
// behind (their IO threads stopped), then injects faults on db1 and lets the
// replicas go. It returns the writer (still writing) and the number of writes db1
// alone acknowledged.
func lagThenFail(t *testing.T, ctx context.Context, c sbCluster, faults ...sandbox.Fault) (*sandbox.Writer, int) {
	t.Helper()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	t.Cleanup(w.Stop)
	sandboxtest.WaitFor(t, 5*time.Second, "writes acknowledged before the lag", func() bool { return len(w.Acks()) > 20 })
	release, err := c.HoldBehind(ctx, "db2", "db3")
	if err != nil {
		t.Fatal(err)
	}
	before := len(w.Acks())
	time.Sleep(2 * time.Second)
	for _, f := range faults {
		if err := c.Fault(ctx, "db1", f); err != nil {
			release()
			t.Fatal(err)
		}
	}
	release()
	onlyOnDB1 := len(w.Acks()) - before
	if onlyOnDB1 < 20 {
		t.Fatalf("only %d writes acknowledged while the replicas were held behind", onlyOnDB1)
	}
	return w, onlyOnDB1
}

// failoverEvent waits for a failover away from db1 and returns the new primary and
// the history's failover event.
func failoverEvent(t *testing.T, ctx context.Context, c sbCluster) (string, cluster.Event) {
	t.Helper()
	var primary string
	sandboxtest.WaitFor(t, 30*time.Second, "a failover away from db1", func() bool {
		snap := c.snapshot(t)
		primary = snap.Primary.Node
		return primary != "db1" && snap.Leader == primary
	})
	// The event is recorded at the flow's end, after the promotion.
	var ev *cluster.Event
	sandboxtest.WaitFor(t, 20*time.Second, "the failover in the history", func() bool {
		hist, err := c.store.History(ctx, 10)
		if err != nil {
			return false
		}
		for _, e := range hist {
			if e.Kind == cluster.EventFailover && e.From == "db1" {
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
	t.Logf("failover to %s in %s: %s", ev.To, ev.Took.Round(time.Millisecond), strings.Join(steps, ", "))
	return primary, *ev
}

// TestSalvageAcknowledgedWrites: asynchronous replication, the replicas held 2 s
// behind while the primary acknowledges writes, the primary's mysqld killed (its
// agent alive). The failover salvages what the replicas never received from the
// dead primary's binary logs on its disk: every acknowledged write is on the new
// primary, and the other replica catches up from it. Restarted, the old primary
// has nothing the new one lacks and rejoins as a plain replica.
func TestSalvageAcknowledgedWrites(t *testing.T) {
	c := asyncCluster(t, "salv-ack")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, held := lagThenFail(t, ctx, c, sandbox.Kill)
	primary, ev := failoverEvent(t, ctx, c)
	sandboxtest.WaitFor(t, 10*time.Second, "a write acknowledged by the new primary", func() bool {
		_, ok := w.FirstAckAfter(time.Now().Add(-time.Second), 1)
		return ok
	})
	w.Stop()

	s := ev.Salvage
	if s == nil || s.From != "db1" || s.To != primary || s.Applied < held || s.File == "" || s.Pos <= 0 || s.LeftBehind != "" {
		t.Fatalf("salvage record %+v: want db1's %d or more transactions applied to %s, with their file and position, nothing left behind", s, held, primary)
	}
	t.Logf("salvaged %d transactions (%s to %s) from %s:%d to %s:%d; %d writes acknowledged by db1 alone", s.Applied, s.First, s.Last, s.File, s.Pos, s.EndFile, s.EndPos, held)
	qctx, qcancel := context.WithTimeout(ctx, 20*time.Second)
	defer qcancel()
	lost, err := w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, primary))
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged writes are not on the new primary %s: %v", len(lost), primary, lost)
	}
	other := "db2"
	if primary == "db2" {
		other = "db3"
	}
	sandboxtest.WaitFor(t, 15*time.Second, other+" has every acknowledged write", func() bool {
		lost, err := w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, other))
		return err == nil && len(lost) == 0
	})

	// The old primary comes back: nothing errant, a plain replica.
	if err := c.Fault(ctx, "db1", sandbox.Start); err != nil {
		t.Fatal(err)
	}
	pn, err := c.Node(primary)
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 30*time.Second, "db1 rejoining as a replica of "+primary, func() bool {
		n, ok := c.snapshot(t).Nodes["db1"]
		return ok && n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning && n.ReadOnly && n.Errant == "" &&
			strings.HasPrefix(n.Source, pn.IP+":")
	})
	hist, err := c.store.History(qctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range hist {
		if e.Kind == cluster.EventRejoin && e.From == "db1" {
			t.Errorf("db1 needed a rejoin (%s, discarded %v): it had transactions the new primary lacked", e.Reason, e.Discarded)
		}
	}
	lost, err = w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, "db1"))
	if err != nil || len(lost) > 0 {
		t.Errorf("db1, rejoined: %d acknowledged writes missing (%v)", len(lost), err)
	}
}

// TestNoSalvageWithoutTheAgent: the same, with the old primary's agent killed too.
// The failover happens without salvage and its history says so; the writes only
// db1 acknowledged are not on the new primary, but none is dropped silently: when
// db1 comes back, its agent archives them (every one of them) before it undoes them
// and rejoins.
func TestNoSalvageWithoutTheAgent(t *testing.T) {
	c := asyncCluster(t, "salv-noag")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, held := lagThenFail(t, ctx, c, sandbox.KillAgent, sandbox.Kill)
	primary, ev := failoverEvent(t, ctx, c)
	w.Stop()
	s := ev.Salvage
	if s == nil || s.Applied != 0 || !strings.Contains(s.LeftBehind, "its agent is not running") {
		t.Fatalf("salvage record %+v: want nothing applied, and the history saying db1's agent was not running", s)
	}
	var step *cluster.Step
	for i := range ev.Steps {
		if ev.Steps[i].Name == "salvage" {
			step = &ev.Steps[i]
		}
	}
	if step == nil || step.Error == "" {
		t.Errorf("salvage step %+v: want it recorded, failed, saying why", step)
	}
	qctx, qcancel := context.WithTimeout(ctx, 20*time.Second)
	defer qcancel()
	lost, err := w.Lost(qctx, sandboxtest.RootDB(t, c.Cluster, primary))
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) == 0 {
		t.Fatalf("every acknowledged write is on %s although db1 alone acknowledged %d: the test did not hold the replicas behind", primary, held)
	}
	t.Logf("%d acknowledged writes only on db1's disk (db1 alone acknowledged %d)", len(lost), held)

	for _, f := range []sandbox.Fault{sandbox.Start, sandbox.StartAgent} {
		if err := c.Fault(ctx, "db1", f); err != nil {
			t.Fatal(err)
		}
	}
	var rejoin *cluster.Event
	sandboxtest.WaitFor(t, 60*time.Second, "db1 archiving its errant writes and rejoining", func() bool {
		hist, err := c.store.History(qctx, 10)
		if err != nil {
			return false
		}
		for _, e := range hist {
			if e.Kind == cluster.EventRejoin && e.From == "db1" {
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
		t.Fatalf("%d of the %d acknowledged writes missing from %s are not in db1's archive %s: %v", len(missing), len(lost), primary, rejoin.Archive, missing)
	}
	t.Logf("all %d in the archive %s (%s)", len(lost), rejoin.Archive, rejoin.Reason)
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
