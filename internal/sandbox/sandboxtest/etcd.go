package sandboxtest

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd starts a one-member etcd inside the test process and returns a client of it
// and its client endpoint; both are closed when the test ends. Clients reach it over
// a unix socket; its peer port is on loopback. No sandbox, namespace or MariaDB is
// involved, so tests that need only etcd's state (keys, transactions) stay cheap.
func Etcd(t testing.TB) (*clientv3.Client, string) {
	t.Helper()
	return EtcdAt(t, EtcdDir(t))
}

// EtcdDir makes a directory for EtcdAt, removed when the test ends; its client
// endpoint is EtcdEndpoint(dir) before etcd runs there.
func EtcdDir(t testing.TB) string {
	t.Helper()
	// Short: a socket path has at most 107 bytes, and t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "etcd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// EtcdEndpoint is the client endpoint of an etcd EtcdAt starts in dir.
func EtcdEndpoint(dir string) string { return "unix://" + filepath.Join(dir, "client.sock") }

// EtcdAt is Etcd in dir (from EtcdDir).
func EtcdAt(t testing.TB, dir string) (*clientv3.Client, string) {
	t.Helper()
	cli, endpoint, _ := StoppableEtcdAt(t, dir)
	return cli, endpoint
}

// StoppableEtcdAt is EtcdAt with a stop: it closes the member, and every call of a
// client fails from then on, as in an etcd outage. Calling it again does nothing.
func StoppableEtcdAt(t testing.TB, dir string) (cli *clientv3.Client, endpoint string, stop func()) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = filepath.Join(dir, "data")
	socket := filepath.Join(dir, "client.sock")
	cu := url.URL{Scheme: "unix", Path: socket}
	pu := url.URL{Scheme: "unix", Path: filepath.Join(dir, "peer.sock")} // no port to collide with another test
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	// etcd logs every client that goes away at error level, with a stack: kept in
	// memory and shown only when the test fails.
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(Logger(t, zap.WarnLevel))
	cfg.GRPCKeepAliveMinTime = 500 * time.Millisecond // as the sandbox's members: agents ping every second
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	var once sync.Once
	stop = func() { once.Do(e.Close) }
	t.Cleanup(stop)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("embedded etcd not ready after 30s")
	}
	endpoint = EtcdEndpoint(dir)
	cli, err = clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "probe"); err != nil {
		t.Fatalf("embedded etcd does not answer: %v", err)
	}
	return cli, endpoint, stop
}
