package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/lab/bench"
	"github.com/baton-ha/baton/internal/lab/chaos"
	"github.com/baton-ha/baton/internal/sandbox"
)

func benchCommand() *cli.Command {
	return &cli.Command{Name: "bench", Usage: "measure Baton on sandboxes", Subcommands: []*cli.Command{benchDetectCommand(), benchFailoverCommand(), benchSwitchoverCommand(), benchAgentRestartCommand(), benchEtcdOutageCommand(), benchFootprintCommand(), benchForecastCommand(), benchScaleCommand(), benchChaosCommand(), benchSalvageCommand(), benchRebuildCommand(), benchAllCommand()}}
}

func benchDetectCommand() *cli.Command {
	return &cli.Command{
		Name:  "detect",
		Usage: "measure the time from a fault on the primary to the detector's verdict, and its false alarms",
		Description: `Brings up a sandbox (2 nodes), runs the detector with its defaults against the
primary over TCP from the client namespace, injects the fault and measures, per
trial, the time from the start of the injection to the first unwritable or
unreachable verdict (overloaded for exhaust-connections). Between trials the fault
is undone, or a fresh cluster brought up where undoing is slow (disk-full,
readonly-fs). false_positives counts unwritable/unreachable verdicts while no
failure was injected.

It first measures what probing costs: writes per second on the server and the CPU
of a ` + "`baton probe`" + ` process, over 10 s.

--fault none --load --seconds 60 runs sysbench's oltp_write_only at saturation on
the primary for that long instead, and counts false verdicts.

Faults: ` + strings.Join(bench.DetectFaults(), ", ") + `

Examples:
   baton-lab bench detect --fault disk-full --trials 5 --json
   baton-lab bench detect --fault none --load --seconds 60 --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "fault", Required: true, Usage: "fault to inject on the primary, or none"},
			&cli.IntFlag{Name: "trials", Value: 5, Usage: "faults injected, one after the other"},
			&cli.BoolFlag{Name: "load", Usage: "with --fault none: sysbench write load at saturation on the primary"},
			&cli.IntFlag{Name: "seconds", Value: 60, Usage: "with --fault none: how long to watch"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "name", Value: "det-bench", Usage: "sandbox name", Hidden: true},
			&cli.StringFlag{Name: "root", Value: sandbox.DefaultRoot, Usage: "directory holding sandboxes' state", Hidden: true},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			cfg := bench.DetectConfig{
				Fault: cctx.String("fault"), Trials: cctx.Int("trials"), Seconds: cctx.Int("seconds"), Load: cctx.Bool("load"),
				Name: cctx.String("name"), Root: cctx.String("root"), Progress: cctx.App.ErrWriter,
			}
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench detect: "+err.Error(), exitBadInput)
			}
			cfg.Bin = bin
			if err := cfg.Validate(); err != nil {
				return cli.Exit("bench detect: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench detect: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := bench.Detect(ctx, cfg)
			if err != nil {
				return cli.Exit("bench detect: "+err.Error(), exitBadInput)
			}
			return bench.PrintDetect(cctx.App.Writer, res, cctx.Bool("json"))
		},
	}
}

func benchSwitchoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "switchover",
		Usage: "time planned switchovers on a real sandbox cluster with agents, as a writer sees them",
		Description: `Brings up a 3-node sandbox with agents, semi-sync and a virtual IP, starts a writer
through the virtual IP (100 writes/s) and runs baton switchover --to NODE --yes --json
back and forth between db1 and db2, --count times. Each run: the coordinator's write
block (intent announced -> new primary writable) and the writer's longest gap between
two acknowledged writes around it. --secure: on a secure sandbox, the command run
with the operator's etcd certificate.

Examples:
   baton-lab bench switchover --count 4
   baton-lab bench switchover --count 4 --secure --json`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "count", Value: 4, Usage: "switchovers"},
			&cli.BoolFlag{Name: "secure", Usage: "on a secure sandbox (sandbox up --secure)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			if cctx.Int("count") < 1 {
				return cli.Exit(fmt.Sprintf("bench switchover: count: %d: at least 1", cctx.Int("count")), exitBadInput)
			}
			bin, ctx, stop, progress, err := benchStart(cctx)
			if err != nil {
				return cli.Exit("bench switchover: "+err.Error(), exitBadInput)
			}
			defer stop()
			res, err := bench.Switchovers(ctx, bin, cctx.Int("count"), cctx.Bool("secure"), progress)
			if err != nil {
				return cli.Exit("bench switchover: "+err.Error(), exitRefused)
			}
			if cctx.Bool("json") {
				return json.NewEncoder(cctx.App.Writer).Encode(res)
			}
			fmt.Fprintf(cctx.App.Writer, "switchovers (secure %v): write block p50 %d ms, max %d ms; writer gap p50 %d ms, max %d ms; %d failed\n",
				res.Secure, res.P50WriteBlockMS, res.MaxWriteBlockMS, res.P50WriterGapMS, res.MaxWriterGapMS, res.Failed)
			if res.Failed > 0 {
				return cli.Exit(fmt.Sprintf("%d switchover(s) failed", res.Failed), exitRefused)
			}
			return nil
		},
	}
}

// benchStart is what a sandbox benchmark's command does first: find the binaries,
// check the sandbox's requirements, make a context an interrupt ends, silence the
// MySQL driver's log, and send progress to stderr unless --json. Its errors are
// bad input; the caller calls stop.
func benchStart(cctx *cli.Context) (lab.Binaries, context.Context, func(), io.Writer, error) {
	bin, err := lab.FindBinaries(cctx.String("baton"))
	if err != nil {
		return lab.Binaries{}, nil, nil, nil, err
	}
	if err := sandbox.Requirements(); err != nil {
		return lab.Binaries{}, nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	var progress io.Writer = cctx.App.ErrWriter
	if cctx.Bool("json") {
		progress = nil
	}
	return bin, ctx, stop, progress, nil
}

func benchAgentRestartCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent-restart",
		Usage: "restart Baton's agents under a writer, as a supervisor or a rolling upgrade does, and time the writer's gaps",
		Description: `Brings up a 3-node sandbox with agents, semi-sync and a virtual IP, starts a writer
through the virtual IP (100 writes/s), then --rounds times each: the primary's agent
killed (SIGKILL) and started 1 s later, as systemd restarts a crashed agent; the same
with SIGTERM (a clean stop); and a rolling restart, every agent stopped with SIGTERM
and started 1 s later, one after the other, each once its predecessor holds a new
lease. Each restart: the writer's longest gap between two acknowledged writes from
the stop until 5 s after the agent holds a new session lease, and whether the primary
of record changed (a failover). At the end: the acknowledged writes missing on the
primary.

Examples:
   baton-lab bench agent-restart --rounds 3
   baton-lab bench agent-restart --rounds 5 --json`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "restarts of each kind (a rolling restart restarts every agent once)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			if cctx.Int("rounds") < 1 {
				return cli.Exit(fmt.Sprintf("bench agent-restart: rounds: %d: at least 1", cctx.Int("rounds")), exitBadInput)
			}
			bin, ctx, stop, progress, err := benchStart(cctx)
			if err != nil {
				return cli.Exit("bench agent-restart: "+err.Error(), exitBadInput)
			}
			defer stop()
			res, err := bench.AgentRestarts(ctx, bin, cctx.Int("rounds"), progress)
			if err != nil {
				return cli.Exit("bench agent-restart: "+err.Error(), exitRefused)
			}
			if cctx.Bool("json") {
				return json.NewEncoder(cctx.App.Writer).Encode(res)
			}
			for _, k := range bench.AgentRestartKinds() {
				fmt.Fprintf(cctx.App.Writer, "%s: writer gap p50 %d ms, max %d ms\n", k, res.P50GapMS[k], res.MaxGapMS[k])
			}
			fmt.Fprintf(cctx.App.Writer, "failovers %d, acknowledged writes %d, lost %d, errors %d\n", res.Failovers, res.Acked, res.Lost, res.Errors)
			if res.Failovers > 0 || res.Lost > 0 || res.Errors > 0 {
				return cli.Exit("bench agent-restart: a restart failed over, lost writes or failed", exitRefused)
			}
			return nil
		},
	}
}

func benchFailoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "fault the primary of a real sandbox cluster with agents, and time the failover as a writer sees it",
		Description: `Each trial brings up a fresh 3-node sandbox with agents, semi-sync and a virtual IP,
starts a writer in the client namespace (through the virtual IP, 100 writes/s, each
with a 500 ms deadline, after which it reconnects) and a
monitor that writes to every server directly, injects the fault on the primary and
measures: detect (fault -> etcd shows the primary failed), decide (-> failover started),
promote (-> new primary holds the leader key) and failover (-> first write acknowledged
by the new primary). Then it checks that every acknowledged write is on the new
primary, that no two servers accepted writes at the same time, and counts the writes
the old primary acknowledged after the new one's first (old_primary_acks_after_switch).

--via haproxy: the sandbox has no virtual IP but HAProxy in the client namespace,
configured as deploy/haproxy.cfg, and the writer writes through its writer frontend.

--secure: each sandbox is a secure one (sandbox up --secure), to compare with plain
text.

Examples:
   baton-lab bench failover --fault disk-full --trials 3 --json
   baton-lab bench failover --fault kill --via haproxy --trials 3
   baton-lab bench failover --fault kill --secure --trials 3`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "fault", Required: true, Usage: strings.Join(bench.FailoverKinds(), ", ")},
			&cli.IntFlag{Name: "trials", Value: 3, Usage: "trials, each on a fresh cluster"},
			&cli.StringFlag{Name: "via", Value: "vip", Usage: "how the writer reaches the primary: vip or haproxy"},
			&cli.BoolFlag{Name: "secure", Usage: "on secure sandboxes: TLS everywhere, etcd with client certificates and roles (sandbox up --secure)"},
			&cli.StringFlag{Name: "log-dir", Usage: "keep each trial's agent logs under `DIR` (trial-N/NODE.log)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "name", Value: "fo-bench", Usage: "sandbox name", Hidden: true},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			fault := cctx.String("fault")
			if _, err := bench.ParseFailoverKind(fault); err != nil {
				return cli.Exit(err.Error(), exitBadInput)
			}
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench failover: "+err.Error(), exitBadInput)
			}
			via, err := bench.ParseVia(cctx.String("via"))
			if err != nil {
				return cli.Exit("bench failover: "+err.Error(), exitBadInput)
			}
			cfg := bench.FailoverConfig{Fault: fault, Via: via, Trials: cctx.Int("trials"), Name: cctx.String("name"), Bin: bin, Secure: cctx.Bool("secure"),
				LogDir: cctx.String("log-dir")}
			if !cctx.Bool("json") {
				cfg.Progress = cctx.App.ErrWriter
			}
			if err := cfg.Validate(); err != nil {
				return cli.Exit("bench failover: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench failover: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// The fault and the fence break the writer's connections on purpose; the
			// driver would print each broken one.
			_ = mysql.SetLogger(log.New(io.Discard, "", 0))
			res, err := bench.Failover(ctx, cfg)
			if err != nil {
				return cli.Exit("bench failover: "+err.Error(), exitBadInput)
			}
			if cctx.Bool("json") {
				return json.NewEncoder(cctx.App.Writer).Encode(res)
			}
			fmt.Fprintf(cctx.App.Writer, "%s via %s: failover p50 %d ms, max %d ms; acked %d, lost %d, split-brain %d ms, acked by the old primary after the switch %d\n",
				res.Fault, res.Via, res.P50FailoverMS, res.MaxFailoverMS, res.AckedWrites, res.LostWrites, res.SplitBrainMS, res.OldPrimaryAcks)
			if len(res.Errors) > 0 {
				return cli.Exit(fmt.Sprintf("%d trial(s) failed: %v", len(res.Errors), res.Errors), exitRefused)
			}
			return nil
		},
	}
}

func benchSalvageCommand() *cli.Command {
	return &cli.Command{
		Name:  "salvage",
		Usage: "time a failover's salvage of what a dead primary alone had, with asynchronous replication",
		Description: `Each trial brings up a fresh 3-node sandbox with agents, asynchronous replication
and a virtual IP, holds both replicas behind (their IO threads stopped, the
replication lock held so that their agents do not start them again), commits
--txns transactions on the primary, one each, kills its mysqld (its agent stays)
and lets the replicas go. The failover reads what only the dead primary had from
its binary logs on its disk, through its agent, and applies it to the new primary
before the commit. From the history event: the salvage step's time (what salvage
adds to the failover), the agent's read and the new primary's apply, the whole
flow's time; then it counts the transactions missing on the new primary (lost).
commit_ms is the primary's own time to commit the transactions, one each: the apply
commits them one each too.
over_timeout counts the steps longer than timings.salvage_timeout (2 s): none may
be; a size too large to apply in time is cut at the deadline, whole transactions
only, and the rest said in left_behind.

Example:
   baton-lab bench salvage --txns 1000,10000 --trials 3 --json`,
		Flags: []cli.Flag{
			&cli.IntSliceFlag{Name: "txns", Value: cli.NewIntSlice(1000), Usage: "transactions only the primary has when it dies, one size per trial set"},
			&cli.IntFlag{Name: "trials", Value: 3, Usage: "trials per size, each on a fresh cluster"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "name", Value: "salv-bench", Usage: "sandbox name", Hidden: true},
			&cli.BoolFlag{Name: "sync-free", Usage: "run the nodes with innodb_flush_log_at_trx_commit = 0, as on a disk whose sync costs nothing: what is left is Baton's own part of the apply"},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench salvage: "+err.Error(), exitBadInput)
			}
			cfg := bench.SalvageConfig{Txns: cctx.IntSlice("txns"), Trials: cctx.Int("trials"), Name: cctx.String("name"), SyncFree: cctx.Bool("sync-free"), Bin: bin}
			if !cctx.Bool("json") {
				cfg.Progress = cctx.App.ErrWriter
			}
			if err := cfg.Validate(); err != nil {
				return cli.Exit("bench salvage: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench salvage: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			_ = mysql.SetLogger(log.New(io.Discard, "", 0))
			res, err := bench.Salvage(ctx, cfg)
			if err != nil {
				return cli.Exit("bench salvage: "+err.Error(), exitBadInput)
			}
			if cctx.Bool("json") {
				if err := json.NewEncoder(cctx.App.Writer).Encode(res); err != nil {
					return err
				}
			} else {
				for _, tr := range res.Trials {
					fmt.Fprintf(cctx.App.Writer, "%d transactions (committed in %d ms): salvage %d ms (read %d, apply %d), %d applied, failover %d ms, %d lost\n",
						tr.Txns, tr.CommitMS, tr.SalvageMS, tr.ReadMS, tr.ApplyMS, tr.Salvaged, tr.FailoverMS, tr.Lost)
				}
			}
			if len(res.Errors) > 0 {
				return cli.Exit(fmt.Sprintf("%d trial(s) failed: %v", len(res.Errors), res.Errors), exitRefused)
			}
			return nil
		},
	}
}

func benchEtcdOutageCommand() *cli.Command {
	return &cli.Command{
		Name:  "etcd-outage",
		Usage: "measure write availability while every etcd member is down",
		Description: `Brings up a 3-node cluster with agents, semi-sync, a virtual IP and 3 etcd
members, writes through the virtual IP every 10 ms, stops every etcd member for
--seconds, starts them again, and reports the share of 100 ms windows of the outage
with a write acknowledged, the last write acknowledged during it, when writes resumed,
whether a failover happened, and lost writes.

The agents run in failsafe mode (the primary stays writable while every peer
confirms etcd is unreachable); --failsafe=false shows what an outage does without it.

Example:
   baton-lab bench etcd-outage --seconds 30 --json
   baton-lab bench etcd-outage --seconds 30 --failsafe=false --json`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "seconds", Value: 30, Usage: "how long etcd stays down"},
			&cli.BoolFlag{Name: "failsafe", Value: true, Usage: "run the agents in failsafe mode"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "name", Value: "etcd-bench", Usage: "sandbox name", Hidden: true},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench etcd-outage: "+err.Error(), exitBadInput)
			}
			cfg := bench.EtcdOutageConfig{Outage: time.Duration(cctx.Int("seconds")) * time.Second, Name: cctx.String("name"), Bin: bin,
				NoFailsafe: !cctx.Bool("failsafe")}
			if err := cfg.Validate(); err != nil {
				return cli.Exit("bench etcd-outage: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench etcd-outage: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			_ = mysql.SetLogger(log.New(io.Discard, "", 0))
			res, err := bench.EtcdOutage(ctx, cfg)
			if err != nil {
				return cli.Exit("bench etcd-outage: "+err.Error(), exitRefused)
			}
			if cctx.Bool("json") {
				return json.NewEncoder(cctx.App.Writer).Encode(res)
			}
			fmt.Fprintf(cctx.App.Writer, "failsafe %t: etcd down %d ms: writes available %.0f %% of it (last ack %d ms in, longest gap %d ms), resumed %d ms after etcd, failover %t, lost %d\n",
				res.Failsafe, res.OutageMS, 100*res.Availability, res.LastAckMS, res.MaxGapMS, res.ResumedMS, res.Failover, res.LostWrites)
			return nil
		},
	}
}

func benchFootprintCommand() *cli.Command {
	return &cli.Command{
		Name:  "footprint",
		Usage: "measure one agent's CPU, memory and etcd traffic in steady state",
		Description: `Brings up a 3-node cluster with agents, semi-sync, a virtual IP and one etcd
member, lets it settle for 5 s, then measures for --seconds: the CPU and RSS of the
primary's agent and of a replica's, and the bytes on the etcd member's interface
(both directions) divided by the number of agents. It is the footprint part of
` + "`baton-lab bench all`" + `, alone.

Example:
   baton-lab bench footprint --seconds 60 --json`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "seconds", Value: 60, Usage: "how long to measure"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench footprint: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench footprint: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			_ = mysql.SetLogger(log.New(io.Discard, "", 0))
			fp, err := bench.MeasureFootprint(ctx, bin, time.Duration(cctx.Int("seconds"))*time.Second)
			if err != nil {
				return cli.Exit("bench footprint: "+err.Error(), exitRefused)
			}
			if cctx.Bool("json") {
				return json.NewEncoder(cctx.App.Writer).Encode(fp)
			}
			fmt.Fprintf(cctx.App.Writer, "%d agents over %d s: etcd %.0f bytes/s per agent; primary's agent %.2f %% CPU, %.1f MiB; a replica's %.2f %% CPU, %.1f MiB\n",
				fp.Agents, fp.Seconds, fp.EtcdBytesPerS, fp.CPUPercent, fp.RSSMiB, fp.ReplicaCPU, fp.ReplicaRSSMiB)
			return nil
		},
	}
}

func benchForecastCommand() *cli.Command {
	return &cli.Command{
		Name:  "forecast",
		Usage: "measure what one read of the forecasts' slow loop costs the agent and the server",
		Description: `Brings up a one-node sandbox (no agent) whose server holds --tables tables with an
auto-increment key (half with rows), then runs the agent's forecast read (every
auto-increment key, the history list and oldest transaction, the connections)
--reads times back to back in this process: the wall time of a read, this process's
CPU per read, and the server's CPU per read beyond its idle rate (measured first,
over as long). It prints what that makes at the default forecast.interval.

Example:
   baton-lab bench forecast --tables 1000 --reads 100 --json`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "tables", Value: 1000, Usage: "tables with an auto-increment key on the server"},
			&cli.IntFlag{Name: "reads", Value: 100, Usage: "reads measured"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench forecast: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench forecast: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			_ = mysql.SetLogger(log.New(io.Discard, "", 0))
			res, err := bench.Forecast(ctx, bench.ForecastConfig{Bin: bin, Tables: cctx.Int("tables"), Reads: cctx.Int("reads")})
			if err != nil {
				return cli.Exit("bench forecast: "+err.Error(), exitRefused)
			}
			if cctx.Bool("json") {
				return json.NewEncoder(cctx.App.Writer).Encode(res)
			}
			fmt.Fprintln(cctx.App.Writer, res)
			return nil
		},
	}
}

func benchAllCommand() *cli.Command {
	return &cli.Command{
		Name:  "all",
		Usage: "run every benchmark and write the results as markdown",
		Description: `Runs baton-lab bench failover for every fault that calls for a failover (kill and
disk-full also through HAProxy, --via haproxy), baton-lab bench
detect for every detectable fault and for the load and false-positive cases, and
measures one agent's footprint; writes the figures, the machine and the commands.

Example:
   baton-lab bench all --out docs/BENCHMARKS.md`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "docs/BENCHMARKS.md", Usage: "markdown file to write"},
			&cli.IntFlag{Name: "failover-trials", Value: 3},
			&cli.IntFlag{Name: "detect-trials", Value: 5},
			&cli.IntFlag{Name: "seconds", Value: 60, Usage: "length of the load run and of the footprint run"},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench all: "+err.Error(), exitBadInput)
			}
			cfg := bench.AllConfig{Out: cctx.String("out"), FailoverTrials: cctx.Int("failover-trials"),
				DetectTrials: cctx.Int("detect-trials"), Seconds: cctx.Int("seconds"), Bin: bin, Progress: cctx.App.ErrWriter}
			if err := cfg.Validate(); err != nil {
				return cli.Exit("bench all: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench all: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := bench.All(ctx, cfg); err != nil {
				return cli.Exit("bench all: "+err.Error(), exitBadInput)
			}
			return nil
		},
	}
}

func benchScaleCommand() *cli.Command {
	return &cli.Command{
		Name:  "scale",
		Usage: "measure how many clusters one etcd carries, with hollow agents",
		Description: `Runs --clusters clusters of --nodes hollow agents each in this process: every
agent's real etcd session, coordinator election, reconciler and coordinator, with an
etcd client of its own, against scripted servers instead of MariaDB. The etcd
members (--etcd-members) run as separate processes on loopback. Halfway through
--minutes, --fail random primaries turn unwritable at once. Reports etcd requests
and bytes per second per agent (idle and during the failovers), the members' CPU,
memory and db size, late lease renewals, false failovers, and the time from the
fault to each decision and committed epoch (p50/p99).

Example:
   baton-lab bench scale --clusters 100 --nodes 3 --etcd-members 3 --minutes 2 --fail 20 --json`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "clusters", Value: 10, Usage: "clusters"},
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "nodes (hollow agents) per cluster"},
			&cli.IntFlag{Name: "etcd-members", Value: 3, Usage: "etcd members (1 or 3)"},
			&cli.Float64Flag{Name: "minutes", Value: 2, Usage: "how long the run lasts (the faults come halfway)"},
			&cli.IntFlag{Name: "fail", Value: 1, Usage: "primaries made unwritable at once"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "which clusters fail"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.DurationFlag{Name: "session-ttl", Usage: "the agents' timings.session_ttl (default 3s; the fence margin stays 1s)"},
			&cli.StringFlag{Name: "etcd-dir", Usage: "keep the etcd members' data under `DIR` (e.g. /dev/shm, a tmpfs: no fsync cost); default a temporary directory"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write this process's CPU profile (the hollow agents) to `FILE`"},
			&cli.StringFlag{Name: "pprof", Usage: "serve this process's net/http/pprof on `ADDR` (loopback), and the members' on their client URLs"},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench scale: "+err.Error(), exitBadInput)
			}
			if f := cctx.String("cpuprofile"); f != "" {
				stop, err := startCPUProfile(f)
				if err != nil {
					return cli.Exit("bench scale: "+err.Error(), exitBadInput)
				}
				defer stop()
			}
			if addr := cctx.String("pprof"); addr != "" {
				stop, err := servePprof(addr)
				if err != nil {
					return cli.Exit("bench scale: "+err.Error(), exitBadInput)
				}
				defer stop()
			}
			cfg := bench.ScaleConfig{Pprof: cctx.String("pprof") != "", EtcdDir: cctx.String("etcd-dir"), SessionTTL: cctx.Duration("session-ttl"), Clusters: cctx.Int("clusters"), Nodes: cctx.Int("nodes"), EtcdMembers: cctx.Int("etcd-members"),
				Duration: time.Duration(cctx.Float64("minutes") * float64(time.Minute)), Fail: cctx.Int("fail"), Seed: cctx.Uint64("seed"),
				Bin: bin, Progress: os.Stderr}
			if err := cfg.Validate(); err != nil {
				return cli.Exit("bench scale: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			res, err := bench.Scale(ctx, cfg)
			if err != nil {
				res.Error = err.Error()
			}
			if cctx.Bool("json") {
				if jerr := json.NewEncoder(cctx.App.Writer).Encode(res); jerr != nil {
					return jerr
				}
			} else {
				fmt.Fprintf(cctx.App.Writer, "%d clusters, %d agents: idle %.0f B/s and %.2f requests/s per agent; failovers %d/%d committed, decision p50 %d ms p99 %d ms, commit p50 %d ms p99 %d ms; %d false failovers, %d late renewals\n",
					res.Clusters, res.Agents, res.Idle.BytesPerSAgent, res.Idle.RequestsPerSAgent, res.Committed, res.Faulted,
					res.DecisionP50MS, res.DecisionP99MS, res.CommitP50MS, res.CommitP99MS, res.FalseFailovers, res.LateRenewals)
			}
			if err != nil {
				return cli.Exit("bench scale: "+err.Error(), exitRefused)
			}
			return nil
		},
	}
}

func benchChaosCommand() *cli.Command {
	return &cli.Command{
		Name:  "chaos",
		Usage: "a randomized fault campaign against one sandbox cluster, with an independent checker",
		Description: `Brings up one sandbox (agents, semi-sync, a virtual IP, 3 etcd members) kept across
rounds, a writer through the virtual IP and a monitor writing to every server
directly. Each round draws, from --seed and the round's number, one fault or two
overlapping ones (disk-full, freeze-writes, stop, kill, cut-network, readonly-fs,
exhaust-connections, a clean restart on the primary or a replica; the whole node
frozen; cut-etcd, kill-agent, stop-agent, an agent restarted (SIGTERM or SIGKILL) on
the primary's, the coordinator's or a replica's agent; one etcd member or every one
stopped; a switchover or failover request arriving during a fault; a DBA purging a
node's binary logs), or pauses an agent at a named step (after-start-slave,
before-promote, before-vip-acquire) with what makes it reach the step, holds them
for a random time, heals everything and waits up to 30 s (75 s after a full disk:
MariaDB retries a full disk every 60 s) for the cluster to settle. Then
it checks: every acknowledged write on the primary of record and the healthy
replicas; no server taking a write while not the primary of record or after a newer
epoch's primary took one; one writable primary of record with the leader key and the
virtual IP within 15 s of healing, every other node a replica or quarantined with a
reason; etcd, read_only, replication sources and the virtual IP agreeing; no GTID
leaving a server's gtid_binlog_state unless a rejoin event or the campaign's rebuild
reports it (or a restart drops a phantom), and no real transaction forgotten as a
phantom. The agents run bin/baton-failpoint (baton built with -tags failpoint,
` + "`make build`" + `).

A quarantined node is repaired as the runbook says (SIGKILL, free its disk, start)
and recorded. A failed round prints the seed, the round and the schedule, keeps the
logs (agents, servers, every acknowledged write) under --log-dir, and the command
exits 1; --seed S --from-round R --rounds 1 replays that round.

The campaign sets the cluster's anti-flap window (failover_block) to
--failover-block, so that every round may fail over.

Examples:
   baton-lab bench chaos --rounds 50 --seed 1 --json
   baton-lab bench chaos --seed 1 --from-round 17 --rounds 1`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "rounds", Value: 10, Usage: "rounds to run"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "the campaign's seed: with the round's number, it draws the round's faults"},
			&cli.IntFlag{Name: "from-round", Value: 1, Usage: "the first round (a replay)"},
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "database nodes"},
			&cli.IntFlag{Name: "etcd-members", Value: 3, Usage: "etcd members: 1 or 3"},
			&cli.DurationFlag{Name: "failover-block", Value: time.Second, Usage: "the cluster's anti-flap window during the campaign"},
			&cli.StringFlag{Name: "log-dir", Value: "/tmp/baton-chaos", Usage: "where a failed round's logs are kept"},
			&cli.BoolFlag{Name: "keep-going", Usage: "go on after a failed round"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "name", Value: "chaos", Usage: "sandbox name", Hidden: true},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench chaos: "+err.Error(), exitBadInput)
			}
			cfg := chaos.Config{Seed: cctx.Uint64("seed"), Rounds: cctx.Int("rounds"), FromRound: cctx.Int("from-round"),
				Nodes: cctx.Int("nodes"), EtcdMembers: cctx.Int("etcd-members"), FailoverBlock: cctx.Duration("failover-block"),
				Name: cctx.String("name"), Bin: bin, LogDir: cctx.String("log-dir"), KeepGoing: cctx.Bool("keep-going"),
				Progress: cctx.App.ErrWriter}
			if err := cfg.Validate(); err != nil {
				return cli.Exit("bench chaos: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench chaos: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			_ = mysql.SetLogger(log.New(io.Discard, "", 0))
			rep, err := chaos.Run(ctx, cfg)
			if rep != nil {
				if cctx.Bool("json") {
					if jerr := json.NewEncoder(cctx.App.Writer).Encode(rep); jerr != nil {
						return jerr
					}
				} else {
					rep.Print(cctx.App.Writer)
				}
			}
			switch {
			case errors.Is(err, chaos.ErrViolations):
				return cli.Exit(fmt.Sprintf("bench chaos: %d violation(s); logs in %s", len(rep.Violations), cfg.LogDir), exitRefused)
			case err != nil:
				return cli.Exit("bench chaos: "+err.Error(), exitRefused)
			}
			return nil
		},
	}
}

func benchRebuildCommand() *cli.Command {
	return &cli.Command{
		Name:  "rebuild",
		Usage: "rebuild a replica of a loaded cluster from another, and measure the time and the donor's impact",
		Description: `Brings up a 3-node sandbox with agents, semi-sync and a virtual IP (the rejoin
mode manual), loads a dataset on the primary (--size, random 1 KiB rows, automatic
failover paused meanwhile: the bulk load's commits hold the write probe), then,
with a writer through the virtual IP (a write every 20 ms, each waiting for a
semi-sync acknowledgement), measures the primary's write latency for --baseline,
has db3 rebuilt from db2 by an operator's request (the donor's stream paced to
--rate) and measures the same while it runs: the rebuild's steps and time, how
long db3's server was down, the stream's rate, the primary's write latency p50/p99
before and during, the donor's replication lag, and whether db3 has the primary's
data after (CHECKSUM TABLE).

Examples:
   baton-lab bench rebuild --json
   baton-lab bench rebuild --size 1GiB --rate 64MiB --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Value: "1GiB", Usage: "the dataset loaded on the primary"},
			&cli.StringFlag{Name: "rate", Usage: "the donors' rebuild.max_rate (default: the agents' own, 64MiB)"},
			&cli.DurationFlag{Name: "baseline", Value: 30 * time.Second, Usage: "how long the primary's writes are measured before the rebuild"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.StringFlag{Name: "name", Value: "rb-bench", Usage: "sandbox name", Hidden: true},
			batonFlag(),
		},
		Action: func(cctx *cli.Context) error {
			size, err := bench.ParseMiB(cctx.String("size"))
			if err != nil {
				return cli.Exit("bench rebuild: --size: "+err.Error(), exitBadInput)
			}
			bin, err := lab.FindBinaries(cctx.String("baton"))
			if err != nil {
				return cli.Exit("bench rebuild: "+err.Error(), exitBadInput)
			}
			cfg := bench.RebuildConfig{SizeMiB: size, MaxRate: cctx.String("rate"), Baseline: cctx.Duration("baseline"), Name: cctx.String("name"),
				Bin: bin, Progress: cctx.App.ErrWriter}
			if err := cfg.Validate(); err != nil {
				return cli.Exit("bench rebuild: "+err.Error(), exitBadInput)
			}
			if err := sandbox.Requirements(); err != nil {
				return cli.Exit("bench rebuild: "+err.Error(), exitBadInput)
			}
			ctx, stop := signal.NotifyContext(cctx.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := bench.Rebuild(ctx, cfg)
			if err != nil {
				return cli.Exit("bench rebuild: "+err.Error(), exitRefused)
			}
			return bench.PrintRebuild(cctx.App.Writer, res, cctx.Bool("json"))
		},
	}
}
