package replication

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// rowsOf turns SHOW BINLOG EVENTS output, as the mysql client prints it with tabs,
// into the rows queryRows returns.
func rowsOf(t *testing.T, out string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	cols := strings.Split(lines[0], "\t")
	var rows []map[string]string
	for _, l := range lines[1:] {
		vals := strings.Split(l, "\t")
		if len(vals) != len(cols) {
			t.Fatalf("row %q: %d columns, want %d", l, len(vals), len(cols))
		}
		r := map[string]string{}
		for i, c := range cols {
			r[c] = vals[i]
		}
		rows = append(rows, r)
	}
	return rows
}

func eventsOf(t *testing.T, out string) []BinlogEvent {
	t.Helper()
	ev, err := parseBinlogEvents(rowsOf(t, out))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// Read on MariaDB 10.11 from an old primary fenced on a full disk: gtid_binlog_state
// 0-1-37, the binlog ends at 0-1-35 (SHOW BINLOG EVENTS IN 'mysql-bin.000001').
const mariaFencedTail = `Log_name	Pos	Event_type	Server_id	End_log_pos	Info
mysql-bin.000001	4	Format_desc	1	256	Server ver: 10.11.19-MariaDB-0+deb12u1-log, Binlog ver: 4
mysql-bin.000001	256	Gtid_list	1	285	[]
mysql-bin.000001	285	Binlog_checkpoint	1	328	mysql-bin.000001
mysql-bin.000001	328	Gtid	1	370	GTID 0-1-1
mysql-bin.000001	370	Query	1	510	CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'x'
mysql-bin.000001	13161	Gtid	1	13203	BEGIN GTID 0-1-34
mysql-bin.000001	13203	Annotate_rows	1	13483	INSERT INTO baton.heartbeat (node, seq) VALUES ('db1', 20)
mysql-bin.000001	13483	Table_map	1	13543	table_id: 20 (baton.heartbeat)
mysql-bin.000001	13543	Update_rows_v1	1	13643	table_id: 20 flags: STMT_END_F
mysql-bin.000001	13643	Xid	1	13674	COMMIT /* xid=614 */
mysql-bin.000001	13674	Gtid	1	13716	BEGIN GTID 0-1-35
mysql-bin.000001	13716	Annotate_rows	1	13996	INSERT INTO baton.heartbeat (node, seq) VALUES ('db1', 21)
mysql-bin.000001	13996	Table_map	1	14056	table_id: 20 (baton.heartbeat)
mysql-bin.000001	14056	Update_rows_v1	1	14156	table_id: 20 flags: STMT_END_F
mysql-bin.000001	14156	Xid	1	14187	COMMIT /* xid=629 */`

// MySQL 8.0 (binlog_format=ROW, binlog_rows_query_log_events off), SHOW BINLOG EVENTS
// IN 'binlog.000002' as 8.0.36 prints it.
const mysqlEvents = `Log_name	Pos	Event_type	Server_id	End_log_pos	Info
binlog.000002	4	Format_desc	1	126	Server ver: 8.0.36, Binlog ver: 4
binlog.000002	126	Previous_gtids	1	197	3e11fa47-71ca-11e1-9e33-c80aa9429562:1-20
binlog.000002	197	Gtid	1	276	SET @@SESSION.GTID_NEXT= '3e11fa47-71ca-11e1-9e33-c80aa9429562:21'
binlog.000002	276	Query	1	351	BEGIN
binlog.000002	351	Table_map	1	406	table_id: 92 (app.t)
binlog.000002	406	Write_rows	1	446	table_id: 92 flags: STMT_END_F
binlog.000002	446	Xid	1	477	COMMIT /* xid=31 */
binlog.000002	477	Gtid	1	556	SET @@SESSION.GTID_NEXT= '4f2bb1a0-71ca-11e1-9e33-c80aa9429562:1'
binlog.000002	556	Query	1	680	create table app.oops (id int primary key) /* xid=40 */`

func TestEventGTID(t *testing.T) {
	m := eventsOf(t, mariaFencedTail)
	if g, ok := eventGTID(FlavorMariaDB, m[3]); !ok || g != "0-1-1" {
		t.Errorf("DDL GTID event: %q %v", g, ok)
	}
	if g, ok := eventGTID(FlavorMariaDB, m[5]); !ok || g != "0-1-34" {
		t.Errorf("BEGIN GTID event: %q %v", g, ok)
	}
	if _, ok := eventGTID(FlavorMariaDB, m[1]); ok {
		t.Error("a Gtid_list event read as a GTID event")
	}
	y := eventsOf(t, mysqlEvents)
	if g, ok := eventGTID(FlavorMySQL, y[2]); !ok || g != "3e11fa47-71ca-11e1-9e33-c80aa9429562:21" {
		t.Errorf("mysql GTID event: %q %v", g, ok)
	}
	if before, ok := fileBefore(FlavorMySQL, y[:3]); !ok || before.String() != "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-20" {
		t.Errorf("Previous_gtids: %v %v", before, ok)
	}
	if before, ok := fileBefore(FlavorMariaDB, m[:3]); !ok || !before.IsEmpty() {
		t.Errorf("Gtid_list []: %v %v", before, ok)
	}
}

func TestFileFor(t *testing.T) {
	set := func(s string) GTIDSet { return MustParseGTIDSet(FlavorMariaDB, s) }
	files := []binlogFile{
		{Name: "b.1", Before: set(""), HasBefore: true},
		{Name: "b.2", Before: set("0-1-10"), HasBefore: true},
		{Name: "b.3", Before: set("0-1-20,0-2-5"), HasBefore: true},
	}
	tests := []struct {
		gtid string
		want []string
	}{
		{"0-1-3", []string{"b.1"}},
		{"0-1-10", []string{"b.1"}},
		{"0-1-11", []string{"b.2"}},
		{"0-1-21", []string{"b.3"}},
		{"0-2-6", []string{"b.3"}},
		{"0-2-5", []string{"b.2"}}, // b.1 and b.2 do not list server 2: b.2 is the last file before b.3 lists it
	}
	for _, tt := range tests {
		if got := fileFor(files, tt.gtid); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("fileFor(%s) = %v, want %v", tt.gtid, got, tt.want)
		}
	}
	unknown := []binlogFile{{Name: "b.1"}, {Name: "b.2", Before: set("0-1-10"), HasBefore: true}}
	if got := fileFor(unknown, "0-1-5"); !reflect.DeepEqual(got, []string{"b.1"}) {
		t.Errorf("with an unreadable head: %v", got)
	}
	if got := fileFor(unknown, "0-1-11"); !reflect.DeepEqual(got, []string{"b.2"}) {
		t.Errorf("after the last list: %v", got)
	}
}

func TestClassifyErrantMariaDBPhantoms(t *testing.T) {
	events := eventsOf(t, mariaFencedTail)
	state := MustParseGTIDSet(FlavorMariaDB, "0-1-37")
	primary := Server{ServerID: 2, Executed: MustParseGTIDSet(FlavorMariaDB, "0-1-35,0-2-53")}
	errant, err := Errant(Server{ServerID: 1, Executed: state}, primary)
	if err != nil || errant.String() != "0-1-37" {
		t.Fatalf("errant = %v %v", errant, err)
	}
	files := []binlogFile{{Name: "mysql-bin.000001", Before: MustParseGTIDSet(FlavorMariaDB, ""), HasBefore: true}}
	lookups := locate(errantLookups(errant, primary, state), files)
	if len(lookups) != 2 || lookups[0].gtid != "0-1-36" || lookups[1].gtid != "0-1-37" {
		t.Fatalf("lookups %+v: want 0-1-36 and 0-1-37", lookups)
	}
	ev := ErrantEvidence{Flavor: FlavorMariaDB, Errant: errant, Txns: classifyErrant(FlavorMariaDB, lookups, events, nil)}
	if !ev.Phantom() {
		t.Fatalf("txns %+v: want both phantom", ev.Txns)
	}
	// Not looked for in the file that must hold it: never a phantom.
	for _, tx := range classifyErrant(FlavorMariaDB, errantLookups(errant, primary, state), events, nil) {
		if tx.Kind != ErrantUnchecked {
			t.Errorf("%+v: a GTID not located in any file is unchecked", tx)
		}
	}
	if w := writtenState(state, errant, primary, files, events); w != "0-1-35" {
		t.Errorf("written state %q, want 0-1-35", w)
	}
	pos, err := slavePosAfter("0-1-35", "", errant)
	if err != nil || pos != "0-1-35" {
		t.Errorf("gtid_slave_pos after: %q %v", pos, err)
	}
}

func TestClassifyErrantMariaDBReal(t *testing.T) {
	// A SUPER user wrote 0-1-36 on the fenced old primary: its GTID event is there.
	out := mariaFencedTail + `
mysql-bin.000001	14187	Gtid	1	14229	BEGIN GTID 0-1-36
mysql-bin.000001	14229	Annotate_rows	1	14300	INSERT INTO app.t VALUES (1)
mysql-bin.000001	14300	Table_map	1	14350	table_id: 30 (app.t)
mysql-bin.000001	14350	Write_rows_v1	1	14400	table_id: 30 flags: STMT_END_F
mysql-bin.000001	14400	Xid	1	14431	COMMIT /* xid=700 */`
	events := eventsOf(t, out)
	state := MustParseGTIDSet(FlavorMariaDB, "0-2-40,0-1-36")
	primary := Server{ServerID: 2, Executed: MustParseGTIDSet(FlavorMariaDB, "0-1-35,0-2-53")}
	errant, _ := Errant(Server{ServerID: 1, Executed: state}, primary)
	files := []binlogFile{{Name: "mysql-bin.000001", Before: MustParseGTIDSet(FlavorMariaDB, ""), HasBefore: true}}
	txns := classifyErrant(FlavorMariaDB, locate(errantLookups(errant, primary, state), files), events, nil)
	if len(txns) != 1 || txns[0].Kind != ErrantReal || txns[0].First == nil || txns[0].First.Type != "Annotate_rows" ||
		!strings.Contains(txns[0].First.Info, "app.t") {
		t.Fatalf("txns %+v: want 0-1-36 real, first event its annotation", txns)
	}
	ev := ErrantEvidence{Txns: txns}
	if ev.Phantom() || len(ev.Real()) != 1 {
		t.Error("a real errant transaction read as a phantom")
	}
	// Server 2's entry is kept, listed first: server 1's 35 is the domain's last.
	if w := writtenState(state, errant, primary, files, events); w != "0-1-35,0-2-40" {
		t.Errorf("written state %q, want 0-1-35,0-2-40 (ordered by sequence within the domain)", w)
	}
}

func TestClassifyErrantZeroIsNotPhantom(t *testing.T) {
	if (ErrantEvidence{}).Phantom() {
		t.Error("empty evidence reads as phantom")
	}
	if (ErrantEvidence{Txns: []ErrantTxn{{GTID: "0-1-5"}}}).Phantom() {
		t.Error("an unchecked GTID reads as phantom")
	}
	primary := Server{ServerID: 2, Executed: MustParseGTIDSet(FlavorMariaDB, "0-2-5")}
	state := MustParseGTIDSet(FlavorMariaDB, "0-1-3")
	slave := MustParseGTIDSet(FlavorMariaDB, "0-1-9")
	exec, _ := state.Union(slave)
	errant, _ := Errant(Server{ServerID: 1, Executed: exec}, primary)
	l := errantLookups(errant, primary, state)
	txns := classifyErrant(FlavorMariaDB, l, nil, nil)
	for _, tx := range txns {
		if strings.Contains(tx.GTID, "..") && tx.Kind != ErrantReal {
			t.Errorf("%+v: GTIDs above gtid_binlog_state must count as real", tx)
		}
	}
}

func TestClassifyErrantMySQL(t *testing.T) {
	events := eventsOf(t, mysqlEvents)
	primary := Server{ServerUUID: "3e11fa47-71ca-11e1-9e33-c80aa9429562",
		Executed: MustParseGTIDSet(FlavorMySQL, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-30")}
	errant, err := Errant(Server{ServerUUID: "4f2bb1a0-71ca-11e1-9e33-c80aa9429562",
		Executed: MustParseGTIDSet(FlavorMySQL, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-21,4f2bb1a0-71ca-11e1-9e33-c80aa9429562:1-2")}, primary)
	if err != nil || errant.String() != "4f2bb1a0-71ca-11e1-9e33-c80aa9429562:1-2" {
		t.Fatalf("errant %v %v", errant, err)
	}
	txns := classifyErrant(FlavorMySQL, errantLookups(errant, primary, GTIDSet{}), events, nil)
	if len(txns) != 2 {
		t.Fatalf("txns %+v", txns)
	}
	if txns[0].Kind != ErrantReal || txns[0].First == nil || !strings.Contains(txns[0].First.Info, "create table app.oops") {
		t.Errorf("%+v: want real, first event the create table", txns[0])
	}
	// Not in the binlog: on MySQL a purged transaction, never a phantom.
	if txns[1].Kind != ErrantReal || txns[1].Note == "" {
		t.Errorf("%+v: want real with a note", txns[1])
	}
	if (ErrantEvidence{Flavor: FlavorMySQL, Txns: txns}).Phantom() {
		t.Error("MySQL evidence reads as phantom")
	}
}

func TestBinlogEventsQuery(t *testing.T) {
	if q := binlogEventsQuery("mysql-bin.000001", 4, 5000, false); q != "SHOW BINLOG EVENTS IN 'mysql-bin.000001' FROM 4 LIMIT 5000" {
		t.Errorf("query %q", q)
	}
	if q := binlogEventsQuery("x'y", 4, 1, false); !strings.Contains(q, `'x''y'`) {
		t.Errorf("file name not quoted: %q", q)
	}
}

// Read on MariaDB 10.11 after a fence on a full disk: the 64 KiB write's GTID event
// and annotation reached the file, its rows did not (SHOW BINLOG EVENTS fails with
// error 1220 from offset 11832 on); 0-1-32 was numbered and never written at all.
func TestClassifyErrantTruncatedTail(t *testing.T) {
	out := `Log_name	Pos	Event_type	Server_id	End_log_pos	Info
mysql-bin.000001	4	Format_desc	1	256	Server ver: 10.11.19-MariaDB-0+deb12u1-log, Binlog ver: 4
mysql-bin.000001	256	Gtid_list	1	285	[]
mysql-bin.000001	11100	Gtid	1	11142	BEGIN GTID 0-1-30
mysql-bin.000001	11142	Annotate_rows	1	11400	INSERT INTO baton.heartbeat (node, seq) VALUES ('db1', 7)
mysql-bin.000001	11400	Table_map	1	11460	table_id: 20 (baton.heartbeat)
mysql-bin.000001	11460	Update_rows_v1	1	11560	table_id: 20 flags: STMT_END_F
mysql-bin.000001	11560	Xid	1	11591	COMMIT /* xid=500 */
mysql-bin.000001	11638	Gtid	1	11680	BEGIN GTID 0-1-31
mysql-bin.000001	11680	Annotate_rows	1	11780	INSERT INTO sandbox.fill(v) SELECT REPEAT('x', 16384) FROM sandbox.seq_1_to_4
mysql-bin.000001	11780	Table_map	1	11832	table_id: 21 (sandbox.fill)`
	events := eventsOf(t, out)
	state := MustParseGTIDSet(FlavorMariaDB, "0-1-32")
	primary := Server{ServerID: 2, Executed: MustParseGTIDSet(FlavorMariaDB, "0-1-30,0-2-44")}
	errant, _ := Errant(Server{ServerID: 1, Executed: state}, primary)
	files := []binlogFile{{Name: "mysql-bin.000001", Before: MustParseGTIDSet(FlavorMariaDB, ""), HasBefore: true}}
	lookups := locate(errantLookups(errant, primary, state), files)
	txns := classifyErrant(FlavorMariaDB, lookups, events, map[string]uint64{"mysql-bin.000001": 11832})
	if len(txns) != 2 || txns[0].GTID != "0-1-31" || txns[0].Kind != ErrantPhantom || txns[0].First == nil || txns[0].Note == "" ||
		txns[1].GTID != "0-1-32" || txns[1].Kind != ErrantPhantom {
		t.Fatalf("txns %+v: want 0-1-31 phantom (incomplete, with its first event) and 0-1-32 phantom", txns)
	}
	// Without the unreadable tail, an incomplete transaction is never a phantom.
	txns = classifyErrant(FlavorMariaDB, lookups, events, nil)
	if txns[0].Kind != ErrantReal {
		t.Errorf("%+v: an incomplete transaction without an unreadable tail must count as real", txns[0])
	}
	if w := writtenState(state, errant, primary, files, events); w != "0-1-30" {
		t.Errorf("written state %q, want 0-1-30", w)
	}
}

// The schedule of a quarantined old primary whose binary logs a DBA purged to free
// space (FLUSH BINARY LOGS; PURGE BINARY LOGS TO the newest): its errant
// transactions 0-2-74..77 were real, and the one file left lists them in its
// Gtid_list only. Such a GTID cannot be looked up; it is unchecked, never a
// phantom, and the binlog GTID state a repair would set keeps what the primary has.
func TestClassifyErrantPurged(t *testing.T) {
	out := `Log_name	Pos	Event_type	Server_id	End_log_pos	Info
mysql-bin.000003	4	Format_desc	2	256	Server ver: 10.11.19-MariaDB-0+deb12u1-log, Binlog ver: 4
mysql-bin.000003	256	Gtid_list	2	313	[0-1-29,0-2-77]
mysql-bin.000003	313	Binlog_checkpoint	2	356	mysql-bin.000003`
	head := eventsOf(t, out)
	before, ok := fileBefore(FlavorMariaDB, head)
	if !ok {
		t.Fatal("no Gtid_list read")
	}
	files := []binlogFile{{Name: "mysql-bin.000003", Before: before, HasBefore: true}}
	state := MustParseGTIDSet(FlavorMariaDB, "0-1-29,0-2-77")
	primary := Server{ServerID: 3, Executed: MustParseGTIDSet(FlavorMariaDB, "0-1-29,0-2-73,0-3-12")}
	errant, err := Errant(Server{ServerID: 2, Executed: state}, primary)
	if err != nil || errant.String() != "0-2-77" {
		t.Fatalf("errant = %v %v", errant, err)
	}
	lookups := locate(errantLookups(errant, primary, state), files)
	if scan := filesToScan(lookups, files); len(scan) != 0 {
		t.Errorf("files to scan %v: want none (every GTID was logged before the only file)", scan)
	}
	txns := classifyErrant(FlavorMariaDB, lookups, nil, nil)
	if len(txns) != 4 {
		t.Fatalf("txns %+v: want 0-2-74..77", txns)
	}
	for _, tx := range txns {
		if tx.Kind != ErrantUnchecked || !strings.Contains(tx.Note, "purged") {
			t.Errorf("%+v: want unchecked, noted as purged", tx)
		}
	}
	if (ErrantEvidence{Txns: txns}).Phantom() {
		t.Fatal("purged real transactions read as phantoms")
	}
	// The oldest file's Gtid_list says 0-2-1..77 were written: the binlog holds at
	// least what the primary has of server 2 (73), never less.
	if w := writtenState(state, errant, primary, files, nil); w != "0-1-29,0-2-73" {
		t.Errorf("written state %q, want 0-1-29,0-2-73", w)
	}
	// The same GTIDs in a file still there are looked up (and found phantom when absent).
	older := []binlogFile{{Name: "mysql-bin.000002", Before: MustParseGTIDSet(FlavorMariaDB, "0-1-29,0-2-70"), HasBefore: true}, files[0]}
	lookups = locate(errantLookups(errant, primary, state), older)
	if scan := filesToScan(lookups, older); len(scan) != 1 || scan[0].Name != "mysql-bin.000002" {
		t.Errorf("files to scan %v: want mysql-bin.000002", scan)
	}
	for _, tx := range classifyErrant(FlavorMariaDB, lookups, nil, nil) {
		if tx.Kind != ErrantPhantom {
			t.Errorf("%+v: in no event of the file that must hold it: want phantom", tx)
		}
	}
}

func TestUnloggedBelowOldest(t *testing.T) {
	set := func(s string) GTIDSet { return MustParseGTIDSet(FlavorMariaDB, s) }
	errant := set("0-2-77")
	tests := []struct {
		name, oldest, written string
		want                  []string
	}{
		{"the oldest file lists the errant GTIDs", "0-1-29,0-2-77", "0-1-29,0-2-73", []string{"0-2-77"}},
		{"the oldest file lists part of them", "0-1-29,0-2-75", "0-1-29,0-2-73", []string{"0-2-75"}},
		{"the oldest file lists none", "0-1-29,0-2-73", "0-1-29,0-2-73", nil},
		{"server 2 dropped from the written state", "0-1-29,0-2-1", "0-1-29", []string{"0-2-1"}},
		{"other servers do not count", "0-1-40,0-2-70", "0-1-29,0-2-73", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := unloggedBelow(set(tt.oldest), tt.written, errant)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("unloggedBelow = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClassifyErrantTables: what an errant transaction touches, and whether it is
// row events alone (what flashback can undo), read off SHOW BINLOG EVENTS as
// MariaDB 10.11 prints it: a heartbeat write (row events on baton.heartbeat), an
// application's row write, and DDL.
func TestClassifyErrantTables(t *testing.T) {
	out := mariaFencedTail + `
mysql-bin.000001	14187	Gtid	1	14229	BEGIN GTID 0-1-36
mysql-bin.000001	14229	Annotate_rows	1	14300	INSERT INTO app.t VALUES (1)
mysql-bin.000001	14300	Table_map	1	14350	table_id: 30 (app.t)
mysql-bin.000001	14350	Write_rows_v1	1	14400	table_id: 30 flags: STMT_END_F
mysql-bin.000001	14400	Xid	1	14431	COMMIT /* xid=700 */
mysql-bin.000001	14431	Gtid	1	14473	GTID 0-1-37
mysql-bin.000001	14473	Query	1	14600	CREATE TABLE app.u (id INT PRIMARY KEY)
mysql-bin.000001	14600	Gtid	1	14642	BEGIN GTID 0-1-38
mysql-bin.000001	14642	Annotate_rows	1	14691	INSERT INTO app.m VALUES (5)
mysql-bin.000001	14691	Table_map	1	14732	table_id: 23 (app.m)
mysql-bin.000001	14732	Write_rows_v1	1	14770	table_id: 23 flags: STMT_END_F
mysql-bin.000001	14770	Query	1	14839	COMMIT`
	events := eventsOf(t, out)
	state := MustParseGTIDSet(FlavorMariaDB, "0-1-38")
	primary := Server{ServerID: 2, Executed: MustParseGTIDSet(FlavorMariaDB, "0-1-33,0-2-53")}
	errant, _ := Errant(Server{ServerID: 1, Executed: state}, primary)
	files := []binlogFile{{Name: "mysql-bin.000001", Before: MustParseGTIDSet(FlavorMariaDB, ""), HasBefore: true}}
	txns := classifyErrant(FlavorMariaDB, locate(errantLookups(errant, primary, state), files), events, nil)
	got := map[string]ErrantTxn{}
	for _, tx := range txns {
		got[tx.GTID] = tx
	}
	// 0-1-38 is a MyISAM insert as MariaDB 10.11 logs one: its group ends in a
	// COMMIT statement, not an Xid (no rollback could take its undo back).
	for gtid, want := range map[string]struct {
		tables                  string
		rowsOnly, transactional bool
	}{
		"0-1-34": {"baton.heartbeat", true, true},
		"0-1-35": {"baton.heartbeat", true, true},
		"0-1-36": {"app.t", true, true},
		"0-1-37": {"", false, false},
		"0-1-38": {"app.m", true, false},
	} {
		tx := got[gtid]
		if tx.Kind != ErrantReal || strings.Join(tx.Tables, ",") != want.tables || tx.RowsOnly != want.rowsOnly || tx.Transactional != want.transactional {
			t.Errorf("%s: %+v, want real, tables %q, rows only %v, transactional %v", gtid, tx, want.tables, want.rowsOnly, want.transactional)
		}
	}
	if mappedTable("table_id: 20 (baton.heartbeat)") != "baton.heartbeat" || mappedTable("garbage") != "" {
		t.Error("mappedTable")
	}
}

// TestActualFileSize: the file's size as MariaDB names it when asked for an offset
// past the end of the file; nothing from any other error.
func TestActualFileSize(t *testing.T) {
	cases := []struct {
		msg  string
		want uint64
		ok   bool
	}{
		{"Error 1220 (HY000): Error when executing command SHOW BINLOG EVENTS: Invalid pos specified. Requested from pos:4611686018427387903 is greater than actual file size:275016", 275016, true},
		{"Invalid pos specified. Requested from pos:9 is greater than actual file size:0", 0, true},
		{"Error 1220 (HY000): Error when executing command SHOW BINLOG EVENTS: Wrong offset or I/O error", 0, false},
		{"greater than actual file size:", 0, false},
		{"greater than actual file size:x12", 0, false},
	}
	for _, c := range cases {
		got, ok := actualFileSize(errors.New(c.msg))
		if got != c.want || ok != c.ok {
			t.Errorf("actualFileSize(%q) = %d %v, want %d %v", c.msg, got, ok, c.want, c.ok)
		}
	}
}
