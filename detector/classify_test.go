package detector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
)

func TestClassify(t *testing.T) {
	myErr := func(n uint16, msg string) error { return &mysql.MySQLError{Number: n, Message: msg} }
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, OK},
		{"deadline", context.DeadlineExceeded, TimedOut},
		{"wrapped deadline", fmt.Errorf("write: %w", context.DeadlineExceeded), TimedOut},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, TimedOut},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, Refused},
		{"no socket file", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)}, Refused},
		{"no route", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, Refused},
		{"invalid conn", mysql.ErrInvalidConn, ConnLost},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, ConnLost},
		{"too many connections", myErr(1040, "Too many connections"), Busy},
		{"user connections", myErr(1203, "User has exceeded"), Busy},
		{"read_only", myErr(1290, "The MariaDB server is running with the --read-only option"), ReadOnlyRefused},
		{"access denied", myErr(1045, "Access denied for user"), AccessDenied},
		{"missing privilege", myErr(1227, "Access denied; you need (at least one of) the BINLOG ADMIN privilege(s)"), AccessDenied},
		{"no table", myErr(1146, "Table 'baton.heartbeat' doesn't exist"), SchemaMissing},
		{"no database", myErr(1049, "Unknown database 'baton'"), SchemaMissing},
		{"disk full", myErr(1021, "Disk full"), StorageFailed},
		{"error writing file", myErr(3, "Error writing file './mysql-bin.000001' (Errcode: 28)"), StorageFailed},
		{"lock wait", myErr(1205, "Lock wait timeout exceeded"), StorageFailed},
		{"engine error", myErr(1030, "Got error 165 from storage engine"), StorageFailed},
		{"shutdown", myErr(1053, "Server shutdown in progress"), ConnLost},
		{"statement timeout", myErr(1969, "Query execution was interrupted (max_statement_time exceeded)"), TimedOut},
		{"killed is alive", myErr(1927, "Connection was killed"), OtherError},
		{"duplicate is other", myErr(1062, "Duplicate entry"), OtherError},
		{"plain error", errors.New("something else"), OtherError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, detail := Classify(tc.err)
			if got != tc.want {
				t.Fatalf("Classify(%v) = %s (%q), want %s", tc.err, got, detail, tc.want)
			}
			if (tc.err == nil) != (detail == "") {
				t.Fatalf("detail %q for error %v", detail, tc.err)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestVerdictText(t *testing.T) {
	for v := Unknown; v <= Misconfigured; v++ {
		b, err := v.MarshalText()
		if err != nil {
			t.Fatalf("%d: %v", v, err)
		}
		var back Verdict
		if err := back.UnmarshalText(b); err != nil || back != v {
			t.Fatalf("round trip of %s gave %s, %v", v, back, err)
		}
	}
	if ReadOnly.String() != "read_only" {
		t.Fatalf("ReadOnly prints as %q", ReadOnly)
	}
	if _, err := ParseVerdict("dead"); err == nil {
		t.Fatal("ParseVerdict accepted a made-up verdict")
	}
	// A name it does not know (a newer agent's, a damaged record) reads as Unknown,
	// never as healthy, and does not make a whole node status unreadable.
	for _, name := range []string{"dead", "", "Healthy"} {
		back := Healthy
		if err := back.UnmarshalText([]byte(name)); err != nil || back != Unknown {
			t.Errorf("UnmarshalText(%q) = %s, %v; want unknown", name, back, err)
		}
	}
	if _, err := Verdict(200).MarshalText(); err == nil {
		t.Fatal("an out of range verdict marshalled")
	}
	for v, failed := range map[Verdict]bool{Unwritable: true, Unreachable: true, ReadOnly: false, Overloaded: false, Suspect: false, Degraded: false} {
		if v.Failed() != failed {
			t.Errorf("%s.Failed() = %v", v, v.Failed())
		}
	}
	var r Probes
	if err := r.UnmarshalText([]byte("replica")); err != nil || r != Replica {
		t.Fatalf("role replica: %v %v", r, err)
	}
	if err := r.UnmarshalText([]byte("leader")); err == nil {
		t.Fatal("role leader accepted")
	}
}
