package bench

// The scale benchmark: how many clusters one etcd carries. N clusters of hollow agents
// (the real session, election, reconciler and coordinator of every node, each with an
// etcd client of its own, against scripted servers) run in this process against a
// real etcd of its own members (separate processes on loopback); K primaries turn
// unwritable at once halfway.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/lab/hollow"
)

// ScaleConfig is one run of the scale benchmark.
type ScaleConfig struct {
	Clusters    int
	Nodes       int // per cluster; 3
	EtcdMembers int // 1 or 3
	Duration    time.Duration
	Fail        int // primaries made unwritable at once, halfway
	Seed        uint64
	Bin         lab.Binaries
	Progress    io.Writer // may be nil
	// Pprof serves /debug/pprof on the etcd members' client URLs.
	Pprof bool
	// SessionTTL is the agents' timings.session_ttl, 0 the default (3 s); the fence
	// margin stays 1 s.
	SessionTTL time.Duration
	// EtcdDir is where the members keep their data, "" a temporary directory; a
	// tmpfs (/dev/shm) takes the disk's fsync latency out of the run.
	EtcdDir string
}

// Validate checks the configuration and names the bad field.
func (c ScaleConfig) Validate() error {
	switch {
	case c.Clusters < 1 || c.Clusters > 5000:
		return fmt.Errorf("clusters: %d: from 1 to 5000", c.Clusters)
	case c.Nodes < 2 || c.Nodes > 9:
		return fmt.Errorf("nodes: %d: from 2 to 9", c.Nodes)
	case c.EtcdMembers != 1 && c.EtcdMembers != 3:
		return fmt.Errorf("etcd-members: %d: 1 or 3", c.EtcdMembers)
	case c.Duration < 20*time.Second || c.Duration > 2*time.Hour:
		return fmt.Errorf("minutes: %s: from 20 s to 2 h", c.Duration)
	case c.Fail < 0 || c.Fail > c.Clusters:
		return fmt.Errorf("fail: %d: from 0 to the number of clusters (%d)", c.Fail, c.Clusters)
	case c.SessionTTL != 0 && (c.SessionTTL < 2*time.Second || c.SessionTTL > time.Minute || c.SessionTTL%time.Second != 0):
		return fmt.Errorf("session-ttl: %s: whole seconds from 2 s to 1 min", c.SessionTTL)
	case c.Bin.Lab == "":
		return errors.New("bin: the baton-lab executable is required (it runs the etcd members)")
	}
	return nil
}

// ScaleResult is what the scale benchmark measured; `baton-lab bench scale --json`
// prints it.
type ScaleResult struct {
	Clusters    int `json:"clusters"`
	Agents      int `json:"agents"`
	SessionTTLS int `json:"session_ttl_s,omitempty"`
	EtcdMembers int `json:"etcd_members"`
	DurationS   int `json:"duration_s"`
	// BootstrapS is how long until every cluster had a primary of record holding
	// the leader key.
	BootstrapS float64 `json:"bootstrap_s"`
	// Idle: the first half of the run, before the faults; Failover: from the faults
	// until every faulted cluster committed (at least 10 s).
	Idle     EtcdLoad `json:"idle"`
	Failover EtcdLoad `json:"failover"`
	// Members are each etcd member's process at the end.
	Members []MemberUsage `json:"members"`
	// AgentsCPUPercent is this process's CPU (all the hollow agents, the scripted
	// servers and the benchmark's own reads) over the whole run, of one core.
	AgentsCPUPercent float64 `json:"agents_cpu_percent"`
	// Late renewals are leases renewed later than session_ttl - fence_margin (the real
	// agent fences then); sessions lost ended before the run did.
	LateRenewals   int64 `json:"late_renewals"`
	SessionsLost   int64 `json:"sessions_lost"`
	FalseFailovers int   `json:"false_failovers"`
	Faulted        int   `json:"faulted"`
	Decided        int   `json:"decided"`
	Committed      int   `json:"committed"`
	// From the fault to the coordinator's decision (its flow's start, in the
	// history), and to the committed epoch (seen in etcd), in ms.
	DecisionP50MS int64  `json:"decision_p50_ms"`
	DecisionP99MS int64  `json:"decision_p99_ms"`
	CommitP50MS   int64  `json:"commit_p50_ms"`
	CommitP99MS   int64  `json:"commit_p99_ms"`
	Error         string `json:"error,omitempty"`
}

// EtcdLoad is etcd's load in a window, per agent.
type EtcdLoad struct {
	Seconds           float64 `json:"seconds"`
	RequestsPerSAgent float64 `json:"requests_per_s_per_agent"`
	BytesPerSAgent    float64 `json:"bytes_per_s_per_agent"`
	RequestsPerS      float64 `json:"requests_per_s"`
	BytesPerS         float64 `json:"bytes_per_s"`
}

// MemberUsage is one etcd member's process.
type MemberUsage struct {
	Name       string  `json:"name"`
	CPUPercent float64 `json:"cpu_percent"` // over the whole run, of one core
	RSSMiB     float64 `json:"rss_mib"`
	DBSizeMiB  float64 `json:"db_size_mib"`
}

// Scale runs the scale benchmark.
func Scale(ctx context.Context, cfg ScaleConfig) (ScaleResult, error) {
	res := ScaleResult{Clusters: cfg.Clusters, Agents: cfg.Clusters * cfg.Nodes, SessionTTLS: int(cfg.SessionTTL.Seconds()), EtcdMembers: cfg.EtcdMembers, DurationS: int(cfg.Duration.Seconds()), Faulted: cfg.Fail}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	dir, err := os.MkdirTemp(cfg.EtcdDir, "baton-scale-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	members, err := startEtcdMembers(ctx, cfg.Bin.Lab, dir, cfg.EtcdMembers, cfg.Pprof)
	if err != nil {
		return res, err
	}
	defer members.stop()
	cli, err := clientv3.New(clientv3.Config{Endpoints: members.endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return res, err
	}
	defer cli.Close()
	fmt.Fprintf(progress, "scale: etcd members at %s\n", strings.Join(members.endpoints(), " "))
	if err := lab.Until(ctx, 60*time.Second, func() bool {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := cli.Get(gctx, "probe")
		return err == nil
	}); err != nil {
		return res, fmt.Errorf("etcd members not ready: %w", err)
	}

	runCtx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopAgents(); wg.Wait() }()
	pool := &hollow.Pool{}
	stats := &hollow.Stats{}
	clusters := make([]*hollow.Cluster, cfg.Clusters)
	for i := range clusters {
		clusters[i] = hollow.NewCluster(fmt.Sprintf("h%04d", i), cfg.Nodes)
		pool.Add(clusters[i])
	}
	wg.Add(1)
	go func() { defer wg.Done(); hollow.Write(runCtx, clusters, 100*time.Millisecond) }()
	started, cpu0 := time.Now(), cpuTime()
	for i, c := range clusters {
		for _, s := range c.Servers() {
			a := &hollow.Agent{Server: s, Endpoints: members.endpoints(), Pool: pool, Stats: stats, Timings: hollow.Timings{SessionTTL: cfg.SessionTTL}}
			wg.Add(1)
			go func() { defer wg.Done(); _ = a.Run(runCtx) }()
		}
		if i%20 == 19 {
			// 60 agents a second: agents of many clusters do not all start in the same
			// second in production either.
			time.Sleep(time.Second)
		}
	}
	fmt.Fprintf(progress, "scale: %d agents started in %s\n", res.Agents, time.Since(started).Round(time.Millisecond))
	bootLimit := time.Minute + time.Duration(cfg.Clusters)*250*time.Millisecond
	booted := 0
	lastReport := time.Now()
	if err := lab.Until(ctx, bootLimit, func() bool {
		booted = bootstrapped(ctx, cli, clusters)
		if time.Since(lastReport) >= 10*time.Second {
			lastReport = time.Now()
			fmt.Fprintf(progress, "scale: %d of %d clusters bootstrapped after %s; %d sessions made, %d lost, %d renewals late\n", booted, len(clusters),
				time.Since(started).Round(time.Second), stats.Sessions.Load(), stats.SessionsLost.Load(), stats.LateRenewals.Load())
		}
		if booted == len(clusters) {
			return true
		}
		_ = sleep(ctx, time.Second)
		return false
	}); err != nil {
		res.LateRenewals, res.SessionsLost = stats.LateRenewals.Load(), stats.SessionsLost.Load()
		res.AgentsCPUPercent = cpuPercent(cpu0, time.Since(started))
		return res, fmt.Errorf("%d of %d clusters bootstrapped: %w", booted, len(clusters), err)
	}
	res.BootstrapS = time.Since(started).Seconds()
	fmt.Fprintf(progress, "scale: %d clusters bootstrapped in %.1f s\n", cfg.Clusters, res.BootstrapS)

	// Idle: the first half.
	half := cfg.Duration / 2
	m0, err := members.scrape(ctx)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := sleep(ctx, half); err != nil {
		return res, err
	}
	m1, err := members.scrape(ctx)
	if err != nil {
		return res, err
	}
	res.Idle = load(m0, m1, time.Since(t0), res.Agents)
	fmt.Fprintf(progress, "scale: idle %.0f B/s and %.1f requests/s per agent\n", res.Idle.BytesPerSAgent, res.Idle.RequestsPerSAgent)

	// K primaries unwritable at once.
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.Clusters)))
	faulted := rng.Perm(cfg.Clusters)[:cfg.Fail]
	faultAt := time.Now()
	for _, i := range faulted {
		clusters[i].Server("db1").SetUnwritable(true)
	}
	commits := watchCommits(ctx, cli, clusters, faulted, faultAt, max(cfg.Duration-half, 30*time.Second))
	m2, err := members.scrape(ctx)
	if err != nil {
		return res, err
	}
	res.Failover = load(m1, m2, time.Since(faultAt), res.Agents)
	var decisions, commitTimes []int64
	for _, i := range faulted {
		c := clusters[i]
		if at, ok := commits[c.Name]; ok {
			res.Committed++
			commitTimes = append(commitTimes, at.Sub(faultAt).Milliseconds())
		}
		if at, ok := decidedAt(ctx, cli, c.Name); ok && at.After(faultAt) {
			res.Decided++
			decisions = append(decisions, at.Sub(faultAt).Milliseconds())
		}
	}
	res.DecisionP50MS, res.DecisionP99MS = pct(decisions, 50), pct(decisions, 99)
	res.CommitP50MS, res.CommitP99MS = pct(commitTimes, 50), pct(commitTimes, 99)
	// The rest of the run, then the false failovers: epochs that moved unasked.
	if rest := cfg.Duration - time.Since(t0); rest > 0 {
		if err := sleep(ctx, rest); err != nil {
			return res, err
		}
	}
	res.FalseFailovers = falseFailovers(ctx, cli, clusters, faulted)
	res.LateRenewals, res.SessionsLost = stats.LateRenewals.Load(), stats.SessionsLost.Load()
	m3, err := members.scrape(ctx)
	if err == nil {
		res.Members = members.usage(m3, time.Since(started))
	}
	res.AgentsCPUPercent = cpuPercent(cpu0, time.Since(started))
	return res, nil
}

// cpuTime is this process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPercent is the CPU this process used since from, over wall, in % of one core.
func cpuPercent(from time.Duration, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return 100 * (cpuTime() - from).Seconds() / wall.Seconds()
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// bootstrapped counts the clusters whose primary of record holds the leader key:
// one keys-only range read of every cluster's keys. A read per cluster, 1,000 of
// them in every poll, was a load of the benchmark's own on an etcd already behind.
func bootstrapped(ctx context.Context, cli *clientv3.Client, clusters []*hollow.Cluster) int {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Get(gctx, "/baton/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0
	}
	leaders := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		leaders[string(kv.Key)] = true
	}
	n := 0
	for _, c := range clusters {
		if leaders[cluster.NewKeys(c.Name).Leader()] {
			n++
		}
	}
	return n
}

// watchCommits polls the faulted clusters' primary keys until each has a new epoch or
// limit passes, and returns when each was first seen.
func watchCommits(ctx context.Context, cli *clientv3.Client, clusters []*hollow.Cluster, faulted []int, from time.Time, limit time.Duration) map[string]time.Time {
	seen := map[string]time.Time{}
	deadline := from.Add(limit)
	for time.Now().Before(deadline) && len(seen) < len(faulted) && ctx.Err() == nil {
		for _, i := range faulted {
			c := clusters[i]
			if _, ok := seen[c.Name]; ok {
				continue
			}
			gctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := cli.Get(gctx, cluster.NewKeys(c.Name).Primary())
			cancel()
			if err == nil && len(resp.Kvs) == 1 && !strings.Contains(string(resp.Kvs[0].Value), `"node":"db1"`) {
				seen[c.Name] = time.Now()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// At least 10 s of the failover window, for its etcd load.
	_ = sleep(ctx, time.Until(from.Add(10*time.Second)))
	return seen
}

// decidedAt is when the cluster's latest failover flow started (its history event),
// in this process's clock (the coordinators run here).
func decidedAt(ctx context.Context, cli *clientv3.Client, name string) (time.Time, bool) {
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	hist, err := cluster.NewStore(cli, name).History(gctx, 1)
	if err != nil || len(hist) == 0 || hist[0].Kind != cluster.EventFailover {
		return time.Time{}, false
	}
	return hist[0].Started, true
}

// falseFailovers counts the clusters whose primary moved though no fault was made
// there, and the faulted ones that moved more than once.
func falseFailovers(ctx context.Context, cli *clientv3.Client, clusters []*hollow.Cluster, faulted []int) int {
	n := 0
	for i, c := range clusters {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		snap, err := cluster.NewStore(cli, c.Name).Load(gctx)
		cancel()
		if err != nil {
			continue
		}
		want := uint64(1)
		if slices.Contains(faulted, i) {
			want = 2
		}
		if snap.Primary.Epoch > want {
			n++
		} else if want == 1 && snap.Primary.Node != "db1" {
			n++
		}
	}
	return n
}

func pct(v []int64, p int) int64 {
	if len(v) == 0 {
		return -1
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

// etcdMembers are the benchmark's etcd member processes, on loopback.
type etcdMembers struct {
	names   []string
	clients []string // http://127.0.0.1:port
	cmds    []*exec.Cmd
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startEtcdMembers runs n members (the lab's hidden `sandbox etcd-member` command)
// with client and peer URLs on 127.0.0.1.
func startEtcdMembers(ctx context.Context, labBin, dir string, n int, pprof bool) (*etcdMembers, error) {
	m := &etcdMembers{}
	var peers []string
	var peerURLs []string
	for i := 0; i < n; i++ {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("etcd%d", i+1)
		m.names = append(m.names, name)
		m.clients = append(m.clients, fmt.Sprintf("http://127.0.0.1:%d", cp))
		peerURLs = append(peerURLs, fmt.Sprintf("http://127.0.0.1:%d", pp))
		peers = append(peers, name+"="+peerURLs[i])
	}
	for i, name := range m.names {
		mdir := filepath.Join(dir, name)
		if err := os.MkdirAll(mdir, 0o700); err != nil {
			return nil, err
		}
		logf, err := os.Create(filepath.Join(mdir, "etcd.log"))
		if err != nil {
			return nil, err
		}
		args := []string{"sandbox", "etcd-member", "--member", name, "--dir", mdir, "--client-url", m.clients[i],
			"--peer-url", peerURLs[i], "--socket", filepath.Join(mdir, "c.sock"), "--initial-cluster", strings.Join(peers, ",")}
		if pprof {
			args = append(args, "--pprof")
		}
		cmd := exec.Command(labBin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			m.stop()
			return nil, fmt.Errorf("start etcd member %s: %w", name, err)
		}
		logf.Close()
		m.cmds = append(m.cmds, cmd)
	}
	return m, nil
}

func (m *etcdMembers) endpoints() []string { return m.clients }

func (m *etcdMembers) stop() {
	for _, c := range m.cmds {
		if c.Process != nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
}

// metricsOf is each member's Prometheus counters of interest.
type metricsOf map[string]map[string]float64

// scrape reads every member's /metrics: gRPC bytes and messages received, the db size,
// and its process's CPU seconds and resident memory.
func (m *etcdMembers) scrape(ctx context.Context) (metricsOf, error) {
	out := metricsOf{}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for i, name := range m.names {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.clients[i]+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", name, err)
		}
		vals := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			metric, value, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			base, _, _ := strings.Cut(metric, "{")
			switch base {
			case "etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
				"grpc_server_msg_received_total", "etcd_mvcc_db_total_size_in_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes":
				if f, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
					vals[base] += f
				}
			}
		}
		resp.Body.Close()
		out[name] = vals
	}
	return out, nil
}

// load is the etcd load between two scrapes, in total and per agent.
func load(a, b metricsOf, window time.Duration, agents int) EtcdLoad {
	sum := func(m metricsOf, keys ...string) float64 {
		t := 0.0
		for _, v := range m {
			for _, k := range keys {
				t += v[k]
			}
		}
		return t
	}
	bytesKeys := []string{"etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total"}
	s := window.Seconds()
	l := EtcdLoad{Seconds: s}
	if s <= 0 || agents <= 0 {
		return l
	}
	l.BytesPerS = (sum(b, bytesKeys...) - sum(a, bytesKeys...)) / s
	// Messages received: a unary call is one, and so is each message on a stream (a
	// lease renewal, a watch request).
	l.RequestsPerS = (sum(b, "grpc_server_msg_received_total") - sum(a, "grpc_server_msg_received_total")) / s
	l.BytesPerSAgent, l.RequestsPerSAgent = l.BytesPerS/float64(agents), l.RequestsPerS/float64(agents)
	return l
}

// usage is each member's process at the end of a run that began since ago.
func (m *etcdMembers) usage(last metricsOf, since time.Duration) []MemberUsage {
	var out []MemberUsage
	for _, name := range m.names {
		v := last[name]
		out = append(out, MemberUsage{Name: name, CPUPercent: 100 * v["process_cpu_seconds_total"] / since.Seconds(),
			RSSMiB: v["process_resident_memory_bytes"] / (1 << 20), DBSizeMiB: v["etcd_mvcc_db_total_size_in_bytes"] / (1 << 20)})
	}
	return out
}
