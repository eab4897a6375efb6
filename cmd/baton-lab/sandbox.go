package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/status"
)

func sandboxCommand() *cli.Command {
	name := &cli.StringFlag{Name: "name", Usage: "sandbox name (1-12 of a-z, 0-9, -)", Value: "demo"}
	root := &cli.StringFlag{Name: "root", Usage: "directory holding sandboxes' state", Value: sandbox.DefaultRoot, Hidden: true}
	asJSON := &cli.BoolFlag{Name: "json", Usage: "print one JSON object"}
	return &cli.Command{
		Name:  "sandbox",
		Usage: "run a real local cluster: MariaDB servers in network namespaces, etcd, fault injection",
		Description: `A sandbox is N mariadbd servers (db1 primary, the others GTID replicas), each in
its own network namespace on a bridge (198.18.0.0/24), an embedded etcd, and a client
namespace. It outlives the command: its state is in /tmp/baton-sandbox/NAME.

The agents run the product binary, baton (next to baton-lab, or --baton); the
sandbox's helper processes (etcd members, fault holders) run baton-lab itself.

Examples:
   baton-lab sandbox up --name demo --nodes 3 --semi-sync --with-agents --vip
   baton-lab sandbox up --name demo --semi-sync --with-agents --haproxy
   baton-lab sandbox status --name demo --json
   baton-lab sandbox fault --name demo --node db1 disk-full
   baton-lab sandbox fault --name demo --node db1 free-disk
   baton-lab sandbox down --name demo`,
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "bring a sandbox up",
				Flags: []cli.Flag{name, root, asJSON,
					&cli.IntFlag{Name: "nodes", Value: 3, Usage: "number of database servers (1-9)"},
					&cli.BoolFlag{Name: "semi-sync", Usage: "semi-sync replication, AFTER_SYNC, large timeout"},
					&cli.IntFlag{Name: "etcd-members", Value: 1, Usage: "etcd members (1 or 3)"},
					&cli.BoolFlag{Name: "with-agents", Usage: "start a baton agent per node, inside its namespace"},
					&cli.BoolFlag{Name: "vip", Usage: "give the cluster a virtual IP (198.18.0.100) on the bridge; needs --with-agents"},
					&cli.BoolFlag{Name: "haproxy", Usage: "run haproxy in the client namespace as deploy/haproxy.cfg (writer 198.18.0.6:3306, reader 198.18.0.6:3307); needs --with-agents"},
					batonFlag(),
				},
				Action: func(cctx *cli.Context) error {
					bin, err := lab.FindBinaries(cctx.String("baton"))
					if err != nil {
						return cli.Exit(err.Error(), exitBadInput)
					}
					log := cliLogger()
					defer log.Sync() //nolint:errcheck
					spec := sandbox.Spec{
						Name: cctx.String("name"), Nodes: cctx.Int("nodes"), SemiSync: cctx.Bool("semi-sync"),
						EtcdMembers: cctx.Int("etcd-members"), Root: cctx.String("root"), Binary: bin.Baton, LabBinary: bin.Lab,
						WithAgents: cctx.Bool("with-agents"), VIP: cctx.Bool("vip"), HAProxy: cctx.Bool("haproxy"),
					}
					if spec.Nodes == 0 {
						return cli.Exit("nodes: 0 is out of range, use 1 to 9", exitBadInput)
					}
					c, err := sandbox.Up(cctx.Context, spec, log)
					if err != nil {
						return cli.Exit(err.Error(), exitBadInput)
					}
					return printCluster(cctx, c)
				},
			},
			{
				Name:  "status",
				Usage: "show a sandbox's nodes, addresses and roles",
				Flags: []cli.Flag{name, root, asJSON},
				Action: func(cctx *cli.Context) error {
					c, err := sandbox.Open(cctx.String("root"), cctx.String("name"), cliLogger())
					if err != nil {
						return cli.Exit(err.Error(), exitBadInput)
					}
					if err := c.Refresh(cctx.Context); err != nil {
						return cli.Exit(err.Error(), exitBadInput)
					}
					return printCluster(cctx, c)
				},
			},
			{
				Name:      "fault",
				Usage:     "inject a fault into a node, or into etcd, or undo one",
				ArgsUsage: "KIND",
				Description: `KIND is one of: disk-full, free-disk, freeze-writes, thaw-writes, stop, cont,
kill, start, cut-network, heal-network, readonly-fs, writable-fs,
exhaust-connections, release-connections, kill-agent, start-agent, cut-etcd,
heal-etcd, stop-agent, cont-agent (these take --node); or stop-etcd, start-etcd: every etcd member, or
the one named with --member (an etcd outage; no --node).`,
				Flags: []cli.Flag{name, root, &cli.StringFlag{Name: "node", Usage: "node name, e.g. db1"},
					&cli.StringFlag{Name: "member", Usage: "stop-etcd/start-etcd: one member, e.g. etcd2 (default: every member)"}},
				Action: func(cctx *cli.Context) error {
					if cctx.NArg() != 1 {
						return cli.Exit("fault: give exactly one KIND, e.g. `baton-lab sandbox fault --name demo --node db1 disk-full`", exitBadInput)
					}
					kind := cctx.Args().First()
					if kind == "stop-etcd" || kind == "start-etcd" {
						if cctx.String("node") != "" {
							return cli.Exit("fault "+kind+": --node does not apply (name a member with --member, or none for all)", exitBadInput)
						}
						return etcdOp(cctx, strings.TrimSuffix(kind, "-etcd"))
					}
					f, err := sandbox.ParseFault(kind)
					if err != nil {
						return cli.Exit(err.Error()+", stop-etcd, start-etcd", exitBadInput)
					}
					if cctx.String("node") == "" {
						return cli.Exit("fault "+kind+": --node is required, e.g. --node db1", exitBadInput)
					}
					if cctx.String("member") != "" {
						return cli.Exit("fault "+kind+": --member applies to stop-etcd and start-etcd only", exitBadInput)
					}
					c, err := sandbox.Open(cctx.String("root"), cctx.String("name"), cliLogger())
					if err != nil {
						return cli.Exit(err.Error(), exitBadInput)
					}
					if _, err := c.Node(cctx.String("node")); err != nil {
						return cli.Exit(err.Error(), exitBadInput)
					}
					if err := c.Fault(cctx.Context, cctx.String("node"), f); err != nil {
						return cli.Exit(err.Error(), exitRefused)
					}
					return nil
				},
			},
			{
				Name:      "etcd",
				Usage:     "stop or start the sandbox's etcd members (an etcd outage), one or all",
				ArgsUsage: "stop|start",
				Flags:     []cli.Flag{name, root, &cli.StringFlag{Name: "member", Usage: "one member, e.g. etcd2 (default: every member)"}},
				Action: func(cctx *cli.Context) error {
					op := cctx.Args().First()
					if cctx.NArg() != 1 || (op != "stop" && op != "start") {
						return cli.Exit("etcd: give stop or start, e.g. `baton-lab sandbox etcd --name demo stop`", exitBadInput)
					}
					return etcdOp(cctx, op)
				},
			},
			{
				Name:  "down",
				Usage: "stop a sandbox and remove everything it made",
				Flags: []cli.Flag{name, root},
				Action: func(cctx *cli.Context) error {
					c, err := sandbox.Open(cctx.String("root"), cctx.String("name"), cliLogger())
					if err != nil {
						return cli.Exit(err.Error(), exitBadInput)
					}
					if err := c.Down(cctx.Context); err != nil {
						return cli.Exit(err.Error(), exitRefused)
					}
					fmt.Printf("sandbox %s down: its servers, agents, etcd members, network namespaces and mounts are gone, and %s removed\n", c.Name, c.Dir)
					return nil
				},
			},
			{
				Name:   "etcd-member",
				Hidden: true,
				Usage:  "run one embedded etcd member (started by the sandbox)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "member", Required: true}, &cli.StringFlag{Name: "dir", Required: true},
					&cli.StringFlag{Name: "client-url", Required: true}, &cli.StringFlag{Name: "peer-url", Required: true},
					&cli.StringFlag{Name: "socket", Required: true}, &cli.StringFlag{Name: "initial-cluster", Required: true},
					&cli.BoolFlag{Name: "pprof", Usage: "serve /debug/pprof on the client URLs"},
				},
				Action: func(cctx *cli.Context) error {
					ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
					defer stop()
					return sandbox.RunEtcdMember(ctx, sandbox.MemberConfig{
						Name: cctx.String("member"), Dir: cctx.String("dir"), ClientURL: cctx.String("client-url"),
						PeerURL: cctx.String("peer-url"), Socket: cctx.String("socket"), InitialCluster: cctx.String("initial-cluster"),
						Pprof: cctx.Bool("pprof"),
					}, cliLogger())
				},
			},
			{
				Name:   "hold",
				Hidden: true,
				Usage:  "hold a fault that lives in a session (started by the sandbox)",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "socket", Required: true}, &cli.StringFlag{Name: "kind", Required: true}},
				Action: func(cctx *cli.Context) error {
					ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
					defer stop()
					return sandbox.Hold(ctx, cctx.String("socket"), cctx.String("kind"), func() { fmt.Println("ready") })
				},
			},
		},
	}
}

// etcdOp stops or starts the sandbox's etcd members: the one --member names, or all.
func etcdOp(cctx *cli.Context, op string) error {
	c, err := sandbox.Open(cctx.String("root"), cctx.String("name"), cliLogger())
	if err != nil {
		return cli.Exit(err.Error(), exitBadInput)
	}
	if op == "stop" {
		err = c.StopEtcd(cctx.Context, cctx.String("member"))
	} else {
		err = c.StartEtcd(cctx.Context, cctx.String("member"))
	}
	if err != nil {
		return cli.Exit(err.Error(), exitRefused)
	}
	return nil
}

// batonFlag says where the product binary is, when it is not next to baton-lab.
func batonFlag() cli.Flag {
	return &cli.StringFlag{Name: "baton", Usage: "path of the baton executable the agents run (default: baton next to baton-lab)"}
}

func printCluster(cctx *cli.Context, c *sandbox.Cluster) error {
	if cctx.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(c)
	}
	fmt.Printf("sandbox %s  etcd %v  client namespace %s (%s)\n", c.Name, c.Etcd, c.ClientNetNS, c.ClientIP)
	if c.VIP != "" {
		fmt.Printf("virtual IP %s held by %s\n", c.VIP, status.OrDash(c.VIPHolder))
	}
	if h := c.HAProxy; h != nil {
		// What HAProxy's checks say now: which servers each frontend routes to.
		routed := func(backend string) string {
			up, err := c.HAProxyUp(cctx.Context, backend)
			if err != nil {
				return "? (" + err.Error() + ")"
			}
			return status.OrDash(strings.Join(up, ","))
		}
		fmt.Printf("haproxy (pid %d, %s): writer %s -> %s; reader %s -> %s\n", h.PID, h.Config,
			h.Writer, routed(sandbox.HAProxyWriterBackend), h.Reader, routed(sandbox.HAProxyReaderBackend))
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tROLE\tSTATE\tADDRESS\tPID\tSOCKET")
	for _, n := range c.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s:%d\t%d\t%s\n", n.Name, n.Role, n.State, n.IP, n.Port, n.PID, n.Socket)
	}
	return w.Flush()
}

// cliLogger logs to stderr, human-readable, info and up.
func cliLogger() *zap.Logger { return lab.Logger(zap.InfoLevel) }
