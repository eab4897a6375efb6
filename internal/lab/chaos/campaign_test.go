package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/lab/chaos"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// TestCampaign is the short campaign CI runs: seed 2's first three rounds (a full
// disk on the primary; a replica stopped while a switchover is requested; the
// primary's agent killed) on a real cluster, every invariant checked after each.
func TestCampaign(t *testing.T) {
	bin := lab.Binaries{Baton: sandboxtest.Binary(t), Lab: sandboxtest.LabBinary(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := chaos.Config{Seed: 2, Rounds: 3, FromRound: 1, Nodes: 3, EtcdMembers: 3, FailoverBlock: time.Second,
		Name: "chaos-ci", Bin: bin, LogDir: t.TempDir(), Progress: testWriter{t}}
	rep, err := chaos.Run(ctx, cfg)
	if rep != nil {
		for _, v := range rep.Violations {
			t.Errorf("round %d: %s: %s [%s]", v.Round, v.Name, v.Detail, v.Schedule)
		}
		for _, q := range rep.Quarantines {
			t.Logf("quarantined in round %d: %s: %s (%s)", q.Round, q.Node, q.Reason, q.Repair)
		}
		for _, e := range rep.Errors {
			t.Errorf("campaign: %s", e)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rounds != 3 || rep.Checks["durability"] == 0 || rep.Checks["split-brain"] == 0 || rep.Checks["liveness"] != 9 || rep.Checks["agreement"] == 0 {
		t.Errorf("report: %d rounds, checks %v", rep.Rounds, rep.Checks)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}
