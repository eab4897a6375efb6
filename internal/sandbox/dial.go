package sandbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"time"

	"github.com/vishvananda/netns"

	"github.com/baton-ha/baton/replication"
)

// AdminDialer reaches the cluster's servers as Baton's admin user over the bridge
// network, from the client namespace, with the constructor the agents use (and TLS
// checked against the sandbox's CA in a secure sandbox).
func (c *Cluster) AdminDialer() replication.Dialer {
	d := replication.Dialer{User: c.AdminUser, Password: c.AdminPassword,
		ConnectTimeout: 2 * time.Second, IOTimeout: 5 * time.Second, Dial: DialContext(c.ClientNetNS)}
	if tc, err := c.MySQLTLS(); err == nil {
		d.TLS = tc
	} else {
		// Refused by the servers rather than sent in plain text.
		d.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: x509.NewCertPool()}
	}
	return d
}

// DialContext returns a dial function whose connections start inside the network
// namespace ns (for example the sandbox's ClientNetNS), for a process that runs in the
// root namespace: tests and benchmarks reach nodes, and a virtual IP, over the bridge
// network exactly as an application host would. It fits mysql.Config.DialFunc.
//
// The socket is made on an OS thread locked and switched into ns for the duration of
// the dial; a socket keeps the namespace it was made in.
func DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			conn net.Conn
			err  error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			// The thread is not unlocked: it may be left in ns if switching back fails,
			// and a locked goroutine's thread is thrown away when it exits.
			orig, err := netns.Get()
			if err != nil {
				ch <- result{err: fmt.Errorf("get current netns: %w", err)}
				return
			}
			defer orig.Close()
			target, err := netns.GetFromPath(filepath.Join("/run/netns", ns))
			if err != nil {
				ch <- result{err: fmt.Errorf("open netns %s: %w", ns, err)}
				return
			}
			defer target.Close()
			if err := netns.Set(target); err != nil {
				ch <- result{err: fmt.Errorf("enter netns %s: %w", ns, err)}
				return
			}
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			if serr := netns.Set(orig); serr == nil {
				runtime.UnlockOSThread()
			}
			ch <- result{conn, err}
		}()
		select {
		case r := <-ch:
			return r.conn, r.err
		case <-ctx.Done():
			go func() {
				if r := <-ch; r.conn != nil {
					r.conn.Close()
				}
			}()
			return nil, ctx.Err()
		}
	}
}
