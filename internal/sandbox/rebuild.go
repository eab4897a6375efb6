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
		dctx, cancel := withTimeout(ctx, 2*time.Minute)
		defer cancel()
		dump, err := exec.CommandContext(dctx, "mariadb-dump", "--socket", p.Socket, "--user", "root",
			"--single-transaction", "--gtid", "--master-data=2", "--databases", "sandbox", "baton").Output()
		if err != nil {
			return fmt.Errorf("rebuild %s: dump %s: %w", node, from, err)
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
		if err := rootExec(ctx, n, 10*time.Second, "SET GLOBAL gtid_slave_pos = "+quote(string(m[1]))); err != nil {
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
