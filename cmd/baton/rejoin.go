package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/reconcile"
)

// rejoinPickup bounds the wait for the node's agent to answer a rejoin request;
// past it the request is withdrawn, so that it cannot run later, unseen.
const rejoinPickup = 15 * time.Second

func rejoinCommand() *cli.Command {
	return &cli.Command{
		Name:      "rejoin",
		Usage:     "make a quarantined node forget its errant GTIDs and follow the primary again",
		ArgsUsage: "NODE",
		Description: `A node is quarantined when it has GTIDs the primary of record lacks. Its agent looks
each one up in the node's binary logs: a GTID in no binary log is a phantom (MariaDB
numbered a write that never reached the binlog, e.g. one killed on a full disk), and the
agent repairs the node by itself once its disk has room. Real errant transactions (in the
binlog; ` + "`baton status`" + ` shows each with its first event) stay quarantined until an
operator decides.

baton rejoin asks the node's agent, through etcd, to reset the server's binlog GTID state
to what its binary logs hold (RESET MASTER, then gtid_binlog_state and gtid_slave_pos; the
server stays up) and follow the primary of record. It refuses when the node is the primary
of record, unknown, not quarantined, or has real errant transactions and --discard-errant
is not given. Discarding removes those transactions' binlog events; their changes to the
node's data stay (rebuild the node if they matter). The history records what was
discarded. MariaDB only: on MySQL the agent refuses (see docs/replication.md).

Exit status: 0 done, 1 refused or failed, 2 bad input or etcd unreachable (nothing changed).

Examples:
   baton rejoin db1 --yes
   baton rejoin db1 --discard-errant --yes`,
		Flags: append(clusterFlags(),
			&cli.BoolFlag{Name: "discard-errant", Usage: "discard real errant transactions (in the node's binlog): they are lost to the cluster"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (needed when stdin is not a terminal)"},
			&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "how long to wait for the node's agent to carry it out"},
		),
		Action: runRejoin,
	}
}

func runRejoin(cctx *cli.Context) error {
	fail := func(code int, format string, args ...any) error {
		return cli.Exit("baton rejoin: "+fmt.Sprintf(format, args...), code)
	}
	node, discard, yes, err := rejoinArgs(cctx.Args().Slice(), cctx.Bool("discard-errant"), cctx.Bool("yes"))
	if err != nil {
		return fail(exitBadInput, "%v", err)
	}
	if cctx.Duration("timeout") <= 0 {
		return fail(exitBadInput, "--timeout %s: must be positive", cctx.Duration("timeout"))
	}
	l, err := loadCluster(cctx)
	if err != nil {
		return fail(exitBadInput, "%v", err)
	}
	defer l.close()
	store, ctx, snap := l.store, l.ctx, l.snap
	code, why := rejoinCheck(snap, node, discard)
	if code != 0 {
		return fail(code, "%s", why)
	}
	n := snap.Nodes[node]
	fmt.Printf("%s is quarantined: errant GTIDs %s\n", node, n.Errant)
	for _, t := range n.ErrantTxns {
		fmt.Println("  " + reconcile.DescribeErrant(t))
	}
	q := fmt.Sprintf("reset %s's binlog GTID state and make it follow %s?", node, snap.Primary.Node)
	if discard {
		q = fmt.Sprintf("discard %s's errant transactions %s and make it follow %s?", node, n.Errant, snap.Primary.Node)
	}
	if code, err := confirmed(yes, q); err != nil {
		return fail(code, "%v", err)
	}
	req := cluster.RejoinRequest{ID: newRequestID("rejoin"),
		Node: node, DiscardErrant: discard, Errant: n.Errant, By: operator(), At: time.Now().UTC()}
	if err := store.PutRejoin(ctx, req); err != nil {
		if errors.Is(err, cluster.ErrConflict) {
			return fail(exitRefused, "%v", err)
		}
		return fail(exitBadInput, "%v", err)
	}
	fmt.Printf("filed request %s; %s's agent carries it out\n", req.ID, node)
	final, err := followRejoin(ctx, store, req, cctx.Duration("timeout"))
	if err != nil {
		return fail(exitRefused, "%v", err)
	}
	switch final.State {
	case cluster.RequestDone:
		fmt.Printf("done: %s follows %s", node, snap.Primary.Node)
		if ev := final.Result; ev != nil {
			fmt.Printf(" (took %s)\n  %s\n", roundMS(ev.Took), ev.Reason)
			if len(ev.Discarded) > 0 {
				fmt.Printf("  discarded GTIDs: %s\n", strings.Join(ev.Discarded, ", "))
			}
		} else {
			fmt.Println()
		}
		return nil
	case cluster.RequestRefused:
		return fail(exitRefused, "refused by %s's agent: %s", node, final.Error)
	default:
		return fail(exitRefused, "failed: %s (see `baton status` and the agent's log)", final.Error)
	}
}

// rejoinArgs reads NODE and the boolean flags that may follow it (the flag parser
// stops at the first argument, and `baton rejoin db1 --yes` is how it is written).
func rejoinArgs(args []string, discard, yes bool) (node string, _ bool, _ bool, err error) {
	for _, a := range args {
		switch a {
		case "--discard-errant", "-discard-errant":
			discard = true
		case "--yes", "-yes", "-y":
			yes = true
		default:
			if strings.HasPrefix(a, "-") {
				return "", false, false, fmt.Errorf("flag %s after NODE: give it before NODE (only --discard-errant and --yes may follow it)", a)
			}
			if node != "" {
				return "", false, false, fmt.Errorf("give exactly one node (got %s and %s): baton rejoin NODE [--discard-errant] --yes", node, a)
			}
			node = a
		}
	}
	if node == "" {
		return "", false, false, errors.New("give the node: baton rejoin NODE [--discard-errant] --yes")
	}
	if err := cluster.CheckName("NODE", node); err != nil {
		return "", false, false, err
	}
	return node, discard, yes, nil
}

// rejoinCheck says whether a rejoin of node may be filed, by the rule the node's
// agent applies (reconcile.PrecheckRejoin): 0 to file, exitBadInput for an unknown
// node, exitRefused otherwise; and why not.
func rejoinCheck(snap cluster.Snapshot, node string, discard bool) (int, string) {
	err := reconcile.PrecheckRejoin(snap, node, discard)
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, reconcile.ErrUnknownNode):
		return exitBadInput, err.Error()
	}
	return exitRefused, err.Error()
}

// followRejoin reads the request back until the node's agent answers it. One that
// no agent answers within rejoinPickup (or the limit, or before an interrupt) is
// withdrawn, so that it cannot run later, unseen.
func followRejoin(ctx context.Context, store *cluster.Store, req cluster.RejoinRequest, limit time.Duration) (*cluster.RejoinRequest, error) {
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// Reads and the withdrawal go on after an interrupt: the request must not stay
	// pending, unseen. Each store call has its own deadline.
	bg := context.WithoutCancel(ctx)
	for {
		cur, rev, err := store.RejoinRequestRev(bg, req.Node)
		if err == nil {
			switch {
			case cur == nil || cur.ID != req.ID:
				return nil, fmt.Errorf("request %s was replaced or deleted before it was answered", req.ID)
			case !cur.Pending():
				return cur, nil
			case time.Since(start) > min(limit, rejoinPickup) || ctx.Err() != nil:
				w := *cur
				w.State, w.Error, w.Finished = cluster.RequestRefused, "withdrawn: no answer from the node's agent", time.Now().UTC()
				if store.AnswerRejoin(bg, rev, w) == nil {
					return nil, fmt.Errorf("%s's agent did not answer request %s within %s: withdrawn, nothing changed", req.Node, req.ID, roundMS(time.Since(start)))
				}
				// Answered meanwhile: read it again.
			}
		}
		if time.Since(start) > limit+rejoinPickup {
			return nil, fmt.Errorf("no outcome of request %s within %s: see `baton status` and `baton history`", req.ID, roundMS(time.Since(start)))
		}
		<-tick.C
	}
}
