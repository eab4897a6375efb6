//go:build failpoint

package failpoint

import (
	"fmt"
	"os"
	"syscall"
)

// Enabled says whether this build stops at armed steps: built with -tags failpoint.
const Enabled = true

// armed is read from the environment once, when the process starts: the only state
// this package keeps, and only in this build.
var armed = arm(os.Getenv(Env))

func arm(v string) *Armed {
	names, err := Parse(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failpoint: %s=%q: %v: none armed\n", Env, v, err)
		return nil
	}
	if len(names) > 0 {
		fmt.Fprintf(os.Stderr, "failpoint: armed %v (pid %d)\n", names, os.Getpid())
	}
	return NewArmed(names)
}

// Hit stops the process (SIGSTOP to itself) the first time it reaches an armed step.
func Hit(name string) {
	if !armed.Take(name) {
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint: %s reached: stopping (pid %d); SIGCONT goes on\n", name, os.Getpid())
	_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	fmt.Fprintf(os.Stderr, "failpoint: %s: continued\n", name)
}
