package replication

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Salvage: the transactions a failed primary wrote to its binary log that no
// replica received, read from its binary log files on disk (mariadb-binlog reads
// files without a server) and applied to the candidate before it is promoted, with
// their own GTIDs. MariaDB only.
//
// Reading (on the failed primary's host, by its agent): BinlogFilesFrom picks the
// files to read from the index and each file's Gtid_list event; ReadBinlogTail runs
// mariadb-binlog on them from the candidate's position, and ParseBinlogPrint keeps
// the complete transactions only: a torn tail (a crash in the middle of a write),
// an output cut at its deadline or size limit, are never applied.
//
// Applying (by the coordinator): ApplySalvage runs the print's statements on one
// connection, as Baton's account (BINLOG REPLAY), after a guard that refuses a
// candidate that changed since the flow read it (salvage_apply.go).

// MaxSalvage bounds the print of one salvage: transactions beyond it stay behind.
const MaxSalvage = 32 << 20

// ErrSalvageGap: the binary logs on disk do not reach back to the candidate's
// position (purged, or the candidate has transactions they never had): what they
// hold cannot be applied after the candidate's without a gap.
var ErrSalvageGap = errors.New("replication: the binary logs do not continue the candidate's position")

// BinlogTxn is one complete transaction of a mariadb-binlog print.
type BinlogTxn struct {
	GTID string `json:"gtid"`
	// File is the binary log file it is in (base name); Pos where its GTID event
	// starts, End where its last event ends.
	File string `json:"file"`
	Pos  int64  `json:"pos"`
	End  int64  `json:"end"`
}

// BinlogPrint is what ParseBinlogPrint keeps of mariadb-binlog's output.
type BinlogPrint struct {
	// Txns are the complete transactions, in the order printed.
	Txns []BinlogTxn
	// Script is the output cut right after the last of Txns, ending with
	// "DELIMITER ;": the statements that apply them (empty when there are none).
	Script []byte
	// GTIDList is the Gtid_list event of the first file printed: what was logged
	// before that file. HasGTIDList says it was printed.
	GTIDList    string
	HasGTIDList bool
	// Stopped says why nothing after Txns is in Script, "" when the print ended
	// cleanly after them: a transaction cut short (a torn tail, or the print cut at
	// its deadline or size), or one that is not salvaged (XA).
	Stopped string
}

var (
	printAt     = regexp.MustCompile(`^# at (\d+)$`)
	printHeader = regexp.MustCompile(`^#\d{6}\s+\d{1,2}:\d{2}:\d{2}\s+server id (\d+)\s+end_log_pos (\d+)(?:\s+CRC32 0x[0-9a-fA-F]+)?\s+(.*)$`)
	printGTID   = regexp.MustCompile(`^GTID (\d+)-(\d+)-(\d+)(?:\s|$)`)
)

// printGroup is a transaction being read from the print.
type printGroup struct {
	txn        BinlogTxn
	start      int  // offset of its first "# at" line
	chunks     int  // "# at" runs since its start, its own included
	standalone bool // no START TRANSACTION: one statement after the GTID event
	xid        bool // an Xid event was printed: its COMMIT line ends the group
	terminated bool // its ending event has been printed; complete at the next boundary
	query      bool // the current chunk holds a Query event
	stmt       []string
}

// ParseBinlogPrint reads mariadb-binlog's output for files (the files given to it,
// in order: the k-th Start event printed is the k-th file's) and keeps its complete
// transactions, in order, with the statements that apply them.
//
// A transaction is complete when its ending event (the COMMIT of its Xid event, a
// COMMIT or ROLLBACK query, or, for a standalone one, its only statement) has been
// printed and followed by the next event's "# at" line or the end of its file
// ("DELIMITER ;"): mariadb-binlog prints an event only once it has read it whole,
// and a print cut in the middle (a deadline, a size limit) ends with no such line.
// The first incomplete or unsupported transaction stops the parse: what follows it
// is not kept, so what is kept is a prefix of the binary log's order.
func ParseBinlogPrint(out []byte, files []string) BinlogPrint {
	var p BinlogPrint
	var cur *printGroup
	fileIdx := -1
	chunkStart, chunkAt := -1, int64(0)
	prevAt := false
	cut := 0 // the end of the last complete transaction in out
	inList := false
	fileName := func() string {
		if fileIdx >= 0 && fileIdx < len(files) {
			return filepath.Base(files[fileIdx])
		}
		return ""
	}
	// boundary ends the current chunk at off (a "# at" run or a DELIMITER ;).
	boundary := func(off int) {
		if cur == nil {
			return
		}
		if cur.query {
			switch s := lastStatement(cur.stmt); {
			case s == "COMMIT" || s == "ROLLBACK":
				cur.terminated = true
			case strings.HasPrefix(s, "XA "):
				p.Stopped = fmt.Sprintf("transaction %s at %s:%d is an XA transaction: not salvaged, nor anything after it", cur.txn.GTID, cur.txn.File, cur.txn.Pos)
			}
			cur.query, cur.stmt = false, nil
		}
		if cur.standalone && cur.chunks >= 2 {
			cur.terminated = true
		}
		if cur.terminated && p.Stopped == "" {
			p.Txns = append(p.Txns, cur.txn)
			cut = off
			cur = nil
		}
	}
	for off := 0; off < len(out) && p.Stopped == ""; {
		end := bytes.IndexByte(out[off:], '\n')
		if end < 0 {
			break // a last line without its newline was cut: never complete
		}
		line := string(out[off : off+end])
		next := off + end + 1
		if m := printAt.FindStringSubmatch(line); m != nil {
			if !prevAt {
				boundary(off)
				chunkStart = off
				chunkAt, _ = strconv.ParseInt(m[1], 10, 64)
				if cur != nil {
					cur.chunks++
				}
			}
			prevAt, inList = true, false
			off = next
			continue
		}
		prevAt = false
		if line == "DELIMITER ;" {
			boundary(off)
			if cur != nil && p.Stopped == "" {
				// The end of a file in the middle of a transaction: its rest is lost.
				p.Stopped = fmt.Sprintf("transaction %s at %s:%d is incomplete at the end of its file", cur.txn.GTID, cur.txn.File, cur.txn.Pos)
			}
			off = next
			continue
		}
		if inList {
			// "Gtid list [0-1-5,\n# 1-2-3]": one entry per line after the first.
			rest := strings.TrimPrefix(line, "# ")
			p.GTIDList += strings.TrimSuffix(rest, "]")
			inList = !strings.HasSuffix(rest, "]")
			off = next
			continue
		}
		if m := printHeader.FindStringSubmatch(line); m != nil {
			desc := m[3]
			endPos, _ := strconv.ParseInt(m[2], 10, 64)
			switch {
			case strings.HasPrefix(desc, "Start: binlog"):
				fileIdx++
			case strings.HasPrefix(desc, "Gtid list [") && fileIdx == 0 && !p.HasGTIDList:
				body := strings.TrimPrefix(desc, "Gtid list [")
				p.GTIDList, p.HasGTIDList = strings.TrimSuffix(body, "]"), true
				inList = !strings.HasSuffix(body, "]")
			}
			if g := printGTID.FindStringSubmatch(desc); g != nil {
				if cur != nil {
					p.Stopped = fmt.Sprintf("transaction %s at %s:%d has no end before the next one", cur.txn.GTID, cur.txn.File, cur.txn.Pos)
					break
				}
				cur = &printGroup{txn: BinlogTxn{GTID: g[1] + "-" + g[2] + "-" + g[3], File: fileName(), Pos: chunkAt, End: endPos},
					start: chunkStart, chunks: 1, standalone: true}
			} else if cur != nil {
				cur.txn.End = endPos
				switch {
				case strings.HasPrefix(desc, "Xid = "):
					cur.xid = true
				case strings.HasPrefix(desc, "Query"):
					cur.query, cur.stmt = true, nil
				}
			}
			off = next
			continue
		}
		if cur != nil {
			switch {
			case cur.chunks == 1 && line == "START TRANSACTION":
				cur.standalone = false
			case cur.chunks == 1 && strings.HasPrefix(line, "XA START"):
				p.Stopped = fmt.Sprintf("transaction %s at %s:%d is an XA transaction: not salvaged, nor anything after it", cur.txn.GTID, cur.txn.File, cur.txn.Pos)
			case cur.xid && line == "COMMIT/*!*/;":
				cur.terminated = true
			case cur.query:
				cur.stmt = append(cur.stmt, line)
			}
		}
		off = next
	}
	if cur != nil && p.Stopped == "" {
		p.Stopped = fmt.Sprintf("transaction %s at %s:%d is incomplete: the binary log ends in it (a torn tail), or the read was cut", cur.txn.GTID, cur.txn.File, cur.txn.Pos)
	}
	if len(p.Txns) > 0 {
		p.Script = append(append([]byte(nil), out[:cut]...), "DELIMITER ;\n"...)
	}
	return p
}

// lastStatement is the last statement of a Query event's print (its lines after
// the header): statements end with the print's delimiter "/*!*/;", on their last
// line.
func lastStatement(lines []string) string {
	text := strings.TrimSpace(strings.Join(lines, "\n"))
	text = strings.TrimSpace(strings.TrimSuffix(text, "/*!*/;"))
	if i := strings.LastIndex(text, "/*!*/;"); i >= 0 {
		text = text[i+len("/*!*/;"):]
	}
	return strings.TrimSpace(text)
}

// binlog event types and sizes read by ReadGTIDList and the relay apply
// (MariaDB's log_event.h).
const (
	binlogMagic       = "\xfebin"
	eventHeaderLen    = 19
	formatDescription = 15
	eventMariaDBGTID  = 162
	rotateEvent       = 4
	// logEventArtificial marks an event no server logged (LOG_EVENT_ARTIFICIAL_F);
	// binlogInUse a file its server had not closed (LOG_EVENT_BINLOG_IN_USE_F).
	logEventArtificial   = 0x20
	binlogInUse          = 0x1
	gtidListEvent        = 163
	startEncryptionEvent = 164
)

// ReadGTIDList reads the Gtid_list event at the start of a MariaDB binary log file
// (after its format description): what the server had logged before the file, as
// "domain-server-seq,...". An encrypted file, or one that does not start as a
// binary log, is an error.
func ReadGTIDList(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r := bufio.NewReader(io.LimitReader(f, 1<<20))
	magic := make([]byte, 4)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != binlogMagic {
		return "", fmt.Errorf("%s: not a binary log", path)
	}
	for i := 0; i < 8; i++ {
		hdr := make([]byte, eventHeaderLen)
		if _, err := io.ReadFull(r, hdr); err != nil {
			return "", fmt.Errorf("%s: no Gtid_list event: %w", path, err)
		}
		typ := hdr[4]
		size := binary.LittleEndian.Uint32(hdr[9:13])
		if size < eventHeaderLen || size > 1<<20 {
			return "", fmt.Errorf("%s: event of %d bytes at the start", path, size)
		}
		body := make([]byte, size-eventHeaderLen)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		switch typ {
		case startEncryptionEvent:
			return "", fmt.Errorf("%s: an encrypted binary log", path)
		case gtidListEvent:
			if len(body) < 4 {
				return "", fmt.Errorf("%s: a short Gtid_list event", path)
			}
			n := int(binary.LittleEndian.Uint32(body[:4]) & 0x0fffffff)
			if len(body) < 4+16*n {
				return "", fmt.Errorf("%s: a short Gtid_list event", path)
			}
			parts := make([]string, n)
			for j := range n {
				e := body[4+16*j:]
				parts[j] = fmt.Sprintf("%d-%d-%d", binary.LittleEndian.Uint32(e[0:4]), binary.LittleEndian.Uint32(e[4:8]), binary.LittleEndian.Uint64(e[8:16]))
			}
			return strings.Join(parts, ","), nil
		}
	}
	return "", fmt.Errorf("%s: no Gtid_list event at the start", path)
}

// BinlogIndex lists the binary log files named in a MariaDB index file
// (log_bin_index), oldest first. A relative name is relative to datadir (as the
// server writes it: "./mysql-bin.000001"), or to the index's directory when
// datadir is empty.
func BinlogIndex(index, datadir string) ([]string, error) {
	b, err := os.ReadFile(index)
	if err != nil {
		return nil, err
	}
	base := datadir
	if base == "" {
		base = filepath.Dir(index)
	}
	var out []string
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if !filepath.IsAbs(l) {
			l = filepath.Join(base, l)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no binary log", index)
	}
	return out, nil
}

// BinlogFilesFrom picks, of files (oldest first), those to read for what was
// logged after position after: from the newest file whose Gtid_list after
// contains (everything logged before it, the candidate has), to the last. It
// returns them and that file's Gtid_list. ErrSalvageGap when no file qualifies:
// the files were purged past the position, or it holds what they never had.
func BinlogFilesFrom(files []string, after GTIDSet) ([]string, string, error) {
	if after.Flavor() != FlavorMariaDB {
		return nil, "", fmt.Errorf("pick binary logs: the position's flavor is %s: %w", after.Flavor(), ErrRepairUnsupported)
	}
	for i := len(files) - 1; i >= 0; i-- {
		list, err := ReadGTIDList(files[i])
		if err != nil {
			return nil, "", fmt.Errorf("pick binary logs: %w", err)
		}
		set, err := ParseGTIDSet(FlavorMariaDB, list)
		if err != nil {
			return nil, "", fmt.Errorf("pick binary logs: %s: %w", files[i], err)
		}
		if after.Contain(set) {
			return files[i:], list, nil
		}
	}
	first, _ := ReadGTIDList(files[0])
	return nil, "", fmt.Errorf("the oldest binary log %s starts after [%s], which position %s lacks: %w", filepath.Base(files[0]), first, after.Position(), ErrSalvageGap)
}

// BinlogTail is what ReadBinlogTail read.
type BinlogTail struct {
	BinlogPrint
	// Files are the files read, oldest first.
	Files []string
	// Bytes is how much mariadb-binlog printed.
	Bytes int
}

// ReadBinlogTail prints, with mariadb-binlog (program; "" finds it in PATH),
// every transaction of files logged after position after, within ctx and at most
// max bytes of print (MaxSalvage when zero or less), and keeps the complete ones
// (ParseBinlogPrint). Files are read as they are on disk, without a server: the
// caller makes sure that no server writes to them meanwhile, or that what it
// writes does not matter (a fenced server). A print cut by ctx or max, or ended by
// an error of the program after some transactions (a torn event), keeps what was
// complete before, and says why it stopped; an error before any transaction is
// the error. A domain of the position in which the files hold nothing after it
// has nothing to salvage.
func ReadBinlogTail(ctx context.Context, program string, files []string, after GTIDSet, max int) (BinlogTail, error) {
	if program == "" {
		program = "mariadb-binlog"
	}
	if max <= 0 {
		max = MaxSalvage
	}
	if len(files) == 0 {
		return BinlogTail{}, errors.New("read binary logs: no file")
	}
	args := []string{"--no-defaults"}
	if pos := after.Position(); pos != "" {
		args = append(args, "--start-position="+pos)
	}
	args = append(args, files...)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(rctx, program, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return BinlogTail{}, err
	}
	if err := cmd.Start(); err != nil {
		return BinlogTail{}, fmt.Errorf("read binary logs: %w", err)
	}
	out, over, rerr := readCapped(stdout, max)
	if over {
		cancel() // enough: the rest stays behind
	}
	werr := cmd.Wait()
	tail := BinlogTail{Files: files, Bytes: len(out), BinlogPrint: ParseBinlogPrint(out, files)}
	why := firstLine(errb.Bytes())
	switch {
	case over:
		why = fmt.Sprintf("the print reached its limit of %d bytes", max)
	case ctx.Err() != nil:
		why = "the read ran out of time: " + ctx.Err().Error()
	case rerr != nil:
		why = "reading the print: " + rerr.Error()
	case werr != nil && why == "":
		why = werr.Error()
	}
	if strings.Contains(why, "never reached expected GTID state") && werr != nil && !over && ctx.Err() == nil {
		// mariadb-binlog says so, at the end of a whole print, of a domain in which
		// nothing was logged after the position (the position is the last GTID
		// there, or beyond): nothing to salvage in that domain.
		why = ""
	}
	if why != "" {
		if len(tail.Txns) == 0 && (werr != nil || over || ctx.Err() != nil || rerr != nil) {
			return tail, fmt.Errorf("read binary logs: %s", why)
		}
		if tail.Stopped == "" {
			tail.Stopped = why
		} else {
			tail.Stopped += " (" + why + ")"
		}
	}
	return tail, nil
}

// readCapped reads r to its end or max bytes, whichever comes first; over says it
// stopped at max.
func readCapped(r io.Reader, max int) ([]byte, bool, error) {
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(r, int64(max)+1))
	if n > int64(max) {
		return out.Bytes()[:max], true, nil
	}
	return out.Bytes(), false, err
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// SalvageGuard is what the candidate must still be, when the salvage is applied,
// for the flow's reading of it to hold: the GTID state it read (gtid_binlog_state
// and gtid_slave_pos, as the server prints them) and read_only on.
type SalvageGuard struct {
	BinlogState, SlavePos string
	// SlavePosAfter is the gtid_slave_pos the candidate gets once every salvaged
	// transaction is applied (its executed set and theirs, one GTID per domain):
	// replication started again from there never fetches them a second time.
	SlavePosAfter string
	// UsingGTID is the candidate's Using_Gtid as read: a relay apply turns it to
	// No, and it is put back.
	UsingGTID string
}

// SalvagePlan is what applying a print adds to a candidate (CheckSalvage).
type SalvagePlan struct {
	// GTIDs are the print's transactions, in order.
	GTIDs []string
	// After is the candidate's executed set once they are applied.
	After GTIDSet
}

// CheckSalvage checks that print's transactions continue candidate's executed set
// (read from the candidate) with nothing missing in between and nothing it has
// already: the first file printed starts with a Gtid_list the candidate contains
// (so every transaction logged between the candidate's position and the first one
// printed would have been printed), and within each domain every printed
// transaction's sequence number is above the candidate's position and above the
// one printed before it. A candidate whose position is unknown (the zero set) is
// refused: an unknown position is not an empty one.
func CheckSalvage(print BinlogPrint, candidate GTIDSet) (SalvagePlan, error) {
	if candidate.Flavor() != FlavorMariaDB {
		return SalvagePlan{}, fmt.Errorf("check salvage: the candidate's position is unknown (flavor %s)", candidate.Flavor())
	}
	if len(print.Txns) == 0 {
		return SalvagePlan{After: candidate.Clone()}, nil
	}
	if !print.HasGTIDList {
		return SalvagePlan{}, errors.New("check salvage: the print has no Gtid_list event: where its first file starts is not known")
	}
	list, err := ParseGTIDSet(FlavorMariaDB, print.GTIDList)
	if err != nil {
		return SalvagePlan{}, fmt.Errorf("check salvage: the first file's Gtid_list: %w", err)
	}
	if !candidate.Contain(list) {
		return SalvagePlan{}, fmt.Errorf("check salvage: the first file read starts after [%s], which the candidate's %s lacks: %w", print.GTIDList, candidate.Position(), ErrSalvageGap)
	}
	last := map[uint32]uint64{}
	for d, g := range candidate.positions() {
		last[d] = g.SequenceNumber
	}
	after := candidate.Clone()
	plan := SalvagePlan{}
	for _, tx := range print.Txns {
		one, err := ParseGTIDSet(FlavorMariaDB, tx.GTID)
		if err != nil {
			return SalvagePlan{}, fmt.Errorf("check salvage: %w", err)
		}
		g := one.positions()
		for d, p := range g {
			if prev, ok := last[d]; ok && p.SequenceNumber <= prev {
				return SalvagePlan{}, fmt.Errorf("check salvage: transaction %s at %s:%d does not come after %d-%d in its domain: the print repeats or goes back", tx.GTID, tx.File, tx.Pos, d, prev)
			}
			last[d] = p.SequenceNumber
		}
		if after, err = after.Union(one); err != nil {
			return SalvagePlan{}, fmt.Errorf("check salvage: %w", err)
		}
		plan.GTIDs = append(plan.GTIDs, tx.GTID)
	}
	plan.After = after
	return plan, nil
}
