package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/agent"
)

// policyReport is what `baton policy show --json` prints.
type policyReport struct {
	Cluster string `json:"cluster"`
	// Policy is the cluster's (the policy key), nil when missing or unreadable.
	Policy        *cluster.PolicyRecord        `json:"policy"`
	Error         string                       `json:"error,omitempty"`
	Nodes         map[string]*cluster.Policy   `json:"nodes"`
	Disagreements []cluster.PolicyDisagreement `json:"disagreements,omitempty"`
}

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "show or set the cluster's failover policy (failover_block, confirm_lag, switchover_max_lag)",
		Description: `Every coordinator and ` + "`baton switchover/failover --dry-run`" + ` decide with one policy, the
cluster's, kept in etcd. The first agent to start creates it from its configuration
file; later agents compare their files with it and report a disagreement (agent log,
/status, ` + "`baton status`" + `). Only ` + "`baton policy apply`" + ` changes it.`,
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "print the cluster's policy and every live agent's file policy",
				Flags: append(clusterFlags(), &cli.BoolFlag{Name: "json", Usage: "print one JSON object"}),
				Action: func(cctx *cli.Context) error {
					store, clusterName, closeFn, err := openCluster(cctx)
					if err != nil {
						return cli.Exit("baton policy show: "+err.Error(), exitBadInput)
					}
					defer closeFn()
					snap, err := store.Load(cctx.Context)
					if err != nil {
						return cli.Exit("baton policy show: "+err.Error(), exitBadInput)
					}
					rep := newPolicyReport(clusterName, snap)
					if cctx.Bool("json") {
						printJSON(os.Stdout, rep)
						return nil
					}
					printPolicyReport(os.Stdout, rep)
					return nil
				},
			},
			{
				Name:  "apply",
				Usage: "make the policy of an agent configuration file (--config) the cluster's",
				Description: `Reads timings.failover_block, timings.confirm_lag and timings.switchover_max_lag from
the file given with --config and writes them to the cluster's policy key, compared
against the revision just read (a concurrent change makes it fail; run it again).
Agents whose files differ keep reporting it until their files are changed too.

Example:
   baton policy apply --config /etc/baton/baton.yaml`,
				Flags: clusterFlags(),
				Action: func(cctx *cli.Context) error {
					if err := applyPolicy(cctx.Context, cctx); err != nil {
						return cli.Exit("baton policy apply: "+err.Error(), exitBadInput)
					}
					return nil
				},
			},
		},
	}
}

func newPolicyReport(clusterName string, snap cluster.Snapshot) policyReport {
	rep := policyReport{Cluster: clusterName, Policy: snap.Policy, Error: snap.PolicyErr, Nodes: map[string]*cluster.Policy{},
		Disagreements: cluster.PolicyDisagreements(snap.Policy, snap.Nodes)}
	for name, n := range snap.Nodes {
		rep.Nodes[name] = n.Policy
	}
	return rep
}

func printPolicyReport(w io.Writer, rep policyReport) {
	switch {
	case rep.Policy != nil:
		fmt.Fprintf(w, "cluster %s policy: %s\n  set by %s at %s\n", rep.Cluster, rep.Policy.Policy, rep.Policy.SetBy, rep.Policy.At.Local().Format(time.DateTime))
	case rep.Error != "":
		fmt.Fprintf(w, "cluster %s policy: UNREADABLE (%s): coordinators decide with their own files'; fix it with `baton policy apply`\n", rep.Cluster, rep.Error)
	default:
		fmt.Fprintf(w, "cluster %s policy: none yet (the first agent to start creates it)\n", rep.Cluster)
	}
	names := make([]string, 0, len(rep.Nodes))
	for n := range rep.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	differs := map[string][]string{}
	for _, d := range rep.Disagreements {
		differs[d.Node] = d.Diff
	}
	for _, n := range names {
		switch p := rep.Nodes[n]; {
		case p == nil:
			fmt.Fprintf(w, "  %-12s (publishes no policy)\n", n)
		case len(differs[n]) > 0:
			fmt.Fprintf(w, "  %-12s DISAGREES: %s\n", n, strings.Join(differs[n], ", "))
		default:
			fmt.Fprintf(w, "  %-12s agrees\n", n)
		}
	}
}

func applyPolicy(ctx context.Context, cctx *cli.Context) error {
	path := cctx.String("config")
	if path == "" {
		return errors.New("--config: required (the file whose policy to apply)")
	}
	cfg, err := agent.Load(path, os.Getenv)
	if err != nil {
		return err
	}
	store, clusterName, closeFn, err := openCluster(cctx)
	if err != nil {
		return err
	}
	defer closeFn()
	snap, err := store.Load(ctx)
	if err != nil {
		return err
	}
	p := cfg.Policy()
	if snap.Policy != nil && snap.Policy.Policy == p {
		fmt.Printf("cluster %s already has this policy: %s\n", clusterName, p)
		return nil
	}
	rec := cluster.PolicyRecord{Policy: p, SetBy: "operator:" + operator(), At: time.Now().UTC()}
	if err := store.PutPolicy(ctx, snap.PolicyModRev, rec); err != nil {
		return err
	}
	if snap.Policy != nil {
		fmt.Printf("cluster %s policy was: %s\n", clusterName, snap.Policy.Policy)
	}
	fmt.Printf("cluster %s policy: %s (set by %s)\n", clusterName, p, rec.SetBy)
	return nil
}
