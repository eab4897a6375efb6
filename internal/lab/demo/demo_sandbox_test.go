//go:build integration

package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// TestDemo runs `baton-lab demo --json` as a user would (make demo), on its own sandbox,
// and holds it to what it claims: a failover off the full disk, each step within the
// demo's own (generous) limit, no acknowledged write lost, never two writable
// servers, the old primary back as a replica, and nothing left behind. How fast is
// logged; the benchmarks measure it.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, sandboxtest.LabBinary(t), "demo", "--json", "--name", "cdemo")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("baton-lab demo took %s; narration:\n%s", took.Round(time.Millisecond), stderr.String())
	if err != nil {
		t.Fatalf("baton-lab demo --json: %v\nstdout: %s", err, stdout.String())
	}
	var sum Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("stdout is not one JSON summary: %v\n%s", err, stdout.String())
	}
	if !sum.OK || sum.Error != "" {
		t.Errorf("ok = %v, error = %q", sum.OK, sum.Error)
	}
	if sum.OldPrimary == "" || sum.NewPrimary == "" || sum.NewPrimary == sum.OldPrimary {
		t.Errorf("old primary %q, new primary %q: want two different nodes", sum.OldPrimary, sum.NewPrimary)
	}
	if sum.LostWrites != 0 || sum.AckedWrites < 50 {
		t.Errorf("lost %d of %d acknowledged writes: want 0 lost of at least 50", sum.LostWrites, sum.AckedWrites)
	}
	if sum.SplitBrainMS != 0 {
		t.Errorf("split brain for %d ms", sum.SplitBrainMS)
	}
	// How soon: the demo's own step limits bound it (sum.OK), its figures are logged.
	if sum.FailoverMS < 0 {
		t.Errorf("failover_ms = %d: no failover", sum.FailoverMS)
	}
	// Each milestone follows the one it depends on.
	order := []struct {
		name string
		ms   int64
	}{{"detect", sum.DetectMS}, {"decide", sum.DecideMS}, {"failover", sum.FailoverMS}, {"writes resumed", sum.WritesResumedMS}}
	for i, o := range order {
		if o.ms < 0 {
			t.Errorf("%s did not happen (-1)", o.name)
		}
		if i > 0 && o.ms < order[i-1].ms {
			t.Errorf("%s at %d ms, before %s at %d ms", o.name, o.ms, order[i-1].name, order[i-1].ms)
		}
	}
	if !sum.Rejoined || sum.FinalRole != string(cluster.RoleReplica) {
		t.Errorf("rejoined = %v, final role %q: want the old primary back as a replica", sum.Rejoined, sum.FinalRole)
	}
	// By itself: the disk freed, nothing else (within the demo's own limit for it).
	if sum.Rejoin != "free-disk" || sum.RejoinMS < 0 {
		t.Errorf("rejoin %q in %d ms: want free-disk, the old primary rejoining once its disk is freed", sum.Rejoin, sum.RejoinMS)
	}
	if sum.QuarantinedAfterFailover && !strings.Contains(sum.RejoinEvent, "phantom") {
		t.Errorf("the old primary was quarantined, but no rejoin event about phantom GTIDs: %q", sum.RejoinEvent)
	}
	if len(sum.FailoverSteps) < 5 || sum.FailoverReason == "" {
		t.Errorf("failover steps %+v, reason %q: want the history event's steps and reason", sum.FailoverSteps, sum.FailoverReason)
	}
	var names []string
	for _, s := range sum.Steps {
		names = append(names, s.Name)
		if !s.OK {
			t.Errorf("step %s failed: %s", s.Name, s.Error)
		}
	}
	for _, want := range []string{"up", "disk_full", "failover", "vip_moved", "writes_resumed", "nothing_lost", "free_disk", "rejoined", "all_healthy",
		"unblock", "cut_network", "second_failover", "heal_network", "undone", "down"} {
		if !slices.Contains(names, want) {
			t.Errorf("no step %s in %v", want, names)
		}
	}
	if sum.CutPrimary == "" || sum.UndoMS < 0 || sum.UndoArchive == "" {
		t.Errorf("cut primary %q rejoined %d ms after the heal, archive %q: want it back by itself, its errant writes archived", sum.CutPrimary, sum.UndoMS, sum.UndoArchive)
	}
	for _, want := range []string{"verdict unwritable", "decided: failover away from", "promoted (epoch 2)", "VIP now on", "writes resumed on", "nothing lost", "rejoined as a replica of",
		"errant transactions are kept in"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the narration does not say %q", want)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || strings.Contains(string(out), "baton-cdemo-") {
		t.Errorf("namespaces left behind after the demo: %s %v", out, err)
	}
}
