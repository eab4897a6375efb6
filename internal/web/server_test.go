package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// seed writes a cluster's state as agents and a coordinator would: the primary of
// record, each node's status on a lease, and a history event.
func seed(t *testing.T, cli *clientv3.Client, clusterName string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store := cluster.NewStore(cli, clusterName)
	if err := store.BootstrapPrimary(ctx, nil, cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", Epoch: 1, Since: t0}); err != nil {
		t.Fatal(err)
	}
	lease, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []cluster.NodeStatus{
		{Node: "db1", Addr: "198.18.0.11:3306", Role: cluster.RolePrimary, Verdict: detector.Healthy, VIP: true, LagMS: -1},
		{Node: "db2", Addr: "198.18.0.12:3306", Role: cluster.RoleReplica, Verdict: detector.Healthy,
			Source: "198.18.0.11:3306", IORunning: true, SQLRunning: true, LagMS: 3},
	} {
		if err := store.PutNode(ctx, lease.ID, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.AppendHistory(ctx, cluster.Event{Kind: cluster.EventBootstrap, To: "db1", Epoch: 1, Reason: "the one writable server", Started: t0}); err != nil {
		t.Fatal(err)
	}
}

// serve runs a Server of cli for the test and returns its URL.
func serve(t *testing.T, cli *clientv3.Client, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Client, cfg.Log, cfg.Rescan, cfg.MinRedraw = cli, zaptest.NewLogger(t), 100*time.Millisecond, 50*time.Millisecond
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	h := s.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		cancel()
		hs.CloseClientConnections()
		hs.Close()
		<-done
	})
	return hs.URL
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// events reads the server's event stream and sends the data of each "clusters"
// event.
func events(t *testing.T, ctx context.Context, url string) <-chan string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events Content-Type = %q", ct)
	}
	out := make(chan string, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if name == "clusters" {
					out <- strings.Join(data, "\n")
				}
				name, data = "", nil
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return out
}

// waitEvent waits for a "clusters" event whose data has every one of want.
func waitEvent(t *testing.T, ch <-chan string, limit time.Duration, want ...string) string {
	t.Helper()
	deadline := time.After(limit)
	var last string
	for {
		select {
		case data, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended; last event:\n%s", last)
			}
			last = data
			all := true
			for _, w := range want {
				all = all && strings.Contains(data, w)
			}
			if all {
				return data
			}
		case <-deadline:
			t.Fatalf("no event with %q within %s; last event:\n%s", want, limit, last)
		}
	}
}

// TestServerFollowsEtcd: the page shows what etcd holds, and the event stream
// carries each change (a new primary, a new cluster, a cluster gone) as it happens.
func TestServerFollowsEtcd(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	seed(t, cli, "alpha")
	url := serve(t, cli, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := events(t, ctx, url)
	waitEvent(t, ch, 5*time.Second, `data-cluster="alpha" data-primary="db1"`, "replicates from db1", "the one writable server")

	resp, page := get(t, url+"/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `data-primary="db1"`) || !strings.Contains(page, "<!doctype html>") {
		t.Fatalf("GET / = %d:\n%s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}

	// A failover's commit: the primary key changes, and the history gets the event.
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	p := cluster.Primary{Node: "db2", Addr: "198.18.0.12:3306", Epoch: 2, Since: time.Now()}
	b, _ := json.Marshal(p)
	if _, err := cli.Put(wctx, cluster.NewKeys("alpha").Primary(), string(b)); err != nil {
		t.Fatal(err)
	}
	ev := cluster.Event{Kind: cluster.EventFailover, From: "db1", To: "db2", Epoch: 2, Reason: "db1 unwritable", Started: time.Now(),
		Took: 900 * time.Millisecond, Steps: []cluster.Step{{Name: "announce", Took: 100 * time.Millisecond}, {Name: "promote", Took: 700 * time.Millisecond}}}
	if err := cluster.NewStore(cli, "alpha").AppendHistory(wctx, ev); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ch, 3*time.Second, `data-primary="db2"`, "<strong>failover</strong> db1 → db2", "promote: 700 ms")
	t.Logf("new primary on the event stream %s after the commit", time.Since(start).Round(time.Millisecond))

	// Another cluster appears, then the first goes.
	seed(t, cli, "beta")
	waitEvent(t, ch, 3*time.Second, `data-cluster="alpha"`, `data-cluster="beta"`)
	if _, err := cli.Delete(wctx, "/baton/alpha/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	data := waitEvent(t, ch, 3*time.Second, `data-cluster="beta"`)
	for strings.Contains(data, `data-cluster="alpha"`) {
		data = waitEvent(t, ch, 3*time.Second, `data-cluster="beta"`)
	}
}

// TestServerServes: the static files, a 404 for anything else, and no write method.
func TestServerServes(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	url := serve(t, cli, nil)
	for _, tc := range []struct {
		path, ctype string
		code        int
	}{
		{"/static/web.css", "text/css; charset=utf-8", 200},
		{"/static/web.js", "text/javascript; charset=utf-8", 200},
		{"/static/page.html", "", 404},
		{"/nothing", "", 404},
	} {
		resp, _ := get(t, url+tc.path)
		if resp.StatusCode != tc.code || (tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype) {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.code, tc.ctype)
		}
	}
	resp, err := http.Post(url+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
	_, page := get(t, url+"/")
	if !strings.Contains(page, "No cluster under the etcd prefix /baton/ yet.") {
		t.Errorf("empty etcd: page lacks the empty notice:\n%s", page)
	}
}

func TestBasicAuth(t *testing.T) {
	if _, err := BasicAuth("ops", "", http.NotFoundHandler()); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("empty password: err = %v", err)
	}
	cli, _ := sandboxtest.Etcd(t)
	url := serve(t, cli, func(h http.Handler) http.Handler {
		a, err := BasicAuth("ops", "s3cret", h)
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
	for _, tc := range []struct {
		name, user, pass string
		code             int
	}{
		{"none", "", "", 401},
		{"wrong password", "ops", "guess", 401},
		{"wrong user", "root", "s3cret", 401},
		{"right", "ops", "s3cret", 200},
	} {
		for _, path := range []string{"/", "/events", "/static/web.js"} {
			req, _ := http.NewRequest(http.MethodGet, url+path, nil)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			resp.Body.Close()
			cancel()
			if resp.StatusCode != tc.code {
				t.Errorf("%s: GET %s = %d, want %d", tc.name, path, resp.StatusCode, tc.code)
			}
			if tc.code == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("%s: no basic-auth challenge", tc.name)
			}
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	cli, _ := sandboxtest.Etcd(t)
	for field, mut := range map[string]func(*Config){
		"Client":    func(c *Config) { c.Client = nil },
		"History":   func(c *Config) { c.History = 0 },
		"Rescan":    func(c *Config) { c.Rescan = 0 },
		"Timeout":   func(c *Config) { c.Timeout = -time.Second },
		"KeepAlive": func(c *Config) { c.KeepAlive = 0 },
	} {
		cfg := DefaultConfig()
		cfg.Client = cli
		mut(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("bad %s: err = %v, want one naming it", field, err)
		}
	}
}
