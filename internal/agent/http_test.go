package agent

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// primaryView is a healthy, writable primary of record holding leader.
func primaryView() View {
	return View{
		Cluster: "shop", Node: "db1",
		Status: cluster.NodeStatus{Node: "db1", Addr: "192.0.2.11:3306", Role: cluster.RolePrimary, Verdict: detector.Healthy,
			GTID: "0-1-100", LagMS: -1, HeartbeatMS: -1, StorageOK: true, WriteMS: 1.5, PingMS: 0.4, At: testNow.Add(-200 * time.Millisecond),
			Forecasts: []detector.Forecast{
				{Resource: detector.ResourceDisk, Name: "/var/lib/mysql", Detail: "datadir, binlog, relay log", Used: 20 << 30, Limit: 100 << 30,
					Rate: 1 << 20, RateKnown: true, Outlook: detector.OutlookFilling, Left: 80 * 1024 * time.Second},
				{Resource: detector.ResourcePurgeLag, Name: "history list", Used: 1200, Limit: 1e6, RateKnown: true, Outlook: detector.OutlookSteady,
					Oldest: &detector.Trx{Thread: 42, Age: 3 * time.Second}},
			}},
		Primary:     &cluster.Primary{Node: "db1", Epoch: 4, Since: testNow.Add(-time.Hour)},
		HoldsLeader: true, SessionAlive: true, Coordinator: "db2",
		MaxReplicaLag: 5 * time.Second, MaxStatusAge: 3 * time.Second, Now: testNow,
	}
}

// replicaView is a healthy replica of db1, 120 ms behind.
func replicaView() View {
	v := primaryView()
	v.Node = "db2"
	v.HoldsLeader = false
	v.Status = cluster.NodeStatus{Node: "db2", Addr: "192.0.2.12:3306", Role: cluster.RoleReplica, Verdict: detector.Healthy,
		ReadOnly: true, Source: "192.0.2.11:3306", IORunning: true, SQLRunning: true, LagMS: 120, HeartbeatMS: 620, StorageOK: true,
		At: testNow.Add(-100 * time.Millisecond)}
	return v
}

func TestEndpoints(t *testing.T) {
	type want struct {
		code int
		body string // a substring of the body
	}
	cases := []struct {
		name   string
		view   func() View
		path   string
		expect want
	}{
		{"primary: writable primary of record", primaryView, "/primary", want{200, "primary"}},
		{"primary: degraded still takes writes", func() View {
			v := primaryView()
			v.Status.Verdict, v.Status.Reason = detector.Degraded, "disk full in 8m"
			return v
		}, "/primary", want{200, "primary"}},
		{"primary: unwritable", func() View {
			v := primaryView()
			v.Status.Verdict, v.Status.Reason = detector.Unwritable, "write probe timed out 3 times"
			return v
		}, "/primary", want{503, "not primary: verdict unwritable (write probe timed out 3 times)"}},
		{"primary: suspect", func() View {
			v := primaryView()
			v.Status.Verdict = detector.Suspect
			return v
		}, "/primary", want{503, "not primary: verdict suspect"}},
		// The detector's verdict as it stands goes ahead of the status of the
		// reconciler's latest pass, which a hung server may hold up.
		{"primary: the detector suspects it before the pass says so", func() View {
			v := primaryView()
			v.Live = &LiveVerdict{Verdict: detector.Suspect, Reason: "no answer to connect + SELECT 1 within 300ms"}
			return v
		}, "/primary", want{503, "not primary: verdict suspect (no answer to connect + SELECT 1 within 300ms)"}},
		{"primary: live degraded still takes writes", func() View {
			v := primaryView()
			v.Live = &LiveVerdict{Verdict: detector.Degraded}
			return v
		}, "/primary", want{200, "primary"}},
		{"primary: live healthy", func() View {
			v := primaryView()
			v.Live = &LiveVerdict{Verdict: detector.Healthy}
			return v
		}, "/primary", want{200, "primary"}},
		{"replica: the detector finds it unreachable before the pass says so", func() View {
			v := replicaView()
			v.Live = &LiveVerdict{Verdict: detector.Unreachable}
			return v
		}, "/replica", want{503, "not replica: verdict unreachable"}},
		{"health: the detector suspects it", func() View {
			v := primaryView()
			v.Live = &LiveVerdict{Verdict: detector.Suspect}
			return v
		}, "/health", want{503, "unhealthy: verdict suspect"}},
		{"primary: read_only", func() View {
			v := primaryView()
			v.Status.ReadOnly = true
			return v
		}, "/primary", want{503, "not primary: read_only is on"}},
		{"primary: no leader key", func() View {
			v := primaryView()
			v.HoldsLeader = false
			return v
		}, "/primary", want{503, "not primary: does not hold the leader key"}},
		{"primary: session down", func() View {
			v := primaryView()
			v.SessionAlive = false
			return v
		}, "/primary", want{503, "not primary: etcd session down"}},
		{"primary: another node is primary of record", func() View {
			v := primaryView()
			v.Primary = &cluster.Primary{Node: "db3", Epoch: 5}
			return v
		}, "/primary", want{503, "not primary: the primary of record is db3"}},
		{"primary: primary unknown", func() View {
			v := primaryView()
			v.Primary = nil
			return v
		}, "/primary", want{503, "not primary: primary of record unknown"}},
		{"primary: fenced role", func() View {
			v := primaryView()
			v.Status.Role = cluster.RoleFenced
			return v
		}, "/primary", want{503, "not primary: role fenced"}},
		{"primary: stale status", func() View {
			v := primaryView()
			v.Status.At = testNow.Add(-10 * time.Second)
			return v
		}, "/primary", want{503, "not primary: status is 10s old (limit 3s)"}},
		// Failsafe mode keeps the primary while etcd is down: the reconciler builds no
		// status then, its detector goes on; a fresh healthy round stands in for it.
		{"primary: kept by failsafe mode, status old, detector fresh", func() View {
			v := primaryView()
			v.SessionAlive = false
			v.Failsafe = &FailsafeView{State: FailsafeKept}
			v.Status.At = testNow.Add(-10 * time.Second)
			v.Live = &LiveVerdict{Verdict: detector.Healthy, At: testNow.Add(-300 * time.Millisecond)}
			return v
		}, "/primary", want{200, "primary"}},
		{"primary: kept by failsafe mode, detector silent too", func() View {
			v := primaryView()
			v.SessionAlive = false
			v.Failsafe = &FailsafeView{State: FailsafeKept}
			v.Status.At = testNow.Add(-10 * time.Second)
			v.Live = &LiveVerdict{Verdict: detector.Healthy, At: testNow.Add(-10 * time.Second)}
			return v
		}, "/primary", want{503, "not primary: status is 10s old"}},
		{"primary: kept by failsafe mode, detector fresh and failing", func() View {
			v := primaryView()
			v.SessionAlive = false
			v.Failsafe = &FailsafeView{State: FailsafeKept}
			v.Status.At = testNow.Add(-10 * time.Second)
			v.Live = &LiveVerdict{Verdict: detector.Unwritable, At: testNow.Add(-300 * time.Millisecond)}
			return v
		}, "/primary", want{503, "not primary: verdict unwritable"}},
		{"primary: not kept, detector fresh, status old", func() View {
			v := primaryView()
			v.Status.At = testNow.Add(-10 * time.Second)
			v.Live = &LiveVerdict{Verdict: detector.Healthy, At: testNow.Add(-300 * time.Millisecond)}
			return v
		}, "/primary", want{503, "not primary: status is 10s old"}},
		{"primary: no status yet", func() View {
			v := primaryView()
			v.Status.At = time.Time{}
			return v
		}, "/primary", want{503, "not primary: no status yet"}},
		{"primary: on a replica", replicaView, "/primary", want{503, "not primary: the primary of record is db1"}},

		{"replica: healthy", replicaView, "/replica", want{200, "replica"}},
		{"replica: lag at the limit", func() View {
			v := replicaView()
			v.Status.LagMS = 5000
			return v
		}, "/replica", want{200, "replica"}},
		{"replica: lag over the limit", func() View {
			v := replicaView()
			v.Status.LagMS = 5001
			return v
		}, "/replica", want{503, "not replica: lag 5001ms over max_replica_lag 5s"}},
		{"replica: lag unknown", func() View {
			v := replicaView()
			v.Status.LagMS = -1
			return v
		}, "/replica", want{503, "not replica: lag unknown"}},
		{"replica: IO thread stopped", func() View {
			v := replicaView()
			v.Status.IORunning, v.Status.ReplError = false, "error 2003 connecting to master"
			return v
		}, "/replica", want{503, "not replica: IO thread not running: error 2003 connecting to master"}},
		{"replica: SQL thread stopped", func() View {
			v := replicaView()
			v.Status.SQLRunning = false
			return v
		}, "/replica", want{503, "not replica: SQL thread not running"}},
		{"replica: degraded", func() View {
			v := replicaView()
			v.Status.Verdict = detector.Degraded
			return v
		}, "/replica", want{503, "not replica: verdict degraded"}},
		{"replica: quarantined", func() View {
			v := replicaView()
			v.Status.Role = cluster.RoleQuarantined
			return v
		}, "/replica", want{503, "not replica: role quarantined"}},
		{"replica: on the primary", primaryView, "/replica", want{503, "not replica: this node is the primary of record"}},
		{"replica: stale", func() View {
			v := replicaView()
			v.Status.At = testNow.Add(-time.Minute)
			return v
		}, "/replica", want{503, "not replica: status is 1m0s old"}},

		{"health: healthy primary", primaryView, "/health", want{200, "ok"}},
		{"health: healthy replica", replicaView, "/health", want{200, "ok"}},
		{"health: unreachable", func() View {
			v := replicaView()
			v.Status.Verdict, v.Status.Reason = detector.Unreachable, "connection refused"
			return v
		}, "/health", want{503, "unhealthy: verdict unreachable (connection refused)"}},
		{"health: no verdict yet", func() View {
			v := replicaView()
			v.Status.Verdict = detector.Unknown
			return v
		}, "/health", want{503, "unhealthy: verdict unknown"}},
		{"health: stale", func() View {
			v := replicaView()
			v.Status.At = testNow.Add(-time.Minute)
			return v
		}, "/health", want{503, "unhealthy: status is 1m0s old"}},
		{"health: no age limit", func() View {
			v := replicaView()
			v.MaxStatusAge = 0
			v.Status.At = time.Time{}
			return v
		}, "/health", want{200, "ok"}},

		{"unknown path", primaryView, "/admin", want{404, "not found"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(NewHandler(tc.view, prometheus.NewRegistry()))
			defer srv.Close()
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.expect.code || !strings.Contains(string(b), tc.expect.body) {
				t.Fatalf("%s: %d %q, want %d with %q", tc.path, resp.StatusCode, b, tc.expect.code, tc.expect.body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Fatalf("content type %q", ct)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatal("a load balancer's answer must not be cached")
			}
		})
	}
}

func TestEndpointsAreReadOnly(t *testing.T) {
	calls := 0
	view := func() View { calls++; return primaryView() }
	srv := httptest.NewServer(NewHandler(view, prometheus.NewRegistry()))
	defer srv.Close()
	for _, path := range []string{"/health", "/primary", "/replica", "/status", "/metrics", "/"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d allow %q", method, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
		resp, err := http.Head(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if path != "/" && path != "/replica" && resp.StatusCode != 200 {
			t.Errorf("HEAD %s: %d", path, resp.StatusCode)
		}
	}
	if calls == 0 {
		t.Fatal("view never called")
	}
}

func TestStatusJSON(t *testing.T) {
	v := primaryView()
	srv := httptest.NewServer(NewHandler(func() View { return v }, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cluster", "node", "status", "primary", "holds_leader", "session_alive", "coordinator", "paused", "max_replica_lag_ns"} {
		if _, ok := got[k]; !ok {
			t.Errorf("/status lacks %q: %v", k, got)
		}
	}
	if got["node"] != "db1" || got["primary"].(map[string]any)["epoch"] != float64(4) ||
		got["status"].(map[string]any)["verdict"] != "healthy" {
		t.Fatalf("/status: %v", got)
	}
	// No gatherer: no /metrics.
	resp2, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 404 {
		t.Fatalf("/metrics without a gatherer: %d", resp2.StatusCode)
	}
}

// gather returns the value of the one sample of name whose labels include labels.
func gather(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second registration on the same registry is an error, not a panic.
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("registering twice succeeded")
	}
	// Before any update every verdict and every result is exported, at 0.
	if v := gather(t, reg, "baton_node_verdict", map[string]string{"verdict": "unwritable"}); v != 0 {
		t.Fatalf("initial unwritable = %v", v)
	}
	if v := gather(t, reg, "baton_failovers_total", map[string]string{"result": "done"}); v != 0 {
		t.Fatalf("initial failovers = %v", v)
	}

	m.Update(primaryView())
	one := func(name string, labels map[string]string, want float64) {
		t.Helper()
		got := gather(t, reg, name, labels)
		if got != want && !(math.IsNaN(want) && math.IsNaN(got)) {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	one("baton_agent_info", map[string]string{"cluster": "shop", "node": "db1"}, 1)
	one("baton_node_verdict", map[string]string{"verdict": "healthy"}, 1)
	one("baton_node_verdict", map[string]string{"verdict": "unwritable"}, 0)
	one("baton_probe_latency_seconds", map[string]string{"probe": "write"}, 0.0015)
	one("baton_probe_latency_seconds", map[string]string{"probe": "ping"}, 0.0004)
	one("baton_replication_lag_seconds", nil, math.NaN())
	one("baton_etcd_session_up", nil, 1)
	one("baton_is_primary", nil, 1)
	one("baton_holds_leader", nil, 1)
	one("baton_is_coordinator", nil, 0)
	one("baton_primary_epoch", nil, 4)
	one("baton_read_only", nil, 0)
	one("baton_storage_ok", nil, 1)
	one("baton_semi_sync_unprotected", nil, 0)
	fallen := primaryView()
	fallen.Status.SemiSync = cluster.SemiSyncAsync
	m.Update(fallen)
	one("baton_semi_sync_unprotected", nil, 1)

	v := replicaView()
	v.Status.Verdict = detector.Unwritable
	v.SessionAlive = false
	v.Coordinator = "db2"
	v.Paused = true
	m.Update(v)
	one("baton_agent_info", map[string]string{"node": "db2"}, 1)
	one("baton_node_verdict", map[string]string{"verdict": "healthy"}, 0)
	one("baton_node_verdict", map[string]string{"verdict": "unwritable"}, 1)
	one("baton_replication_lag_seconds", nil, 0.12)
	one("baton_replication_io_running", nil, 1)
	one("baton_etcd_session_up", nil, 0)
	one("baton_is_primary", nil, 0)
	one("baton_holds_leader", nil, 0)
	one("baton_is_coordinator", nil, 1)
	one("baton_cluster_paused", nil, 1)
	one("baton_read_only", nil, 1)
	// The old info series is gone: one agent, one info line.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "baton_agent_info" && len(mf.GetMetric()) != 1 {
			t.Fatalf("%d info series", len(mf.GetMetric()))
		}
		if mf.GetName() == "baton_node_verdict" {
			sum := 0.0
			for _, s := range mf.GetMetric() {
				sum += s.GetGauge().GetValue()
			}
			if sum != 1 || len(mf.GetMetric()) != 9 {
				t.Fatalf("verdict gauge is not one-hot over 9 verdicts: sum %v, %d series", sum, len(mf.GetMetric()))
			}
		}
	}

	m.CountFailover(cluster.RequestDone)
	m.CountFailover(cluster.RequestDone)
	m.CountFailover(cluster.RequestFailed)
	m.CountSwitchover(cluster.RequestRefused)
	one("baton_failovers_total", map[string]string{"result": "done"}, 2)
	one("baton_failovers_total", map[string]string{"result": "failed"}, 1)
	one("baton_switchovers_total", map[string]string{"result": "refused"}, 1)
	one("baton_switchovers_total", map[string]string{"result": "done"}, 0)

	// And the same through /metrics.
	srv := httptest.NewServer(NewHandler(replicaView, reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`baton_failovers_total{result="done"} 2`, `baton_node_verdict{verdict="unwritable"} 1`, "baton_etcd_session_up 0"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if _, err := NewMetrics(nil); err == nil {
		t.Fatal("nil registerer accepted")
	}
}

// TestLiveOf: a detector that has run no round yet says nothing (the status
// governs); after one, its verdict stands as it is.
func TestLiveOf(t *testing.T) {
	if LiveOf(detector.Report{}) != nil || LiveOf(detector.Report{Verdict: detector.Unreachable}) != nil {
		t.Error("a report of no round gives a live verdict")
	}
	l := LiveOf(detector.Report{Rounds: 4, Verdict: detector.Suspect, Reason: "x", At: testNow})
	if l == nil || l.Verdict != detector.Suspect || l.Reason != "x" || !l.At.Equal(testNow) {
		t.Errorf("live = %+v", l)
	}
}
