package main

import (
	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
)

func switchoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "switchover",
		Usage: "move the primary to a healthy, caught-up replica, planned; the old primary becomes its replica",
		Description: `Reads the cluster from etcd and shows the plan with every pre-check per candidate
(lag, replication threads, verdict, storage probe, errant GTIDs), decided exactly as the
elected coordinator will decide it. Refuses, with the reasons, when it is unsafe (exit 1).
Otherwise asks for confirmation (on a terminal; elsewhere pass --yes), files the request
in etcd and prints each step of the coordinator's flow as it completes, with its time,
then the new primary and the time writes were blocked.

Exit status: 0 done (or a dry run that would go ahead), 1 refused as unsafe, not
confirmed, or failed, 2 bad input or etcd unreachable (nothing changed).

Examples:
   baton switchover --to db2
   baton switchover --to db2 --dry-run
   BATON_ETCD=http://10.0.0.5:2379 BATON_CLUSTER=main baton switchover --yes --json
   baton switchover --config /etc/baton/baton.yaml --to db3 --yes`,
		Flags: requestFlags(cluster.RequestSwitchover),
		Action: func(cctx *cli.Context) error {
			return runRequest(cctx, cluster.RequestSwitchover)
		},
	}
}
