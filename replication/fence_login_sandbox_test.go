//go:build integration

package replication_test

import (
	"context"
	"database/sql"
	"net"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap/zaptest"

	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// heldConn holds its first read (the server's greeting) until release is closed:
// a connection held in the middle of logging in, as the coordinator's was when
// the old primary's agent fenced its own server at the same moment.
type heldConn struct {
	net.Conn
	release <-chan struct{}
	held    bool
}

func (c *heldConn) Read(p []byte) (int, error) {
	if !c.held {
		c.held = true
		<-c.release
	}
	return c.Conn.Read(p)
}

// TestFenceSparesALogin: a fence runs while a connection of Baton's account is
// still logging in (the process list shows "unauthenticated user"); the login then
// completes. Killed, it failed, and with it the coordinator's fence of a
// switchover, which was refused (seen in CI).
func TestFenceSparesALogin(t *testing.T) {
	sb, admin, root := oneServer(t, "login")
	in, err := replication.New(admin, replication.Config{Name: "db1", Timeout: 2 * time.Second, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	n, err := sb.Node("db1")
	if err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = sb.AdminUser, sb.AdminPassword, "unix", n.Socket
	mc.Timeout, mc.ReadTimeout, mc.WriteTimeout = 10*time.Second, 10*time.Second, 10*time.Second
	mc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &heldConn{Conn: c, release: release}, nil
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	login := sql.OpenDB(conn)
	defer login.Close()
	logged := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		logged <- login.QueryRowContext(ctx, "SELECT 1").Scan(new(int))
	}()
	sandboxtest.WaitFor(t, 5*time.Second, "a connection logging in", func() bool {
		var k int
		err := root.QueryRowContext(ctxFor(t, 2*time.Second), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'unauthenticated user'").Scan(&k)
		return err == nil && k > 0
	})

	rep, err := in.Fence(ctxFor(t, 2*time.Second))
	if err != nil || !rep.ReadOnly {
		t.Fatalf("fence: %+v, %v", rep, err)
	}
	close(release)
	if err := <-logged; err != nil {
		t.Fatalf("the login under way during the fence failed: %v (killed by it?)", err)
	}
}
