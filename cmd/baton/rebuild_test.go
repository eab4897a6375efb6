package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

func TestRebuildArgs(t *testing.T) {
	cases := []struct {
		args      []string
		from      string // --from given before NODE
		node, got string
		yes       bool
		err       string
	}{
		{args: []string{"db1", "--yes"}, node: "db1", yes: true},
		{args: []string{"db1", "--from", "db3", "--yes"}, node: "db1", got: "db3", yes: true},
		{args: []string{"db1", "--from=db3", "-y"}, node: "db1", got: "db3", yes: true},
		{args: []string{"db1"}, from: "db2", node: "db1", got: "db2"},
		{args: nil, err: "give the node"},
		{args: []string{"db1", "db2"}, err: "exactly one node"},
		{args: []string{"db1", "--from"}, err: "--from needs the donor's name"},
		{args: []string{"db1", "--from", "--yes"}, err: "--from needs the donor's name"},
		{args: []string{"db1", "--timeout=5s"}, err: "before NODE"},
		{args: []string{"db1", "--from", "db1"}, err: "its own donor"},
		{args: []string{"db/1"}, err: "NODE"},
		{args: []string{"db1", "--from", "db 3"}, err: "--from"},
	}
	for _, tc := range cases {
		node, from, yes, err := rebuildArgs(tc.args, tc.from, false)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || node != tc.node || from != tc.got || yes != tc.yes {
			t.Errorf("%v: %q %q %v %v, want %q %q %v", tc.args, node, from, yes, err, tc.node, tc.got, tc.yes)
		}
	}
}

// TestRebuildCheck: the command's exit status for reconcile.PrecheckRebuild's answers
// (the rule itself is tested there): an unknown node or donor is bad input.
func TestRebuildCheck(t *testing.T) {
	replica := func(name string) cluster.NodeStatus {
		return cluster.NodeStatus{Node: name, Role: cluster.RoleReplica, ServerRead: true, Verdict: detector.Healthy, Flavor: "mariadb",
			Epoch: 2, Source: "198.18.0.12:3306", IORunning: true, SQLRunning: true, CanDonate: true}
	}
	snap := cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db2", Addr: "198.18.0.12:3306", Epoch: 2}, Leader: "db2",
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Role: cluster.RoleQuarantined, Flavor: "mariadb", CanRebuild: true},
			"db2": {Node: "db2", Role: cluster.RolePrimary},
			"db3": replica("db3"),
		}}}
	cases := []struct {
		node, from string
		code       int
		why        string
	}{
		{"db1", "", 0, ""},
		{"db1", "db3", 0, ""},
		{"db9", "", exitBadInput, `unknown node "db9"`},
		{"db1", "db9", exitBadInput, `donor "db9"`},
		{"db2", "", exitRefused, "primary of record"},
		{"db1", "db2", exitRefused, "not a replica"},
	}
	for _, tc := range cases {
		code, why := rebuildCheck(snap, tc.node, tc.from)
		if code != tc.code || !strings.Contains(why, tc.why) {
			t.Errorf("%s from %q: rebuildCheck = %d %q, want %d containing %q", tc.node, tc.from, code, why, tc.code, tc.why)
		}
	}
}

// TestPrintHistoryRebuild: a rebuild event says where the copy came from, how much,
// and where the old datadir is kept.
func TestPrintHistoryRebuild(t *testing.T) {
	var b bytes.Buffer
	printHistory(&b, []cluster.Event{{Kind: cluster.EventRebuild, From: "db1", To: "db2", Epoch: 3, Started: time.Now(), Took: 92 * time.Second,
		Reason: "data diverged", Donor: "db3", Bytes: 3 << 29, Kept: "/var/lib/mysql.baton-old-20261207T100000Z-a1b2c3"}})
	for _, want := range []string{"rebuild db1 -> db2", "copied from db3: 1.5 GiB", "old datadir kept (on db1): /var/lib/mysql.baton-old-20261207T100000Z-a1b2c3"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("history lacks %q:\n%s", want, b.String())
		}
	}
	if h := toHistoryEvent(cluster.Event{Kind: cluster.EventRebuild, Donor: "db3", Bytes: 10, Kept: "/k"}); h.Donor != "db3" || h.Bytes != 10 || h.Kept != "/k" {
		t.Errorf("--json: %+v", h)
	}
}
