package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestCLIOnSecureEtcd runs the operator's commands against an etcd that requires a
// client certificate and checks roles: the viewer's certificate reads a cluster and
// cannot change it, the cluster's role can, and without a certificate nothing is
// read. The certificate flags are named in their errors.
func TestCLIOnSecureEtcd(t *testing.T) {
	e := sandboxtest.NewSecureEtcd(t)
	ctx := context.Background()
	if err := cluster.NewStore(e.Root, "shop").BootstrapPrimary(ctx, nil, cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", ServerID: 1, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	e.Grant(t, "baton-viewer", "baton-viewer", cluster.Root, true)
	e.Grant(t, "baton-shop-operator", "baton-shop", cluster.NewKeys("shop").Prefix, false)
	vcert, vkey := e.Issue(t, "baton-viewer")
	ocert, okey := e.Issue(t, "baton-shop-operator")
	base := []string{"--etcd", e.Endpoint, "--etcd-ca", e.CAFile, "--cluster", "shop"}
	as := func(cert, key string, extra ...string) []string {
		return append(append(append([]string(nil), base...), "--etcd-cert", cert, "--etcd-key", key), extra...)
	}
	paused := func() bool {
		t.Helper()
		snap, err := cluster.NewStore(e.Root, "shop").Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Settings.Paused
	}

	out, err := runCLI(t, statusCommand(), as(vcert, vkey, "--json")...)
	if err != nil || !strings.Contains(out, `"db1"`) {
		t.Fatalf("status as the viewer: %v\n%s", err, out)
	}
	// The server name flag: etcd's certificate names localhost too.
	if _, err := runCLI(t, historyCommand(), as(vcert, vkey, "--etcd-server-name", "localhost")...); err != nil {
		t.Fatalf("history with --etcd-server-name: %v", err)
	}
	if _, err := runCLI(t, historyCommand(), as(vcert, vkey, "--etcd-server-name", "etcd.example")...); err == nil {
		t.Fatal("a server name etcd's certificate does not hold was accepted")
	}
	if _, err := runCLI(t, pauseCommand(), as(vcert, vkey)...); err == nil || !strings.Contains(err.Error(), "permission denied") || paused() {
		t.Fatalf("pause as the viewer: %v (paused %v); want permission denied and no change", err, paused())
	}
	if _, err := runCLI(t, pauseCommand(), as(ocert, okey)...); err != nil || !paused() {
		t.Fatalf("pause with the cluster's role: %v (paused %v)", err, paused())
	}
	// No client certificate: etcd has no user to check, and answers nothing.
	if _, err := runCLI(t, statusCommand(), base...); err == nil {
		t.Fatal("status without a client certificate read the cluster")
	}
	if _, err := runCLI(t, resumeCommand(), base...); err == nil || !paused() {
		t.Fatalf("resume without a client certificate: %v (paused %v)", err, paused())
	}

	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not pem"), 0o600)
	plain := "unix://" + strings.TrimPrefix(e.Endpoint, "unixs://")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{as("/nonexistent/c.crt", okey), "--etcd-cert: open /nonexistent/c.crt"},
		{as(ocert, "/nonexistent/c.key"), "--etcd-key: open /nonexistent/c.key"},
		{append(append([]string(nil), base...), "--etcd-cert", ocert), "--etcd-cert and --etcd-key go together"},
		{[]string{"--etcd", e.Endpoint, "--etcd-ca", "/nonexistent/ca.crt", "--cluster", "shop"}, "--etcd-ca: open /nonexistent/ca.crt"},
		{[]string{"--etcd", e.Endpoint, "--etcd-ca", garbage, "--cluster", "shop"}, "etcd.tls.ca " + garbage + ": no PEM certificate"},
		{as(ocert, vkey), "tls: private key does not match public key"},
		{[]string{"--etcd", plain, "--etcd-ca", e.CAFile, "--cluster", "shop"}, "plain text while etcd TLS is set"},
		{[]string{"--etcd", e.Endpoint, "--cluster", "shop"}, "is a TLS endpoint: give --etcd-ca"},
		{[]string{"--etcd", plain, "--etcd-user", "someone", "--cluster", "shop"}, "--etcd-user someone: set its password in BATON_ETCD_PASSWORD"},
	} {
		_, err := runCLI(t, pauseCommand(), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
		if code := exitCode(err); code != exitBadInput {
			t.Errorf("%v: exit status %d, want %d", tc.args, code, exitBadInput)
		}
	}
	if !paused() {
		t.Fatal("a refused command changed the cluster")
	}
}
