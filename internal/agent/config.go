package agent

// The agent's configuration: one YAML file per node, secrets from files or the
// environment, every value checked at start-up with an error that names the field.
// docs/configuration.md is the reference; config_test.go checks that it names every
// field and that deploy/baton.example.yaml loads.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/reconcile"
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
	DefaultSalvageTimeout   = failover.DefaultSalvageTimeout
	DefaultHTTPListen       = "0.0.0.0:9107"
)

// minSessionTTL is etcd's smallest lease TTL with its default election timeout: a
// shorter TTL is silently raised by the server, and the agent's fencing arithmetic
// (ttl - fence_margin) would then be wrong.
const minSessionTTL = 2 * time.Second

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
	// Forecast is the slow loop that forecasts what besides disk space can stop the
	// server's writes: auto-increment keys, the purge lag, connections.
	Forecast Forecast `yaml:"forecast" json:"forecast"`
	HTTP     HTTP     `yaml:"http" json:"http"`
	Log      Log      `yaml:"log" json:"log"`
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
	// Salvage makes a failover ask the failed primary's agent for the transactions
	// its binary logs hold that no replica received, and apply them to the new
	// primary before it takes writes (docs/architecture.md, "Salvage"). nil (not
	// set): on when a peer secret is configured, else off. Set to true, it
	// requires the peer secret.
	Salvage *bool `yaml:"salvage" json:"salvage,omitempty"`
	// KillFrozenPrimary lets the agent end its own mysqld (SIGKILL) when a
	// failover deposes this node and the server answers nothing: the detector's
	// verdict is unreachable and its latest liveness probe timed out (frozen,
	// hung). Such a server cannot be made read_only; ended, it can take no write,
	// and the replicas told to stop are not held up reaching it
	// (docs/architecture.md, "Reconciler and self-fencing"). nil (not set): on.
	KillFrozenPrimary *bool `yaml:"kill_frozen_primary" json:"kill_frozen_primary,omitempty"`
	// PeerSecret signs the agents' calls to one another (HMAC-SHA256); the same on
	// every node of the cluster. From BATON_PEER_SECRET, peer_secret_file or (not
	// recommended) peer_secret.
	PeerSecret     Secret `yaml:"peer_secret" json:"peer_secret"`
	PeerSecretFile string `yaml:"peer_secret_file" json:"peer_secret_file,omitempty"`
	// StateDir is where the agent records what must outlive it: a failsafe promise to
	// hold off failovers, so that a restarted agent keeps it. Empty:
	// DefaultStateDir(cluster). Made (0700) at start if missing.
	StateDir string `yaml:"state_dir" json:"state_dir,omitempty"`
	// Rejoin is what this file proposes as the cluster's rejoin mode (part of the
	// failover policy): what a quarantined node with real errant transactions does
	// by itself. Empty: manual.
	Rejoin cluster.RejoinMode `yaml:"rejoin" json:"rejoin,omitempty"`
	// ArchiveDir is where the node's errant transactions are archived before
	// anything undoes or discards them. Empty: <state dir>/archive.
	ArchiveDir string `yaml:"archive_dir" json:"archive_dir,omitempty"`
	// Server is how the agent stops and starts its node's server, for a rebuild
	// (rebuild.go); Rebuild bounds a rebuild and a donor's load.
	Server  ServerCommands  `yaml:"server" json:"server"`
	Rebuild RebuildSettings `yaml:"rebuild" json:"rebuild"`
}

// ArchivePath is the archive directory: archive_dir, or <state dir>/archive.
func (c Config) ArchivePath() string {
	if c.ArchiveDir != "" {
		return c.ArchiveDir
	}
	return filepath.Join(c.StatePath(), "archive")
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

// SalvageOn says whether failovers salvage a failed primary's last transactions
// (this agent's, as coordinator and as the failed primary's agent): asked for, or
// not set and a peer secret is configured.
func (c Config) SalvageOn() bool {
	if c.Salvage != nil {
		return *c.Salvage
	}
	return c.PeerSecret != ""
}

// KillFrozenOn says whether the agent ends its hung server when a failover
// deposes this node: asked for, or not set.
func (c Config) KillFrozenOn() bool {
	return c.KillFrozenPrimary == nil || *c.KillFrozenPrimary
}

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
	// SalvageTimeout bounds a failover's salvage step: asking the failed
	// primary's agent, and applying its answer to the candidate.
	SalvageTimeout time.Duration `yaml:"salvage_timeout" json:"salvage_timeout"`
}

// Forecast is the forecasts' slow loop (detector.Forecaster): a bounded read of the
// local server every Interval, never part of a probe round.
type Forecast struct {
	// Interval between two reads; Timeout bounds each, server-side too; Window is the
	// span of the growth rates.
	Interval time.Duration `yaml:"interval" json:"interval"`
	Timeout  time.Duration `yaml:"timeout" json:"timeout"`
	Window   time.Duration `yaml:"window" json:"window"`
	// HistoryLimit is the history list length the purge lag is forecast against
	// when the server sets no innodb_max_purge_lag.
	HistoryLimit uint64 `yaml:"history_limit" json:"history_limit"`
	// Tables is how many auto-increment keys are reported: those that run out
	// first.
	Tables int `yaml:"tables" json:"tables"`
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
			SalvageTimeout:   DefaultSalvageTimeout,
		},
		Hooks: Hooks{Timeout: DefaultHookTimeout},
		Forecast: Forecast{Interval: detector.DefaultForecastInterval, Timeout: detector.DefaultForecastTimeout,
			Window: detector.DefaultForecastWindow, HistoryLimit: detector.DefaultHistoryLimit, Tables: detector.DefaultForecastTables},
		Server:  ServerCommands{CommandTimeout: DefaultServerCommandTimeout},
		Rebuild: RebuildSettings{Timeout: DefaultRebuildTimeout, MaxRate: DefaultRebuildMaxRate},
		HTTP:    HTTP{Listen: DefaultHTTPListen},
		Log:     Log{Level: "info", Format: "json"},
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

// Policy is the failover policy of this file (timings.failover_block, confirm_lag,
// switchover_max_lag): published to the cluster's policy key by the first agent, and
// compared with it by every agent. See failover.PolicyRecord.
func (c Config) Policy() cluster.Policy {
	t := c.Timings
	return cluster.Policy{FailoverBlock: t.FailoverBlock, ConfirmLag: t.ConfirmLag, SwitchoverMaxLag: t.SwitchoverMaxLag, Rejoin: c.Rejoin}
}
