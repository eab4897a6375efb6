package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// gtidPosLine is the position mariadb-dump --gtid --master-data=2 writes, commented
// out: "-- SET GLOBAL gtid_slave_pos='0-1-5';".
var gtidPosLine = regexp.MustCompile(`SET GLOBAL gtid_slave_pos\s*=\s*'([^']*)'`)

// Rebuild makes node a fresh replica of from, as a person rebuilds a quarantined
// server (one with transactions nobody else has): its agent stopped, its data and
// binlogs thrown away, the primary's data loaded from a consistent dump
// (mariadb-dump --single-transaction at a GTID position, not binlogged here), and
// replication started from that position; then its agent started again. Only the
// sandbox's and Baton's schemas are copied: the accounts are the same on every node.
func (c *Cluster) Rebuild(ctx context.Context, node, from string) error {
	return c.update(func() error {
		n, err := c.Node(node)
		if err != nil {
			return err
		}
		p, err := c.Node(from)
		if err != nil {
			return err
		}
		if alive(n.AgentPID) {
			if err := kill(ctx, n.AgentPID); err != nil {
				return fmt.Errorf("rebuild %s: stop its agent: %w", node, err)
			}
		}
		if err := rootExec(ctx, n, 30*time.Second,
			"SET GLOBAL read_only = ON",
			"STOP SLAVE",
			"RESET SLAVE ALL",
			"SET sql_log_bin = 0",
			"DROP DATABASE IF EXISTS sandbox",
			"DROP DATABASE IF EXISTS baton",
			"RESET MASTER",
			"SET GLOBAL gtid_slave_pos = ''",
		); err != nil {
			return fmt.Errorf("rebuild %s: clear it: %w", node, err)
		}
		// The primary's binlog state, read before the dump, so that every seqno in it
		// is at or below the dump's position: it keeps the history of every server
		// that was ever primary (the dump's position names only the latest GTID of a
		// domain). Without it, a rebuilt node that is promoted later makes the others'
		// old transactions look errant.
		state, err := readVar(ctx, p, "gtid_binlog_state")
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", node, err)
		}
		dctx, cancel := withTimeout(ctx, 2*time.Minute)
		defer cancel()
		args := []string{"--socket", p.Socket, "--user", "root", "--single-transaction", "--gtid", "--master-data=2", "--databases", "sandbox"}
		if ok, err := hasSchema(ctx, p, "baton"); err != nil {
			return fmt.Errorf("rebuild %s: %w", node, err)
		} else if ok { // made by the agents' bootstrap: absent from a sandbox without agents
			args = append(args, "baton")
		}
		var stderr bytes.Buffer
		dumpCmd := exec.CommandContext(dctx, "mariadb-dump", args...)
		dumpCmd.Stderr = &stderr
		dump, err := dumpCmd.Output()
		if err != nil {
			return fmt.Errorf("rebuild %s: dump %s: %w: %s", node, from, err, strings.TrimSpace(stderr.String()))
		}
		m := gtidPosLine.FindSubmatch(dump)
		if m == nil {
			return fmt.Errorf("rebuild %s: the dump of %s carries no GTID position", node, from)
		}
		load := exec.CommandContext(dctx, "mariadb", "--socket", n.Socket, "--user", "root")
		load.Stdin = bytes.NewReader(append([]byte("SET sql_log_bin = 0;\n"), dump...))
		if out, err := load.CombinedOutput(); err != nil {
			return fmt.Errorf("rebuild %s: load the dump: %w: %s", node, err, strings.TrimSpace(string(out)))
		}
		if err := rootExec(ctx, n, 10*time.Second,
			"SET GLOBAL gtid_binlog_state = "+quote(state),
			"SET GLOBAL gtid_slave_pos = "+quote(string(m[1]))); err != nil {
			return fmt.Errorf("rebuild %s: %w", node, err)
		}
		if err := c.follow(ctx, n, p); err != nil {
			return fmt.Errorf("rebuild %s: follow %s: %w", node, from, err)
		}
		if n.AgentConfig != "" {
			return c.startAgent(n)
		}
		return nil
	})
}

// readVar reads a global variable of node n as root.
func readVar(ctx context.Context, n *Node, name string) (string, error) {
	db, err := openSocketDB(n.Socket, "root", "")
	if err != nil {
		return "", err
	}
	defer db.Close()
	qctx, cancel := withTimeout(ctx, 5*time.Second)
	defer cancel()
	var v string
	if err := db.QueryRowContext(qctx, "SELECT @@GLOBAL."+name).Scan(&v); err != nil {
		return "", fmt.Errorf("read %s on %s: %w", name, n.Name, err)
	}
	return v, nil
}

// hasSchema says whether node n has the schema called name.
func hasSchema(ctx context.Context, n *Node, name string) (bool, error) {
	db, err := openSocketDB(n.Socket, "root", "")
	if err != nil {
		return false, err
	}
	defer db.Close()
	qctx, cancel := withTimeout(ctx, 5*time.Second)
	defer cancel()
	var k int
	if err := db.QueryRowContext(qctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&k); err != nil {
		return false, fmt.Errorf("list schemas on %s: %w", n.Name, err)
	}
	return k > 0, nil
}
