package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// What the forgetting invariant looks at. MariaDB's gtid_binlog_state holds, for
// each (domain, server_id), the sequence number of the last transaction numbered
// for the binary log; it only grows, but for three things: RESET MASTER followed by
// SET GLOBAL gtid_binlog_state (Baton's rejoin of a quarantined node, the campaign's
// rebuild), a restart (the state is read again from the binary logs, so numbers
// never written, phantoms, go), and a filesystem that lost what it had (the
// read-only filesystem fault, repaired with fsck). A purge of binary logs keeps it
// (the newest file's Gtid_list holds it). So a GTID leaving a node's
// gtid_binlog_state is a transaction forgotten, or a number that never was one,
// and every such departure must be accounted for.

// BinlogState is one read of a node's gtid_binlog_state (MariaDB's d-s-n list)
// that found it changed.
type BinlogState struct {
	Node  string    `json:"node"`
	At    time.Time `json:"at"`
	State string    `json:"state"`
	// Prev is when the read before it was made (it found the state before): the
	// change came between Prev and At. Zero: unknown (then the previous change's At).
	Prev time.Time `json:"prev,omitempty"`
}

// Forget is a report that a node was made to forget GTIDs: a rejoin event of
// etcd's history (its agent's repair), or the campaign's own rebuild as the runbook
// says, which it records.
type Forget struct {
	Node string    `json:"node"`
	At   time.Time `json:"at"`
	// By says who: "rejoin" (an agent's, from the history) or "campaign".
	By string `json:"by"`
	// Discard: real transactions may go (an operator's discard, or a rebuild). A
	// rejoin without it forgets phantoms only.
	Discard bool `json:"discard,omitempty"`
	// GTIDs are the GTIDs reported forgotten: single ones (0-2-15) or ranges of
	// one (domain, server_id) (0-2-15..18).
	GTIDs []string `json:"gtids"`
	What  string   `json:"what,omitempty"`
	// Until, when set, is when the campaign's rebuild ended: the node's whole state
	// was replaced between At and Until (RESET MASTER, then the primary's state),
	// and anything that left it then is accounted for; GTIDs are what it lacks
	// after.
	Until time.Time `json:"until,omitempty"`
}

// ServerStart is the campaign starting a node's server again (after a kill, a clean
// shutdown, or a filesystem repair): MariaDB reads its gtid_binlog_state from its
// binary logs then.
type ServerStart struct {
	Node string    `json:"node"`
	At   time.Time `json:"at"` // when the start was asked
	// FS: the filesystem was repaired before (fsck): it may have lost writes the
	// server had made, which is the fault's doing.
	FS bool `json:"fs,omitempty"`
}

// RealGTID is evidence that a GTID was a real transaction on a node: its events
// read whole in the node's binary log by the campaign (sourceBinlog), or recorded
// real by the node's agent ("errant record", "status"). The agent's word is
// conservative: it also takes as real a transaction whose first events it read and
// whose end a full disk cut off, which MariaDB's recovery drops at a restart. So
// Baton may not forget what its agent recorded real, but a restart is held only to
// what the campaign read whole.
const sourceBinlog = "binlog"

type RealGTID struct {
	Node   string    `json:"node"`
	GTID   string    `json:"gtid"`
	Source string    `json:"source"`
	At     time.Time `json:"at"`
}

// domainServer is a (domain, server_id) of MariaDB's GTIDs.
type domainServer struct{ domain, server uint32 }

func (ds domainServer) gtid(seq uint64) string {
	return fmt.Sprintf("%d-%d-%d", ds.domain, ds.server, seq)
}

// parseBinlogState reads a gtid_binlog_state ("0-1-10,0-2-4,1-3-7").
func parseBinlogState(s string) (map[domainServer]uint64, error) {
	out := map[domainServer]uint64{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ds, seq, err := parseGTID(part)
		if err != nil {
			return nil, err
		}
		out[ds] = max(out[ds], seq)
	}
	return out, nil
}

func parseGTID(g string) (domainServer, uint64, error) {
	f := strings.Split(g, "-")
	if len(f) != 3 {
		return domainServer{}, 0, fmt.Errorf("gtid %q: want domain-server-sequence", g)
	}
	d, err1 := strconv.ParseUint(f[0], 10, 32)
	sv, err2 := strconv.ParseUint(f[1], 10, 32)
	seq, err3 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return domainServer{}, 0, fmt.Errorf("gtid %q: not numbers", g)
	}
	return domainServer{uint32(d), uint32(sv)}, seq, nil
}

// gtidRange reads a GTID or a range of one (domain, server_id): "0-2-15" or
// "0-2-15..18".
func gtidRange(s string) (domainServer, uint64, uint64, error) {
	g, hi, isRange := strings.Cut(strings.TrimSpace(s), "..")
	ds, lo, err := parseGTID(g)
	if err != nil {
		return ds, 0, 0, err
	}
	if !isRange {
		return ds, lo, lo, nil
	}
	top, err := strconv.ParseUint(hi, 10, 64)
	if err != nil || top < lo {
		return ds, 0, 0, fmt.Errorf("gtid range %q: bad end", s)
	}
	return ds, lo, top, nil
}

// covers says whether one of gtids (singles or ranges) is ds-seq.
func covers(gtids []string, ds domainServer, seq uint64) bool {
	for _, g := range gtids {
		d, lo, hi, err := gtidRange(g)
		if err == nil && d == ds && lo <= seq && seq <= hi {
			return true
		}
	}
	return false
}

// Lowered lists, as ranges, what left a gtid_binlog_state between two reads: for
// each (domain, server_id) whose sequence went down (or whose entry went), the
// sequences above the new one up to the old. "" when a state does not parse.
func Lowered(before, after string) ([]string, error) {
	b, err := parseBinlogState(before)
	if err != nil {
		return nil, err
	}
	a, err := parseBinlogState(after)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ds := range sortedDS(b) {
		if now := a[ds]; now < b[ds] {
			out = append(out, rangeString(ds, now+1, b[ds]))
		}
	}
	return out, nil
}

func rangeString(ds domainServer, lo, hi uint64) string {
	if lo == hi {
		return ds.gtid(lo)
	}
	return fmt.Sprintf("%s..%d", ds.gtid(lo), hi)
}

func sortedDS(m map[domainServer]uint64) []domainServer {
	out := make([]domainServer, 0, len(m))
	for ds := range m {
		out = append(out, ds)
	}
	slices.SortFunc(out, func(x, y domainServer) int {
		if x.domain != y.domain {
			return int(x.domain) - int(y.domain)
		}
		return int(x.server) - int(y.server)
	})
	return out
}

// maxForgottenListed bounds the GTIDs of one departure looked at one by one; past it
// the departure is judged on its highest GTIDs alone.
const maxForgottenListed = 1000

// restartSlack is how long after the campaign asked a server to start its first
// read may come (the start itself waits until the server answers).
const restartSlack = time.Second

// transient is how soon a GTID that left a state may be back in it for its going
// not to count: RESET MASTER, then SET GLOBAL gtid_binlog_state, read between
// the two (an agent's repair, the campaign's rebuild), or transactions fetched
// again from the primary. What comes back was not forgotten.
const transient = 3 * time.Second

// checkForgetting asserts that every GTID that left a node's gtid_binlog_state
// between two of the campaign's reads is accounted for:
//
//   - reported forgotten by a rejoin event with the operator's discard, or by the
//     campaign's rebuild: reported, whatever it was;
//   - reported forgotten by a rejoin event as a phantom: then it must not be known
//     real on that node (its events read whole in the node's binary log by the
//     campaign, or recorded real by the node's agent under errant/<node> or in its
//     status): a real transaction forgotten as a phantom is a violation;
//   - gone across a restart of the node's server by the campaign (between the two
//     reads): MariaDB reads the state from its binary logs again and numbers that
//     were never written whole (phantoms, a write a full disk cut off) go; a GTID
//     the campaign read whole in the binary log that goes so is a violation,
//     unless the filesystem was repaired (fsck) in between, whose losses are the
//     fault's;
//   - anything else is a violation: forgotten, and nobody said so.
//
// A GTID back in a read within transient of the one that found it gone was not
// forgotten, and a departure read after o.BinlogJudgedUntil is left to the next
// round (whose reads start with the last one before it).
//
// Each node's reads are compared with the highest sequence it held of each
// (domain, server_id) since its previous departure was accounted for. A rejoin's
// GTIDs are unique (MariaDB's strict mode never numbers one twice), so a report
// counts wherever it falls in time.
func checkForgetting(o Observation, checks Checks) []Violation {
	var out []Violation
	byNode := map[string][]BinlogState{}
	for _, s := range o.Binlog {
		byNode[s.Node] = append(byNode[s.Node], s)
	}
	real := map[string]map[string]RealGTID{}
	for _, g := range o.Real {
		if real[g.Node] == nil {
			real[g.Node] = map[string]RealGTID{}
		}
		if _, ok := real[g.Node][g.GTID]; !ok {
			real[g.Node][g.GTID] = g
		}
	}
	nodes := make([]string, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, node := range nodes {
		reads := byNode[node]
		sort.SliceStable(reads, func(i, j int) bool { return reads[i].At.Before(reads[j].At) })
		var high map[domainServer]uint64
		var prev BinlogState
		for i, rd := range reads {
			cur, err := parseBinlogState(rd.State)
			if err != nil {
				checks[Forgetting]++
				out = append(out, violation(Forgetting, "%s: gtid_binlog_state %q at %s does not parse: %v", node, rd.State, stamp(rd.At), err))
				continue
			}
			if high == nil {
				high, prev = cur, rd
				continue
			}
			if !o.BinlogJudgedUntil.IsZero() && rd.At.After(o.BinlogJudgedUntil) {
				high, prev = cur, rd
				continue
			}
			checks[Forgetting]++
			from := rd.Prev
			if from.IsZero() {
				from = prev.At
			}
			restarted, fsRepaired := restartBetween(o.Starts, node, from, rd.At)
			back := backSoon(reads[i+1:], rd.At)
			for _, ds := range sortedDS(high) {
				if cur[ds] >= high[ds] {
					continue
				}
				lo := max(cur[ds]+1, high[ds]-min(high[ds], maxForgottenListed)+1)
				var unreported, realGone []string
				for seq := lo; seq <= high[ds]; seq++ {
					g := ds.gtid(seq)
					ev, isReal := real[node][g]
					switch f, reported := forgetOf(o.Forgets, node, ds, seq, from, rd.At); {
					case back[ds] >= seq:
					case reported && f.Discard:
					case reported && isReal:
						realGone = append(realGone, fmt.Sprintf("%s (real: %s at %s; forgotten by %s at %s as a phantom)", g, ev.Source, stamp(ev.At), f.By, stamp(f.At)))
					case reported:
					case restarted && fsRepaired:
					case restarted && isReal && ev.Source == sourceBinlog:
						realGone = append(realGone, fmt.Sprintf("%s (real: %s at %s; gone when the server restarted)", g, ev.Source, stamp(ev.At)))
					case restarted:
					default:
						unreported = append(unreported, g)
					}
				}
				if len(realGone) > 0 {
					out = append(out, violation(Forgetting, "%s forgot real transactions: %s", node, strings.Join(head(realGone, 5), "; ")))
				}
				if len(unreported) > 0 {
					out = append(out, violation(Forgetting, "%s: %s left gtid_binlog_state (%s at %s, %s at %s) and nothing reports it forgotten",
						node, strings.Join(head(unreported, 10), ", "), ds.gtid(high[ds]), stamp(prev.At), orNone(cur, ds), stamp(rd.At)))
				}
			}
			// What is accounted for (or reported above) is the new baseline.
			high, prev = cur, rd
		}
	}
	return dedupe(out, 10)
}

func orNone(cur map[domainServer]uint64, ds domainServer) string {
	if seq, ok := cur[ds]; ok {
		return ds.gtid(seq)
	}
	return fmt.Sprintf("no %d-%d entry", ds.domain, ds.server)
}

// forgetOf finds the report that node forgot ds-seq, gone between from and to: one
// that names it, or a rebuild under way then.
func forgetOf(fs []Forget, node string, ds domainServer, seq uint64, from, to time.Time) (Forget, bool) {
	for _, f := range fs {
		if f.Node != node {
			continue
		}
		if covers(f.GTIDs, ds, seq) || !f.Until.IsZero() && !f.At.After(to) && !f.Until.Before(from) {
			return f, true
		}
	}
	return Forget{}, false
}

// backSoon is the highest sequence of each (domain, server_id) that the reads after
// one made at t hold within transient of it.
func backSoon(later []BinlogState, t time.Time) map[domainServer]uint64 {
	out := map[domainServer]uint64{}
	for _, rd := range later {
		if rd.At.Sub(t) > transient {
			break
		}
		st, err := parseBinlogState(rd.State)
		if err != nil {
			continue
		}
		for ds, seq := range st {
			out[ds] = max(out[ds], seq)
		}
	}
	return out
}

// restartBetween says whether the campaign started node's server again between two
// reads (from after the first up to the second, which may follow the start by
// restartSlack), and whether its filesystem was repaired then.
func restartBetween(rs []ServerStart, node string, from, to time.Time) (bool, bool) {
	restarted, fs := false, false
	for _, r := range rs {
		if r.Node == node && r.At.After(from.Add(-restartSlack)) && !r.At.After(to) {
			restarted = true
			fs = fs || r.FS
		}
	}
	return restarted, fs
}
