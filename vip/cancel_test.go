package vip

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap/zaptest"
)

const testVIP = "198.18.0.100"

// newMover makes a Mover for testVIP/24 on eth0. New touches no kernel
// state, so it may run on any thread; the methods must run on a thread in
// the right namespace. Any second burst still pending is stopped before the
// test ends, so nothing logs after it.
func newMover(t *testing.T, cfg Config) *Mover {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = testVIP + "/24"
	}
	if cfg.Interface == "" {
		cfg.Interface = "eth0"
	}
	m, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.mu.Lock()
		m.stopPendingLocked()
		m.mu.Unlock()
	})
	return m
}

func TestCancelledContext(t *testing.T) {
	m := newMover(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a cancelled context = %v", err)
	}
	if err := m.Release(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Release with a cancelled context = %v", err)
	}
	if _, err := m.Held(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Held with a cancelled context = %v", err)
	}
}
