package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/status"
)

// TestViewsAgree: in one situation (right after an automatic failover, its anti-flap
// block in force; then paused), baton status (text and JSON), the web view, an
// agent's /status and its metrics say the same of automatic failover, the primary
// and the epoch: each reads the same snapshot through one function.
func TestViewsAgree(t *testing.T) {
	for _, tc := range []struct {
		name            string
		blocked, paused bool
	}{
		{"after an automatic failover", true, false},
		{"paused", false, true},
		{"on", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := snapshot()
			snap.Settings.Paused = tc.paused
			if tc.blocked {
				snap.Block = &cluster.FailoverBlock{Epoch: 2, To: "db2", For: 5 * time.Minute, At: t0}
			}
			st := status.Of(context.Background(), nil, "main", snap)
			on := !tc.blocked && !tc.paused
			if st.AutomaticFailover.On != on {
				t.Fatalf("status: automatic failover on %v, want %v", st.AutomaticFailover.On, on)
			}
			var text strings.Builder
			status.Print(&text, st, false)
			wantText := "automatic failover: on"
			if !on {
				wantText = "automatic failover: OFF"
			}
			if !strings.Contains(text.String(), wantText) {
				t.Errorf("status text lacks %q", wantText)
			}
			page := render(t, Page{At: t0, Clusters: []Cluster{NewCluster(st, nil)}})
			wantPage := `<dt>Automatic failover</dt><dd><span class="tag ok">on</span>`
			if !on {
				wantPage = `<dt>Automatic failover</dt><dd><strong class="tag warning">`
			}
			if !strings.Contains(page, wantPage) {
				t.Errorf("page lacks %q", wantPage)
			}
			v := agent.ViewOf("main", "db3", snap.Nodes["db3"], snap)
			if v.Blocked != tc.blocked || v.Paused != tc.paused || v.Primary == nil || v.Primary.Node != st.Primary || v.Primary.Epoch != st.Epoch {
				t.Errorf("agent /status: blocked %v paused %v primary %+v; status: primary %s epoch %d", v.Blocked, v.Paused, v.Primary, st.Primary, st.Epoch)
			}
			reg := prometheus.NewRegistry()
			m, err := agent.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			m.Update(v)
			for name, want := range map[string]bool{"baton_failover_blocked": tc.blocked, "baton_cluster_paused": tc.paused} {
				if v := gauge(t, reg, name); (v == 1) != want {
					t.Errorf("metric %s = %v, want %v", name, v, want)
				}
			}
			if e := gauge(t, reg, "baton_primary_epoch"); uint64(e) != st.Epoch {
				t.Errorf("metric baton_primary_epoch %v, status epoch %d", e, st.Epoch)
			}
		})
	}
}

// gauge reads one unlabelled gauge's value from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
