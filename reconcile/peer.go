package reconcile

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// DefaultPeerFailAfter is how many failed probes in a row make the primary
// unreachable for a replica's agent, when the configuration says nothing else.
const DefaultPeerFailAfter = 2

// PeerWatch probes the primary of record from a replica's agent (connect + SELECT 1
// with a deadline), so that the coordinator can tell "the primary is gone" from "the
// primary's agent is gone". While the primary's own agent is gone it also probes the
// primary's writes (the detector's heartbeat write, with the same deadline): nobody
// else would see a server whose agent died stop writing, or one whose agent fenced it
// after losing etcd. Failures need FailAfter probes in a row to count, so one lost
// packet is not a vote for failover.
type PeerWatch struct {
	Self     string
	DSN      func(addr string) (string, error) // DSN of the admin user at addr
	Interval time.Duration
	Timeout  time.Duration
	// FailAfter is how many failed probes in a row make the target unreachable
	// (timings.peer_fail_after); at least 1.
	FailAfter int
	Dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	Log       *zap.Logger
	// OnChange is called when the target turns reachable or unreachable. It must not
	// block.
	OnChange func()

	mu         sync.Mutex
	target     string // node
	addr       string
	writes     bool // probe the target's writes too
	view       *cluster.PeerView
	fails      int
	first      time.Time
	writeFails int
	prober     *detector.Prober
}

// SetTarget points the watch at the primary of record (node at addr); "" stops it.
// writes: also probe its writes (while the primary's own agent is gone).
func (w *PeerWatch) SetTarget(node, addr string, writes bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if writes != w.writes {
		w.writes, w.writeFails = writes, 0
	}
	if node == w.target && addr == w.addr {
		return
	}
	if w.prober != nil {
		go w.prober.Close()
		w.prober = nil
	}
	w.target, w.addr, w.view, w.fails, w.writeFails = node, addr, nil, 0, 0
}

// View is the latest view of the target, nil before the first probe or when there
// is no target.
func (w *PeerWatch) View() *cluster.PeerView {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.view == nil {
		return nil
	}
	v := *w.view
	return &v
}

// Run probes the target every Interval until ctx ends.
func (w *PeerWatch) Run(ctx context.Context) error {
	switch {
	case w.FailAfter < 1:
		return fmt.Errorf("peer watch: fail after %d: must be at least 1", w.FailAfter)
	case w.Interval <= 0:
		return fmt.Errorf("peer watch: interval %s: must be positive", w.Interval)
	}
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	defer func() {
		w.mu.Lock()
		if w.prober != nil {
			w.prober.Close()
		}
		w.mu.Unlock()
	}()
	for {
		w.probe(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *PeerWatch) probe(ctx context.Context) {
	w.mu.Lock()
	target, addr, p := w.target, w.addr, w.prober
	if target == "" || target == w.Self || addr == "" {
		w.mu.Unlock()
		return
	}
	if p == nil {
		dsn, err := w.DSN(addr)
		if err == nil {
			p, err = detector.NewProber(detector.ProberConfig{DSN: dsn, Node: w.Self, Timeout: w.Timeout, Dial: w.Dial, Logger: w.Log})
		}
		if err != nil {
			w.mu.Unlock()
			w.Log.Warn("peer prober", zap.Error(err))
			return
		}
		w.prober = p
	}
	writes := w.writes
	w.mu.Unlock()

	res := p.Ping(ctx)
	var write *detector.Result
	if writes && res.Class == detector.OK {
		wr := p.Write(ctx)
		write = &wr
	}
	now := time.Now().UTC()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.target != target || w.prober != p {
		return // retargeted meanwhile
	}
	v := &cluster.PeerView{Node: target, Reachable: true, At: now}
	// A server that refuses work (too many connections) or the user is alive.
	if res.Class == detector.OK || res.Class == detector.Busy || res.Class == detector.AccessDenied {
		w.fails = 0
	} else {
		w.fails++
		if w.fails == 1 {
			w.first = now
		}
		if w.fails >= w.FailAfter {
			v.Reachable, v.FailedSince = false, w.first
			v.Error = fmt.Sprintf("%s: %s", res.Class, res.Detail)
		}
	}
	if w.writes {
		v.Write = w.judgeWrite(write)
	}
	changed := w.view == nil || w.view.Reachable != v.Reachable || w.view.Write != v.Write
	w.view = v
	if changed && w.OnChange != nil {
		w.OnChange()
	}
}

// judgeWrite turns one remote write probe into the published outcome. A refusal by
// read_only counts at once (the server said so); a write that hangs or fails needs
// FailAfter probes in a row; an answer that says nothing about writes (no probe, too
// many connections) is unknown, never a failure.
func (w *PeerWatch) judgeWrite(res *detector.Result) cluster.PeerWrite {
	if res == nil {
		w.writeFails = 0
		return cluster.PeerWriteUnknown
	}
	switch res.Class {
	case detector.OK:
		w.writeFails = 0
		return cluster.PeerWriteOK
	case detector.ReadOnlyRefused:
		w.writeFails = 0
		return cluster.PeerWriteReadOnly
	case detector.TimedOut, detector.StorageFailed, detector.OtherError:
		w.writeFails++
		if w.writeFails >= w.FailAfter {
			return cluster.PeerWriteFailing
		}
		return cluster.PeerWriteUnknown
	}
	w.writeFails = 0
	return cluster.PeerWriteUnknown
}
