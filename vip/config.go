package vip

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultARPCount         = 3
	DefaultARPInterval      = 10 * time.Millisecond
	DefaultSecondBurstDelay = 2 * time.Second
)

// Limits that New enforces. They keep Acquire's first burst short (it runs
// while the reconciler waits) and the second burst close enough to the move
// to still matter.
const (
	maxARPCount         = 50
	maxARPInterval      = time.Second
	maxSecondBurstDelay = time.Minute
)

// Config describes one virtual IP on one interface. Zero values of the
// optional fields take the defaults above.
type Config struct {
	// Address is the VIP with its prefix length, e.g. "198.18.0.100/24".
	// IPv4 only: gratuitous ARP has no IPv6 meaning (that would be an
	// unsolicited neighbour advertisement, which Baton does not send).
	Address string `yaml:"address"`
	// Interface is the name of the interface that carries the VIP, in the
	// network namespace of the caller, e.g. "eth0".
	Interface string `yaml:"interface"`
	// ARPCount is the number of rounds in each burst; each round is one
	// gratuitous ARP request and one gratuitous ARP reply. Default 3.
	ARPCount int `yaml:"arp_count"`
	// ARPInterval is the pause between rounds of a burst. Default 10ms.
	ARPInterval time.Duration `yaml:"arp_interval"`
	// SecondBurstDelay is how long after the first burst the second one is
	// sent, for switches and hosts that missed the first (a port still
	// learning, a dropped broadcast). Default 2s.
	SecondBurstDelay time.Duration `yaml:"second_burst_delay"`
}

// withDefaults returns c with zero optional fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.ARPCount == 0 {
		c.ARPCount = DefaultARPCount
	}
	if c.ARPInterval == 0 {
		c.ARPInterval = DefaultARPInterval
	}
	if c.SecondBurstDelay == 0 {
		c.SecondBurstDelay = DefaultSecondBurstDelay
	}
	return c
}

// validate checks a Config that already has its defaults and returns the
// parsed address. Every error names the field at fault.
func (c Config) validate() (netip.Prefix, error) {
	p, err := parseAddress(c.Address)
	if err != nil {
		return netip.Prefix{}, err
	}
	if err := validInterfaceName(c.Interface); err != nil {
		return netip.Prefix{}, err
	}
	if c.ARPCount < 1 || c.ARPCount > maxARPCount {
		return netip.Prefix{}, fmt.Errorf("vip config: arp_count %d: must be between 1 and %d", c.ARPCount, maxARPCount)
	}
	if c.ARPInterval < 0 || c.ARPInterval > maxARPInterval {
		return netip.Prefix{}, fmt.Errorf("vip config: arp_interval %s: must be between 0 and %s", c.ARPInterval, maxARPInterval)
	}
	if c.SecondBurstDelay < 0 || c.SecondBurstDelay > maxSecondBurstDelay {
		return netip.Prefix{}, fmt.Errorf("vip config: second_burst_delay %s: must be between 0 and %s", c.SecondBurstDelay, maxSecondBurstDelay)
	}
	return p, nil
}

func parseAddress(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("vip config: address is empty: want an IPv4 address with prefix length, like 198.18.0.100/24")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("vip config: address %q: want an IPv4 address with prefix length, like 198.18.0.100/24: %w", s, err)
	}
	a := p.Addr()
	if !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("vip config: address %q: only IPv4 is supported", s)
	}
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Prefix{}, fmt.Errorf("vip config: address %q: not a unicast address a client can reach", s)
	}
	// On /31 and /32 every address is a host; below that the first and last
	// addresses are the network and the broadcast address, which no host can
	// take over.
	if p.Bits() < 31 {
		if a == p.Masked().Addr() {
			return netip.Prefix{}, fmt.Errorf("vip config: address %q: is the network address of its prefix", s)
		}
		if a == lastAddr(p) {
			return netip.Prefix{}, fmt.Errorf("vip config: address %q: is the broadcast address of its prefix", s)
		}
	}
	return p, nil
}

// lastAddr returns the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// validInterfaceName applies the kernel's rules for interface names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or space.
func validInterfaceName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("vip config: interface is empty")
	case len(s) > 15:
		return fmt.Errorf("vip config: interface %q: longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Errorf("vip config: interface %q: not a valid name", s)
	case strings.ContainsAny(s, "/: \t\n"):
		return fmt.Errorf("vip config: interface %q: contains '/', ':' or white space", s)
	}
	return nil
}
