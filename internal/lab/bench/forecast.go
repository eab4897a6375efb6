package bench

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// ForecastConfig is what `baton-lab bench forecast` measures.
type ForecastConfig struct {
	Bin lab.Binaries
	// Tables is how many tables with an auto-increment key the server holds; Reads
	// how many reads are measured.
	Tables int
	Reads  int
	Log    *zap.Logger
}

// ForecastCost is what one read of the forecasts' slow loop costs, and what that
// makes at the default interval.
type ForecastCost struct {
	Tables int `json:"tables"`
	Reads  int `json:"reads"`
	// Keys is how many auto-increment keys the last read forecast (at most
	// DefaultForecastTables are reported; all are read); Errors the forecasts that
	// could not be made.
	Keys   int      `json:"keys_reported"`
	Errors []string `json:"errors,omitempty"`
	// Per read: the wall time, the CPU of the reading process (the agent's part) and
	// the server's CPU beyond its idle rate.
	ReadMSP50 float64 `json:"read_ms_p50"`
	ReadMSMax float64 `json:"read_ms_max"`
	// The reads that scanned every key (one per detector's key scan period) and
	// those in between, which read the hottest keys alone: their wall time p50.
	FullReads        int     `json:"full_scans"`
	FullReadMSP50    float64 `json:"full_scan_ms_p50"`
	BetweenReadMSP50 float64 `json:"between_read_ms_p50"`
	AgentCPUMS       float64 `json:"agent_cpu_ms_per_read"`
	ServerCPUMS      float64 `json:"server_cpu_ms_per_read"`
	// At the default interval (detector.DefaultForecastInterval), as a share of one
	// core.
	IntervalS         float64      `json:"interval_s"`
	AgentCPUPercent   float64      `json:"agent_cpu_percent_of_a_core"`
	ServerCPUPercent  float64      `json:"server_cpu_percent_of_a_core"`
	ServerIdlePercent float64      `json:"server_idle_cpu_percent_of_a_core"`
	Machine           benchMachine `json:"machine"`
}

// Forecast measures the forecasts' read on a one-node sandbox whose server holds
// cfg.Tables tables with an auto-increment key (every read opens each table's
// definition): cfg.Reads reads back to back, in this process, with the process's and
// the server's CPU read before and after, and the server's idle CPU over as long a
// window before, taken off.
func Forecast(ctx context.Context, cfg ForecastConfig) (ForecastCost, error) {
	res := ForecastCost{Tables: cfg.Tables, Reads: cfg.Reads, IntervalS: detector.DefaultForecastInterval.Seconds(), Machine: machineInfo()}
	if cfg.Tables < 0 || cfg.Tables > 20000 {
		return res, fmt.Errorf("tables: %d: use 0 to 20,000", cfg.Tables)
	}
	if cfg.Reads < 1 || cfg.Reads > 10000 {
		return res, fmt.Errorf("reads: %d: use 1 to 10,000", cfg.Reads)
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	c, err := sandbox.Up(ctx, sandbox.Spec{Name: "fc-bench", Nodes: 1, EtcdMembers: 1, DiskMB: 512,
		Binary: cfg.Bin.Baton, LabBinary: cfg.Bin.Lab}, cfg.Log)
	if err != nil {
		return res, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = c.Down(dctx)
	}()
	db, err := c.RootDB("db1")
	if err != nil {
		return res, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE app"); err != nil {
		return res, fmt.Errorf("create the tables: %w", err)
	}
	for i := range cfg.Tables {
		q := fmt.Sprintf("CREATE TABLE app.t%d (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL, at DATETIME NOT NULL, KEY (at))", i)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return res, fmt.Errorf("create the tables: %w", err)
		}
		if i%2 == 0 {
			if _, err := db.ExecContext(ctx, fmt.Sprintf("INSERT INTO app.t%d (v, at) VALUES ('x', NOW()), ('y', NOW())", i)); err != nil {
				return res, fmt.Errorf("fill the tables: %w", err)
			}
		}
	}
	dsn, err := c.SocketDSN("db1")
	if err != nil {
		return res, err
	}
	// The reads come back to back, but on the forecaster's clock each is one
	// interval after the one before: every key is scanned as often as with the
	// defaults (a full scan, then reads of the hottest keys), and the CPU per read
	// is the average over that cycle.
	virtual := time.Now()
	f, err := detector.NewForecaster(detector.ForecasterConfig{DSN: dsn, Now: func() time.Time { return virtual }})
	if err != nil {
		return res, err
	}
	tick := func() { virtual = virtual.Add(detector.DefaultForecastInterval) }
	server := c.Nodes[0].PID
	// The server idle, as long as the reads will take (measured with a few first):
	// its own background work, taken off what the reads cost it.
	for range 3 {
		f.ReadOnce(ctx)
		tick()
	}
	warm := time.Now()
	f.ReadOnce(ctx)
	tick()
	idleFor := max(5*time.Second, time.Duration(cfg.Reads)*time.Since(warm))
	s0, err := procCPU(server)
	if err != nil {
		return res, err
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(idleFor):
	}
	s1, err := procCPU(server)
	if err != nil {
		return res, err
	}
	idleRate := (s1 - s0).Seconds() / idleFor.Seconds()
	res.ServerIdlePercent = round2(100 * idleRate)

	self0, err := selfCPU()
	if err != nil {
		return res, err
	}
	s0, err = procCPU(server)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	var walls, full, between []float64
	var out []detector.Forecast
	scans := f.Scans()
	for range cfg.Reads {
		start := time.Now()
		out = f.ReadOnce(ctx)
		ms := float64(time.Since(start).Microseconds()) / 1000
		walls = append(walls, ms)
		if n := f.Scans(); n != scans {
			full, scans = append(full, ms), n
		} else {
			between = append(between, ms)
		}
		tick()
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	el := time.Since(t0)
	self1, err := selfCPU()
	if err != nil {
		return res, err
	}
	s1, err = procCPU(server)
	if err != nil {
		return res, err
	}
	for _, fc := range out {
		if fc.Err != "" {
			res.Errors = append(res.Errors, fc.Title()+": "+fc.Err)
		}
		if fc.Resource == detector.ResourceAutoIncrement && fc.Err == "" {
			res.Keys++
		}
	}
	sort.Float64s(walls)
	res.ReadMSP50, res.ReadMSMax = round2(walls[len(walls)/2]), round2(walls[len(walls)-1])
	res.FullReads = len(full)
	if len(full) > 0 {
		sort.Float64s(full)
		res.FullReadMSP50 = round2(full[len(full)/2])
	}
	if len(between) > 0 {
		sort.Float64s(between)
		res.BetweenReadMSP50 = round2(between[len(between)/2])
	}
	n := float64(cfg.Reads)
	res.AgentCPUMS = round2((self1 - self0).Seconds() * 1000 / n)
	serverCPU := max(0, (s1-s0).Seconds()-idleRate*el.Seconds())
	res.ServerCPUMS = round2(serverCPU * 1000 / n)
	res.AgentCPUPercent = round4(100 * res.AgentCPUMS / 1000 / res.IntervalS)
	res.ServerCPUPercent = round4(100 * res.ServerCPUMS / 1000 / res.IntervalS)
	return res, nil
}

// selfCPU is the user and system CPU time this process has used so far.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("read own cpu: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

func round4(x float64) float64 { return math.Round(x*10000) / 10000 }

// String is the result in a sentence.
func (r ForecastCost) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d tables, %d reads (%d full scans, %.1f ms each; %.1f ms in between): %.1f ms a read (max %.1f); per read %.2f ms of the reader's CPU and %.2f ms of the server's; "+
		"every %.0f s that is %.4f %% of a core for the agent and %.4f %% for the server (idle: %.2f %%)",
		r.Tables, r.Reads, r.FullReads, r.FullReadMSP50, r.BetweenReadMSP50, r.ReadMSP50, r.ReadMSMax, r.AgentCPUMS, r.ServerCPUMS, r.IntervalS, r.AgentCPUPercent, r.ServerCPUPercent, r.ServerIdlePercent)
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "; not forecast: %s", strings.Join(r.Errors, "; "))
	}
	return b.String()
}
