package sandbox

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// MemberConfig is what one embedded etcd member of a sandbox needs to run.
type MemberConfig struct {
	Name           string
	Dir            string
	ClientURL      string // http://IP:2379, served to the node namespaces
	PeerURL        string // http://IP:2380
	Socket         string // unix socket path, served to the root namespace
	InitialCluster string // name=peerURL,...
	// Pprof serves /debug/pprof on the client URLs (the lab's benchmarks profile
	// the members with it).
	Pprof bool
	// CertFile, KeyFile, CAFile and CRLFile, when CertFile is set, make the member
	// serve clients and peers over TLS only (https:// URLs, a unixs:// socket) and
	// require a client certificate from the CA, not revoked in CRLFile (read again
	// at each connection): a secure sandbox.
	CertFile, KeyFile, CAFile, CRLFile string
}

// RunEtcdMember runs an embedded etcd member until ctx is cancelled. It is the body of
// the hidden `baton-lab sandbox etcd-member` command, which the sandbox starts inside the
// member's namespace.
func RunEtcdMember(ctx context.Context, mc MemberConfig, log *zap.Logger) error {
	cfg := embed.NewConfig()
	cfg.Name = mc.Name
	cfg.Dir = filepath.Join(mc.Dir, "data")
	cu, err := url.Parse(mc.ClientURL)
	if err != nil {
		return fmt.Errorf("client url: %w", err)
	}
	pu, err := url.Parse(mc.PeerURL)
	if err != nil {
		return fmt.Errorf("peer url: %w", err)
	}
	su := url.URL{Scheme: "unix", Path: mc.Socket}
	if mc.CertFile != "" {
		su.Scheme = "unixs"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: mc.CertFile, KeyFile: mc.KeyFile, TrustedCAFile: mc.CAFile,
			ClientCertAuth: true, CRLFile: mc.CRLFile}
		cfg.PeerTLSInfo = transport.TLSInfo{CertFile: mc.CertFile, KeyFile: mc.KeyFile, TrustedCAFile: mc.CAFile, ClientCertAuth: true}
	}
	cfg.ListenClientUrls = []url.URL{*cu, su}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = mc.InitialCluster
	cfg.ClusterState = embed.ClusterStateFlagNew
	if _, err := os.Stat(filepath.Join(cfg.Dir, "member")); err == nil {
		cfg.ClusterState = embed.ClusterStateFlagExisting // a restarted member
	}
	cfg.InitialClusterToken = "baton-sandbox"
	// Baton's agents ask for a ping a second over connections with streams (gRPC
	// raises that to 10 s); a client that pinged faster than etcd's default of 5 s
	// would have its connection closed. Production etcd: --grpc-keepalive-min-time.
	// No minimum admits pings over a connection without streams: etcd refuses them
	// whatever this says (see agent.Config.EtcdClientConfig).
	cfg.GRPCKeepAliveMinTime = 500 * time.Millisecond
	cfg.EnablePprof = mc.Pprof
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	_ = os.Remove(mc.Socket)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd member %s: %w", mc.Name, err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		log.Info("etcd member ready", zap.String("member", mc.Name))
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd member %s not ready after 60s", mc.Name)
	case <-ctx.Done():
		return nil
	}
	select {
	case err := <-e.Err():
		return fmt.Errorf("etcd member %s: %w", mc.Name, err)
	case <-ctx.Done():
		return nil
	}
}

func (c *Cluster) memberArgs(m EtcdMember) []string {
	var peers []string
	for _, o := range c.EtcdMembers {
		peers = append(peers, o.Name+"="+o.PeerURL)
	}
	args := []string{c.LabBinary, "sandbox", "etcd-member",
		"--member", m.Name, "--dir", m.Dir, "--client-url", m.ClientURL, "--peer-url", m.PeerURL,
		"--socket", m.Socket, "--initial-cluster", strings.Join(peers, ",")}
	if c.PKI != nil {
		args = append(args, "--cert", m.Cert, "--key", m.Key, "--ca", c.PKI.CA, "--crl", c.PKI.CRL)
	}
	return args
}

// startEtcdMember starts (or restarts) one member in its namespace.
func (c *Cluster) startEtcdMember(m *EtcdMember) error {
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return err
	}
	pid, err := startIn(m.NetNS, m.Dir, filepath.Join(m.Dir, "etcd.log"), c.memberArgs(*m)...)
	if err != nil {
		return err
	}
	m.PID = pid
	return nil
}

// waitEtcd waits until the cluster answers a linearizable read through the unix
// sockets.
func (c *Cluster) waitEtcd(ctx context.Context, limit time.Duration) error {
	cli, err := c.EtcdClient()
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	deadline := time.Now().Add(limit)
	for {
		gctx, cancel := withTimeout(ctx, time.Second)
		_, err := cli.Get(gctx, "/baton-sandbox-ready")
		cancel()
		if err == nil {
			return nil
		}
		for _, m := range c.EtcdMembers {
			if !alive(m.PID) {
				return fmt.Errorf("etcd member %s exited during start-up (see %s)", m.Name, filepath.Join(m.Dir, "etcd.log"))
			}
		}
		if time.Now().After(deadline) {
			log := filepath.Join(c.EtcdMembers[0].Dir, "etcd.log")
			return fmt.Errorf("etcd not answering after %s: %w (%s ends: %s)", limit, err, log, lastLines(log, 2))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EtcdClient returns a client of the sandbox's etcd from the root namespace: in a
// secure sandbox, as etcd's root user (a client certificate).
func (c *Cluster) EtcdClient() (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: c.Etcd, DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	if c.PKI != nil {
		tc, err := c.PKI.clientTLS(c.PKI.Root)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	return clientv3.New(cfg)
}

// EtcdLeader returns the name of the member that is the etcd cluster's raft leader.
func (c *Cluster) EtcdLeader(ctx context.Context) (string, error) {
	cli, err := c.EtcdClient()
	if err != nil {
		return "", err
	}
	defer cli.Close()
	for _, m := range c.EtcdMembers {
		sctx, cancel := withTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, m.Endpoint())
		cancel()
		if err != nil {
			continue
		}
		if st.Leader == st.Header.MemberId {
			return m.Name, nil
		}
	}
	return "", fmt.Errorf("no etcd member says it leads")
}

// RestartEtcdMember kills one etcd member (SIGKILL) and starts it again on its data,
// as a crashed and restarted etcd server.
func (c *Cluster) RestartEtcdMember(ctx context.Context, name string, down time.Duration) error {
	return c.update(func() error {
		for i := range c.EtcdMembers {
			m := &c.EtcdMembers[i]
			if m.Name != name {
				continue
			}
			if err := kill(ctx, m.PID); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(down):
			}
			return c.startEtcdMember(m)
		}
		return fmt.Errorf("unknown etcd member %q", name)
	})
}

// StopEtcd kills etcd members (SIGKILL), as an etcd outage: member names one, ""
// means every member (quorum lost). Clients then see refused connections. Members
// already stopped are left as they are.
func (c *Cluster) StopEtcd(ctx context.Context, member string) error {
	return c.update(func() error {
		ms, err := c.etcdMembers(member)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if !alive(m.PID) {
				continue
			}
			if err := kill(ctx, m.PID); err != nil {
				return fmt.Errorf("stop etcd member %s: %w", m.Name, err)
			}
		}
		return nil
	})
}

// StartEtcd starts stopped etcd members again on their data: member names one, ""
// means every stopped member. It returns once the cluster answers a read when a
// quorum is back, or at once when it is not.
func (c *Cluster) StartEtcd(ctx context.Context, member string) error {
	err := c.update(func() error {
		ms, err := c.etcdMembers(member)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if alive(m.PID) {
				continue
			}
			if err := c.startEtcdMember(m); err != nil {
				return fmt.Errorf("start etcd member %s: %w", m.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	up := 0
	for _, m := range c.EtcdMembers {
		if alive(m.PID) {
			up++
		}
	}
	if up*2 <= len(c.EtcdMembers) {
		return nil
	}
	return c.waitEtcd(ctx, 30*time.Second)
}

// etcdMembers returns the member called name, or every member for "".
func (c *Cluster) etcdMembers(name string) ([]*EtcdMember, error) {
	var out []*EtcdMember
	var names []string
	for i := range c.EtcdMembers {
		m := &c.EtcdMembers[i]
		names = append(names, m.Name)
		if name == "" || m.Name == name {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("unknown etcd member %q: the sandbox has %s", name, strings.Join(names, ", "))
	}
	return out, nil
}
