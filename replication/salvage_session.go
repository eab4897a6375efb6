package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/baton-ha/baton/internal/rawconn"
)

// The salvage apply's session speaks the protocol through go-mysql's client, not
// through database/sql: MariaDB 10.11 answers a BINLOG statement (a row-based
// transaction's events) without the flag that says more results follow
// (measured), and go-sql-driver stops reading there, so each BINLOG statement had
// to end its query: one round trip per transaction. Here every query ends with a
// statement that fails on purpose with Baton's own message (endMessage), and its
// answers are read one by one until an error: that one says the query ran to its
// end, any other says where it stopped (the server runs nothing of a query after
// a failed statement). A query then carries many transactions.

// endMessage is the message of the error that ends the apply's query n: the
// session's id and n, which no statement of a print can know.
func endMessage(session int64, n int) string {
	return fmt.Sprintf("baton: end of salvage query %d of session %d", n, session)
}

// endStatement raises it. SIGNAL needs no stored program in MariaDB, and reads
// the same in every sql_mode a print may set (ORACLE's included).
func endStatement(msg string) string {
	return "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '" + msg + "'"
}

// applySession is one connection of an apply, with what is needed to kill it
// from elsewhere (in, another connection to the same server).
type applySession struct {
	c *client.Conn
	// id is the session's thread id, from the handshake: 32 bits there, as
	// MariaDB keeps its thread ids (and MySQL 8 its connection ids in practice).
	id      int64
	in      *Instance
	queries int
	broken  bool
}

// dialApply connects to addr as d says, with multi-statement queries allowed.
func dialApply(ctx context.Context, d Dialer, addr string, in *Instance) (*applySession, error) {
	mc, err := d.Config(addr)
	if err != nil {
		return nil, err
	}
	c, err := rawconn.Dial(ctx, mc, gomysql.CLIENT_MULTI_STATEMENTS|gomysql.CLIENT_MULTI_RESULTS)
	if err != nil {
		return nil, err
	}
	return &applySession{c: c, id: int64(c.GetConnectionID()), in: in}, nil
}

// close ends the session: with COM_QUIT when it is in step (the server then ends
// it, rolling back what is open and releasing its locks), else the socket only.
func (a *applySession) close() {
	if a.broken {
		a.c.Close()
		return
	}
	a.c.Quit()
}

// run sends stmts (whole statements, each ended by its delimiter) and
// applyEndStatement as one query and reads every answer. It gets ctx's time minus
// the kill's reserve (stmtDeadline); a query still running then, or whose
// connection broke, is killed server-side through another connection and its end
// awaited, so that nothing of it lands after run returns (else the error wraps
// ErrSessionNotEnded). An error the server answered ends only the query: the
// statements before the failed one ran, none after it.
func (a *applySession) run(ctx context.Context, what, stmts string) error {
	if a.broken {
		return fmt.Errorf("%s: connection already abandoned", what)
	}
	dl := stmtDeadline(ctx)
	sctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	if err := a.c.SetDeadline(dl); err != nil {
		return a.abandon(ctx, sctx, what, err)
	}
	// A cancelled ctx ends the wait at once, as a deadline would.
	stop := context.AfterFunc(sctx, func() { a.c.SetDeadline(time.Now()) })
	defer stop()
	a.queries++
	msg := endMessage(a.id, a.queries)
	err := a.exchange(stmts+"\n"+endStatement(msg), msg)
	if err == nil {
		return nil
	}
	var me *gomysql.MyError
	if errors.As(err, &me) {
		return fmt.Errorf("%s: %w", what, err) // the server answered: the query ended
	}
	return a.abandon(ctx, sctx, what, err)
}

// exchange writes query and reads its answers until the error that ends it: nil
// when that error is end's, the server's error otherwise. A statement's result set
// (ANALYZE TABLE's, a statement-logged call of a function that selects) is read
// and dropped, as the mariadb client would print it; an error among its rows is
// that statement's. Any other answer (a file request, which Baton never allows:
// CLIENT_LOCAL_FILES is not asked for) stops the exchange, out of step: the caller
// kills the session.
func (a *applySession) exchange(query, end string) error {
	a.c.ResetSequence()
	pkt := make([]byte, 5+len(query))
	pkt[4] = gomysql.COM_QUERY
	copy(pkt[5:], query)
	if err := a.c.WritePacket(pkt); err != nil {
		return err
	}
	for {
		p, err := a.c.ReadPacket()
		if err != nil {
			return err
		}
		switch {
		case len(p) == 0:
			return errors.New("an empty answer")
		case p[0] == gomysql.OK_HEADER:
			continue
		case p[0] == gomysql.ERR_HEADER:
			err := a.c.HandleErrorPacket(p)
			var me *gomysql.MyError
			if errors.As(err, &me) && me.Code == gomysql.ER_SIGNAL_EXCEPTION && me.Message == end {
				return nil
			}
			return err
		case p[0] == gomysql.LocalInFile_HEADER:
			return errors.New("the server asked for a local file")
		default:
			if err := a.dropResultSet(p); err != nil {
				return err
			}
		}
	}
}

// dropResultSet reads the rest of a result set whose first packet (the column
// count) is head: the column definitions and their EOF, then the rows to their EOF
// (the session does not ask for CLIENT_DEPRECATE_EOF). A row's packet that starts
// like an EOF is 9 bytes or more.
func (a *applySession) dropResultSet(head []byte) error {
	n, _, _ := gomysql.LengthEncodedInt(head)
	if n == 0 || n > 4096 {
		return fmt.Errorf("an answer that is neither OK, an error nor a result set (first byte %#x)", head[0])
	}
	eof := func(p []byte) bool { return len(p) > 0 && p[0] == gomysql.EOF_HEADER && len(p) < 9 }
	for i := uint64(0); i < n; i++ {
		if _, err := a.c.ReadPacket(); err != nil {
			return err
		}
	}
	p, err := a.c.ReadPacket()
	if err != nil {
		return err
	}
	if !eof(p) {
		return fmt.Errorf("a result set's columns not ended by EOF (first byte %#x)", firstByte(p))
	}
	for {
		p, err := a.c.ReadPacket()
		if err != nil {
			return err
		}
		if eof(p) {
			return nil
		}
		if len(p) > 0 && p[0] == gomysql.ERR_HEADER {
			return a.c.HandleErrorPacket(p)
		}
	}
}

func firstByte(p []byte) byte {
	if len(p) == 0 {
		return 0
	}
	return p[0]
}

// abandon closes the session after err (its query overran sctx, or the
// connection broke) and kills it server-side.
func (a *applySession) abandon(ctx, sctx context.Context, what string, err error) error {
	a.broken = true
	a.c.Close()
	return abandoned(what, err, sctx.Err(), a.in.endSession(ctx, a.id))
}
