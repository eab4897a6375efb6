package replication

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/baton-ha/baton/detector"
)

// Candidate is a replica that might be promoted, as the coordinator sees it.
type Candidate struct {
	Name string
	// Server holds its server_id/server_uuid and executed GTID set.
	Server
	// Retrieved is what it has received but may not have applied yet (relay
	// log): MySQL Retrieved_Gtid_Set, MariaDB Gtid_IO_Pos. Zero if unknown.
	Retrieved GTIDSet
	// Priority is the configured promotion priority: higher is preferred.
	Priority int
	// Lag is its replication lag; negative when unknown.
	Lag time.Duration
	// NoPromote is set by configuration: never promote this node.
	NoPromote bool
	// StorageOK is true when its storage probe passes. The zero value
	// excludes the candidate: a broken disk is not assumed away.
	StorageOK bool
	// SQLRunning is the state of its SQL (applier) thread, SQLError the last
	// error that thread reported.
	SQLRunning bool
	SQLError   string
	// Unpromotable, when set, says why the candidate must not be promoted although
	// its transactions count: no other is eligible unless it has them too (a
	// replica whose agent is gone, for one: nobody would promote it).
	Unpromotable string
	// Runway is its agent's forecast of the disk it fills first (the filesystem of
	// its datadir, binlog or relay log with the least time left): how long it would
	// take writes once promoted. A full disk excludes it; among equally advanced
	// candidates the longer runway comes first. The zero Forecast is unknown, and
	// ranks after every known one: never read as plenty.
	Runway detector.Forecast
}

// Ranked is a candidate with the verdict of Rank.
type Ranked struct {
	Candidate
	// Eligible is true when the candidate may be promoted: nothing excludes
	// it and it has every transaction that any other listed server has.
	Eligible bool
	// Incomplete is true when nothing excludes the candidate but it lacks
	// transactions another listed server has. A failover must not promote
	// it (they would be lost); a switchover may, since it first waits for the
	// candidate to execute the old primary's every transaction.
	Incomplete bool
	// Target is Executed ∪ Retrieved: what the candidate will have executed
	// once its relay log is applied. Wait for it with WaitExecuted before
	// promoting.
	Target GTIDSet
	// Errant holds its errant transactions (see Errant), if any.
	Errant GTIDSet
	// Reason says, for a person, why it is ranked where it is.
	Reason string
}

// Rank orders candidates for promotion, best first, and says why.
//
// A candidate is eligible when it is not no_promote, its disk is not full, its
// storage probe passes, its SQL thread has not stopped on an error, it has no
// errant transactions, and its Target contains every other candidate's Target
// (less their errant transactions): promoting it loses nothing another replica
// holds. Eligible candidates come first, ordered by Runway (a disk that does not
// fill or lasts RunwayPlenty or more, then one that fills, the longer runway
// first, then unknown), then Priority (higher first), then caught up (Executed
// contains Retrieved) before still applying, then Lag (lower first, unknown
// last; a caught-up one counts as zero), then Name. Next come candidates that are
// fine but miss transactions another has (most complete first), then the
// excluded ones. If the first is not Eligible there is no safe candidate.
//
// primary is the failed primary as last seen (its executed set may be stale:
// its own transactions are never errant, see Errant). When it is nil (or
// its Executed is the zero GTIDSet), a
// candidate's own writes that no other candidate has are taken as errant;
// with a single candidate and no primary nothing can be checked, and the
// reason says so.
//
// Candidates are compared by Target, not only Executed: the failover flow
// stops IO threads and then lets the chosen one apply its relay log, so what
// it has received counts.
func Rank(primary *Server, candidates []Candidate) []Ranked {
	if primary != nil && primary.Executed.flavor == FlavorUnknown {
		primary = nil // no executed set: nothing to compare with
	}
	n := len(candidates)
	out := make([]Ranked, n)
	flavor := FlavorUnknown
	if primary != nil {
		flavor = primary.Executed.flavor
	}
	for _, c := range candidates {
		if flavor == FlavorUnknown {
			flavor = c.Executed.flavor
		}
	}

	excluded := make([]string, n)
	legit := make([]GTIDSet, n)
	comparable := make([]bool, n)
	for i, c := range candidates {
		out[i].Candidate = c
		switch {
		case c.Executed.flavor == FlavorUnknown:
			excluded[i] = "executed GTID set unknown"
			continue
		case c.Executed.flavor != flavor:
			excluded[i] = fmt.Sprintf("flavor %s differs from the cluster's %s", c.Executed.flavor, flavor)
			continue
		}
		target, err := c.Executed.Union(c.Retrieved)
		if err != nil {
			excluded[i] = fmt.Sprintf("retrieved set unusable: %v", err)
			continue
		}
		out[i].Target = target
		comparable[i] = true
	}

	// Errant transactions, against the primary or, failing that, the others.
	errantNote := ""
	for i, c := range candidates {
		if !comparable[i] {
			continue
		}
		self := c.Server
		self.Executed = out[i].Target
		var e GTIDSet
		var err error
		switch {
		case primary != nil:
			e, err = Errant(self, *primary)
		case n >= 2:
			var others GTIDSet
			for j := range candidates {
				if j != i && comparable[j] {
					others, _ = others.Union(out[j].Target)
				}
			}
			e, err = errant(self, Server{Executed: others}, true)
		default:
			errantNote = "; errant check skipped: no primary set and no other replica to compare with"
		}
		if err != nil {
			excluded[i] = fmt.Sprintf("errant check failed: %v", err)
			continue
		}
		out[i].Errant = e
		legit[i] = without(out[i].Target, e)
	}

	for i, c := range candidates {
		if excluded[i] != "" {
			continue
		}
		switch {
		case c.Unpromotable != "":
			excluded[i] = c.Unpromotable
		case c.NoPromote:
			excluded[i] = "no_promote is set"
		case c.Runway.Outlook == detector.OutlookExhausted:
			excluded[i] = "its disk is full: " + c.Runway.Line()
		case !c.StorageOK:
			excluded[i] = "storage probe failing"
		case !c.SQLRunning && c.SQLError != "":
			excluded[i] = "SQL thread stopped with error: " + c.SQLError
		case !out[i].Errant.IsEmpty():
			excluded[i] = "errant transactions the primary never had: " + out[i].Errant.String()
		}
	}

	// Completeness: does its set contain every other comparable one?
	contains := make([]int, n)
	lacks := make([]string, n)
	for i := range candidates {
		if !comparable[i] {
			continue
		}
		for j := range candidates {
			if i == j || !comparable[j] {
				continue
			}
			if legit[i].Contain(legit[j]) {
				contains[i]++
			} else if lacks[i] == "" {
				lacks[i] = fmt.Sprintf("lacks transactions %s has: %s", candidates[j].Name, legit[i].Missing(legit[j]))
			}
		}
	}

	group := make([]int, n)
	for i := range candidates {
		switch {
		case excluded[i] != "":
			group[i] = 2
		case lacks[i] != "":
			group[i] = 1
			out[i].Incomplete = true
		default:
			out[i].Eligible = true
		}
	}

	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := cmp.Compare(group[a], group[b]); c != 0 {
			return c
		}
		if group[a] == 2 {
			return strings.Compare(candidates[a].Name, candidates[b].Name)
		}
		if group[a] == 1 {
			if c := cmp.Compare(contains[b], contains[a]); c != 0 {
				return c
			}
		}
		return preferCmp(candidates[a], candidates[b])
	})

	ranked := make([]Ranked, n)
	for k, i := range order {
		r := out[i]
		c := r.Candidate
		switch group[i] {
		case 2:
			r.Reason = "excluded: " + excluded[i]
		case 1:
			r.Reason = "not safe to promote: " + lacks[i]
		default:
			if k == 0 {
				r.Reason = fmt.Sprintf("most advanced: has every transaction the other replicas have; priority %d, %s; %s%s%s",
					c.Priority, lagNote(c), RunwayNote(c.Runway), preferredNote(c, out, order, group), errantNote)
				break
			}
			best := ranked[0].Candidate
			r.Reason = fmt.Sprintf("as advanced as %s, ranked after it: %s%s", best.Name, whyAfter(best, c), errantNote)
		}
		ranked[k] = r
	}
	return ranked
}

// preferCmp orders two equally advanced candidates: priority, then one with
// nothing left to apply before one still applying its relay log, then lag, then
// name. The reported lag alone cannot order them: once the failover flow stops the
// IO threads, a replica that has applied everything may report no lag at all
// (Seconds_Behind_Master is NULL without an IO thread) while one still applying
// reports a number, even zero.
func preferCmp(a, b Candidate) int {
	if c := RunwayCmp(a.Runway, b.Runway); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if ca, cb := caughtUp(a), caughtUp(b); ca != cb {
		if ca {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(lagKey(effectiveLag(a)), lagKey(effectiveLag(b))); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// caughtUp says the candidate has applied everything it is known to have
// received. An unknown Retrieved set says nothing: false.
func caughtUp(c Candidate) bool {
	return c.Retrieved.flavor != FlavorUnknown && c.Retrieved.flavor == c.Executed.flavor && c.Executed.Contain(c.Retrieved)
}

// effectiveLag is zero for a caught-up candidate, whatever it reports.
func effectiveLag(c Candidate) time.Duration {
	if caughtUp(c) {
		return 0
	}
	return c.Lag
}

func lagKey(d time.Duration) time.Duration {
	if d < 0 {
		return time.Duration(1<<63 - 1)
	}
	return d
}

// lagNote describes a candidate's lag for a reason.
func lagNote(c Candidate) string {
	if caughtUp(c) {
		return "nothing left to apply"
	}
	return "lag " + lagString(c.Lag)
}

func lagString(d time.Duration) string {
	if d < 0 {
		return "unknown"
	}
	return d.String()
}

func whyAfter(best, c Candidate) string {
	switch {
	case RunwayCmp(best.Runway, c.Runway) != 0:
		return fmt.Sprintf("shorter runway: %s (%s's: %s)", RunwayNote(c.Runway), best.Name, best.Runway.Says())
	case best.Priority != c.Priority:
		return fmt.Sprintf("lower priority (%d < %d)", c.Priority, best.Priority)
	case caughtUp(best) != caughtUp(c):
		return fmt.Sprintf("relay log not applied yet (lag %s), %s has nothing left to apply", lagString(c.Lag), best.Name)
	case caughtUp(best):
		return "same priority and lag, ordered by name"
	case lagKey(best.Lag) != lagKey(c.Lag):
		return fmt.Sprintf("higher lag (%s > %s)", lagString(c.Lag), lagString(best.Lag))
	default:
		return "same priority and lag, ordered by name"
	}
}

// RunwayPlenty is the runway from which two candidates' disks count as alike: a
// disk that lasts a day or more at its current rate leaves time enough to act,
// and a difference beyond it must not outweigh priority or lag.
const RunwayPlenty = 24 * time.Hour

// RunwayRank is a disk forecast's place in the ranking, best first: 0 plenty (not
// filling, or lasting RunwayPlenty or more), 1 filling sooner, 2 unknown, 3 full.
func RunwayRank(f detector.Forecast) int {
	switch f.Outlook {
	case detector.OutlookSteady:
		return 0
	case detector.OutlookFilling:
		if f.Left >= RunwayPlenty {
			return 0
		}
		return 1
	case detector.OutlookExhausted:
		return 3
	}
	return 2
}

// RunwayCmp orders two disk forecasts, the longer runway first: by RunwayRank,
// then, for two that fill within RunwayPlenty, by time left.
func RunwayCmp(a, b detector.Forecast) int {
	ra, rb := RunwayRank(a), RunwayRank(b)
	if c := cmp.Compare(ra, rb); c != 0 || ra != 1 {
		return c
	}
	return cmp.Compare(b.Left, a.Left)
}

// RunwayNote says what a candidate's runway buys, for a person: "at the current
// rate its disk is full in about 6m", "its disk is not filling".
func RunwayNote(f detector.Forecast) string {
	switch f.Outlook {
	case detector.OutlookFilling:
		return "at the current rate its disk is " + f.Says()
	case detector.OutlookSteady:
		return "its disk is not filling"
	case detector.OutlookExhausted:
		return "its disk is full"
	}
	if f.Err != "" {
		return "its disk's runway is unknown (" + f.Err + ")"
	}
	return "its disk's runway is unknown"
}

// preferredNote says, for the first of the ranking, when its runway is what put it
// before the next eligible one.
func preferredNote(best Candidate, out []Ranked, order, group []int) string {
	if len(order) < 2 || group[order[1]] != 0 {
		return ""
	}
	next := out[order[1]].Candidate
	if RunwayCmp(best.Runway, next.Runway) >= 0 {
		return ""
	}
	return fmt.Sprintf("; preferred to %s, whose disk runs out sooner (%s)", next.Name, RunwayNote(next.Runway))
}
