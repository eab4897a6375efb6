package cluster

import (
	"math"
	"time"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// HeartbeatAge is the age, in ms, of the newest heartbeat the node applied from the
// primary: what says the primary stopped writing (confirm_lag). -1 when unknown. An
// older agent publishes no HeartbeatMS, but its LagMS was that age.
func (n NodeStatus) HeartbeatAge() int64 {
	if n.LagMS < 0 && n.HeartbeatMS <= 0 {
		return -1
	}
	return max(n.LagMS, n.HeartbeatMS)
}

// Runway is the node's forecast of the disk it fills first: of the filesystems its
// server writes, a full one, else one whose outlook is unknown, else the one that
// fills soonest (the order of replication.RunwayRank). The zero Forecast (unknown)
// when the node published none; an older agent's time to full, when it published
// one.
func (n NodeStatus) Runway() detector.Forecast {
	var worst detector.Forecast
	found := false
	for _, f := range n.Forecasts {
		if f.Resource == detector.ResourceDisk && (!found || runsOutBefore(f, worst)) {
			worst, found = f, true
		}
	}
	if found {
		return worst
	}
	if n.DiskTimeToFull > 0 {
		return detector.Forecast{Resource: detector.ResourceDisk, Outlook: detector.OutlookFilling, Left: n.DiskTimeToFull}
	}
	return detector.Forecast{Resource: detector.ResourceDisk}
}

// runsOutBefore says whether disk forecast a is worse than b for a runway.
func runsOutBefore(a, b detector.Forecast) bool {
	if ra, rb := replication.RunwayRank(a), replication.RunwayRank(b); ra != rb {
		return ra > rb
	}
	left := func(f detector.Forecast) time.Duration {
		if f.Outlook == detector.OutlookFilling {
			return f.Left
		}
		return time.Duration(math.MaxInt64)
	}
	return left(a) < left(b)
}

// Forecast returns the node's forecast of a resource by name, and whether it has one.
func (n NodeStatus) Forecast(r detector.Resource, name string) (detector.Forecast, bool) {
	for _, f := range n.Forecasts {
		if f.Resource == r && f.Name == name {
			return f, true
		}
	}
	return detector.Forecast{}, false
}
