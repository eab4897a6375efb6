package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/failover"
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
   baton status --config /etc/baton/baton.yaml --watch`,
		Flags: append(clusterFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object (with --watch: one per change)"},
			&cli.BoolFlag{Name: "watch", Usage: "show the cluster again at each change in etcd, until interrupted"},
		),
		Action: func(cctx *cli.Context) error {
			store, cluster, closeFn, err := openCluster(cctx)
			if err != nil {
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
				st, err := status.Read(cctx.Context, store, cluster)
				if err != nil {
					return cli.Exit(err.Error(), exitBadInput)
				}
				return show(st)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := watchStatus(ctx, store, cluster, show); err != nil && !errors.Is(err, context.Canceled) {
				return cli.Exit(err.Error(), exitBadInput)
			}
			return nil
		},
	}
}

// watchStatus shows the cluster at each change the store's watch yields, at most
// once per redrawEvery (always the newest state), until ctx ends or show fails.
func watchStatus(ctx context.Context, store *failover.Store, cluster string, show func(status.Cluster) error) error {
	latest := make(chan failover.Snapshot, 1)
	watched := make(chan error, 1)
	go func() {
		watched <- store.Watch(ctx, func(s failover.Snapshot) error {
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
			if err := show(status.Of(ctx, store, cluster, snap)); err != nil {
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
