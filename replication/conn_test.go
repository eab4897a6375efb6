package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestDialerConfig(t *testing.T) {
	dialed := false
	d := Dialer{User: "baton", Password: "pw", TLS: &tls.Config{MinVersion: tls.VersionTLS12},
		ConnectTimeout: 3 * time.Second,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			dialed = true
			return nil, net.ErrClosed
		}}
	mc, err := d.Config("db2.example:3306")
	if err != nil {
		t.Fatal(err)
	}
	if mc.Net != "tcp" || mc.Addr != "db2.example:3306" || mc.User != "baton" || mc.Passwd != "pw" ||
		mc.Timeout != 3*time.Second || mc.ReadTimeout != DefaultIOTimeout || mc.WriteTimeout != DefaultIOTimeout {
		t.Fatalf("tcp config: %+v", mc)
	}
	if mc.TLS == nil || mc.TLS.ServerName != "db2.example" || mc.TLS.MinVersion != tls.VersionTLS12 {
		t.Fatalf("tls: %+v", mc.TLS)
	}
	if d.TLS.ServerName != "" {
		t.Fatal("Config changed the dialer's TLS configuration")
	}
	if mc.DialFunc == nil {
		t.Fatal("dial func lost")
	}
	_, _ = mc.DialFunc(context.Background(), "tcp", "x")
	if !dialed {
		t.Fatal("dial func is not the dialer's")
	}

	mc, err = d.Config("unix:/run/mysqld/mysqld.sock")
	if err != nil {
		t.Fatal(err)
	}
	if mc.Net != "unix" || mc.Addr != "/run/mysqld/mysqld.sock" || mc.TLS != nil {
		t.Fatalf("socket config: net %s addr %s tls %v", mc.Net, mc.Addr, mc.TLS)
	}

	d.TLS.ServerName = "mysql.internal"
	if mc, _ := d.Config("198.18.0.12:3306"); mc.TLS.ServerName != "mysql.internal" {
		t.Fatalf("configured server name replaced: %q", mc.TLS.ServerName)
	}

	for _, tc := range []struct {
		d    Dialer
		addr string
	}{
		{Dialer{}, "h:3306"},
		{Dialer{User: "u"}, "h"},
		{Dialer{User: "u"}, ":3306"},
		{Dialer{User: "u"}, "unix:relative.sock"},
		{Dialer{User: "u", ConnectTimeout: -1}, "h:3306"},
		{Dialer{User: "u\x00"}, "h:3306"},
	} {
		if _, err := tc.d.Config(tc.addr); err == nil {
			t.Errorf("%+v at %q accepted", tc.d, tc.addr)
		}
	}
}

// TestConnLimit: only a server refusing a connection for want of a free one sends
// a kill to the spare connection.
func TestConnLimit(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("connect: %w", &mysql.MySQLError{Number: 1040, Message: "Too many connections"}), true},
		{&mysql.MySQLError{Number: 1203, Message: "User baton already has more than 'max_user_connections' active connections"}, true},
		{&mysql.MySQLError{Number: 1226, Message: "User 'baton' has exceeded the 'max_connections_per_hour' resource"}, true},
		{&mysql.MySQLError{Number: 1045, Message: "Access denied"}, false},
		{errors.New("dial tcp 198.18.0.11:3306: connect: connection refused"), false},
		{nil, false},
	}
	for _, c := range cases {
		if got := connLimit(c.err); got != c.want {
			t.Errorf("connLimit(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
