package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/status"
)

// redrawEvery bounds how often `baton status --watch` redraws: the agents publish
// several times a second between them.
const redrawEvery = 200 * time.Millisecond

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the cluster as etcd has it: primary, epoch, coordinator, every node's verdict and lag",
		Description: `Examples:
   baton status --etcd http://10.0.0.5:2379 --cluster main
   BATON_ETCD=http://10.0.0.5:2379 BATON_CLUSTER=main baton status --json
   baton status --config /etc/baton/baton.yaml --watch
   baton status --config /etc/baton/baton.yaml --agents db1:9107,db2:9107,db3:9107

With --agents, when etcd cannot be read (an etcd outage) the cluster is shown as its
agents see it, from their /status: each node's role, verdict, read_only, etcd session
and failsafe state.`,
		Flags: append(clusterFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object (with --watch: one per change)"},
			&cli.BoolFlag{Name: "watch", Usage: "show the cluster again at each change in etcd, until interrupted"},
			&cli.StringFlag{Name: "agents", EnvVars: []string{"BATON_AGENTS"}, Usage: "the agents' HTTP addresses (host:port, comma-separated), read when etcd cannot be"},
		),
		Action: func(cctx *cli.Context) error {
			store, clusterName, closeFn, err := openCluster(cctx)
			var unreachable *etcdUnreachableError
			if errors.As(err, &unreachable) && cctx.String("agents") != "" && !cctx.Bool("watch") {
				return showAgents(cctx, err)
			}
			if err != nil {
				if unreachable != nil {
					err = fmt.Errorf("%w (with --agents host:port,... the agents' own view is shown instead)", err)
				}
				return cli.Exit(err.Error(), exitBadInput)
			}
			defer closeFn()
			show := func(st status.Cluster) error {
				if cctx.Bool("watch") && isTTY(os.Stdout) {
					fmt.Print("\033[H\033[2J")
				}
				if cctx.Bool("json") {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(st)
				}
				status.Print(os.Stdout, st, isTTY(os.Stdout))
				return nil
			}
			if !cctx.Bool("watch") {
				st, err := status.Read(cctx.Context, store, clusterName)
				if err != nil {
					return cli.Exit(err.Error(), exitBadInput)
				}
				return show(st)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := watchStatus(ctx, store, clusterName, show); err != nil && !errors.Is(err, context.Canceled) {
				return cli.Exit(err.Error(), exitBadInput)
			}
			return nil
		},
	}
}

// watchStatus shows the cluster at each change the store's watch yields, at most
// once per redrawEvery (always the newest state), until ctx ends or show fails.
func watchStatus(ctx context.Context, store *cluster.Store, clusterName string, show func(status.Cluster) error) error {
	latest := make(chan cluster.Snapshot, 1)
	watched := make(chan error, 1)
	go func() {
		watched <- store.Watch(ctx, func(s cluster.Snapshot) error {
			select { // keep only the newest: this goroutine is the only sender
			case <-latest:
			default:
			}
			latest <- s
			return nil
		})
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watched:
			return err
		case snap := <-latest:
			if err := show(status.Of(ctx, store, clusterName, snap)); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(redrawEvery):
		}
	}
}

func orDash(s string) string { return status.OrDash(s) }

// showAgents is `baton status` from the agents' /status, etcd being unreachable.
func showAgents(cctx *cli.Context, etcdErr error) error {
	var addrs []string
	for _, a := range strings.Split(cctx.String("agents"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	ctx, cancel := context.WithTimeout(cctx.Context, 5*time.Second)
	defer cancel()
	answers := readAgents(ctx, addrs, 3*time.Second)
	if cctx.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"etcd_error": etcdErr.Error(), "agents": answers}); err != nil {
			return err
		}
	} else {
		printAgents(os.Stdout, etcdErr.Error(), answers)
	}
	for _, a := range answers {
		if a.View != nil {
			return nil
		}
	}
	return cli.Exit("no agent answered either", exitBadInput)
}
