package reconcile

import (
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// leases are the agents' session leases, by node.
var leases = map[string]clientv3.LeaseID{"db1": 1, "db2": 2, "db3": 3}

// now0 is the tests' fixed time.
var now0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// steady is db1 primary of record at epoch 4, holding the leader key, its status
// published; db2 and db3 replicate from it.
func steady() cluster.Snapshot {
	s := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db1", Addr: "198.18.0.1:3306", ServerID: 1, Epoch: 4},
		Leader:  "db1",
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Role: cluster.RolePrimary, ServerRead: true, GTID: "0-1-100", Epoch: 4},
			"db2": {Node: "db2", Role: cluster.RoleReplica, ServerRead: true, ReadOnly: true, GTID: "0-1-100", Epoch: 4},
		},
	}, LeaderLease: leases["db1"], PrimaryModRev: 10}
	return s
}

// failedOver is cluster after a failover to db2 at epoch 5, committed; db1's agent
// still holds the leader key; db2 published its GTID set as primary.
func failedOver() cluster.Snapshot {
	s := steady()
	s.Primary = cluster.Primary{Node: "db2", Addr: "198.18.0.2:3306", ServerID: 2, Epoch: 5}
	s.Nodes["db2"] = cluster.NodeStatus{Node: "db2", Role: cluster.RolePrimary, ServerRead: true, GTID: "0-1-100,0-2-3", Epoch: 5}
	return s
}

// committedUnpublished is failedOver before db2 published itself as primary: the
// flow committed it having seen it apply executed; db1 let go of the leader key.
func committedUnpublished(executed string) cluster.Snapshot {
	s := failedOver()
	s.Primary.Executed = executed
	s.Leader, s.LeaderLease = "", 0
	n := s.Nodes["db2"]
	n.Role, n.Epoch, n.GTID = cluster.RoleReplica, 4, "0-1-100"
	s.Nodes["db2"] = n
	return s
}

func snapWith(s cluster.Snapshot, f func(*cluster.Snapshot)) cluster.Snapshot { f(&s); return s }

func mariaSet(s string) replication.GTIDSet {
	return replication.MustParseGTIDSet(replication.FlavorMariaDB, s)
}

// writable is a server that replicates from none and takes writes.
func writable(id uint32, executed string) replication.Status {
	return replication.Status{Flavor: replication.FlavorMariaDB, ServerID: id, Role: replication.RolePrimary, Executed: mariaSet(executed)}
}

// replicaOf is a read_only server replicating from addr's host, threads running.
func replicaOf(id uint32, host string, executed string) replication.Status {
	return replication.Status{Flavor: replication.FlavorMariaDB, ServerID: id, Role: replication.RoleReplica, ReadOnly: true,
		SourceHost: host, SourcePort: 3306, IOThread: replication.ThreadRunning, SQLThread: replication.ThreadRunning,
		Executed: mariaSet(executed)}
}

func readOnly(st replication.Status) replication.Status { st.ReadOnly = true; return st }

// read is node having read its server as st at this pass.
func read(node string, st replication.Status) Self {
	return Self{Node: node, Lease: leases[node], Read: LocalOK, Status: st}
}

// unread is node before its server is read.
func unread(node string) Self { return Self{Node: node, Lease: leases[node]} }

// unanswered is node whose server did not answer.
func unanswered(node string) Self {
	return Self{Node: node, Lease: leases[node], Read: LocalFailed, ReadErr: errors.New("context deadline exceeded")}
}

func TestAnalyze(t *testing.T) {
	intent := &cluster.Intent{Kind: cluster.FlowSwitchover, Epoch: 4, From: "db1", To: "db2", Started: now0}
	cases := []struct {
		name             string
		snap             cluster.Snapshot
		self             Self
		want             NodeAction
		wantFence        bool
		wantServerFenced bool
		wantRole         cluster.Role
		wantProbe        detector.Probes
		wantReason       string
		wantErr          bool
	}{
		// A zero value is never a safe state.
		{
			name: "zero snapshot, zero self: wait",
			want: NodeWait, wantReason: "name or session lease is unknown",
		},
		{
			name: "zero self in a cluster: wait",
			snap: steady(),
			want: NodeWait, wantReason: "name or session lease is unknown",
		},
		{
			name: "the primary of record without its session lease: wait, never promote",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Leader = "" }),
			self: Self{Node: "db1", Read: LocalOK, Status: writable(1, "0-1-100")},
			want: NodeWait, wantReason: "lease is unknown",
		},
		{
			name: "zero snapshot, server not read yet: read it",
			snap: cluster.Snapshot{}, self: unread("db1"),
			want: NodeReadServer,
		},
		{
			name: "zero snapshot, a zero status read: not a writable primary",
			snap: cluster.Snapshot{}, self: Self{Node: "db1", Lease: 1, Read: LocalOK},
			want: NodeAwaitBootstrap, wantRole: cluster.RoleUnknown, wantProbe: detector.Replica,
		},
		{
			name: "primary of record, leader key free, server not read yet: read it first, never promote",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "", 0 }),
			self: unread("db1"),
			want: NodeReadServer,
		},
		{
			name: "replica reads a zero status: it reads as writable, so it is fenced; no GTID set, so it waits",
			snap: steady(), self: Self{Node: "db2", Lease: 2, Read: LocalOK},
			want: NodeWait, wantFence: true, wantProbe: detector.Replica, wantReason: "does not parse", wantErr: true,
		},
		// Lost lease.
		{
			name: "the primary of record's leader key is on its lost session: fenced until it expires",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.LeaderLease = 99 }),
			self: read("db1", writable(1, "0-1-100")),
			want: NodeWait, wantRole: cluster.RoleFenced, wantReason: "still holds the leader key",
		},
		{
			name: "the lost session's leader key expired, the server answers: promote",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "", 0 }),
			self: read("db1", readOnly(writable(1, "0-1-100"))),
			want: NodePromote, wantRole: cluster.RolePrimary, wantProbe: detector.Primary,
		},
		{
			name: "leader key free but the server does not answer: wait",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "", 0 }),
			self: unanswered("db1"),
			want: NodeWait, wantReason: "does not answer", wantErr: true,
		},
		// Stalled or unreadable local server.
		{
			name: "the primary holding the leader key, its server stalled: keep it (the detector reports, the coordinator decides)",
			snap: steady(), self: unanswered("db1"),
			want: NodeHoldPrimary, wantRole: cluster.RolePrimary, wantProbe: detector.Primary,
		},
		{
			name: "replica whose server does not answer: wait",
			snap: steady(), self: unanswered("db2"),
			want: NodeWait, wantProbe: detector.Replica, wantReason: "does not answer",
		},
		{
			name: "replica whose server does not answer, holding the virtual IP: fence",
			snap: steady(), self: func() Self { s := unanswered("db2"); s.VIPHeld = true; return s }(),
			want: NodeWait, wantFence: true, wantProbe: detector.Replica,
		},
		{
			name: "old primary still holding the leader key: fenced before its server is read, server fenced for the flow already",
			snap: failedOver(),
			self: func() Self { s := unread("db1"); s.FlowFenced, s.FlowFencedEpoch = IntentKey(*intent), 4; return s }(),
			want: NodeReadServer, wantFence: true, wantServerFenced: true,
		},
		{
			name: "old primary still holding the leader key, never fenced for a flow: fence it all",
			snap: failedOver(), self: unread("db1"),
			want: NodeReadServer, wantFence: true,
		},
		{
			name: "old primary still holding the leader key, fenced for an older flow: fence it all",
			snap: failedOver(),
			self: func() Self { s := unread("db1"); s.FlowFenced, s.FlowFencedEpoch = "3/failover/x", 3; return s }(),
			want: NodeReadServer, wantFence: true,
		},
		// A restarted server that comes back writable, not primary of record.
		{
			name: "old primary restarted writable, nothing errant: fence, then rejoin",
			snap: snapWith(failedOver(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "db2", 2 }),
			self: read("db1", writable(1, "0-1-100")),
			want: NodeFollow, wantFence: true, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "old primary restarted writable with a write the new primary lacks: fence, quarantine",
			snap: snapWith(failedOver(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "db2", 2 }),
			self: read("db1", writable(1, "0-1-101")),
			want: NodeQuarantine, wantFence: true, wantRole: cluster.RoleQuarantined, wantProbe: detector.Replica,
		},
		{
			name: "old primary restarted writable before the new primary published its GTID set: fence, wait",
			snap: snapWith(failedOver(), func(s *cluster.Snapshot) {
				n := s.Nodes["db2"]
				n.Epoch = 4
				s.Nodes["db2"] = n
			}),
			self: read("db1", writable(1, "0-1-100")),
			want: NodeWait, wantFence: true, wantRole: cluster.RoleFenced, wantProbe: detector.Replica, wantReason: "waiting for db2",
		},
		// Following from the commit on: the flow saw the new primary apply 0-1-100
		// (Primary.Executed) before committing it; it has not published since.
		{
			name: "old primary after a switchover, the new primary not published yet, nothing beyond what it applied: follow now",
			snap: committedUnpublished("0-1-100"),
			self: read("db1", readOnly(writable(1, "0-1-100"))),
			want: NodeFollow, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "replica of the old primary, the new primary not published yet, behind what it applied: follow now",
			snap: committedUnpublished("0-1-100"),
			self: read("db3", replicaOf(3, "198.18.0.1", "0-1-90")),
			want: NodeFollow, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "replica with a transaction beyond what the new primary applied, not published yet: wait, no quarantine on that set",
			snap: committedUnpublished("0-1-100"),
			self: read("db3", replicaOf(3, "198.18.0.1", "0-1-101")),
			want: NodeWait, wantRole: cluster.RoleFenced, wantProbe: detector.Replica, wantReason: "waiting for db2",
		},
		{
			name: "replica with its own write the new primary lacks, not published yet: wait",
			snap: committedUnpublished("0-1-100"),
			self: read("db3", replicaOf(3, "198.18.0.1", "0-1-100,0-3-1")),
			want: NodeWait, wantRole: cluster.RoleFenced, wantProbe: detector.Replica, wantReason: "waiting for db2",
		},
		{
			name: "the commit's set does not parse: wait for the published one",
			snap: committedUnpublished("garbage"),
			self: read("db3", replicaOf(3, "198.18.0.1", "0-1-90")),
			want: NodeWait, wantRole: cluster.RoleFenced, wantProbe: detector.Replica, wantReason: "waiting for db2",
		},
		{
			name: "the replica's own set not read (no flavor): wait for the published one",
			snap: committedUnpublished("0-1-100"),
			self: read("db3", replication.Status{ReadOnly: true, Role: replication.RoleReplica, SourceHost: "198.18.0.1", SourcePort: 3306}),
			want: NodeWait, wantRole: cluster.RoleFenced, wantProbe: detector.Replica, wantReason: "waiting for db2",
		},
		{
			name: "replica restarted writable, still pointed at the primary: fence, restart replication",
			snap: steady(),
			self: func() Self { st := replicaOf(2, "198.18.0.1", "0-1-100"); st.ReadOnly = false; return read("db2", st) }(),
			want: NodeFollow, wantFence: true, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		// The primary of record, fenced.
		{
			name: "a flow moves the primary away: fence for it before reading the server",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Intent = intent }),
			self: unread("db1"),
			want: NodeFenceForIntent, wantRole: cluster.RoleFenced, wantProbe: detector.Replica, wantReason: "a switchover away from this node",
		},
		{
			name: "a flow moves the primary away, fenced for it already: wait",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Intent = intent }),
			self: func() Self {
				s := read("db1", writable(1, "0-1-100"))
				s.FlowFenced, s.FlowFencedEpoch = IntentKey(*intent), 4
				return s
			}(),
			want: NodeWait, wantReason: "fenced for the switchover",
		},
		{
			name: "primary of record, read_only after an abandoned flow: make it writable",
			snap: steady(), self: read("db1", readOnly(writable(1, "0-1-100"))),
			want: NodeMakeWritable, wantRole: cluster.RolePrimary, wantProbe: detector.Primary,
		},
		{
			name: "primary of record, read_only, cluster paused: leave it",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Settings.Paused = true }),
			self: read("db1", readOnly(writable(1, "0-1-100"))),
			want: NodeKeepPaused, wantRole: cluster.RolePrimary,
		},
		{
			name: "primary of record, another node's session holds the leader key: fenced",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "db2", 2 }),
			self: read("db1", readOnly(writable(1, "0-1-100"))),
			want: NodeWait, wantRole: cluster.RoleFenced, wantReason: "db2's session",
		},
		{
			name: "primary of record, writable, holding the leader key: hold",
			snap: steady(), self: read("db1", writable(1, "0-1-100")),
			want: NodeHoldPrimary, wantRole: cluster.RolePrimary, wantProbe: detector.Primary,
		},
		// Bootstrap.
		{
			name: "no primary of record, the server writable and replicating from none: ready it",
			snap: cluster.Snapshot{}, self: read("db1", writable(1, "0-1-100")),
			want: NodePrepareBootstrap, wantRole: cluster.RoleUnknown, wantProbe: detector.Primary,
		},
		{
			name: "no primary of record, the server read_only: probe it as a replica",
			snap: cluster.Snapshot{}, self: read("db2", replicaOf(2, "198.18.0.1", "0-1-100")),
			want: NodeAwaitBootstrap, wantRole: cluster.RoleUnknown, wantProbe: detector.Replica,
		},
		// Replicas.
		{
			name: "replica following the primary: keep its threads running",
			snap: steady(), self: read("db2", replicaOf(2, "198.18.0.1", "0-1-100")),
			want: NodeFollow, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "replica reconnecting to the primary by itself: leave it",
			snap: steady(),
			self: func() Self {
				st := replicaOf(2, "198.18.0.1", "0-1-100")
				st.IOThread = replication.ThreadConnecting
				return read("db2", st)
			}(),
			want: NodeReconnecting, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "replica of the old primary after a failover: repoint it",
			snap: snapWith(failedOver(), func(s *cluster.Snapshot) { s.Nodes["db3"] = cluster.NodeStatus{Node: "db3"} }),
			self: read("db3", replicaOf(3, "198.18.0.1", "0-1-100")),
			want: NodeFollow, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		// A replica the flow repointed already, which received the old primary's last
		// events after the new primary was ranked (its IO thread could not be stopped in
		// time): it follows the new primary, which lacks them (error 1236).
		{
			name: "replica repointed after a failover, with old-primary events the new primary lacks: quarantine",
			snap: snapWith(failedOver(), func(s *cluster.Snapshot) { s.Nodes["db3"] = cluster.NodeStatus{Node: "db3"} }),
			self: func() Self {
				st := replicaOf(3, "198.18.0.2", "0-1-102")
				st.IOThread = replication.ThreadStopped
				return read("db3", st)
			}(),
			want: NodeQuarantine, wantRole: cluster.RoleQuarantined, wantProbe: detector.Replica,
		},
		{
			name: "replica following the new primary with its own and the old primary's events: follow",
			snap: failedOver(),
			self: read("db3", replicaOf(3, "198.18.0.2", "0-1-100,0-2-7")),
			want: NodeFollow, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "replica following the new primary before it published its GTID set: follow, nothing to compare with",
			snap: snapWith(failedOver(), func(s *cluster.Snapshot) {
				n := s.Nodes["db2"]
				n.Epoch = 4
				s.Nodes["db2"] = n
			}),
			self: read("db3", replicaOf(3, "198.18.0.2", "0-1-102")),
			want: NodeFollow, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "replica following the primary, SQL thread stopped on a duplicate key: data diverged, quarantine",
			snap: steady(),
			self: func() Self {
				st := replicaOf(2, "198.18.0.1", "0-1-100")
				st.SQLThread, st.LastSQLErrno, st.LastSQLError = replication.ThreadStopped, 1062, "Duplicate entry 'x-3932' for key 'PRIMARY'"
				return read("db2", st)
			}(),
			want: NodeQuarantine, wantRole: cluster.RoleQuarantined, wantProbe: detector.Replica, wantReason: "data diverged",
		},
		{
			name: "replica following the primary, IO thread stopped because the primary purged the binary logs it needs: quarantine",
			snap: steady(),
			self: func() Self {
				st := replicaOf(2, "198.18.0.1", "0-1-100")
				st.IOThread, st.LastIOErrno = replication.ThreadStopped, 1236
				st.LastIOError = "Got fatal error 1236 from master when reading data from binary log: 'Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.'"
				return read("db2", st)
			}(),
			want: NodeQuarantine, wantRole: cluster.RoleQuarantined, wantProbe: detector.Replica, wantReason: "the binary logs this replica needs were purged",
		},
		{
			name: "replica following the primary, IO thread stopped because a MySQL primary purged what it needs: quarantine",
			snap: steady(),
			self: func() Self {
				st := replicaOf(2, "198.18.0.1", "0-1-100")
				st.IOThread, st.LastIOErrno = replication.ThreadStopped, 13114
				st.LastIOError = "Got fatal error 1236 from source when reading data from binary log: 'Cannot replicate because the source purged required binary logs. Replicate the missing transactions from elsewhere, or provision a new replica from backup.'"
				return read("db2", st)
			}(),
			want: NodeQuarantine, wantRole: cluster.RoleQuarantined, wantProbe: detector.Replica, wantReason: "the binary logs this replica needs were purged",
		},
		{
			name: "replica following the primary, IO thread stopped on another fatal binlog error: restart it",
			snap: steady(),
			self: func() Self {
				st := replicaOf(2, "198.18.0.1", "0-1-100")
				st.IOThread, st.LastIOErrno = replication.ThreadStopped, 1236
				st.LastIOError = "Got fatal error 1236 from master when reading data from binary log: 'binlog truncated in the middle of event; consider out of disk space on master'"
				return read("db2", st)
			}(),
			want: NodeFollow, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "replica following the primary, SQL thread stopped on a lock wait timeout: restart it",
			snap: steady(),
			self: func() Self {
				st := replicaOf(2, "198.18.0.1", "0-1-100")
				st.SQLThread, st.LastSQLErrno, st.LastSQLError = replication.ThreadStopped, 1205, "Lock wait timeout exceeded"
				return read("db2", st)
			}(),
			want: NodeFollow, wantRole: cluster.RoleReplica, wantProbe: detector.Replica,
		},
		{
			name: "replica during a flow: leave replication to the coordinator",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Intent = intent }),
			self: func() Self {
				st := replicaOf(2, "198.18.0.1", "0-1-100")
				st.IOThread = replication.ThreadStopped
				return read("db2", st)
			}(),
			want: NodeWait, wantProbe: detector.Replica, wantReason: "in progress",
		},
		{
			name: "primary of record with an unusable address: wait",
			snap: snapWith(steady(), func(s *cluster.Snapshot) { s.Primary.Addr = "db1" }),
			self: read("db2", replicaOf(2, "198.18.0.1", "0-1-100")),
			want: NodeWait, wantProbe: detector.Replica, wantReason: "no usable address", wantErr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Analyze(tc.snap, tc.self)
			if a.Action != tc.want {
				t.Fatalf("action = %s (%s), want %s", a.Action, a.Reason, tc.want)
			}
			if a.Fence != tc.wantFence || a.ServerFenced != tc.wantServerFenced {
				t.Errorf("fence = %v (server fenced %v), want %v (%v)", a.Fence, a.ServerFenced, tc.wantFence, tc.wantServerFenced)
			}
			if a.Fence && a.FenceWhy == "" {
				t.Error("a fence without a reason")
			}
			if a.Role != tc.wantRole {
				t.Errorf("role = %q, want %q", a.Role, tc.wantRole)
			}
			if a.Probe != tc.wantProbe {
				t.Errorf("probe = %s, want %s", a.Probe, tc.wantProbe)
			}
			if (a.Err != nil) != tc.wantErr {
				t.Errorf("err = %v, want one: %v", a.Err, tc.wantErr)
			}
			if !strings.Contains(a.Reason, tc.wantReason) {
				t.Errorf("reason = %q, want it to mention %q", a.Reason, tc.wantReason)
			}
			if writableAction(a.Action) && (tc.self.Node != tc.snap.Primary.Node || a.Fence) {
				t.Errorf("%s for %s, not the primary of record (%s), or fenced", a.Action, tc.self.Node, tc.snap.Primary.Node)
			}
			if again := Analyze(tc.snap, tc.self); again.Action != a.Action || again.Reason != a.Reason || again.Fence != a.Fence {
				t.Errorf("not deterministic: %+v then %+v", a, again)
			}
		})
	}
}

// writableAction says whether a leaves the local server writable.
func writableAction(a NodeAction) bool {
	return a == NodePromote || a == NodeMakeWritable || a == NodeHoldPrimary
}

// TestAnalyzeZeroNeverWritable: however little is known, a node is never made
// writable unless it is named, has its lease, is the primary of record, and (to
// promote) its server was read at this pass.
func TestAnalyzeZeroNeverWritable(t *testing.T) {
	snaps := map[string]cluster.Snapshot{
		"zero":                        {},
		"leader key free":             snapWith(steady(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "", 0 }),
		"primary named, nothing else": {View: cluster.View{Primary: cluster.Primary{Node: "db1"}}},
	}
	selves := map[string]Self{
		"zero":           {},
		"no lease":       {Node: "db1", Read: LocalOK},
		"no name":        {Lease: 1, Read: LocalOK},
		"unread":         {Node: "db1", Lease: 1},
		"unanswered":     {Node: "db1", Lease: 1, Read: LocalFailed},
		"bad read state": {Node: "db1", Lease: 1, Read: LocalRead(9)},
	}
	for sn, snap := range snaps {
		for n, self := range selves {
			if a := Analyze(snap, self); a.Action == NodePromote || a.Action == NodeMakeWritable {
				t.Errorf("snapshot %s, self %s: %s (%s)", sn, n, a.Action, a.Reason)
			}
		}
	}
}

func TestSignificantLag(t *testing.T) {
	at := func(ms int64) cluster.NodeStatus { return cluster.NodeStatus{Node: "db2", LagMS: ms} }
	cases := []struct {
		a, b    int64
		confirm int64 // ms
		want    bool
	}{
		{100, 900, 1000, false},
		{900, 1000, 1000, true},
		{1500, 1200, 1000, false},
		{1500, 200, 1000, true},
		{-1, 5000, 1000, true},
		{900, 1000, 3000, false}, // a DBA raised confirm_lag: 1s is no longer news
		{2900, 3000, 3000, true},
		{-1, 0, 3000, false},
	}
	for _, tc := range cases {
		if got := significant(at(tc.a), at(tc.b), msDur(tc.confirm)); got != tc.want {
			t.Errorf("lag %dms -> %dms with confirm_lag %dms: significant = %v, want %v", tc.a, tc.b, tc.confirm, got, tc.want)
		}
	}
}

func msDur(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// TestAnalyzeSemiSyncRepair: a writable primary of record whose semi-sync source side
// is off, in a cluster configured for semi-sync, is repaired; nothing else is, and
// a server not read (its zero status) never is.
func TestAnalyzeSemiSyncRepair(t *testing.T) {
	ss := func(available, source, active bool) func(*replication.Status) {
		return func(st *replication.Status) {
			st.SemiSync = replication.SemiSync{Available: available, SourceEnabled: source, SourceActive: active, ReplicaEnabled: !source}
		}
	}
	with := func(self Self, semi bool, f func(*replication.Status)) Self {
		self.SemiSync = semi
		f(&self.Status)
		return self
	}
	cases := []struct {
		name       string
		self       Self
		want       NodeAction
		wantRepair bool
	}{
		{"source side off on the writable primary: repair", with(read("db1", writable(1, "0-1-100")), true, ss(true, false, false)), NodeHoldPrimary, true},
		{"source side on, fallen back to async: reported, not flipped", with(read("db1", writable(1, "0-1-100")), true, ss(true, true, false)), NodeHoldPrimary, false},
		{"source side on and active", with(read("db1", writable(1, "0-1-100")), true, ss(true, true, true)), NodeHoldPrimary, false},
		{"semi-sync not configured", with(read("db1", writable(1, "0-1-100")), false, ss(true, false, false)), NodeHoldPrimary, false},
		{"the server has no semi-sync", with(read("db1", writable(1, "0-1-100")), true, ss(false, false, false)), NodeHoldPrimary, false},
		{"server not answering (zero status)", func() Self { s := unanswered("db1"); s.SemiSync = true; return s }(), NodeHoldPrimary, false},
		{"read_only primary: made writable the way a promotion is, not repaired", with(read("db1", readOnly(writable(1, "0-1-100"))), true, ss(true, false, false)), NodeMakeWritable, false},
		{"a replica with the source side off", with(read("db2", replicaOf(2, "198.18.0.1", "0-1-100")), true, ss(true, false, false)), NodeFollow, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Analyze(steady(), tc.self)
			if a.Action != tc.want || a.RepairSemiSync != tc.wantRepair {
				t.Fatalf("action %s repair %v (%s), want %s repair %v", a.Action, a.RepairSemiSync, a.Reason, tc.want, tc.wantRepair)
			}
		})
	}
}

func TestSemiSyncState(t *testing.T) {
	cases := []struct {
		ss       replication.SemiSync
		readOnly bool
		want     cluster.SemiSyncState
		unsafe   bool
	}{
		{replication.SemiSync{Available: true, SourceEnabled: true, SourceActive: true}, false, cluster.SemiSyncOn, false},
		{replication.SemiSync{Available: true, SourceEnabled: true}, false, cluster.SemiSyncAsync, true},
		{replication.SemiSync{Available: true}, false, cluster.SemiSyncOff, true},
		{replication.SemiSync{}, false, cluster.SemiSyncUnavailable, true},
		{replication.SemiSync{Available: true, ReplicaEnabled: true}, true, cluster.SemiSyncReplicaOn, false},
		{replication.SemiSync{Available: true}, true, cluster.SemiSyncReplicaOff, false},
	}
	for _, tc := range cases {
		got := semiSyncState(tc.ss, tc.readOnly)
		if got != tc.want || got.Unprotected() != tc.unsafe {
			t.Errorf("%+v read_only=%v: %q (unprotected %v), want %q (%v)", tc.ss, tc.readOnly, got, got.Unprotected(), tc.want, tc.unsafe)
		}
	}
}
