package replication

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/failpoint"
)

var (
	// ErrWaitTimeout: the server did not execute the awaited GTID set in time.
	ErrWaitTimeout = errors.New("replication: gtid wait timed out")
	// ErrNotCaughtUp: Promote found received transactions not yet applied
	// and did not reset replication (that would throw them away).
	ErrNotCaughtUp = errors.New("replication: relay log not applied")
	// ErrNoSemiSync: the server has no semi-sync variables (MySQL without
	// the plugin).
	ErrNoSemiSync = errors.New("replication: semi-sync not available")
	// ErrRelayLogUnusable: the server cannot open or reset its relay log (error
	// 1373, "target log not found in binlog index", on CHANGE MASTER or RESET
	// SLAVE). MariaDB leaves it so when a relay log rotation meets a full disk
	// and the waiting statement is killed; nothing short of restarting mariadbd
	// mends it, and the server can neither replicate nor be promoted until then.
	ErrRelayLogUnusable = errors.New("replication: relay log unusable (restart mariadbd)")
	// ErrBusy: another session holds the server's replication lock (see
	// ReplicationLock): a change to its replication is under way.
	ErrBusy = errors.New("replication: another session is changing this server's replication")
)

// ReplicationLock is the name of the server-side lock (GET_LOCK) that Baton
// holds while it changes a server's replication: Follow from its check to its
// START SLAVE, StopIO around its STOP. Two processes act on a replica's
// threads, its agent (Follow) and a failover flow (StopIO) that may run
// elsewhere; the lock orders them. A flow announces itself in etcd, then
// stops the IO thread under the lock; an agent takes the lock, then confirms
// in etcd that no flow runs (Follow's confirm), then starts replication. So
// an agent's START SLAVE either comes before the flow's STOP, or is not done.
// The server releases the lock when the holding connection ends, killed or
// not.
const ReplicationLock = "baton.replication"

// Server errors Follow and Promote look for.
const (
	errMasterInfo       = 1201 // ER_MASTER_INFO: could not initialize master info structure
	errUnknownTargetLog = 1373 // ER_UNKNOWN_TARGET_BINLOG: target log not found in binlog index
)

// relayLogErr marks err as ErrRelayLogUnusable when it is error 1373.
func relayLogErr(err error) error {
	if isErrno(err, errUnknownTargetLog) {
		return fmt.Errorf("%w: %w", ErrRelayLogUnusable, err)
	}
	return err
}

// call runs fn on a fresh session under the call's deadline.
func (in *Instance) call(ctx context.Context, timeout time.Duration, fn func(ctx context.Context, s *serverConn) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := in.open(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	err = fn(ctx, s)
	if err == nil {
		in.keepSpare()
	}
	return err
}

// Status reads the server's role, read-only state, GTID sets, replication
// threads and semi-sync state. It only reads.
func (in *Instance) Status(ctx context.Context) (Status, error) {
	var st Status
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		var err error
		st, err = s.status(ctx)
		return err
	})
	if err != nil {
		return Status{}, fmt.Errorf("status of %s: %w", in.name, err)
	}
	return st, nil
}

// StopIO stops the replication IO (receiver) thread, so that the server
// receives nothing more from its source; with semi-sync, a primary can then
// no longer get this replica's acknowledgement. Harmless when already
// stopped or when the server is not a replica.
//
// It waits for the replication lock (ReplicationLock) as long as ctx allows,
// and returns ErrBusy if another session kept it.
func (in *Instance) StopIO(ctx context.Context) error {
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		if err := s.lockReplication(ctx); err != nil {
			return err
		}
		defer s.unlockReplication(ctx)
		return s.exec(ctx, stopIOQuery(s.flavor))
	})
	if err != nil {
		return fmt.Errorf("stop io thread on %s: %w", in.name, err)
	}
	return nil
}

// StopReplication stops both replication threads. Harmless when already
// stopped or when the server is not a replica.
func (in *Instance) StopReplication(ctx context.Context) error {
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		return s.exec(ctx, stopReplicationQuery(s.flavor))
	})
	if err != nil {
		return fmt.Errorf("stop replication on %s: %w", in.name, err)
	}
	return nil
}

// StartReplication starts both replication threads of an already configured
// replica (after StopIO or StopReplication). Harmless when running; an
// error when no source is configured (use Follow).
func (in *Instance) StartReplication(ctx context.Context) error {
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		return s.exec(ctx, startReplicationQuery(s.flavor))
	})
	if err != nil {
		return fmt.Errorf("start replication on %s: %w", in.name, err)
	}
	return nil
}

// SetReadOnly turns read_only on or off (on MySQL super_read_only as well)
// and reads the result back. Setting a value the server already has is
// harmless and, on MariaDB, does not wait for running commits.
func (in *Instance) SetReadOnly(ctx context.Context, on bool) error {
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		return s.setReadOnly(ctx, on)
	})
	if err != nil {
		return fmt.Errorf("set read_only=%t on %s: %w", on, in.name, err)
	}
	return nil
}

func (s *serverConn) setReadOnly(ctx context.Context, on bool) error {
	q := "SELECT @@GLOBAL.read_only, 0"
	if s.flavor == FlavorMySQL {
		q = "SELECT @@GLOBAL.read_only, @@GLOBAL.super_read_only"
	}
	var ro, sro bool
	if err := s.conn.QueryRowContext(ctx, q).Scan(&ro, &sro); err != nil {
		return fmt.Errorf("read read_only: %w", err)
	}
	if ro == on && (s.flavor != FlavorMySQL || sro == on) {
		return nil // already so: the reconciler asks on every pass, and the log stays quiet
	}
	for _, q := range readOnlyQueries(s.flavor, on) {
		if err := s.exec(ctx, q); err != nil {
			return err
		}
	}
	if err := s.conn.QueryRowContext(ctx, q).Scan(&ro, &sro); err != nil {
		return fmt.Errorf("read back read_only: %w", err)
	}
	if ro != on || (s.flavor == FlavorMySQL && on && !sro) {
		return fmt.Errorf("read_only is %t (super_read_only %t) after setting it to %t", ro, sro, on)
	}
	s.in.log.Info("read_only set", zap.Bool("read_only", on))
	return nil
}

// WaitExecuted waits until the server has executed every transaction of
// set, at most timeout (never past ctx's deadline; zero means
// Config.Timeout). It returns ErrWaitTimeout (wrapped) when time runs out.
//
// MariaDB's MASTER_GTID_WAIT compares with gtid_slave_pos only, so domains
// that the server already has in its binlog (a former primary's own writes)
// are not waited for; MySQL's WAIT_FOR_EXECUTED_GTID_SET compares with
// gtid_executed. The server-side wait ends a little before the deadline so
// the server, not a killed connection, reports the timeout.
func (in *Instance) WaitExecuted(ctx context.Context, set GTIDSet, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = in.timeout
	}
	start := time.Now()
	err := in.call(ctx, timeout, func(ctx context.Context, s *serverConn) error {
		return s.waitExecuted(ctx, set)
	})
	if err != nil {
		return fmt.Errorf("wait for %s to execute %s (%s): %w", in.name, set, time.Since(start).Round(time.Millisecond), err)
	}
	return nil
}

func (s *serverConn) waitExecuted(ctx context.Context, set GTIDSet) error {
	if set.IsEmpty() {
		return nil
	}
	if set.flavor != s.flavor {
		return fmt.Errorf("%s set on a %s server: %w", set.flavor, s.flavor, ErrFlavorMismatch)
	}
	st, err := s.status(ctx)
	if err != nil {
		return err
	}
	if st.Executed.Contain(set) {
		return nil
	}
	wait := set
	if s.flavor == FlavorMariaDB {
		wait = GTIDSet{flavor: FlavorMariaDB, maria: newMariaSet()}
		mine := st.Executed.positions()
		for d, g := range set.positions() {
			if m, ok := mine[d]; !ok || m.SequenceNumber < g.SequenceNumber {
				addMaria(wait.maria, g)
			}
		}
	}
	// The server ends its own wait a little before the deadline, so that it,
	// not a closed connection, reports the timeout. The wait changes
	// nothing, so a wait abandoned client-side (a server that stopped
	// answering) needs no kill: it ends on its own at its timeout.
	dl, _ := ctx.Deadline()
	left := time.Until(dl)
	serverTimeout := left - min(left/20, 50*time.Millisecond)
	if serverTimeout <= 0 {
		return ErrWaitTimeout
	}
	q := waitQuery(s.flavor, wait, serverTimeout)
	var res *int64
	if err := s.conn.QueryRowContext(ctx, q).Scan(&res); err != nil {
		if ctx.Err() != nil {
			s.broken = true // the driver closed the connection
			return fmt.Errorf("%w: %w", ErrWaitTimeout, ctx.Err())
		}
		return fmt.Errorf("%s: %w", q, err)
	}
	switch {
	case res == nil:
		return fmt.Errorf("%s returned NULL", q)
	case *res == 0:
		return nil
	default:
		return ErrWaitTimeout
	}
}

// Promote makes a replica a writable primary: it stops the IO thread, lets
// the SQL thread apply what was already received (within this call's
// time), stops replication, forgets the source (RESET SLAVE ALL / RESET
// REPLICA ALL) and turns read_only (and super_read_only) off.
//
// If received transactions are still unapplied, it returns ErrNotCaughtUp
// and leaves the source configured, so nothing received is thrown away; the
// caller should have waited with WaitExecuted first. Running it on a server
// that is already a primary only turns read_only off.
//
// With Config.SemiSync it turns the semi-sync source side on (and the
// replica side off) before read_only goes off, so no commit is ever
// acknowledged without a replica; a server without semi-sync is then an
// error, found before anything is changed.
func (in *Instance) Promote(ctx context.Context) error {
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		st, err := s.status(ctx)
		if err != nil {
			return err
		}
		if s.in.semiSync && !st.SemiSync.Available {
			return fmt.Errorf("config says semi-sync, the server has none: %w", ErrNoSemiSync)
		}
		if st.Role == RoleReplica {
			if err := s.exec(ctx, stopIOQuery(s.flavor)); err != nil {
				return err
			}
			if st, err = s.status(ctx); err != nil {
				return err
			}
			if !st.Executed.Contain(st.Retrieved) {
				if st.SQLThread != ThreadRunning {
					return fmt.Errorf("%w: SQL thread stopped (error %d: %s) with %s unapplied",
						ErrNotCaughtUp, st.LastSQLErrno, st.LastSQLError, st.Executed.Missing(st.Retrieved))
				}
				dl, _ := ctx.Deadline()
				wctx, cancel := context.WithTimeout(ctx, time.Until(dl)/2)
				err := s.waitExecuted(wctx, st.Retrieved)
				cancel()
				if err != nil {
					return fmt.Errorf("%w: %s still unapplied: %w", ErrNotCaughtUp, st.Executed.Missing(st.Retrieved), err)
				}
			}
			if err := s.exec(ctx, stopReplicationQuery(s.flavor)); err != nil {
				return err
			}
			if st, err = s.status(ctx); err != nil {
				return err
			}
			if !st.Executed.Contain(st.Retrieved) {
				return fmt.Errorf("%w: %s unapplied after stopping replication", ErrNotCaughtUp, st.Executed.Missing(st.Retrieved))
			}
			if err := s.exec(ctx, resetReplicationQuery(s.flavor)); err != nil {
				return relayLogErr(err)
			}
			s.in.log.Info("replication reset for promotion", zap.String("former_source", st.SourceHost), zap.Stringer("executed", st.Executed))
		}
		if s.in.semiSync {
			// Before the first write: no commit may go out unacknowledged.
			if err := s.setSemiSync(ctx, true, false); err != nil {
				return err
			}
		}
		return s.setReadOnly(ctx, false)
	})
	if err != nil {
		return fmt.Errorf("promote %s: %w", in.name, err)
	}
	return nil
}

// Follow makes the server a read-only replica of src with GTID
// auto-positioning (MariaDB MASTER_USE_GTID=slave_pos, MySQL
// SOURCE_AUTO_POSITION=1), a 1 s connect retry and a heartbeat, and starts
// replication. It turns read_only on first, so the server never replicates
// while writable.
//
// MariaDB: a former primary's gtid_slave_pos is behind its own binlog (it
// is empty, or where it stood when it was last a replica); replicating from
// there would fetch and re-apply transactions it already has (in strict
// mode: an error). So, with replication stopped, gtid_slave_pos is moved to
// the highest of gtid_binlog_pos and gtid_slave_pos in each domain (Status's
// Executed). A server with errant transactions then asks the new primary
// for a GTID it never had and its IO thread stops with error 1236, rather
// than diverging silently.
//
// With Config.SemiSync it turns the semi-sync source side off and the
// replica side on before starting replication.
//
// If the server already replicates from src (same host, port, user, TLS
// and CA file, GTID positioning, both threads running, no error), Follow
// only makes sure read_only is on: the reconciler may call it on every
// pass. A changed password is applied by StopReplication then Follow.
//
// Before it changes anything Follow takes the replication lock
// (ReplicationLock), waiting as long as ctx allows (ErrBusy if it could
// not), then calls confirm, if not nil, with the lock held: an error from
// confirm leaves replication as it is, and Follow returns it.
func (in *Instance) Follow(ctx context.Context, src Source, confirm func(context.Context) error) error {
	if err := src.validate(); err != nil {
		return fmt.Errorf("follow on %s: %w", in.name, err)
	}
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		if err := s.setReadOnly(ctx, true); err != nil {
			return err
		}
		st, err := s.status(ctx)
		if err != nil {
			return err
		}
		if following(st, src) {
			if !s.in.semiSync || !st.SemiSync.Available || st.SemiSync.ReplicaEnabled {
				return nil
			}
			// Drift: the replica side was turned off (by hand, a restart without it in
			// the configuration). It takes effect only when the IO thread reconnects:
			// set it up again below.
			s.in.log.Warn("repairing: semi-sync replica side was off on a replica", zap.String("source", src.Host))
		}
		if s.in.semiSync && !st.SemiSync.Available {
			return fmt.Errorf("config says semi-sync, the server has none: %w", ErrNoSemiSync)
		}
		if err := s.lockReplication(ctx); err != nil {
			return err
		}
		defer s.unlockReplication(ctx)
		if confirm != nil {
			if err := confirm(ctx); err != nil {
				return err
			}
		}
		if err := s.exec(ctx, stopReplicationQuery(s.flavor)); err != nil {
			return err
		}
		if s.flavor == FlavorMariaDB {
			if st, err = s.status(ctx); err != nil {
				return err
			}
			slave, err := ParseGTIDSet(FlavorMariaDB, st.MariaDB.SlavePos)
			if err != nil {
				return fmt.Errorf("gtid_slave_pos: %w", err)
			}
			if !slave.Equal(st.Executed) {
				if err := s.exec(ctx, setSlavePosQuery(st.Executed.Position())); err != nil {
					return err
				}
				s.in.log.Info("gtid_slave_pos moved to the binlog position",
					zap.String("from", st.MariaDB.SlavePos), zap.String("to", st.Executed.Position()))
			}
		}
		if s.in.semiSync {
			if err := s.setSemiSync(ctx, false, true); err != nil {
				return err
			}
		}
		change := changeSourceQuery(s.flavor, src, s.in.heartbeat, s.noBackslashEscapes)
		err = s.exec(ctx, change)
		if isErrno(err, errMasterInfo) {
			// After a restart that followed a broken relay log (see
			// ErrRelayLogUnusable) relay-log.info names a relay log that was never
			// written, and the server cannot set up its replica side. With GTID
			// positioning the relay logs are disposable (CHANGE MASTER to a new
			// source purges them too): reset them and try again.
			s.in.log.Warn("replica side would not initialize: resetting its relay logs", zap.Error(err))
			if err = s.exec(ctx, resetRelayLogsQuery(s.flavor)); err == nil {
				err = s.exec(ctx, change)
			}
		}
		if err != nil {
			return relayLogErr(err)
		}
		if err := s.exec(ctx, startReplicationQuery(s.flavor)); err != nil {
			return err
		}
		failpoint.Hit(failpoint.AfterStartSlave) // the replication lock still held
		s.in.log.Info("following", zap.String("source", src.Host), zap.Int("port", src.Port))
		return nil
	})
	if err != nil {
		return fmt.Errorf("follow %s:%d on %s: %w", src.Host, src.Port, in.name, err)
	}
	return nil
}

// following reports whether st already replicates from src as Follow would
// set it up.
func following(st Status, src Source) bool {
	gtid := st.AutoPosition
	if st.Flavor == FlavorMariaDB {
		gtid = st.MariaDB.UsingGTID == "Slave_Pos"
	}
	return st.Role == RoleReplica && st.SourceHost == src.Host && st.SourcePort == src.Port &&
		st.SourceUser == src.User && gtid && st.SourceSSL == src.TLS &&
		(!src.TLS || st.SourceSSLCA == src.SSLCA && st.SourceSSLVerify == src.SSLVerifyServerCert) &&
		st.IOThread != ThreadStopped && st.SQLThread == ThreadRunning &&
		st.LastIOErrno == 0 && st.LastSQLErrno == 0
}

// FenceReport says what Fence achieved. Every step is attempted even when
// an earlier one failed.
type FenceReport struct {
	// ReadOnly is true when read_only (and super_read_only) was set and read
	// back.
	ReadOnly bool
	// Killed is the number of client connections killed.
	Killed int
	// Spared is the number of connections left alone: replication threads,
	// daemons and Fence's own connection are not counted.
	Spared int
}

// Fence stops a primary from taking writes: read_only=ON (MySQL:
// super_read_only=ON), then it kills every client connection, sparing
// replication threads (a replica's threads run as "system user", a
// primary's Binlog Dump threads serve its replicas), the event scheduler,
// its own connection and those of its own account (Baton's: the coordinator
// and the agent may fence at once; applications must not use it). read_only gets half the call's time, the kills
// what they need, and if read_only failed and someone was killed, it is
// tried again with the time left.
//
// A SET GLOBAL read_only still running after fenceKillAfter waits for a
// writer: a commit hung on a full disk, a table lock, a long statement. The
// client connections are then killed while it waits (killing those hung
// writers releases them, seen on MariaDB 10.11), and killed again once it
// is set, for any that connected meanwhile: the kills come either way, and
// waiting for read_only's deadline first only held a failover (190 ms of
// the agent's 500 ms). A write that passed the read_only check before it
// was set is refused at its commit, which checks read_only again. If
// read_only still fails the error says it was not set. Fence returns within
// Config.Timeout whatever the server does. Harmless when repeated.
func (in *Instance) Fence(ctx context.Context) (FenceReport, error) {
	var rep FenceReport
	ctx, cancel := context.WithTimeout(ctx, in.timeout)
	defer cancel()
	dl, _ := ctx.Deadline()
	roCtx, roCancel := context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
	roDone := make(chan error, 1)
	started := make(chan struct{}) // the statement is sent: connecting is not waiting
	go func() {
		roDone <- in.call(roCtx, in.timeout, func(ctx context.Context, s *serverConn) error {
			close(started)
			return s.setReadOnly(ctx, true)
		})
	}()
	var roErr, earlyErr error
	select {
	case roErr = <-roDone:
	case <-started:
		wait := time.NewTimer(fenceKillAfter)
		select {
		case roErr = <-roDone:
		case <-wait.C:
			earlyErr = in.killClients(ctx, &rep)
			roErr = <-roDone
		}
		wait.Stop()
	}
	roCancel()
	rep.ReadOnly = roErr == nil
	if roErr != nil {
		roErr = fmt.Errorf("read_only: %w", roErr)
	}
	killErr := in.killClients(ctx, &rep)
	if roErr != nil && rep.Killed > 0 && time.Until(dl) > 50*time.Millisecond {
		// The writers read_only was waiting for may have been among the
		// killed (on MariaDB a write hung on a full disk does end when
		// killed), so try again with the time left.
		retry := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
			return s.setReadOnly(ctx, true)
		})
		if retry == nil {
			rep.ReadOnly, roErr = true, nil
		}
	}
	if killErr == nil && earlyErr != nil && !rep.ReadOnly {
		// The kills while read_only waited failed, and read_only was never set.
		killErr = earlyErr
	}
	if killErr != nil {
		killErr = fmt.Errorf("kill client connections: %w", killErr)
	}
	in.log.Info("fenced", zap.Bool("read_only", rep.ReadOnly), zap.Int("killed", rep.Killed),
		zap.NamedError("read_only_error", roErr), zap.NamedError("kill_error", killErr))
	if err := errors.Join(roErr, killErr); err != nil {
		return rep, fmt.Errorf("fence %s: %w", in.name, err)
	}
	return rep, nil
}

// fenceKillAfter: a SET GLOBAL read_only that has not returned by then waits
// for a writer (it takes milliseconds otherwise), so Fence kills the client
// connections without waiting for it (Fence).
const fenceKillAfter = 50 * time.Millisecond

// killClients kills every client connection Fence ends (clientsToKill),
// adding to rep's counts; Spared is that of the latest look.
func (in *Instance) killClients(ctx context.Context, rep *FenceReport) error {
	// Every connection taken, the administrator's extra one by read_only perhaps:
	// the spare, if one is held.
	return in.orSpare(ctx, in.call(ctx, in.timeout, in.killClientsOn(rep)), in.killClientsOn(rep))
}

// killClientsOn is killClients' work on one connection.
func (in *Instance) killClientsOn(rep *FenceReport) func(ctx context.Context, s *serverConn) error {
	return func(ctx context.Context, s *serverConn) error {
		var me string
		if err := s.conn.QueryRowContext(ctx, "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)").Scan(&me); err != nil {
			return fmt.Errorf("read own account: %w", err)
		}
		rows, err := s.queryRows(ctx, processlistQuery)
		if err != nil {
			return err
		}
		ps := make([]process, 0, len(rows))
		for _, r := range rows {
			id, err := strconv.ParseInt(r["ID"], 10, 64)
			if err != nil {
				return fmt.Errorf("process list id %q: %w", r["ID"], err)
			}
			ps = append(ps, process{ID: id, User: r["USER"], Command: r["COMMAND"], State: r["STATE"]})
		}
		ids := clientsToKill(ps, s.id, me)
		rep.Spared = len(ps) - len(ids)
		// KILL itself can block on MariaDB (it takes the victim's mutex),
		// so each is bounded by the call's deadline; no need to kill a KILL.
		for _, id := range ids {
			if err := killOn(ctx, s.conn, id); err != nil {
				return err
			}
			rep.Killed++
		}
		return nil
	}
}

// SetSemiSync turns the source and replica sides of semi-synchronous
// replication on or off (MariaDB rpl_semi_sync_master/slave_enabled, MySQL
// rpl_semi_sync_source/replica_enabled or the older names, whichever the
// server has). The replica side takes effect when the IO thread next
// connects (Follow, StartReplication). Harmless when repeated; ErrNoSemiSync
// when the server has no semi-sync.
func (in *Instance) SetSemiSync(ctx context.Context, source, replica bool) error {
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		return s.setSemiSync(ctx, source, replica)
	})
	if err != nil {
		return fmt.Errorf("set semi-sync source=%t replica=%t on %s: %w", source, replica, in.name, err)
	}
	return nil
}

func (s *serverConn) setSemiSync(ctx context.Context, source, replica bool) error {
	vars, err := s.queryKV(ctx, "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'")
	if err != nil {
		return err
	}
	cur := parseSemiSync(vars, nil)
	if !cur.Available {
		return ErrNoSemiSync
	}
	srcVar, repVar := semiSyncVars(vars)
	onOff := map[bool]string{true: "ON", false: "OFF"}
	if cur.SourceEnabled != source {
		if err := s.exec(ctx, "SET GLOBAL "+srcVar+" = "+onOff[source]); err != nil {
			return err
		}
	}
	if cur.ReplicaEnabled != replica {
		if err := s.exec(ctx, "SET GLOBAL "+repVar+" = "+onOff[replica]); err != nil {
			return err
		}
	}
	if cur.SourceEnabled == source && cur.ReplicaEnabled == replica {
		return nil
	}
	// Read back: a server that took the statement but did not change (a plugin that
	// refused, a variable another session set back) must not be taken as protected.
	vars, err = s.queryKV(ctx, "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'")
	if err != nil {
		return err
	}
	if now := parseSemiSync(vars, nil); now.SourceEnabled != source || now.ReplicaEnabled != replica {
		return fmt.Errorf("semi-sync is source=%t replica=%t after setting source=%t replica=%t", now.SourceEnabled, now.ReplicaEnabled, source, replica)
	}
	return nil
}

// lockReplication takes the server's replication lock (ReplicationLock) for
// this session, waiting until shortly before the statement deadline; ErrBusy
// when another session kept it that long. MariaDB waits fractions of a second;
// MySQL rounds the wait, so it is given whole seconds, rounded down (from the
// MySQL manual; not run here).
func (s *serverConn) lockReplication(ctx context.Context) error {
	if s.broken {
		return errors.New("take the replication lock: connection already abandoned")
	}
	dl := stmtDeadline(ctx)
	wait := max(time.Until(dl)-lockMargin, 0).Seconds()
	if s.flavor == FlavorMySQL {
		wait = float64(int(wait))
	}
	stmtCtx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	var got sql.NullInt64
	err := s.conn.QueryRowContext(stmtCtx, "SELECT GET_LOCK(?, ?)", ReplicationLock, wait).Scan(&got)
	if err != nil {
		if stmtCtx.Err() != nil {
			s.broken = true
			if kerr := s.kill(ctx); kerr != nil {
				return fmt.Errorf("take the replication lock (%w): %w", err, kerr)
			}
		}
		return fmt.Errorf("take the replication lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("replication lock %q held by connection %s: %w", ReplicationLock, s.lockHolder(ctx), ErrBusy)
	}
	return nil
}

// lockMargin is how long before the statement deadline GET_LOCK gives up, so that
// it answers rather than being killed.
const lockMargin = 50 * time.Millisecond

// lockHolder names the connection that holds the replication lock, for errors.
func (s *serverConn) lockHolder(ctx context.Context) string {
	if s.broken {
		return "?"
	}
	qctx, cancel := context.WithTimeout(ctx, lockMargin)
	defer cancel()
	var id sql.NullInt64
	if err := s.conn.QueryRowContext(qctx, "SELECT IS_USED_LOCK(?)", ReplicationLock).Scan(&id); err != nil || !id.Valid {
		return "?"
	}
	return strconv.FormatInt(id.Int64, 10)
}

// unlockReplication releases the replication lock. If that fails, the
// connection is discarded, not pooled: the server releases a lock when its
// connection ends, and a pooled one would keep it.
func (s *serverConn) unlockReplication(ctx context.Context) {
	if s.broken {
		return // its connection is closed, and was killed server-side
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if _, err := s.conn.ExecContext(uctx, "DO RELEASE_LOCK(?)", ReplicationLock); err != nil {
		s.in.log.Warn("release the replication lock: closing the connection instead", zap.Error(err))
		_ = s.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}
