// Package rawconn makes a MySQL protocol connection that Baton reads packet by
// packet (go-mysql's client), from the same driver configuration as its
// database/sql connections (go-sql-driver's Config): one account, TLS and dial
// function for both. For what database/sql cannot do: read a query's answers
// whatever flags the server set on them (the salvage apply), or wait on an idle
// connection for the server to close it (the detector's exit watch).
package rawconn

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-sql-driver/mysql"
)

// Dial connects as mc says (Net, Addr, User, Passwd, TLS, DialFunc), with the
// client capabilities caps added, within ctx and mc.Timeout (when set): the
// connection's deadline covers the handshake, go-mysql's client taking no context
// past the dial. The caller sets the deadlines of what follows.
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
