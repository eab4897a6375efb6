package sandbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AgentHTTPPort is where each sandbox agent serves HTTP, on its node's address.
const AgentHTTPPort = 9107

// agentConfig is the YAML configuration of a node's agent. Secrets are in files
// beside it, never in the file or on a command line.
func (c *Cluster) agentConfig(n *Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by `baton-lab sandbox up --with-agents`.\n")
	fmt.Fprintf(&b, "cluster: %s\nnode: %s\n", c.Name, n.Name)
	fmt.Fprintf(&b, "mysql:\n  address: %s\n  socket: %s\n  user: %s\n  password_file: %s\n",
		net.JoinHostPort(n.IP, strconv.Itoa(n.Port)), n.Socket, c.AdminUser, c.secretFile("admin"))
	if c.PKI != nil {
		fmt.Fprintf(&b, "  tls:\n    ca: %s\n", c.PKI.CA)
	}
	fmt.Fprintf(&b, "  replication:\n    user: %s\n    password_file: %s\n", c.ReplUser, c.secretFile("repl"))
	if c.PKI != nil {
		fmt.Fprintf(&b, "    tls:\n      ca: %s\n      verify_server_cert: true\n", c.PKI.CA)
	}
	fmt.Fprintf(&b, "etcd:\n  endpoints: [%s]\n", strings.Join(c.EtcdInternal, ", "))
	if c.PKI != nil {
		// No password: etcd takes the certificate's common name as the user.
		fmt.Fprintf(&b, "  tls:\n    ca: %s\n    cert: %s\n    key: %s\n", c.PKI.CA, n.EtcdCert, n.EtcdKey)
	}
	fmt.Fprintf(&b, "http:\n  listen: %s\n", net.JoinHostPort(n.IP, strconv.Itoa(AgentHTTPPort)))
	fmt.Fprintf(&b, "log:\n  level: info\n  format: json\n")
	fmt.Fprintf(&b, "semi_sync: %v\n", c.SemiSync)
	fmt.Fprintf(&b, "datadir: %s\n", n.Datadir)
	fmt.Fprintf(&b, "peer_secret_file: %s\nfailsafe: %v\n", c.secretFile("peer"), !c.NoFailsafe)
	fmt.Fprintf(&b, "state_dir: %s\n", filepath.Join(n.Dir, "agent-state"))
	// The file's words (cluster.RejoinMode's): the sandbox cannot import cluster,
	// whose tests run sandboxes.
	rejoin := "archive-and-repair"
	if c.ManualRejoin {
		rejoin = "manual"
	}
	fmt.Fprintf(&b, "rejoin: %s\n", rejoin)
	// A rebuild stops and starts the node's server as the sandbox's kill and start
	// faults do: the state file keeps the server's new pid.
	fault := func(kind string) string {
		return fmt.Sprintf("[%s, sandbox, fault, --root, %s, --name, %s, --node, %s, %s]", c.LabBinary, filepath.Dir(c.Dir), c.Name, n.Name, kind)
	}
	fmt.Fprintf(&b, "server:\n  stop_command: %s\n  start_command: %s\n  command_timeout: 1m\n", fault("kill"), fault("start"))
	fmt.Fprintf(&b, "rebuild:\n  timeout: 30m\n")
	if c.RebuildRate != "" {
		fmt.Fprintf(&b, "  max_rate: %s\n", c.RebuildRate)
	}
	if c.HookScript != "" {
		fmt.Fprintf(&b, "hooks:\n  pre_failover: [%s, pre]\n  post_failover: [%s, post]\n  timeout: 5s\n", c.HookScript, c.HookScript)
	}
	if c.VIP != "" {
		fmt.Fprintf(&b, "vip:\n  address: %s\n  interface: eth0\n  arp_count: 3\n", c.VIP)
	}
	if c.AgentYAML != "" {
		b.WriteString(strings.TrimSuffix(c.AgentYAML, "\n") + "\n")
	}
	return b.String()
}

func (c *Cluster) secretFile(name string) string { return filepath.Join(c.Dir, "secrets", name) }

// writeAgentFiles writes the secrets and every node's agent configuration.
func (c *Cluster) writeAgentFiles() error {
	if err := os.MkdirAll(filepath.Join(c.Dir, "secrets"), 0o700); err != nil {
		return err
	}
	for name, v := range map[string]string{"admin": c.AdminPassword, "repl": c.ReplPassword, "peer": c.PeerSecret} {
		if err := os.WriteFile(c.secretFile(name), []byte(v+"\n"), 0o600); err != nil {
			return err
		}
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		n.AgentConfig = filepath.Join(n.Dir, "agent.yaml")
		n.AgentLog = filepath.Join(n.Dir, "agent.log")
		n.AgentHTTP = net.JoinHostPort(n.IP, strconv.Itoa(AgentHTTPPort))
		if err := os.WriteFile(n.AgentConfig, []byte(c.agentConfig(n)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// startAgent starts a node's `baton agent` inside the node's namespace.
func (c *Cluster) startAgent(n *Node) error {
	if alive(n.AgentPID) {
		return fmt.Errorf("the agent of %s is running (pid %d)", n.Name, n.AgentPID)
	}
	pid, err := startInEnv(n.NetNS, n.Dir, n.AgentLog, n.AgentEnv, c.Binary, "agent", "--config", n.AgentConfig)
	if err != nil {
		return err
	}
	n.AgentPID = pid
	return nil
}

// SetAgentEnv sets what is added to the environment of node's agent from its next
// start on (nil: nothing); the running agent keeps its own.
func (c *Cluster) SetAgentEnv(node string, env []string) error {
	return c.update(func() error {
		n, err := c.Node(node)
		if err != nil {
			return err
		}
		n.AgentEnv = slices.Clone(env)
		return nil
	})
}

// startAgents starts every node's agent and waits until the cluster has a primary of
// record whose agent holds the leader key.
func (c *Cluster) startAgents(ctx context.Context) error {
	if err := c.writeAgentFiles(); err != nil {
		return fmt.Errorf("write agent configuration: %w", err)
	}
	for i := range c.Nodes {
		if err := c.startAgent(&c.Nodes[i]); err != nil {
			return err
		}
	}
	return c.waitLeader(ctx, 30*time.Second)
}

// waitLeader waits until some agent holds the cluster's leader key.
func (c *Cluster) waitLeader(ctx context.Context, limit time.Duration) error {
	cli, err := c.EtcdClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	key := "/baton/" + c.Name + "/leader"
	deadline := time.Now().Add(limit)
	for {
		gctx, cancel := withTimeout(ctx, time.Second)
		resp, err := cli.Get(gctx, key)
		cancel()
		if err == nil && len(resp.Kvs) == 1 {
			return nil
		}
		for _, n := range c.Nodes {
			if !alive(n.AgentPID) {
				return fmt.Errorf("the agent of %s exited (see %s): %s", n.Name, n.AgentLog, lastLines(n.AgentLog, 3))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no agent took the leader key within %s (see the agent logs, e.g. %s)", limit, c.Nodes[0].AgentLog)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
