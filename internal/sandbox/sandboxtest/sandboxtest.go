// Package sandboxtest brings up real sandbox clusters for tests: it builds the baton
// and baton-lab binaries once per test process (the agents run the first, the
// sandbox's helper processes the second) and tears every cluster down when its test
// ends, failed or not. On a machine that cannot run a sandbox (not root, no MariaDB)
// the tests that need one are skipped, or fail under `make test`: see
// internal/testenv.
//
// It also holds the small helpers that every package's integration tests share.
//
// Tests that need a sandbox, or anything else only root or a fully equipped machine
// has, are integration tests: they live in files built with the integration tag
// (`//go:build integration`), so that `go test ./...` and `make unit` run the pure
// tests alone, as any user, and `make test` everything. A package's integration
// files call it from TestMain:
//
//	func TestMain(m *testing.M) { sandboxtest.Main(m) }
//
// and in a test:
//
//	c := sandboxtest.Up(t, sandbox.Spec{Name: "repl1", Nodes: 3})
package sandboxtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/testenv"
)

// binaryEnv carries the built binary's path from Main (or `make test`) to Up;
// missingEnv carries why no sandbox can run on this machine; keepFailedEnv names a
// directory where Up copies the sandbox of a test that failed (its logs) before
// taking it down.
const (
	binaryEnv     = "BATON_TEST_BINARY"
	missingEnv    = "BATON_TEST_SANDBOX_MISSING"
	keepFailedEnv = "BATON_KEEP_FAILED"
)

// Main builds the baton binary, runs the tests and removes the binary. When the
// machine cannot run a sandbox it says so in one line and runs the tests anyway: the
// pure ones pass, the ones that need a sandbox skip (or fail, when
// testenv.Required).
//
// With BATON_TEST_BINARY set to a built baton (baton-lab next to it), as `make test`
// does after `make build`, nothing is built: every package's tests use those.
func Main(m *testing.M) {
	if err := sandbox.Requirements(); err != nil {
		if testenv.Required() {
			fmt.Fprintf(os.Stderr, "sandbox tests cannot run: %v\n", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "tests that need a sandbox are skipped: %v\n", err)
		os.Setenv(missingEnv, err.Error())
		os.Exit(m.Run())
	}
	if bin := os.Getenv(binaryEnv); bin != "" {
		if err := prebuilt(bin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "baton-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	bin, err := Build(dir)
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv(binaryEnv, bin)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Build compiles cmd/baton and cmd/baton-lab into dir and returns baton's path;
// baton-lab is next to it (see LabBinary), and so is baton-failpoint, cmd/baton
// built with -tags failpoint (see FailpointBinary).
func Build(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, b := range []struct{ out, pkg, tags string }{
		{"baton", "baton", ""}, {"baton-lab", "baton-lab", ""}, {"baton-failpoint", "baton", "failpoint"},
	} {
		args := []string{"build", "-o", filepath.Join(dir, b.out)}
		if b.tags != "" {
			args = append(args, "-tags", b.tags)
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "github.com/baton-ha/baton/cmd/"+b.pkg)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s for the sandbox: %w: %s", b.out, err, out)
		}
	}
	return filepath.Join(dir, "baton"), nil
}

// prebuilt checks that bin and baton-lab next to it are executable files.
func prebuilt(bin string) error {
	if !filepath.IsAbs(bin) {
		return fmt.Errorf("%s=%s: must be an absolute path (each package's tests run in its own directory)", binaryEnv, bin)
	}
	for _, p := range []string{bin, filepath.Join(filepath.Dir(bin), "baton-lab")} {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s=%s: %w (run `make build`, or unset it to build here)", binaryEnv, bin, err)
		}
		if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s=%s: %s is not an executable file", binaryEnv, bin, p)
		}
	}
	return nil
}

// Need skips (or fails, see testenv) a test that needs a sandbox on a machine that
// cannot run one.
func Need(t testing.TB) {
	t.Helper()
	if why := os.Getenv(missingEnv); why != "" {
		testenv.Need(t, errors.New(why))
	}
}

// Binary is the baton binary built by Main.
func Binary(t testing.TB) string {
	t.Helper()
	Need(t)
	bin := os.Getenv(binaryEnv)
	if bin == "" {
		t.Fatal("no baton binary: call sandboxtest.Main(m) from TestMain")
	}
	return bin
}

// LabBinary is the baton-lab binary built by Main, next to Binary.
func LabBinary(t testing.TB) string {
	t.Helper()
	return filepath.Join(filepath.Dir(Binary(t)), "baton-lab")
}

// FailpointBinary is baton built with -tags failpoint by Main, next to Binary: its
// agents stop at a named step on request (internal/failpoint).
func FailpointBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(Binary(t)), "baton-failpoint")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no baton built with -tags failpoint next to baton (`make build` writes bin/baton-failpoint): %v", err)
	}
	return bin
}

// Up brings up a sandbox for the test and tears it down when the test ends. Its
// agents run Binary, or spec.Binary when set (FailpointBinary, say).
func Up(t testing.TB, spec sandbox.Spec) *sandbox.Cluster {
	t.Helper()
	bin := Binary(t)
	if spec.Binary == "" {
		spec.Binary = bin
	}
	spec.LabBinary = LabBinary(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A test owns its sandbox's name: one still running from an interrupted run of
	// the same test goes first.
	if old, err := sandbox.Open(spec.Root, spec.Name, log); err == nil {
		if err := old.Down(ctx); err != nil {
			t.Fatalf("take down a leftover sandbox %s: %v", spec.Name, err)
		}
	}
	c, err := sandbox.Up(ctx, spec, log)
	if err != nil {
		t.Fatalf("sandbox up %s: %v", spec.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if dir := os.Getenv(keepFailedEnv); dir != "" && t.Failed() {
			// Its servers' and agents' logs, for a person to read.
			if err := exec.Command("cp", "-r", c.Dir, dir).Run(); err != nil {
				t.Logf("keep the failed sandbox in %s: %v", dir, err)
			}
		}
		if err := c.Down(ctx); err != nil {
			t.Errorf("sandbox down %s: %v", spec.Name, err)
		}
	})
	return c
}

// WaitFor polls cond every 50 ms until it holds, and fails the test when limit passes
// first, saying what did not happen.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RootDB opens a root connection to node's server over its socket, closed when the
// test ends.
func RootDB(t testing.TB, c *sandbox.Cluster, node string) *sql.DB {
	t.Helper()
	db, err := c.RootDB(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Exec runs each statement in turn and fails the test at the first error.
func Exec(t testing.TB, ctx context.Context, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}
