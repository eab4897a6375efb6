//go:build integration

package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// vethNS makes a namespace with a veth pair eth0/eth1, both up, and
// 198.18.0.11/24 on eth0 so the VIP goes on as a secondary address, as it
// does on a real node.
func vethNS(t *testing.T, tag string) string {
	ns := newNS(t, tag)
	ip(t, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	ip(t, "-n", ns, "addr", "add", "198.18.0.11/24", "dev", "eth0")
	ip(t, "-n", ns, "link", "set", "eth0", "up")
	ip(t, "-n", ns, "link", "set", "eth1", "up")
	return ns
}

func TestAcquireReleaseHeld(t *testing.T) {
	ns := vethNS(t, "veth")
	th := startNSThread(t, ns, nil)
	ctx := t.Context()
	m := newMover(t, Config{SecondBurstDelay: 50 * time.Millisecond})

	held := func(want bool) {
		t.Helper()
		var got bool
		var err error
		th.do(func() { got, err = m.Held(ctx) })
		if err != nil {
			t.Fatalf("Held: %v", err)
		}
		if got != want {
			t.Fatalf("Held = %v, want %v", got, want)
		}
		if seen := holds(t, ns, testVIP); seen != want {
			t.Fatalf("ip addr shows the VIP: %v, want %v", seen, want)
		}
	}
	acquire := func(m *Mover) AcquireResult {
		t.Helper()
		var res AcquireResult
		var err error
		th.do(func() { res, err = m.Acquire(ctx) })
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		return res
	}
	release := func() {
		t.Helper()
		var err error
		th.do(func() { err = m.Release(ctx) })
		if err != nil {
			t.Fatalf("Release: %v", err)
		}
	}

	held(false)

	res := acquire(m)
	if !res.Added || res.ARPSent != 2*DefaultARPCount || !res.SecondBurst {
		t.Fatalf("first Acquire = %+v, want added, %d frames, second burst", res, 2*DefaultARPCount)
	}
	t.Logf("first Acquire: %+v", res)
	held(true)
	if out := ip(t, "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, testVIP+"/24") {
		t.Fatalf("VIP not on eth0 with its prefix length:\n%s", out)
	}

	res = acquire(m)
	if res.Added || res.ARPSent != 0 || res.SecondBurst {
		t.Fatalf("second Acquire = %+v, want nothing done", res)
	}
	held(true)

	// A new Mover (an agent restart) finds the VIP in place: it adds
	// nothing but announces once.
	m2 := newMover(t, Config{SecondBurstDelay: 50 * time.Millisecond})
	if res := acquire(m2); res.Added || res.ARPSent != 2*DefaultARPCount {
		t.Fatalf("Acquire by a new Mover of a VIP already in place = %+v, want not added, %d frames", res, 2*DefaultARPCount)
	}
	if res := acquire(m2); res.ARPSent != 0 {
		t.Fatalf("second Acquire by the new Mover = %+v, want no frames", res)
	}

	release()
	held(false)
	release()
	held(false)
	if !holds(t, ns, "198.18.0.11") {
		t.Fatalf("Release removed the node's own address")
	}

	// The same IP with another prefix length draws the traffic too: it
	// counts as held and Release removes it.
	ip(t, "-n", ns, "addr", "add", testVIP+"/32", "dev", "eth0")
	held(true)
	release()
	held(false)
}

func TestMissingInterface(t *testing.T) {
	ns := newNS(t, "noif")
	th := startNSThread(t, ns, nil)
	ctx := t.Context()
	m := newMover(t, Config{Interface: "nope0"})
	var (
		ok         bool
		heldErr    error
		releaseErr error
		acquireErr error
	)
	th.do(func() {
		ok, heldErr = m.Held(ctx)
		releaseErr = m.Release(ctx)
		_, acquireErr = m.Acquire(ctx)
	})
	if ok || heldErr != nil {
		t.Errorf("Held on a missing interface = %v, %v; want false, nil", ok, heldErr)
	}
	if releaseErr != nil {
		t.Errorf("Release on a missing interface = %v, want nil: nothing to remove", releaseErr)
	}
	if acquireErr == nil || !strings.Contains(acquireErr.Error(), "find interface nope0") {
		t.Errorf("Acquire on a missing interface = %v, want an error naming it", acquireErr)
	}
}

// TestGratuitousARPUpdatesNeighbour moves the VIP from server a to server b
// and checks that client c, which had talked to the VIP on a, now has b's
// MAC: Linux, with the default arp_accept=0, does not create neighbour
// entries from gratuitous ARP but does update existing ones, regardless of
// locktime (net/ipv4/arp.c: override when is_garp). Host d never talked to
// the VIP and shows that no entry is created.
func TestGratuitousARPUpdatesNeighbour(t *testing.T) {
	lan := newLAN(t, "garp", map[string]string{
		"a": "198.18.0.11/24", "b": "198.18.0.12/24", "c": "198.18.0.5/24", "d": "198.18.0.6/24",
	})
	a, b, c, d := lan["a"], lan["b"], lan["c"], lan["d"]
	for _, h := range []host{c, d} {
		if v := strings.TrimSpace(ip(t, "netns", "exec", h.ns, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_accept")); v != "0" {
			t.Fatalf("arp_accept on %s is %s; this test is about the default, 0", h.ns, v)
		}
	}
	ta := startNSThread(t, a.ns, nil)
	tb := startNSThread(t, b.ns, nil)
	tc := startNSThread(t, c.ns, nil)
	ctx := t.Context()
	ma := newMover(t, Config{SecondBurstDelay: 200 * time.Millisecond})
	mb := newMover(t, Config{SecondBurstDelay: 200 * time.Millisecond})

	// Each server listens on VIP:3306 and says who it is, so the client can
	// tell where the address leads.
	serve := func(th *nsThread, name string) {
		var ln net.Listener
		var err error
		th.do(func() {
			lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
				// The VIP is not on this host yet.
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
				}); err != nil {
					return err
				}
				return serr
			}}
			ln, err = lc.Listen(ctx, "tcp4", testVIP+":3306")
		})
		if err != nil {
			t.Fatalf("listen on %s: %v", name, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprint(conn, name)
				conn.Close()
			}
		}()
	}
	serve(ta, "a")
	serve(tb, "b")
	whoAnswers := func() string {
		t.Helper()
		var got []byte
		var err error
		tc.do(func() {
			var conn net.Conn
			conn, err = net.DialTimeout("tcp4", testVIP+":3306", 2*time.Second)
			if err != nil {
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			got, err = readAll(conn)
		})
		if err != nil {
			t.Fatalf("client connect to VIP: %v", err)
		}
		return string(got)
	}

	var err error
	ta.do(func() { _, err = ma.Acquire(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	if who := whoAnswers(); who != "a" {
		t.Fatalf("VIP on a, but %q answered", who)
	}
	if mac, state := neighbour(t, c.ns, testVIP); mac != a.mac {
		t.Fatalf("client's neighbour entry for the VIP = %q %s, want a's MAC %s", mac, state, a.mac)
	}
	if mac, _ := neighbour(t, d.ns, testVIP); mac != "" {
		t.Fatalf("host d has a neighbour entry for the VIP before the move: %s", mac)
	}

	ta.do(func() { err = ma.Release(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var res AcquireResult
	tb.do(func() { res, err = mb.Acquire(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	var mac, state string
	for {
		mac, state = neighbour(t, c.ns, testVIP)
		if mac == b.mac || time.Since(start) > time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	if mac != b.mac {
		t.Fatalf("1s after the move the client's entry is %q %s, want b's MAC %s", mac, state, b.mac)
	}
	t.Logf("client's entry moved to b's MAC (%s) %s after Acquire began; Acquire: %+v", state, took, res)

	if who := whoAnswers(); who != "b" {
		t.Fatalf("VIP moved to b, but %q answered", who)
	}
	// Let the second burst go out too before looking at d.
	time.Sleep(300 * time.Millisecond)
	if mac, state := neighbour(t, d.ns, testVIP); mac != "" || state != "" {
		t.Fatalf("gratuitous ARP created an entry on host d (%s %s); with arp_accept=0 it should not", mac, state)
	}
}

// TestBursts captures the frames on the wire at a client: the first burst,
// the second one SecondBurstDelay later, and no second burst after Release
// or once the context is done.
func TestBursts(t *testing.T) {
	lan := newLAN(t, "burst", map[string]string{"b": "198.18.0.12/24", "c": "198.18.0.5/24"})
	b, c := lan["b"], lan["c"]
	tb := startNSThread(t, b.ns, nil)
	tc := startNSThread(t, c.ns, nil)
	const count, delay = 2, 300 * time.Millisecond
	mac, _ := net.ParseMAC(b.mac)
	vip := netip.MustParseAddr(testVIP)
	wantReq, wantRep := garpFrame(arpRequest, mac, vip), garpFrame(arpReply, mac, vip)

	t.Run("two bursts", func(t *testing.T) {
		m := newMover(t, Config{ARPCount: count, ARPInterval: 5 * time.Millisecond, SecondBurstDelay: delay})
		frames := captureGARP(t, tc, mac, vip, func() {
			var err error
			tb.do(func() { _, err = m.Acquire(t.Context()) })
			if err != nil {
				t.Fatal(err)
			}
		}, delay+burstLateLimit+500*time.Millisecond)
		if len(frames) != 4*count {
			t.Fatalf("captured %d gratuitous ARP frames, want %d (two bursts of %d rounds of request+reply)", len(frames), 4*count, count)
		}
		for i, f := range frames {
			want := wantReq
			if i%2 == 1 {
				want = wantRep
			}
			if !bytes.Equal(f.data, want) {
				t.Fatalf("frame %d on the wire\n got % x\nwant % x", i, f.data, want)
			}
		}
		gap := frames[2*count].at.Sub(frames[2*count-1].at)
		// Timestamps are taken when the capture goroutine reads a frame, so a slow
		// reader can shorten or lengthen the gap it sees by a little. The second burst
		// is due delay after the first; a loaded machine may send it later, but never
		// past burstLateLimit (a later one is not sent at all).
		if gap < delay/2 || gap > delay+burstLateLimit+200*time.Millisecond {
			t.Fatalf("second burst came %s after the first, want %s (at most %s late)", gap, delay, burstLateLimit)
		}
		t.Logf("second burst %s after the first", gap)
		var err error
		tb.do(func() { err = m.Release(t.Context()) })
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("release cancels the second burst", func(t *testing.T) {
		m := newMover(t, Config{ARPCount: count, ARPInterval: 5 * time.Millisecond, SecondBurstDelay: delay})
		frames := captureGARP(t, tc, mac, vip, func() {
			var err error
			tb.do(func() {
				if _, err = m.Acquire(t.Context()); err == nil {
					err = m.Release(t.Context())
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}, delay+400*time.Millisecond)
		if len(frames) != 2*count {
			t.Fatalf("captured %d frames, want only the first burst's %d", len(frames), 2*count)
		}
	})

	t.Run("context end cancels the second burst", func(t *testing.T) {
		m := newMover(t, Config{ARPCount: count, ARPInterval: 5 * time.Millisecond, SecondBurstDelay: delay})
		frames := captureGARP(t, tc, mac, vip, func() {
			ctx, cancel := context.WithCancel(t.Context())
			var err error
			tb.do(func() { _, err = m.Acquire(ctx) })
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}, delay+400*time.Millisecond)
		if len(frames) != 2*count {
			t.Fatalf("captured %d frames, want only the first burst's %d", len(frames), 2*count)
		}
		var err error
		tb.do(func() { err = m.Release(t.Context()) })
		if err != nil {
			t.Fatal(err)
		}
	})

	// Fault campaign 103/18: the primary's agent was frozen (SIGSTOP) just after it
	// took the VIP, with its second burst pending, and a failover moved the VIP
	// while it was frozen. Thawed, its overdue timer fired at once and announced the
	// VIP from the old holder a few milliseconds before the agent saw it had lost
	// its session and dropped the address: clients then sent to a node without it
	// until their ARP entries went stale, and writes through the VIP stopped for
	// the 30 s the round watched. The clock here jumps as a stall would make it.
	t.Run("a second burst made late by a stall is not sent", func(t *testing.T) {
		m := newMover(t, Config{ARPCount: count, ARPInterval: 5 * time.Millisecond, SecondBurstDelay: delay})
		var stalled atomic.Int64
		m.now = func() time.Time { return time.Now().Add(time.Duration(stalled.Load())) }
		frames := captureGARP(t, tc, mac, vip, func() {
			var err error
			tb.do(func() { _, err = m.Acquire(t.Context()) })
			if err != nil {
				t.Fatal(err)
			}
			stalled.Store(int64(5 * time.Second)) // frozen 5 s before the timer fires
		}, delay+400*time.Millisecond)
		if len(frames) != 2*count {
			t.Fatalf("captured %d frames, want only the first burst's %d: the second came after a stall", len(frames), 2*count)
		}
		var err error
		tb.do(func() { err = m.Release(t.Context()) })
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a first burst made late by a stall stops, and the next Acquire announces", func(t *testing.T) {
		m := newMover(t, Config{ARPCount: 4, ARPInterval: 50 * time.Millisecond, SecondBurstDelay: time.Minute})
		var stalled atomic.Int64
		var calls atomic.Int32
		// Acquire reads the clock as it starts and before each round of the burst:
		// from the third reading (the second round's) it has jumped, as after a
		// stall mid-burst.
		m.now = func() time.Time {
			if calls.Add(1) > 2 {
				return time.Now().Add(time.Duration(stalled.Load()))
			}
			return time.Now()
		}
		stalled.Store(int64(5 * time.Second))
		var res AcquireResult
		frames := captureGARP(t, tc, mac, vip, func() {
			var err error
			tb.do(func() { res, err = m.Acquire(t.Context()) })
			if !errors.Is(err, errLate) {
				t.Fatalf("Acquire after a stall mid-burst: %v, want errLate", err)
			}
		}, 300*time.Millisecond)
		if len(frames) != 2 || res.ARPSent != 2 {
			t.Fatalf("captured %d frames, Acquire says %d sent; want one round (2 frames) before the stall", len(frames), res.ARPSent)
		}
		stalled.Store(0)
		frames = captureGARP(t, tc, mac, vip, func() {
			var err error
			tb.do(func() { res, err = m.Acquire(t.Context()) })
			if err != nil {
				t.Fatal(err)
			}
		}, 300*time.Millisecond)
		if len(frames) != 8 || res.ARPSent != 8 {
			t.Fatalf("the next Acquire: captured %d frames, says %d sent; want the whole burst again (8)", len(frames), res.ARPSent)
		}
		var err error
		tb.do(func() { err = m.Release(t.Context()) })
		if err != nil {
			t.Fatal(err)
		}
	})

	// The agent's local fence seals the mover, then releases the address: a
	// reconciler pass that checked "not fenced" just before must not put the address
	// back, nor keep announcing it, after the fence.
	t.Run("a seal stops an announcement in flight and refuses the next until unsealed", func(t *testing.T) {
		const rounds = 20
		m := newMover(t, Config{ARPCount: rounds, ARPInterval: 20 * time.Millisecond, SecondBurstDelay: delay})
		tb2 := startNSThread(t, b.ns, nil)
		var acqErr, relErr error
		var released time.Time
		frames := captureGARP(t, tc, mac, vip, func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				tb.do(func() { _, acqErr = m.Acquire(t.Context()) })
			}()
			time.Sleep(100 * time.Millisecond) // within the first burst
			m.Seal()
			tb2.do(func() { relErr = m.Release(t.Context()) })
			released = time.Now()
			<-done
		}, delay+500*time.Millisecond)
		if relErr != nil {
			t.Fatal(relErr)
		}
		if !errors.Is(acqErr, ErrSealed) {
			t.Fatalf("the Acquire in flight returned %v, want ErrSealed", acqErr)
		}
		for _, f := range frames {
			if f.at.After(released.Add(5 * time.Millisecond)) {
				t.Fatalf("a gratuitous ARP frame %s after the release", f.at.Sub(released))
			}
		}
		if len(frames) >= 2*rounds {
			t.Fatalf("captured %d frames: the whole burst went out despite the seal", len(frames))
		}
		held := func() bool {
			var h bool
			var err error
			tb.do(func() { h, err = m.Held(t.Context()) })
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		if held() {
			t.Fatal("the address is on the interface after the seal and the release")
		}
		var err error
		tb.do(func() { _, err = m.Acquire(t.Context()) })
		if !errors.Is(err, ErrSealed) || held() {
			t.Fatalf("Acquire on a sealed mover: %v, held %v; want ErrSealed and no address", err, held())
		}
		m.Unseal()
		tb.do(func() { _, err = m.Acquire(t.Context()) })
		if err != nil || !held() {
			t.Fatalf("Acquire after Unseal: %v, held %v; want the address", err, held())
		}
		tb.do(func() { err = m.Release(t.Context()) })
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("address removed behind its back", func(t *testing.T) {
		m := newMover(t, Config{ARPCount: count, ARPInterval: 5 * time.Millisecond, SecondBurstDelay: delay})
		frames := captureGARP(t, tc, mac, vip, func() {
			var err error
			tb.do(func() { _, err = m.Acquire(t.Context()) })
			if err != nil {
				t.Fatal(err)
			}
			ip(t, "-n", b.ns, "addr", "del", testVIP+"/24", "dev", "eth0")
		}, delay+400*time.Millisecond)
		if len(frames) != 2*count {
			t.Fatalf("captured %d frames, want only the first burst's %d: the address was gone before the second", len(frames), 2*count)
		}
	})
}

type capturedFrame struct {
	at   time.Time
	data []byte
}

// captureGARP listens on eth0 in the thread's namespace, runs act, and
// returns the gratuitous ARP frames for vip from mac seen within window.
func captureGARP(t *testing.T, th *nsThread, mac net.HardwareAddr, vip netip.Addr, act func(), window time.Duration) []capturedFrame {
	t.Helper()
	var fd int
	var err error
	th.do(func() {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(etherTypeARP)))
		if err != nil {
			return
		}
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return
		}
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(etherTypeARP), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("open capture socket: %v", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	var (
		mu     sync.Mutex
		frames []capturedFrame
		stop   = make(chan struct{})
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout: look at stop again
			}
			f := buf[:n]
			if n < etherHdrLen+arpLen {
				continue
			}
			arp := f[etherHdrLen:]
			ip4 := vip.As4()
			if !bytes.Equal(arp[8:14], mac) || !bytes.Equal(arp[14:18], ip4[:]) || !bytes.Equal(arp[24:28], ip4[:]) {
				continue
			}
			mu.Lock()
			frames = append(frames, capturedFrame{at: time.Now(), data: bytes.Clone(f)})
			mu.Unlock()
		}
	}()
	act()
	time.Sleep(window)
	close(stop)
	<-done
	return frames
}

// TestNeverTwoHolders moves the VIP back and forth, Release then Acquire,
// while a sampler looks at both namespaces with `ip addr` every 50 ms. The
// two namespaces cannot be read at one instant, so the sampler reads X, Y,
// X and counts a double hold only when X held it both times and Y in
// between; the order alternates each tick.
func TestNeverTwoHolders(t *testing.T) {
	lan := newLAN(t, "two", map[string]string{"a": "198.18.0.11/24", "b": "198.18.0.12/24"})
	a, b := lan["a"], lan["b"]
	ta := startNSThread(t, a.ns, nil)
	tb := startNSThread(t, b.ns, nil)
	ctx := t.Context()
	ma := newMover(t, Config{SecondBurstDelay: 100 * time.Millisecond})
	mb := newMover(t, Config{SecondBurstDelay: 100 * time.Millisecond})

	type sample struct{ a, b bool }
	var (
		samples []sample
		double  []string
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		x, y := a.ns, b.ns
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			x1, err1 := ipOut("-n", x, "-4", "-o", "addr", "show", "dev", "eth0")
			y1, err2 := ipOut("-n", y, "-4", "-o", "addr", "show", "dev", "eth0")
			x2, err3 := ipOut("-n", x, "-4", "-o", "addr", "show", "dev", "eth0")
			if err := errors.Join(err1, err2, err3); err != nil {
				double = append(double, "sampler: "+err.Error())
				continue
			}
			hx1, hy, hx2 := strings.Contains(x1, " "+testVIP+"/"), strings.Contains(y1, " "+testVIP+"/"), strings.Contains(x2, " "+testVIP+"/")
			if hx1 && hy && hx2 {
				double = append(double, fmt.Sprintf("%s and %s both hold %s at %s", x, y, testVIP, time.Now().Format(time.StampMicro)))
			}
			if x == a.ns {
				samples = append(samples, sample{a: hx1 && hx2, b: hy})
			} else {
				samples = append(samples, sample{a: hy, b: hx1 && hx2})
			}
			x, y = y, x
		}
	}()

	movers := []struct {
		th *nsThread
		m  *Mover
	}{{ta, ma}, {tb, mb}}
	var err error
	movers[0].th.do(func() { _, err = movers[0].m.Acquire(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 8; i++ {
		time.Sleep(150 * time.Millisecond)
		from, to := movers[(i-1)%2], movers[i%2]
		from.th.do(func() { err = from.m.Release(ctx) })
		if err != nil {
			t.Fatal(err)
		}
		to.th.do(func() { _, err = to.m.Acquire(ctx) })
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	<-done

	for _, d := range double {
		t.Error(d)
	}
	var onA, onB int
	for _, s := range samples {
		if s.a {
			onA++
		}
		if s.b {
			onB++
		}
	}
	if onA == 0 || onB == 0 {
		t.Fatalf("sampler never saw the VIP on a (%d) or on b (%d) in %d samples: it is not looking", onA, onB, len(samples))
	}
	t.Logf("%d samples, VIP seen on a %d times and on b %d times, never on both", len(samples), onA, onB)
}

// TestMissingCapabilities drops a capability from the one thread that runs
// the Mover and checks the kernel's refusal is reported with its name.
func TestMissingCapabilities(t *testing.T) {
	ns := vethNS(t, "caps")
	ctx := t.Context()

	t.Run("CAP_NET_ADMIN", func(t *testing.T) {
		th := startNSThread(t, ns, func() error { return dropCapability(unix.CAP_NET_ADMIN) })
		m := newMover(t, Config{})
		var err error
		th.do(func() { _, err = m.Acquire(ctx) })
		if !errors.Is(err, ErrNeedNetAdmin) || !errors.Is(err, unix.EPERM) || !strings.Contains(fmt.Sprint(err), "CAP_NET_ADMIN") {
			t.Fatalf("Acquire without CAP_NET_ADMIN = %v, want an error naming CAP_NET_ADMIN", err)
		}
		t.Logf("Acquire: %v", err)
		if holds(t, ns, testVIP) {
			t.Fatal("VIP added although Acquire failed")
		}

		ip(t, "-n", ns, "addr", "add", testVIP+"/24", "dev", "eth0")
		th.do(func() { err = m.Release(ctx) })
		if !errors.Is(err, ErrNeedNetAdmin) || !strings.Contains(fmt.Sprint(err), "CAP_NET_ADMIN") {
			t.Fatalf("Release without CAP_NET_ADMIN = %v, want an error naming CAP_NET_ADMIN", err)
		}
		t.Logf("Release: %v", err)
		var held bool
		th.do(func() { held, err = m.Held(ctx) })
		if err != nil || !held {
			t.Fatalf("Held without CAP_NET_ADMIN = %v, %v; want true, nil (reading needs no capability)", held, err)
		}
		ip(t, "-n", ns, "addr", "del", testVIP+"/24", "dev", "eth0")
	})

	t.Run("CAP_NET_RAW", func(t *testing.T) {
		th := startNSThread(t, ns, func() error { return dropCapability(unix.CAP_NET_RAW) })
		m := newMover(t, Config{})
		var err error
		th.do(func() { _, err = m.Acquire(ctx) })
		if !errors.Is(err, ErrNeedNetRaw) || !errors.Is(err, unix.EPERM) || !strings.Contains(fmt.Sprint(err), "CAP_NET_RAW") {
			t.Fatalf("Acquire without CAP_NET_RAW = %v, want an error naming CAP_NET_RAW", err)
		}
		t.Logf("Acquire: %v", err)
		if holds(t, ns, testVIP) {
			t.Fatal("VIP added although it could not be announced")
		}
	})
}

func readAll(c net.Conn) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(c)
	return buf.Bytes(), err
}

// TestEachGARPFormUpdatesLinux sends only one form at a time and checks that
// a Linux client takes either: the request form, and the reply form whose
// target MAC repeats the sender's. Each is sent within locktime (1 s) of the
// client's last update of the entry, which an ordinary ARP reply could not
// override; a gratuitous one does.
func TestEachGARPFormUpdatesLinux(t *testing.T) {
	lan := newLAN(t, "form", map[string]string{"a": "198.18.0.11/24", "b": "198.18.0.12/24", "c": "198.18.0.5/24"})
	a, b, c := lan["a"], lan["b"], lan["c"]
	tc := startNSThread(t, c.ns, nil)
	vip := netip.MustParseAddr(testVIP)

	for _, op := range []arpOp{arpRequest, arpReply} {
		t.Run(op.String(), func(t *testing.T) {
			// The VIP on a, and the client's entry for it fresh and pointing at a.
			_, _ = ipOut("-n", b.ns, "addr", "del", testVIP+"/24", "dev", "eth0")
			ip(t, "-n", a.ns, "addr", "replace", testVIP+"/24", "dev", "eth0")
			ip(t, "-n", c.ns, "neigh", "flush", "dev", "eth0")
			tc.do(func() {
				if conn, err := net.DialTimeout("tcp4", testVIP+":9", time.Second); err == nil {
					conn.Close()
				}
			})
			if mac, state := neighbour(t, c.ns, testVIP); mac != a.mac {
				t.Fatalf("client's entry = %q %s, want a's MAC %s", mac, state, a.mac)
			}

			// Move it without a word, then announce with one form only.
			ip(t, "-n", a.ns, "addr", "del", testVIP+"/24", "dev", "eth0")
			ip(t, "-n", b.ns, "addr", "add", testVIP+"/24", "dev", "eth0")
			bmac, _ := net.ParseMAC(b.mac)
			tb := startNSThread(t, b.ns, nil)
			var err error
			tb.do(func() {
				var ifi *net.Interface
				if ifi, err = net.InterfaceByName("eth0"); err != nil {
					return
				}
				var s *arpSender
				if s, err = openARPSender("eth0", ifi.Index, bmac, vip); err != nil {
					return
				}
				defer s.close()
				s.frames = [][]byte{garpFrame(op, bmac, vip)}
				_, err = s.burst(t.Context(), 1, 0, time.Now, time.Now())
			})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(500 * time.Millisecond)
			for {
				mac, state := neighbour(t, c.ns, testVIP)
				if mac == b.mac {
					t.Logf("one gratuitous %s moved the client's entry to b (%s)", op, state)
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("after one gratuitous %s the client's entry is still %q %s, want b's MAC %s", op, mac, state, b.mac)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
