package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// exitCode is the exit status err makes baton end with (see cliflag.Main).
func exitCode(err error) int {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if err != nil {
		return exitBadInput
	}
	return 0
}

// TestUnknownClusterRefused: every command that names a cluster refuses one etcd does
// not hold, with exit status 2 and the clusters it does hold, and writes nothing:
// only agents make a cluster.
func TestUnknownClusterRefused(t *testing.T) {
	etcd, endpoint := sandboxtest.Etcd(t)
	ctx := context.Background()
	for _, k := range []string{"/baton/tour/primary", "/baton/tour/nodes/db1", "/baton/shop/policy"} {
		if _, err := etcd.Put(ctx, k, "{}"); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(t.TempDir(), "baton.yaml")
	yaml := "cluster: tourz\nnode: db1\nmysql:\n  address: 198.18.0.11:3306\n  user: baton\n  password: pw\n" +
		"etcd:\n  endpoints: [\"" + endpoint + "\"]\n"
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--etcd", endpoint, "--cluster", "tourz"}
	cases := []struct {
		cmd  *cli.Command
		args []string
	}{
		{statusCommand(), flags},
		{switchoverCommand(), append([]string{"--to", "db1", "--yes"}, flags...)},
		{failoverCommand(), append([]string{"--yes"}, flags...)},
		{rejoinCommand(), append(append([]string{}, flags...), "db1", "--yes")},
		{policyCommand(), append([]string{"show"}, flags...)},
		{policyCommand(), []string{"apply", "--config", config}},
		{historyCommand(), flags},
		{pauseCommand(), flags},
		{resumeCommand(), flags},
		{unblockCommand(), flags},
	}
	before := keys(t, etcd)
	for _, tc := range cases {
		name := tc.cmd.Name + " " + strings.Join(tc.args, " ")
		out, err := runCLI(t, tc.cmd, tc.args...)
		if code := exitCode(err); code != exitBadInput {
			t.Errorf("%s: exit status %d (%v), want %d", name, code, err, exitBadInput)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, `no cluster "tourz"`) || !strings.Contains(msg, "shop, tour") {
			t.Errorf("%s: error %q does not name the cluster and the known ones", name, msg)
		}
		if out != "" {
			t.Errorf("%s: printed %q before refusing", name, out)
		}
	}
	if after := keys(t, etcd); after != before {
		t.Errorf("keys changed:\nbefore %s\nafter  %s", before, after)
	}
}

// keys is every key in etcd with its mod revision, and the store's revision: a
// write of any kind changes it.
func keys(t *testing.T, etcd *clientv3.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cluster.DefaultEtcdTimeout)
	defer cancel()
	resp, err := etcd.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, kv := range resp.Kvs {
		b.WriteString(string(kv.Key) + " ")
	}
	return fmt.Sprintf("%srev %d", b.String(), resp.Header.Revision)
}

// TestBadNamesBeforeEtcd: a bad cluster or node name is bad input, said before etcd
// is dialled (here there is none to dial), naming the flag or argument it came in.
func TestBadNamesBeforeEtcd(t *testing.T) {
	nowhere := "unix://" + filepath.Join(t.TempDir(), "no.sock")
	cases := []struct {
		cmd  *cli.Command
		args []string
		want string
	}{
		{statusCommand(), []string{"--etcd", nowhere, "--cluster", "BAD NAME!"}, `--cluster "BAD NAME!": use letters`},
		{pauseCommand(), []string{"--etcd", nowhere, "--cluster", "-x"}, `--cluster "-x"`},
		{historyCommand(), []string{"--etcd", nowhere, "--cluster", strings.Repeat("c", 65)}, "--cluster " + `"` + strings.Repeat("c", 65) + `": longer than 64`},
		{switchoverCommand(), []string{"--etcd", nowhere, "--cluster", "shop", "--to", "db 2", "--yes"}, `--to "db 2"`},
		{rejoinCommand(), []string{"--etcd", nowhere, "--cluster", "shop", "db1;", "--yes"}, `NODE "db1;"`},
	}
	for _, tc := range cases {
		name := tc.cmd.Name + " " + strings.Join(tc.args, " ")
		_, err := runCLI(t, tc.cmd, tc.args...)
		if code := exitCode(err); code != exitBadInput || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "unreachable") {
			t.Errorf("%s: exit status %d, error %v; want %d naming %q, before dialling etcd", name, code, err, exitBadInput, tc.want)
		}
	}
}
