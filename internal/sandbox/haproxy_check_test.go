//go:build integration

package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/testenv"
)

// TestHAProxyConfigsValid: the sandbox's HAProxy configuration and
// deploy/haproxy.cfg are both valid for the haproxy the sandbox runs (haproxy -c).
// That they say the same is TestHAProxyTemplateFollowsDeploy's.
func TestHAProxyConfigsValid(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		testenv.Need(t, fmt.Errorf("haproxy not in PATH: apt-get install haproxy (make deps-test installs it)"))
	}
	c := newCluster(Spec{Name: "hcfg", Nodes: 3}, t.TempDir(), zap.NewNop())
	cfg, err := c.haproxyConfig(&HAProxy{Writer: "198.18.0.6:3306", Reader: "198.18.0.6:3307", Socket: "/tmp/x.sock"})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{file, filepath.Join("..", "..", "deploy", "haproxy.cfg")} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, "-c", "-f", f).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("haproxy -c -f %s: %v\n%s", f, err, out)
		}
	}
}
