package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// runCLI runs one baton command in this process and returns what it printed on
// stdout and its error.
func runCLI(t *testing.T, cmd *cli.Command, args ...string) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() {
		var b bytes.Buffer
		_, _ = io.Copy(&b, r)
		out <- b.String()
	}()
	app := &cli.App{Name: "baton", Commands: []*cli.Command{cmd}, ExitErrHandler: func(*cli.Context, error) {}}
	err = app.Run(append([]string{"baton", cmd.Name}, args...))
	os.Stdout = old
	w.Close()
	return <-out, err
}

// TestDryRunUsesTheClusterPolicy: `baton switchover --dry-run` plans with the policy
// in etcd, the one the coordinator decides with, not with Baton's defaults.
func TestDryRunUsesTheClusterPolicy(t *testing.T) {
	cli, endpoint := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "dry")
	ctx := context.Background()
	if err := store.BootstrapPrimary(ctx, nil, cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", ServerID: 1, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []cluster.NodeStatus{
		{Node: "db1", Addr: "198.18.0.11:3306", Role: cluster.RolePrimary, Verdict: detector.Healthy, ServerRead: true,
			GTID: "0-1-100", Flavor: "mariadb", ServerID: 1, LagMS: -1, StorageOK: true, Epoch: 1},
		// 5 s behind: over the default switchover_max_lag (1s), within the cluster's (10s).
		{Node: "db2", Addr: "198.18.0.12:3306", Role: cluster.RoleReplica, Verdict: detector.Healthy, ServerRead: true,
			ReadOnly: true, GTID: "0-1-100", Flavor: "mariadb", ServerID: 2, IORunning: true, SQLRunning: true,
			LagMS: 5000, StorageOK: true, Epoch: 1},
	} {
		if err := store.PutNode(ctx, 0, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, store.Keys.Coordinator()+"/694d", "db1"); err != nil {
		t.Fatal(err)
	}
	args := []string{"--etcd", endpoint, "--cluster", "dry", "--to", "db2", "--dry-run", "--json"}

	// No policy in etcd yet: planned with the defaults, and it says so.
	out, err := runCLI(t, switchoverCommand(), args...)
	var res requestResult
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		t.Fatalf("output %q: %v (command error %v)", out, jerr, err)
	}
	if res.OK || res.PolicyNote == "" || res.Policy.SwitchoverMaxLag != time.Second {
		t.Fatalf("without a cluster policy: ok %v, policy %v, note %q: want a refusal with the defaults, noted", res.OK, res.Policy, res.PolicyNote)
	}

	shared := cluster.Policy{FailoverBlock: 5 * time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: 10 * time.Second}
	if _, _, err := store.CreatePolicy(ctx, cluster.PolicyRecord{Policy: shared, SetBy: "db1"}); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, switchoverCommand(), args...)
	res = requestResult{}
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		t.Fatalf("output %q: %v (command error %v)", out, jerr, err)
	}
	if err != nil || !res.OK || res.Policy != shared || res.PolicyNote != "" {
		t.Fatalf("with the cluster policy: err %v ok %v error %q policy %v note %q", err, res.OK, res.Error, res.Policy, res.PolicyNote)
	}

	// And the text plan names it.
	out, _ = runCLI(t, switchoverCommand(), args[:len(args)-1]...)
	if !strings.Contains(out, "policy: failover_block 5m0s, confirm_lag 1s, switchover_max_lag 10s, rejoin manual (the cluster's, set by db1)") {
		t.Fatalf("text plan does not name the cluster's policy:\n%s", out)
	}
}

// TestPolicyApplyAndShow: `baton policy apply --config` makes a file's policy the
// cluster's; `baton policy show` reports which agents' files disagree.
func TestPolicyApplyAndShow(t *testing.T) {
	cli, endpoint := sandboxtest.Etcd(t)
	store := cluster.NewStore(cli, "shop")
	ctx := context.Background()
	first := cluster.Policy{FailoverBlock: 5 * time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: time.Second}
	if _, _, err := store.CreatePolicy(ctx, cluster.PolicyRecord{Policy: first, SetBy: "db1"}); err != nil {
		t.Fatal(err)
	}
	p1, p2 := first, first
	p2.ConfirmLag = 2 * time.Second
	for name, p := range map[string]*cluster.Policy{"db1": &p1, "db2": &p2} {
		if err := store.PutNode(ctx, 0, cluster.NodeStatus{Node: name, Policy: p}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runCLI(t, policyCommand(), "show", "--etcd", endpoint, "--cluster", "shop")
	norm := strings.Join(strings.Fields(out), " ")
	if err != nil || !strings.Contains(norm, "db2 DISAGREES: confirm_lag 2s (cluster: 1s)") || !strings.Contains(norm, "db1 agrees") {
		t.Fatalf("show: %v\n%s", err, out)
	}

	path := t.TempDir() + "/baton.yaml"
	yaml := "cluster: shop\nnode: db2\nmysql:\n  address: 198.18.0.12:3306\n  user: baton\n  password: pw\n" +
		"etcd:\n  endpoints: [\"" + endpoint + "\"]\ntimings:\n  confirm_lag: 2s\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, policyCommand(), "apply", "--config", path); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	snap, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Policy == nil || snap.Policy.Policy != p2 || !strings.HasPrefix(snap.Policy.SetBy, "operator:") {
		t.Fatalf("after apply: %+v", snap.Policy)
	}
	if d := cluster.PolicyDisagreements(snap.Policy, snap.Nodes); len(d) != 1 || d[0].Node != "db1" {
		t.Fatalf("after apply, disagreements %+v, want db1's", d)
	}
}
