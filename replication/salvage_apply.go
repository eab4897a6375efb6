package replication

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Applying a salvage: the statements of a mariadb-binlog print (BinlogPrint.Script)
// run on one connection of Baton's account, in queries of many statements each
// (applySession: a query carries many transactions, BINLOG statements included),
// rather than through the mariadb client one round trip each: the round trips,
// not the server's work, were most of an apply's time (docs/BENCHMARKS.md).
//
// The print is made for the mariadb client: its DELIMITER lines and its "\C"
// (character set) command are the client's, not SQL. Batches leave the former
// out and turn the latter into the SET NAMES the client would send; any other
// client command is refused, never sent. Statements are those of the print, in
// its order, ended by its delimiter "/*!*/;" (an empty executable comment, then
// the semicolon the server splits on); a batch ends only where an event ends.

// salvageBatchBytes is about how much of a print one query carries.
const salvageBatchBytes = 128 << 10

var (
	printDelimiter = regexp.MustCompile(`^DELIMITER (/\*!\*/;|;)$`)
	printCharset   = regexp.MustCompile(`^/\*!\\C ([A-Za-z0-9_]+) \*/(/\*!\*/;)?$`)
)

// salvageBatches splits a print's script into queries of about size bytes each,
// cut only before an event's "# at" line where no statement is open. Lines are
// split on "\n" alone, as the client in binary mode reads them (a "\r" stays). A
// client command's line (DELIMITER, "\C") is taken as one only where the client
// would take it, outside any string, comment or statement (printLexer); one
// anywhere else is part of a statement's text, which Baton never changes, and the
// print is refused, as is one that ends inside a statement.
func salvageBatches(script []byte, size int) ([]string, error) {
	var out []string
	var cur strings.Builder
	lx := printLexer{delim: ";"}
	text := string(script)
	for len(text) > 0 {
		line := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		between := lx.between()
		switch {
		case strings.HasPrefix(line, "DELIMITER"), strings.HasPrefix(line, `/*!\`):
			if !between {
				return nil, fmt.Errorf("the print holds a client command's line inside a statement, string or comment (a literal's text?): %q", firstLine([]byte(line)))
			}
			if m := printDelimiter.FindStringSubmatch(line); m != nil {
				lx.delim = m[1]
				continue
			}
			m := printCharset.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("the print holds a client command Baton does not run: %q", firstLine([]byte(line)))
			}
			line = "SET NAMES " + m[1] + "/*!*/;"
		case cur.Len() >= size && between && printAt.MatchString(line):
			out = append(out, cur.String())
			cur.Reset()
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		lx.line(line)
	}
	if !lx.between() {
		return nil, errors.New("the print ends inside a statement, string or comment")
	}
	if strings.TrimSpace(cur.String()) != "" {
		out = append(out, cur.String())
	}
	return out, nil
}

// printLexer follows a print's text as the mariadb client reads it, far enough to
// know where statements end: quoted strings (single, double or back quotes; a
// backslash escapes the next character, as the client has it, except between back
// quotes, between double quotes under ANSI_QUOTES, and under NO_BACKSLASH_ESCAPES,
// the modes the print's own SET @@session.sql_mode lines set), comments (#, "-- ",
// /* */; an executable /*! */ comment is code), and the delimiter, which ends a
// statement only outside them.
type printLexer struct {
	delim string
	quote byte // the quote of the string it is in, 0 outside
	block bool // in a /* */ comment
	open  bool // a statement has begun and not ended
	// The session's sql_mode, as the print sets it: NO_BACKSLASH_ESCAPES and
	// ANSI_QUOTES change what a backslash does in a string.
	noBackslash, ansiQuotes bool
}

// sql_mode bits, as MariaDB 10.11's mariadb-binlog prints them (measured).
const (
	modeANSIQuotes        = 4
	modeNoBackslashEscape = 1048576
)

var printSQLMode = regexp.MustCompile(`^SET @@session\.sql_mode=(\d+)/\*!\*/;$`)

func (l *printLexer) between() bool { return l.quote == 0 && !l.block && !l.open }

// line reads one line (without its "\n"): a "#" or "-- " comment ends with it.
func (l *printLexer) line(s string) {
	if l.between() {
		if m := printSQLMode.FindStringSubmatch(s); m != nil {
			mode, _ := strconv.ParseUint(m[1], 10, 64)
			l.noBackslash, l.ansiQuotes = mode&modeNoBackslashEscape != 0, mode&modeANSIQuotes != 0
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case l.quote != 0:
			escapes := !l.noBackslash && l.quote != '`' && !(l.quote == '"' && l.ansiQuotes)
			if c == '\\' && escapes {
				i++
			} else if c == l.quote {
				l.quote = 0
			}
		case l.block:
			if c == '*' && i+1 < len(s) && s[i+1] == '/' {
				l.block = false
				i++
			}
		case strings.HasPrefix(s[i:], l.delim):
			l.open = false
			i += len(l.delim) - 1
		case c == '#' || c == '-' && strings.HasPrefix(s[i:], "--") && (i+2 == len(s) || s[i+2] == ' ' || s[i+2] == '\t'):
			return
		case c == '/' && strings.HasPrefix(s[i:], "/*") && !strings.HasPrefix(s[i:], "/*!") && !strings.HasPrefix(s[i:], "/*M!"):
			l.block = true
			i++
		case c == '\'' || c == '"' || c == '`':
			l.quote, l.open = c, true
		case c != ' ' && c != '\t' && c != '\r':
			l.open = true
		}
	}
}

// salvageGuardQuery refuses, in the applying session, a candidate that changed
// since the flow read it, or whose replication lock another session holds; the
// lock is then held by the session until it ends.
func salvageGuardQuery(g SalvageGuard) string {
	return fmt.Sprintf(`BEGIN NOT ATOMIC
  DECLARE got INT DEFAULT GET_LOCK('%s', 1);
  IF got IS NULL OR got <> 1 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'salvage: the replication lock is held by another session';
  END IF;
  IF @@GLOBAL.read_only = 0 THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'salvage: the candidate is writable';
  END IF;
  IF @@GLOBAL.gtid_binlog_state <> %s OR @@GLOBAL.gtid_slave_pos <> %s THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'salvage: the candidate changed since the flow read it';
  END IF;
END`, ReplicationLock, quote(g.BinlogState, false), quote(g.SlavePos, false))
}

// ApplySalvage applies script (a BinlogPrint's) to the server at addr, connecting
// as d says, on one session: replication is stopped (the flow stopped its IO
// thread; its SQL thread has applied its relay log), then a guard refuses a
// server that is writable, whose GTID state is not g's, or whose replication lock
// another session holds; the script's statements run in order, each transaction
// committed with its own GTID, and gtid_slave_pos moves to g.SlavePosAfter. The
// first error stops it: every transaction before it is committed, the one it hit
// is rolled back when the session ends (InnoDB), none after it runs. ctx bounds
// it: a query still running at its deadline, or on a connection that broke, is
// killed server-side and ApplySalvage returns once the session is gone, so nothing
// is applied after it returns; when that end is not seen the error wraps
// ErrSessionNotEnded. The account needs BINLOG REPLAY, READ_ONLY ADMIN and
// REPLICATION SLAVE ADMIN.
func ApplySalvage(ctx context.Context, d Dialer, addr string, script []byte, g SalvageGuard) error {
	if len(script) == 0 {
		return errors.New("apply salvage: nothing to apply")
	}
	if g.BinlogState == "" && g.SlavePos == "" && g.SlavePosAfter == "" {
		return errors.New("apply salvage: no guard: the candidate's GTID state was not read")
	}
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("apply salvage: no deadline")
	}
	batches, err := salvageBatches(script, salvageBatchBytes)
	if err != nil {
		return fmt.Errorf("apply salvage: %w", err)
	}
	db, err := d.Open(addr) // for the kill of an overrunning query, and what follows it
	if err != nil {
		return fmt.Errorf("apply salvage: %w", err)
	}
	defer db.Close()
	in, err := New(db, Config{Name: addr, Flavor: FlavorMariaDB, NoSpare: true})
	if err != nil {
		return fmt.Errorf("apply salvage: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultToolTimeout)
	defer cancel()
	a, err := dialApply(ctx, d, addr, in)
	if err != nil {
		return fmt.Errorf("apply salvage on %s: %w", addr, err)
	}
	defer a.close()
	err = func() error {
		// Stopped before the guard reads the GTID state: a SQL thread still running
		// (a relay apply's) would commit after the guard.
		if err := a.run(ctx, "STOP SLAVE", "STOP SLAVE;"); err != nil {
			return err
		}
		if err := a.run(ctx, "the guard", salvageGuardQuery(g)+";"); err != nil {
			return err
		}
		for i, b := range batches {
			if err := a.run(ctx, fmt.Sprintf("statements %d of %d", i+1, len(batches)), b); err != nil {
				return err
			}
		}
		end := "ROLLBACK;"
		if g.SlavePosAfter != "" {
			end += "\n" + setSlavePosQuery(g.SlavePosAfter) + ";"
		}
		return a.run(ctx, "the end of the apply", end)
	}()
	abandoned := a.broken // the session was killed: what it sent may land a little later
	if err != nil {
		if abandoned {
			if serr := settleBinlog(ctx, db); serr != nil {
				err = fmt.Errorf("%w; and %w", err, serr)
			}
		}
		return fmt.Errorf("apply salvage on %s: %w", addr, err)
	}
	return nil
}

// settleTimeout bounds settleBinlog, past the apply's own deadline; settleQuiet
// is how long the position must stay still.
const (
	settleTimeout = 300 * time.Millisecond
	settleQuiet   = 50 * time.Millisecond
)

// settleBinlog waits, after an apply whose session was killed, until the candidate's
// binary log position (@@gtid_binlog_pos) has not moved for settleQuiet, so that
// what the caller reads of it next is what was applied. Measured on MariaDB
// 10.11: a killed apply session's last commit showed there 3-4 ms after the
// session had left the process list (1 cut apply in 6). A position still moving
// at settleTimeout is ErrSessionNotEnded; one that cannot be read (the server
// gone) is an error of its own: the caller's next read fails as well.
func settleBinlog(ctx context.Context, db *sql.DB) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	read := func() (string, error) {
		var pos string
		err := db.QueryRowContext(sctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos)
		return pos, err
	}
	prev, err := read()
	if err != nil {
		return fmt.Errorf("the binary log position after the apply: %w", err)
	}
	still := time.Now()
	for time.Since(still) < settleQuiet {
		select {
		case <-sctx.Done():
			return fmt.Errorf("%w: the binary log position still moved %s after the apply stopped", ErrSessionNotEnded, settleTimeout)
		case <-time.After(5 * time.Millisecond):
		}
		cur, err := read()
		if err != nil {
			return fmt.Errorf("the binary log position after the apply: %w", err)
		}
		if cur != prev {
			prev, still = cur, time.Now()
		}
	}
	return nil
}
