package replication

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Applying a salvage: the statements of a mariadb-binlog print (BinlogPrint.Script)
// run on one connection of Baton's account, several hundred at a time as one
// multi-statement query, rather than through the mariadb client one round trip
// each: the client's round trips, not the server's work, were most of an apply's
// time (1,000 transactions: 0.5-0.7 s through the client, 0.1 s this way when the
// server's commits do not wait on the disk; docs/BENCHMARKS.md).
//
// The print is made for the mariadb client: its DELIMITER lines and its "\C"
// (character set) command are the client's, not SQL. Batches leave the former
// out and turn the latter into the SET NAMES the client would send; any other
// client command is refused, never sent. Statements are those of the print, in
// its order, ended by its delimiter "/*!*/;" (an empty executable comment, then
// the semicolon the server splits on); a batch ends only where an event ends, and
// always after a BINLOG statement (row events): MariaDB 10.11 answers one without
// the flag that says more results follow, so nothing may follow it in its query.
// A row-based transaction is thus one round trip.

// salvageBatchBytes is about how much of a print one query carries.
const salvageBatchBytes = 128 << 10

var (
	printDelimiter = regexp.MustCompile(`^DELIMITER (/\*!\*/;|;)$`)
	printCharset   = regexp.MustCompile(`^/\*!\\C ([A-Za-z0-9_]+) \*/(/\*!\*/;)?$`)
)

// salvageBatches splits a print's script into queries of about size bytes each,
// cut only before an event's "# at" line that follows a statement's end, and
// after every BINLOG statement.
func salvageBatches(script []byte, size int) ([]string, error) {
	var out []string
	var cur strings.Builder
	prevEnded, inBinlog := false, false
	sc := bufio.NewScanner(bytes.NewReader(script))
	sc.Buffer(make([]byte, 0, 64<<10), len(script)+1)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "DELIMITER"):
			if !printDelimiter.MatchString(line) {
				return nil, fmt.Errorf("the print sets an unknown delimiter: %q", line)
			}
			continue
		case strings.HasPrefix(line, `/*!\`):
			m := printCharset.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("the print holds a client command Baton does not run: %q", line)
			}
			line = "SET NAMES " + m[1] + "/*!*/;"
		case cur.Len() >= size && prevEnded && printAt.MatchString(line):
			out = append(out, cur.String())
			cur.Reset()
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		prevEnded = strings.HasSuffix(line, "/*!*/;")
		switch {
		case line == "BINLOG '":
			inBinlog = true
		case inBinlog && prevEnded:
			// MariaDB 10.11 answers a BINLOG statement without the flag that says
			// more results follow (measured): the driver reads no further, and the
			// answers of the statements after it in the same query would meet the
			// next query ("commands out of sync"). A BINLOG statement ends its query.
			inBinlog = false
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the print: %w", err)
	}
	if strings.TrimSpace(cur.String()) != "" {
		out = append(out, cur.String())
	}
	return out, nil
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
// as d says, on one session: first a guard refuses a server that is writable,
// whose GTID state is not g's, or whose replication lock another session holds;
// then replication is stopped (the flow stopped its IO thread; its SQL thread has
// applied its relay log), the script's statements run in order, each transaction
// committed with its own GTID, and gtid_slave_pos moves to g.SlavePosAfter. The
// first error stops it: every transaction before it is committed, the one it hit
// is rolled back when the session ends (InnoDB), none after it runs. ctx bounds
// it: a query still running at its deadline is killed server-side, so nothing is
// applied after ApplySalvage returns. The account needs BINLOG REPLAY, READ_ONLY
// ADMIN and REPLICATION SLAVE ADMIN.
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
	mc, err := d.Config(addr)
	if err != nil {
		return fmt.Errorf("apply salvage: %w", err)
	}
	mc.MultiStatements = true
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return fmt.Errorf("apply salvage: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	in, err := New(db, Config{Name: addr, Flavor: FlavorMariaDB})
	if err != nil {
		return fmt.Errorf("apply salvage: %w", err)
	}
	err = in.call(ctx, DefaultToolTimeout, func(ctx context.Context, s *serverConn) error {
		if err := s.execAs(ctx, "the guard", salvageGuardQuery(g)); err != nil {
			return err
		}
		if err := s.exec(ctx, "STOP SLAVE"); err != nil {
			return err
		}
		for i, b := range batches {
			if err := s.execAs(ctx, fmt.Sprintf("statements %d of %d", i+1, len(batches)), b); err != nil {
				return err
			}
		}
		if err := s.exec(ctx, "ROLLBACK"); err != nil {
			return err
		}
		if g.SlavePosAfter != "" {
			return s.exec(ctx, setSlavePosQuery(g.SlavePosAfter))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply salvage on %s: %w", addr, err)
	}
	return nil
}
