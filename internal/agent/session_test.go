package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// testAgent is an agent made from the configuration y, not started.
func testAgent(t *testing.T, y string) *Agent {
	t.Helper()
	c, err := Parse([]byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(c, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// fakeNode is the reconciler as the session loop sees it: a writable primary on
// any lease, whose fences are recorded.
type fakeNode struct {
	mu     sync.Mutex
	fences []string
}

func (n *fakeNode) WritablePrimary(clientv3.LeaseID) bool { return true }
func (n *fakeNode) Current() (cluster.NodeStatus, cluster.Snapshot) {
	var snap cluster.Snapshot
	snap.Primary = cluster.Primary{Node: "db1", Epoch: 1}
	return cluster.NodeStatus{}, snap
}
func (n *fakeNode) FenceLocal(_ context.Context, why string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fences = append(n.fences, why)
}
func (n *fakeNode) fenced() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.fences...)
}

// sessionsSeen records the sessions a piece of work ran under, and how often it ran.
type sessionsSeen struct {
	mu   sync.Mutex
	runs int
	seen map[*concurrency.Session]bool
}

func (r *sessionsSeen) add(s *concurrency.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[*concurrency.Session]bool{}
	}
	r.runs++
	r.seen[s] = true
}

func (r *sessionsSeen) get() (runs, sessions int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs, len(r.seen)
}

// A campaign for coordinator that fails (its etcd connection cut as a member stops)
// must not end the etcd session: it ended the renewal watch with it, and the primary
// then sat writable through a whole etcd outage, neither fenced nor kept by failsafe
// mode. The failing work runs again within the same session; when etcd goes, the
// node is fenced within session_ttl - fence_margin, and the session is reported down
// at once, even while other work takes seconds to end (an election's resignation
// waits for etcd with no deadline).
func TestSessionOutlivesFailingWork(t *testing.T) {
	a := testAgent(t, minimalYAML)
	c := a.cfg
	if a.fs.on() {
		t.Fatal("failsafe mode on without a peer secret")
	}
	cli, _, stopEtcd := sandboxtest.StoppableEtcdAt(t, sandboxtest.EtcdDir(t))

	var failing, slow sessionsSeen
	slowEnded := make(chan time.Time, 8)
	work := []sessionWork{
		{Name: "coordinator", Run: func(ctx context.Context, s *concurrency.Session) error {
			failing.add(s)
			return errors.New("campaign for coordinator: rpc error: code = Unavailable desc = error reading from server: EOF")
		}},
		{Name: "reconciler", Run: func(ctx context.Context, s *concurrency.Session) error {
			slow.add(s)
			<-ctx.Done()
			time.Sleep(2 * time.Second) // ends long after it is told to
			slowEnded <- time.Now()
			return nil
		}},
	}
	node := &fakeNode{}
	state := &sessionState{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.sessions(ctx, cli, node, work, state) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the session loop did not end 10 s after its context")
		}
	}()

	time.Sleep(3 * time.Second)
	up, lease := state.get()
	if runs, sessions := failing.get(); runs < 3 || sessions != 1 || !up || lease == clientv3.NoLease {
		t.Fatalf("after %d runs of the failing work: %d sessions, session up=%v lease %x; want it run again and again in one session", runs, sessions, up, lease)
	}
	if _, sessions := slow.get(); sessions != 1 {
		t.Fatalf("the other work ran under %d sessions, want 1", sessions)
	}
	if f := node.fenced(); len(f) != 0 {
		t.Fatalf("fenced with etcd up: %q", f)
	}

	stopEtcd() // it serves open streams (lease renewals) until it returns
	stopped := time.Now()
	limit := c.Timings.SessionTTL - c.Timings.FenceMargin
	sandboxtest.WaitFor(t, limit+2*time.Second, "the node fenced after etcd stopped", func() bool { return len(node.fenced()) > 0 })
	fencedAfter := time.Since(stopped)
	if up, _ := state.get(); up {
		t.Errorf("session reported up after the fence")
	}
	select {
	case at := <-slowEnded:
		t.Errorf("the session was reported down only once its slow work ended (%s after etcd stopped)", at.Sub(stopped).Round(time.Millisecond))
	default:
	}
	if fencedAfter > limit+time.Second {
		t.Errorf("fenced %s after etcd stopped; want within session_ttl - fence_margin (%s) and a tick", fencedAfter.Round(time.Millisecond), limit)
	}
	t.Logf("fenced %s after etcd stopped: %q", fencedAfter.Round(time.Millisecond), node.fenced()[0])
}
