package replication

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseBackupPosition(t *testing.T) {
	cases := []struct {
		name    string
		flavor  Flavor
		text    string
		file    string
		pos     uint64
		gtid    string
		wantErr error
	}{
		{"mariadb", FlavorMariaDB, "mysql-bin.000001\t2080\t0-7-9\n", "mysql-bin.000001", 2080, "0-7-9", nil},
		{"mariadb, two domains", FlavorMariaDB, "mysql-bin.000012\t345\t0-2-150,1-1-7\n", "mysql-bin.000012", 345, "0-2-150,1-1-7", nil},
		{"mysql, a set over several lines", FlavorMySQL, "binlog.000003\t157\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n8aa3c7a0-71ca-11e1-9e33-c80aa9429562:1-3\n",
			"binlog.000003", 157, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,8aa3c7a0-71ca-11e1-9e33-c80aa9429562:1-3", nil},
		// What the backup program writes when the donor has no GTIDs: no position,
		// never position zero.
		{"no GTID column", FlavorMariaDB, "mysql-bin.000001\t2080\n", "", 0, "", ErrNoBackupPosition},
		{"an empty GTID column", FlavorMariaDB, "mysql-bin.000001\t2080\t\n", "", 0, "", ErrNoBackupPosition},
		{"empty file", FlavorMariaDB, "", "", 0, "", ErrNoBackupPosition},
		{"bad position", FlavorMariaDB, "mysql-bin.000001\tx\t0-1-2\n", "", 0, "", errAny},
		{"bad GTID", FlavorMariaDB, "mysql-bin.000001\t4\t0-1\n", "", 0, "", errAny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseBackupPosition(tc.flavor, tc.text)
			switch {
			case tc.wantErr == errAny && err == nil:
				t.Fatalf("got %+v, want an error", p)
			case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && err != nil:
				t.Fatal(err)
			case tc.wantErr == nil && (p.File != tc.file || p.Pos != tc.pos || p.GTID.String() != tc.gtid):
				t.Fatalf("got %s:%d %s, want %s:%d %s", p.File, p.Pos, p.GTID, tc.file, tc.pos, tc.gtid)
			}
		})
	}
}

// errAny stands for any error in the table above.
var errAny = errors.New("any error")

// TestReadBackupPosition: the newer mariadb-backup's file name is read first, the
// older one otherwise, and a backup with neither has no position.
func TestReadBackupPosition(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadBackupPosition(FlavorMariaDB, dir); !errors.Is(err, ErrNoBackupPosition) {
		t.Fatalf("no position file: %v, want ErrNoBackupPosition", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "xtrabackup_binlog_info"), []byte("mysql-bin.000001\t10\t0-1-5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := ReadBackupPosition(FlavorMariaDB, dir); err != nil || p.GTID.String() != "0-1-5" {
		t.Fatalf("older name: %+v, %v", p, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mariadb_backup_binlog_info"), []byte("mysql-bin.000002\t20\t0-1-6\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := ReadBackupPosition(FlavorMariaDB, dir); err != nil || p.GTID.String() != "0-1-6" || p.File != "mysql-bin.000002" {
		t.Fatalf("newer name: %+v, %v", p, err)
	}
}

func TestRestorePositionQueries(t *testing.T) {
	maria, err := ParseGTIDSet(FlavorMariaDB, "0-2-150,1-1-7")
	if err != nil {
		t.Fatal(err)
	}
	my, err := ParseGTIDSet(FlavorMySQL, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		flavor  Flavor
		version string
		pos     BackupPosition
		state   string
		want    []string
	}{
		{"mariadb with the donor's binlog state", FlavorMariaDB, "10.11.19-MariaDB", BackupPosition{GTID: maria}, "0-1-100,0-2-149,1-1-7",
			[]string{"STOP SLAVE", "RESET SLAVE ALL", "RESET MASTER", "SET GLOBAL gtid_binlog_state = '0-1-100,0-2-149,1-1-7'", "SET GLOBAL gtid_slave_pos = '0-2-150,1-1-7'"}},
		{"mariadb without", FlavorMariaDB, "10.11.19-MariaDB", BackupPosition{GTID: maria}, "",
			[]string{"STOP SLAVE", "RESET SLAVE ALL", "RESET MASTER", "SET GLOBAL gtid_slave_pos = '0-2-150,1-1-7'"}},
		{"mysql 8.0", FlavorMySQL, "8.0.36", BackupPosition{GTID: my}, "",
			[]string{"STOP REPLICA", "RESET REPLICA ALL", "RESET MASTER", "SET GLOBAL gtid_purged = '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'"}},
		{"mysql 8.4 has no RESET MASTER", FlavorMySQL, "8.4.3", BackupPosition{GTID: my}, "",
			[]string{"STOP REPLICA", "RESET REPLICA ALL", "RESET BINARY LOGS AND GTIDS", "SET GLOBAL gtid_purged = '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'"}},
	}
	for _, tc := range cases {
		got := restorePositionQueries(tc.flavor, tc.version, tc.pos, tc.state, false)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestMySQLAtLeast(t *testing.T) {
	cases := []struct {
		version string
		want    bool
	}{{"8.4.3", true}, {"8.4", true}, {"9.1.0", true}, {"8.0.36-log", false}, {"8.3.0", false}, {"x", false}, {"", false}}
	for _, tc := range cases {
		if got := mysqlAtLeast(tc.version, 8, 4); got != tc.want {
			t.Errorf("mysqlAtLeast(%q, 8, 4) = %v, want %v", tc.version, got, tc.want)
		}
	}
}

// TestBackupProgramsRun: the programs are run with the arguments they take, the
// account in a defaults file gone after the run, and a failure carries the last
// lines the program printed on its standard error.
func TestBackupProgramsRun(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "args")
	// A stand-in backup program: records its arguments and the defaults file it was
	// given, prints a stream, or fails with a message.
	script := `#!/bin/sh
echo "$@" >> ` + log + `
for a in "$@"; do case "$a" in --defaults-extra-file=*) cat "${a#--defaults-extra-file=}" >> ` + log + `;; esac; done
case "$*" in *--prepare*) d="${2#--target-dir=}"; [ -f "$d/fail" ] && { echo "InnoDB: corrupt page" >&2; echo "prepare failed" >&2; exit 1; }; exit 0;; esac
echo "stream-bytes"
`
	prog := filepath.Join(dir, "fake-backup")
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tools := Tools{Addr: "unix:/run/mysqld/mysqld.sock", User: "baton", Password: `p"w`, Dir: dir}
	var out strings.Builder
	if err := tools.Backup(context.Background(), BackupPrograms{Backup: prog}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "stream-bytes\n" {
		t.Errorf("stream %q", out.String())
	}
	b, _ := os.ReadFile(log)
	for _, want := range []string{"--socket=/run/mysqld/mysqld.sock", "--backup --stream=xbstream --parallel=1 --target-dir=", `password="p\"w"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the backup program was run with %q: want %q in it", b, want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".baton-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	target := filepath.Join(dir, "copy")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(context.Background(), BackupPrograms{Backup: prog}, target); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "fail"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := Prepare(context.Background(), BackupPrograms{Backup: prog}, target)
	if err == nil || !strings.Contains(err.Error(), "InnoDB: corrupt page | prepare failed") {
		t.Fatalf("a failed prepare: %v, want the program's last lines", err)
	}
}

func TestLayoutOutside(t *testing.T) {
	cases := []struct {
		name  string
		paths map[string]string
		want  []string
	}{
		{"all under the datadir", map[string]string{"log_bin_basename": "/var/lib/mysql/mysql-bin", "relay_log_basename": "/var/lib/mysql/relay-bin",
			"innodb_data_home_dir": "", "innodb_log_group_home_dir": "./", "innodb_undo_directory": "./", "aria_log_dir_path": "/var/lib/mysql/"}, nil},
		{"binary logs elsewhere", map[string]string{"log_bin_basename": "/var/log/mysql/mysql-bin", "innodb_undo_directory": "./"},
			[]string{"log_bin_basename (/var/log/mysql/mysql-bin)"}},
		{"a sibling with the datadir's name as a prefix is outside", map[string]string{"innodb_undo_directory": "/var/lib/mysql-undo"},
			[]string{"innodb_undo_directory (/var/lib/mysql-undo)"}},
		{"no variables read", nil, nil},
	}
	for _, tc := range cases {
		got := Layout{Datadir: "/var/lib/mysql/", Paths: tc.paths}.Outside()
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
