package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// SalvageConfig is one run of the salvage benchmark.
type SalvageConfig struct {
	// Txns are the numbers of transactions the primary alone acknowledges before
	// its mysqld dies, one trial size each.
	Txns   []int
	Trials int // per size, each on a fresh cluster
	Name   string
	// SyncFree sets innodb_flush_log_at_trx_commit = 0 on every node, as a disk
	// whose sync costs nothing would be: a commit no longer waits for its redo
	// log to reach the disk, so the apply's time is Baton's own part of it. A lab
	// setting only: Baton never changes it.
	SyncFree bool
	Bin      lab.Binaries
	Progress io.Writer // one line per trial; nil for none
}

// Validate checks the configuration and names the bad field.
func (cfg SalvageConfig) Validate() error {
	switch {
	case len(cfg.Txns) == 0:
		return errors.New("txns: at least one size")
	case slices.ContainsFunc(cfg.Txns, func(n int) bool { return n < 1 || n > 100000 }):
		return fmt.Errorf("txns: %v: each from 1 to 100000", cfg.Txns)
	case cfg.Trials < 1:
		return fmt.Errorf("trials: %d: at least 1", cfg.Trials)
	case cfg.Name == "":
		return errors.New("name: a sandbox name is required")
	case cfg.Bin.Baton == "" || cfg.Bin.Lab == "":
		return errors.New("bin: both the baton and the baton-lab executables are required")
	}
	return nil
}

// SalvageTrial is one failover with salvage: what the primary alone had, what the
// salvage step applied to the new primary, and how long it held the failover.
type SalvageTrial struct {
	Txns int `json:"txns"` // written and acknowledged by the primary alone
	// Salvaged counts the transactions the step applied (Baton's own heartbeat
	// writes among them).
	Salvaged int `json:"salvaged"`
	// SalvageMS is the step's time, what salvage adds to the failover; ReadMS the
	// old primary's agent's read of its binary logs, ApplyMS the new primary's
	// apply.
	SalvageMS  int64 `json:"salvage_ms"`
	ReadMS     int64 `json:"read_ms"`
	ApplyMS    int64 `json:"apply_ms"`
	FailoverMS int64 `json:"failover_ms"` // the whole flow, from its start to its history event
	// CommitMS is how long the primary took to commit the n transactions from one
	// session: what one commit each costs on this machine, which the apply repeats.
	CommitMS int64 `json:"commit_ms"`
	// Lost counts the acknowledged transactions not on the new primary.
	Lost       int    `json:"lost"`
	LeftBehind string `json:"left_behind,omitempty"`
	NewPrimary string `json:"new_primary"`
}

// SalvageResult is what `baton-lab bench salvage --json` prints.
type SalvageResult struct {
	// TimeoutMS is timings.salvage_timeout: no step may take longer.
	TimeoutMS int64 `json:"timeout_ms"`
	// SyncFree says the trials ran with innodb_flush_log_at_trx_commit = 0.
	SyncFree bool           `json:"sync_free,omitempty"`
	Trials   []SalvageTrial `json:"trials"`
	// OverTimeout counts the steps that took longer than TimeoutMS.
	OverTimeout int      `json:"over_timeout"`
	Errors      []string `json:"errors,omitempty"`
}

// Salvage runs the trials: each brings up a fresh 3-node cluster with agents,
// asynchronous replication and a virtual IP, holds both replicas behind (their IO
// threads stopped), commits n transactions on the primary, kills its mysqld (its
// agent stays) and lets the replicas go; the failover salvages what only the dead
// primary had. It reads the salvage step's time and record from the history, and
// checks that every one of the n transactions is on the new primary. It needs
// root.
func Salvage(ctx context.Context, cfg SalvageConfig) (SalvageResult, error) {
	if err := cfg.Validate(); err != nil {
		return SalvageResult{}, err
	}
	res := SalvageResult{TimeoutMS: failover.DefaultSalvageTimeout.Milliseconds(), SyncFree: cfg.SyncFree}
	say := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format, args...)
		}
	}
	for _, n := range cfg.Txns {
		for i := 0; i < cfg.Trials && ctx.Err() == nil; i++ {
			tr, err := salvageTrial(ctx, cfg.Name, cfg.Bin, n, cfg.SyncFree)
			if err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("%d transactions, trial %d: %v", n, i+1, err))
				say("%d transactions, trial %d: %v\n", n, i+1, err)
				continue
			}
			if tr.SalvageMS > res.TimeoutMS {
				res.OverTimeout++
			}
			res.Trials = append(res.Trials, tr)
			say("%d transactions (committed in %d ms): salvaged %d in %d ms (read %d ms, apply %d ms), failover %d ms, %d lost%s\n",
				n, tr.CommitMS, tr.Salvaged, tr.SalvageMS, tr.ReadMS, tr.ApplyMS, tr.FailoverMS, tr.Lost, leftSuffix(tr.LeftBehind))
		}
	}
	return res, nil
}

func leftSuffix(s string) string {
	if s == "" {
		return ""
	}
	return "; left behind: " + s
}

func salvageTrial(ctx context.Context, name string, bin lab.Binaries, n int, syncFree bool) (SalvageTrial, error) {
	tr := SalvageTrial{Txns: n}
	c, store, done, err := benchClusterSpec(ctx, sandbox.Spec{Name: name, Nodes: 3, SemiSync: false, WithAgents: true, VIP: true,
		EtcdMembers: 1, Binary: bin.Baton, LabBinary: bin.Lab})
	if err != nil {
		return tr, err
	}
	defer done()
	snap, err := store.Load(ctx)
	if err != nil {
		return tr, err
	}
	old := snap.Primary.Node
	var replicas []string
	for _, node := range c.Nodes {
		if node.Name != old {
			replicas = append(replicas, node.Name)
		}
	}
	if err := lab.Until(ctx, 30*time.Second, func() bool {
		s, err := store.Load(ctx)
		if err != nil {
			return false
		}
		for _, r := range replicas {
			if st := s.Nodes[r]; st.Role != cluster.RoleReplica || !st.IORunning || !st.SQLRunning {
				return false
			}
		}
		return true
	}); err != nil {
		return tr, fmt.Errorf("replicas not replicating: %w", err)
	}
	if syncFree {
		for _, node := range c.Nodes {
			if err := rootExec(ctx, c, node.Name, "SET GLOBAL innodb_flush_log_at_trx_commit = 0"); err != nil {
				return tr, err
			}
		}
	}
	release, err := c.HoldBehind(ctx, replicas...)
	if err != nil {
		return tr, err
	}
	defer release()
	db, err := c.RootDB(old)
	if err != nil {
		return tr, err
	}
	defer db.Close()
	marker := fmt.Sprintf("salvage-bench-%d", time.Now().UnixNano())
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := db.Conn(wctx)
	if err != nil {
		return tr, err
	}
	began := time.Now()
	for i := range n {
		// One transaction each, as many applications commit.
		if _, err := conn.ExecContext(wctx, "INSERT INTO sandbox.t (v) VALUES (?)", fmt.Sprintf("%s-%d", marker, i)); err != nil {
			conn.Close()
			return tr, fmt.Errorf("write %d: %w", i, err)
		}
	}
	tr.CommitMS = time.Since(began).Milliseconds()
	conn.Close()
	if err := c.Fault(ctx, old, sandbox.Kill); err != nil {
		return tr, err
	}
	release()
	var ev *cluster.Event
	if err := lab.Until(ctx, 60*time.Second, func() bool {
		hist, err := store.History(ctx, 5)
		if err != nil {
			return false
		}
		for _, e := range hist {
			if e.Kind == cluster.EventFailover && e.From == old {
				ev = &e
				return true
			}
		}
		return false
	}); err != nil {
		return tr, fmt.Errorf("no failover away from %s: %w", old, err)
	}
	tr.NewPrimary, tr.FailoverMS = ev.To, ev.Took.Milliseconds()
	for _, st := range ev.Steps {
		if st.Name == "salvage" {
			tr.SalvageMS = st.Took.Milliseconds()
		}
	}
	if s := ev.Salvage; s != nil {
		tr.Salvaged, tr.LeftBehind, tr.ReadMS, tr.ApplyMS = s.Applied, s.LeftBehind, s.Read.Milliseconds(), s.Apply.Milliseconds()
	}
	ndb, err := c.RootDB(ev.To)
	if err != nil {
		return tr, err
	}
	defer ndb.Close()
	qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
	defer qcancel()
	var have int
	if err := ndb.QueryRowContext(qctx, "SELECT COUNT(*) FROM sandbox.t WHERE v LIKE ?", marker+"-%").Scan(&have); err != nil {
		return tr, fmt.Errorf("count on %s: %w", ev.To, err)
	}
	tr.Lost = n - have
	return tr, nil
}

// rootExec runs one statement as root on a node, within 5 s.
func rootExec(ctx context.Context, c *sandbox.Cluster, node, stmt string) error {
	db, err := c.RootDB(node)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("%s on %s: %w", stmt, node, err)
	}
	return nil
}
