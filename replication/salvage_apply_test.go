package replication

import (
	"strings"
	"testing"
)

// The batches of a real print (MariaDB 10.11's mariadb-binlog, two files) are its
// statements in order, without the client's DELIMITER lines, with its "\C"
// command as the SET NAMES the client sends, cut only before an event.
func TestSalvageBatches(t *testing.T) {
	p := ParseBinlogPrint(salvagePrint(t), salvageFiles)
	if len(p.Txns) == 0 {
		t.Fatal("the print's transactions were not read")
	}
	whole, err := salvageBatches(p.Script, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	binlogs := strings.Count(string(p.Script), "\nBINLOG '\n")
	if binlogs == 0 || len(whole) < binlogs || len(whole) > binlogs+1 {
		t.Fatalf("%d batches of an unbounded size for %d BINLOG statements: want one ended by each", len(whole), binlogs)
	}
	all := strings.Join(whole, "")
	for i, b := range whole {
		// A BINLOG statement is its batch's last.
		if n := strings.Count(b, "\nBINLOG '\n"); n > 1 || n == 1 && !strings.HasSuffix(b, "'/*!*/;\n") {
			t.Fatalf("batch %d holds %d BINLOG statements, or one not at its end", i, n)
		}
	}
	for _, l := range strings.Split(all, "\n") {
		if strings.HasPrefix(l, "DELIMITER") || strings.HasPrefix(l, `/*!\`) {
			t.Fatalf("a client line was kept: %q", l)
		}
	}
	if n := strings.Count(all, "SET NAMES "); n != strings.Count(string(p.Script), `/*!\C `) || n == 0 {
		t.Fatalf("%d SET NAMES for the print's %d \\C commands", n, strings.Count(string(p.Script), `/*!\C `))
	}
	small, err := salvageBatches(p.Script, 200)
	if err != nil {
		t.Fatal(err)
	}
	if len(small) <= len(whole) {
		t.Fatalf("%d batches of 200 bytes, want more than %d", len(small), len(whole))
	}
	if strings.Join(small, "") != all {
		t.Fatal("the batches are not the whole script in order")
	}
	for i, b := range small[1:] {
		if !strings.HasSuffix(small[i], "/*!*/;\n") {
			t.Fatalf("batch %d ends %q: not at a statement's end", i, small[i][max(0, len(small[i])-40):])
		}
		if !strings.HasPrefix(b, "# at ") && !strings.HasSuffix(small[i], "'/*!*/;\n") {
			t.Fatalf("batch %d starts %q: not at an event nor after a BINLOG statement", i+1, firstLine([]byte(b)))
		}
	}

	for _, bad := range []string{
		"DELIMITER //\nSELECT 1//\n",
		"/*!\\! rm -rf / */;\n",
		"/*!\\C utf8; DROP TABLE x */;\n",
	} {
		if _, err := salvageBatches([]byte(bad), 100); err == nil {
			t.Errorf("%q: accepted, want refused", bad)
		}
	}
}
