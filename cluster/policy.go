package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// The cluster's failover policy lives in etcd under the policy key, so that every
// coordinator and `baton switchover/failover --dry-run` decide with the same numbers.
// The rule, as Patroni does for its dynamic configuration:
//
//   - the first agent to start creates the key from its configuration file, with a
//     create-only transaction; the elected coordinator does the same if it finds none;
//   - later agents never overwrite it: each publishes its own file's policy in its
//     node status, and a node whose file disagrees with the key is reported (agent
//     log, /status, `baton status`);
//   - only an operator changes it (`baton policy apply`), compared against the
//     revision read.
//
// A coordinator that finds the key unreadable (corrupt, or not a valid policy)
// decides with its own file's values, which were validated when the agent started,
// and says so in its log: it never decides with a zero or partial policy.

// Validate says whether p can be decided with, naming the bad setting.
func (p Policy) Validate() error {
	switch {
	case p.ConfirmLag <= 0:
		return fmt.Errorf("policy: confirm_lag (%s): must be positive", p.ConfirmLag)
	case p.FailoverBlock < 0:
		return fmt.Errorf("policy: failover_block (%s): must not be negative", p.FailoverBlock)
	case p.SwitchoverMaxLag < 0:
		return fmt.Errorf("policy: switchover_max_lag (%s): must not be negative", p.SwitchoverMaxLag)
	case !p.Rejoin.Valid():
		return fmt.Errorf("policy: rejoin (%q): must be %s or %s", p.Rejoin, RejoinManual, RejoinArchiveAndRepair)
	}
	return nil
}

// Diff lists the settings where p differs from want, as "name p (want want)", in a
// fixed order; empty when they agree.
func (p Policy) Diff(want Policy) []string {
	var out []string
	add := func(name string, a, b time.Duration) {
		if a != b {
			out = append(out, fmt.Sprintf("%s %s (cluster: %s)", name, a, b))
		}
	}
	add("failover_block", p.FailoverBlock, want.FailoverBlock)
	add("confirm_lag", p.ConfirmLag, want.ConfirmLag)
	add("switchover_max_lag", p.SwitchoverMaxLag, want.SwitchoverMaxLag)
	if p.Rejoin.String() != want.Rejoin.String() {
		out = append(out, fmt.Sprintf("rejoin %s (cluster: %s)", p.Rejoin, want.Rejoin))
	}
	return out
}

// String is the policy in the configuration file's terms.
func (p Policy) String() string {
	return fmt.Sprintf("failover_block %s, confirm_lag %s, switchover_max_lag %s, rejoin %s", p.FailoverBlock, p.ConfirmLag, p.SwitchoverMaxLag, p.Rejoin)
}

// PolicyRecord is the value of the policy key.
type PolicyRecord struct {
	Policy Policy `json:"policy"`
	// SetBy is the node whose configuration file created the key, or
	// "operator:<host>" for `baton policy apply`.
	SetBy string    `json:"set_by"`
	At    time.Time `json:"at"`
}

// parsePolicyRecord reads the policy key's value; a record that does not hold a
// valid policy (a zero one included) is an error, never a permissive policy.
func parsePolicyRecord(b []byte) (PolicyRecord, error) {
	var r PolicyRecord
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return PolicyRecord{}, fmt.Errorf("parse policy: %w", err)
	}
	if err := r.Policy.Validate(); err != nil {
		return PolicyRecord{}, err
	}
	return r, nil
}

// PolicySource says where the policy a decision is made with comes from.
type PolicySource int

// Policy sources. The zero value is not a source: a policy of unknown origin is
// never decided with.
const (
	PolicyUnknown PolicySource = iota
	// PolicyFromEtcd: the cluster's policy key.
	PolicyFromEtcd
	// PolicyFromFile: the policy key is missing or unreadable; the caller's own
	// configuration file's values.
	PolicyFromFile
)

// String names the source.
func (s PolicySource) String() string {
	switch s {
	case PolicyFromEtcd:
		return "etcd"
	case PolicyFromFile:
		return "own file"
	}
	return "unknown"
}

// ErrNoPolicy says the caller has no valid policy of its own to fall back on.
var ErrNoPolicy = errors.New("failover: no valid policy")

// EffectivePolicy returns the policy to decide with: the cluster's (snap.Policy) when
// it is there and valid, else own, the caller's configuration file's, with why. It
// fails when neither is valid: a zero policy is never decided with.
func EffectivePolicy(snap Snapshot, own Policy) (Policy, PolicySource, string, error) {
	if snap.Policy != nil {
		if err := snap.Policy.Policy.Validate(); err == nil {
			return snap.Policy.Policy, PolicyFromEtcd, "", nil
		}
	}
	why := "no policy in etcd"
	if snap.PolicyErr != "" {
		why = "the policy in etcd is unreadable: " + snap.PolicyErr
	}
	if err := own.Validate(); err != nil {
		return Policy{}, PolicyUnknown, why, fmt.Errorf("%s, and the own one is not valid: %v: %w", why, err, ErrNoPolicy)
	}
	return own, PolicyFromFile, why, nil
}

// PolicyDisagreement is a node whose configuration file's policy is not the
// cluster's.
type PolicyDisagreement struct {
	Node string   `json:"node"`
	Diff []string `json:"diff"`
}

// PolicyDisagreements lists, by node name, the live nodes whose published file
// policy differs from the cluster's (eff). Nodes that publish none are skipped; with
// no cluster policy there is nothing to compare with.
func PolicyDisagreements(eff *PolicyRecord, nodes map[string]NodeStatus) []PolicyDisagreement {
	if eff == nil {
		return nil
	}
	var out []PolicyDisagreement
	for name, n := range nodes {
		if n.Policy == nil {
			continue
		}
		if d := n.Policy.Diff(eff.Policy); len(d) > 0 {
			out = append(out, PolicyDisagreement{Node: name, Diff: d})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
