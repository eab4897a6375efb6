package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baton-ha/baton/cluster"
)

// clusterFlags say which cluster an operator command talks to: from flags, the
// environment (BATON_ETCD, BATON_CLUSTER) or an agent's configuration file.
func clusterFlags() []cli.Flag {
	return append(etcdFlags(),
		&cli.StringFlag{Name: "cluster", EnvVars: []string{"BATON_CLUSTER"}, Usage: "cluster name"},
		&cli.StringFlag{Name: "config", EnvVars: []string{"BATON_CONFIG"}, Usage: "an agent's configuration file (cluster, etcd endpoints and TLS)"},
	)
}

// openCluster connects to the cluster's etcd and checks that it answers and holds
// the cluster: only agents make a cluster, so a command naming one that etcd does
// not have names the wrong one, and must create nothing. Names are checked before
// etcd is dialled. Errors are bad input or an unreachable etcd: exit status 2.
func openCluster(cctx *cli.Context) (*cluster.Store, string, func(), error) {
	ecfg, fromFile, err := etcdClientConfig(cctx)
	if err != nil {
		return nil, "", nil, err
	}
	clusterName := cctx.String("cluster")
	if clusterName == "" {
		clusterName = fromFile
	}
	if clusterName == "" {
		return nil, "", nil, errors.New("no cluster name: give --cluster, BATON_CLUSTER or --config")
	}
	if err := cluster.CheckName("--cluster", clusterName); err != nil {
		return nil, "", nil, err
	}
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return nil, "", nil, fmt.Errorf("etcd %v: %w", ecfg.Endpoints, err)
	}
	store := cluster.NewStore(cli, clusterName)
	ctx, cancel := context.WithTimeout(cctx.Context, 3*time.Second)
	defer cancel()
	exists, err := store.Exists(ctx)
	if err != nil {
		cli.Close()
		return nil, "", nil, &etcdUnreachableError{endpoints: ecfg.Endpoints, err: err}
	}
	if !exists {
		defer cli.Close()
		known, err := cluster.List(ctx, cli)
		if err != nil {
			return nil, "", nil, fmt.Errorf("no cluster %q in etcd %v, and listing the others failed: %w", clusterName, ecfg.Endpoints, err)
		}
		list := "none: no agent has started"
		if len(known) > 0 {
			list = strings.Join(known, ", ")
		}
		return nil, "", nil, fmt.Errorf("no cluster %q in etcd %v (clusters under %s: %s): agents make a cluster when they first start; check --cluster",
			clusterName, ecfg.Endpoints, cluster.Root, list)
	}
	return store, clusterName, func() { cli.Close() }, nil
}

// etcdUnreachableError is openCluster's error when etcd does not answer: `baton
// status --agents` then reads the agents instead.
type etcdUnreachableError struct {
	endpoints []string
	err       error
}

func (e *etcdUnreachableError) Error() string {
	return fmt.Sprintf("etcd %v unreachable: %v", e.endpoints, e.err)
}

func (e *etcdUnreachableError) Unwrap() error { return e.err }
