package detector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// Defaults; docs/detector.md explains the timing budget behind them.
const (
	DefaultInterval     = 500 * time.Millisecond
	DefaultTimeout      = 300 * time.Millisecond
	DefaultFailAfter    = 3
	DefaultRecoverAfter = 3
	DefaultDiskWindow   = time.Minute
	DefaultDiskHorizon  = 10 * time.Minute
)

// Config configures a Detector. Zero durations and counts take the defaults above.
type Config struct {
	// DSN of the server (go-sql-driver format). Its timeouts are replaced by Timeout.
	DSN string
	// Node is this node's name, written into the heartbeat and storage tables.
	Node string
	// Role chooses the probes; required (see Role). SetRole changes it later.
	Role Probes
	// Interval between the starts of two rounds of probes while the verdict is
	// settled. While a change is pending (suspect, or recovering) rounds come every
	// Interval/2, or back to back when a round takes longer.
	Interval time.Duration
	// Timeout is each probe's deadline, connect included. It must be below Interval:
	// a probe is over, one way or the other, before the next round starts.
	Timeout time.Duration
	// FailAfter failed rounds in a row make a failure verdict; RecoverAfter healthy
	// rounds in a row make it healthy again.
	FailAfter    int
	RecoverAfter int
	// KillTimeout bounds the KILL QUERY of an abandoned probe; default Timeout.
	KillTimeout time.Duration
	// Datadir, BinlogDir and RelayLogDir are statfs'ed each round when set (a local
	// server only).
	Datadir     string
	BinlogDir   string
	RelayLogDir string
	// DiskWindow is the span of the least-squares fill rate (estimated once half a
	// window is in); DiskHorizon the time to full under which the verdict is Degraded.
	DiskWindow  time.Duration
	DiskHorizon time.Duration
	// Dial, when set, makes the connections (a server in another network namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OnChange is called once per verdict change, from the detector's goroutine, with
	// the report of the round that caused it. It must not block.
	OnChange func(Change, Report)
	// StaleAfter, when set, is the age at which a replica's newest heartbeat says
	// the primary stopped writing (the cluster's confirm_lag): a replica's round
	// also falls when the heartbeat it last saw would reach that age, and OnStale is
	// called, from the detector's goroutine, with the first round that finds it
	// reached. Without them the crossing was seen up to an interval late, and
	// published up to another (staleWait).
	StaleAfter time.Duration
	OnStale    func(Report)
	Logger     *zap.Logger
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.FailAfter = cmp.Or(c.FailAfter, DefaultFailAfter)
	c.RecoverAfter = cmp.Or(c.RecoverAfter, DefaultRecoverAfter)
	c.KillTimeout = cmp.Or(c.KillTimeout, c.Timeout)
	c.DiskWindow = cmp.Or(c.DiskWindow, DefaultDiskWindow)
	c.DiskHorizon = cmp.Or(c.DiskHorizon, DefaultDiskHorizon)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate checks a configuration after defaults and names the first bad field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if _, err := mysql.ParseDSN(c.DSN); err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	switch {
	case c.Node == "":
		return errors.New("node: required (the name written into baton.heartbeat)")
	case len(c.Node) > 64:
		return fmt.Errorf("node: %q is longer than 64 characters", c.Node)
	case c.Role != Primary && c.Role != Replica:
		return fmt.Errorf("role: %s, must be primary or replica", c.Role)
	case c.Interval < 0:
		return fmt.Errorf("interval: %s, must be positive", c.Interval)
	case c.Timeout < 0:
		return fmt.Errorf("timeout: %s, must be positive", c.Timeout)
	case c.Timeout >= c.Interval:
		return fmt.Errorf("timeout: %s must be below the interval (%s): a probe must be over before the next round", c.Timeout, c.Interval)
	case c.FailAfter < 1:
		return fmt.Errorf("fail_after: %d, must be at least 1", c.FailAfter)
	case c.RecoverAfter < 1:
		return fmt.Errorf("recover_after: %d, must be at least 1", c.RecoverAfter)
	case c.KillTimeout < 0:
		return fmt.Errorf("kill timeout: %s, must be positive", c.KillTimeout)
	case c.DiskWindow < 0:
		return fmt.Errorf("disk window: %s, must be positive", c.DiskWindow)
	case c.DiskHorizon < 0:
		return fmt.Errorf("disk horizon: %s, must be positive", c.DiskHorizon)
	case c.StaleAfter < 0:
		return fmt.Errorf("stale after: %s, must not be negative", c.StaleAfter)
	}
	return nil
}

// Report is the detector's latest full picture of its server: the verdict with its
// reason, and what the latest round measured. The agent publishes it.
type Report struct {
	Node string `json:"node"`
	Role Probes `json:"role"`
	// At is when the latest round started; zero before the first round.
	At      time.Time `json:"at"`
	Verdict Verdict   `json:"verdict"`
	// Reason is the reason given when the verdict was reached.
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// RoundVerdict and RoundReason are what the latest round alone said.
	RoundVerdict Verdict      `json:"round_verdict"`
	RoundReason  string       `json:"round_reason"`
	Ping         *Result      `json:"ping,omitempty"`
	Write        *Result      `json:"write,omitempty"`
	Storage      *Result      `json:"storage,omitempty"`
	Replication  *Replication `json:"replication,omitempty"`
	Disks        []Disk       `json:"disks,omitempty"`
	Rounds       uint64       `json:"rounds"`
}

// Detector probes one server in rounds, forever, and keeps its verdict. Every round
// runs the probes of the server's role concurrently (see Prober), reads the disks,
// assesses the round and feeds the state machine. A round's goroutines are bounded by
// the probe kinds, and a probe kind never has two in flight; memory is bounded too
// (the disk window keeps at most a few hundred samples). Beside the probes' pools,
// one idle connection watches for the server's exit (watchExit).
type Detector struct {
	cfg     Config
	log     *zap.Logger
	role    atomic.Uint32
	epoch   atomic.Uint64
	running atomic.Bool
	// restartTrends: the disks' trends start afresh at the next round (RestartTrends).
	restartTrends atomic.Bool
	// wake asks Run for a round at once: SetRole changed the probes, or the exit
	// watch saw the server close its connection (wakeUp).
	wake chan struct{}

	// Owned by Run's goroutine.
	machine *Machine
	trends  map[string]*Trend
	// notRunning: the latest round found no server running (only Run touches it).
	notRunning bool
	// lastSeen: when the latest round's newest heartbeat was first seen (staleWait).
	lastSeen time.Time
	// lastRole: the probes of the latest round; primaryEpoch: the epoch of the latest
	// round with a primary's probes (0 before one).
	lastRole     Probes
	primaryEpoch uint64
	paths        []string
	holds        map[string][]string // what each path holds: datadir, binlog, relay log

	mu     sync.Mutex
	report Report
}

// New checks the configuration (naming the bad field) and returns a Detector. It
// makes no connection: Run does.
func New(cfg Config) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new detector: %w", err)
	}
	cfg = cfg.withDefaults()
	m, err := NewMachine(cfg.FailAfter, cfg.RecoverAfter)
	if err != nil {
		return nil, fmt.Errorf("new detector: %w", err)
	}
	d := &Detector{
		cfg:     cfg,
		log:     cfg.Logger.With(zap.String("node", cfg.Node)),
		machine: m,
		trends:  map[string]*Trend{},
		holds:   map[string][]string{},
		wake:    make(chan struct{}, 1),
	}
	d.role.Store(uint32(cfg.Role))
	d.lastRole = cfg.Role
	for _, loc := range []struct{ path, what string }{{cfg.Datadir, "datadir"}, {cfg.BinlogDir, "binlog"}, {cfg.RelayLogDir, "relay log"}} {
		p := loc.path
		if p == "" {
			continue
		}
		p = filepath.Clean(p)
		_, seen := d.trends[p]
		d.holds[p] = append(d.holds[p], loc.what)
		if seen {
			continue
		}
		d.paths = append(d.paths, p)
		// Half a window before the first estimate: a fresh start (or a restart
		// allocating its files) is not a trend yet.
		d.trends[p] = NewTrend(cfg.DiskWindow, cfg.DiskWindow/2)
	}
	d.report = Report{Node: cfg.Node, Role: cfg.Role}
	return d, nil
}

// SetRole changes the probes from the next round on (after a failover or switchover).
// A change starts that round at once: a promoted server's verdict as a primary is
// what /primary, and so a load balancer, waits for.
func (d *Detector) SetRole(r Probes) {
	if r != Primary && r != Replica {
		return
	}
	if Probes(d.role.Swap(uint32(r))) != r {
		d.wakeUp()
	}
}

// SetEpoch sets the primary epoch written with each heartbeat.
func (d *Detector) SetEpoch(e uint64) { d.epoch.Store(e) }

// RestartTrends makes the disks' fill rates start afresh at the next round: what
// filled them until now (a rebuild's copy of the datadir, its old datadir kept
// beside it) says nothing of the rate from now on.
func (d *Detector) RestartTrends() { d.restartTrends.Store(true) }

// Report returns a copy of the latest report.
func (d *Detector) Report() Report {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.report
	r.Disks = append([]Disk(nil), r.Disks...)
	return r
}

// Run probes until ctx is cancelled, then waits for kills in flight (each bounded by
// the kill timeout), closes its connections and returns nil. It may run once.
func (d *Detector) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("detector: Run called twice")
	}
	p, err := NewProber(ProberConfig{
		DSN: d.cfg.DSN, Node: d.cfg.Node, Timeout: d.cfg.Timeout,
		KillTimeout: d.cfg.KillTimeout, Dial: d.cfg.Dial, Logger: d.log,
	})
	if err != nil {
		return fmt.Errorf("detector: %w", err)
	}
	defer p.Close()
	watch, err := mysql.ParseDSN(d.cfg.DSN)
	if err != nil {
		return fmt.Errorf("detector: dsn: %w", err)
	}
	watch.Timeout = d.cfg.Timeout
	if d.cfg.Dial != nil {
		watch.DialFunc = d.cfg.Dial
	}
	wctx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Go(func() { d.watchExit(wctx, watch) })
	defer watching.Wait()
	defer stopWatch()
	d.log.Info("detector started", zap.Stringer("role", Probes(d.role.Load())),
		zap.Duration("interval", d.cfg.Interval), zap.Duration("timeout", d.cfg.Timeout),
		zap.Int("fail_after", d.cfg.FailAfter), zap.Int("recover_after", d.cfg.RecoverAfter))

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-d.wake:
		}
		start := time.Now()
		p.SetEpoch(d.epoch.Load())
		r := p.Round(ctx, Probes(d.role.Load()))
		if ctx.Err() != nil {
			return nil // a round cut short by shutdown says nothing about the server
		}
		var afresh bool
		afresh, d.notRunning = trendsAfresh(d.notRunning, r.Ping)
		if d.restartTrends.Swap(false) || afresh {
			for _, t := range d.trends {
				t.Restart()
			}
		}
		r.Disks = d.readDisks(start)
		r.DiskHorizon = d.cfg.DiskHorizon
		d.observe(r)
		next := d.cfg.Interval
		if d.machine.Pending() {
			next = d.cfg.Interval / 2
		}
		wait := max(0, next-time.Since(start))
		if stale, ok := staleWait(r, d.cfg.StaleAfter, d.lastSeen); ok {
			wait = min(wait, stale)
		}
		d.lastSeen = time.Time{}
		if r.Replication != nil {
			d.lastSeen = r.Replication.HeartbeatSeen
		}
		timer.Reset(wait)
	}
}

// staleWait says how long after a replica's round r its newest heartbeat reaches
// the age stale, if it does not yet and no heartbeat arrived since the round before
// (lastSeen: when that round's newest heartbeat was first seen; a new one, or none
// seen arriving yet, leaves the rhythm alone, so that a replica that applies its
// heartbeats late, just under stale, is not probed more often). The next round
// falls then. The lag was read during the round and the wait runs from its end, so
// that round finds the lag at stale or past it. Never sooner than staleMinWait.
// False for a primary's round, an unknown lag, one already stale, or stale 0.
//
// The heartbeats stop at a fault of the primary: the first round after that still
// sees the last one arrive, the next sees it again, at most one interval later,
// and well before it is stale (heartbeats come every interval).
func staleWait(r Round, stale time.Duration, lastSeen time.Time) (time.Duration, bool) {
	if stale <= 0 || r.Role != Replica || r.Replication == nil || r.Replication.HeartbeatLag < 0 || r.Replication.HeartbeatLag >= stale {
		return 0, false
	}
	if seen := r.Replication.HeartbeatSeen; seen.IsZero() || !seen.Equal(lastSeen) {
		return 0, false
	}
	return max(stale-r.Replication.HeartbeatLag, staleMinWait), true
}

// staleMinWait: the least time between a replica's round and the one staleWait
// asks for.
const staleMinWait = 20 * time.Millisecond

// turnedStale says whether a round whose heartbeat lag is now, after one whose lag
// was last (negative: unknown, or not a replica's), is the first to find it at stale.
func turnedStale(last, now, stale time.Duration) bool {
	return stale > 0 && now >= stale && last < stale
}

// heartbeatLag is a report's heartbeat lag, -1 when unknown or not a replica's.
func heartbeatLag(r Report) time.Duration {
	if r.Role != Replica || r.Replication == nil {
		return -1
	}
	return r.Replication.HeartbeatLag
}

// promoted says whether a round with probes role, after one with last, at epoch
// (SetEpoch's), is a promotion's first: a replica's probes before, a primary's now,
// at an epoch above that of the latest round with a primary's probes (lastEpoch).
// A primary of record that probed as a replica for a flow that was then abandoned
// comes back at its own epoch: its evidence as a primary stands.
func promoted(last, role Probes, lastEpoch, epoch uint64) bool {
	return last == Replica && role == Primary && epoch > lastEpoch
}

// readDisks statfs'es the configured directories and updates their trends.
func (d *Detector) readDisks(now time.Time) []Disk {
	var out []Disk
	for _, path := range d.paths {
		total, free, err := statfs(path)
		if err != nil {
			out = append(out, Disk{Path: path, Holds: strings.Join(d.holds[path], ", "), Err: err.Error()})
			continue
		}
		t := d.trends[path]
		t.Add(now, free, total)
		dk := Disk{Path: path, Holds: strings.Join(d.holds[path], ", "), Total: total, Free: free}
		if rate, ok := t.Rate(); ok {
			dk.FillRate, dk.RateKnown = rate, true
			dk.TimeToFull = timeToFull(free, rate)
		}
		out = append(out, dk)
	}
	return out
}

// observe assesses a round, feeds the machine, publishes the report and, on a
// change, logs it once and calls OnChange.
func (d *Detector) observe(r Round) {
	epoch := d.epoch.Load()
	if promoted(d.lastRole, r.Role, d.primaryEpoch, epoch) {
		// Promoted: what the replica's probes found (its IO thread cut off by the
		// failed primary it replicated from) is no evidence about the primary. Without
		// this a suspect verdict from then took recover_after more rounds (0.75 s),
		// and /primary refused the new primary meanwhile.
		d.machine.Afresh()
	}
	d.lastRole = r.Role
	if r.Role == Primary {
		d.primaryEpoch = epoch
	}
	v, reason := Assess(r)
	// The verdict is known when the round ends, not when it started.
	ch, changed := d.machine.Observe(Observation{At: time.Now(), Verdict: v, Reason: reason, Certain: v != Healthy && Certain(r)})
	cur, why, since := d.machine.Verdict()
	rep := Report{
		Node: d.cfg.Node, Role: r.Role, At: r.At,
		Verdict: cur, Reason: why, Since: since,
		RoundVerdict: v, RoundReason: reason,
		Ping: r.Ping, Write: r.Write, Storage: r.Storage, Replication: r.Replication,
		Disks: r.Disks,
	}
	d.mu.Lock()
	rep.Rounds = d.report.Rounds + 1
	stale := turnedStale(heartbeatLag(d.report), heartbeatLag(rep), d.cfg.StaleAfter)
	d.report = rep
	d.mu.Unlock()
	if stale && d.cfg.OnStale != nil {
		d.cfg.OnStale(rep)
	}
	if !changed {
		return
	}
	fields := []zap.Field{
		zap.Stringer("from", ch.From), zap.Stringer("to", ch.To), zap.String("reason", ch.Reason),
		zap.Duration("lasted", ch.Lasted),
	}
	if r.Write != nil {
		fields = append(fields, zap.Duration("write", r.Write.Latency))
	}
	if r.Ping != nil {
		fields = append(fields, zap.Duration("ping", r.Ping.Latency))
	}
	if ch.To == Healthy || ch.To == Suspect {
		d.log.Info("verdict changed", fields...)
	} else {
		d.log.Warn("verdict changed", fields...)
	}
	if d.cfg.OnChange != nil {
		d.cfg.OnChange(ch, rep)
	}
}
