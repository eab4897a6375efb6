//go:build integration

package failover_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/internal/status"
)

// TestForesight runs one 3-node cluster with agents whose forecasts read the servers
// every second (over a 10 s window) and whose disks' rates span 20 s, and checks
// what the forecasts say and what they change, in this order:
//
//   - a replica that has everything reports lag 0, in its agent's /status at every
//     pass and in baton status, while the heartbeat's age (a sawtooth) is published
//     beside it;
//   - an INT key near its largest value, under a steady insert rate, gets a forecast
//     within 20 % of the time it really runs out, on every node;
//   - a transaction left open on the primary makes its purge lag grow, and names
//     itself as the oldest open transaction (meanwhile the key stays exhausted);
//   - once the key has run out, no failover happens and baton status says no
//     failover can fix it;
//   - a replica whose disk fills (faster than the primary's, which does not) is
//     ranked after an equally advanced replica with room when the primary dies, and
//     the history says why and what the failover bought.
//
// One sandbox for all, the subtests in this order: each leaves the cluster as the
// next needs it.
func TestForesight(t *testing.T) {
	const window = 10 * time.Second // forecast.window
	c := upClusterSpec(t, sandbox.Spec{Name: "fo-see", Nodes: 3, SemiSync: true, WithAgents: true, EtcdMembers: 1,
		AgentYAML: "forecast:\n  interval: 1s\n  timeout: 800ms\n  window: " + window.String() + "\ntimings:\n  disk_window: 20s\n  disk_horizon: 1m\n"})
	ctx := context.Background()
	root1 := sandboxtest.RootDB(t, c.Cluster, "db1")
	sandboxtest.WaitFor(t, 30*time.Second, "every replica's agent publishing a lag", func() bool {
		snap := c.snapshot(t)
		return snap.Nodes["db2"].LagMS >= 0 && snap.Nodes["db3"].LagMS >= 0
	})

	t.Run("a caught-up replica's lag is 0", func(t *testing.T) {
		// 24 looks, 12 per replica over about 4 s. The heartbeat's age each shows is
		// set by the phase between the primary's write probe and the replica's
		// replication probe (both every 500 ms), anywhere from 0 to 500 ms: the
		// lag is 0 whatever it is (logged).
		var zero, passes int
		var ages []int64
		for range 12 {
			for _, node := range []string{"db2", "db3"} {
				v := agentView(t, c, node)
				passes++
				if v.Status.LagMS == 0 {
					zero++
				}
				if v.Status.HeartbeatMS < 0 {
					t.Fatalf("%s publishes no heartbeat age: %+v", node, v.Status)
				}
				ages = append(ages, v.Status.HeartbeatMS)
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("lag 0 in %d of %d looks at the replicas' /status; heartbeat ages seen (ms): %v", zero, passes, ages)
		if zero != passes {
			t.Errorf("a caught-up replica reported a lag in %d of %d passes", passes-zero, passes)
		}
		st := batonStatusJSON(t, c)
		for _, n := range st.Nodes {
			if n.Role == cluster.RoleReplica && n.LagMS != 0 {
				t.Errorf("baton status --json: %s lag %d ms, want 0", n.Name, n.LagMS)
			}
		}
		text := batonStatus(t, c)
		for _, l := range strings.Split(text, "\n") {
			if (strings.HasPrefix(l, "db2 ") || strings.HasPrefix(l, "db3 ")) && !strings.Contains(l, " 0ms ") {
				t.Errorf("baton status row %q: want lag 0ms", l)
			}
		}
	})

	epoch := c.snapshot(t).Primary.Epoch
	t.Run("an INT key running out: forecast within 20 percent", func(t *testing.T) {
		const perSecond = 40
		const left = 1200 // values: 30 s at 40 a second
		sandboxtest.Exec(t, ctx, root1,
			"CREATE TABLE sandbox.ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)",
			"ALTER TABLE sandbox.ai AUTO_INCREMENT = "+strconv.Itoa(math.MaxInt32-left+1))
		var mu sync.Mutex
		var outAt time.Time
		var outErr error
		started := time.Now()
		stop := everyInterval(ctx, t, time.Second/perSecond, func() error {
			if _, err := root1.ExecContext(ctx, "INSERT INTO sandbox.ai (v) VALUES (1)"); err != nil {
				mu.Lock()
				if outAt.IsZero() {
					outAt, outErr = time.Now(), err
				}
				mu.Unlock()
			}
			return nil
		})
		defer stop()
		key := func(node string) detector.Forecast {
			f, _ := agentView(t, c, node).Status.Forecast(detector.ResourceAutoIncrement, "sandbox.ai.id")
			return f
		}
		// The forecast once a whole window of the load is in (before, the fit also
		// holds reads from before the first insert), taken as soon as a new read is
		// published: its time left counts from then.
		var f detector.Forecast
		var at time.Time
		sandboxtest.WaitFor(t, 3*window, "a forecast of sandbox.ai.id on db1 over a window of inserts", func() bool {
			f = key("db1")
			return f.Outlook == detector.OutlookFilling && time.Since(started) > window+time.Second
		})
		prev := f.Used
		sandboxtest.WaitFor(t, 5*time.Second, "db1's next read of sandbox.ai.id", func() bool {
			f, at = key("db1"), time.Now()
			return f.Used != prev
		})
		if f.Outlook != detector.OutlookFilling {
			t.Fatalf("db1's forecast of sandbox.ai.id: %s", f.Line())
		}
		for _, node := range []string{"db2", "db3"} {
			if g := key(node); g.Outlook != detector.OutlookFilling || math.Abs(g.Left.Seconds()-f.Left.Seconds()) > 0.2*f.Left.Seconds() {
				t.Errorf("%s's forecast of the replicated key: %s; db1's: %s", node, g.Line(), f.Line())
			}
		}
		sandboxtest.WaitFor(t, time.Minute, "an insert refused once the key ran out", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return !outAt.IsZero()
		})
		stop()
		real := outAt.Sub(at)
		t.Logf("forecast %s (%s left); ran out %s later (%v)", f.Line(), f.Left.Round(100*time.Millisecond), real.Round(100*time.Millisecond), outErr)
		if off := math.Abs(f.Left.Seconds()-real.Seconds()) / real.Seconds(); off > 0.2 {
			t.Errorf("forecast %s left, ran out after %s: %.0f %% off, want within 20 %%", f.Left.Round(100*time.Millisecond), real.Round(100*time.Millisecond), 100*off)
		}
		sandboxtest.WaitFor(t, 15*time.Second, "every node's key published exhausted", func() bool {
			snap := c.snapshot(t)
			for _, node := range []string{"db1", "db2", "db3"} {
				if g, ok := snap.Nodes[node].Forecast(detector.ResourceAutoIncrement, "sandbox.ai.id"); !ok || g.Outlook != detector.OutlookExhausted {
					return false
				}
			}
			return true
		})
	})
	exhausted := time.Now()

	t.Run("a transaction left open makes the purge lag grow", func(t *testing.T) {
		sandboxtest.Exec(t, ctx, root1,
			"CREATE TABLE sandbox.churn (id INT PRIMARY KEY, v INT NOT NULL)",
			"INSERT INTO sandbox.churn VALUES (1, 0), (2, 0), (3, 0), (4, 0)")
		tx, err := root1.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		for _, q := range []string{"START TRANSACTION WITH CONSISTENT SNAPSHOT", "SELECT COUNT(*) FROM sandbox.churn"} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		stop := everyInterval(ctx, t, 50*time.Millisecond, func() error {
			_, err := root1.ExecContext(ctx, "UPDATE sandbox.churn SET v = v + 1")
			return err
		})
		defer stop()
		purge := func() detector.Forecast {
			f, ok := agentView(t, c, "db1").Status.Forecast(detector.ResourcePurgeLag, "history list")
			if !ok || f.Err != "" {
				t.Fatalf("db1 forecasts no purge lag: %+v", f)
			}
			return f
		}
		time.Sleep(2 * time.Second)
		first := purge()
		// A whole window later: the rate is the open transaction's alone.
		time.Sleep(window)
		last := purge()
		stop()
		t.Logf("purge lag, first: %s; then: %s", first.Line(), last.Line())
		switch {
		case last.Used <= first.Used+100:
			t.Errorf("history list %v, then %v: want it growing while the transaction is open", first.Used, last.Used)
		case last.Rate <= 0 || last.Outlook != detector.OutlookFilling:
			t.Errorf("purge lag %+v: want filling at a positive rate", last)
		case first.Oldest == nil || last.Oldest == nil || last.Oldest.Age < first.Oldest.Age+5*time.Second:
			t.Errorf("oldest transaction %+v, then %+v: want the open one, older", first.Oldest, last.Oldest)
		}
		if _, err := tx.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		sandboxtest.WaitFor(t, 10*time.Second, "no open transaction left on db1", func() bool { return purge().Oldest == nil })
	})

	t.Run("a key no failover fixes makes none", func(t *testing.T) {
		// The key ran out while the purge lag grew: the write probe (no
		// auto-increment) goes on writing, and nothing fails over.
		if since := time.Since(exhausted); since < 10*time.Second {
			time.Sleep(10*time.Second - since)
		}
		snap := c.snapshot(t)
		if snap.Primary.Node != "db1" || snap.Primary.Epoch != epoch || snap.Nodes["db1"].Verdict != detector.Healthy {
			t.Errorf("%s after the key ran out: primary %+v, verdict %s; want db1 at epoch %d, healthy",
				time.Since(exhausted).Round(time.Second), snap.Primary, snap.Nodes["db1"].Verdict, epoch)
		}
		st := batonStatusJSON(t, c)
		found := false
		for _, w := range st.Warnings {
			if strings.Contains(w, "sandbox.ai.id (int) exhausted on every node (db1, db2, db3)") && strings.Contains(w, "no failover can fix it") {
				found = true
			}
		}
		if !found {
			t.Errorf("baton status warnings %q: want the key exhausted on every node, beyond any failover", st.Warnings)
		}
	})

	t.Run("a replica whose disk fills is ranked after one with room", func(t *testing.T) {
		n2, err := c.Node("db2")
		if err != nil {
			t.Fatal(err)
		}
		var fs unix.Statfs_t
		if err := unix.Statfs(n2.Mount, &fs); err != nil {
			t.Fatal(err)
		}
		free := fs.Bavail * uint64(fs.Bsize)
		// About 4 minutes of room at this rate: above disk_horizon (1m), so db2 stays
		// healthy, a candidate, and only its runway sets it apart.
		chunk := int(free / 240 / 5)
		path := filepath.Join(n2.Mount, "filler")
		fl, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		defer fl.Close()
		buf := make([]byte, chunk)
		stop := everyInterval(ctx, t, 200*time.Millisecond, func() error {
			if _, err := fl.Write(buf); err != nil {
				return err
			}
			return fl.Sync()
		})
		defer stop()
		// Published at once when its time left halves: a failover ranks by it.
		sandboxtest.WaitFor(t, 60*time.Second, "db2's runway published as minutes", func() bool {
			rw := c.snapshot(t).Nodes["db2"].Runway()
			return rw.Outlook == detector.OutlookFilling && rw.Left < 15*time.Minute
		})
		snap := c.snapshot(t)
		t.Logf("runways before the fault: db2 %s; db3 %s", snap.Nodes["db2"].Runway().Line(), snap.Nodes["db3"].Runway().Line())
		if d2 := snap.Nodes["db2"]; d2.Verdict != detector.Healthy {
			t.Fatalf("db2 is %s (%s): want it healthy, a candidate", d2.Verdict, d2.Reason)
		}
		if err := c.Fault(ctx, "db1", sandbox.Kill); err != nil {
			t.Fatal(err)
		}
		var now cluster.Snapshot
		sandboxtest.WaitFor(t, 30*time.Second, "a new primary of record", func() bool {
			now = c.snapshot(t)
			return now.Primary.Node != "db1" && now.LastEvent != nil && now.LastEvent.Kind == cluster.EventFailover
		})
		stop()
		ev := now.LastEvent
		rank := ""
		for _, s := range ev.Steps {
			if s.Name == "rank" {
				rank = s.Note
			}
		}
		t.Logf("promoted %s; rank: %s; %s", now.Primary.Node, rank, ev.Runway)
		if now.Primary.Node != "db3" {
			t.Fatalf("promoted %s, want db3: db2 (first by name) has the shorter runway", now.Primary.Node)
		}
		if !strings.Contains(rank, "preferred to db2, whose disk runs out sooner (at the current rate its disk is full in about") {
			t.Errorf("rank step %q: want it to say db3 was preferred to db2 for its runway", rank)
		}
		// db3's disk grows only with the binary logs (hours on the sandbox's small
		// disks): the event says so, and what db2's filling would have bought.
		if !strings.HasPrefix(ev.Runway, "db3 promoted; ") || !strings.Contains(ev.Runway, "its disk is") || strings.Contains(ev.Runway, "unknown") {
			t.Errorf("history event's runway %q: want what the failover bought", ev.Runway)
		}
		if rw := now.Nodes["db3"].Runway(); rw.Outlook == detector.OutlookFilling && rw.Left < time.Hour {
			t.Errorf("db3's runway %s: want the one with room", rw.Line())
		}
	})
}

// agentView is a node's agent's /status.
func agentView(t *testing.T, c sbCluster, node string) agent.View {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	b, err := c.AgentStatus(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	var v agent.View
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s's /status: %v", node, err)
	}
	return v
}

// batonStatus runs baton status against the sandbox's etcd, from the client
// namespace, as an operator would.
func batonStatus(t *testing.T, c sbCluster, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", c.ClientNetNS, sandboxtest.Binary(t), "status", "--etcd", strings.Join(c.EtcdInternal, ","),
		"--cluster", c.Name}, args...)
	out, err := exec.CommandContext(ctx, "ip", argv...).Output()
	if err != nil {
		t.Fatalf("baton status %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func batonStatusJSON(t *testing.T, c sbCluster) status.Cluster {
	t.Helper()
	var st status.Cluster
	if err := json.Unmarshal([]byte(batonStatus(t, c, "--json")), &st); err != nil {
		t.Fatalf("baton status --json: %v", err)
	}
	return st
}

// everyInterval runs fn every interval until the returned stop is called (it waits for the
// last run); an error of fn fails the test.
func everyInterval(ctx context.Context, t *testing.T, interval time.Duration, fn func() error) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := fn(); err != nil && ctx.Err() == nil {
				t.Errorf("steady load: %v", err)
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}
