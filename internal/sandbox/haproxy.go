package sandbox

// HAProxy in the client namespace, in front of the nodes, as deploy/haproxy.cfg puts
// it in front of a real cluster: a writer frontend routed to the server whose agent's
// /primary answers 200, a reader frontend over /replica. Its configuration is
// haproxyTemplate, which keeps deploy/haproxy.cfg's settings (a test compares them)
// with the sandbox's addresses.

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// The HAProxy frontends' address and ports: a second address on the client
// namespace's eth0, so that HAProxy is a host of its own on the bridge.
const (
	haproxyIP         = "198.18.0.6"
	HAProxyWriterPort = 3306
	HAProxyReaderPort = 3307
)

// The backends' names, as in deploy/haproxy.cfg.
const (
	HAProxyWriterBackend = "mysql_primary"
	HAProxyReaderBackend = "mysql_replicas"
)

// HAProxy is the sandbox's HAProxy, as recorded in its state file.
type HAProxy struct {
	PID    int    `json:"pid"`
	Writer string `json:"writer"` // the writer frontend, host:port, reachable in the sandbox's namespaces
	Reader string `json:"reader"` // the reader frontend
	Config string `json:"config"`
	Log    string `json:"log"`
	Socket string `json:"socket"` // the runtime API's unix socket, from the root namespace
}

// haproxyTemplate is deploy/haproxy.cfg without its comments and with the sandbox's
// addresses; TestHAProxyTemplateFollowsDeploy keeps the two alike.
const haproxyTemplate = `# Written by ` + "`baton-lab sandbox up --haproxy`" + ` from deploy/haproxy.cfg: same settings,
# the sandbox's addresses.
global
	log stdout format raw local0 info
	maxconn 4096
	stats socket {{.Socket}} mode 600 level admin

defaults
	mode tcp
	log global
	option tcplog
	option dontlognull
	timeout connect 1s
	timeout client 1h
	timeout server 1h
	timeout check 500ms
	retries 2
	option clitcpka
	option srvtcpka

frontend mysql_writer
	bind {{.Writer}}
	default_backend mysql_primary

backend mysql_primary
	balance first
	option httpchk
	http-check send meth GET uri /primary ver HTTP/1.1 hdr Host baton
	http-check expect status 200
	default-server check port {{.AgentPort}} inter 200ms fastinter 100ms downinter 100ms fall 2 rise 1 on-marked-down shutdown-sessions
	option redispatch 1
	timeout connect 100ms
	retries 4
{{- range .Nodes}}
	server {{.Name}} {{.Addr}}
{{- end}}

frontend mysql_reader
	bind {{.Reader}}
	use_backend mysql_primary if { nbsrv(mysql_replicas) lt 1 }
	default_backend mysql_replicas

backend mysql_replicas
	balance leastconn
	option httpchk
	http-check send meth GET uri /replica ver HTTP/1.1 hdr Host baton
	http-check expect status 200
	default-server check port {{.AgentPort}} inter 500ms fastinter 200ms downinter 250ms fall 2 rise 2 on-marked-down shutdown-sessions
{{- range .Nodes}}
	server {{.Name}} {{.Addr}}
{{- end}}
`

// haproxyConfig renders the sandbox's HAProxy configuration.
func (c *Cluster) haproxyConfig(h *HAProxy) (string, error) {
	type server struct{ Name, Addr string }
	data := struct {
		Socket, Writer, Reader string
		AgentPort              int
		Nodes                  []server
	}{Socket: h.Socket, Writer: h.Writer, Reader: h.Reader, AgentPort: AgentHTTPPort}
	for _, n := range c.Nodes {
		data.Nodes = append(data.Nodes, server{n.Name, net.JoinHostPort(n.IP, strconv.Itoa(n.Port))})
	}
	t, err := template.New("haproxy").Parse(haproxyTemplate)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// startHAProxy gives the client namespace HAProxy's address, writes the
// configuration, checks it with `haproxy -c`, starts HAProxy in the foreground
// inside the client namespace, and waits until the writer backend routes to one
// server, the primary.
//
//	ip -n CLIENT addr add 198.18.0.6/24 dev eth0; haproxy -db -f haproxy.cfg
func (c *Cluster) startHAProxy(ctx context.Context) error {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return errors.New("haproxy: not installed: install it with `apt-get install -y haproxy` (or `make deps`)")
	}
	dir := filepath.Join(c.Dir, "haproxy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	h := &HAProxy{
		Writer: net.JoinHostPort(haproxyIP, strconv.Itoa(HAProxyWriterPort)),
		Reader: net.JoinHostPort(haproxyIP, strconv.Itoa(HAProxyReaderPort)),
		Config: filepath.Join(dir, "haproxy.cfg"),
		Log:    filepath.Join(dir, "haproxy.log"),
		Socket: filepath.Join(dir, "admin.sock"),
	}
	cfg, err := c.haproxyConfig(h)
	if err != nil {
		return fmt.Errorf("haproxy: render the configuration: %w", err)
	}
	if err := os.WriteFile(h.Config, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	if err := run(ctx, bin, "-c", "-q", "-f", h.Config); err != nil {
		return fmt.Errorf("haproxy: check the configuration: %w", err)
	}
	if err := run(ctx, "ip", "-n", c.ClientNetNS, "addr", "add", fmt.Sprintf("%s/%d", haproxyIP, subnetBits), "dev", "eth0"); err != nil {
		return fmt.Errorf("haproxy: address on the client namespace: %w", err)
	}
	pid, err := startIn(c.ClientNetNS, dir, h.Log, bin, "-db", "-f", h.Config)
	if err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	h.PID = pid
	c.HAProxy = h
	if err := c.save(); err != nil {
		return err
	}
	// HAProxy counts every server up when it starts, until their checks fail: wait
	// until only the primary is left in the writer backend.
	deadline := time.Now().Add(15 * time.Second)
	for {
		up, err := c.HAProxyUp(ctx, HAProxyWriterBackend)
		if err == nil && len(up) == 1 && up[0] == c.Nodes[0].Name {
			return nil
		}
		if !alive(h.PID) {
			return fmt.Errorf("haproxy exited (see %s): %s", h.Log, lastLines(h.Log, 3))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("haproxy: the writer backend does not route to %s alone within 15s: up %v (%v)", c.Nodes[0].Name, up, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// HAProxyUp lists the servers of an HAProxy backend that its checks hold up now, as
// HAProxy's runtime API says (`show stat`).
func (c *Cluster) HAProxyUp(ctx context.Context, backend string) ([]string, error) {
	if c.HAProxy == nil {
		return nil, fmt.Errorf("sandbox %s runs no haproxy: bring it up with --haproxy", c.Name)
	}
	rows, err := haproxyStat(ctx, c.HAProxy.Socket)
	if err != nil {
		return nil, err
	}
	var up []string
	for _, r := range rows {
		if r["pxname"] == backend && r["svname"] != "BACKEND" && r["svname"] != "FRONTEND" && strings.HasPrefix(r["status"], "UP") {
			up = append(up, r["svname"])
		}
	}
	sort.Strings(up)
	return up, nil
}

// haproxyStat asks HAProxy's runtime API for `show stat`: one map per proxy and
// server, keyed by the CSV header's names.
func haproxyStat(ctx context.Context, socket string) ([]map[string]string, error) {
	ctx, cancel := withTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("haproxy runtime API: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, fmt.Errorf("haproxy runtime API: %w", err)
	}
	br := bufio.NewReader(conn)
	header, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("haproxy runtime API: read show stat: %w", err)
	}
	names := strings.Split(strings.TrimSpace(strings.TrimPrefix(header, "# ")), ",")
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1
	var out []map[string]string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("haproxy runtime API: parse show stat: %w", err)
		}
		m := map[string]string{}
		for i, v := range rec {
			if i < len(names) {
				m[names[i]] = v
			}
		}
		out = append(out, m)
	}
}

// NewHAProxyWriter returns a writer to the sandbox's HAProxy writer frontend, as an
// application behind HAProxy writes (see NewWriter).
func (c *Cluster) NewHAProxyWriter(interval, timeout time.Duration) (*Writer, error) {
	if c.HAProxy == nil {
		return nil, fmt.Errorf("sandbox %s runs no haproxy: bring it up with --haproxy", c.Name)
	}
	return &Writer{c: c, run: secret()[:16], addrs: []string{c.HAProxy.Writer}, interval: interval, timeout: timeout}, nil
}
