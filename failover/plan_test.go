package failover

import (
	"strings"
	"testing"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// gtid gives a node a MariaDB server_id and an executed GTID set.
func gtid(id uint32, set string) func(*cluster.NodeStatus) {
	return func(n *cluster.NodeStatus) { n.Flavor, n.ServerID, n.GTID = "mariadb", id, set }
}

// planView is db1 primary (server_id 1) at 0-1-100, db2 and db3 caught up.
func planView(nodes ...cluster.NodeStatus) cluster.View {
	v := view(nodes...)
	v.Primary.ServerID = 1
	return v
}

func TestPlanRequest(t *testing.T) {
	p1 := with(healthy("db1"), gtid(1, "0-1-100"))
	r2 := with(healthy("db2"), gtid(2, "0-1-100"))
	r3 := with(healthy("db3"), gtid(3, "0-1-99"))
	cases := []struct {
		name        string
		v           cluster.View
		r           cluster.Request
		wantRefused bool
		wantReason  string
		wantTo      string
		// wantChecks is node -> the summary line.
		wantChecks map[string]string
		wantFit    map[string]bool
	}{
		{
			name:       "switchover to a caught-up replica",
			v:          planView(p1, r2, r3),
			r:          cluster.Request{Kind: cluster.RequestSwitchover, To: "db2", Epoch: 4},
			wantTo:     "db2",
			wantReason: "switchover requested",
			wantChecks: map[string]string{"db2": "100 ms behind, IO/SQL running, healthy, storage ok, no errant GTIDs"},
			wantFit:    map[string]bool{"db2": true, "db3": false},
		},
		{
			name:       "switchover without a target: the one with every transaction is predicted",
			v:          planView(p1, r2, r3),
			r:          cluster.Request{Kind: cluster.RequestSwitchover, Epoch: 4},
			wantTo:     "db2",
			wantFit:    map[string]bool{"db2": true, "db3": true},
			wantReason: "switchover requested",
		},
		{
			name: "switchover to a node whose SQL thread stopped on an error and lags",
			v: planView(p1, with(r2, func(n *cluster.NodeStatus) {
				n.SQLRunning, n.ReplError, n.LagMS = false, "Duplicate entry '1' for key 'PRIMARY'", 4200
			}), r3),
			r:           cluster.Request{Kind: cluster.RequestSwitchover, To: "db2", Epoch: 4},
			wantRefused: true,
			wantReason:  "no candidate is fit for a switchover: db2: SQL thread stopped",
			wantChecks:  map[string]string{"db2": "4200 ms behind (over 1s), SQL thread stopped: Duplicate entry '1' for key 'PRIMARY', healthy, storage ok, no errant GTIDs"},
			wantFit:     map[string]bool{"db2": false},
		},
		{
			name:        "switchover to a replica with errant GTIDs: Decide accepts, the plan refuses",
			v:           planView(p1, with(r2, gtid(2, "0-1-100,0-2-3")), r3),
			r:           cluster.Request{Kind: cluster.RequestSwitchover, To: "db2", Epoch: 4},
			wantRefused: true,
			wantReason:  "no candidate without errant GTIDs (db2)",
			wantChecks:  map[string]string{"db2": "100 ms behind, IO/SQL running, healthy, storage ok, errant GTIDs 0-2-3"},
		},
		{
			name:       "an errant replica is left out when the coordinator chooses",
			v:          planView(p1, with(r2, gtid(2, "0-1-100,0-2-3")), r3),
			r:          cluster.Request{Kind: cluster.RequestSwitchover, Epoch: 4},
			wantTo:     "db3",
			wantFit:    map[string]bool{"db2": false, "db3": true},
			wantReason: "switchover requested",
		},
		{
			name: "the primary's own later writes are not errant on a replica ahead of its published set",
			v:    planView(with(p1, gtid(1, "0-1-90")), r2),
			r:    cluster.Request{Kind: cluster.RequestSwitchover, To: "db2", Epoch: 4},
			wantChecks: map[string]string{
				"db2": "100 ms behind, IO/SQL running, healthy, storage ok, no errant GTIDs"},
			wantTo:     "db2",
			wantReason: "switchover requested",
		},
		{
			name:        "failover of a healthy primary without force",
			v:           planView(p1, r2, r3),
			r:           cluster.Request{Kind: cluster.RequestFailover, Epoch: 4},
			wantRefused: true,
			wantReason:  "is healthy: use `baton switchover`",
			wantFit:     map[string]bool{"db2": false, "db3": false},
		},
		{
			name:       "failover of a healthy primary, forced",
			v:          planView(p1, r2, r3),
			r:          cluster.Request{Kind: cluster.RequestFailover, Epoch: 4, Force: true},
			wantTo:     "db2",
			wantReason: "failover requested",
			wantFit:    map[string]bool{"db2": true, "db3": true},
		},
		{
			name: "failover of a primary whose agent is gone: lag unknown and IO down are no reason to refuse",
			v:    planView(with(r2, func(n *cluster.NodeStatus) { n.LagMS, n.IORunning = -1, false }), r3),
			r:    cluster.Request{Kind: cluster.RequestFailover, To: "db2", Epoch: 4},
			wantChecks: map[string]string{
				"db2": "lag unknown, IO not running, healthy, storage ok, errant GTIDs not checked here (the primary's GTID set is unknown; the coordinator checks on the servers)"},
			wantTo:     "db2",
			wantReason: "failover requested",
		},
		{
			name: "a flow in progress: refused",
			v: func() cluster.View {
				v := planView(p1, r2)
				v.Intent = &cluster.Intent{Kind: "switchover", From: "db1"}
				return v
			}(),
			r:           cluster.Request{Kind: cluster.RequestSwitchover, Epoch: 4},
			wantRefused: true,
			wantReason:  "in progress",
		},
		{
			name:        "stale epoch",
			v:           planView(p1, r2),
			r:           cluster.Request{Kind: cluster.RequestSwitchover, Epoch: 3},
			wantRefused: true,
			wantReason:  "epoch 3, now 4",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pl := PlanRequest(t0, tc.v, policy(), tc.r)
			if pl.Refused != tc.wantRefused {
				t.Fatalf("refused = %v (%s), want %v", pl.Refused, pl.Reason, tc.wantRefused)
			}
			if !strings.Contains(pl.Reason, tc.wantReason) {
				t.Errorf("reason = %q, want it to contain %q", pl.Reason, tc.wantReason)
			}
			if !tc.wantRefused && pl.To != tc.wantTo {
				t.Errorf("to = %q, want %q", pl.To, tc.wantTo)
			}
			got := map[string]CandidateChecks{}
			for _, c := range pl.Candidates {
				got[c.Node] = c
			}
			for node, want := range tc.wantChecks {
				if s := got[node].Summary(); s != want {
					t.Errorf("%s checks:\n got %q\nwant %q", node, s, want)
				}
			}
			for node, want := range tc.wantFit {
				if got[node].Fit != want {
					t.Errorf("%s fit = %v, want %v (%s)", node, got[node].Fit, want, got[node].Summary())
				}
			}
		})
	}
}

// TestDryRunIsTheFlowsChoice: `baton failover --dry-run` names the node the real
// failover promotes. Two replicas as complete as each other, of the same priority,
// one a little further behind by its heartbeat: the flow ranks them on the servers
// after stopping their IO threads, when the servers report no lag at all, so the
// heartbeat cannot break the tie in the dry run either.
func TestDryRunIsTheFlowsChoice(t *testing.T) {
	p1 := with(healthy("db1"), gtid(1, "0-1-100"))
	p1.Verdict = detector.Unwritable
	r2 := with(healthy("db2"), gtid(2, "0-1-100"))
	r2.LagMS = 120
	r3 := with(healthy("db3"), gtid(3, "0-1-100"))
	r3.LagMS = 40
	v := planView(p1, r2, r3)
	plan := PlanRequest(t0, v, policy(), cluster.Request{Kind: cluster.RequestFailover, Epoch: 4})
	if plan.Refused {
		t.Fatalf("dry run refused: %s", plan.Reason)
	}
	// What the flow reads on each server once their IO threads are stopped.
	server := func(name string, id uint32) replication.Candidate {
		st := replication.Status{Flavor: replication.FlavorMariaDB, Role: replication.RoleReplica, ServerID: id, ReadOnly: true,
			Executed:  replication.MustParseGTIDSet(replication.FlavorMariaDB, "0-1-100"),
			Retrieved: replication.MustParseGTIDSet(replication.FlavorMariaDB, "0-1-100"),
			IOThread:  replication.ThreadStopped, SQLThread: replication.ThreadRunning}
		c := st.Candidate(name)
		n := v.Nodes[name]
		c.Priority, c.NoPromote, c.StorageOK = n.Priority, n.NoPromote, n.StorageOK
		return c
	}
	chosen, err := choose(choice{action: cluster.Failover, allowed: plan.Decision.Candidates,
		primary: &replication.Server{ServerID: 1, Executed: replication.MustParseGTIDSet(replication.FlavorMariaDB, "0-1-100")},
		read:    []replication.Candidate{server("db2", 2), server("db3", 3)}})
	if err != nil {
		t.Fatal(err)
	}
	if plan.To != chosen.Name {
		t.Fatalf("dry run names %s, the failover promotes %s", plan.To, chosen.Name)
	}
}
