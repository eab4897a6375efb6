package replication

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// The SQL Baton sends, per flavor. Pure functions, so that the text sent to
// MySQL 8 (which cannot be run here) is unit-tested.
//
// MySQL gets the 8.0.22+/8.0.23+ statements (SHOW REPLICA STATUS, STOP
// REPLICA, CHANGE REPLICATION SOURCE TO): 8.4 removed the old ones. MariaDB
// gets the SLAVE/MASTER forms that every 10.x accepts.

// globalsQuery reads the server variables Status needs, one row, one column
// per alias.
func globalsQuery(f Flavor) string {
	if f == FlavorMySQL {
		return "SELECT @@GLOBAL.version AS version, @@GLOBAL.version_comment AS version_comment, " +
			"@@GLOBAL.server_id AS server_id, @@GLOBAL.server_uuid AS server_uuid, " +
			"@@GLOBAL.read_only AS read_only, @@GLOBAL.super_read_only AS super_read_only, " +
			"@@GLOBAL.gtid_executed AS gtid_executed, @@GLOBAL.gtid_mode AS gtid_mode"
	}
	return "SELECT @@GLOBAL.version AS version, @@GLOBAL.version_comment AS version_comment, " +
		"@@GLOBAL.server_id AS server_id, @@GLOBAL.read_only AS read_only, " +
		"@@GLOBAL.gtid_binlog_pos AS gtid_binlog_pos, @@GLOBAL.gtid_binlog_state AS gtid_binlog_state, " +
		"@@GLOBAL.gtid_slave_pos AS gtid_slave_pos, @@GLOBAL.gtid_current_pos AS gtid_current_pos, " +
		"@@GLOBAL.gtid_strict_mode AS gtid_strict_mode"
}

// applyGlobals fills st from the row of globalsQuery.
func applyGlobals(st *Status, f Flavor, g map[string]string) error {
	st.Flavor = f
	st.Version = g["version"]
	id, err := strconv.ParseUint(g["server_id"], 10, 32)
	if err != nil {
		return fmt.Errorf("server_id %q: %w", g["server_id"], err)
	}
	st.ServerID = uint32(id)
	st.ReadOnly = g["read_only"] == "1" || strings.EqualFold(g["read_only"], "ON")
	if f == FlavorMySQL {
		st.ServerUUID = g["server_uuid"]
		st.SuperReadOnly = g["super_read_only"] == "1" || strings.EqualFold(g["super_read_only"], "ON")
		st.GTIDStrictMode = true
		if mode := g["gtid_mode"]; !strings.EqualFold(mode, "ON") {
			return fmt.Errorf("gtid_mode is %q: Baton needs GTID replication (gtid_mode=ON)", mode)
		}
		if st.Executed, err = ParseGTIDSet(f, g["gtid_executed"]); err != nil {
			return fmt.Errorf("gtid_executed: %w", err)
		}
		return nil
	}
	st.GTIDStrictMode = g["gtid_strict_mode"] == "1" || strings.EqualFold(g["gtid_strict_mode"], "ON")
	st.MariaDB.BinlogPos = g["gtid_binlog_pos"]
	st.MariaDB.BinlogState = g["gtid_binlog_state"]
	st.MariaDB.SlavePos = g["gtid_slave_pos"]
	st.MariaDB.CurrentPos = g["gtid_current_pos"]
	state, err := ParseGTIDSet(f, g["gtid_binlog_state"])
	if err != nil {
		return fmt.Errorf("gtid_binlog_state: %w", err)
	}
	slave, err := ParseGTIDSet(f, g["gtid_slave_pos"])
	if err != nil {
		return fmt.Errorf("gtid_slave_pos: %w", err)
	}
	if st.Executed, err = state.Union(slave); err != nil {
		return fmt.Errorf("executed gtid set: %w", err)
	}
	return nil
}

func replicaStatusQuery(f Flavor) string {
	if f == FlavorMySQL {
		return "SHOW REPLICA STATUS"
	}
	return "SHOW SLAVE STATUS"
}

func stopIOQuery(f Flavor) string {
	if f == FlavorMySQL {
		return "STOP REPLICA IO_THREAD"
	}
	return "STOP SLAVE IO_THREAD"
}

func stopReplicationQuery(f Flavor) string {
	if f == FlavorMySQL {
		return "STOP REPLICA"
	}
	return "STOP SLAVE"
}

func startReplicationQuery(f Flavor) string {
	if f == FlavorMySQL {
		return "START REPLICA"
	}
	return "START SLAVE"
}

// resetRelayLogsQuery forgets the relay logs and the position in them, keeping the
// source's settings (GTID positioning starts again from the executed set).
func resetRelayLogsQuery(f Flavor) string {
	if f == FlavorMySQL {
		return "RESET REPLICA"
	}
	return "RESET SLAVE"
}

func resetReplicationQuery(f Flavor) string {
	if f == FlavorMySQL {
		return "RESET REPLICA ALL"
	}
	return "RESET SLAVE ALL"
}

// readOnlyQueries sets read_only. On MySQL super_read_only=ON implies
// read_only=ON and also stops users with SUPER/CONNECTION_ADMIN; turning it
// off needs both variables, super_read_only first. MariaDB has no
// super_read_only: read_only does not stop users with the READ_ONLY ADMIN
// privilege (root has it), so application users must not have it.
func readOnlyQueries(f Flavor, on bool) []string {
	switch {
	case f == FlavorMySQL && on:
		return []string{"SET GLOBAL super_read_only = ON"}
	case f == FlavorMySQL:
		return []string{"SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"}
	case on:
		return []string{"SET GLOBAL read_only = ON"}
	default:
		return []string{"SET GLOBAL read_only = OFF"}
	}
}

// Source is the server a replica follows.
type Source struct {
	Host     string
	Port     int
	User     string
	Password string
	// TLS makes the replica connect with TLS (MASTER_SSL / SOURCE_SSL).
	// Without it, on MySQL, GET_SOURCE_PUBLIC_KEY=1 lets a
	// caching_sha2_password account authenticate over a plain connection.
	TLS bool
	// SSLCA, SSLCert and SSLKey are files on the replica's host, read by its
	// server (not by Baton): the CA bundle the source's certificate is checked
	// against, and the replica's client certificate and key. Used with TLS only.
	SSLCA   string
	SSLCert string
	SSLKey  string
	// SSLVerifyServerCert makes the replica check the source's certificate
	// and host name (MASTER_SSL_VERIFY_SERVER_CERT).
	SSLVerifyServerCert bool
}

// At is the source at host:port with s's account and TLS settings: where a replica
// of that server is pointed.
func (s Source) At(host string, port int) Source {
	s.Host, s.Port = host, port
	return s
}

// SplitAddr splits a server's host:port.
func SplitAddr(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", ps, err)
	}
	return host, port, nil
}

func (s Source) validate() error {
	switch {
	case s.Host == "":
		return fmt.Errorf("replication: source Host is empty")
	case strings.ContainsAny(s.Host, "'\"\\ \t\r\n\x00"):
		return fmt.Errorf("replication: source Host %q is not a host name or address", s.Host)
	case s.Port <= 0 || s.Port > 65535:
		return fmt.Errorf("replication: source Port %d out of range", s.Port)
	case s.User == "":
		return fmt.Errorf("replication: source User is empty")
	case strings.ContainsRune(s.User+s.Password, 0):
		return fmt.Errorf("replication: source User or Password contains a NUL byte")
	case !s.TLS && (s.SSLCA != "" || s.SSLCert != "" || s.SSLKey != "" || s.SSLVerifyServerCert):
		return fmt.Errorf("replication: source SSL settings given without TLS")
	case (s.SSLCert == "") != (s.SSLKey == ""):
		return fmt.Errorf("replication: source SSLCert and SSLKey go together")
	case strings.ContainsRune(s.SSLCA+s.SSLCert+s.SSLKey, 0):
		return fmt.Errorf("replication: source SSL file name contains a NUL byte")
	}
	return nil
}

// quote makes a SQL string literal. CHANGE MASTER takes literals only (no
// expressions, and prepared statements are not accepted for it everywhere),
// so the password is escaped here, for the session's sql_mode.
func quote(s string, noBackslashEscapes bool) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\'':
			b.WriteString("''")
		case r == '\\' && !noBackslashEscapes:
			b.WriteString(`\\`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// changeSourceQuery points replication at src with GTID auto-positioning,
// a 1 s connect retry and a heartbeat, so that a dead source is noticed
// within slave_net_timeout and a new one is reached at once.
func changeSourceQuery(f Flavor, src Source, heartbeat time.Duration, noBackslashEscapes bool) string {
	hb := strconv.FormatFloat(heartbeat.Seconds(), 'f', 3, 64)
	q := func(s string) string { return quote(s, noBackslashEscapes) }
	if f == FlavorMySQL {
		tls := "SOURCE_SSL = 0" + sslOptions("SOURCE", src, q) + ", GET_SOURCE_PUBLIC_KEY = 1"
		if src.TLS {
			tls = "SOURCE_SSL = 1" + sslOptions("SOURCE", src, q)
		}
		return fmt.Sprintf("CHANGE REPLICATION SOURCE TO SOURCE_HOST = %s, SOURCE_PORT = %d, "+
			"SOURCE_USER = %s, SOURCE_PASSWORD = %s, SOURCE_AUTO_POSITION = 1, "+
			"SOURCE_CONNECT_RETRY = 1, SOURCE_HEARTBEAT_PERIOD = %s, %s",
			q(src.Host), src.Port, q(src.User), q(src.Password), hb, tls)
	}
	ssl := "0" + sslOptions("MASTER", src, q)
	if src.TLS {
		ssl = "1" + sslOptions("MASTER", src, q)
	}
	return fmt.Sprintf("CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %d, "+
		"MASTER_USER = %s, MASTER_PASSWORD = %s, MASTER_USE_GTID = slave_pos, "+
		"MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = %s, MASTER_SSL = %s",
		q(src.Host), src.Port, q(src.User), q(src.Password), hb, ssl)
}

// sslOptions are the TLS options of CHANGE MASTER / CHANGE REPLICATION SOURCE
// after MASTER_SSL, each prefixed with prefix (MASTER or SOURCE). Every option
// is set, empty ones to the empty string, with TLS off too: the server keeps
// options that are not named, so a file dropped from the configuration would
// stay on the server, and Follow would see settings it did not ask for.
func sslOptions(prefix string, src Source, q func(string) string) string {
	verify := "0"
	if src.SSLVerifyServerCert {
		verify = "1"
	}
	return fmt.Sprintf(", %[1]s_SSL_CA = %[2]s, %[1]s_SSL_CERT = %[3]s, %[1]s_SSL_KEY = %[4]s, %[1]s_SSL_VERIFY_SERVER_CERT = %[5]s",
		prefix, q(src.SSLCA), q(src.SSLCert), q(src.SSLKey), verify)
}

// waitQuery waits for the server to execute set, at most timeout, server
// side. MariaDB's MASTER_GTID_WAIT returns 0, or -1 on timeout, and compares
// with gtid_slave_pos, one GTID per domain (hence Position). MySQL's
// WAIT_FOR_EXECUTED_GTID_SET returns 0, or 1 on timeout.
func waitQuery(f Flavor, set GTIDSet, timeout time.Duration) string {
	secs := strconv.FormatFloat(max(timeout.Seconds(), 0.001), 'f', 3, 64)
	if f == FlavorMySQL {
		return fmt.Sprintf("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", quote(set.String(), false), secs)
	}
	return fmt.Sprintf("SELECT MASTER_GTID_WAIT(%s, %s)", quote(set.Position(), false), secs)
}

// setSlavePosQuery moves MariaDB's gtid_slave_pos (replication must be
// stopped).
func setSlavePosQuery(pos string) string {
	return "SET GLOBAL gtid_slave_pos = " + quote(pos, false)
}

// processlistQuery lists the connections Fence may kill.
const processlistQuery = "SELECT ID, USER, COALESCE(COMMAND, '') AS COMMAND, COALESCE(STATE, '') AS STATE FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"

// process is one row of the process list.
type process struct {
	ID      int64
	User    string
	Command string
	State   string
}

// waitingForAck says whether a connection is a commit waiting for a semi-sync
// acknowledgement: MariaDB's "Waiting for semi-sync ACK from slave", MySQL's
// "... from replica" (8.0.26+; from the MySQL source, not run here).
func waitingForAck(state string) bool {
	return strings.HasPrefix(state, "Waiting for semi-sync ACK")
}

// clientsToKill picks the client connections of a process list: not the
// replication threads (a replica's IO/SQL/worker threads run as "system
// user"; a primary's Binlog Dump threads serve its replicas), not the event
// scheduler or other daemons, not connections already being killed, and not
// those of Baton's own account (spare): the coordinator and the node's agent
// fence the same server at once, and each would otherwise kill the other's
// connections in the middle of its work. Applications must not use that
// account. But a commit of Baton's account waiting for a semi-sync
// acknowledgement is killed: it is a write probe (maybe of an agent killed
// since, its server frozen then), never a fence, and read_only waits for it
// (with a large rpl_semi_sync_master_timeout, for an hour). Nor connections
// still logging in ("unauthenticated user"): they run nothing yet, once in they
// meet read_only like any later one, and one may be Baton's own (a switchover's
// coordinator connecting to fence the server as its agent fences it: killed,
// its fence failed and the switchover was refused).
func clientsToKill(ps []process, self int64, spare string) []int64 {
	var out []int64
	for _, p := range ps {
		if p.ID == self || (spare != "" && p.User == spare && !waitingForAck(p.State)) {
			continue
		}
		switch p.User {
		case "system user", "event_scheduler", "unauthenticated user":
			continue
		}
		switch p.Command {
		case "Binlog Dump", "Binlog Dump GTID", "Daemon", "Killed",
			"Slave_IO", "Slave_SQL", "Slave_worker":
			continue
		}
		out = append(out, p.ID)
	}
	return out
}
