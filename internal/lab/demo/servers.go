package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/sandbox"
)

// binlogTail returns a server's gtid_binlog_pos and the last GTID its binlog files
// on disk really hold, as mariadb-binlog reads them: after a binlog write fails on a
// full disk the first runs ahead of the second. (SHOW BINLOG EVENTS is no help there:
// it reads up to where the server believes the file ends, and fails.)
func binlogTail(ctx context.Context, c *sandbox.Cluster, n *sandbox.Node) (pos, written string, err error) {
	db, err := c.RootDB(n.Name)
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return "", "", fmt.Errorf("read gtid_binlog_pos: %w", err)
	}
	index, err := os.ReadFile(filepath.Join(n.Datadir, "mysql-bin.index"))
	if err != nil {
		return "", "", fmt.Errorf("list binlogs: %w", err)
	}
	files := strings.Fields(string(index))
	for i := len(files) - 1; i >= 0 && written == ""; i-- {
		path := files[i]
		if !filepath.IsAbs(path) {
			path = filepath.Join(n.Datadir, path)
		}
		// It exits non-zero on a truncated last event, after printing what it read.
		out, rerr := exec.CommandContext(ctx, "mariadb-binlog", path).Output()
		if len(out) == 0 && rerr != nil {
			return "", "", fmt.Errorf("read binlog %s: %w", path, rerr)
		}
		written = lastGTID(string(out))
	}
	return pos, written, nil
}

var (
	gtidEvent = regexp.MustCompile(`\tGTID (\d+-\d+-\d+)`)
	gtidList  = regexp.MustCompile(`\tGtid list \[([^\]]*)\]`)
)

// lastGTID returns the last GTID event of one binlog file as mariadb-binlog prints
// it, or the GTID list the file starts with when it holds no transaction.
func lastGTID(dump string) string {
	if m := gtidEvent.FindAllStringSubmatch(dump, -1); len(m) > 0 {
		return m[len(m)-1][1]
	}
	if m := gtidList.FindStringSubmatch(dump); m != nil {
		return m[1]
	}
	return ""
}

func countLines(path, s string) int {
	b, err := readFrom(path, 0)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// recoveryLines picks from a server's error log, from offset on, the lines that say
// what a restart did with the transactions it found.
func recoveryLines(path string, from int64) []string {
	b, err := readFrom(path, from)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Recovering after a crash") || strings.Contains(line, "olled back") ||
			strings.Contains(line, "runcat") || strings.Contains(line, "replication starts at GTID position") {
			out = append(out, strings.TrimSpace(stripLogPrefix(line)))
		}
	}
	return out
}

// lastLineWith returns the last line of the file, from offset on, containing s.
func lastLineWith(path, s string, from int64) string {
	b, err := readFrom(path, from)
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return strings.TrimSpace(stripLogPrefix(lines[i]))
		}
	}
	return ""
}

// errorLogPrefix is the date, time and thread id that start a mariadbd error log
// line ("2026-11-22  2:48:35 0 "): the hour is padded with a space.
var errorLogPrefix = regexp.MustCompile(`^\d{4}-\d\d-\d\d +\d?\d:\d\d:\d\d +\d+ `)

// stripLogPrefix drops the date, time and thread id from an error log line.
func stripLogPrefix(line string) string {
	return errorLogPrefix.ReplaceAllString(line, "")
}

func readFrom(path string, from int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func vipAddr(c *sandbox.Cluster) string {
	ip, _, err := net.ParseCIDR(c.VIP)
	if err != nil {
		return c.VIP
	}
	return net.JoinHostPort(ip.String(), "3306")
}

func msString(ms int64) string {
	if ms < 0 {
		return "never"
	}
	return fmt.Sprintf("%.2fs", float64(ms)/1000)
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func firstN(s []int64, n int) []int64 {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
