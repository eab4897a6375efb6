package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// writeTestCA writes a self-signed CA certificate and returns its path.
func writeTestCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProbeTargetFromConfig checks that `baton probe --config` connects as the agent
// does: mysql.tls and mysql.connect_timeout reach the probe's connections.
func TestProbeTargetFromConfig(t *testing.T) {
	ca := writeTestCA(t)
	path := filepath.Join(t.TempDir(), "baton.yaml")
	yaml := `cluster: shop
node: db1
mysql:
  address: 192.0.2.11:3306
  user: baton
  password: pw
  connect_timeout: 1500ms
  tls:
    ca: ` + ca + `
etcd:
  endpoints: [192.0.2.21:2379]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	mc, dsn, err := probeTarget("", path)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Addr != "192.0.2.11:3306" || mc.Timeout != 1500*time.Millisecond || mc.TLS == nil || mc.TLS.RootCAs == nil ||
		mc.TLS.ServerName != "192.0.2.11" {
		t.Fatalf("probe config: addr %s timeout %s tls %+v", mc.Addr, mc.Timeout, mc.TLS)
	}
	dc, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if dc.TLS == nil || dc.TLS.RootCAs == nil {
		t.Fatalf("the detector's DSN has no TLS: %s", dsn)
	}

	if _, _, err := probeTarget("root@tcp(h:3306)/", path); err == nil {
		t.Fatal("--dsn with --config accepted")
	}
	if _, _, err := probeTarget("", ""); err == nil {
		t.Fatal("neither --dsn nor --config accepted")
	}
	if mc, _, err := probeTarget("root@tcp(h:3306)/", ""); err != nil || mc.Addr != "h:3306" {
		t.Fatalf("--dsn: %+v, %v", mc, err)
	}
}
