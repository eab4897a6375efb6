package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Hooks runs the operator's commands around flows; a failing pre hook aborts the flow.
type Hooks interface {
	Run(ctx context.Context, call HookCall) error
}

// HookCall says which hook runs, and for which flow.
type HookCall struct {
	Stage          HookStage
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
	Node    string // this agent's node, the candidate's name in the election
	Store   *Store
	Servers *Servers
	// Policy is the policy of this agent's configuration file. The coordinator
	// decides with the cluster's policy (the policy key), creates that key from this
	// one when there is none, and decides with this one only while the key is
	// unreadable. See EffectivePolicy.
	Policy Policy
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
	// OnFlow, when set, is told of every failover or switchover this coordinator ran:
	// its kind, and done, refused or failed.
	OnFlow func(kind Action, result RequestState)
	Log    *zap.Logger
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

func (c *CoordinatorConfig) validate() error {
	switch {
	case c.Node == "":
		return errors.New("coordinator: node is required")
	case c.Store == nil:
		return errors.New("coordinator: store is required")
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
	if c.Tick <= 0 {
		c.Tick = 500 * time.Millisecond
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
		err := c.lead(lctx, s, CoordinatorGuard(e.Key(), e.Rev()))
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

// lead looks at the cluster on every change in etcd, and every Tick, until ctx ends.
func (c *Coordinator) lead(ctx context.Context, s *concurrency.Session, g Guard) error {
	wch := c.cfg.Store.Client().Watch(clientv3.WithRequireLeader(ctx), c.cfg.Store.Keys.Prefix, clientv3.WithPrefix())
	tick := time.NewTicker(c.cfg.Tick)
	defer tick.Stop()
	var last, lastPolicy string
	for {
		snap, err := c.cfg.Store.Load(ctx)
		var p Policy
		if err == nil {
			p, err = c.policy(ctx, &snap, &lastPolicy)
		}
		if err == nil {
			d := Decide(c.cfg.Now(), snap.View, p)
			if key := d.Action.String() + d.Reason; key != last {
				c.log.Info("decision", zap.Stringer("action", d.Action), zap.String("reason", d.Reason))
				last = key
			}
			if d.Action != NoAction {
				if err := c.act(ctx, s, g, snap, d); err != nil {
					c.log.Warn("action failed", zap.Stringer("action", d.Action), zap.Error(err))
				}
				last = ""
			}
		} else if ctx.Err() == nil {
			c.log.Warn("read cluster state or policy", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-wch:
			if !ok {
				wch = c.cfg.Store.Client().Watch(clientv3.WithRequireLeader(ctx), c.cfg.Store.Keys.Prefix, clientv3.WithPrefix())
			}
		case <-tick.C:
		}
	}
}

// policy returns the policy to decide with at this pass (EffectivePolicy): it creates
// the policy key from the own file's when there is none, and logs each change of the
// policy decided with, once. last holds what was logged.
func (c *Coordinator) policy(ctx context.Context, snap *Snapshot, last *string) (Policy, error) {
	if snap.Policy == nil && snap.PolicyErr == "" {
		cur, created, err := c.cfg.Store.CreatePolicy(ctx, PolicyRecord{Policy: c.cfg.Policy, SetBy: c.cfg.Node, At: c.cfg.Now().UTC()})
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
	p, src, why, err := EffectivePolicy(*snap, c.cfg.Policy)
	if err != nil {
		return Policy{}, err
	}
	if key := src.String() + p.String(); key != *last {
		if src == PolicyFromEtcd {
			c.log.Info("deciding with the cluster's policy", zap.Stringer("policy", p), zap.String("set_by", snap.Policy.SetBy))
		} else {
			c.log.Warn("deciding with this node's own policy", zap.String("why", why), zap.Stringer("policy", p))
		}
		*last = key
	}
	return p, nil
}

func (c *Coordinator) act(ctx context.Context, s *concurrency.Session, g Guard, snap Snapshot, d Decision) error {
	switch d.Action {
	case Bootstrap:
		n := snap.Nodes[d.To]
		p := Primary{Node: d.To, Addr: n.Addr, ServerID: n.ServerID, ServerUUID: n.ServerUUID, Epoch: 1, Since: c.cfg.Now().UTC()}
		if err := c.cfg.Store.BootstrapPrimary(ctx, g, p); err != nil {
			return err
		}
		c.log.Info("bootstrapped primary of record", zap.String("primary", d.To))
		return c.cfg.Store.AppendHistory(ctx, Event{Kind: EventBootstrap, To: d.To, Epoch: 1, Reason: d.Reason, Started: p.Since})
	case RefuseRequest:
		r := *snap.Request
		r.State, r.Error, r.Finished = RequestRefused, d.Reason, c.cfg.Now().UTC()
		c.log.Info("request refused", zap.String("request", r.ID), zap.String("reason", d.Reason))
		return c.cfg.Store.UpdateRequest(ctx, g, r)
	case Failover, Switchover:
		f := &flow{c: c, s: s, g: g, snap: snap, d: d, started: c.cfg.Now()}
		if d.Manual && snap.Request != nil {
			r := *snap.Request
			r.State = RequestRunning
			if err := c.cfg.Store.UpdateRequest(ctx, g, r); err != nil {
				return err
			}
			f.request = &r
		}
		ev, err := f.run(ctx)
		if c.cfg.OnFlow != nil {
			result := RequestDone
			var refused *refusal
			switch {
			case errors.As(err, &refused):
				result = RequestRefused
			case err != nil:
				result = RequestFailed
			}
			c.cfg.OnFlow(d.Action, result)
		}
		if f.request != nil {
			r := *f.request
			r.Steps, r.Finished = f.steps, c.cfg.Now().UTC()
			if err != nil {
				r.State, r.Error = RequestFailed, err.Error()
				var refused *refusal
				if errors.As(err, &refused) {
					r.State = RequestRefused
				}
			} else {
				r.State, r.Result = RequestDone, &ev
			}
			if uerr := c.cfg.Store.UpdateRequest(context.WithoutCancel(ctx), g, r); uerr != nil {
				c.log.Warn("record request result", zap.Error(uerr))
			}
		}
		return err
	}
	return nil
}
