package failover

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
)

// GuardEvery is how often the elected coordinator looks at the servers that no
// agent watches (guardRound).
const GuardEvery = 2 * time.Second

// unguarded lists the members whose server nobody else fences: their agent is not
// running, and they are not the primary of record. A deposed primary whose fence
// failed during the failover (its server frozen or cut off, its agent dead) is one
// of them: when it comes back it is still writable, and only the coordinator can
// reach it. None before the first primary of record: nothing is deposed yet.
func unguarded(snap cluster.Snapshot) []cluster.Member {
	if snap.Primary.Node == "" {
		return nil
	}
	var out []cluster.Member
	for name, m := range snap.Members {
		if _, live := snap.Nodes[name]; live || name == snap.Primary.Node || m.Addr == "" {
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// guardState is what the guard said last of each server, so that it logs a change
// once, not every round.
type guardState struct {
	mu   sync.Mutex
	last map[string]string
}

func (g *guardState) changed(node, what string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == nil {
		g.last = map[string]string{}
	}
	if g.last[node] == what {
		return false
	}
	g.last[node] = what
	return true
}

// guard runs guardRound every GuardEvery while this coordinator leads; a round
// starts only after the previous one ended (a frozen server costs its deadline, no
// more, and rounds never overlap).
func (c *Coordinator) guard(ctx context.Context) {
	var g guardState
	t := time.NewTimer(GuardEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if snap, err := c.read(ctx); err == nil {
			c.guardRound(ctx, snap, &g)
		}
		t.Reset(GuardEvery)
	}
}

// guardRound reads the server of every unguarded member, each within FenceTimeout,
// and fences (read_only, client connections killed) one found writable: a fence that
// failed is not done, and it is tried again at every round until it succeeds. A
// server that cannot be read is tried again at the next round too: a frozen one is
// fenced the moment it answers. Each fence is logged and recorded in the history.
func (c *Coordinator) guardRound(ctx context.Context, snap cluster.Snapshot, g *guardState) {
	var wg sync.WaitGroup
	for _, m := range unguarded(snap) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.guardOne(ctx, snap, m, g)
		}()
	}
	wg.Wait()
}

func (c *Coordinator) guardOne(ctx context.Context, snap cluster.Snapshot, m cluster.Member, g *guardState) {
	log := c.log.With(zap.String("node", m.Node), zap.String("addr", m.Addr))
	in, err := c.cfg.Servers.Instance(m.Node, m.Addr)
	if err != nil {
		if g.changed(m.Node, "no instance") {
			log.Warn("guard: cannot reach the server of a node whose agent is gone", zap.Error(err))
		}
		return
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.FenceTimeout)
	st, err := in.Status(rctx)
	cancel()
	switch {
	case err != nil:
		if g.changed(m.Node, "unread") {
			log.Info("guard: the server of a node whose agent is gone cannot be read; looked at again every "+GuardEvery.String(), zap.Error(err))
		}
		return
	case st.ReadOnly:
		if g.changed(m.Node, "read_only") {
			log.Debug("guard: read_only")
		}
		return
	}
	start := c.cfg.Now()
	fctx, cancel := context.WithTimeout(ctx, c.cfg.FenceTimeout)
	rep, err := in.Fence(fctx)
	cancel()
	if err != nil || !rep.ReadOnly {
		if g.changed(m.Node, "fence failed") {
			log.Error("guard: a server whose agent is gone, not the primary of record, is writable and could not be fenced; tried again every "+GuardEvery.String(),
				zap.Error(err), zap.Bool("read_only", rep.ReadOnly))
		}
		return
	}
	g.changed(m.Node, "read_only")
	why := fmt.Sprintf("%s's server was writable, its agent gone, while %s is the primary of record (epoch %d): fenced by the coordinator (read_only, %d client connections killed)",
		m.Node, snap.Primary.Node, snap.Primary.Epoch, rep.Killed)
	log.Warn("guard: " + why)
	ev := cluster.Event{Kind: cluster.EventFence, From: m.Node, To: snap.Primary.Node, Epoch: snap.Primary.Epoch, Reason: why,
		Started: start.UTC(), Took: c.cfg.Now().Sub(start)}
	if err := c.cfg.Store.AppendHistory(context.WithoutCancel(ctx), ev); err != nil {
		log.Warn("guard: record the fence in the history", zap.Error(err))
	}
}
