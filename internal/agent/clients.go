package agent

// What the configuration builds: the logger, and the clients of etcd and of the
// database servers (TLS, DSNs, the replication source).

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"

	"github.com/baton-ha/baton/replication"
)

// etcdMaxReconnectDelay bounds the wait between the etcd client's attempts to
// reconnect to an endpoint.
const etcdMaxReconnectDelay = time.Second

// mysqlIOTimeout is the driver's socket read/write timeout: a backstop only. Every
// statement has a context deadline, and a statement that overruns it is killed
// server-side by the callers (detector, replication), which a socket timeout cannot do.
const mysqlIOTimeout = 10 * time.Second

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
// configuration section in errors; serverName is used when ServerName is empty. The
// client certificate and key are read again at each handshake (a renewed pair is used
// without a restart); the CA bundle is read here only, so a new CA takes a restart.
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
	if t.ServerName != "" && !t.InsecureSkipVerify {
		// gRPC (the etcd client) checks etcd's certificate against the name it
		// derives from each endpoint, whatever tls.Config.ServerName says: the name
		// configured is checked here instead, as crypto/tls would.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = verifyServerName(t.ServerName, tc.RootCAs)
	}
	switch {
	case t.Cert != "" && t.Key != "":
		// Read again at each handshake: a renewed certificate is used from the next
		// connection on, without a restart (tlsreload.go).
		r, err := newCertReloader(field+".cert", field+".key", t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		tc.Certificates = []tls.Certificate{*r.pair}
		tc.GetClientCertificate = r.GetClientCertificate
	case t.Cert != "":
		return nil, fmt.Errorf("config: %s.key: required with %s.cert", field, field)
	case t.Key != "":
		return nil, fmt.Errorf("config: %s.cert: required with %s.key", field, field)
	}
	return tc, nil
}

// verifyServerName checks a server's certificate chain against roots (nil: the
// host's) and name, as crypto/tls does with ServerName.
func verifyServerName(name string, roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return fmt.Errorf("tls: server certificate: %w", err)
		}
		return nil
	}
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
