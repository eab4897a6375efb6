package web

import (
	"bytes"
	"context"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/status"
)

var t0 = time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC) // before the tests run: history keys sort by time

// snapshot is a cluster after a failover from db1 to db2: db1 fenced with a full
// disk, db2 primary with the virtual IP, db3 replicating from db2; paused since.
func snapshot() cluster.Snapshot {
	return cluster.Snapshot{View: cluster.View{
		Primary:  cluster.Primary{Node: "db2", Addr: "198.18.0.12:3306", Epoch: 2, Since: t0},
		Leader:   "db2",
		Settings: cluster.Settings{Paused: true},
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Addr: "198.18.0.11:3306", Role: cluster.RoleFenced, Verdict: detector.Unwritable,
				Reason: "write probe timed out after 1s <no space>", ReadOnly: true, LagMS: -1, GTID: "0-1-100",
				DiskFree: 4096, DiskTimeToFull: 0, At: t0},
			"db2": {Node: "db2", Addr: "198.18.0.12:3306", Role: cluster.RolePrimary, Verdict: detector.Healthy,
				GTID: "0-1-100,0-2-7", VIP: true, SemiSync: cluster.SemiSyncOn, WriteMS: 2.5, DiskFree: 3 << 30,
				DiskTimeToFull: 5 * time.Minute, At: t0, Forecasts: []detector.Forecast{
					{Resource: detector.ResourceDisk, Name: "/data", Detail: "datadir, binlog", Used: 5 << 30, Limit: 8 << 30, Rate: 10 << 20, RateKnown: true,
						Outlook: detector.OutlookFilling, Left: 5 * time.Minute},
					{Resource: detector.ResourceConnections, Name: "connections", Used: 12, Limit: 60, RateKnown: true, Outlook: detector.OutlookSteady},
				}},
			"db3": {Node: "db3", Addr: "198.18.0.13:3306", Role: cluster.RoleReplica, Verdict: detector.Healthy,
				Source: "198.18.0.12:3306", IORunning: true, SQLRunning: true, LagMS: 120, GTID: "0-1-100,0-2-7",
				SemiSync: cluster.SemiSyncReplicaOn, ReadOnly: true},
		},
	}, Coordinator: "db3"}
}

func failoverEvent() cluster.Event {
	return cluster.Event{Kind: cluster.EventFailover, From: "db1", To: "db2", Epoch: 2, Reason: "db1 unwritable",
		Started: t0, Detected: t0.Add(-500 * time.Millisecond), Took: 1000 * time.Millisecond,
		Runway: "db2 promoted; at the current rate its disk is full in about 5m: free space on db2",
		Steps: []cluster.Step{
			{Name: "announce", Took: 100 * time.Millisecond},
			{Name: "catch_up", Took: 600 * time.Millisecond},
			{Name: "promote", Took: 200 * time.Millisecond, Note: "semi-sync on"},
		}}
}

func render(t *testing.T, p Page) string {
	t.Helper()
	r, err := NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.Page(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRenderCluster: a snapshot in, the page out, with every part the view promises
// written in words (not only in colour).
func TestRenderCluster(t *testing.T) {
	// No node leases in the snapshot: status.Of reads nothing from etcd.
	st := status.Of(context.Background(), nil, "main", snapshot())
	page := render(t, Page{At: t0, Clusters: []Cluster{NewCluster(st, []cluster.Event{failoverEvent()})}})

	for _, want := range []string{
		`data-cluster="main" data-primary="db2"`,
		`<h2 id="c-main-h">Cluster main</h2>`,
		`<dd class="primary">db2 <span class="muted">(epoch 2, since`,
		`PAUSED</strong> paused`,
		`<dt>Virtual IP on</dt><dd>db2</dd>`,
		`<dt>Coordinator</dt><dd>db3</dd>`,
		// the verdicts in words, the reason escaped
		`✗</span> unwritable`,
		`write probe timed out after 1s &lt;no space&gt;`,
		`<td data-label="Lag">120 ms</td>`,
		`<td data-label="GTID" class="gtid">0-1-100,0-2-7</td>`,
		`<td data-label="Semi-sync">replica on</td>`,
		`<td data-label="VIP"><strong>holds it</strong></td>`,
		`<td data-label="Disk full in">full in about 5m</td>`,
		`<li title="disk /data (datadir, binlog): full in about 5m (3.0 GiB free of 8.0 GiB, filling at 10.0 MiB/s)">disk /data (datadir, binlog): full in about 5m</li><li title="connections: not growing (12 of 60 used)">connections: not growing</li>`,
		`<p class="runway">db2 promoted; at the current rate its disk is full in about 5m: free space on db2</p>`,
		`<td data-label="Disk free">3.0 GiB</td>`,
		`<td data-label="Write probe">2.5 ms</td>`,
		// the history, with its steps to scale and in words
		`<strong>failover</strong> db1 → db2, epoch 2`,
		`aria-label="failover over 1500 ms: detection 500 ms, announce 100 ms, catch_up 600 ms, promote 200 ms"`,
		`catch_up: 600 ms`,
		`(semi-sync on)`,
		// warnings as text
		`<strong>warning:</strong> db2: disk /data (datadir, binlog): full in about 5m (3.0 GiB free of 8.0 GiB, filling at 10.0 MiB/s): free space on it`,
		// live updates and assets from this server only
		`<script src="static/web.js" defer></script>`,
		`<link rel="stylesheet" href="static/web.css">`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"<no space>", "http://", "https://"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	// db3 is drawn beneath db2, the primary of record; db1 replicates from none.
	topo := page[strings.Index(page, `<ul class="topo"`):strings.Index(page, `id="c-main-n"`)]
	if !regexp.MustCompile(`(?s)<strong>db2</strong>.*primary of record.*<ul><li>.*<strong>db3</strong>.*replicates from db2, threads running`).MatchString(topo) {
		t.Errorf("topology does not draw db3 under db2:\n%s", topo)
	}
	if i, j := strings.Index(topo, "<strong>db2</strong>"), strings.Index(topo, "<strong>db1</strong>"); i < 0 || j < i {
		t.Errorf("topology does not start with the primary of record:\n%s", topo)
	}
	// The rectangles of the time axis tile it: each starts where the last ended.
	var x float64
	for _, m := range regexp.MustCompile(`<rect x="([0-9.]+)" y="0.0" width="([0-9.]+)"`).FindAllStringSubmatch(page, -1) {
		rx, _ := strconv.ParseFloat(m[1], 64)
		w, _ := strconv.ParseFloat(m[2], 64)
		if math.Abs(rx-x) > 0.11 {
			t.Errorf("segment at %v, want %v", rx, x)
		}
		x = rx + w
	}
	// 1400 ms of detection and steps in a 1500 ms axis: the coordinator's
	// bookkeeping between steps is left blank at the end.
	if want := 1400.0 / 1500 * AxisWidth; math.Abs(x-want) > 0.2 {
		t.Errorf("segments end at %v, want %v", x, want)
	}
}

func TestRenderEmptyAndUnreachable(t *testing.T) {
	page := render(t, Page{At: t0, Err: "list clusters under /baton/: context deadline exceeded"})
	for _, want := range []string{"No cluster under the etcd prefix /baton/ yet.", `role="alert"><strong>etcd unreachable:</strong> list clusters`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// A cluster with no agent and no primary yet.
	page = render(t, Page{At: t0, Clusters: []Cluster{NewCluster(status.Cluster{Cluster: "new one"}, nil)}})
	for _, want := range []string{`id="c-new_one"`, `<dd class="primary">none</dd>`, "No agent is running.", "No event yet.", `<span class="tag">unknown</span>`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestTopology(t *testing.T) {
	node := func(name, addr, source string) status.Node {
		return status.Node{Name: name, Addr: addr, Source: source, Role: "replica", Verdict: detector.Healthy, IORunning: true, SQLRunning: true}
	}
	// flat writes a tree as "name<source[children]" for comparison.
	var flat func([]TopoNode) string
	flat = func(ts []TopoNode) string {
		var parts []string
		for _, t := range ts {
			s := t.Name
			if t.NoAgent {
				s += "!"
			}
			if t.Source != "" {
				s += "<" + t.Source
			}
			if len(t.Children) > 0 {
				s += "[" + flat(t.Children) + "]"
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " ")
	}
	for _, tc := range []struct {
		name string
		st   status.Cluster
		want string
	}{
		{"chain", status.Cluster{Primary: "a", PrimaryAddr: "A", Nodes: []status.Node{
			node("a", "A", ""), node("b", "B", "A"), node("c", "C", "B"), node("d", "D", "A")}},
			"a[b<a[c<b] d<a]"},
		{"primary's agent gone: known by the primary key's address", status.Cluster{Primary: "a", PrimaryAddr: "A", Nodes: []status.Node{
			node("b", "B", "A"), node("c", "C", "A")}},
			"a![b<a c<a]"},
		{"source unknown, and none", status.Cluster{Primary: "a", PrimaryAddr: "A", Nodes: []status.Node{
			node("a", "A", ""), node("b", "B", "X:3306"), node("c", "C", "")}},
			"a b<X:3306 c"},
		{"a cycle is still drawn, once each", status.Cluster{Nodes: []status.Node{
			node("a", "A", "B"), node("b", "B", "A")}},
			"a<b[b<a]"},
		{"no primary of record", status.Cluster{Nodes: []status.Node{node("a", "A", ""), node("b", "B", "A")}},
			"a[b<a]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flat(Topology(tc.st)); got != tc.want {
				t.Errorf("topology = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestNewEvent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		e          cluster.Event
		total      time.Duration
		names      []string
		xs, widths []float64
	}{
		{"detection and steps", failoverEvent(), 1500 * time.Millisecond,
			[]string{"detection", "announce", "catch_up", "promote"},
			[]float64{0, 333.3, 400, 800}, []float64{333.3, 66.7, 400, 133.3}},
		{"steps shorter than the flow: the rest is left blank", cluster.Event{Took: time.Second,
			Steps: []cluster.Step{{Name: "a", Took: 250 * time.Millisecond}, {Name: "b", Took: 250 * time.Millisecond}}},
			time.Second, []string{"a", "b"}, []float64{0, 250}, []float64{250, 250}},
		{"a failover fences the old primary beside the other steps, from the end of announce", cluster.Event{
			Kind: cluster.EventFailover, Took: time.Second, Steps: []cluster.Step{
				{Name: "announce", Took: 100 * time.Millisecond}, {Name: "stop_io", Took: 100 * time.Millisecond},
				{Name: "fence_old_primary", Took: 300 * time.Millisecond}, {Name: "promote", Took: 500 * time.Millisecond}}},
			time.Second, []string{"announce", "stop_io", "fence_old_primary", "promote"},
			[]float64{0, 100, 100, 200}, []float64{100, 100, 300, 500}},
		{"a switchover fences in sequence", cluster.Event{
			Kind: cluster.EventSwitchover, Took: time.Second, Steps: []cluster.Step{
				{Name: "announce", Took: 100 * time.Millisecond}, {Name: "fence_old_primary", Took: 300 * time.Millisecond}}},
			time.Second, []string{"announce", "fence_old_primary"}, []float64{0, 100}, []float64{100, 300}},
		{"a fence that outlasts the steps sets the axis", cluster.Event{
			Kind: cluster.EventFailover, Took: 300 * time.Millisecond, Steps: []cluster.Step{
				{Name: "announce", Took: 100 * time.Millisecond}, {Name: "fence_old_primary", Took: 900 * time.Millisecond},
				{Name: "promote", Took: 200 * time.Millisecond}}},
			time.Second, []string{"announce", "fence_old_primary", "promote"}, []float64{0, 100, 100}, []float64{100, 900, 200}},
		{"no steps, no detection", cluster.Event{Took: time.Second}, time.Second, nil, nil, nil},
		{"a zero-length flow draws nothing", cluster.Event{Steps: []cluster.Step{{Name: "a"}}}, 0,
			[]string{"a"}, []float64{0}, []float64{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := NewEvent(tc.e)
			if ev.Total != tc.total {
				t.Errorf("total = %s, want %s", ev.Total, tc.total)
			}
			var names []string
			var xs, ws []float64
			lanes := 1
			for _, s := range ev.Segments {
				if s.Beside != (s.Y == LaneHeight) {
					t.Errorf("%s beside=%v on the lane at %v", s.Name, s.Beside, s.Y)
				}
				if s.Beside {
					lanes = 2
				}
				names = append(names, s.Name)
				xs = append(xs, math.Round(s.X*10)/10)
				ws = append(ws, math.Round(s.W*10)/10)
			}
			if ev.Lanes != lanes {
				t.Errorf("lanes = %d, want %d", ev.Lanes, lanes)
			}
			if !slices.Equal(names, tc.names) || !slices.Equal(xs, tc.xs) || !slices.Equal(ws, tc.widths) {
				t.Errorf("segments %v at %v wide %v, want %v at %v wide %v", names, xs, ws, tc.names, tc.xs, tc.widths)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	var zero Health
	if zero != HealthUnknown || zero.String() != "unknown" {
		t.Errorf("zero Health = %s, want unknown", zero)
	}
	for verdict, want := range map[detector.Verdict]Health{detector.Healthy: HealthOK, detector.Unwritable: HealthFailing,
		detector.Unreachable: HealthFailing, detector.Unknown: HealthUnknown, detector.Overloaded: HealthWarning, detector.Degraded: HealthWarning} {
		if got := HealthOf(verdict); got != want {
			t.Errorf("HealthOf(%s) = %s, want %s", verdict, got, want)
		}
	}
}

// TestRenderAwaitsAck: a primary whose commits wait for a semi-sync acknowledgement
// says so in its semi-sync cell and in a warning.
func TestRenderAwaitsAck(t *testing.T) {
	snap := snapshot()
	db2 := snap.Nodes["db2"]
	db2.AwaitsAck, db2.SemiSyncTimeout = true, time.Hour
	snap.Nodes["db2"] = db2
	page := render(t, Page{At: t0, Clusters: []Cluster{NewCluster(status.Of(context.Background(), nil, "main", snap), nil)}})
	for _, want := range []string{
		`<td data-label="Semi-sync">on, commits waiting</td>`,
		`<strong>warning:</strong> db2: commits wait for a semi-sync acknowledgement that no replica sends`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestRenderArchive: a node whose agent archived errant transactions before undoing
// or discarding them names the archive, in a warning, on the page as in `baton
// status`.
func TestRenderArchive(t *testing.T) {
	snap := snapshot()
	db3 := snap.Nodes["db3"]
	db3.Archive = "/var/lib/baton/main/archive/db3-20261207T030000.000Z-errant.sql"
	snap.Nodes["db3"] = db3
	st := status.Of(context.Background(), nil, "main", snap)
	want := "db3: errant transactions it undid or discarded are archived in /var/lib/baton/main/archive/db3-20261207T030000.000Z-errant.sql"
	var warned bool
	for _, w := range st.Warnings {
		warned = warned || strings.Contains(w, want)
	}
	if !warned {
		t.Fatalf("baton status warnings %q lack %q", st.Warnings, want)
	}
	if page := render(t, Page{At: t0, Clusters: []Cluster{NewCluster(st, nil)}}); !strings.Contains(page, want) {
		t.Errorf("page lacks %q", want)
	}
	for _, n := range st.Nodes {
		if n.Name == "db3" && n.Archive != db3.Archive {
			t.Errorf("status --json archive %q, want %q", n.Archive, db3.Archive)
		}
	}
}

// TestRenderRebuild: a node being rebuilt shows its step, its donor and how far the
// copy is, on the page as in `baton status`.
func TestRenderRebuild(t *testing.T) {
	snap := snapshot()
	db3 := snap.Nodes["db3"]
	db3.Rebuild = &cluster.RebuildProgress{ID: "r", Step: cluster.RebuildStream, From: "db2", Bytes: 256 << 20, Size: 1 << 30, Started: t0}
	snap.Nodes["db3"] = db3
	page := render(t, Page{At: t0, Clusters: []Cluster{NewCluster(status.Of(context.Background(), nil, "main", snap), nil)}})
	for _, want := range []string{
		`<span class="tag warning">rebuild</span> stream from db2: 256.0 MiB of ~1.0 GiB (25%)`,
		`<strong>warning:</strong> db3 is being rebuilt: stream from db2`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
