package failover

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// Hooks runs the operator's commands around flows; a failing pre hook aborts the flow.
type Hooks interface {
	Run(ctx context.Context, call HookCall) error
}

// HookCall says which hook runs, and for which flow.
type HookCall struct {
	Stage          cluster.HookStage
	OldPrimary     string
	NewPrimary     string
	NewPrimaryAddr string
	Epoch          uint64
	Reason         string
	Result         string // post hooks: "done" or "failed"
	Error          string
}

// CoordinatorConfig configures a Coordinator.
type CoordinatorConfig struct {
	Node  string // this agent's node, the candidate's name in the election
	Store *cluster.Store
	// Cluster is where the elected coordinator looks at the cluster on every change
	// and Tick (the agent's one cache, shared with its reconciler). What a flow must
	// read fresh (the servers, its guarded transactions) it reads fresh.
	Cluster cluster.Reader
	Servers ServerPool
	// Policy is the policy of this agent's configuration file. The coordinator
	// decides with the cluster's policy (the policy key), creates that key from this
	// one when there is none, and decides with this one only while the key is
	// unreadable. See EffectivePolicy.
	Policy cluster.Policy
	// Repl is how replicas connect to a primary (account, TLS): the coordinator points
	// the replicas whose agent is gone at a new primary with it.
	Repl replication.Source
	// CatchupTimeout bounds the wait for the candidate to apply its relay log.
	CatchupTimeout time.Duration
	// FenceTimeout bounds fencing the old primary over the network.
	FenceTimeout time.Duration
	// LongWrite: a switchover is refused while a write transaction has been open on
	// the primary this long (it would keep writes blocked until it ends).
	LongWrite time.Duration
	// PromoteTimeout bounds the wait for the new primary's agent to take the leader
	// key once the commit is made (it is recorded, not waited for, past that).
	PromoteTimeout time.Duration
	// Tick is how often the state is looked at without a change in etcd.
	Tick  time.Duration
	Hooks Hooks // may be nil
	// RetryMin and RetryMax bound the wait before an automatic failover that did not
	// complete (refused or failed) is tried again: RetryMin, doubled at each further
	// try, at most RetryMax (DefaultRetryMin, DefaultRetryMax when zero). Each try
	// announces an intent, stops replication and kills the primary's client
	// connections, so tries must not follow at once.
	RetryMin, RetryMax time.Duration
	// OnFlow, when set, is told of every failover or switchover this coordinator ran:
	// its kind, and done, refused or failed.
	OnFlow func(kind cluster.Action, result cluster.RequestState)
	// Salvage gets a failed primary's last transactions from its agent and applies
	// them to the candidate before the commit (salvage.go); nil: no salvage, and
	// each failover's history says so.
	Salvage Salvager
	// SalvageTimeout bounds the salvage step; DefaultSalvageTimeout when zero.
	SalvageTimeout time.Duration
	// HeldOff, when it returns a reason, forbids announcing a flow and committing one
	// (a failsafe promise, as reconcile.ReconcilerConfig.HeldOff). nil: never.
	HeldOff func() string
	Log     *zap.Logger
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

func (c CoordinatorConfig) heldOff() string {
	if c.HeldOff == nil {
		return ""
	}
	return c.HeldOff()
}

func (c *CoordinatorConfig) validate() error {
	switch {
	case c.Node == "":
		return errors.New("coordinator: node is required")
	case c.Store == nil:
		return errors.New("coordinator: store is required")
	case c.Cluster == nil:
		return errors.New("coordinator: cluster reader is required")
	case c.Servers == nil:
		return errors.New("coordinator: servers is required")
	case c.CatchupTimeout <= 0:
		return errors.New("coordinator: catchup_timeout must be positive")
	}
	if err := c.Policy.Validate(); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	if c.FenceTimeout <= 0 {
		c.FenceTimeout = time.Second
	}
	if c.LongWrite <= 0 {
		c.LongWrite = 5 * time.Second
	}
	if c.PromoteTimeout <= 0 {
		c.PromoteTimeout = 15 * time.Second
	}
	if c.SalvageTimeout <= 0 {
		c.SalvageTimeout = DefaultSalvageTimeout
	}
	if c.Tick <= 0 {
		c.Tick = 500 * time.Millisecond
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.RetryMax < c.RetryMin {
		return fmt.Errorf("coordinator: retry_max (%s) must not be below retry_min (%s)", c.RetryMax, c.RetryMin)
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Coordinator is elected among the agents; the elected one decides and carries out
// failovers and switchovers. It acts only while it leads, and every write it makes
// is guarded by its election key, so a deposed coordinator's writes fail.
type Coordinator struct {
	cfg CoordinatorConfig
	log *zap.Logger
}

// NewCoordinator checks the configuration and returns a Coordinator.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Coordinator{cfg: cfg, log: cfg.Log.With(zap.String("component", "coordinator"))}, nil
}

// Run campaigns in the session's election and leads while elected, until ctx ends or
// the session is lost. It blocks.
func (c *Coordinator) Run(ctx context.Context, s *concurrency.Session) error {
	e := concurrency.NewElection(s, c.cfg.Store.Keys.Coordinator())
	for {
		if err := e.Campaign(ctx, c.cfg.Node); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("campaign for coordinator: %w", err)
		}
		c.log.Info("elected coordinator", zap.Int64("rev", e.Rev()))
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.Done():
			case <-lctx.Done():
			}
			cancel()
		}()
		err := c.lead(lctx, s, cluster.CoordinatorGuard(e.Key(), e.Rev()))
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = e.Resign(rctx)
		rcancel()
		c.log.Info("no longer coordinator", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			return errors.New("coordinator: etcd session lost")
		default:
		}
	}
}

// Default bounds of the wait between tries of an automatic failover.
const (
	DefaultRetryMin = 2 * time.Second
	DefaultRetryMax = time.Minute
)

// retry spaces out the tries of an automatic failover of one primary (node and
// epoch) that did not complete: RetryMin after the first, doubling, at most RetryMax.
// A new primary of record starts afresh. It reads no clock: the caller passes now.
type retry struct {
	min, max time.Duration
	primary  cluster.Primary // whose failover is being retried
	tries    int             // tries that did not complete
	wait     time.Duration   // the wait after the latest
	next     time.Time       // no try before this
	lastErr  string
}

// hold says how long to wait before the next try to fail over p, 0 when it may
// start now.
func (r *retry) hold(now time.Time, p cluster.Primary) time.Duration {
	if r.tries == 0 || r.primary.Node != p.Node || r.primary.Epoch != p.Epoch {
		return 0
	}
	if d := r.next.Sub(now); d > 0 {
		return d
	}
	return 0
}

// failed records a try that did not complete.
func (r *retry) failed(now time.Time, p cluster.Primary, err error) {
	if r.primary.Node != p.Node || r.primary.Epoch != p.Epoch {
		r.tries = 0
	}
	r.primary, r.lastErr = p, err.Error()
	wait := r.min
	for i := 0; i < r.tries && wait < r.max; i++ {
		wait *= 2
	}
	r.wait = min(wait, r.max)
	r.tries++
	r.next = now.Add(r.wait)
}

// done forgets the tries: the failover completed.
func (r *retry) done() { *r = retry{min: r.min, max: r.max} }

// verdictClock remembers when this coordinator first saw the primary's current
// verdict, on its own clock (View.PrimaryVerdictSeen): the primary's VerdictSince
// is stamped by the primary's clock, and comparing it with the coordinator's would
// stretch or shrink the semi-sync grace by their skew. A new coordinator starts
// with none: its first sight of the verdict starts the grace again (at most
// SemiSyncGrace after its election).
type verdictClock struct {
	node    string
	verdict detector.Verdict
	since   time.Time // the primary's VerdictSince, as it published it
	seen    time.Time // when this coordinator first saw that verdict
}

// observe notes the primary's published status at now and returns when its
// current verdict was first seen; zero when the primary's agent publishes none.
// An agent gone and back with the same verdict keeps its first sight.
func (c *verdictClock) observe(now time.Time, v cluster.View) time.Time {
	ps, ok := v.Nodes[v.Primary.Node]
	if v.Primary.Node == "" || !ok {
		return time.Time{}
	}
	if c.seen.IsZero() || c.node != ps.Node || c.verdict != ps.Verdict || !c.since.Equal(ps.VerdictSince) {
		*c = verdictClock{node: ps.Node, verdict: ps.Verdict, since: ps.VerdictSince, seen: now}
	}
	return c.seen
}

// lead looks at the cluster on every change in etcd, and every Tick, until ctx ends.
func (c *Coordinator) lead(ctx context.Context, s *concurrency.Session, g cluster.Guard) error {
	changes, stop := c.cfg.Cluster.Subscribe(nil)
	defer stop()
	// While it leads, the coordinator also fences the servers no agent watches
	// (guard): a deposed primary whose fence failed stays writable otherwise.
	gctx, stopGuard := context.WithCancel(ctx)
	var guarding sync.WaitGroup
	guarding.Add(1)
	go func() {
		defer guarding.Done()
		c.guard(gctx)
	}()
	defer func() {
		stopGuard()
		guarding.Wait()
	}()
	tick := time.NewTicker(c.cfg.Tick)
	defer tick.Stop()
	var last, lastPolicy string
	var published cluster.CoordinatorStatus
	rt := retry{min: c.cfg.RetryMin, max: c.cfg.RetryMax}
	var vc verdictClock
	for {
		snap, err := c.read(ctx)
		var p cluster.Policy
		if err == nil {
			p, err = c.policy(ctx, &snap, &lastPolicy)
		}
		if err == nil && c.withdrawLeftover(ctx, s.Lease(), g, snap) {
			snap, err = c.read(ctx)
		}
		if err == nil {
			c.recordMembers(ctx, g, snap)
			now := c.cfg.Now()
			snap.View.PrimaryVerdictSeen = vc.observe(now, snap.View)
			d := Decide(now, snap.View, p)
			if d.Action == cluster.Failover && !d.Manual {
				if wait := rt.hold(now, snap.Primary); wait > 0 {
					d = cluster.Decision{Action: cluster.NoAction, Reason: fmt.Sprintf("%s; failover try %d did not complete (%s): try %d waits %s, until %s",
						d.Reason, rt.tries, rt.lastErr, rt.tries+1, rt.wait, rt.next.UTC().Format(time.RFC3339))}
				}
			}
			if key := d.Action.String() + d.Reason; key != last {
				c.log.Info("decision", zap.Stringer("action", d.Action), zap.String("reason", d.Reason))
				last = key
			}
			st := cluster.CoordinatorStatus{Node: c.cfg.Node, Action: d.Action.String(), Reason: d.Reason}
			if rt.tries > 0 && rt.primary.Node == snap.Primary.Node && rt.primary.Epoch == snap.Primary.Epoch {
				st.Tries, st.LastError, st.RetryAt = rt.tries, rt.lastErr, rt.next.UTC()
			}
			if st != published {
				if err := c.cfg.Store.PutDecision(ctx, g, s.Lease(), st); err != nil {
					c.log.Debug("publish decision", zap.Error(err))
				} else {
					published = st
				}
			}
			if d.Action != cluster.NoAction {
				err := c.act(ctx, s, g, snap, d, p)
				if err != nil {
					c.log.Warn("action failed", zap.Stringer("action", d.Action), zap.Error(err))
				}
				if d.Action == cluster.Failover && !d.Manual {
					if err != nil {
						rt.failed(c.cfg.Now(), snap.Primary, err)
						c.log.Info("automatic failover will be tried again", zap.Int("tries", rt.tries), zap.Time("not_before", rt.next))
					} else {
						rt.done()
					}
				}
				last = ""
			}
		} else if ctx.Err() == nil {
			c.log.Warn("read cluster state or policy", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changes:
		case <-tick.C:
		}
	}
}

// read is the cluster's state for a look (never older than this agent's own latest
// write, e.g. a flow's commit).
// withdrawLeftover deletes an intent on this coordinator's own lease, and says
// whether it did. Between two passes no flow of this coordinator runs (act runs each
// to its end), so such an intent is one a flow could not withdraw: etcd did not
// answer the delete in time. Left there it would live as long as this session, every
// decision would wait for a flow "in progress" and the old primary's agent would keep
// its server fenced. The delete is guarded like the flow's own (the intent unchanged,
// this coordinator still elected); the reconcilers then restart the replication the
// flow stopped. An intent on another lease is another coordinator's: it vanishes with
// that coordinator's session.
func (c *Coordinator) withdrawLeftover(ctx context.Context, lease clientv3.LeaseID, g cluster.Guard, snap cluster.Snapshot) bool {
	if snap.IntentModRev == 0 || lease == clientv3.NoLease || snap.IntentLease != lease {
		return false
	}
	err := c.cfg.Store.DeleteIntent(ctx, g, snap.IntentModRev)
	if err != nil {
		c.log.Warn("withdraw a leftover intent of this coordinator's", zap.Int64("intent_rev", snap.IntentModRev), zap.Error(err))
		return false
	}
	what := "unreadable intent"
	if in := snap.Intent; in != nil {
		what = fmt.Sprintf("%s from %s at epoch %d", in.Kind, in.From, in.Epoch)
	}
	c.log.Warn("withdrew a leftover intent of this coordinator's: its flow ended without withdrawing it", zap.String("intent", what))
	return true
}

func (c *Coordinator) read(ctx context.Context) (cluster.Snapshot, error) {
	return c.cfg.Cluster.Snapshot(ctx)
}

// policy returns the policy to decide with at this pass (EffectivePolicy): it creates
// the policy key from the own file's when there is none, and logs each change of the
// policy decided with, once. last holds what was logged.
func (c *Coordinator) policy(ctx context.Context, snap *cluster.Snapshot, last *string) (cluster.Policy, error) {
	if snap.Policy == nil && snap.PolicyErr == "" {
		cur, created, err := c.cfg.Store.CreatePolicy(ctx, cluster.PolicyRecord{Policy: c.cfg.Policy, SetBy: c.cfg.Node, At: c.cfg.Now().UTC()})
		switch {
		case err != nil:
			c.log.Warn("create the cluster's policy", zap.Error(err))
		case created:
			c.log.Info("created the cluster's policy from this node's file", zap.Stringer("policy", cur.Policy))
			snap.Policy = cur
		default:
			snap.Policy = cur
		}
	}
	p, src, why, err := cluster.EffectivePolicy(*snap, c.cfg.Policy)
	if err != nil {
		return cluster.Policy{}, err
	}
	if key := src.String() + p.String(); key != *last {
		if src == cluster.PolicyFromEtcd {
			c.log.Info("deciding with the cluster's policy", zap.Stringer("policy", p), zap.String("set_by", snap.Policy.SetBy))
		} else {
			c.log.Warn("deciding with this node's own policy", zap.String("why", why), zap.Stringer("policy", p))
		}
		*last = key
	}
	return p, nil
}

// recordMembers keeps members/ in line with the live agents' addresses, so that a
// node whose agent dies is still known to the next failover.
func (c *Coordinator) recordMembers(ctx context.Context, g cluster.Guard, snap cluster.Snapshot) {
	for _, n := range sortedNodes(snap.Nodes) {
		if n.Addr == "" {
			continue
		}
		old, known := snap.Members[n.Node]
		m := cluster.Member{Node: n.Node, Addr: n.Addr, ServerID: n.ServerID, ServerUUID: n.ServerUUID, Agent: n.Agent}
		if m.Agent == "" {
			m.Agent = old.Agent
		}
		if !n.ServerRead {
			m.ServerID, m.ServerUUID = old.ServerID, old.ServerUUID
		}
		if known && old == m {
			continue
		}
		if err := c.cfg.Store.PutMember(ctx, g, m); err != nil {
			c.log.Debug("record member", zap.String("node", n.Node), zap.Error(err))
		}
	}
}

// act carries out d; p is the policy it was decided with.
func (c *Coordinator) act(ctx context.Context, s *concurrency.Session, g cluster.Guard, snap cluster.Snapshot, d cluster.Decision, p cluster.Policy) error {
	switch d.Action {
	case cluster.Bootstrap:
		n := snap.Nodes[d.To]
		p := cluster.Primary{Node: d.To, Addr: n.Addr, ServerID: n.ServerID, ServerUUID: n.ServerUUID, Epoch: 1, Since: c.cfg.Now().UTC()}
		if err := c.cfg.Store.BootstrapPrimary(ctx, g, p); err != nil {
			return err
		}
		c.log.Info("bootstrapped primary of record", zap.String("primary", d.To))
		return c.cfg.Store.AppendHistory(ctx, cluster.Event{Kind: cluster.EventBootstrap, To: d.To, Epoch: 1, Reason: d.Reason, Started: p.Since})
	case cluster.RefuseRequest:
		r := *snap.Request
		r.State, r.Error, r.Finished = cluster.RequestRefused, d.Reason, c.cfg.Now().UTC()
		c.log.Info("request refused", zap.String("request", r.ID), zap.String("reason", d.Reason))
		return c.cfg.Store.UpdateRequest(ctx, g, r)
	case cluster.Failover, cluster.Switchover:
		f := &flow{c: c, s: s, g: g, snap: snap, d: d, policy: p, started: c.cfg.Now()}
		if d.Manual && snap.Request != nil {
			r := *snap.Request
			r.State = cluster.RequestRunning
			if err := c.cfg.Store.UpdateRequest(ctx, g, r); err != nil {
				return err
			}
			f.request = &r
		}
		ev, err := f.run(ctx)
		if c.cfg.OnFlow != nil {
			result := cluster.RequestDone
			var refused *refusal
			switch {
			case errors.As(err, &refused):
				result = cluster.RequestRefused
			case err != nil:
				result = cluster.RequestFailed
			}
			c.cfg.OnFlow(d.Action, result)
		}
		if f.request != nil {
			r := *f.request
			r.Steps, r.Finished = f.steps, c.cfg.Now().UTC()
			if err != nil {
				r.State, r.Error = cluster.RequestFailed, err.Error()
				var refused *refusal
				if errors.As(err, &refused) {
					r.State = cluster.RequestRefused
				}
			} else {
				r.State, r.Result = cluster.RequestDone, &ev
			}
			if uerr := c.cfg.Store.UpdateRequest(context.WithoutCancel(ctx), g, r); uerr != nil {
				c.log.Warn("record request result", zap.Error(uerr))
			}
		}
		return err
	}
	return nil
}
