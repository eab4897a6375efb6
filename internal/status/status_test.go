package status

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// waiting is a cluster whose primary, db1, has its commits stuck waiting for a
// semi-sync acknowledgement: db2 is connected but acknowledges nothing.
func waiting(awaits bool, timeout time.Duration) cluster.Snapshot {
	return cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", Epoch: 3},
		Leader:  "db1",
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Addr: "198.18.0.11:3306", Role: cluster.RolePrimary, Verdict: detector.Unwritable,
				Reason: "write probe timed out after 1s", ServerRead: true, SemiSync: cluster.SemiSyncOn, SemiSyncClients: 1,
				AwaitsAck: awaits, SemiSyncTimeout: timeout, LagMS: -1},
			"db2": {Node: "db2", Addr: "198.18.0.12:3306", Role: cluster.RoleReplica, Verdict: detector.Healthy,
				ServerRead: true, ReadOnly: true, Source: "198.18.0.11:3306", SemiSync: cluster.SemiSyncReplicaOn},
		},
	}}
}

// TestAwaitsAckShown: a primary whose commits wait for an acknowledgement is named
// in the warnings, in the table's semi-sync column and in the JSON; a primary
// whose commits do not wait shows none of it.
func TestAwaitsAckShown(t *testing.T) {
	for _, tc := range []struct {
		name         string
		awaits       bool
		timeout      time.Duration
		warning      string // "" for none
		column       string
		jsonAwaiting bool
	}{
		{"commits waiting", true, time.Hour, "db1: commits wait for a semi-sync acknowledgement that no replica sends (1 semi-sync replica(s) connected, rpl_semi_sync_master_timeout 1h0m0s)", "on, commits waiting", true},
		{"timeout not published", true, 0, "rpl_semi_sync_master_timeout unknown)", "on, commits waiting", true},
		{"no commit waiting", false, time.Hour, "", "on ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := Of(context.Background(), nil, "main", waiting(tc.awaits, tc.timeout))
			var found []string
			for _, w := range st.Warnings {
				if strings.Contains(w, "acknowledgement") {
					found = append(found, w)
				}
			}
			switch {
			case tc.warning == "" && len(found) > 0:
				t.Errorf("warnings %q, want none about acknowledgements", found)
			case tc.warning != "" && (len(found) != 1 || !strings.Contains(found[0], tc.warning)):
				t.Errorf("warnings %q, want one containing %q", found, tc.warning)
			}
			var out bytes.Buffer
			Print(&out, st, false)
			row := ""
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(l, "db1 ") {
					row = l
				}
			}
			if !strings.Contains(row, tc.column) || (!tc.awaits && strings.Contains(row, "waiting")) {
				t.Errorf("db1's row %q, want its semi-sync column to read %q", row, tc.column)
			}
			if got := st.Nodes[0].AwaitsAck; got != tc.jsonAwaiting {
				t.Errorf("db1 awaits_ack %v, want %v", got, tc.jsonAwaiting)
			}
			if st.Nodes[1].AwaitsAck || st.Nodes[1].SemiSyncText() != "replica on" {
				t.Errorf("db2 semi-sync %q awaits %v, want \"replica on\" and false", st.Nodes[1].SemiSyncText(), st.Nodes[1].AwaitsAck)
			}
		})
	}
}

// TestRebuildShown: a rebuild under way, and one that failed, are in the warnings
// and the node's JSON; a node being rebuilt is not also told to be rejoined.
func TestRebuildShown(t *testing.T) {
	started := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	snap := cluster.Snapshot{View: cluster.View{Primary: cluster.Primary{Node: "db2"}, Nodes: map[string]cluster.NodeStatus{
		"db1": {Node: "db1", Role: cluster.RoleQuarantined, Errant: "0-1-9",
			Rebuild: &cluster.RebuildProgress{ID: "r", Step: cluster.RebuildStream, From: "db3", Bytes: 512 << 20, Size: 1 << 30, Started: started}},
		"db2": {Node: "db2", Role: cluster.RolePrimary},
		"db4": {Node: "db4", Role: cluster.RoleQuarantined, Reason: "data diverged from the primary of record; rejoin mode manual: a person decides: baton rebuild db4 --yes (its old datadir is kept)", CanRebuild: true,
			Rebuild: &cluster.RebuildProgress{ID: "q", Step: cluster.RebuildFailed, From: "db3", Error: "stream at 2026-12-07T10:00:00Z: no space left on device; the old datadir is in use again"}},
	}}}
	st := Of(context.Background(), nil, "main", snap)
	all := strings.Join(st.Warnings, "\n")
	for _, want := range []string{
		"db1 is being rebuilt: stream from db3: 512.0 MiB of ~1.0 GiB (50%)",
		"db4: the latest rebuild did not complete: failed from db3: stream at 2026-12-07T10:00:00Z: no space left on device",
		"db4 is quarantined, for: data diverged from the primary of record",
		"baton rebuild db4 --yes",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "db1 is quarantined") {
		t.Errorf("a node being rebuilt is also shown as waiting for a person:\n%s", all)
	}
	for _, n := range st.Nodes {
		if n.Name == "db1" && (n.Rebuild == nil || n.Rebuild.Bytes != 512<<20) {
			t.Errorf("db1's rebuild in --json: %+v", n.Rebuild)
		}
	}
	if got := Bytes(1536); got != "1.5 KiB" {
		t.Errorf("Bytes(1536) = %q", got)
	}
}

// TestEveryMemberShown: while the primary of record is cut off (its agent's status
// gone with its lease) and a replica's agent is stopped, both keep their rows,
// saying what is not known and why, in the text and in the JSON; the warning says
// the primary's agent has no session, not that it is not running.
func TestEveryMemberShown(t *testing.T) {
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db2", Addr: "198.18.0.12:3306", Epoch: 5},
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Addr: "198.18.0.11:3306", Role: cluster.RoleReplica, Verdict: detector.Healthy, ServerRead: true, ReadOnly: true},
		},
		Members: map[string]cluster.Member{
			"db1": {Node: "db1", Addr: "198.18.0.11:3306"}, "db2": {Node: "db2", Addr: "198.18.0.12:3306"},
			"db3": {Node: "db3", Addr: "198.18.0.13:3306"},
		},
	}}
	st := Of(context.Background(), nil, "main", snap)
	rows := map[string]Node{}
	for _, n := range st.Nodes {
		rows[n.Name] = n
	}
	if len(rows) != 3 {
		t.Fatalf("rows %v: want db1, db2 and db3", rows)
	}
	if p := rows["db2"]; !p.NoAgent || p.Role != cluster.RolePrimary || p.Verdict != detector.Unknown || p.Addr != "198.18.0.12:3306" ||
		!strings.Contains(p.Reason, "primary of record") {
		t.Errorf("db2 (primary, cut off): %+v", p)
	}
	if r := rows["db3"]; !r.NoAgent || r.Role != cluster.RoleUnknown || !strings.Contains(r.Reason, "no session in etcd") {
		t.Errorf("db3 (agent stopped): %+v", r)
	}
	if rows["db1"].NoAgent {
		t.Error("db1's agent is live")
	}
	var b bytes.Buffer
	Print(&b, st, false)
	for _, want := range []string{"db2", "primary of record; its agent has no session in etcd", "db3"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	for _, w := range st.Warnings {
		if strings.Contains(w, "not running") {
			t.Errorf("warning %q: the agent may be running, only cut off", w)
		}
	}
}

// TestQuarantineSaysWhatAndTheCommand: a quarantined node's warning gives its errant
// transactions as the range they stand for (MariaDB's "0-1-156" is 154..156 when the
// primary has 153) and the reason its agent published, which names what it will do
// or the command a person runs.
func TestQuarantineSaysWhatAndTheCommand(t *testing.T) {
	reason := "real errant transactions in the binary log (0-1-154, 0-1-155, 0-1-156), not undone by the node itself: rejoin mode is manual; a person decides: baton rejoin db1 --discard-errant --yes (archived first), or rebuild the node"
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db2", Epoch: 5},
		Leader:  "db2",
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Role: cluster.RoleQuarantined, Flavor: "mariadb", Errant: "0-1-156", Reason: reason, ServerRead: true, ReadOnly: true},
			"db2": {Node: "db2", Role: cluster.RolePrimary, Flavor: "mariadb", GTID: "0-1-153,0-2-160", ServerRead: true},
		},
	}}
	st := Of(context.Background(), nil, "main", snap)
	var got string
	for _, w := range st.Warnings {
		if strings.HasPrefix(w, "db1 is quarantined") {
			got = w
		}
	}
	if !strings.Contains(got, "errant transactions 0-1-154..156") || !strings.Contains(got, "baton rejoin db1 --discard-errant --yes") {
		t.Fatalf("warning %q: want the range 0-1-154..156 and the command", got)
	}
}

func TestDiskForecast(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		n    cluster.NodeStatus
		want string
	}{
		{"never published", cluster.NodeStatus{}, "unknown"},
		{"full, its forecast 0s", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 4096}, "full"},
		{"full, a forecast of 2s left", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 100, DiskTimeToFull: 2 * time.Second}, "full"},
		{"filling", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 1 << 30, DiskTimeToFull: 12 * time.Minute}, "full in about 12m"},
		{"idle disk, a forecast of 58 days", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 1 << 30, DiskTimeToFull: 1392 * time.Hour}, "not filling"},
		{"not filling", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 1 << 30}, "not filling"},
		// An agent that publishes a forecast per filesystem: the one that fills first.
		{"relay log's filling", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 1 << 30, Forecasts: []detector.Forecast{
			disk("/data", detector.OutlookSteady, 0), disk("/relay", detector.OutlookFilling, 9*time.Minute)}}, "full in about 9m"},
		{"rate not measured yet", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 1 << 30, Forecasts: []detector.Forecast{
			disk("/data", detector.OutlookUnknown, 0)}}, "unknown"},
		{"one full", cluster.NodeStatus{At: at, ServerRead: true, Forecasts: []detector.Forecast{
			disk("/data", detector.OutlookSteady, 0), disk("/relay", detector.OutlookExhausted, 0)}}, "full"},
		{"filling over days", cluster.NodeStatus{At: at, ServerRead: true, Forecasts: []detector.Forecast{
			disk("/data", detector.OutlookFilling, 50*time.Hour)}}, "not filling"},
	} {
		if got := DiskForecast(tc.n); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func disk(path string, o detector.Outlook, left time.Duration) detector.Forecast {
	f := detector.Forecast{Resource: detector.ResourceDisk, Name: path, Detail: "datadir", Used: 100 << 20, Limit: 256 << 20, RateKnown: o != detector.OutlookUnknown,
		Outlook: o, Left: left}
	if o == detector.OutlookFilling {
		f.Rate = 300 << 10
	}
	if o == detector.OutlookExhausted {
		f.Used = f.Limit
	}
	return f
}

func key(name string, o detector.Outlook, left time.Duration) detector.Forecast {
	return detector.Forecast{Resource: detector.ResourceAutoIncrement, Name: name, Detail: "int", Used: 2147480000, Limit: 2147483647,
		Rate: 50, RateKnown: true, Outlook: o, Left: left}
}

// TestForecastWarnings: what runs out soon is a warning, in the forecasts' words; a
// key running out on every node is said to be beyond any failover; what could not
// be forecast says why, once for the nodes it concerns.
func TestForecastWarnings(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	node := func(name string, fs ...detector.Forecast) cluster.NodeStatus {
		return cluster.NodeStatus{Node: name, At: at, ServerRead: true, Forecasts: fs}
	}
	snapOf := func(nodes ...cluster.NodeStatus) cluster.Snapshot {
		m := map[string]cluster.NodeStatus{}
		for _, n := range nodes {
			m[n.Node] = n
		}
		return cluster.Snapshot{View: cluster.View{Primary: cluster.Primary{Node: "db1"}, Nodes: m}}
	}
	purge := detector.Forecast{Resource: detector.ResourcePurgeLag, Name: "history list", Used: 5000, Limit: 1e6, Rate: 2, RateKnown: true,
		Outlook: detector.OutlookFilling, Left: 138 * time.Hour, Oldest: &detector.Trx{Thread: 42, Age: 2 * time.Hour, User: "app", Host: "10.0.0.5"}}
	hidden := detector.Forecast{Resource: detector.ResourceAutoIncrement, Name: "*", Err: "'baton'@'%' cannot see the tables' definitions: GRANT REFERENCES ON *.* TO 'baton'@'%'"}
	cases := []struct {
		name string
		snap cluster.Snapshot
		want []string // each a substring of one warning, in order
	}{
		{"nothing runs out soon", snapOf(node("db1", disk("/data", detector.OutlookSteady, 0), key("shop.orders.id", detector.OutlookFilling, 90*24*time.Hour)),
			node("db2", disk("/data", detector.OutlookFilling, 3*time.Hour))), nil},
		{"a key running out on every node: no failover fixes it", snapOf(
			node("db1", key("shop.orders.id", detector.OutlookFilling, time.Minute)),
			node("db2", key("shop.orders.id", detector.OutlookExhausted, 0)),
			node("db3", key("shop.orders.id", detector.OutlookFilling, 2*time.Minute))),
			[]string{"shop.orders.id (int) exhausted on every node (db1, db2, db3): inserts into shop.orders fail on whichever node is primary, and no failover can fix it (the table is replicated); make the column wider (ALTER TABLE shop.orders MODIFY id BIGINT UNSIGNED"}},
		{"a key running out on one node only", snapOf(
			node("db1", key("shop.orders.id", detector.OutlookFilling, 20*24*time.Hour)), node("db2")),
			[]string{"db1: auto-increment shop.orders.id (int): exhausted in about 20d"}},
		{"a disk filling, a long transaction", snapOf(node("db1", disk("/data", detector.OutlookFilling, 9*time.Minute), purge), node("db2")),
			[]string{"db1: disk /data (datadir): full in about 9m", "db1: a transaction has been open for 2h (thread 42, app@10.0.0.5): it holds purge back"}},
		{"every node's disk filling", snapOf(node("db1", disk("/data", detector.OutlookExhausted, 0)), node("db2", disk("/data", detector.OutlookFilling, 6*time.Minute))),
			[]string{"db1: disk /data (datadir): full", "db2: disk /data (datadir): full in about 6m", "every node's disk fills within the hour (db1: full, db2: full in about 6m): a failover buys little time"}},
		{"not forecast, and why", snapOf(node("db1", hidden), node("db2", hidden)),
			[]string{"db1, db2: auto-increment * not forecast: 'baton'@'%' cannot see the tables' definitions: GRANT REFERENCES ON *.*"}},
	}
	for _, tc := range cases {
		got := ForecastWarnings(tc.snap)
		if len(got) != len(tc.want) {
			t.Errorf("%s: warnings %q, want %d", tc.name, got, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: warning %d %q, want it to contain %q", tc.name, i, got[i], w)
			}
		}
	}
}

// TestPrintForecasts: baton status shows, node by node, what runs out first in the
// forecasts' words, and what the last failover bought; its JSON carries the same
// words with every forecast.
func TestPrintForecasts(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db2", Epoch: 2},
		Nodes: map[string]cluster.NodeStatus{
			"db2": {Node: "db2", Role: cluster.RolePrimary, At: at, ServerRead: true, LagMS: -1, Forecasts: []detector.Forecast{
				disk("/data", detector.OutlookFilling, 6*time.Minute), key("shop.orders.id", detector.OutlookFilling, 40*24*time.Hour)}},
			"db3": {Node: "db3", Role: cluster.RoleReplica, At: at, ServerRead: true, LagMS: 0, HeartbeatMS: 1624, Source: "198.18.0.12:3306",
				Forecasts: []detector.Forecast{disk("/data", detector.OutlookSteady, 0)}},
		},
	}}
	snap.LastEvent = &cluster.Event{Kind: cluster.EventFailover, From: "db1", To: "db2", Epoch: 2, Started: at, Reason: "primary db1 is unwritable",
		Runway: "db2 promoted; at the current rate its disk is full in about 6m: free space on db2 (disk /data (datadir))"}
	st := Of(context.Background(), nil, "main", snap)
	var b bytes.Buffer
	Print(&b, st, false)
	text := b.String()
	for _, want := range []string{
		"  db2 promoted; at the current rate its disk is full in about 6m: free space on db2",
		"db2  disk /data (datadir): full in about 6m; auto-increment shop.orders.id (int): exhausted in about 40d",
		"db3  disk /data (datadir): not filling",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("baton status lacks %q:\n%s", want, text)
		}
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "db3 ") && !strings.Contains(l, " 0ms ") {
			t.Errorf("db3's row %q: a replica with nothing to apply shows lag 0ms, whatever its heartbeat's age", l)
		}
	}
	if f := st.Nodes[0].Forecasts[0]; f.Says != "full in about 6m" || !strings.Contains(f.Line, "disk /data") || st.Nodes[0].DiskForecast != "full in about 6m" {
		t.Errorf("db2's JSON forecast %+v, disk forecast %q", f, st.Nodes[0].DiskForecast)
	}
}

// TestFiguresSayHowOld: a node whose published figures are 31 s old says so in the
// table and in the JSON; fresh ones do not.
func TestFiguresSayHowOld(t *testing.T) {
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db1", Epoch: 1},
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Role: cluster.RolePrimary, Verdict: detector.Healthy, Reason: "probes ok", At: time.Now().Add(-time.Second)},
			"db2": {Node: "db2", Role: cluster.RoleReplica, Verdict: detector.Healthy, Reason: "probes ok", At: time.Now().Add(-31 * time.Second), GTID: "0-1-10"},
		},
	}}
	st := Of(context.Background(), nil, "main", snap)
	var b bytes.Buffer
	Print(&b, st, false)
	if !strings.Contains(b.String(), "(figures 31s old) probes ok") {
		t.Errorf("table does not say db2's figures are 31s old:\n%s", b.String())
	}
	if strings.Count(b.String(), "figures") != 1 {
		t.Errorf("fresh figures called old:\n%s", b.String())
	}
	for _, n := range st.Nodes {
		if n.Name == "db2" && (n.StatusAgeMS < 30000 || n.StatusAgeMS > 40000) {
			t.Errorf("db2 status_age_ms %d, want about 31000", n.StatusAgeMS)
		}
	}
}
