// Package lab holds what Baton's lab (the baton-lab binary: the sandbox commands, the
// demo and the benchmarks) shares: where the two binaries are, polling, logging. The
// lab runs real local clusters to try and measure Baton; nothing in the product
// binary imports it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// Binaries are the two executables a sandbox runs: the product, whose `baton agent`
// runs on each node (and whose operator commands the benchmarks call), and the lab
// binary, whose hidden sandbox commands run the etcd members and the fault holders.
type Binaries struct {
	Baton string
	Lab   string
	// Failpoint is baton built with -tags failpoint (bin/baton-failpoint), whose
	// agents stop at a named step on request: the fault campaign runs its agents
	// from it. "" when there is none.
	Failpoint string
}

// FailpointName is the file name of baton built with -tags failpoint, next to baton.
const FailpointName = "baton-failpoint"

// FindBinaries returns the running lab binary and the baton binary: baton when given
// (a --baton flag), else the baton next to the lab binary (bin/baton beside
// bin/baton-lab); and baton-failpoint next to that baton, when there is one. It names
// what is missing and how to get it.
func FindBinaries(baton string) (Binaries, error) {
	exe, err := os.Executable()
	if err != nil {
		return Binaries{}, fmt.Errorf("find own executable: %w", err)
	}
	b := Binaries{Baton: baton, Lab: exe}
	if b.Baton == "" {
		b.Baton = filepath.Join(filepath.Dir(exe), "baton")
	}
	fi, err := os.Stat(b.Baton)
	switch {
	case errors.Is(err, os.ErrNotExist) && baton == "":
		return Binaries{}, fmt.Errorf("baton: no baton executable next to %s (%s): run `make build`, or give its path with --baton", exe, b.Baton)
	case err != nil:
		return Binaries{}, fmt.Errorf("baton: %w", err)
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		return Binaries{}, fmt.Errorf("baton: %s is not an executable", b.Baton)
	}
	if fp := filepath.Join(filepath.Dir(b.Baton), FailpointName); executable(fp) {
		b.Failpoint = fp
	}
	return b, nil
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Until polls cond every 20 ms until it holds, limit passes or ctx ends.
func Until(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Logger logs to stderr, human-readable, at level and up, without stack traces.
func Logger(level zapcore.Level) *zap.Logger {
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.DisableStacktrace = true
	log, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return log
}

// IsTTY says whether f is a terminal: a character device that answers a terminal
// ioctl (/dev/null is a character device too, and nobody types into it).
func IsTTY(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
