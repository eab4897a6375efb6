package bench

import (
	"strings"
	"testing"

	"github.com/baton-ha/baton/internal/lab"
)

func TestParseVia(t *testing.T) {
	for s, want := range map[string]Via{"vip": ViaVIP, "haproxy": ViaHAProxy} {
		if got, err := ParseVia(s); err != nil || got != want || got.String() != s {
			t.Errorf("%q = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "VIP", "dns"} {
		if _, err := ParseVia(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	cfg := FailoverConfig{Fault: "kill", Trials: 1, Name: "b", Bin: lab.Binaries{Baton: "/bin/baton", Lab: "/bin/baton-lab"}}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a configuration without a way in (Via zero) was accepted")
	}
	cfg.Via = ViaHAProxy
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestWriteViaHAProxy(t *testing.T) {
	vip := []FailoverResult{
		{Fault: "kill", P50FailoverMS: 1185, FailoverMS: []int64{1185}},
		{Fault: "stop", P50FailoverMS: 2566},
		{Fault: "disk-full", Via: "vip", P50FailoverMS: 1484},
	}
	hap := []FailoverResult{
		{Fault: "kill", Via: "haproxy", P50FailoverMS: 1400, FailoverMS: []int64{1400}},
		{Fault: "disk-full", Via: "haproxy", Errors: []string{"trial 1: boom"}},
	}
	var md strings.Builder
	writeViaHAProxy(&md, 3, vip, hap)
	out := md.String()
	for _, want := range []string{
		"## Failover through the VIP vs through HAProxy",
		"--via haproxy --trials 3",
		"| kill | vip | 1185 ms |",
		"| kill | haproxy | 1400 ms |",
		"| disk-full | vip | 1484 ms |",
		"trial 1: boom |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| stop |") {
		t.Errorf("a fault not measured through HAProxy is compared:\n%s", out)
	}
	if strings.Index(out, "| kill | vip") > strings.Index(out, "| kill | haproxy") {
		t.Error("the VIP row does not come first")
	}
}
