package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
)

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
