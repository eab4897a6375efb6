package replication

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Defaults of a Dialer.
const (
	// DefaultConnectTimeout bounds making a connection (TCP, TLS and authentication).
	DefaultConnectTimeout = 2 * time.Second
	// DefaultIOTimeout is the driver's socket read/write timeout: a backstop only.
	// Every statement has a context deadline, and one that overruns it is killed
	// server-side, which a socket timeout cannot do.
	DefaultIOTimeout = 10 * time.Second
)

// Dialer says how Baton connects to a server: one account, one TLS configuration,
// one set of timeouts and one dial function for every server of the cluster. Every
// connection Baton makes to a server (the agent's local one, the coordinator's to
// each node, the peer probe's, the CLI's probe) is built by Config, so that no
// setting is lost on one path and kept on another.
//
// The zero Dialer is not usable: User is required.
type Dialer struct {
	User     string
	Password string
	// TLS, when set, is used for every TCP connection; never over a unix socket.
	// An empty ServerName is filled in with the host of each address.
	TLS *tls.Config
	// ConnectTimeout bounds making a connection; zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IOTimeout is the socket read/write timeout; zero means DefaultIOTimeout.
	IOTimeout time.Duration
	// Dial, when set, makes the connections (a server in another network namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Config returns the driver configuration of a connection to the server at addr:
// "host:port" over TCP, or "unix:/path" over a unix socket.
func (d Dialer) Config(addr string) (*mysql.Config, error) {
	switch {
	case d.User == "":
		return nil, errors.New("replication: dialer User is empty")
	case strings.ContainsRune(d.User+d.Password, 0):
		return nil, errors.New("replication: dialer User or Password contains a NUL byte")
	case d.ConnectTimeout < 0:
		return nil, fmt.Errorf("replication: dialer ConnectTimeout %s is negative", d.ConnectTimeout)
	case d.IOTimeout < 0:
		return nil, fmt.Errorf("replication: dialer IOTimeout %s is negative", d.IOTimeout)
	}
	mc := mysql.NewConfig()
	mc.User, mc.Passwd = d.User, d.Password
	mc.Timeout = d.ConnectTimeout
	if mc.Timeout == 0 {
		mc.Timeout = DefaultConnectTimeout
	}
	mc.ReadTimeout = d.IOTimeout
	if mc.ReadTimeout == 0 {
		mc.ReadTimeout = DefaultIOTimeout
	}
	mc.WriteTimeout = mc.ReadTimeout
	mc.Logger = &mysql.NopLogger{}
	mc.DialFunc = d.Dial
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" || path[0] != '/' {
			return nil, fmt.Errorf("replication: address %q: a socket path must be absolute", addr)
		}
		mc.Net, mc.Addr = "unix", path
		return mc, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("replication: address %q: want host:port or unix:/path: %w", addr, err)
	}
	if host == "" || port == "" {
		return nil, fmt.Errorf("replication: address %q: want host:port or unix:/path", addr)
	}
	mc.Net, mc.Addr = "tcp", addr
	if d.TLS != nil {
		mc.TLS = d.TLS.Clone()
		if mc.TLS.ServerName == "" {
			mc.TLS.ServerName = host
		}
	}
	return mc, nil
}

// Open returns a pool of connections to the server at addr (see Config) for an
// Instance: a few connections, so a statement that overruns its deadline can be
// killed through a second one, and one more that the Instance keeps open as its
// spare (for kills when the server takes no new connection). It does not connect.
func (d Dialer) Open(addr string) (*sql.DB, error) {
	mc, err := d.Config(addr)
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("connector for %s: %w", addr, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(5)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}
