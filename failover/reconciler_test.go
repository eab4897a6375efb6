package failover

import (
	"testing"

	"github.com/baton-ha/baton/replication"
)

// TestSourceAtKeepsTLS checks that the replication settings the agent configures
// (account and mysql.replication.tls) reach the source a replica is pointed at.
func TestSourceAtKeepsTLS(t *testing.T) {
	repl := replication.Source{Host: "ignored", Port: 1, User: "repl", Password: "pw", TLS: true,
		SSLCA: "/etc/mysql/ca.pem", SSLCert: "/etc/mysql/r.pem", SSLKey: "/etc/mysql/r.key", SSLVerifyServerCert: true}
	got := sourceAt(repl, "198.18.0.12", 3306)
	want := repl
	want.Host, want.Port = "198.18.0.12", 3306
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}
