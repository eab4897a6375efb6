package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// Footprint is one agent's cost in steady state.
type Footprint struct {
	Seconds       int     `json:"seconds"`
	Agents        int     `json:"agents"`
	RSSMiB        float64 `json:"rss_mib"`          // the primary's agent, at the end
	CPUPercent    float64 `json:"cpu_percent"`      // of one core, the primary's agent
	EtcdBytesPerS float64 `json:"etcd_bytes_per_s"` // per agent, both directions, on etcd's interface
	// EtcdPacketsPerS is the packets on that interface, per agent, both directions.
	EtcdPacketsPerS float64 `json:"etcd_packets_per_s"`
	// Writes counts the cluster's key changes during the run, by key ("nodes/",
	// "members/", "history/" for those prefixes): read back from etcd's history
	// after the run, so that reading them adds nothing to the traffic measured.
	Writes        map[string]int `json:"writes"`
	ReplicaCPU    float64        `json:"replica_cpu_percent"`
	ReplicaRSSMiB float64        `json:"replica_rss_mib"`
}

// AllConfig is one run of every benchmark.
type AllConfig struct {
	Out            string // markdown file to write
	FailoverTrials int
	DetectTrials   int
	Seconds        int // length of the load run and of the footprint run
	Bin            lab.Binaries
	Progress       io.Writer // one line per benchmark
}

// Validate checks the configuration and names the bad field.
func (cfg AllConfig) Validate() error {
	switch {
	case cfg.Out == "":
		return errors.New("out: a file to write is required")
	case cfg.FailoverTrials < 1:
		return fmt.Errorf("failover-trials: %d: at least 1", cfg.FailoverTrials)
	case cfg.DetectTrials < 1 || cfg.DetectTrials > 100:
		return fmt.Errorf("detect-trials: %d: use 1 to 100", cfg.DetectTrials)
	case cfg.Seconds < 1 || cfg.Seconds > 3600:
		return fmt.Errorf("seconds: %d: use 1 to 3600", cfg.Seconds)
	case cfg.Bin.Baton == "" || cfg.Bin.Lab == "":
		return errors.New("bin: both the baton and the baton-lab executables are required")
	case cfg.Progress == nil:
		return errors.New("progress: a writer is required")
	}
	return nil
}

// All runs every benchmark, each failover and detection benchmark as a `baton-lab
// bench` process of its own, measures one agent's footprint, switchovers and a
// cluster under saturating load, and writes the figures, the machine and the
// commands as markdown to cfg.Out. A benchmark that fails is reported in the file.
func All(ctx context.Context, cfg AllConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	started := time.Now()
	var md strings.Builder
	secs := cfg.Seconds
	ft, dt := cfg.FailoverTrials, cfg.DetectTrials

	var failovers []FailoverResult
	for _, f := range FailoverKinds() {
		var r FailoverResult
		args := []string{"bench", "failover", "--fault", f, "--trials", strconv.Itoa(ft), "--json"}
		if err := runJSON(ctx, cfg.Bin, args, &r); err != nil {
			r = FailoverResult{Fault: f, Trials: ft, Errors: []string{err.Error()}}
		}
		fmt.Fprintf(cfg.Progress, "failover %s: p50 %d ms, max %d ms, lost %d, split-brain %d ms %v\n", f, r.P50FailoverMS, r.MaxFailoverMS, r.LostWrites, r.SplitBrainMS, r.Errors)
		failovers = append(failovers, r)
	}
	// The same faults with HAProxy in front instead of a virtual IP.
	var viaHAProxy []FailoverResult
	for _, f := range HAProxyFaults() {
		var r FailoverResult
		args := []string{"bench", "failover", "--fault", f, "--via", "haproxy", "--trials", strconv.Itoa(ft), "--json"}
		if err := runJSON(ctx, cfg.Bin, args, &r); err != nil {
			r = FailoverResult{Fault: f, Via: ViaHAProxy.String(), Trials: ft, Errors: []string{err.Error()}}
		}
		fmt.Fprintf(cfg.Progress, "failover %s via haproxy: p50 %d ms, max %d ms, lost %d, split-brain %d ms, old primary acks %d %v\n",
			f, r.P50FailoverMS, r.MaxFailoverMS, r.LostWrites, r.SplitBrainMS, r.OldPrimaryAcks, r.Errors)
		viaHAProxy = append(viaHAProxy, r)
	}
	var detects []map[string]any
	for _, f := range []string{"kill", "disk-full", "freeze-writes", "stop", "readonly-fs", "cut-network"} {
		var r map[string]any
		args := []string{"bench", "detect", "--fault", f, "--trials", strconv.Itoa(dt), "--json"}
		if err := runJSON(ctx, cfg.Bin, args, &r); err != nil {
			r = map[string]any{"fault": f, "error": err.Error()}
		}
		fmt.Fprintf(cfg.Progress, "detect %s: %v\n", f, r["p50_ms"])
		detects = append(detects, r)
	}
	var load map[string]any
	if err := runJSON(ctx, cfg.Bin, []string{"bench", "detect", "--fault", "none", "--load", "--seconds", strconv.Itoa(secs), "--json"}, &load); err != nil {
		load = map[string]any{"error": err.Error()}
	}
	fp, fperr := measureFootprint(ctx, cfg.Bin, time.Duration(secs)*time.Second)
	ld, lderr := loadWithAgents(ctx, cfg.Bin, time.Duration(secs)*time.Second)
	sw, swerr := benchSwitchovers(ctx, cfg.Bin, 4, false, cfg.Progress)
	// The kill failover and the switchovers again on secure sandboxes (TLS
	// everywhere, etcd with client certificates and roles), to set beside the above.
	var secureKill FailoverResult
	if err := runJSON(ctx, cfg.Bin, []string{"bench", "failover", "--fault", "kill", "--trials", strconv.Itoa(ft), "--secure", "--json"}, &secureKill); err != nil {
		secureKill = FailoverResult{Fault: "kill", Trials: ft, Secure: true, Errors: []string{err.Error()}}
	}
	fmt.Fprintf(cfg.Progress, "failover kill (secure): p50 %d ms, max %d ms, lost %d %v\n", secureKill.P50FailoverMS, secureKill.MaxFailoverMS, secureKill.LostWrites, secureKill.Errors)
	swSecure, swSecureErr := benchSwitchovers(ctx, cfg.Bin, 4, true, cfg.Progress)
	outages := make([]EtcdOutageResult, 2)
	outageErrs := make([]error, 2)
	for i, fs := range []string{"false", "true"} {
		outageErrs[i] = runJSON(ctx, cfg.Bin, []string{"bench", "etcd-outage", "--seconds", "30", "--failsafe=" + fs, "--json"}, &outages[i])
		o := outages[i]
		fmt.Fprintf(cfg.Progress, "etcd outage (failsafe %s): availability %.2f, longest gap %d ms, resumed %d ms, failover %t, lost %d %v\n",
			fs, o.Availability, o.MaxGapMS, o.ResumedMS, o.Failover, o.LostWrites, outageErrs[i])
	}

	writeBenchmarks(&md, started, ft, dt, secs, failovers, detects, load, fp, fperr)
	writeViaHAProxy(&md, ft, failovers, viaHAProxy)
	writeSwitchovers(&md, sw, swerr)
	var plainKill FailoverResult
	for _, r := range failovers {
		if r.Fault == "kill" {
			plainKill = r
		}
	}
	writeSecure(&md, ft, plainKill, secureKill, sw, swerr, swSecure, swSecureErr)
	writeLoadWithAgents(&md, ld, lderr)
	writeEtcdOutage(&md, outages, outageErrs)
	out := md.String()
	if old, err := os.ReadFile(cfg.Out); err == nil {
		// Sections written by hand from other benchmarks (the chaos campaign, the
		// scale runs) stay.
		out = keepOtherSections(out, string(old))
	}
	if err := os.WriteFile(cfg.Out, []byte(out), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", cfg.Out, err)
	}
	fmt.Fprintf(cfg.Progress, "wrote %s in %s\n", cfg.Out, time.Since(started).Round(time.Second))
	return nil
}

// runJSON runs the lab binary with args (and the baton binary to use) and decodes the
// JSON it prints.
func runJSON(ctx context.Context, bin lab.Binaries, args []string, v any) error {
	cmd := exec.CommandContext(ctx, bin.Lab, append(args, "--baton", bin.Baton)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if jerr := json.Unmarshal(bytes.TrimSpace(lastLine(out.Bytes())), v); jerr != nil {
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(lastLine(errb.Bytes()))))
		}
		return fmt.Errorf("%s: %w", strings.Join(args, " "), jerr)
	}
	return nil
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// MeasureFootprint is the footprint part of All alone (`baton-lab bench
// footprint`): a 3-node cluster with agents in steady state for d.
func MeasureFootprint(ctx context.Context, bin lab.Binaries, d time.Duration) (Footprint, error) {
	if d < time.Second || d > time.Hour {
		return Footprint{}, fmt.Errorf("seconds: %s: use 1 s to 1 h", d)
	}
	return measureFootprint(ctx, bin, d)
}

// measureFootprint brings up a cluster with agents, lets it settle, and measures the
// primary's agent and a replica's agent over d: CPU, RSS, and the traffic on etcd's
// interface divided by the number of agents.
func measureFootprint(ctx context.Context, bin lab.Binaries, d time.Duration) (Footprint, error) {
	fp := Footprint{Seconds: int(d.Seconds())}
	c, store, done, err := benchCluster(ctx, "fp-bench", bin)
	if err != nil {
		return fp, err
	}
	defer done()
	fp.Agents = len(c.Nodes)
	time.Sleep(5 * time.Second)
	p, r := c.Nodes[0], c.Nodes[1]
	cpu := func(pid int) time.Duration {
		d, _ := procCPU(pid) // 0 when the agent is gone: the figure shows it
		return d
	}
	cpu0p, cpu0r := cpu(p.AgentPID), cpu(r.AgentPID)
	rev0 := etcdRev(ctx, store)
	net0, pk0 := netStats(c.EtcdMembers[0].NetNS)
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return fp, ctx.Err()
	case <-time.After(d):
	}
	el := time.Since(t0).Seconds()
	fp.CPUPercent = 100 * (cpu(p.AgentPID) - cpu0p).Seconds() / el
	fp.ReplicaCPU = 100 * (cpu(r.AgentPID) - cpu0r).Seconds() / el
	fp.RSSMiB, fp.ReplicaRSSMiB = procRSSMiB(p.AgentPID), procRSSMiB(r.AgentPID)
	net1, pk1 := netStats(c.EtcdMembers[0].NetNS)
	fp.EtcdBytesPerS = float64(net1-net0) / el / float64(fp.Agents)
	fp.EtcdPacketsPerS = float64(pk1-pk0) / el / float64(fp.Agents)
	fp.Writes = writesSince(ctx, store, rev0, etcdRev(ctx, store))
	return fp, nil
}

// etcdRev is etcd's revision now, 0 when it cannot be read.
func etcdRev(ctx context.Context, store *cluster.Store) int64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := store.Client().Get(ctx, store.Keys.Primary(), clientv3.WithCountOnly())
	if err != nil {
		return 0
	}
	return resp.Header.Revision
}

// writesSince counts the changes of the cluster's keys after revision from, up to
// to, by key (a prefix for nodes/, members/, history/ and the election's keys).
func writesSince(ctx context.Context, store *cluster.Store, from, to int64) map[string]int {
	out := map[string]int{}
	if from == 0 || to <= from {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for resp := range store.Client().Watch(ctx, store.Keys.Prefix, clientv3.WithPrefix(), clientv3.WithRev(from+1)) {
		if resp.Err() != nil {
			out["error: "+resp.Err().Error()]++
			return out
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision > to {
				return out
			}
			key := strings.TrimPrefix(string(ev.Kv.Key), store.Keys.Prefix)
			if i := strings.Index(key, "/"); i >= 0 {
				key = key[:i+1]
			}
			out[key]++
		}
		if n := len(resp.Events); n > 0 && resp.Events[n-1].Kv.ModRevision >= to {
			return out
		}
	}
	return out
}

func procRSSMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// netBytes is what eth0 of a namespace has received and sent.
func netBytes(ns string) int64 {
	b, _ := netStats(ns)
	return b
}

// netStats is the bytes and packets eth0 of a namespace has received and sent.
func netStats(ns string) (bytes, packets int64) {
	out, err := exec.Command("ip", "-n", ns, "-s", "-j", "link", "show", "eth0").Output()
	if err != nil {
		return 0, 0
	}
	type dir struct{ Bytes, Packets int64 }
	var links []struct {
		Stats64 struct {
			RX dir `json:"rx"`
			TX dir `json:"tx"`
		} `json:"stats64"`
	}
	if json.Unmarshal(out, &links) != nil || len(links) == 0 {
		return 0, 0
	}
	st := links[0].Stats64
	return st.RX.Bytes + st.TX.Bytes, st.RX.Packets + st.TX.Packets
}

func machine() string {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			mem = fmt.Sprintf("%.0f GiB", kb/1024/1024)
		}
	}
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	out, _ := exec.Command("mariadbd", "--version").Output()
	return fmt.Sprintf("%d cores (%s), %s memory, %s, %s", runtime.NumCPU(), cpu, mem, runtime.Version(), strings.TrimSpace(string(out)))
}

func fmtMS(xs []int64) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.FormatInt(x, 10))
	}
	return strings.Join(s, ", ")
}

func num(m map[string]any, k string) string {
	switch v := m[k].(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		return "-"
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// switchoverJSON is what the bench reads of `baton switchover --json`.
type switchoverJSON struct {
	OK           bool   `json:"ok"`
	Error        string `json:"error"`
	WriteBlockMS int64  `json:"write_block_ms"`
	TotalMS      int64  `json:"total_ms"`
}

// switchoverRun is one planned switchover as the operator and a writer see it.
type switchoverRun struct {
	From, To     string
	WriteBlockMS int64 // as the coordinator measured it (baton switchover --json)
	WriterGapMS  int64 // longest gap between acknowledged writes around it
	TotalMS      int64
	OK           bool
	Error        string
}

// benchSwitchovers runs n switchovers back and forth between db1 and db2 of a cluster
// with agents, with `baton switchover --yes --json`, while a writer writes through
// the virtual IP; secure: on a secure sandbox, the command run as its operator.
func benchSwitchovers(ctx context.Context, bin lab.Binaries, n int, secure bool, progress io.Writer) ([]switchoverRun, error) {
	c, _, done, err := benchClusterSpec(ctx, sandbox.Spec{Name: "sw-bench", Nodes: 3, SemiSync: true, WithAgents: true, VIP: true,
		EtcdMembers: 1, Binary: bin.Baton, LabBinary: bin.Lab, Secure: secure})
	if err != nil {
		return nil, err
	}
	defer done()
	w := c.NewWriter(10*time.Millisecond, benchWriteTimeout)
	w.Start(ctx)
	defer w.Stop()
	time.Sleep(2 * time.Second)
	var runs []switchoverRun
	from, to := "db1", "db2"
	for i := 0; i < n && ctx.Err() == nil; i++ {
		start := time.Now()
		cmd := exec.CommandContext(ctx, bin.Baton, "switchover", "--to", to, "--yes", "--json")
		var operator sandbox.Identity
		if c.PKI != nil {
			operator = c.PKI.Operator
		}
		cmd.Env = append(os.Environ(), c.CLIEnv(operator)...)
		out, _ := cmd.Output()
		var res switchoverJSON
		run := switchoverRun{From: from, To: to}
		if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
			run.Error = fmt.Sprintf("switchover output: %v", err)
		} else {
			run.OK, run.Error, run.WriteBlockMS, run.TotalMS = res.OK, res.Error, res.WriteBlockMS, res.TotalMS
		}
		time.Sleep(1500 * time.Millisecond)
		var gap time.Duration
		acks := w.Acks()
		for j := 1; j < len(acks); j++ {
			if acks[j].At.After(start) {
				gap = max(gap, acks[j].At.Sub(acks[j-1].At))
			}
		}
		run.WriterGapMS = gap.Milliseconds()
		runs = append(runs, run)
		fmt.Fprintf(progress, "switchover %s -> %s: ok %v, write block %d ms, writer gap %d ms %s\n", from, to, run.OK, run.WriteBlockMS, run.WriterGapMS, run.Error)
		if run.OK {
			from, to = to, from
		}
	}
	return runs, nil
}

// HAProxyFaults are the faults `bench all` also measures through HAProxy.
func HAProxyFaults() []string { return []string{"kill", "disk-full"} }

// writeViaHAProxy compares, fault by fault, the failovers through the virtual IP with
// those through HAProxy.
func writeViaHAProxy(md *strings.Builder, ft int, vip, haproxy []FailoverResult) {
	fmt.Fprintf(md, "\n## Failover through the VIP vs through HAProxy\n\n")
	fmt.Fprintf(md, "Command: `baton-lab bench failover --fault KIND --via haproxy --trials %d --json`: the same trials as above, on a cluster without a virtual IP, with Debian's HAProxy in the client namespace configured as [deploy/haproxy.cfg](../deploy/haproxy.cfg) (writer frontend routed by the agents' `/primary`, checks every 500 ms, fall 2, rise 1, `on-marked-down shutdown-sessions`); the writer writes through HAProxy's writer frontend. *old primary acks* counts writes the old primary acknowledged after the new primary's first: HAProxy must cut the sessions to the old primary, so it must be 0.\n\n", ft)
	fmt.Fprintf(md, "| fault | via | failover p50 | failover max | failover ms (each trial) | promote -> writes resumed ms (each trial) | acked | lost | split-brain ms | old primary acks after the switch | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(r FailoverResult) {
		fmt.Fprintf(md, "| %s | %s | %d ms | %d ms | %s | %s | %d | %d | %d | %d | %s |\n", r.Fault, r.Via, r.P50FailoverMS, r.MaxFailoverMS, fmtMS(r.FailoverMS),
			fmtMS(afterPromote(r)), r.AckedWrites, r.LostWrites, r.SplitBrainMS, r.OldPrimaryAcks, strings.Join(r.Errors, "; "))
	}
	for _, h := range haproxy {
		for _, v := range vip {
			if v.Fault == h.Fault {
				if v.Via == "" {
					v.Via = ViaVIP.String()
				}
				row(v)
			}
		}
		row(h)
	}
	fmt.Fprintf(md, "\nA failover's time is Baton's part (fault -> the new primary holds the leader key: detect, decide, promote; the same whatever the way in, though it varies from run to run) and the way in's part (*promote -> writes resumed*: the virtual IP moved and announced, or HAProxy's next check of the new primary's `/primary`, every 250 ms while it is down, and the writer's reconnection). Compare the ways in on the latter.\n")
}

// afterPromote is, per trial, the time from the promotion to the first write the new
// primary acknowledged.
func afterPromote(r FailoverResult) []int64 {
	var out []int64
	for i := range min(len(r.FailoverMS), len(r.PromoteMS)) {
		out = append(out, r.FailoverMS[i]-r.PromoteMS[i])
	}
	return out
}

func writeSwitchovers(md *strings.Builder, runs []switchoverRun, err error) {
	fmt.Fprintf(md, "\n## Planned switchover: writes blocked\n\n")
	if err != nil {
		fmt.Fprintf(md, "Not measured: %v\n", err)
		return
	}
	fmt.Fprintf(md, "Measured inside `baton-lab bench all`: `baton switchover --to NODE --yes --json` back and forth on a 3-node cluster with agents, semi-sync and a virtual IP, while a writer inserts through the virtual IP every 10 ms. *write block* is the coordinator's measure (the intent announced -> the new primary writable); *writer gap* is the longest time between two acknowledged writes around the switchover. Target: under 1 s.\n\n")
	fmt.Fprintf(md, "| switchover | ok | write block | writer gap | command total |\n|---|---|---|---|---|\n")
	for _, r := range runs {
		fmt.Fprintf(md, "| %s -> %s | %v | %d ms | %d ms | %d ms |\n", r.From, r.To, r.OK, r.WriteBlockMS, r.WriterGapMS, r.TotalMS)
	}
}

// agentLoad is a whole cluster with agents under saturating writes.
type agentLoad struct {
	Seconds    int      `json:"seconds"`
	Writers    int      `json:"writers"`
	Writes     int      `json:"writes"`
	Failures   int      `json:"failures"`
	Failovers  int      `json:"failovers"`
	Verdicts   []string `json:"primary_verdicts_seen"`
	MaxWriteMS float64  `json:"primary_max_write_probe_ms"`
}

// loadWithAgents saturates the primary of a cluster with agents with writes through
// the virtual IP for d, and counts failovers: there must be none.
func loadWithAgents(ctx context.Context, bin lab.Binaries, d time.Duration) (agentLoad, error) {
	res := agentLoad{Seconds: int(d.Seconds()), Writers: 8}
	c, store, done, err := benchCluster(ctx, "load-bench", bin)
	if err != nil {
		return res, err
	}
	defer done()
	var ws []*sandbox.Writer
	for i := 0; i < res.Writers; i++ {
		w := c.NewWriter(0, 2*time.Second)
		w.Start(ctx)
		ws = append(ws, w)
	}
	seen := map[string]bool{}
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		if snap, err := store.Load(ctx); err == nil {
			if p, ok := snap.Nodes[snap.Primary.Node]; ok {
				seen[p.Verdict.String()] = true
				res.MaxWriteMS = max(res.MaxWriteMS, p.WriteMS)
			}
			res.Failovers = int(snap.Primary.Epoch) - 1
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, w := range ws {
		w.Stop()
		res.Writes += len(w.Acks())
		n, _ := w.Failures()
		res.Failures += n
	}
	for v := range seen {
		res.Verdicts = append(res.Verdicts, v)
	}
	return res, nil
}

func writeLoadWithAgents(md *strings.Builder, ld agentLoad, err error) {
	fmt.Fprintf(md, "\n## No failover under saturating load\n\n")
	if err != nil {
		fmt.Fprintf(md, "Not measured: %v\n", err)
		return
	}
	fmt.Fprintf(md, "Measured inside `baton-lab bench all`: a 3-node cluster with agents and semi-sync, %d writers inserting through the virtual IP as fast as they can for %d s: %d writes (%d failed), **%d failovers**; the primary's verdicts seen: %s; slowest write probe published: %.1f ms.\n",
		ld.Writers, ld.Seconds, ld.Writes, ld.Failures, ld.Failovers, strings.Join(ld.Verdicts, ", "), ld.MaxWriteMS)
}

func writeBenchmarks(md *strings.Builder, started time.Time, ft, dt, secs int, failovers []FailoverResult, detects []map[string]any, load map[string]any, fp Footprint, fperr error) {
	fmt.Fprintf(md, "# Benchmarks\n\n")
	fmt.Fprintf(md, "Written by `make bench` (`baton-lab bench all --out docs/BENCHMARKS.md`) on %s, in %s.\n\n", started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))
	fmt.Fprintf(md, "Machine: %s.\n\n", machine())
	fmt.Fprintf(md, "Every figure comes from real servers: a fresh 3-node sandbox (MariaDB, GTID replication, semi-sync AFTER_SYNC, an agent per node in its own network namespace, embedded etcd, a virtual IP) per failover trial.\n\n")

	fmt.Fprintf(md, "## Failover: fault of the primary -> writes accepted again\n\n")
	fmt.Fprintf(md, "Command: `baton-lab bench failover --fault KIND --trials %d --json`. A writer in the client namespace inserts through the virtual IP every 10 ms, each write with a 500 ms deadline (then it reconnects); a monitor tries a write on every server directly every 50 ms. *failover* is fault injection -> first write acknowledged by the new primary; *detect* -> etcd shows the primary failed; *decide* -> the coordinator started the failover; *promote* -> the new primary holds the leader key. *lost* counts acknowledged writes missing on the new primary; *split-brain* is the time two servers accepted writes.\n\n", ft)
	fmt.Fprintf(md, "| fault | failover p50 | failover max | failover ms (each trial) | detect ms | decide ms | promote ms | acked | lost | split-brain ms | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range failovers {
		fmt.Fprintf(md, "| %s | %d ms | %d ms | %s | %s | %s | %s | %d | %d | %d | %s |\n", r.Fault, r.P50FailoverMS, r.MaxFailoverMS, fmtMS(r.FailoverMS),
			fmtMS(r.DetectMS), fmtMS(r.DecideMS), fmtMS(r.PromoteMS), r.AckedWrites, r.LostWrites, r.SplitBrainMS, strings.Join(r.Errors, "; "))
	}
	fmt.Fprintf(md, "\nTargets: kill <= 2 s p50; disk-full, freeze-writes, stop <= 4 s p50; lost 0 and split-brain 0 in every trial.\n\n")

	fmt.Fprintf(md, "## Detection: fault -> verdict\n\n")
	fmt.Fprintf(md, "Command: `baton-lab bench detect --fault KIND --trials %d --json` (the detector alone, against the primary of a 2-node sandbox, default timings).\n\n", dt)
	fmt.Fprintf(md, "| fault | p50 ms | max ms | each trial (ms) | false positives |\n|---|---|---|---|---|\n")
	for _, r := range detects {
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s |\n", r["fault"], num(r, "p50_ms"), num(r, "max_ms"), num(r, "detect_ms"), num(r, "false_positives"))
		if e, ok := r["error"]; ok {
			fmt.Fprintf(md, "\n(%s: %v)\n\n", r["fault"], e)
		}
	}
	fmt.Fprintf(md, "\nSaturating write load (`baton-lab bench detect --fault none --load --seconds %d --json`, sysbench on the primary): false positives %s.\n\n", secs, num(load, "false_positives"))
	if b, err := json.Marshal(load); err == nil {
		fmt.Fprintf(md, "```json\n%s\n```\n\n", b)
	}

	fmt.Fprintf(md, "## Agent footprint\n\n")
	if fperr != nil {
		fmt.Fprintf(md, "Not measured: %v\n", fperr)
		return
	}
	fmt.Fprintf(md, "Measured inside `baton-lab bench all`: a 3-node cluster with agents in steady state for %d s.\n\n", secs)
	fmt.Fprintf(md, "| agent | CPU (%% of one core) | RSS |\n|---|---|---|\n| primary's | %.2f %% | %.1f MiB |\n| a replica's | %.2f %% | %.1f MiB |\n\n",
		fp.CPUPercent, fp.RSSMiB, fp.ReplicaCPU, fp.ReplicaRSSMiB)
	fmt.Fprintf(md, "etcd traffic: %.0f bytes/s and %.1f packets/s per agent (both directions, measured on the etcd member's interface, divided by %d agents); the cluster's key changes during the run: %v (`baton-lab bench footprint --seconds %d --json` measures this part alone).\n",
		fp.EtcdBytesPerS, fp.EtcdPacketsPerS, fp.Agents, fp.Writes, secs)
}

func writeEtcdOutage(md *strings.Builder, rs []EtcdOutageResult, errs []error) {
	md.WriteString("\n## etcd outage: writes while every etcd member is down\n\n")
	md.WriteString("Command: `baton-lab bench etcd-outage --seconds 30 --failsafe=false|true --json`: a 3-node cluster with agents, semi-sync, a virtual IP and 3 etcd members; a writer through the virtual IP every 10 ms; every etcd member stopped (SIGKILL) for 30 s, then started. *available* is the share of the outage's 100 ms windows with a write acknowledged; *longest gap* runs from the stop until 5 s after etcd is back.\n\n")
	md.WriteString("| failsafe mode | etcd down | available | writes acknowledged during | last acknowledged after the stop | longest gap | writes resumed after etcd is back | failover | lost |\n|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range rs {
		mode := map[bool]string{true: "on", false: "off (before)"}[i == 1]
		if errs[i] != nil {
			fmt.Fprintf(md, "| %s | failed: %v | | | | | | | |\n", mode, errs[i])
			continue
		}
		fmt.Fprintf(md, "| %s | %d ms | %.0f %% | %d | %d ms | %d ms | %d ms | %t | %d |\n", mode, r.OutageMS, 100*r.Availability, r.AckedDuring, r.LastAckMS, r.MaxGapMS, r.ResumedMS, r.Failover, r.LostWrites)
	}
	md.WriteString("\nWithout failsafe mode every primary fences itself once its agent cannot renew its etcd session (`session_ttl - fence_margin`): writes stop until etcd is back. With it, the primary's agent asks every peer's agent; all of them confirm etcd is unreachable for them too and hold off failovers, so the primary keeps taking writes (docs/architecture.md, \"Failsafe mode\").\n")
}

// keepOtherSections appends to doc the "## " sections of old whose headings doc does
// not have, in their order.
func keepOtherSections(doc, old string) string {
	have := map[string]bool{}
	for _, sec := range strings.Split(doc, "\n## ")[1:] {
		head, _, _ := strings.Cut(sec, "\n")
		have[head] = true
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(doc, "\n"))
	b.WriteString("\n")
	for _, sec := range strings.Split(old, "\n## ")[1:] {
		head, _, _ := strings.Cut(sec, "\n")
		if !have[head] {
			b.WriteString("\n## " + strings.TrimRight(sec, "\n") + "\n")
		}
	}
	return b.String()
}

// SwitchoverRun is one planned switchover as `baton-lab bench switchover` measured
// it.
type SwitchoverRun = switchoverRun

// SwitchoverResult is what `baton-lab bench switchover --json` prints.
type SwitchoverResult struct {
	Secure bool            `json:"secure"`
	Runs   []SwitchoverRun `json:"runs"`
	// Of the switchovers that succeeded: the coordinator's write block and the
	// writer's longest gap.
	P50WriteBlockMS int64 `json:"p50_write_block_ms"`
	MaxWriteBlockMS int64 `json:"max_write_block_ms"`
	P50WriterGapMS  int64 `json:"p50_writer_gap_ms"`
	MaxWriterGapMS  int64 `json:"max_writer_gap_ms"`
	Failed          int   `json:"failed"`
}

// Switchovers runs n planned switchovers back and forth on one fresh cluster (as
// `bench all` does), on a secure sandbox when secure.
func Switchovers(ctx context.Context, bin lab.Binaries, n int, secure bool, progress io.Writer) (SwitchoverResult, error) {
	if n < 1 {
		return SwitchoverResult{}, fmt.Errorf("count: %d: at least 1", n)
	}
	if progress == nil {
		progress = io.Discard
	}
	runs, err := benchSwitchovers(ctx, bin, n, secure, progress)
	if err != nil {
		return SwitchoverResult{}, err
	}
	res := SwitchoverResult{Secure: secure, Runs: runs}
	var block, gap []int64
	for _, r := range runs {
		if !r.OK {
			res.Failed++
			continue
		}
		block, gap = append(block, r.WriteBlockMS), append(gap, r.WriterGapMS)
	}
	res.P50WriteBlockMS, res.MaxWriteBlockMS = p50max(block)
	res.P50WriterGapMS, res.MaxWriterGapMS = p50max(gap)
	return res, nil
}

// writeSecure sets the kill failover and the switchovers on secure sandboxes beside
// the plain-text ones.
func writeSecure(md *strings.Builder, ft int, plain, secure FailoverResult, sw []switchoverRun, swerr error, swSecure []switchoverRun, swSecureErr error) {
	fmt.Fprintf(md, "\n## Secure vs plain text\n\n")
	fmt.Fprintf(md, "Commands: `baton-lab bench failover --fault kill --trials %d [--secure] --json` and `baton-lab bench switchover --count 4 [--secure] --json` (a fresh cluster per failover trial, one for the switchovers). *secure* is `sandbox up --secure`: MariaDB takes TLS only (the writer, the agents' peer probes and the coordinator's connections handshake TLS 1.3 and check the server's certificate), replication over TLS checking its source's certificate, etcd over TLS with client certificates and a role per cluster (agents authenticated by certificate), the switchover asked for with the operator's certificate.\n\n", ft)
	fmt.Fprintf(md, "| mysqld killed | failover p50 | failover max | failover ms (each trial) | detect ms | promote ms | acked | lost | split-brain ms | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range []struct {
		name string
		r    FailoverResult
	}{{"plain text", plain}, {"secure", secure}} {
		fmt.Fprintf(md, "| %s | %d ms | %d ms | %s | %s | %s | %d | %d | %d | %s |\n", r.name, r.r.P50FailoverMS, r.r.MaxFailoverMS, fmtMS(r.r.FailoverMS),
			fmtMS(r.r.DetectMS), fmtMS(r.r.PromoteMS), r.r.AckedWrites, r.r.LostWrites, r.r.SplitBrainMS, strings.Join(r.r.Errors, "; "))
	}
	fmt.Fprintf(md, "\n| planned switchover | ok | write block p50 | write block max | write block ms (each) | writer gap ms (each) |\n|---|---|---|---|---|---|\n")
	for _, r := range []struct {
		name string
		runs []switchoverRun
		err  error
	}{{"plain text", sw, swerr}, {"secure", swSecure, swSecureErr}} {
		if r.err != nil {
			fmt.Fprintf(md, "| %s | not measured: %v | | | | |\n", r.name, r.err)
			continue
		}
		ok, block, gap := 0, []int64{}, []int64{}
		for _, x := range r.runs {
			if x.OK {
				ok++
				block, gap = append(block, x.WriteBlockMS), append(gap, x.WriterGapMS)
			}
		}
		p50, mx := p50max(block)
		fmt.Fprintf(md, "| %s | %d/%d | %d ms | %d ms | %s | %s |\n", r.name, ok, len(r.runs), p50, mx, fmtMS(block), fmtMS(gap))
	}
}
