package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/go-sql-driver/mysql"
)

// RebuildConfig is one run of the rebuild benchmark.
type RebuildConfig struct {
	// SizeMiB is the dataset loaded on the primary before the rebuild.
	SizeMiB int
	// MaxRate is the donors' rebuild.max_rate ("64MiB"); "" the agents' default.
	MaxRate string
	// Baseline is how long the primary's write latency is measured before the
	// rebuild.
	Baseline time.Duration
	Name     string // sandbox name
	Bin      lab.Binaries
	Progress io.Writer // may be nil
}

// Validate checks the configuration and names the bad field.
func (cfg RebuildConfig) Validate() error {
	switch {
	case cfg.SizeMiB < 16 || cfg.SizeMiB > 64<<10:
		return fmt.Errorf("size: %d MiB: from 16 MiB to 64 GiB", cfg.SizeMiB)
	case cfg.Baseline < 5*time.Second:
		return fmt.Errorf("baseline: %s: at least 5s", cfg.Baseline)
	case cfg.Name == "":
		return errors.New("name: a sandbox name is required")
	case cfg.Bin.Baton == "" || cfg.Bin.Lab == "":
		return errors.New("bin: both the baton and the baton-lab executables are required")
	}
	return nil
}

// Latency sums up write latencies, in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// Refused counts writes the server refused (read_only).
	Refused int `json:"refused"`
}

// RebuildResult is what the rebuild benchmark measured: `baton-lab bench rebuild
// --json` prints it.
type RebuildResult struct {
	DatasetBytes int64  `json:"dataset_bytes"` // the loaded table's data and indexes, on the primary
	MaxRate      string `json:"max_rate"`
	Donor        string `json:"donor"`
	Node         string `json:"node"`
	// StreamBytes is what the donor's stream brought; TookMS the whole rebuild, from
	// the request taken up to the node following the primary.
	StreamBytes int64 `json:"stream_bytes"`
	TookMS      int64 `json:"took_ms"`
	// StepsMS are the rebuild's steps as its history event has them.
	StepsMS map[string]int64 `json:"steps_ms"`
	// ServerDownMS is how long the node's server was down: stop, swap and start.
	ServerDownMS int64   `json:"server_down_ms"`
	StreamMiBs   float64 `json:"stream_mib_per_s"`
	// The primary's write latency, a writer through the virtual IP (a write every
	// 20 ms, semi-sync: each waits for a replica's acknowledgement), before the
	// rebuild and while it ran; and the donor's replication lag (the age of the
	// newest write it applied), most seen.
	WritesBefore     Latency `json:"primary_writes_before"`
	WritesDuring     Latency `json:"primary_writes_during"`
	DonorLagMaxMSBef int64   `json:"donor_lag_max_ms_before"`
	DonorLagMaxMSDur int64   `json:"donor_lag_max_ms_during"`
	// SameData: the rebuilt node's checksums of the dataset equal the primary's
	// once it caught up.
	SameData bool   `json:"same_data"`
	Kept     string `json:"kept"`
	Machine  string `json:"machine"`
}

// Rebuild brings up a 3-node cluster with agents, semi-sync and a virtual IP (the
// rejoin mode manual: only the benchmark's request rebuilds), loads a dataset of
// cfg.SizeMiB on the primary, measures the primary's write latency for
// cfg.Baseline, then has db3 rebuilt from db2 by an operator's request, measuring
// the same while it runs, and checks the rebuilt node's data.
func Rebuild(ctx context.Context, cfg RebuildConfig) (res RebuildResult, err error) {
	res = RebuildResult{MaxRate: cfg.MaxRate, Donor: "db2", Node: "db3", Machine: machine(), StepsMS: map[string]int64{}}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if res.MaxRate == "" {
		res.MaxRate = "default (64MiB)"
	}
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "rebuild: "+format+"\n", args...)
		}
	}
	// The disk holds the dataset, its binary log, the relay logs while a replica
	// applies it, the copy and the old datadir, kept.
	diskMB := max(1024, cfg.SizeMiB*5+1024)
	c, store, done, err := benchClusterSpec(ctx, sandbox.Spec{Name: cfg.Name, Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, EtcdMembers: 1,
		ManualRejoin: true, RebuildMaxRate: cfg.MaxRate, DiskMB: diskMB, Binary: cfg.Bin.Baton, LabBinary: cfg.Bin.Lab})
	if err != nil {
		return res, err
	}
	defer done()
	defer func() {
		// The sandbox goes with done: what went wrong is kept first.
		if err != nil {
			err = fmt.Errorf("%w; %s; logs kept in %s", err, lastEvents(context.WithoutCancel(ctx), store), keepLogs(c))
		}
	}()
	// The bulk load holds the primary's commits (and its agent's write probe) behind
	// multi-MiB semi-sync transactions long enough for its detector to call it
	// unwritable, and a failover would spoil what is measured: automatic failover is
	// paused while the dataset goes in and resumed before the baseline.
	if err := setPaused(ctx, store, true); err != nil {
		return res, err
	}
	say("loading %d MiB on db1 (automatic failover paused)", cfg.SizeMiB)
	if err := loadDataset(ctx, c, cfg.SizeMiB); err != nil {
		return res, err
	}
	primary, err := slowDB(c, "db1")
	if err != nil {
		return res, err
	}
	defer primary.Close()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = primary.QueryRowContext(qctx, "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench' AND TABLE_NAME = 'blob'").Scan(&res.DatasetBytes)
	cancel()
	if err != nil {
		return res, err
	}
	say("waiting for the replicas to apply it")
	var pos string
	qctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	err = primary.QueryRowContext(qctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos)
	cancel()
	if err != nil {
		return res, err
	}
	for _, n := range []string{"db2", "db3"} {
		db, err := slowDB(c, n)
		if err != nil {
			return res, err
		}
		wctx, cancel := context.WithTimeout(ctx, 31*time.Minute)
		var got int
		err = db.QueryRowContext(wctx, "SELECT MASTER_GTID_WAIT(?, 1800)", pos).Scan(&got)
		cancel()
		db.Close()
		if err != nil || got != 0 {
			return res, fmt.Errorf("%s did not apply the dataset (%d): %v", n, got, err)
		}
	}
	if err := lab.Until(ctx, time.Minute, func() bool {
		snap, err := store.Load(ctx)
		return err == nil && snap.Nodes["db2"].CanDonate && snap.Nodes["db3"].CanRebuild
	}); err != nil {
		return res, fmt.Errorf("db2 gives no backup, or db3 cannot be rebuilt: %w", err)
	}

	if err := lab.Until(ctx, time.Minute, func() bool {
		snap, err := store.Load(ctx)
		return err == nil && snap.Nodes["db1"].Verdict == detector.Healthy
	}); err != nil {
		return res, fmt.Errorf("db1 not healthy after the load: %w", err)
	}
	if err := setPaused(ctx, store, false); err != nil {
		return res, err
	}
	w := c.NewWriter(20*time.Millisecond, 2*time.Second)
	w.Start(ctx)
	defer w.Stop()
	donorDB, err := c.RootDB("db2")
	if err != nil {
		return res, err
	}
	defer donorDB.Close()
	lagStop := make(chan struct{})
	lags := make(chan [2]int64, 1)
	var rebuilding atomic.Bool
	go func() {
		// The donor's lag: how old the newest write it applied is (the writer writes
		// every 20 ms), most seen before and during the rebuild.
		var before, during int64
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-lagStop:
				lags <- [2]int64{before, during}
				return
			case <-t.C:
				qctx, cancel := context.WithTimeout(ctx, time.Second)
				var us sql.NullInt64
				err := donorDB.QueryRowContext(qctx, "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(at), NOW(6)) FROM sandbox.writes").Scan(&us)
				cancel()
				if err != nil || !us.Valid {
					continue
				}
				if ms := us.Int64 / 1000; rebuilding.Load() {
					during = max(during, ms)
				} else {
					before = max(before, ms)
				}
			}
		}
	}()
	say("baseline: the primary's writes for %s", cfg.Baseline)
	baseFrom := time.Now()
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(cfg.Baseline):
	}
	baseTo := time.Now()
	// The figures compare a quiet cluster with the same cluster during the rebuild:
	// a failover meanwhile spoils them, and db2 would no longer be a replica.
	if snap, err := store.Load(ctx); err != nil || snap.Primary.Node != "db1" {
		return res, fmt.Errorf("db1 is no longer the primary of record before the rebuild (%v)", err)
	}
	req := cluster.RebuildRequest{ID: "bench-" + time.Now().UTC().Format("20060102T150405"), Node: "db3", From: "db2", By: "bench", At: time.Now().UTC()}
	rebuildAt := time.Now()
	rebuilding.Store(true)
	if err := store.PutRebuild(ctx, req); err != nil {
		return res, err
	}
	say("rebuilding db3 from db2")
	var final *cluster.RebuildRequest
	if err := lab.Until(ctx, 2*time.Hour, func() bool {
		cur, _, err := store.RebuildRequestRev(ctx, "db3")
		if err == nil && cur != nil && cur.ID == req.ID && !cur.Open() {
			final = cur
			return true
		}
		return false
	}); err != nil {
		return res, fmt.Errorf("the rebuild did not end: %w", err)
	}
	rebuildEnd := time.Now()
	close(lagStop)
	l := <-lags
	res.DonorLagMaxMSBef, res.DonorLagMaxMSDur = l[0], l[1]
	w.Stop()
	if final.State != cluster.RequestDone || final.Result == nil {
		return res, fmt.Errorf("the rebuild %s: %s", final.State, final.Error)
	}
	ev := final.Result
	res.StreamBytes, res.TookMS, res.Kept = ev.Bytes, ev.Took.Milliseconds(), ev.Kept
	for _, s := range ev.Steps {
		res.StepsMS[s.Name] += s.Took.Milliseconds()
		switch s.Name {
		case string(cluster.RebuildStop), string(cluster.RebuildSwap), string(cluster.RebuildStart):
			res.ServerDownMS += s.Took.Milliseconds()
		}
	}
	if ms := res.StepsMS[string(cluster.RebuildStream)]; ms > 0 {
		res.StreamMiBs = float64(res.StreamBytes) / (1 << 20) / (float64(ms) / 1000)
	}
	res.WritesBefore = latencies(w, baseFrom, baseTo)
	res.WritesDuring = latencies(w, rebuildAt, rebuildEnd)
	say("rebuilt in %s; checking db3's data", ev.Took.Round(time.Second))
	res.SameData, err = sameChecksum(ctx, c, "db1", "db3", "bench.blob")
	return res, err
}

// slowDB opens root's pool to a node over its socket without the sandbox pools'
// 10 s read deadline: loading, waiting for and checksumming a large dataset take
// longer. Each statement's context bounds it.
func slowDB(c *sandbox.Cluster, node string) (*sql.DB, error) {
	n, err := c.Node(node)
	if err != nil {
		return nil, err
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.Timeout = "root", "unix", n.Socket, 5*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2)
	return db, nil
}

// loadDataset fills bench.blob on db1 with sizeMiB of random rows (1 KiB each,
// incompressible, as a real datadir's pages mostly are), 4 MiB a transaction: short
// enough that the agents' write probes, committing between them, stay healthy.
func loadDataset(ctx context.Context, c *sandbox.Cluster, sizeMiB int) error {
	db, err := slowDB(c, "db1")
	if err != nil {
		return err
	}
	defer db.Close()
	stmts := []string{"CREATE DATABASE IF NOT EXISTS bench",
		"CREATE TABLE IF NOT EXISTS bench.blob (id BIGINT AUTO_INCREMENT PRIMARY KEY, pad VARBINARY(1024) NOT NULL) ENGINE=InnoDB"}
	for i := 0; i < sizeMiB/4; i++ {
		stmts = append(stmts, "INSERT INTO bench.blob (pad) SELECT RANDOM_BYTES(1024) FROM bench.seq_1_to_4096")
	}
	for _, q := range stmts {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, err := db.ExecContext(qctx, q)
		cancel()
		if err != nil {
			return fmt.Errorf("load the dataset: %w", err)
		}
	}
	return nil
}

// setPaused pauses or resumes the cluster's automatic failover, as baton pause and
// baton resume do.
func setPaused(ctx context.Context, store *cluster.Store, paused bool) error {
	snap, err := store.Load(ctx)
	if err != nil {
		return err
	}
	st := snap.Settings
	st.Paused, st.PausedBy, st.PausedAt = paused, "", time.Time{}
	if paused {
		st.PausedBy, st.PausedAt = "bench rebuild", time.Now().UTC()
	}
	return store.PutSettings(ctx, st)
}

// lastEvents says what the cluster's history holds last, for an error.
func lastEvents(ctx context.Context, store *cluster.Store) string {
	hist, err := store.History(ctx, 5)
	if err != nil {
		return "history: " + err.Error()
	}
	var out []string
	for _, e := range hist {
		out = append(out, fmt.Sprintf("%s %s -> %s: %s", e.Kind, e.From, e.To, e.Reason))
	}
	return "history: " + strings.Join(out, "; ")
}

// keepLogs copies the servers' and agents' logs out of the sandbox, which is torn
// down when the run ends, and returns the directory.
func keepLogs(c *sandbox.Cluster) string {
	dir, err := os.MkdirTemp("", "rebuild-bench-logs-")
	if err != nil {
		return "nowhere: " + err.Error()
	}
	for _, n := range c.Nodes {
		for _, f := range []string{n.ErrorLog, n.AgentLog} {
			if b, err := os.ReadFile(f); err == nil {
				_ = os.WriteFile(filepath.Join(dir, n.Name+"-"+filepath.Base(f)), b, 0o644)
			}
		}
	}
	return dir
}

// ParseMiB reads a size with its unit (256MiB, 1GiB) as whole MiB.
func ParseMiB(s string) (int, error) {
	s = strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		mul    int
	}{{"MiB", 1}, {"GiB", 1 << 10}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.Atoi(num)
			if err != nil || n <= 0 {
				break
			}
			return n * u.mul, nil
		}
	}
	return 0, fmt.Errorf("%q: want a whole number of MiB or GiB, e.g. 1GiB or 256MiB", s)
}

// latencies sums up the writer's writes sent between from and to.
func latencies(w *sandbox.Writer, from, to time.Time) Latency {
	var ms []float64
	for _, a := range w.Acks() {
		if a.Sent.After(from) && a.Sent.Before(to) {
			ms = append(ms, float64(a.At.Sub(a.Sent).Microseconds())/1000)
		}
	}
	l := Latency{N: len(ms), P50: -1, P99: -1, Max: -1, Refused: w.RefusedBetween(from, to)}
	if len(ms) == 0 {
		return l
	}
	slices.Sort(ms)
	at := func(p int) float64 { return ms[max(0, min(len(ms)-1, (len(ms)*p+99)/100-1))] }
	l.P50, l.P99, l.Max = at(50), at(99), ms[len(ms)-1]
	return l
}

// sameChecksum waits (up to a minute) until b's checksum of table equals a's.
func sameChecksum(ctx context.Context, c *sandbox.Cluster, a, b, table string) (bool, error) {
	sum := func(node string) (int64, error) {
		db, err := slowDB(c, node)
		if err != nil {
			return 0, err
		}
		defer db.Close()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		var name string
		var v int64
		err = db.QueryRowContext(qctx, "CHECKSUM TABLE "+table).Scan(&name, &v)
		return v, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		x, err := sum(a)
		if err != nil {
			return false, err
		}
		y, err := sum(b)
		if err != nil {
			return false, err
		}
		if x == y || time.Now().After(deadline) {
			return x == y, nil
		}
		time.Sleep(2 * time.Second)
	}
}

// PrintRebuild writes the result, as JSON or in lines.
func PrintRebuild(w io.Writer, r RebuildResult, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "rebuilt %s from %s: %.1f MiB dataset, %.1f MiB streamed at %.1f MiB/s (max_rate %s), %s in all, its server down %s\n",
		r.Node, r.Donor, float64(r.DatasetBytes)/(1<<20), float64(r.StreamBytes)/(1<<20), r.StreamMiBs, r.MaxRate,
		time.Duration(r.TookMS)*time.Millisecond, time.Duration(r.ServerDownMS)*time.Millisecond)
	fmt.Fprintf(w, "steps (ms): %v\n", r.StepsMS)
	fmt.Fprintf(w, "primary writes before: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d, %d refused)\n", r.WritesBefore.P50, r.WritesBefore.P99, r.WritesBefore.Max, r.WritesBefore.N, r.WritesBefore.Refused)
	fmt.Fprintf(w, "primary writes during: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d, %d refused)\n", r.WritesDuring.P50, r.WritesDuring.P99, r.WritesDuring.Max, r.WritesDuring.N, r.WritesDuring.Refused)
	fmt.Fprintf(w, "donor lag, most: %d ms before, %d ms during; same data after: %v; old datadir kept at %s\n", r.DonorLagMaxMSBef, r.DonorLagMaxMSDur, r.SameData, r.Kept)
	return nil
}
