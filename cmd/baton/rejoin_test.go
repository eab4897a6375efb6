package main

import (
	"strings"
	"testing"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/replication"
)

func TestRejoinCheck(t *testing.T) {
	real := replication.ErrantTxn{GTID: "0-1-36", Kind: replication.ErrantReal,
		First: &replication.BinlogEvent{File: "mysql-bin.000001", Pos: 14229, Type: "Query", Info: "INSERT INTO app.t VALUES (1)"}}
	phantom := replication.ErrantTxn{GTID: "0-1-37", Kind: replication.ErrantPhantom}
	snap := func(txns ...replication.ErrantTxn) cluster.Snapshot {
		return cluster.Snapshot{View: cluster.View{
			Primary: cluster.Primary{Node: "db2", Epoch: 2}, Leader: "db2",
			Nodes: map[string]cluster.NodeStatus{
				"db1": {Node: "db1", Role: cluster.RoleQuarantined, Errant: "0-1-37", ErrantTxns: txns},
				"db2": {Node: "db2", Role: cluster.RolePrimary},
				"db3": {Node: "db3", Role: cluster.RoleReplica},
			}, Members: map[string]cluster.Member{"db4": {Node: "db4"}}}}
	}
	cases := []struct {
		name    string
		snap    cluster.Snapshot
		node    string
		discard bool
		code    int
		why     string
	}{
		{"phantoms only", snap(phantom), "db1", false, 0, ""},
		{"not looked up yet: the agent decides", snap(), "db1", false, 0, ""},
		{"real, no --discard-errant", snap(phantom, real), "db1", false, exitRefused, "INSERT INTO app.t"},
		{"real, --discard-errant", snap(phantom, real), "db1", true, 0, ""},
		{"unknown node", snap(), "db9", false, exitBadInput, "unknown node"},
		{"empty node", snap(), "", false, exitBadInput, "empty"},
		{"the primary of record", snap(), "db2", true, exitRefused, "primary of record"},
		{"a healthy replica", snap(), "db3", false, exitRefused, "not quarantined"},
		{"a member whose agent is gone", snap(), "db4", false, exitRefused, "agent is not running"},
		{"holds the leader key", func() cluster.Snapshot { s := snap(phantom); s.Leader = "db1"; return s }(), "db1", false, exitRefused, "leader key"},
	}
	for _, tc := range cases {
		code, why := rejoinCheck(tc.snap, tc.node, tc.discard)
		if code != tc.code || !strings.Contains(why, tc.why) {
			t.Errorf("%s: rejoinCheck = %d %q, want %d containing %q", tc.name, code, why, tc.code, tc.why)
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
