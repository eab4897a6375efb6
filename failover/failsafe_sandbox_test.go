//go:build integration

package failover_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// agentFailsafe is the part of an agent's /status these tests read.
type agentFailsafe struct {
	Failsafe struct {
		State agent.FailsafeState `json:"state"`
		Note  string              `json:"note"`
	} `json:"failsafe"`
}

func failsafeOf(t *testing.T, c sbCluster, node string) agentFailsafe {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	b, err := c.AgentStatus(ctx, node)
	if err != nil {
		t.Fatalf("status of %s's agent: %v", node, err)
	}
	var v agentFailsafe
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("status of %s's agent: %v", node, err)
	}
	return v
}

// writesWentOn checks what failsafe mode guarantees of the writes between from and
// to: the primary was never fenced (no write refused: read_only would refuse them)
// and still acknowledged writes after outlasting, by then, the session a primary
// without failsafe would have been fenced at. The longest pause is a figure for the
// log: how fast is a benchmark's business (baton-lab bench etcd-outage).
func writesWentOn(t *testing.T, w *sandbox.Writer, from, to time.Time, what string) {
	t.Helper()
	if n := w.RefusedBetween(from, to); n > 0 {
		_, last := w.Failures()
		t.Errorf("%d writes refused %s (last: %s): the primary was fenced", n, what, last)
	}
	late := from.Add(4 * time.Second) // past session_ttl (3 s) and a fence
	if a, ok := w.FirstAckAfter(late, 0); !ok || a.At.After(to) {
		t.Errorf("no write acknowledged %s after %s in", what, late.Sub(from))
	}
	t.Logf("writes %s: longest pause %s", what, maxGap(w.Acks(), from, to).Round(time.Millisecond))
}

// maxGap is the longest time without an acknowledged write between from and to.
func maxGap(acks []sandbox.Ack, from, to time.Time) time.Duration {
	last, gap := from, time.Duration(0)
	for _, a := range acks {
		if a.At.Before(from) || a.At.After(to) {
			continue
		}
		gap = max(gap, a.At.Sub(last))
		last = a.At
	}
	return max(gap, to.Sub(last))
}

// restartAgent kills a node's agent, starts it again and waits until the new agent
// published its status on a lease of its own.
func restartAgent(t *testing.T, c sbCluster, node string) error {
	t.Helper()
	ctx := context.Background()
	oldLease := c.snapshot(t).NodeLeases[node]
	if err := c.Fault(ctx, node, sandbox.KillAgent); err != nil {
		return err
	}
	if err := c.Fault(ctx, node, sandbox.StartAgent); err != nil {
		return err
	}
	sandboxtest.WaitFor(t, 15*time.Second, node+"'s new agent in etcd", func() bool {
		snap := c.snapshot(t)
		_, ok := snap.Nodes[node]
		return ok && snap.NodeLeases[node] != oldLease
	})
	return nil
}

func readOnly(t *testing.T, c sbCluster, node string) (bool, error) {
	t.Helper()
	db := sandboxtest.RootDB(t, c.Cluster, node)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var ro int
	err := db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&ro)
	return ro == 1, err
}

// TestFailsafe: an etcd outage, with agents in failsafe mode (3 nodes, semi-sync, 3
// etcd members, a writer through the virtual IP, a monitor writing to every server).
// One member down changes nothing; every member down keeps the primary taking writes,
// never fenced, and etcd's return changes nothing either; a peer that cannot
// authenticate fences the primary; the primary dying while etcd is down fails over
// only once etcd is back, losing nothing.
func TestFailsafe(t *testing.T) {
	c := upCluster(t, "fsafe", 3)
	ctx := context.Background()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	mon := c.NewSplitBrainMonitor(50 * time.Millisecond)
	mon.Start(ctx)
	defer mon.Stop()
	sandboxtest.WaitFor(t, 5*time.Second, "writes acknowledged", func() bool { return len(w.Acks()) > 20 })
	if p := c.snapshot(t).Primary; p.Node != "db1" || p.Epoch != 1 {
		t.Fatalf("primary = %+v, want db1 at epoch 1", p)
	}
	hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
	histBefore, err := c.store.History(hctx, 10)
	hcancel()
	if err != nil {
		t.Fatal(err)
	}
	// unchanged checks that etcd still names db1, at epoch 1, holding the leader key,
	// with no new history event, and every node published as primary or replica.
	unchanged := func(t *testing.T, within time.Duration) {
		t.Helper()
		sandboxtest.WaitFor(t, within, "etcd agreeing with the servers: db1 primary at epoch 1, two replicas", func() bool {
			lctx, cancel := context.WithTimeout(ctx, time.Second)
			snap, err := c.store.Load(lctx)
			cancel()
			if err != nil || snap.Primary.Node != "db1" || snap.Primary.Epoch != 1 || snap.Leader != "db1" {
				return false
			}
			for name, role := range map[string]cluster.Role{"db1": cluster.RolePrimary, "db2": cluster.RoleReplica, "db3": cluster.RoleReplica} {
				n, ok := snap.Nodes[name]
				if !ok || n.Role != role || n.ReadOnly != (name != "db1") {
					return false
				}
			}
			return true
		})
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		hist, err := c.store.History(hctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != len(histBefore) {
			t.Fatalf("history grew: %+v", hist[0])
		}
	}

	t.Run("one etcd member stopped", func(t *testing.T) {
		leader, err := c.EtcdLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		from := time.Now()
		if err := c.StopEtcd(ctx, leader); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Second)
		if err := c.StartEtcd(ctx, leader); err != nil {
			t.Fatal(err)
		}
		writesWentOn(t, w, from, time.Now(), "while one etcd member ("+leader+", the leader) was down")
		unchanged(t, 10*time.Second)
	})

	t.Run("every etcd member stopped", func(t *testing.T) {
		from := time.Now()
		if err := c.StopEtcd(ctx, ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Second) // twice session_ttl
		if v := failsafeOf(t, c, "db1"); v.Failsafe.State != agent.FailsafeKept || !strings.Contains(v.Failsafe.Note, "all 2 peers confirm etcd is unreachable") {
			t.Errorf("db1's failsafe = %+v, want the primary kept, all 2 peers confirming", v.Failsafe)
		}
		for _, n := range []string{"db2", "db3"} {
			if v := failsafeOf(t, c, n); v.Failsafe.State != agent.FailsafeHeldOff {
				t.Errorf("%s's failsafe = %+v, want held off", n, v.Failsafe)
			}
		}
		if ro, err := readOnly(t, c, "db1"); err != nil || ro {
			t.Errorf("db1 read_only=%v (%v) during the outage, want writable", ro, err)
		}
		// A load balancer keeps sending writes to the primary failsafe mode keeps:
		// its /primary answers on its detector, its status of no pass since etcd
		// went (its reconciler runs only under a session) older than the limit.
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		code, body, err := c.AgentGet(pctx, "db1", "/primary")
		pcancel()
		if err != nil || code != 200 {
			t.Errorf("db1's /primary during the outage: %d %q (%v), want 200: HAProxy would drop the kept primary", code, body, err)
		}
		// What an operator sees: `baton status` reads the agents instead of etcd.
		var agents []string
		for _, n := range c.Nodes {
			agents = append(agents, n.AgentHTTP)
		}
		sctx, scancel := context.WithTimeout(ctx, 15*time.Second)
		out, err := exec.CommandContext(sctx, "ip", "netns", "exec", c.ClientNetNS, sandboxtest.Binary(t), "status",
			"--etcd", strings.Join(c.EtcdInternal, ","), "--cluster", c.Name, "--agents", strings.Join(agents, ",")).CombinedOutput()
		scancel()
		if err != nil || !strings.Contains(string(out), "failsafe: db1: primary kept, all 2 peers confirm etcd is unreachable") ||
			!strings.Contains(string(out), "no failover is possible while etcd is unreachable") {
			t.Errorf("baton status --agents during the outage (%v):\n%s", err, out)
		}
		time.Sleep(7 * time.Second)
		if err := c.StartEtcd(ctx, ""); err != nil {
			t.Fatal(err)
		}
		unchanged(t, 20*time.Second)
		writesWentOn(t, w, from, time.Now(), "during and after a 13 s etcd outage")
		sandboxtest.WaitFor(t, 10*time.Second, "failsafe standing by again on db1", func() bool {
			return failsafeOf(t, c, "db1").Failsafe.State == agent.FailsafeStandby
		})
	})

	t.Run("a peer with the wrong secret", func(t *testing.T) {
		// db3's agent restarts with another peer secret: its answers are no answers.
		secretFile := c.Dir + "/secrets/peer"
		good, err := os.ReadFile(secretFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(secretFile, []byte("not-the-cluster-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		restarted := restartAgent(t, c, "db3")
		if err := os.WriteFile(secretFile, good, 0o600); err != nil {
			t.Fatal(err)
		}
		if restarted != nil {
			t.Fatal(restarted)
		}
		if err := c.StopEtcd(ctx, ""); err != nil {
			t.Fatal(err)
		}
		sandboxtest.WaitFor(t, 10*time.Second, "db1 fenced: read_only", func() bool {
			ro, err := readOnly(t, c, "db1")
			return err == nil && ro
		})
		if v := failsafeOf(t, c, "db1"); v.Failsafe.State != "fenced" || !strings.Contains(v.Failsafe.Note, "db3: no answer: HTTP 401") {
			t.Errorf("db1's failsafe = %+v, want fenced for db3's HTTP 401", v.Failsafe)
		}
		if err := c.StartEtcd(ctx, ""); err != nil {
			t.Fatal(err)
		}
		// db3's agent back with the cluster's secret; db1 writable again, no failover.
		if err := restartAgent(t, c, "db3"); err != nil {
			t.Fatal(err)
		}
		unchanged(t, 30*time.Second)
	})

	t.Run("etcd back for one replica first", func(t *testing.T) {
		// Every agent cut from etcd (etcd itself runs): the primary is kept. Then
		// db2 reaches etcd again: its next answer makes db1 fence, and once its
		// promise has run out it fails db1 over.
		for _, n := range []string{"db1", "db2", "db3"} {
			if err := c.Fault(ctx, n, sandbox.CutEtcd); err != nil {
				t.Fatal(err)
			}
		}
		// The primary is kept once its session has run out (session_ttl 3 s) and its
		// peers have confirmed; on a loaded machine the confirmation can take a few
		// seconds more, so wait for it rather than sample once. It stays writable.
		cut := time.Now()
		var last agentFailsafe
		for deadline := cut.Add(15 * time.Second); ; {
			last = failsafeOf(t, c, "db1")
			if last.Failsafe.State == agent.FailsafeKept || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if last.Failsafe.State != agent.FailsafeKept {
			t.Errorf("db1's failsafe = %+v 15 s after every agent was cut from etcd, want the primary kept", last.Failsafe)
		} else {
			t.Logf("db1 kept %s after every agent was cut from etcd", time.Since(cut).Round(time.Millisecond))
		}
		if ro, err := readOnly(t, c, "db1"); err != nil || ro {
			t.Errorf("db1 read_only=%v (%v) with every agent cut from etcd, want it writable", ro, err)
		}
		healed := time.Now()
		if err := c.Fault(ctx, "db2", sandbox.HealEtcd); err != nil {
			t.Fatal(err)
		}
		sandboxtest.WaitFor(t, 5*time.Second, "db1 fenced once db2 reaches etcd", func() bool {
			ro, err := readOnly(t, c, "db1")
			return err == nil && ro
		})
		t.Logf("db1 fenced %s after db2 reached etcd again", time.Since(healed).Round(time.Millisecond))
		var now cluster.Snapshot
		sandboxtest.WaitFor(t, 30*time.Second, "a failover to db2", func() bool {
			now = c.snapshot(t)
			return now.Primary.Node == "db2" && now.Leader == "db2"
		})
		sandboxtest.WaitFor(t, 10*time.Second, "a write on db2", func() bool {
			_, ok := w.FirstAckAfter(healed, uint32(c.Nodes[0].ServerID))
			return ok
		})
		for _, n := range []string{"db1", "db3"} {
			if err := c.Fault(ctx, n, sandbox.HealEtcd); err != nil {
				t.Fatal(err)
			}
		}
		sandboxtest.WaitFor(t, 20*time.Second, "db1 and db3 replicas of db2", func() bool {
			snap := c.snapshot(t)
			for _, n := range []string{"db1", "db3"} {
				if st, ok := snap.Nodes[n]; !ok || st.Role != cluster.RoleReplica || !st.IORunning || !strings.HasPrefix(st.Source, c.Nodes[1].IP+":") {
					return false
				}
			}
			return true
		})
	})

	t.Run("every etcd member stopped, then the primary killed", func(t *testing.T) {
		old := c.snapshot(t).Primary.Node
		oldNode, err := c.Node(old)
		if err != nil {
			t.Fatal(err)
		}
		var others []string
		for _, n := range c.Nodes {
			if n.Name != old {
				others = append(others, n.Name)
			}
		}
		if err := c.StopEtcd(ctx, ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Second)
		killed := time.Now()
		if err := c.Fault(ctx, old, sandbox.Kill); err != nil {
			t.Fatal(err)
		}
		// No failover without etcd: nobody may promote, and the replicas stay read_only.
		time.Sleep(8 * time.Second)
		for _, n := range others {
			if ro, err := readOnly(t, c, n); err != nil || !ro {
				t.Errorf("%s read_only=%v (%v) with etcd down, want read_only", n, ro, err)
			}
		}
		if err := c.StartEtcd(ctx, ""); err != nil {
			t.Fatal(err)
		}
		// The failover of the phase before set the anti-flap block: lift it, as an
		// operator would (deleting the key).
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = c.store.Client().Delete(dctx, c.store.Keys.FailoverBlock())
		dcancel()
		if err != nil {
			t.Fatal(err)
		}
		var now cluster.Snapshot
		sandboxtest.WaitFor(t, 40*time.Second, "a failover once etcd is back", func() bool {
			lctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			s, err := c.store.Load(lctx)
			now = s
			return err == nil && s.Primary.Node != old && s.Primary.Node != "" && s.Leader == s.Primary.Node
		})
		sandboxtest.WaitFor(t, 10*time.Second, "a write on the new primary", func() bool {
			_, ok := w.FirstAckAfter(killed, uint32(oldNode.ServerID))
			return ok
		})
		w.Stop()
		mon.Stop()
		db := sandboxtest.RootDB(t, c.Cluster, now.Primary.Node)
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		lost, err := w.Lost(qctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes are not on the new primary %s: %v", len(lost), now.Primary.Node, lost)
		}
	})
	if sb := mon.SplitBrain(); sb > 0 {
		t.Errorf("two servers accepted writes for %s", sb)
	}
}
