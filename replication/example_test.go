package replication_test

import (
	"fmt"
	"time"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// The coordinator's choice after the primary (server_id 1) failed: db3 wrote
// locally, db4 is behind, db2 is complete (and says how long its disk lasts).
func ExampleRank() {
	pos := func(s string) replication.GTIDSet { return replication.MustParseGTIDSet(replication.FlavorMariaDB, s) }
	primary := &replication.Server{ServerID: 1, Executed: pos("0-1-100")}
	ranked := replication.Rank(primary, []replication.Candidate{
		{Name: "db2", Server: replication.Server{ServerID: 2, Executed: pos("0-1-99")}, Retrieved: pos("0-1-100"),
			Lag: 200 * time.Millisecond, StorageOK: true, SQLRunning: true,
			// Its agent's forecast of the disk it fills first.
			Runway: detector.Forecast{Resource: detector.ResourceDisk, Outlook: detector.OutlookFilling, Left: 6 * time.Hour}},
		{Name: "db3", Server: replication.Server{ServerID: 3, Executed: pos("0-1-100,0-3-101")},
			Priority: 10, StorageOK: true, SQLRunning: true},
		{Name: "db4", Server: replication.Server{ServerID: 4, Executed: pos("0-1-97")},
			StorageOK: true, SQLRunning: true},
	})
	for _, r := range ranked {
		fmt.Printf("%s eligible=%t: %s\n", r.Name, r.Eligible, r.Reason)
	}
	fmt.Println("wait for", ranked[0].Target.Position(), "on", ranked[0].Name)
	// Output:
	// db2 eligible=true: most advanced: has every transaction the other replicas have; priority 0, lag 200ms; at the current rate its disk is full in about 6h
	// db4 eligible=false: not safe to promote: lacks transactions db2 has: 0-1-100
	// db3 eligible=false: excluded: errant transactions the primary never had: 0-3-101
	// wait for 0-1-100 on db2
}
