// Package sandbox runs real local Baton clusters: N MariaDB servers with GTID
// replication, each in its own network namespace on a bridge, an embedded etcd (one or
// three members) in namespaces of its own, and a client namespace; plus fault injection
// that behaves as real outages do (docs in FAULTS.md: a full disk hangs writes, a cut
// network drops packets).
//
// A sandbox outlives the process that made it: its state is a JSON file in its
// directory (default /tmp/baton-sandbox/NAME), and its servers are detached processes,
// so separate `baton-lab sandbox` invocations manage the same cluster. Used by tests,
// `baton-lab sandbox`, `baton-lab demo` and `baton-lab bench`.
//
// It never touches the root network namespace's addresses or routes: every address
// lives in a namespace the sandbox made, in 198.18.0.0/15. The root namespace reaches
// the servers and etcd through unix sockets. It needs root (namespaces, loop mounts).
package sandbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// DefaultRoot is where sandboxes keep their state, one directory per name.
const DefaultRoot = "/tmp/baton-sandbox"

// MaxNodes bounds a sandbox's size: node addresses are 198.18.0.11 .. 198.18.0.19.
const MaxNodes = 9

// ErrRunning says a sandbox of that name is already up.
var ErrRunning = errors.New("sandbox: already running")

// Spec describes a sandbox to bring up.
type Spec struct {
	Name        string
	Nodes       int  // default 3
	SemiSync    bool // AFTER_SYNC semi-sync with a large timeout on every node
	EtcdMembers int  // 1 or 3; default 1
	// WithAgents starts a `baton agent` per node inside its namespace, with a
	// generated configuration; the cluster is named after the sandbox.
	WithAgents bool
	// VIP gives the cluster a virtual IP on the bridge (198.18.0.100/24), held by the
	// primary's agent; it needs WithAgents.
	VIP bool
	// HAProxy runs Debian's haproxy in the client namespace, configured as
	// deploy/haproxy.cfg: a writer frontend (198.18.0.6:3306) routed by the agents'
	// /primary, a reader frontend (198.18.0.6:3307) by /replica. It needs WithAgents.
	HAProxy bool
	// HookScript, when set, is an executable the agents run as their pre_failover
	// and post_failover hooks, with "pre" or "post" as its argument.
	HookScript string
	Root       string
	// Binary is the product's baton executable: each node runs `baton agent` from it.
	Binary string
	// LabBinary is the baton-lab executable: the sandbox's helper processes (etcd
	// members, fault holders) run its hidden `sandbox etcd-member` and `sandbox hold`
	// commands. baton-lab passes itself; tests build both binaries once.
	LabBinary string
	// DiskMB is the size of each node's datadir filesystem; default 256.
	DiskMB int
	// NoFailsafe turns the agents' failsafe mode off (it is on: the agents share a
	// peer secret), to show what an etcd outage does without it.
	NoFailsafe bool
	// ManualRejoin gives the cluster the rejoin mode manual: a quarantined node with
	// real errant transactions stays so for a person. By default a sandbox runs
	// archive-and-repair: such a node archives them and undoes them by itself, and
	// one that cannot be undone in place is rebuilt from a donor.
	ManualRejoin bool
	// AgentYAML is added to every agent's configuration file, for settings a test
	// needs (top-level sections not already written, such as forecast:).
	AgentYAML string
	// Secure runs everything over TLS with certificates from a throwaway CA, etcd
	// with client certificates and roles, and (with agents) the web view on HTTPS
	// with a password: see secure.go.
	Secure bool
	// RebuildMaxRate is the agents' rebuild.max_rate (a size a second, e.g.
	// "1MiB"): what a donor sends. "": the agent's default.
	RebuildMaxRate string
}

// validName accepts 1-12 characters of [a-z0-9-] starting with a letter: short enough
// for namespace and interface names derived from it.
func validName(name string) bool {
	if len(name) < 1 || len(name) > 12 || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func (s *Spec) validate() error {
	if !validName(s.Name) {
		return fmt.Errorf("sandbox name %q: use 1-12 characters, lower-case letters, digits and '-', starting with a letter", s.Name)
	}
	if s.Nodes < 1 || s.Nodes > MaxNodes {
		return fmt.Errorf("nodes: %d is out of range, use 1 to %d", s.Nodes, MaxNodes)
	}
	if s.EtcdMembers != 1 && s.EtcdMembers != 3 {
		return fmt.Errorf("etcd-members: %d is not supported, use 1 or 3", s.EtcdMembers)
	}
	if s.Binary == "" {
		return errors.New("binary: the path of the baton executable is required")
	}
	if _, err := os.Stat(s.Binary); err != nil {
		return fmt.Errorf("binary: %w", err)
	}
	if s.LabBinary == "" {
		return errors.New("lab binary: the path of the baton-lab executable is required")
	}
	if _, err := os.Stat(s.LabBinary); err != nil {
		return fmt.Errorf("lab binary: %w", err)
	}
	if s.VIP && !s.WithAgents {
		return errors.New("vip: the virtual IP is moved by the agents: add --with-agents")
	}
	if s.HAProxy && !s.WithAgents {
		return errors.New("haproxy: HAProxy routes by the agents' /primary and /replica: add --with-agents")
	}
	if s.DiskMB < 128 {
		return fmt.Errorf("disk size: %d MB is too small for a datadir, use at least 128", s.DiskMB)
	}
	return nil
}

// Node is one database host of the sandbox.
type Node struct {
	Name     string `json:"name"`
	NetNS    string `json:"netns"`
	IP       string `json:"ip"`
	Port     int    `json:"port"`
	Socket   string `json:"socket"`
	Datadir  string `json:"datadir"`
	PID      int    `json:"pid"`
	Role     string `json:"role"`  // "primary" or "replica" (or "read_only") as last seen answering
	State    string `json:"state"` // "running", "not answering" or "down", as of the last status
	ServerID int    `json:"server_id"`

	Dir         string `json:"dir"`         // node directory: socket, pid file, logs, disk image
	Mount       string `json:"mount"`       // mount point of the node's own filesystem
	Image       string `json:"image"`       // backing file of that filesystem
	ErrorLog    string `json:"error_log"`   // mariadbd's error log
	BridgePort  string `json:"bridge_port"` // the node's veth end on the bridge
	AgentPID    int    `json:"agent_pid,omitempty"`
	AgentHTTP   string `json:"agent_http,omitempty"` // from the client namespace
	AgentLog    string `json:"agent_log,omitempty"`
	AgentConfig string `json:"agent_config,omitempty"`
	// In a secure sandbox: the server's certificate and key (owned by mysql), and
	// the agent's etcd user with its client certificate.
	ServerCert string `json:"server_cert,omitempty"`
	ServerKey  string `json:"server_key,omitempty"`
	EtcdUser   string `json:"etcd_user,omitempty"`
	EtcdCert   string `json:"etcd_cert,omitempty"`
	EtcdKey    string `json:"etcd_key,omitempty"`
	// AgentEnv is added to the environment of the node's agent each time the
	// sandbox starts it (BATON_FAILPOINT=..., for one built with -tags failpoint).
	AgentEnv []string `json:"agent_env,omitempty"`
}

// EtcdMember is one embedded etcd server, run as a process of its own.
type EtcdMember struct {
	Name      string `json:"name"`
	NetNS     string `json:"netns"`
	IP        string `json:"ip"`
	ClientURL string `json:"client_url"` // from node namespaces, over the bridge
	PeerURL   string `json:"peer_url"`
	Socket    string `json:"socket"` // unix socket, from the root namespace
	Dir       string `json:"dir"`
	PID       int    `json:"pid"`
	// Cert and Key are the member's certificate (server and peer) in a secure
	// sandbox: its endpoints then take TLS only.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
}

// Endpoint is the member's client endpoint usable from the root namespace.
func (m EtcdMember) Endpoint() string {
	if m.Cert != "" {
		return "unixs://" + m.Socket
	}
	return "unix://" + m.Socket
}

// Cluster is a sandbox that is up, as recorded in its state file.
type Cluster struct {
	Name          string       `json:"name"`
	Dir           string       `json:"dir"`
	Etcd          []string     `json:"etcd"`           // endpoints from the root namespace
	EtcdInternal  []string     `json:"etcd_internal"`  // endpoints from node namespaces
	EtcdMembers   []EtcdMember `json:"etcd_members"`   //
	ClientNetNS   string       `json:"client_netns"`   //
	ClientIP      string       `json:"client_ip"`      //
	BridgeNetNS   string       `json:"bridge_netns"`   //
	AdminUser     string       `json:"admin_user"`     // Baton's admin user, over TCP or the socket
	AdminPassword string       `json:"admin_password"` //
	AppUser       string       `json:"app_user"`       // an application's account (workload)
	AppPassword   string       `json:"app_password"`   //
	ReplUser      string       `json:"repl_user"`      //
	ReplPassword  string       `json:"repl_password"`  //
	PeerSecret    string       `json:"peer_secret"`    // signs the agents' failsafe checks
	NoFailsafe    bool         `json:"no_failsafe,omitempty"`
	ManualRejoin  bool         `json:"manual_rejoin,omitempty"`
	AgentYAML     string       `json:"agent_yaml,omitempty"`
	RebuildRate   string       `json:"rebuild_rate,omitempty"`
	SemiSync      bool         `json:"semi_sync"`   //
	WithAgents    bool         `json:"with_agents"` //
	HookScript    string       `json:"hook_script,omitempty"`
	VIP           string       `json:"vip,omitempty"` // CIDR, when the sandbox has one
	VIPHolder     string       `json:"vip_holder,omitempty"`
	HAProxy       *HAProxy     `json:"haproxy,omitempty"` // when the sandbox runs one
	Nodes         []Node       `json:"nodes"`
	Binary        string       `json:"binary"`     // baton: the agents
	LabBinary     string       `json:"lab_binary"` // baton-lab: etcd members, fault holders
	// PKI is where a secure sandbox's certificates are; nil for a plain-text one.
	PKI *PKI `json:"pki,omitempty"`
	// Web is the web view a secure sandbox with agents runs.
	Web *WebView `json:"web,omitempty"`
	// Holders are helper processes that keep a fault in place (a held lock, held
	// connections), by "node/fault".
	Holders map[string]int `json:"holders,omitempty"`
	Created time.Time      `json:"created"`

	log *zap.Logger
}

func stateFile(dir string) string { return filepath.Join(dir, "state.json") }

// Dir is the directory of the sandbox called name under root.
func Dir(root, name string) string {
	if root == "" {
		root = DefaultRoot
	}
	return filepath.Join(root, name)
}

// Open reads the state of a running sandbox.
func Open(root, name string, log *zap.Logger) (*Cluster, error) {
	if !validName(name) {
		return nil, fmt.Errorf("sandbox name %q is not valid", name)
	}
	dir := Dir(root, name)
	b, err := os.ReadFile(stateFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sandbox %q is not up (no %s); start it with `baton-lab sandbox up --name %s`", name, stateFile(dir), name)
	}
	if err != nil {
		return nil, fmt.Errorf("read sandbox state: %w", err)
	}
	c := &Cluster{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("parse sandbox state %s: %w", stateFile(dir), err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	c.log = log.With(zap.String("sandbox", name))
	return c, nil
}

func (c *Cluster) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := stateFile(c.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write sandbox state: %w", err)
	}
	return os.Rename(tmp, stateFile(c.Dir))
}

// Node returns the node called name.
func (c *Cluster) Node(name string) (*Node, error) {
	for i := range c.Nodes {
		if c.Nodes[i].Name == name {
			return &c.Nodes[i], nil
		}
	}
	names := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		names[i] = n.Name
	}
	return nil, fmt.Errorf("unknown node %q: sandbox %s has %v", name, c.Name, names)
}

// ServerRunning says whether the node's mariadbd process runs (or is stopped):
// false once it exited, whoever ended it.
func (c *Cluster) ServerRunning(node string) (bool, error) {
	n, err := c.Node(node)
	if err != nil {
		return false, err
	}
	return alive(n.PID), nil
}

// RootDB opens root's connection pool to a node over its unix socket. Connections
// carry short network timeouts so a frozen server cannot hang the caller; callers
// still pass a ctx with a deadline to every query.
func (c *Cluster) RootDB(node string) (*sql.DB, error) {
	n, err := c.Node(node)
	if err != nil {
		return nil, err
	}
	return openSocketDB(n.Socket, "root", "")
}

// AdminDB opens Baton's admin user's pool to a node over its unix socket.
func (c *Cluster) AdminDB(node string) (*sql.DB, error) {
	n, err := c.Node(node)
	if err != nil {
		return nil, err
	}
	return openSocketDB(n.Socket, c.AdminUser, c.AdminPassword)
}

// SocketDSN is the DSN of Baton's admin user to a node over its unix socket.
func (c *Cluster) SocketDSN(node string) (string, error) {
	n, err := c.Node(node)
	if err != nil {
		return "", err
	}
	return socketConfig(n.Socket, c.AdminUser, c.AdminPassword).FormatDSN(), nil
}

// TCPDSN is the DSN of Baton's admin user to a node over the bridge network: usable
// from another namespace of the sandbox (see DialContext), not from the root one.
func (c *Cluster) TCPDSN(node string) (string, error) {
	n, err := c.Node(node)
	if err != nil {
		return "", err
	}
	cfg, err := c.AdminDialer().Config(net.JoinHostPort(n.IP, strconv.Itoa(n.Port)))
	if err != nil {
		return "", err
	}
	if cfg.TLS != nil {
		// A DSN names its TLS configuration: registered with the driver (which
		// checks each DSN's host against the certificate).
		tc := cfg.TLS.Clone()
		tc.ServerName = ""
		name := "baton-sandbox-" + c.Name
		if err := mysql.RegisterTLSConfig(name, tc); err != nil {
			return "", err
		}
		cfg.TLS, cfg.TLSConfig = nil, name
	}
	return cfg.FormatDSN(), nil // a DSN carries no dial function: see DialContext
}

func socketConfig(socket, user, password string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = user, password
	cfg.Net, cfg.Addr = "unix", socket
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 10*time.Second, 10*time.Second
	cfg.MultiStatements = true
	return cfg
}

func openSocketDB(socket, user, password string) (*sql.DB, error) {
	conn, err := mysql.NewConnector(socketConfig(socket, user, password))
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(30 * time.Second)
	return db, nil
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
