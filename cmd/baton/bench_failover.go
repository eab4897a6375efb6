package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/internal/sandbox"
)

// failoverFaults are the faults of the primary that must lead to a failover.
func failoverFaults() []sandbox.Fault {
	return []sandbox.Fault{sandbox.Kill, sandbox.DiskFull, sandbox.FreezeWrites, sandbox.Stop, sandbox.CutNetwork, sandbox.ReadonlyFS}
}

// failoverResult is what `baton bench failover --json` prints.
type failoverResult struct {
	Fault         string   `json:"fault"`
	Trials        int      `json:"trials"`
	DetectMS      []int64  `json:"detect_ms"`   // fault -> etcd shows the primary failed
	DecideMS      []int64  `json:"decide_ms"`   // fault -> the coordinator started the failover
	PromoteMS     []int64  `json:"promote_ms"`  // fault -> the new primary holds the leader key
	FailoverMS    []int64  `json:"failover_ms"` // fault -> first write acknowledged by the new primary
	P50FailoverMS int64    `json:"p50_failover_ms"`
	MaxFailoverMS int64    `json:"max_failover_ms"`
	AckedWrites   int      `json:"acked_writes"`
	LostWrites    int      `json:"lost_writes"`
	SplitBrainMS  int64    `json:"split_brain_ms"`
	NewPrimaries  []string `json:"new_primaries"`
	Errors        []string `json:"errors,omitempty"`
}

func benchFailoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "fault the primary of a real sandbox cluster with agents, and time the failover as a writer sees it",
		Description: `Each trial brings up a fresh 3-node sandbox with agents, semi-sync and a virtual IP,
starts a writer in the client namespace (through the virtual IP, 100 writes/s, each
with a 500 ms deadline, after which it reconnects) and a
monitor that writes to every server directly, injects the fault on the primary and
measures: detect (fault -> etcd shows the primary failed), decide (-> failover started),
promote (-> new primary holds the leader key) and failover (-> first write acknowledged
by the new primary). Then it checks that every acknowledged write is on the new
primary and that no two servers accepted writes at the same time.

Example:
   baton bench failover --fault disk-full --trials 3 --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "fault", Required: true, Usage: "kill, disk-full, freeze-writes, stop, cut-network or readonly-fs"},
			&cli.IntFlag{Name: "trials", Value: 3, Usage: "trials, each on a fresh cluster"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "name", Value: "fo-bench", Usage: "sandbox name", Hidden: true},
		},
		Action: func(cctx *cli.Context) error {
			f, err := sandbox.ParseFault(cctx.String("fault"))
			if err != nil {
				return cli.Exit(err.Error(), exitBadInput)
			}
			ok := false
			for _, ff := range failoverFaults() {
				ok = ok || ff == f
			}
			if !ok {
				return cli.Exit(fmt.Sprintf("fault %s does not call for a failover: use one of kill, disk-full, freeze-writes, stop, cut-network, readonly-fs", f), exitBadInput)
			}
			if cctx.Int("trials") < 1 {
				return cli.Exit("trials: at least 1", exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit(err.Error(), exitBadInput)
			}
			exe, err := os.Executable()
			if err != nil {
				return cli.Exit(err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			res := runFailoverBench(ctx, f, cctx.Int("trials"), cctx.String("name"), exe, !cctx.Bool("json"))
			if cctx.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				return enc.Encode(res)
			}
			fmt.Printf("%s: failover p50 %d ms, max %d ms; acked %d, lost %d, split-brain %d ms\n",
				res.Fault, res.P50FailoverMS, res.MaxFailoverMS, res.AckedWrites, res.LostWrites, res.SplitBrainMS)
			if len(res.Errors) > 0 {
				return cli.Exit(fmt.Sprintf("%d trial(s) failed: %v", len(res.Errors), res.Errors), 1)
			}
			return nil
		},
	}
}

func runFailoverBench(ctx context.Context, f sandbox.Fault, trials int, name, exe string, verbose bool) failoverResult {
	res := failoverResult{Fault: f.String(), Trials: trials}
	for i := 0; i < trials && ctx.Err() == nil; i++ {
		tr, err := failoverTrial(ctx, f, name, exe)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("trial %d: %v", i+1, err))
			if verbose {
				fmt.Fprintf(os.Stderr, "trial %d: %v\n", i+1, err)
			}
			continue
		}
		res.DetectMS = append(res.DetectMS, tr.detect.Milliseconds())
		res.DecideMS = append(res.DecideMS, tr.decide.Milliseconds())
		res.PromoteMS = append(res.PromoteMS, tr.promote.Milliseconds())
		res.FailoverMS = append(res.FailoverMS, tr.failover.Milliseconds())
		res.AckedWrites += tr.acked
		res.LostWrites += tr.lost
		res.SplitBrainMS += tr.splitBrain.Milliseconds()
		res.NewPrimaries = append(res.NewPrimaries, tr.newPrimary)
		if verbose {
			fmt.Fprintf(os.Stderr, "trial %d: detect %s, decide %s, promote %s, writes resumed %s on %s; %d acked, %d lost, split-brain %s\n",
				i+1, tr.detect.Round(time.Millisecond), tr.decide.Round(time.Millisecond), tr.promote.Round(time.Millisecond),
				tr.failover.Round(time.Millisecond), tr.newPrimary, tr.acked, tr.lost, tr.splitBrain)
		}
	}
	res.P50FailoverMS, res.MaxFailoverMS = p50max(res.FailoverMS)
	return res
}

func p50max(xs []int64) (int64, int64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := append([]int64(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2], s[len(s)-1]
}

// benchWriteTimeout is the writer's deadline per write: on a hung primary a client
// waits this long before it gives up on its connection and reconnects.
const benchWriteTimeout = 500 * time.Millisecond

type trialResult struct {
	detect, decide, promote, failover time.Duration
	acked, lost                       int
	splitBrain                        time.Duration
	newPrimary                        string
}

// benchCluster brings up a fresh 3-node cluster with agents, semi-sync and a virtual
// IP (taking down one of the same name first), and its etcd state. done tears it
// down.
func benchCluster(ctx context.Context, name, exe string) (c *sandbox.Cluster, store *failover.Store, done func(), err error) {
	if old, err := sandbox.Open("", name, nil); err == nil {
		_ = old.Down(ctx)
	}
	c, err = sandbox.Up(ctx, sandbox.Spec{Name: name, Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, Binary: exe}, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	cli, err := c.EtcdClient()
	if err != nil {
		_ = c.Down(context.WithoutCancel(ctx))
		return nil, nil, nil, err
	}
	return c, failover.NewStore(cli, c.Name), func() {
		cli.Close()
		_ = c.Down(context.WithoutCancel(ctx))
	}, nil
}

func failoverTrial(ctx context.Context, f sandbox.Fault, name, exe string) (trialResult, error) {
	var tr trialResult
	c, store, done, err := benchCluster(ctx, name, exe)
	if err != nil {
		return tr, err
	}
	defer done()

	w := c.NewWriter(10*time.Millisecond, benchWriteTimeout)
	w.Start(ctx)
	defer w.Stop()
	mon := c.NewSplitBrainMonitor(50 * time.Millisecond)
	mon.Start(ctx)
	defer mon.Stop()
	if err := until(ctx, 10*time.Second, func() bool { return len(w.Acks()) >= 50 }); err != nil {
		return tr, fmt.Errorf("no steady writes before the fault: %w", err)
	}
	snap, err := store.Load(ctx)
	if err != nil {
		return tr, err
	}
	oldPrimary := snap.Primary
	if oldPrimary.Epoch != 1 {
		hist, _ := store.History(ctx, 5)
		b, _ := json.Marshal(hist)
		return tr, fmt.Errorf("a failover happened before the fault (primary %s, epoch %d): %s", oldPrimary.Node, oldPrimary.Epoch, b)
	}
	oldNode, err := c.Node(oldPrimary.Node)
	if err != nil {
		return tr, err
	}

	injected := time.Now()
	if err := c.Fault(ctx, oldPrimary.Node, f); err != nil {
		return tr, err
	}
	// Watch etcd for the steps a person would see.
	deadline := injected.Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s, err := store.Load(ctx)
		if err == nil {
			now := time.Since(injected)
			p, present := s.Nodes[oldPrimary.Node]
			if tr.detect == 0 && (!present || p.Verdict == failover.VerdictUnwritable || p.Verdict == failover.VerdictUnreachable) {
				tr.detect = now
			}
			if tr.decide == 0 && (s.Intent != nil || s.Primary.Epoch > oldPrimary.Epoch) {
				tr.decide = now
			}
			if s.Primary.Epoch > oldPrimary.Epoch && s.Leader == s.Primary.Node {
				tr.promote, tr.newPrimary = now, s.Primary.Node
				if tr.detect == 0 {
					tr.detect = tr.decide
				}
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tr.newPrimary == "" {
		return tr, fmt.Errorf("no failover within 30s of %s", f)
	}
	var first sandbox.Ack
	if err := until(ctx, 15*time.Second, func() bool {
		a, ok := w.FirstAckAfter(injected, uint32(oldNode.ServerID))
		first = a
		return ok
	}); err != nil {
		return tr, fmt.Errorf("writes did not resume on %s: %w", tr.newPrimary, err)
	}
	tr.failover = first.At.Sub(injected)
	time.Sleep(time.Second)
	w.Stop()
	mon.Stop()
	tr.acked = len(w.Acks())
	tr.splitBrain = mon.SplitBrain()
	db, err := c.RootDB(tr.newPrimary)
	if err != nil {
		return tr, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lost, err := w.Lost(qctx, db)
	if err != nil {
		return tr, err
	}
	tr.lost = len(lost)
	return tr, nil
}

// until polls cond every 20 ms until it holds, limit passes or ctx ends.
func until(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
