package main

import (
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/detector"
)

func pauseCommand() *cli.Command {
	return &cli.Command{
		Name:  "pause",
		Usage: "maintenance mode: no automatic failover until `baton resume` (switchover and failover requests still run)",
		Description: `Records in etcd that the cluster is paused, by whom (user@host) and when; ` + "`baton status`" + `
shows it. Agents keep probing and publishing, and reconcilers keep every node in line with
the primary of record; only the coordinator's automatic failover is off.

Examples:
   baton pause --etcd http://10.0.0.5:2379 --cluster main
   baton pause && systemctl restart mariadb && baton resume`,
		Flags: clusterFlags(),
		Action: func(cctx *cli.Context) error {
			return setPaused(cctx, true)
		},
	}
}

func resumeCommand() *cli.Command {
	return &cli.Command{
		Name:  "resume",
		Usage: "end maintenance mode: automatic failover is on again",
		Description: `If the primary failed while the cluster was paused, the coordinator fails over as
soon as the cluster is resumed.

Example:
   baton resume --config /etc/baton/baton.yaml`,
		Flags: clusterFlags(),
		Action: func(cctx *cli.Context) error {
			return setPaused(cctx, false)
		},
	}
}

func setPaused(cctx *cli.Context, paused bool) error {
	name := "resume"
	if paused {
		name = "pause"
	}
	if cctx.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("baton %s: unexpected argument %q", name, cctx.Args().First()), exitBadInput)
	}
	store, clusterName, closeFn, err := openCluster(cctx)
	if err != nil {
		return cli.Exit("baton "+name+": "+err.Error(), exitBadInput)
	}
	defer closeFn()
	snap, err := store.Load(cctx.Context)
	if err != nil {
		return cli.Exit("baton "+name+": "+err.Error(), exitBadInput)
	}
	st := snap.Settings
	if st.Paused == paused {
		if paused {
			fmt.Printf("cluster %s is already paused (by %s at %s)\n", clusterName, orDash(st.PausedBy), st.PausedAt.Local().Format(time.DateTime))
		} else {
			fmt.Printf("cluster %s is not paused\n", clusterName)
		}
		return nil
	}
	st.Paused, st.PausedBy, st.PausedAt = paused, "", time.Time{}
	if paused {
		st.PausedBy, st.PausedAt = operator(), time.Now().UTC()
	}
	if err := store.PutSettings(cctx.Context, st); err != nil {
		return cli.Exit("baton "+name+": "+err.Error(), exitBadInput)
	}
	if paused {
		fmt.Printf("cluster %s paused by %s: no automatic failover until `baton resume`\n", clusterName, st.PausedBy)
		return nil
	}
	fmt.Printf("cluster %s resumed: automatic failover is on\n", clusterName)
	if p := snap.Primary.Node; p != "" {
		if n, ok := snap.Nodes[p]; !ok {
			fmt.Printf("note: the primary %s has no live agent: expect a failover now if the replicas confirm it is gone\n", p)
		} else if n.Verdict != detector.Healthy {
			fmt.Printf("note: the primary %s is %s (%s): expect a failover now\n", p, n.Verdict, n.Reason)
		}
	}
	return nil
}

// operator is who runs the command, as user@host: the user behind sudo when there
// is one.
func operator() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		} else {
			name = os.Getenv("USER")
		}
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return name + "@" + host
}
