//go:build integration

package replication_test

import (
	"context"
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
	sb := sandboxtest.Up(t, sandbox.Spec{Name: "busy", Nodes: 1})
	admin, err := sb.AdminDB("db1")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
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
	root, err := sb.RootDB("db1")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
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
