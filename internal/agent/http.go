package agent

// The agent's read-only HTTP endpoints. Load balancers point at /primary and /replica,
// so those answer 200 only when sending traffic to this node is right: /primary never
// for a server that cannot take writes, /replica never for one that is stale. Nothing
// here changes the cluster.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// View is what the HTTP endpoints (and Metrics.Update) are answered from: the agent's
// current picture of its node and of the cluster. The agent builds one per request;
// it must be cheap and must not block on the network.
type View struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	// Status is the local node's latest status, as published to etcd.
	Status cluster.NodeStatus `json:"status"`
	// Primary is the primary of record; nil when not known (etcd never reached).
	Primary *cluster.Primary `json:"primary,omitempty"`
	// HoldsLeader: this agent holds the leader key (it is the writable primary's).
	HoldsLeader bool `json:"holds_leader"`
	// SessionAlive: the agent's etcd session is established and renewed in time.
	SessionAlive bool `json:"session_alive"`
	// Coordinator is the node whose agent is the elected coordinator, "" if unknown.
	Coordinator string `json:"coordinator,omitempty"`
	Paused      bool   `json:"paused"`
	// Blocked: the anti-flap block of the latest automatic failover is in force (no
	// automatic failover until it ends or baton unblock lifts it).
	Blocked bool `json:"failover_blocked"`
	// MaxReplicaLag is timings.max_replica_lag: /replica refuses a replica further
	// behind.
	MaxReplicaLag time.Duration `json:"max_replica_lag_ns"`
	// MaxStatusAge, when positive, makes /primary, /replica and /health refuse a
	// Status older than this (a detector that stopped reporting).
	MaxStatusAge time.Duration `json:"max_status_age_ns,omitempty"`
	// Failsafe is failsafe mode on this node; nil when not known.
	Failsafe *FailsafeView `json:"failsafe,omitempty"`
	// Policy is the failover policy as this agent sees it; nil before etcd is read.
	Policy *PolicyView `json:"policy,omitempty"`
	// Now is when the view was taken; zero means time.Now() at the request.
	Now time.Time `json:"now"`
	// Live is the detector's verdict when the view was taken, ahead of Status,
	// which the reconciler builds at its passes (and a pass may wait on a hung
	// server for its read's deadline): /primary, /replica and /health refuse on it
	// too. Nil before the detector's first round.
	Live *LiveVerdict `json:"live,omitempty"`
}

// LiveVerdict is the detector's verdict as it stands.
type LiveVerdict struct {
	Verdict detector.Verdict `json:"verdict"`
	Reason  string           `json:"reason,omitempty"`
	// At is when the detector's latest round started.
	At time.Time `json:"at"`
}

// LiveOf is the live verdict of a detector's report; nil before its first round.
func LiveOf(r detector.Report) *LiveVerdict {
	if r.Rounds == 0 {
		return nil
	}
	return &LiveVerdict{Verdict: r.Verdict, Reason: r.Reason, At: r.At}
}

// keptOnLive says whether /primary may go by the live verdict alone in place of a
// status too old: failsafe mode keeps this primary while etcd is unreachable, and
// its reconciler, which runs only under an etcd session, builds no status then,
// but its detector runs on, and its latest round is fresh. Without it HAProxy
// would drop the very primary failsafe mode keeps, MaxStatusAge into the outage.
func (v View) keptOnLive() bool {
	return v.Failsafe != nil && v.Failsafe.State == FailsafeKept && v.Live != nil &&
		v.MaxStatusAge > 0 && !v.Live.At.IsZero() && v.now().Sub(v.Live.At) <= v.MaxStatusAge
}

// liveRefusal says why the live verdict refuses traffic ("" when it does not, or
// is not known): any verdict but healthy, and, with degradedOK, degraded.
func (v View) liveRefusal(degradedOK bool) string {
	l := v.Live
	if l == nil || l.Verdict == detector.Healthy || (degradedOK && l.Verdict == detector.Degraded) {
		return ""
	}
	if l.Reason != "" {
		return "verdict " + l.Verdict.String() + " (" + l.Reason + ")"
	}
	return "verdict " + l.Verdict.String()
}

// PolicyView is the cluster's failover policy next to this node's file's.
type PolicyView struct {
	// Cluster is the policy key, the one every coordinator decides with; nil when it
	// is missing or unreadable (Error says why).
	Cluster *cluster.PolicyRecord `json:"cluster,omitempty"`
	Error   string                `json:"error,omitempty"`
	// File is this node's configuration file's policy.
	File cluster.Policy `json:"file"`
	// Disagreements lists the live nodes whose files differ from the cluster's, this
	// one included.
	Disagreements []cluster.PolicyDisagreement `json:"disagreements,omitempty"`
}

// policyView compares this node's file policy and every node's with the cluster's.
func policyView(snap cluster.Snapshot, file cluster.Policy) *PolicyView {
	return &PolicyView{Cluster: snap.Policy, Error: snap.PolicyErr, File: file,
		Disagreements: cluster.PolicyDisagreements(snap.Policy, snap.Nodes)}
}

// now returns the view's time.
func (v View) now() time.Time {
	if v.Now.IsZero() {
		return time.Now()
	}
	return v.Now
}

// stale says why Status is too old to answer from, "" when it is fresh enough.
func (v View) stale() string {
	if v.MaxStatusAge <= 0 {
		return ""
	}
	if v.Status.At.IsZero() {
		return "no status yet"
	}
	if age := v.now().Sub(v.Status.At); age > v.MaxStatusAge {
		return fmt.Sprintf("status is %s old (limit %s)", age.Round(time.Millisecond), v.MaxStatusAge)
	}
	return ""
}

// IsPrimaryOfRecord says whether etcd names this node the primary.
func (v View) IsPrimaryOfRecord() bool { return v.Primary != nil && v.Primary.Node == v.Node }

// Health answers /health: "" when the local server is reachable and healthy, else why not.
func (v View) Health() string {
	if s := v.stale(); s != "" {
		return "unhealthy: " + s
	}
	if v.Status.Verdict != detector.Healthy {
		return "unhealthy: verdict " + verdictText(v.Status)
	}
	if why := v.liveRefusal(false); why != "" {
		return "unhealthy: " + why
	}
	return ""
}

// PrimaryRefusal answers /primary: "" when this node is the writable primary of
// record (named by etcd, holding the leader key on a live session, its write probe
// healthy, read_only off), else why not.
func (v View) PrimaryRefusal() string {
	switch {
	case v.Primary == nil:
		return "not primary: primary of record unknown"
	case v.Primary.Node != v.Node:
		return "not primary: the primary of record is " + v.Primary.Node
	case !v.SessionAlive && (v.Failsafe == nil || v.Failsafe.State != FailsafeKept):
		return "not primary: etcd session down"
	case !v.HoldsLeader:
		return "not primary: does not hold the leader key"
	case v.Status.Role != cluster.RolePrimary:
		return "not primary: role " + string(v.Status.Role)
	}
	if s := v.stale(); s != "" && !v.keptOnLive() {
		return "not primary: " + s
	}
	// Degraded (disk predicted full) still takes writes: dropping the only writable
	// server from the load balancer would be the outage.
	if vd := v.Status.Verdict; vd != detector.Healthy && vd != detector.Degraded {
		return "not primary: verdict " + verdictText(v.Status)
	}
	if why := v.liveRefusal(true); why != "" {
		return "not primary: " + why
	}
	if v.Status.ReadOnly {
		return "not primary: read_only is on"
	}
	return ""
}

// ReplicaRefusal answers /replica: "" when this node is a healthy replica with both
// replication threads running and a known lag within MaxReplicaLag, else why not.
func (v View) ReplicaRefusal() string {
	st := v.Status
	switch {
	case v.IsPrimaryOfRecord():
		return "not replica: this node is the primary of record"
	case st.Role != cluster.RoleReplica:
		return "not replica: role " + string(st.Role)
	}
	if s := v.stale(); s != "" {
		return "not replica: " + s
	}
	live := v.liveRefusal(false)
	switch {
	case st.Verdict != detector.Healthy:
		return "not replica: verdict " + verdictText(st)
	case live != "":
		return "not replica: " + live
	case !st.IORunning:
		return "not replica: IO thread not running" + errSuffix(st.ReplError)
	case !st.SQLRunning:
		return "not replica: SQL thread not running" + errSuffix(st.ReplError)
	case st.LagMS < 0:
		return "not replica: lag unknown"
	case time.Duration(st.LagMS)*time.Millisecond > v.MaxReplicaLag:
		return fmt.Sprintf("not replica: lag %dms over max_replica_lag %s", st.LagMS, v.MaxReplicaLag)
	}
	return ""
}

func verdictText(st cluster.NodeStatus) string {
	if st.Reason != "" {
		return st.Verdict.String() + " (" + st.Reason + ")"
	}
	return st.Verdict.String()
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// NewHandler returns the agent's HTTP handler: /health, /primary, /replica, /status
// and /metrics (from gatherer; none when nil). view is called once per request. Only
// GET and HEAD are served; anything else is 405. The 200/503 answers carry a short
// plain-text reason and are never cached.
func NewHandler(view func() View, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	check := func(f func(View) string, ok string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if why := f(view()); why != "" {
				text(w, http.StatusServiceUnavailable, why)
				return
			}
			text(w, http.StatusOK, ok)
		}
	}
	mux.Handle("/health", readOnly(check(View.Health, "ok")))
	mux.Handle("/primary", readOnly(check(View.PrimaryRefusal, "primary")))
	mux.Handle("/replica", readOnly(check(View.ReplicaRefusal, "replica")))
	mux.Handle("/status", readOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := json.MarshalIndent(view(), "", "  ")
		if err != nil {
			text(w, http.StatusInternalServerError, "marshal status: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(append(b, '\n'))
	})))
	if gatherer != nil {
		mux.Handle("/metrics", readOnly(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})))
	}
	mux.Handle("/", readOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusNotFound, "not found: the endpoints are /health, /primary, /replica, /status and /metrics")
	})))
	return mux
}

// readOnly refuses every method but GET and HEAD.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			text(w, http.StatusMethodNotAllowed, "method not allowed: the agent's HTTP endpoints are read-only")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
