package replication

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Errant transactions, looked up one by one in the server's binary logs.
//
// MariaDB numbers a transaction (and advances gtid_binlog_state and
// gtid_binlog_pos) before it writes the transaction to the binlog. When that
// write hangs on a full disk and the writer is killed (Baton's fence does it),
// InnoDB rolls the transaction back and the binlog never gets it, but the
// number stays in gtid_binlog_state: a phantom GTID. It makes the server look
// as if it had transactions nobody else has. The binlog itself is the evidence:
// a GTID whose GTID event is in no binary log file was never written, so no
// replica could ever have received it, and it made no change that survived.
//
// MySQL 8 assigns a GTID when the transaction is flushed to the binlog and adds
// it to gtid_executed only once it is written; a binlog write that fails stops
// the server (binlog_error_action=ABORT_SERVER, the default) rather than leave
// a number behind. There is no phantom numbering to repair: every GTID in
// gtid_executed was committed. One missing from the binary logs was purged
// (gtid_purged), not lost. InspectErrant therefore reports every errant GTID of
// a MySQL server as real, and RepairErrant refuses MySQL (an operator rebuilds
// the server, or injects empty transactions on the primary).

var (
	// ErrEvidenceStale: the server's gtid_binlog_state changed since its binary
	// logs were read; the repair was not made.
	ErrEvidenceStale = errors.New("replication: binlog changed since it was inspected")
	// ErrNotPhantom: a repair without the operator's word to discard was asked for
	// errant GTIDs not all shown to be phantoms; nothing was changed.
	ErrNotPhantom = errors.New("replication: errant GTIDs not all shown to be phantoms")
	// ErrRepairUnsupported: the flavor has no errant repair (MySQL, see above).
	ErrRepairUnsupported = errors.New("replication: errant repair not supported for this flavor")
)

// maxErrantLookups bounds how many single GTIDs InspectErrant looks up; beyond it
// the rest count as real, unverified.
const maxErrantLookups = 1000

// binlogPage is how many events one SHOW BINLOG EVENTS reads.
const binlogPage = 5000

// BinlogEvent is one event as SHOW BINLOG EVENTS lists it.
type BinlogEvent struct {
	File     string `json:"file"`
	Pos      uint64 `json:"pos"`
	Type     string `json:"type"`
	ServerID uint32 `json:"server_id"`
	EndPos   uint64 `json:"end_pos"`
	Info     string `json:"info"`
}

func (e BinlogEvent) String() string {
	return fmt.Sprintf("%s:%d %s %s", e.File, e.Pos, e.Type, e.Info)
}

// ErrantKind says what one errant GTID is. The zero value, ErrantUnchecked, is
// never a reason to discard anything.
type ErrantKind string

// Errant kinds.
const (
	ErrantUnchecked ErrantKind = ""        // not looked up
	ErrantReal      ErrantKind = "real"    // a committed transaction (in the binlog, or MySQL's gtid_executed)
	ErrantPhantom   ErrantKind = "phantom" // MariaDB: numbered, never written to any binary log
)

func (k ErrantKind) String() string {
	if k == ErrantUnchecked {
		return "unchecked"
	}
	return string(k)
}

// ErrantTxn is one errant GTID (or, past maxErrantLookups, a range of them) and
// what the binary logs say of it.
type ErrantTxn struct {
	GTID string     `json:"gtid"`
	Kind ErrantKind `json:"kind"`
	// First is the transaction's first event after its GTID event (its statement,
	// or the annotation of its row events), when it is in the binlog.
	First *BinlogEvent `json:"first,omitempty"`
	// Note says why a GTID not found in the binlog counts as real all the same.
	Note string `json:"note,omitempty"`
	// Tables are the tables its row events touch (db.table, from its Table_map
	// events), in order, when it is in the binlog whole.
	Tables []string `json:"tables,omitempty"`
	// RowsOnly: in the binlog whole, and made of row events alone (no statement,
	// no DDL): what MariaDB's flashback can reverse.
	RowsOnly bool `json:"rows_only,omitempty"`
	// Transactional: in the binlog whole and ended by an Xid event, the commit of a
	// transactional engine (InnoDB): undone inside one transaction, it is taken
	// back whole if the undo fails. A group ended by a COMMIT statement holds
	// changes to a non-transactional table (MyISAM, Aria, BLACKHOLE), which no
	// rollback takes back: never undone in place. False when not known.
	Transactional bool `json:"transactional,omitempty"`
}

// ErrantEvidence is what InspectErrant found on a server: its errant
// transactions against a primary, each looked up in its binary logs.
type ErrantEvidence struct {
	Flavor Flavor
	// Errant is the server's errant set, as Errant returns it.
	Errant GTIDSet
	Txns   []ErrantTxn
	// BinlogState is MariaDB's gtid_binlog_state when the binary logs were read:
	// RepairErrant goes ahead only if it is unchanged.
	BinlogState string
	// SlavePos is MariaDB's gtid_slave_pos then.
	SlavePos string
	// BinlogEnd is where the binlog ended then (SHOW MASTER STATUS, file:position):
	// RepairErrant goes ahead only if nothing was written since, not even a
	// transaction numbered before the inspection whose write was still pending.
	BinlogEnd string
	// UnreadableTail says where the file being written stops being readable, when
	// it does (see binlogEvents): the failed write of phantoms leaves one.
	UnreadableTail string
	// Written is MariaDB's gtid_binlog_state as the binary logs hold it: every
	// errant (domain, server_id) entry set back to its last transaction really
	// written at or below what the primary has (dropped when there is none).
	Written string
	// Oldest is the Gtid_list of the oldest binary log file (what was logged before
	// it, purged or not), when it could be read (HasOldest): a program reading the
	// binary logs cannot start before it.
	Oldest    GTIDSet
	HasOldest bool
}

// Phantom says whether every errant GTID was found to be a phantom: the server
// may then be repaired without losing any transaction.
func (e ErrantEvidence) Phantom() bool {
	if len(e.Txns) == 0 {
		return false
	}
	for _, t := range e.Txns {
		if t.Kind != ErrantPhantom {
			return false
		}
	}
	return true
}

// Real returns the errant transactions that are not phantoms (unchecked ones
// included).
func (e ErrantEvidence) Real() []ErrantTxn {
	var out []ErrantTxn
	for _, t := range e.Txns {
		if t.Kind != ErrantPhantom {
			out = append(out, t)
		}
	}
	return out
}

// GTIDs lists the errant GTIDs looked at.
func (e ErrantEvidence) GTIDs() []string {
	out := make([]string, 0, len(e.Txns))
	for _, t := range e.Txns {
		out = append(out, t.GTID)
	}
	return out
}

// binlogFile is one binary log file and the GTIDs logged before it (MariaDB's
// Gtid_list event, MySQL's Previous_gtids).
type binlogFile struct {
	Name      string
	Before    GTIDSet
	HasBefore bool
}

var (
	mariaGTIDEvent = regexp.MustCompile(`GTID (\d+-\d+-\d+)`)
	mysqlGTIDEvent = regexp.MustCompile(`GTID_NEXT\s*=\s*'([^']+)'`)
)

// eventGTID returns the GTID a GTID event announces; ok is false for any other event.
func eventGTID(f Flavor, e BinlogEvent) (string, bool) {
	if !strings.EqualFold(e.Type, "Gtid") {
		return "", false
	}
	re := mariaGTIDEvent
	if f == FlavorMySQL {
		re = mysqlGTIDEvent
	}
	m := re.FindStringSubmatch(e.Info)
	if m == nil {
		return "", false
	}
	if f == FlavorMySQL {
		return strings.ToLower(m[1]), true
	}
	return m[1], true
}

// fileBefore reads the GTIDs logged before a file from its first events: MariaDB's
// Gtid_list ("[0-1-13,0-2-4]"), MySQL's Previous_gtids ("uuid:1-10,...").
func fileBefore(f Flavor, events []BinlogEvent) (GTIDSet, bool) {
	for _, e := range events {
		switch {
		case f == FlavorMariaDB && strings.EqualFold(e.Type, "Gtid_list"):
			s := strings.TrimSpace(e.Info)
			s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
			set, err := ParseGTIDSet(f, s)
			return set, err == nil
		case f == FlavorMySQL && strings.EqualFold(e.Type, "Previous_gtids"):
			set, err := ParseGTIDSet(f, strings.TrimSpace(e.Info))
			return set, err == nil
		}
	}
	return GTIDSet{}, false
}

// hasGTID says whether set lists the single GTID g: MySQL, set membership;
// MariaDB, the same (domain, server_id) at g's sequence or beyond (a Gtid_list is
// per server_id, and sequences only grow).
func hasGTID(set GTIDSet, g string) bool {
	switch set.flavor {
	case FlavorMySQL:
		one, err := ParseGTIDSet(FlavorMySQL, g)
		return err == nil && set.Contain(one)
	case FlavorMariaDB:
		mg, err := gomysql.ParseMariadbGTID(g)
		if err != nil || set.maria == nil {
			return false
		}
		cur, ok := set.maria.Sets[mg.DomainID][mg.ServerID]
		return ok && cur.SequenceNumber >= mg.SequenceNumber
	}
	return false
}

// fileFor names the only file that can hold g: the last one whose Before does not
// list it. Files whose Before could not be read are all candidates.
func fileFor(files []binlogFile, g string) []string {
	var out []string
	for i, f := range files {
		if f.HasBefore && hasGTID(f.Before, g) {
			continue
		}
		if i+1 < len(files) && files[i+1].HasBefore && hasGTID(files[i+1].Before, g) {
			out = append(out, f.Name) // logged before the next file: here, if anywhere
			continue
		}
		if i+1 == len(files) || !files[i+1].HasBefore {
			out = append(out, f.Name)
		}
	}
	return out
}

// lookup is one errant GTID to look for, or a GTID (or range) not looked up.
type lookup struct {
	gtid string
	note string // set: not looked up; kind says what it counts as
	kind ErrantKind
	// files are the binary logs that can hold it (fileFor), set by locate.
	files []string
}

// locate names, for each lookup, the files that can hold it. One that no file left
// can hold was logged before the oldest binary log (its Gtid_list lists it): it was
// purged, and nothing on the server says any more whether it was ever written
// whole. It is unchecked, never a phantom. MariaDB keeps no gtid_purged, and a
// Gtid_list lists phantoms numbered before the rotation just as it lists real
// transactions: a purge is what an operator does to free a full disk, so this is
// the common case, not an edge.
func locate(lookups []lookup, files []binlogFile) []lookup {
	out := slices.Clone(lookups)
	for i, l := range out {
		if l.note != "" {
			continue
		}
		out[i].files = fileFor(files, l.gtid)
		if len(out[i].files) > 0 {
			continue
		}
		out[i].kind = ErrantUnchecked
		if len(files) == 0 {
			out[i].note = "no binary log left to look it up in: cannot be checked"
		} else {
			out[i].note = fmt.Sprintf("logged before %s, the oldest binary log left (its Gtid_list lists it): purged, cannot be checked", files[0].Name)
		}
	}
	return out
}

// filesToScan lists, in order, the files some lookup must be looked for in.
func filesToScan(lookups []lookup, files []binlogFile) []binlogFile {
	var scan []binlogFile
	for _, f := range files {
		for _, l := range lookups {
			if l.note == "" && slices.Contains(l.files, f.Name) {
				scan = append(scan, f)
				break
			}
		}
	}
	return scan
}

// errantLookups expands an errant set into single GTIDs. MariaDB's errant entry
// d-s-n (the last of that server_id) stands for every sequence above what the
// primary has of (d, s), up to n, and above the server's gtid_binlog_state for
// (d, s) nothing can be in its binlog (it came from gtid_slave_pos).
func errantLookups(errant GTIDSet, primary Server, binlogState GTIDSet) []lookup {
	var out []lookup
	budget := maxErrantLookups
	switch errant.flavor {
	case FlavorMariaDB:
		for _, g := range sortedMaria(errant.maria) {
			lo := uint64(0)
			if p := primary.Executed; p.flavor == FlavorMariaDB && p.maria != nil {
				if pg, ok := p.maria.Sets[g.DomainID][g.ServerID]; ok {
					lo = pg.SequenceNumber
				}
			}
			inLog := uint64(0)
			if binlogState.maria != nil {
				if bg, ok := binlogState.maria.Sets[g.DomainID][g.ServerID]; ok {
					inLog = bg.SequenceNumber
				}
			}
			top := g.SequenceNumber
			if inLog < top {
				out = append(out, lookup{gtid: fmt.Sprintf("%d-%d-%d..%d", g.DomainID, g.ServerID, max(lo, inLog)+1, top),
					note: "above gtid_binlog_state: in gtid_slave_pos only", kind: ErrantReal})
				top = inLog
			}
			from := lo + 1
			if top >= from && top-from+1 > uint64(budget) {
				cut := top - uint64(budget) + 1
				out = append(out, lookup{gtid: fmt.Sprintf("%d-%d-%d..%d", g.DomainID, g.ServerID, from, cut-1),
					note: "too many to look up one by one: taken as real", kind: ErrantReal})
				from = cut
			}
			for seq := from; seq <= top && seq > 0; seq++ {
				out = append(out, lookup{gtid: fmt.Sprintf("%d-%d-%d", g.DomainID, g.ServerID, seq)})
				budget--
			}
		}
	case FlavorMySQL:
		for _, sid := range sortedSIDs(errant.my) {
			for _, iv := range errant.my.Sets[sid].Intervals {
				for n := iv.Start; n < iv.Stop; n++ {
					if budget <= 0 {
						out = append(out, lookup{gtid: fmt.Sprintf("%s:%d-%d", sid, n, iv.Stop-1), note: "too many to look up one by one: taken as real", kind: ErrantReal})
						break
					}
					out = append(out, lookup{gtid: fmt.Sprintf("%s:%d", sid, n)})
					budget--
				}
			}
		}
	}
	return out
}

func sortedSIDs(s *gomysql.MysqlGTIDSet) []string {
	var out []string
	if s == nil {
		return out
	}
	for sid := range s.Sets {
		out = append(out, sid)
	}
	slices.Sort(out)
	return out
}

// classifyErrant is the pure part of InspectErrant: each lookup against the GTID
// events found in the files scanned. A transaction is in the binlog when its GTID
// event is there and the transaction is whole: a statement after a standalone GTID
// event (DDL), else an Xid or COMMIT before the next GTID event. Then it is real.
// One whose GTID event is there but whose rest runs into the unreadable tail of the
// file being written (tails: file -> offset) was never written whole: no replica
// could read it, crash recovery would truncate it, and InnoDB rolled it back when
// its binlog write failed: a phantom, with its first event and a note. Absent, it
// is a phantom on MariaDB and, on MySQL, a transaction whose binlog was purged
// (real). Anything else found incomplete counts as real. Lookups must have been
// through locate, and every file they name scanned: "absent" means absent from the
// one file that must hold it, never "not looked for" (a lookup with a note was not
// looked for, and is what the note says).
func classifyErrant(f Flavor, lookups []lookup, events []BinlogEvent, tails map[string]uint64) []ErrantTxn {
	type found struct {
		first    *BinlogEvent
		complete bool
		file     string
		tables   []string
		stmt     bool // a Query event other than BEGIN/COMMIT: a statement, or DDL
		xid      bool // ended by an Xid event: a transactional engine's commit
	}
	seen := map[string]found{}
	for i, e := range events {
		g, ok := eventGTID(f, e)
		if !ok {
			continue
		}
		if _, dup := seen[g]; dup {
			continue
		}
		standalone := f == FlavorMariaDB && !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(e.Info)), "BEGIN")
		fd := found{file: e.File}
		first := e
		for j := i + 1; j < len(events) && events[j].File == e.File; j++ {
			n := events[j]
			if _, isGTID := eventGTID(f, n); isGTID {
				break
			}
			info := strings.ToUpper(strings.TrimSpace(n.Info))
			if strings.EqualFold(n.Type, "Table_map") {
				if t := mappedTable(n.Info); t != "" && !slices.Contains(fd.tables, t) {
					fd.tables = append(fd.tables, t)
				}
			}
			if strings.EqualFold(n.Type, "Query") && info != "BEGIN" && !strings.HasPrefix(info, "COMMIT") {
				fd.stmt = true
			}
			if fd.first == nil {
				if strings.EqualFold(n.Type, "Query") && info == "BEGIN" {
					continue
				}
				first = n
				fd.first = &first
				if standalone || (f == FlavorMySQL && strings.EqualFold(n.Type, "Query")) {
					// MariaDB's GTID event without BEGIN, MySQL's Query right after
					// GTID_NEXT (no BEGIN): a statement that is its own transaction.
					fd.complete = true
					break
				}
			}
			if strings.EqualFold(n.Type, "Xid") || strings.EqualFold(n.Type, "XA_prepare") ||
				(strings.EqualFold(n.Type, "Query") && (strings.HasPrefix(info, "COMMIT") || strings.HasPrefix(info, "XA "))) {
				fd.complete, fd.xid = true, strings.EqualFold(n.Type, "Xid")
				break
			}
		}
		if fd.first == nil {
			fd.first = &first
		}
		if standalone {
			fd.stmt = true // a GTID event without BEGIN: DDL or a statement of its own
		}
		seen[g] = fd
	}
	out := make([]ErrantTxn, 0, len(lookups))
	for _, l := range lookups {
		t := ErrantTxn{GTID: l.gtid}
		fd, ok := seen[strings.ToLower(l.gtid)]
		switch {
		case l.note != "":
			t.Kind, t.Note = l.kind, l.note
		case ok && fd.complete:
			t.Kind, t.First = ErrantReal, fd.first
			t.Tables, t.RowsOnly, t.Transactional = fd.tables, !fd.stmt && len(fd.tables) > 0, fd.xid
		case ok && tails[fd.file] > 0 && f == FlavorMariaDB:
			t.Kind, t.First = ErrantPhantom, fd.first
			t.Note = fmt.Sprintf("never written whole: %s is unreadable from offset %d, inside this transaction", fd.file, tails[fd.file])
		case ok:
			t.Kind, t.First, t.Note = ErrantReal, fd.first, "incomplete in the binlog: taken as real"
		case f == FlavorMySQL:
			t.Kind, t.Note = ErrantReal, "not in the binary logs: purged (gtid_executed has it, so it was committed)"
		case len(l.files) == 0:
			t.Kind, t.Note = ErrantUnchecked, "not looked up in any binary log"
		default:
			t.Kind = ErrantPhantom
		}
		out = append(out, t)
	}
	return out
}

// tableMapInfo is SHOW BINLOG EVENTS's Info of a Table_map event, the same on both
// flavors: "table_id: 20 (baton.heartbeat)".
var tableMapInfo = regexp.MustCompile(`\(([^()]+)\)\s*$`)

// mappedTable returns the db.table a Table_map event's Info names, "" if none.
func mappedTable(info string) string {
	m := tableMapInfo.FindStringSubmatch(strings.TrimSpace(info))
	if m == nil {
		return ""
	}
	return m[1]
}

// writtenState is MariaDB's gtid_binlog_state as the binary logs hold it: each
// (domain, server_id) entry with errant GTIDs set back to the highest sequence at
// or below what the primary has, found in the scanned files' events or in the
// Gtid_list of the oldest file left (files, all of them, oldest first): that list
// says everything of the entry up to its sequence was logged, so the primary's
// sequence too when the list goes beyond it. It is never lower than that. An entry
// with none left is dropped. Within a domain the entries are listed by sequence,
// the highest last: MariaDB takes the last one listed as the domain's position.
func writtenState(state, errant GTIDSet, primary Server, files []binlogFile, events []BinlogEvent) string {
	if state.flavor != FlavorMariaDB || state.maria == nil {
		return ""
	}
	out := newMariaSet()
	for _, g := range sortedMaria(state.maria) {
		eg, isErrant := errant.maria.Sets[g.DomainID][g.ServerID]
		if errant.maria == nil || !isErrant || eg == nil {
			addMaria(out, g)
			continue
		}
		lo := uint64(0)
		if p := primary.Executed; p.flavor == FlavorMariaDB && p.maria != nil {
			if pg, ok := p.maria.Sets[g.DomainID][g.ServerID]; ok {
				lo = pg.SequenceNumber
			}
		}
		best := uint64(0)
		if len(files) > 0 && files[0].HasBefore && files[0].Before.maria != nil {
			if bg, ok := files[0].Before.maria.Sets[g.DomainID][g.ServerID]; ok {
				best = min(bg.SequenceNumber, lo)
			}
		}
		for _, e := range events {
			s, ok := eventGTID(FlavorMariaDB, e)
			if !ok {
				continue
			}
			mg, err := gomysql.ParseMariadbGTID(s)
			if err != nil || mg.DomainID != g.DomainID || mg.ServerID != g.ServerID {
				continue
			}
			if mg.SequenceNumber <= lo && mg.SequenceNumber > best {
				best = mg.SequenceNumber
			}
		}
		if best > 0 {
			addMaria(out, &gomysql.MariadbGTID{DomainID: g.DomainID, ServerID: g.ServerID, SequenceNumber: best})
		}
	}
	gs := sortedMaria(out)
	slices.SortStableFunc(gs, func(a, b *gomysql.MariadbGTID) int {
		if c := cmpU32(a.DomainID, b.DomainID); c != 0 {
			return c
		}
		switch {
		case a.SequenceNumber < b.SequenceNumber:
			return -1
		case a.SequenceNumber > b.SequenceNumber:
			return 1
		}
		return 0
	})
	return formatMaria(gs)
}

// InspectErrant reads the server's status, computes its errant transactions
// against primary (see Errant) and looks each one up in the server's binary logs
// (SHOW BINARY LOGS, then SHOW BINLOG EVENTS of the one file that can hold it,
// found by each file's Gtid_list or Previous_gtids). It only reads. timeout
// bounds the whole inspection (binary logs can be large).
func (in *Instance) InspectErrant(ctx context.Context, primary Server, timeout time.Duration) (ErrantEvidence, error) {
	var ev ErrantEvidence
	err := in.call(ctx, timeout, func(ctx context.Context, s *serverConn) error {
		st, err := s.status(ctx)
		if err != nil {
			return err
		}
		ev.Flavor = s.flavor
		ev.BinlogState, ev.SlavePos = st.MariaDB.BinlogState, st.MariaDB.SlavePos
		if ev.Errant, err = Errant(st.Server(), primary); err != nil {
			return err
		}
		if ev.Errant.IsEmpty() {
			return nil
		}
		var state GTIDSet
		if s.flavor == FlavorMariaDB {
			if state, err = ParseGTIDSet(FlavorMariaDB, st.MariaDB.BinlogState); err != nil {
				return fmt.Errorf("gtid_binlog_state: %w", err)
			}
		}
		if ev.BinlogEnd, err = s.binlogEnd(ctx); err != nil {
			return err
		}
		files, err := s.binlogFiles(ctx)
		if err != nil {
			return err
		}
		if len(files) > 0 && files[0].HasBefore {
			ev.Oldest, ev.HasOldest = files[0].Before, true
		}
		lookups := locate(errantLookups(ev.Errant, primary, state), files)
		scan := filesToScan(lookups, files)
		endFile, endPos := splitEnd(ev.BinlogEnd)
		tails := map[string]uint64{}
		uncheckable := ""
		var events []BinlogEvent
		for _, f := range scan {
			current := f.Name == endFile
			// Read whatever part of each file can be read: an unreadable part is
			// judged below, never a reason to give up the whole look (the node would
			// stay quarantined with nothing to show).
			fe, tail, err := s.binlogEvents(ctx, f.Name, 0, true)
			if err != nil {
				return err
			}
			events = append(events, fe...)
			if tail == 0 {
				continue
			}
			after := !current
			if current {
				if after, err = s.writtenAfter(ctx, f.Name, tail, endPos); err != nil {
					return err
				}
			}
			switch {
			case !current:
				// A file rotated since (FLUSH BINARY LOGS, a restart) with an unreadable
				// part: what lies there, and whether anything was written after it,
				// cannot be known.
				ev.UnreadableTail = fmt.Sprintf("%s from offset %d, a file no longer written: not checkable", f.Name, tail)
				uncheckable = fmt.Sprintf("not readable in %s, unreadable from offset %d: cannot be checked", f.Name, tail)
			case after:
				// Something was committed past the unreadable part (a write after the
				// disk had room again): what lies there cannot be read, so nothing
				// missing can be called a phantom.
				ev.UnreadableTail = fmt.Sprintf("%s from offset %d, with events written after it up to %s: not checkable", f.Name, tail, ev.BinlogEnd)
				uncheckable = "not readable in the binlog, which has events written after an unreadable part: cannot be checked"
			default:
				tails[f.Name] = tail
				ev.UnreadableTail = fmt.Sprintf("%s from offset %d (the server's position: %s)", f.Name, tail, ev.BinlogEnd)
			}
		}
		ev.Txns = classifyErrant(s.flavor, lookups, events, tails)
		if err := s.checkEngines(ctx, ev.Txns); err != nil {
			return err
		}
		if uncheckable != "" {
			for i, t := range ev.Txns {
				if t.Kind == ErrantPhantom {
					ev.Txns[i].Kind = ErrantUnchecked
					ev.Txns[i].Note = uncheckable
				}
			}
		}
		if s.flavor == FlavorMariaDB {
			ev.Written = writtenState(state, ev.Errant, primary, files, events)
		}
		return nil
	})
	if err != nil {
		return ErrantEvidence{}, fmt.Errorf("inspect errant transactions of %s: %w", in.name, err)
	}
	return ev, nil
}

// checkEngines takes Transactional back from a transaction ended by an Xid that
// touches a table whose engine is not InnoDB (a statement that wrote an InnoDB
// table and, through a trigger, an Aria one ends in an Xid all the same), or a
// table whose engine cannot be read (dropped since): only InnoDB's changes are
// taken back by a rollback of a failed undo.
func (s *serverConn) checkEngines(ctx context.Context, txns []ErrantTxn) error {
	var tables []string
	for _, t := range txns {
		if t.Transactional {
			for _, name := range t.Tables {
				if !slices.Contains(tables, name) {
					tables = append(tables, name)
				}
			}
		}
	}
	if len(tables) == 0 {
		return nil
	}
	engines := map[string]string{}
	for _, name := range tables {
		schema, table, ok := strings.Cut(name, ".")
		if !ok {
			continue
		}
		var engine sql.NullString
		err := s.conn.QueryRowContext(ctx, "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", schema, table).Scan(&engine)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read the engines of the errant transactions' tables: %w", err)
		case engine.Valid:
			engines[name] = engine.String
		}
	}
	for i, t := range txns {
		for _, name := range t.Tables {
			if t.Transactional && !strings.EqualFold(engines[name], "InnoDB") {
				txns[i].Transactional = false
			}
		}
	}
	return nil
}

// binlogEnd is SHOW MASTER STATUS's file:position, where the next event goes.
func (s *serverConn) binlogEnd(ctx context.Context) (string, error) {
	if s.flavor != FlavorMariaDB {
		return "", nil // only RepairErrant, MariaDB's, needs it (MySQL 8.4 renamed the statement)
	}
	rows, err := s.queryRows(ctx, "SHOW MASTER STATUS")
	if err != nil {
		return "", err
	}
	if len(rows) != 1 {
		return "", errors.New("show master status: no binary log (log_bin is off?)")
	}
	return rows[0]["File"] + ":" + rows[0]["Position"], nil
}

// maxLastEvent bounds how far from the binlog's end position, and from the file's
// end, writtenAfter looks for the start of the last event: an Xid is 31 bytes, a
// COMMIT or a DDL a few hundred.
const maxLastEvent = 4096

// writtenAfter says whether the binlog file being written has a readable event
// whose end position (the one its header states) is the file's end position (SHOW
// MASTER STATUS), past the unreadable part that starts at tail: a transaction
// committed after a failed write. A failed write alone leaves the position past
// anything readable (past the end of the file, even), so no event states it as its
// end.
//
// What a write the full disk cut off, or a kill ended, left in the file shifts
// every later event further into it than its stated position says, by as much as
// had been written: 333 bytes measured on MariaDB 10.11 after a full disk, 8,766
// and 13,197 bytes after a 200 KB write on a disk with 24 KiB free was killed. So
// it tries each offset within maxLastEvent bytes of the end position, after it as
// well as before, and then, from the file's real end (the server names its size
// when asked for an offset past it), each offset within maxLastEvent bytes before
// it: a transaction committed last ends where the file ends. Missed, it would be
// called a phantom and a rejoin would reset it. A failing SHOW BINLOG EVENTS is
// cheap.
func (s *serverConn) writtenAfter(ctx context.Context, file string, tail, end uint64) (bool, error) {
	if end <= tail {
		return false, nil
	}
	var size uint64   // the file's size, once the server named it
	pastFile := false // an offset beyond the file: none further can be read
	probe := func(off uint64) (bool, error) {
		rows, err := s.queryRows(ctx, binlogEventsQuery(file, off, 1, s.noBackslashEscapes))
		if err != nil {
			if n, ok := actualFileSize(err); ok {
				pastFile, size = true, n
			}
			return false, ctx.Err()
		}
		page, err := parseBinlogEvents(rows)
		return err == nil && len(page) == 1 && page[0].EndPos == end, nil
	}
	const minEvent = 19 // a binlog event header
	for off := end - min(end-tail, minEvent); off+maxLastEvent >= end && off > tail; off-- {
		if found, err := probe(off); found || err != nil {
			return found, err
		}
	}
	for off := end - min(end-tail, minEvent) + 1; off <= end+maxLastEvent && !pastFile; off++ {
		if found, err := probe(off); found || err != nil {
			return found, err
		}
	}
	if !pastFile {
		// The file goes on past the window: ask for its size.
		if _, err := probe(math.MaxInt64 / 2); err != nil {
			return false, err
		}
	}
	if size == 0 {
		return false, nil // not named (another server's wording): the windows alone
	}
	for off := size - min(size, minEvent); off > tail && off+maxLastEvent >= size; off-- {
		if off+maxLastEvent >= end && off <= end+maxLastEvent {
			continue // in the windows above
		}
		if found, err := probe(off); found || err != nil {
			return found, err
		}
	}
	return false, nil
}

// actualFileSize reads the file's size from the error SHOW BINLOG EVENTS gives for
// an offset past the end of the file (MariaDB 10.11: "Invalid pos specified.
// Requested from pos:N is greater than actual file size:M").
func actualFileSize(err error) (uint64, bool) {
	const mark = "greater than actual file size:"
	msg := err.Error()
	i := strings.Index(msg, mark)
	if i < 0 {
		return 0, false
	}
	digits := msg[i+len(mark):]
	j := 0
	for j < len(digits) && digits[j] >= '0' && digits[j] <= '9' {
		j++
	}
	n, perr := strconv.ParseUint(digits[:j], 10, 64)
	return n, perr == nil
}

// splitEnd reads binlogEnd's file:position.
func splitEnd(s string) (string, uint64) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0
	}
	pos, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil {
		return "", 0
	}
	return s[:i], pos
}

// binlogFiles lists the binary log files with the GTIDs logged before each.
func (s *serverConn) binlogFiles(ctx context.Context) ([]binlogFile, error) {
	rows, err := s.queryRows(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, err
	}
	var out []binlogFile
	for _, r := range rows {
		name := r["Log_name"]
		if name == "" {
			continue
		}
		head, _, err := s.binlogEvents(ctx, name, 4, false)
		if err != nil {
			return nil, err
		}
		bf := binlogFile{Name: name}
		bf.Before, bf.HasBefore = fileBefore(s.flavor, head)
		out = append(out, bf)
	}
	return out, nil
}

// binlogEvents reads the events of one file, the first limit of them (0: all,
// page by page). A page that meets bytes the server cannot read as an event
// (error 1220) is read again in smaller pages. Where a single event cannot be read
// and tolerate is set, the file ends there: tail is that offset. That is what a
// binlog write that failed on a full disk leaves (MariaDB's own position counts
// the bytes it tried to write); no dump thread can read past it, so no replica
// ever got what lies there, and crash recovery would truncate it too. The file
// keeps it when rotated (FLUSH BINARY LOGS): the caller judges what a tail in a
// file no longer written means. Without tolerate it is an error.
func (s *serverConn) binlogEvents(ctx context.Context, file string, limit int, tolerate bool) (events []BinlogEvent, tail uint64, err error) {
	var out []BinlogEvent
	from := uint64(4)
	n := binlogPage
	if limit > 0 {
		n = limit
	}
	for {
		rows, err := s.queryRows(ctx, binlogEventsQuery(file, from, n, s.noBackslashEscapes))
		if err != nil && isErrno(err, 1220) {
			if n > 1 {
				n /= 2
				continue
			}
			if tolerate {
				return out, from, nil
			}
		}
		if err != nil {
			return nil, 0, err
		}
		page, err := parseBinlogEvents(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("show binlog events in %s: %w", file, err)
		}
		out = append(out, page...)
		if limit > 0 || len(page) < n || len(page) == 0 {
			return out, 0, nil
		}
		from = page[len(page)-1].EndPos
	}
}

// binlogEventsQuery is SHOW BINLOG EVENTS IN file FROM pos LIMIT n, the same on
// both flavors.
func binlogEventsQuery(file string, from uint64, n int, noBackslashEscapes bool) string {
	return fmt.Sprintf("SHOW BINLOG EVENTS IN %s FROM %d LIMIT %d", quote(file, noBackslashEscapes), from, n)
}

// parseBinlogEvents reads SHOW BINLOG EVENTS rows (Log_name, Pos, Event_type,
// Server_id, End_log_pos, Info: the same columns on MariaDB and MySQL).
func parseBinlogEvents(rows []map[string]string) ([]BinlogEvent, error) {
	out := make([]BinlogEvent, 0, len(rows))
	for _, r := range rows {
		pos, err := strconv.ParseUint(r["Pos"], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("pos %q: %w", r["Pos"], err)
		}
		end, err := strconv.ParseUint(r["End_log_pos"], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("end_log_pos %q: %w", r["End_log_pos"], err)
		}
		sid, err := strconv.ParseUint(r["Server_id"], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("server_id %q: %w", r["Server_id"], err)
		}
		out = append(out, BinlogEvent{File: r["Log_name"], Pos: pos, Type: r["Event_type"], ServerID: uint32(sid), EndPos: end, Info: r["Info"]})
	}
	return out, nil
}
