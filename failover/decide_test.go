package failover

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func policy() cluster.Policy {
	return cluster.Policy{FailoverBlock: 5 * time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: time.Second}
}

// healthy returns the status of a healthy node; a replica replicates from db1.
func healthy(name string) cluster.NodeStatus {
	n := cluster.NodeStatus{Node: name, Verdict: detector.Healthy, StorageOK: true, LagMS: 100, IORunning: true, SQLRunning: true,
		Role: cluster.RoleReplica, ServerRead: true, ReadOnly: true, Source: "db1:3306", PrimaryView: &cluster.PeerView{Node: "db1", Reachable: true}}
	if name == "db1" {
		n = cluster.NodeStatus{Node: name, Verdict: detector.Healthy, StorageOK: true, LagMS: -1, Role: cluster.RolePrimary, ServerRead: true}
	}
	return n
}

func view(nodes ...cluster.NodeStatus) cluster.View {
	v := cluster.View{Primary: cluster.Primary{Node: "db1", Epoch: 4}, Leader: "db1", Nodes: map[string]cluster.NodeStatus{}}
	for _, n := range nodes {
		v.Nodes[n.Node] = n
	}
	return v
}

func with(n cluster.NodeStatus, fs ...func(*cluster.NodeStatus)) cluster.NodeStatus {
	for _, f := range fs {
		f(&n)
	}
	return n
}

func unwritable(n *cluster.NodeStatus) {
	n.Verdict, n.Reason = detector.Unwritable, "write probe did not finish in 300ms"
}
func unreachable(n *cluster.NodeStatus) {
	n.Verdict, n.Reason = detector.Unreachable, "connection refused"
}
func writeCheck(w cluster.PeerWrite) func(*cluster.NodeStatus) {
	return func(n *cluster.NodeStatus) { n.PrimaryView.Write = w }
}

// repointing is a replica whose agent is pointing it at db1: replicating from an
// older primary, its IO thread stopped, db1 reachable.
func repointing(n *cluster.NodeStatus) {
	n.Source, n.IORunning, n.LagMS = "db3:3306", false, 1500
}

// awaiting is db1 unwritable since since, semi-sync on with clients replicas
// connected, db2 as f makes it, db3 replicating from db3's old source with its IO
// thread stopped, no remote probe (it confirms the stop, and is fit).
func awaiting(since time.Time, clients int, f func(*cluster.NodeStatus)) cluster.View {
	v := view(with(healthy("db1"), unwritable, func(n *cluster.NodeStatus) {
		n.SemiSync, n.SemiSyncClients, n.VerdictSince = cluster.SemiSyncOn, clients, since
	}), with(healthy("db2"), f), with(healthy("db3"), func(n *cluster.NodeStatus) { n.IORunning, n.PrimaryView = false, nil }))
	v.Primary.Addr = "db1:3306"
	v.PrimaryVerdictSeen = since // the coordinator saw the verdict as it changed
	return v
}

// seenAt makes t the coordinator's first sight of db1's verdict.
func seenAt(t time.Time, v cluster.View) cluster.View {
	v.PrimaryVerdictSeen = t
	return v
}

// acking marks db1's commits as stuck waiting for a semi-sync acknowledgement.
func acking(v cluster.View) cluster.View {
	p := v.Nodes["db1"]
	p.AwaitsAck = true
	v.Nodes["db1"] = p
	return v
}

// backFromCut is a replica of db1 with its semi-sync side as ss, just back from a
// network cut of its own: its remote probe of db1 failed during the cut and its IO
// thread is reconnecting.
func backFromCut(ss cluster.SemiSyncState) func(*cluster.NodeStatus) {
	return func(n *cluster.NodeStatus) {
		n.SemiSync, n.IORunning, n.LagMS = ss, false, 2500
		n.PrimaryView = &cluster.PeerView{Node: "db1", Reachable: false, Error: "timed_out: no answer before the deadline"}
	}
}

// loneCandidate is db1 unreachable (frozen) and confirmed gone, db2 quarantined
// (errant) and db3 the only candidate, semi-sync replica side on with timeout as
// its rpl_semi_sync_master_timeout; f changes the view further.
func loneCandidate(timeout time.Duration, f func(*cluster.View)) cluster.View {
	v := view(with(healthy("db1"), unreachable),
		with(healthy("db2"), func(n *cluster.NodeStatus) { seesPrimaryGone(n); n.Role, n.Errant = cluster.RoleQuarantined, "0-2-7" }),
		with(healthy("db3"), seesPrimaryGone, func(n *cluster.NodeStatus) { n.SemiSync, n.SemiSyncTimeout = cluster.SemiSyncReplicaOn, timeout }))
	v.Members = map[string]cluster.Member{"db1": {Node: "db1"}, "db2": {Node: "db2"}, "db3": {Node: "db3"}}
	if f != nil {
		f(&v)
	}
	return v
}

func lagging(ms int64) func(*cluster.NodeStatus) { return func(n *cluster.NodeStatus) { n.LagMS = ms } }
func seesPrimaryGone(n *cluster.NodeStatus) {
	n.PrimaryView = &cluster.PeerView{Node: "db1", Reachable: false, Error: "connection refused"}
	n.IORunning, n.ReplError = false, "error reconnecting to master"
}

func TestDecide(t *testing.T) {
	cases := []struct {
		name       string
		v          cluster.View
		now        time.Time
		want       cluster.Action
		wantTo     string
		wantCands  []string
		wantReason string
	}{
		{
			name: "all healthy: nothing to do",
			v:    view(healthy("db1"), healthy("db2"), healthy("db3")),
			want: cluster.NoAction, wantReason: "primary db1 is healthy",
		},
		{
			name:       "unwritable primary confirmed by a replica's heartbeat lag",
			v:          view(with(healthy("db1"), unwritable), with(healthy("db2"), lagging(1500)), healthy("db3")),
			want:       cluster.Failover,
			wantCands:  []string{"db2", "db3"},
			wantReason: "confirmed by db2: heartbeat lag 1500ms",
		},
		{
			name:       "unwritable primary not confirmed: replicas still get heartbeats",
			v:          view(with(healthy("db1"), unwritable), healthy("db2"), healthy("db3")),
			want:       cluster.NoAction,
			wantReason: "not confirmed by any replica",
		},
		// A semi-sync primary whose commits wait because no replica is connected yet,
		// while a replica that reaches it is being pointed at it (its agent was frozen
		// through the failover that made this primary; a fault campaign round failed
		// such a primary over again, and ended with no replica left).
		{
			name:       "unwritable semi-sync primary waiting for a replica being pointed at it: wait",
			v:          awaiting(t0.Add(-2*time.Second), 0, repointing),
			now:        t0,
			want:       cluster.NoAction,
			wantReason: "its commits wait for a semi-sync replica: none connected, db2 reaches it",
		},
		{
			name:       "... for SemiSyncGrace at most",
			v:          awaiting(t0.Add(-SemiSyncGrace), 0, repointing),
			now:        t0,
			want:       cluster.Failover,
			wantCands:  []string{"db2", "db3"},
			wantReason: "confirmed by db2",
		},
		{
			name:      "... not when a replica is connected: the commits wait for something else",
			v:         awaiting(t0.Add(-2*time.Second), 1, repointing),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		{
			name:      "... not when the replica cannot reach the primary (a network cut)",
			v:         awaiting(t0.Add(-2*time.Second), 0, seesPrimaryGone),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		{
			name:      "... not when the replica replicates from it already (its semi-sync side is off, say)",
			v:         awaiting(t0.Add(-2*time.Second), 0, lagging(1500)),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		// Fault campaign 72/25: the replica's agent had pointed it at the primary 40 ms
		// before the decision; the primary's status still said no replica connected,
		// and the failover stranded the primary's pending commit (quarantined) and left
		// the new primary with no replica at all.
		{
			name:       "... also when the replica has just started replicating from it, semi-sync replica side on",
			v:          awaiting(t0.Add(-2*time.Second), 0, func(n *cluster.NodeStatus) { n.SemiSync = cluster.SemiSyncReplicaOn }),
			now:        t0,
			want:       cluster.NoAction,
			wantReason: "none connected yet, db2 replicates from it with its semi-sync replica side on",
		},
		{
			name:       "... for SemiSyncGrace at most there too",
			v:          awaiting(t0.Add(-SemiSyncGrace), 0, func(n *cluster.NodeStatus) { n.SemiSync, n.LagMS = cluster.SemiSyncReplicaOn, 1500 }),
			now:        t0,
			want:       cluster.Failover,
			wantCands:  []string{"db2", "db3"},
			wantReason: "confirmed by db2",
		},
		{
			name:      "... not when the verdict's time is unknown",
			v:         awaiting(time.Time{}, 0, repointing),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		// The grace is timed on the coordinator's clock alone, from when it first saw
		// the primary's verdict: the primary's VerdictSince, stamped by another clock,
		// would let a skew shorten or lengthen it by as much.
		{
			name:       "... timed from when the coordinator first saw the verdict, not by the primary's clock (the coordinator's runs 30 s ahead)",
			v:          seenAt(t0.Add(-2*time.Second), awaiting(t0.Add(-32*time.Second), 0, repointing)),
			now:        t0,
			want:       cluster.NoAction,
			wantReason: "none connected, db2 reaches it",
		},
		{
			name:      "... for SemiSyncGrace at most of the coordinator's clock (its clock runs 30 s behind the primary's)",
			v:         seenAt(t0.Add(-SemiSyncGrace), awaiting(t0.Add(30*time.Second-SemiSyncGrace), 0, repointing)),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		{
			name:      "... not when the coordinator has not seen the verdict (zero): no grace",
			v:         seenAt(time.Time{}, awaiting(t0.Add(-2*time.Second), 0, repointing)),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		// Fault campaign 81/13: the replica's agent pointed it at the primary during a
		// network cut of its own; as it came back, it published its remote probe's
		// failure from the cut and an IO thread still reconnecting, and the
		// coordinator failed the primary over 7 ms later: its pending commit became
		// errant, and the new primary had no replica left.
		{
			name:       "primary whose commits wait for an ACK, a replica back from a cut follows it: wait",
			v:          acking(awaiting(t0.Add(-2*time.Second), 0, backFromCut(cluster.SemiSyncReplicaOn))),
			now:        t0,
			want:       cluster.NoAction,
			wantReason: "0 connected, and db2 replicates from it with its semi-sync replica side on",
		},
		{
			name:       "... for SemiSyncGrace at most",
			v:          acking(awaiting(t0.Add(-SemiSyncGrace), 0, backFromCut(cluster.SemiSyncReplicaOn))),
			now:        t0,
			want:       cluster.Failover,
			wantCands:  []string{"db2", "db3"},
			wantReason: "confirmed by db2: remote probe fails",
		},
		{
			name:      "... not when its commits are not known to wait for an ACK (a full disk, say)",
			v:         awaiting(t0.Add(-2*time.Second), 0, backFromCut(cluster.SemiSyncReplicaOn)),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		{
			name:      "... not when the replica's semi-sync side is off: it acknowledges nothing",
			v:         acking(awaiting(t0.Add(-2*time.Second), 0, backFromCut(cluster.SemiSyncReplicaOff))),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		{
			name:      "... not when the replica follows another server",
			v:         acking(awaiting(t0.Add(-2*time.Second), 0, func(n *cluster.NodeStatus) { backFromCut(cluster.SemiSyncReplicaOn)(n); n.Source = "db3:3306" })),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		// The same round replayed on the fix above: the replica had connected during
		// its cut, its acknowledgements lost, so the primary counted one replica.
		{
			name:       "... also when that replica is connected, its acknowledgements lost in its cut",
			v:          acking(awaiting(t0.Add(-2*time.Second), 1, backFromCut(cluster.SemiSyncReplicaOn))),
			now:        t0,
			want:       cluster.NoAction,
			wantReason: "1 connected, and db2 replicates from it",
		},
		{
			name:      "... for SemiSyncGrace at most there too",
			v:         acking(awaiting(t0.Add(-SemiSyncGrace), 1, backFromCut(cluster.SemiSyncReplicaOn))),
			now:       t0,
			want:      cluster.Failover,
			wantCands: []string{"db2", "db3"},
		},
		// Fault campaign 67/6: two primaries frozen in a row. The second failover
		// promoted the last node while the first deposed primary was quarantined: the
		// new primary had no replica to acknowledge its commits, and the one it
		// replaced (thawed 2.2 s in) was quarantined too, for its pending commit.
		{
			name:       "the only candidate would have no replica to acknowledge its commits: wait for the primary",
			v:          loneCandidate(time.Hour, nil),
			want:       cluster.NoAction,
			wantReason: "a failover would not bring writes back: db3, its only candidate, would have no replica to acknowledge its commits (semi-sync, rpl_semi_sync_master_timeout 1h0m0s): every other node quarantined (db2)",
		},
		{
			name: "... not when another node may still replicate from it (not quarantined, not fit to promote)",
			v: loneCandidate(time.Hour, func(v *cluster.View) {
				v.Nodes["db4"] = with(healthy("db4"), seesPrimaryGone, func(n *cluster.NodeStatus) { n.NoPromote = true })
			}),
			want:      cluster.Failover,
			wantCands: []string{"db3"},
		},
		{
			name:      "... not when a member's agent is gone: its server may replicate",
			v:         loneCandidate(time.Hour, func(v *cluster.View) { v.Members = map[string]cluster.Member{"db4": {Node: "db4"}} }),
			want:      cluster.Failover,
			wantCands: []string{"db3"},
		},
		{
			name:      "... not when the candidate's semi-sync timeout is short: it would go asynchronous",
			v:         loneCandidate(10*time.Second, nil),
			want:      cluster.Failover,
			wantCands: []string{"db3"},
		},
		{
			name:      "... not when its semi-sync timeout is unknown",
			v:         loneCandidate(0, nil),
			want:      cluster.Failover,
			wantCands: []string{"db3"},
		},
		{
			name:      "... an operator's failover request goes ahead",
			v:         withRequest(loneCandidate(time.Hour, nil), cluster.Request{Kind: cluster.RequestFailover, Epoch: 4}),
			want:      cluster.Failover,
			wantCands: []string{"db3"},
		},
		{
			name:       "dead primary, every replica agrees",
			v:          view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone)),
			want:       cluster.Failover,
			wantCands:  []string{"db2", "db3"},
			wantReason: "every replica agrees",
		},
		{
			name:       "dead primary and its agent gone, replicas agree",
			v:          view(with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone)),
			want:       cluster.Failover,
			wantReason: "agent is gone",
		},
		{
			name:       "primary unreachable but one replica still sees it",
			v:          view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), healthy("db3")),
			want:       cluster.NoAction,
			wantReason: "db3 still sees it",
		},
		{
			name: "only the coordinator (db2) is cut off from the primary",
			// The primary's agent and db3 see it fine; db2's view is one vote among
			// replicas, and the primary's own agent says healthy.
			v:          view(healthy("db1"), with(healthy("db2"), seesPrimaryGone), healthy("db3")),
			want:       cluster.NoAction,
			wantReason: "primary db1 is healthy",
		},
		{
			name:       "agent of the primary dead but its server fine",
			v:          view(healthy("db2"), healthy("db3")),
			want:       cluster.NoAction,
			wantReason: "db2 still sees it",
		},
		{
			// The primary's agent lost etcd alone and fenced its server: the server
			// answers, replicas still connect, but it takes no writes.
			name: "agent gone, its server fenced: a replica's write probe is refused, heartbeat stopped",
			v: view(with(healthy("db2"), writeCheck(cluster.PeerWriteReadOnly), lagging(2500)),
				with(healthy("db3"), writeCheck(cluster.PeerWriteReadOnly), lagging(2500))),
			want: cluster.Failover, wantCands: []string{"db2", "db3"},
			wantReason: "db2's write probe: read_only",
		},
		{
			name: "agent gone, then the disk filled: a replica's write probe hangs, heartbeat stopped",
			v: view(with(healthy("db2"), writeCheck(cluster.PeerWriteFailing), lagging(1200)),
				with(healthy("db3"), lagging(1200))),
			want: cluster.Failover, wantCands: []string{"db2", "db3"},
			wantReason: "db2's write probe: failing",
		},
		{
			name:       "agent gone, a write probe fails but the heartbeat is fresh: not confirmed",
			v:          view(with(healthy("db2"), writeCheck(cluster.PeerWriteFailing)), healthy("db3")),
			want:       cluster.NoAction,
			wantReason: "not confirmed",
		},
		{
			name:       "agent gone, the replicas' write probes succeed: the server serves",
			v:          view(with(healthy("db2"), writeCheck(cluster.PeerWriteOK)), with(healthy("db3"), writeCheck(cluster.PeerWriteOK))),
			want:       cluster.NoAction,
			wantReason: "db2 still sees it",
		},
		{
			name: "agent gone, no write probe result yet (zero value), heartbeat stopped: nothing",
			v: view(with(healthy("db2"), lagging(5000)),
				with(healthy("db3"), lagging(5000))),
			want:       cluster.NoAction,
			wantReason: "db2 still sees it",
		},
		{
			name: "agent gone, a write probe of an old primary of record (another node) does not count",
			v: view(with(healthy("db2"), func(n *cluster.NodeStatus) {
				n.PrimaryView = &cluster.PeerView{Node: "db9", Reachable: true, Write: cluster.PeerWriteReadOnly}
				n.LagMS = 5000
			}), healthy("db3")),
			want:       cluster.NoAction,
			wantReason: "db2 still sees it",
		},
		{
			name:       "primary read_only by hand is not a failure",
			v:          view(with(healthy("db1"), func(n *cluster.NodeStatus) { n.Verdict = detector.ReadOnly }), with(healthy("db2"), lagging(5000)), healthy("db3")),
			want:       cluster.NoAction,
			wantReason: "primary db1 is read_only",
		},
		{
			name:       "primary overloaded (too many connections) is not a failure",
			v:          view(with(healthy("db1"), func(n *cluster.NodeStatus) { n.Verdict = detector.Overloaded }), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone)),
			want:       cluster.NoAction,
			wantReason: "overloaded",
		},
		{
			name: "paused",
			v: func() cluster.View {
				v := view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone))
				v.Settings.Paused = true
				return v
			}(),
			want:       cluster.NoAction,
			wantReason: "paused",
		},
		{
			name: "anti-flap: a failover 2 minutes ago",
			v: func() cluster.View {
				v := view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone))
				v.Primary.LastFailover = t0.Add(-2 * time.Minute)
				v.Block = blockAt(t0.Add(-2 * time.Minute))
				return v
			}(),
			want:       cluster.NoAction,
			wantReason: "blocked for 5m0s after it (anti-flap, timed by an etcd lease",
		},
		{
			// The failover was written by a coordinator with a true clock; this one
			// runs an hour ahead, so by its clock the window ended long ago. The
			// block's lease has not expired: blocked.
			name: "anti-flap: coordinator's clock an hour ahead, block in force",
			now:  t0.Add(time.Hour),
			v: func() cluster.View {
				v := view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone))
				v.Primary.LastFailover = t0.Add(-time.Minute)
				v.Block = blockAt(t0.Add(-time.Minute))
				return v
			}(),
			want:       cluster.NoAction,
			wantReason: "anti-flap",
		},
		{
			// This coordinator runs an hour behind: by its clock the last failover is
			// in the future. Its block's lease has expired: not blocked.
			name: "anti-flap: coordinator's clock an hour behind, block expired",
			now:  t0.Add(-time.Hour),
			v: func() cluster.View {
				v := view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone))
				v.Primary.LastFailover = t0.Add(-6 * time.Minute)
				return v
			}(),
			want: cluster.Failover,
		},
		{
			name: "anti-flap: coordinator's clock an hour behind, block in force",
			now:  t0.Add(-time.Hour),
			v: func() cluster.View {
				v := view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone))
				v.Primary.LastFailover = t0.Add(-time.Minute)
				v.Block = blockAt(t0.Add(-time.Minute))
				return v
			}(),
			want:       cluster.NoAction,
			wantReason: "anti-flap",
		},
		{
			name: "anti-flap window over",
			v: func() cluster.View {
				v := view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone))
				v.Primary.LastFailover = t0.Add(-6 * time.Minute)
				return v
			}(),
			want: cluster.Failover,
		},
		{
			name: "no safe candidate: one no_promote, one with a broken disk",
			v: view(with(healthy("db1"), unreachable),
				with(healthy("db2"), func(n *cluster.NodeStatus) { seesPrimaryGone(n); n.NoPromote = true }),
				with(healthy("db3"), func(n *cluster.NodeStatus) { seesPrimaryGone(n); n.StorageOK = false })),
			want:       cluster.NoAction,
			wantReason: "no safe candidate: db2: no_promote is set; db3: storage probe failing",
		},
		{
			name: "errant candidate (quarantined) is never a candidate",
			v: view(with(healthy("db1"), unreachable),
				with(healthy("db2"), func(n *cluster.NodeStatus) { seesPrimaryGone(n); n.Role, n.Errant = cluster.RoleQuarantined, "0-2-7" }),
				with(healthy("db3"), seesPrimaryGone)),
			want:      cluster.Failover,
			wantCands: []string{"db3"},
		},
		{
			name: "replica whose SQL thread stopped on an error is not a candidate",
			v: view(with(healthy("db1"), unreachable),
				with(healthy("db2"), func(n *cluster.NodeStatus) { seesPrimaryGone(n); n.SQLRunning = false; n.ReplError = "Duplicate entry" }),
				with(healthy("db3"), seesPrimaryGone)),
			want:      cluster.Failover,
			wantCands: []string{"db3"},
		},
		{
			name:       "no primary of record: bootstrap the one writable server",
			v:          cluster.View{Nodes: map[string]cluster.NodeStatus{"db1": with(healthy("db1"), func(n *cluster.NodeStatus) { n.Role = cluster.RoleUnknown }), "db2": healthy("db2")}},
			want:       cluster.Bootstrap,
			wantTo:     "db1",
			wantReason: "one writable server",
		},
		{
			// Seen for real: a replica's agent published before it had read its server,
			// and its zero values looked like a writable server replicating from none.
			name: "no primary of record: a status published before the server was read is not a writable server",
			v: cluster.View{Nodes: map[string]cluster.NodeStatus{
				"db1": with(healthy("db1"), func(n *cluster.NodeStatus) { n.Role = cluster.RoleUnknown }),
				"db3": {Node: "db3", Verdict: detector.Healthy, StorageOK: true, LagMS: -1},
			}},
			want:   cluster.Bootstrap,
			wantTo: "db1",
		},
		{
			name: "no primary of record, only an unread status: wait",
			v: cluster.View{Nodes: map[string]cluster.NodeStatus{
				"db3": {Node: "db3", Verdict: detector.Healthy, StorageOK: true, LagMS: -1},
			}},
			want:       cluster.NoAction,
			wantReason: "no healthy writable server",
		},
		{
			name: "dead primary, but a replica whose server was not read yet is no vote",
			v: view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone),
				cluster.NodeStatus{Node: "db3", Verdict: detector.Healthy, StorageOK: true, LagMS: -1}),
			want:       cluster.NoAction,
			wantReason: "db3 still sees it",
		},
		{
			name: "no primary of record and two writable servers: refuse to guess",
			v: cluster.View{Nodes: map[string]cluster.NodeStatus{
				"db1": healthy("db1"),
				"db2": with(healthy("db2"), func(n *cluster.NodeStatus) { n.ReadOnly, n.Source = false, "" }),
			}},
			want:       cluster.NoAction,
			wantReason: "2 writable servers (db1, db2)",
		},
		{
			name: "a flow in progress: wait",
			v: func() cluster.View {
				v := view(with(healthy("db1"), unreachable), with(healthy("db2"), seesPrimaryGone), with(healthy("db3"), seesPrimaryGone))
				v.Intent = &cluster.Intent{Kind: "failover", From: "db1", Epoch: 4}
				return v
			}(),
			want:       cluster.NoAction,
			wantReason: "in progress",
		},
		// Operator requests.
		{
			name:      "manual switchover to db2",
			v:         withRequest(view(healthy("db1"), healthy("db2"), healthy("db3")), cluster.Request{Kind: cluster.RequestSwitchover, To: "db2", Epoch: 4}),
			want:      cluster.Switchover,
			wantTo:    "db2",
			wantCands: []string{"db2"},
		},
		{
			name: "manual switchover while paused still runs",
			v: func() cluster.View {
				v := withRequest(view(healthy("db1"), healthy("db2")), cluster.Request{Kind: cluster.RequestSwitchover, Epoch: 4})
				v.Settings.Paused = true
				return v
			}(),
			want:      cluster.Switchover,
			wantCands: []string{"db2"},
		},
		{
			name:       "switchover to a lagging node is refused",
			v:          withRequest(view(healthy("db1"), with(healthy("db2"), lagging(30000)), healthy("db3")), cluster.Request{Kind: cluster.RequestSwitchover, To: "db2", Epoch: 4}),
			want:       cluster.RefuseRequest,
			wantReason: "db2: lag 30000ms is over 1s",
		},
		{
			name: "switchover to a node whose SQL thread is stopped is refused",
			v: withRequest(view(healthy("db1"), with(healthy("db2"), func(n *cluster.NodeStatus) { n.SQLRunning = false }), healthy("db3")),
				cluster.Request{Kind: cluster.RequestSwitchover, To: "db2", Epoch: 4}),
			want:       cluster.RefuseRequest,
			wantReason: "db2: replication is not running",
		},
		{
			name:       "switchover to an unknown node is refused",
			v:          withRequest(view(healthy("db1"), healthy("db2")), cluster.Request{Kind: cluster.RequestSwitchover, To: "db9", Epoch: 4}),
			want:       cluster.RefuseRequest,
			wantReason: `unknown node "db9"`,
		},
		{
			name:       "switchover to the primary itself is refused",
			v:          withRequest(view(healthy("db1"), healthy("db2")), cluster.Request{Kind: cluster.RequestSwitchover, To: "db1", Epoch: 4}),
			want:       cluster.RefuseRequest,
			wantReason: "already the primary",
		},
		{
			name:       "switchover with an unwritable primary is refused: use failover",
			v:          withRequest(view(with(healthy("db1"), unwritable), healthy("db2")), cluster.Request{Kind: cluster.RequestSwitchover, Epoch: 4}),
			want:       cluster.RefuseRequest,
			wantReason: "use `baton failover`",
		},
		{
			name:       "request against an older epoch is refused",
			v:          withRequest(view(healthy("db1"), healthy("db2")), cluster.Request{Kind: cluster.RequestSwitchover, To: "db2", Epoch: 3}),
			want:       cluster.RefuseRequest,
			wantReason: "epoch 3, now 4",
		},
		{
			name:       "manual failover of a healthy primary is refused",
			v:          withRequest(view(healthy("db1"), healthy("db2")), cluster.Request{Kind: cluster.RequestFailover, Epoch: 4}),
			want:       cluster.RefuseRequest,
			wantReason: "is healthy",
		},
		{
			name:      "manual failover of a healthy primary with --force",
			v:         withRequest(view(healthy("db1"), healthy("db2")), cluster.Request{Kind: cluster.RequestFailover, Force: true, Epoch: 4}),
			want:      cluster.Failover,
			wantCands: []string{"db2"},
		},
		{
			name: "manual failover of an unwritable primary, unconfirmed, inside the anti-flap window",
			v: func() cluster.View {
				v := withRequest(view(with(healthy("db1"), unwritable), healthy("db2")), cluster.Request{Kind: cluster.RequestFailover, To: "db2", Epoch: 4})
				v.Primary.LastFailover = t0.Add(-time.Minute)
				v.Block = blockAt(t0.Add(-time.Minute))
				return v
			}(),
			want:   cluster.Failover,
			wantTo: "db2",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			d := Decide(now, tc.v, policy())
			if d.Action != tc.want {
				t.Fatalf("action = %s (%s), want %s", d.Action, d.Reason, tc.want)
			}
			if tc.wantTo != "" && d.To != tc.wantTo {
				t.Errorf("to = %q, want %q", d.To, tc.wantTo)
			}
			if tc.wantCands != nil && strings.Join(d.Candidates, ",") != strings.Join(tc.wantCands, ",") {
				t.Errorf("candidates = %v, want %v", d.Candidates, tc.wantCands)
			}
			if !strings.Contains(d.Reason, tc.wantReason) {
				t.Errorf("reason = %q, want it to mention %q", d.Reason, tc.wantReason)
			}
			if again := Decide(now, tc.v, policy()); again.Action != d.Action || again.Reason != d.Reason {
				t.Errorf("not deterministic: %v then %v", d, again)
			}
		})
	}
}

// blockAt is the anti-flap block of a failover committed at (by the committing
// coordinator's clock), its lease still alive.
func blockAt(at time.Time) *cluster.FailoverBlock {
	return &cluster.FailoverBlock{Epoch: 4, To: "db2", For: 5 * time.Minute, At: at}
}

func withRequest(v cluster.View, r cluster.Request) cluster.View {
	r.ID = "req-1"
	v.Request = &r
	return v
}

// TestManualFailoverKeepsTheCause: an operator's failover decision, which the
// history records, says what the primary was at the time, not only that an operator
// asked.
func TestManualFailoverKeepsTheCause(t *testing.T) {
	v := withRequest(view(with(healthy("db1"), unwritable), healthy("db2")), cluster.Request{ID: "req-1", Kind: cluster.RequestFailover, Epoch: 4})
	d := Decide(t0, v, policy())
	if d.Action != cluster.Failover || !strings.Contains(d.Reason, "req-1") || !strings.Contains(d.Reason, "primary db1 was unwritable") {
		t.Fatalf("decision %s: %q, want a failover saying db1 was unwritable", d.Action, d.Reason)
	}
	delete(v.Nodes, "db1")
	v.Request.Force = true
	if d := Decide(t0, v, policy()); !strings.Contains(d.Reason, "its agent had no session") {
		t.Errorf("primary's agent gone: %q", d.Reason)
	}
}
