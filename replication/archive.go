package replication

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// A node's errant transactions, kept and undone with MariaDB's own client programs:
// mariadb-binlog reads the server's binary log over its replication protocol
// (--read-from-remote-server) and prints events as a DBA knows them, or their
// reverse (--flashback); mariadb applies a script. The archive is written before
// anything is undone or discarded, and nothing is undone that it does not hold.
//
// MariaDB only: MySQL has no flashback, and Tools refuses it (ErrRepairUnsupported).

// DefaultToolTimeout bounds one run of a client program.
const DefaultToolTimeout = 30 * time.Second

// MaxArchive bounds an archive's size: errant transactions beyond it are more than
// a node should undo by itself.
const MaxArchive = 64 << 20

// Tools runs MariaDB's client programs against one server, with one account. The
// password goes into a defaults file (mode 0600, in Dir, removed after the run),
// never onto a command line.
type Tools struct {
	// Binlog and Client are the programs mariadb-binlog and mariadb; "" finds
	// them in PATH.
	Binlog, Client string
	// Addr is the server: host:port, or unix:/path for its socket.
	Addr           string
	User, Password string
	// TLS makes TCP connections use TLS, with the CA, certificate and key files
	// given (any may be empty), verifying the server's certificate unless
	// SkipVerify. Not used over the socket.
	TLS                    bool
	TLSCA, TLSCert, TLSKey string
	SkipVerify             bool
	// Dir is where the defaults file lives while a program runs.
	Dir string
	// Timeout bounds each run; zero is DefaultToolTimeout.
	Timeout time.Duration
}

// ErrantRange is a stretch of one (domain, server_id)'s errant transactions: every
// sequence after After up to Last. After is what the primary has of that
// (domain, server_id): the last point the node shares with it.
type ErrantRange struct {
	Domain, ServerID uint32
	After, Last      uint64
}

func (r ErrantRange) String() string {
	return fmt.Sprintf("%d-%d-%d..%d", r.Domain, r.ServerID, r.After+1, r.Last)
}

// ErrantRanges lists the ranges of a MariaDB errant set against primary (see
// Errant), in order.
func ErrantRanges(errant GTIDSet, primary Server) []ErrantRange {
	if errant.flavor != FlavorMariaDB || errant.maria == nil {
		return nil
	}
	var out []ErrantRange
	for _, g := range sortedMaria(errant.maria) {
		r := ErrantRange{Domain: g.DomainID, ServerID: g.ServerID, Last: g.SequenceNumber}
		if p := primary.Executed; p.flavor == FlavorMariaDB && p.maria != nil {
			if pg, ok := p.maria.Sets[g.DomainID][g.ServerID]; ok {
				r.After = pg.SequenceNumber
			}
		}
		if r.Last > r.After {
			out = append(out, r)
		}
	}
	return out
}

// Archived says what an archive holds.
type Archived struct {
	Path string `json:"path"`
	// GTIDs are the errant GTIDs found in it, in order.
	GTIDs []string `json:"gtids"`
	Bytes int64    `json:"bytes"`
}

// ErrArchiveIncomplete: the archive does not hold every errant transaction the
// inspection found real; nothing may be undone or discarded on it.
var ErrArchiveIncomplete = errors.New("replication: archive does not hold every errant transaction")

// archivedGTID is a GTID event as mariadb-binlog prints it: "... GTID 0-2-15 trans".
var archivedGTID = regexp.MustCompile(`(?m)^#.*\sGTID (\d+-\d+-\d+)(?:\s|$)`)

// Archive writes to path the events of ev's errant transactions, as mariadb-binlog
// --verbose prints them: the BINLOG statements a DBA can apply again (`mariadb <
// path`) with each row change decoded in a comment, after header (comment lines:
// the node, the GTIDs, their times and tables). It fails, and leaves no file, unless
// the archive holds every GTID the inspection found written whole (ErrArchiveIncomplete),
// or when it would exceed MaxArchive. The file is written whole or not at all (a
// temporary file renamed into place).
func (t Tools) Archive(ctx context.Context, ev ErrantEvidence, primary Server, header, path string) (Archived, error) {
	if ev.Flavor != FlavorMariaDB {
		return Archived{}, fmt.Errorf("archive errant transactions: %w", ErrRepairUnsupported)
	}
	if len(ErrantRanges(ev.Errant, primary)) == 0 {
		return Archived{}, errors.New("archive errant transactions: no errant range")
	}
	var body bytes.Buffer
	for _, r := range readableRanges(ev, primary) {
		out, err := t.binlog(ctx, r, "--verbose", r.Last)
		if err != nil && len(out) == 0 {
			return Archived{}, err
		}
		fmt.Fprintf(&body, "\n-- errant range %s (server_id %d, after %d-%d-%d)\n", r, r.ServerID, r.Domain, r.ServerID, r.After)
		body.Write(out)
		if err != nil {
			// A binary log whose tail was never written whole (the disk filled up)
			// stops the program there, after it printed everything before: what it
			// printed is kept, and the check below says whether it is enough.
			fmt.Fprintf(&body, "\n-- mariadb-binlog stopped before %d-%d-%d: %s\n", r.Domain, r.ServerID, r.Last, oneLine(err.Error()))
		}
		if body.Len() > MaxArchive {
			return Archived{}, fmt.Errorf("archive errant transactions: over %d bytes", MaxArchive)
		}
	}
	for _, tx := range ev.Txns {
		if tx.First == nil && tx.Kind != ErrantPhantom {
			fmt.Fprintf(&body, "\n-- %s (%s): not in the binary logs, not kept here: %s\n", tx.GTID, tx.Kind, oneLine(tx.Note))
		}
	}
	got := map[string]bool{}
	var gtids []string
	for _, m := range archivedGTID.FindAllSubmatch(body.Bytes(), -1) {
		g := string(m[1])
		if !got[g] {
			got[g] = true
			gtids = append(gtids, g)
		}
	}
	var missing []string
	for _, tx := range ev.Txns {
		if tx.Kind == ErrantReal && tx.First != nil && !got[tx.GTID] {
			missing = append(missing, tx.GTID)
		}
	}
	if len(missing) > 0 {
		return Archived{}, fmt.Errorf("archive errant transactions: %s not read back from the binary log: %w", strings.Join(missing, ", "), ErrArchiveIncomplete)
	}
	var out bytes.Buffer
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		out.WriteString("-- " + l + "\n")
	}
	out.Write(body.Bytes())
	if err := writeWhole(path, out.Bytes()); err != nil {
		return Archived{}, fmt.Errorf("archive errant transactions: %w", err)
	}
	return Archived{Path: path, GTIDs: gtids, Bytes: int64(out.Len())}, nil
}

// ErrNotUndoable: an errant transaction is not row changes to transactional tables
// alone, written whole: flashback cannot undo it inside one transaction.
var ErrNotUndoable = errors.New("replication: errant transaction cannot be undone in place")

// flashbackBegin is how mariadb-binlog --flashback opens each reversed transaction:
// on one line for a transactional one (its group ended by an Xid), on two
// ("START TRANSACTION" then "/*!*/;") for one ended by a COMMIT statement.
var flashbackBegin = regexp.MustCompile(`(?m)^START TRANSACTION(?:/\*!\*/;)?\s*$`)

// Flashback writes to path the statements that undo ev's errant transactions:
// mariadb-binlog --flashback, every row event reversed, the newest first. Only row
// events of transactional tables, written whole, are reversed: any other real
// errant transaction makes it fail with ErrNotUndoable, and a script that does not
// reverse every one of them with ErrArchiveIncomplete.
func (t Tools) Flashback(ctx context.Context, ev ErrantEvidence, primary Server, path string) error {
	if ev.Flavor != FlavorMariaDB {
		return fmt.Errorf("flashback errant transactions: %w", ErrRepairUnsupported)
	}
	for _, tx := range ev.Txns {
		if tx.Kind != ErrantReal {
			continue
		}
		if tx.First == nil || !tx.RowsOnly || !tx.Transactional {
			return fmt.Errorf("flashback errant transactions: %s (tables %s, rows only %v, ended by an Xid %v): %w",
				tx.GTID, strings.Join(tx.Tables, ", "), tx.RowsOnly, tx.Transactional, ErrNotUndoable)
		}
	}
	ranges := readableRanges(ev, primary)
	var body bytes.Buffer
	// The newest range first: each one's output is already reversed within it.
	for i := len(ranges) - 1; i >= 0; i-- {
		r := ranges[i]
		// Read up to the range's last transaction in the binary log, no further:
		// mariadb-binlog --flashback prints nothing at all when it meets an
		// unreadable tail (the phantoms of a full disk lie there).
		stop, want := lastReadable(ev, r)
		if want == 0 {
			continue
		}
		out, err := t.binlog(ctx, r, "--flashback", stop)
		if err != nil {
			return err
		}
		// Never a partial undo: the script must reverse every one of them.
		if got := len(flashbackBegin.FindAll(out, -1)); got != want {
			return fmt.Errorf("flashback errant range %s: %d transactions reversed, want %d: %w", r, got, want, ErrArchiveIncomplete)
		}
		body.Write(out)
		if body.Len() > MaxArchive {
			return fmt.Errorf("flashback errant transactions: over %d bytes", MaxArchive)
		}
	}
	if err := writeWhole(path, body.Bytes()); err != nil {
		return fmt.Errorf("flashback errant transactions: %w", err)
	}
	return nil
}

// Apply runs the statements in path on the server, on one session with
// sql_log_bin=0: what it changes is written to no binary log and takes no GTID.
// The account needs BINLOG REPLAY for BINLOG statements.
func (t Tools) Apply(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("apply %s: %w", path, err)
	}
	defer f.Close()
	stdin := io.MultiReader(strings.NewReader("SET SESSION sql_log_bin = 0;\n"), f)
	if _, err := t.run(ctx, t.client(), stdin, "--batch", "--binary-mode"); err != nil {
		return fmt.Errorf("apply %s: %w", path, err)
	}
	return nil
}

// ErrUndoneBefore: the flashback of this errant set was applied before (its mark is
// in baton.undo); applying it again would undo the same changes twice.
var ErrUndoneBefore = errors.New("replication: this errant set was undone before")

// undoTable keeps, on the node alone (never binlogged), one row per errant set whose
// flashback was applied, written in the flashback's own transaction.
const undoTable = "CREATE TABLE IF NOT EXISTS baton.undo (errant_sha CHAR(64) NOT NULL PRIMARY KEY, errant TEXT NOT NULL, at DATETIME(6) NOT NULL)"

// Undo applies the flashback script in path (Flashback's) on the server in ONE
// transaction, on a session with sql_log_bin=0 (nothing binlogged, no GTID: the
// GTID state is set apart, by RepairErrant), together with a mark for errant in
// baton.undo. Either every reversed row and the mark are committed, or none: an
// agent killed mid-way leaves the data as it was, and a second run of the same
// errant set fails on the mark's key (ErrUndoneBefore) instead of undoing the same
// changes twice. Row changes to non-transactional tables cannot be undone so: the
// caller undoes only transactions of InnoDB row events (RowsOnly).
func (t Tools) Undo(ctx context.Context, path, errant string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("undo %s: %w", path, err)
	}
	sha := fmt.Sprintf("%x", sha256.Sum256([]byte(errant)))
	mark := fmt.Sprintf("INSERT INTO baton.undo (errant_sha, errant, at) VALUES ('%s', %s, NOW(6));\n", sha, quote(errant, false))
	body := oneTransaction(string(b))
	if l := transactionControl(body); l != "" {
		// It would end the one transaction early: what came before it committed
		// alone, without its mark.
		return fmt.Errorf("undo %s: the script still controls transactions (%q): %w", path, l, ErrNotUndoable)
	}
	script := "SET SESSION sql_log_bin = 0;\n" + undoTable + ";\nSTART TRANSACTION;\n" + mark + body + "\nCOMMIT;\n"
	if _, err := t.run(ctx, t.client(), strings.NewReader(script), "--batch", "--binary-mode"); err != nil {
		if done, derr := t.undone(ctx, sha); derr == nil && done {
			return fmt.Errorf("undo %s: %w", path, ErrUndoneBefore)
		}
		return fmt.Errorf("undo %s: %w", path, err)
	}
	return nil
}

// undone says whether baton.undo holds the mark of the errant set whose hash is sha.
func (t Tools) undone(ctx context.Context, sha string) (bool, error) {
	out, err := t.run(ctx, t.client(), strings.NewReader("SELECT COUNT(*) FROM baton.undo WHERE errant_sha = '"+sha+"';\n"), "--batch", "--skip-column-names")
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(out)) == "1", nil
}

// oneTransaction makes a script of mariadb-binlog --flashback (one or several of
// them, one after another) run inside the caller's transaction: each reversed
// transaction's START TRANSACTION and COMMIT, and the ROLLBACKs the program puts
// before its first event and at its end, are taken out, and so are its settings of
// the session's GTID domain and sequence (not allowed inside a transaction, and
// meaningless with sql_log_bin=0: nothing takes a GTID).
func oneTransaction(script string) string {
	var out []string
	lines := strings.Split(script, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		low := strings.ToLower(l)
		switch {
		case strings.Contains(low, "set @@session.gtid_domain_id") || strings.Contains(low, "set @@session.gtid_seq_no"):
			continue
		case l == "START TRANSACTION/*!*/;", l == "ROLLBACK/*!*/;", strings.HasPrefix(l, "ROLLBACK /* added by"):
			continue
		case l == "START TRANSACTION" && i+1 < len(lines) && strings.TrimSpace(lines[i+1]) == "/*!*/;":
			i++ // a group ended by a COMMIT statement: opened on two lines
			continue
		case l == "COMMIT" && i+1 < len(lines) && strings.TrimSpace(lines[i+1]) == "/*!*/;":
			i++ // the statement ends on the next line, under DELIMITER /*!*/;
			continue
		case l == "COMMIT/*!*/;":
			continue
		}
		out = append(out, lines[i])
	}
	return strings.Join(out, "\n")
}

// transactionControl returns the first line of script that begins, ends or rolls
// back a transaction (as mariadb-binlog prints them, in capitals), or "".
func transactionControl(script string) string {
	for _, l := range strings.Split(script, "\n") {
		l = strings.TrimSpace(l)
		for _, w := range []string{"START TRANSACTION", "BEGIN", "COMMIT", "ROLLBACK", "XA"} {
			if rest, ok := strings.CutPrefix(l, w); ok && (rest == "" || strings.HasPrefix(rest, "/*") || strings.HasPrefix(rest, ";") || strings.HasPrefix(rest, " ")) {
				return l
			}
		}
	}
	return ""
}

// readableRanges are ev's errant ranges as the binary logs can still give them:
// each starts no earlier than what the oldest binary log's Gtid_list says was
// logged before it (purged: mariadb-binlog cannot start there), and a range
// wholly purged is left out.
func readableRanges(ev ErrantEvidence, primary Server) []ErrantRange {
	var out []ErrantRange
	for _, r := range ErrantRanges(ev.Errant, primary) {
		if ev.HasOldest && ev.Oldest.flavor == FlavorMariaDB && ev.Oldest.maria != nil {
			if g, ok := ev.Oldest.maria.Sets[r.Domain][r.ServerID]; ok && g.SequenceNumber > r.After {
				r.After = g.SequenceNumber
			}
		}
		if r.Last > r.After {
			out = append(out, r)
		}
	}
	return out
}

// lastReadable is the sequence of r's last transaction found in the binary log
// (the inspection read its first event), and how many of r's are so found.
func lastReadable(ev ErrantEvidence, r ErrantRange) (last uint64, n int) {
	for _, tx := range ev.Txns {
		g, err := gomysql.ParseMariadbGTID(tx.GTID)
		if err != nil || tx.First == nil || tx.Kind != ErrantReal || g.DomainID != r.Domain || g.ServerID != r.ServerID ||
			g.SequenceNumber <= r.After || g.SequenceNumber > r.Last {
			continue
		}
		n++
		last = max(last, g.SequenceNumber)
	}
	return last, n
}

// binlog runs mariadb-binlog over the server's replication protocol for range r
// up to sequence stop, with the extra flag (--verbose, --flashback), and returns
// what it printed; with an error too, when it printed anything before failing.
func (t Tools) binlog(ctx context.Context, r ErrantRange, flag string, stop uint64) ([]byte, error) {
	first, err := t.firstLog(ctx)
	if err != nil {
		return nil, err
	}
	args := []string{"--read-from-remote-server", "--to-last-log", flag,
		"--start-position=" + fmt.Sprintf("%d-%d-%d", r.Domain, r.ServerID, r.After),
		"--stop-position=" + fmt.Sprintf("%d-%d-%d", r.Domain, r.ServerID, stop),
		"--server-id=" + strconv.FormatUint(uint64(r.ServerID), 10), first}
	out, err := t.run(ctx, t.binlogProgram(), nil, args...)
	if err != nil {
		return out, fmt.Errorf("read errant range %s from the binary log: %w", r, err)
	}
	return out, nil
}

// oneLine folds a message onto one line, for a comment in a script.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// firstLog names the oldest binary log file (SHOW BINARY LOGS), where
// mariadb-binlog starts to read; its GTID start position skips what comes before.
func (t Tools) firstLog(ctx context.Context) (string, error) {
	out, err := t.run(ctx, t.client(), strings.NewReader("SHOW BINARY LOGS;\n"), "--batch", "--skip-column-names")
	if err != nil {
		return "", fmt.Errorf("list binary logs: %w", err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	name, _, _ := strings.Cut(first, "\t")
	if name == "" {
		return "", errors.New("list binary logs: none (log_bin off?)")
	}
	return name, nil
}

func (t Tools) binlogProgram() string {
	if t.Binlog != "" {
		return t.Binlog
	}
	return "mariadb-binlog"
}

func (t Tools) client() string {
	if t.Client != "" {
		return t.Client
	}
	return "mariadb"
}

// run runs program with the server's connection options and the account in a
// defaults file, stdin if not nil, within Timeout, and returns its standard output
// (whatever it printed, with an error too); an error carries the end of its
// standard error.
func (t Tools) run(ctx context.Context, program string, stdin io.Reader, args ...string) ([]byte, error) {
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultToolTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defaults, err := t.defaultsFile()
	if err != nil {
		return nil, err
	}
	defer os.Remove(defaults)
	conn, err := t.connArgs()
	if err != nil {
		return nil, err
	}
	full := append([]string{"--defaults-extra-file=" + defaults}, conn...)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, program, full...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		// The client echoes the failing statement between dashes before its ERROR
		// line: the ERROR line is what says why.
		if i := strings.LastIndex(msg, "ERROR "); i >= 0 {
			msg = msg[i:]
		}
		if len(msg) > 500 {
			msg = msg[:500] + "..."
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		if msg == "" {
			// Killed at its deadline, a program says nothing.
			return out.Bytes(), fmt.Errorf("%s: %w", filepath.Base(program), err)
		}
		return out.Bytes(), fmt.Errorf("%s: %w: %s", filepath.Base(program), err, msg)
	}
	return out.Bytes(), nil
}

// connArgs are the options that reach the server at Addr.
func (t Tools) connArgs() ([]string, error) {
	if sock, ok := strings.CutPrefix(t.Addr, "unix:"); ok {
		return []string{"--socket=" + sock}, nil
	}
	host, port, err := SplitAddr(t.Addr)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", t.Addr, err)
	}
	args := []string{"--protocol=TCP", "--host=" + host, "--port=" + strconv.Itoa(port)}
	if t.TLS {
		args = append(args, "--ssl")
		for _, f := range [][2]string{{"--ssl-ca=", t.TLSCA}, {"--ssl-cert=", t.TLSCert}, {"--ssl-key=", t.TLSKey}} {
			if f[1] != "" {
				args = append(args, f[0]+f[1])
			}
		}
		if !t.SkipVerify {
			args = append(args, "--ssl-verify-server-cert")
		}
	}
	return args, nil
}

// defaultsFile writes the account to a new option file only this process can read.
func (t Tools) defaultsFile() (string, error) {
	dir := t.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, ".baton-client-*.cnf")
	if err != nil {
		return "", fmt.Errorf("client options file: %w", err)
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	// Option files take values in double quotes with backslash escapes.
	q := func(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` }
	if _, err := fmt.Fprintf(f, "[client]\nuser=%s\npassword=%s\n", q(t.User), q(t.Password)); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// writeWhole writes data to path through a temporary file in the same directory,
// synced and renamed: a reader finds the whole file or none.
func writeWhole(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
