package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/yaml.v3"

	"github.com/baton-ha/baton/vip"
)

// minimalYAML is the smallest valid configuration; tests add to it.
const minimalYAML = `
cluster: shop
node: db1
mysql:
  address: 192.0.2.11:3306
  user: baton
  password: s3cret-mysql
etcd:
  endpoints: [192.0.2.21:2379]
`

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseMinimalTakesDefaults(t *testing.T) {
	c, err := Parse([]byte(minimalYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Cluster, want.Node = "shop", "db1"
	want.MySQL.Address, want.MySQL.User, want.MySQL.Password = "192.0.2.11:3306", "baton", "s3cret-mysql"
	want.Etcd.Endpoints = []string{"192.0.2.21:2379"}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	// The design's budget, and agreement with the detector's own defaults.
	tm := c.Timings
	if tm.ProbeInterval != 500*time.Millisecond || tm.ProbeTimeout != 300*time.Millisecond || tm.FailAfter != 3 ||
		tm.RecoverAfter != 3 || tm.SessionTTL != 3*time.Second || tm.FenceMargin != time.Second ||
		tm.FailoverBlock != 5*time.Minute || tm.CatchupTimeout != 10*time.Second || tm.ConfirmLag != time.Second ||
		tm.SwitchoverMaxLag != time.Second || tm.MaxReplicaLag != 5*time.Second || tm.LongWrite != 5*time.Second ||
		tm.DiskWindow != time.Minute || tm.DiskHorizon != 10*time.Minute {
		t.Fatalf("default timings %+v", tm)
	}
	if c.HTTP.Listen != "0.0.0.0:9107" || c.Log.Level != "info" || c.Log.Format != "json" || c.VIP != nil {
		t.Fatalf("defaults: http %+v log %+v vip %v", c.HTTP, c.Log, c.VIP)
	}
	if p := c.StatePath(); p != "/var/lib/baton/shop" {
		t.Fatalf("default state directory %q; want /var/lib/baton/shop", p)
	}
	c.StateDir = "/srv/baton"
	if p := c.StatePath(); p != "/srv/baton" {
		t.Fatalf("state directory %q; want state_dir's", p)
	}
}

func TestParseKeepsExplicitZero(t *testing.T) {
	// Defaults are laid under the file, not filled into zero values afterwards: an
	// explicit 0s stays 0s.
	c, err := Parse([]byte(minimalYAML+"timings:\n  failover_block: 0s\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Timings.FailoverBlock != 0 || c.Timings.SessionTTL != DefaultSessionTTL {
		t.Fatalf("timings %+v", c.Timings)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644); err != nil { // not executable
		t.Fatal(err)
	}
	// Each case replaces the line old of minimalYAML with add or, when old is "",
	// appends add.
	cases := []struct {
		name, old, add, want string
	}{
		{"unknown top-level field", "", "clustr: x\n", "field clustr not found"},
		{"misspelt nested field", "", "timings:\n  fence_marign: 1s\n", "field fence_marign not found"},
		{"bare number duration", "", "timings:\n  probe_interval: 500\n", "timings.probe_interval: 500 needs a unit, e.g. 500ms"},
		{"bad duration", "", "timings:\n  probe_interval: 5 min\n", `timings.probe_interval: "5 min" is not a duration`},
		{"cluster missing", "cluster: shop", "", "config: cluster: required"},
		{"cluster with slash", "cluster: shop", "cluster: a/b\n", `config: cluster "a/b": use letters`},
		{"node missing", "node: db1", "", "config: node: required"},
		{"node bad chars", "node: db1", "node: \"db 1\"\n", `config: node "db 1"`},
		{"node starts with dash", "node: db1", "node: -db1\n", `config: node "-db1"`},
		{"node too long", "node: db1", "node: " + strings.Repeat("a", 65) + "\n", "longer than 64"},
		{"address missing", "  address: 192.0.2.11:3306", "", "config: mysql.address: required"},
		{"user missing", "  user: baton", "", "config: mysql.user: required"},
		{"password missing", "  password: s3cret-mysql", "", "config: mysql.password: required: set mysql.password_file or BATON_MYSQL_PASSWORD"},
		{"no endpoints", "  endpoints: [192.0.2.21:2379]", "", "config: etcd.endpoints: at least one endpoint is required"},
		{"bad endpoint scheme", "  endpoints: [192.0.2.21:2379]", "  endpoints: [ftp://x:1]\n", `config: etcd.endpoints[0] "ftp://x:1": scheme "ftp"`},
		{"https endpoint without tls", "  endpoints: [192.0.2.21:2379]", "  endpoints: [https://e1:2379]\n", "a TLS endpoint needs etcd.tls"},
		{"duplicate endpoint", "  endpoints: [192.0.2.21:2379]", "  endpoints: [e1:2379, e1:2379]\n", "listed twice"},
		{"endpoint without port", "  endpoints: [192.0.2.21:2379]", "  endpoints: [e1]\n", `config: etcd.endpoints[0] "e1": want host:port`},
		{"fence margin = ttl", "", "timings:\n  session_ttl: 2s\n  fence_margin: 2s\n", "config: timings.fence_margin (2s) must be less than timings.session_ttl (2s)"},
		{"session ttl below etcd minimum", "", "timings:\n  session_ttl: 1s\n  fence_margin: 500ms\n", "config: timings.session_ttl (1s): must be at least 2s"},
		{"session ttl fractional", "", "timings:\n  session_ttl: 2500ms\n", "config: timings.session_ttl (2.5s): must be whole seconds"},
		{"probe timeout = interval", "", "timings:\n  probe_interval: 300ms\n", "config: timings.probe_timeout (300ms) must be less than timings.probe_interval (300ms)"},
		{"fail_after zero", "", "timings:\n  fail_after: 0\n", "config: timings.fail_after (0): must be at least 1"},
		{"recover_after negative", "", "timings:\n  recover_after: -1\n", "config: timings.recover_after (-1)"},
		{"failover_block negative", "", "timings:\n  failover_block: -1s\n", "config: timings.failover_block (-1s)"},
		{"catchup zero", "", "timings:\n  catchup_timeout: 0s\n", "config: timings.catchup_timeout (0s)"},
		{"confirm lag zero", "", "timings:\n  confirm_lag: 0s\n", "config: timings.confirm_lag (0s)"},
		{"long write zero", "", "timings:\n  long_write: 0s\n", "config: timings.long_write (0s)"},
		{"disk horizon zero", "", "timings:\n  disk_horizon: 0s\n", "config: timings.disk_horizon (0s)"},
		{"max replica lag zero", "", "timings:\n  max_replica_lag: 0s\n", "config: timings.max_replica_lag (0s)"},
		{"hook relative", "", "hooks:\n  pre_failover: [notify]\n", `config: hooks.pre_failover: "notify": the program must be an absolute path`},
		{"hook missing", "", "hooks:\n  post_failover: [/nonexistent/notify]\n", "config: hooks.post_failover: stat /nonexistent/notify"},
		{"hook not executable", "", "hooks:\n  pre_switchover: [" + script + "]\n", "config: hooks.pre_switchover: " + script + " is not an executable file"},
		{"hook timeout zero", "", "hooks:\n  timeout: 0s\n", "config: hooks.timeout (0s)"},
		{"listen bad", "", "http:\n  listen: 9107\n", `config: http.listen "9107": want host:port`},
		{"log level", "", "log:\n  level: verbose\n", `config: log.level "verbose"`},
		{"log format", "", "log:\n  format: xml\n", `config: log.format "xml"`},
		{"vip bad address", "", "vip:\n  address: 192.0.2.0/24\n  interface: eth0\n", "config: vip: vip config: address \"192.0.2.0/24\": is the network address"},
		{"vip no interface", "", "vip:\n  address: 192.0.2.100/24\n", "config: vip: vip config: interface is empty"},
		{"datadir relative", "", "datadir: var/lib/mysql\n", `config: datadir "var/lib/mysql": must be an absolute path`},
		{"state dir relative", "", "state_dir: var/lib/baton\n", `config: state_dir "var/lib/baton": must be an absolute path`},
		{"state dir root", "", "state_dir: /\n", `config: state_dir "/": must be an absolute path, not /`},
		{"two documents", "", "---\ncluster: other\n", "more than one YAML document"},
		{"failsafe without secret", "", "failsafe: true\n", "config: failsafe: true needs the peer secret: set peer_secret_file or BATON_PEER_SECRET"},
		{"salvage without secret", "", "salvage: true\n", "config: salvage: true needs the peer secret"},
		{"salvage timeout too short", "", "timings:\n  salvage_timeout: 100ms\n", "config: timings.salvage_timeout (100ms): must be from 200ms to 1m"},
		{"salvage timeout too long", "", "timings:\n  salvage_timeout: 2m\n", "config: timings.salvage_timeout (2m0s)"},
		{"peer secret too short", "", "peer_secret: short\n", "config: peer_secret: 5 bytes, at least 16 are required"},
		{"peer secret twice", "", "peer_secret: 0123456789abcdef\npeer_secret_file: /x\n", "config: peer_secret and peer_secret_file are both set"},
		{"peer secret file relative", "", "peer_secret_file: peer.secret\n", `config: peer_secret_file "peer.secret": must be an absolute path`},
		{"peer secret file missing", "", "peer_secret_file: /nonexistent/peer.secret\n", "config: peer_secret_file: open /nonexistent/peer.secret"},
		{"advertise unspecified", "", "http:\n  advertise: 0.0.0.0:9107\n", `config: http.advertise "0.0.0.0:9107": 0.0.0.0 is not an address a peer can reach`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := minimalYAML
			if tc.old != "" {
				if !strings.Contains(y, tc.old+"\n") {
					t.Fatalf("bad case: %q not in the minimal YAML", tc.old)
				}
				y = strings.Replace(y, tc.old+"\n", tc.add, 1)
			} else {
				y += tc.add
			}
			_, err := Parse([]byte(y), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestFailsafeSettings: failsafe mode is on only with a peer secret (from the
// environment, a file or the YAML), off when asked, and the address peers reach the
// agent at follows http.listen or mysql.address.
func TestFailsafeSettings(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "peer.secret")
	if err := os.WriteFile(secretFile, []byte("from-the-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, add string
		env       map[string]string
		on        bool
		secret    string
		agent     string
	}{
		{name: "nothing set: off", agent: "192.0.2.11:9107"},
		{name: "secret from a file: on", add: "peer_secret_file: " + secretFile + "\n", on: true, secret: "from-the-file-0123456789", agent: "192.0.2.11:9107"},
		{name: "secret from the environment wins", add: "peer_secret_file: " + secretFile + "\n", env: map[string]string{EnvPeerSecret: "from-the-env-0123456789"}, on: true, secret: "from-the-env-0123456789", agent: "192.0.2.11:9107"},
		{name: "turned off with a secret", add: "failsafe: false\npeer_secret_file: " + secretFile + "\n", secret: "from-the-file-0123456789", agent: "192.0.2.11:9107"},
		{name: "listen on an address", add: "http:\n  listen: 192.0.2.50:9200\n", agent: "192.0.2.50:9200"},
		{name: "listen on all, port kept", add: "http:\n  listen: :9300\n", agent: "192.0.2.11:9300"},
		{name: "advertise wins", add: "http:\n  listen: 0.0.0.0:9107\n  advertise: agent1.example:9107\n", agent: "agent1.example:9107"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(minimalYAML+tc.add), envMap(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.FailsafeOn() != tc.on || c.PeerSecret.Reveal() != tc.secret || c.AgentAddr() != tc.agent {
				t.Fatalf("failsafe %v, secret %q, agent %q; want %v, %q, %q", c.FailsafeOn(), c.PeerSecret.Reveal(), c.AgentAddr(), tc.on, tc.secret, tc.agent)
			}
			if c.PeerSecret != "" && (c.PeerSecret.String() != "[redacted]" || strings.Contains(fmt.Sprintf("%+v", c), tc.secret)) {
				t.Fatal("the peer secret shows")
			}
		})
	}
	// A zero Config is never in failsafe mode.
	if (Config{}).FailsafeOn() {
		t.Fatal("the zero Config is in failsafe mode")
	}
}

// TestSalvageSettings: salvage follows the peer secret (its requests are signed
// with it) unless set, and its timeout defaults to 2 s.
func TestSalvageSettings(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "peer.secret")
	if err := os.WriteFile(secretFile, []byte("from-the-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, add string
		on        bool
	}{
		{"no secret: off", "", false},
		{"a secret: on", "peer_secret_file: " + secretFile + "\n", true},
		{"a secret, turned off", "salvage: false\npeer_secret_file: " + secretFile + "\n", false},
		{"failsafe off does not turn salvage off", "failsafe: false\npeer_secret_file: " + secretFile + "\n", true},
	} {
		c, err := Parse([]byte(minimalYAML+tc.add), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.SalvageOn() != tc.on || c.Timings.SalvageTimeout != 2*time.Second {
			t.Errorf("%s: salvage %v, timeout %s; want %v, 2s", tc.name, c.SalvageOn(), c.Timings.SalvageTimeout, tc.on)
		}
	}
	if (Config{}).SalvageOn() {
		t.Fatal("the zero Config salvages")
	}
}

// TestParseMoreErrors covers errors in sections that minimalYAML already has, with the
// whole file written out.
func TestParseMoreErrors(t *testing.T) {
	base := func(mysql, etcd string) string {
		return "cluster: shop\nnode: db1\nmysql:\n" + mysql + "etcd:\n" + etcd
	}
	okMySQL := "  address: 192.0.2.11:3306\n  user: baton\n  password: pw\n"
	okEtcd := "  endpoints: [e1:2379]\n"
	cases := []struct{ name, yaml, want string }{
		{"address unspecified", base("  address: 0.0.0.0:3306\n  user: baton\n  password: pw\n", okEtcd),
			`config: mysql.address "0.0.0.0:3306": 0.0.0.0 is not an address a peer can reach`},
		{"address no host", base("  address: :3306\n  user: baton\n  password: pw\n", okEtcd),
			`config: mysql.address ":3306": the host is missing`},
		{"address bad port", base("  address: db1:99999\n  user: baton\n  password: pw\n", okEtcd),
			`config: mysql.address "db1:99999": port must be a number from 1 to 65535`},
		{"relative socket", base(okMySQL+"  socket: mysqld.sock\n", okEtcd),
			`config: mysql.socket "mysqld.sock": must be an absolute path`},
		{"connect timeout zero", base(okMySQL+"  connect_timeout: 0s\n", okEtcd),
			"config: mysql.connect_timeout (0s): must be positive"},
		{"replication password without user", base(okMySQL+"  replication:\n    password: x\n", okEtcd),
			"config: mysql.replication.password: set without mysql.replication.user"},
		{"replication user without password", base(okMySQL+"  replication:\n    user: repl\n", okEtcd),
			"config: mysql.replication.password: required with mysql.replication.user: set mysql.replication.password_file or BATON_REPLICATION_PASSWORD"},
		{"password and file", base(okMySQL+"  password_file: /etc/baton/pw\n", okEtcd),
			"config: mysql.password and mysql.password_file are both set: keep one"},
		{"relative password file", base("  address: 192.0.2.11:3306\n  user: baton\n  password_file: pw\n", okEtcd),
			`config: mysql.password_file "pw": must be an absolute path`},
		{"missing password file", base("  address: 192.0.2.11:3306\n  user: baton\n  password_file: /nonexistent/pw\n", okEtcd),
			"config: mysql.password_file: open /nonexistent/pw"},
		{"etcd username without password", base(okMySQL, okEtcd+"  username: baton\n"),
			"config: etcd.password: required with etcd.username: set etcd.password_file or BATON_ETCD_PASSWORD"},
		{"etcd password without username", base(okMySQL, okEtcd+"  password: x\n"),
			"config: etcd.password: set without etcd.username"},
		{"etcd dial timeout", base(okMySQL, okEtcd+"  dial_timeout: 0s\n"),
			"config: etcd.dial_timeout (0s): must be positive"},
		{"etcd plain endpoint with tls", base(okMySQL, "  endpoints: [http://e1:2379]\n  tls: {}\n"),
			`config: etcd.endpoints[0] "http://e1:2379": a plain-text endpoint with etcd.tls set`},
		{"etcd tls cert without key", base(okMySQL, "  endpoints: [https://e1:2379]\n  tls:\n    cert: /x.pem\n"),
			"config: etcd.tls.key: required with etcd.tls.cert"},
		{"etcd tls missing ca", base(okMySQL, "  endpoints: [https://e1:2379]\n  tls:\n    ca: /nonexistent/ca.pem\n"),
			"config: etcd.tls.ca: open /nonexistent/ca.pem"},
		{"mysql tls key without cert", base(okMySQL+"  tls:\n    key: /x.pem\n", okEtcd),
			"config: mysql.tls.cert: required with mysql.tls.key"},
		{"replication tls relative ca", base(okMySQL+"  replication:\n    tls:\n      ca: ca.pem\n", okEtcd),
			`config: mysql.replication.tls.ca "ca.pem": must be an absolute path`},
		{"replication tls cert without key", base(okMySQL+"  replication:\n    tls:\n      cert: /c.pem\n", okEtcd),
			"config: mysql.replication.tls.cert and mysql.replication.tls.key: both or neither"},
		{"replication tls unknown key", base(okMySQL+"  replication:\n    tls:\n      capath: /x\n", okEtcd),
			`mysql.replication.tls: unknown setting "capath"`},
		{"replication tls not a bool", base(okMySQL+"  replication:\n    tls: yes-please\n", okEtcd),
			"mysql.replication.tls: want true, false or a mapping"},
		{"peer fail after zero", base(okMySQL, okEtcd) + "timings:\n  peer_fail_after: 0\n",
			"config: timings.peer_fail_after (0): must be at least 1"},
		{"unix endpoint without path", base(okMySQL, "  endpoints: [\"unix://\"]\n"),
			`config: etcd.endpoints[0] "unix://": no socket path`},
		{"empty file", "", "config: the file is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSecretsResolution(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	twoLines := filepath.Join(dir, "two")
	if err := os.WriteFile(twoLines, []byte("a\nb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := func(mysqlSecret, etcdSecret string) string {
		return "cluster: shop\nnode: db1\nmysql:\n  address: 192.0.2.11:3306\n  user: baton\n" + mysqlSecret +
			"etcd:\n  endpoints: [e1:2379]\n  username: baton\n" + etcdSecret
	}
	cases := []struct {
		name           string
		yaml           string
		env            map[string]string
		mysql, etcd    string
		wantErrContain string
	}{
		{"inline", y("  password: inline\n", "  password: einline\n"), nil, "inline", "einline", ""},
		{"file, newline trimmed", y("  password_file: "+file+"\n", "  password_file: "+file+"\n"), nil, "from-file", "from-file", ""},
		{"env wins over file", y("  password_file: "+file+"\n", "  password: einline\n"),
			map[string]string{EnvMySQLPassword: "from-env", EnvEtcdPassword: "etcd-env"}, "from-env", "etcd-env", ""},
		{"env alone", y("", ""), map[string]string{EnvMySQLPassword: "m", EnvEtcdPassword: "e"}, "m", "e", ""},
		{"empty file", y("  password_file: "+empty+"\n", "  password: e\n"), nil, "", "", "is empty"},
		{"two lines", y("  password_file: "+twoLines+"\n", "  password: e\n"), nil, "", "", "more than one line"},
		{"both set, even with env", y("  password: a\n  password_file: "+file+"\n", "  password: e\n"),
			map[string]string{EnvMySQLPassword: "m"}, "", "", "both set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), envMap(tc.env))
			if tc.wantErrContain != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrContain) {
					t.Fatalf("error %v, want %q", err, tc.wantErrContain)
				}
				if strings.Contains(err.Error(), "from-file") {
					t.Fatalf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MySQL.Password.Reveal() != tc.mysql || c.Etcd.Password.Reveal() != tc.etcd {
				t.Fatalf("mysql %q etcd %q", c.MySQL.Password.Reveal(), c.Etcd.Password.Reveal())
			}
		})
	}
}

func TestSecretsNeverShown(t *testing.T) {
	c, err := Parse([]byte(minimalYAML+"  username: u\n  password: s3cret-etcd\n"+
		"  tls: null\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.MySQL.Replication = ReplicationAccount{User: "repl", Password: "s3cret-repl"}
	secrets := []string{"s3cret-mysql", "s3cret-etcd", "s3cret-repl"}

	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	log := zap.New(zapcoreForTest(&logged))
	log.Info("config", zap.Any("config", c), zap.Stringer("pw", c.MySQL.Password))
	outputs := map[string]string{
		"json": string(j), "yaml": string(y), "%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c),
		"%#v": fmt.Sprintf("%#v", c), "%s": fmt.Sprintf("%s", c.MySQL.Password), "zap": logged.String(),
	}
	for form, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s output shows secret %q: %s", form, s, out)
			}
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s output does not say the secret is redacted: %s", form, out)
		}
	}
	// The secrets are still there for the code that needs them.
	if c.MySQL.Password.Reveal() != "s3cret-mysql" {
		t.Fatal("Reveal lost the secret")
	}
	if Secret("").String() != "" {
		t.Fatal("an empty secret should print empty, so that 'not set' shows")
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(p, []byte(minimalYAML+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, nil)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("error %v, want it to name the file and the field", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), nil); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestExampleLoads keeps deploy/baton.example.yaml valid, and complete: every setting
// of Config is in it, set or commented out.
func TestExampleLoads(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", "baton.example.yaml")
	c, err := Load(path, envMap(map[string]string{EnvMySQLPassword: "pw", EnvReplicationPassword: "rpw", EnvPeerSecret: "0123456789abcdef0123"}))
	if err != nil {
		t.Fatalf("the example configuration does not load: %v", err)
	}
	if c.VIP == nil || !c.SemiSync || c.MySQL.Replication.User != "repl" || len(c.Etcd.Endpoints) != 3 || !c.FailsafeOn() {
		t.Fatalf("example loaded as %+v", c)
	}
	// The example shows the defaults: it must agree with the code.
	want := DefaultConfig().Timings
	if c.Timings != want {
		t.Fatalf("example timings %+v differ from the defaults %+v", c.Timings, want)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range yamlPaths(reflect.TypeOf(Config{}), "") {
		leaf := p[strings.LastIndexByte(p, '.')+1:]
		if !strings.Contains(string(b), leaf+":") {
			t.Errorf("the example does not show %s", p)
		}
	}
}

// TestDocsNameEveryField keeps docs/configuration.md in step with Config: every
// setting's full path appears there, in backquotes.
func TestDocsNameEveryField(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	paths := yamlPaths(reflect.TypeOf(Config{}), "")
	if len(paths) < 40 {
		t.Fatalf("only %d settings found: the walk is broken", len(paths))
	}
	for _, p := range paths {
		if !strings.Contains(doc, "`"+p+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", p)
		}
	}
	for _, env := range []string{EnvMySQLPassword, EnvReplicationPassword, EnvEtcdPassword, EnvPeerSecret} {
		if !strings.Contains(doc, env) {
			t.Errorf("docs/configuration.md does not mention %s", env)
		}
	}
	for _, v := range (HookRun{}).Env() {
		name := v[:strings.IndexByte(v, '=')]
		if !strings.Contains(doc, name) {
			t.Errorf("docs/configuration.md does not document the hook variable %s", name)
		}
	}
}

// yamlPaths lists the dotted paths of every leaf setting of t, by yaml tag.
func yamlPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		p := prefix + tag
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}) {
			out = append(out, yamlPaths(ft, p+".")...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func TestDefaultsAgreeWithTheirRules(t *testing.T) {
	c := DefaultConfig()
	c.Cluster, c.Node = "c", "n"
	c.MySQL.Address, c.MySQL.User, c.MySQL.Password = "h:3306", "u", "p"
	c.Etcd.Endpoints = []string{"h:2379"}
	if err := c.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if vip.DefaultARPCount != 3 {
		t.Fatalf("the example and the docs say arp_count defaults to 3; vip says %d", vip.DefaultARPCount)
	}
}

func TestMySQLDSN(t *testing.T) {
	c, err := Parse([]byte(minimalYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(dsn string, err error) *mysql.Config {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		mc, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatalf("dsn %q does not parse: %v", dsn, err)
		}
		return mc
	}
	// No socket: local is TCP to the address.
	mc := parse(c.MySQLDSN(true))
	if mc.Net != "tcp" || mc.Addr != "192.0.2.11:3306" || mc.User != "baton" || mc.Passwd != "s3cret-mysql" ||
		mc.Timeout != DefaultConnectTimeout || mc.ReadTimeout != mysqlIOTimeout || mc.WriteTimeout != mysqlIOTimeout {
		t.Fatalf("local tcp dsn: %+v", mc)
	}
	c.MySQL.Socket = "/run/mysqld/mysqld.sock"
	if mc := parse(c.MySQLDSN(true)); mc.Net != "unix" || mc.Addr != "/run/mysqld/mysqld.sock" {
		t.Fatalf("local socket dsn: %+v", mc)
	}
	if mc := parse(c.MySQLDSN(false)); mc.Net != "tcp" || mc.Addr != "192.0.2.11:3306" {
		t.Fatalf("non-local dsn: %+v", mc)
	}
	if mc := parse(c.PeerDSN("192.0.2.12:3306")); mc.Net != "tcp" || mc.Addr != "192.0.2.12:3306" || mc.Passwd != "s3cret-mysql" {
		t.Fatalf("peer dsn: %+v", mc)
	}
	if _, err := c.PeerDSN("192.0.2.12"); err == nil {
		t.Fatal("a peer address without a port was accepted")
	}

	// With TLS files: TCP connections use TLS, the socket does not.
	ca, cert, key := writeTestPKI(t)
	c.MySQL.TLS = &TLSFiles{CA: ca, Cert: cert, Key: key}
	mc = parse(c.MySQLDSN(false))
	if mc.TLSConfig != MySQLTLSName || mc.TLS == nil || mc.TLS.RootCAs == nil || len(mc.TLS.Certificates) != 1 {
		t.Fatalf("tls dsn: tls=%q %+v", mc.TLSConfig, mc.TLS)
	}
	if mc.TLS.ServerName != "192.0.2.11" {
		t.Fatalf("server name %q, want the host of the address", mc.TLS.ServerName)
	}
	if mc := parse(c.PeerDSN("db2.example:3306")); mc.TLS == nil || mc.TLS.ServerName != "db2.example" {
		t.Fatalf("peer tls server name: %+v", mc.TLS)
	}
	if mc := parse(c.MySQLDSN(true)); mc.TLS != nil || mc.TLSConfig != "" {
		t.Fatalf("socket dsn uses TLS: %+v", mc)
	}
	if mc, err := c.MySQLConfig(""); err != nil || mc.Net != "unix" {
		t.Fatalf("MySQLConfig(\"\") = %+v, %v", mc, err)
	}
}

func TestReplicationSource(t *testing.T) {
	c, err := Parse([]byte(minimalYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.ReplicationSource("192.0.2.12:3307")
	if err != nil {
		t.Fatal(err)
	}
	if s.Host != "192.0.2.12" || s.Port != 3307 || s.User != "baton" || s.Password != "s3cret-mysql" || s.TLS {
		t.Fatalf("admin account as replication account: %+v", s)
	}
	if o := c.GrantOptions(); !o.Replicates || o.SemiSync {
		t.Fatalf("grant options %+v: the admin account replicates", o)
	}
	c.MySQL.Replication = ReplicationAccount{User: "repl", Password: "rpw", TLS: ReplicationTLS{Enabled: true}}
	c.SemiSync = true
	s, _ = c.ReplicationSource("192.0.2.12:3307")
	if s.User != "repl" || s.Password != "rpw" || !s.TLS {
		t.Fatalf("replication account: %+v", s)
	}
	if o := c.GrantOptions(); o.Replicates || !o.SemiSync {
		t.Fatalf("grant options %+v", o)
	}
}

func TestReplicationTLSForms(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       ReplicationTLS
	}{
		{"absent", "", ReplicationTLS{}},
		{"false", "  replication:\n    tls: false\n", ReplicationTLS{}},
		{"true", "  replication:\n    tls: true\n", ReplicationTLS{Enabled: true}},
		{"mapping", "  replication:\n    tls:\n      ca: /etc/mysql/ca.pem\n      cert: /etc/mysql/c.pem\n      key: /etc/mysql/k.pem\n      verify_server_cert: true\n",
			ReplicationTLS{Enabled: true, CA: "/etc/mysql/ca.pem", Cert: "/etc/mysql/c.pem", Key: "/etc/mysql/k.pem", VerifyServerCert: true}},
		{"empty mapping", "  replication:\n    tls: {}\n", ReplicationTLS{Enabled: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := strings.Replace(minimalYAML, "  password: s3cret-mysql\n", "  password: s3cret-mysql\n"+tc.yaml, 1)
			c, err := Parse([]byte(y), nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.MySQL.Replication.TLS != tc.want {
				t.Fatalf("got %+v, want %+v", c.MySQL.Replication.TLS, tc.want)
			}
		})
	}
}

// TestConnectionsCarryTLS checks that the settings of mysql.tls reach every
// connection the agent makes to a server (its own over TCP, the coordinator's, the
// peer probe's), and that mysql.replication.tls reaches what replicas are pointed at.
func TestConnectionsCarryTLS(t *testing.T) {
	c, err := Parse([]byte(minimalYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, cert, key := writeTestPKI(t)
	c.MySQL.TLS = &TLSFiles{CA: ca, Cert: cert, Key: key}
	c.MySQL.ConnectTimeout = 1500 * time.Millisecond
	c.MySQL.Replication = ReplicationAccount{User: "repl", Password: "rpw",
		TLS: ReplicationTLS{Enabled: true, CA: "/etc/mysql/ca.pem", Cert: "/etc/mysql/r.pem", Key: "/etc/mysql/r.key", VerifyServerCert: true}}
	conns, err := c.connections(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer conns.servers.Close()
	check := func(what string, mc *mysql.Config, host string) {
		t.Helper()
		if mc.TLS == nil || mc.TLS.RootCAs == nil || len(mc.TLS.Certificates) != 1 || mc.TLS.ServerName != host {
			t.Errorf("%s: tls %+v, want mysql.tls with server name %s", what, mc.TLS, host)
		}
		if mc.Timeout != 1500*time.Millisecond || mc.User != "baton" || mc.Passwd != "s3cret-mysql" {
			t.Errorf("%s: timeout %s user %s: mysql section lost", what, mc.Timeout, mc.User)
		}
	}
	local, err := conns.dialer.Config(c.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	check("local", local, "192.0.2.11")
	coord, err := conns.servers.Dialer.Config("db2.example:3306")
	if err != nil {
		t.Fatal(err)
	}
	check("coordinator", coord, "db2.example")
	if coord.ReadTimeout < 2*c.Timings.CatchupTimeout {
		t.Errorf("coordinator read timeout %s is shorter than a catch-up wait", coord.ReadTimeout)
	}
	for what, dsn := range map[string]string{"detector": conns.localDSN} {
		mc, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		check(what, mc, "192.0.2.11")
	}
	peer, err := c.PeerDSN("db3.example:3306")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := mysql.ParseDSN(peer)
	if err != nil {
		t.Fatal(err)
	}
	check("peer probe", pc, "db3.example")

	r := conns.repl
	if r.User != "repl" || r.Password != "rpw" || !r.TLS || r.SSLCA != "/etc/mysql/ca.pem" || r.SSLCert != "/etc/mysql/r.pem" ||
		r.SSLKey != "/etc/mysql/r.key" || !r.SSLVerifyServerCert {
		t.Errorf("replication source %+v lost mysql.replication", r)
	}

	// Over the socket, no TLS.
	c.MySQL.Socket = "/run/mysqld/mysqld.sock"
	conns, err = c.connections(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if mc, err := conns.dialer.Config(c.LocalAddr()); err != nil || mc.Net != "unix" || mc.TLS != nil {
		t.Errorf("socket: %+v, %v", mc, err)
	}
}

func TestEtcdClientConfig(t *testing.T) {
	ca, cert, key := writeTestPKI(t)
	y := strings.Replace(minimalYAML, "  endpoints: [192.0.2.21:2379]\n",
		"  endpoints: [https://192.0.2.21:2379, 192.0.2.22:2379]\n  dial_timeout: 750ms\n  username: baton\n  tls:\n    ca: "+ca+
			"\n    cert: "+cert+"\n    key: "+key+"\n    server_name: etcd.example\n", 1)
	c, err := Parse([]byte(y), envMap(map[string]string{EnvEtcdPassword: "etcd-pw"}))
	if err != nil {
		t.Fatal(err)
	}
	ec, err := c.EtcdClientConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ec.Endpoints) != 2 || ec.DialTimeout != 750*time.Millisecond || ec.Username != "baton" || ec.Password != "etcd-pw" || ec.Logger == nil {
		t.Fatalf("etcd config %+v", ec)
	}
	if ec.TLS == nil || ec.TLS.RootCAs == nil || len(ec.TLS.Certificates) != 1 || ec.TLS.ServerName != "etcd.example" || ec.TLS.MinVersion == 0 {
		t.Fatalf("etcd tls %+v", ec.TLS)
	}
	// Keep-alives notice a dead connection within the session TTL.
	if ec.DialKeepAliveTime <= 0 || ec.DialKeepAliveTime+ec.DialKeepAliveTimeout >= c.Timings.SessionTTL {
		t.Fatalf("keep-alive %s + %s against a %s TTL", ec.DialKeepAliveTime, ec.DialKeepAliveTimeout, c.Timings.SessionTTL)
	}
	// Pings over connections without streams too: else the first call over an idle
	// connection waits on a ping answered within keepAlive, and a slow etcd has its
	// connections closed (see EtcdClientConfig).
	if !ec.PermitWithoutStream {
		t.Fatal("the etcd client does not ping connections without streams")
	}
	// A CA file with no certificate in it is refused, naming the field.
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	c.Etcd.TLS.CA = bad
	if _, err := c.EtcdClientConfig(nil); err == nil || !strings.Contains(err.Error(), "etcd.tls.ca") {
		t.Fatalf("bad CA: %v", err)
	}
}

func TestLogNewLogger(t *testing.T) {
	for _, l := range []Log{{"debug", "json"}, {"error", "console"}} {
		log, err := l.NewLogger()
		if err != nil {
			t.Fatal(err)
		}
		if log.Core().Enabled(zap.DebugLevel) != (l.Level == "debug") {
			t.Fatalf("%+v: debug enabled = %v", l, log.Core().Enabled(zap.DebugLevel))
		}
	}
	if _, err := (Log{"loud", "json"}).NewLogger(); err == nil {
		t.Fatal("bad level accepted")
	}
}

func TestHooksRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := write("env.sh", "env | sort\n")
	fail := write("fail.sh", "echo refusing; exit 3\n")
	hang := write("hang.sh", "sleep 30 &\nsleep 30\n")
	chatty := write("chatty.sh", "head -c 100000 /dev/zero | tr '\\0' x\n")
	t.Setenv(EnvMySQLPassword, "agent-secret") // in the agent's environment, never a hook's

	run := HookRun{Event: PreFailover, Cluster: "shop", Node: "db2", OldPrimary: "db1", NewPrimary: "db3",
		NewPrimaryAddr: "192.0.2.13:3306", Epoch: 7, Reason: "db1 unwritable"}
	h := Hooks{PreFailover: []string{env}, PostFailover: []string{fail, "arg"}, PreSwitchover: []string{hang},
		PostSwitchover: []string{chatty}, Timeout: 500 * time.Millisecond}
	if err := h.validate(); err != nil {
		t.Fatal(err)
	}
	out, err := h.Run(context.Background(), run)
	if err != nil {
		t.Fatalf("env hook: %v: %s", err, out)
	}
	for _, want := range []string{"BATON_EVENT=pre_failover", "BATON_CLUSTER=shop", "BATON_NODE=db2", "BATON_OLD_PRIMARY=db1",
		"BATON_NEW_PRIMARY=db3", "BATON_NEW_PRIMARY_ADDR=192.0.2.13:3306", "BATON_EPOCH=7", "BATON_REASON=db1 unwritable"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("hook environment lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "agent-secret") || strings.Contains(string(out), EnvMySQLPassword) {
		t.Errorf("the agent's environment leaked into the hook:\n%s", out)
	}

	run.Event = PostFailover
	out, err = h.Run(context.Background(), run)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(string(out), "refusing") {
		t.Fatalf("failing hook: %v %q", err, out)
	}

	run.Event = PreSwitchover
	start := time.Now()
	_, err = h.Run(context.Background(), run)
	if took := time.Since(start); err == nil || took > 3*time.Second {
		t.Fatalf("hanging hook: %v after %s", err, took)
	}
	if !strings.Contains(err.Error(), "killed after 500ms") {
		t.Fatalf("hanging hook error: %v", err)
	}

	run.Event = PostSwitchover
	out, err = h.Run(context.Background(), run)
	if err != nil || len(out) != hookOutputLimit {
		t.Fatalf("chatty hook: %v, kept %d bytes", err, len(out))
	}

	if _, err := (Hooks{Timeout: time.Second}).Run(context.Background(), run); !errors.Is(err, ErrNoHook) {
		t.Fatalf("no hook: %v", err)
	}
	for _, e := range []HookEvent{PreFailover, PostFailover, PreSwitchover, PostSwitchover} {
		if len(h.Argv(e)) == 0 || !strings.Contains(e.String(), "_") {
			t.Fatalf("event %d: %q %v", e, e, h.Argv(e))
		}
	}
}

// zapcoreForTest is a JSON core writing to w, as the agent's production logger does.
func zapcoreForTest(w *strings.Builder) zapcore.Core {
	return zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(w), zap.DebugLevel)
}

// writeTestPKI writes a CA and a client certificate and key signed by it.
func writeTestPKI(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cliKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cliTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "baton"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	caCert, _ := x509.ParseCertificate(caDER)
	cliDER, err := x509.CreateCertificate(rand.Reader, cliTmpl, caCert, &cliKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	w := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return w("ca.pem", "CERTIFICATE", caDER), w("cert.pem", "CERTIFICATE", cliDER), w("key.pem", "EC PRIVATE KEY", keyDER)
}
