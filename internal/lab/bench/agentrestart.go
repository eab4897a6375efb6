package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// Restarts of Baton's own agents, as a supervisor or a rolling upgrade makes them,
// must cost no write: `baton-lab bench agent-restart`.

// AgentRestartKinds are the restarts measured, in order.
func AgentRestartKinds() []string {
	return []string{"kill-primary-agent", "term-primary-agent", "rolling"}
}

// AgentRestart is one restart (or, for "rolling", one agent's turn) as measured.
type AgentRestart struct {
	Kind string `json:"kind"`
	Node string `json:"node"`
	// WriterGapMS is the writer's longest time between two acknowledged writes from
	// the agent's stop until Settle after it answered again.
	WriterGapMS int64 `json:"writer_gap_ms"`
	// BackMS is the agent's stop -> its new lease in etcd.
	BackMS int64 `json:"back_ms"`
	// Epoch is the primary of record's epoch after it; a change is a failover.
	Epoch uint64 `json:"epoch"`
	Error string `json:"error,omitempty"`
}

// AgentRestartResult is what `baton-lab bench agent-restart --json` prints.
type AgentRestartResult struct {
	Restarts []AgentRestart `json:"restarts"`
	// Per kind: the writer's gap p50 and max, in ms.
	P50GapMS map[string]int64 `json:"p50_gap_ms"`
	MaxGapMS map[string]int64 `json:"max_gap_ms"`
	// Failovers counts the restarts after which the primary of record changed;
	// Lost the acknowledged writes missing on the primary at the end.
	Failovers int `json:"failovers"`
	Lost      int `json:"lost"`
	Acked     int `json:"acked"`
	Errors    int `json:"errors"`
}

// Down is how long a stopped agent stays down before it is started again: a
// supervisor's restart delay (systemd's RestartSec=1).
const agentDown = time.Second

// agentSettle is how long the writer is watched after the restarted agent holds a
// new lease.
const agentSettle = 5 * time.Second

// AgentRestarts brings up a 3-node cluster with agents, semi-sync and a virtual IP,
// writes through the virtual IP every 10 ms and restarts agents rounds times per
// kind: the primary's agent killed (SIGKILL), stopped (SIGTERM), and every agent
// stopped and started in turn (a rolling restart), each down for agentDown.
func AgentRestarts(ctx context.Context, bin lab.Binaries, rounds int, progress io.Writer) (AgentRestartResult, error) {
	if rounds < 1 {
		return AgentRestartResult{}, fmt.Errorf("rounds: %d: at least 1", rounds)
	}
	if progress == nil {
		progress = io.Discard
	}
	c, store, done, err := benchClusterSpec(ctx, sandbox.Spec{Name: "ar-bench", Nodes: 3, SemiSync: true, WithAgents: true, VIP: true,
		EtcdMembers: 1, Binary: bin.Baton, LabBinary: bin.Lab})
	if err != nil {
		return AgentRestartResult{}, err
	}
	defer done()
	w := c.NewWriter(10*time.Millisecond, benchWriteTimeout)
	w.Start(ctx)
	defer w.Stop()
	time.Sleep(2 * time.Second)
	res := AgentRestartResult{P50GapMS: map[string]int64{}, MaxGapMS: map[string]int64{}}
	first, err := loadWithin(ctx, store)
	if err != nil {
		return res, err
	}
	epoch := first.Primary.Epoch
	for _, kind := range AgentRestartKinds() {
		var gaps []int64
		for range rounds {
			snap, err := loadWithin(ctx, store)
			if err != nil {
				return res, err
			}
			nodes := []string{snap.Primary.Node}
			if kind == "rolling" {
				nodes = nil
				for _, n := range c.Nodes {
					nodes = append(nodes, n.Name)
				}
			}
			for _, node := range nodes {
				r := restartAgent(ctx, c, store, w, kind, node)
				if r.Error != "" {
					res.Errors++
				}
				if r.Epoch != epoch {
					res.Failovers++
					epoch = r.Epoch
				}
				gaps = append(gaps, r.WriterGapMS)
				res.Restarts = append(res.Restarts, r)
				fmt.Fprintf(progress, "%s %s: writer gap %d ms, agent back in %d ms, epoch %d %s\n", kind, node, r.WriterGapMS, r.BackMS, r.Epoch, r.Error)
			}
		}
		res.P50GapMS[kind], res.MaxGapMS[kind] = p50max(gaps)
	}
	w.Stop()
	snap, err := loadWithin(ctx, store)
	if err != nil {
		return res, err
	}
	lost, err := lostOn(ctx, c, w, snap.Primary.Node)
	if err != nil {
		return res, err
	}
	res.Lost, res.Acked = len(lost), len(w.Acks())
	return res, nil
}

// restartAgent stops node's agent (SIGKILL for kill-primary-agent, else SIGTERM),
// starts it agentDown later, waits for its new lease and watches the writer for
// agentSettle more.
func restartAgent(ctx context.Context, c *sandbox.Cluster, store *cluster.Store, w *sandbox.Writer, kind, node string) AgentRestart {
	r := AgentRestart{Kind: kind, Node: node}
	before, err := loadWithin(ctx, store)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	oldLease := before.NodeLeases[node]
	stop := sandbox.TermAgent
	if kind == "kill-primary-agent" {
		stop = sandbox.KillAgent
	}
	start := time.Now()
	if err := c.Fault(ctx, node, stop); err != nil {
		r.Error = "stop the agent: " + err.Error()
		return r
	}
	time.Sleep(agentDown)
	if err := c.Fault(ctx, node, sandbox.StartAgent); err != nil {
		r.Error = "start the agent: " + err.Error()
		return r
	}
	var back time.Time
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		snap, err := loadWithin(ctx, store)
		if err != nil {
			continue
		}
		if l := snap.NodeLeases[node]; l != 0 && l != oldLease {
			back = time.Now()
			break
		}
	}
	if back.IsZero() {
		r.Error = "the agent took no new lease within 30 s"
		back = time.Now()
	}
	r.BackMS = back.Sub(start).Milliseconds()
	time.Sleep(agentSettle)
	acks := w.Acks()
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		if acks[i].At.After(start) {
			gap = max(gap, acks[i].At.Sub(acks[i-1].At))
		}
	}
	if n := len(acks); n > 0 && time.Since(acks[n-1].At) > gap {
		gap = time.Since(acks[n-1].At) // no write since: the gap is still open
	}
	r.WriterGapMS = gap.Milliseconds()
	after, err := loadWithin(ctx, store)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Epoch = after.Primary.Epoch
	return r
}

// loadWithin reads the cluster with a deadline.
func loadWithin(ctx context.Context, store *cluster.Store) (cluster.Snapshot, error) {
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return store.Load(lctx)
}
