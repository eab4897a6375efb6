package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/detector"
)

var t0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// healthy is db1 primary, db2 and db3 its replicas, every write everywhere.
func healthy() Cluster {
	return Cluster{EtcdOK: true, Primary: "db1", Epoch: 1, Leader: "db1", Nodes: map[string]NodeState{
		"db1": {Name: "db1", Addr: "198.18.0.11", Reachable: true, VIP: true, Role: "primary", Checked: true},
		"db2": {Name: "db2", Addr: "198.18.0.12", Reachable: true, ReadOnly: true, Source: "198.18.0.11", IO: true, SQL: true, Role: "replica", Verdict: detector.Healthy, Checked: true},
		"db3": {Name: "db3", Addr: "198.18.0.13", Reachable: true, ReadOnly: true, Source: "198.18.0.11", IO: true, SQL: true, Role: "replica", Verdict: detector.Healthy, Checked: true},
	}}
}

// movedTo is healthy after a failover to db2 at epoch 2; db1 as given.
func movedTo(db1 NodeState) Cluster {
	c := healthy()
	c.Primary, c.Epoch, c.Leader = "db2", 2, "db2"
	c.Nodes["db2"] = NodeState{Name: "db2", Addr: "198.18.0.12", Reachable: true, VIP: true, Role: "primary", Checked: true}
	n3 := c.Nodes["db3"]
	n3.Source = "198.18.0.12"
	c.Nodes["db3"] = n3
	c.Nodes["db1"] = db1
	return c
}

func with(c Cluster, name string, f func(*NodeState)) Cluster {
	n := c.Nodes[name]
	f(&n)
	c.Nodes[name] = n
	return c
}

var epochs = []Epoch{{Epoch: 1, Node: "db1", At: at(-60000)}, {Epoch: 2, Node: "db2", At: at(2000)}}

func TestCheck(t *testing.T) {
	replica1 := NodeState{Name: "db1", Addr: "198.18.0.11", Reachable: true, ReadOnly: true, Source: "198.18.0.12", IO: true, SQL: true, Role: "replica", Verdict: detector.Healthy, Checked: true}
	cases := []struct {
		name string
		o    Observation
		want []string // substrings of the violations, in order; none: no violation
	}{
		{"a healthy round", Observation{
			Writes: []Write{{Node: "db1", Seq: 1, Sent: at(0), At: at(5), Writer: true}, {Node: "db1", Sent: at(3), At: at(8)}},
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000), Final: healthy(),
		}, nil},
		{"a clean failover: old writes before, new writes after the commit", Observation{
			Writes: []Write{{Node: "db1", Seq: 1, Sent: at(0), At: at(5), Writer: true},
				{Node: "db2", Seq: 2, Sent: at(2100), At: at(2110), Writer: true}},
			Epochs: epochs, Healed: at(3000), Live: at(4000), WriteBack: at(4000), Final: movedTo(replica1),
		}, nil},
		{"the old primary's ack in flight while the new one took its first: not proven after", Observation{
			Writes: []Write{{Node: "db2", Sent: at(2100), At: at(2110)}, {Node: "db1", Sent: at(2090), At: at(2300)}},
			Epochs: epochs, Healed: at(3000), Live: at(4000), WriteBack: at(4000), Final: movedTo(replica1),
		}, nil},
		{"the old primary took a write sent after the new one's ack", Observation{
			Writes: []Write{{Node: "db2", Sent: at(2100), At: at(2110)}, {Node: "db1", Sent: at(2200), At: at(2210)}},
			Epochs: epochs, Healed: at(3000), Live: at(4000), WriteBack: at(4000), Final: movedTo(replica1),
		}, []string{"db1 (epoch 1) acknowledged a write (monitor) sent 09:00:02.200, after db2 (epoch 2)"}},
		{"a replica that was never primary took a write", Observation{
			Writes: []Write{{Node: "db3", Sent: at(100), At: at(110)}},
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000), Final: healthy(),
		}, []string{"db3 acknowledged a write (monitor, sent 09:00:00.100) without ever being the primary of record"}},
		{"a switchback: db1 primary again at epoch 3", Observation{
			Writes: []Write{{Node: "db2", Sent: at(2100), At: at(2110)}, {Node: "db1", Sent: at(5200), At: at(5210)}},
			Epochs: append(epochs[:2:2], Epoch{Epoch: 3, Node: "db1", At: at(5000)}), Healed: at(6000), Live: at(6000), WriteBack: at(6000), Final: healthy(),
		}, nil},
		{"an acked write missing on the primary and a replica", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000),
			Final: with(with(healthy(), "db1", func(n *NodeState) { n.Missing = []int64{7, 8} }), "db3", func(n *NodeState) { n.Missing = []int64{9} }),
		}, []string{"2 acknowledged writes missing on db1 (primary of record): seq [7 8]", "1 acknowledged writes missing on db3 (replica)"}},
		{"the primary's writes never read", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000), Final: with(healthy(), "db1", func(n *NodeState) { n.Checked = false }),
		}, []string{"could not be read on the primary of record"}},
		{"no primary after healing", Observation{
			Epochs: epochs[:1], Healed: at(1000), WriteBack: at(1100), Final: with(healthy(), "db1", func(n *NodeState) { n.ReadOnly = true }),
		}, []string{"no writable primary of record with the leader key and the virtual IP after healing: primary db1 read_only"}},
		{"a writable primary that cannot commit: nothing acknowledged after healing", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), Final: healthy(),
		}, []string{"no write through the virtual IP acknowledged after healing"}},
		{"writes back too late", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(20000), Final: healthy(),
		}, []string{"acknowledged 19s later"}},
		{"writes back, then paused 6 s: a cluster that fell over again", Observation{
			Writes: []Write{{Node: "db1", Seq: 1, Sent: at(995), At: at(1000), Writer: true},
				{Node: "db1", Seq: 2, Sent: at(1015), At: at(1020), Writer: true},
				{Node: "db1", Seq: 3, Sent: at(1040), At: at(7100), Writer: true},
				{Node: "db1", Sent: at(3000), At: at(3005)}}, // the monitor's writes do not count
			Epochs: epochs[:1], Healed: at(900), Live: at(900), WriteBack: at(1000), End: at(7200), Final: healthy(),
		}, []string{"writes through the virtual IP paused 6.08s from 09:00:01.020"}},
		{"writes back, then none until the end of the round", Observation{
			Writes: []Write{{Node: "db1", Seq: 1, Sent: at(995), At: at(1000), Writer: true}},
			Epochs: epochs[:1], Healed: at(900), Live: at(900), WriteBack: at(1000), End: at(9000), Final: healthy(),
		}, []string{"paused 8s from 09:00:01.000"}},
		{"writes back, pauses under the bound", Observation{
			Writes: []Write{{Node: "db1", Seq: 1, Sent: at(995), At: at(1000), Writer: true},
				{Node: "db1", Seq: 2, Sent: at(1015), At: at(5900), Writer: true},
				{Node: "db1", Seq: 3, Sent: at(5920), At: at(10000), Writer: true}},
			Epochs: epochs[:1], Healed: at(900), Live: at(900), WriteBack: at(1000), End: at(10100), Final: healthy(),
		}, nil},
		{"writes back 19 s after healing every replica's full disk: within its bound", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(20000), WriteBackBound: 75 * time.Second, Final: healthy(),
		}, nil},
		{"a primary too late", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(17000), WriteBack: at(1100), Final: healthy(),
		}, []string{"came 16s after healing"}},
		{"a quarantined old primary, with its reason, is fine", Observation{
			Epochs: epochs, Healed: at(3000), Live: at(4000), WriteBack: at(4000),
			Final: movedTo(NodeState{Name: "db1", Addr: "198.18.0.11", Reachable: true, ReadOnly: true, Role: "quarantined", Errant: "0-1-1001"}),
		}, nil},
		{"a quarantined node without a reason", Observation{
			Epochs: epochs, Healed: at(3000), Live: at(4000), WriteBack: at(4000),
			Final: movedTo(NodeState{Name: "db1", Addr: "198.18.0.11", Reachable: true, ReadOnly: true, Role: "quarantined"}),
		}, []string{"not settled: db1 quarantined without a reason"}},
		{"a replica whose agent says it cannot write to its disk", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000), Final: with(healthy(), "db2", func(n *NodeState) { n.Verdict, n.Reason = detector.Unwritable, "storage probe" }),
		}, []string{"not settled: db2 is a replica, unwritable: storage probe"}},
		{"the primary's agent not published yet", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000), Final: with(healthy(), "db1", func(n *NodeState) { n.Role = "unknown" }),
		}, []string{"not settled: the primary of record db1 is \"unknown\" in its agent's record", "the primary of record db1 is \"unknown\" in its agent's record"}},
		{"a replica left stopped", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000), Final: with(healthy(), "db2", func(n *NodeState) { n.IO = false }),
		}, []string{"not settled: db2 replicates from \"198.18.0.11\" (io false, sql true)"}},
		{"a replica still behind (its relay log waited on a full disk)", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000), Final: with(healthy(), "db2", func(n *NodeState) { n.LagMS = 8740 }),
		}, []string{"not settled: db2 is a replica 8.74s behind"}},
		{"a replica whose lag is unknown", Observation{
			Epochs: epochs[:1], Healed: at(1000), Live: at(1000), WriteBack: at(1000), Final: with(healthy(), "db3", func(n *NodeState) { n.LagMS = -1 }),
		}, []string{"not settled: db3 is a replica whose lag is unknown"}},
		{"two virtual IP holders", Observation{
			Epochs: epochs[:1], Healed: at(1000), WriteBack: at(1100), Final: with(healthy(), "db2", func(n *NodeState) { n.VIP = true }),
		}, []string{"no writable primary", "db2 holds the virtual IP, the primary of record is db1"}},
		{"a replica following the old primary", Observation{
			Epochs: epochs, Healed: at(3000), Live: at(4000), WriteBack: at(4000), Final: with(movedTo(replica1), "db3", func(n *NodeState) { n.Source = "198.18.0.11" }),
		}, []string{"not settled: db3 replicates from \"198.18.0.11\"", "db3 is a replica in etcd but replicates from \"198.18.0.11\""}},
		{"the leader key with another node", Observation{
			Epochs: epochs[:1], Healed: at(1000), WriteBack: at(1100), Final: func() Cluster { c := healthy(); c.Leader = "db2"; return c }(),
		}, []string{"leader key held by \"db2\"", "the leader key is held by db2"}},
		{"etcd down after settling", Observation{
			Epochs: epochs[:1], Healed: at(1000), WriteBack: at(1100), Final: func() Cluster { c := healthy(); c.EtcdOK = false; return c }(),
		}, []string{"etcd unreadable", "etcd unreadable after settling"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vs, checks := Check(tc.o)
			if checks[Liveness] != 4 || checks[Agreement] == 0 {
				t.Errorf("checks = %v", checks)
			}
			if len(vs) != len(tc.want) {
				t.Fatalf("violations = %+v, want %d: %q", vs, len(tc.want), tc.want)
			}
			for i, v := range vs {
				if !strings.Contains(v.Detail, tc.want[i]) {
					t.Errorf("violation %d = %q, want %q", i, v.Detail, tc.want[i])
				}
			}
		})
	}
}

func TestEpochOf(t *testing.T) {
	es := append(epochs[:2:2], Epoch{Epoch: 3, Node: "db1", At: at(5000)})
	cases := []struct {
		node string
		at   time.Time
		want uint64
	}{
		{"db1", at(0), 1},
		{"db1", at(4500), 3}, // within the watch's slack
		{"db1", at(6000), 3},
		{"db2", at(1500), 2},
		{"db2", at(500), 0},
		{"db3", at(9000), 0},
	}
	for _, tc := range cases {
		if got := epochOf(es, tc.node, tc.at); got != tc.want {
			t.Errorf("epochOf(%s, %s) = %d, want %d", tc.node, stamp(tc.at), got, tc.want)
		}
	}
}
