package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
)

func unblockCommand() *cli.Command {
	return &cli.Command{
		Name:  "unblock",
		Usage: "lift the anti-flap block of the latest automatic failover: automatic failover is on again at once",
		Description: `After an automatic failover, the cluster's failover_block (5 min by default) keeps
the coordinator from failing over again by itself, so that a flapping primary does not
bounce the cluster. ` + "`baton status`" + ` shows the block and until when. Once the cluster is
sound again, this lifts it: the block's key and lease are removed and the history
records who lifted it. ` + "`baton failover`" + ` is never blocked, and an operator's failover sets no
block.

Exit status: 0 lifted or none in force, 2 bad input or etcd unreachable.

Example:
   baton unblock --cluster main`,
		Flags: clusterFlags(),
		Action: func(cctx *cli.Context) error {
			if cctx.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("baton unblock: unexpected argument %q", cctx.Args().First()), exitBadInput)
			}
			store, clusterName, closeFn, err := openCluster(cctx)
			if err != nil {
				return cli.Exit("baton unblock: "+err.Error(), exitBadInput)
			}
			defer closeFn()
			b, err := store.LiftBlock(cctx.Context, operator())
			switch {
			case errors.Is(err, cluster.ErrNoBlock):
				fmt.Printf("cluster %s: no anti-flap block in force; automatic failover is not blocked\n", clusterName)
				return nil
			case err != nil:
				return cli.Exit("baton unblock: "+err.Error(), exitBadInput)
			}
			fmt.Printf("cluster %s: anti-flap block of the failover to %s (epoch %d) lifted; automatic failover is on again (unless paused)\n",
				clusterName, orDash(b.To), b.Epoch)
			return nil
		},
	}
}
