package failover

import (
	"fmt"
	"strings"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// Check is one pre-check of a switchover or failover, with its result.
type Check struct {
	Name   string `json:"name"` // verdict, role, no_promote, replication, lag, storage, errant_gtids
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// CandidateChecks is what the pre-checks found on one node that could be promoted.
type CandidateChecks struct {
	Node string `json:"node"`
	// Fit is true when the coordinator may promote the node for this request:
	// Decide lists it as a candidate and it has no errant GTIDs.
	Fit    bool    `json:"fit"`
	Checks []Check `json:"checks"`
}

// Summary is the checks on one line, for a person:
// "0 ms behind, IO/SQL running, storage ok, no errant GTIDs".
func (c CandidateChecks) Summary() string {
	var parts []string
	for _, ch := range c.Checks {
		parts = append(parts, ch.Detail)
	}
	return strings.Join(parts, ", ")
}

// Plan is what an operator's request would do, decided on a view exactly as the
// coordinator will decide it (Decide), plus the checks the coordinator makes only on
// the servers (errant GTIDs), done here on the GTID sets the agents published.
type Plan struct {
	Kind  cluster.RequestKind `json:"kind"`
	From  string              `json:"from"`
	Epoch uint64              `json:"epoch"`
	// To is the requested target, or else the node the coordinator is expected to
	// choose ("" when no prediction can be made: it ranks on fresh GTID sets).
	To string `json:"to,omitempty"`
	// Primary are the checks of the primary of record.
	Primary []Check `json:"primary_checks"`
	// Candidates are the checks of every other node whose agent is alive, by name.
	Candidates []CandidateChecks `json:"candidates"`
	// Refused is true when the request would be refused; Reason says why, or what
	// would be done.
	Refused  bool             `json:"refused"`
	Reason   string           `json:"reason"`
	Decision cluster.Decision `json:"-"`
}

// PlanRequest says what request r would do on view v: Decide's verdict on v with r
// pending, and every pre-check per candidate. It is pure. A request Decide accepts is
// still refused here when every candidate it allows (or the requested one) has
// errant GTIDs: the coordinator's flow would refuse it on the servers.
func PlanRequest(now time.Time, v cluster.View, p cluster.Policy, r cluster.Request) Plan {
	r.State = cluster.RequestPending
	v.Request = &r
	d := Decide(now, v, p)
	pl := Plan{Kind: r.Kind, From: v.Primary.Node, Epoch: v.Primary.Epoch, To: r.To, Decision: d,
		Primary: primaryChecks(v, r.Kind)}

	allowed := map[string]bool{}
	for _, c := range d.Candidates {
		allowed[c] = true
	}
	errant := map[string]bool{}
	for _, n := range sortedNodes(v.Nodes) {
		if n.Node == v.Primary.Node {
			continue
		}
		cc := CandidateChecks{Node: n.Node, Checks: candidateChecks(v, p, r.Kind, n)}
		for _, ch := range cc.Checks {
			if ch.Name == "errant_gtids" && !ch.OK {
				errant[n.Node] = true
			}
		}
		cc.Fit = allowed[n.Node] && !errant[n.Node]
		pl.Candidates = append(pl.Candidates, cc)
	}

	switch d.Action {
	case cluster.Switchover, cluster.Failover:
	case cluster.RefuseRequest:
		pl.Refused, pl.Reason = true, d.Reason
		return pl
	default:
		// A flow in progress, or no primary of record yet: the request would wait,
		// then be refused for its stale epoch.
		pl.Refused, pl.Reason = true, d.Reason
		return pl
	}
	var fit, errantNames []string
	for _, c := range d.Candidates {
		if errant[c] {
			errantNames = append(errantNames, c)
			continue
		}
		fit = append(fit, c)
	}
	if len(fit) == 0 {
		pl.Refused = true
		pl.Reason = fmt.Sprintf("no candidate without errant GTIDs (%s): see docs/operations.md, quarantined nodes", strings.Join(errantNames, ", "))
		return pl
	}
	pl.Reason = d.Reason
	if pl.To == "" {
		pl.To = predictChoice(v, r.Kind, fit)
	}
	return pl
}

// primaryChecks says how the primary of record stands for a request of kind.
func primaryChecks(v cluster.View, kind cluster.RequestKind) []Check {
	name := v.Primary.Node
	if name == "" {
		return []Check{{Name: "primary", OK: false, Detail: "no primary of record"}}
	}
	n, ok := v.Nodes[name]
	if !ok {
		return []Check{{Name: "agent", OK: kind == cluster.RequestFailover, Detail: fmt.Sprintf("%s's agent is gone", name)}}
	}
	healthy := n.Verdict == detector.Healthy
	detail := "verdict " + n.Verdict.String()
	if n.Reason != "" {
		detail += " (" + n.Reason + ")"
	}
	if healthy && n.WriteMS > 0 {
		detail += fmt.Sprintf(", write probe %.1f ms", n.WriteMS)
	}
	// A switchover needs a healthy primary; a failover is for one that is not (or is
	// forced, which Decide weighs).
	return []Check{{Name: "verdict", OK: healthy == (kind == cluster.RequestSwitchover), Detail: detail}}
}

// candidateChecks are the checks of node n as a candidate, following Decide's rules
// (unfit, and the switchover's replication and lag rules) plus the errant check.
func candidateChecks(v cluster.View, p cluster.Policy, kind cluster.RequestKind, n cluster.NodeStatus) []Check {
	var cs []Check
	add := func(name string, ok bool, format string, args ...any) {
		cs = append(cs, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	switch {
	case n.LagMS < 0:
		add("lag", kind != cluster.RequestSwitchover, "lag unknown")
	case kind == cluster.RequestSwitchover && time.Duration(n.LagMS)*time.Millisecond > p.SwitchoverMaxLag:
		add("lag", false, "%d ms behind (over %s)", n.LagMS, p.SwitchoverMaxLag)
	default:
		add("lag", true, "%d ms behind", n.LagMS)
	}
	switch {
	case n.IORunning && n.SQLRunning:
		add("replication", true, "IO/SQL running")
	case !n.SQLRunning && n.ReplError != "":
		add("replication", false, "SQL thread stopped: %s", n.ReplError)
	default:
		var stopped []string
		if !n.IORunning {
			stopped = append(stopped, "IO")
		}
		if !n.SQLRunning {
			stopped = append(stopped, "SQL")
		}
		detail := strings.Join(stopped, "/") + " not running"
		if n.ReplError != "" {
			detail += ": " + n.ReplError
		}
		// A failover expects the IO thread down (the primary is gone); a stopped SQL
		// thread without an error still applies what it has once started.
		add("replication", kind != cluster.RequestSwitchover, "%s", detail)
	}
	if n.Verdict == detector.Healthy {
		add("verdict", true, "%s", detector.Healthy)
	} else {
		add("verdict", false, "verdict %s", n.Verdict)
	}
	if n.StorageOK {
		add("storage", true, "storage ok")
	} else {
		add("storage", false, "storage probe failing")
	}
	if n.NoPromote {
		add("no_promote", false, "no_promote is set")
	}
	if n.Role == cluster.RoleQuarantined {
		add("role", false, "%s", cluster.RoleQuarantined)
	}
	ok, detail := errantCheck(v, n)
	add("errant_gtids", ok, "%s", detail)
	return cs
}

// errantCheck compares n's published GTID set with the primary's.
func errantCheck(v cluster.View, n cluster.NodeStatus) (bool, string) {
	if n.Role == cluster.RoleQuarantined && n.Errant != "" {
		return false, "errant GTIDs " + n.Errant
	}
	ps, ok := v.Nodes[v.Primary.Node]
	if !ok || ps.GTID == "" {
		return true, "errant GTIDs not checked here (the primary's GTID set is unknown; the coordinator checks on the servers)"
	}
	flavor, err := replication.ParseFlavor(n.Flavor)
	if err != nil {
		return true, "errant GTIDs not checked here (unknown flavor " + n.Flavor + ")"
	}
	cset, err := replication.ParseGTIDSet(flavor, n.GTID)
	if err != nil {
		return false, fmt.Sprintf("GTID set %q does not parse: %v", n.GTID, err)
	}
	pset, err := replication.ParseGTIDSet(flavor, ps.GTID)
	if err != nil {
		return true, "errant GTIDs not checked here (the primary's GTID set does not parse)"
	}
	errant, err := replication.Errant(
		replication.Server{ServerID: n.ServerID, ServerUUID: n.ServerUUID, Executed: cset},
		replication.Server{ServerID: v.Primary.ServerID, ServerUUID: v.Primary.ServerUUID, Executed: pset})
	if err != nil {
		return false, "errant check failed: " + err.Error()
	}
	if !errant.IsEmpty() {
		return false, "errant GTIDs " + errant.String()
	}
	return true, "no errant GTIDs"
}

// predictChoice is the flow's own choice (choose, over replication.Rank) made on the
// fit candidates' published status, each turned into what the flow will read on its
// server (predictedCandidate); "" when none is eligible.
func predictChoice(v cluster.View, kind cluster.RequestKind, fit []string) string {
	if len(fit) == 1 {
		return fit[0]
	}
	var cands []replication.Candidate
	var flavor replication.Flavor
	for _, name := range fit {
		c, err := predictedCandidate(kind, name, v.Nodes[name])
		if err != nil {
			return ""
		}
		flavor = c.Executed.Flavor()
		cands = append(cands, c)
	}
	in := choice{action: cluster.Switchover, allowed: fit, read: cands}
	if kind == cluster.RequestFailover {
		in.action = cluster.Failover
	}
	if ps, ok := v.Nodes[v.Primary.Node]; ok && ps.GTID != "" {
		if set, err := replication.ParseGTIDSet(flavor, ps.GTID); err == nil {
			in.primary = &replication.Server{ServerID: v.Primary.ServerID, ServerUUID: v.Primary.ServerUUID, Executed: set}
		}
	}
	chosen, err := choose(in)
	if err != nil {
		return ""
	}
	return chosen.Name
}

// predictedCandidate is what the flow will read of a node on its server, made from
// its published status, so that the dry run breaks a tie as the flow does. A
// failover stops every IO thread before it ranks: the servers then report no lag, and
// none is used. A switchover ranks with replication running: the servers report
// their lag in whole seconds (Seconds_Behind_Master), and the heartbeat's is rounded
// down to them. What a replica has received but not applied is not published: it is
// taken as applied.
func predictedCandidate(kind cluster.RequestKind, name string, n cluster.NodeStatus) (replication.Candidate, error) {
	f, err := replication.ParseFlavor(n.Flavor)
	if err != nil {
		return replication.Candidate{}, err
	}
	set, err := replication.ParseGTIDSet(f, n.GTID)
	if err != nil {
		return replication.Candidate{}, err
	}
	lag := time.Duration(-1)
	if kind != cluster.RequestFailover && n.LagMS >= 0 {
		lag = time.Duration(n.LagMS/1000) * time.Second
	}
	return replication.Candidate{Name: name,
		Server:   replication.Server{ServerID: n.ServerID, ServerUUID: n.ServerUUID, Executed: set},
		Priority: n.Priority, Lag: lag, NoPromote: n.NoPromote, StorageOK: n.StorageOK,
		SQLRunning: n.SQLRunning, SQLError: sqlError(n)}, nil
}

func sqlError(n cluster.NodeStatus) string {
	if !n.SQLRunning {
		return n.ReplError
	}
	return ""
}
