// Package status is the operator's view of one cluster, read from etcd: what
// `baton status` prints and what the demo shows. It only reads; it never changes the
// cluster.
package status

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// Cluster is the cluster as `baton status` shows it; `--json` prints it as is.
type Cluster struct {
	Cluster     string    `json:"cluster"`
	Primary     string    `json:"primary"`
	PrimaryAddr string    `json:"primary_addr"`
	Epoch       uint64    `json:"epoch"`
	Since       time.Time `json:"since"`
	Leader      string    `json:"leader"`
	VIPHolder   string    `json:"vip_holder,omitempty"`
	Coordinator string    `json:"coordinator"`
	Paused      bool      `json:"paused"`
	// AutomaticFailover says whether a failed primary is replaced without a person
	// now, and when not, why, until when, and the command that ends it.
	AutomaticFailover AutomaticFailover `json:"automatic_failover"`
	InProgress        *cluster.Intent   `json:"in_progress,omitempty"`
	LastEvent         *cluster.Event    `json:"last_event,omitempty"`
	Warnings          []string          `json:"warnings,omitempty"`
	Nodes             []Node            `json:"nodes"`
	Request           *cluster.Request  `json:"request,omitempty"`
	// Policy is the cluster's failover policy (nil: missing or unreadable), and the
	// live agents whose configuration files disagree with it.
	Policy              *cluster.PolicyRecord        `json:"policy,omitempty"`
	PolicyDisagreements []cluster.PolicyDisagreement `json:"policy_disagreements,omitempty"`
	// Decision is what the coordinator decided last, with refused or failed tries.
	Decision *cluster.CoordinatorStatus `json:"decision,omitempty"`
}

// AutomaticFailover is whether a failed primary is replaced without a person now.
type AutomaticFailover struct {
	On     bool `json:"on"`
	Paused bool `json:"paused,omitempty"`
	// Blocked is the anti-flap block of the latest automatic failover, nil when none
	// is in force.
	Blocked *Block `json:"blocked,omitempty"`
	// Why says it in a sentence, with the command that ends it; "" when on.
	Why string `json:"why,omitempty"`
}

// Block is the anti-flap block as status shows it.
type Block struct {
	// Epoch and To are the failover that set it, At when (the coordinator's clock).
	Epoch uint64        `json:"epoch"`
	To    string        `json:"to"`
	At    time.Time     `json:"at"`
	For   time.Duration `json:"for_ns"`
	// LeftMS is how long it still holds, as etcd's lease says; -1 when not read.
	LeftMS int64 `json:"left_ms"`
}

type Node struct {
	Name string `json:"name"`
	// NoAgent: the node is a member (seen with a live agent before) whose agent has no
	// session in etcd now (stopped, or cut off from etcd): nothing below is known of
	// it but its address; Reason says so.
	NoAgent    bool             `json:"no_agent,omitempty"`
	Addr       string           `json:"addr"`
	Role       cluster.Role     `json:"role"`
	Verdict    detector.Verdict `json:"verdict"`
	Reason     string           `json:"reason,omitempty"`
	ReadOnly   bool             `json:"read_only"`
	LagMS      int64            `json:"lag_ms"`
	GTID       string           `json:"gtid"`
	IORunning  bool             `json:"io_running"`
	SQLRunning bool             `json:"sql_running"`
	Errant     string           `json:"errant,omitempty"`
	// ErrantTxns is what the node's binary logs say of each errant GTID.
	ErrantTxns []replication.ErrantTxn `json:"errant_txns,omitempty"`
	Leader     bool                    `json:"leader"`
	VIP        bool                    `json:"vip"`
	LeaseTTLMS int64                   `json:"lease_ttl_ms"`
	// StatusAgeMS is how old the node's published status is (its GTID set, lag,
	// probe latencies and disk figures are as of then): an agent republishes at
	// once what a decision needs, the rest every 30 s. -1 when unknown.
	StatusAgeMS int64   `json:"status_age_ms"`
	WriteMS     float64 `json:"write_ms"`
	DiskFree    uint64  `json:"disk_free_bytes,omitempty"`
	// DiskTimeToFull is the agent's forecast for the filesystem (datadir, binlog or
	// relay log) with the least free space, 0 when none; Source is the server the
	// node replicates from (host:port), "" when none.
	DiskTimeToFull time.Duration `json:"disk_time_to_full_ns,omitempty"`
	// DiskForecast says for people when the disk it fills first is full: "full",
	// "full in about 12m", "not filling" (not filling, or not within a day: an idle
	// disk's forecast is noise), "unknown" when not read or not measured yet.
	DiskForecast string `json:"disk_forecast"`
	Source       string `json:"source,omitempty"`
	// HeartbeatMS is the age of the newest heartbeat the replica applied (LagMS is
	// how far behind it is): it rises when the primary stops writing. -1 unknown.
	HeartbeatMS int64 `json:"heartbeat_ms"`
	// Forecasts are when each resource that can stop the node's writes runs out,
	// those that run out first first, in the words every view uses.
	Forecasts []Forecast `json:"forecasts,omitempty"`
	// SemiSync is the node's semi-sync state ("" when not configured).
	SemiSync cluster.SemiSyncState `json:"semi_sync,omitempty"`
	// AwaitsAck: the node's commits wait for a semi-sync acknowledgement that no
	// replica sends (see failover.NodeStatus.AwaitsAck).
	AwaitsAck bool   `json:"awaits_ack,omitempty"`
	Repaired  string `json:"repaired,omitempty"`
	// Archive is the latest file on the node's host holding errant transactions
	// its agent undid or discarded.
	Archive string `json:"archive,omitempty"`
	// Rebuild is the node's rebuild under way, or the latest that failed.
	Rebuild *cluster.RebuildProgress `json:"rebuild,omitempty"`
}

// Forecast is one of a node's forecasts with its words: Says ("full in about 9m")
// and Line (with its figures), the same in baton status, its JSON, the agent's
// /status and the web view.
type Forecast struct {
	detector.Forecast
	Says string `json:"says"`
	Line string `json:"line"`
}

// forecastsOf is a node's forecasts, those that run out first first.
func forecastsOf(n cluster.NodeStatus) []Forecast {
	fs := slices.Clone(n.Forecasts)
	slices.SortStableFunc(fs, func(a, b detector.Forecast) int {
		switch {
		case detector.Sooner(a, b):
			return -1
		case detector.Sooner(b, a):
			return 1
		}
		return 0
	})
	out := make([]Forecast, 0, len(fs))
	for _, f := range fs {
		out = append(out, Forecast{Forecast: f, Says: f.Says(), Line: f.Line()})
	}
	return out
}

// SemiSyncText is the node's semi-sync state for people: "-" when not configured,
// with ", commits waiting" while its commits wait for an acknowledgement.
func (n Node) SemiSyncText() string {
	s := OrDash(string(n.SemiSync))
	if n.AwaitsAck {
		s += ", commits waiting"
	}
	return s
}

// Read reads the cluster's state from etcd and makes it a Cluster.
func Read(ctx context.Context, store *cluster.Store, name string) (Cluster, error) {
	snap, err := store.Load(ctx)
	if err != nil {
		return Cluster{}, err
	}
	return Of(ctx, store, name, snap), nil
}

// Of makes a Cluster of a snapshot of the cluster's state. It reads what a snapshot
// does not carry, best effort: the agents' lease times (-1 when unread).
func Of(ctx context.Context, store *cluster.Store, name string, snap cluster.Snapshot) Cluster {
	st := Cluster{
		Cluster: name, Primary: snap.Primary.Node, PrimaryAddr: snap.Primary.Addr, Epoch: snap.Primary.Epoch,
		Since: snap.Primary.Since, Leader: snap.Leader, Coordinator: snap.Coordinator, Paused: snap.Settings.Paused,
		InProgress: snap.Intent, Request: snap.Request, LastEvent: snap.LastEvent, Decision: snap.Decision,
		Policy: snap.Policy, PolicyDisagreements: cluster.PolicyDisagreements(snap.Policy, snap.Nodes),
	}
	st.AutomaticFailover = automaticFailover(ctx, store, snap)
	switch {
	case snap.PolicyErr != "":
		st.Warnings = append(st.Warnings, "the cluster's failover policy is unreadable ("+snap.PolicyErr+"): coordinators decide with their own files' (see `baton policy`)")
	case snap.Policy == nil && len(snap.Nodes) > 0:
		st.Warnings = append(st.Warnings, "the cluster has no failover policy in etcd yet (see `baton policy`)")
	}
	for _, d := range st.PolicyDisagreements {
		st.Warnings = append(st.Warnings, fmt.Sprintf("%s's configuration file disagrees with the cluster's failover policy: %s (see `baton policy show`)",
			d.Node, strings.Join(d.Diff, ", ")))
	}
	if d := snap.Decision; d != nil && d.Tries > 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf("automatic failover did not complete %d time(s): %s; next try not before %s",
			d.Tries, d.LastError, d.RetryAt.Local().Format(time.DateTime)))
	}
	names := make([]string, 0, len(snap.Nodes))
	for name := range snap.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	if snap.Primary.Node != "" {
		if _, ok := snap.Nodes[snap.Primary.Node]; !ok {
			st.Warnings = append(st.Warnings, fmt.Sprintf("the primary's agent (%s) has no session in etcd: stopped, or cut off from etcd (its server may still run)", snap.Primary.Node))
		}
	}
	// Every member: one whose agent has no session now (stopped, or cut off from
	// etcd, the primary of record included) keeps its row, saying so.
	for name := range snap.Members {
		if _, live := snap.Nodes[name]; !live {
			names = append(names, name)
		}
	}
	if p := snap.Primary.Node; p != "" && !slices.Contains(names, p) {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, name := range names {
		n, live := snap.Nodes[name]
		if !live {
			st.Nodes = append(st.Nodes, absentNode(snap, name))
			continue
		}
		ns := Node{Name: name, Addr: n.Addr, Role: n.Role, Verdict: n.Verdict, Reason: n.Reason, ReadOnly: n.ReadOnly, StatusAgeMS: ageMS(n.At),
			LagMS: n.LagMS, GTID: n.GTID, IORunning: n.IORunning, SQLRunning: n.SQLRunning, Errant: n.Errant,
			Leader: snap.Leader == name, VIP: n.VIP, LeaseTTLMS: -1, WriteMS: n.WriteMS, DiskFree: n.DiskFree,
			SemiSync: n.SemiSync, AwaitsAck: n.AwaitsAck, Repaired: n.Repaired, DiskTimeToFull: n.DiskTimeToFull, Source: n.Source,
			ErrantTxns: n.ErrantTxns, Archive: n.Archive, HeartbeatMS: n.HeartbeatMS, Forecasts: forecastsOf(n), Rebuild: n.Rebuild}
		if n.VIP {
			if st.VIPHolder != "" {
				st.Warnings = append(st.Warnings, fmt.Sprintf("the virtual IP is on %s and %s", st.VIPHolder, name))
			}
			st.VIPHolder = name
		}
		if id, ok := snap.NodeLeases[name]; ok && id != 0 {
			if ttl, err := store.LeaseTTL(ctx, id); err == nil {
				ns.LeaseTTLMS = ttl.Milliseconds()
			}
		}
		ns.DiskForecast = DiskForecast(n)
		if len(n.Forecasts) == 0 {
			// An older agent: its fullest disk only.
			switch {
			case ns.DiskForecast == diskFull:
				st.Warnings = append(st.Warnings, fmt.Sprintf("%s: disk full (%d bytes free)", name, n.DiskFree))
			case n.DiskTimeToFull > 0 && n.DiskTimeToFull < time.Hour:
				st.Warnings = append(st.Warnings, fmt.Sprintf("%s: disk %s", name, n.Runway().Says()))
			}
		}
		if n.Role == cluster.RolePrimary && !n.ReadOnly && n.SemiSync.Unprotected() {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s: semi-sync %s on the writable primary: commits are acknowledged before any replica has them, and a failover can lose them", name, n.SemiSync))
		}
		if n.AwaitsAck {
			timeout := "unknown"
			if n.SemiSyncTimeout > 0 {
				timeout = n.SemiSyncTimeout.String()
			}
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s: commits wait for a semi-sync acknowledgement that no replica sends "+
				"(%d semi-sync replica(s) connected, rpl_semi_sync_master_timeout %s): writes hang until a replica acknowledges or the timeout runs out",
				name, n.SemiSyncClients, timeout))
		}
		if n.Repaired != "" {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s: Baton repaired drift at %s", name, n.Repaired))
		}
		if n.Archive != "" {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s: errant transactions it undid or discarded are archived in %s (on its host): read them, re-apply what matters on the primary (mariadb < FILE)", name, n.Archive))
		}
		switch p := n.Rebuild; {
		case p.Running():
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s is being rebuilt: %s", name, RebuildText(p)))
		case p != nil:
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s: the latest rebuild did not complete: %s", name, RebuildText(p)))
		}
		if n.Role == cluster.RoleQuarantined && !n.Rebuild.Running() {
			st.Warnings = append(st.Warnings, quarantineWarnings(name, n, snap)...)
		}
		st.Nodes = append(st.Nodes, ns)
	}
	st.Warnings = append(st.Warnings, ForecastWarnings(snap)...)
	return st
}

// Print writes the cluster as a table, with colours when color is set.
func Print(w io.Writer, st Cluster, color bool) {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return "\033[" + code + "m" + s + "\033[0m"
	}
	fmt.Fprintf(w, "cluster %s  primary %s (epoch %d, since %s)  coordinator %s\n", st.Cluster, OrDash(st.Primary), st.Epoch,
		st.Since.Local().Format(time.DateTime), OrDash(st.Coordinator))
	if af := st.AutomaticFailover; af.On {
		fmt.Fprintf(w, "automatic failover: %s\n", paint("32", "on"))
	} else {
		fmt.Fprintf(w, "automatic failover: %s (%s)\n", paint("33", "OFF"), af.Why)
	}
	if d := st.Decision; d != nil {
		fmt.Fprintf(w, "coordinator decides: %s (%s)\n", d.Action, d.Reason)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tVERDICT\tLAG\tGTID\tSEMI-SYNC\tVIP\tLEASE\tREASON")
	for _, n := range st.Nodes {
		verdict := n.Verdict.String()
		switch {
		case n.Verdict == detector.Healthy:
			verdict = paint("32", verdict)
		case n.Verdict.Failed():
			verdict = paint("31", verdict)
		default:
			verdict = paint("33", verdict)
		}
		role := n.Role
		if n.Leader {
			role += "*"
		}
		lag := "-"
		if n.LagMS >= 0 && n.Role != "primary" {
			lag = fmt.Sprintf("%dms", n.LagMS)
		}
		lease := "-"
		if n.LeaseTTLMS >= 0 {
			lease = fmt.Sprintf("%ds", n.LeaseTTLMS/1000)
		}
		vip := "-"
		if n.VIP {
			vip = "yes"
		}
		reason := n.Reason
		if n.StatusAgeMS >= staleAfter.Milliseconds() {
			reason = fmt.Sprintf("(figures %s old) %s", (time.Duration(n.StatusAgeMS) * time.Millisecond).Round(time.Second), reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, role, verdict, lag, OrDash(n.GTID), n.SemiSyncText(), vip, lease, reason)
	}
	_ = tw.Flush()
	if st.InProgress != nil {
		fmt.Fprintf(w, "in progress: %s from %s (epoch %d)\n", st.InProgress.Kind, st.InProgress.From, st.InProgress.Epoch)
	}
	if e := st.LastEvent; e != nil {
		fmt.Fprintf(w, "last event: %s %s -> %s at %s, took %s: %s\n", e.Kind, OrDash(e.From), e.To, e.Started.Local().Format(time.DateTime),
			e.Took.Round(time.Millisecond), e.Reason)
		if e.Runway != "" {
			fmt.Fprintf(w, "  %s\n", e.Runway)
		}
	}
	printForecasts(w, st)
	if p := st.Policy; p != nil {
		fmt.Fprintf(w, "policy: %s (set by %s)\n", p.Policy, OrDash(p.SetBy))
	}
	for _, warn := range st.Warnings {
		fmt.Fprintln(w, paint("31", "warning: ")+warn)
	}

}

// OrDash is s, or "-" when s is empty.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// quarantineWarnings says why a node is quarantined: its errant GTIDs and, once its
// agent looked them up in the binary logs, what each is (a phantom, or a real
// transaction with its first event).
func quarantineWarnings(name string, n cluster.NodeStatus, snap cluster.Snapshot) []string {
	what := "for: " + n.Reason
	if n.Errant != "" {
		what = "errant transactions " + errantRanges(n, snap) + ": " + n.Reason
	}
	out := []string{fmt.Sprintf("%s is quarantined, %s (see docs/operations.md)", name, what)}
	if len(n.ErrantTxns) == 0 {
		return out
	}
	var phantoms []string
	real := 0
	for _, t := range n.ErrantTxns {
		switch {
		case t.Kind == replication.ErrantPhantom:
			phantoms = append(phantoms, t.GTID)
		case t.First != nil:
			real++
			line := fmt.Sprintf("  %s %s, in the binlog: first event %s", name, t.GTID, t.First)
			if t.Note != "" {
				line += " (" + t.Note + ")"
			}
			out = append(out, line)
		default:
			real++
			out = append(out, fmt.Sprintf("  %s %s %s: %s", name, t.GTID, t.Kind, t.Note))
		}
	}
	if len(phantoms) > 0 {
		out = append(out, fmt.Sprintf("  %s phantom GTIDs (numbered, in no binary log): %s", name, strings.Join(phantoms, ", ")))
	}
	if real == 0 {
		out = append(out, fmt.Sprintf("  %s rejoins by itself once its disk has room (or `baton rejoin %s --yes`)", name, name))
	}
	return out
}

// RebuildText says where a node's rebuild stands, for people: "stream from db3:
// 512.0 MiB of ~1.0 GiB (50%), started 2026-12-07 10:00:00", or the failure of the
// latest one. "" for none.
func RebuildText(p *cluster.RebuildProgress) string {
	if p == nil {
		return ""
	}
	s := fmt.Sprintf("%s from %s", p.Step, OrDash(p.From))
	if p.Bytes > 0 || p.Size > 0 {
		s += ": " + Bytes(p.Bytes)
		if p.Size > 0 {
			s += fmt.Sprintf(" of ~%s (%d%%)", Bytes(p.Size), min(100, p.Bytes*100/p.Size))
		}
	}
	if !p.Started.IsZero() {
		s += ", started " + p.Started.Local().Format(time.DateTime)
	}
	if p.Error != "" {
		s += ": " + p.Error
	}
	return s
}

// Bytes is n for people, in binary units: "512 B", "1.5 GiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// automaticFailover says whether a failed primary is replaced without a person, read
// from the snapshot (paused, the anti-flap block) and, best effort, the block's lease
// (its time left).
func automaticFailover(ctx context.Context, store *cluster.Store, snap cluster.Snapshot) AutomaticFailover {
	af := AutomaticFailover{On: true, Paused: snap.Settings.Paused}
	var why []string
	if af.Paused {
		af.On = false
		by := ""
		if snap.Settings.PausedBy != "" {
			by = " by " + snap.Settings.PausedBy
		}
		why = append(why, fmt.Sprintf("paused%s: baton resume ends it", by))
	}
	if b := snap.Block; b != nil {
		af.On = false
		blk := &Block{Epoch: b.Epoch, To: b.To, At: b.At, For: b.For, LeftMS: -1}
		if store != nil && snap.BlockLease != 0 {
			if ttl, err := store.LeaseTTL(ctx, snap.BlockLease); err == nil && ttl >= 0 {
				blk.LeftMS = ttl.Milliseconds()
			}
		}
		af.Blocked = blk
		left := "time left unknown"
		if blk.LeftMS >= 0 {
			left = fmt.Sprintf("%s left", (time.Duration(blk.LeftMS) * time.Millisecond).Round(time.Second))
		}
		why = append(why, fmt.Sprintf("blocked by the anti-flap window (%s, %s) after the automatic failover to %s at epoch %d (%s): baton unblock lifts it; baton failover is not blocked",
			b.For, left, OrDash(b.To), b.Epoch, b.At.Local().Format(time.DateTime)))
	}
	af.Why = strings.Join(why, "; ")
	return af
}

// absentNode is a member (or the primary of record) whose agent has no session in
// etcd: what is known of it, and what is not.
func absentNode(snap cluster.Snapshot, name string) Node {
	n := Node{Name: name, NoAgent: true, LagMS: -1, LeaseTTLMS: -1, StatusAgeMS: -1, Leader: snap.Leader == name}
	if m, ok := snap.Members[name]; ok {
		n.Addr = m.Addr
	}
	if name == snap.Primary.Node {
		n.Role = cluster.RolePrimary
		if n.Addr == "" {
			n.Addr = snap.Primary.Addr
		}
		n.Reason = "primary of record; its agent has no session in etcd (stopped, or cut off from etcd): its server's state is not known here"
		return n
	}
	n.Role = cluster.RoleUnknown
	n.Reason = "its agent has no session in etcd (stopped, or cut off from etcd): nothing is known of it now"
	return n
}

// errantRanges writes a node's errant set as the transactions it stands for: MariaDB's
// "0-2-156" is server 2's sequences after what the primary has of it, "0-2-154..156";
// the set as it is when the primary's set is not known.
func errantRanges(n cluster.NodeStatus, snap cluster.Snapshot) string {
	f, err := replication.ParseFlavor(n.Flavor)
	if err != nil || f != replication.FlavorMariaDB {
		return n.Errant
	}
	errant, err := replication.ParseGTIDSet(f, n.Errant)
	if err != nil {
		return n.Errant
	}
	p, ok := snap.Nodes[snap.Primary.Node]
	if !ok || p.GTID == "" {
		return n.Errant
	}
	pset, err := replication.ParseGTIDSet(f, p.GTID)
	if err != nil {
		return n.Errant
	}
	var out []string
	for _, r := range replication.ErrantRanges(errant, replication.Server{Executed: pset}) {
		if r.After+1 == r.Last {
			out = append(out, fmt.Sprintf("%d-%d-%d", r.Domain, r.ServerID, r.Last))
		} else {
			out = append(out, r.String())
		}
	}
	if len(out) == 0 {
		return n.Errant
	}
	return strings.Join(out, ", ")
}

// The disk forecast's words.
const (
	diskFull       = "full"
	diskNotFilling = "not filling"
	diskUnknown    = "unknown"
)

// diskFullBelow is the free space under which a disk counts as full: the detector's
// mark for a full filesystem.
const diskFullBelow = detector.MinUsableFree

// forecastHorizon is the longest disk forecast shown: beyond a day an idle disk's
// rate is noise ("full in about 58d").
const forecastHorizon = 24 * time.Hour

// DiskForecast says when a node's disk that fills first is full, for people: the
// same words in baton status, its JSON and the web view.
func DiskForecast(n cluster.NodeStatus) string {
	if n.At.IsZero() {
		return diskUnknown
	}
	if slices.ContainsFunc(n.Forecasts, func(f detector.Forecast) bool { return f.Resource == detector.ResourceDisk }) {
		rw := n.Runway()
		if rw.Outlook == detector.OutlookFilling && rw.Left > forecastHorizon {
			return diskNotFilling
		}
		return rw.Says()
	}
	// An older agent: its fullest disk's free space and time to full; 0 meant
	// both "not filling" and "not measured".
	switch {
	case !n.ServerRead && n.DiskFree == 0 && n.DiskTimeToFull == 0:
		return diskUnknown
	case n.DiskFree < diskFullBelow:
		return diskFull
	case n.DiskTimeToFull > 0 && n.DiskTimeToFull <= forecastHorizon:
		return n.Runway().Says()
	}
	return diskNotFilling
}

// staleAfter is the age from which baton status says how old a node's figures are: an
// agent republishes what a decision needs at once, the rest (GTID set, latencies,
// disk) every 30 s.
const staleAfter = 5 * time.Second

// ageMS is how long ago at was, -1 for a zero time.
func ageMS(at time.Time) int64 {
	if at.IsZero() {
		return -1
	}
	return max(0, time.Since(at).Milliseconds())
}
