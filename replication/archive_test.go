package replication

import (
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
