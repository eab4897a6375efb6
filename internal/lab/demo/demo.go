// Package demo is `baton-lab demo`: it brings up a sandbox with agents and a virtual
// IP, keeps a writer writing through the VIP, fills the primary's disk and narrates
// the failover that follows, with times from the fault, then frees the disk and
// watches the old primary rejoin as a replica by itself, and tears everything down. It checks what it tells: a step that
// does not happen within its limit fails the demo.
//
// demo.go holds the run and its order (Run, scenario), steps.go each step (bring the
// sandbox up, steady state, failover, rejoin, the final checks), observe.go what
// watches the cluster during the failover (etcd, the virtual IP, the writer),
// narrate.go what tells it (the narrator, the changes between two views), and
// servers.go what reads the servers and their files (binlogs, error logs).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// How long each step of the demo may take before the demo says it did not happen.
// Generous next to what Baton needs (a failover within about 2 s of a full disk):
// they bound a run on a slow, shared machine, they are not the targets.
const (
	demoUpLimit       = 90 * time.Second
	demoReadyLimit    = 20 * time.Second
	demoWritesLimit   = 10 * time.Second
	demoFailoverLimit = 20 * time.Second
	demoVIPLimit      = 5 * time.Second
	demoResumeLimit   = 10 * time.Second
	demoHistoryLimit  = 5 * time.Second
	demoRejoinLimit   = 45 * time.Second
	demoCatchupLimit  = 15 * time.Second
	demoHealthyLimit  = 15 * time.Second
	demoDownLimit     = time.Minute
	// demoAutoRejoinLimit is how long the old primary may take to rejoin by itself
	// once its disk is freed: its agent sees room at its next detector round and
	// repairs the phantom GTIDs at once.
	demoAutoRejoinLimit = 30 * time.Second
)

// Summary is what the demo found, step by step: `baton-lab demo --json` prints it.
type Summary struct {
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	Cluster    string `json:"cluster"`
	OldPrimary string `json:"old_primary"`
	NewPrimary string `json:"new_primary"`
	// Times from the fault (the disk filled) to what followed; -1 when it did not
	// happen.
	DetectMS        int64 `json:"detect_ms"`         // failover.MilestoneDetected
	DecideMS        int64 `json:"decide_ms"`         // failover.MilestoneDecided
	FailoverMS      int64 `json:"failover_ms"`       // failover.MilestonePromoted
	VIPMS           int64 `json:"vip_ms"`            // the virtual IP on the new primary's interface, no other
	WritesResumedMS int64 `json:"writes_resumed_ms"` // the first write acknowledged by the new primary
	MaxWriteGapMS   int64 `json:"max_write_gap_ms"`  // longest time between two acknowledged writes
	AckedWrites     int   `json:"acked_writes"`
	LostWrites      int   `json:"lost_writes"` // -1 when the demo stopped before counting them
	SplitBrainMS    int64 `json:"split_brain_ms"`
	// Rejoin is how the old primary was brought back: "free-disk" (disk freed, nothing
	// else: its agent repairs it) or "restart" (killed while its disk was full, disk
	// freed, started again: the old manual way).
	Rejoin   string `json:"rejoin"`
	Rejoined bool   `json:"rejoined"`
	RejoinMS int64  `json:"rejoin_ms"` // from freeing the disk (or the restart's start) to role replica with both threads running
	// RejoinEvent is the reason of the rejoin history event, when the agent repaired
	// the old primary.
	RejoinEvent string `json:"rejoin_event,omitempty"`
	FinalRole   string `json:"old_primary_final_role"`
	// QuarantinedAfterFailover: the fenced old primary was quarantined, with errant
	// GTIDs Errant (numbered for writes that never reached its binlog), before its disk
	// was freed.
	QuarantinedAfterFailover bool `json:"quarantined_after_failover"`
	// The second fault: the primary cut off the network while its commits were
	// binlogged, a failover, the network healed: CutPrimary rejoined by itself,
	// UndoMS after the heal, its errant transactions undone and kept in UndoArchive.
	CutPrimary     string     `json:"cut_primary,omitempty"`
	UndoMS         int64      `json:"undo_ms"`
	UndoArchive    string     `json:"undo_archive,omitempty"`
	UndoneGTIDs    string     `json:"undone_gtids,omitempty"`
	Errant         string     `json:"errant,omitempty"`
	Steps          []Step     `json:"steps"`
	FailoverSteps  []FlowStep `json:"failover_steps"`
	FailoverReason string     `json:"failover_reason,omitempty"`
	Timeline       []Line     `json:"timeline"`
	TotalS         float64    `json:"total_s"`
}

// Step is one step of the demo, and whether it happened.
type Step struct {
	Name   string  `json:"name"`
	OK     bool    `json:"ok"`
	TookS  float64 `json:"took_s"`
	Detail string  `json:"detail,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// FlowStep is one step of the failover as the coordinator recorded it.
type FlowStep struct {
	Name   string `json:"name"`
	TookMS int64  `json:"took_ms"`
	Note   string `json:"note,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Line is one narrated event, at its time from the fault.
type Line struct {
	AtMS int64  `json:"at_ms"`
	What string `json:"what"`
}

// Rejoin is how the demo brings the old primary back.
type Rejoin int

const (
	// RejoinRestart kills the old primary while its disk is full, frees the disk and
	// starts it: what an operator had to do before agents repaired phantom GTIDs.
	RejoinRestart Rejoin = iota + 1
	// RejoinFreeDisk frees the disk and nothing else: the agent does the rest.
	RejoinFreeDisk
)

func (r Rejoin) String() string {
	switch r {
	case RejoinRestart:
		return "restart"
	case RejoinFreeDisk:
		return "free-disk"
	}
	return "unknown"
}

// ParseRejoin reads a Rejoin by its String.
func ParseRejoin(s string) (Rejoin, error) {
	for _, r := range []Rejoin{RejoinRestart, RejoinFreeDisk} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("rejoin: %q is not a way to rejoin, use restart or free-disk", s)
}

// Config is one run of the demo.
type Config struct {
	Name string // sandbox name; a running sandbox of that name is taken down first
	Root string // directory of sandboxes' state; "" is sandbox.DefaultRoot
	Bin  lab.Binaries
	// Keep leaves the cluster up at the end, and says how to explore it.
	Keep   bool
	Rejoin Rejoin
	// Out receives the narration; Color paints the status tables.
	Out   io.Writer
	Color bool
	Log   *zap.Logger // the sandbox's warnings and errors
}

func (c Config) validate() error {
	switch {
	case c.Name == "":
		return errors.New("name: a sandbox name is required")
	case c.Bin.Baton == "" || c.Bin.Lab == "":
		return errors.New("bin: both the baton and the baton-lab executables are required")
	case c.Rejoin != RejoinRestart && c.Rejoin != RejoinFreeDisk:
		return fmt.Errorf("rejoin: %d is not a way to rejoin", c.Rejoin)
	case c.Out == nil:
		return errors.New("out: a writer for the narration is required")
	case c.Log == nil:
		return errors.New("log: a logger is required")
	}
	return nil
}

// Run carries out the demo and returns its summary; OK says whether every step
// happened within its limit. It always tears down what it brought up, unless asked to
// keep it. It needs root.
func Run(ctx context.Context, cfg Config) Summary {
	if err := cfg.validate(); err != nil {
		return Summary{Error: err.Error(), Cluster: cfg.Name}
	}
	root := cfg.Root
	if root == "" {
		root = sandbox.DefaultRoot
	}
	d := &demo{name: cfg.Name, root: root, bin: cfg.Bin, keep: cfg.Keep, rejoin: cfg.Rejoin, log: cfg.Log,
		narr: &demoNarrator{w: cfg.Out}, color: cfg.Color}
	return d.run(ctx)
}

// demo is one run of the demo.
type demo struct {
	name, root string
	bin        lab.Binaries
	keep       bool
	rejoin     Rejoin
	log        *zap.Logger
	narr       *demoNarrator
	color      bool

	c     *sandbox.Cluster
	cli   *clientv3.Client
	store *cluster.Store
	sum   Summary
}

// step runs one step of the demo and records it.
func (d *demo) step(name string, fn func() (string, error)) error {
	start := time.Now()
	detail, err := fn()
	st := Step{Name: name, OK: err == nil, TookS: round3(time.Since(start).Seconds()), Detail: detail}
	if err != nil {
		st.Error = err.Error()
	}
	d.sum.Steps = append(d.sum.Steps, st)
	return err
}

// run carries out the demo and returns its summary; it always tears down what it
// brought up, unless asked to keep it.
func (d *demo) run(ctx context.Context) Summary {
	start := time.Now()
	d.sum = Summary{Cluster: d.name, DetectMS: -1, DecideMS: -1, FailoverMS: -1, VIPMS: -1, WritesResumedMS: -1,
		RejoinMS: -1, LostWrites: -1, Rejoin: d.rejoin.String(), UndoMS: -1}
	err := d.scenario(ctx)
	if d.cli != nil {
		d.cli.Close()
	}
	if d.c != nil {
		if d.keep {
			d.explain()
		} else {
			d.narr.section("Tearing down")
			derr := d.step("down", func() (string, error) {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), demoDownLimit)
				defer cancel()
				if err := d.c.Down(dctx); err != nil {
					return "", fmt.Errorf("tear down the sandbox: %w", err)
				}
				return "", nil
			})
			if derr != nil {
				d.narr.say("%v", derr)
				err = errors.Join(err, derr)
			} else {
				d.narr.say("sandbox %s removed: servers, agents, etcd, namespaces, mounts", d.name)
			}
		}
	}
	d.sum.Timeline = d.narr.lines()
	d.sum.TotalS = round3(time.Since(start).Seconds())
	if err != nil {
		d.sum.Error = err.Error()
		d.narr.say("")
		d.narr.say("DEMO FAILED: %v", err)
		return d.sum
	}
	d.sum.OK = true
	d.narr.say("")
	d.narr.say("demo done in %.0fs: every step happened.", d.sum.TotalS)
	return d.sum
}

func (d *demo) scenario(ctx context.Context) error {
	if err := d.up(ctx); err != nil {
		return err
	}
	w := d.c.NewWriter(10*time.Millisecond, time.Second)
	mon := d.c.NewSplitBrainMonitor(50 * time.Millisecond)
	defer func() {
		// Whatever step the demo stopped at, the summary counts what the writer and
		// the monitor saw.
		w.Stop()
		mon.Stop()
		d.sum.AckedWrites = len(w.Acks())
		d.sum.SplitBrainMS = mon.SplitBrain().Milliseconds()
		d.sum.MaxWriteGapMS = w.MaxGap().Milliseconds()
	}()
	old, err := d.steady(ctx, w, mon)
	if err != nil {
		return err
	}
	obs, err := d.failover(ctx, w, old)
	if obs != nil {
		defer obs.stop()
	}
	if err != nil {
		return err
	}
	if err := d.afterFailover(ctx, obs); err != nil {
		return err
	}
	if err := d.rejoinOld(ctx, obs); err != nil {
		return err
	}
	if err := d.cutAndUndo(ctx, obs); err != nil {
		return err
	}
	return d.finish(ctx, w, mon, obs)
}
