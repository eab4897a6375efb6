package agent

import (
	"strings"
	"testing"
)

// TestDurationNeedsAUnit: a duration written without a unit, or not as a duration,
// is named by its key, with how to write it; yaml alone says "cannot unmarshal !!int
// `500` into time.Duration".
func TestDurationNeedsAUnit(t *testing.T) {
	cases := []struct {
		add, want string
	}{
		{"timings:\n  probe_interval: 500\n", "config: timings.probe_interval: 500 needs a unit, e.g. 500ms"},
		{"timings:\n  probe_interval: \"500\"\n", "config: timings.probe_interval: 500 needs a unit"},
		{"timings:\n  session_ttl: 1.5\n", "config: timings.session_ttl: 1.5 needs a unit, e.g. 1.5ms or 1.5s"},
		{"timings:\n  confirm_lag: soon\n", `config: timings.confirm_lag: "soon" is not a duration: write it as e.g. 500ms`},
		{"vip:\n  address: 198.18.0.100/24\n  interface: eth0\n  arp_interval: 20\n", "config: vip.arp_interval: 20 needs a unit"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(minimalYAML+tc.add), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.add, err, tc.want)
		}
	}
	// Durations that read, and other type errors, are untouched.
	if _, err := Parse([]byte(minimalYAML+"timings:\n  probe_interval: 500ms\n"), nil); err != nil {
		t.Errorf("500ms: %v", err)
	}
	if _, err := Parse([]byte(minimalYAML+"timings:\n  fail_after: often\n"), nil); err == nil || !strings.Contains(err.Error(), "cannot unmarshal") {
		t.Errorf("a bad int: %v, want yaml's own error", err)
	}
}
