package sandboxtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/pki"
)

// SecureEtcd is an etcd inside the test process that requires a client certificate
// from its CA and checks users and roles (authentication on), as a production etcd
// should run: see SecureEtcdAt.
type SecureEtcd struct {
	// Endpoint is its client endpoint, a unix socket with TLS (unixs://). Its
	// certificate names "localhost" and the socket's file name, which etcd's client
	// checks by default for such an endpoint.
	Endpoint string
	CA       *pki.CA
	CAFile   string
	Dir      string
	// Root is a client as etcd's root user (a certificate whose common name is root).
	Root *clientv3.Client
}

// NewSecureEtcd starts a SecureEtcd for the test, with the root user made and
// authentication on; it is stopped when the test ends.
func NewSecureEtcd(t testing.TB) *SecureEtcd {
	t.Helper()
	dir := EtcdDir(t)
	ca, err := pki.NewCA("baton test ca", 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &SecureEtcd{CA: ca, CAFile: filepath.Join(dir, "ca.crt"), Dir: dir}
	if err := os.WriteFile(s.CAFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "client.sock")
	srv, err := ca.Issue(pki.Spec{CommonName: "etcd", DNSNames: []string{"localhost", filepath.Base(socket)}, Server: true, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := srv.Write(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = filepath.Join(dir, "data")
	cu := url.URL{Scheme: "unixs", Path: socket}
	pu := url.URL{Scheme: "unix", Path: filepath.Join(dir, "peer.sock")}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ClientTLSInfo = transport.TLSInfo{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: s.CAFile, ClientCertAuth: true}
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(Logger(t, zap.WarnLevel))
	cfg.GRPCKeepAliveMinTime = 500 * time.Millisecond
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("embedded etcd not ready after 30s")
	}
	s.Endpoint = "unixs://" + socket
	s.Root = s.Client(t, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Root.UserAddWithOptions(ctx, "root", "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Root.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Root.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// Issue writes a client certificate and key for user (its common name) in the etcd's
// directory and returns their paths.
func (s *SecureEtcd) Issue(t testing.TB, user string) (cert, key string) {
	t.Helper()
	p, err := s.CA.Issue(pki.Spec{CommonName: user, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(s.Dir, user+".crt"), filepath.Join(s.Dir, user+".key")
	if err := p.Write(cert, key); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// Client is a client authenticated as user by a certificate, closed when the test
// ends.
func (s *SecureEtcd) Client(t testing.TB, user string) *clientv3.Client {
	t.Helper()
	cert, key := s.Issue(t, user)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.CA.Cert)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "localhost", MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Grant makes role with readwrite (or read, when readOnly) on prefix, and user (no
// password: it authenticates by certificate) with that role.
func (s *SecureEtcd) Grant(t testing.TB, user, role, prefix string, readOnly bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ := clientv3.PermissionType(clientv3.PermReadWrite)
	if readOnly {
		typ = clientv3.PermissionType(clientv3.PermRead)
	}
	if _, err := s.Root.RoleAdd(ctx, role); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Root.RoleGrantPermission(ctx, role, prefix, clientv3.GetPrefixRangeEnd(prefix), typ); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Root.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Root.UserGrantRole(ctx, user, role); err != nil {
		t.Fatal(err)
	}
}
