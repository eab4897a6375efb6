package failover

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// Decide looks at the cluster and says what to do. It is a pure function: the same
// view and time always give the same decision. The primary is failed when:
//
//  1. its agent reports it unwritable, and a second observer agrees (a replica's
//     remote probe of it fails, a replica's IO thread is down, or a replica's
//     heartbeat lag reached ConfirmLag: the heartbeat stopped);
//  2. its agent is gone or reports it unreachable, and every replica whose agent is
//     alive agrees it is gone (remote probe failing or IO thread down): an agent
//     that died alone is no reason to fail over;
//     or its agent is gone, a replica's remote write probe finds the server takes no
//     writes (read_only: it fenced itself after losing etcd; or writes hang), and a
//     replica's heartbeat lag reached ConfirmLag: nobody is left to write there;
//  3. an operator asks.
//
// Never when the cluster is paused (operator requests still run), while the last
// failover's anti-flap block is in force (View.Block; an operator's request is not
// blocked), when no candidate is safe, while a semi-sync primary's commits wait
// for a replica on its way to it (awaitsReplica, for SemiSyncGrace at most), when
// the new primary would have no replica to acknowledge its commits (noAcknowledger),
// or on the coordinator's own view of the primary: Decide never looks at it. Decide
// never compares its now with a time another node's clock stamped: the semi-sync
// grace runs from View.PrimaryVerdictSeen, the coordinator's own.
func Decide(now time.Time, v cluster.View, p cluster.Policy) cluster.Decision {
	if v.Intent != nil {
		return cluster.Decision{Action: cluster.NoAction, Reason: fmt.Sprintf("a %s from %s is in progress", v.Intent.Kind, v.Intent.From)}
	}
	if v.Primary.Node == "" {
		return decideBootstrap(v)
	}
	if v.Request != nil && v.Request.State == cluster.RequestPending {
		return decideRequest(now, v, p)
	}
	if v.Settings.Paused {
		return cluster.Decision{Action: cluster.NoAction, Reason: "paused: automatic failover is off"}
	}
	failed, why := primaryFailed(now, v, p)
	if !failed {
		return cluster.Decision{Action: cluster.NoAction, Reason: why}
	}
	if b := v.Block; b != nil {
		return cluster.Decision{Action: cluster.NoAction, Reason: fmt.Sprintf("%s, but a failover to %s (epoch %d) happened at %s: automatic failover blocked for %s after it (anti-flap, timed by an etcd lease; `baton failover` overrides)",
			why, b.To, b.Epoch, b.At.UTC().Format(time.RFC3339), b.For)}
	}
	cands, excluded := candidates(v, "")
	if len(cands) == 0 {
		return cluster.Decision{Action: cluster.NoAction, Reason: fmt.Sprintf("%s, but no safe candidate: %s", why, strings.Join(excluded, "; "))}
	}
	if lone := noAcknowledger(v, cands); lone != "" {
		return cluster.Decision{Action: cluster.NoAction, Reason: fmt.Sprintf("%s, but a failover would not bring writes back: %s; waiting for %s to come back keeps its pending commits (`baton failover` overrides)",
			why, lone, v.Primary.Node)}
	}
	return cluster.Decision{Action: cluster.Failover, From: v.Primary.Node, Candidates: cands, Reason: why}
}

// SemiSyncGrace is how long a failover waits, after the primary turned unwritable,
// when its commits wait only for a semi-sync replica to connect and one that reaches
// it is not replicating from it yet, or has just started to (the primary's published
// status still shows no replica connected): its agent points it there within a pass,
// and the commits go on. Failing over instead promotes a replica without the commits the
// primary wrote to its binlog meanwhile, which quarantines the primary, and the new
// one has a replica fewer (a fault campaign round ended with no replica at all).
const SemiSyncGrace = 10 * time.Second

// primaryFailed applies rules 1 and 2.
func primaryFailed(now time.Time, v cluster.View, p cluster.Policy) (bool, string) {
	name := v.Primary.Node
	ps, present := v.Nodes[name]
	var replicas []cluster.NodeStatus
	for _, n := range sortedNodes(v.Nodes) {
		if n.Node != name {
			replicas = append(replicas, n)
		}
	}
	switch {
	case present && ps.Verdict == detector.Unwritable:
		if wait, how := awaitsReplica(now, v, ps); wait {
			return false, fmt.Sprintf("primary %s reports unwritable (%s), but its commits wait for a semi-sync replica: %s", name, ps.Reason, how)
		}
		for _, r := range replicas {
			if ok, how := confirmsStopped(r, name, p); ok {
				return true, fmt.Sprintf("primary %s is unwritable (%s); confirmed by %s: %s", name, ps.Reason, r.Node, how)
			}
		}
		return false, fmt.Sprintf("primary %s reports unwritable (%s), not confirmed by any replica yet", name, ps.Reason)
	case !present || ps.Verdict == detector.Unreachable:
		what := fmt.Sprintf("primary %s's agent is gone", name)
		if present {
			what = fmt.Sprintf("primary %s is unreachable (%s)", name, ps.Reason)
		}
		if len(replicas) == 0 {
			return false, what + ", and no replica agent is alive to confirm it"
		}
		var writes string
		if !present {
			ok, how := notServing(replicas, name, p)
			if ok {
				return true, fmt.Sprintf("%s and its server takes no writes: %s", what, how)
			}
			if how != "" {
				writes = "; " + how
			}
		}
		var hows []string
		for _, r := range replicas {
			ok, how := confirmsGone(r, name)
			if !ok {
				return false, fmt.Sprintf("%s, but %s still sees it (%s)%s", what, r.Node, how, writes)
			}
			hows = append(hows, r.Node+": "+how)
		}
		return true, fmt.Sprintf("%s; every replica agrees (%s)", what, strings.Join(hows, "; "))
	}
	return false, fmt.Sprintf("primary %s is %s", name, ps.Verdict)
}

// LongSemiSyncTimeout is the rpl_semi_sync_master_timeout from which a primary with
// no replica to acknowledge its commits counts as taking no writes at all (see
// noAcknowledger): with a shorter one it goes asynchronous soon enough.
const LongSemiSyncTimeout = time.Minute

// noAcknowledger says why no candidate would take writes once promoted, "" when one
// would or when that is not known. With semi-sync and a long timeout (every
// candidate publishes semi-sync and an rpl_semi_sync_master_timeout of
// LongSemiSyncTimeout or more), a new primary needs a replica to acknowledge its
// commits; there is none when a single candidate is left and every other node but
// the failed primary is quarantined (after two failovers in a row, each deposed
// primary holding commits nobody else got). Such a failover cannot bring writes
// back, and it strands the failed primary's commits that wait for an
// acknowledgement, which quarantines it too; waiting for it to come back keeps them
// and resumes writes with no person's help. A member whose agent is gone counts as
// a possible replica: its server may be alive.
func noAcknowledger(v cluster.View, cands []string) string {
	if len(cands) != 1 {
		return ""
	}
	c := v.Nodes[cands[0]]
	if c.SemiSync == "" || c.SemiSyncTimeout < LongSemiSyncTimeout {
		return ""
	}
	others := map[string]bool{}
	for n := range v.Nodes {
		others[n] = true
	}
	for n := range v.Members {
		others[n] = true
	}
	delete(others, v.Primary.Node)
	delete(others, c.Node)
	var held []string
	for _, n := range slices.Sorted(maps.Keys(others)) {
		s, present := v.Nodes[n]
		if !present || s.Role != cluster.RoleQuarantined {
			return ""
		}
		held = append(held, n)
	}
	what := "no other node"
	if len(held) > 0 {
		what = "every other node quarantined (" + strings.Join(held, ", ") + ")"
	}
	return fmt.Sprintf("%s, its only candidate, would have no replica to acknowledge its commits (semi-sync, rpl_semi_sync_master_timeout %s): %s",
		c.Node, c.SemiSyncTimeout, what)
}

// awaitsReplica says whether the primary ps, unwritable for less than SemiSyncGrace
// as the coordinator saw it (View.PrimaryVerdictSeen),
// has semi-sync on with no replica connected while a replica fit to promote reaches it
// and either does not replicate from it yet, or does with its semi-sync replica side
// on (see SemiSyncGrace). A replica that replicates from it with that side off
// acknowledges nothing: no reason to wait. When the primary says its commits are
// stuck waiting for an acknowledgement (AwaitsAck), a fit replica that replicates
// from it with its semi-sync replica side on is reason enough, whatever its remote
// probe says and however many replicas are connected: a replica whose own network
// was just cut may be connected with its acknowledgements lost, and publishes, as it
// comes back, a probe failure from the cut and an IO thread still reconnecting.
func awaitsReplica(now time.Time, v cluster.View, ps cluster.NodeStatus) (bool, string) {
	seen := v.PrimaryVerdictSeen
	if ps.SemiSync != cluster.SemiSyncOn || seen.IsZero() || now.Sub(seen) >= SemiSyncGrace {
		return false, ""
	}
	if ps.AwaitsAck {
		for _, r := range sortedNodes(v.Nodes) {
			if r.Node != ps.Node && unfit(r) == "" && r.Source == v.Primary.Addr && r.SemiSync == cluster.SemiSyncReplicaOn {
				return true, fmt.Sprintf("%d connected, and %s replicates from it with its semi-sync replica side on (for up to %s)",
					ps.SemiSyncClients, r.Node, SemiSyncGrace)
			}
		}
	}
	if ps.SemiSyncClients != 0 {
		return false, ""
	}
	for _, r := range sortedNodes(v.Nodes) {
		if r.Node == ps.Node || unfit(r) != "" {
			continue
		}
		pv := r.PrimaryView
		if pv == nil || pv.Node != ps.Node || !pv.Reachable {
			continue
		}
		if !(r.IORunning && r.Source == v.Primary.Addr) {
			return true, fmt.Sprintf("none connected, %s reaches it and is being pointed at it (for up to %s)", r.Node, SemiSyncGrace)
		}
		if r.SemiSync == cluster.SemiSyncReplicaOn {
			// Pointed at it a moment ago: the primary's published status does not
			// show the new connection yet.
			return true, fmt.Sprintf("none connected yet, %s replicates from it with its semi-sync replica side on (for up to %s)", r.Node, SemiSyncGrace)
		}
	}
	return false, ""
}

// confirmsStopped says whether replica r sees that the primary stopped writing.
func confirmsStopped(r cluster.NodeStatus, primary string, p cluster.Policy) (bool, string) {
	if ok, how := confirmsGone(r, primary); ok {
		return true, how
	}
	if r.LagMS >= 0 && time.Duration(r.LagMS)*time.Millisecond >= p.ConfirmLag {
		return true, fmt.Sprintf("heartbeat lag %dms", r.LagMS)
	}
	return false, fmt.Sprintf("heartbeat lag %dms", r.LagMS)
}

// notServing says whether the replicas show that a primary whose agent is gone takes
// no writes: one replica's remote write probe is refused, and one replica's heartbeat
// stopped (lag at ConfirmLag; the write probes of replicas keep it fresh while the
// server writes).
func notServing(replicas []cluster.NodeStatus, primary string, p cluster.Policy) (bool, string) {
	var refused, stopped string
	for _, r := range replicas {
		if pv := r.PrimaryView; refused == "" && pv != nil && pv.Node == primary && pv.Write.Refused() {
			refused = fmt.Sprintf("%s's write probe: %s", r.Node, pv.Write)
		}
		if stopped == "" && r.LagMS >= 0 && time.Duration(r.LagMS)*time.Millisecond >= p.ConfirmLag {
			stopped = fmt.Sprintf("%s: heartbeat lag %dms", r.Node, r.LagMS)
		}
	}
	if refused == "" {
		return false, ""
	}
	if stopped == "" {
		return false, refused + ", not confirmed by any replica's heartbeat lag yet"
	}
	return true, refused + "; " + stopped
}

// confirmsGone says whether replica r sees the primary gone: its remote probe fails,
// or its IO thread is not connected.
func confirmsGone(r cluster.NodeStatus, primary string) (bool, string) {
	if pv := r.PrimaryView; pv != nil && pv.Node == primary && !pv.Reachable {
		return true, "remote probe fails: " + pv.Error
	}
	if r.ServerRead && !r.IORunning {
		how := "IO thread not running"
		if r.ReplError != "" {
			how += ": " + r.ReplError
		}
		return true, how
	}
	return false, "IO thread running, remote probe ok"
}

// candidates lists the nodes that may be promoted (all but exclude and the primary),
// and why the others may not.
func candidates(v cluster.View, only string) (names, excluded []string) {
	for _, n := range sortedNodes(v.Nodes) {
		if n.Node == v.Primary.Node || (only != "" && n.Node != only) {
			continue
		}
		if why := unfit(n); why != "" {
			excluded = append(excluded, n.Node+": "+why)
			continue
		}
		names = append(names, n.Node)
	}
	if len(v.Nodes) <= 1 && only == "" {
		excluded = append(excluded, "no replica agent is alive")
	}
	return names, excluded
}

// unfit says why a node must not be promoted, "" when it may.
func unfit(n cluster.NodeStatus) string {
	switch {
	case !n.ServerRead:
		return "its agent could not read its server"
	case n.NoPromote:
		return "no_promote is set"
	case n.Role == cluster.RoleQuarantined && n.Errant != "":
		return "quarantined (errant transactions " + n.Errant + ")"
	case n.Role == cluster.RoleQuarantined:
		return "quarantined (" + n.Reason + ")"
	case n.Verdict != detector.Healthy:
		return "verdict " + n.Verdict.String()
	case !n.StorageOK:
		return "storage probe failing"
	case !n.SQLRunning && n.ReplError != "":
		return "SQL thread stopped: " + n.ReplError
	}
	return ""
}

func decideBootstrap(v cluster.View) cluster.Decision {
	var writable []string
	for _, n := range sortedNodes(v.Nodes) {
		// Only what the agent read from the server counts: a status published before
		// the first read has the zero values of a writable server.
		if n.ServerRead && !n.ReadOnly && n.Source == "" && n.Verdict == detector.Healthy {
			writable = append(writable, n.Node)
		}
	}
	switch len(writable) {
	case 1:
		return cluster.Decision{Action: cluster.Bootstrap, To: writable[0], Reason: writable[0] + " is the one writable server"}
	case 0:
		return cluster.Decision{Action: cluster.NoAction, Reason: "no primary of record yet, and no healthy writable server that replicates from none"}
	}
	return cluster.Decision{Action: cluster.NoAction, Reason: fmt.Sprintf("no primary of record yet, and %d writable servers (%s): set read_only on all but one", len(writable), strings.Join(writable, ", "))}
}

func decideRequest(now time.Time, v cluster.View, p cluster.Policy) cluster.Decision {
	r := v.Request
	refuse := func(format string, args ...any) cluster.Decision {
		return cluster.Decision{Action: cluster.RefuseRequest, Manual: true, Reason: fmt.Sprintf(format, args...)}
	}
	if r.Epoch != v.Primary.Epoch {
		return refuse("the primary changed since the request was made (epoch %d, now %d): look at `baton status` and ask again", r.Epoch, v.Primary.Epoch)
	}
	if r.To != "" {
		if r.To == v.Primary.Node {
			return refuse("%s is already the primary", r.To)
		}
		if _, ok := v.Nodes[r.To]; !ok {
			return refuse("unknown node %q, or its agent is not running (known: %s)", r.To, strings.Join(nodeNames(v.Nodes), ", "))
		}
	}
	ps, present := v.Nodes[v.Primary.Node]
	primaryHealthy := present && ps.Verdict == detector.Healthy
	switch r.Kind {
	case cluster.RequestSwitchover:
		if !primaryHealthy {
			verdict := "its agent is gone"
			if present {
				verdict = "verdict " + ps.Verdict.String()
			}
			return refuse("switchover needs a healthy primary, and %s is not (%s): use `baton failover`", v.Primary.Node, verdict)
		}
		cands, excluded := candidates(v, r.To)
		var fit []string
		for _, c := range cands {
			n := v.Nodes[c]
			switch {
			case !n.IORunning || !n.SQLRunning:
				excluded = append(excluded, c+": replication is not running")
			case n.LagMS < 0 || time.Duration(n.LagMS)*time.Millisecond > p.SwitchoverMaxLag:
				excluded = append(excluded, fmt.Sprintf("%s: lag %dms is over %s", c, n.LagMS, p.SwitchoverMaxLag))
			default:
				fit = append(fit, c)
			}
		}
		if len(fit) == 0 {
			return refuse("no candidate is fit for a switchover: %s", strings.Join(excluded, "; "))
		}
		return cluster.Decision{Action: cluster.Switchover, From: v.Primary.Node, To: r.To, Candidates: fit, Manual: true,
			Reason: fmt.Sprintf("switchover requested by an operator (%s)", r.ID)}
	case cluster.RequestFailover:
		if primaryHealthy && !r.Force {
			return refuse("primary %s is healthy: use `baton switchover`, or `baton failover --force` to fail over anyway", v.Primary.Node)
		}
		cands, excluded := candidates(v, r.To)
		if len(cands) == 0 {
			return refuse("no safe candidate: %s", strings.Join(excluded, "; "))
		}
		return cluster.Decision{Action: cluster.Failover, From: v.Primary.Node, To: r.To, Candidates: cands, Manual: true,
			Reason: fmt.Sprintf("failover requested by an operator (%s); %s", r.ID, primaryState(v))}
	}
	return refuse("unknown request kind %q", r.Kind)
}

// primaryState says what the primary of record was when a failover was decided on,
// for the history: an operator's request must not lose the cause.
func primaryState(v cluster.View) string {
	ps, ok := v.Nodes[v.Primary.Node]
	switch {
	case !ok:
		return fmt.Sprintf("primary %s: its agent had no session in etcd", v.Primary.Node)
	case ps.Reason != "":
		return fmt.Sprintf("primary %s was %s (%s)", v.Primary.Node, ps.Verdict, ps.Reason)
	}
	return fmt.Sprintf("primary %s was %s", v.Primary.Node, ps.Verdict)
}

func sortedNodes(m map[string]cluster.NodeStatus) []cluster.NodeStatus {
	out := make([]cluster.NodeStatus, 0, len(m))
	for _, n := range m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

func nodeNames(m map[string]cluster.NodeStatus) []string {
	var out []string
	for _, n := range sortedNodes(m) {
		out = append(out, n.Node)
	}
	return out
}
