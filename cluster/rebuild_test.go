package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
)

// TestRebuildRequests: a rebuild request is filed under rebuild/<node> and read back
// in a snapshot with its mod revision; a second one is refused while the first is
// pending or running (a rebuild takes long: no request may start another under
// it); the agent's answers compare the mod revision of what it read, so an answer to
// a replaced request changes nothing; and an answered one makes room for the next.
func TestRebuildRequests(t *testing.T) {
	cli := embeddedEtcd(t)
	store := cluster.NewStore(cli, "rb")
	ctx := context.Background()
	req := cluster.RebuildRequest{ID: "rebuild-1", Node: "db1", From: "db3", By: "ops", At: time.Now().UTC()}
	if err := store.PutRebuild(ctx, req); err != nil {
		t.Fatal(err)
	}
	snap, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := snap.Rebuilds["db1"]
	if !ok || got.ID != "rebuild-1" || got.From != "db3" || !got.Pending() || snap.RebuildModRev["db1"] == 0 {
		t.Fatalf("snapshot rebuilds %+v, revs %v: want rebuild-1 pending for db1 from db3", snap.Rebuilds, snap.RebuildModRev)
	}
	second := req
	second.ID = "rebuild-2"
	var pending *cluster.PendingError
	if err := store.PutRebuild(ctx, second); !errors.Is(err, cluster.ErrConflict) || !errors.As(err, &pending) {
		t.Fatalf("a second request while one is pending: %v, want a PendingError", err)
	}
	running := got
	running.State, running.Started = cluster.RequestRunning, time.Now().UTC()
	rev, err := store.AnswerRebuild(ctx, snap.RebuildModRev["db1"], running)
	if err != nil || rev <= snap.RebuildModRev["db1"] {
		t.Fatalf("take the request up: rev %d, %v", rev, err)
	}
	// Old enough not to count as pending: running still holds it.
	old := second
	old.At = time.Now().Add(-time.Hour)
	if err := store.PutRebuild(ctx, old); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("a request while one is running: %v, want ErrConflict", err)
	}
	// An answer on the revision read before the last write is refused.
	done := running
	done.State = cluster.RequestDone
	if _, err := store.AnswerRebuild(ctx, snap.RebuildModRev["db1"], done); !errors.Is(err, cluster.ErrConflict) {
		t.Fatalf("an answer on a stale revision: %v, want ErrConflict", err)
	}
	if _, err := store.AnswerRebuild(ctx, rev, done); err != nil {
		t.Fatal(err)
	}
	cur, _, err := store.RebuildRequestRev(ctx, "db1")
	if err != nil || cur == nil || cur.State != cluster.RequestDone || cur.Open() {
		t.Fatalf("request after the answer: %+v, %v: want done", cur, err)
	}
	if err := store.PutRebuild(ctx, second); err != nil {
		t.Fatalf("a new request once the first was answered: %v", err)
	}
	if cur, _, err := store.RebuildRequestRev(ctx, "db9"); err != nil || cur != nil {
		t.Fatalf("request of a node with none: %+v, %v", cur, err)
	}
}
