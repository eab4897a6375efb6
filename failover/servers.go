package failover

import (
	"database/sql"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/replication"
)

// Servers opens and caches connections to the cluster's database servers by address,
// with Baton's admin user, for the coordinator (stop replication, fence, catch up).
// Every connection is built by Dialer, so mysql.tls, the connect timeout and the dial
// function apply to the coordinator's connections as to the agent's own.
type Servers struct {
	Dialer replication.Dialer
	// Timeout bounds each replication call; zero means replication.DefaultTimeout.
	Timeout time.Duration
	Log     *zap.Logger

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
	db, err := s.Dialer.Open(addr)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", name, err)
	}
	log := s.Log
	if log == nil {
		log = zap.NewNop()
	}
	in, err := replication.New(db, replication.Config{Name: name, Timeout: s.Timeout, Logger: log.With(zap.String("server", name))})
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
