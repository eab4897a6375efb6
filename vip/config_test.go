package vip

import (
	"strings"
	"testing"
	"time"
)

func TestNewValidatesConfig(t *testing.T) {
	ok := Config{Address: "198.18.0.100/24", Interface: "eth0"}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring naming the field; "" means valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"host route", func(c *Config) { c.Address = "198.18.0.100/32" }, ""},
		{"point to point", func(c *Config) { c.Address = "198.18.0.0/31" }, ""},
		{"all fields", func(c *Config) {
			c.ARPCount, c.ARPInterval, c.SecondBurstDelay = 5, 200*time.Millisecond, 5*time.Second
		}, ""},
		{"zero interval is allowed after defaults", func(c *Config) { c.ARPInterval = 0 }, ""},
		{"empty address", func(c *Config) { c.Address = "" }, "address is empty"},
		{"no prefix length", func(c *Config) { c.Address = "198.18.0.100" }, "address \"198.18.0.100\""},
		{"garbage", func(c *Config) { c.Address = "vip" }, "address \"vip\""},
		{"ipv6", func(c *Config) { c.Address = "2001:db8::1/64" }, "only IPv4"},
		{"v4-mapped ipv6", func(c *Config) { c.Address = "::ffff:198.18.0.100/120" }, "only IPv4"},
		{"unspecified", func(c *Config) { c.Address = "0.0.0.0/0" }, "not a unicast"},
		{"loopback", func(c *Config) { c.Address = "127.0.0.2/8" }, "not a unicast"},
		{"multicast", func(c *Config) { c.Address = "224.0.0.18/24" }, "not a unicast"},
		{"link local", func(c *Config) { c.Address = "169.254.1.1/16" }, "not a unicast"},
		{"network address", func(c *Config) { c.Address = "198.18.0.0/24" }, "network address"},
		{"broadcast address", func(c *Config) { c.Address = "198.18.0.255/24" }, "broadcast address"},
		{"broadcast /30", func(c *Config) { c.Address = "198.18.0.103/30" }, "broadcast address"},
		{"empty interface", func(c *Config) { c.Interface = "" }, "interface is empty"},
		{"long interface", func(c *Config) { c.Interface = "abcdefghijklmnop" }, "interface \"abcdefghijklmnop\""},
		{"interface with slash", func(c *Config) { c.Interface = "eth0/1" }, "interface \"eth0/1\""},
		{"interface label", func(c *Config) { c.Interface = "eth0:vip" }, "interface \"eth0:vip\""},
		{"interface dot", func(c *Config) { c.Interface = "." }, "interface \".\""},
		{"negative count", func(c *Config) { c.ARPCount = -1 }, "arp_count -1"},
		{"huge count", func(c *Config) { c.ARPCount = 1000 }, "arp_count 1000"},
		{"negative interval", func(c *Config) { c.ARPInterval = -time.Millisecond }, "arp_interval"},
		{"long interval", func(c *Config) { c.ARPInterval = 2 * time.Second }, "arp_interval"},
		{"negative second burst", func(c *Config) { c.SecondBurstDelay = -time.Second }, "second_burst_delay"},
		{"late second burst", func(c *Config) { c.SecondBurstDelay = time.Hour }, "second_burst_delay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			m, err := New(c, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New(%+v): %v", c, err)
				}
				if m.Interface() != c.Interface || m.Address().String() != c.Address {
					t.Fatalf("New(%+v) = %s on %s", c, m.Address(), m.Interface())
				}
				return
			}
			if err == nil {
				t.Fatalf("New(%+v) accepted, want error containing %q", c, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New(%+v) = %q, want it to contain %q", c, err, tt.wantErr)
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	m, err := New(Config{Address: "198.18.0.100/24", Interface: "eth0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.ARPCount != DefaultARPCount || m.cfg.ARPInterval != DefaultARPInterval || m.cfg.SecondBurstDelay != DefaultSecondBurstDelay {
		t.Fatalf("defaults not applied: %+v", m.cfg)
	}
}
