package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/pki"
)

// TestClientCertificateRenewedWithoutRestart checks that a TLS client configuration
// built from TLSFiles presents the certificate in the files at each handshake: a
// renewed pair is used from the next connection, and a pair half renewed (the key
// of one certificate with another) leaves the last good one in use.
func TestClientCertificateRenewedWithoutRestart(t *testing.T) {
	ca, err := pki.NewCA("test ca", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.Spec{CommonName: "etcd", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	issue := func() pki.Pair {
		p, err := ca.Issue(pki.Spec{CommonName: "baton-shop-db1", Client: true})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first, second, third := issue(), issue(), issue()
	cert, key := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	if err := first.Write(cert, key); err != nil {
		t.Fatal(err)
	}

	// A server that requires a client certificate from the CA and says which serial
	// it saw.
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	serverPair, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverPair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan *big.Int, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err == nil {
				seen <- tc.ConnectionState().PeerCertificates[0].SerialNumber
			} else {
				seen <- nil
			}
			tc.Close()
		}
	}()

	tc, err := (&TLSFiles{CA: caFile, Cert: cert, Key: key}).Config("etcd.tls", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dial := func() *big.Int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := (&tls.Dialer{Config: tc}).DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		c.Close()
		select {
		case s := <-seen:
			return s
		case <-ctx.Done():
			t.Fatal("the server saw no handshake")
			return nil
		}
	}
	if s := dial(); s == nil || s.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("first handshake presented serial %v, want the first certificate's", s)
	}
	if err := second.Write(cert, key); err != nil {
		t.Fatal(err)
	}
	if s := dial(); s == nil || s.Cmp(second.Cert.SerialNumber) != 0 {
		t.Fatalf("after the renewal the handshake presented serial %v, want the renewed certificate's", s)
	}
	// Half a renewal: the third certificate with the second's key. The second pair
	// stays in use, and the connection is made.
	if err := pki.WriteFile(cert, third.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if s := dial(); s == nil || s.Cmp(second.Cert.SerialNumber) != 0 {
		t.Fatalf("with a mismatched pair the handshake presented serial %v, want the last good one's", s)
	}
	if err := pki.WriteFile(key, third.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := dial(); s == nil || s.Cmp(third.Cert.SerialNumber) != 0 {
		t.Fatalf("once the key is renewed too, serial %v, want the third certificate's", s)
	}
}

// TestTLSFilesBadInput checks that a wrong path or an unreadable key is refused with
// the field named, and the key's content never in the error.
func TestTLSFilesBadInput(t *testing.T) {
	ca, err := pki.NewCA("test ca", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := ca.Issue(pki.Spec{CommonName: "c", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	if err := p.Write(cert, key); err != nil {
		t.Fatal(err)
	}
	other, _ := ca.Issue(pki.Spec{CommonName: "o", Client: true})
	otherKey := filepath.Join(dir, "o.key")
	os.WriteFile(otherKey, other.KeyPEM, 0o600)
	garbage := filepath.Join(dir, "garbage.key")
	os.WriteFile(garbage, []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"), 0o600)
	for _, tc := range []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{"missing cert", TLSFiles{Cert: filepath.Join(dir, "nope.crt"), Key: key}, "mysql.tls.cert: open"},
		{"missing key", TLSFiles{Cert: cert, Key: filepath.Join(dir, "nope.key")}, "mysql.tls.key: open"},
		{"key of another certificate", TLSFiles{Cert: cert, Key: otherKey}, "mysql.tls.cert " + cert + " and mysql.tls.key " + otherKey},
		{"key that does not parse", TLSFiles{Cert: cert, Key: garbage}, "mysql.tls.key " + garbage},
		{"missing ca", TLSFiles{CA: filepath.Join(dir, "nope-ca.crt")}, "mysql.tls.ca: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.files.Config("mysql.tls", "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), string(p.KeyPEM[30:60])) {
				t.Fatalf("the error shows key material: %v", err)
			}
		})
	}
}
