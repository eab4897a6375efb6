package cluster_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// TestWatch: Watch yields the state as it is, then one snapshot per revision that
// changes the cluster's keys, in order, each as Load would have read it then: a
// commit (the primary written and the intent deleted in one transaction) is one
// change, other clusters' keys are none, and the history's newest event comes along.
func TestWatch(t *testing.T) {
	cli := embeddedEtcd(t)
	store := cluster.NewStore(cli, "w1")
	other := cluster.NewStore(cli, "w2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := cluster.Guard{}
	if err := store.BootstrapPrimary(ctx, g, cluster.Primary{Node: "db1", Epoch: 1}); err != nil {
		t.Fatal(err)
	}

	snaps := make(chan cluster.Snapshot, 100)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- store.Watch(wctx, func(s cluster.Snapshot) error { snaps <- s; return nil })
	}()
	next := func(what string) cluster.Snapshot {
		t.Helper()
		select {
		case s := <-snaps:
			return s
		case <-time.After(5 * time.Second):
			t.Fatalf("no snapshot for %s within 5s", what)
			return cluster.Snapshot{}
		}
	}
	first := next("the state as it is")
	if first.Primary.Node != "db1" || first.Primary.Epoch != 1 {
		t.Fatalf("first snapshot: primary %+v, want db1 epoch 1", first.Primary)
	}

	// Changes, each in its own revision, and one in another cluster between them.
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.PutNode(ctx, lease.ID, cluster.NodeStatus{Node: "db1", Verdict: detector.Unwritable}); err != nil {
		t.Fatal(err)
	}
	if err := other.PutSettings(ctx, cluster.Settings{Paused: true}); err != nil {
		t.Fatal(err)
	}
	intentRev, err := store.PutIntent(ctx, g, lease.ID, first.PrimaryModRev, cluster.Intent{Kind: "failover", From: "db1", Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CommitPrimary(ctx, g, first.PrimaryModRev, intentRev, cluster.Primary{Node: "db2", Epoch: 2}, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.AppendHistory(ctx, cluster.Event{Kind: "failover", From: "db1", To: "db2", Epoch: 2, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}

	verdict := next("the verdict")
	if verdict.Nodes["db1"].Verdict != detector.Unwritable || verdict.Intent != nil || verdict.Rev <= first.Rev {
		t.Errorf("after the verdict: nodes %+v, intent %+v, rev %d (first %d)", verdict.Nodes, verdict.Intent, verdict.Rev, first.Rev)
	}
	intent := next("the intent")
	if intent.Intent == nil || intent.Intent.From != "db1" || intent.Primary.Node != "db1" {
		t.Errorf("after the intent: intent %+v, primary %+v; want an intent from db1, db1 still primary", intent.Intent, intent.Primary)
	}
	if intent.Rev != verdict.Rev+2 {
		t.Errorf("intent at revision %d, want %d: the other cluster's write is no change of this one", intent.Rev, verdict.Rev+2)
	}
	commit := next("the commit")
	if commit.Primary.Node != "db2" || commit.Intent != nil || commit.Rev != intent.Rev+1 {
		t.Errorf("after the commit: primary %+v, intent %+v, rev %d; want db2, no intent, one revision", commit.Primary, commit.Intent, commit.Rev)
	}
	hist := next("the history event")
	if hist.LastEvent == nil || hist.LastEvent.To != "db2" {
		t.Errorf("after the history event: last event %+v, want the failover to db2", hist.LastEvent)
	}
	tl := cluster.NewFailoverTimeline(first.Primary, time.Now())
	var got []cluster.Milestone
	for _, s := range []cluster.Snapshot{first, verdict, intent, commit, hist} {
		got = append(got, tl.Observe(s, time.Now())...)
	}
	want := []cluster.Milestone{cluster.MilestoneDetected, cluster.MilestoneDecided, cluster.MilestoneCommitted, cluster.MilestoneRecorded}
	if !slices.Equal(got, want) {
		t.Errorf("milestones along the watch = %v, want %v", got, want)
	}

	stop()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("Watch returned %v after its context ended, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return within 5s of its context ending")
	}
	select {
	case s := <-snaps:
		t.Errorf("an extra snapshot at revision %d: %+v", s.Rev, s.View)
	default:
	}
}
