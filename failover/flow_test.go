package failover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

func replica(name, executed string, agentGone bool) replication.Candidate {
	c := replication.Candidate{
		Name:       name,
		Server:     replication.Server{ServerID: uint32(name[len(name)-1] - '0'), Executed: replication.MustParseGTIDSet(replication.FlavorMariaDB, executed)},
		StorageOK:  true,
		SQLRunning: true,
	}
	if agentGone {
		c.Unpromotable = "its agent is not running"
	}
	return c
}

// TestChoose: the candidate choice of a flow, with replicas whose agent is gone. Such
// a replica's server may hold the latest semi-sync-acknowledged transactions: a
// failover never promotes a replica that lacks them, and refuses while such a
// server (or any replica's) cannot be read, unless an operator forces it.
func TestChoose(t *testing.T) {
	primary := &replication.Server{ServerID: 1, Executed: replication.MustParseGTIDSet(replication.FlavorMariaDB, "0-1-90")}
	cases := []struct {
		name       string
		in         choice
		want       string // chosen, "" for a refusal
		wantReason string // in the refusal or the chosen one's reason
	}{
		{
			name: "agent gone, server has more: refused",
			in: choice{action: cluster.Failover, allowed: []string{"db2"}, primary: primary,
				read: []replication.Candidate{replica("db2", "0-1-98", false), replica("db3", "0-1-100", true)}},
			wantReason: "db2: not safe to promote: lacks transactions db3 has: 0-1-100",
		},
		{
			name: "agent gone, server has more: still refused when forced (it was read)",
			in: choice{action: cluster.Failover, allowed: []string{"db2"}, primary: primary, force: true,
				read: []replication.Candidate{replica("db2", "0-1-98", false), replica("db3", "0-1-100", true)}},
			wantReason: "lacks transactions db3 has",
		},
		{
			name: "agent gone, server has no more: the live one",
			in: choice{action: cluster.Failover, allowed: []string{"db2"}, primary: primary,
				read: []replication.Candidate{replica("db2", "0-1-100", false), replica("db3", "0-1-99", true)}},
			want: "db2",
		},
		{
			name: "agent gone, server has as much: the live one, never the silent one",
			in: choice{action: cluster.Failover, allowed: []string{"db2"}, primary: primary,
				read: []replication.Candidate{replica("db3", "0-1-100", true), replica("db2", "0-1-100", false)}},
			want: "db2",
		},
		{
			name: "agent gone, server unreadable: refused",
			in: choice{action: cluster.Failover, allowed: []string{"db2"}, primary: primary,
				read:   []replication.Candidate{replica("db2", "0-1-100", false)},
				unread: []string{"db3: dial tcp 198.18.0.3:3306: connection refused"}},
			wantReason: "a replica cannot be read and may hold transactions the others lack (db3: dial tcp",
		},
		{
			name: "agent gone, server unreadable: forced by an operator",
			in: choice{action: cluster.Failover, allowed: []string{"db2"}, primary: primary, force: true,
				read:   []replication.Candidate{replica("db2", "0-1-100", false)},
				unread: []string{"db3: connection refused"}},
			want:       "db2",
			wantReason: "forced past replicas not read: db3: connection refused",
		},
		{
			name: "switchover does not wait for an unread replica: it executes the primary's final set",
			in: choice{action: cluster.Switchover, allowed: []string{"db2"}, primary: primary,
				read:   []replication.Candidate{replica("db2", "0-1-99", false)},
				unread: []string{"db3: connection refused"}},
			want: "db2",
		},
		{
			name: "a replica's IO thread still running: refused, forced or not",
			in: choice{action: cluster.Failover, allowed: []string{"db2"}, primary: primary, force: true,
				read:      []replication.Candidate{replica("db2", "0-1-100", false), replica("db3", "0-1-100", false)},
				ioRunning: []string{"db3 (IO thread running)"}},
			wantReason: "IO thread of db3 (IO thread running) could not be stopped",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := choose(tc.in)
			if tc.want == "" {
				var r *refusal
				if !errors.As(err, &r) {
					t.Fatalf("chose %s (%s), err %v; want a refusal", got.Name, got.Reason, err)
				}
				if !strings.Contains(r.reason, tc.wantReason) {
					t.Fatalf("refusal %q, want it to mention %q", r.reason, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v; want %s", err, tc.want)
			}
			if got.Name != tc.want {
				t.Fatalf("chose %s (%s), want %s", got.Name, got.Reason, tc.want)
			}
			if !strings.Contains(got.Reason, tc.wantReason) {
				t.Fatalf("reason %q, want it to mention %q", got.Reason, tc.wantReason)
			}
		})
	}
}

func TestDetectedAt(t *testing.T) {
	started := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	failed := started.Add(-1500 * time.Millisecond)
	snap := func(verdict detector.Verdict, since time.Time) cluster.Snapshot {
		var s cluster.Snapshot
		s.Nodes = map[string]cluster.NodeStatus{"db1": {Node: "db1", Verdict: verdict, VerdictSince: since}}
		return s
	}
	auto := cluster.Decision{Action: cluster.Failover, From: "db1", To: "db2"}
	cases := []struct {
		name string
		snap cluster.Snapshot
		d    cluster.Decision
		want time.Time
	}{
		{"unwritable primary", snap(detector.Unwritable, failed), auto, failed},
		{"unreachable primary", snap(detector.Unreachable, failed), auto, failed},
		{"agent gone", cluster.Snapshot{}, auto, time.Time{}},
		{"healthy verdict (agent cut from etcd)", snap(detector.Healthy, failed), auto, time.Time{}},
		{"verdict after the flow began (clock skew)", snap(detector.Unwritable, started.Add(time.Second)), auto, time.Time{}},
		{"zero verdict time", snap(detector.Unwritable, time.Time{}), auto, time.Time{}},
		{"manual failover", snap(detector.Unwritable, failed), cluster.Decision{Action: cluster.Failover, From: "db1", Manual: true}, time.Time{}},
		{"switchover", snap(detector.Unwritable, failed), cluster.Decision{Action: cluster.Switchover, From: "db1"}, time.Time{}},
	}
	for _, c := range cases {
		if got := detectedAt(c.snap, c.d, started); !got.Equal(c.want) {
			t.Errorf("%s: detected %v, want %v", c.name, got, c.want)
		}
	}
}

// lockedServer is a replica whose replication lock another session holds until
// free is closed (its agent changing replication): StopIO waits for it as long
// as its context allows, else fails with ErrBusy, as replication.Instance's does.
type lockedServer struct {
	Server
	free    chan struct{}
	stopped bool
}

func (s *lockedServer) StopIO(ctx context.Context) error {
	select {
	case <-s.free:
		s.stopped = true
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop io: %w", replication.ErrBusy)
	}
}

type onePool struct{ s Server }

func (p onePool) Instance(string, string) (Server, error) { return p.s, nil }

// A flow's stop_io meets a replica whose agent is changing its replication (its
// Follow confirmed before the flow announced itself, and holds the server's
// replication lock): the flow waits for that change to end and stops the IO thread
// after it, rather than rank a replica about to fetch the old primary's last
// commits (fault campaign, seed 41 round 19).
func TestStopIOWaitsForAReplicationChange(t *testing.T) {
	srv := &lockedServer{free: make(chan struct{})}
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db1", Addr: "198.18.0.1:3306", ServerID: 1, Epoch: 4},
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Role: cluster.RolePrimary, ServerRead: true, GTID: "0-1-100", Epoch: 4},
			"db2": {Node: "db2", Addr: "198.18.0.2:3306", Role: cluster.RoleReplica, ServerRead: true, ReadOnly: true, GTID: "0-1-100", Epoch: 4},
		},
	}}
	f := &flow{c: &Coordinator{cfg: CoordinatorConfig{Servers: onePool{srv}}}, snap: snap, d: cluster.Decision{Action: cluster.Failover, From: "db1"}}
	time.AfterFunc(2*stopIOTimeout, func() { close(srv.free) })
	note, err := f.stopIO(t.Context())
	if err != nil || !srv.stopped {
		t.Fatalf("stop_io: %q, %v; stopped %v: want the IO thread stopped after the change", note, err, srv.stopped)
	}
	if !strings.Contains(note, "waited for db2's replication change") {
		t.Errorf("note %q does not say the flow waited", note)
	}

	// A change that outlasts stopIOBusyTimeout: stop_io reports it (rank then
	// reads what the replica has).
	srv = &lockedServer{free: make(chan struct{})}
	f.c.cfg.Servers = onePool{srv}
	start := time.Now()
	if _, err := f.stopIO(t.Context()); !errors.Is(err, replication.ErrBusy) {
		t.Fatalf("stop_io with the lock never freed: %v, want ErrBusy", err)
	}
	if took := time.Since(start); took > stopIOTimeout+stopIOBusyTimeout+time.Second {
		t.Fatalf("stop_io took %s", took)
	}
}

// ioServer is a replica whose StopIO answers stopErr and whose Status reports its IO
// thread as io (after a successful StopIO: stopped), for the checks that a failover
// never ranks, nor commits past, a replica still able to acknowledge the old
// primary's commits.
type ioServer struct {
	Server
	mu      sync.Mutex
	stopErr error
	io      replication.ThreadState
	readErr error
	// stopsAfter, when set, makes the IO thread stopped from that read of the
	// status on (a thread still exiting after its STOP was killed).
	stopsAfter, reads int
}

func (s *ioServer) StopIO(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopErr != nil {
		return s.stopErr
	}
	s.io = replication.ThreadStopped
	return nil
}

func (s *ioServer) Status(context.Context) (replication.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		return replication.Status{}, s.readErr
	}
	if s.reads++; s.stopsAfter > 0 && s.reads >= s.stopsAfter {
		s.io = replication.ThreadStopped
	}
	return replication.Status{Flavor: replication.FlavorMariaDB, Role: replication.RoleReplica, ServerID: 2, ReadOnly: true,
		Executed: replication.MustParseGTIDSet(replication.FlavorMariaDB, "0-1-100"), IOThread: s.io,
		SQLThread: replication.ThreadRunning}, nil
}

func (s *ioServer) set(io replication.ThreadState, readErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.io, s.readErr = io, readErr
}

func ioFlow(srv Server, force bool) *flow {
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db1", Addr: "198.18.0.1:3306", ServerID: 1, Epoch: 4},
		Nodes: map[string]cluster.NodeStatus{
			"db2": {Node: "db2", Addr: "198.18.0.2:3306", Role: cluster.RoleReplica, ServerRead: true, ReadOnly: true, GTID: "0-1-100", Epoch: 4, StorageOK: true},
		},
	}}
	f := &flow{c: &Coordinator{cfg: CoordinatorConfig{Servers: onePool{srv}}}, snap: snap,
		d: cluster.Decision{Action: cluster.Failover, From: "db1", Candidates: []string{"db2"}}}
	if force {
		f.request = &cluster.Request{Force: true}
	}
	return f
}

// TestFailoverNeedsStoppedIOThreads: a replica whose IO thread could not be stopped
// (its agent holds the replication lock, or is frozen inside Follow after START
// SLAVE) keeps acknowledging the old primary's semi-sync commits after the ranking;
// with the old primary beyond the fence, they would never reach the new primary. A
// failover ranks only replicas whose IO thread it has seen stopped, and sees it
// again just before the commit; an operator's force does not go past a replica that
// answers with its IO thread running.
func TestFailoverNeedsStoppedIOThreads(t *testing.T) {
	busy := fmt.Errorf("stop io: %w", replication.ErrBusy)
	t.Run("stop failed, IO thread running: refused at rank", func(t *testing.T) {
		for _, force := range []bool{false, true} {
			srv := &ioServer{stopErr: busy, io: replication.ThreadRunning}
			f := ioFlow(srv, force)
			_, stopErr := f.stopIO(t.Context())
			if stopErr == nil {
				t.Fatal("stop_io reported no error for a replica whose stop failed")
			}
			_, err := f.rank(t.Context())
			var r *refusal
			if !errors.As(err, &r) || !strings.Contains(err.Error(), "db2") || !strings.Contains(err.Error(), "IO thread") {
				t.Fatalf("force %v: rank = %v, want a refusal naming db2's IO thread", force, err)
			}
		}
	})
	t.Run("a stop killed at its deadline, the thread exiting: waited for, then ranked", func(t *testing.T) {
		srv := &ioServer{stopErr: errors.New("STOP SLAVE IO_THREAD: did not finish in time, killed server-side"), io: replication.ThreadRunning, stopsAfter: 4}
		f := ioFlow(srv, false)
		_, _ = f.stopIO(t.Context())
		chosen, err := f.rank(t.Context())
		if err != nil || chosen.Name != "db2" {
			t.Fatalf("rank = %+v, %v: want db2, once its IO thread exited", chosen, err)
		}
	})
	t.Run("connecting counts as running", func(t *testing.T) {
		srv := &ioServer{stopErr: busy, io: replication.ThreadConnecting}
		f := ioFlow(srv, false)
		_, _ = f.stopIO(t.Context())
		if _, err := f.rank(t.Context()); err == nil {
			t.Fatal("a replica whose IO thread is connecting was ranked")
		}
	})
	t.Run("stopped: ranked; started again before the commit: refused", func(t *testing.T) {
		srv := &ioServer{io: replication.ThreadRunning}
		f := ioFlow(srv, false)
		if _, err := f.stopIO(t.Context()); err != nil {
			t.Fatal(err)
		}
		chosen, err := f.rank(t.Context())
		if err != nil || chosen.Name != "db2" {
			t.Fatalf("rank = %+v, %v: want db2", chosen, err)
		}
		if _, err := f.checkIOStopped(t.Context()); err != nil {
			t.Fatalf("IO threads still stopped: %v", err)
		}
		srv.set(replication.ThreadRunning, nil) // a START SLAVE landed after the ranking
		var r *refusal
		if _, err := f.checkIOStopped(t.Context()); !errors.As(err, &r) || !strings.Contains(err.Error(), "db2") {
			t.Fatalf("check before the commit = %v, want a refusal naming db2", err)
		}
	})
	t.Run("unreadable before the commit: refused unless forced", func(t *testing.T) {
		srv := &ioServer{io: replication.ThreadStopped, readErr: errors.New("connect: i/o timeout")}
		if _, err := ioFlow(srv, false).checkIOStopped(t.Context()); err == nil {
			t.Fatal("a replica that cannot be read before the commit was let pass")
		}
		if _, err := ioFlow(srv, true).checkIOStopped(t.Context()); err != nil {
			t.Fatalf("forced: %v, want it let pass (as at rank)", err)
		}
	})
}

func TestBlocksAfter(t *testing.T) {
	p := cluster.Policy{FailoverBlock: 5 * time.Minute, ConfirmLag: time.Second}
	for _, tc := range []struct {
		name string
		d    cluster.Decision
		p    cluster.Policy
		want bool
	}{
		{"automatic failover", cluster.Decision{Action: cluster.Failover}, p, true},
		{"an operator's failover sets none", cluster.Decision{Action: cluster.Failover, Manual: true}, p, false},
		{"switchover", cluster.Decision{Action: cluster.Switchover}, p, false},
		{"no block in the policy", cluster.Decision{Action: cluster.Failover}, cluster.Policy{ConfirmLag: time.Second}, false},
	} {
		if got := blocksAfter(tc.d, tc.p); got != tc.want {
			t.Errorf("%s: blocksAfter = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRunwayOf: the history says what a failover bought, and what to do when it is
// little.
func TestRunwayOf(t *testing.T) {
	disk := func(o detector.Outlook, left time.Duration) []detector.Forecast {
		return []detector.Forecast{{Resource: detector.ResourceDisk, Name: "/data", Detail: "datadir, binlog", Used: 1, Limit: 2, RateKnown: true, Outlook: o, Left: left}}
	}
	snap := cluster.Snapshot{View: cluster.View{Nodes: map[string]cluster.NodeStatus{
		"db2": {Node: "db2", Forecasts: disk(detector.OutlookFilling, 6*time.Minute)},
		"db3": {Node: "db3", Forecasts: disk(detector.OutlookSteady, 0)},
		"db4": {Node: "db4", Forecasts: disk(detector.OutlookFilling, 3*24*time.Hour)},
		"db5": {Node: "db5"},
	}}}
	for node, want := range map[string]string{
		"db2": "db2 promoted; at the current rate its disk is full in about 6m: free space on db2 (disk /data (datadir, binlog))",
		"db3": "db3 promoted; its disk is not filling",
		"db4": "db4 promoted; at the current rate its disk is full in about 3d",
		"db5": "db5 promoted; its disk's runway is unknown",
		"db9": "db9 promoted; its disk's runway is unknown (its agent had no status)",
	} {
		if got := runwayOf(snap, node); got != want {
			t.Errorf("%s: %q, want %q", node, got, want)
		}
	}
}
