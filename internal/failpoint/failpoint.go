// Package failpoint names the steps at which the lab's fault campaign can pause an
// agent on purpose: a process paused between two steps (a VM frozen, a long GC, a
// scheduler stall) at the worst moment, reproducibly.
//
// Hit(name) marks a step. In the product's build it does nothing (an empty function
// the compiler drops). Built with `-tags failpoint`, an agent whose environment names
// a step (BATON_FAILPOINT=after-start-slave, or several separated by commas) stops
// itself with SIGSTOP the first time it reaches that step, after one line on its
// standard error; whoever started it sends SIGCONT to let it go on. Each named step
// stops the process once: a step reached again later passes. The environment is
// read once, when the process starts.
//
// The campaign runs its agents from a baton built with the tag (bin/baton-failpoint,
// `make build`); the product's bin/baton never is.
package failpoint

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Env is the environment variable that arms failpoints in a build with the tag.
const Env = "BATON_FAILPOINT"

// The named steps.
const (
	// AfterStartSlave: replication.Instance.Follow has run START SLAVE and still
	// holds the server's replication lock.
	AfterStartSlave = "after-start-slave"
	// BeforePromote: the reconciler found the node not fenced without etcd and is
	// about to make its server writable (Promote).
	BeforePromote = "before-promote"
	// BeforeVIPAcquire: the reconciler found the node not fenced without etcd and is
	// about to add the virtual IP (Acquire).
	BeforeVIPAcquire = "before-vip-acquire"
	// SessionCreate: the agent is making its etcd session.
	SessionCreate = "session-create"
	// SalvageAnswer: a failed primary's agent has read its binary logs for a
	// salvage request and is about to send its answer.
	SalvageAnswer = "salvage-answer"
	// BeforeSalvageApply: a failover flow has the failed primary's transactions and
	// is about to apply them to its candidate.
	BeforeSalvageApply = "before-salvage-apply"
	// SalvageRelayStarted: a candidate's agent has started its server's SQL thread
	// on a salvage's relay log (replication.Instance.ApplyRelay), and holds the
	// server's replication lock.
	SalvageRelayStarted = "salvage-relay-started"
)

// Names lists every named step.
func Names() []string {
	return []string{AfterStartSlave, BeforePromote, BeforeVIPAcquire, SessionCreate, SalvageAnswer, BeforeSalvageApply, SalvageRelayStarted}
}

// Parse reads the value of Env: step names separated by commas, each one of Names.
func Parse(v string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(v, ",") {
		name := strings.TrimSpace(f)
		if name == "" {
			continue
		}
		if !slices.Contains(Names(), name) {
			return nil, fmt.Errorf("failpoint %q: unknown step, use one of %s", name, strings.Join(Names(), ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// Armed is the set of steps a process stops at, each once.
type Armed struct {
	mu    sync.Mutex
	names []string // armed, not reached yet
}

// NewArmed arms the named steps.
func NewArmed(names []string) *Armed { return &Armed{names: slices.Clone(names)} }

// Take says whether name is armed and not reached yet, and disarms it: true once per
// armed step.
func (a *Armed) Take(name string) bool {
	if a == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.Index(a.names, name)
	if i < 0 {
		return false
	}
	a.names = slices.Delete(a.names, i, i+1)
	return true
}

// Pending lists the armed steps not reached yet.
func (a *Armed) Pending() []string {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.names)
}
