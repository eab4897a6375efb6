//go:build integration

package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/testenv"
	"gopkg.in/yaml.v3"
)

// promtool runs Prometheus's promtool with args and fails the test with its output if
// it does not succeed. Without promtool the test is skipped, or fails under make test.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Need(t, fmt.Errorf("promtool not found in PATH: install Debian's prometheus package (apt-get install prometheus), which ships it"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestRulesCheck runs `promtool check rules`: the syntax, every PromQL expression and
// every annotation template.
func TestRulesCheck(t *testing.T) {
	promtool(t, "check", "rules", rulesFile)
}

// TestRulesUnitTests runs `promtool test rules`: each alert against series where it
// must fire (with its labels and annotations) and where it must not.
func TestRulesUnitTests(t *testing.T) {
	promtool(t, "test", "rules", rulesTestFile)
}

// TestDashboardQueries has promtool parse every expression of the dashboard, as the
// expressions of recording rules.
func TestDashboardQueries(t *testing.T) {
	d := readDashboard(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	add := func(where, expr string) {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query:%d", len(rules)), Expr: grafanaVars.Replace(expr)})
		if strings.Contains(grafanaVars.Replace(expr), "$") {
			t.Errorf("%s: a variable the test does not know in %q", where, expr)
		}
	}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			add(p.Title, q.Expr)
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			add("annotation "+a.Name, a.Expr)
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", f)
}
