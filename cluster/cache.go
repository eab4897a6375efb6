package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"
)

// Reader is a watched view of one cluster's keys: a Snapshot at one revision,
// never older than the reader's own latest write, and a wake-up when a key changes
// (Subscribe, keep choosing which keys; nil: any). Cache is the one implementation;
// the interface keeps its users to these two methods.
type Reader interface {
	Snapshot(ctx context.Context) (Snapshot, error)
	Subscribe(keep func(key string) bool) (changes <-chan struct{}, stop func())
}

var _ Reader = (*Cache)(nil)

// ErrCacheStale says a Cache cannot vouch for its copy: it has not read the keys yet,
// its watch is broken, its client has no connection to etcd, or it did not catch up
// with the agent's own latest write in time. Acting on such a copy could mean acting
// on a view of any age; the caller skips its pass, as it would when a read failed.
var ErrCacheStale = errors.New("failover: cluster cache not in step with etcd")

// progressEvery is how long Cache.Snapshot waits for the watch before it asks etcd
// for a progress notification: a write of the agent's own that changed nothing under
// the prefix (a delete of a missing key) has no event to wait for.
const progressEvery = 100 * time.Millisecond

// Cache is a watched copy of one cluster's keys (everything under its prefix), so that
// an agent's reconciler and coordinator look at the cluster on every pass without
// reading it from etcd: one range read of the prefix, then one watch from the
// revision after it, whose events are applied in order. The copy is what etcd held at
// one revision (Rev): the events of a revision are applied together.
//
// A watch that breaks is resumed after the last revision applied; one whose next
// revision was compacted away is replaced by a new range read and a watch after it.
// Events at or below the revision already held are ignored, so a change is never
// applied twice, nor missed.
//
// What Cache does not do: make a decision safe. A copy can lag etcd by the watch's
// delay; every write that depends on what was read (a commit, the leader key, an
// intent) compares revisions in its transaction, as it did when each pass read etcd.
type Cache struct {
	store *Store
	log   *zap.Logger
	retry time.Duration

	mu     sync.Mutex
	kvs    map[string]*mvccpb.KeyValue
	rev    int64  // the revision the copy is at; 0 before the first read
	relist bool   // the next watch must start from a new range read
	synced bool   // a live watch follows the copy
	why    string // why not synced
	// lost counts the times the client's connection to etcd was seen not ready: the
	// watch resumes by itself after a reconnection, so the copy may be behind until
	// it has caught up with etcd's revision after it (caught is lost's value then).
	lost, caught int
	lastErr      string // why the latest watch ended, "" once a watch started again
	changed      chan struct{}
	subs         map[*cacheSub]struct{}
	lists        int // range reads of the prefix so far
}

type cacheSub struct {
	keep func(key string) bool
	ch   chan struct{}
}

// NewCache returns the cache of store's cluster; Run fills it and keeps it.
func NewCache(store *Store, log *zap.Logger) (*Cache, error) {
	if store == nil || store.cli == nil {
		return nil, errors.New("cache: store with an etcd client is required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Cache{store: store, log: log.With(zap.String("component", "cache")), retry: watchRetry,
		kvs: map[string]*mvccpb.KeyValue{}, changed: make(chan struct{}), subs: map[*cacheSub]struct{}{}, why: "not read yet"}, nil
}

// Run reads the cluster's keys and follows them until ctx ends; it blocks, and
// returns nil then. Failed reads and broken watches are retried.
func (c *Cache) Run(ctx context.Context) error {
	defer c.setSynced(false, "stopped")
	go c.watchConnection(ctx)
	for ctx.Err() == nil {
		c.mu.Lock()
		list := c.rev == 0 || c.relist
		c.mu.Unlock()
		if list {
			if err := c.list(ctx); err != nil {
				if ctx.Err() == nil && c.news(err) {
					c.log.Warn("read the cluster's keys", zap.Error(err))
				}
				c.pause(ctx)
				continue
			}
		}
		err := c.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if c.news(err) {
			c.log.Info("cluster watch ended; resuming", zap.Error(err), zap.Int64("rev", c.Rev()))
		}
		c.pause(ctx)
	}
	return nil
}

// news says whether err differs from the latest one since a watch last started: a
// read or a watch that cannot start fails at every retry, and is logged once.
func (c *Cache) news(err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	news := err.Error() != c.lastErr
	c.lastErr = err.Error()
	return news
}

// watchConnection counts the times the client's connection to etcd is not ready,
// until ctx ends.
func (c *Cache) watchConnection(ctx context.Context) {
	conn := c.store.cli.ActiveConnection()
	for {
		st := conn.GetState()
		if st != connectivity.Ready {
			c.mu.Lock()
			c.lost++
			c.mu.Unlock()
		}
		if !conn.WaitForStateChange(ctx, st) {
			return
		}
	}
}

func (c *Cache) pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(c.retry):
	}
}

// list replaces the copy with the keys as etcd holds them now.
func (c *Cache) list(ctx context.Context) error {
	lctx, cancel := c.store.ctx(ctx)
	defer cancel()
	resp, err := c.store.cli.Get(lctx, c.store.Keys.Prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("read %s: %w", c.store.Keys.Prefix, err)
	}
	kvs := make(map[string]*mvccpb.KeyValue, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = kv
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kvs, c.rev, c.relist = kvs, resp.Header.Revision, false
	c.lists++
	c.broadcast(nil)
	return nil
}

// errCompacted ends a watch whose next revision etcd no longer has.
var errCompacted = errors.New("cache: watch revision compacted")

// follow watches the prefix after the copy's revision and applies what comes, until
// the watch ends; it says why it ended.
func (c *Cache) follow(ctx context.Context) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	defer c.setSynced(false, "watch ended")
	from := c.Rev() + 1
	wch := c.store.cli.Watch(wctx, c.store.Keys.Prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithCreatedNotify())
	for resp := range wch {
		switch {
		case resp.CompactRevision != 0:
			c.mu.Lock()
			c.relist = true
			c.mu.Unlock()
			return fmt.Errorf("%w: revisions up to %d are gone, wanted %d", errCompacted, resp.CompactRevision, from)
		case resp.Canceled || resp.Err() != nil:
			return fmt.Errorf("watch %s: %w", c.store.Keys.Prefix, resp.Err())
		case resp.Created:
			c.setSynced(true, "")
		case resp.IsProgressNotify():
			c.progress(resp.Header.Revision)
		default:
			c.apply(resp.Events)
		}
	}
	return fmt.Errorf("watch %s: closed", c.store.Keys.Prefix)
}

// apply applies a watch response's events, in order. Those at or below the copy's
// revision are in it already.
func (c *Cache) apply(evs []*clientv3.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	for _, ev := range evs {
		kv := ev.Kv
		if kv.ModRevision <= c.rev {
			continue
		}
		switch ev.Type {
		case clientv3.EventTypePut:
			c.kvs[string(kv.Key)] = kv
		case clientv3.EventTypeDelete:
			delete(c.kvs, string(kv.Key))
		}
		keys = append(keys, string(kv.Key))
	}
	if len(keys) == 0 {
		return
	}
	// A response holds whole revisions: the copy is at its last event's.
	c.rev = evs[len(evs)-1].Kv.ModRevision
	c.broadcast(keys)
}

// progress records that etcd has sent every change up to rev.
func (c *Cache) progress(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev > c.rev {
		c.rev = rev
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

func (c *Cache) setSynced(on bool, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.synced == on && c.why == why {
		return
	}
	c.synced, c.why = on, why
	if on {
		c.lastErr = ""
		c.broadcast(nil) // the copy may have moved while the watch was down
		return
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// broadcast wakes the waiters and the subscribers whose filter takes one of keys (all
// of them for nil keys). c.mu is held.
func (c *Cache) broadcast(keys []string) {
	close(c.changed)
	c.changed = make(chan struct{})
	for s := range c.subs {
		take := keys == nil || s.keep == nil
		for _, k := range keys {
			if take {
				break
			}
			take = s.keep(k)
		}
		if take {
			select {
			case s.ch <- struct{}{}:
			default: // one wake-up pending is enough: the subscriber reads the latest copy
			}
		}
	}
}

// Subscribe returns a channel that receives a value after each change of a key that
// keep takes (every key for nil), and after a new range read; values are dropped
// while one is pending. stop ends the subscription.
func (c *Cache) Subscribe(keep func(key string) bool) (changes <-chan struct{}, stop func()) {
	s := &cacheSub{keep: keep, ch: make(chan struct{}, 1)}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s.ch, func() {
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
	}
}

// Rev is the etcd revision the copy is at, 0 before the first read.
func (c *Cache) Rev() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// Lists is how many times the cache read the whole prefix: 1 after the start, one more
// after each compaction its watch fell behind.
func (c *Cache) Lists() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lists
}

// Snapshot is the cluster's state as the copy holds it, built as Store.Load builds
// it. It first waits, within the store's Timeout (never past ctx), until the copy
// holds the store's own latest write (Store.Wrote), so that the agent never looks at
// a view older than its own last change; it fails with ErrCacheStale when the copy
// is not followed by a live watch or the client has no connection to etcd.
func (c *Cache) Snapshot(ctx context.Context) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err // as a read would: a pass that was called off acts on nothing
	}
	if err := c.waitFor(ctx, c.store.Wrote()); err != nil {
		return Snapshot{}, err
	}
	c.mu.Lock()
	kvs := make([]*mvccpb.KeyValue, 0, len(c.kvs))
	for _, kv := range c.kvs {
		kvs = append(kvs, kv)
	}
	rev := c.rev
	c.mu.Unlock()
	return c.store.Keys.snapshotOf(rev, kvs)
}

// waitFor waits until the copy is at revision want or later, followed by a live
// watch, with the client connected.
func (c *Cache) waitFor(ctx context.Context, want int64) error {
	ctx, cancel := c.store.ctx(ctx)
	defer cancel()
	asked := time.Now() // the event of the write usually comes first
	c.mu.Lock()
	lost := c.lost
	reconnected := lost != c.caught
	c.mu.Unlock()
	if reconnected {
		// Since the connection came back, the watch may not have delivered what
		// changed meanwhile: catch up with etcd's revision now (a linearizable read).
		resp, err := c.store.cli.Get(ctx, c.store.Keys.Primary(), clientv3.WithCountOnly())
		if err != nil {
			return fmt.Errorf("%w: after a reconnection: %w", ErrCacheStale, err)
		}
		want = max(want, resp.Header.Revision)
	}
	for {
		if s := c.store.cli.ActiveConnection().GetState(); s != connectivity.Ready {
			return fmt.Errorf("%w: etcd connection %s", ErrCacheStale, s)
		}
		c.mu.Lock()
		ok, synced, why, rev, changed := c.synced && c.rev >= want, c.synced, c.why, c.rev, c.changed
		if ok && reconnected && c.lost == lost {
			c.caught = lost
		}
		c.mu.Unlock()
		if ok {
			return nil
		}
		var tick <-chan time.Time
		if synced && time.Since(asked) >= progressEvery {
			// The write may have changed nothing under the prefix: ask etcd how far
			// the watch has got (the request must go on the watch's own stream).
			asked = time.Now()
			if err := c.store.cli.RequestProgress(clientv3.WithRequireLeader(ctx)); err != nil && ctx.Err() == nil {
				c.log.Debug("request watch progress", zap.Error(err))
			}
		}
		if synced {
			tick = time.After(progressEvery)
		}
		select {
		case <-changed:
		case <-tick:
		case <-ctx.Done():
			if !synced {
				return fmt.Errorf("%w: %s", ErrCacheStale, why)
			}
			return fmt.Errorf("%w: at revision %d, the agent's own write is at %d", ErrCacheStale, rev, want)
		}
	}
}
