// Package web is Baton's read-only web view: every cluster under etcd's /baton/
// prefix, its topology, each node's verdict and replication state, and its history
// with every failover's steps drawn to scale, updated live from an etcd watch and
// pushed to the browser as Server-Sent Events. The HTML is rendered on the server;
// the page's stylesheet and its little JavaScript are embedded in the binary, so it
// works on a network with no way out.
//
// It never writes to etcd, never talks to a database server, and shows nothing
// secret: only what `baton status` and `baton history` print.
package web

import (
	"sort"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/status"
)

// Page is everything the web view shows, at one moment.
type Page struct {
	Clusters []Cluster
	// Err says why etcd could not be read at the latest try, "" when it could: the
	// clusters shown are then as they were last read.
	Err string
	// At is when the page's state was last changed.
	At time.Time
}

// Cluster is one cluster as the page shows it.
type Cluster struct {
	Status status.Cluster
	// Topology is the replication tree: the primary of record first with the
	// servers that replicate from it beneath, then every node that replicates from
	// none of the known nodes.
	Topology []TopoNode
	History  []Event
	// HistoryErr says why the history could not be read, "" when it could.
	HistoryErr string
}

// Health is how a node's verdict reads at a glance. The zero value is unknown, never
// healthy.
type Health int

// Healths.
const (
	HealthUnknown Health = iota
	HealthOK
	HealthWarning
	HealthFailing
)

var healthNames = [...]string{"unknown", "ok", "warning", "failing"}

func (h Health) String() string {
	if h < HealthUnknown || h > HealthFailing {
		return "unknown"
	}
	return healthNames[h]
}

// Symbol is a sign for the health that needs no colour to read.
func (h Health) Symbol() string {
	switch h {
	case HealthOK:
		return "✓"
	case HealthWarning:
		return "!"
	case HealthFailing:
		return "✗"
	}
	return "?"
}

// HealthOf reads a detector verdict.
func HealthOf(verdict detector.Verdict) Health {
	switch {
	case verdict == detector.Healthy:
		return HealthOK
	case verdict.Failed():
		return HealthFailing
	case verdict == detector.Unknown:
		return HealthUnknown
	}
	return HealthWarning
}

// TopoNode is one node in the replication tree.
type TopoNode struct {
	Name    string
	Role    cluster.Role // "" when the node has no agent running
	Verdict detector.Verdict
	Health  Health
	// PrimaryOfRecord: etcd's primary key names this node.
	PrimaryOfRecord bool
	// NoAgent: the node is known only as the primary of record; its agent's status
	// is gone.
	NoAgent bool
	// Source is the node it replicates from (its name when known, else host:port),
	// "" when it replicates from none.
	Source string
	// Threads is the replication threads' state ("running", "IO stopped", ...), ""
	// when the node replicates from none.
	Threads  string
	Children []TopoNode
}

// Topology draws the replication tree of st: who replicates from whom, by the
// addresses the agents publish.
func Topology(st status.Cluster) []TopoNode {
	byAddr := map[string]string{}
	nodes := map[string]status.Node{}
	for _, n := range st.Nodes {
		nodes[n.Name] = n
		if n.Addr != "" {
			byAddr[n.Addr] = n.Name
		}
	}
	if st.PrimaryAddr != "" && st.Primary != "" {
		if _, ok := byAddr[st.PrimaryAddr]; !ok {
			byAddr[st.PrimaryAddr] = st.Primary
		}
	}
	parent := map[string]string{} // node -> the known node it replicates from
	children := map[string][]string{}
	for _, n := range st.Nodes {
		if p, ok := byAddr[n.Source]; ok && n.Source != "" && p != n.Name {
			parent[n.Name] = p
			children[p] = append(children[p], n.Name)
		}
	}
	for _, c := range children {
		sort.Strings(c)
	}
	seen := map[string]bool{}
	var build func(name string) TopoNode
	build = func(name string) TopoNode {
		seen[name] = true
		t := TopoNode{Name: name, PrimaryOfRecord: name == st.Primary}
		n, ok := nodes[name]
		if !ok {
			t.NoAgent = true
		} else {
			t.Role, t.Verdict, t.Health = n.Role, n.Verdict, HealthOf(n.Verdict)
			if n.Source != "" {
				t.Source = n.Source
				if p, ok := parent[name]; ok {
					t.Source = p
				}
				t.Threads = threads(n)
			}
		}
		for _, c := range children[name] {
			if !seen[c] {
				t.Children = append(t.Children, build(c))
			}
		}
		return t
	}
	var out []TopoNode
	if st.Primary != "" {
		out = append(out, build(st.Primary))
	}
	// Then the roots (nodes that replicate from no known node), then whatever a
	// cycle of sources left unreached.
	for _, pass := range []bool{true, false} {
		for _, n := range st.Nodes {
			if seen[n.Name] {
				continue
			}
			if _, hasParent := parent[n.Name]; hasParent && pass {
				continue
			}
			out = append(out, build(n.Name))
		}
	}
	return out
}

func threads(n status.Node) string {
	switch {
	case n.IORunning && n.SQLRunning:
		return "running"
	case !n.IORunning && !n.SQLRunning:
		return "stopped"
	case !n.IORunning:
		return "IO thread stopped"
	default:
		return "SQL thread stopped"
	}
}

// Event is a history event with its steps laid out on a time axis.
type Event struct {
	cluster.Event
	// Segments are the detection (when known) and every step, in the order they
	// were recorded, placed on an axis of AxisWidth units that spans Total.
	Segments []Segment
	Total    time.Duration
	// Lanes is 2 when a step ran beside the others, else 1.
	Lanes int
}

// AxisWidth is the width of an event's time axis, in SVG user units; LaneHeight
// the height of one lane.
const (
	AxisWidth  = 1000
	LaneHeight = 24
)

// Segment is one span of an event's time axis.
type Segment struct {
	Name  string
	Took  time.Duration
	Error string
	Note  string
	// Detection: the span from the failure first seen to the flow's start.
	Detection bool
	// Beside: the step ran beside the others (lane 1), from the end of After.
	Beside bool
	After  string
	// X and W place the span on the axis, in units of AxisWidth; Y on its lane.
	X, W, Y float64
}

// besideStep names the step a flow of kind runs beside the others, and the step
// whose end starts it: a failover fences the old primary while it stops the
// replicas' IO threads and ranks them (failover/flow.go). Every other step runs
// after the one recorded before it.
func besideStep(kind cluster.EventKind) (step, after string) {
	if kind == cluster.EventFailover {
		return "fence_old_primary", "announce"
	}
	return "", ""
}

// NewEvent lays out e's detection and steps to scale.
func NewEvent(e cluster.Event) Event {
	ev := Event{Event: e, Lanes: 1}
	if !e.Detected.IsZero() && e.Started.After(e.Detected) {
		ev.Segments = append(ev.Segments, Segment{Name: "detection", Took: e.Started.Sub(e.Detected), Detection: true})
	}
	beside, after := besideStep(e.Kind)
	for _, s := range e.Steps {
		seg := Segment{Name: s.Name, Took: max(s.Took, 0), Error: s.Error, Note: s.Note}
		if s.Name == beside && beside != "" {
			seg.Beside, seg.After = true, after
			ev.Lanes = 2
		}
		ev.Segments = append(ev.Segments, seg)
	}
	// Place every step in time: the sequence one after the other, a step beside
	// it from the end of the step it follows.
	starts := make([]time.Duration, len(ev.Segments))
	var at, afterEnd, end time.Duration
	for i, s := range ev.Segments {
		if s.Beside {
			continue
		}
		starts[i] = at
		at += s.Took
		if s.Name == after {
			afterEnd = at
		}
	}
	end = at
	for i, s := range ev.Segments {
		if s.Beside {
			starts[i] = afterEnd
			end = max(end, afterEnd+s.Took)
		}
	}
	// The whole flow, with the coordinator's bookkeeping between steps (which is
	// no step), may be longer than its steps.
	ev.Total = max(end, e.Took+ev.detection())
	if ev.Total <= 0 {
		return ev
	}
	for i := range ev.Segments {
		s := &ev.Segments[i]
		s.X = float64(starts[i]) / float64(ev.Total) * AxisWidth
		s.W = float64(s.Took) / float64(ev.Total) * AxisWidth
		if s.Beside {
			s.Y = LaneHeight
		}
	}
	return ev
}

func (e Event) detection() time.Duration {
	if len(e.Segments) > 0 && e.Segments[0].Detection {
		return e.Segments[0].Took
	}
	return 0
}

// NewCluster makes the page's view of a cluster of its status and its history
// (newest first).
func NewCluster(st status.Cluster, history []cluster.Event) Cluster {
	c := Cluster{Status: st, Topology: Topology(st)}
	for _, e := range history {
		c.History = append(c.History, NewEvent(e))
	}
	return c
}
