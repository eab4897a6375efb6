// Package session keeps a node's etcd session and runs the node's work under it, in
// the spirit of etcd's concurrency.Session and client-go's leaderelection: one small
// type, Runner, that both the agent and the lab's hollow agents use.
//
// A Runner makes a session (a lease, wrapped in a concurrency.Session for the
// work's elections), runs every Work under it, watches the lease's renewals, and
// when the lease was not renewed for TTL - FenceMargin calls Fence, unless Failsafe
// keeps the node. Then it makes a session again: on the same lease while etcd still
// has it (TimeToLive), else on a new one.
//
// What a Runner guarantees:
//
//   - Fence is called once TTL - FenceMargin has passed since the latest renewal
//     that etcd acknowledged was SENT (on this process's monotonic clock, checked
//     every (TTL - FenceMargin)/20), unless Failsafe.Keep keeps the node; then
//     Failsafe.Kept runs until the next session. etcd expires a lease no earlier than
//     its TTL after it got the renewal, so the node is fenced before the lease (and
//     every key on it) can go, even when a reply was read late (a GC pause, SIGSTOP,
//     a paused VM).
//   - Only the renewal watch, ctx ending or Interrupt end a session. A Work that
//     returns on its own (a campaign cut by a stopping etcd member) is started again
//     within the same session after a pause: no error of the work can end the watch
//     and leave the node unfenced.
//   - OnDown is called the moment the renewal watch ends, before the work has
//     returned. Every etcd call the work makes through the session's client (an
//     election's) ends when the session does.
//   - No Work runs while HeldOff holds the node off: it is asked before a session is
//     made and again once it is made, before any Work starts. Interrupt returns nil
//     only once every Work has returned.
//   - A session is made again on the same lease while etcd still has it, and tried
//     at least every second, so that every lease is renewed within the TTL of
//     etcd's return (etcd gives every lease its full TTL again when a new leader is
//     elected).
//   - Every etcd call the Runner makes has a deadline.
//
// What it does not guarantee: that Fence itself works (it must act without etcd,
// within FenceMargin); anything of a process frozen at the wrong moment (between
// the deadline and the fence: its fence comes when it thaws, after the lease may
// have expired); that Work stops in time (Interrupt says when it did not); that a
// node is not fenced when every renewal takes longer than TTL - FenceMargin - TTL/3
// to come back (1 s with a 3 s TTL): etcd may be expiring the lease meanwhile.
package session

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/failpoint"
)

// Work is a part of a node that runs under its etcd session: the reconciler, the
// coordinator. Run blocks until ctx ends or the session is lost.
type Work struct {
	Name string
	Run  func(ctx context.Context, s *concurrency.Session) error
}

// ErrNotRenewed is wrapped by the error Fence gets when the lease was not renewed
// within TTL - FenceMargin.
var ErrNotRenewed = errors.New("etcd session not renewed in time")

// Failsafe lets a node whose lease renewal is late be kept instead of fenced (the
// agent's failsafe mode). A nil Failsafe always fences.
type Failsafe interface {
	// Lead is how long before the fence deadline Late starts to be called.
	Lead() time.Duration
	// Late is called at every check from Lead before the fence deadline on, with the
	// time since the latest renewal, from the renewal watch: it must return within
	// Lead, and it may ask whether the node could be kept.
	Late(ctx context.Context, lease clientv3.LeaseID, since time.Duration)
	// Keep is asked once the deadline passed, instead of fencing at once: true keeps
	// the node writable without etcd. late says how late the renewal is.
	Keep(lease clientv3.LeaseID, late error) bool
	// Kept runs while the node is kept, until ctx ends (a new session is up, or the
	// Runner stops). It returns an error when the node must be fenced now: Fence is
	// called with it.
	Kept(ctx context.Context, lease clientv3.LeaseID) error
}

// Config configures a Runner. Client, TTL, FenceMargin, CallTimeout, Fence and at
// least one Work are required.
type Config struct {
	Client *clientv3.Client
	// TTL is the lease's TTL (the agent's session_ttl): whole seconds.
	TTL time.Duration
	// FenceMargin: Fence is called when the lease was not renewed for TTL -
	// FenceMargin, so that the node is fenced before etcd can expire the lease.
	FenceMargin time.Duration
	// CallTimeout bounds every etcd call the Runner makes.
	CallTimeout time.Duration
	Work        []Work
	// Fence stops the node taking writes, without etcd. why wraps ErrNotRenewed when
	// the lease was not renewed in time.
	Fence func(ctx context.Context, why error)
	// Failsafe may keep the node instead of fencing it; nil: never.
	Failsafe Failsafe
	// HeldOff says how long the node must still make no session and run no work,
	// and why; 0 when nothing holds it off. nil: never.
	HeldOff func() (left time.Duration, why string)
	// OnUp is told of every session made: its lease, and whether it is the previous
	// session's. OnDown is told when it ends, with why (nil when ctx ended or by
	// Interrupt).
	OnUp   func(lease clientv3.LeaseID, resumed bool)
	OnDown func(why error)
	// Release runs when ctx ends, before the lease is revoked (the agent lets go of
	// the leader key at once).
	Release func(ctx context.Context, lease clientv3.LeaseID)
	Log     *zap.Logger
	// Lease is what renews the lease: Client's own when nil. Tests wrap it.
	Lease clientv3.Lease
}

func (c *Config) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("session: client is required")
	case c.TTL < time.Second || c.TTL%time.Second != 0:
		return fmt.Errorf("session: ttl (%s): must be whole seconds, at least 1s (an etcd lease TTL is)", c.TTL)
	case c.FenceMargin <= 0 || c.FenceMargin >= c.TTL:
		return fmt.Errorf("session: fence_margin (%s): must be positive and less than the ttl (%s)", c.FenceMargin, c.TTL)
	case c.CallTimeout <= 0:
		return fmt.Errorf("session: call_timeout (%s): must be positive", c.CallTimeout)
	case c.Fence == nil:
		return errors.New("session: fence is required")
	case len(c.Work) == 0:
		return errors.New("session: work is required")
	}
	names := map[string]bool{}
	for i, w := range c.Work {
		if w.Name == "" || w.Run == nil {
			return fmt.Errorf("session: work[%d]: a name and a run function are required", i)
		}
		if names[w.Name] {
			return fmt.Errorf("session: work[%d]: the name %q is taken", i, w.Name)
		}
		names[w.Name] = true
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Lease == nil {
		c.Lease = c.Client.Lease
	}
	return nil
}

// Runner keeps one node's etcd session: see the package comment.
type Runner struct {
	cfg Config
	log *zap.Logger

	mu  sync.Mutex
	cur *running // the current session's work; nil when none runs
}

// running is one session's work.
type running struct {
	cancel context.CancelFunc // ends the session: its work and its renewal watch
	done   chan struct{}      // closed once every Work has returned

	mu   sync.Mutex
	left map[string]bool // the Work not returned yet
}

// names are the Work not returned yet, for an error.
func (w *running) names() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n []string
	for name := range w.left {
		n = append(n, name)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// begin registers a new session's work, unless HeldOff holds the node off: a
// promise given while the session was being made is honoured before any work
// starts. Interrupt and begin take r.mu in turn, so a hold-off recorded before
// Interrupt is called is either seen here or finds the work registered.
func (r *Runner) begin(cancel context.CancelFunc) (*running, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if left, why := r.heldOff(); left > 0 {
		return nil, why
	}
	w := &running{cancel: cancel, done: make(chan struct{}), left: map[string]bool{}}
	for _, wk := range r.cfg.Work {
		w.left[wk.Name] = true
	}
	r.cur = w
	return w, ""
}

func (r *Runner) end(w *running) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == w {
		r.cur = nil
	}
}

// Interrupt ends the current session, if one runs, without fencing (the lease is
// left for the next session to resume), and returns once every Work has returned,
// or an error naming the Work still running when ctx ends first. Together with
// HeldOff it is how a node keeps a promise to do nothing: once HeldOff says so and
// Interrupt has returned nil, no Work runs, and none starts until HeldOff says it
// may (the Runner looks before making a session and again once it is made). Work
// that goes on past a failed Interrupt is stopped later, but did not stop in time.
func (r *Runner) Interrupt(ctx context.Context) error {
	r.mu.Lock()
	w := r.cur
	r.mu.Unlock()
	if w == nil {
		return nil
	}
	w.cancel()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("session work still running: %s: %w", w.names(), ctx.Err())
	}
}

// New checks cfg and returns a Runner; it connects to nothing yet.
func New(cfg Config) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: cfg.Log}, nil
}

// limit is how long the lease may go unrenewed before the node is fenced.
func (r *Runner) limit() time.Duration { return r.cfg.TTL - r.cfg.FenceMargin }

// Run keeps a session and runs the work under it until ctx ends; it returns nil
// then. On a clean stop it runs Release and revokes the lease.
func (r *Runner) Run(ctx context.Context) error {
	var lease clientv3.LeaseID
	var kept *keeper
	defer func() { kept.stop() }()
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil
		}
		r.waitHoldoff(ctx)
		sctx, cancel := context.WithCancel(ctx)
		s, expiry, err := r.session(ctx, sctx, lease)
		if err != nil {
			cancel()
			// Not longer than a second: when etcd is back, every agent must renew its
			// lease within the TTL of etcd's new leader, or its keys go and a failover
			// may follow for nothing.
			wait := min(backoff(attempt), time.Second)
			if kept.running() {
				// A kept node takes its session back as soon as etcd answers.
				wait = min(wait, r.limit()/4)
				r.log.Debug("etcd session", zap.Error(err))
			} else {
				r.log.Warn("etcd session", zap.Error(err))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		attempt = 0
		kept.stop() // the session takes over from failsafe mode
		kept = nil
		resumed := s.Lease() == lease
		lease = s.Lease()
		w, why := r.begin(cancel)
		if w == nil {
			// A hold-off began while the session was being made: no work under it.
			r.log.Warn("etcd session made during a hold-off: left unused", zap.String("why", why))
			cancel()
			s.Orphan()
			continue
		}
		if r.cfg.OnUp != nil {
			r.cfg.OnUp(lease, resumed)
		}
		r.log.Info("etcd session", zap.String("lease", fmt.Sprintf("%x", lease)), zap.Bool("resumed", resumed))
		kept, err = r.underSession(ctx, sctx, s, expiry, w)
		r.end(w)
		cancel()
		if ctx.Err() != nil {
			s.Orphan()
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.CallTimeout)
			if r.cfg.Release != nil {
				// A clean stop hands what is on the lease over at once.
				r.cfg.Release(rctx, lease)
			}
			_, _ = r.cfg.Client.Revoke(rctx, lease)
			rcancel()
			return nil
		}
		if left, why := r.heldOff(); err == nil && left > 0 {
			err = errors.New(why) // ended by a hold-off
		}
		r.log.Warn("etcd session ended", zap.Error(err))
		// Not revoked: the next session resumes the lease if etcd still has it.
		s.Orphan()
	}
}

func (r *Runner) heldOff() (time.Duration, string) {
	if r.cfg.HeldOff == nil {
		return 0, ""
	}
	return r.cfg.HeldOff()
}

// waitHoldoff returns once nothing holds the node off (a hold-off may be extended
// meanwhile), or ctx ended.
func (r *Runner) waitHoldoff(ctx context.Context) {
	for {
		left, _ := r.heldOff()
		if left <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(left):
		}
	}
}

// session makes an etcd session: on lease old while etcd still has it, else on a
// new lease. Each call to etcd is bounded. It returns, with the session, the
// earliest time etcd may expire its lease (this process's monotonic clock): the
// lease's remaining TTL counted from when the call that read it was sent. The
// session lives until sctx ends, and its client is workClient's.
func (r *Runner) session(ctx, sctx context.Context, old clientv3.LeaseID) (*concurrency.Session, time.Time, error) {
	failpoint.Hit(failpoint.SessionCreate)
	cli := r.cfg.Client
	wcli := workClient(cli, sctx)
	ttl := int(r.cfg.TTL.Seconds())
	if old != clientv3.NoLease {
		sent := time.Now()
		tctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
		resp, err := cli.TimeToLive(tctx, old)
		cancel()
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("read lease %x: %w", old, err)
		}
		if resp.TTL > 0 {
			// etcd truncates the remaining TTL to whole seconds: never later than it is.
			s, err := concurrency.NewSession(wcli, concurrency.WithLease(old), concurrency.WithTTL(ttl), concurrency.WithContext(sctx))
			return s, sent.Add(min(time.Duration(resp.TTL)*time.Second, r.cfg.TTL)), err
		}
	}
	sent := time.Now()
	gctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	resp, err := cli.Grant(gctx, int64(ttl))
	cancel()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("grant a lease: %w", err)
	}
	s, err := concurrency.NewSession(wcli, concurrency.WithLease(resp.ID), concurrency.WithTTL(ttl), concurrency.WithContext(sctx))
	return s, sent.Add(min(time.Duration(resp.TTL)*time.Second, r.cfg.TTL)), err
}

func backoff(attempt int) time.Duration { return 200 * time.Millisecond << min(attempt, 4) }

// errKept ends a session whose renewal was late while Failsafe keeps the node.
var errKept = errors.New("etcd session not renewed in time; failsafe mode keeps the node")

// underSession runs the work and the renewal watch until the session ends or was
// not renewed in time. The node is fenced then, unless Failsafe keeps it: its
// keeper then starts at once, under the Runner's context actx. The session is
// reported down the moment the watch ends; underSession returns once every Work
// has returned.
func (r *Runner) underSession(actx, ctx context.Context, s *concurrency.Session, expiry time.Time, w *running) (k *keeper, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, wk := range r.cfg.Work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runWork(ctx, s, wk)
			w.mu.Lock()
			delete(w.left, wk.Name)
			w.mu.Unlock()
		}()
	}
	err = r.watchRenewal(ctx, s, expiry)
	if r.cfg.OnDown != nil {
		r.cfg.OnDown(err)
	}
	switch {
	case errors.Is(err, errKept):
		k = r.startKeeper(actx, s.Lease())
	case err != nil:
		r.cfg.Fence(context.WithoutCancel(ctx), err)
	}
	// The whole session ends, not only its work's context: the work's calls to etcd
	// through the session (workClient) end with it, and so does its Done.
	w.cancel()
	cancel()
	wg.Wait()
	close(w.done)
	return k, err
}

// runWork runs w until ctx ends or the session is lost, starting it again (after a
// pause) whenever it ends before. It never starts w once ctx ended.
func (r *Runner) runWork(ctx context.Context, s *concurrency.Session, w Work) {
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return
		}
		err := w.Run(ctx, s)
		select {
		case <-ctx.Done():
			return
		case <-s.Done():
			return
		default:
		}
		wait := min(backoff(attempt), time.Second)
		r.log.Warn(w.Name+" stopped; starting it again in the same etcd session", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return
		case <-s.Done():
			return
		case <-time.After(wait):
		}
	}
}

// watchRenewal renews the session's lease and returns an error when it has not
// been renewed for TTL - FenceMargin: the lease may expire soon, and with it every
// key on it, so the node must stop taking writes before another can start. It
// returns errKept when Failsafe keeps the node instead.
//
// The deadline is timed from when each renewal was SENT: etcd expires the lease no
// earlier than its TTL after it got the request, and no earlier than that after it
// was sent. A reply read late (the process stalled: a GC pause, SIGSTOP, a paused
// VM) confirms only its request's sending, so it cannot push the fence past etcd's
// expiry. The client's KeepAlive channel cannot say when the request behind a
// reply went out, so this renews the lease itself: a KeepAliveOnce every TTL/3,
// whether or not the previous one has answered, the time taken before each call.
// These are the lease's only renewals: concurrency.Session's own keep-alive is
// turned off (workClient), since a second stream of renewals beside them cost etcd
// three times the requests of an idle agent.
// expiry is the earliest time etcd may expire the lease when the watch starts.
func (r *Runner) watchRenewal(ctx context.Context, s *concurrency.Session, expiry time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the renewals under way
	limit := r.limit()
	fs := r.cfg.Failsafe
	var early time.Duration
	if fs != nil {
		// What Late learns must be in before the limit: it starts Lead (and a tick)
		// before it.
		early = limit - fs.Lead() - limit/20
	}
	type renewal struct {
		sent time.Time // monotonic, taken before the request
		ttl  time.Duration
		err  error
	}
	renewed := make(chan renewal, 4)
	renew := func() {
		sent := time.Now()
		// A reply later than the limit could not move the deadline past now.
		rctx, rcancel := context.WithTimeout(ctx, limit)
		resp, err := r.cfg.Lease.KeepAliveOnce(rctx, s.Lease())
		rcancel()
		rn := renewal{sent: sent, err: err}
		if err == nil {
			rn.ttl = time.Duration(resp.TTL) * time.Second
		}
		select {
		case renewed <- rn:
		case <-ctx.Done():
		}
	}
	go renew()
	every := time.NewTicker(r.cfg.TTL / 3)
	defer every.Stop()
	t := time.NewTicker(limit / 20)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			if ctx.Err() != nil {
				return nil // ended by ctx: the session's Done follows it
			}
			return errors.New("etcd session lost")
		case <-every.C:
			go renew()
		case rn := <-renewed:
			switch {
			case rn.err == nil:
				if e := rn.sent.Add(min(rn.ttl, r.cfg.TTL)); e.After(expiry) {
					expiry = e
				}
			case errors.Is(rn.err, rpctypes.ErrLeaseNotFound):
				return fmt.Errorf("etcd lease %x gone: %w", s.Lease(), rn.err)
			}
		case <-t.C:
			// Since the latest renewal that etcd acknowledged was sent.
			since := time.Since(expiry.Add(-r.cfg.TTL))
			if fs != nil && since > early {
				fs.Late(ctx, s.Lease(), since)
			}
			if deadline := expiry.Add(-r.cfg.FenceMargin); !time.Now().Before(deadline) {
				since := time.Since(expiry.Add(-r.cfg.TTL))
				late := fmt.Errorf("%w: not renewed for %s (limit %s = session_ttl - fence_margin, from the renewal's sending)", ErrNotRenewed, since.Round(time.Millisecond), limit)
				if fs != nil && fs.Keep(s.Lease(), late) {
					return errKept
				}
				return late
			}
		}
	}
}

// keeper runs Failsafe.Kept between sessions.
type keeper struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *Runner) startKeeper(ctx context.Context, lease clientv3.LeaseID) *keeper {
	kctx, cancel := context.WithCancel(ctx)
	k := &keeper{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		if err := r.cfg.Failsafe.Kept(kctx, lease); err != nil && kctx.Err() == nil {
			r.cfg.Fence(context.WithoutCancel(kctx), err)
		}
	}()
	return k
}

// running says whether the keeper still keeps the node; a nil keeper does not.
func (k *keeper) running() bool {
	if k == nil {
		return false
	}
	select {
	case <-k.done:
		return false
	default:
		return true
	}
}

// stop ends the keeper and waits for it; a nil keeper does nothing.
func (k *keeper) stop() {
	if k == nil {
		return
	}
	k.cancel()
	<-k.done
}
