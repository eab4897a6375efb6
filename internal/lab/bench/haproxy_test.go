package bench

import (
	"context"
	"io"
	"log"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

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

// TestFailoverViaHAProxy: with HAProxy in front (deploy/haproxy.cfg's settings) and no
// virtual IP, after the primary is killed or its disk fills, writes through HAProxy's
// writer frontend resume on the new primary, the old primary acknowledges none after
// that, HAProxy routes writes to the new primary alone, and no acknowledged write is
// lost.
func TestFailoverViaHAProxy(t *testing.T) {
	bin := lab.Binaries{Baton: sandboxtest.Binary(t), Lab: sandboxtest.LabBinary(t)}
	// The fault and HAProxy break the writer's connections on purpose; the driver
	// would print each broken one.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	for _, tc := range []struct{ kind, name string }{{"kill", "hap-kill"}, {"disk-full", "hap-disk"}} {
		t.Run(tc.kind, func(t *testing.T) {
			f, err := ParseFailoverKind(tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			tr, err := failoverTrial(ctx, f, tc.name, bin, ViaHAProxy)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s via haproxy: %s promoted, writes resumed %s after the fault; %d acked, %d lost, %d acked by db1 after the switch, split-brain %s",
				tc.kind, tr.newPrimary, tr.failover.Round(time.Millisecond), tr.acked, tr.lost, tr.oldAcks, tr.splitBrain)
			if tr.newPrimary == "" || tr.newPrimary == "db1" {
				t.Fatalf("new primary %q", tr.newPrimary)
			}
			if tr.failover > 10*time.Second {
				t.Errorf("writes resumed %s after the fault, want within 10s", tr.failover.Round(time.Millisecond))
			}
			if tr.oldAcks != 0 {
				t.Errorf("the old primary acknowledged %d writes through HAProxy after the new one took writes", tr.oldAcks)
			}
			if tr.lost != 0 {
				t.Errorf("%d acknowledged writes are not on the new primary", tr.lost)
			}
			if tr.splitBrain != 0 {
				t.Errorf("two servers accepted writes for %s", tr.splitBrain)
			}
			if !slices.Equal(tr.writerRoutes, []string{tr.newPrimary}) {
				t.Errorf("HAProxy's writer backend routes to %v, want %s alone", tr.writerRoutes, tr.newPrimary)
			}
		})
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
