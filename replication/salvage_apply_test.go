package replication

import (
	"slices"
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
	if len(whole) != 1 {
		t.Fatalf("%d batches of an unbounded size, want 1: a BINLOG statement ends no query", len(whole))
	}
	all := whole[0]
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
	// A "\r" in a statement's text is the statement's: kept, as the client in
	// binary mode keeps it; a "# at" line or a delimiter in a literal cuts nothing.
	lit := "DELIMITER /*!*/;\n# at 4\nINSERT INTO t VALUES ('a\r\n# at 9\n;/*!*/;\nb', \"it's\", `x'y`) # c'\n/*!*/;\n# at 20\nCOMMIT/*!*/;\nDELIMITER ;\n"
	got, err := salvageBatches([]byte(lit), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"# at 4\nINSERT INTO t VALUES ('a\r\n# at 9\n;/*!*/;\nb', \"it's\", `x'y`) # c'\n/*!*/;\n", "# at 20\nCOMMIT/*!*/;\n"}
	if !slices.Equal(got, want) {
		t.Fatalf("batches of a print with a literal:\n%q\nwant\n%q", got, want)
	}
	// Between back quotes a backslash escapes nothing: the name ends there.
	if got, err := salvageBatches([]byte("DELIMITER /*!*/;\nINSERT INTO `a\\` VALUES (1)/*!*/;\nDELIMITER ;\n"), 1); err != nil ||
		len(got) != 1 || got[0] != "INSERT INTO `a\\` VALUES (1)/*!*/;\n" {
		t.Fatalf("a back-quoted name ending in a backslash: %q, %v", got, err)
	}
	lx := printLexer{delim: "/*!*/;"}
	for i, b := range small {
		if i > 0 && !strings.HasPrefix(b, "# at ") {
			t.Fatalf("batch %d starts %q: not at an event", i, firstLine([]byte(b)))
		}
		for _, l := range strings.Split(strings.TrimSuffix(b, "\n"), "\n") {
			lx.line(l)
		}
		if !lx.between() {
			t.Fatalf("batch %d ends inside a statement: %q", i, b[max(0, len(b)-60):])
		}
	}

	for _, bad := range []string{
		"DELIMITER //\nSELECT 1//\n",
		"/*!\\! rm -rf / */;\n",
		"/*!\\C utf8; DROP TABLE x */;\n",
		// A literal's lines that look like the client's commands: the client would
		// send them as text; dropped or rewritten they would change the statement.
		"DELIMITER /*!*/;\nINSERT INTO t VALUES ('a\nDELIMITER /*!*/;\nb')/*!*/;\nDELIMITER ;\n",
		"DELIMITER /*!*/;\nINSERT INTO t VALUES (\"a\n/*!\\C latin1 */\nb\")/*!*/;\nDELIMITER ;\n",
		"DELIMITER /*!*/;\nINSERT INTO t /* a comment\nDELIMITER ;\n*/ VALUES (1)/*!*/;\nDELIMITER ;\n",
		"DELIMITER /*!*/;\nINSERT INTO t\nDELIMITER ;\nVALUES (1)/*!*/;\n",
		// Under NO_BACKSLASH_ESCAPES a backslash ends nothing: 'a\' is a whole
		// string, the next one holds the delimiter and a DELIMITER line.
		"DELIMITER /*!*/;\nSET @@session.sql_mode=1048576/*!*/;\nINSERT INTO t VALUES ('a\\', '/*!*/;\nDELIMITER ;\n')/*!*/;\nDELIMITER ;\n",
		// Ends inside a string: cut short.
		"DELIMITER /*!*/;\nINSERT INTO t VALUES ('a\n",
	} {
		if _, err := salvageBatches([]byte(bad), 100); err == nil {
			t.Errorf("%q: accepted, want refused", bad)
		}
	}
}
