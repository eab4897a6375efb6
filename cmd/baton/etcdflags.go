package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/agent"
)

// etcdFlags say how an operator's command reaches etcd: the endpoints, and the
// certificates and user of an etcd with TLS and authentication. The password comes
// from the environment only (BATON_ETCD_PASSWORD), never from a flag.
func etcdFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "etcd", EnvVars: []string{"BATON_ETCD"}, Usage: "etcd endpoints, comma-separated"},
		&cli.StringFlag{Name: "etcd-ca", EnvVars: []string{"BATON_ETCD_CA"}, Usage: "CA bundle (PEM) trusted for etcd's certificate; with it, use https:// or unixs:// endpoints"},
		&cli.StringFlag{Name: "etcd-cert", EnvVars: []string{"BATON_ETCD_CERT"}, Usage: "client certificate (PEM) for etcd; etcd takes its common name as the user"},
		&cli.StringFlag{Name: "etcd-key", EnvVars: []string{"BATON_ETCD_KEY"}, Usage: "the client certificate's private key (PEM)"},
		&cli.StringFlag{Name: "etcd-server-name", EnvVars: []string{"BATON_ETCD_SERVER_NAME"}, Usage: "name checked in etcd's certificate (default: the endpoint's host)"},
		&cli.StringFlag{Name: "etcd-user", EnvVars: []string{"BATON_ETCD_USER"}, Usage: "etcd user, with its password in " + agent.EnvEtcdPassword},
	}
}

// etcdClientConfig is the etcd client configuration of an operator's command: an
// agent's configuration file (--config) if given, then the flags, which win. It
// returns the cluster named in the file too, "" without one. Errors name the flag.
func etcdClientConfig(cctx *cli.Context) (clientv3.Config, string, error) {
	cfg := agent.DefaultConfig()
	fromFile := ""
	if path := cctx.String("config"); path != "" {
		c, err := agent.Load(path, os.Getenv)
		if err != nil {
			return clientv3.Config{}, "", err
		}
		cfg, fromFile = c, c.Cluster
	}
	e := &cfg.Etcd
	if eps := cctx.String("etcd"); eps != "" {
		e.Endpoints = strings.Split(eps, ",")
	}
	if len(e.Endpoints) == 0 {
		return clientv3.Config{}, "", errors.New("no etcd endpoints: give --etcd, BATON_ETCD or --config")
	}
	ca, cert, key, name := cctx.String("etcd-ca"), cctx.String("etcd-cert"), cctx.String("etcd-key"), cctx.String("etcd-server-name")
	if ca != "" || cert != "" || key != "" || name != "" {
		for _, f := range []struct{ flag, path string }{{"--etcd-ca", ca}, {"--etcd-cert", cert}, {"--etcd-key", key}} {
			if f.path == "" {
				continue
			}
			if _, err := os.ReadFile(f.path); err != nil {
				return clientv3.Config{}, "", fmt.Errorf("%s: %w", f.flag, err)
			}
		}
		if (cert == "") != (key == "") {
			return clientv3.Config{}, "", errors.New("--etcd-cert and --etcd-key go together")
		}
		e.TLS = &agent.TLSFiles{CA: ca, Cert: cert, Key: key, ServerName: name}
	}
	if user := cctx.String("etcd-user"); user != "" {
		e.Username, e.Password, e.PasswordFile = user, agent.Secret(os.Getenv(agent.EnvEtcdPassword)), ""
		if e.Password == "" {
			return clientv3.Config{}, "", fmt.Errorf("--etcd-user %s: set its password in %s", user, agent.EnvEtcdPassword)
		}
	}
	for i, ep := range e.Endpoints {
		plain := strings.HasPrefix(ep, "http://") || strings.HasPrefix(ep, "unix://")
		secure := strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://")
		switch {
		case e.TLS != nil && plain:
			return clientv3.Config{}, "", fmt.Errorf("--etcd endpoint %d %q is plain text while etcd TLS is set: use https:// or unixs://", i+1, ep)
		case e.TLS == nil && secure:
			return clientv3.Config{}, "", fmt.Errorf("--etcd endpoint %d %q is a TLS endpoint: give --etcd-ca (and --etcd-cert, --etcd-key for a client certificate)", i+1, ep)
		}
	}
	if e.DialTimeout == 0 {
		e.DialTimeout = 2 * time.Second
	}
	ecfg, err := cfg.EtcdClientConfig(zap.NewNop())
	if err != nil {
		return clientv3.Config{}, "", err
	}
	return ecfg, fromFile, nil
}
