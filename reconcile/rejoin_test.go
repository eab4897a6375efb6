package reconcile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// fencedOld is db1, the old primary after the failover to db2 (failedOver, leader key
// released): read_only, replicating from none, with errant 0-1-102 (db2 has 0-1-100).
func fencedOld(check *ErrantCheck, room bool) Self {
	s := read("db1", readOnly(writable(1, "0-1-102")))
	s.ErrantCheck, s.DiskRoom = check, room
	return s
}

func evidence(kind replication.ErrantKind) *ErrantCheck {
	return &ErrantCheck{Errant: "0-1-102", Evidence: replication.ErrantEvidence{Flavor: replication.FlavorMariaDB, Txns: []replication.ErrantTxn{
		{GTID: "0-1-101", Kind: replication.ErrantPhantom}, {GTID: "0-1-102", Kind: kind}}}}
}

func TestAnalyzeErrant(t *testing.T) {
	released := snapWith(failedOver(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "db2", leases["db2"] })
	withReq := func(r cluster.RejoinRequest) cluster.Snapshot {
		return snapWith(released, func(s *cluster.Snapshot) {
			s.Rejoins = map[string]cluster.RejoinRequest{"db1": r}
			s.RejoinModRev = map[string]int64{"db1": 77}
		})
	}
	phantom, real := evidence(replication.ErrantPhantom), evidence(replication.ErrantReal)
	cases := []struct {
		name        string
		snap        cluster.Snapshot
		self        Self
		want        NodeAction
		wantInspect bool
		wantDiscard bool
		wantFence   bool
		wantAnswer  cluster.RequestState // "" for no answer written ("pending" is never an answer)
		answered    bool
		wantReason  string
	}{
		{name: "errant, not looked up yet: quarantine and look into the binlog",
			snap: released, self: fencedOld(nil, true), want: NodeQuarantine, wantInspect: true, wantReason: "looking them up"},
		{name: "errant, the last look failed a moment ago: quarantine, do not look yet",
			snap: released, self: func() Self { s := fencedOld(nil, true); s.InspectBackoff = true; return s }(),
			want: NodeQuarantine},
		{name: "errant, the last look failed: the reason says why",
			snap: released, self: func() Self {
				s := fencedOld(nil, true)
				s.InspectBackoff, s.InspectErr = true, "list the binary logs: Error 1045"
				return s
			}(),
			want: NodeQuarantine, wantReason: "the last look failed: list the binary logs: Error 1045; tried again every 5s"},
		{name: "evidence about another errant set: look again",
			snap: released, self: fencedOld(&ErrantCheck{Errant: "0-1-101", Evidence: phantom.Evidence}, true),
			want: NodeQuarantine, wantInspect: true},
		{name: "every errant GTID a phantom, disk has room, read_only: repair",
			snap: released, self: fencedOld(phantom, true), want: NodeRepairErrant, wantReason: "phantom"},
		{name: "phantoms but the disk is still full: stay quarantined",
			snap: released, self: fencedOld(phantom, false), want: NodeQuarantine, wantReason: "no room"},
		{name: "phantoms on a writable server: fence, no repair",
			snap: released, self: func() Self { s := fencedOld(phantom, true); s.Status.ReadOnly = false; return s }(),
			want: NodeQuarantine, wantFence: true},
		{name: "phantoms, the node still holds the leader key: fence, no repair",
			snap: snapWith(failedOver(), func(s *cluster.Snapshot) {}), self: fencedOld(phantom, true),
			want: NodeQuarantine, wantFence: true},
		{name: "phantoms while a flow is in progress: wait, the replication is the coordinator's",
			snap: snapWith(released, func(s *cluster.Snapshot) {
				s.Intent = &cluster.Intent{Kind: cluster.FlowSwitchover, Epoch: 5, From: "db2", To: "db3", Started: now0}
			}),
			self: fencedOld(phantom, true), want: NodeWait},
		{name: "the primary of record never repairs, phantoms or not",
			snap: released, self: func() Self {
				s := read("db2", writable(2, "0-1-100,0-2-3"))
				s.ErrantCheck, s.DiskRoom = phantom, true
				return s
			}(), want: NodeHoldPrimary},
		{name: "a real errant transaction: quarantined for a person",
			snap: released, self: fencedOld(real, true), want: NodeQuarantine, wantReason: "real errant transactions"},
		{name: "zero evidence is not phantom",
			snap: released, self: fencedOld(&ErrantCheck{Errant: "0-1-102"}, true), want: NodeQuarantine},
		{name: "unchecked GTIDs are not phantoms",
			snap: released, self: fencedOld(evidence(replication.ErrantUnchecked), true), want: NodeQuarantine},
		{name: "request without --discard-errant, real transactions: refused",
			snap: withReq(cluster.RejoinRequest{ID: "r1", Node: "db1", Errant: "0-1-102"}), self: fencedOld(real, true),
			want: NodeQuarantine, answered: true, wantAnswer: cluster.RequestRefused},
		{name: "request with --discard-errant, real transactions: repair, discarding",
			snap: withReq(cluster.RejoinRequest{ID: "r1", Node: "db1", Errant: "0-1-102", DiscardErrant: true}), self: fencedOld(real, true),
			want: NodeRepairErrant, wantDiscard: true, wantReason: "discarded on request"},
		{name: "request for other errant GTIDs than the node has now: refused",
			snap: withReq(cluster.RejoinRequest{ID: "r1", Node: "db1", Errant: "0-1-101", DiscardErrant: true}), self: fencedOld(real, true),
			want: NodeQuarantine, answered: true, wantAnswer: cluster.RequestRefused},
		{name: "request, phantoms, disk still full: refused, not now",
			snap: withReq(cluster.RejoinRequest{ID: "r1", Node: "db1", Errant: "0-1-102"}), self: fencedOld(phantom, false),
			want: NodeQuarantine, answered: true, wantAnswer: cluster.RequestRefused},
		{name: "request, phantoms: repair without discarding",
			snap: withReq(cluster.RejoinRequest{ID: "r1", Node: "db1", Errant: "0-1-102"}), self: fencedOld(phantom, true),
			want: NodeRepairErrant},
		{name: "a request answered already is not carried out again",
			snap: withReq(cluster.RejoinRequest{ID: "r1", Node: "db1", Errant: "0-1-102", DiscardErrant: true, State: cluster.RequestDone}),
			self: fencedOld(real, true), want: NodeQuarantine},
		{name: "request for a node with nothing errant: refused",
			snap: snapWith(withReq(cluster.RejoinRequest{ID: "r1", Node: "db3"}), func(s *cluster.Snapshot) {
				s.Rejoins = map[string]cluster.RejoinRequest{"db3": {ID: "r1", Node: "db3"}}
			}),
			self: read("db3", replicaOf(3, "198.18.0.2", "0-1-100,0-2-3")), want: NodeFollow, answered: true, wantAnswer: cluster.RequestRefused},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Analyze(tc.snap, tc.self)
			if a.Action != tc.want {
				t.Fatalf("action %s (%s), want %s", a.Action, a.Reason, tc.want)
			}
			if a.Inspect != tc.wantInspect || a.Discard != tc.wantDiscard || a.Fence != tc.wantFence {
				t.Errorf("inspect %v discard %v fence %v, want %v %v %v", a.Inspect, a.Discard, a.Fence, tc.wantInspect, tc.wantDiscard, tc.wantFence)
			}
			if (a.Answer != nil) != tc.answered || (a.Answer != nil && a.Answer.State != tc.wantAnswer) {
				t.Errorf("answer %+v, want answered %v state %q", a.Answer, tc.answered, tc.wantAnswer)
			}
			if a.Answer != nil && a.Answer.Error == "" {
				t.Error("a refusal without a reason")
			}
			if a.Action == NodeRepairErrant && (a.Source.Host == "" || a.Errant == "") {
				t.Errorf("repair without a source or errant set: %+v", a)
			}
			if a.Action == NodeRepairErrant && tc.snap.Rejoins["db1"].Pending() && (a.Request == nil || a.RequestRev != 77) {
				t.Errorf("repair on request without the request: %+v", a)
			}
			if !strings.Contains(a.Reason, tc.wantReason) {
				t.Errorf("reason %q, want it to contain %q", a.Reason, tc.wantReason)
			}
		})
	}
}

func TestDiskRoom(t *testing.T) {
	at := time.Unix(1, 0)
	disk := func(free uint64) detector.Disk { return detector.Disk{Path: "/data", Total: 1000, Free: free} }
	cases := []struct {
		name string
		rep  detector.Report
		want bool
	}{
		{"zero report: no evidence of room", detector.Report{}, false},
		{"no disks read", detector.Report{At: at}, false},
		{"room", detector.Report{At: at, Disks: []detector.Disk{disk(500)}}, true},
		{"full", detector.Report{At: at, Disks: []detector.Disk{disk(0)}}, false},
		{"nearly full (under 2%)", detector.Report{At: at, Disks: []detector.Disk{disk(19)}}, false},
		{"unreadable disk", detector.Report{At: at, Disks: []detector.Disk{{Path: "/data", Err: "eio"}}}, false},
		{"room, but the storage probe fails", detector.Report{At: at, Disks: []detector.Disk{disk(500)},
			Storage: &detector.Result{Class: detector.TimedOut}}, false},
		{"room, the storage probe writes", detector.Report{At: at, Disks: []detector.Disk{disk(500)},
			Storage: &detector.Result{Class: detector.OK}}, true},
	}
	for _, tc := range cases {
		if got := DiskRoom(tc.rep); got != tc.want {
			t.Errorf("%s: DiskRoom = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRecall: a GTID once found real stays real when a later look cannot read it
// (purged) or even calls it a phantom; an unreadable record makes every GTID real;
// no record changes nothing.
func TestRecall(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	first := &replication.BinlogEvent{Type: "Annotate_rows", Info: "INSERT INTO app.t VALUES (1)"}
	fresh := []replication.ErrantTxn{
		{GTID: "0-2-74", Kind: replication.ErrantUnchecked, Note: "purged"},
		{GTID: "0-2-75", Kind: replication.ErrantPhantom},
		{GTID: "0-2-76", Kind: replication.ErrantReal, First: first},
		{GTID: "0-2-77", Kind: replication.ErrantPhantom},
	}
	kinds := func(txns []replication.ErrantTxn) string {
		var out []string
		for _, t := range txns {
			out = append(out, t.GTID+"="+t.Kind.String())
		}
		return strings.Join(out, " ")
	}
	cases := []struct {
		name      string
		rec       *cluster.ErrantRecord
		want      string
		wantNewly []string
	}{
		{"no record", nil, "0-2-74=unchecked 0-2-75=phantom 0-2-76=real 0-2-77=phantom", []string{"0-2-76"}},
		{"recorded real, now purged or absent", &cluster.ErrantRecord{Node: "db2", Real: []string{"0-2-74", "0-2-75", "0-2-76"}, At: at},
			"0-2-74=real 0-2-75=real 0-2-76=real 0-2-77=phantom", nil},
		{"an unreadable record", &cluster.ErrantRecord{Node: "db2", Unreadable: true},
			"0-2-74=real 0-2-75=real 0-2-76=real 0-2-77=real", nil},
		{"a record of other GTIDs", &cluster.ErrantRecord{Node: "db2", Real: []string{"0-2-60"}, At: at},
			"0-2-74=unchecked 0-2-75=phantom 0-2-76=real 0-2-77=phantom", []string{"0-2-76"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := recall(fresh, tc.rec)
			if k := kinds(got); k != tc.want {
				t.Errorf("recall: %s, want %s", k, tc.want)
			}
			if (replication.ErrantEvidence{Txns: got}).Phantom() {
				t.Error("evidence with a recorded real GTID reads as all phantom")
			}
			if n := newlyReal(got, tc.rec); strings.Join(n, ",") != strings.Join(tc.wantNewly, ",") {
				t.Errorf("newlyReal: %v, want %v", n, tc.wantNewly)
			}
		})
	}
	if kinds(fresh) != "0-2-74=unchecked 0-2-75=phantom 0-2-76=real 0-2-77=phantom" {
		t.Error("recall changed its input")
	}
	// Recalled as real, a GTID keeps a note saying why.
	if got := recall(fresh, &cluster.ErrantRecord{Node: "db2", Real: []string{"0-2-75"}, At: at}); !strings.Contains(got[1].Note, "recorded") {
		t.Errorf("note %q: want it to say the finding was recorded", got[1].Note)
	}
}

// rows is evidence of one phantom and one real errant transaction of row events on
// tables, written whole in the binary log (the archive can hold it, flashback can
// undo it).
func rows(tables ...string) *ErrantCheck {
	ev := evidence(replication.ErrantReal)
	ev.Evidence.Flavor = replication.FlavorMariaDB
	ev.Evidence.Txns[1].First = &replication.BinlogEvent{File: "mysql-bin.000001", Type: "Annotate_rows", Info: "UPDATE ..."}
	ev.Evidence.Txns[1].Tables, ev.Evidence.Txns[1].RowsOnly, ev.Evidence.Txns[1].Transactional = tables, true, true
	return ev
}

// TestAnalyzeUndo: a quarantined node undoes real errant transactions in place only
// when the evidence lets flashback do it (row events, in the binary log whole, so
// archived first) and the cluster's rejoin mode allows it, or they are Baton's own
// heartbeat writes; never without an archive, never blocked (writable, no room,
// fence needed), and otherwise it stays quarantined saying the command.
func TestAnalyzeUndo(t *testing.T) {
	released := snapWith(failedOver(), func(s *cluster.Snapshot) { s.Leader, s.LeaderLease = "db2", leases["db2"] })
	mode := func(m cluster.RejoinMode) cluster.Snapshot {
		return snapWith(released, func(s *cluster.Snapshot) {
			s.Policy = &cluster.PolicyRecord{Policy: cluster.Policy{ConfirmLag: time.Second, Rejoin: m}}
		})
	}
	archiving := func(c *ErrantCheck, room bool) Self { s := fencedOld(c, room); s.CanArchive = true; return s }
	ddl := rows("app.t")
	ddl.Evidence.Txns[1].RowsOnly = false
	purged := rows("app.t")
	purged.Evidence.Txns[1].Kind, purged.Evidence.Txns[1].First = replication.ErrantUnchecked, nil
	purged.Evidence.Txns[1].Note = "purged"
	mysql := rows("app.t")
	mysql.Evidence.Flavor = replication.FlavorMySQL
	cases := []struct {
		name       string
		snap       cluster.Snapshot
		self       Self
		want       NodeAction
		wantReason string
	}{
		{"application rows, manual mode: quarantined, saying the command", mode(cluster.RejoinManual), archiving(rows("app.t"), true),
			NodeQuarantine, "baton rejoin db1 --discard-errant --yes"},
		{"application rows, no policy read: manual", snapWith(released, func(s *cluster.Snapshot) { s.Policy = nil }), archiving(rows("app.t"), true),
			NodeQuarantine, "rejoin mode is manual"},
		{"application rows, archive-and-repair: undone", mode(cluster.RejoinArchiveAndRepair), archiving(rows("app.t"), true),
			NodeUndoErrant, "archived, then undone"},
		{"Baton's heartbeat alone, manual mode: undone all the same", mode(cluster.RejoinManual), archiving(rows("baton.heartbeat"), true),
			NodeUndoErrant, "Baton's own schema"},
		{"heartbeat and an application table: the mode decides", mode(cluster.RejoinManual), archiving(rows("baton.heartbeat", "app.t"), true),
			NodeQuarantine, "rejoin mode is manual"},
		{"DDL: flashback cannot, quarantined", mode(cluster.RejoinArchiveAndRepair), archiving(ddl, true),
			NodeQuarantine, "statement or DDL"},
		{"purged from the binary log: cannot be archived, quarantined", mode(cluster.RejoinArchiveAndRepair), archiving(purged, true),
			NodeQuarantine, "could not be archived"},
		{"MySQL: no flashback", mode(cluster.RejoinArchiveAndRepair), archiving(mysql, true),
			NodeQuarantine, "only MariaDB"},
		{"Baton's heartbeat, but a MyISAM copy of it: never undone", mode(cluster.RejoinManual),
			archiving(func() *ErrantCheck { c := rows("baton.heartbeat"); c.Evidence.Txns[1].Transactional = false; return c }(), true),
			NodeQuarantine, "non-transactional"},
		{"no archive possible: never undone", mode(cluster.RejoinArchiveAndRepair), fencedOld(rows("app.t"), true),
			NodeQuarantine, "cannot archive"},
		{"disk still full: not yet", mode(cluster.RejoinArchiveAndRepair), archiving(rows("app.t"), false),
			NodeQuarantine, "not yet"},
		{"server writable: fence first, no undo", mode(cluster.RejoinArchiveAndRepair),
			func() Self { s := archiving(rows("app.t"), true); s.Status.ReadOnly = false; return s }(), NodeQuarantine, "not yet"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := Analyze(tc.snap, tc.self)
			if a.Action != tc.want || !strings.Contains(a.Reason, tc.wantReason) {
				t.Fatalf("action %s (%s), want %s with %q", a.Action, a.Reason, tc.want, tc.wantReason)
			}
			if a.Action == NodeUndoErrant && (a.Source.Host == "" || a.Errant == "" || a.Primary.Executed.IsEmpty()) {
				t.Errorf("undo without a source, errant set or primary: %+v", a)
			}
		})
	}
	if n := len(rows("app.t").Evidence.Txns); n != 2 {
		t.Fatalf("evidence of %d transactions", n)
	}
	many := rows("app.t")
	for i := range MaxUndo {
		tx := many.Evidence.Txns[1]
		tx.GTID = fmt.Sprintf("0-1-%d", 200+i)
		many.Evidence.Txns = append(many.Evidence.Txns, tx)
	}
	if ok, why := UndoCheck(many.Evidence, cluster.RejoinArchiveAndRepair); ok || !strings.Contains(why, "more than") {
		t.Errorf("UndoCheck of %d transactions = %v (%s), want refused", len(many.Evidence.Txns), ok, why)
	}
}

// TestRejoinStateRefused: a refused flashback is remembered for its errant set
// alone: the same set read again keeps it (the next pass rebuilds), another set
// (the server moved) starts without it.
func TestRejoinStateRefused(t *testing.T) {
	var st rejoinState
	c := rows("app.t")
	c.Errant = "0-1-5"
	st.set(c, time.Time{})
	var s Self
	st.fill(&s, detector.Report{}, time.Now())
	if s.UndoRefused != "" {
		t.Fatalf("UndoRefused %q before any refusal", s.UndoRefused)
	}
	st.refuse("0-1-5", "11 transactions reversed, want 12")
	st.set(nil, time.Now()) // a failed step: looked up again
	st.set(c, time.Time{})
	s = Self{}
	st.fill(&s, detector.Report{}, time.Now())
	if s.UndoRefused != "11 transactions reversed, want 12" {
		t.Errorf("UndoRefused %q after the same set was read again", s.UndoRefused)
	}
	other := rows("app.t")
	other.Errant = "0-1-6"
	st.set(other, time.Time{})
	s = Self{}
	st.fill(&s, detector.Report{}, time.Now())
	if s.UndoRefused != "" {
		t.Errorf("UndoRefused %q for another errant set", s.UndoRefused)
	}
}
