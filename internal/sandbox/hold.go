package sandbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Some faults exist only while a session holds them (a global read lock, a full
// connection table). The sandbox keeps them in a helper process, the hidden
// `baton-lab sandbox hold` command, so they outlive the `baton-lab sandbox fault` invocation.

// Hold runs a holder until ctx is cancelled: kind "lock" holds FLUSH TABLES WITH READ
// LOCK; kind "conns" opens connections as root until the server refuses one with
// "too many connections", root's extra one included, and keeps them. It writes
// "ready" to its output once the fault is in place.
func Hold(ctx context.Context, socket, kind string, ready func()) error {
	switch kind {
	case "lock":
		return holdLock(ctx, socket, ready)
	case "conns":
		return holdConns(ctx, socket, ready)
	}
	return fmt.Errorf("unknown hold kind %q (lock or conns)", kind)
}

func holdLock(ctx context.Context, socket string, ready func()) error {
	db, err := openSocketDB(socket, "root", "")
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	qctx, cancel := withTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(qctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
		return fmt.Errorf("flush tables with read lock: %w", err)
	}
	ready()
	// Keep the session busy-free but alive: a ping now and then so that nothing times it out.
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
			pctx, cancel := withTimeout(ctx, 2*time.Second)
			_ = conn.PingContext(pctx)
			cancel()
		}
	}
}

func holdConns(ctx context.Context, socket string, ready func()) error {
	cfg := socketConfig(socket, "root", "")
	var held []*sql.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	const limit = 5000 // far above any sandbox's max_connections
	for i := 0; i < limit; i++ {
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(connector)
		cctx, cancel := withTimeout(ctx, 5*time.Second)
		c, err := db.Conn(cctx)
		if err == nil {
			err = c.PingContext(cctx)
		}
		cancel()
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1040 {
			db.Close()
			ready()
			<-ctx.Done()
			return nil
		}
		if err != nil {
			db.Close()
			return fmt.Errorf("connection %d: %w", i+1, err)
		}
		held = append(held, c)
	}
	return fmt.Errorf("the server took %d connections without refusing one", limit)
}

func holderKey(n *Node, kind string) string { return n.Name + "/" + kind }

// startHolder starts a holder process for a node and waits until it says ready.
func (c *Cluster) startHolder(ctx context.Context, n *Node, kind string) error {
	key := holderKey(n, kind)
	if pid, ok := c.Holders[key]; ok && alive(pid) {
		return fmt.Errorf("already in place (holder pid %d)", pid)
	}
	logFile := filepath.Join(n.Dir, "hold-"+kind+".log")
	_ = os.Remove(logFile)
	// The holder talks over the unix socket, which a network cut does not touch: it is
	// the fault, not a client. It lives in the client namespace so that `down` finds it.
	pid, err := startIn(nsName(c.Name, "client"), n.Dir, logFile, c.LabBinary, "sandbox", "hold", "--socket", n.Socket, "--kind", kind)
	if err != nil {
		return err
	}
	if c.Holders == nil {
		c.Holders = map[string]int{}
	}
	c.Holders[key] = pid
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), "ready") {
			return nil
		}
		if !alive(pid) {
			delete(c.Holders, key)
			return fmt.Errorf("holder exited: %s", strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			_ = kill(ctx, pid)
			delete(c.Holders, key)
			return fmt.Errorf("holder not ready after 20s: %s", strings.TrimSpace(string(b)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) stopHolder(ctx context.Context, n *Node, kind string) error {
	key := holderKey(n, kind)
	pid, ok := c.Holders[key]
	if !ok {
		return errors.New("not in place")
	}
	delete(c.Holders, key)
	if err := kill(ctx, pid); err != nil {
		return err
	}
	if kind != "conns" {
		return nil
	}
	// The server frees the connections of a dead client a moment later: wait for it, so
	// that the fault is really undone when this returns.
	return waitReady(ctx, n, 10*time.Second)
}
