package agent

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/baton-ha/baton/replication"
)

func TestParseGrantLine(t *testing.T) {
	cases := []struct {
		line  string
		privs []string
		on    string
		ok    bool
	}{
		{"GRANT USAGE ON *.* TO `baton`@`%` IDENTIFIED BY PASSWORD '*B69027D44F6E5EDC07F1AEAD1477967B16F28227'",
			[]string{"USAGE"}, "*.*", true},
		{"GRANT RELOAD, PROCESS, BINLOG ADMIN, CONNECTION ADMIN, READ_ONLY ADMIN ON *.* TO `b`@`%`",
			[]string{"RELOAD", "PROCESS", "BINLOG ADMIN", "CONNECTION ADMIN", "READ_ONLY ADMIN"}, "*.*", true},
		{"GRANT SELECT, INSERT, UPDATE, CREATE ON `baton`.* TO `b`@`%`", []string{"SELECT", "INSERT", "UPDATE", "CREATE"}, "`baton`.*", true},
		// MySQL prints dynamic privileges without spaces.
		{"GRANT CONNECTION_ADMIN,REPLICATION_SLAVE_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.* TO `b`@`%`",
			[]string{"CONNECTION_ADMIN", "REPLICATION_SLAVE_ADMIN", "SYSTEM_VARIABLES_ADMIN"}, "*.*", true},
		{"GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION", []string{"ALL PRIVILEGES"}, "*.*", true},
		// Column privileges are dropped; the table-level one stays.
		{"GRANT SELECT (`a`, `b`), INSERT ON `baton`.`t` TO `q`@`%`", []string{"INSERT"}, "`baton`.`t`", true},
		// Names that contain the keywords.
		{"GRANT SELECT ON ` ON `.* TO ` TO `@`%`", []string{"SELECT"}, "` ON `.*", true},
		{"GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION", []string{"PROXY"}, "``@`%`", true},
		{"GRANT `r1` TO `a`@`localhost`", nil, "", false},
		{"SET DEFAULT ROLE `r1` FOR `a`@`localhost`", nil, "", false},
		{"grant select on *.* to x@y", []string{"SELECT"}, "*.*", true},
	}
	for _, tc := range cases {
		privs, on, ok := parseGrantLine(tc.line)
		if ok != tc.ok || on != tc.on || !reflect.DeepEqual(privs, tc.privs) {
			t.Errorf("%s:\n got %q %q %v\nwant %q %q %v", tc.line, privs, on, ok, tc.privs, tc.on, tc.ok)
		}
	}
}

func TestLikeMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"baton", "baton", true},
		{"baton", "Baton", false},
		{"bat%", "baton", true},
		{"%", "baton", true},
		{"b_ton", "baton", true},
		{"b\\_ton", "baton", false},
		{"b\\_ton", "b_ton", true},
		{"test\\_%", "test_x", true},
		{"test\\_%", "baton", false},
		{"baton_", "baton", false},
		{"%on%", "baton", true},
		{"", "baton", false},
	}
	for _, tc := range cases {
		if got := likeMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("likeMatch(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

func TestGrantsHas(t *testing.T) {
	maria := AdminPrivileges(replication.FlavorMariaDB, true)
	mysql8 := AdminPrivileges(replication.FlavorMySQL, true)
	names := func(ps []Privilege) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.String())
		}
		return out
	}
	missing := func(f replication.Flavor, need []Privilege, lines ...string) []string {
		g := parseGrants(f, lines)
		var out []Privilege
		for _, p := range need {
			if !g.has(p) {
				out = append(out, p)
			}
		}
		return names(out)
	}
	const to = " TO `baton`@`%`"
	fullMaria := []string{
		"GRANT RELOAD, PROCESS, BINLOG ADMIN, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, SLAVE MONITOR, BINLOG MONITOR, REPLICATION SLAVE, BINLOG REPLAY ON *.*" + to,
		"GRANT SELECT, INSERT, UPDATE, CREATE ON `baton`.*" + to,
	}
	cases := []struct {
		name  string
		f     replication.Flavor
		need  []Privilege
		lines []string
		want  []string
	}{
		{"mariadb complete", replication.FlavorMariaDB, maria, fullMaria, nil},
		{"nothing", replication.FlavorMariaDB, maria, []string{"GRANT USAGE ON *.*" + to}, names(maria)},
		{"all privileges", replication.FlavorMariaDB, maria, []string{"GRANT ALL PRIVILEGES ON *.*" + to + " WITH GRANT OPTION"}, nil},
		{"global covers the schema", replication.FlavorMariaDB, maria[len(maria)-4:], []string{"GRANT SELECT, INSERT, UPDATE, CREATE ON *.*" + to}, nil},
		{"all on the schema only", replication.FlavorMariaDB, maria, []string{fullMaria[0], "GRANT ALL PRIVILEGES ON `baton`.*" + to}, nil},
		{"schema grant on another database", replication.FlavorMariaDB, maria, []string{fullMaria[0], "GRANT SELECT, INSERT, UPDATE, CREATE ON `batons`.*" + to},
			[]string{"SELECT ON baton.*", "INSERT ON baton.*", "UPDATE ON baton.*", "CREATE ON baton.*"}},
		{"schema pattern", replication.FlavorMariaDB, maria, []string{fullMaria[0], "GRANT SELECT, INSERT, UPDATE, CREATE ON `bat%`.*" + to}, nil},
		{"PUBLIC grants count", replication.FlavorMariaDB, maria, []string{fullMaria[0], "GRANT SELECT, INSERT, UPDATE, CREATE ON `baton`.* TO PUBLIC"}, nil},
		{"table grants do not count", replication.FlavorMariaDB, maria, []string{fullMaria[0],
			"GRANT SELECT, INSERT, UPDATE ON `baton`.`heartbeat`" + to, "GRANT SELECT, INSERT, UPDATE, CREATE ON `baton`.`storage_probe`" + to},
			[]string{"SELECT ON baton.*", "INSERT ON baton.*", "UPDATE ON baton.*", "CREATE ON baton.*"}},
		{"SUPER covers some on MariaDB, never READ_ONLY ADMIN, RELOAD, BINLOG MONITOR, PROCESS or REPLICATION SLAVE", replication.FlavorMariaDB, maria,
			[]string{"GRANT SUPER ON *.*" + to, fullMaria[1]}, []string{"READ_ONLY ADMIN ON *.*", "RELOAD ON *.*", "BINLOG MONITOR ON *.*", "PROCESS ON *.*", "REPLICATION SLAVE ON *.*"}},
		{"aliases", replication.FlavorMariaDB, maria, []string{
			"GRANT RELOAD, PROCESS, BINLOG ADMIN, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION REPLICA ADMIN, REPLICATION PRIMARY ADMIN, REPLICA MONITOR, REPLICATION CLIENT, REPLICATION REPLICA, BINLOG REPLAY ON *.*" + to,
			fullMaria[1]}, nil},
		{"replication client is binlog monitor on MariaDB", replication.FlavorMariaDB, []Privilege{{Name: "BINLOG MONITOR"}},
			[]string{"GRANT REPLICATION CLIENT ON *.*" + to}, nil},
		{"replication slave", replication.FlavorMariaDB, ReplicationPrivileges(replication.FlavorMariaDB),
			[]string{"GRANT REPLICATION REPLICA ON *.*" + to}, nil},
		{"mysql complete", replication.FlavorMySQL, mysql8, []string{
			"GRANT RELOAD, PROCESS, REPLICATION CLIENT ON *.*" + to,
			"GRANT CONNECTION_ADMIN,REPLICATION_SLAVE_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.*" + to,
			"GRANT SELECT, INSERT, UPDATE, CREATE ON `baton`.*" + to}, nil},
		{"mysql missing dynamic", replication.FlavorMySQL, mysql8, []string{
			"GRANT RELOAD, PROCESS, REPLICATION CLIENT ON *.*" + to, "GRANT SELECT, INSERT, UPDATE, CREATE ON `baton`.*" + to},
			[]string{"SYSTEM_VARIABLES_ADMIN ON *.*", "REPLICATION_SLAVE_ADMIN ON *.*", "CONNECTION_ADMIN ON *.*"}},
		{"mysql SUPER", replication.FlavorMySQL, mysql8, []string{
			"GRANT RELOAD, PROCESS, SUPER ON *.*" + to, "GRANT SELECT, INSERT, UPDATE, CREATE ON `baton`.*" + to}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := missing(tc.f, tc.need, tc.lines...)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("missing %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMissingGrantsError(t *testing.T) {
	e := &MissingGrantsError{Flavor: replication.FlavorMariaDB, Account: "'baton'@'%'", Missing: []Privilege{
		{Name: "READ_ONLY ADMIN", Why: "set read_only"},
		{Name: "RELOAD", Why: "reset"},
		{Name: "CREATE", Schema: "baton", Why: "bootstrap"},
	}}
	want := "mysql account 'baton'@'%' lacks READ_ONLY ADMIN ON *.* (set read_only), RELOAD ON *.* (reset), CREATE ON baton.* (bootstrap); " +
		"grant with: GRANT READ_ONLY ADMIN, RELOAD ON *.* TO 'baton'@'%'; GRANT CREATE ON baton.* TO 'baton'@'%'"
	if e.Error() != want {
		t.Fatalf("got  %s\nwant %s", e.Error(), want)
	}
	if !errors.Is(fmt.Errorf("start: %w", e), ErrMissingGrants) {
		t.Fatal("errors.Is does not find ErrMissingGrants")
	}
	if got := accountName("baton@%"); got != "'baton'@'%'" {
		t.Fatalf("accountName: %s", got)
	}
	if got := accountName("o'neil@db@host"); got != "'o''neil@db'@'host'" {
		t.Fatalf("accountName: %s", got)
	}
}

// TestSeesTables: the auto-increment forecasts need any privilege on *.* that shows
// every table's columns; one on the baton schema alone shows only its own tables.
func TestSeesTables(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  bool
	}{
		{[]string{"GRANT PROCESS, SLAVE MONITOR ON *.* TO `baton`@`%`", "GRANT SELECT, INSERT ON `baton`.* TO `baton`@`%`"}, false},
		{[]string{"GRANT PROCESS, REFERENCES ON *.* TO `baton`@`%`"}, true},
		{[]string{"GRANT SELECT, PROCESS ON *.* TO `baton`@`%`"}, true},
		{[]string{"GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"}, true},
		{[]string{"GRANT SHOW VIEW ON *.* TO `baton`@`%`"}, false}, // shows TABLES, not COLUMNS
	} {
		if got := parseGrants(replication.FlavorMariaDB, tc.lines).seesTables(); got != tc.want {
			t.Errorf("%q: seesTables = %v, want %v", tc.lines, got, tc.want)
		}
	}
}
