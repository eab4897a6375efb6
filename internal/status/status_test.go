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
		{"filling", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 1 << 30, DiskTimeToFull: 12 * time.Minute}, "in 12m0s"},
		{"idle disk, a forecast of 58 days", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 1 << 30, DiskTimeToFull: 1392 * time.Hour}, "not filling"},
		{"not filling", cluster.NodeStatus{At: at, ServerRead: true, DiskFree: 1 << 30}, "not filling"},
	} {
		if got := DiskForecast(tc.n); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
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
