package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// cutProxy stands between a client and the embedded etcd's unix socket, so that a
// test can cut the client off (every connection closed, new ones refused) and let it
// back.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, endpoint string) *cutProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "cut-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "p.sock"))
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: strings.TrimPrefix(endpoint, "unix://")}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) endpoint() string { return "unix://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("unix", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// setCut cuts every connection and refuses new ones (true), or accepts them again.
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// cacheFixture is a cache of cluster "cache" on a client of its own, behind a proxy
// that can cut it off, and a store on a direct client that makes the changes.
type cacheFixture struct {
	direct *Store // changes made by "another agent"
	own    *Store // the cache's store
	cache  *Cache
	proxy  *cutProxy
}

func newCacheFixture(t *testing.T) *cacheFixture {
	t.Helper()
	cli, endpoint := sandboxtest.Etcd(t)
	p := newCutProxy(t, endpoint)
	own, err := clientv3.New(clientv3.Config{Endpoints: []string{p.endpoint()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	f := &cacheFixture{direct: NewStore(cli, "cache"), own: NewStore(own, "cache"), proxy: p}
	f.own.Timeout = time.Second
	if f.cache, err = NewCache(f.own, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	f.cache.retry = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.cache.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// equalLoad checks that snap is what Store.Load reads at snap's revision.
func (f *cacheFixture) equalLoad(t *testing.T, snap Snapshot, what string) {
	t.Helper()
	if err := f.diffLoad(snap); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (f *cacheFixture) diffLoad(snap Snapshot) error {
	want, err := f.direct.loadAt(context.Background(), snap.Rev)
	if err != nil {
		return fmt.Errorf("load at %d: %w", snap.Rev, err)
	}
	if !reflect.DeepEqual(snap, want) {
		return fmt.Errorf("the cache's snapshot at %d differs from Load's:\ncache %+v\nload  %+v", snap.Rev, snap, want)
	}
	return nil
}

// waitRev waits until the cache is at rev or later and returns its snapshot.
func (f *cacheFixture) waitRev(t *testing.T, rev int64, what string) Snapshot {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		snap, err := f.cache.Snapshot(context.Background())
		if err == nil && snap.Rev >= rev {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: cache not at revision %d after 20s: rev %d, %v", what, rev, f.cache.Rev(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// changes makes a round of changes to every kind of key Load reads, and returns the
// revision after it.
func (f *cacheFixture) changes(t *testing.T, round int) int64 {
	t.Helper()
	ctx := context.Background()
	s := f.direct
	cli := s.Client()
	epoch := uint64(round + 1)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	snap, err := s.Load(ctx)
	must(err)
	p := Primary{Node: fmt.Sprintf("db%d", round%3+1), Addr: "198.18.0.1:3306", Epoch: epoch}
	if snap.PrimaryModRev == 0 {
		must(s.BootstrapPrimary(ctx, nil, p))
	} else {
		irev, err := s.PutIntent(ctx, nil, 0, snap.PrimaryModRev, Intent{Kind: "failover", Epoch: epoch - 1, From: snap.Primary.Node, To: p.Node})
		must(err)
		must(s.CommitPrimary(ctx, nil, snap.PrimaryModRev, irev, p, nil)) // one revision: primary put, intent deleted
	}
	for i := 1; i <= 3; i++ {
		must(s.PutNode(ctx, 0, NodeStatus{Node: fmt.Sprintf("db%d", i), Verdict: detector.Healthy, LagMS: int64(round), Epoch: epoch}))
	}
	_, err = cli.Delete(ctx, s.Keys.Leader())
	must(err)
	must(s.AcquireLeader(ctx, 0, p.Node, mustRev(t, s)))
	must(s.PutSettings(ctx, Settings{Paused: round%2 == 1}))
	must(s.PutRequest(ctx, Request{ID: fmt.Sprintf("r%d", round), Kind: RequestSwitchover, State: RequestDone, Epoch: epoch}))
	must(s.PutMember(ctx, nil, Member{Node: p.Node, Addr: p.Addr, ServerID: uint32(round)}))
	must(s.PutDecision(ctx, nil, 0, CoordinatorStatus{Node: "db1", Action: "none", Reason: fmt.Sprint("round ", round)}))
	must(s.AppendHistory(ctx, Event{Kind: EventFailover, To: p.Node, Epoch: epoch, Started: time.Unix(int64(1000+round), 0)}))
	if round%2 == 0 {
		_, err = cli.Put(ctx, s.Keys.FailoverBlock(), `{"epoch":1}`)
	} else {
		_, err = cli.Delete(ctx, s.Keys.FailoverBlock())
	}
	must(err)
	resp, err := cli.Put(ctx, "/elsewhere", "x") // a change outside the cluster: no event for the cache
	must(err)
	return resp.Header.Revision - 1
}

func mustRev(t *testing.T, s *Store) int64 {
	t.Helper()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap.PrimaryModRev
}

// TestCacheFollowsChanges: the cache sees every change in order; at each revision
// it passes its subscribers, its snapshot is the one Store.Load reads at that
// revision, election keys and the history included.
func TestCacheFollowsChanges(t *testing.T) {
	f := newCacheFixture(t)
	ctx := context.Background()
	changes, stop := f.cache.Subscribe(nil)
	defer stop()
	var seen []int64
	var mu sync.Mutex
	watchDone := make(chan struct{})
	wctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-wctx.Done():
				return
			case <-changes:
				snap, err := f.cache.Snapshot(ctx)
				if err != nil {
					continue
				}
				if err := f.diffLoad(snap); err != nil {
					t.Errorf("after a change: %v", err)
				}
				mu.Lock()
				seen = append(seen, snap.Rev)
				mu.Unlock()
			}
		}
	}()
	// An election, as the coordinators hold it: the oldest candidate is elected.
	for _, node := range []string{"db2", "db3"} {
		s, err := concurrency.NewSession(f.direct.Client(), concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		e := concurrency.NewElection(s, f.direct.Keys.Coordinator())
		if node == "db2" {
			if err := e.Campaign(ctx, node); err != nil {
				t.Fatal(err)
			}
		} else {
			go func() { _ = e.Campaign(wctx, node) }()
		}
	}
	// Each round waits until the subscriber has seen it: a subscriber is told
	// that something changed, not each change, and rounds made faster than it
	// reads may come to it as one.
	var rev int64
	for round := range 6 {
		rev = f.changes(t, round)
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			caught := len(seen) > 0 && seen[len(seen)-1] >= rev
			mu.Unlock()
			if caught {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d (revision %d): the subscriber did not see it within 10s", round, rev)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	snap := f.waitRev(t, rev, "after every round")
	cancel()
	<-watchDone
	f.equalLoad(t, snap, "at the end")
	if snap.Coordinator != "db2" || snap.LastEvent == nil || snap.LastEvent.Epoch != 6 || len(snap.Nodes) != 3 || snap.Block != nil {
		t.Fatalf("final snapshot: coordinator %q, last event %+v, %d nodes, block %+v", snap.Coordinator, snap.LastEvent, len(snap.Nodes), snap.Block)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 6 {
		t.Fatalf("the subscriber saw %d changes over 6 rounds it saw each of", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("revisions went back: %v", seen)
		}
	}
	if n := f.cache.Lists(); n != 1 {
		t.Fatalf("the cache read the whole prefix %d times, want 1", n)
	}
}

// TestCacheReconnectAndCompaction: a client cut off from etcd makes the cache stale
// (Snapshot fails: no view of any age); back, it resumes its watch after the last
// revision it applied, missing nothing. When that revision was compacted meanwhile,
// it reads the prefix again instead.
func TestCacheReconnectAndCompaction(t *testing.T) {
	f := newCacheFixture(t)
	ctx := context.Background()
	rev := f.changes(t, 0)
	f.equalLoad(t, f.waitRev(t, rev, "before the cut"), "before the cut")

	cut := func(compact bool) int64 {
		f.proxy.setCut(true)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := f.cache.Snapshot(ctx)
			if errors.Is(err, ErrCacheStale) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cut off, the cache still gives snapshots (err %v)", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		var rev int64
		for round := 1; round <= 3; round++ {
			rev = f.changes(t, round)
		}
		if compact {
			if _, err := f.direct.Client().Compact(ctx, rev+1); err != nil {
				t.Fatal(err)
			}
		}
		f.proxy.setCut(false)
		return rev
	}

	rev = cut(false)
	f.equalLoad(t, f.waitRev(t, rev, "after the reconnect"), "after the reconnect")
	if n := f.cache.Lists(); n != 1 {
		t.Fatalf("after a reconnect the cache read the whole prefix %d times, want 1 (a resumed watch)", n)
	}

	rev = cut(true)
	snap := f.waitRev(t, rev, "after a compaction")
	f.equalLoad(t, snap, "after a compaction")
	if n := f.cache.Lists(); n != 2 {
		t.Fatalf("after a compaction the cache read the whole prefix %d times, want 2", n)
	}
	// And it follows again from there.
	rev = f.changes(t, 4)
	f.equalLoad(t, f.waitRev(t, rev, "after the compaction, a change"), "after the compaction, a change")
}

// TestCacheReadsOwnWrites: a snapshot is never older than the store's own latest
// write, even one that changed nothing under the prefix (no event to wait for: the
// cache asks etcd for its watch's progress).
func TestCacheReadsOwnWrites(t *testing.T) {
	f := newCacheFixture(t)
	ctx := context.Background()
	f.waitRev(t, 1, "start")
	for i := range 20 {
		if err := f.own.PutSettings(ctx, Settings{Paused: i%2 == 0}); err != nil {
			t.Fatal(err)
		}
		snap, err := f.cache.Snapshot(ctx)
		if err != nil || snap.Settings.Paused != (i%2 == 0) || snap.Rev < f.own.Wrote() {
			t.Fatalf("write %d: snapshot at %d (own write at %d) paused %v: %v", i, snap.Rev, f.own.Wrote(), snap.Settings.Paused, err)
		}
	}
	// A guarded delete of an intent that is not there: the txn succeeds, changes
	// nothing, and answers at a revision made by a write elsewhere.
	if _, err := f.direct.Client().Put(ctx, "/elsewhere", "y"); err != nil {
		t.Fatal(err)
	}
	if err := f.own.DeleteIntent(ctx, nil, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	snap, err := f.cache.Snapshot(ctx)
	if err != nil || snap.Rev < f.own.Wrote() {
		t.Fatalf("after a write with no event: snapshot at %d, own write at %d: %v", snap.Rev, f.own.Wrote(), err)
	}
	t.Logf("caught up with a write with no event in %s", time.Since(start))
}

// TestDecisionsOnStaleSnapshotRefused: a view the cache gave before another change
// (the primary moved on) cannot be acted on: the announce, the commit and taking the
// leader key compare revisions in etcd and refuse.
func TestDecisionsOnStaleSnapshotRefused(t *testing.T) {
	f := newCacheFixture(t)
	ctx := context.Background()
	rev := f.changes(t, 0) // db1 primary, epoch 1, holds leader
	stale := f.waitRev(t, rev, "before the change")
	if _, err := f.direct.Client().Delete(ctx, f.direct.Keys.Leader()); err != nil {
		t.Fatal(err)
	}

	// Meanwhile another coordinator fails over to db2: the cache's view is behind.
	irev, err := f.direct.PutIntent(ctx, nil, 0, stale.PrimaryModRev, Intent{Kind: "failover", Epoch: 1, From: "db1", To: "db2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.direct.CommitPrimary(ctx, nil, stale.PrimaryModRev, irev, Primary{Node: "db2", Addr: "198.18.0.2:3306", Epoch: 2}, nil); err != nil {
		t.Fatal(err)
	}

	if _, err := f.own.PutIntent(ctx, nil, 0, stale.PrimaryModRev, Intent{Kind: "failover", Epoch: 1, From: "db1", To: "db3"}); !errors.Is(err, ErrConflict) {
		t.Errorf("announce on the stale view: %v, want a conflict", err)
	}
	if err := f.own.CommitPrimary(ctx, nil, stale.PrimaryModRev, irev, Primary{Node: "db3", Epoch: 2}, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("commit on the stale view: %v, want a conflict", err)
	}
	if err := f.own.AcquireLeader(ctx, 0, "db1", stale.PrimaryModRev); !errors.Is(err, ErrConflict) {
		t.Errorf("the old primary takes the leader key on the stale view: %v, want a conflict", err)
	}
	now, err := f.direct.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now.Primary.Node != "db2" || now.Primary.Epoch != 2 || now.Leader != "" || now.Intent != nil {
		t.Fatalf("after the refused writes: primary %s epoch %d, leader %q, intent %+v", now.Primary.Node, now.Primary.Epoch, now.Leader, now.Intent)
	}
	// The cache catches up, and with it the writes succeed.
	fresh := f.waitRev(t, now.Rev, "after the failover")
	if fresh.Primary.Node != "db2" {
		t.Fatalf("cache: primary %s", fresh.Primary.Node)
	}
	if err := f.own.AcquireLeader(ctx, 0, "db2", fresh.PrimaryModRev); err != nil {
		t.Fatalf("take the leader key on the fresh view: %v", err)
	}
}
