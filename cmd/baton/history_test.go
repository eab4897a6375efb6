package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
)

// TestHistoryShowsSalvage: a failover's salvage record is in baton history, in
// words and in its JSON: how many, from which file and position, what stayed.
func TestHistoryShowsSalvage(t *testing.T) {
	ev := cluster.Event{Kind: cluster.EventFailover, From: "db1", To: "db2", Epoch: 2, Started: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC),
		Salvage: &cluster.Salvage{From: "db1", To: "db2", After: "0-1-40", Applied: 172, First: "0-1-41", Last: "0-1-212",
			File: "mysql-bin.000001", Pos: 12820, EndFile: "mysql-bin.000001", EndPos: 73422, Read: 21 * time.Millisecond, Apply: 189 * time.Millisecond,
			Via:        "db2's replication SQL thread (16 workers)",
			LeftBehind: "after 0-1-212: transaction 0-1-213 at mysql-bin.000001:73422 is incomplete at the end of its file"}}
	var b bytes.Buffer
	printHistory(&b, []cluster.Event{ev})
	for _, want := range []string{
		"salvaged: 172 transactions from db1's binary logs onto db2 (0-1-41 to 0-1-212, mysql-bin.000001:12820 to mysql-bin.000001:73422)",
		"left on db1's disk: after 0-1-212: transaction 0-1-213",
		"applied by: db2's replication SQL thread (16 workers), in 189ms",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("history lacks %q:\n%s", want, b.String())
		}
	}
	out, err := json.Marshal(toHistoryEvent(ev))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"applied":172`, `"file":"mysql-bin.000001","pos":12820`, `"read_ms":21,"apply_ms":189,"via":"db2's replication SQL thread (16 workers)"`, `"left_behind":"after 0-1-212`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("JSON lacks %s: %s", want, out)
		}
	}
	b.Reset()
	printHistory(&b, []cluster.Event{{Kind: cluster.EventSwitchover, From: "db2", To: "db1", Epoch: 3}})
	if strings.Contains(b.String(), "salvage") {
		t.Errorf("a switchover says salvage:\n%s", b.String())
	}
}

// TestHistorySaysWhatTheFailoverBought: baton history, text and JSON, says what a
// failover bought: the new primary's disk at the current rate.
func TestHistorySaysWhatTheFailoverBought(t *testing.T) {
	e := cluster.Event{Kind: cluster.EventFailover, From: "db1", To: "db2", Epoch: 2, Reason: "primary db1 is unwritable",
		Started: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC), Took: 1400 * time.Millisecond,
		Runway: "db2 promoted; at the current rate its disk is full in about 6m: free space on db2"}
	var b bytes.Buffer
	printHistory(&b, []cluster.Event{e})
	if !strings.Contains(b.String(), "  bought: db2 promoted; at the current rate its disk is full in about 6m: free space on db2\n") {
		t.Errorf("baton history:\n%s", b.String())
	}
	j, err := json.Marshal(toHistoryEvent(e))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"runway":"db2 promoted; at the current rate its disk is full in about 6m: free space on db2"`) {
		t.Errorf("baton history --json: %s", j)
	}
}
