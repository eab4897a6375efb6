package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// update changes the sandbox under its lock: the state is re-read first (another
// invocation may have changed it) and saved after fn, whatever fn returned, since
// fn may have changed the machine before it failed.
func (c *Cluster) update(fn func() error) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.reload(); err != nil {
		return err
	}
	ferr := fn()
	if err := c.save(); err != nil && ferr == nil {
		return err
	}
	return ferr
}

// reload re-reads the state file: another invocation may have changed it.
func (c *Cluster) reload() error {
	b, err := os.ReadFile(stateFile(c.Dir))
	if err != nil {
		return fmt.Errorf("read sandbox state: %w", err)
	}
	log := c.log
	*c = Cluster{}
	if err := json.Unmarshal(b, c); err != nil {
		return fmt.Errorf("parse sandbox state: %w", err)
	}
	c.log = log
	return nil
}

// Refresh asks every node what it is now (its role may have changed since `up`:
// Baton moves the primary) and records it. It is what `baton-lab sandbox status` shows.
func (c *Cluster) Refresh(ctx context.Context) error {
	return c.update(func() error { return c.refresh(ctx) })
}

func (c *Cluster) refresh(ctx context.Context) error {
	for i := range c.Nodes {
		n := &c.Nodes[i]
		role := liveRole(ctx, n)
		switch {
		case role != "down":
			n.Role, n.State = role, "running"
		case alive(n.PID):
			n.State = "not answering" // e.g. stopped, frozen or cut off: keep its last role
		default:
			n.State = "down"
		}
	}
	if c.VIP != "" {
		holders, err := c.VIPHolders(ctx)
		if err != nil {
			return err
		}
		c.VIPHolder = strings.Join(holders, ",")
	}
	return nil
}

// VIPHolders lists the nodes whose eth0 holds the sandbox's virtual IP now (one,
// normally; none during a move).
func (c *Cluster) VIPHolders(ctx context.Context) ([]string, error) {
	ip, _, err := net.ParseCIDR(c.VIP)
	if err != nil {
		return nil, fmt.Errorf("virtual IP %q: %w", c.VIP, err)
	}
	var out []string
	for _, n := range c.Nodes {
		addrs, err := output(ctx, "ip", "-n", n.NetNS, "-4", "-o", "addr", "show", "dev", "eth0")
		if err != nil {
			return nil, err
		}
		if strings.Contains(addrs, " "+ip.String()+"/") {
			out = append(out, n.Name)
		}
	}
	return out, nil
}

// AgentStatus reads a node's agent's /status (JSON) over the bridge network, from
// the client namespace, as an operator's `baton status --agents` does.
func (c *Cluster) AgentStatus(ctx context.Context, node string) ([]byte, error) {
	code, b, err := c.AgentGet(ctx, node, "/status")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("agent of %s: HTTP %d", node, code)
	}
	return b, err
}

// AgentGet reads path from a node's agent over the bridge network, from the client
// namespace, as a load balancer's check does: the HTTP status and the body.
func (c *Cluster) AgentGet(ctx context.Context, node, path string) (int, []byte, error) {
	n, err := c.Node(node)
	if err != nil {
		return 0, nil, err
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: DialContext(c.ClientNetNS)}, Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.AgentHTTP+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("agent of %s: %w", node, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("agent of %s: %w", node, err)
	}
	return resp.StatusCode, b, nil
}
