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
		"db4": {Node: "db4", Role: cluster.RoleQuarantined, Reason: "data diverged from the primary of record", CanRebuild: true,
			Rebuild: &cluster.RebuildProgress{ID: "q", Step: cluster.RebuildFailed, From: "db3", Error: "stream at 2026-12-07T10:00:00Z: no space left on device; the old datadir is in use again"}},
	}}}
	st := Of(context.Background(), nil, "main", snap)
	all := strings.Join(st.Warnings, "\n")
	for _, want := range []string{
		"db1 is being rebuilt: stream from db3: 512.0 MiB of ~1.0 GiB (50%)",
		"db4: the latest rebuild did not complete: failed from db3: stream at 2026-12-07T10:00:00Z: no space left on device",
		"db4 is quarantined: data diverged from the primary of record",
		"`baton rebuild db4 --yes`",
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
