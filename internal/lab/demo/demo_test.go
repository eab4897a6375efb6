package demo

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

func node(name string, role cluster.Role, verdict detector.Verdict) cluster.NodeStatus {
	return cluster.NodeStatus{Node: name, Role: role, Verdict: verdict, GTID: "0-1-10", ReadOnly: role != cluster.RolePrimary}
}

func twoReplicas() demoView {
	return demoView{
		Primary: cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", Epoch: 1}, Leader: "db1", Coordinator: "db2",
		Nodes: map[string]cluster.NodeStatus{
			"db1": node("db1", cluster.RolePrimary, detector.Healthy),
			"db2": node("db2", cluster.RoleReplica, detector.Healthy),
			"db3": node("db3", cluster.RoleReplica, detector.Healthy),
		},
		VIP: []string{"db1"},
	}
}

func TestDemoChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(v *demoView)
		want   []string
	}{
		{"nothing", func(v *demoView) {}, nil},
		{"latencies alone are not news", func(v *demoView) {
			n := v.Nodes["db2"]
			n.WriteMS, n.LagMS, n.At = 3.2, 250, time.Now()
			v.Nodes["db2"] = n
		}, nil},
		{"verdict with its reason", func(v *demoView) {
			n := v.Nodes["db1"]
			n.Verdict, n.Reason = detector.Suspect, "write probe did not finish in 300ms"
			v.Nodes["db1"] = n
		}, []string{"db1 verdict suspect: write probe did not finish in 300ms"}},
		{"decision", func(v *demoView) {
			v.Intent = &cluster.Intent{Kind: "failover", From: "db1", Epoch: 1}
		}, []string{"coordinator db2 decided: failover away from db1 (epoch 1)"}},
		{"commit with the intent gone in the same revision is not an abandoned flow", func(v *demoView) {
			v.Primary = cluster.Primary{Node: "db2", Epoch: 2}
		}, []string{"commit: db2 is the primary of record (epoch 2)"}},
		{"the new primary waiting for the leader key is not fenced", func(v *demoView) {
			v.Primary = cluster.Primary{Node: "db2", Epoch: 2}
			n := v.Nodes["db2"]
			n.Role = cluster.RoleFenced
			v.Nodes["db2"] = n
		}, []string{"db2, primary of record, waits for db1 to let go of the leader key", "commit: db2 is the primary of record (epoch 2)"}},
		{"old primary fenced, leader and VIP released, in that order", func(v *demoView) {
			n := v.Nodes["db1"]
			n.Role, n.Reason = cluster.RoleFenced, "fenced: a failover away from this node is in progress"
			v.Nodes["db1"], v.Leader, v.VIP = n, "", nil
		}, []string{"db1 fenced: a failover away from this node is in progress", "db1 let go of the leader key", "VIP released by db1: no node has it"}},
		{"a status made without the server says nothing of read_only", func(v *demoView) {
			n := v.Nodes["db2"]
			n.GTID, n.ReadOnly = "", false
			v.Nodes["db2"] = n
		}, []string{"db2's agent cannot read its server"}},
		{"replication threads of a replica", func(v *demoView) {
			n := v.Nodes["db3"]
			n.IORunning, n.SQLRunning, n.Source = false, true, "198.18.0.11:3306"
			v.Nodes["db3"] = n
		}, []string{"db3 replication from 198.18.0.11:3306: IO thread stopped, SQL thread running"}},
		{"quarantine with the errant GTIDs", func(v *demoView) {
			n := v.Nodes["db3"]
			n.Role, n.Errant = cluster.RoleQuarantined, "0-3-4"
			v.Nodes["db3"] = n
		}, []string{"db3 quarantined: errant transactions 0-3-4"}},
		{"an agent gone", func(v *demoView) { delete(v.Nodes, "db3") }, []string{"db3's agent is gone (its etcd lease ended)"}},
		{"two VIP holders are called out", func(v *demoView) { v.VIP = []string{"db1", "db2"} }, []string{"VIP on db1 and db2 at once!"}},
		{"history", func(v *demoView) {
			v.LastEvent = &cluster.Event{Kind: "failover", From: "db1", To: "db2", Started: time.Unix(100, 0), Took: 301 * time.Millisecond}
		}, []string{"history: failover db1 -> db2 recorded, 301ms from decision to done"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := twoReplicas()
			if strings.HasPrefix(tt.name, "commit") {
				prev.Intent = &cluster.Intent{Kind: "failover", From: "db1", Epoch: 1}
			}
			cur := prev.clone()
			if cur.Intent != nil {
				cur.Intent = nil // withdrawn with the commit
			}
			tt.change(&cur)
			if got := demoChanges(prev, cur); !slices.Equal(got, tt.want) {
				t.Errorf("demoChanges =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestDemoChangesAbandonedIntent(t *testing.T) {
	prev := twoReplicas()
	prev.Intent = &cluster.Intent{Kind: "failover", From: "db1", Epoch: 1}
	cur := prev.clone()
	cur.Intent = nil
	want := []string{"the failover away from db1 was abandoned (intent withdrawn)"}
	if got := demoChanges(prev, cur); !slices.Equal(got, want) {
		t.Errorf("demoChanges = %q, want %q", got, want)
	}
}

// TestNarrateSnapshots: the demo narrates the snapshots the store's watch yields, one
// per revision; a commit (primary written, intent deleted in one transaction) reads as
// a commit, not as an abandoned flow.
func TestNarrateSnapshots(t *testing.T) {
	base := twoReplicas()
	snap := cluster.Snapshot{View: cluster.View{Primary: base.Primary, Leader: base.Leader, Nodes: map[string]cluster.NodeStatus{}},
		Coordinator: base.Coordinator}
	for k, n := range base.Nodes {
		snap.Nodes[k] = n
	}
	next := func(fn func(s *cluster.Snapshot)) cluster.Snapshot {
		c := snap
		c.Nodes = map[string]cluster.NodeStatus{}
		for k, n := range snap.Nodes {
			c.Nodes[k] = n
		}
		fn(&c)
		snap = c
		return c
	}
	steps := []cluster.Snapshot{
		next(func(s *cluster.Snapshot) { s.Intent = &cluster.Intent{Kind: "failover", From: "db1", Epoch: 1} }),
		next(func(s *cluster.Snapshot) {
			s.Nodes["db1"] = cluster.NodeStatus{Node: "db1", Role: cluster.RoleFenced, Verdict: detector.Unwritable, GTID: "0-1-10", ReadOnly: true}
		}),
		next(func(s *cluster.Snapshot) {
			s.Primary, s.Intent = cluster.Primary{Node: "db2", Addr: "198.18.0.12:3306", Epoch: 2}, nil
		}),
		next(func(s *cluster.Snapshot) { s.Leader = "" }),
		next(func(s *cluster.Snapshot) { s.Leader = "db2" }),
		next(func(s *cluster.Snapshot) {
			s.LastEvent = &cluster.Event{Kind: "failover", From: "db1", To: "db2", Epoch: 2}
		}),
		next(func(s *cluster.Snapshot) { delete(s.Nodes, "db3") }),
	}
	v := base
	var said []string
	for _, s := range steps {
		cur := viewOf(s, v.VIP)
		said = append(said, demoChanges(v, cur)...)
		v = cur
	}
	want := []string{
		"coordinator db2 decided: failover away from db1 (epoch 1)",
		"db1 verdict unwritable",
		"db1 is read_only",
		"db1 fenced",
		"commit: db2 is the primary of record (epoch 2)",
		"db1 let go of the leader key",
		"db2 promoted (epoch 2): it holds the leader key",
		"history: failover db1 -> db2 recorded, 0s from decision to done",
		"db3's agent is gone (its etcd lease ended)",
	}
	if !slices.Equal(said, want) {
		t.Errorf("narrated\n%q\nwant\n%q", said, want)
	}
}

func TestLastGTID(t *testing.T) {
	tests := []struct{ name, dump, want string }{
		{"transactions", "#261122  2:43:41 server id 1  end_log_pos 14141 CRC32 0xb1aa96b5 \tGTID 0-1-45 trans\n" +
			"#Q> INSERT INTO t VALUES (1)\n#261122  2:43:41 server id 1  end_log_pos 14797 CRC32 0x59103d52 \tGTID 0-1-47 trans\n" +
			"ERROR: Error in Log_event::read_log_event(): 'Event truncated'\n", "0-1-47"},
		{"DDL", "#261122  2:12:01 server id 1  end_log_pos 552 CRC32 0x1 \tGTID 0-1-2 ddl\n", "0-1-2"},
		{"no transaction: the list it starts with", "#261122  2:44:13 server id 1  end_log_pos 285 CRC32 0x2 \tGtid list [0-1-47,0-2-3]\n", "0-1-47,0-2-3"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		if got := lastGTID(tt.dump); got != tt.want {
			t.Errorf("%s: lastGTID = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestStripLogPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-22  2:48:35 0 [Note] Recovering after a crash using mysql-bin": "[Note] Recovering after a crash using mysql-bin",
		"2026-11-22 12:48:35 17 [Warning] x":                                    "[Warning] x",
		"recovered pages: 0% 10% 100%":                                          "recovered pages: 0% 10% 100%",
	} {
		if got := stripLogPrefix(in); got != want {
			t.Errorf("stripLogPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSummarySaysSecure(t *testing.T) {
	for _, secure := range []bool{false, true} {
		d := &demo{name: "demo", secure: secure}
		b, err := json.Marshal(d.newSummary())
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), `"secure":true`); got != secure {
			t.Errorf("secure %v: the summary %s", secure, b)
		}
	}
}
