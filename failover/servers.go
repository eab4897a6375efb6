package failover

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/replication"
)

// Server is what Baton says to one database server: a *replication.Instance, or in
// the hollow-agent benchmark a scripted stand-in. Flavor differences stay behind it.
type Server interface {
	Status(ctx context.Context) (replication.Status, error)
	StopIO(ctx context.Context) error
	StartReplication(ctx context.Context) error
	WaitExecuted(ctx context.Context, set replication.GTIDSet, timeout time.Duration) error
	Promote(ctx context.Context) error
	// Follow makes the server a replica of src. Before it changes anything it takes
	// the server's replication lock (replication.ReplicationLock), which StopIO takes
	// too, and calls confirm (if not nil) with it held: an error leaves replication
	// as it is.
	Follow(ctx context.Context, src replication.Source, confirm func(context.Context) error) error
	Fence(ctx context.Context) (replication.FenceReport, error)
	SetSemiSync(ctx context.Context, source, replica bool) error
	OpenWrites(ctx context.Context, olderThan time.Duration) ([]replication.Write, error)
}

// ServerPool gives the coordinator the cluster's servers by name and address:
// *Servers in production.
type ServerPool interface {
	Instance(name, addr string) (Server, error)
}

var _ Server = (*replication.Instance)(nil)

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
func (s *Servers) Instance(name, addr string) (Server, error) {
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

// Close closes every connection, each Instance's spare included.
func (s *Servers) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.cache {
		in.Close()
	}
	for _, db := range s.dbs {
		db.Close()
	}
	s.cache, s.dbs = nil, nil
}
