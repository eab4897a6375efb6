package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/status"
	"github.com/baton-ha/baton/reconcile"
)

// rebuildPickup bounds the wait for the node's agent to take a rebuild request up;
// past it the request is withdrawn, so that it cannot start later, unseen.
const rebuildPickup = 15 * time.Second

func rebuildCommand() *cli.Command {
	return &cli.Command{
		Name:      "rebuild",
		Usage:     "rebuild a node from a healthy replica's backup, its old datadir kept",
		ArgsUsage: "NODE",
		Description: `A node its agent cannot repair in place (errant DDL or statements, purged events,
more than 100 errant transactions, diverged rows, binary logs it needs purged on the
primary, a MySQL node) is rebuilt from a donor: a healthy replica of the primary of record (the primary only when no replica
can give). With the rejoin mode archive-and-repair its agent does it by itself; this
command asks for it in either mode, for a quarantined node or a replica.

baton rebuild files a request in etcd; the node's agent carries it out: it archives
the node's errant transactions when it can, streams the donor's backup
(mariadb-backup) into a new directory beside the datadir and prepares it, then stops
the server, renames the datadir aside (kept: Baton never deletes it), renames the
copy in, starts the server, sets its GTID position to the backup's and makes it
follow the primary. Until then the node stays quarantined and its old datadir in
place; anything that fails puts it back. The history records a rebuild event (the
donor, the bytes, how long, where the old datadir is kept).

It refuses the primary of record, a node holding the leader key, one whose agent
is not running or cannot rebuild it (server.stop_command, server.start_command, the
backup programs, a peer secret), one being rebuilt, and a donor that is not a
healthy replica. Nothing changes when it refuses.

Exit status: 0 done, 1 refused or failed, 2 bad input or etcd unreachable (nothing
changed).

Examples:
   baton rebuild db1 --yes
   baton rebuild db1 --from db3 --yes`,
		Flags: append(clusterFlags(),
			&cli.StringFlag{Name: "from", Usage: "the donor: a healthy replica (default: the node's agent chooses)"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (needed when stdin is not a terminal)"},
			&cli.DurationFlag{Name: "timeout", Value: 6 * time.Hour, Usage: "how long to wait for the rebuild (it goes on past it: see baton status)"},
		),
		Action: runRebuild,
	}
}

func runRebuild(cctx *cli.Context) error {
	fail := func(code int, format string, args ...any) error {
		return cli.Exit("baton rebuild: "+fmt.Sprintf(format, args...), code)
	}
	node, from, yes, err := rebuildArgs(cctx.Args().Slice(), cctx.String("from"), cctx.Bool("yes"))
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
	code, why := rebuildCheck(snap, node, from)
	if code != 0 {
		return fail(code, "%s", why)
	}
	n := snap.Nodes[node]
	donor, _ := reconcile.ChooseDonor(snap, node, n.Flavor, from)
	what := "a " + string(n.Role)
	if n.Role == cluster.RoleQuarantined {
		what = "quarantined"
		if n.Errant != "" {
			what += " (errant GTIDs " + n.Errant + ")"
		} else if n.Reason != "" {
			what += " (" + n.Reason + ")"
		}
	}
	chosen := "the donor it would choose now; it chooses again when it starts"
	if from != "" {
		chosen = "the donor you named"
	}
	fmt.Printf("%s is %s; its agent rebuilds it from %s's backup (%s), keeping its old datadir\n", node, what, donor, chosen)
	if code, err := confirmed(yes, fmt.Sprintf("stop %s's server, replace its data with a copy of %s's and make it follow %s?", node, donor, snap.Primary.Node)); err != nil {
		return fail(code, "%v", err)
	}
	req := cluster.RebuildRequest{ID: newRequestID("rebuild"),
		Node: node, From: from, By: operator(), At: time.Now().UTC()}
	if err := store.PutRebuild(ctx, req); err != nil {
		if errors.Is(err, cluster.ErrConflict) {
			return fail(exitRefused, "%v", err)
		}
		return fail(exitBadInput, "%v", err)
	}
	fmt.Printf("filed request %s; %s's agent carries it out\n", req.ID, node)
	final, err := followRebuild(ctx, store, req, cctx.Duration("timeout"), os.Stdout)
	if err != nil {
		return fail(exitRefused, "%v", err)
	}
	switch final.State {
	case cluster.RequestDone:
		if ev := final.Result; ev != nil {
			fmt.Printf("done: %s rebuilt from %s (%s in %s) and follows %s\n  old datadir kept at %s (on %s; remove it once you no longer need it)\n",
				node, ev.Donor, status.Bytes(ev.Bytes), roundMS(ev.Took), ev.To, ev.Kept, node)
			if ev.Archive != "" {
				fmt.Printf("  errant transactions archived in %s\n", ev.Archive)
			}
		} else {
			fmt.Printf("done: %s rebuilt\n", node)
		}
		return nil
	case cluster.RequestRefused:
		return fail(exitRefused, "refused by %s's agent: %s", node, final.Error)
	default:
		return fail(exitRefused, "failed: %s (see `baton status` and the agent's log)", final.Error)
	}
}

// rebuildArgs reads NODE and the flags that may follow it (the flag parser stops at
// the first argument, and `baton rebuild db1 --yes` is how it is written).
func rebuildArgs(args []string, from string, yes bool) (node, _ string, _ bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--yes" || a == "-yes" || a == "-y":
			yes = true
		case a == "--from" || a == "-from":
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				return "", "", false, errors.New("--from needs the donor's name, e.g. --from db3")
			}
			from = args[i+1]
			i++
		case strings.HasPrefix(a, "--from=") || strings.HasPrefix(a, "-from="):
			from = a[strings.IndexByte(a, '=')+1:]
		case strings.HasPrefix(a, "-"):
			return "", "", false, fmt.Errorf("flag %s after NODE: give it before NODE (only --from and --yes may follow it)", a)
		case node != "":
			return "", "", false, fmt.Errorf("give exactly one node (got %s and %s): baton rebuild NODE [--from DONOR] --yes", node, a)
		default:
			node = a
		}
	}
	if node == "" {
		return "", "", false, errors.New("give the node: baton rebuild NODE [--from DONOR] --yes")
	}
	if err := cluster.CheckName("NODE", node); err != nil {
		return "", "", false, err
	}
	if from != "" {
		if err := cluster.CheckName("--from", from); err != nil {
			return "", "", false, err
		}
		if from == node {
			return "", "", false, fmt.Errorf("--from %s: a node cannot be its own donor", from)
		}
	}
	return node, from, yes, nil
}

// rebuildCheck says whether a rebuild of node from from may be filed, by the rule
// the node's agent applies (reconcile.PrecheckRebuild): 0 to file, exitBadInput for
// an unknown node or donor, exitRefused otherwise; and why not.
func rebuildCheck(snap cluster.Snapshot, node, from string) (int, string) {
	err := reconcile.PrecheckRebuild(snap, node, from)
	switch {
	case err == nil:
		return 0, ""
	case errors.Is(err, reconcile.ErrUnknownNode):
		return exitBadInput, err.Error()
	}
	return exitRefused, err.Error()
}

// followRebuild reads the request back until the node's agent answers it, printing
// the rebuild's progress as the node's status shows it. A request no agent takes
// up within rebuildPickup (or before an interrupt) is withdrawn, so that it cannot
// start later, unseen; once taken up it runs to its end on the agent, whatever
// this command does.
func followRebuild(ctx context.Context, store *cluster.Store, req cluster.RebuildRequest, limit time.Duration, out io.Writer) (*cluster.RebuildRequest, error) {
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// Reads and the withdrawal go on after an interrupt: a pending request must not
	// stay behind, unseen. Each store call has its own deadline.
	bg := context.WithoutCancel(ctx)
	var last string
	var lastAt time.Time
	for {
		cur, rev, err := store.RebuildRequestRev(bg, req.Node)
		if err == nil {
			switch {
			case cur == nil || cur.ID != req.ID:
				return nil, fmt.Errorf("request %s was replaced or deleted before it was answered", req.ID)
			case cur.State == cluster.RequestDone || cur.State == cluster.RequestRefused || cur.State == cluster.RequestFailed:
				return cur, nil
			case cur.Pending() && (time.Since(start) > min(limit, rebuildPickup) || ctx.Err() != nil):
				w := *cur
				w.State, w.Error, w.Finished = cluster.RequestRefused, "withdrawn: not taken up by the node's agent", time.Now().UTC()
				if _, err := store.AnswerRebuild(bg, rev, w); err == nil {
					return nil, fmt.Errorf("%s's agent did not take request %s up within %s: withdrawn, nothing changed", req.Node, req.ID, roundMS(time.Since(start)))
				}
				// Taken up meanwhile: read it again.
			case cur.State == cluster.RequestRunning && ctx.Err() != nil:
				return nil, fmt.Errorf("interrupted; the rebuild goes on on %s's agent: follow it with `baton status`", req.Node)
			case cur.State == cluster.RequestRunning && time.Since(start) > limit:
				return nil, fmt.Errorf("still running after %s; it goes on on %s's agent: follow it with `baton status`", roundMS(limit), req.Node)
			case cur.State == cluster.RequestRunning:
				// Each step and each progress the agent publishes, as they come; the
				// same line again after 30 s, to show it still runs.
				if line := progressLine(bg, store, req.Node); line != "" && (line != last || time.Since(lastAt) >= 30*time.Second) {
					fmt.Fprintln(out, "  "+line)
					last, lastAt = line, time.Now()
				}
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			// Once more, at once: withdraw a pending request, or say it runs on.
		}
	}
}

// progressLine is the node's rebuild as its status shows it, "" when it shows none.
func progressLine(ctx context.Context, store *cluster.Store, node string) string {
	snap, err := store.Load(ctx)
	if err != nil {
		return ""
	}
	return status.RebuildText(snap.Nodes[node].Rebuild)
}
