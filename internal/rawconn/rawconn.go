// Package rawconn makes a MySQL protocol connection that Baton reads packet by
// packet (go-mysql's client), from the driver configuration of its database/sql
// connections (go-sql-driver's Config): the same account, TLS and dial function. For what database/sql cannot do: read a query's answers
// whatever flags the server set on them (the salvage apply), or wait on an idle
// connection for the server to close it (the detector's exit watch).
package rawconn

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-sql-driver/mysql"
)

// Dial connects as mc says (Net, Addr, User, Passwd, TLS, DialFunc; its other
// settings are not go-mysql's and are left out: Baton's connections set none of
// them), with the client capabilities caps added, within ctx and mc.Timeout (when
// set): the connection's deadline covers the handshake, go-mysql's client taking
// no context past the dial. The caller sets the deadlines of what follows. Without
// TLS, over TCP, a server that asks for the password in a form readable on the wire
// is refused (authGuard), as go-sql-driver refuses it by default.
func Dial(ctx context.Context, mc *mysql.Config, caps uint32) (*client.Conn, error) {
	dial := mc.DialFunc
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	dl, ok := ctx.Deadline()
	if mc.Timeout > 0 && (!ok || time.Now().Add(mc.Timeout).Before(dl)) {
		dl, ok = time.Now().Add(mc.Timeout), true
	}
	if !ok {
		return nil, fmt.Errorf("connect to %s: no deadline", mc.Addr)
	}
	dctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	bounded := func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if err := nc.SetDeadline(dl); err != nil {
			nc.Close()
			return nil, err
		}
		if mc.TLS == nil && network != "unix" {
			nc = &authGuard{Conn: nc}
		}
		return nc, nil
	}
	c, err := client.ConnectWithDialer(dctx, mc.Net, mc.Addr, mc.User, mc.Passwd, "", bounded, func(c *client.Conn) error {
		c.SetCapability(caps)
		if mc.TLS != nil {
			c.SetTLSConfig(mc.TLS)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", mc.Addr, err)
	}
	return c, nil
}

// authGuard reads, for go-mysql's client, what the server sends until the end of
// the authentication (its first OK or error after the greeting), and refuses an
// exchange that would put the password on the wire readable: a switch to
// mysql_clear_password or sha256_password, or caching_sha2_password's full
// authentication (which without TLS asks for the server's key, unchecked).
// go-mysql's client would answer all three; go-sql-driver refuses them unless told
// otherwise. Used only without TLS over TCP: over a unix socket or TLS they are
// what go-sql-driver allows too.
type authGuard struct {
	net.Conn
	buf     []byte // what has arrived of the packet being read
	packets int    // packets read whole
	done    bool   // the authentication ended: pass through
}

// plainPlugins are the authentication plugins that never send the password
// itself.
var plainPlugins = map[string]bool{"mysql_native_password": true, "client_ed25519": true, "caching_sha2_password": true}

func (g *authGuard) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if g.done || n == 0 {
		return n, err
	}
	g.buf = append(g.buf, p[:n]...)
	for !g.done && len(g.buf) >= 4 {
		size := int(g.buf[0]) | int(g.buf[1])<<8 | int(g.buf[2])<<16
		if len(g.buf) < 4+size {
			break
		}
		payload := g.buf[4 : 4+size]
		if why := g.check(payload); why != "" {
			g.Conn.Close()
			return 0, fmt.Errorf("refused: %s over a connection without TLS", why)
		}
		g.buf = g.buf[4+size:]
		g.packets++
	}
	if g.done {
		g.buf = nil
	}
	return n, err
}

// check looks at one packet from the server: the greeting first, then the
// authentication's answers.
func (g *authGuard) check(p []byte) string {
	if g.packets == 0 || len(p) == 0 {
		return "" // the greeting names a plugin go-mysql checks itself
	}
	switch p[0] {
	case 0x00, 0xff: // OK, error: the authentication is over
		g.done = true
	case 0xfe: // switch to another plugin
		name, _, _ := strings.Cut(string(p[1:]), "\x00")
		if !plainPlugins[name] {
			return "the server asked for authentication by " + name + ", which sends the password readable"
		}
	case 0x01: // more data: only caching_sha2_password's fast authentication (3)
		if len(p) < 2 || p[1] != 3 {
			return "the server asked for more authentication (a full one, or its public key sent unchecked), which sends the password or trusts an unchecked key"
		}
	}
	return ""
}
