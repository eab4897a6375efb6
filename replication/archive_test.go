package replication

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestOneTransaction: a script of mariadb-binlog --flashback (MariaDB 10.11, three
// reversed transactions) keeps every BINLOG statement, and loses every statement
// that would end or open a transaction, so that the caller's one transaction holds
// all of it.
func TestOneTransaction(t *testing.T) {
	b, err := os.ReadFile("testdata/mariadb-10.11/flashback.sql")
	if err != nil {
		t.Fatal(err)
	}
	in := string(b)
	out := oneTransaction(in)
	if n, m := strings.Count(in, "BINLOG '"), strings.Count(out, "BINLOG '"); n != 4 || m != n {
		t.Fatalf("BINLOG statements: %d in, %d out; want 4 kept", n, m)
	}
	for _, gone := range []string{"START TRANSACTION", "COMMIT", "ROLLBACK", "GTID_DOMAIN_ID"} {
		if strings.Contains(in, gone) == false {
			t.Fatalf("the sample has no %s: not the program's output", gone)
		}
		if strings.Contains(out, gone) {
			t.Errorf("%s left in the script:\n%s", gone, out)
		}
	}
	for _, kept := range []string{"DELIMITER /*!*/;", "DELIMITER ;", "'/*!*/;", "PSEUDO_SLAVE_MODE=1"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q lost", kept)
		}
	}
	// Two programs' output one after the other: still no statement ends the caller's
	// transaction.
	if twice := oneTransaction(in + in); strings.Contains(twice, "COMMIT") || strings.Contains(twice, "ROLLBACK") {
		t.Error("a transaction boundary left in two scripts run together")
	}
}

func TestErrantRanges(t *testing.T) {
	errant := MustParseGTIDSet(FlavorMariaDB, "0-2-77,1-2-5")
	primary := Server{Executed: MustParseGTIDSet(FlavorMariaDB, "0-1-29,0-2-73,0-3-80")}
	rs := ErrantRanges(errant, primary)
	if len(rs) != 2 || rs[0].String() != "0-2-74..77" || rs[1].String() != "1-2-1..5" {
		t.Fatalf("ranges %v: want 0-2-74..77 and 1-2-1..5", rs)
	}
	if len(ErrantRanges(GTIDSet{}, primary)) != 0 {
		t.Error("ranges of a zero set")
	}
}

// TestReadableRanges: a range starts no earlier than the oldest binary log's
// Gtid_list (mariadb-binlog cannot start in purged logs), a range wholly purged is
// left out, and an unread Gtid_list leaves the ranges as they are. The flashback
// reads each range up to its last transaction found in the binary log, and counts
// only those.
func TestReadableRanges(t *testing.T) {
	errant := MustParseGTIDSet(FlavorMariaDB, "0-2-77,1-2-5")
	primary := Server{Executed: MustParseGTIDSet(FlavorMariaDB, "0-2-73")}
	first := &BinlogEvent{Type: "Annotate_rows"}
	ev := ErrantEvidence{Flavor: FlavorMariaDB, Errant: errant, Txns: []ErrantTxn{
		{GTID: "0-2-75", Kind: ErrantReal, Note: "recorded"}, // purged
		{GTID: "0-2-76", Kind: ErrantReal, First: first},
		{GTID: "0-2-77", Kind: ErrantPhantom},
		{GTID: "1-2-1", Kind: ErrantReal, First: first},
		{GTID: "1-2-2", Kind: ErrantReal, First: first},
	}}
	ranges := func(ev ErrantEvidence) string {
		var out []string
		for _, r := range readableRanges(ev, primary) {
			out = append(out, r.String())
		}
		return strings.Join(out, " ")
	}
	if got := ranges(ev); got != "0-2-74..77 1-2-1..5" {
		t.Errorf("no Gtid_list read: ranges %q, want them whole", got)
	}
	ev.Oldest, ev.HasOldest = MustParseGTIDSet(FlavorMariaDB, "0-2-75,0-1-900"), true
	if got := ranges(ev); got != "0-2-76..77 1-2-1..5" {
		t.Errorf("0-2-75 purged: ranges %q, want 0-2-76..77 1-2-1..5", got)
	}
	ev.Oldest = MustParseGTIDSet(FlavorMariaDB, "0-2-77,1-2-5")
	if got := ranges(ev); got != "" {
		t.Errorf("all purged: ranges %q, want none", got)
	}
	for _, c := range []struct {
		r          ErrantRange
		last       uint64
		n          int
		whyNotLast string
	}{
		{ErrantRange{Domain: 0, ServerID: 2, After: 73, Last: 77}, 76, 1, "0-2-77 is a phantom, 0-2-75 unreadable"},
		{ErrantRange{Domain: 1, ServerID: 2, After: 0, Last: 5}, 2, 2, ""},
		{ErrantRange{Domain: 1, ServerID: 2, After: 1, Last: 5}, 2, 1, "1-2-1 is before the range"},
		{ErrantRange{Domain: 1, ServerID: 3, After: 0, Last: 5}, 0, 0, "another server_id"},
	} {
		if last, n := lastReadable(ev, c.r); last != c.last || n != c.n {
			t.Errorf("lastReadable(%v) = %d, %d; want %d, %d (%s)", c.r, last, n, c.last, c.n, c.whyNotLast)
		}
	}
}

// TestFlashbackNonTransactional: mariadb-binlog --flashback (MariaDB 10.11) over an
// InnoDB insert, a MyISAM insert, a BLACKHOLE insert and an InnoDB insert opens the
// reversal of a group ended by a COMMIT statement (the non-transactional ones) on two
// lines: each reversed transaction is counted, and none of their boundaries is left
// in the one transaction the undo runs.
func TestFlashbackNonTransactional(t *testing.T) {
	b, err := os.ReadFile("testdata/mariadb-10.11/flashback-nontransactional.sql")
	if err != nil {
		t.Fatal(err)
	}
	in := string(b)
	if n := len(flashbackBegin.FindAllString(in, -1)); n != 4 {
		t.Errorf("%d reversed transactions counted, want 4", n)
	}
	if n := strings.Count(in, "\nSTART TRANSACTION\n/*!*/;"); n != 2 {
		t.Fatalf("the sample opens %d transactions on two lines, want 2: not the program's output", n)
	}
	if l := transactionControl(in); l == "" {
		t.Fatal("transactionControl finds nothing in the program's own output")
	}
	out := oneTransaction(in)
	if l := transactionControl(out); l != "" {
		t.Errorf("%q left in the script", l)
	}
	if n, m := strings.Count(in, "BINLOG '"), strings.Count(out, "BINLOG '"); n != 5 || m != n {
		t.Errorf("BINLOG statements: %d in, %d out; want 5 kept (the format description and 4 reversals)", n, m)
	}
	for _, l := range []string{"BEGIN", "COMMIT/*!*/;", "ROLLBACK /* added by mysqlbinlog */ /*!*/;", "XA START 'x'", "  START TRANSACTION"} {
		if transactionControl("SET TIMESTAMP=1/*!*/;\n"+l+"\nBINLOG '\nQkVHSU4=\n'/*!*/;") == "" {
			t.Errorf("transactionControl misses %q", l)
		}
	}
	for _, l := range []string{"BEGINNING", "COMMITTED", "XAVIER", "# COMMIT"} {
		if got := transactionControl(l); got != "" {
			t.Errorf("transactionControl(%q) = %q, want nothing", l, got)
		}
	}
}

// TestFlashbackRefuses: Flashback writes nothing for a real errant transaction that
// is not row changes to transactional tables written whole (a MyISAM insert, a
// statement, one no longer in the binary logs), whatever its caller checked.
func TestFlashbackRefuses(t *testing.T) {
	first := &BinlogEvent{File: "mysql-bin.000001", Type: "Annotate_rows", Info: "INSERT ..."}
	for name, tx := range map[string]ErrantTxn{
		"non-transactional": {GTID: "0-1-5", Kind: ErrantReal, First: first, Tables: []string{"app.m"}, RowsOnly: true},
		"statement":         {GTID: "0-1-5", Kind: ErrantReal, First: first, Transactional: true},
		"not in the binlog": {GTID: "0-1-5", Kind: ErrantReal, RowsOnly: true, Transactional: true},
	} {
		ev := ErrantEvidence{Flavor: FlavorMariaDB, Errant: MustParseGTIDSet(FlavorMariaDB, "0-1-5"), Txns: []ErrantTxn{tx}}
		path := t.TempDir() + "/fb.sql"
		err := Tools{}.Flashback(context.Background(), ev, Server{ServerID: 2, Executed: MustParseGTIDSet(FlavorMariaDB, "0-1-4")}, path)
		if !errors.Is(err, ErrNotUndoable) {
			t.Errorf("%s: %v, want ErrNotUndoable", name, err)
		}
		if _, serr := os.Stat(path); serr == nil {
			t.Errorf("%s: a script was written", name)
		}
	}
}
