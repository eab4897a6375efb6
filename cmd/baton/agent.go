package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/internal/agent"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the Baton agent for one database node",
		Description: `The agent probes the local server (liveness and a write with a deadline), publishes
its status to etcd, takes part in the coordinator election, and brings its node into line
with the primary of record. Secrets come from files or the environment
(BATON_MYSQL_PASSWORD, BATON_ETCD_PASSWORD), never from flags.

Example:
   baton agent --config /etc/baton/baton.yaml`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Required: true, Usage: "YAML configuration file"},
		},
		Action: func(cctx *cli.Context) error {
			cfg, err := agent.Load(cctx.String("config"), os.Getenv)
			if err != nil {
				return cli.Exit(err.Error(), exitBadInput)
			}
			log, err := cfg.Log.NewLogger()
			if err != nil {
				return cli.Exit(err.Error(), exitBadInput)
			}
			defer log.Sync() //nolint:errcheck
			a, err := agent.New(cfg, log)
			if err != nil {
				return cli.Exit(err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := a.Run(ctx); err != nil {
				return cli.Exit(fmt.Sprintf("agent: %v", err), exitBadInput)
			}
			return nil
		},
	}
}
