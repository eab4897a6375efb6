package main

import (
	"strings"
	"testing"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/replication"
)

// TestRejoinCheck: the command's exit status for reconcile.PrecheckRejoin's answers
// (the rule itself is tested there).
func TestRejoinCheck(t *testing.T) {
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db2", Epoch: 2}, Leader: "db2",
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Role: cluster.RoleQuarantined, Errant: "0-1-37",
				ErrantTxns: []replication.ErrantTxn{{GTID: "0-1-37", Kind: replication.ErrantPhantom}}},
			"db2": {Node: "db2", Role: cluster.RolePrimary},
		}}}
	cases := []struct {
		node string
		code int
		why  string
	}{
		{"db1", 0, ""},
		{"db9", exitBadInput, `unknown node "db9"`},
		{"db2", exitRefused, "primary of record"},
	}
	for _, tc := range cases {
		code, why := rejoinCheck(snap, tc.node, false)
		if code != tc.code || !strings.Contains(why, tc.why) {
			t.Errorf("%s: rejoinCheck = %d %q, want %d containing %q", tc.node, code, why, tc.code, tc.why)
		}
	}
}

func TestRejoinArgs(t *testing.T) {
	cases := []struct {
		args          []string
		node          string
		discard, yes  bool
		wantErrSubstr string
	}{
		{[]string{"db1", "--yes"}, "db1", false, true, ""},
		{[]string{"db1", "--discard-errant", "--yes"}, "db1", true, true, ""},
		{[]string{"db1", "-y"}, "db1", false, true, ""},
		{[]string{"db1"}, "db1", false, false, ""},
		{nil, "", false, false, "give the node"},
		{[]string{"db1", "db2"}, "", false, false, "exactly one node"},
		{[]string{"db1", "--timeout=5s"}, "", false, false, "before NODE"},
	}
	for _, tc := range cases {
		node, discard, yes, err := rejoinArgs(tc.args, false, false)
		if tc.wantErrSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrSubstr) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.wantErrSubstr)
			}
			continue
		}
		if err != nil || node != tc.node || discard != tc.discard || yes != tc.yes {
			t.Errorf("%v: %q %v %v %v, want %q %v %v", tc.args, node, discard, yes, err, tc.node, tc.discard, tc.yes)
		}
	}
}
