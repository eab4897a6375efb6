package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/agent"
)

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:  "probe",
		Usage: "probe one server as Baton's detector does and print each verdict change",
		Description: `Runs the detector against one server, as its primary: liveness (a new connection
and SELECT 1) and a binlogged write into baton.heartbeat, each under --timeout, every
--interval. Prints one line per verdict change (healthy, suspect, unwritable,
unreachable, read_only, overloaded, degraded, misconfigured). A failure verdict needs
--fail-after failed rounds in a row. Through a unix socket it also watches the disks
of the server's datadir and binlogs.

At start it creates the baton schema if it is missing (on a writable server only).
Runs until SIGINT/SIGTERM or --for, then exits 0.

The server is given by --dsn, or by --config: an agent's configuration file, whose
local server is probed as that agent connects to it (mysql.socket or mysql.address,
mysql.user and its password, mysql.tls, mysql.connect_timeout).

Examples:
   baton probe --dsn 'root@unix(/run/mysqld/mysqld.sock)/'
   baton probe --dsn 'baton:secret@tcp(10.0.0.5:3306)/' --for 30s --json
   baton probe --config /etc/baton/baton.yaml`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dsn", Usage: "server to probe, go-sql-driver DSN (user:password@tcp(host:3306)/ or user@unix(/path/to/socket)/)"},
			&cli.StringFlag{Name: "config", Usage: "probe the local server of this agent configuration file instead of --dsn"},
			&cli.DurationFlag{Name: "interval", Value: detector.DefaultInterval, Usage: "time between rounds of probes"},
			&cli.DurationFlag{Name: "timeout", Value: detector.DefaultTimeout, Usage: "deadline of each probe, connect included; must be below --interval"},
			&cli.IntFlag{Name: "fail-after", Value: detector.DefaultFailAfter, Usage: "failed rounds in a row before a failure verdict"},
			&cli.DurationFlag{Name: "for", Usage: "stop after this long (default: until SIGINT/SIGTERM)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per verdict change"},
		},
		Action: runProbe,
	}
}

// probeLine is one verdict change as `baton probe --json` prints it.
type probeLine struct {
	At      string   `json:"at"`
	Verdict string   `json:"verdict"`
	From    string   `json:"from"`
	Reason  string   `json:"reason"`
	WriteMS *float64 `json:"write_ms"`
	PingMS  *float64 `json:"ping_ms"`
}

func ms(r *detector.Result) *float64 {
	if r == nil {
		return nil
	}
	v := float64(r.Latency.Microseconds()) / 1000
	return &v
}

// probeTarget is the server `baton probe` probes: its driver configuration, and the
// same as a DSN for the detector (which takes one). From an agent's configuration
// file it is the agent's own connection: mysql.tls and the timeouts included.
func probeTarget(dsn, configPath string) (*mysql.Config, string, error) {
	switch {
	case dsn != "" && configPath != "":
		return nil, "", errors.New("--dsn and --config: give one")
	case dsn == "" && configPath == "":
		return nil, "", errors.New("give the server with --dsn or --config")
	case dsn != "":
		mc, err := mysql.ParseDSN(dsn)
		if err != nil {
			return nil, "", fmt.Errorf("--dsn: %w", err)
		}
		return mc, dsn, nil
	}
	cfg, err := agent.Load(configPath, os.Getenv)
	if err != nil {
		return nil, "", fmt.Errorf("--config: %w", err)
	}
	mc, err := cfg.MySQLConfig("")
	if err != nil {
		return nil, "", fmt.Errorf("--config: %w", err)
	}
	dsn, err = cfg.MySQLDSN(true)
	if err != nil {
		return nil, "", fmt.Errorf("--config: %w", err)
	}
	return mc, dsn, nil
}

func runProbe(cctx *cli.Context) error {
	interval, timeout := cctx.Duration("interval"), cctx.Duration("timeout")
	target, dsn, err := probeTarget(cctx.String("dsn"), cctx.String("config"))
	if err != nil {
		return cli.Exit(fmt.Sprintf("probe: %v", err), exitBadInput)
	}
	if interval <= 0 {
		return cli.Exit(fmt.Sprintf("probe: --interval %s: must be positive", interval), exitBadInput)
	}
	if timeout <= 0 || timeout >= interval {
		return cli.Exit(fmt.Sprintf("probe: --timeout %s must be positive and below --interval %s: a probe must be over before the next round starts", timeout, interval), exitBadInput)
	}
	if n := cctx.Int("fail-after"); n < 1 {
		return cli.Exit(fmt.Sprintf("probe: --fail-after %d: must be at least 1", n), exitBadInput)
	}
	if d := cctx.Duration("for"); d < 0 {
		return cli.Exit(fmt.Sprintf("probe: --for %s: must not be negative", d), exitBadInput)
	}
	node, err := os.Hostname()
	if err != nil || node == "" {
		node = "baton-probe"
	}
	if len(node) > 64 {
		node = node[:64]
	}

	ctx, stop := signal.NotifyContext(cctx.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if d := cctx.Duration("for"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}

	loc := prepareProbe(ctx, target, timeout, cctx.App.ErrWriter)

	out := &probePrinter{w: cctx.App.Writer, json: cctx.Bool("json")}
	d, err := detector.New(detector.Config{
		DSN: dsn, Node: node, Role: detector.Primary,
		Interval: interval, Timeout: timeout, FailAfter: cctx.Int("fail-after"),
		Datadir: loc.Datadir, BinlogDir: loc.BinlogDir, RelayLogDir: loc.RelayLogDir,
		OnChange: out.print,
		Logger:   zap.NewNop(),
	})
	if err != nil {
		return cli.Exit(fmt.Sprintf("probe: %v", err), exitBadInput)
	}
	if err := d.Run(ctx); err != nil {
		return cli.Exit(fmt.Sprintf("probe: %v", err), exitBadInput)
	}
	return nil
}

// prepareProbe bootstraps the baton schema and, for a server on a unix socket, finds
// its directories. A server that cannot be reached or bootstrapped is probed anyway:
// the verdicts say what is wrong; the reason goes to stderr once.
func prepareProbe(ctx context.Context, target *mysql.Config, timeout time.Duration, errw io.Writer) detector.Locations {
	cfg := target.Clone()
	cfg.Timeout = max(cfg.Timeout, 2*time.Second)
	cfg.Logger = &mysql.NopLogger{}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		fmt.Fprintf(errw, "baton: probe: bootstrap: %v\n", err)
		return detector.Locations{}
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second+timeout)
	defer cancel()
	if err := detector.Bootstrap(bctx, db); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintf(errw, "baton: probe: %v (probing anyway)\n", err)
		}
		return detector.Locations{}
	}
	if !strings.HasPrefix(cfg.Net, "unix") {
		return detector.Locations{}
	}
	loc, err := detector.AskLocations(bctx, db)
	if err != nil {
		fmt.Fprintf(errw, "baton: probe: %v (not watching the disks)\n", err)
		return detector.Locations{}
	}
	return loc
}

// probePrinter prints verdict changes, one line each.
type probePrinter struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

func (p *probePrinter) print(ch detector.Change, rep detector.Report) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := probeLine{
		At: ch.At.UTC().Format(time.RFC3339Nano), Verdict: ch.To.String(), From: ch.From.String(),
		Reason: ch.Reason, WriteMS: ms(rep.Write), PingMS: ms(rep.Ping),
	}
	if p.json {
		b, err := json.Marshal(line)
		if err != nil {
			return
		}
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	lat := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.1fms", *v)
	}
	fmt.Fprintf(p.w, "%s  %-13s write %-9s ping %-9s %s\n", line.At, line.Verdict, lat(line.WriteMS), lat(line.PingMS), line.Reason)
}
