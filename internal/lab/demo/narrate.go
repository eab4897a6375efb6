package demo

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/status"
)

// demoNarrator prints the demo's story, each line after the fault with its time from the
// fault, and keeps those lines for the summary.
type demoNarrator struct {
	mu       sync.Mutex
	w        io.Writer
	t0       time.Time
	timeline []Line
}

func (n *demoNarrator) startClock(t0 time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.t0 = t0
}

// rel is t's time from the fault, as printed.
func (n *demoNarrator) rel(t time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.t0.IsZero() {
		return t.Local().Format("15:04:05.000")
	}
	return fmt.Sprintf("%+.3fs", t.Sub(n.t0).Seconds())
}

// sayAt narrates something that happened at t.
func (n *demoNarrator) sayAt(t time.Time, format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if n.t0.IsZero() {
		fmt.Fprintf(n.w, "          %s\n", msg)
		return
	}
	d := t.Sub(n.t0)
	n.timeline = append(n.timeline, Line{AtMS: d.Milliseconds(), What: msg})
	fmt.Fprintf(n.w, "%9s %s\n", fmt.Sprintf("%+.3fs", d.Seconds()), msg)
}

// say prints a comment, not an event: no time.
func (n *demoNarrator) say(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.w, "          %s\n", strings.TrimRight(fmt.Sprintf(format, args...), " "))
}

func (n *demoNarrator) section(title string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.w, "\n== %s ==\n", title)
}

// block prints preformatted text (a status table), indented, in one piece.
func (n *demoNarrator) block(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintf(n.w, "          %s\n", line)
	}
}

func (n *demoNarrator) lines() []Line {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Line(nil), n.timeline...)
}

// demoView is the cluster as the demo sees it: its keys in etcd, and which nodes have the
// virtual IP on their interface.
type demoView struct {
	Primary     cluster.Primary
	Leader      string
	Coordinator string
	Intent      *cluster.Intent
	Nodes       map[string]cluster.NodeStatus
	VIP         []string
	LastEvent   *cluster.Event
}

func (v demoView) clone() demoView {
	c := v
	c.Nodes = make(map[string]cluster.NodeStatus, len(v.Nodes))
	for k, n := range v.Nodes {
		c.Nodes[k] = n
	}
	c.VIP = append([]string(nil), v.VIP...)
	return c
}

// changes says in words what differs between two views of the cluster, in the order a
// reader follows a failover: verdicts, decision, fence, commit, promotion, VIP,
// history.
func demoChanges(prev, cur demoView) []string {
	var out []string
	names := make([]string, 0, len(cur.Nodes))
	for name := range cur.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := cur.Nodes[name]
		p, ok := prev.Nodes[name]
		if !ok {
			out = append(out, fmt.Sprintf("%s's agent publishes again: role %s, verdict %s", name, status.OrDash(string(n.Role)), n.Verdict.String()))
			continue
		}
		if n.Verdict != p.Verdict {
			line := fmt.Sprintf("%s verdict %s", name, n.Verdict)
			if n.Reason != "" && n.Verdict != detector.Healthy {
				line += ": " + n.Reason
			}
			out = append(out, line)
		}
		if n.GTID == "" && p.GTID != "" {
			out = append(out, fmt.Sprintf("%s's agent cannot read its server", name))
		}
		// A status without a GTID set was made without the server: its read_only
		// says nothing.
		if n.ReadOnly != p.ReadOnly && n.GTID != "" {
			if n.ReadOnly {
				out = append(out, fmt.Sprintf("%s is read_only", name))
			} else {
				out = append(out, fmt.Sprintf("%s is writable (read_only off)", name))
			}
		}
		if n.Role != p.Role {
			switch n.Role {
			case cluster.RoleFenced:
				// A replica made primary of record shows as fenced until the old
				// primary lets go of the leader key: it is waiting, not fenced.
				if name == cur.Primary.Node && cur.Leader != name && p.Role != cluster.RolePrimary {
					if cur.Leader == "" {
						out = append(out, fmt.Sprintf("%s, primary of record, is about to take the leader key", name))
					} else {
						out = append(out, fmt.Sprintf("%s, primary of record, waits for %s to let go of the leader key", name, cur.Leader))
					}
					break
				}
				line := name + " fenced"
				if why := strings.TrimPrefix(n.Reason, "fenced: "); why != "" && strings.HasPrefix(n.Reason, "fenced: ") {
					line += ": " + why
				}
				out = append(out, line)
			case cluster.RoleQuarantined:
				out = append(out, fmt.Sprintf("%s quarantined: errant transactions %s", name, status.OrDash(n.Errant)))
			case cluster.RoleReplica:
				out = append(out, fmt.Sprintf("%s role replica", name))
			default:
				out = append(out, fmt.Sprintf("%s role %s", name, status.OrDash(string(n.Role))))
			}
		}
		if n.Role == cluster.RoleReplica && (n.IORunning != p.IORunning || n.SQLRunning != p.SQLRunning || n.Source != p.Source) {
			out = append(out, fmt.Sprintf("%s replication from %s: IO thread %s, SQL thread %s", name, status.OrDash(n.Source),
				threadState(n.IORunning), threadState(n.SQLRunning)))
		}
		if n.Errant != p.Errant && n.Errant != "" && n.Role == p.Role {
			out = append(out, fmt.Sprintf("%s errant transactions: %s", name, n.Errant))
		}
	}
	for name := range prev.Nodes {
		if _, ok := cur.Nodes[name]; !ok {
			out = append(out, fmt.Sprintf("%s's agent is gone (its etcd lease ended)", name))
		}
	}
	if cur.Coordinator != prev.Coordinator && cur.Coordinator != "" {
		out = append(out, fmt.Sprintf("%s is the coordinator", cur.Coordinator))
	}
	if cur.Intent != nil && (prev.Intent == nil || *cur.Intent != *prev.Intent) {
		in := cur.Intent
		line := fmt.Sprintf("coordinator %s decided: %s away from %s (epoch %d)", status.OrDash(cur.Coordinator), in.Kind, in.From, in.Epoch)
		if in.To != "" {
			line += ", to " + in.To
		}
		out = append(out, line)
	}
	if cur.Intent == nil && prev.Intent != nil && cur.Primary.Epoch == prev.Primary.Epoch {
		out = append(out, fmt.Sprintf("the %s away from %s was abandoned (intent withdrawn)", prev.Intent.Kind, prev.Intent.From))
	}
	if cur.Leader != prev.Leader && prev.Leader != "" {
		out = append(out, fmt.Sprintf("%s let go of the leader key", prev.Leader))
	}
	if cur.Primary.Node != prev.Primary.Node || cur.Primary.Epoch != prev.Primary.Epoch {
		out = append(out, fmt.Sprintf("commit: %s is the primary of record (epoch %d)", status.OrDash(cur.Primary.Node), cur.Primary.Epoch))
	}
	if cur.Leader != prev.Leader && cur.Leader != "" {
		line := fmt.Sprintf("%s holds the leader key", cur.Leader)
		if cur.Leader == cur.Primary.Node {
			line = fmt.Sprintf("%s promoted (epoch %d): it holds the leader key", cur.Leader, cur.Primary.Epoch)
		}
		out = append(out, line)
	}
	if strings.Join(cur.VIP, ",") != strings.Join(prev.VIP, ",") {
		switch len(cur.VIP) {
		case 0:
			out = append(out, fmt.Sprintf("VIP released by %s: no node has it", strings.Join(prev.VIP, ",")))
		case 1:
			out = append(out, fmt.Sprintf("VIP now on %s", cur.VIP[0]))
		default:
			out = append(out, fmt.Sprintf("VIP on %s at once!", strings.Join(cur.VIP, " and ")))
		}
	}
	if e := cur.LastEvent; e != nil && (prev.LastEvent == nil || !e.Started.Equal(prev.LastEvent.Started) || e.Kind != prev.LastEvent.Kind) {
		out = append(out, fmt.Sprintf("history: %s %s -> %s recorded, %s from decision to done", e.Kind, status.OrDash(e.From), e.To, e.Took.Round(time.Millisecond)))
	}
	return out
}

func threadState(b bool) string {
	if b {
		return "running"
	}
	return "stopped"
}

// viewOf is the demo's view of a snapshot of the cluster, with the VIP's holders as
// the interfaces show them.
func viewOf(snap cluster.Snapshot, vip []string) demoView {
	return demoView{Primary: snap.Primary, Leader: snap.Leader, Coordinator: snap.Coordinator, Intent: snap.Intent,
		Nodes: snap.Nodes, VIP: vip, LastEvent: snap.LastEvent}
}
