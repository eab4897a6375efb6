package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// authEtcd starts an embedded etcd with authentication on: root (password "rootpw"),
// and users made by users (name -> role -> permissions), each with password "pw".
// It returns a client factory for a user.
func authEtcd(t *testing.T, roles map[string][]perm, users map[string][]string) func(user string) *clientv3.Client {
	t.Helper()
	root, endpoint := sandboxtest.Etcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(root.UserAdd(ctx, "root", "rootpw"))
	must(root.UserGrantRole(ctx, "root", "root"))
	for role, perms := range roles {
		must(root.RoleAdd(ctx, role))
		for _, p := range perms {
			must(root.RoleGrantPermission(ctx, role, p.prefix, clientv3.GetPrefixRangeEnd(p.prefix), p.typ))
		}
	}
	for user, rs := range users {
		must(root.UserAdd(ctx, user, "pw"))
		for _, r := range rs {
			must(root.UserGrantRole(ctx, user, r))
		}
	}
	must(root.AuthEnable(ctx))
	return func(user string) *clientv3.Client {
		t.Helper()
		pw := "pw"
		if user == "root" {
			pw = "rootpw"
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second,
			Username: user, Password: pw, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
}

// perm is a permission on a prefix, for authEtcd.
type perm struct {
	prefix string
	typ    clientv3.PermissionType
}

func readwrite(prefix string) perm {
	return perm{prefix, clientv3.PermissionType(clientv3.PermReadWrite)}
}
func read(prefix string) perm { return perm{prefix, clientv3.PermissionType(clientv3.PermRead)} }

// TestEtcdAccess checks the agent's etcd access check against a real etcd with
// authentication on: the role docs/configuration.md gives passes, and a user that
// lacks any part of it is named with what it lacks and the commands that grant it.
func TestEtcdAccess(t *testing.T) {
	client := authEtcd(t, map[string][]perm{
		"baton-shop":    {readwrite("/baton/shop/")},
		"baton-viewer":  {read("/baton/")},
		"baton-other":   {readwrite("/baton/other/")},
		"baton-partial": {read("/baton/shop/"), readwrite("/baton/shop/access-check/")},
		// A prefix one character short of the cluster's: "/baton/shop" also holds
		// "/baton/shopping/", and is what the check must not ask for.
		"baton-wide": {readwrite("/baton/shop")},
	}, map[string][]string{
		"agent": {"baton-shop"}, "viewer": {"baton-viewer"}, "other": {"baton-other"},
		"partial": {"baton-partial"}, "wide": {"baton-wide"}, "nobody": nil,
	})
	ctx := context.Background()

	acc, err := CheckEtcdAccess(ctx, client("agent"), "shop", "db1", "agent")
	if err != nil {
		t.Fatalf("the documented role: %v", err)
	}
	if !acc.AuthKnown || !acc.AuthEnabled {
		t.Fatalf("auth status %+v, want enabled", acc)
	}
	if _, err := CheckEtcdAccess(ctx, client("wide"), "shop", "db1", "wide"); err != nil {
		t.Fatalf("a role covering the prefix and more: %v", err)
	}
	if _, err := CheckEtcdAccess(ctx, client("root"), "shop", "db1", "root"); err != nil {
		t.Fatalf("root: %v", err)
	}
	// Nothing is left behind by the check.
	resp, err := client("root").Get(ctx, "/baton/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("keys left under /baton/ after the checks: %v, %v", resp, err)
	}

	// The agent itself: the documented role starts it, a viewer's stops it at once
	// with the permissions named (and, with no etcd.username nor client certificate,
	// how to say who it is).
	a := testAgent(t, minimalYAML)
	if err := a.checkEtcdAccess(ctx, client("agent")); err != nil {
		t.Fatalf("agent with the documented role: %v", err)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = a.checkEtcdAccess(actx, client("viewer"))
	if !errors.Is(err, ErrEtcdAccess) || !strings.Contains(err.Error(), "put:") || !strings.Contains(err.Error(), "give etcd.username") {
		t.Fatalf("agent with a read-only user: %v", err)
	}
	if actx.Err() != nil {
		t.Fatal("the agent waited instead of refusing to start")
	}

	for _, tc := range []struct {
		user      string
		want      []string // in the error
		notDenied []string // calls that must not be named
		wantRoles string
	}{
		{user: "viewer", want: []string{`etcd user "viewer"`, "put:", "txn:", "delete:", "grant-permission baton-shop --prefix=true readwrite /baton/shop/", "etcdctl user grant-role viewer baton-shop"},
			notDenied: []string{"get:", "range over the prefix:", "watch the prefix:"}, wantRoles: "baton-viewer (read /baton/*)"},
		{user: "other", want: []string{"put:", "get:", "range over the prefix:", "watch the prefix:", "txn:", "delete:"}, wantRoles: "baton-other (readwrite /baton/other/*)"},
		{user: "nobody", want: []string{"put:", "get:", "watch the prefix:"}},
		{user: "partial", want: []string{"its roles do not grant write on the whole prefix"}, notDenied: []string{"put:", "get:", "delete:", "lease revoke:"}},
	} {
		t.Run(tc.user, func(t *testing.T) {
			_, err := CheckEtcdAccess(ctx, client(tc.user), "shop", "db1", tc.user)
			var ae *EtcdAccessError
			if !errors.As(err, &ae) || !errors.Is(err, ErrEtcdAccess) {
				t.Fatalf("error %v, want an EtcdAccessError", err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not say %q: %s", w, msg)
				}
			}
			for _, w := range tc.notDenied {
				for _, d := range ae.Denied {
					if strings.HasPrefix(d, w) {
						t.Errorf("%s named as denied: %s", w, msg)
					}
				}
			}
			if tc.wantRoles != "" && !strings.Contains(msg, tc.wantRoles) {
				t.Errorf("error does not list the roles as %q: %s", tc.wantRoles, msg)
			}
			if strings.Contains(msg, "pw") {
				t.Errorf("error shows a password: %s", msg)
			}
		})
	}
}

// TestEtcdAccessWithoutAuth: with authentication off everything is allowed, and the
// check says auth is off (the agent warns).
func TestEtcdAccessWithoutAuth(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	acc, err := CheckEtcdAccess(context.Background(), cli, "shop", "db1", "")
	if err != nil {
		t.Fatal(err)
	}
	if !acc.AuthKnown || acc.AuthEnabled {
		t.Fatalf("auth status %+v, want known and off", acc)
	}
}

// TestEtcdAccessUnreachable: an etcd that does not answer is no verdict on the
// permissions: the error is not an EtcdAccessError, so the agent waits instead of
// naming a permission.
func TestEtcdAccessUnreachable(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + t.TempDir() + "/none.sock"}, DialTimeout: 200 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = CheckEtcdAccess(ctx, cli, "shop", "db1", "agent")
	if err == nil || errors.Is(err, ErrEtcdAccess) {
		t.Fatalf("error %v, want an error that is not about permissions", err)
	}
	if took := time.Since(start); took > 3*etcdAccessTimeout {
		t.Fatalf("the check took %s against an etcd that does not answer", took)
	}
}

func TestCovers(t *testing.T) {
	p := "/baton/shop/"
	want := spanOf([]byte(p), []byte(clientv3.GetPrefixRangeEnd(p)))
	sp := func(key, end string) span { return spanOf([]byte(key), []byte(end)) }
	for _, tc := range []struct {
		name  string
		spans []span
		ok    bool
	}{
		{"none", nil, false},
		{"the prefix", []span{sp(p, clientv3.GetPrefixRangeEnd(p))}, true},
		{"from key on", []span{sp("/baton/", "\x00")}, true},
		{"a wider prefix", []span{sp("/", clientv3.GetPrefixRangeEnd("/"))}, true},
		{"one key", []span{sp(p+"primary", "")}, false},
		{"two halves", []span{sp(p, p+"m"), sp(p+"m", clientv3.GetPrefixRangeEnd(p))}, true},
		{"a gap", []span{sp(p, p+"m"), sp(p+"n", clientv3.GetPrefixRangeEnd(p))}, false},
		{"starts after the prefix", []span{sp(p+"a", clientv3.GetPrefixRangeEnd(p))}, false},
		{"another cluster", []span{sp("/baton/shopping/", clientv3.GetPrefixRangeEnd("/baton/shopping/"))}, false},
	} {
		if got := covers(tc.spans, want); got != tc.ok {
			t.Errorf("%s: covers = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
