package detector

import "fmt"

// Verdict is the detector's conclusion about a server, after hysteresis.
type Verdict uint8

const (
	// Unknown: no round of probes has finished yet.
	Unknown Verdict = iota
	// Healthy: every probe that applies to the server's role succeeds.
	Healthy
	// Suspect: probes have started failing, fewer than fail_after rounds in a row, or
	// are succeeding again but fewer than recover_after rounds in a row.
	Suspect
	// Unwritable: the server answers but a write does not commit in time, or fails.
	Unwritable
	// Unreachable: no connection, or a connection that does not answer in time.
	Unreachable
	// ReadOnly: the server refuses writes because read_only is set: a state someone
	// chose, not a crash.
	ReadOnly
	// Overloaded: the server is alive but refuses work (too many connections, out of
	// threads or memory).
	Overloaded
	// Degraded: the server works but should not be relied on: its disk is predicted
	// full within the warning horizon, or (on a replica) its storage probe or its
	// replication SQL thread fails.
	Degraded
	// Misconfigured: the server is alive but the probes cannot do their job: access
	// denied, a missing grant, or the baton schema missing.
	Misconfigured
)

// String returns the verdict's name as printed and stored: "read_only", not "ReadOnly".
func (v Verdict) String() string {
	switch v {
	case Unknown:
		return "unknown"
	case Healthy:
		return "healthy"
	case Suspect:
		return "suspect"
	case Unwritable:
		return "unwritable"
	case Unreachable:
		return "unreachable"
	case ReadOnly:
		return "read_only"
	case Overloaded:
		return "overloaded"
	case Degraded:
		return "degraded"
	case Misconfigured:
		return "misconfigured"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Failed says whether the verdict means the server cannot take writes at all: the
// verdicts a failover may act on (after confirmation by another observer).
func (v Verdict) Failed() bool { return v == Unwritable || v == Unreachable }

// MarshalText writes the verdict's name, so JSON holds "unwritable", not a number.
func (v Verdict) MarshalText() ([]byte, error) {
	if v > Misconfigured {
		return nil, fmt.Errorf("marshal verdict: unknown value %d", uint8(v))
	}
	return []byte(v.String()), nil
}

// UnmarshalText reads a verdict's name. A name it does not know (a newer agent's
// verdict, a damaged record) reads as Unknown rather than failing: a node's whole
// status would otherwise be dropped, and Unknown is never taken for healthy.
func (v *Verdict) UnmarshalText(b []byte) error {
	p, err := ParseVerdict(string(b))
	if err != nil {
		p = Unknown
	}
	*v = p
	return nil
}

// ParseVerdict returns the verdict called s (as written by String).
func ParseVerdict(s string) (Verdict, error) {
	for v := Unknown; v <= Misconfigured; v++ {
		if v.String() == s {
			return v, nil
		}
	}
	return Unknown, fmt.Errorf("parse verdict %q: not a verdict", s)
}

// Probes says which probes apply to a server: the primary's or a replica's. It is
// not the node's role in the cluster (cluster.Role) nor what the server's
// replication settings say (replication.ServerRole). It comes from outside (the primary of
// record in etcd, or the operator): the detector never guesses it, because guessing
// "primary" for a replica would write binlogged rows there.
type Probes uint8

const (
	// NoRole is the zero value and is refused by New: a role must be chosen.
	NoProbes Probes = iota
	// Primary: liveness and the binlogged write probe.
	Primary
	// Replica: liveness, the non-binlogged storage probe and replication state.
	Replica
)

// String returns "primary" or "replica".
func (r Probes) String() string {
	switch r {
	case NoProbes:
		return "none"
	case Primary:
		return "primary"
	case Replica:
		return "replica"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// MarshalText writes the role's name.
func (r Probes) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role's name.
func (r *Probes) UnmarshalText(b []byte) error {
	switch string(b) {
	case "primary":
		*r = Primary
	case "replica":
		*r = Replica
	default:
		return fmt.Errorf("parse role %q: use primary or replica", string(b))
	}
	return nil
}
