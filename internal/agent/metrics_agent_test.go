//go:build integration

package agent_test

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestAgentMetricsForAlerts scrapes real agents on a healthy sandbox, as Prometheus
// would, and checks the values the alert rules (deploy/prometheus) read: on a healthy
// cluster none of them may be in an alerting state, and each must say what it should
// about the primary and the replica.
func TestAgentMetricsForAlerts(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "agt-metrics", Nodes: 2, SemiSync: true, WithAgents: true})
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: sandbox.DialContext(c.ClientNetNS)}}
	scrape := func(node string) map[string]*dto.MetricFamily {
		t.Helper()
		n, err := c.Node(node)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Get("http://" + n.AgentHTTP + "/metrics")
		if err != nil {
			t.Fatalf("scrape %s: %v", node, err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("scrape %s: %v", node, err)
		}
		return mfs
	}
	// value is the sample of name whose labels include the pairs in labels ("k=v").
	value := func(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		mf, ok := mfs[name]
		if !ok {
			return math.NaN()
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, kv := range labels {
				k, v, _ := strings.Cut(kv, "=")
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == k && l.GetValue() == v
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
		return math.NaN()
	}

	// The gauges follow the agent's view once per probe interval: wait until both
	// agents report their settled roles.
	var db1, db2 map[string]*dto.MetricFamily
	deadline := time.Now().Add(20 * time.Second)
	for {
		db1, db2 = scrape("db1"), scrape("db2")
		if value(db1, "baton_node_role", "role=primary") == 1 && value(db2, "baton_node_role", "role=replica") == 1 &&
			value(db2, "baton_replication_lag_seconds") >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("roles not settled: db1 primary=%v, db2 replica=%v lag=%v", value(db1, "baton_node_role", "role=primary"),
				value(db2, "baton_node_role", "role=replica"), value(db2, "baton_replication_lag_seconds"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	type check struct {
		node   string
		mfs    map[string]*dto.MetricFamily
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}
	is := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
	checks := []check{
		{"db1", db1, "baton_agent_info", []string{"node=db1"}, is(1), "1"},
		{"db1", db1, "baton_is_primary", nil, is(1), "1"},
		{"db1", db1, "baton_holds_leader", nil, is(1), "1"},
		{"db1", db1, "baton_primary_of_record_known", nil, is(1), "1"},
		{"db1", db1, "baton_node_verdict", []string{"verdict=healthy"}, is(1), "1"},
		{"db1", db1, "baton_node_role", []string{"role=quarantined"}, is(0), "0"},
		{"db1", db1, "baton_etcd_session_up", nil, is(1), "1"},
		{"db1", db1, "baton_failsafe_active", nil, is(0), "0"},
		{"db1", db1, "baton_semi_sync_unprotected", nil, is(0), "0 (semi-sync on)"},
		{"db1", db1, "baton_cluster_paused", nil, is(0), "0"},
		{"db1", db1, "baton_last_failover_timestamp_seconds", nil, is(0), "0 (never failed over)"},
		{"db1", db1, "baton_disk_time_to_full_seconds", nil, func(v float64) bool { return v > 3600 }, "over an hour (+Inf: not filling)"},
		{"db1", db1, "baton_disk_free_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"db2", db2, "baton_is_primary", nil, is(0), "0"},
		{"db2", db2, "baton_primary_of_record_known", nil, is(1), "1"},
		{"db2", db2, "baton_replication_io_running", nil, is(1), "1"},
		{"db2", db2, "baton_replication_sql_running", nil, is(1), "1"},
		{"db2", db2, "baton_replication_lag_seconds", nil, func(v float64) bool { return v >= 0 && v < 30 }, "known, under 30 s"},
		{"db2", db2, "baton_node_role", []string{"role=quarantined"}, is(0), "0"},
		{"db2", db2, "baton_disk_time_to_full_seconds", nil, func(v float64) bool { return v > 3600 }, "over an hour (+Inf: not filling)"},
		{"db2", db2, "baton_failovers_total", []string{"result=failed"}, is(0), "0"},
	}
	for _, ch := range checks {
		if v := value(ch.mfs, ch.name, ch.labels...); !ch.ok(v) {
			t.Errorf("%s: %s%v = %v, want %s", ch.node, ch.name, ch.labels, v, ch.want)
		}
	}
}
