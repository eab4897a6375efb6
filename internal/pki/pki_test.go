package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestIssueVerifyRevoke(t *testing.T) {
	ca, err := NewCA("test ca", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(Spec{CommonName: "db1", IPs: []net.IP{net.ParseIP("198.18.0.11")}, DNSNames: []string{"db1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue(Spec{CommonName: "baton-x-db1", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Cert.SerialNumber.Cmp(cli.Cert.SerialNumber) == 0 {
		t.Fatal("two certificates share a serial number")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "198.18.0.11"}); err != nil {
		t.Fatalf("server certificate for its IP: %v", err)
	}
	if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "198.18.0.12"}); err == nil {
		t.Fatal("server certificate verified for another address")
	}
	if _, err := cli.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	if _, err := cli.Cert.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
		t.Fatal("a client-only certificate verified as a server's")
	}

	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	if err := cli.Write(cert, key); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		t.Fatalf("written pair does not load: %v", err)
	}

	der, err := ca.CRL(1, cli.Cert)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("crl signature: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(cli.Cert.SerialNumber) != 0 {
		t.Fatalf("crl revokes %v, want the client certificate's serial", crl.RevokedCertificateEntries)
	}
}
