package chaos

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// Invariant is one property the checker asserts after every round.
type Invariant int

// The invariants.
const (
	InvariantUnknown Invariant = iota
	// Durability: every write acknowledged to the writer is on the primary of record
	// and, once settled, on every healthy replica.
	Durability
	// SplitBrain: no server acknowledged a write while not the primary of record, and
	// none after a newer epoch's primary had acknowledged one.
	SplitBrain
	// Liveness: within LiveBound after healing, one writable primary of record holding
	// the leader key and the virtual IP; once settled, every other node a healthy
	// replica or quarantined with a reason.
	Liveness
	// Agreement: etcd's state, the servers' read_only, replication sources and the
	// virtual IP's holder agree.
	Agreement
	// Forgetting: no GTID leaves a node's gtid_binlog_state unless reported (a
	// rejoin event, the campaign's rebuild) or gone with a restart, and no real
	// transaction is forgotten as a phantom (checkForgetting).
	Forgetting
	invariantEnd
)

func (i Invariant) String() string {
	switch i {
	case Durability:
		return "durability"
	case SplitBrain:
		return "split-brain"
	case Liveness:
		return "liveness"
	case Agreement:
		return "agreement"
	case Forgetting:
		return "forgetting"
	}
	return fmt.Sprintf("invariant(%d)", int(i))
}

// LiveBound is how soon after healing the cluster must have its writable primary.
const LiveBound = 15 * time.Second

// PauseBound is the longest pause of the writer's acknowledgements allowed once they
// came back after healing: nothing is failing then, so a longer one is a cluster that
// came back and fell over again (a primary whose semi-sync replicas went away, say).
const PauseBound = 5 * time.Second

// epochSlack is how late the campaign's watch may see a new primary of record after
// that primary took its first write (the watch and the writer are separate clients).
const epochSlack = time.Second

// Write is one acknowledged write, by the writer (through the virtual IP) or by the
// monitor (to one server directly): it committed on Node between Sent and At.
type Write struct {
	Node   string    `json:"node"`
	Seq    int64     `json:"seq,omitempty"` // the writer's id; 0 for the monitor's
	Sent   time.Time `json:"sent"`
	At     time.Time `json:"at"`
	Writer bool      `json:"writer,omitempty"`
}

// Epoch is a primary of record as the campaign's etcd watch saw it appear.
type Epoch struct {
	Epoch uint64    `json:"epoch"`
	Node  string    `json:"node"`
	At    time.Time `json:"at"`
}

// NodeState is one node as observed after a round: its server, its agent's record in
// etcd, and the kernel.
type NodeState struct {
	Name      string `json:"name"`
	Addr      string `json:"addr"` // its server's IP
	Reachable bool   `json:"reachable"`
	ReadOnly  bool   `json:"read_only"`
	Source    string `json:"source,omitempty"` // Master_Host, "" when it replicates from none
	IO        bool   `json:"io_running"`
	SQL       bool   `json:"sql_running"`
	VIP       bool   `json:"vip"` // holds the virtual IP
	// From etcd: the agent's record (Role "" when it has none).
	Role    cluster.Role     `json:"role,omitempty"`
	Verdict detector.Verdict `json:"verdict,omitempty"`
	Reason  string           `json:"reason,omitempty"`
	Errant  string           `json:"errant,omitempty"`
	// LagMS is the agent's published lag of a replica (cluster.NodeStatus.LagMS:
	// -1 unknown).
	LagMS int64 `json:"lag_ms"`
	// Missing are writer acks this server lacks (checked on the primary and on
	// healthy replicas only).
	Missing []int64 `json:"missing,omitempty"`
	Checked bool    `json:"durability_checked,omitempty"`
}

// Cluster is the whole cluster as observed at one moment.
type Cluster struct {
	EtcdOK  bool                 `json:"etcd_ok"`
	Primary string               `json:"primary"` // of record, in etcd
	Epoch   uint64               `json:"epoch"`
	Leader  string               `json:"leader"` // holder of the leader key
	Nodes   map[string]NodeState `json:"nodes"`
}

// Live says whether the cluster has its one writable primary of record holding the
// leader key and the virtual IP, and if not, why.
func (c Cluster) Live() (bool, string) {
	if !c.EtcdOK {
		return false, "etcd unreadable"
	}
	p, ok := c.Nodes[c.Primary]
	switch {
	case c.Primary == "" || !ok:
		return false, fmt.Sprintf("no primary of record (%q)", c.Primary)
	case c.Leader != c.Primary:
		return false, fmt.Sprintf("leader key held by %q, primary of record %s", c.Leader, c.Primary)
	case !p.Reachable:
		return false, fmt.Sprintf("primary %s unreachable", c.Primary)
	case p.ReadOnly:
		return false, fmt.Sprintf("primary %s read_only", c.Primary)
	case !p.VIP:
		return false, fmt.Sprintf("primary %s does not hold the virtual IP", c.Primary)
	}
	for _, n := range c.sorted() {
		if n.Name == c.Primary {
			continue
		}
		if n.Reachable && !n.ReadOnly {
			return false, fmt.Sprintf("%s writable too", n.Name)
		}
		if n.VIP {
			return false, fmt.Sprintf("%s holds the virtual IP too", n.Name)
		}
	}
	return true, ""
}

// settledLag is the most a settled replica may lag: one that lags less catches up
// well within the durability check's wait.
const settledLag = 3 * time.Second

// Settled says whether every node other than the primary is a healthy replica of it
// or quarantined with a reason, and the cluster Live; if not, why.
func (c Cluster) Settled() (bool, string) {
	if ok, why := c.Live(); !ok {
		return false, why
	}
	p := c.Nodes[c.Primary]
	if p.Role != "primary" {
		// Its agent (restarted, say) has not published it yet.
		return false, fmt.Sprintf("the primary of record %s is %q in its agent's record", p.Name, p.Role)
	}
	for _, n := range c.sorted() {
		if n.Name == c.Primary {
			continue
		}
		switch {
		case n.Role == "quarantined":
			if n.Reason == "" && n.Errant == "" {
				return false, fmt.Sprintf("%s quarantined without a reason", n.Name)
			}
		case !n.Reachable:
			return false, fmt.Sprintf("%s unreachable", n.Name)
		case n.Role != "replica":
			return false, fmt.Sprintf("%s is %q in etcd, not a replica", n.Name, n.Role)
		case n.Verdict != detector.Healthy:
			return false, fmt.Sprintf("%s is a replica, %s: %s", n.Name, n.Verdict, n.Reason)
		case n.Source != p.Addr || !n.IO || !n.SQL:
			return false, fmt.Sprintf("%s replicates from %q (io %t, sql %t), not from %s", n.Name, n.Source, n.IO, n.SQL, p.Addr)
		case n.LagMS < 0:
			return false, fmt.Sprintf("%s is a replica whose lag is unknown", n.Name)
		case n.LagMS > settledLag.Milliseconds():
			// Not caught up: the durability check would find it lacking writes (a
			// replica whose relay log write waited on a full disk retries only up
			// to 60 s after the disk is freed).
			return false, fmt.Sprintf("%s is a replica %s behind", n.Name, time.Duration(n.LagMS)*time.Millisecond)
		}
	}
	return true, ""
}

// Quarantined lists the quarantined nodes with their reasons.
func (c Cluster) Quarantined() map[string]string {
	out := map[string]string{}
	for _, n := range c.Nodes {
		if n.Role == "quarantined" {
			why := n.Reason
			if n.Errant != "" {
				why = fmt.Sprintf("errant transactions %s (verdict %s: %s)", n.Errant, n.Verdict, n.Reason)
			}
			out[n.Name] = why
		}
	}
	return out
}

func (c Cluster) sorted() []NodeState {
	out := make([]NodeState, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Observation is what the campaign saw of one round.
type Observation struct {
	Writes []Write `json:"writes"` // acknowledged during the round, in any order
	// Epochs are every primary of record seen since the campaign (or its cluster)
	// started, oldest first.
	Epochs []Epoch   `json:"epochs"`
	Healed time.Time `json:"healed"` // the last fault healed
	Live   time.Time `json:"live"`   // when Final.Live first held after Healed; zero: never
	// WriteBack is when the writer's first write sent after Healed was
	// acknowledged; zero: none was.
	WriteBack time.Time `json:"write_back"`
	// End is when the observation ended (settled, or the settle bound ran out); zero
	// when unknown, and then a pause at the end is not judged.
	End time.Time `json:"end"`
	// WriteBackBound is how soon after healing WriteBack must come (LiveBound when
	// zero; see Schedule.WriteBackBound).
	WriteBackBound time.Duration `json:"write_back_bound_ns,omitempty"`
	Final          Cluster       `json:"final"` // after settling (or when the settle bound ran out)
	// Binlog are the nodes' gtid_binlog_state reads since the previous round's
	// check, after each node's last read before it (its baseline); Forgets, Starts
	// and Real are what accounts for a GTID leaving one (checkForgetting), since the
	// cluster came up.
	Binlog []BinlogState `json:"binlog,omitempty"`
	// BinlogJudgedUntil: departures read after it are left to the next round.
	BinlogJudgedUntil time.Time     `json:"binlog_judged_until,omitempty"`
	Forgets           []Forget      `json:"forgets,omitempty"`
	Starts            []ServerStart `json:"starts,omitempty"`
	Real              []RealGTID    `json:"real,omitempty"`
}

// Violation is one broken invariant.
type Violation struct {
	Invariant Invariant `json:"-"`
	Name      string    `json:"invariant"`
	Detail    string    `json:"detail"`
}

func violation(i Invariant, format string, args ...any) Violation {
	return Violation{Invariant: i, Name: i.String(), Detail: fmt.Sprintf(format, args...)}
}

// Checks counts the assertions made, by invariant.
type Checks map[Invariant]int

// Check asserts every invariant over one round's observation: it returns the
// violations and how many assertions it made of each invariant.
func Check(o Observation) ([]Violation, Checks) {
	checks := Checks{}
	var out []Violation
	out = append(out, checkSplitBrain(o, checks)...)
	out = append(out, checkDurability(o, checks)...)
	out = append(out, checkLiveness(o, checks)...)
	out = append(out, checkAgreement(o, checks)...)
	out = append(out, checkForgetting(o, checks)...)
	return out, checks
}

// epochOf is the epoch under which node's write acknowledged at at was taken: the
// newest epoch naming node seen by then (with epochSlack); 0 when node was never the
// primary of record.
func epochOf(epochs []Epoch, node string, at time.Time) uint64 {
	var e uint64
	for _, ep := range epochs {
		if ep.Node == node && !ep.At.After(at.Add(epochSlack)) {
			e = max(e, ep.Epoch)
		}
	}
	return e
}

func checkSplitBrain(o Observation, checks Checks) []Violation {
	var out []Violation
	ws := slices.Clone(o.Writes)
	sort.Slice(ws, func(i, j int) bool { return ws[i].At.Before(ws[j].At) })
	epochs := make([]uint64, len(ws))
	for i, w := range ws {
		checks[SplitBrain]++
		epochs[i] = epochOf(o.Epochs, w.Node, w.At)
		if epochs[i] == 0 {
			out = append(out, violation(SplitBrain, "%s acknowledged a write (%s, sent %s) without ever being the primary of record",
				w.Node, who(w), stamp(w.Sent)))
		}
	}
	// A write sent after another server of a newer epoch had acknowledged one was
	// taken by a deposed primary: both took writes in the same window.
	var newest struct {
		epoch uint64
		w     Write
	}
	j := 0
	for i, w := range ws {
		for j < len(ws) && ws[j].At.Before(w.Sent) {
			if epochs[j] > newest.epoch {
				newest.epoch, newest.w = epochs[j], ws[j]
			}
			j++
		}
		if epochs[i] != 0 && epochs[i] < newest.epoch && newest.w.Node != w.Node {
			out = append(out, violation(SplitBrain, "%s (epoch %d) acknowledged a write (%s) sent %s, after %s (epoch %d) had acknowledged one at %s",
				w.Node, epochs[i], who(w), stamp(w.Sent), newest.w.Node, newest.epoch, stamp(newest.w.At)))
		}
	}
	return dedupe(out, 5)
}

func who(w Write) string {
	if w.Writer {
		return fmt.Sprintf("writer seq %d", w.Seq)
	}
	return "monitor"
}

func stamp(t time.Time) string { return t.Format("15:04:05.000") }

// dedupe keeps the first n violations and says how many more there were.
func dedupe(vs []Violation, n int) []Violation {
	if len(vs) <= n {
		return vs
	}
	more := len(vs) - n
	vs = vs[:n]
	vs = append(vs, violation(vs[0].Invariant, "and %d more like these", more))
	return vs
}

func checkDurability(o Observation, checks Checks) []Violation {
	var out []Violation
	for _, n := range o.Final.sorted() {
		if !n.Checked {
			continue
		}
		checks[Durability]++
		if len(n.Missing) > 0 {
			what := "replica"
			if n.Name == o.Final.Primary {
				what = "primary of record"
			}
			out = append(out, violation(Durability, "%d acknowledged writes missing on %s (%s): seq %v", len(n.Missing), n.Name, what, head(n.Missing, 10)))
		}
	}
	if p, ok := o.Final.Nodes[o.Final.Primary]; o.Final.Primary != "" && (!ok || !p.Checked) {
		checks[Durability]++
		out = append(out, violation(Durability, "the writes could not be read on the primary of record %q", o.Final.Primary))
	}
	return out
}

func head[T any](xs []T, n int) []T {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}

func checkLiveness(o Observation, checks Checks) []Violation {
	var out []Violation
	checks[Liveness]++
	switch {
	case o.Live.IsZero():
		_, why := o.Final.Live()
		out = append(out, violation(Liveness, "no writable primary of record with the leader key and the virtual IP after healing: %s", why))
	case o.Live.Sub(o.Healed) > LiveBound:
		out = append(out, violation(Liveness, "the writable primary of record came %s after healing (bound %s)", o.Live.Sub(o.Healed).Round(time.Millisecond), LiveBound))
	}
	// A primary that looks writable but cannot commit (semi-sync with no replica
	// left to acknowledge) is no primary to an application.
	checks[Liveness]++
	switch {
	case o.WriteBack.IsZero():
		out = append(out, violation(Liveness, "no write through the virtual IP acknowledged after healing"))
	case o.WriteBack.Sub(o.Healed) > cmp.Or(o.WriteBackBound, LiveBound):
		out = append(out, violation(Liveness, "the first write through the virtual IP after healing was acknowledged %s later (bound %s)", o.WriteBack.Sub(o.Healed).Round(time.Millisecond), cmp.Or(o.WriteBackBound, LiveBound)))
	}
	checks[Liveness]++
	if !o.WriteBack.IsZero() {
		if from, d := longestPause(o.Writes, o.WriteBack, o.End); d > PauseBound {
			out = append(out, violation(Liveness, "writes through the virtual IP paused %s from %s, after they had come back (bound %s)",
				d.Round(time.Millisecond), stamp(from), PauseBound))
		}
	}
	checks[Liveness]++
	if ok, why := o.Final.Settled(); !ok && !o.Live.IsZero() {
		out = append(out, violation(Liveness, "not settled: %s", why))
	}
	return out
}

// longestPause is the longest time without a writer acknowledgement between from
// and end (end zero: up to the last acknowledgement), and when it began.
func longestPause(ws []Write, from, end time.Time) (time.Time, time.Duration) {
	var acks []time.Time
	for _, w := range ws {
		if w.Writer && !w.At.Before(from) {
			acks = append(acks, w.At)
		}
	}
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	if !end.IsZero() {
		acks = append(acks, end)
	}
	var start time.Time
	var longest time.Duration
	prev := from
	for _, a := range acks {
		if d := a.Sub(prev); d > longest {
			start, longest = prev, d
		}
		prev = a
	}
	return start, longest
}

func checkAgreement(o Observation, checks Checks) []Violation {
	var out []Violation
	f := o.Final
	if !f.EtcdOK {
		checks[Agreement]++
		return []Violation{violation(Agreement, "etcd unreadable after settling")}
	}
	p, ok := f.Nodes[f.Primary]
	for _, n := range f.sorted() {
		checks[Agreement]++
		isPrimary := n.Name == f.Primary
		switch {
		case n.VIP && !isPrimary:
			out = append(out, violation(Agreement, "%s holds the virtual IP, the primary of record is %s", n.Name, f.Primary))
		case n.Reachable && !n.ReadOnly && !isPrimary:
			out = append(out, violation(Agreement, "%s is writable (read_only off), the primary of record is %s", n.Name, f.Primary))
		case isPrimary && n.Reachable && n.Source != "":
			out = append(out, violation(Agreement, "the primary of record %s replicates from %s", n.Name, n.Source))
		case isPrimary && n.Role != "" && n.Role != "primary":
			out = append(out, violation(Agreement, "the primary of record %s is %q in its agent's record", n.Name, n.Role))
		case !isPrimary && n.Role == "primary":
			out = append(out, violation(Agreement, "%s says it is the primary, the primary of record is %s", n.Name, f.Primary))
		case !isPrimary && n.Role == "replica" && n.Reachable && ok && n.Source != p.Addr:
			out = append(out, violation(Agreement, "%s is a replica in etcd but replicates from %q, not the primary of record %s (%s)", n.Name, n.Source, f.Primary, p.Addr))
		}
	}
	if f.Leader != "" && f.Leader != f.Primary {
		checks[Agreement]++
		out = append(out, violation(Agreement, "the leader key is held by %s, the primary of record is %s", f.Leader, f.Primary))
	}
	return out
}
