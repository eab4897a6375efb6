//go:build integration

package bench

import (
	"context"
	"io"
	"log"
	"slices"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/go-sql-driver/mysql"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

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
