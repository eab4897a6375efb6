package cluster

import (
	"testing"
	"time"

	"github.com/baton-ha/baton/detector"
)

func TestHeartbeatAge(t *testing.T) {
	cases := []struct {
		name    string
		lag, hb int64
		want    int64
	}{
		{"caught up, heartbeat fresh", 0, 300, 300},
		{"caught up, the primary stopped writing", 0, 1600, 1600},
		{"lagging", 4500, 5000, 5000},
		{"unknown", -1, -1, -1},
		{"an older agent: its lag was the heartbeat's age", 1600, 0, 1600},
		{"an older agent, lag unknown: not a fresh heartbeat", -1, 0, -1},
	}
	for _, tc := range cases {
		if got := (NodeStatus{LagMS: tc.lag, HeartbeatMS: tc.hb}).HeartbeatAge(); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestRunway(t *testing.T) {
	disk := func(name string, o detector.Outlook, left time.Duration) detector.Forecast {
		return detector.Forecast{Resource: detector.ResourceDisk, Name: name, Outlook: o, Left: left, Limit: 1}
	}
	other := detector.Forecast{Resource: detector.ResourceAutoIncrement, Name: "a.b.id", Outlook: detector.OutlookExhausted, Limit: 1}
	cases := []struct {
		name string
		n    NodeStatus
		want string // the disk's name, "" for the zero forecast
		o    detector.Outlook
	}{
		{"nothing published", NodeStatus{}, "", detector.OutlookUnknown},
		{"only other resources: an exhausted key is no full disk", NodeStatus{Forecasts: []detector.Forecast{other}}, "", detector.OutlookUnknown},
		{"the one that fills first", NodeStatus{Forecasts: []detector.Forecast{
			disk("/data", detector.OutlookFilling, 3*time.Hour), disk("/relay", detector.OutlookFilling, time.Hour), disk("/binlog", detector.OutlookSteady, 0)}},
			"/relay", detector.OutlookFilling},
		{"filling for days is still sooner than not filling", NodeStatus{Forecasts: []detector.Forecast{
			disk("/data", detector.OutlookSteady, 0), disk("/relay", detector.OutlookFilling, 72*time.Hour)}},
			"/relay", detector.OutlookFilling},
		{"an unknown disk is worse than one that fills", NodeStatus{Forecasts: []detector.Forecast{
			disk("/data", detector.OutlookFilling, time.Hour), disk("/relay", detector.OutlookUnknown, 0)}},
			"/relay", detector.OutlookUnknown},
		{"a full disk is worst", NodeStatus{Forecasts: []detector.Forecast{
			disk("/data", detector.OutlookUnknown, 0), disk("/relay", detector.OutlookExhausted, 0)}},
			"/relay", detector.OutlookExhausted},
		{"an older agent's time to full", NodeStatus{DiskTimeToFull: time.Hour}, "", detector.OutlookFilling},
	}
	for _, tc := range cases {
		got := tc.n.Runway()
		if got.Name != tc.want || got.Outlook != tc.o || got.Resource != detector.ResourceDisk {
			t.Errorf("%s: %+v, want %q %q", tc.name, got, tc.want, tc.o)
		}
	}
}
