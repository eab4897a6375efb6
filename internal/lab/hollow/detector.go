package hollow

import (
	"sync"
	"time"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/reconcile"
)

// Detector is a scripted detector (failover.Detector) of one scripted server: healthy
// until the server turns unwritable while probed as a primary, unwritable FailAfter
// later (the real detector needs fail_after rounds); as a replica it reports the
// heartbeat lag the cluster's writes give it.
type Detector struct {
	s         *Server
	failAfter time.Duration

	mu         sync.Mutex
	role       detector.Probes
	faultSince time.Time // when the server was first seen unwritable as a primary
	verdict    detector.Verdict
	since      time.Time
}

var _ reconcile.Detector = (*Detector)(nil)

// NewDetector returns the detector of s.
func NewDetector(s *Server, failAfter time.Duration) *Detector {
	return &Detector{s: s, failAfter: failAfter, role: detector.Replica, verdict: detector.Healthy, since: time.Now()}
}

// SetRole probes as a primary or a replica.
func (d *Detector) SetRole(r detector.Probes) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.role = r
}

// SetEpoch does nothing: the scripted heartbeat carries no epoch.
func (d *Detector) SetEpoch(uint64) {}

// Report is the detector's report now.
func (d *Detector) Report() detector.Report {
	now := time.Now()
	unwritable := d.s.Unwritable()
	d.mu.Lock()
	defer d.mu.Unlock()
	verdict, reason := detector.Healthy, ""
	switch {
	case unwritable && d.role == detector.Primary:
		if d.faultSince.IsZero() {
			d.faultSince = now
		}
		if now.Sub(d.faultSince) >= d.failAfter {
			verdict, reason = detector.Unwritable, "write probe: timeout (scripted)"
		}
	case !unwritable:
		d.faultSince = time.Time{}
	}
	if verdict != d.verdict {
		d.verdict, d.since = verdict, now
	}
	rep := detector.Report{Node: d.s.Name, Role: d.role, At: now, Verdict: d.verdict, Reason: reason, Since: d.since,
		RoundVerdict: verdict, RoundReason: reason, Rounds: 1,
		Ping:    &detector.Result{Class: detector.OK, Latency: 100 * time.Microsecond},
		Storage: &detector.Result{Class: detector.OK, Latency: 200 * time.Microsecond}}
	if d.role == detector.Primary {
		rep.Write = &detector.Result{Class: detector.OK, Latency: 300 * time.Microsecond}
	} else {
		lag := d.s.c.heartbeatAge(d.s, now)
		rep.Replication = &detector.Replication{Configured: lag >= 0, IORunning: "Yes", SQLRunning: "Yes", HeartbeatLag: lag}
	}
	return rep
}
