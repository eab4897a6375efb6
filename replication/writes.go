package replication

import (
	"context"
	"fmt"
	"time"
)

// Write is a transaction that has changed rows and is still open on a server.
type Write struct {
	ThreadID     int64
	Age          time.Duration
	RowsModified int64
	State        string // RUNNING, LOCK WAIT, ...
	Query        string // what it runs now, "" when idle inside the transaction
}

// OpenWrites lists the transactions older than olderThan that have modified rows
// and are still open, oldest first. A switchover waits for the old primary to apply
// nothing more, and a write that has run for a minute would hold writes blocked for
// as long as it takes to finish or roll back: better refused beforehand. Reads
// INFORMATION_SCHEMA.INNODB_TRX (the same on MySQL 8 and MariaDB; needs PROCESS),
// which InnoDB refreshes at most every 100 ms: a transaction that just ended may
// still be listed.
func (in *Instance) OpenWrites(ctx context.Context, olderThan time.Duration) ([]Write, error) {
	var out []Write
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		rows, err := s.conn.QueryContext(ctx, openWritesQuery, olderThan.Microseconds())
		if err != nil {
			return fmt.Errorf("read open transactions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var w Write
			var ageUS int64
			if err := rows.Scan(&w.ThreadID, &ageUS, &w.RowsModified, &w.State, &w.Query); err != nil {
				return fmt.Errorf("read open transactions: %w", err)
			}
			w.Age = time.Duration(ageUS) * time.Microsecond
			out = append(out, w)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("open writes on %s: %w", in.name, err)
	}
	return out, nil
}

const openWritesQuery = `SELECT trx_mysql_thread_id, TIMESTAMPDIFF(MICROSECOND, trx_started, NOW(6)) AS age_us,
       trx_rows_modified, trx_state, COALESCE(trx_query, '')
FROM information_schema.INNODB_TRX
WHERE trx_rows_modified > 0 AND TIMESTAMPDIFF(MICROSECOND, trx_started, NOW(6)) >= ?
ORDER BY trx_started`
