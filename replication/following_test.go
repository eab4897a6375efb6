package replication

import "testing"

// TestFollowingComparesTLS: a replica whose TLS settings for its source are not the
// ones asked for (TLS, the CA, checking the source's certificate) is not following
// as asked: Follow repoints it, so that turning verify_server_cert on takes effect.
func TestFollowingComparesTLS(t *testing.T) {
	src := Source{Host: "198.18.0.11", Port: 3306, User: "repl", TLS: true, SSLCA: "/etc/mysql/ca.pem", SSLVerifyServerCert: true}
	st := Status{Flavor: FlavorMariaDB, Role: RoleReplica, SourceHost: src.Host, SourcePort: src.Port, SourceUser: src.User,
		SourceSSL: true, SourceSSLCA: src.SSLCA, SourceSSLVerify: true, IOThread: ThreadRunning, SQLThread: ThreadRunning}
	st.MariaDB.UsingGTID = "Slave_Pos"
	if !following(st, src) {
		t.Fatal("a replica with exactly the settings asked for is not following")
	}
	for name, change := range map[string]func(*Status){
		"no TLS":                       func(s *Status) { s.SourceSSL = false },
		"another CA":                   func(s *Status) { s.SourceSSLCA = "/etc/mysql/old-ca.pem" },
		"source certificate unchecked": func(s *Status) { s.SourceSSLVerify = false },
		"another user":                 func(s *Status) { s.SourceUser = "baton" },
	} {
		s := st
		change(&s)
		if following(s, src) {
			t.Errorf("%s: taken as following", name)
		}
	}
	// Without TLS asked for, the CA and the check are not compared.
	plain := src
	plain.TLS, plain.SSLCA, plain.SSLVerifyServerCert = false, "", false
	s := st
	s.SourceSSL, s.SourceSSLVerify = false, true
	if !following(s, plain) {
		t.Error("a plain-text replica with a leftover verify flag is not following a plain-text source")
	}
}
