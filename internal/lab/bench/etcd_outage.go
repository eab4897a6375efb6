package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// EtcdOutageConfig is one run of the etcd outage benchmark.
type EtcdOutageConfig struct {
	Outage time.Duration // how long every etcd member stays stopped
	Name   string        // sandbox name
	Bin    lab.Binaries
	// NoFailsafe runs the agents without failsafe mode: what an outage did before it.
	NoFailsafe bool
}

// Validate checks the configuration and names the bad field.
func (cfg EtcdOutageConfig) Validate() error {
	switch {
	case cfg.Outage < time.Second || cfg.Outage > 10*time.Minute:
		return fmt.Errorf("seconds: %s: from 1 s to 10 min", cfg.Outage)
	case cfg.Name == "":
		return errors.New("name: a sandbox name is required")
	case cfg.Bin.Baton == "" || cfg.Bin.Lab == "":
		return errors.New("bin: both the baton and the baton-lab executables are required")
	}
	return nil
}

// EtcdOutageResult is what the etcd outage benchmark measured: `baton-lab bench
// etcd-outage --json` prints it.
type EtcdOutageResult struct {
	Failsafe bool  `json:"failsafe"` // the agents ran in failsafe mode
	OutageMS int64 `json:"outage_ms"`
	// Availability is the share of the outage's 100 ms windows in which the writer
	// (through the virtual IP) had a write acknowledged.
	Availability float64 `json:"availability"`
	AckedDuring  int     `json:"acked_during"`
	// LastAckMS is the last acknowledged write after etcd stopped (-1: none);
	// ResumedMS the first after etcd started again, from the start (-1: none in 30 s).
	LastAckMS  int64 `json:"last_ack_after_stop_ms"`
	ResumedMS  int64 `json:"resumed_after_start_ms"`
	Failover   bool  `json:"failover"` // the primary of record changed
	LostWrites int   `json:"lost_writes"`
	// MaxGapMS is the longest time without an acknowledged write from the stop until
	// 5 s after etcd is back.
	MaxGapMS int64 `json:"max_gap_ms"`
}

// EtcdOutage brings up a 3-node cluster with agents, semi-sync, a virtual IP and 3
// etcd members, writes through the virtual IP, stops every etcd member for
// cfg.Outage, starts them again, and measures how writes fared.
func EtcdOutage(ctx context.Context, cfg EtcdOutageConfig) (EtcdOutageResult, error) {
	res := EtcdOutageResult{LastAckMS: -1, ResumedMS: -1}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	res.Failsafe = !cfg.NoFailsafe
	c, store, done, err := benchClusterSpec(ctx, sandbox.Spec{Name: cfg.Name, Nodes: 3, SemiSync: true, WithAgents: true, VIP: true,
		EtcdMembers: 3, NoFailsafe: cfg.NoFailsafe, Binary: cfg.Bin.Baton, LabBinary: cfg.Bin.Lab})
	if err != nil {
		return res, err
	}
	defer done()
	w := c.NewWriter(10*time.Millisecond, benchWriteTimeout)
	w.Start(ctx)
	defer w.Stop()
	if err := lab.Until(ctx, 10*time.Second, func() bool { return len(w.Acks()) >= 50 }); err != nil {
		return res, fmt.Errorf("no steady writes before the outage: %w", err)
	}
	before, err := store.Load(ctx)
	if err != nil {
		return res, err
	}
	stopped := time.Now()
	if err := c.StopEtcd(ctx, ""); err != nil {
		return res, err
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(cfg.Outage):
	}
	started := time.Now()
	if err := c.StartEtcd(ctx, ""); err != nil {
		return res, err
	}
	res.OutageMS = started.Sub(stopped).Milliseconds()
	_ = lab.Until(ctx, 30*time.Second, func() bool {
		for _, a := range w.Acks() {
			if a.At.After(started) {
				return true
			}
		}
		return false
	})
	time.Sleep(5 * time.Second) // let a failover, if any, happen
	w.Stop()
	end := time.Now()
	last := stopped
	for _, a := range w.Acks() {
		if a.At.After(stopped) && a.At.Before(end) {
			res.MaxGapMS = max(res.MaxGapMS, a.At.Sub(last).Milliseconds())
			last = a.At
		}
	}
	res.MaxGapMS = max(res.MaxGapMS, end.Sub(last).Milliseconds())

	windows := map[int64]bool{}
	for _, a := range w.Acks() {
		switch {
		case a.At.After(stopped) && a.At.Before(started):
			res.AckedDuring++
			windows[a.At.Sub(stopped).Milliseconds()/100] = true
			res.LastAckMS = a.At.Sub(stopped).Milliseconds()
		case a.At.After(started) && res.ResumedMS < 0:
			res.ResumedMS = a.At.Sub(started).Milliseconds()
		}
	}
	if n := (res.OutageMS + 99) / 100; n > 0 { // windows started during the outage
		res.Availability = float64(len(windows)) / float64(n)
	}
	var after cluster.Snapshot
	if err := lab.Until(ctx, 10*time.Second, func() bool {
		after, err = store.Load(ctx)
		return err == nil
	}); err != nil {
		return res, fmt.Errorf("read etcd after the outage: %w", err)
	}
	res.Failover = after.Primary.Node != before.Primary.Node || after.Primary.Epoch != before.Primary.Epoch
	lost, err := lostOn(ctx, c, w, after.Primary.Node)
	if err != nil {
		return res, err
	}
	res.LostWrites = len(lost)
	return res, nil
}

// lostOn is the writer's acknowledged writes that node's server lacks, read within
// 10 s.
func lostOn(ctx context.Context, c *sandbox.Cluster, w *sandbox.Writer, node string) ([]int64, error) {
	db, err := c.RootDB(node)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return w.Lost(lctx, db)
}
