package chaos

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
)

func TestCheckForgetting(t *testing.T) {
	// db1 was the primary up to 0-1-100 and wrote 0-1-101 and 0-1-102 that nobody
	// got; db2 took over at 0-2-101.
	reads := func(states ...string) []BinlogState {
		var out []BinlogState
		for i, s := range states {
			out = append(out, BinlogState{Node: "db1", At: at(1000 * i), State: s})
		}
		return out
	}
	deposed, repaired := "0-1-102,0-2-50", "0-1-100,0-2-50"
	phantoms := Forget{Node: "db1", At: at(1500), By: "rejoin", GTIDs: []string{"0-1-101", "0-1-102"}}
	cases := []struct {
		name string
		o    Observation
		want []string // substrings of the violations, in order; none: no violation
	}{
		{"nothing moves", Observation{Binlog: reads(deposed, deposed)}, nil},
		{"the state grows", Observation{Binlog: reads("0-1-100", "0-1-120,0-2-3", "0-1-120,0-2-9")}, nil},
		{"a rejoin forgets its phantoms", Observation{Binlog: reads(deposed, repaired), Forgets: []Forget{phantoms}}, nil},
		{"a rejoin reports a range", Observation{Binlog: reads(deposed, repaired),
			Forgets: []Forget{{Node: "db1", By: "rejoin", GTIDs: []string{"0-1-101..102"}}}}, nil},
		{"another node's rejoin accounts for nothing here", Observation{Binlog: reads(deposed, repaired),
			Forgets: []Forget{{Node: "db2", By: "rejoin", GTIDs: []string{"0-1-101", "0-1-102"}}}},
			[]string{"db1: 0-1-101, 0-1-102 left gtid_binlog_state (0-1-102 at 09:00:00.000, 0-1-100 at 09:00:01.000) and nothing reports it forgotten"}},
		{"a rejoin forgets a GTID its agent had recorded real", Observation{Binlog: reads(deposed, repaired), Forgets: []Forget{phantoms},
			Real: []RealGTID{{Node: "db1", GTID: "0-1-102", Source: "errant record", At: at(500)}}},
			[]string{"db1 forgot real transactions: 0-1-102 (real: errant record at 09:00:00.500; forgotten by rejoin at 09:00:01.500 as a phantom)"}},
		{"a real GTID read on another node is not this one's", Observation{Binlog: reads(deposed, repaired), Forgets: []Forget{phantoms},
			Real: []RealGTID{{Node: "db3", GTID: "0-1-102", Source: "binlog"}}}, nil},
		{"an operator's discard of real transactions is reported", Observation{Binlog: reads(deposed, repaired),
			Forgets: []Forget{{Node: "db1", By: "rejoin", Discard: true, GTIDs: []string{"0-1-101", "0-1-102"}}},
			Real:    []RealGTID{{Node: "db1", GTID: "0-1-102", Source: "binlog"}}}, nil},
		{"the campaign's rebuild is reported", Observation{Binlog: reads(deposed, "0-1-100,0-2-120"),
			Forgets: []Forget{{Node: "db1", By: "campaign", Discard: true, GTIDs: []string{"0-1-101..102"}}},
			Real:    []RealGTID{{Node: "db1", GTID: "0-1-101", Source: "binlog"}}}, nil},
		{"a rejoin that reports part of what went", Observation{Binlog: reads("0-1-103,0-2-50", repaired), Forgets: []Forget{phantoms}},
			[]string{"db1: 0-1-103 left gtid_binlog_state (0-1-103 at 09:00:00.000, 0-1-100 at 09:00:01.000)"}},
		{"RESET MASTER with no state set: the entry goes", Observation{Binlog: reads(deposed, "0-2-50")},
			[]string{"db1: 0-1-1, 0-1-2, 0-1-3, 0-1-4, 0-1-5, 0-1-6, 0-1-7, 0-1-8, 0-1-9, 0-1-10 left gtid_binlog_state (0-1-102 at 09:00:00.000, no 0-1 entry at 09:00:01.000)"}},
		{"a restart drops phantoms", Observation{Binlog: reads(deposed, repaired), Starts: []ServerStart{{Node: "db1", At: at(600)}}}, nil},
		{"a restart that loses a real transaction", Observation{Binlog: reads(deposed, repaired), Starts: []ServerStart{{Node: "db1", At: at(600)}},
			Real: []RealGTID{{Node: "db1", GTID: "0-1-101", Source: "binlog", At: at(100)}}},
			[]string{"db1 forgot real transactions: 0-1-101 (real: binlog at 09:00:00.100; gone when the server restarted)"}},
		{"a restart drops what only the agent took as real (a write a full disk cut off)", Observation{Binlog: reads(deposed, repaired),
			Starts: []ServerStart{{Node: "db1", At: at(600)}}, Real: []RealGTID{{Node: "db1", GTID: "0-1-101", Source: "errant record"}}}, nil},
		{"a rejoin that forgets as a phantom what the agent took as real", Observation{Binlog: reads(deposed, repaired), Forgets: []Forget{phantoms},
			Real: []RealGTID{{Node: "db1", GTID: "0-1-101", Source: "status", At: at(200)}}},
			[]string{"db1 forgot real transactions: 0-1-101 (real: status at 09:00:00.200; forgotten by rejoin"}},
		{"a filesystem repaired with fsck loses what it loses", Observation{Binlog: reads(deposed, repaired),
			Starts: []ServerStart{{Node: "db1", At: at(600), FS: true}}, Real: []RealGTID{{Node: "db1", GTID: "0-1-101", Source: "binlog"}}}, nil},
		{"a restart outside the two reads accounts for nothing", Observation{Binlog: reads(deposed, deposed, repaired), Starts: []ServerStart{{Node: "db1", At: at(-2000)}}},
			[]string{"db1: 0-1-101, 0-1-102 left gtid_binlog_state (0-1-102 at 09:00:01.000, 0-1-100 at 09:00:02.000)"}},
		{"a lowering reported once is the new baseline", Observation{Binlog: reads(deposed, repaired, "0-1-100,0-2-60"), Forgets: []Forget{phantoms}}, nil},
		{"a state that does not parse", Observation{Binlog: reads(deposed, "0-1")}, []string{`db1: gtid_binlog_state "0-1" at 09:00:01.000 does not parse`}},
		{"read between RESET MASTER and the state set by a repair", Observation{Binlog: reads(deposed, "", repaired), Forgets: []Forget{phantoms}}, nil},
		{"a repair that leaves the state empty", Observation{Binlog: reads(deposed, "", ""), Forgets: []Forget{phantoms}},
			[]string{"db1: 0-1-1, 0-1-2", "db1: 0-2-1, 0-2-2"}},
		{"transactions fetched again from the primary soon after", Observation{Binlog: reads("0-1-100,0-2-50", "0-2-50", "0-1-100,0-2-51")}, nil},
		{"the campaign's rebuild under way", Observation{Binlog: reads(deposed, "", "0-1-100,0-2-120"),
			Forgets: []Forget{{Node: "db1", At: at(1000), Until: at(4000), By: "campaign", Discard: true, GTIDs: []string{"0-1-101..102"}}}}, nil},
		{"a rebuild over before the GTIDs went", Observation{Binlog: reads(deposed, deposed, repaired),
			Forgets: []Forget{{Node: "db1", At: at(-5000), Until: at(-4000), By: "campaign", Discard: true}}},
			[]string{"db1: 0-1-101, 0-1-102 left gtid_binlog_state"}},
		{"a restart before the read that still saw the GTIDs", Observation{Binlog: []BinlogState{
			{Node: "db1", At: at(0), State: deposed}, {Node: "db1", At: at(5000), Prev: at(4800), State: repaired}},
			Starts: []ServerStart{{Node: "db1", At: at(2000)}}},
			[]string{"db1: 0-1-101, 0-1-102 left gtid_binlog_state"}},
		{"a restart between the two reads", Observation{Binlog: []BinlogState{
			{Node: "db1", At: at(0), State: deposed}, {Node: "db1", At: at(5000), Prev: at(1000), State: repaired}},
			Starts: []ServerStart{{Node: "db1", At: at(2000)}}}, nil},
		{"a departure read after the judged time is the next round's", Observation{Binlog: reads(deposed, deposed, repaired), BinlogJudgedUntil: at(1500)}, nil},
	}
	for _, tc := range cases {
		checks := Checks{}
		vs := checkForgetting(tc.o, checks)
		var got []string
		for _, v := range vs {
			got = append(got, v.Detail)
			if v.Invariant != Forgetting {
				t.Errorf("%s: violation of %s", tc.name, v.Invariant)
			}
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: violations %q, want %d like %q", tc.name, got, len(tc.want), tc.want)
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: violation %d is %q, want it to say %q", tc.name, i, got[i], w)
			}
		}
		judged := 0
		for _, rd := range tc.o.Binlog[1:] {
			if tc.o.BinlogJudgedUntil.IsZero() || !rd.At.After(tc.o.BinlogJudgedUntil) {
				judged++
			}
		}
		if checks[Forgetting] != judged {
			t.Errorf("%s: %d checks, want one per read judged after the first (%d)", tc.name, checks[Forgetting], judged)
		}
	}
}

func TestLowered(t *testing.T) {
	cases := []struct {
		before, after string
		want          []string
		err           bool
	}{
		{"0-1-10,0-2-5", "0-1-10,0-2-5", nil, false},
		{"0-1-10,0-2-5", "0-1-12,0-2-5,1-3-1", nil, false},
		{"0-1-10,0-2-5", "0-1-9,0-2-5", []string{"0-1-10"}, false},
		{"0-1-10,0-2-5", "0-1-7", []string{"0-1-8..10", "0-2-1..5"}, false},
		{"0-1-10", "", []string{"0-1-1..10"}, false},
		{"0-1-x", "", nil, true},
	}
	for _, tc := range cases {
		got, err := Lowered(tc.before, tc.after)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("Lowered(%q, %q) = %v, %v; want %v (error %t)", tc.before, tc.after, got, err, tc.want, tc.err)
		}
	}
}

// TestArchiveLacks: a repair's forgetting of real transactions is accounted for only
// when the archive prints each of them whole.
func TestArchiveLacks(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/db1-errant.sql"
	archive := "#261207  5:03:36 server id 1  end_log_pos 644395 CRC32 0xd5038c59 \tGTID 0-1-13862 trans\n" +
		"#261207  5:03:36 server id 1  end_log_pos 644908 CRC32 0x158a3ca6 \tGTID 0-1-13863 trans\n"
	if err := os.WriteFile(path, []byte(archive), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		gtids []string
		want  string
	}{
		{[]string{"0-1-13862", "0-1-13863"}, ""},
		{[]string{"0-1-13862..13863"}, ""},
		{[]string{"0-1-13862..13864"}, "lacks 0-1-13864"},
		{[]string{"0-1-1386"}, "lacks 0-1-1386"}, // a prefix of a printed GTID is not it
	}
	for _, tc := range cases {
		if got := archiveLacks(path, tc.gtids); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.gtids, got, tc.want)
		}
	}
	if got := archiveLacks(dir+"/none.sql", []string{"0-1-1"}); !strings.HasPrefix(got, "cannot be read") {
		t.Errorf("a missing archive: %q", got)
	}
}

// TestRebuildEventsAccountForgetting: a rebuild's event reports the node's whole
// state replaced over its span, accounted for (Discard) only when its old datadir
// was kept.
func TestRebuildEventsAccountForgetting(t *testing.T) {
	e := newEnv(nil)
	t0 := time.Date(2026, 12, 7, 5, 6, 50, 0, time.UTC)
	e.noteHistory([]cluster.Event{
		{Kind: cluster.EventRebuild, From: "db1", Started: t0, Took: 5 * time.Second, Donor: "db2", Kept: "/srv/db1/data.baton-old-1"},
		{Kind: cluster.EventRebuild, From: "db3", Started: t0, Took: time.Second, Donor: "db2"},
		{Kind: cluster.EventFailover, From: "db2", Started: t0},
	})
	e.noteHistory([]cluster.Event{{Kind: cluster.EventRebuild, From: "db1", Started: t0, Took: 5 * time.Second, Donor: "db2", Kept: "/srv/db1/data.baton-old-1"}})
	if len(e.forgets) != 2 {
		t.Fatalf("forgets %+v, want the two rebuilds once each", e.forgets)
	}
	kept, lost := e.forgets[0], e.forgets[1]
	if kept.Node != "db1" || !kept.Discard || !kept.At.Equal(t0) || !kept.Until.Equal(t0.Add(5*time.Second)) {
		t.Errorf("a rebuild with its old datadir kept: %+v", kept)
	}
	if lost.Node != "db3" || lost.Discard {
		t.Errorf("a rebuild without its old datadir kept accounts for real transactions: %+v", lost)
	}
	if f, ok := forgetOf(e.forgets, "db1", domainServer{domain: 0, server: 1}, 1670, t0.Add(time.Second), t0.Add(7*time.Second)); !ok || !f.Discard {
		t.Errorf("a GTID gone during the rebuild is not accounted for: %+v %v", f, ok)
	}
}
