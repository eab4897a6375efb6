package vip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// arpOp is the ARP operation code (RFC 826).
type arpOp uint16

const (
	arpRequest arpOp = 1
	arpReply   arpOp = 2
)

func (o arpOp) String() string {
	switch o {
	case arpRequest:
		return "request"
	case arpReply:
		return "reply"
	}
	return fmt.Sprintf("arpOp(%d)", uint16(o))
}

const (
	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	arpHWEthernet = 1
	etherHdrLen   = 14
	arpLen        = 28
	// minFrameLen is the shortest Ethernet frame without its checksum
	// (ETH_ZLEN). Physical NICs pad short frames themselves, but a frame
	// written to an AF_PACKET socket goes out as is on veth and bridges,
	// and some switches and hosts drop runts, so the frame is padded here.
	minFrameLen = 60
)

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// garpFrame builds one gratuitous ARP frame announcing that ip is at mac:
// broadcast destination, sender and target protocol address both ip.
//
// The request form is what keepalived sends (target hardware address all
// ones). The reply form is what `arping -A` sends; Linux treats a reply as
// gratuitous only when its target hardware address equals the sender's
// (arp_is_garp in net/ipv4/arp.c), so that is what it carries. Some hosts
// and switches honour only one of the two forms, hence both are sent.
func garpFrame(op arpOp, mac net.HardwareAddr, ip netip.Addr) []byte {
	f := make([]byte, minFrameLen)
	copy(f[0:6], broadcastMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], etherTypeARP)

	a := f[etherHdrLen : etherHdrLen+arpLen]
	binary.BigEndian.PutUint16(a[0:2], arpHWEthernet)
	binary.BigEndian.PutUint16(a[2:4], etherTypeIPv4)
	a[4] = 6 // hardware address length
	a[5] = 4 // protocol address length
	binary.BigEndian.PutUint16(a[6:8], uint16(op))
	ip4 := ip.As4()
	copy(a[8:14], mac)
	copy(a[14:18], ip4[:])
	if op == arpReply {
		copy(a[18:24], mac)
	} else {
		copy(a[18:24], broadcastMAC)
	}
	copy(a[24:28], ip4[:])
	return f
}

// arpSender sends gratuitous ARP on one interface through a raw AF_PACKET
// socket. The socket belongs to the network namespace it was opened in, so
// it can be used later from any goroutine (and OS thread).
type arpSender struct {
	fd      int
	ifname  string
	ifindex int
	frames  [][]byte
}

// openARPSender opens the packet socket in the calling thread's network
// namespace. It is opened with protocol 0, so the kernel never queues
// received frames on it: it only sends.
func openARPSender(ifname string, ifindex int, mac net.HardwareAddr, ip netip.Addr) (*arpSender, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket for gratuitous arp on %s: %w", ifname, capError(err, ErrNeedNetRaw))
	}
	// A send on a congested device may block; never for long.
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set send timeout on packet socket for %s: %w", ifname, err)
	}
	return &arpSender{
		fd:      fd,
		ifname:  ifname,
		ifindex: ifindex,
		frames: [][]byte{
			garpFrame(arpRequest, mac, ip),
			garpFrame(arpReply, mac, ip),
		},
	}, nil
}

func (s *arpSender) close() { unix.Close(s.fd) }

// errLate marks a burst cut short because its next round was due more than
// burstLateLimit earlier: the process stalled (see burstLateLimit).
var errLate = errors.New("late: the process stalled, and this node may no longer hold the address")

// burstLateLimit is how late a round of gratuitous ARP may go out. Later, the
// process has stalled (SIGSTOP, a frozen VM, a host out of CPU), and whatever
// made this node the holder is older than the stall: the VIP may have moved
// meanwhile, and announcing it from here would point the segment at a node about
// to drop it, until each host's ARP entry goes stale (up to a minute). The round
// is not sent; the reconciler checks the node's claim again and, if it still
// holds, its next Acquire announces afresh.
const burstLateLimit = 500 * time.Millisecond

// burst sends count rounds (each a request and a reply) with interval
// between rounds, and returns how many frames went out. It stops early when
// ctx is done, and with errLate when now says a round would go out more than
// burstLateLimit after it was due (round i is due at start + i*interval).
//
// Mirrors `arping -U -c N -I IFACE VIP` followed by `arping -A -c N ...`,
// interleaved.
func (s *arpSender) burst(ctx context.Context, count int, interval time.Duration, now func() time.Time, start time.Time) (int, error) {
	sa := &unix.SockaddrLinklayer{
		Protocol: htons(etherTypeARP),
		Ifindex:  s.ifindex,
		Halen:    6,
	}
	copy(sa.Addr[:], broadcastMAC)

	sent := 0
	for i := range count {
		if i > 0 && interval > 0 {
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return sent, fmt.Errorf("gratuitous arp on %s after %d frames: %w", s.ifname, sent, ctx.Err())
			case <-t.C:
			}
		} else if err := ctx.Err(); err != nil {
			return sent, fmt.Errorf("gratuitous arp on %s after %d frames: %w", s.ifname, sent, err)
		}
		due := start.Add(time.Duration(i) * interval)
		if late := now().Sub(due); late > burstLateLimit {
			return sent, fmt.Errorf("gratuitous arp on %s after %d frames: round %d %s %w", s.ifname, sent, i+1, late.Round(time.Millisecond), errLate)
		}
		for _, f := range s.frames {
			if err := unix.Sendto(s.fd, f, 0, sa); err != nil {
				return sent, fmt.Errorf("send gratuitous arp on %s: %w", s.ifname, capError(err, ErrNeedNetRaw))
			}
			sent++
		}
	}
	return sent, nil
}

// htons converts to network byte order as the kernel reads it from
// sockaddr_ll, whatever the host's byte order.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// capError marks a permission error from the kernel with the sentinel that
// names the missing capability, keeping the original errno in the chain.
func capError(err, sentinel error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %w", sentinel, err)
	}
	return err
}
