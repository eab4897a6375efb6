// Package hollow runs Baton's real control loops — etcd session, coordinator election,
// reconciler, coordinator and its failover flow, each agent with an etcd client of
// its own — against scripted database servers instead of MariaDB, so that one
// process can stand in for thousands of agents (like Kubernetes' hollow nodes). It is
// for the scale benchmark (`baton-lab bench scale`), never for production.
package hollow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/replication"
)

// Cluster is one scripted replication cluster. Its writable server (read_only off,
// replicating from none, not made unwritable) takes one transaction per Tick;
// replicas whose IO thread runs against it have them at once.
type Cluster struct {
	Name string

	mu        sync.Mutex
	servers   map[string]*Server // by address
	lastWrite time.Time          // the writable server's latest transaction
}

// NewCluster makes a cluster of n servers named db1..dbn with addresses
// <name>-dbi:3306: db1 the writable primary, the others its replicas.
func NewCluster(name string, n int) *Cluster {
	c := &Cluster{Name: name, servers: map[string]*Server{}, lastWrite: time.Now()}
	var primary string
	for i := 1; i <= n; i++ {
		s := &Server{c: c, replLock: make(chan struct{}, 1), Name: fmt.Sprintf("db%d", i), Addr: fmt.Sprintf("%s-db%d:3306", name, i), ID: uint32(i),
			executed: map[uint32]uint64{}, semiAvailable: true}
		if i == 1 {
			primary = s.Addr
			s.semiSource = true
		} else {
			s.readOnly, s.source, s.io, s.sql, s.semiReplica = true, primary, true, true, true
		}
		c.servers[s.Addr] = s
	}
	return c
}

// Servers lists the cluster's servers by name.
func (c *Cluster) Servers() []*Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Server, 0, len(c.servers))
	for _, s := range c.servers {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Server returns the server called name, nil when none.
func (c *Cluster) Server(name string) *Server {
	for _, s := range c.Servers() {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Tick writes one transaction on the writable server, if there is exactly one, and
// replicates it to the replicas following it. It returns the server that wrote, nil
// when none did.
func (c *Cluster) Tick(now time.Time) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var writer *Server
	for _, s := range c.servers {
		if !s.readOnly && s.source == "" && !s.unwritable {
			if writer != nil {
				return nil // two writable servers: the checker's business, not the script's
			}
			writer = s
		}
	}
	if writer != nil {
		writer.executed[writer.ID]++
		c.lastWrite = now
	}
	for _, s := range c.servers {
		if p, ok := c.servers[s.source]; ok && s.io && s.sql {
			for id, seq := range p.executed {
				if seq > s.executed[id] {
					s.executed[id] = seq
				}
			}
		}
	}
	return writer
}

// heartbeatAge is how long ago the server's source last took a transaction, as a
// replica's heartbeat lag; -1 when the server replicates from none or its threads
// are stopped.
func (c *Cluster) heartbeatAge(s *Server, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.servers[s.source]; !ok || !s.io || !s.sql {
		return -1
	}
	return now.Sub(c.lastWrite)
}

// Server is one scripted server: failover.Server.
type Server struct {
	c    *Cluster
	Name string
	Addr string
	ID   uint32
	// replLock is the server's replication lock (replication.ReplicationLock):
	// held (a value in it) by Follow while it confirms and changes replication,
	// and by StopIO.
	replLock chan struct{}

	// Guarded by c.mu.
	readOnly      bool
	source        string // the address it replicates from, "" none
	io, sql       bool
	executed      map[uint32]uint64 // per server id, domain 0
	unwritable    bool              // its writes hang (a full disk)
	semiAvailable bool
	semiSource    bool
	semiReplica   bool
}

var _ failover.Server = (*Server)(nil)

// SetUnwritable makes the server's writes hang (true) or work again.
func (s *Server) SetUnwritable(on bool) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.unwritable = on
}

// Unwritable says whether the server's writes hang.
func (s *Server) Unwritable() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.unwritable
}

// Writable says whether the server takes writes: read_only off and replicating from
// none.
func (s *Server) Writable() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return !s.readOnly && s.source == ""
}

func (s *Server) gtid() string {
	ids := make([]uint32, 0, len(s.executed))
	for id := range s.executed {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var parts []string
	for _, id := range ids {
		if seq := s.executed[id]; seq > 0 {
			parts = append(parts, fmt.Sprintf("0-%d-%d", id, seq))
		}
	}
	return strings.Join(parts, ",")
}

// Status is the server's replication status, as replication.Instance.Status reads
// it from MariaDB.
func (s *Server) Status(ctx context.Context) (replication.Status, error) {
	if err := ctx.Err(); err != nil {
		return replication.Status{}, err
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	set, err := replication.ParseGTIDSet(replication.FlavorMariaDB, s.gtid())
	if err != nil {
		return replication.Status{}, err
	}
	st := replication.Status{Flavor: replication.FlavorMariaDB, Version: "10.11-hollow", ServerID: s.ID, Role: replication.RolePrimary,
		ReadOnly: s.readOnly, GTIDStrictMode: true, Executed: set}
	st.SemiSync = replication.SemiSync{Available: s.semiAvailable, SourceEnabled: s.semiSource, ReplicaEnabled: s.semiReplica,
		SourceActive: s.semiSource, WaitPoint: "AFTER_SYNC"}
	for _, o := range s.c.servers {
		if o.source == s.Addr && o.io && o.semiReplica {
			st.SemiSync.Clients++
		}
	}
	if s.source != "" {
		st.Role, st.Retrieved, st.AutoPosition = replication.RoleReplica, set, true
		host, port, _ := net.SplitHostPort(s.source)
		st.SourceHost = host
		st.SourcePort, _ = strconv.Atoi(port)
		if p, ok := s.c.servers[s.source]; ok {
			st.SourceServerID = p.ID
		}
		if s.io {
			st.IOThread = replication.ThreadRunning
		}
		if s.sql {
			st.SQLThread = replication.ThreadRunning
		}
		st.SemiSync.ReplicaActive = s.io && s.semiReplica
	}
	return st, nil
}

// StopIO stops the IO thread, under the replication lock.
func (s *Server) StopIO(ctx context.Context) error {
	unlock, err := s.lockReplication(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return s.set(ctx, func() { s.io = false })
}

// lockReplication takes the replication lock, waiting as long as ctx allows.
func (s *Server) lockReplication(ctx context.Context) (unlock func(), err error) {
	select {
	case s.replLock <- struct{}{}:
		return func() { <-s.replLock }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", s.Name, replication.ErrBusy)
	}
}

// StartReplication starts both threads.
func (s *Server) StartReplication(ctx context.Context) error {
	return s.set(ctx, func() { s.io, s.sql = s.source != "", s.source != "" })
}

// WaitExecuted returns once the server has executed set: at once or never, since a
// scripted replica applies what it receives at once.
func (s *Server) WaitExecuted(ctx context.Context, set replication.GTIDSet, timeout time.Duration) error {
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	if st.Executed.Contain(set) {
		return nil
	}
	return fmt.Errorf("%s: has %s, not %s", s.Name, st.Executed, set)
}

// Promote makes the server the writable primary: replication reset, the semi-sync
// source side on, read_only off.
func (s *Server) Promote(ctx context.Context) error {
	return s.set(ctx, func() {
		s.source, s.io, s.sql = "", false, false
		s.semiSource, s.semiReplica, s.readOnly = true, false, false
	})
}

// Follow makes the server a read-only replica of src, as replication.Instance's
// does: nothing to do when it already replicates from src, else under the
// replication lock and once confirm agrees.
func (s *Server) Follow(ctx context.Context, src replication.Source, confirm func(context.Context) error) error {
	addr := net.JoinHostPort(src.Host, strconv.Itoa(src.Port))
	s.c.mu.Lock()
	_, known := s.c.servers[addr]
	following := s.readOnly && s.source == addr && s.io && s.sql && (s.semiReplica || !s.semiAvailable)
	s.c.mu.Unlock()
	if !known {
		return fmt.Errorf("%s: no server at %s", s.Name, addr)
	}
	if following {
		return nil
	}
	unlock, err := s.lockReplication(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if confirm != nil {
		if err := confirm(ctx); err != nil {
			return err
		}
	}
	return s.set(ctx, func() {
		s.readOnly, s.source, s.io, s.sql = true, addr, true, true
		s.semiSource, s.semiReplica = false, true
	})
}

// Fence sets read_only.
func (s *Server) Fence(ctx context.Context) (replication.FenceReport, error) {
	if err := s.set(ctx, func() { s.readOnly = true }); err != nil {
		return replication.FenceReport{}, err
	}
	return replication.FenceReport{ReadOnly: true}, nil
}

// SetSemiSync sets both sides of semi-sync.
func (s *Server) SetSemiSync(ctx context.Context, source, replica bool) error {
	return s.set(ctx, func() { s.semiSource, s.semiReplica = source, replica })
}

// OpenWrites: a scripted server has no long transactions.
func (s *Server) OpenWrites(ctx context.Context, olderThan time.Duration) ([]replication.Write, error) {
	return nil, ctx.Err()
}

// InspectErrant: a scripted server never writes what its primary lacks, so there is
// nothing to look up; the evidence says it cannot tell (Baton then keeps it
// quarantined).
func (s *Server) InspectErrant(ctx context.Context, primary replication.Server, timeout time.Duration) (replication.ErrantEvidence, error) {
	return replication.ErrantEvidence{}, errors.New("hollow: a scripted server has no binary logs")
}

// RepairErrant is refused: see InspectErrant.
func (s *Server) RepairErrant(ctx context.Context, ev replication.ErrantEvidence, discard bool) error {
	return errors.New("hollow: a scripted server has no binary logs")
}

func (s *Server) set(ctx context.Context, fn func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	fn()
	return nil
}

// Pool is failover.ServerPool over every scripted cluster: servers by address.
type Pool struct {
	mu      sync.Mutex
	servers map[string]*Server
}

// Add makes c's servers reachable through the pool.
func (p *Pool) Add(c *Cluster) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.servers == nil {
		p.servers = map[string]*Server{}
	}
	for _, s := range c.Servers() {
		p.servers[s.Addr] = s
	}
}

// Instance returns the server at addr.
func (p *Pool) Instance(name, addr string) (failover.Server, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.servers[addr]; ok {
		return s, nil
	}
	return nil, errors.New("hollow: no server " + name + " at " + addr)
}

// Write runs the clusters' writes: every interval, one transaction on each
// cluster's writable server, until ctx ends.
func Write(ctx context.Context, clusters []*Cluster, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, c := range clusters {
				c.Tick(now)
			}
		}
	}
}
