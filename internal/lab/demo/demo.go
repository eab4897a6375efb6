// Package demo is `baton-lab demo`: it brings up a sandbox with agents and a virtual
// IP, keeps a writer writing through the VIP, fills the primary's disk and narrates
// the failover that follows, with times from the fault, then frees the disk and
// watches the old primary rejoin as a replica by itself, and tears everything down. It checks what it tells: a step that
// does not happen within its limit fails the demo.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/status"
	"github.com/baton-ha/baton/replication"
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
	QuarantinedAfterFailover bool       `json:"quarantined_after_failover"`
	Errant                   string     `json:"errant,omitempty"`
	Steps                    []Step     `json:"steps"`
	FailoverSteps            []FlowStep `json:"failover_steps"`
	FailoverReason           string     `json:"failover_reason,omitempty"`
	Timeline                 []Line     `json:"timeline"`
	TotalS                   float64    `json:"total_s"`
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
		RejoinMS: -1, LostWrites: -1, Rejoin: d.rejoin.String()}
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
	return d.finish(ctx, w, mon, obs)
}

// up brings the sandbox up, after taking down a running one of the same name.
func (d *demo) up(ctx context.Context) error {
	d.narr.section("1. A cluster: 3 MariaDB servers, etcd, a Baton agent per node, a virtual IP")
	if old, err := sandbox.Open(d.root, d.name, d.log); err == nil {
		d.narr.say("a sandbox named %s is left from an earlier run: taking it down first", d.name)
		dctx, cancel := context.WithTimeout(ctx, demoDownLimit)
		derr := old.Down(dctx)
		cancel()
		if derr != nil {
			d.narr.say("taking it down: %v (going on: bringing up removes leftovers)", derr)
		}
	}
	return d.step("up", func() (string, error) {
		uctx, cancel := context.WithTimeout(ctx, demoUpLimit)
		defer cancel()
		start := time.Now()
		c, err := sandbox.Up(uctx, sandbox.Spec{Name: d.name, Nodes: 3, SemiSync: true, WithAgents: true, VIP: true,
			Binary: d.bin.Baton, LabBinary: d.bin.Lab, Root: d.root}, d.log)
		if err != nil {
			return "", fmt.Errorf("bring up sandbox %s: %v", d.name, err)
		}
		d.c = c
		if d.cli, err = c.EtcdClient(); err != nil {
			return "", fmt.Errorf("connect to the sandbox's etcd: %w", err)
		}
		d.store = cluster.NewStore(d.cli, c.Name)
		d.narr.say("sandbox %s up in %.1fs (state in %s):", c.Name, time.Since(start).Seconds(), c.Dir)
		for _, n := range c.Nodes {
			d.narr.say("  %s  mariadbd at %s:%d in network namespace %s, server_id %d, agent http://%s", n.Name, n.IP, n.Port,
				n.NetNS, n.ServerID, n.AgentHTTP)
		}
		d.narr.say("  etcd %s; virtual IP %s; clients in namespace %s (%s)", strings.Join(c.Etcd, ","), c.VIP, c.ClientNetNS, c.ClientIP)
		return fmt.Sprintf("%.1fs", time.Since(start).Seconds()), nil
	})
}

// steady waits for a settled cluster, starts the writer and the split-brain monitor,
// and shows the cluster. It returns the primary.
func (d *demo) steady(ctx context.Context, w *sandbox.Writer, mon *sandbox.SplitBrainMonitor) (string, error) {
	var primary string
	err := d.step("settled", func() (string, error) {
		var snap cluster.Snapshot
		err := lab.Until(ctx, demoReadyLimit, func() bool {
			var err error
			if snap, err = d.store.Load(ctx); err != nil || snap.Primary.Node == "" || snap.Leader != snap.Primary.Node {
				return false
			}
			for _, n := range d.c.Nodes {
				st, ok := snap.Nodes[n.Name]
				if !ok || st.Verdict != detector.Healthy {
					return false
				}
				if n.Name != snap.Primary.Node && (st.Role != cluster.RoleReplica || !st.IORunning || !st.SQLRunning) {
					return false
				}
			}
			return true
		})
		if err != nil {
			return "", fmt.Errorf("the cluster did not settle (a primary holding the leader key, every node healthy, replicas replicating) within %s", demoReadyLimit)
		}
		primary = snap.Primary.Node
		return "primary " + primary, nil
	})
	if err != nil {
		return "", err
	}
	d.sum.OldPrimary = primary
	err = d.step("writes", func() (string, error) {
		w.Start(ctx)
		mon.Start(ctx)
		if err := lab.Until(ctx, demoWritesLimit, func() bool { return len(w.Acks()) >= 20 }); err != nil {
			n, last := w.Failures()
			return "", fmt.Errorf("the writer got no 20 writes acknowledged through the VIP within %s (%d failed, last: %s)", demoWritesLimit, n, last)
		}
		return fmt.Sprintf("%d acknowledged", len(w.Acks())), nil
	})
	if err != nil {
		return "", err
	}
	d.narr.section("2. A writer in the client namespace writes through the VIP every 10 ms")
	d.narr.say("the writer: one INSERT at a time into %s (the virtual IP), each with a 1 s deadline; %d acknowledged so far",
		vipAddr(d.c), len(w.Acks()))
	d.narr.say("a split-brain monitor writes to every server directly every 50 ms, as a client that bypasses the VIP would")
	d.narr.say("")
	d.showStatus(ctx)
	return primary, nil
}

// failover fills the old primary's disk and narrates until writes resume on a new
// primary.
func (d *demo) failover(ctx context.Context, w *sandbox.Writer, old string) (*demoObserver, error) {
	oldNode, err := d.c.Node(old)
	if err != nil {
		return nil, err
	}
	d.narr.section(fmt.Sprintf("3. Fill the disk of %s, the primary, and watch", old))
	d.narr.say("%s stays up: SELECT 1 answers, connections succeed. Only writes hang. Times are from the fault.", old)
	obs, err := newDemoObserver(d.c, d.store, w, uint32(oldNode.ServerID), d.narr)
	if err != nil {
		return nil, fmt.Errorf("watch the cluster: %w", err)
	}
	if err := obs.start(ctx); err != nil {
		return obs, fmt.Errorf("watch the cluster: %w", err)
	}
	t0 := time.Now()
	d.narr.startClock(t0)
	obs.setFault(t0)
	d.narr.say("filling the disk of %s (%s), then one 64 KiB binlogged write so the binlog must grow", old, oldNode.Mount)
	err = d.step("disk_full", func() (string, error) {
		if err := d.c.Fault(ctx, old, sandbox.DiskFull); err != nil {
			return "", fmt.Errorf("fill the disk of %s: %v", old, err)
		}
		return "", nil
	})
	if err != nil {
		return obs, err
	}
	d.narr.say("disk of %s full: every binlogged write on it now waits for space (MariaDB retries every 60 s)", old)

	err = d.step("failover", func() (string, error) {
		if err := obs.wait(ctx, demoFailoverLimit, obs.reached(cluster.MilestonePromoted)); err != nil {
			return "", fmt.Errorf("no failover within %s of the full disk: %s", demoFailoverLimit, obs.describe())
		}
		return obs.snapshot().Primary.Node, nil
	})
	if err != nil {
		return obs, err
	}
	d.sum.NewPrimary = obs.snapshot().Primary.Node
	if err := d.step("vip_moved", func() (string, error) {
		if err := obs.wait(ctx, demoVIPLimit, obs.vipMoved); err != nil {
			return "", fmt.Errorf("the VIP is not on %s within %s of its promotion (held by: %v)", d.sum.NewPrimary, demoVIPLimit, obs.snapshot().VIP)
		}
		return "", nil
	}); err != nil {
		return obs, err
	}
	if err := d.step("writes_resumed", func() (string, error) {
		if err := obs.wait(ctx, demoResumeLimit, obs.writesResumed); err != nil {
			n, last := w.Failures()
			return "", fmt.Errorf("no write acknowledged by %s through the VIP within %s of its promotion (%d writes failed, last: %s)",
				d.sum.NewPrimary, demoResumeLimit, n, last)
		}
		return "", nil
	}); err != nil {
		return obs, err
	}
	if err := d.step("history", func() (string, error) {
		if err := obs.wait(ctx, demoHistoryLimit, obs.reached(cluster.MilestoneRecorded)); err != nil {
			return "", fmt.Errorf("no failover event in the history within %s", demoHistoryLimit)
		}
		return "", nil
	}); err != nil {
		return obs, err
	}
	err = d.step("detected", func() (string, error) {
		// Seen on the way: a verdict that lasted less than the agent's publishing
		// would be missed, which is a finding too.
		if _, ok := obs.at(cluster.MilestoneDetected); !ok {
			return "", fmt.Errorf("the failover happened, but etcd never showed %s failed", old)
		}
		if _, ok := obs.at(cluster.MilestoneDecided); !ok {
			return "", errors.New("the failover happened, but no coordinator decision was seen")
		}
		return "", nil
	})
	d.sum.DetectMS = obs.ms(obs.at(cluster.MilestoneDetected))
	d.sum.DecideMS = obs.ms(obs.at(cluster.MilestoneDecided))
	d.sum.FailoverMS = obs.ms(obs.at(cluster.MilestonePromoted))
	d.sum.VIPMS = obs.ms(obs.vipMovedAt())
	d.sum.WritesResumedMS = obs.ms(obs.resumedAt())
	if err != nil {
		return obs, err
	}

	err = d.step("nothing_lost", func() (string, error) {
		lost, acked, err := d.lost(ctx, w, d.sum.NewPrimary)
		if err != nil {
			return "", err
		}
		d.sum.LostWrites = len(lost)
		if len(lost) > 0 {
			return "", fmt.Errorf("%d of %d acknowledged writes are not on %s: %v", len(lost), acked, d.sum.NewPrimary, firstN(lost, 10))
		}
		d.narr.sayAt(time.Now(), "nothing lost: all %d acknowledged writes are on %s", acked, d.sum.NewPrimary)
		return fmt.Sprintf("%d acknowledged, 0 lost", acked), nil
	})
	if err != nil {
		return obs, err
	}
	if line := lastLineWith(oldNode.ErrorLog, "Disk is full", 0); line != "" {
		d.narr.say("%s's error log: %s", old, line)
	}
	return obs, nil
}

// afterFailover shows the cluster and the history event.
func (d *demo) afterFailover(ctx context.Context, obs *demoObserver) error {
	d.narr.section("4. The cluster after the failover, and the history event")
	d.showStatus(ctx)
	ev := obs.snapshot().LastEvent
	if ev == nil {
		return errors.New("no history event")
	}
	d.sum.FailoverReason = ev.Reason
	var b strings.Builder
	fmt.Fprintf(&b, "history: %s %s -> %s, epoch %d, %s in all, decided %s: %s\n", ev.Kind, ev.From, ev.To, ev.Epoch,
		ev.Took.Round(time.Millisecond), d.narr.rel(ev.Started), ev.Reason)
	for _, s := range ev.Steps {
		d.sum.FailoverSteps = append(d.sum.FailoverSteps, FlowStep{Name: s.Name, TookMS: s.Took.Milliseconds(), Note: s.Note, Error: s.Error})
		line := fmt.Sprintf("  %-18s %8s", s.Name, s.Took.Round(time.Millisecond))
		if s.Note != "" {
			line += "  " + s.Note
		}
		if s.Error != "" {
			line += "  error: " + s.Error
		}
		fmt.Fprintln(&b, line)
	}
	b.WriteString("  (fence_old_primary runs alongside stop_io and rank: a dead or hung old primary costs the fence its deadline, not the failover)\n")
	d.narr.block(b.String())
	return nil
}

// rejoinOld frees the old primary's disk and waits until it replicates from the new
// one, by itself.
//
// What happens to a primary fenced on a full disk, as seen on MariaDB 10.11: the
// writes that hung waiting for space had their GTIDs numbered already; the fence's
// KILL ends them with "Error writing file 'mysql-bin' (errno: 28)", InnoDB rolls them
// back, but gtid_binlog_state keeps the numbers. So the server claims transactions
// nobody has, and Baton quarantines it (errant GTIDs). Its agent looks each one up
// in the binary logs: none is there whole (at most the GTID event of the write cut
// off by the full disk, before a tail no one can read), so they are phantoms. Once
// the disk has room again, the agent resets the binlog GTID state to what the
// binlog holds (RESET MASTER, gtid_binlog_state, gtid_slave_pos: no restart) and
// follows the new primary, and records a rejoin event in the history.
func (d *demo) rejoinOld(ctx context.Context, obs *demoObserver) error {
	old := d.sum.OldPrimary
	oldNode, err := d.c.Node(old)
	if err != nil {
		return err
	}
	d.narr.section(fmt.Sprintf("5. Free the disk of %s: it rejoins by itself", old))
	st := obs.snapshot().Nodes[old]
	d.sum.QuarantinedAfterFailover = st.Role == cluster.RoleQuarantined
	d.sum.Errant = st.Errant
	if d.sum.QuarantinedAfterFailover {
		d.narr.say("%s is fenced and quarantined: its agent found errant GTIDs %s, transactions %s never got.", old, st.Errant, d.sum.NewPrimary)
		d.explainErrant(ctx, oldNode, st)
	} else {
		d.narr.say("%s is %s (read_only, no VIP, no leader key).", old, status.OrDash(string(st.Role)))
	}
	logFrom := fileSize(oldNode.ErrorLog)
	start := time.Now()
	limit := demoRejoinLimit
	switch d.rejoin {
	case RejoinRestart:
		d.narr.say("What an operator does: restart the server hard and free space. After a crash MariaDB rebuilds its GTID")
		d.narr.say("state from the binlog on disk, so the numbers of writes that never reached it are gone, and nothing")
		d.narr.say("acknowledged is lost: every acknowledged write is on %s. (A clean shutdown would save the inflated", d.sum.NewPrimary)
		d.narr.say("position and keep the server quarantined.) It is killed while the disk is still full, so that MariaDB")
		d.narr.say("writes nothing more of the failed binlog tail; then the disk is freed and the server started.")
		err = d.step("restart_old_primary", func() (string, error) {
			for _, f := range []sandbox.Fault{sandbox.Kill, sandbox.FreeDisk, sandbox.Start} {
				if err := d.c.Fault(ctx, old, f); err != nil {
					return "", fmt.Errorf("%s on %s: %w", f, old, err)
				}
				switch f {
				case sandbox.Kill:
					d.narr.sayAt(time.Now(), "mariadbd of %s killed (SIGKILL), its disk still full", old)
				case sandbox.FreeDisk:
					d.narr.sayAt(time.Now(), "disk of %s freed (the filler removed)", old)
				case sandbox.Start:
					d.narr.sayAt(time.Now(), "mariadbd of %s started on its data: crash recovery, read_only as after any restart", old)
				}
			}
			return "", nil
		})
	case RejoinFreeDisk:
		limit = demoAutoRejoinLimit
		d.narr.say("Freeing the disk of %s and nothing else: no operator step. Its agent waits for room on the disk,", old)
		d.narr.say("then forgets the phantom GTIDs (without a restart) and follows %s.", d.sum.NewPrimary)
		err = d.step("free_disk", func() (string, error) {
			if err := d.c.Fault(ctx, old, sandbox.FreeDisk); err != nil {
				return "", fmt.Errorf("free the disk of %s: %w", old, err)
			}
			d.narr.sayAt(time.Now(), "disk of %s freed (the filler removed)", old)
			return "", nil
		})
	}
	if err != nil {
		return err
	}
	err = d.step("rejoined", func() (string, error) {
		werr := obs.wait(ctx, limit, obs.reached(cluster.MilestoneRejoined))
		for _, line := range recoveryLines(oldNode.ErrorLog, logFrom) {
			d.narr.say("%s's error log: %s", old, line)
		}
		st := obs.snapshot().Nodes[old]
		d.sum.FinalRole = string(st.Role)
		if werr != nil {
			if st.Role == cluster.RoleQuarantined {
				return "", fmt.Errorf("%s is still quarantined %s after its disk was freed (errant GTIDs %s, %s)", old, limit, st.Errant, st.Reason)
			}
			return "", fmt.Errorf("%s did not rejoin as a replica within %s (role %s, verdict %s, IO thread %s, SQL thread %s %s)",
				old, limit, status.OrDash(string(st.Role)), st.Verdict.String(), threadState(st.IORunning), threadState(st.SQLRunning), st.ReplError)
		}
		d.sum.Rejoined = true
		at, _ := obs.at(cluster.MilestoneRejoined)
		d.sum.RejoinMS = at.Sub(start).Milliseconds()
		if ev := obs.snapshot().LastEvent; ev != nil && ev.Kind == cluster.EventRejoin && ev.From == old {
			d.sum.RejoinEvent = ev.Reason
			d.narr.say("history: rejoin of %s by its agent (%s): %s", old, automatic(ev.Manual), ev.Reason)
		}
		if d.rejoin == RejoinFreeDisk {
			d.narr.sayAt(at, "%s rejoined as a replica of %s by itself, %.1fs after its disk was freed", old, d.sum.NewPrimary, float64(d.sum.RejoinMS)/1000)
			return fmt.Sprintf("replica of %s %.1fs after the disk was freed", d.sum.NewPrimary, float64(d.sum.RejoinMS)/1000), nil
		}
		return fmt.Sprintf("replica of %s %.1fs after the restart began", d.sum.NewPrimary, float64(d.sum.RejoinMS)/1000), nil
	})
	if err != nil {
		return err
	}
	// The detector wants a few good rounds in a row before it calls a node healthy
	// again: the cluster is whole when it does.
	return d.step("all_healthy", func() (string, error) {
		healthy := func() bool {
			v := obs.snapshot()
			for _, n := range d.c.Nodes {
				if st, ok := v.Nodes[n.Name]; !ok || st.Verdict != detector.Healthy {
					return false
				}
			}
			return true
		}
		if err := lab.Until(ctx, demoHealthyLimit, healthy); err != nil {
			return "", fmt.Errorf("not every node is healthy %s after %s rejoined: %s", demoHealthyLimit, old, obs.describe())
		}
		return "", nil
	})
}

// explainErrant shows where a quarantined old primary's errant GTIDs come from: its
// GTID position against the last transaction its binlog really holds, the binlog
// writes that failed, and what its agent found in the binary logs.
func (d *demo) explainErrant(ctx context.Context, n *sandbox.Node, st cluster.NodeStatus) {
	pos, written, err := binlogTail(ctx, d.c, n)
	if err != nil {
		d.narr.say("(could not read %s's binlog: %v)", n.Name, err)
		return
	}
	failed := countLines(n.ErrorLog, "Error writing file 'mysql-bin'")
	d.narr.say("Where they come from: %s's gtid_binlog_pos is %s, but the last GTID event in its binlog files is %s.", n.Name, pos, written)
	d.narr.say("The writes that hung on the full disk were numbered first; the fence killed them and their binlog write")
	d.narr.say("failed (%d \"Error writing file 'mysql-bin' (errno: 28)\" in its error log), so no data differs, but", failed)
	d.narr.say("MariaDB kept the numbers. Its agent looked each one up in the binary logs:")
	for _, t := range st.ErrantTxns {
		line := fmt.Sprintf("  %s: %s", t.GTID, t.Kind)
		if t.Note != "" {
			line += " (" + t.Note + ")"
		} else if t.Kind == replication.ErrantPhantom {
			line += " (in no binary log)"
		}
		d.narr.say("%s", line)
	}
	if len(st.ErrantTxns) == 0 {
		d.narr.say("  (not published yet)")
	}
}

func automatic(manual bool) string {
	if manual {
		return "on an operator's request"
	}
	return "automatic"
}

// finish stops the writer, checks every acknowledged write is on the new primary and,
// caught up, on the rejoined old one, and shows the cluster.
func (d *demo) finish(ctx context.Context, w *sandbox.Writer, mon *sandbox.SplitBrainMonitor, obs *demoObserver) error {
	w.Stop()
	mon.Stop()
	d.sum.SplitBrainMS = mon.SplitBrain().Milliseconds()
	d.sum.MaxWriteGapMS = w.MaxGap().Milliseconds()
	err := d.step("nothing_lost_at_end", func() (string, error) {
		lost, acked, err := d.lost(ctx, w, d.sum.NewPrimary)
		if err != nil {
			return "", err
		}
		d.sum.AckedWrites, d.sum.LostWrites = acked, len(lost)
		if len(lost) > 0 {
			return "", fmt.Errorf("%d of %d acknowledged writes are not on %s: %v", len(lost), acked, d.sum.NewPrimary, firstN(lost, 10))
		}
		var oldLost []int64
		werr := lab.Until(ctx, demoCatchupLimit, func() bool {
			oldLost, _, err = d.lost(ctx, w, d.sum.OldPrimary)
			return err == nil && len(oldLost) == 0
		})
		if werr != nil {
			return "", fmt.Errorf("%s, rejoined, still lacks %d acknowledged writes after %s (%v)", d.sum.OldPrimary, len(oldLost), demoCatchupLimit, err)
		}
		d.narr.sayAt(time.Now(), "writer stopped: %d writes acknowledged in all; every one is on %s and, replicated, on %s",
			acked, d.sum.NewPrimary, d.sum.OldPrimary)
		return fmt.Sprintf("%d acknowledged, 0 lost", acked), nil
	})
	if err != nil {
		return err
	}
	if err := d.step("no_split_brain", func() (string, error) {
		if d.sum.SplitBrainMS > 0 {
			return "", fmt.Errorf("two servers accepted writes at once for %d ms", d.sum.SplitBrainMS)
		}
		d.narr.sayAt(time.Now(), "split brain: none (the monitor never saw two servers accept writes in the same 100 ms)")
		return "", nil
	}); err != nil {
		return err
	}
	d.narr.section("6. The cluster at the end")
	d.showStatus(ctx)
	d.narr.say("")
	d.narr.say("fault -> %s unwritable %s, failover decided %s, %s holds the leader key %s, VIP moved %s, writes resumed %s",
		d.sum.OldPrimary, msString(d.sum.DetectMS), msString(d.sum.DecideMS), d.sum.NewPrimary, msString(d.sum.FailoverMS),
		msString(d.sum.VIPMS), msString(d.sum.WritesResumedMS))
	how := fmt.Sprintf("%s after the restart began", msString(d.sum.RejoinMS))
	if d.rejoin == RejoinFreeDisk {
		how = fmt.Sprintf("by itself, %s after its disk was freed", msString(d.sum.RejoinMS))
	}
	d.narr.say("%d writes acknowledged, %d lost, longest wait between two acknowledged writes %s, split brain %d ms; %s rejoined as a replica %s",
		d.sum.AckedWrites, d.sum.LostWrites, msString(d.sum.MaxWriteGapMS), d.sum.SplitBrainMS, d.sum.OldPrimary, how)
	return nil
}

// explain tells how to explore a kept sandbox.
func (d *demo) explain() {
	d.narr.section("The cluster is still up (--keep)")
	root := ""
	if d.root != sandbox.DefaultRoot {
		root = " --root " + d.root
	}
	d.narr.say("baton status --etcd %s --cluster %s --watch", strings.Join(d.c.Etcd, ","), d.c.Name)
	d.narr.say("baton-lab sandbox status --name %s%s", d.c.Name, root)
	primary := d.sum.NewPrimary
	if primary == "" {
		primary = d.sum.OldPrimary
	}
	if primary == "" {
		primary = "db1"
	}
	d.narr.say("baton-lab sandbox fault --name %s%s --node %s freeze-writes   (or kill, stop, cut-network, disk-full, ...)", d.c.Name, root, primary)
	d.narr.say("agent logs: %s", filepath.Join(d.c.Dir, "*", "agent.log"))
	d.narr.say("baton-lab sandbox down --name %s%s", d.c.Name, root)
}

func (d *demo) showStatus(ctx context.Context) {
	st, err := status.Read(ctx, d.store, d.c.Name)
	if err != nil {
		d.narr.say("read the cluster's status: %v", err)
		return
	}
	var b bytes.Buffer
	status.Print(&b, st, d.color)
	d.narr.block(b.String())
}

// lost returns the acknowledged writes node lacks, and how many were acknowledged.
func (d *demo) lost(ctx context.Context, w *sandbox.Writer, node string) ([]int64, int, error) {
	db, err := d.c.RootDB(node)
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	acked := len(w.Acks()) // Lost judges the writes acknowledged before it reads
	lost, err := w.Lost(qctx, db)
	if err != nil {
		return nil, 0, fmt.Errorf("read the writer's rows on %s: %w", node, err)
	}
	return lost, acked, nil
}

// demoNarrator prints the demo's story, each line after the fault with its time from the
// fault, and keeps those lines for the summary.
type demoNarrator struct {
	mu       sync.Mutex
	w        io.Writer
	t0       time.Time
	timeline []Line
}

func (n *demoNarrator) startClock(t0 time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.t0 = t0
}

// rel is t's time from the fault, as printed.
func (n *demoNarrator) rel(t time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.t0.IsZero() {
		return t.Local().Format("15:04:05.000")
	}
	return fmt.Sprintf("%+.3fs", t.Sub(n.t0).Seconds())
}

// sayAt narrates something that happened at t.
func (n *demoNarrator) sayAt(t time.Time, format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if n.t0.IsZero() {
		fmt.Fprintf(n.w, "          %s\n", msg)
		return
	}
	d := t.Sub(n.t0)
	n.timeline = append(n.timeline, Line{AtMS: d.Milliseconds(), What: msg})
	fmt.Fprintf(n.w, "%9s %s\n", fmt.Sprintf("%+.3fs", d.Seconds()), msg)
}

// say prints a comment, not an event: no time.
func (n *demoNarrator) say(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.w, "          %s\n", strings.TrimRight(fmt.Sprintf(format, args...), " "))
}

func (n *demoNarrator) section(title string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.w, "\n== %s ==\n", title)
}

// block prints preformatted text (a status table), indented, in one piece.
func (n *demoNarrator) block(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintf(n.w, "          %s\n", line)
	}
}

func (n *demoNarrator) lines() []Line {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Line(nil), n.timeline...)
}

// demoView is the cluster as the demo sees it: its keys in etcd, and which nodes have the
// virtual IP on their interface.
type demoView struct {
	Primary     cluster.Primary
	Leader      string
	Coordinator string
	Intent      *cluster.Intent
	Nodes       map[string]cluster.NodeStatus
	VIP         []string
	LastEvent   *cluster.Event
}

func (v demoView) clone() demoView {
	c := v
	c.Nodes = make(map[string]cluster.NodeStatus, len(v.Nodes))
	for k, n := range v.Nodes {
		c.Nodes[k] = n
	}
	c.VIP = append([]string(nil), v.VIP...)
	return c
}

// changes says in words what differs between two views of the cluster, in the order a
// reader follows a failover: verdicts, decision, fence, commit, promotion, VIP,
// history.
func demoChanges(prev, cur demoView) []string {
	var out []string
	names := make([]string, 0, len(cur.Nodes))
	for name := range cur.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := cur.Nodes[name]
		p, ok := prev.Nodes[name]
		if !ok {
			out = append(out, fmt.Sprintf("%s's agent publishes again: role %s, verdict %s", name, status.OrDash(string(n.Role)), n.Verdict.String()))
			continue
		}
		if n.Verdict != p.Verdict {
			line := fmt.Sprintf("%s verdict %s", name, n.Verdict)
			if n.Reason != "" && n.Verdict != detector.Healthy {
				line += ": " + n.Reason
			}
			out = append(out, line)
		}
		if n.GTID == "" && p.GTID != "" {
			out = append(out, fmt.Sprintf("%s's agent cannot read its server", name))
		}
		// A status without a GTID set was made without the server: its read_only
		// says nothing.
		if n.ReadOnly != p.ReadOnly && n.GTID != "" {
			if n.ReadOnly {
				out = append(out, fmt.Sprintf("%s is read_only", name))
			} else {
				out = append(out, fmt.Sprintf("%s is writable (read_only off)", name))
			}
		}
		if n.Role != p.Role {
			switch n.Role {
			case cluster.RoleFenced:
				// A replica made primary of record shows as fenced until the old
				// primary lets go of the leader key: it is waiting, not fenced.
				if name == cur.Primary.Node && cur.Leader != name && p.Role != cluster.RolePrimary {
					if cur.Leader == "" {
						out = append(out, fmt.Sprintf("%s, primary of record, is about to take the leader key", name))
					} else {
						out = append(out, fmt.Sprintf("%s, primary of record, waits for %s to let go of the leader key", name, cur.Leader))
					}
					break
				}
				line := name + " fenced"
				if why := strings.TrimPrefix(n.Reason, "fenced: "); why != "" && strings.HasPrefix(n.Reason, "fenced: ") {
					line += ": " + why
				}
				out = append(out, line)
			case cluster.RoleQuarantined:
				out = append(out, fmt.Sprintf("%s quarantined: errant transactions %s", name, status.OrDash(n.Errant)))
			case cluster.RoleReplica:
				out = append(out, fmt.Sprintf("%s role replica", name))
			default:
				out = append(out, fmt.Sprintf("%s role %s", name, status.OrDash(string(n.Role))))
			}
		}
		if n.Role == cluster.RoleReplica && (n.IORunning != p.IORunning || n.SQLRunning != p.SQLRunning || n.Source != p.Source) {
			out = append(out, fmt.Sprintf("%s replication from %s: IO thread %s, SQL thread %s", name, status.OrDash(n.Source),
				threadState(n.IORunning), threadState(n.SQLRunning)))
		}
		if n.Errant != p.Errant && n.Errant != "" && n.Role == p.Role {
			out = append(out, fmt.Sprintf("%s errant transactions: %s", name, n.Errant))
		}
	}
	for name := range prev.Nodes {
		if _, ok := cur.Nodes[name]; !ok {
			out = append(out, fmt.Sprintf("%s's agent is gone (its etcd lease ended)", name))
		}
	}
	if cur.Coordinator != prev.Coordinator && cur.Coordinator != "" {
		out = append(out, fmt.Sprintf("%s is the coordinator", cur.Coordinator))
	}
	if cur.Intent != nil && (prev.Intent == nil || *cur.Intent != *prev.Intent) {
		in := cur.Intent
		line := fmt.Sprintf("coordinator %s decided: %s away from %s (epoch %d)", status.OrDash(cur.Coordinator), in.Kind, in.From, in.Epoch)
		if in.To != "" {
			line += ", to " + in.To
		}
		out = append(out, line)
	}
	if cur.Intent == nil && prev.Intent != nil && cur.Primary.Epoch == prev.Primary.Epoch {
		out = append(out, fmt.Sprintf("the %s away from %s was abandoned (intent withdrawn)", prev.Intent.Kind, prev.Intent.From))
	}
	if cur.Leader != prev.Leader && prev.Leader != "" {
		out = append(out, fmt.Sprintf("%s let go of the leader key", prev.Leader))
	}
	if cur.Primary.Node != prev.Primary.Node || cur.Primary.Epoch != prev.Primary.Epoch {
		out = append(out, fmt.Sprintf("commit: %s is the primary of record (epoch %d)", status.OrDash(cur.Primary.Node), cur.Primary.Epoch))
	}
	if cur.Leader != prev.Leader && cur.Leader != "" {
		line := fmt.Sprintf("%s holds the leader key", cur.Leader)
		if cur.Leader == cur.Primary.Node {
			line = fmt.Sprintf("%s promoted (epoch %d): it holds the leader key", cur.Leader, cur.Primary.Epoch)
		}
		out = append(out, line)
	}
	if strings.Join(cur.VIP, ",") != strings.Join(prev.VIP, ",") {
		switch len(cur.VIP) {
		case 0:
			out = append(out, fmt.Sprintf("VIP released by %s: no node has it", strings.Join(prev.VIP, ",")))
		case 1:
			out = append(out, fmt.Sprintf("VIP now on %s", cur.VIP[0]))
		default:
			out = append(out, fmt.Sprintf("VIP on %s at once!", strings.Join(cur.VIP, " and ")))
		}
	}
	if e := cur.LastEvent; e != nil && (prev.LastEvent == nil || !e.Started.Equal(prev.LastEvent.Started) || e.Kind != prev.LastEvent.Kind) {
		out = append(out, fmt.Sprintf("history: %s %s -> %s recorded, %s from decision to done", e.Kind, status.OrDash(e.From), e.To, e.Took.Round(time.Millisecond)))
	}
	return out
}

func threadState(b bool) string {
	if b {
		return "running"
	}
	return "stopped"
}

// viewOf is the demo's view of a snapshot of the cluster, with the VIP's holders as
// the interfaces show them.
func viewOf(snap cluster.Snapshot, vip []string) demoView {
	return demoView{Primary: snap.Primary, Leader: snap.Leader, Coordinator: snap.Coordinator, Intent: snap.Intent,
		Nodes: snap.Nodes, VIP: vip, LastEvent: snap.LastEvent}
}

// demoObserver watches the cluster from just before the fault: etcd through the
// store's watch (every change, in order), the VIP on the interfaces and the writer
// every 50 ms. It narrates each change and times the failover's milestones, as
// failover defines them, and what only the demo sees: the VIP moved on the
// interfaces, the writes resumed.
type demoObserver struct {
	c         *sandbox.Cluster
	store     *cluster.Store
	w         *sandbox.Writer
	old       cluster.Primary
	oldServer uint32
	narr      *demoNarrator
	vip       *vipWatch

	mu       sync.Mutex
	cur      demoView
	fault    time.Time
	tl       *cluster.FailoverTimeline // nil before the fault
	vipAt    time.Time                 // the VIP on the new primary's interface only
	resumed  time.Time                 // a write through the VIP acknowledged by another server
	failures int
	// toldFailure: the first failed write after the fault has been narrated.
	toldFailure bool
	cancel      context.CancelFunc
	done        chan struct{}
}

func newDemoObserver(c *sandbox.Cluster, store *cluster.Store, w *sandbox.Writer, oldServer uint32, narr *demoNarrator) (*demoObserver, error) {
	vw, err := newVIPWatch(c)
	if err != nil {
		return nil, err
	}
	return &demoObserver{c: c, store: store, w: w, oldServer: oldServer, narr: narr, vip: vw}, nil
}

// start watches the cluster; the state as it is when the watch begins is the
// baseline, which nothing is narrated about. It returns once it has the baseline.
func (o *demoObserver) start(ctx context.Context) error {
	ctx, o.cancel = context.WithCancel(ctx)
	o.done = make(chan struct{})
	baseline := make(chan struct{})
	var watchErr error
	go func() {
		defer close(o.done)
		polled := make(chan struct{})
		ready := false
		watchErr = o.store.Watch(ctx, func(snap cluster.Snapshot) error {
			if ready {
				o.update(snap, time.Now())
				return nil
			}
			o.mu.Lock()
			o.old = snap.Primary
			o.cur = viewOf(snap, o.vip.holders())
			o.mu.Unlock()
			ready = true
			close(baseline)
			go o.pollEvery(ctx, 50*time.Millisecond, polled)
			return nil
		})
		if ready {
			<-polled
		}
	}()
	select {
	case <-baseline:
		return nil
	case <-o.done:
		return fmt.Errorf("watch the cluster's state: %w", watchErr)
	case <-time.After(10 * time.Second):
		return errors.New("watch the cluster's state: no state read within 10s")
	}
}

// pollEvery polls until ctx ends, then closes done.
func (o *demoObserver) pollEvery(ctx context.Context, every time.Duration, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			o.poll()
		}
	}
}

func (o *demoObserver) stop() {
	if o.cancel != nil {
		o.cancel()
		<-o.done
	}
	o.vip.close()
}

// setFault starts the clock: changes from now on are narrated and timed.
func (o *demoObserver) setFault(t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fault = t
	o.tl = cluster.NewFailoverTimeline(o.old, t)
	o.failures, _ = o.w.Failures()
}

// poll looks at what etcd does not carry: the VIP on the interfaces, and the writer.
func (o *demoObserver) poll() {
	holders := o.vip.holders()
	now := time.Now()
	o.mu.Lock()
	prev := o.cur.clone()
	o.cur.VIP = holders
	cur := o.cur.clone()
	fault, seen, resumed := o.fault, o.failures, !o.resumed.IsZero()
	if !fault.IsZero() && o.vipAt.IsZero() && cur.Primary.Node != o.old.Node && len(holders) == 1 && holders[0] == cur.Primary.Node {
		o.vipAt = now
	}
	o.mu.Unlock()
	if fault.IsZero() {
		return
	}
	if strings.Join(prev.VIP, ",") != strings.Join(cur.VIP, ",") {
		for _, line := range demoChanges(prev, cur) {
			o.narr.sayAt(now, "%s", line)
		}
	}
	if n, last := o.w.Failures(); n > seen && !resumed {
		o.mu.Lock()
		first := !o.toldFailure
		o.failures, o.toldFailure = n, true
		o.mu.Unlock()
		if first {
			o.narr.sayAt(time.Now(), "a write through the VIP failed: %s (the writer tries again)", shorten(last, 100))
		}
	}
	if resumed {
		return
	}
	ack, ok := o.w.FirstAckAfter(fault, o.oldServer)
	if !ok {
		return
	}
	name := fmt.Sprint(ack.ServerID)
	for _, n := range o.c.Nodes {
		if uint32(n.ServerID) == ack.ServerID {
			name = n.Name
		}
	}
	o.mu.Lock()
	o.resumed = ack.At
	o.mu.Unlock()
	var before time.Time
	for _, a := range o.w.Acks() {
		if a.ServerID == o.oldServer {
			before = a.At
		}
	}
	gap := ""
	if !before.IsZero() {
		gap = fmt.Sprintf("; the last one on %s was acknowledged at %s", o.old.Node, o.narr.rel(before))
	}
	o.narr.sayAt(ack.At, "writes resumed on %s through the VIP (first acknowledged write, #%d)%s", name, ack.Seq, gap)
}

// update takes a new state of the cluster from etcd, narrates the change and times
// the milestones.
func (o *demoObserver) update(snap cluster.Snapshot, now time.Time) {
	o.mu.Lock()
	prev := o.cur.clone()
	o.cur = viewOf(snap, prev.VIP)
	cur := o.cur.clone()
	fault := o.fault
	if o.tl != nil {
		o.tl.Observe(snap, now)
	}
	o.mu.Unlock()
	if fault.IsZero() {
		return
	}
	for _, line := range demoChanges(prev, cur) {
		o.narr.sayAt(now, "%s", line)
	}
}

// at is when the failover's milestone m first held, and whether it has.
func (o *demoObserver) at(m cluster.Milestone) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tl == nil {
		return time.Time{}, false
	}
	return o.tl.At(m)
}

// reached is a condition for wait: m has held.
func (o *demoObserver) reached(m cluster.Milestone) func() bool {
	return func() bool { _, ok := o.at(m); return ok }
}

// vipMovedAt is when the VIP was first on the new primary's interface only.
func (o *demoObserver) vipMovedAt() (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.vipAt, !o.vipAt.IsZero()
}

func (o *demoObserver) vipMoved() bool { _, ok := o.vipMovedAt(); return ok }

// resumedAt is when the first write through the VIP was acknowledged by another
// server than the old primary.
func (o *demoObserver) resumedAt() (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.resumed, !o.resumed.IsZero()
}

func (o *demoObserver) writesResumed() bool { _, ok := o.resumedAt(); return ok }

// ms is t's time from the fault, -1 when ok is false (it did not happen).
func (o *demoObserver) ms(t time.Time, ok bool) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !ok || t.IsZero() {
		return -1
	}
	return t.Sub(o.fault).Milliseconds()
}

func (o *demoObserver) wait(ctx context.Context, limit time.Duration, cond func() bool) error {
	return lab.Until(ctx, limit, cond)
}

func (o *demoObserver) snapshot() demoView {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cur.clone()
}

// describe says where the cluster stands, for a failure message.
func (o *demoObserver) describe() string {
	v := o.snapshot()
	var parts []string
	parts = append(parts, fmt.Sprintf("primary %s epoch %d, leader %s", status.OrDash(v.Primary.Node), v.Primary.Epoch, status.OrDash(v.Leader)))
	if v.Intent != nil {
		parts = append(parts, fmt.Sprintf("%s from %s in progress", v.Intent.Kind, v.Intent.From))
	}
	names := make([]string, 0, len(v.Nodes))
	for name := range v.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := v.Nodes[name]
		parts = append(parts, fmt.Sprintf("%s %s/%s %s", name, status.OrDash(string(n.Role)), n.Verdict.String(), n.Reason))
	}
	return strings.Join(parts, "; ")
}

// vipWatch reads which nodes have the virtual IP on their eth0, through a netlink
// socket opened in each node's namespace (`ip -n NS -4 addr show eth0`).
type vipWatch struct {
	ip      net.IP
	nodes   []string
	handles []*netlink.Handle
}

func newVIPWatch(c *sandbox.Cluster) (*vipWatch, error) {
	ip, _, err := net.ParseCIDR(c.VIP)
	if err != nil {
		return nil, fmt.Errorf("the sandbox's virtual IP %q: %w", c.VIP, err)
	}
	v := &vipWatch{ip: ip}
	for _, n := range c.Nodes {
		ns, err := netns.GetFromPath(filepath.Join("/run/netns", n.NetNS))
		if err != nil {
			v.close()
			return nil, fmt.Errorf("open network namespace %s: %w", n.NetNS, err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close() // the handle's socket keeps the namespace
		if err != nil {
			v.close()
			return nil, fmt.Errorf("netlink in namespace %s: %w", n.NetNS, err)
		}
		v.nodes = append(v.nodes, n.Name)
		v.handles = append(v.handles, h)
	}
	return v, nil
}

func (v *vipWatch) holders() []string {
	var out []string
	for i, h := range v.handles {
		link, err := h.LinkByName("eth0")
		if err != nil {
			continue
		}
		addrs, err := h.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.IP.Equal(v.ip) {
				out = append(out, v.nodes[i])
			}
		}
	}
	return out
}

func (v *vipWatch) close() {
	for _, h := range v.handles {
		h.Close()
	}
	v.handles = nil
}

// binlogTail returns a server's gtid_binlog_pos and the last GTID its binlog files
// on disk really hold, as mariadb-binlog reads them: after a binlog write fails on a
// full disk the first runs ahead of the second. (SHOW BINLOG EVENTS is no help there:
// it reads up to where the server believes the file ends, and fails.)
func binlogTail(ctx context.Context, c *sandbox.Cluster, n *sandbox.Node) (pos, written string, err error) {
	db, err := c.RootDB(n.Name)
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return "", "", fmt.Errorf("read gtid_binlog_pos: %w", err)
	}
	index, err := os.ReadFile(filepath.Join(n.Datadir, "mysql-bin.index"))
	if err != nil {
		return "", "", fmt.Errorf("list binlogs: %w", err)
	}
	files := strings.Fields(string(index))
	for i := len(files) - 1; i >= 0 && written == ""; i-- {
		path := files[i]
		if !filepath.IsAbs(path) {
			path = filepath.Join(n.Datadir, path)
		}
		// It exits non-zero on a truncated last event, after printing what it read.
		out, rerr := exec.CommandContext(ctx, "mariadb-binlog", path).Output()
		if len(out) == 0 && rerr != nil {
			return "", "", fmt.Errorf("read binlog %s: %w", path, rerr)
		}
		written = lastGTID(string(out))
	}
	return pos, written, nil
}

var (
	gtidEvent = regexp.MustCompile(`\tGTID (\d+-\d+-\d+)`)
	gtidList  = regexp.MustCompile(`\tGtid list \[([^\]]*)\]`)
)

// lastGTID returns the last GTID event of one binlog file as mariadb-binlog prints
// it, or the GTID list the file starts with when it holds no transaction.
func lastGTID(dump string) string {
	if m := gtidEvent.FindAllStringSubmatch(dump, -1); len(m) > 0 {
		return m[len(m)-1][1]
	}
	if m := gtidList.FindStringSubmatch(dump); m != nil {
		return m[1]
	}
	return ""
}

func countLines(path, s string) int {
	b, err := readFrom(path, 0)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// recoveryLines picks from a server's error log, from offset on, the lines that say
// what a restart did with the transactions it found.
func recoveryLines(path string, from int64) []string {
	b, err := readFrom(path, from)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Recovering after a crash") || strings.Contains(line, "olled back") ||
			strings.Contains(line, "runcat") || strings.Contains(line, "replication starts at GTID position") {
			out = append(out, strings.TrimSpace(stripLogPrefix(line)))
		}
	}
	return out
}

// lastLineWith returns the last line of the file, from offset on, containing s.
func lastLineWith(path, s string, from int64) string {
	b, err := readFrom(path, from)
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return strings.TrimSpace(stripLogPrefix(lines[i]))
		}
	}
	return ""
}

// errorLogPrefix is the date, time and thread id that start a mariadbd error log
// line ("2026-11-22  2:48:35 0 "): the hour is padded with a space.
var errorLogPrefix = regexp.MustCompile(`^\d{4}-\d\d-\d\d +\d?\d:\d\d:\d\d +\d+ `)

// stripLogPrefix drops the date, time and thread id from an error log line.
func stripLogPrefix(line string) string {
	return errorLogPrefix.ReplaceAllString(line, "")
}

func readFrom(path string, from int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func vipAddr(c *sandbox.Cluster) string {
	ip, _, err := net.ParseCIDR(c.VIP)
	if err != nil {
		return c.VIP
	}
	return net.JoinHostPort(ip.String(), "3306")
}

func msString(ms int64) string {
	if ms < 0 {
		return "never"
	}
	return fmt.Sprintf("%.2fs", float64(ms)/1000)
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func firstN(s []int64, n int) []int64 {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
