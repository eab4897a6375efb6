package agent

// The agent's Prometheus metrics, registered on a registry the caller owns (no global
// registry, so tests and several agents in one process do not collide).

import (
	"fmt"
	"math"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// verdictNames are every verdict name, for the one-hot baton_node_verdict gauge: all
// are exported (at 0) so that a query for one never finds nothing.
func verdictNames() []string {
	var out []string
	for v := detector.Unknown; v <= detector.Misconfigured; v++ {
		out = append(out, v.String())
	}
	return out
}

// roleNames are every role, for the one-hot baton_node_role gauge.
func roleNames() []string {
	var out []string
	for _, r := range []cluster.Role{cluster.RolePrimary, cluster.RoleReplica, cluster.RoleFenced,
		cluster.RoleQuarantined, cluster.RoleUnknown} {
		out = append(out, string(r))
	}
	return out
}

// Metrics are the agent's gauges and counters. Update sets the gauges from a View;
// CountFailover and CountSwitchover count the flows this agent ran as coordinator;
// baton_failsafe_active follows the view's failsafe state (SetFailsafe).
// docs/metrics.md lists them all (a test keeps the two in step).
type Metrics struct {
	info         *prometheus.GaugeVec
	verdict      *prometheus.GaugeVec
	role         *prometheus.GaugeVec
	probeSeconds *prometheus.GaugeVec
	lagSeconds   prometheus.Gauge
	ioRunning    prometheus.Gauge
	sqlRunning   prometheus.Gauge
	readOnly     prometheus.Gauge
	storageOK    prometheus.Gauge
	diskFree     prometheus.Gauge
	diskTTF      prometheus.Gauge
	sessionUp    prometheus.Gauge
	primaryKnown prometheus.Gauge
	isPrimary    prometheus.Gauge
	holdsLeader  prometheus.Gauge
	isCoord      prometheus.Gauge
	paused       prometheus.Gauge
	blocked      prometheus.Gauge
	epoch        prometheus.Gauge
	lastFailover prometheus.Gauge
	unprotected  prometheus.Gauge
	awaitsAck    prometheus.Gauge
	failsafe     prometheus.Gauge
	failovers    *prometheus.CounterVec
	switchovers  *prometheus.CounterVec

	verdicts []string
	roles    []string
	lastInfo [2]string
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, fmt.Errorf("new metrics: registerer is nil")
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &Metrics{
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "baton_agent_info",
			Help: "Always 1; labels name the agent's cluster and node."}, []string{"cluster", "node"}),
		verdict: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "baton_node_verdict",
			Help: "The detector's verdict on the local server: 1 for the current verdict, 0 for the others."}, []string{"verdict"}),
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "baton_node_role",
			Help: "The local node's role as its agent sees it: 1 for the current role, 0 for the others."}, []string{"role"}),
		probeSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "baton_probe_latency_seconds",
			Help: "Latency of the latest probe of the local server, by probe (write, ping)."}, []string{"probe"}),
		lagSeconds: g("baton_replication_lag_seconds", "Heartbeat lag of the local replica behind the primary of record; NaN when unknown or on the primary."),
		ioRunning:  g("baton_replication_io_running", "1 when the local replica's IO thread runs."),
		sqlRunning: g("baton_replication_sql_running", "1 when the local replica's SQL thread runs."),
		readOnly:   g("baton_read_only", "1 when the local server has read_only on."),
		storageOK:  g("baton_storage_ok", "1 when the local server's storage probe succeeds."),
		diskFree:   g("baton_disk_free_bytes", "Free bytes on the local server's datadir or binlog filesystem, whichever has less."),
		diskTTF: g("baton_disk_time_to_full_seconds", "Seconds until the local server's datadir or binlog filesystem (the one with less free space) is full at its current fill rate; "+
			"+Inf when it is not filling, 0 when it is full or unreadable, NaN before the first status."),
		sessionUp:    g("baton_etcd_session_up", "1 while the agent's etcd session is alive."),
		primaryKnown: g("baton_primary_of_record_known", "1 when the agent knows a primary of record from etcd, 0 when there is none or etcd was never read."),
		isPrimary:    g("baton_is_primary", "1 when etcd names this node the primary of record."),
		holdsLeader:  g("baton_holds_leader", "1 while this agent holds the leader key (its server is the writable primary)."),
		isCoord:      g("baton_is_coordinator", "1 while this agent is the elected coordinator."),
		paused:       g("baton_cluster_paused", "1 while automatic failover is paused for the cluster."),
		blocked: g("baton_failover_blocked", "1 while the anti-flap block of the cluster's latest automatic failover is in force: no automatic failover "+
			"until it runs out (failover_block) or `baton unblock` lifts it."),
		epoch: g("baton_primary_epoch", "Epoch of the primary of record (the fencing token)."),
		lastFailover: g("baton_last_failover_timestamp_seconds", "Unix time at which the latest failover (not switchover) of the cluster committed, "+
			"from the primary of record; 0 when there was none, NaN while the primary of record is unknown."),
		unprotected: g("baton_semi_sync_unprotected", "1 when the local server is writable and semi-sync is configured but not in force (source side off, or fallen back to async): commits are acknowledged before any replica has them."),
		awaitsAck: g("baton_semi_sync_awaits_ack", "1 when the local server is writable with semi-sync on and its commits wait for an acknowledgement that no replica sends "+
			"(commits waiting, the verdict not healthy, no filesystem full): writes hang until a replica acknowledges or rpl_semi_sync_master_timeout runs out."),
		failsafe: g("baton_failsafe_active", "1 while the local primary is kept writable in failsafe mode through an etcd outage (no automatic failover is possible)."),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "baton_failovers_total",
			Help: "Failovers this agent ran as coordinator, by result (done, refused, failed)."}, []string{"result"}),
		switchovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "baton_switchovers_total",
			Help: "Switchovers this agent ran as coordinator, by result (done, refused, failed)."}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.info, m.verdict, m.role, m.probeSeconds, m.lagSeconds, m.ioRunning,
		m.sqlRunning, m.readOnly, m.storageOK, m.diskFree, m.diskTTF, m.sessionUp, m.primaryKnown, m.isPrimary,
		m.holdsLeader, m.isCoord, m.paused, m.blocked, m.epoch, m.lastFailover, m.unprotected, m.awaitsAck, m.failsafe, m.failovers,
		m.switchovers} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("new metrics: %w", err)
		}
	}
	m.verdicts = verdictNames()
	for _, v := range m.verdicts {
		m.verdict.WithLabelValues(v).Set(0)
	}
	m.roles = roleNames()
	for _, r := range m.roles {
		m.role.WithLabelValues(r).Set(0)
	}
	// The results a flow ends with, at 0 before the first flow.
	for _, r := range []cluster.RequestState{cluster.RequestDone, cluster.RequestRefused, cluster.RequestFailed} {
		m.failovers.WithLabelValues(resultLabel(r))
		m.switchovers.WithLabelValues(resultLabel(r))
	}
	// Unknown until the first Update: NaN, which no alert threshold matches and no
	// dashboard reads as "fine".
	m.lagSeconds.Set(math.NaN())
	m.diskTTF.Set(math.NaN())
	m.lastFailover.Set(math.NaN())
	return m, nil
}

// Update sets every gauge from v. Call it from one goroutine (the agent's status loop,
// or before each scrape).
func (m *Metrics) Update(v View) {
	if info := [2]string{v.Cluster, v.Node}; info != m.lastInfo {
		if m.lastInfo != [2]string{} {
			m.info.DeleteLabelValues(m.lastInfo[0], m.lastInfo[1])
		}
		m.info.WithLabelValues(v.Cluster, v.Node).Set(1)
		m.lastInfo = info
	}
	m.SetFailsafe(v.Failsafe != nil && v.Failsafe.State == FailsafeKept)
	st := v.Status
	cur := st.Verdict.String()
	for _, name := range m.verdicts {
		m.verdict.WithLabelValues(name).Set(b2f(name == cur))
	}
	role := string(st.Role)
	if !slices.Contains(m.roles, role) {
		role = string(cluster.RoleUnknown)
	}
	for _, name := range m.roles {
		m.role.WithLabelValues(name).Set(b2f(name == role))
	}
	m.probeSeconds.WithLabelValues("write").Set(st.WriteMS / 1000)
	m.probeSeconds.WithLabelValues("ping").Set(st.PingMS / 1000)
	if st.LagMS >= 0 && !v.IsPrimaryOfRecord() {
		m.lagSeconds.Set(float64(st.LagMS) / 1000)
	} else {
		m.lagSeconds.Set(math.NaN())
	}
	m.ioRunning.Set(b2f(st.IORunning))
	m.sqlRunning.Set(b2f(st.SQLRunning))
	m.readOnly.Set(b2f(st.ReadOnly))
	m.storageOK.Set(b2f(st.StorageOK))
	m.diskFree.Set(float64(st.DiskFree))
	m.diskTTF.Set(timeToFull(st))
	m.sessionUp.Set(b2f(v.SessionAlive))
	m.primaryKnown.Set(b2f(v.Primary != nil))
	m.isPrimary.Set(b2f(v.IsPrimaryOfRecord()))
	m.holdsLeader.Set(b2f(v.HoldsLeader))
	m.isCoord.Set(b2f(v.Coordinator != "" && v.Coordinator == v.Node))
	m.paused.Set(b2f(v.Paused))
	m.blocked.Set(b2f(v.Blocked))
	m.unprotected.Set(b2f(!st.ReadOnly && st.SemiSync.Unprotected()))
	m.awaitsAck.Set(b2f(st.AwaitsAck))
	switch {
	case v.Primary == nil:
		m.lastFailover.Set(math.NaN())
	case v.Primary.LastFailover.IsZero():
		m.epoch.Set(float64(v.Primary.Epoch))
		m.lastFailover.Set(0)
	default:
		m.epoch.Set(float64(v.Primary.Epoch))
		at := v.Primary.LastFailover
		m.lastFailover.Set(float64(at.Unix()) + float64(at.Nanosecond())/1e9)
	}
}

// timeToFull is baton_disk_time_to_full_seconds for st. The status says 0 both for
// "not filling" and for "not read"; a disk with 0 bytes free is full (or could not be
// read, which must not look safe either).
func timeToFull(st cluster.NodeStatus) float64 {
	switch {
	case st.At.IsZero():
		return math.NaN()
	case st.DiskTimeToFull > 0:
		return st.DiskTimeToFull.Seconds()
	case st.DiskFree == 0:
		return 0
	}
	return math.Inf(1)
}

// SetFailsafe sets baton_failsafe_active: call it with true when the agent keeps its
// primary writable through an etcd outage, with false when that ends. Safe to call
// from any goroutine.
func (m *Metrics) SetFailsafe(active bool) {
	m.failsafe.Set(b2f(active))
}

// CountFailover counts one failover this agent ran, by its result.
func (m *Metrics) CountFailover(result cluster.RequestState) {
	m.failovers.WithLabelValues(resultLabel(result)).Inc()
}

// CountSwitchover counts one switchover this agent ran, by its result.
func (m *Metrics) CountSwitchover(result cluster.RequestState) {
	m.switchovers.WithLabelValues(resultLabel(result)).Inc()
}

func resultLabel(r cluster.RequestState) string {
	if r == cluster.RequestPending {
		return "pending"
	}
	return string(r)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
