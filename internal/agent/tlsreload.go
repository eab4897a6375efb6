package agent

// A client certificate read again from its files at each TLS handshake, so that a
// renewed certificate is used without restarting the agent.

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
)

// certReloader serves the client certificate of a TLS configuration from its files.
// At each handshake that asks for a client certificate it reads both files again; a
// pair that changed is parsed and used from then on. A pair that does not load (the
// key renewed before the certificate, a file half copied, a file gone) leaves the
// last good one in use: a renewal in progress never costs a connection. Reading two
// small files per handshake costs nothing next to the handshake itself.
type certReloader struct {
	certField, keyField, certPath, keyPath string

	mu        sync.Mutex
	certPEM   []byte
	keyPEM    []byte
	pair      *tls.Certificate
	lastError error
}

// newCertReloader loads the pair once; its error names the setting (certField,
// keyField: e.g. etcd.tls.cert, --tls-key) and never holds the key's content.
func newCertReloader(certField, keyField, certPath, keyPath string) (*certReloader, error) {
	r := &certReloader{certField: certField, keyField: keyField, certPath: certPath, keyPath: keyPath}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certField, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyField, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s %s and %s %s: %w", certField, certPath, keyField, keyPath, err)
	}
	r.certPEM, r.keyPEM, r.pair = certPEM, keyPEM, &pair
	return r, nil
}

// current returns the pair in the files now, or the last good one.
func (r *certReloader) current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, cerr := os.ReadFile(r.certPath)
	keyPEM, kerr := os.ReadFile(r.keyPath)
	switch {
	case cerr != nil:
		r.lastError = fmt.Errorf("%s: %w", r.certField, cerr)
		return r.pair
	case kerr != nil:
		r.lastError = fmt.Errorf("%s: %w", r.keyField, kerr)
		return r.pair
	case bytes.Equal(certPEM, r.certPEM) && bytes.Equal(keyPEM, r.keyPEM):
		r.lastError = nil
		return r.pair
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		r.lastError = fmt.Errorf("%s and %s: %w", r.certField, r.keyField, err)
		return r.pair
	}
	r.certPEM, r.keyPEM, r.pair, r.lastError = certPEM, keyPEM, &pair, nil
	return r.pair
}

// GetClientCertificate fits tls.Config.GetClientCertificate.
func (r *certReloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current(), nil
}

// GetCertificate fits tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current(), nil
}

// ServerTLS is a TLS server configuration whose certificate and key are read again
// at each handshake (a renewed pair is served without a restart), as `baton web`
// serves. Errors name certField and keyField, the settings the files came from.
func ServerTLS(certField, keyField, certPath, keyPath string) (*tls.Config, error) {
	r, err := newCertReloader(certField, keyField, certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}, nil
}

// err is why the latest reading of the files was not used, nil when it was.
func (r *certReloader) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastError
}
