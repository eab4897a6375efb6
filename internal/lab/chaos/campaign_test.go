//go:build integration

package chaos_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/failpoint"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/lab/chaos"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// Schedules as Draw drew them before the fault matrix grew (the seed and round they
// were found with no longer draw them): seed 2's rounds 1-3, and the rounds that once
// broke an invariant.
var (
	seed2round1 = chaos.Schedule{Seed: 2, Round: 1, Faults: []chaos.Fault{
		{Kind: chaos.DiskFull, Target: chaos.TargetPrimary, For: 4700 * time.Millisecond}}}
	seed2round2 = chaos.Schedule{Seed: 2, Round: 2, Faults: []chaos.Fault{
		{Kind: chaos.Stop, Target: chaos.TargetReplica, Index: 0, For: 4600 * time.Millisecond},
		{Kind: chaos.SwitchoverRequest, Target: chaos.TargetCluster, At: 2100 * time.Millisecond}}}
	seed2round3 = chaos.Schedule{Seed: 2, Round: 3, Faults: []chaos.Fault{
		{Kind: chaos.KillAgent, Target: chaos.TargetPrimary, For: 3100 * time.Millisecond}}}
	seed2round5 = chaos.Schedule{Seed: 2, Round: 5, Faults: []chaos.Fault{
		{Kind: chaos.Stop, Target: chaos.TargetPrimary, For: 2200 * time.Millisecond},
		{Kind: chaos.ReadonlyFS, Target: chaos.TargetReplica, Index: 1, At: 1300 * time.Millisecond, For: 2400 * time.Millisecond}}}
	seed6round9 = chaos.Schedule{Seed: 6, Round: 9, Faults: []chaos.Fault{
		{Kind: chaos.ReadonlyFS, Target: chaos.TargetPrimary, For: 3800 * time.Millisecond},
		{Kind: chaos.DiskFull, Target: chaos.TargetReplica, Index: 0, At: 400 * time.Millisecond, For: 5700 * time.Millisecond}}}
	seed16round12 = chaos.Schedule{Seed: 16, Round: 12, Faults: []chaos.Fault{
		{Kind: chaos.FreezeWrites, Target: chaos.TargetReplica, Index: 1, For: 4100 * time.Millisecond},
		{Kind: chaos.ReadonlyFS, Target: chaos.TargetPrimary, At: 500 * time.Millisecond, For: 1900 * time.Millisecond}}}
	seed17round4 = chaos.Schedule{Seed: 17, Round: 4, Faults: []chaos.Fault{
		{Kind: chaos.KillAgent, Target: chaos.TargetPrimary, For: 4300 * time.Millisecond},
		{Kind: chaos.EtcdAllStop, Target: chaos.TargetEtcd, At: 2000 * time.Millisecond, For: 4000 * time.Millisecond}}}
	seed21round2 = chaos.Schedule{Seed: 21, Round: 2, Faults: []chaos.Fault{
		{Kind: chaos.StopAgent, Target: chaos.TargetCoordinator, For: 7400 * time.Millisecond},
		{Kind: chaos.Stop, Target: chaos.TargetPrimary, At: 4200 * time.Millisecond, For: 2600 * time.Millisecond}}}
	// Not drawn: written to put a DBA's purge where it hurts, a replica down meanwhile.
	purgeWhileReplicaDown = chaos.Schedule{Round: 1, Faults: []chaos.Fault{
		{Kind: chaos.Kill, Target: chaos.TargetReplica, Index: 0, For: 4 * time.Second},
		{Kind: chaos.PurgeBinlogs, Target: chaos.TargetPrimary, At: 2 * time.Second}}}
)

// TestCampaign is the short campaign CI runs on a real cluster, every invariant
// checked after each round: seed 2's first three rounds as they were first drawn (a
// full disk on the primary; a replica stopped while a switchover is requested; the
// primary's agent killed), then a replica's agent paused just before it promotes
// its server in a switchover to it, and a clean restart of the primary's server
// while a replica's binary logs are purged.
func TestCampaign(t *testing.T) {
	bin := lab.Binaries{Baton: sandboxtest.Binary(t), Lab: sandboxtest.LabBinary(t), Failpoint: sandboxtest.FailpointBinary(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	pause := chaos.Schedule{Seed: 2, Round: 4, Faults: []chaos.Fault{
		{Kind: chaos.PauseAt, Point: failpoint.BeforePromote, Target: chaos.TargetReplica, Index: 0, For: 4 * time.Second},
		{Kind: chaos.SwitchoverRequest, Target: chaos.TargetReplica, Index: 0, At: 3 * time.Second}}}
	restart := chaos.Schedule{Seed: 2, Round: 5, Faults: []chaos.Fault{
		{Kind: chaos.Restart, Target: chaos.TargetPrimary, For: 2 * time.Second},
		{Kind: chaos.PurgeBinlogs, Target: chaos.TargetReplica, Index: 1, At: time.Second}}}
	cfg := chaos.Config{Nodes: 3, EtcdMembers: 3, FailoverBlock: time.Second, Name: "chaos-ci", Bin: bin, LogDir: t.TempDir(),
		Progress: testWriter{t}, Schedules: []chaos.Schedule{seed2round1, seed2round2, seed2round3, pause, restart}}
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
	if rep.Rounds != 5 || rep.Checks["durability"] == 0 || rep.Checks["split-brain"] == 0 || rep.Checks["liveness"] != 20 ||
		rep.Checks["agreement"] == 0 || rep.Checks["forgetting"] == 0 {
		t.Errorf("report: %d rounds, checks %v", rep.Rounds, rep.Checks)
	}
	if p := rep.Pauses[failpoint.BeforePromote]; p.Armed != 1 || p.Reached != 1 {
		t.Errorf("pauses at before-promote: %d armed, %d reached; want the switchover's candidate stopped there", p.Armed, p.Reached)
	}
}

// TestReplays replays rounds of longer campaigns that once broke an invariant, each
// on a cluster of its own, as the campaign's replay command does.
func TestReplays(t *testing.T) {
	bin := lab.Binaries{Baton: sandboxtest.Binary(t), Lab: sandboxtest.LabBinary(t), Failpoint: sandboxtest.FailpointBinary(t)}
	for _, tc := range []struct {
		s   chaos.Schedule
		was string
	}{
		// The primary frozen, a replica's filesystem read-only: the replica restarted,
		// reconnected to its old source (replication auto-started) and fetched two
		// commits the new primary lacked; it was repointed forever, never quarantined,
		// and the new primary had no semi-sync replica left.
		{seed2round5, "a replica errant after the failover, not quarantined; no write after healing"},
		// The primary's filesystem read-only, a replica's disk full 0.4 s later: the
		// replica was ranked first while its verdict was still healthy, and its relay
		// log, broken by the full disk, failed every CHANGE MASTER until a restart.
		{seed6round9, "a replica with a full disk promoted; a broken relay log left it fenced"},
		// A replica's writes frozen, the primary's filesystem read-only: the old
		// primary came back with a row its binlog never got, rejoined (no errant GTID)
		// and stopped on a duplicate key, restarted by its agent twice a second.
		{seed16round12, "a rejoined old primary with diverged data, left a degraded replica"},
		// The primary's agent killed, every etcd member stopped 2 s later: the agent,
		// restarted during the outage, exited on its first etcd read, and nothing held
		// the leader key after healing.
		{seed17round4, "an agent restarted during an etcd outage exited; no leader after healing"},
		// The coordinator's agent frozen, then the primary: the new primary's only
		// replica left had a frozen agent, so its commits waited; it was failed over
		// again 20 ms after that replica's agent pointed it there, and both other
		// nodes ended quarantined.
		{seed21round2, "a new primary waiting for its semi-sync replica failed over again; no replica left"},
		// A replica killed while the primary's binary logs are purged: back, it asked
		// for GTIDs in no binary log left (error 1236), and its agent restarted
		// replication twice a second for good, a degraded replica never quarantined.
		{purgeWhileReplicaDown, "a replica whose binary logs were purged on the primary, restarted forever"},
	} {
		name := fmt.Sprintf("seed %d round %d", tc.s.Seed, tc.s.Round)
		if tc.s.Seed == 0 {
			name = "purge while a replica is down"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cfg := chaos.Config{Seed: tc.s.Seed, Nodes: 3, EtcdMembers: 3, FailoverBlock: time.Second,
				Name: "chaos-ci", Bin: bin, LogDir: t.TempDir(), Progress: testWriter{t}, Schedules: []chaos.Schedule{tc.s}}
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
