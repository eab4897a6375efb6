//go:build integration

package failover_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/reconcile"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// cluster is a sandbox with agents, a virtual IP and semi-sync, and its etcd state.
type sbCluster struct {
	*sandbox.Cluster
	store *cluster.Store
}

func upCluster(t *testing.T, name string, etcdMembers int) sbCluster {
	t.Helper()
	return upClusterSpec(t, sandbox.Spec{Name: name, Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, EtcdMembers: etcdMembers})
}

// upClusterSpec is upCluster with a spec of its own.
func upClusterSpec(t *testing.T, spec sandbox.Spec) sbCluster {
	t.Helper()
	c := sandboxtest.Up(t, spec)
	cli, err := c.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	t.Cleanup(func() {
		if t.Failed() {
			// The sandbox goes with the test: its agents' logs are kept here.
			keep := filepath.Join(os.TempDir(), "baton-test-logs", c.Name)
			_ = os.MkdirAll(keep, 0o755)
			for _, n := range c.Nodes {
				if b, err := os.ReadFile(n.AgentLog); err == nil {
					_ = os.WriteFile(filepath.Join(keep, n.Name+"-agent.log"), b, 0o644)
				}
			}
			t.Logf("agent logs kept in %s", keep)
		}
	})
	return sbCluster{Cluster: c, store: cluster.NewStore(cli, c.Name)}
}

func (c sbCluster) snapshot(t *testing.T) cluster.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := c.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestFailoverOnFaults: for each fault of the primary, a replica is promoted, the
// writer's writes succeed again on it through the virtual IP, every acknowledged write
// is on the new primary, no two servers ever accept writes, and the history records
// the failover with its steps.
func TestFailoverOnFaults(t *testing.T) {
	for _, tc := range []struct {
		name, short string
		faults      []sandbox.Fault // injected in this order on the primary
	}{
		{"kill", "kill", []sandbox.Fault{sandbox.Kill}},
		{"disk-full", "disk", []sandbox.Fault{sandbox.DiskFull}},
		{"freeze-writes", "free", []sandbox.Fault{sandbox.FreezeWrites}},
		{"stop", "stop", []sandbox.Fault{sandbox.Stop}},
		{"cut-network", "cut", []sandbox.Fault{sandbox.CutNetwork}},
		// A busy application: its writes hung on the full disk take every connection.
		{"disk-full+exhaust", "dfex", []sandbox.Fault{sandbox.DiskFull, sandbox.ExhaustConnections}},
		// The primary's agent alone loses etcd: it fences its server, which replicas
		// and clients still reach; a replica must take over.
		{"agent-etcd-cut", "aec", []sandbox.Fault{sandbox.CutEtcd}},
		// Nobody watches the primary's writes but the replicas' remote probes.
		{"kill-agent+disk-full", "kadf", []sandbox.Fault{sandbox.KillAgent, sandbox.DiskFull}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := upCluster(t, "fo-"+tc.short, 1)
			ctx := context.Background()
			w := c.NewWriter(10*time.Millisecond, time.Second)
			w.Start(ctx)
			defer w.Stop()
			mon := c.NewSplitBrainMonitor(50 * time.Millisecond)
			mon.Start(ctx)
			defer mon.Stop()
			sandboxtest.WaitFor(t, 5*time.Second, "writes acknowledged before the fault", func() bool { return len(w.Acks()) > 20 })

			old := c.snapshot(t).Primary
			if old.Node != "db1" || old.Epoch != 1 {
				t.Fatalf("primary before the fault = %+v, want db1 epoch 1", old)
			}
			injected := time.Now()
			for _, f := range tc.faults {
				if err := c.Fault(ctx, "db1", f); err != nil {
					t.Fatal(err)
				}
			}
			var now cluster.Snapshot
			sandboxtest.WaitFor(t, 20*time.Second, "a new primary of record", func() bool {
				now = c.snapshot(t)
				return now.Primary.Node != "db1" && now.Leader == now.Primary.Node
			})
			newNode, err := c.Node(now.Primary.Node)
			if err != nil {
				t.Fatal(err)
			}
			var first sandbox.Ack
			sandboxtest.WaitFor(t, 10*time.Second, "a write acknowledged by the new primary", func() bool {
				var ok bool
				first, ok = w.FirstAckAfter(injected, uint32(c.Nodes[0].ServerID))
				return ok
			})
			// How soon is a benchmark's figure (baton-lab bench failover), logged here.
			t.Logf("%s: %s promoted; first write on it %s after the fault", tc.name, newNode.Name, first.At.Sub(injected).Round(time.Millisecond))
			time.Sleep(time.Second)
			w.Stop()
			mon.Stop()

			if now.Primary.Epoch != 2 {
				t.Errorf("epoch = %d, want 2", now.Primary.Epoch)
			}
			if first.ServerID != uint32(newNode.ServerID) {
				t.Errorf("first write after the fault went to server %d, want the new primary %s (%d)", first.ServerID, newNode.Name, newNode.ServerID)
			}
			db, err := c.RootDB(newNode.Name)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			lost, err := w.Lost(qctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if len(lost) > 0 {
				t.Errorf("%d acknowledged writes are not on the new primary: %v", len(lost), lost)
			}
			if sb := mon.SplitBrain(); sb > 0 {
				t.Errorf("two servers accepted writes for %s", sb)
			}
			if ws := mon.Writable(first.At); strings.Contains(strings.Join(ws, ","), "db1") {
				t.Errorf("the old primary accepted writes after the new one took over (writable: %v)", ws)
			}
			ev := c.failoverEvent(t, "db1")
			if ev.Kind != "failover" || ev.From != "db1" || ev.To != newNode.Name || len(ev.Steps) < 5 {
				t.Errorf("history event = %+v, want a failover db1 -> %s with its steps", ev, newNode.Name)
			}
			var steps []string
			for _, s := range ev.Steps {
				steps = append(steps, fmt.Sprintf("%s %s", s.Name, s.Took.Round(time.Millisecond)))
			}
			t.Logf("steps: %s", strings.Join(steps, ", "))

			switch tc.faults[0] {
			case sandbox.Kill, sandbox.Stop:
				if tc.faults[0] == sandbox.Stop {
					// A frozen server cannot be made read_only: its agent ended it for
					// the flow (kill_frozen_primary). Continuing it starts it again, as
					// systemd would.
					if running, err := c.ServerRunning("db1"); err != nil || running {
						t.Fatalf("db1's frozen mysqld still runs after the failover (%v): its agent should have ended it", err)
					}
					if n, err := c.Node("db1"); err != nil || !strings.Contains(readFile(n.AgentLog), "ended the server, which answers nothing") {
						t.Errorf("db1's agent does not say it ended its server (%v)", err)
					}
				}
				// The old primary comes back read_only, has nothing the new one lacks,
				// and rejoins as its replica.
				restart := sandbox.Start
				if tc.faults[0] == sandbox.Stop {
					restart = sandbox.Cont
				}
				if err := c.Fault(ctx, "db1", restart); err != nil {
					t.Fatal(err)
				}
				sandboxtest.WaitFor(t, 15*time.Second, "db1 rejoining as a replica of "+newNode.Name, func() bool {
					n, ok := c.snapshot(t).Nodes["db1"]
					return ok && n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning && n.ReadOnly &&
						strings.HasPrefix(n.Source, newNode.IP+":")
				})
			case sandbox.CutNetwork, sandbox.CutEtcd:
				// Cut off from etcd, the old primary's agent could not renew its session
				// and fenced its node on its own: read_only, no virtual IP.
				old := sandboxtest.RootDB(t, c.Cluster, "db1")
				sandboxtest.WaitFor(t, 5*time.Second, "db1 fenced by its own agent", func() bool {
					var ro int
					qctx, cancel := context.WithTimeout(ctx, time.Second)
					defer cancel()
					holders, _ := c.VIPHolders(qctx)
					return old.QueryRowContext(qctx, "SELECT @@read_only").Scan(&ro) == nil && ro == 1 &&
						!strings.Contains(strings.Join(holders, ","), "db1")
				})
			}
		})
	}
}

// TestQuarantine: an old primary with a transaction the new primary never had is not
// rejoined: it stays read_only, replicates from nobody, and shows its errant GTIDs.
func TestQuarantine(t *testing.T) {
	c := upCluster(t, "quar", 1)
	ctx := context.Background()
	for _, f := range []sandbox.Fault{sandbox.KillAgent, sandbox.Kill} {
		if err := c.Fault(ctx, "db1", f); err != nil {
			t.Fatal(err)
		}
	}
	sandboxtest.WaitFor(t, 20*time.Second, "a failover away from db1", func() bool {
		snap := c.snapshot(t)
		return snap.Primary.Node != "db1" && snap.Leader == snap.Primary.Node
	})
	if err := c.Fault(ctx, "db1", sandbox.Start); err != nil {
		t.Fatal(err)
	}
	// With no agent watching, a privileged user writes on the old primary (read_only
	// does not stop it): a transaction no other server has.
	db := sandboxtest.RootDB(t, c.Cluster, "db1")
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := db.ExecContext(qctx, "INSERT INTO sandbox.t(v) VALUES ('errant')"); err != nil {
		t.Fatal(err)
	}
	if err := c.Fault(ctx, "db1", sandbox.StartAgent); err != nil {
		t.Fatal(err)
	}
	var n cluster.NodeStatus
	sandboxtest.WaitFor(t, 15*time.Second, "db1 quarantined", func() bool {
		var ok bool
		n, ok = c.snapshot(t).Nodes["db1"]
		return ok && n.Role == cluster.RoleQuarantined
	})
	if !strings.Contains(n.Errant, "0-1-") {
		t.Errorf("errant GTIDs = %q, want db1's own (0-1-...)", n.Errant)
	}
	time.Sleep(time.Second) // it must stay so
	var ro int
	if err := db.QueryRowContext(qctx, "SELECT @@read_only").Scan(&ro); err != nil || ro != 1 {
		t.Errorf("quarantined db1 read_only = %d (%v), want 1", ro, err)
	}
	rows, err := db.QueryContext(qctx, "SHOW SLAVE STATUS")
	if err != nil {
		t.Fatal(err)
	}
	replicating := rows.Next()
	rows.Close()
	if replicating {
		t.Error("quarantined db1 was set to replicate")
	}
	if n := c.snapshot(t).Nodes["db1"]; n.Role != cluster.RoleQuarantined || n.VIP {
		t.Errorf("db1 = role %s, vip %v; want quarantined without the virtual IP", n.Role, n.VIP)
	}
}

// TestNoFailover: none of these is a reason to fail over, and none causes one.
func TestNoFailover(t *testing.T) {
	c := upCluster(t, "nofo", 3)
	ctx := context.Background()
	w := c.NewWriter(20*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	steady := func(t *testing.T, what string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			snap, err := c.store.Load(lctx)
			cancel()
			if err != nil {
				// The test's own read may meet an etcd leader election (a member
				// stopped): that says nothing about failover; read again.
				t.Logf("read the state: %v", err)
				time.Sleep(200 * time.Millisecond)
				continue
			}
			if snap.Primary.Node != "db1" || snap.Primary.Epoch != 1 {
				t.Fatalf("%s caused a failover: primary %s epoch %d", what, snap.Primary.Node, snap.Primary.Epoch)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	fault := func(t *testing.T, node string, f sandbox.Fault) {
		t.Helper()
		if err := c.Fault(ctx, node, f); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("primary's agent killed, server fine", func(t *testing.T) {
		fault(t, "db1", sandbox.KillAgent)
		steady(t, "the primary's agent killed", 8*time.Second)
		fault(t, "db1", sandbox.StartAgent)
		sandboxtest.WaitFor(t, 15*time.Second, "db1's new agent holding leader", func() bool {
			snap := c.snapshot(t)
			_, ok := snap.Nodes["db1"]
			return ok && snap.Leader == "db1"
		})
	})
	t.Run("a replica killed", func(t *testing.T) {
		fault(t, "db3", sandbox.Kill)
		steady(t, "a replica killed", 5*time.Second)
		fault(t, "db3", sandbox.Start)
	})
	t.Run("too many connections on the primary", func(t *testing.T) {
		fault(t, "db1", sandbox.ExhaustConnections)
		// Overloaded while the connections are all taken; a slot another client frees
		// lets the agent's next connect through (healthy again), so the verdict is
		// looked for during the window, not at its end.
		sandboxtest.WaitFor(t, 5*time.Second, "db1 reported overloaded", func() bool {
			snap := c.snapshot(t)
			if snap.Primary.Node != "db1" {
				t.Fatalf("too many connections caused a failover to %s", snap.Primary.Node)
			}
			return snap.Nodes["db1"].Verdict == detector.Overloaded
		})
		steady(t, "too many connections", 5*time.Second)
		fault(t, "db1", sandbox.ReleaseConnections)
	})
	t.Run("read_only set by hand on the primary", func(t *testing.T) {
		db, err := c.RootDB("db1")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := db.ExecContext(qctx, "SET GLOBAL read_only = ON"); err != nil {
			t.Fatal(err)
		}
		steady(t, "read_only by hand", 5*time.Second)
	})
	t.Run("etcd leader restarted", func(t *testing.T) {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		leader, err := c.EtcdLeader(lctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RestartEtcdMember(lctx, leader, time.Second); err != nil {
			t.Fatal(err)
		}
		steady(t, "etcd leader "+leader+" restarted", 8*time.Second)
	})
	t.Run("one etcd member stopped, quorum kept", func(t *testing.T) {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		leader, err := c.EtcdLeader(lctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.StopEtcd(lctx, leader); err != nil {
			t.Fatal(err)
		}
		steady(t, "etcd leader "+leader+" stopped", 8*time.Second)
		if err := c.StartEtcd(lctx, leader); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("saturating write load", func(t *testing.T) {
		var loads []*sandbox.Writer
		for i := 0; i < 4; i++ {
			l := c.NewWriter(0, 2*time.Second)
			l.Start(ctx)
			loads = append(loads, l)
		}
		steady(t, "saturating write load", 10*time.Second)
		total := 0
		for _, l := range loads {
			l.Stop()
			total += len(l.Acks())
		}
		t.Logf("load: %d writes in 10s", total)
	})
	w.Stop()
	if n, last := w.Failures(); len(w.Acks()) == 0 {
		t.Fatalf("the writer never succeeded (%d failures, last: %s)", n, last)
	}
}

// TestVIPFollowsThePrimary: through a failover, the client namespace reaches the new
// primary at the same address, its neighbour table shows the new primary's MAC soon
// after the address moves (gratuitous ARP updated an entry that existed: on its own
// the client would first wait out the entry's reachable time and delay_first_probe_time,
// 5 s), and at no sampled moment do two namespaces hold the virtual IP.
func TestVIPFollowsThePrimary(t *testing.T) {
	c := upCluster(t, "vipfo", 1)
	ctx := context.Background()
	vip := strings.Split(c.VIP, "/")[0]
	holders := func() []string {
		var out []string
		for _, n := range c.Nodes {
			b, err := exec.Command("ip", "-n", n.NetNS, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
			if err == nil && strings.Contains(string(b), " "+vip+"/") {
				out = append(out, n.Name)
			}
		}
		return out
	}
	mac := func(ns string) string {
		b, _ := exec.Command("ip", "-n", ns, "-br", "link", "show", "dev", "eth0").CombinedOutput()
		f := strings.Fields(string(b))
		if len(f) < 3 {
			return ""
		}
		return f[2]
	}
	neigh := func() string {
		b, _ := exec.Command("ip", "-n", c.ClientNetNS, "neigh", "show", vip).CombinedOutput()
		if f := strings.Fields(string(b)); len(f) >= 5 && f[3] == "lladdr" {
			return f[4]
		}
		return ""
	}
	// The primary takes the address just after the leader key, which is what Up waits for.
	sandboxtest.WaitFor(t, 5*time.Second, "the virtual IP on db1", func() bool {
		h := holders()
		return len(h) == 1 && h[0] == "db1"
	})
	w := c.NewWriter(10*time.Millisecond, 500*time.Millisecond)
	w.Start(ctx)
	defer w.Stop()
	sandboxtest.WaitFor(t, 5*time.Second, "writes through the virtual IP", func() bool { return len(w.Acks()) > 10 })
	if got, want := neigh(), mac(c.Nodes[0].NetNS); got != want {
		t.Fatalf("client's neighbour entry for %s = %q, want db1's MAC %q", vip, got, want)
	}

	stop := make(chan struct{})
	type sample struct {
		at      time.Time
		holders []string
	}
	samples := make(chan sample, 4000)
	go func() {
		defer close(samples)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				samples <- sample{time.Now(), holders()}
			}
		}
	}()
	if err := c.Fault(ctx, "db1", sandbox.Kill); err != nil {
		t.Fatal(err)
	}
	var moved time.Time
	var newNode string
	sandboxtest.WaitFor(t, 20*time.Second, "the virtual IP on another node", func() bool {
		h := holders()
		if len(h) == 1 && h[0] != "db1" {
			moved, newNode = time.Now(), h[0]
			return true
		}
		return false
	})
	n, err := c.Node(newNode)
	if err != nil {
		t.Fatal(err)
	}
	want := mac(n.NetNS)
	sandboxtest.WaitFor(t, 3*time.Second, "the client's neighbour entry showing "+newNode+"'s MAC", func() bool { return neigh() == want })
	t.Logf("virtual IP moved to %s; client's neighbour entry updated %s after", newNode, time.Since(moved).Round(time.Millisecond))
	sandboxtest.WaitFor(t, 15*time.Second, "writes through the virtual IP reaching "+newNode, func() bool {
		_, ok := w.FirstAckAfter(moved, uint32(c.Nodes[0].ServerID))
		return ok
	})
	// The samples cover the handover to its end: db1 no longer holds the address.
	sandboxtest.WaitFor(t, 2*reconcile.HandoverBound, "db1 no longer holding the virtual IP", func() bool {
		h := holders()
		return len(h) == 1 && h[0] == newNode
	})
	time.Sleep(100 * time.Millisecond)
	close(stop)
	var all []sample
	var firstNew time.Time
	for s := range samples {
		all = append(all, s)
		if firstNew.IsZero() && slices.Contains(s.holders, newNode) {
			firstNew = s.at
		}
	}
	for _, s := range all {
		// The handover: the old primary, its mysqld not running (connections to it
		// are refused at once), keeps the address until the new primary holds it,
		// for reconcile.HandoverBound at most; never otherwise two holders.
		if len(s.holders) > 1 && (len(s.holders) != 2 || !slices.Contains(s.holders, "db1") || !slices.Contains(s.holders, newNode) ||
			firstNew.IsZero() || s.at.Sub(firstNew) > reconcile.HandoverBound) {
			t.Errorf("at %s two namespaces held the virtual IP: %v (the new holder first seen at %s)", s.at.Format("15:04:05.000"), s.holders, firstNew.Format("15:04:05.000"))
		}
	}
	if len(all) < 5 {
		t.Errorf("only %d samples of the holders", len(all))
	}
	snap := c.snapshot(t)
	if snap.Primary.Node != newNode {
		t.Errorf("primary of record %s, virtual IP on %s", snap.Primary.Node, newNode)
	}
	if err := c.Refresh(ctx); err != nil || c.VIPHolder != newNode {
		t.Errorf("sandbox status: virtual IP holder %q (%v), want %s", c.VIPHolder, err, newNode)
	}
	if !snap.Nodes[newNode].VIP {
		t.Errorf("%s's status in etcd does not say it holds the virtual IP", newNode)
	}
}

// TestHooks: a failing pre_failover hook stops the failover before anything changes;
// once it passes, the failover goes ahead and the post_failover hook is told what
// happened through its environment.
func TestHooks(t *testing.T) {
	dir := t.TempDir()
	block, env := filepath.Join(dir, "block"), filepath.Join(dir, "post.env")
	script := filepath.Join(dir, "hook.sh")
	body := fmt.Sprintf("#!/bin/sh\ncase \"$1\" in\npre) [ -e %s ] && exit 1; exit 0;;\npost) env > %s;;\nesac\n", block, env)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(block, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := sandboxtest.Up(t, sandbox.Spec{Name: "hooks", Nodes: 3, SemiSync: true, WithAgents: true, HookScript: script})
	cli, err := c.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cl := sbCluster{Cluster: c, store: cluster.NewStore(cli, c.Name)}
	ctx := context.Background()
	if err := c.Fault(ctx, "db1", sandbox.Kill); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if p := cl.snapshot(t).Primary; p.Node != "db1" || p.Epoch != 1 {
			t.Fatalf("failover went ahead with a failing pre_failover hook: primary %s epoch %d", p.Node, p.Epoch)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	var now cluster.Snapshot
	sandboxtest.WaitFor(t, 15*time.Second, "the failover once the hook passes", func() bool {
		now = cl.snapshot(t)
		return now.Primary.Node != "db1" && now.Leader == now.Primary.Node
	})
	var got []byte
	sandboxtest.WaitFor(t, 10*time.Second, "the post_failover hook", func() bool {
		got, err = os.ReadFile(env)
		return err == nil && len(got) > 0
	})
	for _, want := range []string{"BATON_EVENT=post_failover", "BATON_OLD_PRIMARY=db1", "BATON_NEW_PRIMARY=" + now.Primary.Node, "BATON_EPOCH=2", "BATON_RESULT=done"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("post_failover hook environment lacks %s:\n%s", want, got)
		}
	}
	for _, secret := range []string{c.AdminPassword, c.ReplPassword} {
		if strings.Contains(string(got), secret) {
			t.Error("a hook was given a password")
		}
	}
}

// TestSwitchoverWaitsForOpenWrites: a switchover is refused while a write transaction
// has been open on the primary for 5 s or more, and nothing changes; once it ends the
// same switchover goes through.
func TestSwitchoverWaitsForOpenWrites(t *testing.T) {
	c := upCluster(t, "swopen", 1)
	ctx := context.Background()
	db := sandboxtest.RootDB(t, c.Cluster, "db1")
	tx, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for _, q := range []string{"BEGIN", "INSERT INTO sandbox.t(v) VALUES ('long')"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5500 * time.Millisecond)
	request := func(id string) *cluster.Request {
		t.Helper()
		snap := c.snapshot(t)
		if err := c.store.PutRequest(ctx, cluster.Request{ID: id, Kind: cluster.RequestSwitchover, To: "db2", Epoch: snap.Primary.Epoch, At: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
		var r *cluster.Request
		sandboxtest.WaitFor(t, 20*time.Second, "the request "+id+" to end", func() bool {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			r, err = c.store.Request(rctx)
			return err == nil && r != nil && r.ID == id && r.State != cluster.RequestPending && r.State != cluster.RequestRunning
		})
		return r
	}
	r := request("sw-1")
	if r.State != cluster.RequestRefused || !strings.Contains(r.Error, "write transaction has been open on db1") {
		t.Fatalf("switchover with a write open for 5.5s: %s %q, want refused naming the open write", r.State, r.Error)
	}
	if snap := c.snapshot(t); snap.Primary.Node != "db1" || snap.Primary.Epoch != 1 || snap.Leader != "db1" {
		t.Fatalf("after the refusal: primary %s epoch %d leader %s, want db1 epoch 1 unchanged", snap.Primary.Node, snap.Primary.Epoch, snap.Leader)
	}
	if _, err := tx.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatalf("the open write, after the refusal: %v (it must not have been killed)", err)
	}
	time.Sleep(200 * time.Millisecond) // InnoDB's list of transactions is refreshed every 100 ms
	if r := request("sw-2"); r.State != cluster.RequestDone || r.Result == nil || r.Result.To != "db2" {
		t.Fatalf("switchover once the write ended: %s %q", r.State, r.Error)
	}
}

// TestFailoverReadsReplicaWithoutAgent: a replica whose agent died while its server
// runs holds a transaction (acknowledged by semi-sync) that the other replica lacks.
// When the primary fails, the coordinator reads that server too: it refuses to
// promote the less complete replica, says why in the decision it publishes, and once
// the agent is back, promotes the complete one.
func TestFailoverReadsReplicaWithoutAgent(t *testing.T) {
	c := upCluster(t, "silent", 1)
	ctx := context.Background()
	fault := func(node string, f sandbox.Fault) {
		t.Helper()
		if err := c.Fault(ctx, node, f); err != nil {
			t.Fatal(err)
		}
	}
	sandboxtest.WaitFor(t, 15*time.Second, "every member recorded", func() bool {
		snap := c.snapshot(t)
		return len(snap.Members) == 3 && snap.Leader == "db1"
	})
	// The coordinator must be db2: db1 is cut off from db2 below, db3's agent is
	// killed. Move it by restarting whichever agent holds it (a few tries at most: the
	// election picks among the live agents).
	for try := 0; c.snapshot(t).Coordinator != "db2"; try++ {
		if try == 4 {
			t.Fatalf("db2 not elected coordinator after %d restarts", try)
		}
		node := c.snapshot(t).Coordinator
		fault(node, sandbox.KillAgent)
		sandboxtest.WaitFor(t, 15*time.Second, "another coordinator than "+node, func() bool {
			co := c.snapshot(t).Coordinator
			return co != "" && co != node
		})
		fault(node, sandbox.StartAgent)
		sandboxtest.WaitFor(t, 15*time.Second, node+"'s agent back", func() bool {
			snap := c.snapshot(t)
			_, ok := snap.Nodes[node]
			return ok && snap.Leader == "db1"
		})
	}
	fault("db3", sandbox.KillAgent)
	sandboxtest.WaitFor(t, 15*time.Second, "db3's agent gone", func() bool {
		snap := c.snapshot(t)
		_, ok := snap.Nodes["db3"]
		return !ok && snap.Coordinator == "db2"
	})

	// Cut db1 and db2 from each other (both ways), so that only db3 receives and
	// acknowledges the next transaction.
	db1, _ := c.Node("db1")
	db2, _ := c.Node("db2")
	for _, r := range [][2]string{{db1.NetNS, db2.IP}, {db2.NetNS, db1.IP}} {
		if out, err := exec.Command("ip", "-n", r[0], "route", "add", "blackhole", r[1]+"/32").CombinedOutput(); err != nil {
			t.Fatalf("blackhole %s in %s: %v: %s", r[1], r[0], err, out)
		}
	}
	primary := sandboxtest.RootDB(t, c.Cluster, "db1")
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := primary.ExecContext(qctx, "INSERT INTO sandbox.t(v) VALUES ('only-db3-has-it')"); err != nil {
		t.Fatal(err)
	}
	has := func(node string) bool {
		db := sandboxtest.RootDB(t, c.Cluster, node)
		var n int
		if err := db.QueryRowContext(qctx, "SELECT COUNT(*) FROM sandbox.t WHERE v = 'only-db3-has-it'").Scan(&n); err != nil {
			t.Fatalf("read %s: %v", node, err)
		}
		return n > 0
	}
	sandboxtest.WaitFor(t, 5*time.Second, "the row on db3", func() bool { return has("db3") })
	if has("db2") {
		t.Fatal("db2 has the row although it is cut off from db1")
	}

	fault("db1", sandbox.Kill)
	var snap cluster.Snapshot
	sandboxtest.WaitFor(t, 20*time.Second, "a refused failover, published", func() bool {
		snap = c.snapshot(t)
		if snap.Primary.Node == "db2" {
			t.Fatal("db2 promoted although it lacks a transaction db3 has")
		}
		return snap.Decision != nil && snap.Decision.Tries > 0
	})
	if !strings.Contains(snap.Decision.LastError, "lacks transactions db3 has") {
		t.Errorf("refusal = %q, want it to say db2 lacks db3's transactions", snap.Decision.LastError)
	}
	if snap.Primary.Node != "db1" {
		t.Fatalf("primary = %s, want db1 kept (db2 lacks a transaction db3 has)", snap.Primary.Node)
	}

	fault("db3", sandbox.StartAgent)
	sandboxtest.WaitFor(t, 30*time.Second, "db3 promoted", func() bool {
		snap = c.snapshot(t)
		return snap.Primary.Node == "db3" && snap.Leader == "db3"
	})
	if snap.Primary.Epoch != 2 {
		t.Errorf("epoch = %d, want 2", snap.Primary.Epoch)
	}
	if !has("db3") {
		t.Error("the promoted db3 lacks the acknowledged row")
	}
}

// TestSemiSyncKeptOn: a primary whose mysqld restarts while no failover may run
// (inside failover_block) is made writable again only with its semi-sync source side
// on, at every moment; and a source side turned off by hand on the writable primary
// is turned back on and reported.
func TestSemiSyncKeptOn(t *testing.T) {
	c := upCluster(t, "semi", 1)
	ctx := context.Background()
	if err := c.Fault(ctx, "db1", sandbox.Kill); err != nil {
		t.Fatal(err)
	}
	var primary string
	sandboxtest.WaitFor(t, 20*time.Second, "a failover away from db1", func() bool {
		snap := c.snapshot(t)
		primary = snap.Primary.Node
		return primary != "db1" && snap.Leader == primary
	})
	epoch := c.snapshot(t).Primary.Epoch
	// Within failover_block: the new primary's crash is not failed over; its agent
	// brings the restarted server back.
	if err := c.Fault(ctx, primary, sandbox.Kill); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := c.Fault(ctx, primary, sandbox.Start); err != nil {
		t.Fatal(err)
	}
	db := sandboxtest.RootDB(t, c.Cluster, primary)
	state := func() (readOnly, semi int, err error) {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err = db.QueryRowContext(qctx, "SELECT @@read_only, @@rpl_semi_sync_master_enabled").Scan(&readOnly, &semi)
		return readOnly, semi, err
	}
	sandboxtest.WaitFor(t, 20*time.Second, primary+" writable again", func() bool {
		ro, semi, err := state()
		if err != nil {
			return false
		}
		if ro == 0 && semi == 0 {
			t.Fatalf("%s is writable with the semi-sync source side off", primary)
		}
		return ro == 0
	})
	if snap := c.snapshot(t); snap.Primary.Node != primary || snap.Primary.Epoch != epoch {
		t.Fatalf("primary %s epoch %d, want %s epoch %d (no failover inside failover_block)", snap.Primary.Node, snap.Primary.Epoch, primary, epoch)
	}
	sandboxtest.WaitFor(t, 5*time.Second, primary+" publishing semi-sync on", func() bool {
		return c.snapshot(t).Nodes[primary].SemiSync == cluster.SemiSyncOn
	})

	// Drift: someone turns the source side off on the writable primary.
	sandboxtest.Exec(t, ctx, db, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
	sandboxtest.WaitFor(t, 5*time.Second, "the semi-sync source side repaired and reported", func() bool {
		_, semi, err := state()
		n := c.snapshot(t).Nodes[primary]
		return err == nil && semi == 1 && n.Repaired != "" && n.SemiSync == cluster.SemiSyncOn
	})

	// Drift on a replica: its replica side turned off; it is turned on again, and the
	// replica reconnects with it (the primary counts it as a semi-sync client).
	replica := "db2"
	if primary == "db2" {
		replica = "db3"
	}
	rdb := sandboxtest.RootDB(t, c.Cluster, replica)
	sandboxtest.Exec(t, ctx, rdb, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
	sandboxtest.WaitFor(t, 10*time.Second, replica+"'s semi-sync replica side repaired", func() bool {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var on int
		if rdb.QueryRowContext(qctx, "SELECT @@rpl_semi_sync_slave_enabled").Scan(&on) != nil || on != 1 {
			return false
		}
		st := slaveStatus(t, qctx, rdb)
		return st["Slave_IO_Running"] == "Yes" && c.snapshot(t).Nodes[replica].SemiSync == cluster.SemiSyncReplicaOn
	})
}

// TestLeftoverVIPDroppedAtStart: an agent SIGKILLed on the primary leaves the virtual
// IP configured; after the primary fails over, the old node's next agent drops that
// address before anything else, even with its own server down.
func TestLeftoverVIPDroppedAtStart(t *testing.T) {
	c := upCluster(t, "vipleft", 1)
	ctx := context.Background()
	holders := func() string {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		hs, err := c.VIPHolders(qctx)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(hs, ",")
	}
	sandboxtest.WaitFor(t, 10*time.Second, "db1 holding the virtual IP", func() bool { return holders() == "db1" })
	for _, f := range []sandbox.Fault{sandbox.KillAgent, sandbox.Kill} {
		if err := c.Fault(ctx, "db1", f); err != nil {
			t.Fatal(err)
		}
	}
	var primary string
	sandboxtest.WaitFor(t, 20*time.Second, "a failover away from db1", func() bool {
		snap := c.snapshot(t)
		primary = snap.Primary.Node
		return primary != "db1" && snap.Leader == primary
	})
	sandboxtest.WaitFor(t, 5*time.Second, primary+" holding the virtual IP", func() bool {
		return strings.Contains(holders(), primary)
	})
	if h := holders(); !strings.Contains(h, "db1") {
		t.Fatalf("the killed agent's virtual IP is gone already (%s): the test proves nothing", h)
	}
	if err := c.Fault(ctx, "db1", sandbox.StartAgent); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 5*time.Second, "db1's new agent dropping the leftover virtual IP", func() bool {
		return holders() == primary
	})
}

// TestFailoverRepointsReplicaWithoutAgent: a replica whose agent is dead is pointed at
// the new primary by the coordinator, so that with semi-sync the new primary has a
// replica to acknowledge its commits (the old primary is gone): writes resume.
func TestFailoverRepointsReplicaWithoutAgent(t *testing.T) {
	c := upCluster(t, "repoint", 1)
	ctx := context.Background()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	sandboxtest.WaitFor(t, 5*time.Second, "writes acknowledged before the faults", func() bool { return len(w.Acks()) > 20 })
	if err := c.Fault(ctx, "db3", sandbox.KillAgent); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 10*time.Second, "db3's agent gone from etcd", func() bool {
		_, ok := c.snapshot(t).Nodes["db3"]
		return !ok
	})
	injected := time.Now()
	if err := c.Fault(ctx, "db1", sandbox.Kill); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 20*time.Second, "db2 the new primary", func() bool {
		snap := c.snapshot(t)
		return snap.Primary.Node == "db2" && snap.Leader == "db2"
	})
	db2, _ := c.Node("db2")
	sandboxtest.WaitFor(t, 10*time.Second, "a write acknowledged by db2", func() bool {
		_, ok := w.FirstAckAfter(injected, uint32(c.Nodes[0].ServerID))
		return ok
	})
	db3 := sandboxtest.RootDB(t, c.Cluster, "db3")
	sandboxtest.WaitFor(t, 5*time.Second, "db3 replicating from db2", func() bool {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		st := slaveStatus(t, qctx, db3)
		return st["Master_Host"] == db2.IP && st["Slave_IO_Running"] == "Yes"
	})
	w.Stop()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p := sandboxtest.RootDB(t, c.Cluster, "db2")
	if lost, err := w.Lost(qctx, p); err != nil || len(lost) > 0 {
		t.Fatalf("acknowledged writes missing on db2: %v %v", lost, err)
	}
	ev := c.failoverEvent(t, "db1")
	var steps []string
	for _, s := range ev.Steps {
		steps = append(steps, s.Name+" "+s.Error)
	}
	if !strings.Contains(strings.Join(steps, ","), "repoint_silent ") || !strings.Contains(strings.Join(steps, ","), "can_commit ") {
		t.Errorf("steps %v: want repoint_silent and can_commit, without errors", steps)
	}
}

// failoverEvent waits up to 5 s for the history's newest failover away from from,
// and returns it. The coordinator may have recorded more since (a fence of the old
// primary's server, writable with its agent gone), and records the failover after
// its last steps (promote, repoint_silent, the hooks), which may end after the
// writer is back.
func (c sbCluster) failoverEvent(t *testing.T, from string) cluster.Event {
	t.Helper()
	var ev cluster.Event
	sandboxtest.WaitFor(t, 5*time.Second, "the failover's history event", func() bool {
		hctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hist, err := c.store.History(hctx, 5)
		if err != nil {
			return false
		}
		for _, e := range hist {
			if e.Kind == cluster.EventFailover && e.From == from {
				ev = e
				return true
			}
		}
		return false
	})
	return ev
}

// slaveStatus is SHOW SLAVE STATUS by column name (empty when not a replica or on error).
func slaveStatus(t *testing.T, ctx context.Context, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return nil
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if rows.Scan(ptrs...) != nil {
		return nil
	}
	out := map[string]string{}
	for i, c := range cols {
		out[c] = vals[i].String
	}
	return out
}

// TestDeposedPrimaryFencedWhenItWakes: the primary's agent is killed, then its
// mysqld frozen: the failover happens, but its fence of the frozen server cannot
// complete. When the old mysqld wakes it is still writable, with no agent to fence
// it (and the virtual IP still on its host's interface: nobody can remove it from
// afar). The elected coordinator keeps fencing it until it succeeds, says so in the
// history, and no write through the virtual IP is acknowledged by the old server
// after the failover.
func TestDeposedPrimaryFencedWhenItWakes(t *testing.T) {
	c := upCluster(t, "wake", 1)
	ctx := context.Background()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	sandboxtest.WaitFor(t, 5*time.Second, "writes acknowledged before the fault", func() bool { return len(w.Acks()) > 20 })
	for _, f := range []sandbox.Fault{sandbox.KillAgent, sandbox.Stop} {
		if err := c.Fault(ctx, "db1", f); err != nil {
			t.Fatal(err)
		}
	}
	var now cluster.Snapshot
	sandboxtest.WaitFor(t, 30*time.Second, "a new primary of record", func() bool {
		now = c.snapshot(t)
		return now.Primary.Node != "db1" && now.Leader == now.Primary.Node
	})
	committed := time.Now()
	if err := c.Fault(ctx, "db1", sandbox.Cont); err != nil {
		t.Fatal(err)
	}
	woke := time.Now()
	db := sandboxtest.RootDB(t, c.Cluster, "db1")
	sandboxtest.WaitFor(t, 4*failover.GuardEvery+10*time.Second, "db1 read_only after it woke", func() bool {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var ro int
		return db.QueryRowContext(qctx, "SELECT @@global.read_only").Scan(&ro) == nil && ro == 1
	})
	t.Logf("db1 read_only %s after it woke", time.Since(woke).Round(time.Millisecond))
	// The flow's own fence may land as the server wakes (its statement was queued on
	// the frozen server) or not (its connection gone): make the second case certain.
	// Nothing else watches db1 now; the coordinator must find it writable and fence it.
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := db.ExecContext(qctx, "SET GLOBAL read_only = 0"); err != nil {
		t.Fatal(err)
	}
	unfenced := time.Now()
	sandboxtest.WaitFor(t, 2*failover.GuardEvery+5*time.Second, "db1 fenced again by the coordinator", func() bool {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var ro int
		return db.QueryRowContext(qctx, "SELECT @@global.read_only").Scan(&ro) == nil && ro == 1
	})
	t.Logf("db1 fenced by the coordinator %s after it was found writable", time.Since(unfenced).Round(time.Millisecond))
	sandboxtest.WaitFor(t, 5*time.Second, "the fence in the history", func() bool {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		hist, err := c.store.History(qctx, 5)
		if err != nil {
			return false
		}
		for _, e := range hist {
			if e.Kind == cluster.EventFence && e.From == "db1" {
				return true
			}
		}
		return false
	})
	time.Sleep(2 * time.Second) // writes through the virtual IP go on
	w.Stop()
	old := uint32(c.Nodes[0].ServerID)
	for _, a := range w.Acks() {
		if a.ServerID == old && a.Sent.After(committed) {
			t.Errorf("write %d sent %s after the failover was acknowledged by the old primary db1", a.Seq, a.Sent.Sub(committed))
		}
	}
	if _, ok := w.FirstAckAfter(woke, old); !ok {
		t.Error("no write acknowledged through the virtual IP after db1 woke")
	}
}

// TestPrimaryAgentRestartKeepsVIP: the primary's agent is killed and started again at
// once (systemd bringing back a crashed agent, or a rolling upgrade of Baton). etcd
// still names db1 the primary of record, so the new agent keeps the virtual IP its
// predecessor left: the address is never without a holder, db1 stays the primary,
// and writes through the virtual IP go on.
func TestPrimaryAgentRestartKeepsVIP(t *testing.T) {
	c := upCluster(t, "agrst", 1)
	ctx := context.Background()
	w := c.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	sandboxtest.WaitFor(t, 10*time.Second, "writes through db1's virtual IP", func() bool { return len(w.Acks()) > 20 })
	holders := func() string {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		hs, err := c.VIPHolders(qctx)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(hs, ",")
	}
	if h := holders(); h != "db1" {
		t.Fatalf("virtual IP on %q, want db1", h)
	}
	restarted := time.Now()
	for _, f := range []sandbox.Fault{sandbox.KillAgent, sandbox.StartAgent} {
		if err := c.Fault(ctx, "db1", f); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if h := holders(); h != "db1" {
			t.Fatalf("virtual IP on %q %s after the agent's restart, want db1 throughout", h, time.Since(restarted).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if snap := c.snapshot(t); snap.Primary.Node != "db1" || snap.Primary.Epoch != 1 {
		t.Fatalf("primary %+v after the agent's restart, want db1 at epoch 1", snap.Primary)
	}
	if _, ok := w.FirstAckAfter(restarted.Add(time.Second), 0); !ok {
		t.Fatal("no write acknowledged through the virtual IP after the restart")
	}
	t.Logf("writer's longest gap: %s", w.MaxGap().Round(time.Millisecond))
}
