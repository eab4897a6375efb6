package failover

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// guardServer is a member's server as the guard sees it: read_only or not, readable
// or not (frozen), fenced when asked unless fenceErr.
type guardServer struct {
	Server
	mu       sync.Mutex
	readOnly bool
	readErr  error
	fenceErr error
	fences   int
}

func (s *guardServer) Status(context.Context) (replication.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		return replication.Status{}, s.readErr
	}
	return replication.Status{Flavor: replication.FlavorMariaDB, ReadOnly: s.readOnly}, nil
}

func (s *guardServer) Fence(context.Context) (replication.FenceReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fences++
	if s.fenceErr != nil {
		return replication.FenceReport{}, s.fenceErr
	}
	s.readOnly = true
	return replication.FenceReport{ReadOnly: true, Killed: 3}, nil
}

type guardPool map[string]*guardServer

func (p guardPool) Instance(name, _ string) (Server, error) {
	if s, ok := p[name]; ok {
		return s, nil
	}
	return nil, errors.New("no such server")
}

func TestUnguarded(t *testing.T) {
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db2", Epoch: 5},
		Nodes:   map[string]cluster.NodeStatus{"db2": {Node: "db2"}, "db3": {Node: "db3"}},
		Members: map[string]cluster.Member{
			"db1": {Node: "db1", Addr: "198.18.0.11:3306"}, "db2": {Node: "db2", Addr: "198.18.0.12:3306"},
			"db3": {Node: "db3", Addr: "198.18.0.13:3306"}, "db4": {Node: "db4", Addr: "198.18.0.14:3306"},
		},
	}}
	got := unguarded(snap)
	var names []string
	for _, m := range got {
		names = append(names, m.Node)
	}
	if strings.Join(names, ",") != "db1,db4" {
		t.Errorf("unguarded = %v, want db1,db4 (no agent, not the primary of record)", names)
	}
	if got := unguarded(cluster.Snapshot{View: cluster.View{Members: snap.Members}}); len(got) != 0 {
		t.Errorf("no primary of record yet: %v, want none (nothing is deposed before a bootstrap)", got)
	}
	noAgentPrimary := snap
	noAgentPrimary.Primary.Node = "db1"
	for _, m := range unguarded(noAgentPrimary) {
		if m.Node == "db1" {
			t.Error("the primary of record, its agent gone, would be fenced by the guard")
		}
	}
}

// TestGuardKeepsFencing: a deposed primary whose fence failed during the failover
// (its server frozen, its agent dead) is still writable when it wakes. The elected
// coordinator keeps trying to fence every member whose agent is gone and that is
// not the primary of record, until it is read_only, and records when it fenced one.
func TestGuardKeepsFencing(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "guard")
	frozen := &guardServer{readErr: errors.New("read status: i/o timeout")}
	replica := &guardServer{readOnly: true}
	pool := guardPool{"db1": frozen, "db4": replica}
	c, err := NewCoordinator(CoordinatorConfig{Node: "db2", Store: store, Cluster: &cluster.Cache{}, Servers: pool, Policy: policy(),
		CatchupTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db2", Epoch: 5},
		Nodes:   map[string]cluster.NodeStatus{"db2": {Node: "db2"}},
		Members: map[string]cluster.Member{"db1": {Node: "db1", Addr: "198.18.0.11:3306"}, "db2": {Node: "db2"}, "db4": {Node: "db4", Addr: "198.18.0.14:3306"}},
	}}
	var g guardState
	ctx := t.Context()
	c.guardRound(ctx, snap, &g)
	if frozen.fences != 0 || replica.fences != 0 {
		t.Fatalf("fences %d, %d: an unreadable server and a read_only one need none", frozen.fences, replica.fences)
	}
	// It wakes, still writable: fenced at the next round; a fence that fails is
	// tried again at the one after.
	frozen.mu.Lock()
	frozen.readErr, frozen.fenceErr = nil, errors.New("fence: lock wait timeout")
	frozen.mu.Unlock()
	c.guardRound(ctx, snap, &g)
	if frozen.fences != 1 || frozen.readOnly {
		t.Fatalf("after a failed fence: fences %d, read_only %v", frozen.fences, frozen.readOnly)
	}
	frozen.mu.Lock()
	frozen.fenceErr = nil
	frozen.mu.Unlock()
	c.guardRound(ctx, snap, &g)
	if frozen.fences != 2 || !frozen.readOnly {
		t.Fatalf("fences %d, read_only %v: want it fenced", frozen.fences, frozen.readOnly)
	}
	c.guardRound(ctx, snap, &g)
	if frozen.fences != 2 || replica.fences != 0 {
		t.Fatalf("fences %d, %d: a read_only server is left alone", frozen.fences, replica.fences)
	}
	hist, err := store.History(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Kind != cluster.EventFence || hist[0].From != "db1" || !strings.Contains(hist[0].Reason, "writable") {
		t.Fatalf("history %+v: want one fence event for db1 saying it was writable", hist)
	}
}
