package replication

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/failpoint"
)

// RelayThreads is how many parallel replication workers the relay apply runs on a
// candidate that runs none (slave_parallel_threads = 0); one that runs some keeps
// its own number, and its own slave_parallel_mode. Measured on the sandbox's disk,
// a replica catching up 1,000 one-row transactions: 83-104 ms with 16 workers,
// 90-116 ms with 8, 139-173 ms with 4, about 300 ms with none (and as long
// through one session).
const RelayThreads = 16

// relayStopReserve is the part of its time the relay apply keeps to stop the SQL
// thread and put back what it changed.
const relayStopReserve = 250 * time.Millisecond

// maxFreshRelay bounds the relay log file the apply writes over: one the server
// has just made holds a few events only.
const maxFreshRelay = 64 << 10

// ErrRelayNotStarted: the relay apply stopped before the SQL thread was given
// anything of the salvage; the candidate has none of it, and may be given it
// another way (ApplySalvage).
var ErrRelayNotStarted = errors.New("replication: the relay apply did not start")

// ErrSettingsNotBack: a relay apply that did not start may have left
// slave_parallel_threads or Using_Gtid changed (its session broke, or putting them
// back failed).
var ErrSettingsNotBack = errors.New("replication: a relay apply's settings may not be back")

// RelayApply says what ApplyRelay did.
type RelayApply struct {
	// File is the relay log file written (its path).
	File string
	// Threads is how many parallel replication workers applied it.
	Threads int
}

// ApplyRelay applies relay (SalvageRelay's copy of txns, checked again here) on
// this Instance's server through its replication SQL thread. It runs on the
// server's own host (it writes one of the server's relay log files), as the
// candidate's agent.
//
// On one session: STOP SLAVE, then a guard (ApplySalvage's) refuses a server that
// is writable, whose GTID state is not g's, or whose replication lock another
// session holds, and takes that lock; a server whose SQL thread would not apply
// the copy as it is, and log it, is refused (relayRefusal); two FLUSH RELAY LOGS
// give a relay log file the server has closed and listed, which relay overwrites;
// with slave_parallel_threads at RelayThreads when it was 0, CHANGE MASTER TO that
// file and START SLAVE SQL_THREAD UNTIL its end. Up to there ctx may end it (the
// coordinator gone: nothing starts); an error wraps ErrRelayNotStarted and the
// file is put back as it was. Once started, ctx's cancellation no longer counts,
// its deadline does: the SQL thread is waited for until it has applied them all,
// stopped on an error (the transactions before it are committed, none after it),
// or the deadline less relayStopReserve; then STOP SLAVE (workers finish the
// transactions they began), slave_parallel_threads and Using_Gtid put back
// (relayBack) and, everything applied, gtid_slave_pos set to g.SlavePosAfter, as
// ApplySalvage does, all on the same session and before the deadline. A session
// lost (killed: the coordinator took over, TakeOverRelay) or a stop not done in
// time leaves the rest to the coordinator: the error wraps ErrSessionNotEnded.
// The account needs RELOAD, REPLICATION SLAVE ADMIN and READ_ONLY ADMIN; the
// agent, to write the server's relay log files (overwrite).
func (in *Instance) ApplyRelay(ctx context.Context, relay []byte, txns []BinlogTxn, g SalvageGuard) (RelayApply, error) {
	var out RelayApply
	notStarted := func(err error) (RelayApply, error) {
		return out, fmt.Errorf("%w: %w", ErrRelayNotStarted, err)
	}
	if err := CheckRelay(relay, txns); err != nil {
		return notStarted(err)
	}
	if g.BinlogState == "" && g.SlavePos == "" || g.SlavePosAfter == "" {
		return notStarted(errors.New("no guard: the candidate's GTID state was not read"))
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return notStarted(errors.New("no deadline"))
	}
	until := lastPerDomain(txns)
	s, err := in.open(ctx)
	if err != nil {
		return notStarted(err)
	}
	defer s.close()
	defer s.unlockReplication(ctx)
	// Stopped before the guard reads the GTID state: a SQL thread still running
	// (an earlier apply's) would commit after the guard.
	if err := s.execAs(ctx, "STOP SLAVE", "STOP SLAVE"); err != nil {
		return notStarted(err)
	}
	if err := s.execAs(ctx, "the guard", salvageGuardQuery(g)); err != nil {
		return notStarted(err)
	}
	var index, datadir string
	var threads int
	err = s.conn.QueryRowContext(ctx, "SELECT @@GLOBAL.relay_log_index, @@GLOBAL.datadir, @@GLOBAL.slave_parallel_threads").
		Scan(&index, &datadir, &threads)
	if err != nil {
		return notStarted(fmt.Errorf("read where the relay logs are: %w", err))
	}
	if why, err := s.relayRefusal(ctx, txns); err != nil || why != "" {
		if err == nil {
			err = errors.New(why)
		}
		return notStarted(err)
	}
	if !filepath.IsAbs(index) {
		index = filepath.Join(datadir, index)
	}
	st, err := s.status(ctx)
	if err != nil {
		return notStarted(fmt.Errorf("read its replication: %w", err))
	}
	back := relayBack{setThreads: threads == 0, useGTID: st.MariaDB.UsingGTID}
	out.File, err = s.freshRelayLog(ctx, index, datadir)
	if err != nil {
		return notStarted(err)
	}
	if err := ctx.Err(); err != nil {
		return notStarted(err) // a stall, or the coordinator gone: no file written late
	}
	restore, err := overwrite(out.File, relay)
	if err != nil {
		return notStarted(err)
	}
	started := false
	defer func() {
		// Not past the deadline: after it the coordinator may have discarded the
		// relay logs, and the name may be another file's.
		if !started && time.Now().Before(dl) {
			if rerr := restore(); rerr != nil {
				in.log.Warn("salvage: the relay log file written could not be put back; the SQL thread never read it", zap.Error(rerr))
			}
		}
	}()
	out.Threads = threads
	base := quote(filepath.Base(out.File), s.noBackslashEscapes) // the server puts its relay log directory before it
	stmts := []string{fmt.Sprintf("CHANGE MASTER TO RELAY_LOG_FILE = %s, RELAY_LOG_POS = 4", base)}
	if threads == 0 {
		stmts = append([]string{fmt.Sprintf("SET GLOBAL slave_parallel_threads = %d", RelayThreads)}, stmts...)
		out.Threads = RelayThreads
	}
	// Put back when it does not start, whether or not the coordinator is still
	// there: nobody else would.
	putBack := func(err error) (RelayApply, error) {
		pctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
		defer cancel()
		if s.broken {
			return notStarted(fmt.Errorf("%w (%w)", err, ErrSettingsNotBack))
		}
		if perr := back.put(pctx, s); perr != nil {
			in.log.Warn("salvage: replication settings not put back after a relay apply that did not start", zap.Error(perr))
			return notStarted(fmt.Errorf("%w (%w: %w)", err, ErrSettingsNotBack, perr))
		}
		return notStarted(err)
	}
	for _, q := range stmts {
		if err := s.execAs(ctx, q, q); err != nil {
			return putBack(err)
		}
	}
	if left := time.Until(dl); left < relayStopReserve+100*time.Millisecond {
		return putBack(fmt.Errorf("%s left: too little to apply and stop in", left.Round(time.Millisecond)))
	}
	err = s.execAs(ctx, "START SLAVE SQL_THREAD", fmt.Sprintf("START SLAVE SQL_THREAD UNTIL RELAY_LOG_FILE = %s, RELAY_LOG_POS = %d", base, len(relay)))
	if err != nil && !s.broken {
		return putBack(err) // the server answered: the SQL thread was not started
	}
	started = true
	// From here the coordinator going away does not end the apply: its own
	// deadline does, and it stops the thread and puts the settings back in time.
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	defer cancel()
	failpoint.Hit(failpoint.SalvageRelayStarted)
	if err == nil {
		err = s.awaitRelay(ctx, until, dl.Add(-relayStopReserve))
	}
	if err == nil {
		back.slavePos = g.SlavePosAfter
	}
	if serr := in.stopRelay(ctx, s, back); serr != nil {
		if err == nil {
			return out, serr
		}
		return out, fmt.Errorf("%w; and %w", err, serr)
	}
	return out, err
}

// relayRefusal says why the server's SQL thread would not apply txns as they are,
// or not log them, "" when it would: the relay apply is refused then (the session's
// apply does neither). Replication filters, skipped errors, IDEMPOTENT mode and
// events marked for skip leave a transaction out while its GTID counts as
// applied; a transaction of the server's own server_id is skipped; without
// log_slave_updates the new primary's binary log would lack what was salvaged.
func (s *serverConn) relayRefusal(ctx context.Context, txns []BinlogTxn) (string, error) {
	var logBin, logSlaveUpdates bool
	var serverID uint32
	var mode, skipErrors, marked string
	var skipCounter int64
	var filters [6]string
	err := s.conn.QueryRowContext(ctx, `SELECT @@GLOBAL.log_bin, @@GLOBAL.log_slave_updates, @@GLOBAL.server_id, @@GLOBAL.slave_exec_mode,
  @@GLOBAL.slave_skip_errors, @@GLOBAL.sql_slave_skip_counter, @@GLOBAL.replicate_events_marked_for_skip,
  @@GLOBAL.replicate_do_db, @@GLOBAL.replicate_ignore_db, @@GLOBAL.replicate_do_table, @@GLOBAL.replicate_ignore_table,
  @@GLOBAL.replicate_wild_do_table, @@GLOBAL.replicate_wild_ignore_table`).
		Scan(&logBin, &logSlaveUpdates, &serverID, &mode, &skipErrors, &skipCounter, &marked, &filters[0], &filters[1], &filters[2], &filters[3], &filters[4], &filters[5])
	if err != nil {
		return "", fmt.Errorf("read its replication settings: %w", err)
	}
	switch {
	case !logBin || !logSlaveUpdates:
		return "the server would not log what its SQL thread applies (log_bin and log_slave_updates must be on)", nil
	case !strings.EqualFold(mode, "STRICT"):
		return "slave_exec_mode is " + mode + ", not STRICT", nil
	case skipErrors != "" && !strings.EqualFold(skipErrors, "OFF"):
		return "slave_skip_errors is set (" + skipErrors + ")", nil
	case skipCounter != 0:
		return fmt.Sprintf("sql_slave_skip_counter is %d", skipCounter), nil
	case !strings.EqualFold(marked, "REPLICATE"):
		return "replicate_events_marked_for_skip is " + marked, nil
	case strings.Join(filters[:], "") != "":
		return "replication filters are set (replicate_*)", nil
	}
	own := fmt.Sprintf("-%d-", serverID)
	for _, t := range txns {
		if d, rest, ok := strings.Cut(t.GTID, "-"); ok && strings.HasPrefix("-"+rest, own) && d != "" {
			return fmt.Sprintf("transaction %s is of this server's own server_id, which its SQL thread skips", t.GTID), nil
		}
	}
	return "", nil
}

// awaitRelay waits until the SQL thread has applied until (gtid_slave_pos), or
// stopped short of it, or the time is up (by).
func (s *serverConn) awaitRelay(ctx context.Context, until string, by time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, by)
	defer cancel()
	reached := func(wait time.Duration) (bool, error) {
		var r sql.NullInt64
		if err := s.conn.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", until, wait.Seconds()).Scan(&r); err != nil {
			if ctx.Err() != nil {
				// The wait outlived by: the driver closed the connection.
				s.broken = true
				if kerr := s.kill(context.WithoutCancel(ctx)); kerr != nil {
					return false, kerr
				}
				return false, fmt.Errorf("the SQL thread had not applied up to %s in time", until)
			}
			return false, fmt.Errorf("wait for the SQL thread: %w", err)
		}
		return r.Valid && r.Int64 == 0, nil
	}
	for {
		left := time.Until(by) - 20*time.Millisecond // the server's wait ends before ctx's
		if left <= 0 {
			return fmt.Errorf("the SQL thread had not applied up to %s in time", until)
		}
		ok, err := reached(min(left, 50*time.Millisecond))
		if ok || err != nil {
			return err
		}
		st, err := s.status(ctx)
		if err != nil {
			return fmt.Errorf("read the SQL thread: %w", err)
		}
		if st.SQLThread != ThreadRunning {
			if ok, err := reached(0); ok || err != nil {
				return err
			}
			return fmt.Errorf("the SQL thread stopped short of %s: error %d: %s", until, st.LastSQLErrno, st.LastSQLError)
		}
	}
}

// relayBack is what a relay apply puts back once the SQL thread is stopped.
type relayBack struct {
	// setThreads: slave_parallel_threads back to threads.
	setThreads bool
	threads    int
	// useGTID is Using_Gtid before the apply: CHANGE MASTER TO RELAY_LOG_FILE
	// turns it to No, and it is set back (which discards the relay logs, the
	// salvage's included: the next START SLAVE fetches from gtid_slave_pos).
	useGTID string
	// slavePos, when set, is the gtid_slave_pos once every transaction applied.
	slavePos string
}

// put puts back what b says, on s; the SQL thread is stopped.
func (b relayBack) put(ctx context.Context, s *serverConn) error {
	var errs []error
	if b.setThreads {
		errs = append(errs, s.execAs(ctx, "SET GLOBAL slave_parallel_threads", fmt.Sprintf("SET GLOBAL slave_parallel_threads = %d", b.threads)))
	}
	if b.slavePos != "" {
		errs = append(errs, s.execAs(ctx, "SET GLOBAL gtid_slave_pos", setSlavePosQuery(b.slavePos)))
	}
	switch b.useGTID {
	case "Slave_Pos", "Current_Pos":
		q := "CHANGE MASTER TO MASTER_USE_GTID = " + strings.ToLower(b.useGTID)
		errs = append(errs, s.execAs(ctx, q, q))
	}
	return errors.Join(errs...)
}

// stopRelay ends a relay apply on its own session s, before ctx's deadline (the
// coordinator acts on the candidate after it): STOP SLAVE, then what back says
// is put back. It changes nothing once that deadline has passed (a stall) or
// when s was lost (killed by the coordinator taking over, or broken): the
// coordinator does it then, and the error wraps ErrSessionNotEnded, as does a
// STOP SLAVE that fails.
func (in *Instance) stopRelay(ctx context.Context, s *serverConn, back relayBack) error {
	dl, _ := ctx.Deadline() // ApplyRelay has one
	switch {
	case !time.Now().Before(dl):
		in.log.Warn("salvage: the relay apply ended past its deadline; the SQL thread and the replication settings are left to the coordinator")
		return fmt.Errorf("%w: the relay apply ended past its deadline", ErrSessionNotEnded)
	case s.broken:
		return fmt.Errorf("%w: the relay apply's session was lost; the SQL thread is left to the coordinator", ErrSessionNotEnded)
	}
	if err := s.execAs(ctx, "STOP SLAVE", "STOP SLAVE"); err != nil {
		return fmt.Errorf("%w: the SQL thread may still apply the salvage: %w", ErrSessionNotEnded, err)
	}
	if err := back.put(ctx, s); err != nil {
		in.log.Warn("salvage: replication settings not put back after a relay apply", zap.Error(err))
		return err
	}
	return nil
}

// RelaySettings are what a relay apply changes on a candidate, as read before it.
type RelaySettings struct {
	Threads   int    // slave_parallel_threads
	UsingGTID string // Using_Gtid
}

// ParallelThreads reads slave_parallel_threads.
func (in *Instance) ParallelThreads(ctx context.Context) (int, error) {
	var n int
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		return s.conn.QueryRowContext(ctx, "SELECT @@GLOBAL.slave_parallel_threads").Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("slave_parallel_threads of %s: %w", in.name, err)
	}
	return n, nil
}

// SetParallelThreads sets slave_parallel_threads, holding the replication lock
// (ReplicationLock, waited for as long as ctx allows: ErrBusy). The server takes it
// only while replication is stopped: the threads that run are stopped for it and
// started again, each alone.
func (in *Instance) SetParallelThreads(ctx context.Context, n int) error {
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		if err := s.lockReplication(ctx); err != nil {
			return err
		}
		defer s.unlockReplication(ctx)
		st, err := s.status(ctx)
		if err != nil {
			return err
		}
		// Each thread that runs is started again, and only those: one a failover
		// stopped stays stopped.
		var again []string
		if st.IOThread != ThreadStopped {
			again = append(again, "START SLAVE IO_THREAD")
		}
		if st.SQLThread != ThreadStopped {
			again = append(again, "START SLAVE SQL_THREAD")
		}
		if len(again) > 0 {
			if err := s.exec(ctx, "STOP SLAVE"); err != nil {
				return err
			}
		}
		err = s.exec(ctx, fmt.Sprintf("SET GLOBAL slave_parallel_threads = %d", n))
		for _, q := range again {
			if serr := s.exec(ctx, q); serr != nil {
				err = errors.Join(err, serr)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("slave_parallel_threads of %s: %w", in.name, err)
	}
	return nil
}

// TakeOverRelay ends a relay apply whose agent's answer did not settle it (none
// came, or it said the apply started and failed): from the coordinator, within
// ctx. It waits up to wait for the server to have executed until (a SQL thread
// left running by a killed agent goes on), ends the session that holds the
// server's replication lock (the agent's apply session, if it still runs: it then
// changes nothing more, stopRelay) and waits until it is gone, takes the lock
// itself, runs STOP SLAVE, puts prior back (slave_parallel_threads; Using_Gtid,
// which discards the relay logs) and reads both threads stopped. What the server
// has once it returns nil is final; an error that says the threads may still run
// wraps ErrSessionNotEnded.
func (in *Instance) TakeOverRelay(ctx context.Context, prior RelaySettings, until GTIDSet, wait time.Duration) error {
	if wait > 0 && !until.IsEmpty() {
		_ = in.WaitExecuted(ctx, until, wait) // a timeout or an error: the stop follows
	}
	notEnded := func(err error) error {
		return fmt.Errorf("take over the relay apply on %s: %w: %w", in.name, ErrSessionNotEnded, err)
	}
	s, err := in.open(ctx)
	if err != nil {
		return notEnded(err)
	}
	defer s.close()
	// The lock's holder (the agent's apply) ended, then the lock taken: twice, in
	// case another session took it meanwhile.
	locked := false
	for try := 0; try < 2 && !locked; try++ {
		var holder sql.NullInt64
		if err := s.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", ReplicationLock).Scan(&holder); err != nil {
			return notEnded(fmt.Errorf("who holds the replication lock: %w", err))
		}
		if holder.Valid && holder.Int64 != s.id {
			if err := in.endSession(ctx, holder.Int64); err != nil {
				return notEnded(err)
			}
		}
		var got sql.NullInt64
		if err := s.conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", ReplicationLock).Scan(&got); err != nil {
			return notEnded(fmt.Errorf("take the replication lock: %w", err))
		}
		locked = got.Valid && got.Int64 == 1
	}
	if !locked {
		return notEnded(fmt.Errorf("the replication lock was taken again: %w", ErrBusy))
	}
	defer s.unlockReplication(ctx)
	if err := s.exec(ctx, "STOP SLAVE"); err != nil {
		return notEnded(err)
	}
	// What differs from prior (or cannot be read) is put back.
	back := relayBack{threads: prior.Threads}
	var threads int
	if err := s.conn.QueryRowContext(ctx, "SELECT @@GLOBAL.slave_parallel_threads").Scan(&threads); err != nil || threads != prior.Threads {
		back.setThreads = true
	}
	if st, err := s.status(ctx); err != nil || st.MariaDB.UsingGTID != prior.UsingGTID {
		back.useGTID = prior.UsingGTID
	}
	putErr := back.put(ctx, s)
	st, err := s.status(ctx)
	switch {
	case err != nil:
		return notEnded(fmt.Errorf("read its replication threads after the stop: %w", err))
	case st.IOThread != ThreadStopped || st.SQLThread != ThreadStopped:
		return notEnded(fmt.Errorf("replication threads run after the stop (IO %s, SQL %s)", st.IOThread, st.SQLThread))
	}
	if putErr != nil {
		return fmt.Errorf("take over the relay apply on %s: the settings not put back: %w", in.name, putErr)
	}
	return nil
}

// freshRelayLog rotates the server's relay log twice and returns the path of the
// file the first rotation made (its index's names are under datadir): listed,
// closed by the second, and never read by the SQL thread (stopped).
func (s *serverConn) freshRelayLog(ctx context.Context, index, datadir string) (string, error) {
	if _, err := os.Stat(index); errors.Is(err, os.ErrNotExist) {
		// A replica reset since its SQL thread last ran has no relay log open, and
		// FLUSH RELAY LOGS opens none: starting the thread does (with nothing to
		// apply: the IO thread stays stopped).
		for _, q := range []string{"START SLAVE SQL_THREAD", "STOP SLAVE SQL_THREAD"} {
			if err := s.execAs(ctx, q, q); err != nil {
				return "", err
			}
		}
	}
	flush := func() ([]string, error) {
		if err := s.execAs(ctx, "FLUSH RELAY LOGS", "FLUSH RELAY LOGS"); err != nil {
			return nil, err
		}
		return BinlogIndex(index, datadir)
	}
	a, err := flush()
	if err != nil {
		return "", err
	}
	b, err := flush()
	if err != nil {
		return "", err
	}
	if len(a) == 0 || len(b) < 2 || b[len(b)-2] != a[len(a)-1] {
		return "", fmt.Errorf("the relay log index %s did not list a new file at each FLUSH RELAY LOGS", index)
	}
	return a[len(a)-1], nil
}

// overwrite replaces the content of the file at path (a relay log file the server
// has just made and closed: small) by data, in place: its owner and mode stay the
// server's, and the agent needs only to be allowed to write it (the mysql group,
// where the server makes its files 0660). It returns how to put the old content
// back; a write that fails part way puts it back at once.
func overwrite(path string, data []byte) (func() error, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("the fresh relay log file: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxFreshRelay {
		return nil, fmt.Errorf("the fresh relay log file %s is not one the server just made (%s, %d bytes)", path, fi.Mode(), fi.Size())
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the fresh relay log file: %w", err)
	}
	write := func(b []byte) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return fmt.Errorf("the relay log file is not writable by the agent: %w", err)
		}
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write the relay log file: %w", err)
		}
		return nil
	}
	if err := write(data); err != nil {
		_ = write(old)
		return nil, err
	}
	return func() error {
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			return nil // the server discarded it since
		}
		return write(old)
	}, nil
}

// lastPerDomain is the last GTID of each domain among txns, as a position
// ("0-1-9,1-2-4"): where the SQL thread stops.
func lastPerDomain(txns []BinlogTxn) string {
	last := map[string]string{}
	var domains []string
	for _, t := range txns {
		d, _, _ := strings.Cut(t.GTID, "-")
		if _, ok := last[d]; !ok {
			domains = append(domains, d)
		}
		last[d] = t.GTID
	}
	sort.Strings(domains)
	parts := make([]string, len(domains))
	for i, d := range domains {
		parts[i] = last[d]
	}
	return strings.Join(parts, ",")
}
