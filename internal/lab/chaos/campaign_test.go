//go:build integration

package chaos_test

import (
	"context"
	"fmt"
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
	if rep.Rounds != 3 || rep.Checks["durability"] == 0 || rep.Checks["split-brain"] == 0 || rep.Checks["liveness"] != 12 || rep.Checks["agreement"] == 0 {
		t.Errorf("report: %d rounds, checks %v", rep.Rounds, rep.Checks)
	}
}

// TestReplays replays rounds of longer campaigns that once broke an invariant, each
// on a cluster of its own, as the campaign's replay command does.
func TestReplays(t *testing.T) {
	bin := lab.Binaries{Baton: sandboxtest.Binary(t), Lab: sandboxtest.LabBinary(t)}
	for _, tc := range []struct {
		seed, round int
		was         string
	}{
		// The primary frozen, a replica's filesystem read-only: the replica restarted,
		// reconnected to its old source (replication auto-started) and fetched two
		// commits the new primary lacked; it was repointed forever, never quarantined,
		// and the new primary had no semi-sync replica left.
		{2, 5, "a replica errant after the failover, not quarantined; no write after healing"},
		// The primary's filesystem read-only, a replica's disk full 0.4 s later: the
		// replica was ranked first while its verdict was still healthy, and its relay
		// log, broken by the full disk, failed every CHANGE MASTER until a restart.
		{6, 9, "a replica with a full disk promoted; a broken relay log left it fenced"},
		// A replica's writes frozen, the primary's filesystem read-only: the old
		// primary came back with a row its binlog never got, rejoined (no errant GTID)
		// and stopped on a duplicate key, restarted by its agent twice a second.
		{16, 12, "a rejoined old primary with diverged data, left a degraded replica"},
		// The primary's agent killed, every etcd member stopped 2 s later: the agent,
		// restarted during the outage, exited on its first etcd read, and nothing held
		// the leader key after healing.
		{17, 4, "an agent restarted during an etcd outage exited; no leader after healing"},
		// The coordinator's agent frozen, then the primary: the new primary's only
		// replica left had a frozen agent, so its commits waited; it was failed over
		// again 20 ms after that replica's agent pointed it there, and both other
		// nodes ended quarantined.
		{21, 2, "a new primary waiting for its semi-sync replica failed over again; no replica left"},
	} {
		t.Run(fmt.Sprintf("seed %d round %d", tc.seed, tc.round), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cfg := chaos.Config{Seed: uint64(tc.seed), Rounds: 1, FromRound: tc.round, Nodes: 3, EtcdMembers: 3, FailoverBlock: time.Second,
				Name: "chaos-ci", Bin: bin, LogDir: t.TempDir(), Progress: testWriter{t}}
			rep, err := chaos.Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range rep.Violations {
				t.Errorf("%s: %s (once: %s)", v.Name, v.Detail, tc.was)
			}
			for _, q := range rep.Quarantines {
				t.Logf("quarantined: %s: %s (%s)", q.Node, q.Reason, q.Repair)
			}
			if rep.Rounds != 1 || rep.Checks["liveness"] != 4 {
				t.Errorf("report: %d rounds, checks %v", rep.Rounds, rep.Checks)
			}
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}
