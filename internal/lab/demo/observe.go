package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/status"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// demoObserver watches the cluster from just before the fault: etcd through the
// store's watch (every change, in order), the VIP on the interfaces and the writer
// every 50 ms. It narrates each change and times the failover's milestones, as
// failover defines them, and what only the demo sees: the VIP moved on the
// interfaces, the writes resumed.
type demoObserver struct {
	c         *sandbox.Cluster
	store     *cluster.Store
	w         *sandbox.Writer
	old       cluster.Primary
	oldServer uint32
	narr      *demoNarrator
	vip       *vipWatch

	mu       sync.Mutex
	cur      demoView
	fault    time.Time
	tl       *cluster.FailoverTimeline // nil before the fault
	vipAt    time.Time                 // the VIP on the new primary's interface only
	resumed  time.Time                 // a write through the VIP acknowledged by another server
	failures int
	// toldFailure: the first failed write after the fault has been narrated.
	toldFailure bool
	cancel      context.CancelFunc
	done        chan struct{}
}

func newDemoObserver(c *sandbox.Cluster, store *cluster.Store, w *sandbox.Writer, oldServer uint32, narr *demoNarrator) (*demoObserver, error) {
	vw, err := newVIPWatch(c)
	if err != nil {
		return nil, err
	}
	return &demoObserver{c: c, store: store, w: w, oldServer: oldServer, narr: narr, vip: vw}, nil
}

// start watches the cluster; the state as it is when the watch begins is the
// baseline, which nothing is narrated about. It returns once it has the baseline.
func (o *demoObserver) start(ctx context.Context) error {
	ctx, o.cancel = context.WithCancel(ctx)
	o.done = make(chan struct{})
	baseline := make(chan struct{})
	var watchErr error
	go func() {
		defer close(o.done)
		polled := make(chan struct{})
		ready := false
		watchErr = o.store.Watch(ctx, func(snap cluster.Snapshot) error {
			if ready {
				o.update(snap, time.Now())
				return nil
			}
			o.mu.Lock()
			o.old = snap.Primary
			o.cur = viewOf(snap, o.vip.holders())
			o.mu.Unlock()
			ready = true
			close(baseline)
			go o.pollEvery(ctx, 50*time.Millisecond, polled)
			return nil
		})
		if ready {
			<-polled
		}
	}()
	select {
	case <-baseline:
		return nil
	case <-o.done:
		return fmt.Errorf("watch the cluster's state: %w", watchErr)
	case <-time.After(10 * time.Second):
		return errors.New("watch the cluster's state: no state read within 10s")
	}
}

// pollEvery polls until ctx ends, then closes done.
func (o *demoObserver) pollEvery(ctx context.Context, every time.Duration, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			o.poll()
		}
	}
}

func (o *demoObserver) stop() {
	if o.cancel != nil {
		o.cancel()
		<-o.done
	}
	o.vip.close()
}

// setFault starts the clock: changes from now on are narrated and timed.
func (o *demoObserver) setFault(t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fault = t
	o.tl = cluster.NewFailoverTimeline(o.old, t)
	o.failures, _ = o.w.Failures()
}

// poll looks at what etcd does not carry: the VIP on the interfaces, and the writer.
func (o *demoObserver) poll() {
	holders := o.vip.holders()
	now := time.Now()
	o.mu.Lock()
	prev := o.cur.clone()
	o.cur.VIP = holders
	cur := o.cur.clone()
	fault, seen, resumed := o.fault, o.failures, !o.resumed.IsZero()
	if !fault.IsZero() && o.vipAt.IsZero() && cur.Primary.Node != o.old.Node && len(holders) == 1 && holders[0] == cur.Primary.Node {
		o.vipAt = now
	}
	o.mu.Unlock()
	if fault.IsZero() {
		return
	}
	if strings.Join(prev.VIP, ",") != strings.Join(cur.VIP, ",") {
		for _, line := range demoChanges(prev, cur) {
			o.narr.sayAt(now, "%s", line)
		}
	}
	if n, last := o.w.Failures(); n > seen && !resumed {
		o.mu.Lock()
		first := !o.toldFailure
		o.failures, o.toldFailure = n, true
		o.mu.Unlock()
		if first {
			o.narr.sayAt(time.Now(), "a write through the VIP failed: %s (the writer tries again)", shorten(last, 100))
		}
	}
	if resumed {
		return
	}
	ack, ok := o.w.FirstAckAfter(fault, o.oldServer)
	if !ok {
		return
	}
	name := fmt.Sprint(ack.ServerID)
	for _, n := range o.c.Nodes {
		if uint32(n.ServerID) == ack.ServerID {
			name = n.Name
		}
	}
	o.mu.Lock()
	o.resumed = ack.At
	o.mu.Unlock()
	var before time.Time
	for _, a := range o.w.Acks() {
		if a.ServerID == o.oldServer {
			before = a.At
		}
	}
	gap := ""
	if !before.IsZero() {
		gap = fmt.Sprintf("; the last one on %s was acknowledged at %s", o.old.Node, o.narr.rel(before))
	}
	o.narr.sayAt(ack.At, "writes resumed on %s through the VIP (first acknowledged write, #%d)%s", name, ack.Seq, gap)
}

// update takes a new state of the cluster from etcd, narrates the change and times
// the milestones.
func (o *demoObserver) update(snap cluster.Snapshot, now time.Time) {
	o.mu.Lock()
	prev := o.cur.clone()
	o.cur = viewOf(snap, prev.VIP)
	cur := o.cur.clone()
	fault := o.fault
	if o.tl != nil {
		o.tl.Observe(snap, now)
	}
	o.mu.Unlock()
	if fault.IsZero() {
		return
	}
	for _, line := range demoChanges(prev, cur) {
		o.narr.sayAt(now, "%s", line)
	}
}

// at is when the failover's milestone m first held, and whether it has.
func (o *demoObserver) at(m cluster.Milestone) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tl == nil {
		return time.Time{}, false
	}
	return o.tl.At(m)
}

// reached is a condition for wait: m has held.
func (o *demoObserver) reached(m cluster.Milestone) func() bool {
	return func() bool { _, ok := o.at(m); return ok }
}

// vipMovedAt is when the VIP was first on the new primary's interface only.
func (o *demoObserver) vipMovedAt() (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.vipAt, !o.vipAt.IsZero()
}

func (o *demoObserver) vipMoved() bool { _, ok := o.vipMovedAt(); return ok }

// resumedAt is when the first write through the VIP was acknowledged by another
// server than the old primary.
func (o *demoObserver) resumedAt() (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.resumed, !o.resumed.IsZero()
}

func (o *demoObserver) writesResumed() bool { _, ok := o.resumedAt(); return ok }

// ms is t's time from the fault, -1 when ok is false (it did not happen).
func (o *demoObserver) ms(t time.Time, ok bool) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !ok || t.IsZero() {
		return -1
	}
	return t.Sub(o.fault).Milliseconds()
}

func (o *demoObserver) wait(ctx context.Context, limit time.Duration, cond func() bool) error {
	return lab.Until(ctx, limit, cond)
}

func (o *demoObserver) snapshot() demoView {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cur.clone()
}

// describe says where the cluster stands, for a failure message.
func (o *demoObserver) describe() string {
	v := o.snapshot()
	var parts []string
	parts = append(parts, fmt.Sprintf("primary %s epoch %d, leader %s", status.OrDash(v.Primary.Node), v.Primary.Epoch, status.OrDash(v.Leader)))
	if v.Intent != nil {
		parts = append(parts, fmt.Sprintf("%s from %s in progress", v.Intent.Kind, v.Intent.From))
	}
	names := make([]string, 0, len(v.Nodes))
	for name := range v.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := v.Nodes[name]
		parts = append(parts, fmt.Sprintf("%s %s/%s %s", name, status.OrDash(string(n.Role)), n.Verdict.String(), n.Reason))
	}
	return strings.Join(parts, "; ")
}

// vipWatch reads which nodes have the virtual IP on their eth0, through a netlink
// socket opened in each node's namespace (`ip -n NS -4 addr show eth0`).
type vipWatch struct {
	ip      net.IP
	nodes   []string
	handles []*netlink.Handle
}

func newVIPWatch(c *sandbox.Cluster) (*vipWatch, error) {
	ip, _, err := net.ParseCIDR(c.VIP)
	if err != nil {
		return nil, fmt.Errorf("the sandbox's virtual IP %q: %w", c.VIP, err)
	}
	v := &vipWatch{ip: ip}
	for _, n := range c.Nodes {
		ns, err := netns.GetFromPath(filepath.Join("/run/netns", n.NetNS))
		if err != nil {
			v.close()
			return nil, fmt.Errorf("open network namespace %s: %w", n.NetNS, err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close() // the handle's socket keeps the namespace
		if err != nil {
			v.close()
			return nil, fmt.Errorf("netlink in namespace %s: %w", n.NetNS, err)
		}
		v.nodes = append(v.nodes, n.Name)
		v.handles = append(v.handles, h)
	}
	return v, nil
}

func (v *vipWatch) holders() []string {
	var out []string
	for i, h := range v.handles {
		link, err := h.LinkByName("eth0")
		if err != nil {
			continue
		}
		addrs, err := h.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.IP.Equal(v.ip) {
				out = append(out, v.nodes[i])
			}
		}
	}
	return out
}

func (v *vipWatch) close() {
	for _, h := range v.handles {
		h.Close()
	}
	v.handles = nil
}
