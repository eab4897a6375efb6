package main

import (
	"encoding/json"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-sql-driver/mysql"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/lab/demo"
	"github.com/baton-ha/baton/internal/sandbox"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "fill a primary's disk on a local sandbox and watch Baton fail over, move the VIP, lose nothing, and rejoin the old primary",
		Description: `Brings up a sandbox (3 MariaDB servers with semi-sync, etcd, a baton agent per node,
a virtual IP), keeps a writer writing through the VIP from a client namespace, fills
the primary's disk and narrates what happens, with times from the fault: the probe
failing, the verdict, the coordinator's decision, the fence, the promotion, the VIP
move, the writes resuming, the check that no acknowledged write was lost. Then it frees
the old primary's disk and nothing else: the old primary's agent finds its errant GTIDs
are phantoms (in no binary log), repairs it without a restart and makes it follow the
new primary, with no operator step; the demo prints how long that took and tears
everything down. Needs root; takes about a minute.

Exits 0 only if every step happened within its time limit.

Examples:
   baton-lab demo
   baton-lab demo --json
   baton-lab demo --keep      # leave the cluster up to explore
   baton-lab demo --secure    # the same on a secure sandbox (make demo DEMO_FLAGS=--secure)`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Value: "demo", Usage: "sandbox name (1-12 of a-z, 0-9, -); a running sandbox of that name is taken down first"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON summary on stdout (the narration goes to stderr)"},
			&cli.BoolFlag{Name: "keep", Usage: "leave the cluster up at the end, and say how to explore it"},
			&cli.BoolFlag{Name: "secure", Usage: "on a secure sandbox: TLS everywhere from a throwaway CA, etcd with client certificates and a role per cluster, the web view on HTTPS with a password"},
			&cli.StringFlag{Name: "rejoin", Value: demo.RejoinFreeDisk.String(), Hidden: true,
				Usage: "how the old primary comes back: free-disk (free the disk only; its agent does the rest) or restart (kill, free the disk, start)"},
			&cli.StringFlag{Name: "root", Usage: "directory holding sandboxes' state", Value: sandbox.DefaultRoot, Hidden: true},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			rejoin, err := demo.ParseRejoin(cctx.String("rejoin"))
			if err != nil {
				return cli.Exit(err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("demo: "+err.Error(), exitBadInput)
			}
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("demo: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// The fence kills the writer's connections on purpose; the driver would
			// print each broken one.
			_ = mysql.SetLogger(log.New(io.Discard, "", 0))
			out := io.Writer(os.Stdout)
			if cctx.Bool("json") {
				out = os.Stderr
			}
			sum := demo.Run(ctx, demo.Config{
				Name: cctx.String("name"), Root: cctx.String("root"), Bin: bin, Keep: cctx.Bool("keep"), Rejoin: rejoin,
				Out: out, Color: !cctx.Bool("json") && lab.IsTTY(os.Stdout), Log: lab.Logger(zap.WarnLevel), Secure: cctx.Bool("secure"),
			})
			if cctx.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(sum); err != nil {
					return err
				}
			}
			if !sum.OK {
				return cli.Exit("demo: "+sum.Error, exitRefused)
			}
			return nil
		},
	}
}
