package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// writeServerCert writes a self-signed certificate for 127.0.0.1 and its key, and
// returns their paths and a pool that trusts it.
func writeServerCert(t *testing.T) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "baton web"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "web.crt"), filepath.Join(dir, "web.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestWebCommand runs `baton web` with TLS and a password file against etcd: the
// page needs the password, is served over HTTPS and shows the cluster.
func TestWebCommand(t *testing.T) {
	etcd, endpoint := sandboxtest.Etcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cluster.NewStore(etcd, "webcmd").BootstrapPrimary(ctx, nil, cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	cert, key, pool := writeServerCert(t)
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	app := &cli.App{Name: "baton", Commands: []*cli.Command{webCommand()}, ExitErrHandler: func(*cli.Context, error) {}}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() {
		ran <- app.RunContext(runCtx, []string{"baton", "web", "--etcd", endpoint, "--listen", addr,
			"--tls-cert", cert, "--tls-key", key, "--user", "ops", "--password-file", pwFile})
	}()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(user, pass string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var code int
	var body string
	sandboxtest.WaitFor(t, 10*time.Second, "baton web showing the cluster over HTTPS", func() bool {
		code, body = get("ops", "s3cret")
		return code == http.StatusOK && strings.Contains(body, `data-cluster="webcmd" data-primary="db1"`)
	})
	if code, _ := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("no password: %d, want 401", code)
	}
	if code, _ := get("ops", "s3cret\n"); code != http.StatusUnauthorized {
		t.Errorf("password with the file's newline: %d, want 401", code)
	}
	if strings.Contains(body, "s3cret") {
		t.Error("the page shows the password")
	}
	stop()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("baton web ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("baton web did not end with its context")
	}
}

func TestWebCommandRefuses(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd", "unix:///nonexistent", "--tls-cert", "a.crt"}, "--tls-cert and --tls-key go together"},
		{[]string{"--etcd", "unix:///nonexistent", "--password-file", empty}, "empty"},
		{[]string{"--etcd", "unix:///nonexistent", "--password-file", "/nonexistent/pw"}, "--password-file"},
		{[]string{"--etcd", "unix:///nonexistent", "--history", "0"}, "History 0"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Setenv("BATON_ETCD", "")
		t.Setenv("BATON_CONFIG", "")
		_, err := runCLI(t, webCommand(), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("baton web %v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
	_, err := runCLI(t, webCommand())
	if err == nil || !strings.Contains(err.Error(), "no etcd endpoints") {
		t.Errorf("baton web with no etcd: err = %v", err)
	}
}
