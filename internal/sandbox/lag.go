package sandbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// replicationLock is Baton's server-side replication lock (replication.ReplicationLock:
// the sandbox cannot import replication, whose tests run sandboxes).
const replicationLock = "baton.replication"

// HoldBehind stops the IO thread of each replica and keeps it stopped until release
// is called: a root session of each holds the server's replication lock, which a
// replica's agent takes before it changes replication (it would otherwise start the
// thread again at its next pass). Meanwhile the replicas receive nothing: what the
// primary commits is on the primary alone, as behind a slow network with
// asynchronous replication. release lets go of every lock (the agents then start
// the threads again); it may be called more than once.
func (c *Cluster) HoldBehind(ctx context.Context, replicas ...string) (release func(), err error) {
	var conns []*sql.Conn
	var dbs []*sql.DB
	release = func() {
		for _, conn := range conns {
			// Closing the connection alone would give the session, lock held, back
			// to its pool.
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = conn.ExecContext(rctx, "DO RELEASE_LOCK(?)", replicationLock)
			cancel()
			conn.Close()
		}
		for _, db := range dbs {
			db.Close()
		}
		conns, dbs = nil, nil
	}
	for _, name := range replicas {
		n, err := c.Node(name)
		if err != nil {
			release()
			return nil, err
		}
		db, err := openSocketDB(n.Socket, "root", "")
		if err != nil {
			release()
			return nil, err
		}
		dbs = append(dbs, db)
		qctx, cancel := withTimeout(ctx, 10*time.Second)
		conn, err := db.Conn(qctx)
		if err == nil {
			conns = append(conns, conn)
			var got sql.NullInt64
			err = conn.QueryRowContext(qctx, "SELECT GET_LOCK(?, 5)", replicationLock).Scan(&got)
			if err == nil && got.Int64 != 1 {
				err = errors.New("held by another session")
			}
			if err == nil {
				_, err = conn.ExecContext(qctx, "STOP SLAVE IO_THREAD")
			}
		}
		cancel()
		if err != nil {
			release()
			return nil, fmt.Errorf("hold %s behind: %w", name, err)
		}
	}
	return release, nil
}
