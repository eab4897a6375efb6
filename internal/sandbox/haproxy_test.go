package sandbox

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// settings returns a HAProxy configuration's directives, comments and blank lines
// dropped, each line's whitespace collapsed; addresses (bind and server lines, the
// stats socket) and what only a real deployment needs (the server state file) are
// left out, and the agent's port written as AGENT.
func settings(cfg string) []string {
	var out []string
	for _, line := range strings.Split(cfg, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "bind", "server", "stats", "server-state-file", "load-server-state-from-file":
			continue
		}
		line = strings.Join(f, " ")
		line = regexp.MustCompile(`port \d+`).ReplaceAllString(line, "port AGENT")
		out = append(out, line)
	}
	return out
}

// TestHAProxyTemplateFollowsDeploy: the sandbox runs HAProxy with deploy/haproxy.cfg's
// settings, so the failover figures measured through it are what that file gives.
func TestHAProxyTemplateFollowsDeploy(t *testing.T) {
	deploy, err := os.ReadFile(filepath.Join("..", "..", "deploy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(Spec{Name: "hcfg", Nodes: 3}, t.TempDir(), zap.NewNop())
	h := &HAProxy{Writer: "198.18.0.6:3306", Reader: "198.18.0.6:3307", Socket: "/tmp/x.sock"}
	cfg, err := c.haproxyConfig(h)
	if err != nil {
		t.Fatal(err)
	}
	want, got := settings(string(deploy)), settings(cfg)
	if !slices.Equal(got, want) {
		t.Fatalf("the sandbox's HAProxy settings differ from deploy/haproxy.cfg's:\nsandbox: %q\ndeploy:  %q", got, want)
	}
	for _, s := range []string{"http-check send meth GET uri /primary", "http-check send meth GET uri /replica", "on-marked-down shutdown-sessions", "port AGENT"} {
		if !strings.Contains(strings.Join(got, "\n"), s) {
			t.Errorf("no %q in the settings", s)
		}
	}
	for _, n := range c.Nodes {
		if strings.Count(cfg, "server "+n.Name+" "+n.IP+":3306") != 2 {
			t.Errorf("%s is not a server of both backends:\n%s", n.Name, cfg)
		}
	}
}
