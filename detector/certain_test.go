package detector

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// TestCertain: only "nothing listens here" is certain; every error a running server,
// a frozen one or the network can give is not. The refusals are real: a dial to a
// loopback port nobody listens on, and to a socket file that does not exist.
func TestCertain(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().String()
	l.Close()
	_, refused := net.Dial("tcp", closedPort)
	if refused == nil {
		t.Fatalf("a dial to %s, closed, succeeded", closedPort)
	}
	_, noSocket := net.Dial("unix", filepath.Join(t.TempDir(), "mysqld.sock"))
	if noSocket == nil {
		t.Fatal("a dial to a missing socket succeeded")
	}
	// A socket file whose server is gone (mysqld killed leaves it behind): refused.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ul, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ul.(*net.UnixListener).SetUnlinkOnClose(false)
	ul.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the stale socket file is gone: %v", err)
	}
	_, staleErr := net.Dial("unix", stale)

	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"port refuses (mysqld killed)", refused, true},
		{"no socket file (mysqld stopped)", noSocket, true},
		{"socket file left by a killed mysqld", staleErr, true},
		{"no answer before the deadline (frozen, cut, hiccup)", fmt.Errorf("connect: %w", context.DeadlineExceeded), false},
		{"no route to host (the network's)", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, false},
		{"connection lost mid-query (a KILL looks like this)", io.ErrUnexpectedEOF, false},
		{"too many connections (alive)", &mysql.MySQLError{Number: 1040, Message: "Too many connections"}, false},
		{"access denied (alive)", &mysql.MySQLError{Number: 1045, Message: "Access denied"}, false},
	}
	for _, tc := range cases {
		class, detail := Classify(tc.err)
		r := Round{Role: Primary, Ping: &Result{Class: class, Detail: detail}}
		if got := Certain(r); got != tc.want {
			t.Errorf("%s: %v classified %s %q: certain %v, want %v", tc.name, tc.err, class, detail, got, tc.want)
		}
	}
	if Certain(Round{Role: Primary}) {
		t.Error("a round without a liveness probe is certain")
	}
	// A report says the same of its latest round; a zero report (no round yet)
	// never reads as "not running".
	class, detail := Classify(refused)
	if !(Report{Rounds: 3, RoundVerdict: Unreachable, Ping: &Result{Class: class, Detail: detail}}).NotRunning() {
		t.Error("a report whose latest round was refused does not say not running")
	}
	if (Report{}).NotRunning() || (Report{Rounds: 3, Ping: &Result{Class: OK}}).NotRunning() {
		t.Error("a zero or healthy report says not running")
	}
	if Certain(Round{Role: Primary, Ping: &Result{Class: OK}}) {
		t.Error("a healthy round is certain")
	}
}

// TestHangs: a report hangs only when the verdict is unreachable and its latest
// liveness probe timed out; a crash, a server that refuses work or takes no writes,
// a suspicion not yet confirmed and a zero report do not. The agent ends a hung
// primary that a failover deposes, so each "false" here is a server it must not kill.
func TestHangs(t *testing.T) {
	timedOut, tdetail := Classify(fmt.Errorf("connect: %w", context.DeadlineExceeded))
	lost, ldetail := Classify(io.ErrUnexpectedEOF)
	busy, bdetail := Classify(&mysql.MySQLError{Number: 1040, Message: "Too many connections"})
	refused, rdetail := Classify(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	if timedOut != TimedOut {
		t.Fatalf("a deadline classified %s, want %s", timedOut, TimedOut)
	}
	cases := []struct {
		name string
		rep  Report
		want bool
	}{
		{"frozen: unreachable, the latest probe timed out", Report{Rounds: 5, Verdict: Unreachable, Ping: &Result{Class: timedOut, Detail: tdetail}}, true},
		{"zero report", Report{}, false},
		{"no round yet, verdict set", Report{Verdict: Unreachable, Ping: &Result{Class: timedOut}}, false},
		{"suspect: one timeout is no verdict", Report{Rounds: 5, Verdict: Suspect, Ping: &Result{Class: timedOut, Detail: tdetail}}, false},
		{"unreachable, the latest probe answered (thawed)", Report{Rounds: 5, Verdict: Unreachable, Ping: &Result{Class: OK}}, false},
		{"crashed: refused", Report{Rounds: 5, Verdict: Unreachable, Ping: &Result{Class: refused, Detail: rdetail}}, false},
		{"connection lost mid-query", Report{Rounds: 5, Verdict: Unreachable, Ping: &Result{Class: lost, Detail: ldetail}}, false},
		{"too many connections", Report{Rounds: 5, Verdict: Overloaded, Ping: &Result{Class: busy, Detail: bdetail}}, false},
		{"full disk: SELECT 1 answers, writes hang", Report{Rounds: 5, Verdict: Unwritable, Ping: &Result{Class: OK}, Write: &Result{Class: timedOut}}, false},
		{"unreachable without a liveness probe", Report{Rounds: 5, Verdict: Unreachable}, false},
	}
	for _, tc := range cases {
		if got := tc.rep.Hangs(); got != tc.want {
			t.Errorf("%s: hangs %v, want %v", tc.name, got, tc.want)
		}
	}
}
