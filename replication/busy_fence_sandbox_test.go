//go:build integration

package replication_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// TestFenceABusyPrimaryOnAFullDisk: writes hang on a full disk and every
// connection is taken, the administrator's extra one included. The agent's fence
// gets a connection it held already for SET GLOBAL read_only, which waits for the
// hung writes; the kills that release them need another, and the server takes no
// new one (error 1040). The Instance keeps a spare connection from its earlier
// calls for them: read_only is set, within the agent's 500 ms fence.
func TestFenceABusyPrimaryOnAFullDisk(t *testing.T) {
	sb, admin, root := oneServer(t, "busy")
	in, err := replication.New(admin, replication.Config{Name: "db1", Timeout: 2 * time.Second, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// The agent reads its server at every pass: the calls it makes before the fault.
	if _, err := in.Status(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := sb.Fault(ctxFor(t, 30*time.Second), "db1", sandbox.DiskFull); err != nil {
		t.Fatal(err)
	}
	hung := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := root.ExecContext(ctx, "INSERT INTO sandbox.t(v) VALUES ('on a full disk')")
		hung <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := sb.Fault(ctxFor(t, 30*time.Second), "db1", sandbox.ExhaustConnections); err != nil {
		t.Fatal(err)
	}
	fresh, err := sb.RootDB("db1")
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.PingContext(ctxFor(t, 2*time.Second)); err == nil {
		t.Fatal("setup: the server still takes a new connection")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond) // the agent's fence_timeout
	defer cancel()
	start := time.Now()
	rep, err := in.Fence(ctx)
	took := time.Since(start)
	t.Logf("Fence on a busy primary with a full disk: %s, %+v, %v", took.Round(time.Millisecond), rep, err)
	if err != nil || !rep.ReadOnly || rep.Killed < 1 {
		t.Fatalf("Fence: %+v %v: want read_only set and the hung writers killed", rep, err)
	}
	if took > 500*time.Millisecond+deadlineSlack {
		t.Fatalf("Fence took %s with a 500ms deadline", took)
	}
	select {
	case err := <-hung:
		t.Logf("the client's write ended: %v", err)
	case <-time.After(5 * time.Second):
		t.Error("the client's write still hangs after Fence")
	}
}

// TestSpareConnectionEnds: an Instance's spare connection goes with Close (the
// pool, the caller's, then leaves nothing open); one made with NoSpare keeps none.
func TestSpareConnectionEnds(t *testing.T) {
	sb, admin, root := oneServer(t, "spare")
	var user string
	if err := admin.QueryRowContext(ctxFor(t, 5*time.Second), "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)").Scan(&user); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	sessions := func() int {
		var n int
		if err := root.QueryRowContext(ctxFor(t, 2*time.Second), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?", user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	sandboxtest.WaitFor(t, 5*time.Second, "no session of "+user, func() bool { return sessions() == 0 })

	for _, noSpare := range []bool{false, true} {
		db, err := sb.AdminDB("db1")
		if err != nil {
			t.Fatal(err)
		}
		in, err := replication.New(db, replication.Config{Name: "db1", NoSpare: noSpare})
		if err != nil {
			t.Fatal(err)
		}
		// The first call's connection may become the spare; the second's stays in
		// the pool, idle, beside it.
		for range 2 {
			if _, err := in.Status(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		want := 2
		if noSpare {
			want = 1
		}
		if n := sessions(); n != want {
			t.Fatalf("no spare %v: %d sessions of %s, want %d", noSpare, n, user, want)
		}
		in.Close()
		db.Close()
		sandboxtest.WaitFor(t, 5*time.Second, "every session gone after Close", func() bool { return sessions() == 0 })
	}
}

// oneServer brings up a one-node sandbox named name and returns it with pools of
// db1 as Baton's account and as root, closed when the test ends.
func oneServer(t *testing.T, name string) (*sandbox.Cluster, *sql.DB, *sql.DB) {
	t.Helper()
	sb := sandboxtest.Up(t, sandbox.Spec{Name: name, Nodes: 1})
	admin, err := sb.AdminDB("db1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	root, err := sb.RootDB("db1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return sb, admin, root
}
