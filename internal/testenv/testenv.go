// Package testenv decides what a test does when the machine cannot run it: Baton's
// integration tests need root and real servers (MariaDB, network namespaces, loop
// mounts). On a developer's laptop they are skipped, with one line saying what is
// missing, so that `go test ./...` still runs every pure test; under `make test` (and
// so in CI) they fail instead, because a skipped integration test proves nothing.
package testenv

import (
	"os"
	"testing"
)

// RequireEnv, when set to anything non-empty, turns a skip for a missing
// prerequisite into a failure. `make test` sets it.
const RequireEnv = "BATON_REQUIRE_INTEGRATION"

// Required reports whether missing prerequisites must fail the run rather than skip.
func Required() bool { return os.Getenv(RequireEnv) != "" }

// Need skips the test (or, when Required, fails it) if missing is not nil. missing
// says what the machine lacks and how to get it.
func Need(t testing.TB, missing error) {
	t.Helper()
	if missing == nil {
		return
	}
	if Required() {
		t.Fatalf("integration test cannot run: %v", missing)
	}
	t.Skipf("skipped, needs real servers: %v (make test runs it as root)", missing)
}
