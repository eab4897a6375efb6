package replication

import (
	"bufio"
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

// relayThreads is how many parallel replication workers the relay apply runs on a
// candidate that runs none (slave_parallel_threads = 0); one that runs some keeps
// its own number, and its own slave_parallel_mode. Measured on the sandbox's disk,
// a replica catching up 1,000 one-row transactions: 83-104 ms with 16 workers,
// 90-116 ms with 8, 139-173 ms with 4, about 300 ms with none (and as long
// through one session).
const relayThreads = 16

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
// On one session: a guard (ApplySalvage's) refuses a server that is writable,
// whose GTID state is not g's, or whose replication lock another session holds,
// and takes that lock; STOP SLAVE; two FLUSH RELAY LOGS give a relay log file the
// server has closed and listed, which relay replaces; with slave_parallel_threads
// at relayThreads when it was 0, CHANGE MASTER TO that file and START SLAVE
// SQL_THREAD UNTIL the end of that file; then it waits for the
// SQL thread to apply them all, to stop on an error (the transactions before it
// are committed, none after it), or ctx's deadline less relayStopReserve. It
// always ends with STOP SLAVE (workers finish the transactions they began) and
// puts back slave_parallel_threads and Using_Gtid (relayBack); once everything is
// applied it sets gtid_slave_pos to g.SlavePosAfter, as ApplySalvage does. A STOP SLAVE that
// fails leaves the thread perhaps applying: the error wraps ErrSessionNotEnded.
// An error before the SQL thread was started wraps ErrRelayNotStarted, and the
// file written is put back as it was. The account needs RELOAD, REPLICATION
// SLAVE ADMIN and READ_ONLY ADMIN; the agent, to write the server's relay log
// files (overwrite).
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
	index = underDir(datadir, index)
	st, err := s.status(ctx)
	if err != nil {
		return notStarted(fmt.Errorf("read its replication: %w", err))
	}
	back := relayBack{threads: threads == 0, useGTID: st.MariaDB.UsingGTID}
	if err := s.execAs(ctx, "STOP SLAVE", "STOP SLAVE"); err != nil {
		return notStarted(err)
	}
	name, err := s.freshRelayLog(ctx, index)
	if err != nil {
		return notStarted(err)
	}
	out.File = underDir(datadir, name)
	restore, err := overwrite(out.File, relay)
	if err != nil {
		return notStarted(err)
	}
	started := false
	defer func() {
		if !started {
			if rerr := restore(); rerr != nil {
				in.log.Warn("salvage: the relay log file written could not be put back; the SQL thread never read it")
			}
		}
	}()
	out.Threads = threads
	if threads == 0 {
		if err := s.execAs(ctx, "SET GLOBAL slave_parallel_threads", fmt.Sprintf("SET GLOBAL slave_parallel_threads = %d", relayThreads)); err != nil {
			return notStarted(err)
		}
		out.Threads = relayThreads
	}
	err = s.execAs(ctx, "CHANGE MASTER TO RELAY_LOG_FILE", fmt.Sprintf("CHANGE MASTER TO RELAY_LOG_FILE = %s, RELAY_LOG_POS = 4", quote(relayName(name), s.noBackslashEscapes)))
	if err == nil {
		err = s.execAs(ctx, "START SLAVE SQL_THREAD", fmt.Sprintf("START SLAVE SQL_THREAD UNTIL RELAY_LOG_FILE = %s, RELAY_LOG_POS = %d",
			quote(relayName(name), s.noBackslashEscapes), len(relay)))
	}
	if err != nil && !s.broken {
		// The server answered: the SQL thread was not started.
		if perr := back.put(ctx, s); perr != nil {
			in.log.Warn("salvage: replication settings not put back after a relay apply that did not start", zap.Error(perr))
		}
		return notStarted(err)
	}
	started = true
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

// awaitRelay waits until the SQL thread has applied until (gtid_slave_pos), or
// stopped short of it, or the time is up.
func (s *serverConn) awaitRelay(ctx context.Context, until string, by time.Time) error {
	reached := func(wait time.Duration) (bool, error) {
		qctx, cancel := context.WithDeadline(ctx, time.Now().Add(wait+time.Second))
		defer cancel()
		var r sql.NullInt64
		if err := s.conn.QueryRowContext(qctx, "SELECT MASTER_GTID_WAIT(?, ?)", until, wait.Seconds()).Scan(&r); err != nil {
			s.broken = true
			s.conn.Close()
			return false, fmt.Errorf("wait for the SQL thread: %w", err)
		}
		return r.Valid && r.Int64 == 0, nil
	}
	for {
		left := time.Until(by)
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
	// threads: slave_parallel_threads back to 0.
	threads bool
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
	if b.threads {
		errs = append(errs, s.execAs(ctx, "SET GLOBAL slave_parallel_threads", "SET GLOBAL slave_parallel_threads = 0"))
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

// stopRelay ends a relay apply: STOP SLAVE (on s, or on a new session if s was
// abandoned), then what back says is put back, before ctx's deadline (whoever
// asked for the apply acts on the candidate after it) even when ctx was
// cancelled. A STOP SLAVE that fails wraps ErrSessionNotEnded, and so does an end
// past ctx's deadline, which changes nothing.
func (in *Instance) stopRelay(ctx context.Context, s *serverConn, back relayBack) error {
	dl, _ := ctx.Deadline() // ApplyRelay has one
	if !time.Now().Before(dl) {
		// Late (a stalled agent resumed past its deadline): the coordinator that
		// asked has stopped waiting, stopped the SQL thread itself, and may have
		// promoted this server since. Nothing is changed now.
		in.log.Warn("salvage: the relay apply ended past its deadline; the SQL thread and the replication settings are left as the coordinator left them")
		return fmt.Errorf("%w: the relay apply ended past its deadline", ErrSessionNotEnded)
	}
	sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	defer cancel()
	if s.broken {
		var err error
		if s, err = in.open(sctx); err != nil {
			return fmt.Errorf("%w: stop the SQL thread: %w", ErrSessionNotEnded, err)
		}
		defer s.close()
	}
	if err := s.execAs(sctx, "STOP SLAVE", "STOP SLAVE"); err != nil {
		return fmt.Errorf("%w: the SQL thread may still apply the salvage: %w", ErrSessionNotEnded, err)
	}
	if err := back.put(sctx, s); err != nil {
		in.log.Warn("salvage: replication settings not put back after a relay apply", zap.Error(err))
		return err
	}
	return nil
}

// freshRelayLog rotates the server's relay log twice and returns the name (as
// its index lists it) of the file the first rotation made: listed, closed by the
// second, and never read by the SQL thread (stopped).
func (s *serverConn) freshRelayLog(ctx context.Context, index string) (string, error) {
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
		return readRelayIndex(index)
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

// readRelayIndex lists the names in a relay log index file.
func readRelayIndex(index string) ([]string, error) {
	f, err := os.Open(index)
	if err != nil {
		return nil, fmt.Errorf("read the relay log index: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the relay log index: %w", err)
	}
	return out, nil
}

// relayName is how CHANGE MASTER TO RELAY_LOG_FILE names a file its index lists:
// a name relative to the data directory ("./relay-bin.000003") by its base name.
func relayName(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Base(name)
}

// underDir resolves a path the server gives relative to its data directory.
func underDir(datadir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(datadir, p)
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
