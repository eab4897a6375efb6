package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox"
)

// env is the campaign's cluster and what watches it: a writer through the virtual
// IP, a monitor writing to every server, and a poller of the primary of record.
type env struct {
	c     *sandbox.Cluster
	store *cluster.Store
	done  func() // takes the cluster down
	w     *sandbox.Writer
	mon   *sandbox.SplitBrainMonitor
	dbs   map[string]*sql.DB // root, over each node's socket
	node  map[uint32]string  // server_id -> node

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	epochs []Epoch
	snap   cluster.Snapshot // the latest read, for targets when etcd is down
	// For the forgetting invariant (binlog.go): every change of each node's
	// gtid_binlog_state, the last read of each, and what accounts for a GTID
	// leaving one.
	binlog     []BinlogState
	lastBinlog map[string]BinlogState
	forgets    []Forget
	starts     []ServerStart
	real       []RealGTID
	realSeen   map[string]bool
	rejoinSeen map[string]bool
	lookedUp   map[string]bool
	notes      []string // what the watchers have to say, for the round's log
}

func newEnv(c *sandbox.Cluster) *env {
	return &env{c: c, dbs: map[string]*sql.DB{}, node: map[uint32]string{}, lastBinlog: map[string]BinlogState{},
		realSeen: map[string]bool{}, rejoinSeen: map[string]bool{}, lookedUp: map[string]bool{}}
}

// note keeps a line for the round's log.
func (e *env) note(line string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notes = append(e.notes, line)
}

// takeNotes returns the lines kept since the last call.
func (e *env) takeNotes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.notes
	e.notes = nil
	return out
}

// pollEpochs reads the primary of record every 100 ms and records each new epoch
// when first seen; with it, the agents' findings of real errant transactions, and
// every 500 ms the history's rejoin events. Polling (not a watch) rides through
// etcd outages unchanged.
func (e *env) pollEpochs(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		snap, err := e.store.Load(lctx)
		cancel()
		if err == nil {
			e.noteSnapshot(snap, time.Now())
		}
		if i%5 == 0 {
			hctx, cancel := context.WithTimeout(ctx, time.Second)
			events, herr := e.store.History(hctx, 20)
			cancel()
			if herr == nil {
				e.noteHistory(events)
			}
		}
		if err == nil {
			e.mu.Lock()
			e.snap = snap
			if p := snap.Primary; p.Node != "" && (len(e.epochs) == 0 || e.epochs[len(e.epochs)-1].Epoch != p.Epoch) {
				e.epochs = append(e.epochs, Epoch{Epoch: p.Epoch, Node: p.Node, At: time.Now()})
			}
			e.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *env) epochList() []Epoch {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.epochs)
}

func (e *env) lastSnapshot() cluster.Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.snap
}

func (e *env) close() {
	if e.cancel != nil {
		e.cancel()
	}
	e.wg.Wait()
	if e.w != nil {
		e.w.Stop()
	}
	if e.mon != nil {
		e.mon.Stop()
	}
	for _, db := range e.dbs {
		db.Close()
	}
	if e.done != nil {
		e.done()
	}
}

// writes returns the writer's and the monitor's acknowledged writes sent at or after
// from.
func (e *env) writes(from time.Time) []Write {
	var out []Write
	for _, a := range e.w.Acks() {
		if !a.Sent.Before(from) {
			out = append(out, Write{Node: e.node[a.ServerID], Seq: a.Seq, Sent: a.Sent, At: a.At, Writer: true})
		}
	}
	for _, a := range e.mon.Accepts() {
		if !a.Sent.Before(from) {
			out = append(out, Write{Node: a.Node, Sent: a.Sent, At: a.At})
		}
	}
	return out
}

// firstAckSent is when the writer's first write sent at or after t was
// acknowledged.
func (e *env) firstAckSent(t time.Time) (time.Time, bool) {
	for _, a := range e.w.Acks() {
		if !a.Sent.Before(t) {
			return a.At, true
		}
	}
	return time.Time{}, false
}

// observe reads the cluster as it is: etcd, every server (1 s each at most) and the
// virtual IP's holders.
func (e *env) observe(ctx context.Context) (Cluster, cluster.Snapshot) {
	out := Cluster{Nodes: map[string]NodeState{}}
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	snap, err := e.store.Load(lctx)
	cancel()
	if err == nil {
		out.EtcdOK, out.Primary, out.Epoch, out.Leader = true, snap.Primary.Node, snap.Primary.Epoch, snap.Leader
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	holders, _ := e.c.VIPHolders(vctx)
	cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range e.c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := NodeState{Name: n.Name, Addr: n.IP, VIP: slices.Contains(holders, n.Name)}
			if rec, ok := snap.Nodes[n.Name]; ok {
				st.Role, st.Verdict, st.Reason, st.Errant, st.LagMS = rec.Role, rec.Verdict, rec.Reason, rec.Errant, rec.LagMS
			}
			readServer(ctx, e.dbs[n.Name], &st)
			mu.Lock()
			out.Nodes[n.Name] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, snap
}

// readServer reads read_only and the replication source of one server.
func readServer(ctx context.Context, db *sql.DB, st *NodeState) {
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var ro int
	if err := db.QueryRowContext(qctx, "SELECT @@read_only").Scan(&ro); err != nil {
		return
	}
	rows, err := db.QueryContext(qctx, "SHOW SLAVE STATUS")
	if err != nil {
		return
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return
	}
	if rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return
		}
		for i, c := range cols {
			switch c {
			case "Master_Host":
				st.Source = string(vals[i])
			case "Slave_IO_Running":
				st.IO = string(vals[i]) == "Yes"
			case "Slave_SQL_Running":
				st.SQL = string(vals[i]) == "Yes"
			}
		}
	}
	if rows.Err() != nil {
		return
	}
	st.Reachable, st.ReadOnly = true, ro == 1
}

// durability reads the writer's rows on the primary of record and on every healthy
// replica (waiting up to 10 s for a replica to catch up) and records what is missing.
func (e *env) durability(ctx context.Context, c *Cluster) {
	for name, st := range c.Nodes {
		if !st.Reachable || (name != c.Primary && (st.Role != "replica" || !st.IO || !st.SQL)) {
			continue
		}
		limit := 10 * time.Second
		if name == c.Primary {
			limit = time.Second
		}
		deadline := time.Now().Add(limit)
		for {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			lost, err := e.w.Lost(qctx, e.dbs[name])
			cancel()
			if err == nil {
				st.Checked, st.Missing = true, lost
			}
			if (err == nil && len(lost) == 0) || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		c.Nodes[name] = st
	}
}

// describe is a cluster in one line, for the round's log.
func describe(c Cluster) string {
	var b strings.Builder
	fmt.Fprintf(&b, "etcd %t primary %s@%d leader %s;", c.EtcdOK, c.Primary, c.Epoch, c.Leader)
	for _, n := range c.sorted() {
		fmt.Fprintf(&b, " %s[%s ro=%t src=%s io=%t sql=%t vip=%t reach=%t %s]", n.Name, n.Role, n.ReadOnly, n.Source, n.IO, n.SQL, n.VIP, n.Reachable,
			strings.TrimSpace(n.Reason+" "+n.Errant))
	}
	return b.String()
}
