package replication

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ServerRole says whether a server replicates from another. It is a fact about the
// server's replication configuration, not about writability: a fenced
// primary is still RolePrimary (see Status.ReadOnly).
type ServerRole int

const (
	// RoleUnknown is the zero value.
	RoleUnknown ServerRole = iota
	// RolePrimary: no replication source is configured.
	RolePrimary
	// RoleReplica: a replication source is configured (threads may be stopped).
	RoleReplica
)

func (r ServerRole) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	default:
		return "unknown"
	}
}

// ThreadState is the state of a replication IO (receiver) or SQL (applier)
// thread.
type ThreadState int

const (
	// ThreadStopped: not running (or no replication configured).
	ThreadStopped ThreadState = iota
	// ThreadRunning: running (for the IO thread: connected to its source).
	ThreadRunning
	// ThreadConnecting: the IO thread runs but is not connected (yet).
	ThreadConnecting
)

func (t ThreadState) String() string {
	switch t {
	case ThreadRunning:
		return "running"
	case ThreadConnecting:
		return "connecting"
	default:
		return "stopped"
	}
}

func parseThreadState(s string) ThreadState {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes":
		return ThreadRunning
	case "connecting", "preparing":
		return ThreadConnecting
	default:
		return ThreadStopped
	}
}

// Status is what Baton reads from one server in one call.
type Status struct {
	Flavor     Flavor
	Version    string
	ServerID   uint32
	ServerUUID string // MySQL only; MariaDB has no server_uuid
	Role       ServerRole

	ReadOnly      bool
	SuperReadOnly bool // MySQL only
	// GTIDStrictMode is MariaDB's gtid_strict_mode, which Baton relies on
	// (sequence numbers only grow within a domain). Always true on MySQL.
	GTIDStrictMode bool

	// Executed is every transaction this server has executed.
	// MySQL: @@GLOBAL.gtid_executed.
	// MariaDB: gtid_binlog_state ∪ gtid_slave_pos, per (domain, server_id);
	// see MariaDBPositions for why neither variable alone will do.
	Executed GTIDSet
	// Retrieved is what the IO thread has received (MySQL
	// Retrieved_Gtid_Set, MariaDB Gtid_IO_Pos); empty on a primary.
	Retrieved GTIDSet
	// MariaDB holds MariaDB's raw GTID variables (zero on MySQL).
	MariaDB MariaDBPositions

	// Replication: zero values on a primary.
	SourceHost     string
	SourcePort     int
	SourceUser     string
	SourceServerID uint32
	// SourceSSL, SourceSSLCA and SourceSSLVerify are the replica's TLS settings for
	// its source (Master/Source_SSL_Allowed, *_SSL_CA_File,
	// *_SSL_Verify_Server_Cert), so that Follow repoints a replica whose TLS
	// settings are not the ones asked for.
	SourceSSL       bool
	SourceSSLCA     string
	SourceSSLVerify bool
	// AutoPosition is true when replication uses GTIDs to position itself:
	// MySQL Auto_Position=1, MariaDB Using_Gtid Slave_Pos or Current_Pos.
	AutoPosition bool
	IOThread     ThreadState
	SQLThread    ThreadState
	LastIOErrno  int
	LastIOError  string
	LastSQLErrno int
	LastSQLError string
	// Lag is Seconds_Behind_Master/Source when LagKnown (the server reports
	// NULL when the SQL thread is stopped or the IO thread is not connected).
	Lag      time.Duration
	LagKnown bool

	SemiSync SemiSync
}

// MariaDBPositions are MariaDB's GTID variables as read. Which means
// "executed":
//
//   - gtid_slave_pos: the last GTID the replication SQL thread applied, per
//     domain. It never includes writes made on the server itself, so it is
//     empty (or stale) on a primary, and RESET SLAVE ALL does not clear it.
//   - gtid_binlog_pos: the last GTID written to this server's binlog, per
//     domain: local writes and, with log_slave_updates, replicated ones.
//     gtid_binlog_state is the same per (domain, server_id).
//   - gtid_current_pos: per domain, the binlog's GTID if it was written by
//     this server_id and is newer, else gtid_slave_pos. It is one GTID per
//     domain, so it loses which server wrote what.
//
// Baton's Executed is gtid_binlog_state ∪ gtid_slave_pos: on a replica
// (log_slave_updates or not) and on a primary alike it is the highest
// sequence per domain this server has applied or written, and it keeps the
// server_ids that Errant needs. MASTER_GTID_WAIT compares with
// gtid_slave_pos only, and a former primary's gtid_slave_pos is behind its
// binlog: Follow and WaitExecuted account for both.
type MariaDBPositions struct {
	BinlogPos   string
	BinlogState string
	SlavePos    string
	CurrentPos  string
	UsingGTID   string // Using_Gtid: No, Slave_Pos or Current_Pos
}

// SemiSync is the semi-synchronous replication state. MariaDB (10.3+) has
// it built in (rpl_semi_sync_master_*/slave_*); MySQL has it when the plugin
// is loaded, named rpl_semi_sync_source_*/replica_* from 8.0.26 (the
// semisync_source plugin) or master/slave with the older plugin.
type SemiSync struct {
	// Available is false when the server has no semi-sync variables.
	Available      bool
	SourceEnabled  bool
	ReplicaEnabled bool
	// SourceActive is Rpl_semi_sync_*_status on the source side: commits
	// currently wait for a replica's acknowledgement (it turns OFF after
	// the timeout falls back to asynchronous).
	SourceActive  bool
	ReplicaActive bool
	// Clients is how many semi-sync replicas are connected.
	Clients int
	// WaitSessions is how many commits wait for a replica's acknowledgement now
	// (Rpl_semi_sync_*_wait_sessions on the source side).
	WaitSessions int
	WaitPoint    string // AFTER_SYNC or AFTER_COMMIT
	Timeout      time.Duration
}

// Candidate returns what Rank needs from this status. The caller fills in
// Priority, NoPromote and StorageOK, which the server does not know.
func (s Status) Candidate(name string) Candidate {
	lag := time.Duration(-1)
	if s.LagKnown {
		lag = s.Lag
	}
	return Candidate{
		Name:       name,
		Server:     Server{ServerID: s.ServerID, ServerUUID: s.ServerUUID, Executed: s.Executed},
		Retrieved:  s.Retrieved,
		Lag:        lag,
		SQLRunning: s.SQLThread == ThreadRunning,
		SQLError:   s.LastSQLError,
	}
}

// Server returns the identity and executed set, as Errant wants them.
func (s Status) Server() Server {
	return Server{ServerID: s.ServerID, ServerUUID: s.ServerUUID, Executed: s.Executed}
}

// column reads the first present of several names for the same column:
// MySQL renamed Master_* to Source_* and Slave_* to Replica_* in 8.0.22, and
// the set and order of columns differ by version, so rows are read by name.
// A missing key (or SQL NULL) gives "".
func column(row map[string]string, names ...string) (string, bool) {
	for _, n := range names {
		if v, ok := row[n]; ok {
			return v, true
		}
	}
	return "", false
}

// applyReplicaRow fills the replication fields of st from one row of SHOW
// SLAVE/REPLICA STATUS (column name -> value; NULL cells absent).
func applyReplicaRow(st *Status, f Flavor, row map[string]string) error {
	host, _ := column(row, "Source_Host", "Master_Host")
	if strings.TrimSpace(host) == "" {
		return nil
	}
	st.Role = RoleReplica
	st.SourceHost = host
	st.SourceUser, _ = column(row, "Source_User", "Master_User")
	if v, ok := column(row, "Source_Port", "Master_Port"); ok && v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("source port %q: %w", v, err)
		}
		st.SourcePort = p
	}
	if v, ok := column(row, "Source_Server_Id", "Master_Server_Id"); ok && v != "" {
		id, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("source server id %q: %w", v, err)
		}
		st.SourceServerID = uint32(id)
	}
	ssl, _ := column(row, "Source_SSL_Allowed", "Master_SSL_Allowed")
	// "Ignored": allowed, but the replica was built without TLS support.
	st.SourceSSL = ssl == "Yes" || ssl == "Ignored"
	st.SourceSSLCA, _ = column(row, "Source_SSL_CA_File", "Master_SSL_CA_File")
	verify, _ := column(row, "Source_SSL_Verify_Server_Cert", "Master_SSL_Verify_Server_Cert")
	st.SourceSSLVerify = verify == "Yes"
	io, _ := column(row, "Replica_IO_Running", "Slave_IO_Running")
	st.IOThread = parseThreadState(io)
	sqlT, _ := column(row, "Replica_SQL_Running", "Slave_SQL_Running")
	st.SQLThread = parseThreadState(sqlT)
	var err error
	if st.LastIOErrno, err = atoiOr0(row["Last_IO_Errno"]); err != nil {
		return fmt.Errorf("last io errno: %w", err)
	}
	if st.LastSQLErrno, err = atoiOr0(row["Last_SQL_Errno"]); err != nil {
		return fmt.Errorf("last sql errno: %w", err)
	}
	st.LastIOError = row["Last_IO_Error"]
	st.LastSQLError = row["Last_SQL_Error"]
	if v, ok := column(row, "Seconds_Behind_Source", "Seconds_Behind_Master"); ok && v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("seconds behind %q: %w", v, err)
		}
		st.Lag, st.LagKnown = time.Duration(secs)*time.Second, true
	}
	switch f {
	case FlavorMySQL:
		st.AutoPosition = row["Auto_Position"] == "1"
		if st.Retrieved, err = ParseGTIDSet(f, row["Retrieved_Gtid_Set"]); err != nil {
			return fmt.Errorf("retrieved gtid set: %w", err)
		}
	case FlavorMariaDB:
		st.MariaDB.UsingGTID = row["Using_Gtid"]
		u := strings.ToLower(row["Using_Gtid"])
		st.AutoPosition = u == "slave_pos" || u == "current_pos"
		if st.Retrieved, err = ParseGTIDSet(f, row["Gtid_IO_Pos"]); err != nil {
			return fmt.Errorf("gtid io pos: %w", err)
		}
	}
	return nil
}

// pickReplicaRow chooses the default channel's row: Baton manages the
// default replication channel only (MySQL Channel_Name "", MariaDB's
// default connection, which SHOW SLAVE STATUS shows).
func pickReplicaRow(rows []map[string]string) (map[string]string, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	for _, r := range rows {
		if r["Channel_Name"] == "" && r["Connection_name"] == "" {
			return r, nil
		}
	}
	return nil, fmt.Errorf("only named replication channels (%q): Baton manages the default channel only", rows[0]["Channel_Name"])
}

func atoiOr0(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.Atoi(s)
}

// parseSemiSync reads SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%' and SHOW
// GLOBAL STATUS LIKE 'Rpl_semi_sync%' (names lower-cased), under either
// naming.
func parseSemiSync(vars, stat map[string]string) SemiSync {
	var s SemiSync
	get := func(m map[string]string, names ...string) (string, bool) {
		for _, n := range names {
			if v, ok := m[n]; ok {
				return v, true
			}
		}
		return "", false
	}
	on := func(v string) bool { return strings.EqualFold(v, "ON") || v == "1" }
	if v, ok := get(vars, "rpl_semi_sync_source_enabled", "rpl_semi_sync_master_enabled"); ok {
		s.Available = true
		s.SourceEnabled = on(v)
	}
	if v, ok := get(vars, "rpl_semi_sync_replica_enabled", "rpl_semi_sync_slave_enabled"); ok {
		s.Available = true
		s.ReplicaEnabled = on(v)
	}
	s.WaitPoint, _ = get(vars, "rpl_semi_sync_source_wait_point", "rpl_semi_sync_master_wait_point")
	if v, ok := get(vars, "rpl_semi_sync_source_timeout", "rpl_semi_sync_master_timeout"); ok {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			s.Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if v, ok := get(stat, "rpl_semi_sync_source_status", "rpl_semi_sync_master_status"); ok {
		s.SourceActive = on(v)
	}
	if v, ok := get(stat, "rpl_semi_sync_replica_status", "rpl_semi_sync_slave_status"); ok {
		s.ReplicaActive = on(v)
	}
	if v, ok := get(stat, "rpl_semi_sync_source_clients", "rpl_semi_sync_master_clients"); ok {
		s.Clients, _ = strconv.Atoi(v)
	}
	if v, ok := get(stat, "rpl_semi_sync_source_wait_sessions", "rpl_semi_sync_master_wait_sessions"); ok {
		s.WaitSessions, _ = strconv.Atoi(v)
	}
	return s
}

// semiSyncVars names the variables to set for this server's naming.
func semiSyncVars(vars map[string]string) (source, replica string) {
	source, replica = "rpl_semi_sync_master_enabled", "rpl_semi_sync_slave_enabled"
	if _, ok := vars["rpl_semi_sync_source_enabled"]; ok {
		source = "rpl_semi_sync_source_enabled"
	}
	if _, ok := vars["rpl_semi_sync_replica_enabled"]; ok {
		replica = "rpl_semi_sync_replica_enabled"
	}
	return source, replica
}
