package detector

import (
	"fmt"
	"strings"
	"time"
)

// Result is the outcome of one probe.
type Result struct {
	Class   Class         `json:"class"`
	Latency time.Duration `json:"latency_ns"`
	// Detail is the error as the driver or server said it, empty when OK.
	Detail string `json:"detail,omitempty"`
	// Waiting is what the server said a statement that missed its deadline waits
	// for (its PROCESSLIST state, e.g. "Waiting for semi-sync ACK from slave"), ""
	// when it was not asked or did not answer in time.
	Waiting string `json:"waiting,omitempty"`
	// Overrun says how a TimedOut probe overran its round, if it did: "" when it only
	// missed its deadline.
	Overrun Overrun `json:"overrun,omitempty"`
}

// Overrun is how a probe overran its round.
type Overrun string

// Overruns.
const (
	// OverrunPrevious: the same probe of an earlier round was still running, so this
	// round's did not start.
	OverrunPrevious Overrun = "previous"
	// OverrunNoReturn: the probe did not return before the round gave up on it.
	OverrunNoReturn Overrun = "no_return"
)

// Replication is the little of a replica's replication state the detector needs: are
// the threads running, did they stop on an error, how old is the newest heartbeat row
// the replica has applied. The replication package owns the full status.
type Replication struct {
	// Configured is false when SHOW SLAVE STATUS returns no row.
	Configured   bool   `json:"configured"`
	IORunning    string `json:"io_running,omitempty"` // Yes, No, Connecting, Preparing
	SQLRunning   string `json:"sql_running,omitempty"`
	LastIOErrno  int    `json:"last_io_errno,omitempty"`
	LastIOError  string `json:"last_io_error,omitempty"`
	LastSQLErrno int    `json:"last_sql_errno,omitempty"`
	LastSQLError string `json:"last_sql_error,omitempty"`
	// HeartbeatLag is the age of the newest baton.heartbeat row applied, measured by
	// the replica's clock against the primary's (UTC_TIMESTAMP(6) on both); negative
	// when there is no row yet.
	HeartbeatLag time.Duration `json:"heartbeat_lag_ns"`
	// HeartbeatSeen is when the probe first saw the newest heartbeat applied, on
	// this host's clock (to within a round): the primary writes one every probe
	// interval, so a heartbeat seen long ago says they stopped arriving. Zero until
	// the probe has seen one arrive: never read as a fresh heartbeat.
	HeartbeatSeen time.Time `json:"heartbeat_seen,omitzero"`
	// Probe is how the status queries themselves went.
	Probe Result `json:"probe"`
}

// Disk is the state of the filesystem holding one directory of the server.
type Disk struct {
	Path string `json:"path"`
	// Holds says which of the server's locations are on it: "datadir", "binlog",
	// "relay log", comma-separated.
	Holds string `json:"holds,omitempty"`
	Total uint64 `json:"total_bytes"`
	// Free is what an unprivileged process (mysqld) can still use.
	Free uint64 `json:"free_bytes"`
	// FillRate is in bytes per second, positive while the disk fills, from a least
	// squares fit over the detector's window; 0 until the window spans enough time
	// (RateKnown).
	FillRate  float64 `json:"fill_rate_bps"`
	RateKnown bool    `json:"rate_known,omitempty"`
	// TimeToFull is Free / FillRate while the disk fills, 0 otherwise.
	TimeToFull time.Duration `json:"time_to_full_ns,omitempty"`
	// Err says why the filesystem could not be read; the other fields are then zero.
	Err string `json:"error,omitempty"`
}

// MinUsableFree is the free space under which a filesystem counts as full: MariaDB
// cannot rotate a binary or relay log, nor write a transaction of any size, in less.
const MinUsableFree = 1 << 20

// Full says the filesystem was read and has less than MinUsableFree left.
func (d Disk) Full() bool { return d.Err == "" && d.Total > 0 && d.Free < MinUsableFree }

// Forecast is the filesystem's forecast: full under MinUsableFree, else when it
// fills at its rate.
func (d Disk) Forecast() Forecast {
	f := Forecast{Resource: ResourceDisk, Name: d.Path, Detail: d.Holds}
	switch {
	case d.Err != "":
		f.Err = d.Err
		return f
	case d.Total == 0:
		f.Err = "not read"
		return f
	}
	f.Used, f.Limit = float64(d.Total)-float64(d.Free), float64(d.Total)
	f.Rate, f.RateKnown = d.FillRate, d.RateKnown
	f.Outlook, f.Left = Foresee(f.Used, f.Limit, f.Rate, f.RateKnown, MinUsableFree)
	return f
}

// Round is one round of probes of one server: the input of Assess.
type Round struct {
	At      time.Time
	Role    Probes
	Timeout time.Duration
	Ping    *Result // always run
	Write   *Result // primaries
	Storage *Result // replicas
	// Replication is nil on a primary.
	Replication *Replication
	// Disks is empty for a remote server.
	Disks       []Disk
	DiskHorizon time.Duration
}

// finding is one thing wrong with a round, with the verdict it calls for.
type finding struct {
	verdict Verdict
	reason  string
}

// severity orders findings when several probes fail in one round: the one that says
// most about whether the server can take writes wins.
func severity(v Verdict) int {
	switch v {
	case Unreachable:
		return 6
	case Unwritable:
		// Above Overloaded: a primary whose writes hang is failed whether or not its
		// connections are exhausted too (hung writes of a busy application are what
		// exhaust them).
		return 5
	case Overloaded:
		return 4
	case ReadOnly:
		return 3
	case Misconfigured:
		return 2
	case Degraded:
		return 1
	}
	return 0
}

// Assess turns one round of probes into the verdict that round alone calls for
// (Healthy or one of the failure verdicts, never Suspect or Unknown) and a reason a
// person can act on. It is pure: hysteresis is the Machine's job.
func Assess(r Round) (Verdict, string) {
	var fs []finding
	if f, ok := assessPing(r); ok {
		if f.verdict != Overloaded {
			// Without a connection the other probes say nothing new.
			return f.verdict, f.reason
		}
		// Refused a new connection only: the probes on their own established
		// connections still say whether the server writes.
		fs = append(fs, f)
	}
	switch r.Role {
	case Primary:
		if f, ok := assessWrite(r); ok {
			fs = append(fs, f)
		}
	case Replica:
		if f, ok := assessStorage(r); ok {
			fs = append(fs, f)
		}
		if f, ok := assessReplication(r.Replication); ok {
			fs = append(fs, f)
		}
	}
	fs = append(fs, assessDisks(r.Disks, r.DiskHorizon)...)
	if len(fs) == 0 {
		return Healthy, healthySummary(r)
	}
	worst := fs[0]
	for _, f := range fs[1:] {
		if severity(f.verdict) > severity(worst.verdict) {
			worst = f
		}
	}
	return worst.verdict, worst.reason
}

// Certain says whether a round's failure is a fact rather than a suspicion: the
// liveness probe's new connection was refused because nothing listens on the
// server's port or socket (a TCP reset, or no socket file). mysqld is then not
// running, whatever the reason (crashed, killed, stopped, restarting), and waiting
// for more rounds tells nothing new. What must not count, and does not: a timeout (a
// frozen server, a cut network and a 300 ms hiccup look alike), a connection lost
// mid-query (a KILL of the probe's connection looks like a crash), no route to the
// host (the network's), and every refusal by a running server (too many
// connections, access denied, read_only).
func Certain(r Round) bool {
	p := r.Ping
	return p != nil && p.Class == Refused && (p.Detail == detailConnRefused || p.Detail == detailNoSocket)
}

// NotRunning says whether the report's latest round found nothing listening on
// the server's port or socket (Certain): mysqld is not running. False when that
// round's liveness probe passed or was not run.
func (r Report) NotRunning() bool {
	return r.Rounds > 0 && Certain(Round{Ping: r.Ping})
}

// Hangs says whether the report shows a server that answers nothing: the verdict
// is unreachable (fail_after rounds) and the latest round's liveness probe, a new
// connection and SELECT 1, timed out. A frozen or hung mysqld, or its host's own
// network stack; not a crash (refused), not a server that refuses work (too many
// connections) or takes no writes (a full disk answers SELECT 1). A zero report,
// or one whose latest round passed, never hangs.
func (r Report) Hangs() bool {
	return r.Rounds > 0 && r.Verdict == Unreachable && r.Ping != nil && r.Ping.Class == TimedOut
}

func assessPing(r Round) (finding, bool) {
	p := r.Ping
	if p == nil || p.Class == OK {
		return finding{}, false
	}
	switch p.Class {
	case TimedOut:
		if p.Overrun != "" {
			return finding{Unreachable, "liveness " + p.Detail + ": server frozen or network cut?"}, true
		}
		return finding{Unreachable, fmt.Sprintf("no answer to connect + SELECT 1 within %s: server frozen or network cut?", r.Timeout)}, true
	case Refused:
		return finding{Unreachable, "cannot connect: " + p.Detail + ": server not running?"}, true
	case ConnLost:
		return finding{Unreachable, "connection lost during SELECT 1: server crashed or shutting down?"}, true
	case Busy:
		return finding{Overloaded, "server is alive but refuses new connections (" + p.Detail + ")"}, true
	case AccessDenied:
		return finding{Misconfigured, "server is alive but refuses the probe user (" + p.Detail + "): check the DSN's user and password"}, true
	}
	return finding{Unreachable, "liveness probe failed: " + p.Detail}, true
}

func assessWrite(r Round) (finding, bool) {
	w := r.Write
	if w == nil || w.Class == OK {
		return finding{}, false
	}
	switch w.Class {
	case TimedOut:
		msg := fmt.Sprintf("write probe did not finish in %s", r.Timeout)
		if w.Overrun == OverrunPrevious {
			msg = "write probe still running from the previous round"
		}
		return finding{Unwritable, msg + "; " + stuckWriteHint(r, w.Waiting)}, true
	case StorageFailed, OtherError:
		msg := "write probe failed (" + w.Detail + ")"
		if h := fullDiskHint(r.Disks); h != "" {
			msg += "; " + h
		}
		return finding{Unwritable, msg}, true
	case ReadOnlyRefused:
		return finding{ReadOnly, "server is read_only: writes are refused on purpose (" + w.Detail + ")"}, true
	case Busy:
		return finding{Overloaded, "server is alive but refuses the write probe (" + w.Detail + ")"}, true
	case AccessDenied:
		return finding{Misconfigured, "write probe refused (" + w.Detail + "): grant SELECT, INSERT, UPDATE ON baton.* to the probe user"}, true
	case SchemaMissing:
		return finding{Misconfigured, "write probe cannot find its table (" + w.Detail + "): run the bootstrap (baton probe does it)"}, true
	case Refused, ConnLost:
		return finding{Unreachable, "write probe lost the server (" + w.Detail + "): server crashed?"}, true
	}
	return finding{Unwritable, "write probe failed: " + w.Detail}, true
}

// stuckWriteHint guesses why a write hangs while, usually, SELECT 1 still answers;
// waiting is what the server said the write waits for, when it said.
func stuckWriteHint(r Round, waiting string) string {
	if strings.HasPrefix(waiting, "Waiting for semi-sync ACK") {
		return fmt.Sprintf("the commit waits for a semi-sync acknowledgement (%q): no semi-sync replica connected and caught up? (it waits up to rpl_semi_sync_master_timeout)", waiting)
	}
	if strings.Contains(strings.ToLower(waiting), "lock") {
		return fmt.Sprintf("the commit waits for a lock (server state %q): FLUSH TABLES WITH READ LOCK, or a backup holding it?", waiting)
	}
	if waiting != "" {
		waiting = fmt.Sprintf(" (server state %q)", waiting)
	}
	if h := fullDiskHint(r.Disks); h != "" {
		return h + ": binlog write waiting on a full disk?" + waiting
	}
	if len(r.Disks) == 0 {
		return "binlog write waiting on a full disk, a frozen filesystem or a global read lock?" + waiting
	}
	return "commits are stuck with disk space left: frozen or read-only filesystem, or a global read lock?" + waiting
}

// fullDiskHint names a disk that is full or nearly so (under 2% free), or says nothing.
func fullDiskHint(ds []Disk) string {
	for _, d := range ds {
		if d.Err == "" && d.Total > 0 && d.Free < d.Total/50 {
			return fmt.Sprintf("%s has %s free of %s", d.Path, fmtBytes(float64(d.Free)), fmtBytes(float64(d.Total)))
		}
	}
	return ""
}

func assessStorage(r Round) (finding, bool) {
	s := r.Storage
	if s == nil || s.Class == OK {
		return finding{}, false
	}
	switch s.Class {
	case TimedOut:
		msg := fmt.Sprintf("storage probe did not finish in %s", r.Timeout)
		if s.Overrun == OverrunPrevious {
			msg = "storage probe still running from the previous round"
		}
		return finding{Degraded, msg + ": this replica cannot write to its disk (full, frozen or read-only filesystem?)"}, true
	case StorageFailed, OtherError:
		return finding{Degraded, "storage probe failed (" + s.Detail + "): this replica cannot write to its disk"}, true
	case ReadOnlyRefused:
		return finding{Misconfigured, "storage probe refused by read_only (" + s.Detail + "): grant READ_ONLY ADMIN (MariaDB 10.11+) to the probe user"}, true
	case AccessDenied:
		return finding{Misconfigured, "storage probe refused (" + s.Detail + "): grant BINLOG ADMIN (for sql_log_bin=0) and INSERT, UPDATE ON baton.* to the probe user"}, true
	case SchemaMissing:
		return finding{Misconfigured, "storage probe cannot find its table (" + s.Detail + "): run the bootstrap on the primary"}, true
	case Busy:
		return finding{Overloaded, "server is alive but refuses the storage probe (" + s.Detail + ")"}, true
	case Refused, ConnLost:
		return finding{Unreachable, "storage probe lost the server (" + s.Detail + "): server crashed?"}, true
	}
	return finding{Degraded, "storage probe failed: " + s.Detail}, true
}

// assessReplication judges the replica's own replication. An IO thread that is
// connecting is the primary's problem, not this replica's: it is reported, not judged.
// Threads stopped without an error were stopped on purpose (a failover stops IO
// threads) and are not judged either.
func assessReplication(rep *Replication) (finding, bool) {
	if rep == nil {
		return finding{}, false
	}
	p := rep.Probe
	switch p.Class {
	case OK:
	case AccessDenied:
		return finding{Misconfigured, "replication status refused (" + p.Detail + "): grant SLAVE MONITOR (MariaDB) or REPLICATION CLIENT to the probe user"}, true
	case SchemaMissing:
		return finding{Misconfigured, "replica has no baton.heartbeat (" + p.Detail + "): run the bootstrap on the primary"}, true
	case Busy:
		return finding{Overloaded, "server is alive but refuses the replication probe (" + p.Detail + ")"}, true
	case Refused, ConnLost:
		return finding{Unreachable, "replication probe lost the server (" + p.Detail + ")"}, true
	default:
		return finding{Degraded, "replication status did not answer: " + p.Class.String() + " " + p.Detail}, true
	}
	if !rep.Configured {
		return finding{Degraded, "replica has no replication configured (SHOW SLAVE STATUS is empty)"}, true
	}
	if rep.SQLRunning != "Yes" && rep.LastSQLErrno != 0 {
		return finding{Degraded, fmt.Sprintf("replication SQL thread stopped on error %d: %s", rep.LastSQLErrno, rep.LastSQLError)}, true
	}
	if rep.IORunning == "No" && rep.LastIOErrno != 0 {
		return finding{Degraded, fmt.Sprintf("replication IO thread stopped on error %d: %s", rep.LastIOErrno, rep.LastIOError)}, true
	}
	return finding{}, false
}

func assessDisks(ds []Disk, horizon time.Duration) []finding {
	var fs []finding
	for _, d := range ds {
		switch {
		case d.Err != "":
			fs = append(fs, finding{Misconfigured, "cannot read the filesystem of " + d.Path + ": " + d.Err})
		case d.Full():
			fs = append(fs, finding{Degraded, fmt.Sprintf("%s is full (%s free of %s)", d.Path, fmtBytes(float64(d.Free)), fmtBytes(float64(d.Total)))})
		case d.TimeToFull > 0 && d.TimeToFull < horizon:
			fs = append(fs, finding{Degraded, fmt.Sprintf("%s fills at %s/s and will be full in about %s (%s free)",
				d.Path, fmtBytes(d.FillRate), About(d.TimeToFull), fmtBytes(float64(d.Free)))})
		}
	}
	return fs
}

func healthySummary(r Round) string {
	var parts []string
	if r.Write != nil {
		parts = append(parts, "write "+fmtLatency(r.Write.Latency))
	}
	if r.Storage != nil {
		parts = append(parts, "storage "+fmtLatency(r.Storage.Latency))
	}
	if r.Ping != nil {
		parts = append(parts, "ping "+fmtLatency(r.Ping.Latency))
	}
	if r.Replication != nil && r.Replication.HeartbeatLag >= 0 {
		parts = append(parts, "heartbeat lag "+fmtLatency(r.Replication.HeartbeatLag))
	}
	if len(parts) == 0 {
		return "probes ok"
	}
	return "probes ok: " + strings.Join(parts, ", ")
}

func fmtLatency(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func fmtBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}
