package session

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// lateLease renews a lease as the client does, but can make this process read a
// renewal's reply late, as a stalled process would (a GC pause, SIGSTOP, a paused
// VM): once armed, the next reply to arrive is held for hold before it is read, and
// every reply after it is lost, as if etcd had gone away just after answering.
type lateLease struct {
	clientv3.Lease
	hold time.Duration

	mu      sync.Mutex
	armed   bool
	held    bool      // the held reply has arrived
	arrived time.Time // when it arrived, before it was held
	delay   time.Duration
}

// arm holds the next reply for hold and loses every one after.
func (l *lateLease) arm(hold time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.armed, l.hold = true, hold
}

// slow reads every reply d late, from now on.
func (l *lateLease) slow(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delay = d
}

// reply says what becomes of a reply that arrived now: read after wait, or lost.
func (l *lateLease) reply() (wait time.Duration, lost bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !l.armed:
		return l.delay, false
	case l.held:
		return 0, true
	default:
		l.held, l.arrived = true, time.Now()
		return l.hold, false
	}
}

func (l *lateLease) heldArrival() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.arrived, l.held
}

func (l *lateLease) KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	in, err := l.Lease.KeepAlive(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan *clientv3.LeaseKeepAliveResponse)
	go func() {
		defer close(out)
		for resp := range in {
			wait, lost := l.reply()
			if lost {
				continue
			}
			time.Sleep(wait)
			select {
			case out <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

var errLost = errors.New("reply lost")

func (l *lateLease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	resp, err := l.Lease.KeepAliveOnce(ctx, id)
	if err != nil {
		return nil, err
	}
	wait, lost := l.reply()
	if lost {
		<-ctx.Done()
		return nil, errLost
	}
	time.Sleep(wait)
	return resp, nil
}

// Hole 6: a renewal's reply read late (the process stalled after the request went
// out) must not push the fence past the request's sending + session_ttl -
// fence_margin: etcd counts the lease's TTL from when it got the request, not from
// when this process read the answer. The reply here arrives and is then held for
// 900 ms before it is read (less than a renewal period: read, it extends the
// deadline the previous renewal set); every later reply is lost. The fence must
// come within session_ttl - fence_margin of the held reply's arrival (which is
// after its request was sent), not of its reading: timed from the reading, it came
// 900 ms later, when etcd may already have expired the lease.
func TestLateReplyDoesNotDelayTheFence(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	var f fences
	var u upState
	lease := &lateLease{Lease: cli.Lease}
	cfg := testConfig(cli, &f, &u, Work{Name: "w", Run: idle})
	cfg.Lease = lease
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	sandboxtest.WaitFor(t, 5*time.Second, "a session", func() bool { up, _, _ := u.get(); return up })
	time.Sleep(1500 * time.Millisecond)
	armed := time.Now()
	lease.arm(900 * time.Millisecond)
	limit := cfg.TTL - cfg.FenceMargin
	sandboxtest.WaitFor(t, 2*limit+3*time.Second, "a fence", func() bool { why, _ := f.get(); return len(why) > 0 })
	why, at := f.get()
	arrived, ok := lease.heldArrival()
	if !ok {
		t.Fatal("no reply was held")
	}
	if at[0].Before(armed) {
		t.Fatalf("fenced before any reply was late: %v", why[0])
	}
	// A tick of the check (limit/20) and some scheduling.
	if late := at[0].Sub(arrived.Add(limit)); late > limit/20+150*time.Millisecond {
		t.Fatalf("fenced %s after the held reply's arrival + session_ttl - fence_margin (%s): the deadline was timed from the late reading, not the sending (%v)",
			late.Round(time.Millisecond), limit, why[0])
	}
	if !errors.Is(why[0], ErrNotRenewed) {
		t.Fatalf("fenced for %v; want a late renewal", why[0])
	}
	t.Logf("fenced %s after the held reply arrived: %v", at[0].Sub(arrived).Round(time.Millisecond), why[0])
}

// Replies that all come back a while late (a busy etcd, a slow network) do not
// fence the node: renewals go out every ttl/3 whether or not the last one has
// answered yet.
func TestSlowRepliesDoNotFence(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	var f fences
	var u upState
	lease := &lateLease{Lease: cli.Lease}
	cfg := testConfig(cli, &f, &u, Work{Name: "w", Run: idle})
	cfg.Lease = lease
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	sandboxtest.WaitFor(t, 5*time.Second, "a session", func() bool { up, _, _ := u.get(); return up })
	lease.slow(600 * time.Millisecond)
	time.Sleep(6 * time.Second)
	if why, _ := f.get(); len(why) != 0 {
		t.Fatalf("fenced with every reply 600ms late: %v", why)
	}
	if up, _, n := u.get(); !up || n != 1 {
		t.Fatalf("session up %v after %d sessions; want the first still up", up, n)
	}
}
