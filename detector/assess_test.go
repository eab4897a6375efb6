package detector

import (
	"strings"
	"testing"
	"time"
)

func TestAssess(t *testing.T) {
	ok := func(ms int) *Result { return &Result{Class: OK, Latency: time.Duration(ms) * time.Millisecond} }
	bad := func(c Class, detail string) *Result {
		return &Result{Class: c, Latency: 300 * time.Millisecond, Detail: detail}
	}
	healthyRepl := &Replication{Configured: true, IORunning: "Yes", SQLRunning: "Yes", HeartbeatLag: 400 * time.Millisecond}
	const gib = 1 << 30
	roomy := []Disk{{Path: "/data", Total: gib, Free: gib / 2}}
	full := []Disk{{Path: "/data", Total: gib, Free: 4096}}
	cases := []struct {
		name   string
		round  Round
		want   Verdict
		reason []string // substrings the reason must hold
	}{
		{"healthy primary", Round{Role: Primary, Ping: ok(1), Write: ok(3), Disks: roomy},
			Healthy, []string{"write 3.0ms", "ping 1.0ms"}},
		{"healthy replica", Round{Role: Replica, Ping: ok(1), Storage: ok(2), Replication: healthyRepl},
			Healthy, []string{"storage 2.0ms", "heartbeat lag 400.0ms"}},
		{"write hangs on a full disk", Round{Role: Primary, Ping: ok(1), Write: bad(TimedOut, "no answer before the deadline"), Disks: full},
			Unwritable, []string{"write probe did not finish in 300ms", "/data has 4.0 KiB free", "binlog write waiting on a full disk?"}},
		{"write hangs with room on disk", Round{Role: Primary, Ping: ok(1), Write: bad(TimedOut, ""), Disks: roomy},
			Unwritable, []string{"did not finish", "global read lock"}},
		{"write hangs, remote server", Round{Role: Primary, Ping: ok(1), Write: bad(TimedOut, "")},
			Unwritable, []string{"did not finish", "full disk"}},
		{"write waits for a semi-sync ACK", Round{Role: Primary, Ping: ok(1), Disks: roomy,
			Write: &Result{Class: TimedOut, Latency: 300 * time.Millisecond, Detail: "no answer before the deadline", Waiting: "Waiting for semi-sync ACK from slave"}},
			Unwritable, []string{"did not finish", "waits for a semi-sync acknowledgement", "no semi-sync replica connected"}},
		{"write waits for a semi-sync ACK, MySQL 8.0.26+ wording", Round{Role: Primary, Ping: ok(1), Disks: roomy,
			Write: &Result{Class: TimedOut, Latency: 300 * time.Millisecond, Detail: "previous write probe still running after 1.2s", Waiting: "Waiting for semi-sync ACK from replica", Overrun: OverrunPrevious}},
			Unwritable, []string{"still running", "waits for a semi-sync acknowledgement"}},
		{"write waits for the global read lock", Round{Role: Primary, Ping: ok(1), Disks: roomy,
			Write: &Result{Class: TimedOut, Latency: 300 * time.Millisecond, Detail: "no answer before the deadline", Waiting: "Waiting for global read lock"}},
			Unwritable, []string{"did not finish", `waits for a lock (server state "Waiting for global read lock")`}},
		{"write stuck in another state", Round{Role: Primary, Ping: ok(1), Disks: roomy,
			Write: &Result{Class: TimedOut, Latency: 300 * time.Millisecond, Detail: "no answer before the deadline", Waiting: "Commit"}},
			Unwritable, []string{"did not finish", `commits are stuck with disk space left`, `(server state "Commit")`}},
		{"previous write still running", Round{Role: Primary, Ping: ok(1), Write: overran(OverrunPrevious, "previous write probe still running after 450.0ms")},
			Unwritable, []string{"still running"}},
		{"write error from a read-only filesystem", Round{Role: Primary, Ping: ok(1), Write: bad(StorageFailed, "error 1030: Got error 165")},
			Unwritable, []string{"error 1030"}},
		{"read_only by hand", Round{Role: Primary, Ping: ok(1), Write: bad(ReadOnlyRefused, "read_only is ON")},
			ReadOnly, []string{"read_only", "on purpose"}},
		{"liveness probe never returned", Round{Role: Primary, Ping: overran(OverrunNoReturn, "ping probe did not return in 450.0ms"), Write: bad(TimedOut, ""), Timeout: 300 * time.Millisecond},
			Unreachable, []string{"liveness ping probe did not return in 450.0ms: server frozen"}},
		{"frozen server", Round{Role: Primary, Ping: bad(TimedOut, ""), Write: bad(TimedOut, ""), Timeout: 300 * time.Millisecond},
			Unreachable, []string{"no answer to connect + SELECT 1 within 300ms"}},
		{"killed server", Round{Role: Primary, Ping: bad(Refused, "connection refused"), Write: bad(ConnLost, "connection lost")},
			Unreachable, []string{"connection refused", "not running"}},
		{"too many connections", Round{Role: Primary, Ping: bad(Busy, "error 1040: Too many connections"), Write: ok(2)},
			Overloaded, []string{"1040"}},
		// A busy application's writes hung on a full disk exhaust the connections: the
		// write probe's own connection still tells that writes hang, and that wins.
		{"too many connections, write hangs", Round{Role: Primary, Ping: bad(Busy, "error 1040: Too many connections"),
			Write: overran(OverrunPrevious, "previous write probe still running after 900.0ms"), Disks: full},
			Unwritable, []string{"still running", "4.0 KiB free"}},
		{"too many connections, write fails", Round{Role: Primary, Ping: bad(Busy, "error 1040"), Write: bad(StorageFailed, "error 1030")},
			Unwritable, []string{"error 1030"}},
		{"too many connections, replica's disk broken", Round{Role: Replica, Ping: bad(Busy, "error 1040"),
			Storage: bad(TimedOut, ""), Replication: healthyRepl},
			Overloaded, []string{"1040"}},
		{"too many connections, no write probe result", Round{Role: Primary, Ping: bad(Busy, "error 1040")},
			Overloaded, []string{"1040"}},
		{"too many connections on the write probe only", Round{Role: Primary, Ping: ok(1), Write: bad(Busy, "error 1040")},
			Overloaded, nil},
		{"access denied is alive", Round{Role: Primary, Ping: bad(AccessDenied, "error 1045: Access denied")},
			Misconfigured, []string{"1045", "user"}},
		{"missing heartbeat table", Round{Role: Primary, Ping: ok(1), Write: bad(SchemaMissing, "error 1146")},
			Misconfigured, []string{"bootstrap"}},
		{"crash between ping and write", Round{Role: Primary, Ping: ok(1), Write: bad(ConnLost, "connection lost")},
			Unreachable, nil},
		{"disk filling within the horizon", Round{Role: Primary, Ping: ok(1), Write: ok(2), DiskHorizon: 10 * time.Minute,
			Disks: []Disk{{Path: "/data", Total: gib, Free: 60 << 20, FillRate: 1 << 20, TimeToFull: time.Minute}}},
			Degraded, []string{"1.0 MiB/s", "full in about 1m"}},
		{"disk filling beyond the horizon", Round{Role: Primary, Ping: ok(1), Write: ok(2), DiskHorizon: 10 * time.Minute,
			Disks: []Disk{{Path: "/data", Total: gib, Free: gib / 2, FillRate: 1024, TimeToFull: 100 * time.Hour}}},
			Healthy, nil},
		{"disk full, write still succeeds", Round{Role: Primary, Ping: ok(1), Write: ok(2), Disks: []Disk{{Path: "/data", Total: gib}}},
			Degraded, []string{"/data is full"}},
		{"unwritable beats degraded", Round{Role: Primary, Ping: ok(1), Write: bad(TimedOut, ""), Disks: []Disk{{Path: "/data", Total: gib}}},
			Unwritable, nil},
		{"unreadable datadir", Round{Role: Primary, Ping: ok(1), Write: ok(2), Disks: []Disk{{Path: "/nope", Err: "statfs /nope: no such file"}}},
			Misconfigured, []string{"/nope"}},
		{"replica storage hangs", Round{Role: Replica, Ping: ok(1), Storage: bad(TimedOut, ""), Replication: healthyRepl},
			Degraded, []string{"storage probe did not finish", "cannot write to its disk"}},
		{"replica storage refused by read_only", Round{Role: Replica, Ping: ok(1), Storage: bad(ReadOnlyRefused, "error 1290"), Replication: healthyRepl},
			Misconfigured, []string{"READ_ONLY ADMIN"}},
		{"replica storage lacks BINLOG ADMIN", Round{Role: Replica, Ping: ok(1), Storage: bad(AccessDenied, "error 1227"), Replication: healthyRepl},
			Misconfigured, []string{"BINLOG ADMIN"}},
		{"replica SQL thread stopped on error", Round{Role: Replica, Ping: ok(1), Storage: ok(1),
			Replication: &Replication{Configured: true, IORunning: "Yes", SQLRunning: "No", LastSQLErrno: 1062, LastSQLError: "Duplicate entry"}},
			Degraded, []string{"SQL thread stopped on error 1062"}},
		{"replica IO thread connecting is the primary's problem", Round{Role: Replica, Ping: ok(1), Storage: ok(1),
			Replication: &Replication{Configured: true, IORunning: "Connecting", SQLRunning: "Yes", LastIOErrno: 2003, LastIOError: "Can't connect"}},
			Healthy, nil},
		{"replica threads stopped on purpose", Round{Role: Replica, Ping: ok(1), Storage: ok(1),
			Replication: &Replication{Configured: true, IORunning: "No", SQLRunning: "Yes"}},
			Healthy, nil},
		{"replica IO thread stopped on error", Round{Role: Replica, Ping: ok(1), Storage: ok(1),
			Replication: &Replication{Configured: true, IORunning: "No", SQLRunning: "Yes", LastIOErrno: 1236, LastIOError: "binlog purged"}},
			Degraded, []string{"1236"}},
		{"replica without replication", Round{Role: Replica, Ping: ok(1), Storage: ok(1), Replication: &Replication{}},
			Degraded, []string{"no replication configured"}},
		{"replica status refused", Round{Role: Replica, Ping: ok(1), Storage: ok(1),
			Replication: &Replication{Probe: Result{Class: AccessDenied, Detail: "error 1227"}}},
			Misconfigured, []string{"SLAVE MONITOR"}},
		{"replica: crash beats a failed storage probe", Round{Role: Replica, Ping: ok(1), Storage: bad(TimedOut, ""),
			Replication: &Replication{Probe: Result{Class: ConnLost, Detail: "connection lost"}}},
			Unreachable, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.round.Timeout == 0 {
				tc.round.Timeout = 300 * time.Millisecond
			}
			v, reason := Assess(tc.round)
			if v != tc.want {
				t.Fatalf("verdict %s (%q), want %s", v, reason, tc.want)
			}
			if reason == "" {
				t.Fatal("no reason")
			}
			for _, s := range tc.reason {
				if !strings.Contains(reason, s) {
					t.Errorf("reason %q lacks %q", reason, s)
				}
			}
		})
	}
}

// overran is a probe result that overran its round as o says.
func overran(o Overrun, detail string) *Result {
	return &Result{Class: TimedOut, Latency: 300 * time.Millisecond, Detail: detail, Overrun: o}
}
