package sandbox

// A secure sandbox (`baton-lab sandbox up --secure`): everything the sandbox runs
// talks TLS and proves who it is, as docs/security.md asks of a production setup.
//
//   - A throwaway CA under Dir/pki (keys 0600) issues every certificate.
//   - MariaDB: require_secure_transport=ON (TCP takes TLS only), a server certificate
//     per node naming its address (and the virtual IP and HAProxy's, which lead to
//     it); replicas connect with TLS and check their source's certificate
//     (MASTER_SSL_VERIFY_SERVER_CERT=1).
//   - etcd: TLS only, clients and peers; a client certificate from the CA is
//     required (etcd takes its common name as the user), a revocation list is read
//     at each connection, and authentication is on: a role per cluster with
//     readwrite on /baton/<cluster>/ alone, a user per node and one for the operator
//     with it, and baton-viewer with read on /baton/ for `baton status` and the web
//     view.
//   - The agents, the CLI and `baton web` get their certificates; the web view runs
//     in the client namespace on HTTPS with a password.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/pki"
)

// WebPort is where a secure sandbox's web view listens, on the client namespace's
// address.
const WebPort = 8443

// PKI is where a secure sandbox keeps its certificates and who they name.
type PKI struct {
	Dir   string `json:"dir"`
	CA    string `json:"ca"`     // the CA's certificate: every party trusts it
	CAKey string `json:"ca_key"` // its key (0600): the lab issues and revokes with it
	// CRL is etcd's certificate revocation list (DER), read at each connection.
	CRL string `json:"crl"`
	// CRLNumber is the number of the latest list written.
	CRLNumber int64 `json:"crl_number"`
	// Root is etcd's root user (the sandbox's own tools); Operator has the cluster's
	// role (baton switchover, pause, ...); Viewer reads every cluster (baton status,
	// the web view).
	Root     Identity `json:"root"`
	Operator Identity `json:"operator"`
	Viewer   Identity `json:"viewer"`
	// Web is the web view's server certificate.
	Web Identity `json:"web"`
}

// Identity is a certificate, its key and the etcd user it names.
type Identity struct {
	User string `json:"user,omitempty"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// WebView is the `baton web` a secure sandbox runs in its client namespace.
type WebView struct {
	PID      int    `json:"pid"`
	URL      string `json:"url"` // from the client namespace
	User     string `json:"user"`
	Password string `json:"password"`
	Log      string `json:"log"`
}

// EtcdRole is the etcd role of a cluster's agents: readwrite on its prefix alone.
func EtcdRole(cluster string) string { return "baton-" + cluster }

// EtcdNodeUser is the etcd user of a node's agent (its certificate's common name).
func EtcdNodeUser(cluster, node string) string { return "baton-" + cluster + "-" + node }

// EtcdViewerRole is the read-only role of `baton status` and `baton web`.
const EtcdViewerRole = "baton-viewer"

// newPKI lays out where a secure sandbox's files go; makePKI writes them.
func newPKI(dir, cluster string) *PKI {
	d := filepath.Join(dir, "pki")
	id := func(user, name string) Identity {
		return Identity{User: user, Cert: filepath.Join(d, name+".crt"), Key: filepath.Join(d, name+".key")}
	}
	return &PKI{Dir: d, CA: filepath.Join(d, "ca.crt"), CAKey: filepath.Join(d, "ca.key"), CRL: filepath.Join(d, "crl.der"),
		Root: id("root", "etcd-root"), Operator: id("baton-"+cluster+"-operator", "etcd-operator"),
		Viewer: id("baton-viewer", "etcd-viewer"), Web: id("", "web")}
}

// makePKI makes the CA and every certificate of a secure sandbox. The servers' keys
// are given to the mysql user, who runs mariadbd.
func (c *Cluster) makePKI(ctx context.Context) error {
	p := c.PKI
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return err
	}
	ca, err := pki.NewCA("baton sandbox "+c.Name+" CA", 0)
	if err != nil {
		return err
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := pki.WriteFile(p.CAKey, key, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFile(p.CA, ca.CertPEM(), 0o644); err != nil {
		return err
	}
	if err := c.writeCRL(ca); err != nil {
		return err
	}
	issue := func(s pki.Spec, id Identity) error {
		pair, err := ca.Issue(s)
		if err != nil {
			return err
		}
		return pair.Write(id.Cert, id.Key)
	}
	for _, m := range c.EtcdMembers {
		// The socket's file name too: etcd's client checks it for a unixs:// endpoint.
		s := pki.Spec{CommonName: m.Name, IPs: []net.IP{net.ParseIP(m.IP)}, DNSNames: []string{m.Name, "localhost", filepath.Base(m.Socket)},
			Server: true, Client: true}
		if err := issue(s, Identity{Cert: m.Cert, Key: m.Key}); err != nil {
			return err
		}
	}
	for _, id := range []Identity{p.Root, p.Operator, p.Viewer} {
		if err := issue(pki.Spec{CommonName: id.User, Client: true}, id); err != nil {
			return err
		}
	}
	if err := issue(pki.Spec{CommonName: "baton web", IPs: []net.IP{net.ParseIP(c.ClientIP)}, DNSNames: []string{"localhost"}, Server: true}, p.Web); err != nil {
		return err
	}
	// What leads to a server: its own address, the virtual IP and HAProxy's (a
	// client checks the name it dialled).
	extra := []net.IP{net.ParseIP(haproxyIP), net.IPv4(127, 0, 0, 1)}
	if ip, _, err := net.ParseCIDR(vipCIDR); err == nil {
		extra = append(extra, ip)
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if err := os.MkdirAll(filepath.Dir(n.ServerCert), 0o755); err != nil {
			return err
		}
		s := pki.Spec{CommonName: n.Name, IPs: append([]net.IP{net.ParseIP(n.IP)}, extra...), DNSNames: []string{n.Name}, Server: true, Client: true}
		if err := issue(s, Identity{Cert: n.ServerCert, Key: n.ServerKey}); err != nil {
			return err
		}
		if err := run(ctx, "chown", "mysql:mysql", n.ServerKey); err != nil {
			return err
		}
		if err := issue(pki.Spec{CommonName: n.EtcdUser, Client: true}, Identity{Cert: n.EtcdCert, Key: n.EtcdKey}); err != nil {
			return err
		}
	}
	return nil
}

// LoadCA reads the sandbox's CA back, to issue or revoke certificates.
func (p *PKI) LoadCA() (*pki.CA, error) {
	certPEM, err := os.ReadFile(p.CA)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(p.CAKey)
	if err != nil {
		return nil, err
	}
	return pki.ParseCA(certPEM, keyPEM)
}

// writeCRL writes etcd's revocation list, revoking revoked.
func (c *Cluster) writeCRL(ca *pki.CA, revoked ...*x509.Certificate) error {
	c.PKI.CRLNumber++
	crl, err := ca.CRL(c.PKI.CRLNumber, revoked...)
	if err != nil {
		return err
	}
	return pki.WriteFile(c.PKI.CRL, crl, 0o644)
}

// Revoke adds the certificates to etcd's revocation list: etcd refuses a
// connection that presents one from then on (connections already made stay).
func (c *Cluster) Revoke(certs ...*x509.Certificate) error {
	if c.PKI == nil {
		return errors.New("revoke: the sandbox is not secure")
	}
	ca, err := c.PKI.LoadCA()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(c.PKI.CRL)
	if err != nil {
		return err
	}
	old, err := x509.ParseRevocationList(b)
	if err != nil {
		return err
	}
	var all []*x509.Certificate
	for _, e := range old.RevokedCertificateEntries {
		all = append(all, &x509.Certificate{SerialNumber: e.SerialNumber})
	}
	return c.update(func() error { return c.writeCRL(ca, append(all, certs...)...) })
}

// RenewAgentCertificates issues every agent a new etcd client certificate (a new key
// and serial, the same user), written over the old files as a renewal would, and
// returns the certificates it replaced.
func (c *Cluster) RenewAgentCertificates() ([]*x509.Certificate, error) {
	if c.PKI == nil {
		return nil, errors.New("renew: the sandbox is not secure")
	}
	ca, err := c.PKI.LoadCA()
	if err != nil {
		return nil, err
	}
	var old []*x509.Certificate
	for _, n := range c.Nodes {
		cur, err := ReadCertificate(n.EtcdCert)
		if err != nil {
			return nil, err
		}
		pair, err := ca.Issue(pki.Spec{CommonName: n.EtcdUser, Client: true})
		if err != nil {
			return nil, err
		}
		if err := pair.Write(n.EtcdCert, n.EtcdKey); err != nil {
			return nil, err
		}
		old = append(old, cur)
	}
	return old, nil
}

// ReadCertificate reads the first certificate of a PEM file.
func ReadCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}

// clientTLS is a TLS client configuration that trusts the sandbox's CA and presents
// id's certificate (none when id has none).
func (p *PKI) clientTLS(id Identity) (*tls.Config, error) {
	pool, err := p.pool()
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if id.Cert != "" {
		pair, err := tls.LoadX509KeyPair(id.Cert, id.Key)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

func (p *PKI) pool() (*x509.CertPool, error) {
	b, err := os.ReadFile(p.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", p.CA)
	}
	return pool, nil
}

// MySQLTLS is how a client of a secure sandbox's servers checks them: the CA; nil
// for a plain-text sandbox. The name checked is the host dialled.
func (c *Cluster) MySQLTLS() (*tls.Config, error) {
	if c.PKI == nil {
		return nil, nil
	}
	return c.PKI.clientTLS(Identity{})
}

// EtcdClientAs is a client of the sandbox's etcd from the root namespace, with id's
// certificate (an Identity of PKI, or a node's); Identity{} presents none.
func (c *Cluster) EtcdClientAs(id Identity) (*clientv3.Client, error) {
	if c.PKI == nil {
		return nil, errors.New("etcd client: the sandbox is not secure: every client is anyone")
	}
	tc, err := c.PKI.clientTLS(id)
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{Endpoints: c.Etcd, DialTimeout: 2 * time.Second, TLS: tc, Logger: nopLogger()})
}

// NodeIdentity is the etcd identity of a node's agent.
func (n Node) NodeIdentity() Identity {
	return Identity{User: n.EtcdUser, Cert: n.EtcdCert, Key: n.EtcdKey}
}

// CLIEnv is the environment `baton` commands run from the root namespace need to
// reach the sandbox's cluster: its etcd endpoints and name, and in a secure sandbox
// the CA and id's certificate (PKI.Operator changes the cluster, PKI.Viewer reads
// it).
func (c *Cluster) CLIEnv(id Identity) []string {
	env := []string{"BATON_ETCD=" + strings.Join(c.Etcd, ","), "BATON_CLUSTER=" + c.Name}
	if c.PKI != nil {
		env = append(env, "BATON_ETCD_CA="+c.PKI.CA, "BATON_ETCD_CERT="+id.Cert, "BATON_ETCD_KEY="+id.Key)
	}
	return env
}

// setupEtcdAuth makes etcd's users and roles and turns authentication on. Through
// the root user's certificate; done once, on a new etcd.
func (c *Cluster) setupEtcdAuth(ctx context.Context) error {
	cli, err := c.EtcdClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	noPassword := &clientv3.UserAddOptions{NoPassword: true}
	prefix := "/baton/" + c.Name + "/"
	steps := []func() error{
		func() error { _, err := cli.UserAddWithOptions(ctx, "root", "", noPassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, EtcdRole(c.Name)); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, EtcdRole(c.Name), prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.RoleAdd(ctx, EtcdViewerRole); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, EtcdViewerRole, "/baton/", clientv3.GetPrefixRangeEnd("/baton/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
	}
	grant := func(user, role string) {
		steps = append(steps,
			func() error { _, err := cli.UserAddWithOptions(ctx, user, "", noPassword); return err },
			func() error { _, err := cli.UserGrantRole(ctx, user, role); return err })
	}
	for _, n := range c.Nodes {
		grant(n.EtcdUser, EtcdRole(c.Name))
	}
	grant(c.PKI.Operator.User, EtcdRole(c.Name))
	grant(c.PKI.Viewer.User, EtcdViewerRole)
	steps = append(steps, func() error { _, err := cli.AuthEnable(ctx); return err })
	for i, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("etcd users and roles (step %d): %w", i+1, err)
		}
	}
	return nil
}

// startWeb runs `baton web` in the client namespace: HTTPS with the sandbox's
// certificate, basic auth, and etcd as baton-viewer.
func (c *Cluster) startWeb(ctx context.Context) error {
	w := c.Web
	if alive(w.PID) {
		return fmt.Errorf("the web view is running (pid %d)", w.PID)
	}
	pw := c.secretFile("web")
	if err := os.WriteFile(pw, []byte(w.Password+"\n"), 0o600); err != nil {
		return err
	}
	args := []string{c.Binary, "web", "--etcd", strings.Join(c.EtcdInternal, ","),
		"--etcd-ca", c.PKI.CA, "--etcd-cert", c.PKI.Viewer.Cert, "--etcd-key", c.PKI.Viewer.Key,
		"--listen", net.JoinHostPort(c.ClientIP, strconv.Itoa(WebPort)),
		"--tls-cert", c.PKI.Web.Cert, "--tls-key", c.PKI.Web.Key, "--user", w.User, "--password-file", pw}
	pid, err := startIn(c.ClientNetNS, c.Dir, w.Log, args...)
	if err != nil {
		return err
	}
	w.PID = pid
	// Up once it answers (a 401: no password given).
	hc, err := c.WebClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := newRequest(rctx, w.URL)
		resp, err := hc.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if !alive(w.PID) {
			return fmt.Errorf("baton web exited (see %s): %s", w.Log, lastLines(w.Log, 3))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("baton web not answering at %s: %w", w.URL, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WebClient is an HTTPS client of the web view from the client namespace, trusting
// the sandbox's CA. Requests carry no password: set it with SetBasicAuth.
func (c *Cluster) WebClient() (*http.Client, error) {
	if c.PKI == nil {
		return nil, errors.New("web client: the sandbox is not secure and runs no web view")
	}
	tc, err := c.PKI.clientTLS(Identity{})
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: DialContext(c.ClientNetNS), TLSClientConfig: tc}}, nil
}

func newRequest(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}

func nopLogger() *zap.Logger { return zap.NewNop() }
