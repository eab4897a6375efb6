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
// statement that fails on purpose with Baton's own message (applyEnd), and its
// answers are read one by one until an error: that one says the query ran to its
// end, any other says where it stopped (the server runs nothing of a query after
// a failed statement). A query then carries many transactions.

// applyEnd is the message of the error that ends each query of an apply.
const applyEnd = "baton: end of the salvage query"

// applyEndStatement raises it. SIGNAL needs no stored program in MariaDB, and
// reads the same in every sql_mode a print may set.
const applyEndStatement = "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '" + applyEnd + "'"

// applySession is one connection of an apply, with what is needed to kill it
// from elsewhere (in, another connection to the same server).
type applySession struct {
	c      *client.Conn
	id     int64
	in     *Instance
	broken bool
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

func (a *applySession) close() { a.c.Close() }

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
	sctx, cancel := context.WithDeadline(ctx, stmtDeadline(ctx))
	defer cancel()
	if err := a.c.SetDeadline(stmtDeadline(ctx)); err != nil {
		return a.abandon(ctx, what, err, sctx)
	}
	// A cancelled ctx ends the wait at once, as a deadline would.
	stop := context.AfterFunc(sctx, func() { a.c.SetDeadline(time.Now()) })
	defer stop()
	err := a.exchange(stmts + "\n" + applyEndStatement)
	if err == nil {
		return nil
	}
	var me *gomysql.MyError
	if errors.As(err, &me) {
		return fmt.Errorf("%s: %w", what, err) // the server answered: the query ended
	}
	return a.abandon(ctx, what, err, sctx)
}

// exchange writes query and reads its answers until the error that ends it:
// nil when that error is applyEnd's, the server's error otherwise. Any other
// answer than OK or an error (a result set, a file request) is not one a print's
// statements give: the exchange stops there and the connection is not used again.
func (a *applySession) exchange(query string) error {
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
		case len(p) > 0 && p[0] == gomysql.OK_HEADER:
			continue
		case len(p) > 0 && p[0] == gomysql.ERR_HEADER:
			err := a.c.HandleErrorPacket(p)
			var me *gomysql.MyError
			if errors.As(err, &me) && me.Code == gomysql.ER_SIGNAL_EXCEPTION && me.Message == applyEnd {
				return nil
			}
			return err
		default:
			return fmt.Errorf("an answer that is neither OK nor an error (first byte %#x)", firstByte(p))
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
func (a *applySession) abandon(ctx context.Context, what string, err error, sctx context.Context) error {
	a.broken = true
	a.c.Close()
	kerr := a.in.endSession(ctx, a.id)
	switch {
	case sctx.Err() != nil && kerr != nil:
		return fmt.Errorf("%s: did not finish in time (%w), and %w", what, sctx.Err(), kerr)
	case sctx.Err() != nil:
		return fmt.Errorf("%s: did not finish in time, killed server-side: %w", what, sctx.Err())
	case kerr != nil:
		return fmt.Errorf("%s: the connection broke (%w), and %w", what, err, kerr)
	}
	return fmt.Errorf("%s: the connection broke, killed server-side: %w", what, err)
}
