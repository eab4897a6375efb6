package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// metricRef is a metric name in a PromQL expression; Baton's all start with baton_.
var metricRef = regexp.MustCompile(`\bbaton_[a-z0-9_]+`)

// TestDeployMetrics checks that the alert rules, their tests and the Grafana dashboard
// use only metrics the agent registers: a renamed metric must not leave an alert that
// can never fire or a panel that stays empty.
func TestDeployMetrics(t *testing.T) {
	var names []string
	for _, r := range registeredMetrics(t) {
		names = append(names, r.Name)
	}
	check := func(where, text string) {
		t.Helper()
		for _, ref := range metricRef.FindAllString(text, -1) {
			if !slices.Contains(names, ref) {
				t.Errorf("%s uses %s, which the agent does not register", where, ref)
			}
		}
	}
	for _, f := range []string{"../../deploy/prometheus/baton.rules.yml", "../../deploy/prometheus/baton.rules.test.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		check(f, string(b))
	}

	b, err := os.ReadFile("../../deploy/grafana/baton.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("deploy/grafana/baton.json is not valid JSON: %v", err)
	}
	var exprs []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				s, ok := e.(string)
				if !ok {
					walk(path+"."+k, e)
					continue
				}
				// Panel and annotation queries are "expr"; variables' are "query" and
				// "definition".
				switch k {
				case "expr":
					exprs = append(exprs, s)
					check("deploy/grafana/baton.json "+path+"."+k, s)
				case "query", "definition":
					check("deploy/grafana/baton.json "+path+"."+k, s)
				}
				continue
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	walk("", dash)
	if len(exprs) == 0 {
		t.Fatal("the dashboard has no expressions")
	}
	for _, e := range exprs {
		if !metricRef.MatchString(e) && !strings.Contains(e, "up{") {
			t.Errorf("dashboard expression %q uses no Baton metric", e)
		}
	}
}
