package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/web"
)

// webPasswordEnv holds the web view's basic-auth password when no file is given.
const webPasswordEnv = "BATON_WEB_PASSWORD"

func webCommand() *cli.Command {
	return &cli.Command{
		Name:  "web",
		Usage: "serve a live, read-only web view of every cluster in etcd",
		Description: `Every cluster under /baton/ in etcd: its topology, each node's verdict, lag, GTID,
semi-sync state, disk forecast and lease, the virtual IP, pause, and the history with
each failover's steps drawn to scale. The page follows etcd as it changes (an etcd watch
pushed to the browser), with no reload; it has no buttons and shows nothing secret.
The basic-auth password comes from --password-file or ` + webPasswordEnv + `, never from a
flag; give --tls-cert and --tls-key when it crosses a network.

Examples:
   baton web --etcd http://10.0.0.5:2379 --listen 127.0.0.1:8080
   ` + webPasswordEnv + `=... baton web --config /etc/baton/baton.yaml --listen :8443 \
       --tls-cert /etc/baton/web.crt --tls-key /etc/baton/web.key --user ops`,
		Flags: append(etcdFlags(),
			&cli.StringFlag{Name: "config", EnvVars: []string{"BATON_CONFIG"}, Usage: "an agent's configuration file (etcd endpoints, TLS and credentials)"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "address to serve on"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this certificate (PEM file; needs --tls-key)"},
			&cli.StringFlag{Name: "tls-key", Usage: "the certificate's private key (PEM file)"},
			&cli.StringFlag{Name: "user", Value: "baton", Usage: "basic-auth user name, when a password is set"},
			&cli.StringFlag{Name: "password-file", Usage: "require basic auth with the password in this file (or set " + webPasswordEnv + ")"},
			&cli.IntFlag{Name: "history", Value: 20, Usage: "events of each cluster's history shown"},
		),
		Action: func(cctx *cli.Context) error {
			if cctx.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("baton web: unexpected argument %q", cctx.Args().First()), exitBadInput)
			}
			if err := runWeb(cctx); err != nil {
				return cli.Exit("baton web: "+err.Error(), exitBadInput)
			}
			return nil
		},
	}
}

func runWeb(cctx *cli.Context) error {
	cert, key := cctx.String("tls-cert"), cctx.String("tls-key")
	if (cert == "") != (key == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	password, err := webPassword(cctx.String("password-file"), os.Getenv)
	if err != nil {
		return err
	}
	// The certificate is read again at each handshake: a renewed one is served
	// without a restart.
	var tlsConfig *tls.Config
	if cert != "" {
		if tlsConfig, err = agent.ServerTLS("--tls-cert", "--tls-key", cert, key); err != nil {
			return err
		}
	}
	ecfg, err := etcdConfig(cctx)
	if err != nil {
		return err
	}
	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return fmt.Errorf("etcd %v: %w", ecfg.Endpoints, err)
	}
	defer cli.Close()

	cfg := web.DefaultConfig()
	cfg.Client, cfg.Log, cfg.History = cli, log, cctx.Int("history")
	srv, err := web.New(cfg)
	if err != nil {
		return err
	}
	handler := srv.Handler()
	if password != "" {
		if handler, err = web.BasicAuth(cctx.String("user"), password, handler); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cctx.String("listen"))
	if err != nil {
		return err
	}
	if password == "" && !isLoopback(ln.Addr()) {
		log.Warn("serving without a password on a non-loopback address: anyone who reaches it sees the clusters (see --password-file)",
			zap.Stringer("addr", ln.Addr()))
	}
	ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// No write timeout: the event streams stay open.
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }, TLSConfig: tlsConfig}
	served := make(chan error, 1)
	go func() {
		if hs.TLSConfig != nil {
			served <- hs.ServeTLS(ln, "", "")
		} else {
			served <- hs.Serve(ln)
		}
	}()
	scheme := "http"
	if cert != "" {
		scheme = "https"
	}
	log.Info("serving the web view", zap.String("url", scheme+"://"+ln.Addr().String()+"/"))
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	<-ran
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// webPassword reads the basic-auth password from path, else from the environment;
// "" means no authentication.
func webPassword(path string, getenv func(string) string) (string, error) {
	if path == "" {
		return getenv(webPasswordEnv), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--password-file: %w", err)
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", fmt.Errorf("--password-file %s: empty", path)
	}
	return p, nil
}

// etcdConfig is the etcd client configuration of the etcd flags and --config.
func etcdConfig(cctx *cli.Context) (clientv3.Config, error) {
	ecfg, _, err := etcdClientConfig(cctx)
	return ecfg, err
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
