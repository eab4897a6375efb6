package vip_test

import (
	"context"

	"github.com/baton-ha/baton/vip"
	"go.uber.org/zap"
)

// The reconciler's use: the node that is primary of record and holds the
// leader key acquires the VIP with the agent's long-lived context (so the
// second burst goes out); every other node, and a node fencing itself,
// releases it. (Compiled, not run: it would act on this host's eth0.)
func ExampleMover() {
	var agentCtx context.Context = context.Background()
	logger := zap.NewNop()

	m, err := vip.New(vip.Config{Address: "198.18.0.100/24", Interface: "eth0", ARPCount: 3}, logger)
	if err != nil {
		logger.Fatal("vip config", zap.Error(err))
	}

	isPrimaryWithLeader := false
	if isPrimaryWithLeader {
		res, err := m.Acquire(agentCtx)
		if err != nil {
			logger.Error("acquire vip", zap.Error(err))
		}
		if res.Added {
			logger.Info("vip moved here", zap.Duration("took", res.Took), zap.Int("arp_frames", res.ARPSent))
		}
	} else if err := m.Release(agentCtx); err != nil {
		logger.Error("release vip", zap.Error(err))
	}
}
