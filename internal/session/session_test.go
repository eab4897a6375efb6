package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// fences records the fences a Runner asked for.
type fences struct {
	mu  sync.Mutex
	why []error
	at  []time.Time
}

func (f *fences) fence(_ context.Context, why error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.why = append(f.why, why)
	f.at = append(f.at, time.Now())
}

func (f *fences) get() ([]error, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.why...), append([]time.Time(nil), f.at...)
}

// upState is the session as OnUp and OnDown report it.
type upState struct {
	mu     sync.Mutex
	up     bool
	lease  clientv3.LeaseID
	ups    int
	downAt time.Time // the latest OnDown
}

func (u *upState) onUp(lease clientv3.LeaseID, _ bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.up, u.lease = true, lease
	u.ups++
}

func (u *upState) onDown(error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.up, u.downAt = false, time.Now()
}

func (u *upState) get() (bool, clientv3.LeaseID, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.up, u.lease, u.ups
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

// testConfig is the agent's default timings: a 3 s lease, fenced 2 s after the
// latest renewal.
func testConfig(cli *clientv3.Client, f *fences, u *upState, work ...Work) Config {
	return Config{Client: cli, TTL: 3 * time.Second, FenceMargin: time.Second, CallTimeout: time.Second,
		Work: work, Fence: f.fence, OnUp: u.onUp, OnDown: u.onDown}
}

// start runs r until the test ends, and checks it stops within 10 s then.
func start(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the runner did not stop 10 s after its context")
		}
	})
}

func idle(ctx context.Context, _ *concurrency.Session) error { <-ctx.Done(); return nil }

func TestNewNamesTheBadField(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	var f fences
	var u upState
	good := func() Config { return testConfig(cli, &f, &u, Work{Name: "w", Run: idle}) }
	if _, err := New(good()); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"client", func(c *Config) { c.Client = nil }},
		{"ttl", func(c *Config) { c.TTL = 0 }},
		{"ttl", func(c *Config) { c.TTL = 2500 * time.Millisecond }},
		{"fence_margin", func(c *Config) { c.FenceMargin = 0 }},
		{"fence_margin", func(c *Config) { c.FenceMargin = c.TTL }},
		{"call_timeout", func(c *Config) { c.CallTimeout = 0 }},
		{"fence", func(c *Config) { c.Fence = nil }},
		{"work", func(c *Config) { c.Work = nil }},
		{"work[0]", func(c *Config) { c.Work[0].Name = "" }},
		{"work[0]", func(c *Config) { c.Work[0].Run = nil }},
		{"work[1]", func(c *Config) { c.Work = append(c.Work, c.Work[0]) }},
	}
	for _, c := range cases {
		cfg := good()
		c.edit(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err %v; want one naming %q", c.field, err, c.field)
		}
	}
	var zero Config
	if _, err := New(zero); err == nil {
		t.Error("a zero config is accepted")
	}
}

// A campaign for coordinator that fails (its etcd connection cut as a member stops)
// must not end the etcd session: it ended the renewal watch with it, and the primary
// then sat writable through a whole etcd outage, neither fenced nor kept by failsafe
// mode. The failing work runs again within the same session; when etcd goes, the
// node is fenced within session_ttl - fence_margin, and the session is reported down
// at once, even while other work takes seconds to end (an election's resignation
// waits for etcd with no deadline).
func TestSessionOutlivesFailingWork(t *testing.T) {
	cli, _, stopEtcd := sandboxtest.StoppableEtcdAt(t, sandboxtest.EtcdDir(t))

	var failing, slow sessionsSeen
	slowEnded := make(chan time.Time, 8)
	var f fences
	var u upState
	cfg := testConfig(cli, &f, &u,
		Work{Name: "coordinator", Run: func(ctx context.Context, s *concurrency.Session) error {
			failing.add(s)
			return errors.New("campaign for coordinator: rpc error: code = Unavailable desc = error reading from server: EOF")
		}},
		Work{Name: "reconciler", Run: func(ctx context.Context, s *concurrency.Session) error {
			slow.add(s)
			<-ctx.Done()
			time.Sleep(2 * time.Second) // ends long after it is told to
			slowEnded <- time.Now()
			return nil
		}})
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)

	time.Sleep(3 * time.Second)
	up, lease, _ := u.get()
	if runs, sessions := failing.get(); runs < 3 || sessions != 1 || !up || lease == clientv3.NoLease {
		t.Fatalf("after %d runs of the failing work: %d sessions, session up=%v lease %x; want it run again and again in one session", runs, sessions, up, lease)
	}
	if _, sessions := slow.get(); sessions != 1 {
		t.Fatalf("the other work ran under %d sessions, want 1", sessions)
	}
	if why, _ := f.get(); len(why) != 0 {
		t.Fatalf("fenced with etcd up: %q", why)
	}

	stopped := time.Now()
	stopEtcd() // it may take seconds to return; renewals fail from its start on
	limit := cfg.TTL - cfg.FenceMargin
	sandboxtest.WaitFor(t, limit+2*time.Second, "the node fenced after etcd stopped", func() bool { why, _ := f.get(); return len(why) > 0 })
	why, at := f.get()
	fencedAfter := at[0].Sub(stopped)
	up, _, _ = u.get()
	if up {
		t.Errorf("session reported up after the fence")
	}
	select {
	case ended := <-slowEnded:
		u.mu.Lock()
		down := u.downAt
		u.mu.Unlock()
		if !down.Before(ended) {
			t.Errorf("the session was reported down only once its slow work ended (%s after etcd stopped)", ended.Sub(stopped).Round(time.Millisecond))
		}
	case <-time.After(3 * time.Second):
		t.Errorf("the slow work did not end")
	}
	if fencedAfter > limit+time.Second {
		t.Errorf("fenced %s after etcd stopped; want within session_ttl - fence_margin (%s) and a tick", fencedAfter.Round(time.Millisecond), limit)
	}
	if !errors.Is(why[0], ErrNotRenewed) {
		t.Errorf("fenced for %v; want a late renewal (ErrNotRenewed)", why[0])
	}
	t.Logf("fenced %s after etcd stopped: %v", fencedAfter.Round(time.Millisecond), why[0])
}

// A session that ended (here: interrupted) is made again on the same lease while
// etcd still has it: the keys on the lease (the leader key, the node's status)
// outlive it.
func TestSessionResumesItsLease(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	var f fences
	var u upState
	r, err := New(testConfig(cli, &f, &u, Work{Name: "w", Run: idle}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	sandboxtest.WaitFor(t, 5*time.Second, "a session", func() bool { up, _, _ := u.get(); return up })
	_, first, _ := u.get()
	_ = r.Interrupt(context.Background())
	sandboxtest.WaitFor(t, 5*time.Second, "a second session", func() bool { up, _, n := u.get(); return up && n == 2 })
	if _, lease, _ := u.get(); lease != first {
		t.Fatalf("second session on lease %x; want the first's, %x, resumed", lease, first)
	}
	if why, _ := f.get(); len(why) != 0 {
		t.Fatalf("an interrupted session fenced the node: %v", why)
	}
}
