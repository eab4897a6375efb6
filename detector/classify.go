package detector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/go-sql-driver/mysql"
)

// Class sorts the outcome of one probe by what it says about the server.
type Class uint8

const (
	// OK: the probe did its job in time.
	OK Class = iota
	// TimedOut: no answer before the deadline (or the previous probe of the kind was
	// still running): a hung server, a full disk, a frozen filesystem, a cut network.
	TimedOut
	// Refused: nothing answers at the address: the process is gone, or there is no
	// route. Fails fast, unlike TimedOut.
	Refused
	// ConnLost: the connection broke in the middle of the probe (server crashed or
	// shut down, connection killed).
	ConnLost
	// Busy: the server is alive but refuses work: too many connections, no threads,
	// no memory (errors 1040, 1203, 1226, 1135, 1037, 1041).
	Busy
	// ReadOnlyRefused: the write was refused because read_only is set (error 1290),
	// or the write probe's guard found read_only on.
	ReadOnlyRefused
	// AccessDenied: the server is alive but refuses the probe's user or privilege.
	AccessDenied
	// SchemaMissing: the baton schema is not there: Bootstrap has not run.
	SchemaMissing
	// StorageFailed: the server reports it could not write (disk full, read-only
	// filesystem, storage engine or binlog write error, lock wait behind a hung write).
	StorageFailed
	// OtherError: any other error.
	OtherError
)

// String returns the class's name.
func (c Class) String() string {
	switch c {
	case OK:
		return "ok"
	case TimedOut:
		return "timed_out"
	case Refused:
		return "refused"
	case ConnLost:
		return "conn_lost"
	case Busy:
		return "busy"
	case ReadOnlyRefused:
		return "read_only"
	case AccessDenied:
		return "access_denied"
	case SchemaMissing:
		return "schema_missing"
	case StorageFailed:
		return "storage_failed"
	case OtherError:
		return "error"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// MarshalText writes the class's name.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Server error numbers, by what they mean to the detector. MySQL and MariaDB share
// them (MariaDB-only numbers are marked).
func serverErrorClass(n uint16) Class {
	switch n {
	case 1040, // ER_CON_COUNT_ERROR: Too many connections
		1203, // ER_TOO_MANY_USER_CONNECTIONS
		1226, // ER_USER_LIMIT_REACHED
		1135, // ER_CANT_CREATE_THREAD
		1037, // ER_OUTOFMEMORY
		1041: // ER_OUT_OF_RESOURCES
		return Busy
	case 1290, // ER_OPTION_PREVENTS_STATEMENT: --read-only
		1792, // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
		1836: // ER_READ_ONLY_MODE
		return ReadOnlyRefused
	case 1044, // ER_DBACCESS_DENIED_ERROR
		1045, // ER_ACCESS_DENIED_ERROR
		1142, // ER_TABLEACCESS_DENIED_ERROR
		1143, // ER_COLUMNACCESS_DENIED_ERROR
		1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR: a missing privilege (BINLOG ADMIN, ...)
		1129, // ER_HOST_IS_BLOCKED
		1130, // ER_HOST_NOT_PRIVILEGED
		1251, // ER_NOT_SUPPORTED_AUTH_MODE
		1698, // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
		1820, // ER_MUST_CHANGE_PASSWORD
		1862, // ER_MUST_CHANGE_PASSWORD_LOGIN
		3118, // ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL)
		4151: // ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB)
		return AccessDenied
	case 1049, // ER_BAD_DB_ERROR
		1146, // ER_NO_SUCH_TABLE
		1054: // ER_BAD_FIELD_ERROR: an older heartbeat table
		return SchemaMissing
	case 3, // EE_WRITE: Error writing file (Errcode: 28 / 30)
		1015, // ER_CANT_LOCK
		1021, // ER_DISK_FULL
		1026, // ER_ERROR_ON_WRITE
		1030, // ER_GET_ERRNO: Got error N from storage engine
		1036, // ER_OPEN_AS_READONLY
		1114, // ER_RECORD_FILE_FULL
		1180, // ER_ERROR_DURING_COMMIT
		1197, // ER_TRANS_CACHE_FULL
		1205, // ER_LOCK_WAIT_TIMEOUT: queued behind a write that hangs
		1534, // ER_BINLOG_ROW_LOGGING_FAILED
		1598, // ER_BINLOG_LOGGING_IMPOSSIBLE
		1878: // ER_TEMP_FILE_WRITE_FAILURE
		return StorageFailed
	case 1053: // ER_SERVER_SHUTDOWN
		return ConnLost
	case 1969, // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
		3024: // ER_QUERY_TIMEOUT (MySQL max_execution_time)
		return TimedOut
	}
	return OtherError
}

// The details of the Refused errors that say nothing listens on the server's port
// or socket (Certain); "no route to host", also Refused, is the network's.
const (
	detailConnRefused = "connection refused"
	detailNoSocket    = "no socket file"
)

// Classify sorts a probe's error and returns a short description for reasons. A nil
// error is OK. Deadlines are recognised through the context error the driver returns
// when it abandons a query, and through net.Error timeouts on dial; a refused or
// missing socket is Refused; a connection that breaks mid-query is ConnLost (the
// driver reports it as mysql.ErrInvalidConn).
func Classify(err error) (Class, string) {
	if err == nil {
		return OK, ""
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return serverErrorClass(me.Number), fmt.Sprintf("error %d: %s", me.Number, me.Message)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return TimedOut, "no answer before the deadline"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return TimedOut, "network timeout: " + err.Error()
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused, detailConnRefused
	case errors.Is(err, syscall.ENOENT):
		return Refused, detailNoSocket
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Refused, "no route to host"
	case errors.Is(err, mysql.ErrInvalidConn), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return ConnLost, "connection lost"
	}
	return OtherError, err.Error()
}
