package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// donorOf is a healthy replica's status that can give a rebuild its backup: it
// replicates from db2, the primary of record at epoch 5 (failedOver).
func donorOf(node string, lag int64) cluster.NodeStatus {
	return cluster.NodeStatus{Node: node, Role: cluster.RoleReplica, ServerRead: true, ReadOnly: true, Verdict: detector.Healthy,
		Flavor: "mariadb", Epoch: 5, Source: "198.18.0.2:3306", IORunning: true, SQLRunning: true, LagMS: lag, CanDonate: true,
		Agent: node + ":9107", StorageOK: true}
}

// rebuildable is failedOver with db2's leader key taken, db2 able to give a backup,
// db3 and db4 healthy replicas of it, and the rejoin mode archive-and-repair.
func rebuildable() cluster.Snapshot {
	return snapWith(failedOver(), func(s *cluster.Snapshot) {
		s.Leader, s.LeaderLease = "db2", leases["db2"]
		s.Primary.Addr = "198.18.0.2:3306"
		p := s.Nodes["db2"]
		p.Verdict, p.CanDonate, p.Flavor, p.Agent = detector.Healthy, true, "mariadb", "db2:9107"
		s.Nodes["db2"] = p
		s.Nodes["db3"] = donorOf("db3", 120)
		s.Nodes["db4"] = donorOf("db4", 40)
		s.Nodes["db1"] = cluster.NodeStatus{Node: "db1", Role: cluster.RoleQuarantined, Flavor: "mariadb", CanRebuild: true, Agent: "db1:9107"}
		s.Policy = &cluster.PolicyRecord{Policy: cluster.Policy{ConfirmLag: time.Second, Rejoin: cluster.RejoinArchiveAndRepair}}
	})
}

func TestDonorUnfit(t *testing.T) {
	snap := rebuildable()
	with := func(f func(*cluster.NodeStatus)) cluster.NodeStatus { n := donorOf("db3", 0); f(&n); return n }
	cases := []struct {
		name string
		n    cluster.NodeStatus
		why  string
	}{
		{"a healthy replica", donorOf("db3", 0), ""},
		{"the node itself", with(func(n *cluster.NodeStatus) { n.Node = "db1" }), "the node to rebuild"},
		{"an agent that cannot stream", with(func(n *cluster.NodeStatus) { n.CanDonate = false }), "cannot stream"},
		{"a zero status is no donor", cluster.NodeStatus{Node: "db3"}, "cannot stream"},
		{"server not read", with(func(n *cluster.NodeStatus) { n.ServerRead = false }), "could not read"},
		{"degraded", with(func(n *cluster.NodeStatus) { n.Verdict = detector.Degraded }), "verdict degraded"},
		{"being rebuilt", with(func(n *cluster.NodeStatus) {
			n.Rebuild = &cluster.RebuildProgress{ID: "x", Step: cluster.RebuildStream}
		}), "being rebuilt"},
		{"a rebuild that failed is no obstacle", with(func(n *cluster.NodeStatus) {
			n.Rebuild = &cluster.RebuildProgress{ID: "x", Step: cluster.RebuildFailed}
		}), ""},
		{"another flavor", with(func(n *cluster.NodeStatus) { n.Flavor = "mysql" }), "its server is mysql"},
		{"quarantined", with(func(n *cluster.NodeStatus) { n.Role = cluster.RoleQuarantined }), "role quarantined"},
		{"errant", with(func(n *cluster.NodeStatus) { n.Errant = "0-3-1" }), "errant"},
		{"an older epoch", with(func(n *cluster.NodeStatus) { n.Epoch = 4 }), "epoch 4"},
		{"another source", with(func(n *cluster.NodeStatus) { n.Source = "198.18.0.1:3306" }), "not from the primary of record"},
		{"IO thread stopped", with(func(n *cluster.NodeStatus) { n.IORunning, n.ReplError = false, "error reconnecting" }), "not running (error reconnecting)"},
		{"SQL error", with(func(n *cluster.NodeStatus) { n.ReplError = "Duplicate entry" }), "replication error"},
		{"lag unknown", with(func(n *cluster.NodeStatus) { n.LagMS = -1 }), "lag is unknown"},
		{"the primary, healthy", snap.Nodes["db2"], ""},
		{"the primary, not writable yet", func() cluster.NodeStatus { n := snap.Nodes["db2"]; n.Role = cluster.RoleFenced; return n }(), "not writable yet"},
	}
	for _, tc := range cases {
		got := DonorUnfit(snap, "db1", "mariadb", tc.n)
		if (got == "") != (tc.why == "") || !strings.Contains(got, tc.why) {
			t.Errorf("%s: DonorUnfit = %q, want %q", tc.name, got, tc.why)
		}
	}
}

func TestChooseDonor(t *testing.T) {
	cases := []struct {
		name    string
		snap    cluster.Snapshot
		want    string
		donor   string
		unknown bool
		why     string
	}{
		{"the replica with the least lag", rebuildable(), "", "db4", false, ""},
		{"a no_promote replica first", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			n := s.Nodes["db3"]
			n.NoPromote = true
			s.Nodes["db3"] = n
		}), "", "db3", false, ""},
		{"the one asked for", rebuildable(), "db3", "db3", false, ""},
		{"the primary only when no replica fits", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			delete(s.Nodes, "db3")
			n := s.Nodes["db4"]
			n.Verdict = detector.Suspect
			s.Nodes["db4"] = n
		}), "", "db2", false, ""},
		{"none fits: say why, for each", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			for _, name := range []string{"db2", "db3", "db4"} {
				n := s.Nodes[name]
				n.CanDonate = false
				s.Nodes[name] = n
			}
		}), "", "", false, "no healthy donor: db3: its agent cannot stream"},
		{"no other agent at all", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			s.Nodes = map[string]cluster.NodeStatus{"db1": s.Nodes["db1"]}
		}), "", "", false, "no other node's agent is running"},
		{"an unknown donor is bad input", rebuildable(), "db9", "", true, `donor "db9"`},
		{"asked: the primary is not a replica", rebuildable(), "db2", "", false, "primary of record, not a replica"},
		{"asked: itself", rebuildable(), "db1", "", false, "its own donor"},
		{"asked: an unfit replica", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			n := s.Nodes["db3"]
			n.SQLRunning = false
			s.Nodes["db3"] = n
		}), "db3", "", false, "not a healthy replica: replication is not running"},
		{"asked: a member whose agent is gone", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			delete(s.Nodes, "db3")
			s.Members = map[string]cluster.Member{"db3": {Node: "db3"}}
		}), "db3", "", false, "agent is not running"},
	}
	for _, tc := range cases {
		donor, err := ChooseDonor(tc.snap, "db1", "mariadb", tc.want)
		var refusal *RebuildRefusal
		switch {
		case tc.donor != "" && (err != nil || donor != tc.donor):
			t.Errorf("%s: ChooseDonor = %q, %v, want %q", tc.name, donor, err, tc.donor)
		case tc.donor == "" && (err == nil || errors.Is(err, ErrUnknownNode) != tc.unknown || errors.As(err, &refusal) == tc.unknown ||
			!strings.Contains(err.Error(), tc.why)):
			t.Errorf("%s: ChooseDonor = %q, %v, want unknown %v with %q", tc.name, donor, err, tc.unknown, tc.why)
		}
	}
}

func TestPrecheckRebuild(t *testing.T) {
	cases := []struct {
		name    string
		snap    cluster.Snapshot
		node    string
		from    string
		unknown bool
		why     string
	}{
		{"a quarantined node, the agent chooses", rebuildable(), "db1", "", false, ""},
		{"from a named replica", rebuildable(), "db1", "db3", false, ""},
		{"a healthy replica may be rebuilt too", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			n := s.Nodes["db3"]
			n.CanRebuild = true
			s.Nodes["db3"] = n
		}), "db3", "db4", false, ""},
		{"empty node", rebuildable(), "", "", true, "empty"},
		{"unknown node", rebuildable(), "db9", "", true, `unknown node "db9"`},
		{"unknown donor", rebuildable(), "db1", "db9", true, `donor "db9"`},
		{"the primary of record", rebuildable(), "db2", "", false, "primary of record"},
		{"holds the leader key", snapWith(rebuildable(), func(s *cluster.Snapshot) { s.Leader = "db1" }), "db1", "", false, "leader key"},
		{"agent gone", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			delete(s.Nodes, "db1")
			s.Members = map[string]cluster.Member{"db1": {Node: "db1"}}
		}), "db1", "", false, "agent is not running"},
		{"an agent that cannot rebuild", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			n := s.Nodes["db1"]
			n.CanRebuild, n.RebuildUnable = false, "server.stop_command and server.start_command are not configured"
			s.Nodes["db1"] = n
		}), "db1", "", false, "stop_command"},
		{"an older agent (nothing published) cannot", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			s.Nodes["db1"] = cluster.NodeStatus{Node: "db1", Role: cluster.RoleQuarantined}
		}), "db1", "", false, "cannot rebuild it"},
		{"being rebuilt", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			n := s.Nodes["db1"]
			n.Rebuild = &cluster.RebuildProgress{ID: "x", Step: cluster.RebuildPrepare, From: "db4"}
			s.Nodes["db1"] = n
		}), "db1", "", false, "being rebuilt already (from db4, step prepare)"},
		{"a donor that is not a healthy replica", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			n := s.Nodes["db3"]
			n.Verdict = detector.Unwritable
			s.Nodes["db3"] = n
		}), "db1", "db3", false, "not a healthy replica"},
		{"the primary as donor, asked for", rebuildable(), "db1", "db2", false, "not a replica"},
	}
	for _, tc := range cases {
		err := PrecheckRebuild(tc.snap, tc.node, tc.from)
		var refusal *RebuildRefusal
		if (err == nil) != (tc.why == "") || errors.Is(err, ErrUnknownNode) != tc.unknown || (err != nil && !tc.unknown && !errors.As(err, &refusal)) ||
			(err != nil && !strings.Contains(err.Error(), tc.why)) {
			t.Errorf("%s: PrecheckRebuild = %v, want unknown %v with %q", tc.name, err, tc.unknown, tc.why)
		}
	}
}

// quarantinedDB1 is db1, the old primary after the failover to db2, read_only, its
// errant transactions looked up (check), and its agent able to rebuild it.
func quarantinedDB1(check *ErrantCheck) Self {
	s := fencedOld(check, true)
	s.CanArchive = true
	s.Rebuild = RebuildSelf{Able: true}
	return s
}

// ddl is evidence of one errant DDL statement: flashback cannot undo it.
func ddl() *ErrantCheck {
	c := rows("app.t")
	c.Evidence.Txns[1].RowsOnly = false
	c.Evidence.Txns[1].First = &replication.BinlogEvent{File: "mysql-bin.000001", Type: "Query", Info: "ALTER TABLE app.t ADD c INT"}
	return c
}

// TestAnalyzeRebuild: a quarantined node its agent cannot repair in place is rebuilt
// from a healthy donor by itself only with the rejoin mode archive-and-repair, a
// donor, an agent able to, a read_only server needing no fence, no flow in progress
// and no rebuild failed a moment ago; otherwise it stays quarantined, its reason
// naming the command. A node being rebuilt stays quarantined and never writable,
// whatever the cluster says, and a half-done rebuild is resumed first.
func TestAnalyzeRebuild(t *testing.T) {
	snap := rebuildable()
	manual := snapWith(rebuildable(), func(s *cluster.Snapshot) { s.Policy.Policy.Rejoin = cluster.RejoinManual })
	purged := rows("app.t")
	purged.Evidence.Txns[1].Kind, purged.Evidence.Txns[1].First, purged.Evidence.Txns[1].Note = replication.ErrantUnchecked, nil, "purged"
	many := rows("app.t")
	for i := range MaxUndo + 1 {
		tx := many.Evidence.Txns[1]
		tx.GTID = fmt.Sprintf("0-1-%d", 200+i)
		many.Evidence.Txns = append(many.Evidence.Txns, tx)
	}
	mysqlNode := func() Self {
		c := ddl()
		c.Evidence.Flavor = replication.FlavorMySQL
		s := quarantinedDB1(c)
		return s
	}
	// db3, a replica of db2 whose SQL thread stopped on a duplicate key: diverged.
	diverged := func() Self {
		st := replicaOf(3, "198.18.0.2", "0-1-100,0-2-3")
		st.SQLThread, st.LastSQLErrno, st.LastSQLError = replication.ThreadStopped, 1062, "Duplicate entry '7' for key 'PRIMARY'"
		s := read("db3", st)
		s.Rebuild = RebuildSelf{Able: true}
		return s
	}
	// db3, a replica of db2 whose IO thread stopped: the binary logs it needs were
	// purged on db2.
	purgedLogs := func() Self {
		st := replicaOf(3, "198.18.0.2", "0-1-100,0-2-3")
		st.IOThread, st.LastIOErrno = replication.ThreadStopped, 1236
		st.LastIOError = "Got fatal error 1236 from master when reading data from binary log: 'Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.'"
		s := read("db3", st)
		s.Rebuild = RebuildSelf{Able: true}
		return s
	}
	running := &cluster.RebuildProgress{ID: "r1", Step: cluster.RebuildStream, From: "db4"}
	withRequest := func(s cluster.Snapshot, node string, r cluster.RebuildRequest) cluster.Snapshot {
		return snapWith(s, func(s *cluster.Snapshot) {
			s.Rebuilds = map[string]cluster.RebuildRequest{node: r}
			s.RebuildModRev = map[string]int64{node: 88}
		})
	}
	cases := []struct {
		name       string
		snap       cluster.Snapshot
		self       Self
		want       NodeAction
		wantDonor  string
		wantResume bool
		wantFence  bool
		wantRole   cluster.Role
		answer     cluster.RequestState // the rebuild request's answer at this pass, "" for none
		wantReason string
	}{
		{name: "errant DDL, archive-and-repair: rebuilt from the replica with the least lag",
			snap: snap, self: quarantinedDB1(ddl()), want: NodeRebuild, wantDonor: "db4", wantRole: cluster.RoleQuarantined, wantReason: "rebuilt from db4"},
		{name: "errant DDL, manual: quarantined, naming both commands",
			snap: manual, self: quarantinedDB1(ddl()), want: NodeQuarantine, wantRole: cluster.RoleQuarantined,
			wantReason: "baton rejoin db1 --discard-errant --yes (archived first), or baton rebuild db1 --yes"},
		{name: "no policy read is manual",
			snap: snapWith(rebuildable(), func(s *cluster.Snapshot) { s.Policy = nil }), self: quarantinedDB1(ddl()), want: NodeQuarantine, wantReason: "rejoin mode manual"},
		{name: "purged events: rebuilt",
			snap: snap, self: quarantinedDB1(purged), want: NodeRebuild, wantDonor: "db4"},
		{name: "more than MaxUndo transactions: rebuilt",
			snap: snap, self: quarantinedDB1(many), want: NodeRebuild, wantDonor: "db4"},
		{name: "a MySQL node: rebuilt from a MySQL donor",
			snap: snapWith(rebuildable(), func(s *cluster.Snapshot) {
				for _, n := range []string{"db2", "db3", "db4"} {
					x := s.Nodes[n]
					x.Flavor = "mysql"
					s.Nodes[n] = x
				}
			}),
			self: func() Self { s := mysqlNode(); s.Status.Flavor = replication.FlavorMySQL; return s }(), want: NodeRebuild, wantDonor: "db4"},
		{name: "a MySQL node among MariaDB donors: none fits",
			snap: snap, self: func() Self { s := mysqlNode(); s.Status.Flavor = replication.FlavorMySQL; return s }(),
			want: NodeQuarantine, wantReason: "no healthy donor"},
		{name: "row changes flashback can undo: undone, not rebuilt",
			snap: snap, self: quarantinedDB1(rows("app.t")), want: NodeUndoErrant},
		{name: "row changes to a non-transactional table: rebuilt, never undone",
			snap: snap, self: func() Self {
				c := rows("app.m")
				c.Evidence.Txns[1].Transactional = false
				return quarantinedDB1(c)
			}(), want: NodeRebuild, wantDonor: "db4", wantReason: "non-transactional table (app.m"},
		{name: "their flashback was refused: rebuilt, not tried again",
			snap: snap, self: func() Self {
				s := quarantinedDB1(rows("app.t"))
				s.UndoRefused = "11 transactions reversed, want 12"
				return s
			}(), want: NodeRebuild, wantDonor: "db4", wantReason: "flashback was refused: 11 transactions reversed"},
		{name: "their flashback was refused, manual mode: a person decides",
			snap: manual, self: func() Self {
				s := quarantinedDB1(rows("baton.heartbeat"))
				s.UndoRefused = "11 transactions reversed, want 12"
				return s
			}(), want: NodeQuarantine, wantReason: "flashback was refused"},
		{name: "errant not looked up yet: look first, no rebuild on no evidence",
			snap: snap, self: quarantinedDB1(nil), want: NodeQuarantine, wantReason: "looking them up"},
		{name: "an agent that cannot rebuild: quarantined, saying why and the command",
			snap: snap, self: func() Self {
				s := quarantinedDB1(ddl())
				s.Rebuild = RebuildSelf{Unable: "mbstream not found"}
				return s
			}(),
			want: NodeQuarantine, wantReason: "cannot rebuild its node (mbstream not found): a person decides"},
		{name: "the last rebuild failed a moment ago: not yet",
			snap: snap, self: func() Self {
				s := quarantinedDB1(ddl())
				s.Rebuild.Backoff, s.Rebuild.Failed = true, &cluster.RebuildProgress{Error: "disk full"}
				return s
			}(), want: NodeQuarantine, wantReason: "the last rebuild failed (disk full)"},
		{name: "a writable server: fenced, not rebuilt",
			snap: snap, self: func() Self { s := quarantinedDB1(ddl()); s.Status.ReadOnly = false; return s }(),
			want: NodeQuarantine, wantFence: true, wantReason: "once fenced"},
		{name: "no healthy donor: quarantined, saying why",
			snap: snapWith(rebuildable(), func(s *cluster.Snapshot) {
				for _, n := range []string{"db2", "db3", "db4"} {
					x := s.Nodes[n]
					x.CanDonate = false
					s.Nodes[n] = x
				}
			}), self: quarantinedDB1(ddl()), want: NodeQuarantine, wantReason: "no healthy donor"},
		{name: "only the primary can give: rebuilt from the primary",
			snap: snapWith(rebuildable(), func(s *cluster.Snapshot) { delete(s.Nodes, "db3"); delete(s.Nodes, "db4") }),
			self: quarantinedDB1(ddl()), want: NodeRebuild, wantDonor: "db2"},
		{name: "a flow in progress: wait",
			snap: snapWith(rebuildable(), func(s *cluster.Snapshot) {
				s.Intent = &cluster.Intent{Kind: cluster.FlowSwitchover, Epoch: 5, From: "db2", To: "db3", Started: now0}
			}), self: quarantinedDB1(ddl()), want: NodeWait},
		{name: "diverged data, archive-and-repair: rebuilt",
			snap: snap, self: diverged(), want: NodeRebuild, wantDonor: "db4", wantRole: cluster.RoleQuarantined, wantReason: "data diverged"},
		{name: "diverged data, manual: quarantined, naming the command",
			snap: manual, self: diverged(), want: NodeQuarantine, wantRole: cluster.RoleQuarantined, wantReason: "a person decides: baton rebuild db3 --yes"},
		{name: "binary logs purged on the primary, archive-and-repair: rebuilt",
			snap: snap, self: purgedLogs(), want: NodeRebuild, wantDonor: "db4", wantRole: cluster.RoleQuarantined, wantReason: "the binary logs this replica needs were purged"},
		{name: "binary logs purged on the primary, manual: quarantined, naming the command",
			snap: manual, self: purgedLogs(), want: NodeQuarantine, wantRole: cluster.RoleQuarantined, wantReason: "a person decides: baton rebuild db3 --yes"},

		// Under way, or left half done.
		{name: "being rebuilt: quarantined, nothing else",
			snap: snap, self: func() Self { s := quarantinedDB1(ddl()); s.Rebuild.Running = running; return s }(),
			want: NodeWait, wantRole: cluster.RoleQuarantined, wantReason: "being rebuilt from db4's backup: stream"},
		{name: "being rebuilt, its server not answering (stopped for the swap): wait",
			snap: snap, self: func() Self { s := unanswered("db1"); s.Rebuild = RebuildSelf{Able: true, Running: running}; return s }(),
			want: NodeWait, wantRole: cluster.RoleQuarantined},
		{name: "being rebuilt, its server writable: fenced",
			snap: snap, self: func() Self {
				s := quarantinedDB1(ddl())
				s.Status.ReadOnly, s.Rebuild.Running = false, running
				return s
			}(), want: NodeWait, wantFence: true, wantRole: cluster.RoleQuarantined},
		{name: "being rebuilt, and named the primary of record: never promoted",
			snap: snapWith(rebuildable(), func(s *cluster.Snapshot) {
				s.Primary = cluster.Primary{Node: "db1", Addr: "198.18.0.1:3306", ServerID: 1, Epoch: 6}
				s.Leader, s.LeaderLease = "", 0
			}), self: func() Self { s := quarantinedDB1(ddl()); s.Rebuild.Running = running; return s }(),
			want: NodeWait, wantRole: cluster.RoleQuarantined},
		{name: "being rebuilt, a request for another rebuild: refused",
			snap: withRequest(snap, "db1", cluster.RebuildRequest{ID: "q", Node: "db1"}),
			self: func() Self { s := quarantinedDB1(ddl()); s.Rebuild.Running = running; return s }(),
			want: NodeWait, answer: cluster.RequestRefused},
		{name: "half done by an earlier agent: resumed first, even with the server down",
			snap: snap, self: func() Self { s := unanswered("db1"); s.Rebuild = RebuildSelf{Able: true, Interrupted: true}; return s }(),
			want: NodeRebuild, wantResume: true, wantRole: cluster.RoleQuarantined},
		{name: "half done and named the primary of record: resumed, never promoted",
			snap: snapWith(rebuildable(), func(s *cluster.Snapshot) {
				s.Primary = cluster.Primary{Node: "db1", Addr: "198.18.0.1:3306", ServerID: 1, Epoch: 6}
				s.Leader, s.LeaderLease = "", 0
			}), self: func() Self {
				s := read("db1", readOnly(writable(1, "0-1-102")))
				s.Rebuild = RebuildSelf{Able: true, Interrupted: true}
				return s
			}(),
			want: NodeRebuild, wantResume: true},
		{name: "a rollback that failed: waits, quarantined, saying why",
			snap: snap, self: func() Self {
				s := read("db1", readOnly(writable(1, "0-1-102")))
				s.Rebuild = RebuildSelf{Able: true, Stuck: "start the server: exit status 1"}
				return s
			}(), want: NodeWait, wantRole: cluster.RoleQuarantined, wantReason: "start the server"},

		// On request.
		{name: "request for a healthy replica: rebuilt from the donor chosen",
			snap: withRequest(snap, "db3", cluster.RebuildRequest{ID: "q", Node: "db3", By: "ops"}),
			self: func() Self {
				s := read("db3", replicaOf(3, "198.18.0.2", "0-1-100,0-2-3"))
				s.Rebuild.Able = true
				return s
			}(),
			want: NodeRebuild, wantDonor: "db4", wantRole: cluster.RoleQuarantined, wantReason: "ops asked"},
		{name: "request for a node whose errant transactions are not looked up yet: looked up first, to archive them",
			snap: withRequest(snap, "db1", cluster.RebuildRequest{ID: "q", Node: "db1"}), self: quarantinedDB1(nil),
			want: NodeQuarantine, wantReason: "looking them up"},
		{name: "request naming the donor",
			snap: withRequest(snap, "db1", cluster.RebuildRequest{ID: "q", Node: "db1", From: "db3"}), self: quarantinedDB1(ddl()),
			want: NodeRebuild, wantDonor: "db3"},
		{name: "request in manual mode: carried out",
			snap: withRequest(manual, "db1", cluster.RebuildRequest{ID: "q", Node: "db1"}), self: quarantinedDB1(ddl()),
			want: NodeRebuild, wantDonor: "db4"},
		{name: "request naming an unfit donor: refused (manual mode: nothing else rebuilds it)",
			snap: withRequest(snapWith(manual, func(s *cluster.Snapshot) {
				n := s.Nodes["db3"]
				n.LagMS = -1
				s.Nodes["db3"] = n
			}), "db1", cluster.RebuildRequest{ID: "q", Node: "db1", From: "db3"}), self: quarantinedDB1(ddl()),
			want: NodeQuarantine, answer: cluster.RequestRefused},
		{name: "request, the agent unable: refused",
			snap: withRequest(manual, "db1", cluster.RebuildRequest{ID: "q", Node: "db1"}),
			self: func() Self { s := quarantinedDB1(ddl()); s.Rebuild = RebuildSelf{Unable: "no peer secret"}; return s }(),
			want: NodeQuarantine, answer: cluster.RequestRefused},
		{name: "request, the server not answering: refused",
			snap: withRequest(snap, "db1", cluster.RebuildRequest{ID: "q", Node: "db1"}),
			self: func() Self { s := unanswered("db1"); s.Rebuild.Able = true; return s }(),
			want: NodeWait, answer: cluster.RequestRefused},
		{name: "request during a flow: waits, unanswered",
			snap: withRequest(snapWith(rebuildable(), func(s *cluster.Snapshot) {
				s.Intent = &cluster.Intent{Kind: cluster.FlowSwitchover, Epoch: 5, From: "db2", To: "db3", Started: now0}
			}), "db1", cluster.RebuildRequest{ID: "q", Node: "db1"}), self: quarantinedDB1(ddl()), want: NodeWait},
		{name: "request for a writable server: fenced first, unanswered",
			snap: withRequest(snap, "db1", cluster.RebuildRequest{ID: "q", Node: "db1"}),
			self: func() Self { s := quarantinedDB1(ddl()); s.Status.ReadOnly = false; return s }(), want: NodeQuarantine, wantFence: true},
		{name: "request for the primary of record: refused, it holds",
			snap: withRequest(snap, "db2", cluster.RebuildRequest{ID: "q", Node: "db2"}),
			self: func() Self { s := read("db2", writable(2, "0-1-100,0-2-3")); s.Rebuild.Able = true; return s }(),
			want: NodeHoldPrimary, answer: cluster.RequestRefused},
		{name: "an answered request is not carried out again",
			snap: withRequest(snap, "db3", cluster.RebuildRequest{ID: "q", Node: "db3", State: cluster.RequestDone}),
			self: func() Self {
				s := read("db3", replicaOf(3, "198.18.0.2", "0-1-100,0-2-3"))
				s.Rebuild.Able = true
				return s
			}(),
			want: NodeFollow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Analyze(tc.snap, tc.self)
			if a.Action != tc.want {
				t.Fatalf("action %s (%s), want %s", a.Action, a.Reason, tc.want)
			}
			if a.Donor != tc.wantDonor || a.Resume != tc.wantResume || a.Fence != tc.wantFence {
				t.Errorf("donor %q resume %v fence %v, want %q %v %v", a.Donor, a.Resume, a.Fence, tc.wantDonor, tc.wantResume, tc.wantFence)
			}
			if tc.wantRole != "" && a.Role != tc.wantRole {
				t.Errorf("role %q, want %q", a.Role, tc.wantRole)
			}
			if got := a.RebuildAnswer; (got != nil) != (tc.answer != "") || (got != nil && (got.State != tc.answer || got.Error == "" || a.RebuildRev != 88)) {
				t.Errorf("rebuild answer %+v (rev %d), want state %q with a reason, rev 88", got, a.RebuildRev, tc.answer)
			}
			if a.Action == NodeRebuild && !a.Resume && (a.Source.Host == "" || a.Role != cluster.RoleQuarantined) {
				t.Errorf("a rebuild without the primary's address or the quarantined role: %+v", a)
			}
			if req := tc.snap.Rebuilds[tc.self.Node]; a.Action == NodeRebuild && req.Pending() && (a.RebuildRequest == nil || a.RebuildRequest.ID != req.ID || a.RebuildRev != 88) {
				t.Errorf("a rebuild on request without the request: %+v", a)
			}
			if !strings.Contains(a.Reason, tc.wantReason) {
				t.Errorf("reason %q, want it to contain %q", a.Reason, tc.wantReason)
			}
		})
	}
}

// TestRebuildCommandAgreesWithAgent: on what the node's agent published, `baton
// rebuild` files a request exactly when the agent, finding it, would carry it out
// (the rejoin mode manual: nothing but the request rebuilds the node).
func TestRebuildCommandAgreesWithAgent(t *testing.T) {
	rebuildable := func() cluster.Snapshot {
		return snapWith(rebuildable(), func(s *cluster.Snapshot) { s.Policy.Policy.Rejoin = cluster.RejoinManual })
	}
	for _, tc := range []struct {
		name string
		snap cluster.Snapshot
		from string
	}{
		{"a fit donor chosen", rebuildable(), ""},
		{"a fit donor named", rebuildable(), "db3"},
		{"the primary named", rebuildable(), "db2"},
		{"an unfit donor named", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			n := s.Nodes["db3"]
			n.IORunning = false
			s.Nodes["db3"] = n
		}), "db3"},
		{"no donor at all", snapWith(rebuildable(), func(s *cluster.Snapshot) {
			s.Nodes = map[string]cluster.NodeStatus{"db1": s.Nodes["db1"], "db2": s.Nodes["db2"]}
			p := s.Nodes["db2"]
			p.CanDonate = false
			s.Nodes["db2"] = p
		}), ""},
	} {
		files := PrecheckRebuild(tc.snap, "db1", tc.from) == nil
		asked := snapWith(tc.snap, func(s *cluster.Snapshot) {
			s.Rebuilds = map[string]cluster.RebuildRequest{"db1": {ID: "q", Node: "db1", From: tc.from}}
			s.RebuildModRev = map[string]int64{"db1": 88}
		})
		a := Analyze(asked, quarantinedDB1(ddl()))
		if rebuilds := a.Action == NodeRebuild; files != rebuilds {
			t.Errorf("%s: the command files %v, the agent rebuilds %v (%s; answer %+v)", tc.name, files, rebuilds, a.Reason, a.RebuildAnswer)
		}
	}
}
