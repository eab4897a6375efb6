package main

import (
	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
)

func failoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "promote a replica now, for a primary that is dead or cannot write (manual emergency failover)",
		Description: `For when the primary is dead or unwritable and automatic failover did not act
(the cluster is paused, the anti-flap window is open, or the replicas could not confirm
the failure). Shows the candidates and their checks, then files the request; the
coordinator stops replication, fences the old primary (best effort), promotes the most
complete candidate (or --to) and repoints the others. A healthy primary is refused
unless --force: use ` + "`baton switchover`" + ` for a planned move, which loses no write.
A failover is also refused while a replica's server cannot be read (it may hold the
latest acknowledged writes); --force goes past it: be sure that server is gone for good.

Exit status: 0 done, 1 refused, not confirmed or failed, 2 bad input or etcd
unreachable (nothing changed).

Examples:
   baton failover --dry-run
   baton failover --to db3 --yes
   baton failover --force --to db2 --yes --json`,
		Flags: requestFlags(cluster.RequestFailover),
		Action: func(cctx *cli.Context) error {
			return runRequest(cctx, cluster.RequestFailover)
		},
	}
}
