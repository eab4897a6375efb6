package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
)

// A node rebuilt from a donor: the donor's server is copied with the server's own
// hot backup program (mariadb-backup on MariaDB, xtrabackup on MySQL) as one stream
// (xbstream), which the node unpacks (mbstream, xbstream) into a new directory and
// prepares; the server is then started on it and told where the copy stands in the
// cluster's history (RestorePosition).

// BackupPrograms names the programs of a flavor: the backup program and the
// stream's unpacker.
type BackupPrograms struct {
	Backup, Unpack string
}

// DefaultBackupPrograms are the programs a flavor's backups are made with: MariaDB's
// own mariadb-backup and mbstream; Percona's xtrabackup and xbstream for MySQL.
func DefaultBackupPrograms(f Flavor) BackupPrograms {
	if f == FlavorMySQL {
		return BackupPrograms{Backup: "xtrabackup", Unpack: "xbstream"}
	}
	return BackupPrograms{Backup: "mariadb-backup", Unpack: "mbstream"}
}

// BackupPosition is where a backup stands in the cluster's history, as its backup
// program recorded it at the consistent point it copied: the donor's binary log file
// and position, and its GTIDs (MariaDB: gtid_current_pos, one GTID per domain;
// MySQL: gtid_executed).
type BackupPosition struct {
	File string
	Pos  uint64
	GTID GTIDSet
}

// binlogInfoFiles are the names the backup programs give the position file: the
// newer mariadb-backup's, then the one older ones and xtrabackup write.
var binlogInfoFiles = []string{"mariadb_backup_binlog_info", "xtrabackup_binlog_info"}

// ErrNoBackupPosition: the backup says nothing of where it stands. A server started
// on it cannot be told where to replicate from: an unknown position is never read as
// position zero (that would fetch, and apply again, every transaction).
var ErrNoBackupPosition = errors.New("replication: the backup records no GTID position")

// ReadBackupPosition reads the position a prepared (or unpacked) backup in dir
// recorded.
func ReadBackupPosition(f Flavor, dir string) (BackupPosition, error) {
	for _, name := range binlogInfoFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return BackupPosition{}, fmt.Errorf("read the backup's position: %w", err)
		}
		p, err := ParseBackupPosition(f, string(b))
		if err != nil {
			return BackupPosition{}, fmt.Errorf("%s: %w", name, err)
		}
		return p, nil
	}
	return BackupPosition{}, fmt.Errorf("%w: no %s in %s (was the donor's binary log on?)", ErrNoBackupPosition, strings.Join(binlogInfoFiles, " or "), dir)
}

// ParseBackupPosition reads a backup program's position file: the binary log file,
// the position in it and the GTIDs, separated by tabs ("mysql-bin.000003\t2080\t0-1-9";
// MySQL's GTID set may run over several lines). A file without GTIDs, or with an
// empty set, is ErrNoBackupPosition. Pure.
func ParseBackupPosition(f Flavor, text string) (BackupPosition, error) {
	fields := strings.SplitN(strings.TrimSpace(text), "\t", 3)
	if len(fields) < 3 || strings.TrimSpace(fields[2]) == "" {
		return BackupPosition{}, fmt.Errorf("%w: %q", ErrNoBackupPosition, strings.TrimSpace(text))
	}
	var p BackupPosition
	p.File = strings.TrimSpace(fields[0])
	if _, err := fmt.Sscan(fields[1], &p.Pos); err != nil {
		return BackupPosition{}, fmt.Errorf("binary log position %q: %w", fields[1], err)
	}
	gtid := strings.Join(strings.Fields(fields[2]), "")
	set, err := ParseGTIDSet(f, gtid)
	if err != nil {
		return BackupPosition{}, fmt.Errorf("GTIDs %q: %w", gtid, err)
	}
	if set.IsEmpty() {
		return BackupPosition{}, fmt.Errorf("%w: an empty GTID set", ErrNoBackupPosition)
	}
	p.GTID = set
	return p, nil
}

// BackupArgs are the backup program's arguments for a streamed full backup of the
// server conn reaches (connArgs), with the account in the defaults file: one
// thread (the donor keeps serving), temporary files in tmp. Pure.
func BackupArgs(defaults string, conn []string, tmp string) []string {
	args := []string{"--defaults-extra-file=" + defaults}
	args = append(args, conn...)
	return append(args, "--backup", "--stream=xbstream", "--parallel=1", "--target-dir="+tmp)
}

// Backup streams a full backup of the server (Tools' Addr, account and TLS) to w
// with the backup program: consistent, with the position it stands at recorded in
// it. It runs until the program ends or ctx does; a failure carries the last lines
// of the program's standard error. The program reads the server's datadir itself:
// it must run on the server's host, as a user that can.
func (t Tools) Backup(ctx context.Context, prog BackupPrograms, w io.Writer) error {
	defaults, err := t.defaultsFile()
	if err != nil {
		return err
	}
	defer os.Remove(defaults)
	conn, err := t.connArgs()
	if err != nil {
		return err
	}
	dir := t.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	tmp, err := os.MkdirTemp(dir, ".baton-backup-*")
	if err != nil {
		return fmt.Errorf("backup: temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := runProgram(ctx, prog.Backup, nil, w, BackupArgs(defaults, conn, tmp)...); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// Unpack unpacks a backup stream from r into dir (which must exist) with the
// stream's unpacker (mbstream -x, xbstream -x), until r ends or ctx does.
func Unpack(ctx context.Context, prog BackupPrograms, r io.Reader, dir string) error {
	if err := runProgram(ctx, prog.Unpack, r, io.Discard, "-x", "-C", dir); err != nil {
		return fmt.Errorf("unpack the backup into %s: %w", dir, err)
	}
	return nil
}

// Prepare makes the unpacked backup in dir consistent (the backup program's
// --prepare: the redo log copied with it applied), so that a server starts on it.
func Prepare(ctx context.Context, prog BackupPrograms, dir string) error {
	if err := runProgram(ctx, prog.Backup, nil, io.Discard, "--prepare", "--target-dir="+dir); err != nil {
		return fmt.Errorf("prepare the backup in %s: %w", dir, err)
	}
	return nil
}

// runProgram runs program with args until it ends or ctx does, stdin from in (nil:
// none), stdout to out; an error carries the last lines of its standard error. The
// program dies with the agent (a killed agent's unpacker or prepare must not go on
// writing into a directory the next agent removes).
func runProgram(ctx context.Context, program string, in io.Reader, out io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Stdin, cmd.Stdout = in, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	errb := &tailBuffer{max: 4 << 10}
	cmd.Stderr = errb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return fmt.Errorf("%s: %w: %s", filepath.Base(program), err, errb.lastLines(3))
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

// lastLines is the last n non-empty lines written, joined with " | ".
func (t *tailBuffer) lastLines(n int) string {
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(t.b, nil))), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// RestorePosition tells a server just started on a prepared backup where its data
// stands, so that it can follow the primary with GTID positioning: on MariaDB, its
// binary log reset and gtid_binlog_state set to binlogState (the donor's, read
// before the backup: the history of every server that ever wrote, so that no
// other node's old transactions look errant should this one be promoted later;
// "" leaves it empty), then gtid_slave_pos to the backup's position; on MySQL, its
// binary log reset and gtid_purged set to the backup's gtid_executed. The server
// must be read_only; any replication configuration is removed (the primary's is
// set by Follow). The values are read back: an error unless the server holds them.
func (in *Instance) RestorePosition(ctx context.Context, pos BackupPosition, binlogState string) error {
	if pos.GTID.IsEmpty() {
		return fmt.Errorf("restore the backup's position on %s: %w", in.name, ErrNoBackupPosition)
	}
	err := in.call(ctx, in.timeout*3, func(ctx context.Context, s *serverConn) error {
		if s.flavor != pos.GTID.Flavor() {
			return fmt.Errorf("the server is %s, the backup's position %s", s.flavor, pos.GTID.Flavor())
		}
		st, err := s.status(ctx)
		if err != nil {
			return err
		}
		if !st.ReadOnly {
			return errors.New("the server is writable: a position is restored only on a read_only server")
		}
		for _, q := range restorePositionQueries(s.flavor, st.Version, pos, binlogState, s.noBackslashEscapes) {
			if err := s.exec(ctx, q); err != nil {
				return err
			}
		}
		st, err = s.status(ctx)
		if err != nil {
			return err
		}
		if !st.Executed.Contain(pos.GTID) {
			return fmt.Errorf("after the restore the server's GTID set is %s, not past the backup's %s", st.Executed, pos.GTID)
		}
		if s.flavor == FlavorMariaDB {
			sp, err := ParseGTIDSet(FlavorMariaDB, st.MariaDB.SlavePos)
			if err != nil {
				return fmt.Errorf("gtid_slave_pos: %w", err)
			}
			if sp.Position() != pos.GTID.Position() {
				return fmt.Errorf("gtid_slave_pos reads %q after it was set to %q", st.MariaDB.SlavePos, pos.GTID.Position())
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore the backup's position on %s: %w", in.name, err)
	}
	in.log.Warn("server started on a backup: GTID position restored", zap.String("gtid", pos.GTID.String()), zap.String("gtid_binlog_state", binlogState),
		zap.String("binlog", fmt.Sprintf("%s:%d", pos.File, pos.Pos)))
	return nil
}

// restorePositionQueries are RestorePosition's statements. Pure.
func restorePositionQueries(f Flavor, version string, pos BackupPosition, binlogState string, noBackslashEscapes bool) []string {
	if f == FlavorMySQL {
		reset := "RESET MASTER"
		if mysqlAtLeast(version, 8, 4) {
			reset = "RESET BINARY LOGS AND GTIDS"
		}
		return []string{stopReplicationQuery(f), resetReplicationQuery(f), reset,
			"SET GLOBAL gtid_purged = " + quote(pos.GTID.String(), noBackslashEscapes)}
	}
	out := []string{stopReplicationQuery(f), resetReplicationQuery(f), "RESET MASTER"}
	if binlogState != "" {
		out = append(out, "SET GLOBAL gtid_binlog_state = "+quote(binlogState, noBackslashEscapes))
	}
	return append(out, setSlavePosQuery(pos.GTID.Position()))
}

// mysqlAtLeast says whether a server's version ("8.4.3", "8.0.36-log") is major.minor
// or newer; a version that does not parse is not.
func mysqlAtLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// Layout is where a server keeps its files: its datadir, and the server variables
// that may put some elsewhere (binary and relay logs, InnoDB's system tablespace,
// redo and undo logs, Aria's log), by name, as the server reports them (relative
// ones are under the datadir).
type Layout struct {
	Datadir string
	Paths   map[string]string
}

// layoutVariables are the variables that may put a server's files outside its
// datadir; a server reports those it has.
var layoutVariables = []string{"log_bin_basename", "relay_log_basename", "innodb_data_home_dir",
	"innodb_log_group_home_dir", "innodb_undo_directory", "aria_log_dir_path"}

// Layout reads where the server keeps its files.
func (in *Instance) Layout(ctx context.Context) (Layout, error) {
	var l Layout
	err := in.call(ctx, in.timeout, func(ctx context.Context, s *serverConn) error {
		if err := s.conn.QueryRowContext(ctx, "SELECT @@GLOBAL.datadir").Scan(&l.Datadir); err != nil {
			return fmt.Errorf("read datadir: %w", err)
		}
		rows, err := s.queryRows(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('"+strings.Join(layoutVariables, "', '")+"')")
		if err != nil {
			return err
		}
		l.Paths = map[string]string{}
		for _, r := range rows {
			l.Paths[r["Variable_name"]] = r["Value"]
		}
		return nil
	})
	if err != nil {
		return Layout{}, fmt.Errorf("layout of %s: %w", in.name, err)
	}
	return l, nil
}

// Outside lists the files the layout puts outside its datadir, as "variable
// (path)": a copy of the datadir alone would not hold them. Pure.
func (l Layout) Outside() []string {
	dd := filepath.Clean(l.Datadir)
	var out []string
	for _, name := range layoutVariables {
		p, ok := l.Paths[name]
		if !ok || p == "" || !filepath.IsAbs(p) {
			continue // unset, or relative: under the datadir
		}
		if c := filepath.Clean(p); c != dd && !strings.HasPrefix(c, dd+string(filepath.Separator)) {
			out = append(out, fmt.Sprintf("%s (%s)", name, p))
		}
	}
	return out
}
