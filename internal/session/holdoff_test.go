package session

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// promise is a hold-off as the agent's failsafe mode gives it: until a time.
type promise struct {
	mu    sync.Mutex
	until time.Time
	// onCheck, when set, runs at the first check of the hold-off (then is cleared):
	// a promise that arrives just after the Runner looked.
	onCheck func()
}

func (p *promise) heldOff() (time.Duration, string) {
	p.mu.Lock()
	check := p.onCheck
	p.onCheck = nil
	p.mu.Unlock()
	if check != nil {
		defer check()
		return 0, "" // looked before the promise
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if left := time.Until(p.until); left > 0 {
		return left, "held off"
	}
	return 0, ""
}

func (p *promise) give(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.until = time.Now().Add(d)
}

func (p *promise) end() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.until
}

// runs records when a piece of work started.
type runs struct {
	mu sync.Mutex
	at []time.Time
}

func (r *runs) work(ctx context.Context, _ *concurrency.Session) error {
	r.mu.Lock()
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (r *runs) get() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}

// Hole 3: a promise given while the session is being made (after the Runner
// looked at the hold-off, before the session is up) cancels nothing, since no work
// runs yet. The Runner must look again once the session is made, before any work
// starts: no work may run until the promise has run out.
func TestPromiseDuringSessionCreation(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	var f fences
	var u upState
	var w runs
	p := &promise{}
	p.onCheck = func() { p.give(1500 * time.Millisecond) }
	cfg := testConfig(cli, &f, &u, Work{Name: "coordinator", Run: w.work})
	cfg.HeldOff = p.heldOff
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	sandboxtest.WaitFor(t, 6*time.Second, "the work started", func() bool { return len(w.get()) > 0 })
	if first := w.get()[0]; first.Before(p.end()) {
		t.Fatalf("work started %s before the promise given during the session's making ran out", p.end().Sub(first).Round(time.Millisecond))
	}
}

// Hole 3: a flow in progress when the promise is given. Interrupt ends the work and
// returns only once it has returned, so that the answer that promises goes out
// after the node stopped acting; work that does not stop in time is an error that
// names it.
func TestInterruptWaitsForTheWork(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	var f fences
	var u upState
	var mu sync.Mutex
	var returned time.Time
	finishing := 300 * time.Millisecond
	flow := func(ctx context.Context, _ *concurrency.Session) error {
		<-ctx.Done()
		time.Sleep(finishing) // a step still under way
		mu.Lock()
		returned = time.Now()
		mu.Unlock()
		return nil
	}
	p := &promise{}
	cfg := testConfig(cli, &f, &u, Work{Name: "reconciler", Run: idle}, Work{Name: "coordinator", Run: flow})
	cfg.HeldOff = p.heldOff
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	sandboxtest.WaitFor(t, 5*time.Second, "a session", func() bool { up, _, _ := u.get(); return up })
	p.give(3 * time.Second)
	ictx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = r.Interrupt(ictx)
	cancel()
	done := time.Now()
	mu.Lock()
	ret := returned
	mu.Unlock()
	if err != nil {
		t.Fatalf("interrupt: %v", err)
	}
	if ret.IsZero() || ret.After(done) {
		t.Fatalf("Interrupt returned before the flow did (flow returned at %v, interrupt at %v)", ret, done)
	}
	if up, _, _ := u.get(); up {
		t.Fatal("session still up after Interrupt under a promise")
	}

	// Once the promise ran out, a session again; then work that will not stop in time.
	sandboxtest.WaitFor(t, 6*time.Second, "a session after the promise", func() bool { up, _, _ := u.get(); return up })
	mu.Lock()
	finishing = 3 * time.Second
	mu.Unlock()
	p.give(3 * time.Second)
	ictx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = r.Interrupt(ictx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "coordinator") {
		t.Fatalf("interrupt of work that takes 3s, within 300ms: %v; want an error naming the coordinator", err)
	}
	if strings.Contains(err.Error(), "reconciler") {
		t.Fatalf("interrupt error names work that did stop: %v", err)
	}
}

// An election's campaign cut by Interrupt resigns on the client's own context, with
// no deadline: while etcd is unreachable (just when failsafe mode asks for a
// promise) the campaign would not return until etcd came back, and Interrupt could
// not say the node stopped. The session's client ends such calls with the work.
func TestInterruptEndsACampaignWithoutEtcd(t *testing.T) {
	cli, _, stopEtcd := sandboxtest.StoppableEtcdAt(t, sandboxtest.EtcdDir(t))
	// Another candidate leads, so that this node's campaign waits.
	other, err := concurrency.NewSession(cli, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	lead := concurrency.NewElection(other, "/test/coordinator/")
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := lead.Campaign(cctx, "other"); err != nil {
		t.Fatal(err)
	}
	cancel()
	var f fences
	var u upState
	campaigning := make(chan struct{}, 1)
	campaign := func(ctx context.Context, s *concurrency.Session) error {
		e := concurrency.NewElection(s, "/test/coordinator/")
		select {
		case campaigning <- struct{}{}:
		default:
		}
		return e.Campaign(ctx, "this")
	}
	cfg := testConfig(cli, &f, &u, Work{Name: "coordinator", Run: campaign})
	cfg.TTL = 30 * time.Second // no fence meanwhile: this is about the campaign
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	<-campaigning
	time.Sleep(300 * time.Millisecond) // the campaign's key is in, it waits
	go stopEtcd()
	sandboxtest.WaitFor(t, 10*time.Second, "etcd unreachable", func() bool {
		gctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := cli.Get(gctx, "x")
		return err != nil
	})
	ictx, icancel := context.WithTimeout(context.Background(), time.Second)
	defer icancel()
	began := time.Now()
	if err := r.Interrupt(ictx); err != nil {
		t.Fatalf("interrupt with etcd down: %v (after %s)", err, time.Since(began).Round(time.Millisecond))
	}
	var _ clientv3.LeaseID
}

// The same campaign when the session is lost with etcd: once the node is fenced, the
// work must end too (the next session waits for it), not when etcd comes back.
func TestFenceEndsACampaignWithoutEtcd(t *testing.T) {
	cli, _, stopEtcd := sandboxtest.StoppableEtcdAt(t, sandboxtest.EtcdDir(t))
	other, err := concurrency.NewSession(cli, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	lead := concurrency.NewElection(other, "/test/coordinator/")
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := lead.Campaign(cctx, "other"); err != nil {
		t.Fatal(err)
	}
	cancel()
	var f fences
	var u upState
	campaigning := make(chan struct{}, 1)
	returned := make(chan time.Time, 8)
	campaign := func(ctx context.Context, s *concurrency.Session) error {
		defer func() { returned <- time.Now() }()
		e := concurrency.NewElection(s, "/test/coordinator/")
		select {
		case campaigning <- struct{}{}:
		default:
		}
		return e.Campaign(ctx, "this")
	}
	r, err := New(testConfig(cli, &f, &u, Work{Name: "coordinator", Run: campaign}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	<-campaigning
	time.Sleep(300 * time.Millisecond)
	go stopEtcd()
	sandboxtest.WaitFor(t, 10*time.Second, "a fence", func() bool { why, _ := f.get(); return len(why) > 0 })
	_, at := f.get()
	select {
	case ret := <-returned:
		if d := ret.Sub(at[0]); d > time.Second {
			t.Fatalf("the campaign returned %s after the fence", d.Round(time.Millisecond))
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the campaign had not returned 3 s after the fence (etcd still down)")
	}
}
