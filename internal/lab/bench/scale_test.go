package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
)

func TestScaleConfigValidate(t *testing.T) {
	good := ScaleConfig{Clusters: 10, Nodes: 3, EtcdMembers: 3, Duration: time.Minute, Fail: 2, Bin: lab.Binaries{Lab: "/x"}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if withTTL := (ScaleConfig{Clusters: 10, Nodes: 3, EtcdMembers: 3, Duration: time.Minute, Fail: 2, Bin: lab.Binaries{Lab: "/x"}, SessionTTL: 10 * time.Second}); withTTL.Validate() != nil {
		t.Fatal(withTTL.Validate())
	}
	for _, c := range []struct {
		mod  func(*ScaleConfig)
		want string
	}{
		{func(c *ScaleConfig) { c.Clusters = 0 }, "clusters: 0"},
		{func(c *ScaleConfig) { c.Nodes = 1 }, "nodes: 1"},
		{func(c *ScaleConfig) { c.EtcdMembers = 2 }, "etcd-members: 2"},
		{func(c *ScaleConfig) { c.Duration = time.Second }, "minutes: 1s"},
		{func(c *ScaleConfig) { c.Fail = 11 }, "fail: 11"},
		{func(c *ScaleConfig) { c.Bin = lab.Binaries{} }, "bin:"},
		{func(c *ScaleConfig) { c.SessionTTL = time.Second }, "session-ttl: 1s"},
		{func(c *ScaleConfig) { c.SessionTTL = 2500 * time.Millisecond }, "session-ttl: 2.5s"},
		{func(c *ScaleConfig) { *c = ScaleConfig{} }, "clusters: 0"},
	} {
		cfg := good
		c.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}

func TestPct(t *testing.T) {
	if got := pct(nil, 50); got != -1 {
		t.Fatalf("pct of nothing = %d, want -1", got)
	}
	v := []int64{50, 10, 40, 30, 20}
	if p50, p99 := pct(v, 50), pct(v, 99); p50 != 30 || p99 != 50 {
		t.Fatalf("p50 %d p99 %d, want 30 and 50", p50, p99)
	}
}
