package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	binlog "github.com/go-mysql-org/go-mysql/replication"
)

// The binary logs in testdata/salvage were written by MariaDB 10.11:
// mysql-bin.000001 holds 0-1-1..0-1-3 (InnoDB inserts), 0-1-4 (a CREATE TABLE),
// 0-1-5 (a MyISAM insert, ended by a COMMIT query); mysql-bin.000002 holds 0-1-6 (a
// transaction of an insert and an update), 0-1-7 (an insert), 0-1-8 and 0-1-9 (an
// XA transaction, prepared then committed), 0-1-10 (an insert).
// print-after-0-1-2.txt is `mariadb-binlog --start-position=0-1-2` of both.
var salvageFiles = []string{"testdata/salvage/mysql-bin.000001", "testdata/salvage/mysql-bin.000002"}

func salvagePrint(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/salvage/print-after-0-1-2.txt")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gtidsOf(txns []BinlogTxn) []string {
	var out []string
	for _, tx := range txns {
		out = append(out, tx.GTID)
	}
	return out
}

func TestParseBinlogPrint(t *testing.T) {
	out := salvagePrint(t)
	p := ParseBinlogPrint(out, salvageFiles)
	want := []string{"0-1-3", "0-1-4", "0-1-5", "0-1-6", "0-1-7"}
	if got := gtidsOf(p.Txns); !slices.Equal(got, want) {
		t.Fatalf("transactions %v, want %v (the XA one and what follows stay out)", got, want)
	}
	if !strings.Contains(p.Stopped, "0-1-8") || !strings.Contains(p.Stopped, "XA") {
		t.Errorf("stopped %q, want it to name the XA transaction 0-1-8", p.Stopped)
	}
	if !p.HasGTIDList || p.GTIDList != "" {
		t.Errorf("first file's Gtid_list %q (printed %v), want an empty one, printed", p.GTIDList, p.HasGTIDList)
	}
	first, last := p.Txns[0], p.Txns[len(p.Txns)-1]
	if first.File != "mysql-bin.000001" || first.Pos != 782 || first.End != 1033 {
		t.Errorf("first transaction %+v, want mysql-bin.000001 from 782 to 1033", first)
	}
	if last.File != "mysql-bin.000002" || last.Pos != 819 || last.End != 1046 {
		t.Errorf("last transaction %+v, want mysql-bin.000002 from 819 to 1046", last)
	}
	if !bytes.HasPrefix(out, p.Script[:len(p.Script)-len("DELIMITER ;\n")]) || !bytes.HasSuffix(p.Script, []byte("COMMIT/*!*/;\nDELIMITER ;\n")) {
		t.Errorf("the script is not the print cut after 0-1-7's COMMIT:\n...%s", p.Script[max(0, len(p.Script)-200):])
	}
	if bytes.Contains(p.Script, []byte("XA START")) {
		t.Error("the script holds the XA transaction")
	}
}

// TestParseBinlogPrintCut: a print cut anywhere (a deadline, a size limit, a torn
// event that ends it) keeps only whole transactions, a prefix of what the whole
// print holds, and a transaction only once its end and the next event's start were
// printed.
func TestParseBinlogPrintCut(t *testing.T) {
	out := salvagePrint(t)
	full := gtidsOf(ParseBinlogPrint(out, salvageFiles).Txns)
	// 0-1-7 ends with its Xid event's COMMIT, followed by "# at 1046".
	next7 := bytes.Index(out, []byte("COMMIT/*!*/;\n# at 1046\n"))
	if next7 < 0 {
		t.Fatal("0-1-7's end not found in the print")
	}
	next7 += len("COMMIT/*!*/;\n# at 1046\n")
	for k := 0; k <= len(out); k++ {
		p := ParseBinlogPrint(out[:k], salvageFiles)
		got := gtidsOf(p.Txns)
		if !slices.Equal(got, full[:len(got)]) {
			t.Fatalf("cut at %d: %v is not a prefix of %v", k, got, full)
		}
		if len(got) > 0 && !bytes.HasPrefix(out, p.Script[:len(p.Script)-len("DELIMITER ;\n")]) {
			t.Fatalf("cut at %d: the script is not a prefix of the print", k)
		}
		if k < next7 && slices.Contains(got, "0-1-7") {
			t.Fatalf("cut at %d, before 0-1-7's COMMIT was followed by the next event: 0-1-7 kept", k)
		}
		if k >= next7 && !slices.Contains(got, "0-1-7") {
			t.Fatalf("cut at %d, after 0-1-7's end and the next event's start: 0-1-7 not kept", k)
		}
		// Once the next transaction's GTID line is whole, a stop says why.
		if len(got) < len(full) && p.Stopped == "" {
			if i := bytes.Index(out[:k], []byte("\tGTID "+full[len(got)]+" ")); i >= 0 && bytes.IndexByte(out[i:k], '\n') >= 0 {
				t.Fatalf("cut at %d inside %s: nothing says why it stopped", k, full[len(got)])
			}
		}
	}
}

func TestReadGTIDList(t *testing.T) {
	for file, want := range map[string]string{salvageFiles[0]: "", salvageFiles[1]: "0-1-5"} {
		got, err := ReadGTIDList(file)
		if err != nil || got != want {
			t.Errorf("%s: Gtid_list %q, %v; want %q", file, got, err, want)
		}
	}
	bad := filepath.Join(t.TempDir(), "not-a-binlog")
	if err := os.WriteFile(bad, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadGTIDList(bad); err == nil {
		t.Error("a file that is no binary log has a Gtid_list")
	}
	b, err := os.ReadFile(salvageFiles[1])
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, b[:270], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadGTIDList(short); err == nil {
		t.Error("a file cut inside its Gtid_list event has one")
	}
}

func TestBinlogIndex(t *testing.T) {
	got, err := BinlogIndex("testdata/salvage/mysql-bin.index", "")
	want := []string{filepath.Join("testdata/salvage", "mysql-bin.000001"), filepath.Join("testdata/salvage", "mysql-bin.000002")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("index: %v, %v; want %v", got, err, want)
	}
	got, _ = BinlogIndex("testdata/salvage/mysql-bin.index", "/var/lib/mysql")
	if got[0] != "/var/lib/mysql/mysql-bin.000001" {
		t.Errorf("relative to the datadir: %v", got)
	}
}

func TestBinlogFilesFrom(t *testing.T) {
	maria := func(s string) GTIDSet { return MustParseGTIDSet(FlavorMariaDB, s) }
	cases := []struct {
		name    string
		after   GTIDSet
		want    []string // base names
		wantErr error
	}{
		{"position in the first file: both", maria("0-1-2"), []string{"mysql-bin.000001", "mysql-bin.000002"}, nil},
		{"position at the second's start: the second alone", maria("0-1-5"), []string{"mysql-bin.000002"}, nil},
		{"position past the end: the last file", maria("0-1-40"), []string{"mysql-bin.000002"}, nil},
		{"another server's GTID, same domain: the position counts", maria("0-7-6"), []string{"mysql-bin.000002"}, nil},
		{"an empty position (known): from the first", maria(""), []string{"mysql-bin.000001", "mysql-bin.000002"}, nil},
		{"another domain only: from the first (mariadb-binlog then finds it never reached)", maria("1-1-5"), []string{"mysql-bin.000001", "mysql-bin.000002"}, nil},
		{"an unknown position (the zero set): refused", GTIDSet{}, nil, ErrRepairUnsupported},
	}
	for _, tc := range cases {
		files, _, err := BinlogFilesFrom(salvageFiles, tc.after)
		var names []string
		for _, f := range files {
			names = append(names, filepath.Base(f))
		}
		if !errors.Is(err, tc.wantErr) || !slices.Equal(names, tc.want) {
			t.Errorf("%s: %v, %v; want %v, %v", tc.name, names, err, tc.want, tc.wantErr)
		}
	}
	// Purged: only the second file is left, and the position is before it.
	if _, _, err := BinlogFilesFrom(salvageFiles[1:], maria("0-1-2")); !errors.Is(err, ErrSalvageGap) {
		t.Errorf("files purged past the position: %v, want ErrSalvageGap", err)
	}
}

func needBinlogProgram(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mariadb-binlog"); err != nil {
		t.Skip("mariadb-binlog not installed (mariadb-client)")
	}
}

// TestReadBinlogTail: mariadb-binlog on the files themselves, from a position, with
// the tail torn at every event boundary and in the middle of events (a crash
// during a write): what is kept is always whole transactions, a prefix of the
// binary log's order, and a torn tail is said.
func TestReadBinlogTail(t *testing.T) {
	needBinlogProgram(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	after := MustParseGTIDSet(FlavorMariaDB, "0-1-2")
	tail, err := ReadBinlogTail(ctx, "", salvageFiles, after, 0)
	if err != nil {
		t.Fatal(err)
	}
	full := gtidsOf(tail.Txns)
	if !slices.Equal(full, []string{"0-1-3", "0-1-4", "0-1-5", "0-1-6", "0-1-7"}) {
		t.Fatalf("read %v", full)
	}

	b, err := os.ReadFile(salvageFiles[1])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	torn := filepath.Join(dir, "mysql-bin.000002")
	for _, size := range []int{300, 400, 427, 500, 609, 800, 818, 819, 830, 1045, 1046, 1100} {
		if err := os.WriteFile(torn, b[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		tail, err := ReadBinlogTail(ctx, "", []string{salvageFiles[0], torn}, after, 0)
		if err != nil {
			t.Fatalf("torn at %d: %v", size, err)
		}
		got := gtidsOf(tail.Txns)
		if !slices.Equal(got, full[:len(got)]) {
			t.Fatalf("torn at %d: %v is not a prefix of %v", size, got, full)
		}
		want := 3 // 0-1-3..0-1-5, in the first file
		switch {
		case size >= 1046: // 0-1-7 ends there
			want = 5
		case size >= 819: // 0-1-6 ends there
			want = 4
		}
		if len(got) != want {
			t.Errorf("torn at %d: %v, want the first %d", size, got, want)
		}
		if size != 819 && size != 1046 && size > 385 && tail.Stopped == "" {
			t.Errorf("torn at %d inside a transaction: nothing says why the read stopped", size)
		}
	}

	// A size limit keeps a prefix, and says so.
	small, err := ReadBinlogTail(ctx, "", salvageFiles, after, 6000)
	if err != nil {
		t.Fatal(err)
	}
	if got := gtidsOf(small.Txns); len(got) == 0 || len(got) >= len(full) || !strings.Contains(small.Stopped, "limit") {
		t.Errorf("with a 6000-byte limit: %v, stopped %q; want a prefix, and the limit said", got, small.Stopped)
	}

	// Nothing after the position: the last GTID of the files, or beyond them
	// (mariadb-binlog says it never reached it), or in a domain they lack.
	for _, pos := range []string{"0-1-10", "0-1-40", "0-1-10,1-1-5"} {
		tail, err := ReadBinlogTail(ctx, "", salvageFiles, MustParseGTIDSet(FlavorMariaDB, pos), 0)
		if err != nil || len(tail.Txns) != 0 || tail.Stopped != "" {
			t.Errorf("after %s: %v, stopped %q, %v; want nothing, and no error", pos, gtidsOf(tail.Txns), tail.Stopped, err)
		}
	}
	// Another domain the files lack does not hide what follows in this one.
	tail, err = ReadBinlogTail(ctx, "", salvageFiles, MustParseGTIDSet(FlavorMariaDB, "0-1-5,1-1-5"), 0)
	if got := gtidsOf(tail.Txns); err != nil || !slices.Equal(got, []string{"0-1-6", "0-1-7"}) || !strings.Contains(tail.Stopped, "XA") {
		t.Errorf("after 0-1-5,1-1-5: %v, stopped %q, %v; want 0-1-6 and 0-1-7, stopped at the XA one", got, tail.Stopped, err)
	}
}

func TestCheckSalvage(t *testing.T) {
	maria := func(s string) GTIDSet { return MustParseGTIDSet(FlavorMariaDB, s) }
	print := func(list string, gtids ...string) BinlogPrint {
		p := BinlogPrint{GTIDList: list, HasGTIDList: true}
		for _, g := range gtids {
			p.Txns = append(p.Txns, BinlogTxn{GTID: g, File: "mysql-bin.000002"})
		}
		return p
	}
	cases := []struct {
		name      string
		print     BinlogPrint
		candidate GTIDSet
		wantAfter string // Position of the result; "" for an error
		wantErr   string
	}{
		{"continues the candidate", print("0-1-100", "0-1-101", "0-1-102"), maria("0-1-100,0-2-40"), "0-1-102", ""},
		{"a gap inside the domain is the binlog's own (a phantom): kept", print("0-1-100", "0-1-102"), maria("0-1-100"), "0-1-102", ""},
		{"nothing printed: nothing added", BinlogPrint{}, maria("0-1-100"), "0-1-100", ""},
		{"two domains", print("0-1-100,1-3-7", "1-3-8", "0-1-101"), maria("0-1-100,1-3-7"), "0-1-101,1-3-8", ""},
		{"a domain the candidate lacks", print("0-1-100", "2-1-1"), maria("0-1-100"), "0-1-100,2-1-1", ""},
		{"the file starts after the candidate: a gap", print("0-1-150", "0-1-151"), maria("0-1-100"), "", "lacks"},
		{"a transaction the candidate has: refused", print("0-1-90", "0-1-100", "0-1-101"), maria("0-1-100"), "", "does not come after"},
		{"going back: refused", print("0-1-100", "0-1-102", "0-1-101"), maria("0-1-100"), "", "does not come after"},
		{"no Gtid_list printed: refused", BinlogPrint{Txns: []BinlogTxn{{GTID: "0-1-101"}}}, maria("0-1-100"), "", "no Gtid_list"},
		{"an unknown candidate position is not an empty one", print("", "0-1-1"), GTIDSet{}, "", "unknown"},
		{"an empty candidate (known): from the first GTID", print("", "0-1-1", "0-1-2"), maria(""), "0-1-2", ""},
	}
	for _, tc := range cases {
		plan, err := CheckSalvage(tc.print, tc.candidate)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, %v; want an error saying %q", tc.name, plan.After.Position(), err, tc.wantErr)
			}
			continue
		}
		if err != nil || plan.After.Position() != tc.wantAfter || len(plan.GTIDs) != len(tc.print.Txns) {
			t.Errorf("%s: after %q (%v), %v; want %q", tc.name, plan.After.Position(), plan.GTIDs, err, tc.wantAfter)
		}
	}
}

// TestSalvageRelay: the relay copy of transactions read from two real binary log
// files holds exactly them, each file's Format_description event before its own,
// and CheckRelay refuses any change to it or to the list it is checked against.
func TestSalvageRelay(t *testing.T) {
	needBinlogProgram(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tail, err := ReadBinlogTail(ctx, "", salvageFiles, MustParseGTIDSet(FlavorMariaDB, "0-1-2"), 0)
	if err != nil {
		t.Fatal(err)
	}
	txns := tail.Txns
	if len(txns) != 5 || txns[0].File == txns[4].File {
		t.Fatalf("read %+v: want five transactions over both files", txns)
	}
	relay, err := SalvageRelay(salvageFiles, txns, MaxSalvage)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRelay(relay, txns); err != nil {
		t.Fatalf("the relay of what was read: %v", err)
	}
	size := len(binlogMagic)
	for _, f := range salvageFiles {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		fde, err := readFormatDescription(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		size += len(fde) + eventHeaderLen + 8 + len(filepath.Base(f)) + 4 // and its Rotate event, with a checksum
	}
	for _, x := range txns {
		size += int(x.End - x.Pos)
	}
	if len(relay) != size {
		t.Errorf("relay of %d bytes, want %d: the magic, two Format_description and Rotate events, and the transactions", len(relay), size)
	}
	// The Format_description event is as a primary sends it from the middle of
	// its file: no position, not in use, created 0, its checksum computed again.
	fdeSize := int(binary.LittleEndian.Uint32(relay[4+9:]))
	fde := relay[4 : 4+fdeSize]
	if binary.LittleEndian.Uint32(fde[13:17]) != 0 || binary.LittleEndian.Uint16(fde[17:19])&binlogInUse != 0 ||
		binary.LittleEndian.Uint32(fde[eventHeaderLen+52:]) != 0 || binary.LittleEndian.Uint32(fde[len(fde)-4:]) != crc32.ChecksumIEEE(fde[:len(fde)-4]) {
		t.Errorf("the copy's Format_description event %x: want log_pos 0, not in use, created 0, a valid checksum", fde)
	}
	// The Rotate event after the first Format_description event names its file,
	// as a replica's IO thread writes it, and its checksum holds.
	p := binlog.NewBinlogParser()
	p.SetVerifyChecksum(true)
	if _, err := p.Parse(relay[4 : 4+fdeSize]); err != nil {
		t.Fatal(err)
	}
	rotAt := 4 + fdeSize
	ev, err := p.Parse(relay[rotAt : rotAt+int(binary.LittleEndian.Uint32(relay[rotAt+9:]))])
	if err != nil {
		t.Fatalf("the Rotate event: %v", err)
	}
	if r, ok := ev.Event.(*binlog.RotateEvent); !ok || string(r.NextLogName) != "mysql-bin.000001" || r.Position != 4 || ev.Header.Flags&logEventArtificial == 0 {
		t.Errorf("the event after the first Format_description event: %+v %+v, want an artificial Rotate to mysql-bin.000001 at 4", ev.Header, ev.Event)
	}
	if _, err := SalvageRelay(salvageFiles, txns, size-1); err == nil {
		t.Error("a relay over its limit was built")
	}

	refused := func(what string, relay []byte, txns []BinlogTxn) {
		t.Helper()
		if err := CheckRelay(relay, txns); err == nil {
			t.Errorf("%s: CheckRelay took it", what)
		} else {
			t.Logf("%s: %v", what, err)
		}
	}
	flipped := bytes.Clone(relay)
	flipped[len(flipped)-10] ^= 0x20
	refused("a byte changed", flipped, txns)
	refused("the last byte gone", relay[:len(relay)-1], txns)
	refused("the last transaction gone", relay[:len(relay)-int(txns[4].End-txns[4].Pos)], txns)
	refused("one more transaction than listed", relay, txns[:4])
	other := slices.Clone(txns)
	other[2].GTID = "0-1-99"
	refused("another GTID listed", relay, other)
	longer := slices.Clone(txns)
	longer[1].End += 10
	refused("a transaction listed longer", relay, longer)
	refused("no magic", relay[4:], txns)
	noRotate := append(bytes.Clone(relay[:rotAt]), relay[rotAt+int(binary.LittleEndian.Uint32(relay[rotAt+9:])):]...)
	refused("a Format_description event without its Rotate event", noRotate, txns)
	moved := slices.Clone(txns)
	moved[0].File = "mysql-bin.000009"
	refused("a transaction listed in another file than its Rotate event names", relay, moved)
	refused("nothing listed", relay, nil)
	if _, err := SalvageRelay(salvageFiles[1:], txns, MaxSalvage); err == nil {
		t.Error("a relay of a file not read was built")
	}
}
