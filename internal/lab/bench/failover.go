// Package bench is `baton-lab bench`: it measures Baton on real sandbox clusters. Detect
// times the detector alone from a fault to its verdict; Failover times a whole
// failover from a fault of the primary to writes accepted again, by the milestones
// package failover defines; All runs everything and writes docs/BENCHMARKS.md.
// Every figure comes from real servers; nothing is simulated.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// FailoverKinds are the faults of the primary that must lead to a failover: single
// faults, and compound ones ("a+b": injected in that order) as production combines
// them. cut-etcd cuts the primary's agent alone from etcd.
func FailoverKinds() []string {
	return []string{"kill", "disk-full", "freeze-writes", "stop", "cut-network", "readonly-fs",
		"disk-full+exhaust-connections", "cut-etcd", "kill-agent+disk-full"}
}

// ParseFailoverKind reads a kind of FailoverKinds into the faults it injects.
func ParseFailoverKind(kind string) ([]sandbox.Fault, error) {
	if !slices.Contains(FailoverKinds(), kind) {
		return nil, fmt.Errorf("fault: %q does not call for a failover: use one of %s", kind, strings.Join(FailoverKinds(), ", "))
	}
	var fs []sandbox.Fault
	for _, name := range strings.Split(kind, "+") {
		f, err := sandbox.ParseFault(name)
		if err != nil {
			return nil, fmt.Errorf("fault: %w", err)
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// Via is the way the benchmark's writer reaches the primary.
type Via int

const (
	// ViaUnknown is no way at all: the zero value, refused by Validate.
	ViaUnknown Via = iota
	// ViaVIP writes to the virtual IP the primary's agent holds.
	ViaVIP
	// ViaHAProxy writes to HAProxy's writer frontend, routed by the agents' /primary
	// (deploy/haproxy.cfg); the cluster has no virtual IP.
	ViaHAProxy
)

func (v Via) String() string {
	switch v {
	case ViaVIP:
		return "vip"
	case ViaHAProxy:
		return "haproxy"
	}
	return fmt.Sprintf("via(%d)", int(v))
}

// ParseVia reads "vip" or "haproxy".
func ParseVia(s string) (Via, error) {
	for _, v := range []Via{ViaVIP, ViaHAProxy} {
		if s == v.String() {
			return v, nil
		}
	}
	return ViaUnknown, fmt.Errorf("via: %q: use vip or haproxy", s)
}

// FailoverResult is what the failover benchmark measured: `baton-lab bench failover
// --json` prints it.
type FailoverResult struct {
	Fault      string  `json:"fault"`
	Via        string  `json:"via"`
	Secure     bool    `json:"secure,omitempty"`
	Trials     int     `json:"trials"`
	DetectMS   []int64 `json:"detect_ms"`   // fault -> failover.MilestoneDetected
	DecideMS   []int64 `json:"decide_ms"`   // fault -> failover.MilestoneDecided
	PromoteMS  []int64 `json:"promote_ms"`  // fault -> failover.MilestonePromoted
	FailoverMS []int64 `json:"failover_ms"` // fault -> first write acknowledged by the new primary
	// PhaseMS is each trial's random wait before the fault, U(0, probe interval): a
	// real fault lands at any moment of the detector's cycle.
	PhaseMS       []int64 `json:"phase_ms"`
	P50FailoverMS int64   `json:"p50_failover_ms"`
	MaxFailoverMS int64   `json:"max_failover_ms"`
	AckedWrites   int     `json:"acked_writes"`
	LostWrites    int     `json:"lost_writes"`
	SplitBrainMS  int64   `json:"split_brain_ms"`
	// OldPrimaryAcks counts writes the old primary acknowledged after the first one
	// the new primary acknowledged: writes still reaching it through the writer's
	// path (an HAProxy that did not cut its sessions, a stale ARP entry).
	OldPrimaryAcks int      `json:"old_primary_acks_after_switch"`
	NewPrimaries   []string `json:"new_primaries"`
	Errors         []string `json:"errors,omitempty"`
}

// FailoverConfig is one run of the failover benchmark.
type FailoverConfig struct {
	Fault    string // one of FailoverKinds
	Via      Via    // how the writer reaches the primary
	Trials   int    // each on a fresh cluster
	Name     string // sandbox name
	Bin      lab.Binaries
	Progress io.Writer // one line per trial; nil for none
	// Secure runs the trials on secure sandboxes (TLS everywhere, etcd with client
	// certificates and roles: sandbox.Spec.Secure).
	Secure bool
	// LogDir, when set, keeps each trial's agent logs there (trial-N/NODE.log), to
	// see where a slow trial's time went.
	LogDir string
}

// Validate checks the configuration and names the bad field.
func (cfg FailoverConfig) Validate() error {
	_, err := ParseFailoverKind(cfg.Fault)
	switch {
	case err != nil:
		return err
	case cfg.Via != ViaVIP && cfg.Via != ViaHAProxy:
		return fmt.Errorf("via: %s: use vip or haproxy", cfg.Via)
	case cfg.Trials < 1:
		return fmt.Errorf("trials: %d: at least 1", cfg.Trials)
	case cfg.Name == "":
		return errors.New("name: a sandbox name is required")
	case cfg.Bin.Baton == "" || cfg.Bin.Lab == "":
		return errors.New("bin: both the baton and the baton-lab executables are required")
	}
	return nil
}

// Failover runs the trials: each brings up a fresh 3-node sandbox with agents,
// semi-sync and a virtual IP (or HAProxy instead, by cfg.Via), writes through it,
// faults the primary and times the failover's milestones (as failover defines them)
// and the writes resuming. A trial that fails is an error in the result, not the end
// of the run. It needs root.
func Failover(ctx context.Context, cfg FailoverConfig) (FailoverResult, error) {
	if err := cfg.Validate(); err != nil {
		return FailoverResult{}, err
	}
	return runFailoverBench(ctx, cfg), nil
}

func runFailoverBench(ctx context.Context, cfg FailoverConfig) FailoverResult {
	f, _ := ParseFailoverKind(cfg.Fault) // checked by Validate
	res := FailoverResult{Fault: cfg.Fault, Via: cfg.Via.String(), Trials: cfg.Trials, Secure: cfg.Secure}
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format, args...)
		}
	}
	for i := 0; i < cfg.Trials && ctx.Err() == nil; i++ {
		keep := ""
		if cfg.LogDir != "" {
			keep = filepath.Join(cfg.LogDir, fmt.Sprintf("trial-%d", i+1))
		}
		tr, err := failoverTrialOn(ctx, f, viaSpec(cfg.Name, cfg.Bin, cfg.Via, cfg.Secure), cfg.Via, keep)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("trial %d: %v", i+1, err))
			say("trial %d: %v\n", i+1, err)
			continue
		}
		res.DetectMS = append(res.DetectMS, tr.detect.Milliseconds())
		res.DecideMS = append(res.DecideMS, tr.decide.Milliseconds())
		res.PromoteMS = append(res.PromoteMS, tr.promote.Milliseconds())
		res.FailoverMS = append(res.FailoverMS, tr.failover.Milliseconds())
		res.PhaseMS = append(res.PhaseMS, tr.phase.Milliseconds())
		res.AckedWrites += tr.acked
		res.LostWrites += tr.lost
		res.SplitBrainMS += tr.splitBrain.Milliseconds()
		res.OldPrimaryAcks += tr.oldAcks
		res.NewPrimaries = append(res.NewPrimaries, tr.newPrimary)
		say("trial %d: detect %s, decide %s, promote %s, writes resumed %s on %s; %d acked, %d lost, split-brain %s, %d acked by the old primary after the switch\n",
			i+1, tr.detect.Round(time.Millisecond), tr.decide.Round(time.Millisecond), tr.promote.Round(time.Millisecond),
			tr.failover.Round(time.Millisecond), tr.newPrimary, tr.acked, tr.lost, tr.splitBrain, tr.oldAcks)
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
	phase                             time.Duration // the random wait before the fault
	acked, lost                       int
	oldAcks                           int      // acknowledged by the old primary after the new one's first
	writerRoutes                      []string // via HAProxy: the writer backend's servers up at the end
	splitBrain                        time.Duration
	newPrimary                        string
}

// benchCluster brings up a fresh 3-node cluster with agents, semi-sync and a virtual
// IP (taking down one of the same name first), and its etcd state. done tears it
// down.
func benchCluster(ctx context.Context, name string, bin lab.Binaries) (c *sandbox.Cluster, store *cluster.Store, done func(), err error) {
	return benchClusterEtcd(ctx, name, bin, 1)
}

// benchClusterEtcd is benchCluster with etcdMembers etcd members.
func benchClusterEtcd(ctx context.Context, name string, bin lab.Binaries, etcdMembers int) (c *sandbox.Cluster, store *cluster.Store, done func(), err error) {
	return benchClusterSpec(ctx, sandbox.Spec{Name: name, Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, EtcdMembers: etcdMembers,
		Binary: bin.Baton, LabBinary: bin.Lab})
}

// benchClusterVia is benchCluster with the writer's way in: a virtual IP, or HAProxy
// and no virtual IP (a network where the address cannot move).
func benchClusterVia(ctx context.Context, name string, bin lab.Binaries, via Via) (c *sandbox.Cluster, store *cluster.Store, done func(), err error) {
	return benchClusterSpec(ctx, viaSpec(name, bin, via, false))
}

// viaSpec is the sandbox of a failover trial: 3 nodes with agents and semi-sync,
// and the writer's way in; secure: sandbox.Spec.Secure.
func viaSpec(name string, bin lab.Binaries, via Via, secure bool) sandbox.Spec {
	return sandbox.Spec{Name: name, Nodes: 3, SemiSync: true, WithAgents: true,
		VIP: via == ViaVIP, HAProxy: via == ViaHAProxy, EtcdMembers: 1, Binary: bin.Baton, LabBinary: bin.Lab, Secure: secure}
}

func benchClusterSpec(ctx context.Context, spec sandbox.Spec) (c *sandbox.Cluster, store *cluster.Store, done func(), err error) {
	if old, err := sandbox.Open("", spec.Name, nil); err == nil {
		_ = old.Down(ctx)
	}
	c, err = sandbox.Up(ctx, spec, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	cli, err := c.EtcdClient()
	if err != nil {
		_ = c.Down(context.WithoutCancel(ctx))
		return nil, nil, nil, err
	}
	return c, cluster.NewStore(cli, c.Name), func() {
		cli.Close()
		_ = c.Down(context.WithoutCancel(ctx))
	}, nil
}

// errPromoted ends a trial's watch: the new primary holds the leader key.
var errPromoted = errors.New("bench: promoted")

func failoverTrial(ctx context.Context, f []sandbox.Fault, name string, bin lab.Binaries, via Via) (trialResult, error) {
	return failoverTrialOn(ctx, f, viaSpec(name, bin, via, false), via, "")
}

// failoverTrialOn is one trial on a fresh sandbox of spec; keep, when set, is where
// its agent logs are copied before the sandbox goes.
func failoverTrialOn(ctx context.Context, f []sandbox.Fault, spec sandbox.Spec, via Via, keep string) (trialResult, error) {
	var tr trialResult
	c, store, done, err := benchClusterSpec(ctx, spec)
	if err != nil {
		return tr, err
	}
	defer done()
	if keep != "" {
		defer keepAgentLogs(c, keep)
	}

	w := c.NewWriter(10*time.Millisecond, benchWriteTimeout)
	if via == ViaHAProxy {
		if w, err = c.NewHAProxyWriter(10*time.Millisecond, benchWriteTimeout); err != nil {
			return tr, err
		}
	}
	w.Start(ctx)
	defer w.Stop()
	mon := c.NewSplitBrainMonitor(50 * time.Millisecond)
	mon.Start(ctx)
	defer mon.Stop()
	if err := lab.Until(ctx, 10*time.Second, func() bool { return len(w.Acks()) >= 50 }); err != nil {
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

	// Watch etcd from before the fault: every change, in order, timed as it arrives.
	wctx, stopWatch := context.WithTimeout(ctx, 30*time.Second)
	defer stopWatch()
	var (
		mu       sync.Mutex
		tl       *cluster.FailoverTimeline
		injected time.Time
	)
	ready, watched := make(chan struct{}), make(chan error, 1)
	go func() {
		first := true
		watched <- store.Watch(wctx, func(s cluster.Snapshot) error {
			if first {
				first = false
				close(ready)
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			if tl == nil {
				return nil
			}
			tl.Observe(s, time.Now())
			if _, ok := tl.At(cluster.MilestonePromoted); ok {
				tr.newPrimary = s.Primary.Node
				return errPromoted
			}
			return nil
		})
	}()
	select {
	case <-ready:
	case err := <-watched:
		return tr, fmt.Errorf("watch the cluster's state: %w", err)
	}
	// The writes counted above start with the cluster's first healthy report, so
	// without a random wait every trial's fault would land at the same moment of
	// the agents' probe cycle (just after a round: the worst for a fault that only
	// timeouts reveal), not at a uniformly random one, as a real fault does.
	tr.phase = rand.N(detector.DefaultInterval)
	select {
	case <-time.After(tr.phase):
	case <-ctx.Done():
		return tr, ctx.Err()
	}
	mu.Lock()
	injected = time.Now()
	tl = cluster.NewFailoverTimeline(oldPrimary, injected)
	mu.Unlock()
	for _, f := range f {
		if err := c.Fault(ctx, oldPrimary.Node, f); err != nil {
			return tr, err
		}
	}
	if err := <-watched; !errors.Is(err, errPromoted) {
		return tr, fmt.Errorf("no failover within 30s of %s (%v)", f, err)
	}
	tr.detect, _ = tl.Since(cluster.MilestoneDetected)
	tr.decide, _ = tl.Since(cluster.MilestoneDecided)
	tr.promote, _ = tl.Since(cluster.MilestonePromoted)
	var first sandbox.Ack
	if err := lab.Until(ctx, 15*time.Second, func() bool {
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
	if via == ViaHAProxy {
		if tr.writerRoutes, err = c.HAProxyUp(ctx, sandbox.HAProxyWriterBackend); err != nil {
			return tr, err
		}
	}
	acks := w.Acks()
	tr.acked = len(acks)
	for _, a := range acks {
		if a.ServerID == uint32(oldNode.ServerID) && a.At.After(first.At) {
			tr.oldAcks++
		}
	}
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

// keepAgentLogs copies every node's agent log into dir, as NODE.log. Best effort: a
// log that cannot be copied is said on standard error.
func keepAgentLogs(c *sandbox.Cluster, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "keep agent logs: %v\n", err)
		return
	}
	for _, n := range c.Nodes {
		if n.AgentLog == "" {
			continue
		}
		b, err := os.ReadFile(n.AgentLog)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, n.Name+".log"), b, 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "keep the agent log of %s: %v\n", n.Name, err)
		}
	}
}
