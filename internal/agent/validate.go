package agent

// Validation of the configuration: every value checked at start-up, with an error that
// names the field.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/vip"
)

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
	if err := c.Forecast.validate(); err != nil {
		return err
	}
	if err := c.Server.validate(); err != nil {
		return err
	}
	if err := c.Rebuild.validate(); err != nil {
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
	if !c.Rejoin.Valid() {
		return fmt.Errorf("config: rejoin %q: must be %s or %s", c.Rejoin, cluster.RejoinManual, cluster.RejoinArchiveAndRepair)
	}
	if c.ArchiveDir != "" && (!filepath.IsAbs(c.ArchiveDir) || filepath.Clean(c.ArchiveDir) == "/") {
		return fmt.Errorf("config: archive_dir %q: must be an absolute path, not /", c.ArchiveDir)
	}
	if c.StateDir != "" && (!filepath.IsAbs(c.StateDir) || filepath.Clean(c.StateDir) == "/") {
		return fmt.Errorf("config: state_dir %q: must be an absolute path, not /", c.StateDir)
	}
	switch {
	case c.Failsafe != nil && *c.Failsafe && c.PeerSecret == "":
		return fmt.Errorf("config: failsafe: true needs the peer secret: set peer_secret_file or %s (the same on every node)", EnvPeerSecret)
	case c.Salvage != nil && *c.Salvage && c.PeerSecret == "":
		return fmt.Errorf("config: salvage: true needs the peer secret (the agents sign their salvage requests with it): set peer_secret_file or %s (the same on every node)", EnvPeerSecret)
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

func (f Forecast) validate() error {
	switch {
	case f.Interval <= 0:
		return fmt.Errorf("config: forecast.interval (%s): must be positive", f.Interval)
	case f.Timeout <= 0:
		return fmt.Errorf("config: forecast.timeout (%s): must be positive", f.Timeout)
	case f.Timeout >= f.Interval:
		return fmt.Errorf("config: forecast.timeout (%s): must be less than forecast.interval (%s): a read is over before the next", f.Timeout, f.Interval)
	case f.Window < 2*f.Interval:
		return fmt.Errorf("config: forecast.window (%s): must span at least two forecast.interval (%s): a rate needs two reads", f.Window, 2*f.Interval)
	case f.HistoryLimit == 0:
		return errors.New("config: forecast.history_limit: must be positive")
	case f.Tables < 1:
		return fmt.Errorf("config: forecast.tables (%d): must be at least 1", f.Tables)
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
	case t.SalvageTimeout < 200*time.Millisecond || t.SalvageTimeout > time.Minute:
		return fmt.Errorf("config: timings.salvage_timeout (%s): must be from 200ms to 1m (it holds the failover up to that long)", t.SalvageTimeout)
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
