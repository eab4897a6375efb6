package replication

import (
	"strings"
	"testing"
	"time"
)

// rowsFile loads a {"note", "rows"} testdata file; JSON null (SQL NULL)
// cells are left out, as the live reader does.
func rowsFile(t *testing.T, path string) []map[string]string {
	t.Helper()
	var file struct {
		Rows []map[string]*string
	}
	loadJSON(t, path, &file)
	out := make([]map[string]string, 0, len(file.Rows))
	for _, r := range file.Rows {
		m := map[string]string{}
		for k, v := range r {
			if v != nil {
				m[k] = *v
			}
		}
		out = append(out, m)
	}
	return out
}

func kvFile(t *testing.T, path string) map[string]string {
	out := map[string]string{}
	for _, r := range rowsFile(t, path) {
		out[strings.ToLower(r["Variable_name"])] = r["Value"]
	}
	return out
}

func TestStatusMySQL8Recorded(t *testing.T) {
	globals := rowsFile(t, "mysql-8.0/globals_replica.json")
	vars := kvFile(t, "mysql-8.0/semisync_variables_8.0.26.json")
	stat := kvFile(t, "mysql-8.0/semisync_status_8.0.26.json")
	tests := []struct {
		file  string
		check func(t *testing.T, st Status)
	}{
		{"mysql-8.0/show_replica_status_running.json", func(t *testing.T, st Status) {
			want := Status{Flavor: FlavorMySQL, Version: "8.0.36", ServerID: 2, ServerUUID: uR, Role: RoleReplica,
				ReadOnly: true, SuperReadOnly: true, GTIDStrictMode: true,
				SourceHost: "10.0.0.11", SourcePort: 3306, SourceUser: "repl", SourceServerID: 1, AutoPosition: true,
				IOThread: ThreadRunning, SQLThread: ThreadRunning, Lag: time.Second, LagKnown: true}
			assertStatus(t, st, want)
			if st.Executed.String() != uO+":1-58213,"+uP+":1-1335" || st.Retrieved.String() != uP+":1048-1337" {
				t.Errorf("executed %s retrieved %s", st.Executed, st.Retrieved)
			}
			if st.Executed.Contain(st.Retrieved) || st.Executed.Missing(st.Retrieved) != uP+":1336-1337" {
				t.Errorf("two received transactions should be unapplied, missing %q", st.Executed.Missing(st.Retrieved))
			}
		}},
		{"mysql-8.0/show_replica_status_sql_error.json", func(t *testing.T, st Status) {
			if st.SQLThread != ThreadStopped || st.LastSQLErrno != 1062 || !strings.Contains(st.LastSQLError, "Worker 1 failed") || st.LagKnown {
				t.Errorf("sql thread %s errno %d %q lagKnown %t", st.SQLThread, st.LastSQLErrno, st.LastSQLError, st.LagKnown)
			}
			c := st.Candidate("db2")
			c.StorageOK = true
			r := Rank(&Server{ServerUUID: uP, Executed: MustParseGTIDSet(FlavorMySQL, uO+":1-58213,"+uP+":1-1340")}, []Candidate{c})
			if r[0].Eligible || !strings.Contains(r[0].Reason, "SQL thread stopped with error") {
				t.Errorf("rank: %+v", r[0].Reason)
			}
			e, _ := Errant(st.Server(), Server{ServerUUID: uP, Executed: my(uO + ":1-58213," + uP + ":1-1340")})
			if e.String() != uR+":1-2" {
				t.Errorf("errant = %s", e)
			}
		}},
		{"mysql-8.0/show_replica_status_io_connecting.json", func(t *testing.T, st Status) {
			if st.IOThread != ThreadConnecting || st.LastIOErrno != 2003 || st.SQLThread != ThreadRunning || st.LagKnown {
				t.Errorf("io %s errno %d sql %s", st.IOThread, st.LastIOErrno, st.SQLThread)
			}
			if !st.Executed.Contain(st.Retrieved) {
				t.Errorf("caught up replica: executed %s retrieved %s", st.Executed, st.Retrieved)
			}
		}},
		{"mysql-8.0/show_replica_status_auth_error.json", func(t *testing.T, st Status) {
			if st.LastIOErrno != 2061 || !st.Retrieved.IsEmpty() {
				t.Errorf("errno %d retrieved %s", st.LastIOErrno, st.Retrieved)
			}
		}},
		{"mysql-8.0/show_slave_status_8.0.21.json", func(t *testing.T, st Status) {
			want := Status{Flavor: FlavorMySQL, Version: "8.0.36", ServerID: 2, ServerUUID: uR, Role: RoleReplica,
				ReadOnly: true, SuperReadOnly: true, GTIDStrictMode: true,
				SourceHost: "10.0.0.11", SourcePort: 3306, SourceUser: "repl", SourceServerID: 1, AutoPosition: true,
				IOThread: ThreadRunning, SQLThread: ThreadRunning, Lag: 0, LagKnown: true}
			assertStatus(t, st, want)
		}},
		{"mysql-8.0/show_replica_status_two_channels.json", func(t *testing.T, st Status) {
			if st.SourceHost != "10.0.0.11" {
				t.Errorf("read channel of %s, want the default channel", st.SourceHost)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rows := rowsFile(t, tt.file)
			// One moment of one server: gtid_executed is the row's
			// Executed_Gtid_Set.
			g := map[string]string{}
			for k, v := range globals[0] {
				g[k] = v
			}
			g["gtid_executed"] = rows[0]["Executed_Gtid_Set"]
			st, err := buildStatus(FlavorMySQL, []map[string]string{g}, rows, vars, stat)
			if err != nil {
				t.Fatal(err)
			}
			if !st.SemiSync.Available || !st.SemiSync.SourceEnabled || !st.SemiSync.ReplicaEnabled || !st.SemiSync.SourceActive ||
				st.SemiSync.Clients != 2 || st.SemiSync.WaitSessions != 0 || st.SemiSync.WaitPoint != "AFTER_SYNC" || st.SemiSync.Timeout != 30*time.Second {
				t.Errorf("semi-sync %+v", st.SemiSync)
			}
			tt.check(t, st)
		})
	}
}

func TestStatusMySQL8Refusals(t *testing.T) {
	if _, err := buildStatus(FlavorMySQL, rowsFile(t, "mysql-8.0/globals_replica.json"),
		rowsFile(t, "mysql-8.0/show_replica_status_named_channel_only.json"), nil, nil); err == nil || !strings.Contains(err.Error(), "default channel") {
		t.Errorf("named channel only: %v", err)
	}
	if _, err := buildStatus(FlavorMySQL, rowsFile(t, "mysql-8.0/globals_gtid_off.json"), nil, nil, nil); err == nil || !strings.Contains(err.Error(), "gtid_mode") {
		t.Errorf("gtid_mode off: %v", err)
	}
}

func TestStatusMySQL8Primary(t *testing.T) {
	g := rowsFile(t, "mysql-8.0/globals_primary_percona.json")
	st, err := buildStatus(FlavorMySQL, g, nil, kvFile(t, "mysql-8.0/semisync_variables_old_plugin.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != RolePrimary || st.ReadOnly || st.IOThread != ThreadStopped || st.Executed.String() != uO+":1-58213,"+uP+":1-1337" {
		t.Errorf("primary status %+v", st)
	}
	if !st.SemiSync.Available || !st.SemiSync.SourceEnabled || st.SemiSync.ReplicaEnabled || st.SemiSync.Timeout != 10*time.Second {
		t.Errorf("semi-sync %+v", st.SemiSync)
	}
	if f := DetectFlavor(g[0]["version"], g[0]["version_comment"]); f != FlavorMySQL {
		t.Errorf("Percona detected as %s", f)
	}
	if s := parseSemiSync(kvFile(t, "mysql-8.0/semisync_variables_none.json"), nil); s.Available {
		t.Errorf("no plugin: %+v", s)
	}
}

func TestStatusMariaDBRecorded(t *testing.T) {
	vars := kvFile(t, "mariadb-10.11/semisync_variables.json")
	stat := kvFile(t, "mariadb-10.11/semisync_status.json")

	st, err := buildStatus(FlavorMariaDB, rowsFile(t, "mariadb-10.11/globals_replica.json"),
		rowsFile(t, "mariadb-10.11/show_slave_status_running.json"), vars, stat)
	if err != nil {
		t.Fatal(err)
	}
	assertStatus(t, st, Status{Flavor: FlavorMariaDB, Version: "10.11.19-MariaDB-0+deb12u1-log", ServerID: 2, Role: RoleReplica,
		ReadOnly: true, GTIDStrictMode: true, SourceHost: "127.0.0.1", SourcePort: 13306, SourceUser: "repl", SourceServerID: 1,
		AutoPosition: true, IOThread: ThreadRunning, SQLThread: ThreadRunning, LagKnown: true})
	if st.Executed.String() != "0-1-6,1-1-1" || st.Retrieved.Position() != "0-1-6,1-1-1" || st.MariaDB.UsingGTID != "Slave_Pos" {
		t.Errorf("executed %s retrieved %s using %s", st.Executed, st.Retrieved, st.MariaDB.UsingGTID)
	}
	if !st.SemiSync.Available || st.SemiSync.SourceEnabled || st.SemiSync.WaitPoint != "AFTER_COMMIT" || st.SemiSync.Timeout != 10*time.Second ||
		st.SemiSync.WaitSessions != 0 {
		t.Errorf("semi-sync %+v", st.SemiSync)
	}
	// A source with no replica connected and a commit waiting for its ACK.
	if ss := parseSemiSync(vars, kvFile(t, "mariadb-10.11/semisync_status_waiting.json")); !ss.SourceActive || ss.Clients != 0 || ss.WaitSessions != 1 {
		t.Errorf("waiting source: semi-sync %+v", ss)
	}
	if f := DetectFlavor(st.Version, "Debian 12"); f != FlavorMariaDB {
		t.Errorf("detected %s", f)
	}

	// The errant write, then the primary's conflicting one.
	st, err = buildStatus(FlavorMariaDB, rowsFile(t, "mariadb-10.11/globals_replica_errant.json"),
		rowsFile(t, "mariadb-10.11/show_slave_status_sql_error.json"), vars, stat)
	if err != nil {
		t.Fatal(err)
	}
	if st.SQLThread != ThreadStopped || st.LastSQLErrno != 1950 || st.LagKnown {
		t.Errorf("sql %s errno %d", st.SQLThread, st.LastSQLErrno)
	}
	// gtid_current_pos says 0-2-7; the state keeps 0-1-6 too.
	if st.Executed.String() != "0-1-6,0-2-7,1-1-1" || st.MariaDB.CurrentPos != "0-2-7,1-1-1" {
		t.Errorf("executed %s current %s", st.Executed, st.MariaDB.CurrentPos)
	}
	// Received 0-1-7 but could not apply it: per domain position 7 is
	// reached (by 0-2-7), which is why errant detection, not containment,
	// must catch this replica.
	p, err := buildStatus(FlavorMariaDB, rowsFile(t, "mariadb-10.11/globals_primary.json"), nil, vars, stat)
	if err != nil {
		t.Fatal(err)
	}
	if p.Role != RolePrimary || p.ReadOnly || p.Executed.String() != "0-1-7,1-1-1" || p.MariaDB.SlavePos != "" {
		t.Errorf("primary %+v", p)
	}
	e, err := Errant(st.Server(), p.Server())
	if err != nil || e.String() != "0-2-7" {
		t.Errorf("errant = %s, %v; want 0-2-7", e, err)
	}
	r := Rank(ptr(p.Server()), []Candidate{withStorage(st.Candidate("db2"))})
	if r[0].Eligible {
		t.Errorf("errant replica ranked eligible: %s", r[0].Reason)
	}

	st, err = buildStatus(FlavorMariaDB, rowsFile(t, "mariadb-10.11/globals_replica.json"),
		rowsFile(t, "mariadb-10.11/show_slave_status_io_connecting.json"), vars, stat)
	if err != nil {
		t.Fatal(err)
	}
	if st.IOThread != ThreadConnecting || st.LastIOErrno != 2003 || st.SourcePort != 1 {
		t.Errorf("io %s errno %d port %d", st.IOThread, st.LastIOErrno, st.SourcePort)
	}
}

func ptr[T any](v T) *T { return &v }

func withStorage(c Candidate) Candidate { c.StorageOK = true; return c }

func assertStatus(t *testing.T, got, want Status) {
	t.Helper()
	got.Executed, got.Retrieved, got.SemiSync, got.MariaDB = GTIDSet{}, GTIDSet{}, SemiSync{}, MariaDBPositions{}
	got.LastIOError, got.LastSQLError = "", ""
	if got != want {
		t.Errorf("status\n got %+v\nwant %+v", got, want)
	}
}

func TestThreadStateAndEnums(t *testing.T) {
	for in, want := range map[string]ThreadState{"Yes": ThreadRunning, "No": ThreadStopped, "Connecting": ThreadConnecting, "Preparing": ThreadConnecting, "": ThreadStopped} {
		if got := parseThreadState(in); got != want {
			t.Errorf("parseThreadState(%q) = %s, want %s", in, got, want)
		}
	}
	names := map[string]string{
		FlavorMariaDB.String(): "mariadb", FlavorMySQL.String(): "mysql", FlavorUnknown.String(): "unknown",
		RolePrimary.String(): "primary", RoleReplica.String(): "replica", RoleUnknown.String(): "unknown",
		ThreadRunning.String(): "running", ThreadConnecting.String(): "connecting", ThreadStopped.String(): "stopped",
	}
	for got, want := range names {
		if got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
	for _, s := range []string{"mariadb", "MySQL"} {
		if _, err := ParseFlavor(s); err != nil {
			t.Errorf("ParseFlavor(%q): %v", s, err)
		}
	}
	if _, err := ParseFlavor("postgres"); err == nil {
		t.Error("ParseFlavor(postgres) succeeded")
	}
}
