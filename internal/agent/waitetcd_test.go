package agent

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// An agent started while etcd is down waits for it and starts once it is back,
// instead of exiting (a fault campaign restarted an agent during an etcd outage:
// it exited, and its node, the primary, was left without an agent for good). It gives
// up only when told to stop.
func TestWaitForEtcd(t *testing.T) {
	a := testAgent(t, minimalYAML)
	dir := sandboxtest.EtcdDir(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{sandboxtest.EtcdEndpoint(dir)}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := cluster.NewStore(cli, "shop")

	// Down, and told to stop: the last error, once told.
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	start := time.Now()
	err = a.waitForEtcd(ctx, store)
	cancel()
	if err == nil || time.Since(start) < 1400*time.Millisecond {
		t.Fatalf("with etcd down: %v after %s; want an error when the context ends", err, time.Since(start))
	}

	// Down, then up 2 s later: it starts.
	done := make(chan error, 1)
	start = time.Now()
	go func() { done <- a.waitForEtcd(t.Context(), store) }()
	time.Sleep(2 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("waitForEtcd returned %v with etcd still down", err)
	default:
	}
	sandboxtest.EtcdAt(t, dir)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitForEtcd: %v", err)
		}
		t.Logf("started %s after the call, etcd up for %s", time.Since(start).Round(time.Millisecond), (time.Since(start) - 2*time.Second).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("etcd up for 10 s and the agent still waits")
	}
}
