package failover

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/replication"
)

// Servers opens and caches connections to the cluster's database servers by address,
// with Baton's admin user, for the coordinator (stop replication, fence, catch up)
// and the reconciler (its own server).
type Servers struct {
	User     string
	Password string
	// Timeout bounds each replication call; connect timeouts are derived from it.
	Timeout time.Duration
	// Dial, when set, makes the connections (tests: from another namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	Log  *zap.Logger

	mu    sync.Mutex
	cache map[string]*replication.Instance
	dbs   map[string]*sql.DB
}

// Instance returns the server at addr ("host:port", or "unix:/path" for a socket),
// named name in logs.
func (s *Servers) Instance(name, addr string) (*replication.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.cache[addr]; ok {
		return in, nil
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = s.User, s.Password
	cfg.Net, cfg.Addr = "tcp", addr
	if len(addr) > 5 && addr[:5] == "unix:" {
		cfg.Net, cfg.Addr = "unix", addr[5:]
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = replication.DefaultTimeout
	}
	cfg.Timeout = timeout
	cfg.ReadTimeout, cfg.WriteTimeout = 30*time.Second, 30*time.Second // statements have their own deadlines
	cfg.DialFunc = s.Dial
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("connector for %s: %w", addr, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	log := s.Log
	if log == nil {
		log = zap.NewNop()
	}
	in, err := replication.New(db, replication.Config{Name: name, Timeout: timeout, Logger: log.With(zap.String("server", name))})
	if err != nil {
		db.Close()
		return nil, err
	}
	if s.cache == nil {
		s.cache, s.dbs = map[string]*replication.Instance{}, map[string]*sql.DB{}
	}
	s.cache[addr], s.dbs[addr] = in, db
	return in, nil
}

// Close closes every connection.
func (s *Servers) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, db := range s.dbs {
		db.Close()
	}
	s.cache, s.dbs = nil, nil
}
