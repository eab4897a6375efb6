package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/cluster"
)

// What the campaign reads for the forgetting invariant (forget.go): every node's
// gtid_binlog_state, read apart from the rounds' observations (sampleBinlog), the
// history's rejoin events and the agents' findings of real errant transactions
// (pollEpochs), and, on a node that is not the primary of record, the events of the
// GTIDs nobody else has (lookUpUnique).

// binlogEvery is how often each node's gtid_binlog_state is read.
const binlogEvery = 200 * time.Millisecond

// maxLookups bounds the GTIDs of one node looked up in its binary log at once, and
// maxEventsRead the events read for them.
const (
	maxLookups    = 20
	maxEventsRead = 400000
	eventsPage    = 20000
)

// sampleBinlog reads node's gtid_binlog_state every binlogEvery and records each
// change; a read that fails (a server down, frozen, cut) waits a second before the
// next, so that no more than one read waits on a stuck server at a time.
func (e *env) sampleBinlog(ctx context.Context, node string, db *sql.DB) {
	defer e.wg.Done()
	for {
		qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		var state string
		err := db.QueryRowContext(qctx, "SELECT @@GLOBAL.gtid_binlog_state").Scan(&state)
		cancel()
		wait := binlogEvery
		if err != nil {
			wait = time.Second
		} else {
			e.noteBinlog(BinlogState{Node: node, At: time.Now(), State: state})
			e.lookUpUnique(ctx, node, db, state)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// binlogState reads node's gtid_binlog_state now.
func (e *env) binlogState(ctx context.Context, node string) (string, error) {
	db, ok := e.dbs[node]
	if !ok {
		return "", fmt.Errorf("unknown node %q", node)
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var state string
	if err := db.QueryRowContext(qctx, "SELECT @@GLOBAL.gtid_binlog_state").Scan(&state); err != nil {
		return "", fmt.Errorf("read %s's gtid_binlog_state: %w", node, err)
	}
	return state, nil
}

// noteBinlog records a read when the state changed since the node's last one, with
// when that last one was made.
func (e *env) noteBinlog(s BinlogState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	last, ok := e.lastBinlog[s.Node]
	e.lastBinlog[s.Node] = s
	if ok && last.State == s.State {
		return
	}
	s.Prev = last.At
	e.binlog = append(e.binlog, s)
}

// binlogSince returns the reads recorded since mark (the index returned by the
// previous call), after each node's last read before it, and the next mark: the
// first read after until, so that a departure read after until, left to the next
// round, is judged there.
func (e *env) binlogSince(mark int, until time.Time) ([]BinlogState, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	mark = min(mark, len(e.binlog))
	next := len(e.binlog)
	for next > mark && e.binlog[next-1].At.After(until) {
		next--
	}
	var out []BinlogState
	seen := map[string]bool{}
	for i := mark - 1; i >= 0; i-- {
		if s := e.binlog[i]; !seen[s.Node] {
			seen[s.Node] = true
			out = append(out, s)
		}
	}
	slices.Reverse(out)
	out = append(out, e.binlog[mark:]...)
	return out, next
}

func (e *env) noteForget(f Forget) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forgets = append(e.forgets, f)
}

func (e *env) noteStart(node string, fs bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.starts = append(e.starts, ServerStart{Node: node, At: time.Now(), FS: fs})
}

func (e *env) noteReal(g RealGTID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	key := g.Node + "/" + g.GTID
	if e.realSeen[key] {
		return
	}
	e.realSeen[key] = true
	e.real = append(e.real, g)
}

// accounts returns what accounts for GTIDs leaving a state: the forgets, the
// server starts and the real GTIDs recorded since the cluster came up.
func (e *env) accounts() ([]Forget, []ServerStart, []RealGTID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.forgets), slices.Clone(e.starts), slices.Clone(e.real)
}

// noteSnapshot keeps what a read of etcd says of real errant transactions: the
// agents' records under errant/<node>, and the GTIDs a quarantined node's status
// shows real with their first event.
func (e *env) noteSnapshot(snap cluster.Snapshot, at time.Time) {
	for node, rec := range snap.ErrantRecords {
		for _, g := range rec.Real {
			e.noteReal(RealGTID{Node: node, GTID: g, Source: "errant record", At: at})
		}
	}
	for node, st := range snap.Nodes {
		for _, t := range st.ErrantTxns {
			if t.Kind == "real" && t.First != nil {
				e.noteReal(RealGTID{Node: node, GTID: t.GTID, Source: "status", At: at})
			}
		}
	}
}

// noteHistory keeps the history's rejoin events (newest first, as Store.History
// returns them) as reports of forgotten GTIDs, each once.
func (e *env) noteHistory(events []cluster.Event) {
	for _, ev := range events {
		if ev.Kind != cluster.EventRejoin && ev.Kind != cluster.EventRebuild {
			continue
		}
		key := ev.From + "@" + ev.Started.String()
		e.mu.Lock()
		seen := e.rejoinSeen[key]
		e.rejoinSeen[key] = true
		e.mu.Unlock()
		if seen {
			continue
		}
		if ev.Kind == cluster.EventRebuild {
			// The node's whole state was replaced between the start and the end:
			// accounted for when its old datadir, which holds whatever it had, is kept.
			f := Forget{Node: ev.From, At: ev.Started, Until: ev.Started.Add(ev.Took), By: "rebuild", Discard: ev.Kept != "",
				What: "rebuilt from " + ev.Donor + ", its old datadir kept in " + ev.Kept}
			if ev.Kept == "" {
				f.What = "rebuilt from " + ev.Donor + ", its old datadir not kept"
			}
			e.noteForget(f)
			continue
		}
		what, discard := "phantoms", ev.Manual
		switch {
		case ev.Manual:
			what = "discarded on request"
		case ev.Archive != "":
			// archive-and-repair: real transactions may go, once the archive holds
			// each of them whole (as mariadb-binlog prints it); else they count as
			// forgotten phantoms, and a real one among them is a violation.
			if lacks := archiveLacks(ev.Archive, ev.Discarded); lacks == "" {
				what, discard = "undone and archived in "+ev.Archive, true
			} else {
				what = "undone; the archive " + ev.Archive + " " + lacks
			}
		}
		e.noteForget(Forget{Node: ev.From, At: ev.Started, By: "rejoin", Discard: discard, GTIDs: ev.Discarded, What: what})
	}
}

// archiveLacks says what of gtids (single GTIDs, or ranges of one domain and
// server_id: 0-2-15..18) the archive file does not print as a transaction, "" when
// it prints every one.
func archiveLacks(path string, gtids []string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "cannot be read: " + err.Error()
	}
	text := string(b)
	var lacks []string
	for _, g := range gtids {
		for _, one := range expandGTIDs(g) {
			if !strings.Contains(text, "GTID "+one+" ") {
				lacks = append(lacks, one)
			}
		}
	}
	if len(lacks) > 0 {
		return "lacks " + strings.Join(lacks, ", ")
	}
	return ""
}

// expandGTIDs turns "0-2-15..18" into 0-2-15 to 0-2-18; anything else is itself.
func expandGTIDs(g string) []string {
	head, last, ok := strings.Cut(g, "..")
	if !ok {
		return []string{g}
	}
	i := strings.LastIndex(head, "-")
	first, err1 := strconv.ParseUint(head[i+1:], 10, 64)
	end, err2 := strconv.ParseUint(last, 10, 64)
	if i < 0 || err1 != nil || err2 != nil || end < first || end-first > 10000 {
		return []string{g}
	}
	var out []string
	for n := first; n <= end; n++ {
		out = append(out, head[:i+1]+strconv.FormatUint(n, 10))
	}
	return out
}

// lookUpUnique looks up, in node's binary log, the GTIDs of its own server_id in
// state that the primary of record does not hold (as last read), when node is not
// the primary of record: what it wrote alone (a deposed primary's last commits),
// and may be made to forget. Each is looked up once; those whose
// events are there whole are recorded real.
func (e *env) lookUpUnique(ctx context.Context, node string, db *sql.DB, state string) {
	e.mu.Lock()
	primary := e.snap.Primary.Node
	pstate := e.lastBinlog[primary].State
	e.mu.Unlock()
	if primary == "" || primary == node || pstate == "" {
		return
	}
	mine, err1 := parseBinlogState(state)
	theirs, err2 := parseBinlogState(pstate)
	if err1 != nil || err2 != nil {
		return
	}
	var want []string
	for _, ds := range sortedDS(mine) {
		if e.node[ds.server] != node {
			continue // another server's: a replica's copy, maybe ahead of the last read of the primary
		}
		for seq := mine[ds]; seq > theirs[ds] && seq+maxLookups > mine[ds]; seq-- {
			g := ds.gtid(seq)
			e.mu.Lock()
			done := e.lookedUp[node+"/"+g]
			e.lookedUp[node+"/"+g] = true
			e.mu.Unlock()
			if !done {
				want = append(want, g)
			}
		}
	}
	if len(want) == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	found, err := readWhole(lctx, db, want)
	if err != nil {
		e.note(fmt.Sprintf("look up %s in %s's binary log: %v", strings.Join(want, ","), node, err))
	}
	for _, g := range found {
		e.noteReal(RealGTID{Node: node, GTID: g, Source: sourceBinlog, At: time.Now()}) // the read's end
	}
}

var gtidEvent = regexp.MustCompile(`GTID (\d+-\d+-\d+)`)

// readWhole reads the newest binary log of a server (SHOW BINLOG EVENTS, a page at a
// time, at most maxEventsRead events) and returns the GTIDs of want whose
// transactions are there whole: a GTID event followed, before the next one, by its
// commit (an Xid event or a COMMIT), or a DDL's GTID event followed by its
// statement. One cut off by the end of what could be read is not.
func readWhole(ctx context.Context, db *sql.DB, want []string) ([]string, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var files []string
	rows, err := conn.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, err
	}
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		var name string
		vals[0] = &name
		for i := 1; i < len(vals); i++ {
			vals[i] = new(sql.RawBytes)
		}
		if err := rows.Scan(vals...); err != nil {
			rows.Close()
			return nil, err
		}
		files = append(files, name)
	}
	rows.Close()
	if len(files) == 0 {
		return nil, nil
	}
	file := files[len(files)-1]
	var found []string
	open := ""   // the GTID whose transaction is being read
	ddl := false // its GTID event has no BEGIN: one statement follows
	read := 0
	for off := 0; read < maxEventsRead; off += eventsPage {
		rows, err := conn.QueryContext(ctx, fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' LIMIT %d, %d", strings.ReplaceAll(file, "'", "''"), off, eventsPage))
		if err != nil {
			return found, err
		}
		cols, _ := rows.Columns()
		n := 0
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return found, err
			}
			n++
			var typ, info string
			for i, c := range cols {
				switch c {
				case "Event_type":
					typ = string(vals[i])
				case "Info":
					info = string(vals[i])
				}
			}
			switch {
			case strings.EqualFold(typ, "Gtid"):
				open, ddl = "", false
				if m := gtidEvent.FindStringSubmatch(info); m != nil && slices.Contains(want, m[1]) {
					open, ddl = m[1], !strings.HasPrefix(info, "BEGIN")
				}
			case open == "":
			case strings.EqualFold(typ, "Xid"), ddl && strings.EqualFold(typ, "Query"),
				strings.EqualFold(typ, "Query") && strings.HasPrefix(strings.ToUpper(strings.TrimSpace(info)), "COMMIT"):
				found = append(found, open)
				open = ""
			}
		}
		err = rows.Err()
		rows.Close()
		read += n
		if err != nil {
			return found, err // an unreadable tail: what was read whole counts
		}
		if n < eventsPage || len(found) == len(want) {
			return found, nil
		}
	}
	return found, fmt.Errorf("stopped after %d events of %s", read, file)
}
