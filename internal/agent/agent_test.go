//go:build integration

package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// TestAgentsHTTP runs real agents on a sandbox and asks their endpoints, as a load
// balancer in the client namespace would: only the writable primary answers 200 on
// /primary, and it stops the moment it cannot write.
func TestAgentsHTTP(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "agt-http", Nodes: 2, SemiSync: true, WithAgents: true})
	dial := sandbox.DialContext(c.ClientNetNS)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dial}}
	get := func(node, path string) (int, string) {
		t.Helper()
		n, err := c.Node(node)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Get("http://" + n.AgentHTTP + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", node, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitCode := func(node, path string, want int, limit time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			code, body := get(node, path)
			if code == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s%s = %d %q, want %d within %s", node, path, code, body, want, limit)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	waitCode("db1", "/primary", 200, 10*time.Second)
	waitCode("db2", "/replica", 200, 10*time.Second)
	checkSandboxGrants(t, c)
	if code, body := get("db2", "/primary"); code != 503 || !strings.Contains(body, "not") {
		t.Errorf("replica's /primary = %d %q, want 503 with a reason", code, body)
	}
	if code, _ := get("db1", "/replica"); code != 503 {
		t.Errorf("primary's /replica = %d, want 503", code)
	}
	if code, _ := get("db1", "/health"); code != 200 {
		t.Errorf("primary's /health = %d, want 200", code)
	}
	resp, err := client.Post("http://"+c.Nodes[0].AgentHTTP+"/primary", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /primary = %d, want 405: the endpoints are read-only", resp.StatusCode)
	}

	// /status is JSON and carries no secret.
	_, body := get("db1", "/status")
	var v agent.View
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("/status is not JSON: %v: %s", err, body)
	}
	if v.Node != "db1" || v.Primary == nil || v.Primary.Node != "db1" || !v.HoldsLeader {
		t.Errorf("/status = %+v, want db1 primary holding leader", v)
	}
	for _, secret := range []string{c.AdminPassword, c.ReplPassword} {
		if strings.Contains(body, secret) {
			t.Fatal("/status shows a password")
		}
	}
	// The first agent made its file's policy the cluster's; both files agree.
	if p := v.Policy; p == nil || p.Cluster == nil || p.Cluster.Policy != p.File || len(p.Disagreements) != 0 || p.Error != "" {
		t.Errorf("/status policy = %+v, want the cluster's, agreed by every file", p)
	}
	_, metrics := get("db1", "/metrics")
	for _, m := range []string{"baton_node_verdict", "baton_etcd_session_up"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// A primary that cannot write stops answering 200 on /primary within the detector's
	// budget, even though it still answers pings. With one replica and no failover
	// possible (the replica's agent is stopped), it stays primary of record.
	ctx := context.Background()
	if err := c.Fault(ctx, "db2", sandbox.KillAgent); err != nil {
		t.Fatal(err)
	}
	if err := c.Fault(ctx, "db1", sandbox.FreezeWrites); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	body = waitCode("db1", "/primary", 503, 5*time.Second)
	t.Logf("/primary refused %s after writes froze: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(body))
	if err := c.Fault(ctx, "db1", sandbox.ThawWrites); err != nil {
		t.Fatal(err)
	}
	waitCode("db1", "/primary", 200, 10*time.Second)
}

// checkSandboxGrants: the sandbox gives Baton's account exactly the privileges the
// agent asks for (agent.AdminPrivileges and agent.OptionalPrivileges), no more, so every test on a sandbox checks
// that list too; the agents above started, so it is enough.
func checkSandboxGrants(t *testing.T, c *sandbox.Cluster) {
	t.Helper()
	db, err := c.RootDB("db1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SHOW GRANTS FOR "+c.AdminUser+"@'%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		privs, rest, ok := strings.Cut(strings.TrimPrefix(line, "GRANT "), " ON ")
		if !ok || privs == "USAGE" {
			continue
		}
		on, _, _ := strings.Cut(rest, " TO ")
		on = strings.ReplaceAll(on, "`", "")
		for _, p := range strings.Split(privs, ", ") {
			have[p+" ON "+on] = true
		}
	}
	want := map[string]bool{}
	for _, p := range append(agent.AdminPrivileges(replication.FlavorMariaDB, true), agent.OptionalPrivileges()...) {
		want[p.String()] = true
	}
	for p := range want {
		if !have[p] {
			t.Errorf("the sandbox does not grant %s", p)
		}
	}
	for p := range have {
		if !want[p] {
			t.Errorf("the sandbox grants %s, which the agent does not ask for", p)
		}
	}
}
