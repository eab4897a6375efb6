package replication

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"
)

func TestStatementsPerFlavor(t *testing.T) {
	tests := []struct {
		name          string
		got           func(Flavor) string
		mariadb, mysq string
	}{
		{"replica status", replicaStatusQuery, "SHOW SLAVE STATUS", "SHOW REPLICA STATUS"},
		{"stop io", stopIOQuery, "STOP SLAVE IO_THREAD", "STOP REPLICA IO_THREAD"},
		{"stop", stopReplicationQuery, "STOP SLAVE", "STOP REPLICA"},
		{"start", startReplicationQuery, "START SLAVE", "START REPLICA"},
		{"reset", resetReplicationQuery, "RESET SLAVE ALL", "RESET REPLICA ALL"},
	}
	for _, tt := range tests {
		if got := tt.got(FlavorMariaDB); got != tt.mariadb {
			t.Errorf("%s mariadb: %q, want %q", tt.name, got, tt.mariadb)
		}
		if got := tt.got(FlavorMySQL); got != tt.mysq {
			t.Errorf("%s mysql: %q, want %q", tt.name, got, tt.mysq)
		}
	}
	ro := map[string][]string{
		"mariadb on":  readOnlyQueries(FlavorMariaDB, true),
		"mariadb off": readOnlyQueries(FlavorMariaDB, false),
		"mysql on":    readOnlyQueries(FlavorMySQL, true),
		"mysql off":   readOnlyQueries(FlavorMySQL, false),
	}
	want := map[string]string{
		"mariadb on":  "SET GLOBAL read_only = ON",
		"mariadb off": "SET GLOBAL read_only = OFF",
		"mysql on":    "SET GLOBAL super_read_only = ON",
		// super_read_only first: read_only=OFF is refused while it is ON.
		"mysql off": "SET GLOBAL super_read_only = OFF; SET GLOBAL read_only = OFF",
	}
	for k, q := range ro {
		if got := strings.Join(q, "; "); got != want[k] {
			t.Errorf("read only %s: %q, want %q", k, got, want[k])
		}
	}
	if !strings.Contains(globalsQuery(FlavorMySQL), "@@GLOBAL.gtid_executed") || !strings.Contains(globalsQuery(FlavorMySQL), "super_read_only") {
		t.Errorf("mysql globals: %s", globalsQuery(FlavorMySQL))
	}
	for _, v := range []string{"gtid_binlog_pos", "gtid_binlog_state", "gtid_slave_pos", "gtid_current_pos", "gtid_strict_mode"} {
		if !strings.Contains(globalsQuery(FlavorMariaDB), "@@GLOBAL."+v+" AS "+v) {
			t.Errorf("mariadb globals lack %s", v)
		}
	}
}

func TestChangeSource(t *testing.T) {
	src := Source{Host: "198.18.0.12", Port: 3306, User: "repl", Password: `p'a\ss`}
	got := changeSourceQuery(FlavorMariaDB, src, time.Second, false)
	want := `CHANGE MASTER TO MASTER_HOST = '198.18.0.12', MASTER_PORT = 3306, MASTER_USER = 'repl', MASTER_PASSWORD = 'p''a\\ss', ` +
		`MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 1.000, MASTER_SSL = 0, ` +
		`MASTER_SSL_CA = '', MASTER_SSL_CERT = '', MASTER_SSL_KEY = '', MASTER_SSL_VERIFY_SERVER_CERT = 0`
	if got != want {
		t.Errorf("mariadb:\n got %s\nwant %s", got, want)
	}
	got = changeSourceQuery(FlavorMySQL, src, 500*time.Millisecond, true)
	want = `CHANGE REPLICATION SOURCE TO SOURCE_HOST = '198.18.0.12', SOURCE_PORT = 3306, SOURCE_USER = 'repl', SOURCE_PASSWORD = 'p''a\ss', ` +
		`SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, SOURCE_HEARTBEAT_PERIOD = 0.500, SOURCE_SSL = 0, ` +
		`SOURCE_SSL_CA = '', SOURCE_SSL_CERT = '', SOURCE_SSL_KEY = '', SOURCE_SSL_VERIFY_SERVER_CERT = 0, GET_SOURCE_PUBLIC_KEY = 1`
	if got != want {
		t.Errorf("mysql:\n got %s\nwant %s", got, want)
	}
}

func TestChangeSourceTLS(t *testing.T) {
	base := Source{Host: "198.18.0.12", Port: 3306, User: "repl", Password: "pw", TLS: true}
	full := base
	full.SSLCA, full.SSLCert, full.SSLKey, full.SSLVerifyServerCert = "/etc/mysql/ca.pem", "/etc/mysql/c'rt.pem", "/etc/mysql/key.pem", true
	for _, tc := range []struct {
		name   string
		flavor Flavor
		src    Source
		suffix string
	}{
		{"mariadb, tls without files", FlavorMariaDB, base,
			"MASTER_SSL = 1, MASTER_SSL_CA = '', MASTER_SSL_CERT = '', MASTER_SSL_KEY = '', MASTER_SSL_VERIFY_SERVER_CERT = 0"},
		{"mariadb, ca, cert and verification", FlavorMariaDB, full,
			"MASTER_SSL = 1, MASTER_SSL_CA = '/etc/mysql/ca.pem', MASTER_SSL_CERT = '/etc/mysql/c''rt.pem', MASTER_SSL_KEY = '/etc/mysql/key.pem', MASTER_SSL_VERIFY_SERVER_CERT = 1"},
		{"mysql, tls without files", FlavorMySQL, base,
			"SOURCE_SSL = 1, SOURCE_SSL_CA = '', SOURCE_SSL_CERT = '', SOURCE_SSL_KEY = '', SOURCE_SSL_VERIFY_SERVER_CERT = 0"},
		{"mysql, ca, cert and verification", FlavorMySQL, full,
			"SOURCE_SSL = 1, SOURCE_SSL_CA = '/etc/mysql/ca.pem', SOURCE_SSL_CERT = '/etc/mysql/c''rt.pem', SOURCE_SSL_KEY = '/etc/mysql/key.pem', SOURCE_SSL_VERIFY_SERVER_CERT = 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.src.validate(); err != nil {
				t.Fatal(err)
			}
			got := changeSourceQuery(tc.flavor, tc.src, time.Second, false)
			if !strings.HasSuffix(got, tc.suffix) {
				t.Errorf("got  %s\nwant suffix %s", got, tc.suffix)
			}
			if strings.Contains(got, "GET_SOURCE_PUBLIC_KEY") {
				t.Errorf("tls source asks for the public key: %s", got)
			}
		})
	}
	for _, bad := range []Source{
		{Host: "h", Port: 1, User: "u", SSLCA: "/ca.pem"},
		{Host: "h", Port: 1, User: "u", TLS: true, SSLCert: "/c.pem"},
	} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestWaitQuery(t *testing.T) {
	got := waitQuery(FlavorMariaDB, maria("0-1-6,0-2-7,1-1-1"), 1500*time.Millisecond)
	if got != "SELECT MASTER_GTID_WAIT('0-2-7,1-1-1', 1.500)" {
		t.Errorf("mariadb: %s", got)
	}
	got = waitQuery(FlavorMySQL, my(uO+":1-5,\n"+uP+":1-9"), 10*time.Second)
	if got != "SELECT WAIT_FOR_EXECUTED_GTID_SET('"+uO+":1-5,"+uP+":1-9', 10.000)" {
		t.Errorf("mysql: %s", got)
	}
	// Never 0: on some servers a zero timeout means "wait forever".
	if got := waitQuery(FlavorMySQL, my(uP+":1"), 0); !strings.HasSuffix(got, ", 0.001)") {
		t.Errorf("zero timeout: %s", got)
	}
	if got := setSlavePosQuery("0-2-7,1-1-1"); got != "SET GLOBAL gtid_slave_pos = '0-2-7,1-1-1'" {
		t.Errorf("slave pos: %s", got)
	}
}

func TestQuote(t *testing.T) {
	tests := []struct {
		in   string
		nbe  bool
		want string
	}{
		{"plain", false, "'plain'"},
		{"it's", false, "'it''s'"},
		{`a\b`, false, `'a\\b'`},
		{`a\b`, true, `'a\b'`},
		{`\'`, false, `'\\'''`},
		{"ünï", false, "'ünï'"},
	}
	for _, tt := range tests {
		if got := quote(tt.in, tt.nbe); got != tt.want {
			t.Errorf("quote(%q, %t) = %s, want %s", tt.in, tt.nbe, got, tt.want)
		}
	}
}

func TestSourceValidate(t *testing.T) {
	ok := Source{Host: "db1.example", Port: 3306, User: "repl", Password: "x"}
	if err := ok.validate(); err != nil {
		t.Errorf("valid source: %v", err)
	}
	bad := map[string]Source{
		"Host is empty": {Port: 3306, User: "repl"},
		"not a host":    {Host: "db1' --", Port: 3306, User: "repl"},
		"Port":          {Host: "db1", Port: 0, User: "repl"},
		"User is empty": {Host: "db1", Port: 3306},
		"NUL":           {Host: "db1", Port: 3306, User: "repl", Password: "a\x00b"},
	}
	for want, s := range bad {
		if err := s.validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want an error about %q", s, err, want)
		}
	}
}

func TestClientsToKill(t *testing.T) {
	// A MariaDB 10.11 primary's and replica's process lists, and MySQL 8's
	// replica threads (receiver shows Command "Connect").
	ps := []process{
		{10, "root", "Query", ""},       // self
		{11, "app", "Sleep", ""},        // client
		{12, "app", "Query", ""},        // client, hung on a full disk
		{13, "repl", "Binlog Dump", ""}, // replica's dump thread on the primary
		{14, "repl", "Binlog Dump GTID", ""},
		{5, "system user", "Slave_IO", ""},
		{6, "system user", "Slave_SQL", ""},
		{7, "system user", "Slave_worker", ""},
		{8, "system user", "Connect", ""}, // MySQL receiver thread
		{9, "event_scheduler", "Daemon", ""},
		{15, "baton", "Killed", ""},
		{16, "unauthenticated user", "Connect", ""}, // logging in: runs nothing yet, meets read_only once in
		{17, "root", "Sleep", ""},
		{18, "baton", "Query", "Waiting for global read lock"},         // the coordinator fencing the same server
		{19, "baton", "Query", "Waiting for semi-sync ACK from slave"}, // a write probe's commit
		{20, "baton", "Killed", "Waiting for semi-sync ACK from slave"},
	}
	got := clientsToKill(ps, 10, "baton")
	want := []int64{11, 12, 17, 19}
	if len(got) != len(want) {
		t.Fatalf("kill %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kill %v, want %v", got, want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	db, err := sql.Open("mysql", "u:p@unix(/nonexistent)/")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Name is empty"},
		{Config{Name: "db1", Timeout: -time.Second}, "Timeout"},
		{Config{Name: "db1", HeartbeatPeriod: -time.Second}, "HeartbeatPeriod"},
		{Config{Name: "db1", HeartbeatPeriod: time.Microsecond}, "HeartbeatPeriod"},
		{Config{Name: "db1", Flavor: Flavor(7)}, "Flavor"},
	}
	for _, tt := range tests {
		if _, err := New(db, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tt.cfg, err, tt.want)
		}
	}
	if _, err := New(nil, Config{Name: "db1"}); err == nil {
		t.Error("New(nil db) succeeded")
	}
	in, err := New(db, Config{Name: "db1", Flavor: FlavorMySQL})
	if err != nil {
		t.Fatal(err)
	}
	if in.Name() != "db1" || in.timeout != DefaultTimeout || in.heartbeat != DefaultHeartbeat {
		t.Errorf("defaults: %+v", in)
	}
	// A set flavor is not detected: no connection is made.
	if f, err := in.Flavor(t.Context()); err != nil || f != FlavorMySQL {
		t.Errorf("Flavor = %s, %v", f, err)
	}
}

func TestStmtDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	dl, _ := ctx.Deadline()
	if got := dl.Sub(stmtDeadline(ctx)); got < 490*time.Millisecond || got > 500*time.Millisecond {
		t.Errorf("reserve with 2s left = %s, want 500ms", got)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 400*time.Millisecond)
	defer cancel2()
	dl2, _ := ctx2.Deadline()
	if got := dl2.Sub(stmtDeadline(ctx2)); got < 90*time.Millisecond || got > 100*time.Millisecond {
		t.Errorf("reserve with 400ms left = %s, want 100ms", got)
	}
}

// TestSourceAtKeepsTLS: the replication settings the agent configures (account and
// mysql.replication.tls) reach the source a replica is pointed at.
func TestSourceAtKeepsTLS(t *testing.T) {
	repl := Source{Host: "ignored", Port: 1, User: "repl", Password: "pw", TLS: true,
		SSLCA: "/etc/mysql/ca.pem", SSLCert: "/etc/mysql/r.pem", SSLKey: "/etc/mysql/r.key", SSLVerifyServerCert: true}
	got := repl.At("198.18.0.12", 3306)
	want := repl
	want.Host, want.Port = "198.18.0.12", 3306
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestSplitAddr(t *testing.T) {
	if h, p, err := SplitAddr("198.18.0.12:3306"); err != nil || h != "198.18.0.12" || p != 3306 {
		t.Errorf("SplitAddr = %q %d %v", h, p, err)
	}
	for _, bad := range []string{"", "198.18.0.12", "host:port", "[::1]"} {
		if _, _, err := SplitAddr(bad); err == nil {
			t.Errorf("SplitAddr(%q) accepted", bad)
		}
	}
}
