package reconcile

import (
	"errors"
	"strings"
	"testing"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/replication"
)

var (
	realTxn = replication.ErrantTxn{GTID: "0-1-36", Kind: replication.ErrantReal,
		First: &replication.BinlogEvent{File: "mysql-bin.000001", Pos: 14229, Type: "Query", Info: "INSERT INTO app.t VALUES (1)"}}
	phantomTxn   = replication.ErrantTxn{GTID: "0-1-37", Kind: replication.ErrantPhantom}
	uncheckedTxn = replication.ErrantTxn{GTID: "0-1-38"}
)

func TestCheckRejoin(t *testing.T) {
	req := func(errant string, discard bool) *cluster.RejoinRequest {
		return &cluster.RejoinRequest{ID: "r1", Node: "db1", Errant: errant, DiscardErrant: discard}
	}
	cases := []struct {
		name   string
		errant string
		txns   []replication.ErrantTxn
		req    *cluster.RejoinRequest
		want   RejoinVerdict
		why    string
	}{
		{"phantoms, no request: the agent's own repair", "0-1-37", []replication.ErrantTxn{phantomTxn}, nil, RejoinPhantoms, ""},
		{"phantoms, requested", "0-1-37", []replication.ErrantTxn{phantomTxn}, req("0-1-37", false), RejoinPhantoms, ""},
		{"phantoms, requested with discard: nothing to discard", "0-1-37", []replication.ErrantTxn{phantomTxn}, req("0-1-37", true), RejoinPhantoms, ""},
		{"real, no request: a person decides", "0-1-36,0-1-37", []replication.ErrantTxn{phantomTxn, realTxn}, nil, RejoinRefused, "INSERT INTO app.t"},
		{"real, requested without discard", "0-1-36,0-1-37", []replication.ErrantTxn{phantomTxn, realTxn}, req("0-1-36,0-1-37", false), RejoinRefused, "--discard-errant"},
		{"real, requested with discard", "0-1-36,0-1-37", []replication.ErrantTxn{phantomTxn, realTxn}, req("0-1-36,0-1-37", true), RejoinDiscard, ""},
		{"unchecked counts as real", "0-1-38", []replication.ErrantTxn{uncheckedTxn}, req("0-1-38", false), RejoinRefused, "0-1-38: unchecked"},
		{"unchecked, discard asked", "0-1-38", []replication.ErrantTxn{uncheckedTxn}, req("0-1-38", true), RejoinDiscard, ""},
		{"no evidence yet", "0-1-37", nil, req("0-1-37", true), RejoinUnchecked, "not looked up"},
		{"no evidence, no request", "0-1-37", nil, nil, RejoinUnchecked, "not looked up"},
		{"the errant set changed since the request", "0-1-36,0-1-37", []replication.ErrantTxn{phantomTxn}, req("0-1-37", true), RejoinRefused, "not 0-1-37 as when"},
		{"a request that names no set is for the current one", "0-1-37", []replication.ErrantTxn{phantomTxn}, req("", false), RejoinPhantoms, ""},
	}
	for _, tc := range cases {
		got, why := CheckRejoin(tc.errant, tc.txns, tc.req)
		if got != tc.want || !strings.Contains(why, tc.why) || (tc.why == "" && why != "") {
			t.Errorf("%s: CheckRejoin = %s %q, want %s with %q", tc.name, got, why, tc.want, tc.why)
		}
	}
}

func TestPrecheckRejoin(t *testing.T) {
	snap := func(txns ...replication.ErrantTxn) cluster.Snapshot {
		return cluster.Snapshot{View: cluster.View{
			Primary: cluster.Primary{Node: "db2", Epoch: 2}, Leader: "db2",
			Nodes: map[string]cluster.NodeStatus{
				"db1": {Node: "db1", Role: cluster.RoleQuarantined, Errant: "0-1-36,0-1-37", ErrantTxns: txns},
				"db2": {Node: "db2", Role: cluster.RolePrimary},
				"db3": {Node: "db3", Role: cluster.RoleReplica},
			}, Members: map[string]cluster.Member{"db4": {Node: "db4"}}}}
	}
	cases := []struct {
		name    string
		snap    cluster.Snapshot
		node    string
		discard bool
		unknown bool // ErrUnknownNode
		refused bool // *RejoinRefusal
		why     string
	}{
		{"phantoms only", snap(phantomTxn), "db1", false, false, false, ""},
		{"not looked up yet: the agent looks, then decides", snap(), "db1", false, false, false, ""},
		{"real, no --discard-errant", snap(phantomTxn, realTxn), "db1", false, false, true, "INSERT INTO app.t"},
		{"real, --discard-errant", snap(phantomTxn, realTxn), "db1", true, false, false, ""},
		{"unknown node", snap(), "db9", false, true, false, `unknown node "db9" (known: db1, db2, db3)`},
		{"empty node", snap(), "", false, true, false, "empty"},
		{"the primary of record", snap(), "db2", true, false, true, "primary of record"},
		{"a healthy replica", snap(), "db3", false, false, true, "not quarantined"},
		{"a member whose agent is gone", snap(), "db4", false, false, true, "agent is not running"},
		{"holds the leader key", func() cluster.Snapshot { s := snap(phantomTxn); s.Leader = "db1"; return s }(), "db1", false, false, true, "leader key"},
	}
	for _, tc := range cases {
		err := PrecheckRejoin(tc.snap, tc.node, tc.discard)
		var refusal *RejoinRefusal
		if errors.Is(err, ErrUnknownNode) != tc.unknown || errors.As(err, &refusal) != tc.refused ||
			(err == nil) != (tc.why == "") || (err != nil && !strings.Contains(err.Error(), tc.why)) {
			t.Errorf("%s: PrecheckRejoin = %v, want unknown %v refused %v with %q", tc.name, err, tc.unknown, tc.refused, tc.why)
		}
	}
}

// TestRejoinCommandAgreesWithAgent: on the same evidence, `baton rejoin` files a
// request exactly when the node's agent, ready for a repair, would carry it out.
func TestRejoinCommandAgreesWithAgent(t *testing.T) {
	released := snapWith(failedOver(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "db2", leases["db2"] })
	for _, txns := range [][]replication.ErrantTxn{
		{{GTID: "0-1-101", Kind: replication.ErrantPhantom}, {GTID: "0-1-102", Kind: replication.ErrantPhantom}},
		{{GTID: "0-1-101", Kind: replication.ErrantPhantom}, {GTID: "0-1-102", Kind: replication.ErrantReal}},
		{{GTID: "0-1-101", Kind: replication.ErrantPhantom}, {GTID: "0-1-102", Kind: replication.ErrantUnchecked}},
	} {
		for _, discard := range []bool{false, true} {
			// The command sees what the agent published: db1 quarantined with this evidence.
			published := snapWith(released, func(s *cluster.Snapshot) {
				s.Nodes["db1"] = cluster.NodeStatus{Node: "db1", Role: cluster.RoleQuarantined, Errant: "0-1-102", ErrantTxns: txns}
			})
			files := PrecheckRejoin(published, "db1", discard) == nil

			// The agent finds the request it filed, with the same evidence of its own.
			asked := snapWith(released, func(s *cluster.Snapshot) {
				s.Rejoins = map[string]cluster.RejoinRequest{"db1": {ID: "r1", Node: "db1", Errant: "0-1-102", DiscardErrant: discard}}
				s.RejoinModRev = map[string]int64{"db1": 77}
			})
			a := Analyze(asked, fencedOld(&ErrantCheck{Errant: "0-1-102", Evidence: replication.ErrantEvidence{Txns: txns}}, true))
			repairs := a.Action == NodeRepairErrant
			if files != repairs {
				t.Errorf("evidence %v, discard %v: the command files %v, the agent repairs %v (%s; answer %+v)", txns, discard, files, repairs, a.Reason, a.Answer)
			}
		}
	}
}
