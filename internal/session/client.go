package session

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// workClient is the client a session is made with, for its work: cli, but every
// key-value call made through it (an election's campaign, proclamation,
// resignation) ends when stop does (the session's work is stopped), whatever
// context it was given. An election whose campaign is cut resigns on the client's
// own context, with no deadline: while etcd is unreachable (just when failsafe mode
// asks the node for a promise) that call would hold the work, and Interrupt could
// not say it stopped. Its own context is stop too.
//
// Its lease's KeepAlive renews nothing: the Runner renews the lease itself (see
// watchRenewal), and a second keep-alive stream beside it cost etcd three times
// the requests of an idle agent. The channel concurrency.Session drains carries
// nothing and closes when the session's context ends, which closes its Done.
//
// It shares cli's connections: never Close it.
func workClient(cli *clientv3.Client, stop context.Context) *clientv3.Client {
	c := clientv3.NewCtxClient(stop, clientv3.WithZapLogger(cli.GetLogger()))
	c.Cluster, c.Watcher, c.Auth, c.Maintenance = cli.Cluster, cli.Watcher, cli.Auth, cli.Maintenance
	c.KV = stopKV{KV: cli.KV, stop: stop}
	c.Lease = quietLease{Lease: cli.Lease}
	return c
}

// quietLease is a clientv3.Lease whose KeepAlive sends nothing to etcd.
type quietLease struct{ clientv3.Lease }

func (quietLease) KeepAlive(ctx context.Context, _ clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	ch := make(chan *clientv3.LeaseKeepAliveResponse)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch, nil
}

// stopKV is a clientv3.KV whose calls end when stop does.
type stopKV struct {
	clientv3.KV
	stop context.Context
}

// bind is ctx, ended when stop ends too; done releases it.
func (k stopKV) bind(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(k.stop, cancel)
	return ctx, func() { unhook(); cancel() }
}

func (k stopKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	ctx, done := k.bind(ctx)
	defer done()
	return k.KV.Put(ctx, key, val, opts...)
}

func (k stopKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, done := k.bind(ctx)
	defer done()
	return k.KV.Get(ctx, key, opts...)
}

// GetStream's context lasts as long as its stream: it is released only when stop
// ends.
func (k stopKV) GetStream(ctx context.Context, key string, opts ...clientv3.OpOption) (clientv3.GetStreamChan, error) {
	ctx, _ = k.bind(ctx)
	return k.KV.GetStream(ctx, key, opts...)
}

func (k stopKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	ctx, done := k.bind(ctx)
	defer done()
	return k.KV.Delete(ctx, key, opts...)
}

func (k stopKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	ctx, done := k.bind(ctx)
	defer done()
	return k.KV.Compact(ctx, rev, opts...)
}

func (k stopKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	ctx, done := k.bind(ctx)
	defer done()
	return k.KV.Do(ctx, op)
}

func (k stopKV) Txn(ctx context.Context) clientv3.Txn {
	ctx, done := k.bind(ctx)
	return stopTxn{Txn: k.KV.Txn(ctx), done: done}
}

// stopTxn releases its bound context once committed.
type stopTxn struct {
	clientv3.Txn
	done func()
}

func (t stopTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t stopTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t stopTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }
func (t stopTxn) Commit() (*clientv3.TxnResponse, error) {
	defer t.done()
	return t.Txn.Commit()
}
