package failover

import (
	"testing"
	"time"

	"go.uber.org/zap"

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

func TestReplicaLag(t *testing.T) {
	const interval, confirm = 500 * time.Millisecond, time.Second
	cases := []struct {
		name      string
		heartbeat time.Duration
		caughtUp  bool
		confirm   time.Duration
		want      time.Duration
	}{
		{"caught up, heartbeat of this interval: no sawtooth", 480 * time.Millisecond, true, confirm, 0},
		{"caught up, one heartbeat late", 740 * time.Millisecond, true, confirm, 0},
		{"caught up but the heartbeat stopped: reported as it is", 800 * time.Millisecond, true, confirm, 800 * time.Millisecond},
		{"relay log not applied: the heartbeat's age", 300 * time.Millisecond, false, confirm, 300 * time.Millisecond},
		{"never hides a lag that confirms a stopped primary", 700 * time.Millisecond, true, 600 * time.Millisecond, 700 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := replicaLag(tc.heartbeat, tc.caughtUp, interval, tc.confirm); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestCurrentShowsFenceAtOnce: a node that starts fencing itself stops reporting the
// primary role before its next pass publishes a new status, so /primary refuses at
// once.
func TestCurrentShowsFenceAtOnce(t *testing.T) {
	r := &Reconciler{log: zap.NewNop()}
	r.current = NodeStatus{Node: "db1", Role: RolePrimary, Verdict: "healthy"}
	r.role = RolePrimary
	if n, _ := r.Current(); n.Role != RolePrimary {
		t.Fatalf("role before the fence = %s", n.Role)
	}
	r.setRole(RoleFenced)
	if n, _ := r.Current(); n.Role != RoleFenced {
		t.Fatalf("role once fencing started = %s, want fenced", n.Role)
	}
	if r.current.Role != RolePrimary {
		t.Fatal("Current changed the published status")
	}
}
