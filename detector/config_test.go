package detector

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := Config{DSN: "root@unix(/tmp/x.sock)/", Node: "db1", Role: Primary}
	cases := []struct {
		name  string
		edit  func(*Config)
		field string // "" when valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"explicit timing", func(c *Config) { c.Interval, c.Timeout = time.Second, 900*time.Millisecond }, ""},
		{"bad dsn", func(c *Config) { c.DSN = "root@tcp(127.0.0.1:3306" }, "dsn"},
		{"no node", func(c *Config) { c.Node = "" }, "node"},
		{"long node", func(c *Config) { c.Node = strings.Repeat("n", 65) }, "node"},
		{"no role", func(c *Config) { c.Role = NoProbes }, "role"},
		{"negative interval", func(c *Config) { c.Interval = -time.Second }, "interval"},
		{"timeout equal to interval", func(c *Config) { c.Interval, c.Timeout = time.Second, time.Second }, "timeout"},
		{"timeout above interval", func(c *Config) { c.Interval, c.Timeout = 500*time.Millisecond, time.Second }, "timeout"},
		{"default timeout above a short interval", func(c *Config) { c.Interval = 200 * time.Millisecond }, "timeout"},
		{"negative fail_after", func(c *Config) { c.FailAfter = -1 }, "fail_after"},
		{"negative recover_after", func(c *Config) { c.RecoverAfter = -2 }, "recover_after"},
		{"negative horizon", func(c *Config) { c.DiskHorizon = -time.Minute }, "disk horizon"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				if _, err := New(c); err != nil {
					t.Fatalf("New refused a valid config: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("config accepted, want an error naming %q", tc.field)
			}
			if !strings.HasPrefix(err.Error(), tc.field+":") {
				t.Fatalf("error %q does not start with the field %q", err, tc.field)
			}
			if _, err := New(c); err == nil {
				t.Fatal("New accepted what Validate refused")
			}
		})
	}
}

func TestDefaultsMeetTheirOwnRule(t *testing.T) {
	if DefaultTimeout >= DefaultInterval {
		t.Fatalf("default timeout %s is not below the default interval %s", DefaultTimeout, DefaultInterval)
	}
}
