package detector

import (
	"fmt"
	"time"
)

// Observation is what one round of probes says on its own (see Assess).
type Observation struct {
	At time.Time
	// Verdict is Healthy or a failure verdict; never Suspect or Unknown.
	Verdict Verdict
	Reason  string
	// Certain says that this round's failure is a fact, not a suspicion (see
	// Certain): the machine takes it at once, without waiting for fail_after rounds.
	// Never set for a healthy round.
	Certain bool
}

// Change is a change of verdict, reported once.
type Change struct {
	// At is the observation's time: for a Detector, when the round that caused the
	// change ended, that is, when the verdict became known.
	At     time.Time `json:"at"`
	From   Verdict   `json:"from"`
	To     Verdict   `json:"to"`
	Reason string    `json:"reason"`
	// Lasted is how long the previous verdict held (0 when it was Unknown).
	Lasted time.Duration `json:"lasted_ns"`
}

// Machine applies hysteresis to observations. A healthy server becomes Suspect at
// the first failed round and takes the latest round's failure verdict after failAfter
// failed rounds in a row. Going back to Healthy, from Suspect or from a failure,
// takes recoverAfter healthy rounds in a row, so a server that fails every other
// round stays Suspect instead of flapping. A failed server whose failure changes kind
// (unwritable, then unreachable) takes the new verdict after failAfter rounds of it.
// The first round decides at once from Unknown when it is healthy. A certain
// failure (Observation.Certain) decides at once too: hysteresis guards against
// timeouts that may be a hiccup, and a certain failure is none.
//
// Machine is pure: time comes from the observations, never from a clock. It is not
// safe for concurrent use.
type Machine struct {
	failAfter, recoverAfter int

	verdict Verdict
	since   time.Time
	reason  string

	bad, good int     // consecutive failed / healthy rounds
	kind      Verdict // verdict of the latest failed round
	kindRun   int     // consecutive failed rounds of that verdict
	// afresh: the rounds so far are not evidence any more (Afresh); the next one
	// decides as from Unknown.
	afresh bool
}

// NewMachine returns a Machine in the Unknown verdict.
func NewMachine(failAfter, recoverAfter int) (*Machine, error) {
	if failAfter < 1 {
		return nil, fmt.Errorf("new machine: fail_after: %d, must be at least 1", failAfter)
	}
	if recoverAfter < 1 {
		return nil, fmt.Errorf("new machine: recover_after: %d, must be at least 1", recoverAfter)
	}
	return &Machine{failAfter: failAfter, recoverAfter: recoverAfter}, nil
}

// Verdict returns the current verdict, the reason given when it was reached, and since
// when it holds.
func (m *Machine) Verdict() (Verdict, string, time.Time) { return m.verdict, m.reason, m.since }

// Pending says whether the latest rounds disagree with the current verdict, so that a
// change may come within the next few rounds: the detector probes faster then.
func (m *Machine) Pending() bool {
	switch m.verdict {
	case Unknown, Suspect:
		return true
	case Healthy:
		return m.bad > 0
	}
	return m.good > 0 || m.kind != m.verdict
}

// Observe feeds one round's observation and returns the change it causes, if any.
func (m *Machine) Observe(o Observation) (Change, bool) {
	afresh := m.afresh
	m.afresh = false
	if o.Verdict == Healthy {
		m.good++
		m.bad, m.kindRun, m.kind = 0, 0, Unknown
		switch {
		case m.verdict == Healthy:
			return Change{}, false
		case m.verdict == Unknown, afresh:
			return m.change(o.At, Healthy, o.Reason), true
		case m.good >= m.recoverAfter:
			return m.change(o.At, Healthy, fmt.Sprintf("%s (%d healthy rounds in a row after %s for %s)",
				o.Reason, m.good, m.verdict, fmtLatency(o.At.Sub(m.since)))), true
		}
		return Change{}, false
	}

	m.good = 0
	m.bad++
	from := m.verdict
	if afresh {
		// Counted from this round, as from Unknown (Suspect stays Suspect): a
		// failure needs fail_after rounds of its own.
		m.bad, m.kind, m.kindRun = 1, Unknown, 0
		if from != Suspect {
			from = Unknown
		}
	}
	if o.Verdict == m.kind {
		m.kindRun++
	} else {
		m.kind, m.kindRun = o.Verdict, 1
	}
	if o.Certain && m.verdict != o.Verdict {
		return m.change(o.At, o.Verdict, fmt.Sprintf("%s (certain: not waiting for %d failed rounds)", o.Reason, m.failAfter)), true
	}
	switch from {
	case Unknown, Healthy:
		if m.bad >= m.failAfter {
			return m.change(o.At, o.Verdict, o.Reason), true
		}
		return m.change(o.At, Suspect, fmt.Sprintf("%s (failed round 1 of %d)", o.Reason, m.failAfter)), true
	case Suspect:
		if m.bad >= m.failAfter {
			return m.change(o.At, o.Verdict, fmt.Sprintf("%s (%d failed rounds in a row)", o.Reason, m.bad)), true
		}
		return Change{}, false
	case o.Verdict:
		return Change{}, false
	}
	if m.kindRun >= m.failAfter {
		return m.change(o.At, o.Verdict, fmt.Sprintf("%s (%d rounds in a row)", o.Reason, m.kindRun)), true
	}
	return Change{}, false
}

// Afresh makes the rounds seen so far no evidence for the next verdict, unless they
// made it Healthy: the probes change (the server was promoted), and what the old
// ones found (a replica's IO thread cut off by its dead source) says nothing of
// what the new ones will. The verdict stays until the next round, which decides as
// from Unknown: healthy at once, a failure after fail_after rounds of its own (a
// certain one at once). Kept Healthy, a verdict needs no new evidence to stand.
func (m *Machine) Afresh() {
	if m.verdict != Healthy {
		m.afresh = true
	}
}

func (m *Machine) change(at time.Time, to Verdict, reason string) Change {
	c := Change{At: at, From: m.verdict, To: to, Reason: reason}
	if m.verdict != Unknown {
		c.Lasted = at.Sub(m.since)
	}
	m.verdict, m.since, m.reason = to, at, reason
	return c
}
