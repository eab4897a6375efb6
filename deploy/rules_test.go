package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	rulesFile     = "prometheus/baton.rules.yml"
	rulesTestFile = "prometheus/baton.rules.test.yml"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// readYAML decodes path into v; strict refuses fields v does not have.
func readYAML(t *testing.T, path string, v any, strict bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(strict)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestRulesShape checks what promtool does not: every alert has a severity a pager
// can route on and annotations that say what to do, and the unit tests cover every
// alert both firing and not firing.
func TestRulesShape(t *testing.T) {
	var rules ruleFile
	readYAML(t, rulesFile, &rules, true)
	var tests ruleTestFile
	readYAML(t, rulesTestFile, &tests, false)
	if !slices.Equal(tests.RuleFiles, []string{"baton.rules.yml"}) {
		t.Errorf("%s tests %v, want [baton.rules.yml]", rulesTestFile, tests.RuleFiles)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if slices.Contains(alerts, r.Alert) {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			alerts = append(alerts, r.Alert)
			if !strings.HasPrefix(r.Alert, "Baton") {
				t.Errorf("alert %s: name it Baton...", r.Alert)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, k := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, k)
				}
			}
			if !firing[r.Alert] {
				t.Errorf("alert %s: no unit test where it fires", r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("alert %s: no unit test where it must not fire", r.Alert)
			}
		}
	}
	for name := range firing {
		if !slices.Contains(alerts, name) {
			t.Errorf("%s tests alert %s, which the rules do not define", rulesTestFile, name)
		}
	}
	// The alerts the operations guide promises.
	for _, want := range []string{"BatonPrimaryUnwritable", "BatonNoPrimaryOfRecord", "BatonFailoverHappened",
		"BatonNodeQuarantined", "BatonSemiSyncUnprotected", "BatonDiskFullWithinAnHour", "BatonReplicaLagging",
		"BatonAgentDown", "BatonEtcdSessionLost", "BatonFailsafeActive", "BatonDiskFillingWithinADay", "BatonAutoIncrementRunningOut",
		"BatonAutoIncrementExhaustedSoon", "BatonPurgeLagGrowing", "BatonLongOpenTransaction", "BatonConnectionsRunningOut"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
}
