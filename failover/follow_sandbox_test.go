//go:build integration

package failover_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/failpoint"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestReplicasFollowFromTheCommit: in a switchover the other servers (the old
// primary among them) replicate from the new primary from the flow's commit on,
// while it is still read_only and not yet promoted, not only once it has published
// itself as primary: with semi-sync its first commits then find replicas connected
// to acknowledge them. The candidate's agent is stopped at its promotion
// (failpoint before-promote) to hold that moment; then it goes on, and the
// switchover ends with every server following it.
func TestReplicasFollowFromTheCommit(t *testing.T) {
	c := upClusterSpec(t, sandbox.Spec{Name: "swfollow", Nodes: 3, SemiSync: true, WithAgents: true, EtcdMembers: 1,
		Binary: sandboxtest.FailpointBinary(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const candidate = "db2"
	arm(t, ctx, c, candidate, failpoint.BeforePromote)
	old, _ := steady(t, c)
	if old == candidate {
		t.Fatalf("%s is the primary at the start", candidate)
	}
	sandboxtest.WaitFor(t, 20*time.Second, "every node healthy", func() bool {
		snap := c.snapshot(t)
		for _, n := range c.Nodes {
			if snap.Nodes[n.Name].Verdict != detector.Healthy {
				return false
			}
		}
		return true
	})
	cand, err := c.Node(candidate)
	if err != nil {
		t.Fatal(err)
	}
	start := c.snapshot(t).Primary
	if err := c.store.PutRequest(ctx, cluster.Request{ID: "sw-follow", Kind: cluster.RequestSwitchover, To: candidate, Epoch: start.Epoch, At: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitFor(t, 10*time.Second, candidate+"'s agent stopped before its promotion", func() bool { return procState(cand.AgentPID) == 'T' })
	resumed := false
	defer func() {
		if !resumed {
			_ = c.Fault(context.Background(), candidate, sandbox.ContAgent)
		}
	}()
	snap := c.snapshot(t)
	if p := snap.Primary; p.Node != candidate || p.Epoch != start.Epoch+1 || p.Executed == "" {
		t.Fatalf("primary of record %s epoch %d executed %q: want %s at epoch %d with the set the flow saw it apply", p.Node, p.Epoch, p.Executed, candidate, start.Epoch+1)
	}
	if n := snap.Nodes[candidate]; n.Role == cluster.RolePrimary && n.Epoch == start.Epoch+1 {
		t.Fatalf("%s published itself as primary before its promotion", candidate)
	}
	// Writes are blocked from the announce to the promotion: the flow writes none of
	// its steps to etcd meanwhile (they come with the request's next update).
	if r, err := c.store.Request(ctx); err != nil || r == nil || r.ID != "sw-follow" {
		t.Fatalf("the request: %+v, %v", r, err)
	} else {
		for _, st := range r.Steps {
			if st.Name == "announce" || st.Name == "commit" {
				t.Errorf("the request shows step %s while writes are blocked (steps %v): want no etcd write for them until the new primary takes writes", st.Name, r.Steps)
			}
		}
	}

	// Within the agents' session TTL (3 s): the stopped agent's lease must not run out.
	cdb := sandboxtest.RootDB(t, c.Cluster, candidate)
	for _, n := range c.Nodes {
		if n.Name == candidate {
			continue
		}
		db := sandboxtest.RootDB(t, c.Cluster, n.Name)
		sandboxtest.WaitFor(t, 2*time.Second, n.Name+" replicating from "+candidate+" before its promotion", func() bool {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st := slaveStatus(t, qctx, db)
			return st["Master_Host"] == cand.IP && st["Master_Port"] == strconv.Itoa(cand.Port) && st["Slave_IO_Running"] == "Yes"
		})
	}
	var readOnly, clients int
	var name string
	qctx, qcancel := context.WithTimeout(ctx, time.Second)
	err = cdb.QueryRowContext(qctx, "SELECT @@read_only").Scan(&readOnly)
	if err == nil {
		err = cdb.QueryRowContext(qctx, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'").Scan(&name, &clients)
	}
	qcancel()
	if err != nil {
		t.Fatal(err)
	}
	if readOnly != 1 {
		t.Fatalf("%s is writable while its agent is stopped before the promotion", candidate)
	}
	if clients < 1 {
		t.Errorf("%s has %d semi-sync replicas connected before its promotion, want them all", candidate, clients)
	}

	if err := c.Fault(ctx, candidate, sandbox.ContAgent); err != nil {
		t.Fatal(err)
	}
	resumed = true
	var r *cluster.Request
	sandboxtest.WaitFor(t, 30*time.Second, "the switchover to end", func() bool {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		r, err = c.store.Request(rctx)
		return err == nil && r != nil && r.ID == "sw-follow" && r.State != cluster.RequestPending && r.State != cluster.RequestRunning
	})
	if r.State != cluster.RequestDone || r.Result == nil || r.Result.To != candidate {
		t.Fatalf("switchover: %s %q, want done to %s", r.State, r.Error, candidate)
	}
	var names []string
	for _, st := range r.Steps {
		names = append(names, st.Name)
	}
	for _, want := range []string{"announce", "fence_old_primary", "final_gtid", "catchup", "commit", "leader", "promote", "can_commit"} {
		if !slices.Contains(names, want) {
			t.Errorf("the finished request's steps %v lack %s", names, want)
		}
	}
	for _, n := range c.Nodes {
		if n.Name != candidate {
			checkReplica(t, c, n.Name, candidate)
		}
	}
}
