package bench

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// detectExpect is what a fault should make the detector say.
type detectExpect int

const (
	expectFailure    detectExpect = iota + 1 // unwritable or unreachable
	expectOverloaded                         // alive: overloaded, never a failure
	expectNothing                            // no fault: healthy throughout
)

type benchFault struct {
	fault   sandbox.Fault
	expect  detectExpect
	inverse sandbox.Fault // 0: bring up a fresh cluster, undoing being slow
}

// benchFaults are the faults `baton-lab bench detect` takes, with what each should give
// and how a trial undoes it.
func benchFaults() map[string]benchFault {
	return map[string]benchFault{
		"disk-full":           {sandbox.DiskFull, expectFailure, 0}, // MariaDB resumes up to 60 s after free-disk
		"freeze-writes":       {sandbox.FreezeWrites, expectFailure, sandbox.ThawWrites},
		"stop":                {sandbox.Stop, expectFailure, sandbox.Cont},
		"kill":                {sandbox.Kill, expectFailure, sandbox.Start},
		"cut-network":         {sandbox.CutNetwork, expectFailure, sandbox.HealNetwork},
		"readonly-fs":         {sandbox.ReadonlyFS, expectFailure, 0}, // mariadbd aborts; repair is a restart anyway
		"exhaust-connections": {sandbox.ExhaustConnections, expectOverloaded, sandbox.ReleaseConnections},
		"none":                {0, expectNothing, 0},
	}
}

// DetectFaults are the faults Detect takes, "none" included.
func DetectFaults() []string {
	var kinds []string
	for k := range benchFaults() {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// DetectResult is what the detection benchmark measured: `baton-lab bench detect --json` prints it.
type DetectResult struct {
	Fault  string `json:"fault"`
	Trials int    `json:"trials"`
	// DetectMS is, per trial, the time from the start of the injection to the verdict.
	DetectMS []float64 `json:"detect_ms"`
	P50MS    float64   `json:"p50_ms"`
	MaxMS    float64   `json:"max_ms"`
	// FalsePositives counts unwritable/unreachable verdicts with no failure injected.
	FalsePositives int `json:"false_positives"`
	// Missed counts trials without the expected verdict within 15 s.
	Missed   int       `json:"missed"`
	Verdicts []string  `json:"verdicts,omitempty"`
	InjectMS []float64 `json:"inject_ms,omitempty"` // how long the injection call took
	// Suspects counts changes to suspect while no fault was in place.
	Suspects  int          `json:"suspects"`
	Load      *loadResult  `json:"load,omitempty"`
	ProbeCost probeCost    `json:"probe_cost"`
	Detector  benchTiming  `json:"detector"`
	Machine   benchMachine `json:"machine"`
}

type loadResult struct {
	Seconds     int      `json:"seconds"`
	Threads     int      `json:"threads"`
	TPS         float64  `json:"tps"`
	Changes     []string `json:"verdict_changes"`
	MaxWriteMS  float64  `json:"max_write_probe_ms"`
	SlowRounds  int      `json:"slow_rounds"` // rounds whose write probe missed the deadline
	TotalRounds uint64   `json:"rounds"`
}

type probeCost struct {
	Seconds          float64 `json:"seconds"`
	ServerWritesPerS float64 `json:"server_writes_per_s"`
	CPUPercent       float64 `json:"cpu_percent_of_a_core"`
}

type benchTiming struct {
	IntervalMS int `json:"interval_ms"`
	TimeoutMS  int `json:"timeout_ms"`
	FailAfter  int `json:"fail_after"`
}

type benchMachine struct {
	Date  string `json:"date"`
	CPUs  int    `json:"cpus"`
	MemMB int    `json:"mem_mb"`
}

// DetectConfig is one run of the detection benchmark.
type DetectConfig struct {
	// Fault is injected on the primary; "none" watches for false verdicts instead.
	Fault  string
	Trials int // faults injected, one after the other (1-100)
	// Seconds is how long --fault none watches (1-3600); Load adds sysbench's
	// oltp_write_only at saturation on the primary meanwhile.
	Seconds  int
	Load     bool
	Name     string // sandbox name
	Root     string // sandboxes' state; "" is sandbox.DefaultRoot
	Bin      lab.Binaries
	Progress io.Writer // one line per trial
}

// Validate checks the configuration and names the bad field.
func (cfg DetectConfig) Validate() error {
	spec, ok := benchFaults()[cfg.Fault]
	switch {
	case !ok:
		return fmt.Errorf("fault: unknown fault %q: use one of %s", cfg.Fault, strings.Join(DetectFaults(), ", "))
	case spec.expect != expectNothing && (cfg.Trials < 1 || cfg.Trials > 100):
		return fmt.Errorf("trials: %d: use 1 to 100", cfg.Trials)
	case spec.expect == expectNothing && (cfg.Seconds < 1 || cfg.Seconds > 3600):
		return fmt.Errorf("seconds: %d: use 1 to 3600", cfg.Seconds)
	case cfg.Load && spec.expect != expectNothing:
		return errors.New("load: goes with fault none")
	case cfg.Bin.Baton == "" || cfg.Bin.Lab == "":
		return errors.New("bin: both the baton and the baton-lab executables are required")
	case cfg.Progress == nil:
		return errors.New("progress: a writer is required")
	}
	return nil
}

// Detect brings up a 2-node sandbox, runs the detector with its defaults against the
// primary and measures the time from each fault to the verdict, or, with fault none,
// counts false verdicts. It needs root; it takes the sandbox down when done.
func Detect(ctx context.Context, cfg DetectConfig) (DetectResult, error) {
	if err := cfg.Validate(); err != nil {
		return DetectResult{}, err
	}
	spec := benchFaults()[cfg.Fault]
	if cfg.Load {
		if _, err := exec.LookPath("sysbench"); err != nil {
			return DetectResult{}, errors.New("load: needs sysbench: apt-get install -y sysbench")
		}
	}
	b := &detectBench{name: cfg.Name, root: cfg.Root, bin: cfg.Bin, log: lab.Logger(zap.WarnLevel), progress: cfg.Progress}
	if cfg.Load {
		b.diskMB = 4096 // a minute of saturating writes outgrows the default 256 MB disk
	}
	defer b.down()
	res := DetectResult{
		Fault: cfg.Fault,
		Detector: benchTiming{IntervalMS: int(detector.DefaultInterval / time.Millisecond),
			TimeoutMS: int(detector.DefaultTimeout / time.Millisecond), FailAfter: detector.DefaultFailAfter},
		Machine: machineInfo(),
	}
	if err := b.up(ctx); err != nil {
		return res, err
	}
	var err error
	if res.ProbeCost, err = b.measureCost(ctx, 10*time.Second); err != nil {
		return res, fmt.Errorf("probe cost: %w", err)
	}
	if err := b.startDetector(ctx); err != nil {
		return res, err
	}
	switch {
	case spec.expect == expectNothing:
		err = b.watch(ctx, &res, time.Duration(cfg.Seconds)*time.Second, cfg.Load)
	default:
		err = b.trials(ctx, &res, cfg.Fault, cfg.Trials)
	}
	if err != nil {
		return res, err
	}
	summarise(&res)
	return res, nil
}

// detectBench holds the cluster and the detector under test.
type detectBench struct {
	name, root string
	bin        lab.Binaries
	diskMB     int
	log        *zap.Logger
	progress   io.Writer

	c       *sandbox.Cluster
	det     *detector.Detector
	stopDet func()
	changes chan detector.Change
}

func (b *detectBench) say(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench detect: "+format+"\n", args...)
}

// up brings up a fresh cluster and creates the baton schema on its primary.
func (b *detectBench) up(ctx context.Context) error {
	c, err := sandbox.Up(ctx, sandbox.Spec{Name: b.name, Nodes: 2, Root: b.root, Binary: b.bin.Baton, LabBinary: b.bin.Lab, DiskMB: b.diskMB}, b.log)
	if err != nil {
		return fmt.Errorf("sandbox up: %w", err)
	}
	b.c = c
	db, err := c.RootDB("db1")
	if err != nil {
		return err
	}
	defer db.Close()
	return detector.Bootstrap(ctx, db)
}

// down stops the detector and removes the cluster.
func (b *detectBench) down() {
	if b.stopDet != nil {
		b.stopDet()
		b.stopDet = nil
	}
	if b.c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.c.Down(ctx); err != nil {
			b.say("sandbox down: %v", err)
		}
		b.c = nil
	}
}

// startDetector runs the detector, defaults only, against db1 over TCP from the
// client namespace (so a network cut is a network cut), with db1's datadir.
func (b *detectBench) startDetector(ctx context.Context) error {
	dsn, err := b.c.TCPDSN("db1")
	if err != nil {
		return err
	}
	n, err := b.c.Node("db1")
	if err != nil {
		return err
	}
	b.changes = make(chan detector.Change, 256)
	d, err := detector.New(detector.Config{
		DSN: dsn, Node: "bench", Role: detector.Primary,
		Dial: sandbox.DialContext(b.c.ClientNetNS), Datadir: n.Datadir,
		OnChange: func(ch detector.Change, _ detector.Report) {
			select {
			case b.changes <- ch:
			default: // a bench that stops reading has failed anyway
			}
		},
		Logger: zap.NewNop(), // the bench prints each trial's verdict itself
	})
	if err != nil {
		return err
	}
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(dctx); err != nil {
			b.say("detector: %v", err)
		}
	}()
	b.det = d
	b.stopDet = func() { cancel(); <-done }
	return nil
}

// settle waits until the verdict has been healthy for a while, and returns the
// changes seen meanwhile.
func (b *detectBench) settle(ctx context.Context, quiet, limit time.Duration) ([]detector.Change, error) {
	var seen []detector.Change
	deadline := time.After(limit)
	last := time.Now()
	for {
		if b.det.Report().Verdict == detector.Healthy && time.Since(last) >= quiet {
			return seen, nil
		}
		select {
		case ch := <-b.changes:
			seen = append(seen, ch)
			last = time.Now()
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			rep := b.det.Report()
			return seen, fmt.Errorf("not healthy after %s: %s (%s)", limit, rep.Verdict, rep.Reason)
		case <-ctx.Done():
			return seen, ctx.Err()
		}
	}
}

func countFalse(res *DetectResult, chs []detector.Change) {
	for _, ch := range chs {
		if ch.To.Failed() {
			res.FalsePositives++
		}
		if ch.To == detector.Suspect {
			res.Suspects++
		}
	}
}

func (b *detectBench) trials(ctx context.Context, res *DetectResult, kind string, trials int) error {
	spec := benchFaults()[kind]
	for i := 1; i <= trials; i++ {
		if b.c == nil {
			if err := b.up(ctx); err != nil {
				return err
			}
			if err := b.startDetector(ctx); err != nil {
				return err
			}
		}
		seen, err := b.settle(ctx, 1500*time.Millisecond, 20*time.Second)
		countFalse(res, seen)
		if err != nil {
			return fmt.Errorf("trial %d: before the fault: %w", i, err)
		}
		// settle returns just after a round: without a random delay every trial would
		// hit the same phase of the probe cycle instead of a uniformly random one.
		select {
		case <-time.After(rand.N(detector.DefaultInterval)):
		case <-ctx.Done():
			return ctx.Err()
		}
		start := time.Now()
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = b.c.Fault(fctx, "db1", spec.fault)
		cancel()
		if err != nil {
			return fmt.Errorf("trial %d: inject %s: %w", i, kind, err)
		}
		res.InjectMS = append(res.InjectMS, msSince(start, time.Now()))
		got, err := b.awaitVerdict(ctx, spec.expect, res, 15*time.Second)
		switch {
		case errors.Is(err, errNoVerdict):
			res.Missed++
			b.say("trial %d: no verdict within 15s", i)
		case err != nil:
			return err
		default:
			res.DetectMS = append(res.DetectMS, msSince(start, got.At))
			res.Verdicts = append(res.Verdicts, got.To.String())
			b.say("trial %d: %s after %.0f ms: %s", i, got.To, msSince(start, got.At), got.Reason)
		}
		res.Trials++
		if spec.expect == expectOverloaded {
			// Held for a moment: a failure verdict while overloaded is a false one.
			hold := time.After(2 * time.Second)
		drain:
			for {
				select {
				case ch := <-b.changes:
					if ch.To.Failed() {
						res.FalsePositives++
					}
				case <-hold:
					break drain
				}
			}
		}
		if err := b.undo(ctx, spec.inverse, res); err != nil {
			b.say("trial %d: %v; bringing up a fresh cluster", i, err)
			b.down()
		}
	}
	return nil
}

var errNoVerdict = errors.New("no verdict")

// awaitVerdict waits for the verdict the fault should give. For an alive fault
// (overloaded), failure verdicts on the way count as false positives.
func (b *detectBench) awaitVerdict(ctx context.Context, expect detectExpect, res *DetectResult, limit time.Duration) (detector.Change, error) {
	deadline := time.After(limit)
	for {
		select {
		case ch := <-b.changes:
			switch {
			case expect == expectFailure && ch.To.Failed():
				return ch, nil
			case expect == expectOverloaded && ch.To == detector.Overloaded:
				return ch, nil
			case expect == expectOverloaded && ch.To.Failed():
				res.FalsePositives++
			}
		case <-deadline:
			return detector.Change{}, errNoVerdict
		case <-ctx.Done():
			return detector.Change{}, ctx.Err()
		}
	}
}

// undo reverses a fault and waits for the detector to say healthy again; an error
// means the cluster should be replaced.
func (b *detectBench) undo(ctx context.Context, inverse sandbox.Fault, res *DetectResult) error {
	if inverse == 0 {
		return errors.New("undoing this fault is slow")
	}
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := b.c.Fault(fctx, "db1", inverse)
	cancel()
	if err != nil {
		return fmt.Errorf("undo with %s: %w", inverse, err)
	}
	// Changes during recovery are expected (the failure verdict ends); they do not
	// count as false positives.
	if _, err := b.settle(ctx, 500*time.Millisecond, 20*time.Second); err != nil {
		return fmt.Errorf("after %s: %w", inverse, err)
	}
	return nil
}

// watch runs with no fault for a while, optionally under sysbench write load, and
// counts false verdicts.
func (b *detectBench) watch(ctx context.Context, res *DetectResult, d time.Duration, load bool) error {
	seen, err := b.settle(ctx, 1500*time.Millisecond, 20*time.Second)
	countFalse(res, seen)
	if err != nil {
		return err
	}
	var lr *loadResult
	var sb *sysbench
	startRounds := b.det.Report().Rounds
	if load {
		lr = &loadResult{Seconds: int(d / time.Second), Threads: 8 * runtime.NumCPU()}
		if lr.Threads < 16 {
			lr.Threads = 16
		}
		n, err := b.c.Node("db1")
		if err != nil {
			return err
		}
		sb = &sysbench{socket: n.Socket, threads: lr.Threads}
		b.say("sysbench prepare")
		if err := sb.prepare(ctx, b.c); err != nil {
			return err
		}
		if seen, err = b.settle(ctx, time.Second, 20*time.Second); err != nil {
			return err
		}
		countFalse(res, seen)
		startRounds = b.det.Report().Rounds
		b.say("sysbench oltp_write_only, %d threads, %s", lr.Threads, d)
		if err := sb.start(ctx, d); err != nil {
			return err
		}
	}
	deadline := time.After(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastRound uint64
loop:
	for {
		select {
		case ch := <-b.changes:
			countFalse(res, []detector.Change{ch})
			if lr != nil {
				lr.Changes = append(lr.Changes, fmt.Sprintf("+%.1fs %s: %s", time.Since(sb.started).Seconds(), ch.To, ch.Reason))
			}
		case <-tick.C:
			// Sample the rounds' write latencies (every round is seen at 100 ms sampling
			// of a 250-500 ms round period).
			rep := b.det.Report()
			if lr != nil && rep.Rounds != lastRound && rep.Write != nil {
				lastRound = rep.Rounds
				lr.MaxWriteMS = math.Max(lr.MaxWriteMS, float64(rep.Write.Latency.Microseconds())/1000)
				if rep.Write.Class != detector.OK {
					lr.SlowRounds++
				}
			}
		case <-deadline:
			break loop
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if lr != nil {
		lr.TotalRounds = b.det.Report().Rounds - startRounds
		tps, err := sb.wait()
		if err != nil {
			return err
		}
		lr.TPS = tps
		res.Load = lr
	}
	return nil
}

// measureCost runs `baton probe` against the primary's socket with nothing else
// writing, and measures the server's binlogged writes per second and the process's
// CPU, over window after a warm-up that leaves out start-up and bootstrap.
func (b *detectBench) measureCost(ctx context.Context, window time.Duration) (probeCost, error) {
	const warmup = 2 * time.Second
	dsn, err := b.c.SocketDSN("db1")
	if err != nil {
		return probeCost{}, err
	}
	db, err := b.c.RootDB("db1")
	if err != nil {
		return probeCost{}, err
	}
	defer db.Close()
	cmd := exec.CommandContext(ctx, b.bin.Baton, "probe", "--dsn", dsn, "--for", (warmup + window + 2*time.Second).String())
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return probeCost{}, fmt.Errorf("start baton probe: %w", err)
	}
	defer cmd.Wait() //nolint:errcheck // it exits on its own after --for
	select {
	case <-time.After(warmup):
	case <-ctx.Done():
		return probeCost{}, ctx.Err()
	}
	seq0, err := binlogSeq(ctx, db)
	if err != nil {
		return probeCost{}, err
	}
	cpu0, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return probeCost{}, err
	}
	t0 := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return probeCost{}, ctx.Err()
	}
	seq1, err := binlogSeq(ctx, db)
	if err != nil {
		return probeCost{}, err
	}
	cpu1, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return probeCost{}, err
	}
	el := time.Since(t0)
	return probeCost{
		Seconds:          round1(el.Seconds()),
		ServerWritesPerS: round2(float64(seq1-seq0) / el.Seconds()),
		CPUPercent:       round2(100 * (cpu1 - cpu0).Seconds() / el.Seconds()),
	}, nil
}

// binlogSeq is the sequence number of the server's latest binlogged transaction
// (gtid_binlog_pos of a single-domain server).
func binlogSeq(ctx context.Context, db *sql.DB) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var pos string
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return 0, fmt.Errorf("read gtid_binlog_pos: %w", err)
	}
	var total int64
	for _, g := range strings.Split(pos, ",") {
		f := strings.Split(strings.TrimSpace(g), "-")
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse gtid_binlog_pos %q: %w", pos, err)
		}
		total += n
	}
	return total, nil
}

// procCPU is the user and system CPU time a process has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	// After the name: state, ppid, ... utime is field 14 and stime 15 of the line,
	// 12 and 13 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu of pid %d: short stat line", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read cpu of pid %d: bad stat line", pid)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}

// sysbench drives Debian's sysbench against the primary's socket.
type sysbench struct {
	socket  string
	threads int
	cmd     *exec.Cmd
	out     *strings.Builder
	started time.Time
}

func (s *sysbench) args(cmd string, extra ...string) []string {
	a := []string{"oltp_write_only", "--db-driver=mysql", "--mysql-socket=" + s.socket,
		"--mysql-user=root", "--mysql-db=sbtest", "--tables=4", "--table-size=10000"}
	return append(append(a, extra...), cmd)
}

func (s *sysbench) prepare(ctx context.Context, c *sandbox.Cluster) error {
	db, err := c.RootDB("db1")
	if err != nil {
		return err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := db.ExecContext(qctx, "CREATE DATABASE IF NOT EXISTS sbtest"); err != nil {
		return fmt.Errorf("create sbtest: %w", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer pcancel()
	out, err := exec.CommandContext(pctx, "sysbench", s.args("prepare", "--threads=4")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysbench prepare: %w: %s", err, lastLines(string(out), 5))
	}
	return nil
}

func (s *sysbench) start(ctx context.Context, d time.Duration) error {
	s.out = &strings.Builder{}
	s.cmd = exec.CommandContext(ctx, "sysbench", s.args("run",
		fmt.Sprintf("--threads=%d", s.threads), fmt.Sprintf("--time=%d", int(d/time.Second)),
		"--report-interval=10", "--db-ps-mode=disable")...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("sysbench run: %w", err)
	}
	return nil
}

func (s *sysbench) wait() (float64, error) {
	if err := s.cmd.Wait(); err != nil {
		return 0, fmt.Errorf("sysbench run: %w: %s", err, lastLines(s.out.String(), 5))
	}
	m := regexp.MustCompile(`transactions:\s+\d+\s+\(([\d.]+) per sec\.\)`).FindStringSubmatch(s.out.String())
	if m == nil {
		return 0, fmt.Errorf("sysbench run: no transaction rate in its output: %s", lastLines(s.out.String(), 5))
	}
	return strconv.ParseFloat(m[1], 64)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func msSince(start, at time.Time) float64 {
	return round1(float64(at.Sub(start).Microseconds()) / 1000)
}
func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round2(v float64) float64 { return math.Round(v*100) / 100 }

// summarise fills the percentiles: p50 is the median (the middle trial of five).
func summarise(res *DetectResult) {
	if len(res.DetectMS) == 0 {
		return
	}
	s := append([]float64(nil), res.DetectMS...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		res.P50MS = s[n/2]
	} else {
		res.P50MS = round1((s[n/2-1] + s[n/2]) / 2)
	}
	res.MaxMS = s[n-1]
}

func machineInfo() benchMachine {
	m := benchMachine{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU()}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			m.MemMB = kb / 1024
			break
		}
	}
	return m
}

// PrintDetect writes a result as one JSON object, or as lines for a person.
func PrintDetect(w io.Writer, res DetectResult, asJSON bool) error {
	if asJSON {
		if res.DetectMS == nil {
			res.DetectMS = []float64{}
		}
		enc := json.NewEncoder(w)
		return enc.Encode(res)
	}
	if res.Fault == "none" {
		fmt.Fprintf(w, "no fault: %d false positives, %d suspect verdicts\n", res.FalsePositives, res.Suspects)
		if l := res.Load; l != nil {
			fmt.Fprintf(w, "load: sysbench oltp_write_only %d threads for %d s, %.0f tps; %d of %d rounds with a write probe over the deadline, slowest write probe %.0f ms\n",
				l.Threads, l.Seconds, l.TPS, l.SlowRounds, l.TotalRounds, l.MaxWriteMS)
			for _, c := range l.Changes {
				fmt.Fprintf(w, "  %s\n", c)
			}
		}
	} else {
		fmt.Fprintf(w, "fault %s: %d trials, verdict after p50 %.0f ms, max %.0f ms %v; %d missed, %d false positives\n",
			res.Fault, res.Trials, res.P50MS, res.MaxMS, res.DetectMS, res.Missed, res.FalsePositives)
	}
	fmt.Fprintf(w, "probe cost: %.2f writes/s on the server, %.2f%% of a core (baton probe over %.0f s)\n",
		res.ProbeCost.ServerWritesPerS, res.ProbeCost.CPUPercent, res.ProbeCost.Seconds)
	return nil
}
