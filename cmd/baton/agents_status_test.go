package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/agent"
)

// TestStatusFromAgents: with etcd unreachable, `baton status --agents` shows each
// agent's own view, the kept primary and the agents that do not answer.
func TestStatusFromAgents(t *testing.T) {
	serve := func(v agent.View) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/status" {
				http.NotFound(w, r)
				return
			}
			json.NewEncoder(w).Encode(v)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	p := &cluster.Primary{Node: "db1", Epoch: 3}
	db1 := serve(agent.View{Node: "db1", Primary: p, Status: cluster.NodeStatus{Role: cluster.RolePrimary, Verdict: detector.Healthy, ServerRead: true},
		Failsafe: &agent.FailsafeView{State: agent.FailsafeKept, Note: "primary kept, all 2 peers confirm etcd is unreachable"}})
	db2 := serve(agent.View{Node: "db2", Primary: p, Status: cluster.NodeStatus{Role: cluster.RoleReplica, Verdict: detector.Healthy, ServerRead: true, ReadOnly: true},
		Failsafe: &agent.FailsafeView{State: agent.FailsafeHeldOff, Note: "holding off failovers"}})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()

	answers := readAgents(context.Background(), []string{db1, db2, deadAddr}, time.Second)
	var out bytes.Buffer
	printAgents(&out, "etcd [x] unreachable", answers)
	got := out.String()
	for _, want := range []string{
		"failsafe: db1: primary kept, all 2 peers confirm etcd is unreachable",
		"primary of record, as the agents last read it: db1 at epoch 3",
		"held off: holding off failovers",
		"no answer:",
		"no failover is possible while etcd is unreachable",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if answers[2].View != nil || answers[2].Err == "" {
		t.Errorf("a dead agent answered: %+v", answers[2])
	}
}
