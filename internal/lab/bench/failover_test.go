package bench

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

func TestParseFailoverKind(t *testing.T) {
	cases := []struct {
		kind    string
		want    []sandbox.Fault
		wantErr string
	}{
		{"kill", []sandbox.Fault{sandbox.Kill}, ""},
		{"disk-full+exhaust-connections", []sandbox.Fault{sandbox.DiskFull, sandbox.ExhaustConnections}, ""},
		{"kill-agent+disk-full", []sandbox.Fault{sandbox.KillAgent, sandbox.DiskFull}, ""},
		{"cut-etcd", []sandbox.Fault{sandbox.CutEtcd}, ""},
		// Real faults that do not call for a failover, and nonsense, are refused.
		{"exhaust-connections", nil, "does not call for a failover"},
		{"kill-agent", nil, "does not call for a failover"},
		{"disk-full+kill", nil, "does not call for a failover"},
		{"", nil, "does not call for a failover"},
	}
	for _, tc := range cases {
		got, err := ParseFailoverKind(tc.kind)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.kind, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q = %v, %v; want %v", tc.kind, got, err, tc.want)
		}
	}
	for _, k := range FailoverKinds() {
		if _, err := ParseFailoverKind(k); err != nil {
			t.Errorf("listed kind %q does not parse: %v", k, err)
		}
	}
}

func TestEtcdOutageConfigValidate(t *testing.T) {
	bin := lab.Binaries{Baton: "/bin/baton", Lab: "/bin/baton-lab"}
	cases := []struct {
		cfg     EtcdOutageConfig
		wantErr string
	}{
		{EtcdOutageConfig{Outage: 30 * time.Second, Name: "b", Bin: bin}, ""},
		{EtcdOutageConfig{Outage: 0, Name: "b", Bin: bin}, "seconds"},
		{EtcdOutageConfig{Outage: time.Hour, Name: "b", Bin: bin}, "seconds"},
		{EtcdOutageConfig{Outage: time.Second, Bin: bin}, "name"},
		{EtcdOutageConfig{Outage: time.Second, Name: "b"}, "bin"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.wantErr)
		}
	}
}

func TestKeepOtherSections(t *testing.T) {
	doc := "# Benchmarks\n\n## Failover\n\nnew figures\n\n## etcd outage\n\nnew\n"
	old := "# Benchmarks\n\n## Failover\n\nold figures\n\n## Randomized fault campaign\n\nrounds\n\n## Scale\n\nclusters\n"
	got := keepOtherSections(doc, old)
	for _, want := range []string{"new figures", "## Randomized fault campaign\n\nrounds", "## Scale\n\nclusters"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old figures") || strings.Count(got, "## Failover") != 1 {
		t.Errorf("the old figures of a regenerated section stayed:\n%s", got)
	}
}

// TestAgentRestartsRefusesNoRounds: zero rounds is bad input, refused before any
// sandbox is made.
func TestAgentRestartsRefusesNoRounds(t *testing.T) {
	if _, err := AgentRestarts(t.Context(), lab.Binaries{}, 0, nil); err == nil || !strings.Contains(err.Error(), "rounds: 0") {
		t.Fatalf("AgentRestarts with 0 rounds: %v, want an error naming rounds", err)
	}
}
