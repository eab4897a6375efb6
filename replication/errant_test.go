package replication

import "testing"

func TestErrant(t *testing.T) {
	tests := []struct {
		name               string
		candidate, primary Server
		want               string
		wantErr            bool
	}{
		{
			name:      "mysql in sync",
			candidate: Server{ServerUUID: uR, Executed: my(uO + ":1-50," + uP + ":1-10")},
			primary:   Server{ServerUUID: uP, Executed: my(uO + ":1-50," + uP + ":1-10")},
			want:      "",
		},
		{
			name:      "mysql replica wrote locally",
			candidate: Server{ServerUUID: uR, Executed: my(uP + ":1-10," + uR + ":1-2")},
			primary:   Server{ServerUUID: uP, Executed: my(uP + ":1-12")},
			want:      uR + ":1-2",
		},
		{
			// The primary's status was read before the replica's (or is the
			// last one a dead primary reported): its own newer
			// transactions are not errant.
			name:      "mysql stale primary set",
			candidate: Server{ServerUUID: uR, Executed: my(uP + ":1-15")},
			primary:   Server{ServerUUID: uP, Executed: my(uP + ":1-12")},
			want:      "",
		},
		{
			name:      "mysql transactions of an old primary the new one lacks",
			candidate: Server{ServerUUID: uR, Executed: my(uO + ":1-52," + uP + ":1-3")},
			primary:   Server{ServerUUID: uP, Executed: my(uO + ":1-50," + uP + ":1-3")},
			want:      uO + ":51-52",
		},
		{
			name:      "mariadb in sync",
			candidate: Server{ServerID: 2, Executed: maria("0-1-6,1-1-1")},
			primary:   Server{ServerID: 1, Executed: maria("0-1-7,1-1-1")},
			want:      "",
		},
		{
			// Recorded on MariaDB 10.11: a write on the replica (server 2)
			// became 0-2-7; the primary's 0-1-7 then broke replication.
			name:      "mariadb replica wrote locally, same domain",
			candidate: Server{ServerID: 2, Executed: maria("0-1-6,0-2-7,1-1-1")},
			primary:   Server{ServerID: 1, Executed: maria("0-1-7,1-1-1")},
			want:      "0-2-7",
		},
		{
			// The primary is past seq 7 in domain 0, but it never had
			// anything from server 2: still errant.
			name:      "mariadb own write below the primary's position",
			candidate: Server{ServerID: 2, Executed: maria("0-1-5,0-2-6")},
			primary:   Server{ServerID: 1, Executed: maria("0-1-10")},
			want:      "0-2-6",
		},
		{
			name:      "mariadb own write in a domain the primary lacks",
			candidate: Server{ServerID: 2, Executed: maria("0-1-10,7-2-1")},
			primary:   Server{ServerID: 1, Executed: maria("0-1-10")},
			want:      "7-2-1",
		},
		{
			name:      "mariadb stale primary set",
			candidate: Server{ServerID: 2, Executed: maria("0-1-15")},
			primary:   Server{ServerID: 1, Executed: maria("0-1-10")},
			want:      "",
		},
		{
			// db2 was primary (server 2) up to 0-2-20, then db1 took over
			// and wrote 0-1-21..30. db2 has its old writes; so does db1.
			name:      "mariadb former primary's writes the primary has",
			candidate: Server{ServerID: 2, Executed: maria("0-1-30,0-2-20")},
			primary:   Server{ServerID: 1, Executed: maria("0-2-20,0-1-30")},
			want:      "",
		},
		{
			// db2 as primary wrote 0-2-21 that never reached db1 before db1
			// was promoted and wrote 0-1-21: db2's 0-2-21 is lost work.
			name:      "mariadb old primary's unreplicated writes",
			candidate: Server{ServerID: 2, Executed: maria("0-2-21")},
			primary:   Server{ServerID: 1, Executed: maria("0-2-20,0-1-25")},
			want:      "0-2-21",
		},
		{
			name:      "mariadb third server's unreplicated writes",
			candidate: Server{ServerID: 3, Executed: maria("0-2-21")},
			primary:   Server{ServerID: 1, Executed: maria("0-2-20,0-1-25")},
			want:      "0-2-21",
		},
		{
			// The primary was restored from a backup: its binlog state does
			// not list server 9's old transactions, but it is far past them.
			name:      "mariadb history older than the primary's binlog",
			candidate: Server{ServerID: 3, Executed: maria("0-9-40,0-1-100")},
			primary:   Server{ServerID: 1, Executed: maria("0-1-100")},
			want:      "",
		},
		{
			name:      "zero candidate",
			candidate: Server{},
			primary:   Server{ServerID: 1, Executed: maria("0-1-1")},
			want:      "",
		},
		{
			name:      "flavors differ",
			candidate: Server{Executed: maria("0-1-1")},
			primary:   Server{Executed: my(uP + ":1")},
			wantErr:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Errant(tt.candidate, tt.primary)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Errant = %s, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("Errant = %q, want %q", got, tt.want)
			}
			if got.IsEmpty() != (tt.want == "") {
				t.Errorf("IsEmpty = %t", got.IsEmpty())
			}
		})
	}
}

func TestWithout(t *testing.T) {
	if got := without(maria("0-1-6,0-2-7,1-1-1"), maria("0-2-7")).String(); got != "0-1-6,1-1-1" {
		t.Errorf("without = %q", got)
	}
	if got := without(maria("7-2-1"), maria("7-2-1")); !got.IsEmpty() {
		t.Errorf("without = %q, want empty", got)
	}
	if got := without(my(uP+":1-10,"+uR+":1-2"), my(uR+":1-2")).String(); got != uP+":1-10" {
		t.Errorf("without = %q", got)
	}
}
