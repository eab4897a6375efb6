package cluster

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchRetry is the pause before a broken watch is resumed.
const watchRetry = 200 * time.Millisecond

// Watch calls fn with the cluster's state: first as it is now, then as it is after
// each later etcd revision that changes one of the cluster's keys, in order, none
// skipped. Each state is a Snapshot as Load reads it, read at that revision, so a
// transaction (the commit writes the primary and deletes the intent) is one change.
//
// Watch blocks until ctx ends (it returns ctx's error) or fn returns an error (it
// returns that error). A broken watch (etcd restarting, a lost leader) is resumed
// after the last revision passed to fn. When that revision has been compacted away,
// the revisions in between are lost: fn gets the state as it is then, and carries on.
// fn runs on Watch's goroutine; while it runs, changes wait.
func (s *Store) Watch(ctx context.Context, fn func(Snapshot) error) error {
	var rev int64 // 0: read the state as it is now
	for {
		if rev == 0 {
			if snap, err := s.Load(ctx); err == nil {
				if err := fn(snap); err != nil {
					return err
				}
				rev = snap.Rev
			}
		}
		if rev != 0 {
			var err error
			if rev, err = s.follow(ctx, rev, fn); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(watchRetry):
		}
	}
}

// follow watches the cluster's keys after revision rev and calls fn with the state at
// each revision that changed them. When the watch breaks it returns the last revision
// passed to fn (0 when revisions after it were compacted, so that Watch reads afresh);
// the error is fn's.
func (s *Store) follow(ctx context.Context, rev int64, fn func(Snapshot) error) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range s.cli.Watch(wctx, s.Keys.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if resp.CompactRevision != 0 {
			return 0, nil
		}
		if resp.Err() != nil || resp.Canceled {
			return rev, nil
		}
		for _, r := range revisions(resp.Events) {
			snap, err := s.loadAt(ctx, r)
			if errors.Is(err, rpctypes.ErrCompacted) {
				return 0, nil
			}
			if err != nil {
				return rev, nil
			}
			if err := fn(snap); err != nil {
				return rev, err
			}
			rev = r
		}
	}
	return rev, nil
}

// revisions lists the distinct revisions of a watch response's events, in order.
func revisions(evs []*clientv3.Event) []int64 {
	var out []int64
	for _, ev := range evs {
		if r := ev.Kv.ModRevision; len(out) == 0 || out[len(out)-1] != r {
			out = append(out, r)
		}
	}
	return out
}
