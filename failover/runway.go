package failover

import (
	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// runwayOf says what promoting node bought, for the history: how long its disk
// lasts at the current rate as its agent last forecast it, and what to do when
// that is short ("db2 promoted; at the current rate its disk is full in about 6m:
// free space on db2").
func runwayOf(snap cluster.Snapshot, node string) string {
	n, ok := snap.Nodes[node]
	if !ok {
		return node + " promoted; its disk's runway is unknown (its agent had no status)"
	}
	rw := n.Runway()
	out := node + " promoted; " + replication.RunwayNote(rw)
	switch {
	case rw.Outlook == detector.OutlookFilling && rw.Left < replication.RunwayPlenty:
		out += ": free space on " + node
		if rw.Name != "" {
			out += " (" + rw.Title() + ")"
		}
	case rw.Outlook == detector.OutlookExhausted:
		out += ": free space on " + node + " now"
	}
	return out
}
