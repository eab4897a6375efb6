package agent

// The agent's configuration: one YAML file per node, secrets from files or the
// environment, every value checked at start-up with an error that names the field.
// docs/configuration.md is the reference; config_test.go checks that it names every
// field and that deploy/baton.example.yaml loads.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"gopkg.in/yaml.v3"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/reconcile"
	"github.com/baton-ha/baton/replication"
	"github.com/baton-ha/baton/vip"
)

// Environment variables that override the secrets of the configuration file. They win
// over password and password_file, so a secret can be injected by the service manager
// without touching the file. Secrets are never taken from command-line flags: those
// are visible to every user of the host in /proc/PID/cmdline.
const (
	EnvMySQLPassword       = "BATON_MYSQL_PASSWORD"
	EnvReplicationPassword = "BATON_REPLICATION_PASSWORD"
	EnvEtcdPassword        = "BATON_ETCD_PASSWORD"
	// EnvPeerSecret is the secret the agents of a cluster sign their calls to one
	// another with (failsafe mode).
	EnvPeerSecret = "BATON_PEER_SECRET"
)

// Defaults of the configuration file. The probe timings are the detector's own, so
// that an agent and a detector configured by hand agree.
const (
	DefaultProbeInterval    = detector.DefaultInterval
	DefaultProbeTimeout     = detector.DefaultTimeout
	DefaultFailAfter        = detector.DefaultFailAfter
	DefaultRecoverAfter     = detector.DefaultRecoverAfter
	DefaultDiskWindow       = detector.DefaultDiskWindow
	DefaultDiskHorizon      = detector.DefaultDiskHorizon
	DefaultPeerFailAfter    = reconcile.DefaultPeerFailAfter
	DefaultSessionTTL       = 3 * time.Second
	DefaultFenceMargin      = time.Second
	DefaultFailoverBlock    = 5 * time.Minute
	DefaultCatchupTimeout   = 10 * time.Second
	DefaultConfirmLag       = time.Second
	DefaultSwitchoverMaxLag = time.Second
	DefaultLongWrite        = 5 * time.Second
	DefaultMaxReplicaLag    = 5 * time.Second
	DefaultEtcdDialTimeout  = 2 * time.Second
	DefaultConnectTimeout   = 2 * time.Second
	DefaultHookTimeout      = 5 * time.Second
	DefaultHTTPListen       = "0.0.0.0:9107"
)

// etcdMaxReconnectDelay bounds the wait between the etcd client's attempts to
// reconnect to an endpoint.
const etcdMaxReconnectDelay = time.Second

// minSessionTTL is etcd's smallest lease TTL with its default election timeout: a
// shorter TTL is silently raised by the server, and the agent's fencing arithmetic
// (ttl - fence_margin) would then be wrong.
const minSessionTTL = 2 * time.Second

// mysqlIOTimeout is the driver's socket read/write timeout: a backstop only. Every
// statement has a context deadline, and a statement that overruns it is killed
// server-side by the callers (detector, replication), which a socket timeout cannot do.
const mysqlIOTimeout = 10 * time.Second

// hookOutputLimit caps how much of a hook's output is kept for the log.
const hookOutputLimit = 4 << 10

// Config is one agent's configuration, as read from its YAML file by Load. Secrets
// (the Secret fields) are resolved by Load: from the environment, a file, or the
// YAML itself, in that order.
type Config struct {
	// Cluster names the cluster: every agent of a cluster has the same one, and its
	// state lives under /baton/<cluster>/ in etcd.
	Cluster string `yaml:"cluster" json:"cluster"`
	// Node is this node's name, unique in the cluster.
	Node      string    `yaml:"node" json:"node"`
	MySQL     MySQL     `yaml:"mysql" json:"mysql"`
	Etcd      Etcd      `yaml:"etcd" json:"etcd"`
	Timings   Timings   `yaml:"timings" json:"timings"`
	Candidate Candidate `yaml:"candidate" json:"candidate"`
	Hooks     Hooks     `yaml:"hooks" json:"hooks"`
	HTTP      HTTP      `yaml:"http" json:"http"`
	Log       Log       `yaml:"log" json:"log"`
	// VIP, when set, is the virtual IP the primary of record holds.
	VIP *vip.Config `yaml:"vip" json:"vip,omitempty"`
	// SemiSync says the cluster runs semi-synchronous replication (AFTER_SYNC): a
	// promoted server turns the source side on before it takes writes.
	SemiSync bool `yaml:"semi_sync" json:"semi_sync"`
	// Datadir is the local server's data directory, for the disk probe. Empty: asked
	// from the server (@@datadir).
	Datadir string `yaml:"datadir" json:"datadir,omitempty"`
	// Failsafe keeps the primary taking writes while etcd is unreachable for every
	// agent, as long as every peer's agent confirms it (docs/architecture.md, "Failsafe
	// mode"). nil (not set): on when a peer secret is configured, else off. Set to
	// true, it requires the peer secret.
	Failsafe *bool `yaml:"failsafe" json:"failsafe,omitempty"`
	// PeerSecret signs the agents' calls to one another (HMAC-SHA256); the same on
	// every node of the cluster. From BATON_PEER_SECRET, peer_secret_file or (not
	// recommended) peer_secret.
	PeerSecret     Secret `yaml:"peer_secret" json:"peer_secret"`
	PeerSecretFile string `yaml:"peer_secret_file" json:"peer_secret_file,omitempty"`
	// StateDir is where the agent records what must outlive it: a failsafe promise to
	// hold off failovers, so that a restarted agent keeps it. Empty:
	// DefaultStateDir(cluster). Made (0700) at start if missing.
	StateDir string `yaml:"state_dir" json:"state_dir,omitempty"`
}

// DefaultStateDir is state_dir when not set: /var/lib/baton/<cluster>.
func DefaultStateDir(cluster string) string { return filepath.Join("/var/lib/baton", cluster) }

// StatePath is the state directory: state_dir, or DefaultStateDir when not set.
func (c Config) StatePath() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	return DefaultStateDir(c.Cluster)
}

// minPeerSecret is the shortest peer secret accepted: an HMAC key guessable by
// brute force would let anyone on the network keep a cut-off primary writable.
const minPeerSecret = 16

// FailsafeOn says whether failsafe mode is on: asked for, or not set and a peer
// secret is configured.
func (c Config) FailsafeOn() bool {
	if c.Failsafe != nil {
		return *c.Failsafe
	}
	return c.PeerSecret != ""
}

// MySQL is how the agent reaches its local server, and how peers reach it.
type MySQL struct {
	// Address is host:port where the other agents (and replicas) reach this
	// node's server. The agent uses it too, unless Socket is set.
	Address string `yaml:"address" json:"address"`
	// Socket is the local server's unix socket; the agent's own connections use it
	// when set.
	Socket string `yaml:"socket" json:"socket,omitempty"`
	// User is Baton's admin account, the same on every node.
	User         string `yaml:"user" json:"user"`
	Password     Secret `yaml:"password" json:"password"`
	PasswordFile string `yaml:"password_file" json:"password_file,omitempty"`
	// ConnectTimeout bounds making a connection (TCP, TLS and authentication).
	ConnectTimeout time.Duration `yaml:"connect_timeout" json:"connect_timeout"`
	// TLS, when set, is used for every TCP connection to a server (never over the
	// unix socket).
	TLS *TLSFiles `yaml:"tls" json:"tls,omitempty"`
	// Replication is the account replicas use to connect to the primary.
	Replication ReplicationAccount `yaml:"replication" json:"replication"`
}

// ReplicationAccount is the account replicas connect to their source with (CHANGE
// MASTER TO MASTER_USER). An empty User means Baton's admin account does it too.
type ReplicationAccount struct {
	User         string `yaml:"user" json:"user,omitempty"`
	Password     Secret `yaml:"password" json:"password"`
	PasswordFile string `yaml:"password_file" json:"password_file,omitempty"`
	// TLS makes replicas connect to the source with TLS (MASTER_SSL=1).
	TLS ReplicationTLS `yaml:"tls" json:"tls"`
}

// ReplicationTLS is how this node's server connects to its source with TLS. In the
// file it is either a boolean (true: MASTER_SSL=1, encrypted, the source's
// certificate not checked) or a mapping of files, which turns TLS on. The files are
// on this node and are read by the MySQL server itself, not by the agent.
type ReplicationTLS struct {
	Enabled bool `yaml:"-" json:"enabled"`
	// CA is the PEM bundle the source's certificate is checked against
	// (MASTER_SSL_CA).
	CA string `yaml:"ca" json:"ca,omitempty"`
	// Cert and Key are the replica's client certificate and key (MASTER_SSL_CERT,
	// MASTER_SSL_KEY); both or neither.
	Cert string `yaml:"cert" json:"cert,omitempty"`
	Key  string `yaml:"key" json:"key,omitempty"`
	// VerifyServerCert makes the replica check the source's certificate and host
	// name (MASTER_SSL_VERIFY_SERVER_CERT).
	VerifyServerCert bool `yaml:"verify_server_cert" json:"verify_server_cert,omitempty"`
}

// UnmarshalYAML reads `tls: true|false` or a mapping. Unknown keys of the mapping are
// errors, as everywhere else in the file.
func (t *ReplicationTLS) UnmarshalYAML(n *yaml.Node) error {
	const field = "mysql.replication.tls"
	if n.Kind == yaml.ScalarNode {
		var on bool
		if err := n.Decode(&on); err != nil {
			return fmt.Errorf("%s: want true, false or a mapping of ca, cert, key, verify_server_cert: %w", field, err)
		}
		*t = ReplicationTLS{Enabled: on}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: want true, false or a mapping of ca, cert, key, verify_server_cert", field)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "ca", "cert", "key", "verify_server_cert":
		default:
			return fmt.Errorf("%s: unknown setting %q (line %d)", field, k, n.Content[i].Line)
		}
	}
	type plain ReplicationTLS // without this method, so Decode does not recurse
	var p plain
	if err := n.Decode(&p); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	*t = ReplicationTLS(p)
	t.Enabled = true
	return nil
}

func (t ReplicationTLS) validate() error {
	for _, f := range []struct{ name, path string }{{"ca", t.CA}, {"cert", t.Cert}, {"key", t.Key}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return fmt.Errorf("config: mysql.replication.tls.%s %q: must be an absolute path (the server reads it)", f.name, f.path)
		}
		if strings.ContainsRune(f.path, 0) {
			return fmt.Errorf("config: mysql.replication.tls.%s: contains a NUL byte", f.name)
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		return errors.New("config: mysql.replication.tls.cert and mysql.replication.tls.key: both or neither")
	}
	return nil
}

// Etcd is how the agent reaches the etcd cluster that holds the cluster's state.
type Etcd struct {
	// Endpoints are URLs (https://host:2379, unix:///path) or host:port pairs.
	Endpoints    []string      `yaml:"endpoints" json:"endpoints"`
	DialTimeout  time.Duration `yaml:"dial_timeout" json:"dial_timeout"`
	Username     string        `yaml:"username" json:"username,omitempty"`
	Password     Secret        `yaml:"password" json:"password"`
	PasswordFile string        `yaml:"password_file" json:"password_file,omitempty"`
	TLS          *TLSFiles     `yaml:"tls" json:"tls,omitempty"`
}

// TLSFiles are the files of a TLS client configuration.
type TLSFiles struct {
	// CA is a PEM bundle of the certificate authorities to trust; empty: the host's.
	CA string `yaml:"ca" json:"ca,omitempty"`
	// Cert and Key are the client certificate and its key, PEM; both or neither.
	Cert string `yaml:"cert" json:"cert,omitempty"`
	Key  string `yaml:"key" json:"key,omitempty"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name" json:"server_name,omitempty"`
	// InsecureSkipVerify turns certificate checks off: encryption without
	// authentication, for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" json:"insecure_skip_verify,omitempty"`
}

// Timings are the detector's, the session's and the failover flow's durations.
type Timings struct {
	ProbeInterval time.Duration `yaml:"probe_interval" json:"probe_interval"`
	ProbeTimeout  time.Duration `yaml:"probe_timeout" json:"probe_timeout"`
	FailAfter     int           `yaml:"fail_after" json:"fail_after"`
	RecoverAfter  int           `yaml:"recover_after" json:"recover_after"`
	// PeerFailAfter is how many failed remote probes of the primary in a row make a
	// replica's agent report it unreachable.
	PeerFailAfter    int           `yaml:"peer_fail_after" json:"peer_fail_after"`
	SessionTTL       time.Duration `yaml:"session_ttl" json:"session_ttl"`
	FenceMargin      time.Duration `yaml:"fence_margin" json:"fence_margin"`
	FailoverBlock    time.Duration `yaml:"failover_block" json:"failover_block"`
	CatchupTimeout   time.Duration `yaml:"catchup_timeout" json:"catchup_timeout"`
	ConfirmLag       time.Duration `yaml:"confirm_lag" json:"confirm_lag"`
	SwitchoverMaxLag time.Duration `yaml:"switchover_max_lag" json:"switchover_max_lag"`
	MaxReplicaLag    time.Duration `yaml:"max_replica_lag" json:"max_replica_lag"`
	// LongWrite: a switchover is refused while a write transaction has been open
	// on the primary this long (writes would stay blocked until it ends).
	LongWrite time.Duration `yaml:"long_write" json:"long_write"`
	// DiskWindow is the span of the datadir's fill rate; DiskHorizon the time to
	// full under which the verdict is degraded (detector.Config).
	DiskWindow  time.Duration `yaml:"disk_window" json:"disk_window"`
	DiskHorizon time.Duration `yaml:"disk_horizon" json:"disk_horizon"`
}

// Candidate is this node's standing as a promotion candidate.
type Candidate struct {
	// Priority orders equally advanced candidates: higher is preferred.
	Priority int `yaml:"priority" json:"priority"`
	// NoPromote keeps the node from ever being promoted (a backup or reporting
	// replica).
	NoPromote bool `yaml:"no_promote" json:"no_promote"`
}

// Hooks are commands run by the agent that carries out a failover or switchover. Each
// is an argv (no shell), its program an absolute path. See Hooks.Run for what a hook
// is told and how it is run.
type Hooks struct {
	PreFailover    []string      `yaml:"pre_failover" json:"pre_failover,omitempty"`
	PostFailover   []string      `yaml:"post_failover" json:"post_failover,omitempty"`
	PreSwitchover  []string      `yaml:"pre_switchover" json:"pre_switchover,omitempty"`
	PostSwitchover []string      `yaml:"post_switchover" json:"post_switchover,omitempty"`
	Timeout        time.Duration `yaml:"timeout" json:"timeout"`
}

// HTTP is the agent's read-only HTTP server.
type HTTP struct {
	Listen string `yaml:"listen" json:"listen"`
	// Advertise is where the other agents reach this one (failsafe checks). Empty:
	// Listen, or, when Listen's host is unspecified (0.0.0.0, ::, none), the host of
	// mysql.address with Listen's port.
	Advertise string `yaml:"advertise" json:"advertise,omitempty"`
}

// AgentAddr is where the other agents reach this agent's HTTP server.
func (c Config) AgentAddr() string {
	if c.HTTP.Advertise != "" {
		return c.HTTP.Advertise
	}
	host, port, err := net.SplitHostPort(c.HTTP.Listen)
	if err != nil {
		return ""
	}
	if a, err := netip.ParseAddr(host); host != "" && (err != nil || !a.IsUnspecified()) {
		return c.HTTP.Listen
	}
	mh, _, err := net.SplitHostPort(c.MySQL.Address)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(mh, port)
}

// Log is the agent's logging: always to stderr.
type Log struct {
	Level  string `yaml:"level" json:"level"`   // debug, info, warn, error
	Format string `yaml:"format" json:"format"` // json, console
}

// Secret is a password. It prints, marshals (JSON, YAML) and logs as "[redacted]"
// (as "" when empty, so that "not set" stays visible); Reveal returns it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// String hides the secret from fmt and from zap.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the secret from %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalJSON hides the secret from /status, logs (zap.Any) and anything else that
// marshals a Config.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// MarshalYAML hides the secret from a Config written back out as YAML.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// DefaultConfig returns a Config holding every default; Load reads the file over it.
func DefaultConfig() Config {
	return Config{
		MySQL: MySQL{ConnectTimeout: DefaultConnectTimeout},
		Etcd:  Etcd{DialTimeout: DefaultEtcdDialTimeout},
		Timings: Timings{
			ProbeInterval:    DefaultProbeInterval,
			ProbeTimeout:     DefaultProbeTimeout,
			FailAfter:        DefaultFailAfter,
			RecoverAfter:     DefaultRecoverAfter,
			PeerFailAfter:    DefaultPeerFailAfter,
			SessionTTL:       DefaultSessionTTL,
			FenceMargin:      DefaultFenceMargin,
			FailoverBlock:    DefaultFailoverBlock,
			CatchupTimeout:   DefaultCatchupTimeout,
			ConfirmLag:       DefaultConfirmLag,
			SwitchoverMaxLag: DefaultSwitchoverMaxLag,
			MaxReplicaLag:    DefaultMaxReplicaLag,
			LongWrite:        DefaultLongWrite,
			DiskWindow:       DefaultDiskWindow,
			DiskHorizon:      DefaultDiskHorizon,
		},
		Hooks: Hooks{Timeout: DefaultHookTimeout},
		HTTP:  HTTP{Listen: DefaultHTTPListen},
		Log:   Log{Level: "info", Format: "json"},
	}
}

// Load reads the configuration file at path over the defaults, resolves the secrets
// (env, usually os.Getenv, is asked for the BATON_*_PASSWORD variables; nil means no
// environment) and validates everything. An unknown field is an error, so a misspelt
// setting is never silently ignored. Errors name the field, like
// "config: timings.fence_margin (3s) must be less than timings.session_ttl (3s)".
func Load(path string, env func(string) string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: read %s: %w", path, err)
	}
	c, err := Parse(b, env)
	if err != nil {
		return Config{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return c, nil
}

// Parse is Load for a configuration already read.
func Parse(b []byte, env func(string) string) (Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("config: the file is empty")
		}
		if d := badDuration(b, reflect.TypeOf(c)); d != nil {
			return Config{}, fmt.Errorf("config: %w", d)
		}
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("config: more than one YAML document: write the configuration as one")
	}
	if err := c.resolveSecrets(env); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// resolveSecrets fills the Secret fields: the environment wins, then the file, then
// the YAML value. A password both in the YAML and in a file is refused: one of them
// would be ignored, and which one is a guess.
func (c *Config) resolveSecrets(env func(string) string) error {
	var err error
	if c.MySQL.Password, err = resolveSecret("mysql", c.MySQL.Password, c.MySQL.PasswordFile, env(EnvMySQLPassword)); err != nil {
		return err
	}
	r := &c.MySQL.Replication
	if r.Password, err = resolveSecret("mysql.replication", r.Password, r.PasswordFile, env(EnvReplicationPassword)); err != nil {
		return err
	}
	if c.Etcd.Password, err = resolveSecret("etcd", c.Etcd.Password, c.Etcd.PasswordFile, env(EnvEtcdPassword)); err != nil {
		return err
	}
	if c.PeerSecret, err = resolveSecretField("peer_secret", "peer_secret_file", c.PeerSecret, c.PeerSecretFile, env(EnvPeerSecret)); err != nil {
		return err
	}
	return nil
}

func resolveSecret(field string, inline Secret, file, fromEnv string) (Secret, error) {
	return resolveSecretField(field+".password", field+".password_file", inline, file, fromEnv)
}

// resolveSecretField is resolveSecret for a secret whose fields are named
// inlineField and fileField.
func resolveSecretField(inlineField, fileField string, inline Secret, file, fromEnv string) (Secret, error) {
	if inline != "" && file != "" {
		return "", fmt.Errorf("config: %s and %s are both set: keep one", inlineField, fileField)
	}
	if fromEnv != "" {
		return Secret(fromEnv), nil
	}
	if file == "" {
		return inline, nil
	}
	if !filepath.IsAbs(file) {
		return "", fmt.Errorf("config: %s %q: must be an absolute path", fileField, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The error names the file, never its content.
		return "", fmt.Errorf("config: %s: %w", fileField, err)
	}
	// The file is a password, not a line: only the line ending an editor adds goes.
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("config: %s %s is empty", fileField, file)
	}
	if strings.ContainsAny(s, "\x00\n") {
		return "", fmt.Errorf("config: %s %s: holds more than one line or a NUL byte", fileField, file)
	}
	return Secret(s), nil
}

// Validate checks a Config whose secrets are resolved and names the first bad field.
func (c Config) Validate() error {
	if err := validName("cluster", c.Cluster); err != nil {
		return err
	}
	if err := validName("node", c.Node); err != nil {
		return err
	}
	if err := c.MySQL.validate(); err != nil {
		return err
	}
	if err := c.Etcd.validate(); err != nil {
		return err
	}
	if err := c.Timings.validate(); err != nil {
		return err
	}
	if err := c.Hooks.validate(); err != nil {
		return err
	}
	if err := validListen(c.HTTP.Listen); err != nil {
		return err
	}
	if err := c.Log.validate(); err != nil {
		return err
	}
	if c.VIP != nil {
		// vip.New only checks and applies defaults: it touches no interface.
		if _, err := vip.New(*c.VIP, nil); err != nil {
			return fmt.Errorf("config: vip: %w", err)
		}
	}
	if c.Datadir != "" && !filepath.IsAbs(c.Datadir) {
		return fmt.Errorf("config: datadir %q: must be an absolute path", c.Datadir)
	}
	if c.StateDir != "" && (!filepath.IsAbs(c.StateDir) || filepath.Clean(c.StateDir) == "/") {
		return fmt.Errorf("config: state_dir %q: must be an absolute path, not /", c.StateDir)
	}
	switch {
	case c.Failsafe != nil && *c.Failsafe && c.PeerSecret == "":
		return fmt.Errorf("config: failsafe: true needs the peer secret: set peer_secret_file or %s (the same on every node)", EnvPeerSecret)
	case c.PeerSecret != "" && len(c.PeerSecret) < minPeerSecret:
		return fmt.Errorf("config: peer_secret: %d bytes, at least %d are required", len(c.PeerSecret), minPeerSecret)
	}
	if c.HTTP.Advertise != "" {
		if err := validHostPort("http.advertise", c.HTTP.Advertise, false); err != nil {
			return err
		}
	}
	return nil
}

// validName accepts a cluster or node name (cluster.CheckName).
func validName(field, s string) error {
	if err := cluster.CheckName(field, s); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

func (m MySQL) validate() error {
	if err := validHostPort("mysql.address", m.Address, false); err != nil {
		return err
	}
	if m.Socket != "" && !filepath.IsAbs(m.Socket) {
		return fmt.Errorf("config: mysql.socket %q: must be an absolute path", m.Socket)
	}
	switch {
	case m.User == "":
		return errors.New("config: mysql.user: required (Baton's admin account, the same on every node)")
	case strings.ContainsRune(m.User, 0):
		return errors.New("config: mysql.user: contains a NUL byte")
	case m.Password == "":
		return fmt.Errorf("config: mysql.password: required: set mysql.password_file or %s", EnvMySQLPassword)
	case m.ConnectTimeout <= 0:
		return fmt.Errorf("config: mysql.connect_timeout (%s): must be positive", m.ConnectTimeout)
	}
	if m.TLS != nil {
		if _, err := m.TLS.Config("mysql.tls", ""); err != nil {
			return err
		}
	}
	r := m.Replication
	switch {
	case r.User == "" && (r.Password != "" || r.PasswordFile != ""):
		return errors.New("config: mysql.replication.password: set without mysql.replication.user")
	case r.User != "" && r.Password == "":
		return fmt.Errorf("config: mysql.replication.password: required with mysql.replication.user: set mysql.replication.password_file or %s", EnvReplicationPassword)
	case strings.ContainsRune(r.User+r.Password.Reveal(), 0):
		return errors.New("config: mysql.replication: user or password contains a NUL byte")
	}
	return r.TLS.validate()
}

// validHostPort checks host:port. An empty host (listen on every address) is allowed
// only where the address is listened on, never where a peer must reach it.
func validHostPort(field, s string, listen bool) error {
	if s == "" {
		return fmt.Errorf("config: %s: required (host:port)", field)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("config: %s %q: want host:port: %w", field, s, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("config: %s %q: port must be a number from 1 to 65535", field, s)
	}
	if listen {
		return nil
	}
	if host == "" {
		return fmt.Errorf("config: %s %q: the host is missing", field, s)
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		return fmt.Errorf("config: %s %q: %s is not an address a peer can reach; give this node's own address", field, s, host)
	}
	return nil
}

func validListen(s string) error { return validHostPort("http.listen", s, true) }

func (e Etcd) validate() error {
	if len(e.Endpoints) == 0 {
		return errors.New("config: etcd.endpoints: at least one endpoint is required")
	}
	seen := map[string]bool{}
	for i, ep := range e.Endpoints {
		field := fmt.Sprintf("etcd.endpoints[%d]", i)
		if seen[ep] {
			return fmt.Errorf("config: %s %q: listed twice", field, ep)
		}
		seen[ep] = true
		secure, err := endpointScheme(field, ep)
		if err != nil {
			return err
		}
		if secure != nil && *secure != (e.TLS != nil) {
			if *secure {
				return fmt.Errorf("config: %s %q: a TLS endpoint needs etcd.tls", field, ep)
			}
			return fmt.Errorf("config: %s %q: a plain-text endpoint with etcd.tls set; use https:// or unixs://", field, ep)
		}
	}
	switch {
	case e.DialTimeout <= 0:
		return fmt.Errorf("config: etcd.dial_timeout (%s): must be positive", e.DialTimeout)
	case e.Username == "" && e.Password != "":
		return errors.New("config: etcd.password: set without etcd.username")
	case e.Username != "" && e.Password == "":
		return fmt.Errorf("config: etcd.password: required with etcd.username: set etcd.password_file or %s", EnvEtcdPassword)
	}
	if e.TLS != nil {
		if _, err := e.TLS.Config("etcd.tls", ""); err != nil {
			return err
		}
	}
	return nil
}

// endpointScheme checks one etcd endpoint. It returns whether it is a TLS endpoint, or
// nil for a bare host:port (which follows etcd.tls).
func endpointScheme(field, ep string) (*bool, error) {
	yes, no := true, false
	if !strings.Contains(ep, "://") {
		if err := validHostPort(field, ep, false); err != nil {
			return nil, err
		}
		return nil, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return nil, fmt.Errorf("config: %s %q: %w", field, ep, err)
	}
	switch u.Scheme {
	case "http", "https":
		if err := validHostPort(field, u.Host, false); err != nil {
			return nil, err
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("config: %s %q: an etcd endpoint has no path", field, ep)
		}
	case "unix", "unixs":
		if u.Host+u.Path == "" {
			return nil, fmt.Errorf("config: %s %q: no socket path", field, ep)
		}
	default:
		return nil, fmt.Errorf("config: %s %q: scheme %q: use http, https, unix or unixs", field, ep, u.Scheme)
	}
	if u.Scheme == "https" || u.Scheme == "unixs" {
		return &yes, nil
	}
	return &no, nil
}

func (t Timings) validate() error {
	switch {
	case t.ProbeInterval <= 0:
		return fmt.Errorf("config: timings.probe_interval (%s): must be positive", t.ProbeInterval)
	case t.ProbeTimeout <= 0:
		return fmt.Errorf("config: timings.probe_timeout (%s): must be positive", t.ProbeTimeout)
	case t.ProbeTimeout >= t.ProbeInterval:
		return fmt.Errorf("config: timings.probe_timeout (%s) must be less than timings.probe_interval (%s): a probe must be over before the next one starts", t.ProbeTimeout, t.ProbeInterval)
	case t.FailAfter < 1:
		return fmt.Errorf("config: timings.fail_after (%d): must be at least 1", t.FailAfter)
	case t.RecoverAfter < 1:
		return fmt.Errorf("config: timings.recover_after (%d): must be at least 1", t.RecoverAfter)
	case t.PeerFailAfter < 1:
		return fmt.Errorf("config: timings.peer_fail_after (%d): must be at least 1", t.PeerFailAfter)
	case t.SessionTTL < minSessionTTL:
		return fmt.Errorf("config: timings.session_ttl (%s): must be at least %s (etcd's smallest lease TTL)", t.SessionTTL, minSessionTTL)
	case t.SessionTTL%time.Second != 0:
		return fmt.Errorf("config: timings.session_ttl (%s): must be whole seconds (an etcd lease TTL is)", t.SessionTTL)
	case t.FenceMargin <= 0:
		return fmt.Errorf("config: timings.fence_margin (%s): must be positive", t.FenceMargin)
	case t.FenceMargin >= t.SessionTTL:
		return fmt.Errorf("config: timings.fence_margin (%s) must be less than timings.session_ttl (%s)", t.FenceMargin, t.SessionTTL)
	case t.FailoverBlock < 0:
		return fmt.Errorf("config: timings.failover_block (%s): must not be negative", t.FailoverBlock)
	case t.CatchupTimeout <= 0:
		return fmt.Errorf("config: timings.catchup_timeout (%s): must be positive", t.CatchupTimeout)
	case t.ConfirmLag <= 0:
		return fmt.Errorf("config: timings.confirm_lag (%s): must be positive", t.ConfirmLag)
	case t.SwitchoverMaxLag < 0:
		return fmt.Errorf("config: timings.switchover_max_lag (%s): must not be negative", t.SwitchoverMaxLag)
	case t.MaxReplicaLag <= 0:
		return fmt.Errorf("config: timings.max_replica_lag (%s): must be positive", t.MaxReplicaLag)
	case t.LongWrite <= 0:
		return fmt.Errorf("config: timings.long_write (%s): must be positive", t.LongWrite)
	case t.DiskWindow <= 0:
		return fmt.Errorf("config: timings.disk_window (%s): must be positive", t.DiskWindow)
	case t.DiskHorizon <= 0:
		return fmt.Errorf("config: timings.disk_horizon (%s): must be positive", t.DiskHorizon)
	}
	return nil
}

func (l Log) validate() error {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level %q: use debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "json", "console":
	default:
		return fmt.Errorf("config: log.format %q: use json or console", l.Format)
	}
	return nil
}

// NewLogger builds the agent's logger: stderr only (the agent must keep working when
// its node's disk is full), at the configured level and format.
func (l Log) NewLogger() (*zap.Logger, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	var lvl zapcore.Level
	if err := lvl.Set(l.Level); err != nil {
		return nil, fmt.Errorf("config: log.level: %w", err)
	}
	zc := zap.NewProductionConfig()
	if l.Format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.OutputPaths = []string{"stderr"}
	zc.ErrorOutputPaths = []string{"stderr"}
	zc.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	zc.Sampling = nil // one line per state change: none may be dropped
	zc.DisableStacktrace = true
	log, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log, nil
}

// Config reads the files and returns a TLS client configuration. field names the
// configuration section in errors; serverName is used when ServerName is empty.
func (t TLSFiles) Config(field, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if t.ServerName != "" {
		tc.ServerName = t.ServerName
	}
	tc.InsecureSkipVerify = t.InsecureSkipVerify
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("config: %s.ca: %w", field, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("config: %s.ca %s: no PEM certificate in it", field, t.CA)
		}
		tc.RootCAs = pool
	}
	switch {
	case t.Cert != "" && t.Key != "":
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("config: %s.cert and %s.key: %w", field, field, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case t.Cert != "":
		return nil, fmt.Errorf("config: %s.key: required with %s.cert", field, field)
	case t.Key != "":
		return nil, fmt.Errorf("config: %s.cert: required with %s.key", field, field)
	}
	return tc, nil
}

// EtcdClientConfig returns the etcd client configuration: endpoints, dial timeout,
// credentials and TLS read from the files. Keep-alives are tuned so that a dead etcd
// connection is noticed within the session TTL. A nil log means no client logs.
//
// Pings go over every connection, streams or not (PermitWithoutStream). etcd's
// server refuses pings over a connection without streams whatever its
// --grpc-keepalive-min-time and answers the fourth with a GOAWAY (ENHANCE_YOUR_CALM,
// "too_many_pings"): the client reconnects, and doubles its ping interval. The
// client keeps a connection to every endpoint, so an agent reconnects one about
// every 40 s. Not pinging them is worse: a connection without streams then sleeps,
// and the first call over it wakes it with a ping that must be answered within
// keepAlive, else the connection is closed, call and all. Under load (an etcd
// answering in more than a second) 300 hollow agents of the scale benchmark without
// those pings lost 10,000 sessions in 2.5 min and never bootstrapped; with them,
// they bootstrap in 18 s.
//
// gRPC raises a ping interval under 10 s to 10 s (keepalive.ClientParameters), so
// a connection that died silently is noticed after 10 s plus keepAlive, not within
// the session TTL: until then the renewal watch fences the node.
func (c Config) EtcdClientConfig(log *zap.Logger) (clientv3.Config, error) {
	if err := c.Etcd.validate(); err != nil {
		return clientv3.Config{}, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	keepAlive := max(c.Timings.SessionTTL/3, 500*time.Millisecond)
	cc := clientv3.Config{
		Endpoints:            append([]string(nil), c.Etcd.Endpoints...),
		DialTimeout:          c.Etcd.DialTimeout,
		DialKeepAliveTime:    keepAlive,
		DialKeepAliveTimeout: keepAlive,
		PermitWithoutStream:  true,
		Username:             c.Etcd.Username,
		Password:             c.Etcd.Password.Reveal(),
		Logger:               log,
		// gRPC's reconnect backoff grows to 2 minutes by default: after an etcd
		// outage of a minute an agent would come back long after etcd, past its
		// lease. Retrying every second at most costs nothing.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: etcdMaxReconnectDelay},
			MinConnectTimeout: c.Etcd.DialTimeout,
		})},
	}
	if c.Etcd.TLS != nil {
		tc, err := c.Etcd.TLS.Config("etcd.tls", "")
		if err != nil {
			return clientv3.Config{}, err
		}
		cc.TLS = tc
	}
	return cc, nil
}

// MySQLTLSName is the name under which MySQLDSN registers mysql.tls with the driver:
// a DSN string can only refer to a TLS configuration by name, and the driver keeps
// them in a process-wide registry.
const MySQLTLSName = "baton"

// Dialer returns how Baton's admin account connects to servers: the agent's own
// connections, its coordinator's to every node and its probe of the primary, all with
// mysql.tls (over TCP), mysql.connect_timeout and the same socket timeouts.
func (c Config) Dialer() (replication.Dialer, error) {
	d := replication.Dialer{
		User: c.MySQL.User, Password: c.MySQL.Password.Reveal(),
		ConnectTimeout: c.MySQL.ConnectTimeout, IOTimeout: mysqlIOTimeout,
	}
	if c.MySQL.TLS != nil {
		tc, err := c.MySQL.TLS.Config("mysql.tls", "")
		if err != nil {
			return replication.Dialer{}, err
		}
		d.TLS = tc
	}
	return d, nil
}

// LocalAddr is the local server's address for the agent's own connections:
// "unix:" and mysql.socket when set, else mysql.address.
func (c Config) LocalAddr() string {
	if c.MySQL.Socket != "" {
		return "unix:" + c.MySQL.Socket
	}
	return c.MySQL.Address
}

// MySQLConfig returns the driver configuration of Baton's admin account on the server
// at addr (host:port) over TCP, or, when addr is "", of the local server (LocalAddr).
// It is Dialer().Config: TLS (mysql.tls) applies to TCP only.
func (c Config) MySQLConfig(addr string) (*mysql.Config, error) {
	if addr == "" {
		addr = c.LocalAddr()
	} else if err := validHostPort("mysql address", addr, false); err != nil {
		return nil, err
	}
	d, err := c.Dialer()
	if err != nil {
		return nil, err
	}
	return d.Config(addr)
}

// MySQLDSN returns the go-sql-driver DSN of Baton's admin account on the local server:
// over mysql.socket when local is true and a socket is set, else over TCP to
// mysql.address. With mysql.tls over TCP it registers the TLS configuration with the
// driver under MySQLTLSName (the driver's registry is process-wide).
func (c Config) MySQLDSN(local bool) (string, error) {
	if local {
		return c.dsn("")
	}
	return c.dsn(c.MySQL.Address)
}

// PeerDSN returns the DSN of Baton's admin account on another node's server, at addr
// (its NodeStatus.Addr), over TCP.
func (c Config) PeerDSN(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("peer dsn: empty address")
	}
	return c.dsn(addr)
}

func (c Config) dsn(addr string) (string, error) {
	mc, err := c.MySQLConfig(addr)
	if err != nil {
		return "", err
	}
	if mc.TLS != nil {
		// The registered configuration has no ServerName: the driver fills in the
		// host of each DSN, so one registration serves every peer.
		tc := mc.TLS.Clone()
		if c.MySQL.TLS.ServerName == "" {
			tc.ServerName = ""
		}
		if err := mysql.RegisterTLSConfig(MySQLTLSName, tc); err != nil {
			return "", fmt.Errorf("register mysql tls: %w", err)
		}
		mc.TLS = nil
		mc.TLSConfig = MySQLTLSName
	}
	return mc.FormatDSN(), nil
}

// ReplicationSource is what a replica of the server at addr (host:port) is pointed at
// with: the replication account, or Baton's admin account when none is configured,
// and mysql.replication.tls.
func (c Config) ReplicationSource(addr string) (replication.Source, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return replication.Source{}, fmt.Errorf("replication source %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return replication.Source{}, fmt.Errorf("replication source %q: port: %w", addr, err)
	}
	t := c.MySQL.Replication.TLS
	s := replication.Source{Host: host, Port: p, User: c.MySQL.User, Password: c.MySQL.Password.Reveal(),
		TLS: t.Enabled, SSLCA: t.CA, SSLCert: t.Cert, SSLKey: t.Key, SSLVerifyServerCert: t.VerifyServerCert}
	if c.MySQL.Replication.User != "" {
		s.User, s.Password = c.MySQL.Replication.User, c.MySQL.Replication.Password.Reveal()
	}
	return s, nil
}

// Policy is the failover policy of this file (timings.failover_block, confirm_lag,
// switchover_max_lag): published to the cluster's policy key by the first agent, and
// compared with it by every agent. See failover.PolicyRecord.
func (c Config) Policy() cluster.Policy {
	t := c.Timings
	return cluster.Policy{FailoverBlock: t.FailoverBlock, ConfirmLag: t.ConfirmLag, SwitchoverMaxLag: t.SwitchoverMaxLag}
}

// HookEvent is the moment a hook runs at.
type HookEvent int

// Hook events.
const (
	PreFailover HookEvent = iota + 1
	PostFailover
	PreSwitchover
	PostSwitchover
)

// String returns the event's name as in the configuration file, e.g. "pre_failover".
func (e HookEvent) String() string {
	switch e {
	case PreFailover:
		return "pre_failover"
	case PostFailover:
		return "post_failover"
	case PreSwitchover:
		return "pre_switchover"
	case PostSwitchover:
		return "post_switchover"
	}
	return fmt.Sprintf("hook_event(%d)", int(e))
}

// Argv returns the command configured for e, nil when none is.
func (h Hooks) Argv(e HookEvent) []string {
	switch e {
	case PreFailover:
		return h.PreFailover
	case PostFailover:
		return h.PostFailover
	case PreSwitchover:
		return h.PreSwitchover
	case PostSwitchover:
		return h.PostSwitchover
	}
	return nil
}

func (h Hooks) validate() error {
	for _, e := range []HookEvent{PreFailover, PostFailover, PreSwitchover, PostSwitchover} {
		argv := h.Argv(e)
		if len(argv) == 0 {
			continue
		}
		field := "hooks." + e.String()
		if !filepath.IsAbs(argv[0]) {
			return fmt.Errorf("config: %s: %q: the program must be an absolute path (hooks run without a shell or PATH search)", field, argv[0])
		}
		// Checked now, not at failover time: a missing pre hook would make every
		// failover fail.
		fi, err := os.Stat(argv[0])
		if err != nil {
			return fmt.Errorf("config: %s: %w", field, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("config: %s: %s is not an executable file", field, argv[0])
		}
	}
	if h.Timeout <= 0 {
		return fmt.Errorf("config: hooks.timeout (%s): must be positive", h.Timeout)
	}
	return nil
}

// HookRun is what a hook is told about the flow it runs in, through its environment.
type HookRun struct {
	Event   HookEvent
	Cluster string
	// Node is the node whose agent runs the hook (the coordinator).
	Node       string
	OldPrimary string
	NewPrimary string
	// NewPrimaryAddr is the new primary's host:port.
	NewPrimaryAddr string
	// Epoch is the primary epoch the flow commits (or committed).
	Epoch  uint64
	Reason string
	// Result and Error are for post hooks: "done" or "failed", and why.
	Result string
	Error  string
}

// Env returns the hook's whole environment. The agent's own environment is not
// passed on: it may hold the BATON_*_PASSWORD secrets.
func (r HookRun) Env() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"BATON_EVENT=" + r.Event.String(),
		"BATON_CLUSTER=" + r.Cluster,
		"BATON_NODE=" + r.Node,
		"BATON_OLD_PRIMARY=" + r.OldPrimary,
		"BATON_NEW_PRIMARY=" + r.NewPrimary,
		"BATON_NEW_PRIMARY_ADDR=" + r.NewPrimaryAddr,
		"BATON_EPOCH=" + strconv.FormatUint(r.Epoch, 10),
		"BATON_REASON=" + r.Reason,
		"BATON_RESULT=" + r.Result,
		"BATON_ERROR=" + r.Error,
	}
}

// ErrNoHook says no hook is configured for the event.
var ErrNoHook = errors.New("agent: no hook configured")

// Run runs the hook of run.Event, without a shell, with run's environment (Env), stdin
// empty, in its own process group, and waits at most hooks.timeout (and ctx): then the
// whole group is killed. It returns the start of the combined output (4 KiB at most),
// for the log, and an error when the hook could not run, timed out or exited non-zero.
// ErrNoHook when none is configured.
func (h Hooks) Run(ctx context.Context, run HookRun) ([]byte, error) {
	argv := h.Argv(run.Event)
	if len(argv) == 0 {
		return nil, ErrNoHook
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = run.Env()
	cmd.Dir = "/"
	out := &limitedBuffer{limit: hookOutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A hook's children (a shell's sleep) hold its output pipe open: kill the group,
	// and stop waiting for the pipe soon after.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil && err != nil {
		return out.Bytes(), fmt.Errorf("hook %s: killed after %s: %w", run.Event, timeout, ctx.Err())
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("hook %s: %w", run.Event, err)
	}
	return out.Bytes(), nil
}

// limitedBuffer keeps the first limit bytes written to it and drops the rest, so a
// chatty hook cannot grow the agent's memory.
type limitedBuffer struct {
	buf   bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte { return b.buf.Bytes() }
