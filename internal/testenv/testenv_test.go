package testenv

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNeed runs itself in a child process so that the parent can see whether the
// child skipped or failed: a skip and a failure are both final for the test that
// called Need.
func TestNeed(t *testing.T) {
	if mode := os.Getenv("TESTENV_CHILD"); mode != "" {
		var missing error
		if mode != "nil" {
			missing = errors.New("no mariadbd")
		}
		Need(t, missing)
		t.Log("ran past Need")
		return
	}
	cases := []struct {
		name, child, require string
		wantFail             bool
		wantOut              string
	}{
		{"nothing missing runs", "nil", "", false, "ran past Need"},
		{"nothing missing runs when required", "nil", "1", false, "ran past Need"},
		{"missing skips", "missing", "", false, "skipped, needs real servers: no mariadbd"},
		{"missing fails when required", "missing", "1", true, "integration test cannot run: no mariadbd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestNeed$", "-test.v")
			cmd.Env = append(os.Environ(), "TESTENV_CHILD="+tc.child, RequireEnv+"="+tc.require)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tc.wantFail {
				t.Fatalf("child failed=%v, want %v: %s", failed, tc.wantFail, out)
			}
			if !strings.Contains(string(out), tc.wantOut) {
				t.Fatalf("child output lacks %q: %s", tc.wantOut, out)
			}
			if strings.Contains(tc.wantOut, "skipped") && strings.Contains(string(out), "ran past Need") {
				t.Fatalf("a skipped test ran on: %s", out)
			}
		})
	}
}
