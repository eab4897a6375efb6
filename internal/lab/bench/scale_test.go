package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
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

// TestScaleSmall runs the scale benchmark small: 4 clusters of hollow agents on a
// 1-member etcd of its own, 2 primaries failed; both are decided and committed, no
// other cluster moves, no lease renewal is late, and etcd's load is measured.
func TestScaleSmall(t *testing.T) {
	sandboxtest.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Scale(ctx, ScaleConfig{Clusters: 4, Nodes: 3, EtcdMembers: 1, Duration: 20 * time.Second, Fail: 2, Seed: 7,
		Bin: lab.Binaries{Baton: sandboxtest.Binary(t), Lab: sandboxtest.LabBinary(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Committed != 2 || res.Decided != 2 || res.FalseFailovers != 0 || res.LateRenewals != 0 {
		t.Fatalf("committed %d decided %d of 2, false failovers %d, late renewals %d", res.Committed, res.Decided, res.FalseFailovers, res.LateRenewals)
	}
	if res.Idle.BytesPerSAgent <= 0 || res.Idle.RequestsPerSAgent <= 0 || len(res.Members) != 1 || res.Members[0].RSSMiB <= 0 {
		t.Fatalf("etcd load not measured: %+v %+v", res.Idle, res.Members)
	}
	if res.DecisionP50MS <= 0 || res.CommitP99MS < res.DecisionP50MS {
		t.Fatalf("decision p50 %d ms, commit p99 %d ms", res.DecisionP50MS, res.CommitP99MS)
	}
}
