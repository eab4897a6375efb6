// Package vip puts the cluster's virtual IP address on this node's interface,
// takes it off again, and announces a move with gratuitous ARP so that hosts
// on the segment send to the new holder at once instead of waiting for their
// ARP cache entry to go stale.
//
// It acts only on the local kernel: netlink for the address, a raw AF_PACKET
// socket for ARP, both in the network namespace of the calling OS thread (for
// the agent, the namespace of the node it runs on). It never shells out to
// ip or arping, never talks to other nodes, and never decides who should hold
// the address: the reconciler does that from the primary of record in etcd.
// Nor does it fence anything. Removing the VIP here cannot remove it from a
// node this one cannot reach; the exclusive hold comes from the order the
// reconcilers keep (the old primary drops the VIP before its leader key goes
// away, and no node acquires it before that key is gone), not from this
// package.
package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Errors that name the capability the kernel refused. They wrap the original
// errno (EPERM), so errors.Is works with either.
var (
	ErrNeedNetAdmin = errors.New("vip: needs CAP_NET_ADMIN")
	ErrNeedNetRaw   = errors.New("vip: needs CAP_NET_RAW")
)

// ErrSealed says Acquire refused, or stopped, because the Mover is sealed (Seal):
// the node was fenced, and only a new start (Unseal) lets it hold the VIP again.
var ErrSealed = errors.New("vip: sealed by a fence")

// netlinkTimeout bounds each netlink exchange when the caller's context has
// no deadline. The kernel answers address requests at once; this only keeps
// a wedged socket from hanging a reconciler pass.
const netlinkTimeout = 5 * time.Second

// Mover holds and releases one virtual IP on one interface. Its methods are
// safe for concurrent use. Acquire and Release are serialised: a Release
// from self-fencing that races with an Acquire runs wholly before or after
// it, never between adding the address and announcing it; the caller's own
// ordering decides which comes last. A fence that must come last whatever the
// order seals the Mover first (Seal): every Acquire then refuses, one in flight
// stops at its next frame, until Unseal.
//
// A Mover acts in the network namespace of the OS thread that calls it. In
// the agent every thread is in the node's namespace; a caller that has moved
// a locked thread into another namespace (tests) acts there.
type Mover struct {
	cfg    Config
	prefix netip.Prefix
	log    *zap.Logger

	mu sync.Mutex
	// announced is true once this Mover has sent a first burst for the
	// address it holds, so repeated Acquire calls on every reconciler pass
	// do not flood the segment. Release clears it.
	announced bool
	// pending is the second burst scheduled by the last Acquire, if any.
	pending *pendingBurst
	// now is the clock the bursts are timed by (time.Now; tests make it jump as
	// a stall would).
	now func() time.Time

	// seal is the fence's latch, with its own lock: Seal never waits for an
	// Acquire in flight (that holds mu for its first burst); it cancels it.
	seal struct {
		mu     sync.Mutex
		on     bool
		cancel context.CancelFunc // the Acquire in flight, nil when none
	}
}

// Seal makes every Acquire refuse with ErrSealed until Unseal, and stops an
// Acquire in flight: before it adds the address or at its next gratuitous ARP
// frame. It does not remove the address (Release does: seal first, then
// release, and no Acquire that began before can put it back or announce it
// after). It does not wait and touches no kernel state.
func (m *Mover) Seal() {
	m.seal.mu.Lock()
	m.seal.on = true
	cancel := m.seal.cancel
	m.seal.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Unseal lets Acquire hold the VIP again: for a new start, after whatever fenced
// the node is over.
func (m *Mover) Unseal() {
	m.seal.mu.Lock()
	m.seal.on = false
	m.seal.mu.Unlock()
}

// sealed says whether the Mover is sealed now.
func (m *Mover) sealed() bool {
	m.seal.mu.Lock()
	defer m.seal.mu.Unlock()
	return m.seal.on
}

// watchSeal registers an Acquire in flight: its returned context ends when the
// Mover is sealed; ok is false when it is sealed already. done unregisters it.
func (m *Mover) watchSeal(ctx context.Context) (sctx context.Context, done func(), ok bool) {
	sctx, cancel := context.WithCancel(ctx)
	m.seal.mu.Lock()
	defer m.seal.mu.Unlock()
	if m.seal.on {
		cancel()
		return sctx, func() {}, false
	}
	m.seal.cancel = cancel
	return sctx, func() {
		m.seal.mu.Lock()
		m.seal.cancel = nil
		m.seal.mu.Unlock()
		cancel()
	}, true
}

// pendingBurst is a second burst waiting to be sent by its own goroutine.
type pendingBurst struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// AcquireResult says what Acquire did, for the history event of a move.
type AcquireResult struct {
	// Added is true when the address was not on the interface and Acquire
	// put it there.
	Added bool
	// ARPSent is the number of gratuitous ARP frames of the first burst: 0
	// when the address was already held and announced by this Mover.
	ARPSent int
	// SecondBurst is true when this call scheduled a second burst,
	// Config.SecondBurstDelay from now.
	SecondBurst bool
	// Took runs from the call until the first burst was sent.
	Took time.Duration
}

// New validates cfg, applies its defaults and returns a Mover. It does not
// touch the kernel: the interface need not exist yet. A nil logger is
// replaced by a no-op one.
func New(cfg Config, logger *zap.Logger) (*Mover, error) {
	cfg = cfg.withDefaults()
	p, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Mover{
		cfg:    cfg,
		prefix: p,
		log:    logger.With(zap.String("vip", p.String()), zap.String("interface", cfg.Interface)),
		now:    time.Now,
	}, nil
}

// Address returns the VIP with its prefix length.
func (m *Mover) Address() netip.Prefix { return m.prefix }

// Interface returns the name of the interface that carries the VIP.
func (m *Mover) Interface() string { return m.cfg.Interface }

// Acquire makes sure the VIP is on the interface and announces it.
//
// Mirrors `ip addr replace VIP/LEN dev IFACE` followed by
// `arping -U -c N -I IFACE VIP` and `arping -A -c N -I IFACE VIP`, and the
// same again Config.SecondBurstDelay later.
//
// It is idempotent: when the address is already there it is left alone, and
// gratuitous ARP is sent only if the address was just added or this Mover
// has not announced it yet (a new agent that finds the VIP in place
// announces it once). The packet socket is opened before the address is
// added, so a missing CAP_NET_RAW fails Acquire without leaving the address
// behind unannounced.
//
// Acquire returns after the first burst. The second burst is sent by a
// goroutine that gives up when ctx is done, when Release is called or an
// Acquire announces afresh, or when the address has gone from the interface
// by then; pass
// a ctx that outlives SecondBurstDelay (the agent's, not a short per-call
// deadline) for it to be sent.
//
// Errors wrap ErrNeedNetAdmin or ErrNeedNetRaw when the kernel refuses for
// lack of that capability.
func (m *Mover) Acquire(ctx context.Context) (AcquireResult, error) {
	start := time.Now()
	var res AcquireResult
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("acquire %s on %s: %w", m.prefix, m.cfg.Interface, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	begin := m.now() // the first burst is due now: a stall from here on makes it late
	// From here on a Seal ends sctx: the address is not added after it, and the
	// first burst stops at its next frame. The second burst runs under ctx and
	// checks the seal itself (Release, which follows a Seal, cancels it too).
	sctx, sealDone, ok := m.watchSeal(ctx)
	defer sealDone()
	if !ok {
		return res, fmt.Errorf("acquire %s on %s: %w", m.prefix, m.cfg.Interface, ErrSealed)
	}

	h, err := newHandle(ctx)
	if err != nil {
		return res, fmt.Errorf("acquire %s on %s: %w", m.prefix, m.cfg.Interface, err)
	}
	defer h.Close()

	link, err := h.LinkByName(m.cfg.Interface)
	if err != nil {
		return res, fmt.Errorf("acquire %s: find interface %s: %w", m.prefix, m.cfg.Interface, err)
	}
	mac := link.Attrs().HardwareAddr
	if len(mac) != 6 {
		return res, fmt.Errorf("acquire %s: interface %s has no Ethernet address (%q), so gratuitous arp cannot be sent", m.prefix, m.cfg.Interface, mac.String())
	}

	addrs, err := listAddrs(h, link)
	if err != nil {
		return res, fmt.Errorf("acquire %s: list addresses of %s: %w", m.prefix, m.cfg.Interface, err)
	}
	present := false
	for _, a := range addrs {
		if m.isExactly(a) {
			present = true
		}
	}
	if present && m.announced {
		// Nothing to do; a second burst still pending stays pending.
		res.Took = time.Since(start)
		return res, nil
	}
	m.stopPendingLocked()

	snd, err := openARPSender(m.cfg.Interface, link.Attrs().Index, mac, m.prefix.Addr())
	if err != nil {
		return res, fmt.Errorf("acquire %s: %w", m.prefix, err)
	}
	keepSender := false
	defer func() {
		if !keepSender {
			snd.close()
		}
	}()

	if !present {
		if sctx.Err() != nil {
			return res, fmt.Errorf("acquire %s on %s: %w", m.prefix, m.cfg.Interface, ErrSealed)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{
			IP:   net.IP(m.prefix.Addr().AsSlice()),
			Mask: net.CIDRMask(m.prefix.Bits(), 32),
		}}
		if err := h.AddrReplace(link, addr); err != nil {
			return res, fmt.Errorf("acquire %s: add address to %s: %w", m.prefix, m.cfg.Interface, capError(err, ErrNeedNetAdmin))
		}
		res.Added = true
		m.log.Info("virtual ip added")
	}

	n, err := snd.burst(sctx, m.cfg.ARPCount, m.cfg.ARPInterval, m.now, begin)
	res.ARPSent = n
	res.Took = time.Since(start)
	if err != nil && m.sealed() {
		// The address may have been added: the Release that follows the Seal (it
		// waits for this call) removes it.
		return res, fmt.Errorf("acquire %s: stopped after %d frames: %w", m.prefix, n, ErrSealed)
	}
	if err != nil {
		// The address stays: it is ours and answers ARP lookups. The
		// announcement is retried by the next Acquire since announced is
		// still false (after a stall, errLate: once the reconciler has checked
		// again that the node holds the VIP).
		return res, fmt.Errorf("acquire %s: %w", m.prefix, err)
	}
	m.announced = true
	m.log.Info("gratuitous arp sent", zap.Int("frames", n), zap.Duration("took", res.Took))

	// The second burst needs its own netlink socket, opened here in the
	// caller's namespace, to check that the address is still held before
	// announcing it again: its goroutine may run on a thread in another
	// namespace.
	h2, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		m.log.Warn("second gratuitous arp burst not scheduled", zap.Error(err))
		return res, nil
	}
	keepSender = true
	bctx, cancel := context.WithCancel(ctx)
	pb := &pendingBurst{cancel: cancel, done: make(chan struct{})}
	m.pending = pb
	res.SecondBurst = true
	go m.secondBurst(bctx, pb, snd, h2, link, m.now().Add(m.cfg.SecondBurstDelay))
	return res, nil
}

// secondBurst waits until due (SecondBurstDelay after the first burst) and
// sends the burst again if the address is still on the interface, and not late
// (see burstLateLimit): a timer that fires long after it was due says the
// process stalled, and the node may have lost the VIP meanwhile. It owns snd
// and h.
func (m *Mover) secondBurst(ctx context.Context, pb *pendingBurst, snd *arpSender, h *netlink.Handle, link netlink.Link, due time.Time) {
	defer close(pb.done)
	defer pb.cancel()
	defer snd.close()
	defer h.Close()

	t := time.NewTimer(m.cfg.SecondBurstDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}

	if err := h.SetSocketTimeout(time.Second); err != nil {
		m.log.Warn("second gratuitous arp burst skipped", zap.Error(err))
		return
	}
	addrs, err := listAddrs(h, link)
	if err != nil {
		m.log.Warn("second gratuitous arp burst skipped: cannot list addresses", zap.Error(err))
		return
	}
	held := false
	for _, a := range addrs {
		held = held || m.isExactly(a)
	}
	if !held {
		m.log.Warn("second gratuitous arp burst skipped: address no longer on the interface")
		return
	}
	if m.sealed() {
		m.log.Warn("second gratuitous arp burst skipped: sealed by a fence")
		return
	}
	n, err := snd.burst(ctx, m.cfg.ARPCount, m.cfg.ARPInterval, m.now, due)
	if errors.Is(err, errLate) {
		m.log.Warn("second gratuitous arp burst skipped", zap.Int("frames", n), zap.Error(err))
		return
	}
	if err != nil && ctx.Err() == nil {
		m.log.Warn("second gratuitous arp burst failed", zap.Int("frames", n), zap.Error(err))
		return
	}
	m.log.Debug("second gratuitous arp burst sent", zap.Int("frames", n))
}

// Release makes sure the VIP is not on the interface. Every address on the
// interface with the VIP's IP is removed, whatever its prefix length, since
// any of them would draw the traffic. An address or an interface that is not
// there is success. A second burst still pending from Acquire is cancelled
// first, so this node never announces an address it has given up.
//
// Mirrors `ip addr del VIP/LEN dev IFACE`.
//
// Errors wrap ErrNeedNetAdmin when the kernel refuses for lack of it.
func (m *Mover) Release(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("release %s from %s: %w", m.prefix, m.cfg.Interface, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopPendingLocked()
	m.announced = false

	h, err := newHandle(ctx)
	if err != nil {
		return fmt.Errorf("release %s from %s: %w", m.prefix, m.cfg.Interface, err)
	}
	defer h.Close()

	link, err := h.LinkByName(m.cfg.Interface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("release %s: find interface %s: %w", m.prefix, m.cfg.Interface, err)
	}
	addrs, err := listAddrs(h, link)
	if err != nil {
		return fmt.Errorf("release %s: list addresses of %s: %w", m.prefix, m.cfg.Interface, err)
	}
	for _, a := range addrs {
		if !m.hasIP(a) {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			// Gone between the list and the delete: what we wanted.
			if errors.Is(err, unix.EADDRNOTAVAIL) {
				continue
			}
			return fmt.Errorf("release %s: remove %s from %s: %w", m.prefix, a.IPNet, m.cfg.Interface, capError(err, ErrNeedNetAdmin))
		}
		m.log.Info("virtual ip removed", zap.Stringer("address", a.IPNet))
	}
	return nil
}

// Held reports whether the VIP's IP is on the interface now, with any prefix
// length. An interface that does not exist holds nothing. It needs no
// capability.
//
// Mirrors `ip -4 addr show dev IFACE to VIP`.
func (m *Mover) Held(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("check %s on %s: %w", m.prefix, m.cfg.Interface, err)
	}
	h, err := newHandle(ctx)
	if err != nil {
		return false, fmt.Errorf("check %s on %s: %w", m.prefix, m.cfg.Interface, err)
	}
	defer h.Close()

	link, err := h.LinkByName(m.cfg.Interface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, fmt.Errorf("check %s: find interface %s: %w", m.prefix, m.cfg.Interface, err)
	}
	addrs, err := listAddrs(h, link)
	if err != nil {
		return false, fmt.Errorf("check %s: list addresses of %s: %w", m.prefix, m.cfg.Interface, err)
	}
	for _, a := range addrs {
		if m.hasIP(a) {
			return true, nil
		}
	}
	return false, nil
}

// stopPendingLocked cancels a scheduled second burst and waits for its
// goroutine, which returns promptly once cancelled.
func (m *Mover) stopPendingLocked() {
	if m.pending == nil {
		return
	}
	m.pending.cancel()
	<-m.pending.done
	m.pending = nil
}

func (m *Mover) hasIP(a netlink.Addr) bool {
	if a.IPNet == nil {
		return false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	return ok && ip.Unmap() == m.prefix.Addr()
}

func (m *Mover) isExactly(a netlink.Addr) bool {
	if !m.hasIP(a) {
		return false
	}
	ones, _ := a.Mask.Size()
	return ones == m.prefix.Bits()
}

// newHandle opens a route netlink socket in the calling thread's namespace,
// with its timeouts taken from ctx.
func newHandle(ctx context.Context) (*netlink.Handle, error) {
	timeout := netlinkTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
		if timeout < time.Millisecond {
			return nil, context.DeadlineExceeded
		}
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	if err := h.SetSocketTimeout(timeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("set netlink timeout: %w", err)
	}
	return h, nil
}

// listAddrs lists the IPv4 addresses of link, retrying a dump that the
// kernel reports as interrupted by a concurrent change.
func listAddrs(h *netlink.Handle, link netlink.Link) ([]netlink.Addr, error) {
	var err error
	for range 5 {
		var addrs []netlink.Addr
		addrs, err = h.AddrList(link, netlink.FAMILY_V4)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return addrs, err
		}
	}
	return nil, err
}
