package agent

// The MySQL/MariaDB privileges Baton needs, and the start-up check that names the
// missing ones instead of letting a failover fail on them later. The MariaDB lists are
// verified against MariaDB 10.11 by grants_test.go (each privilege is shown to be
// needed by a statement Baton runs, and the whole list to be enough for Baton's
// operations); the MySQL 8 lists follow MySQL's documentation and are not verified
// here. docs/configuration.md ("MySQL grants") has them as GRANT statements.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// grantsTimeout bounds CheckGrants when the caller's context allows longer.
const grantsTimeout = 5 * time.Second

// Privilege is one privilege Baton needs, where, and why.
type Privilege struct {
	// Name is the privilege as SHOW GRANTS prints it, e.g. "READ_ONLY ADMIN".
	Name string
	// Schema is "" for a global privilege (ON *.*), else the database (ON baton.*).
	Schema string
	// Why says which of Baton's statements need it.
	Why string
	// bySuper: the server also accepts SUPER for it (MariaDB 10.11: verified).
	bySuper bool
}

// On returns where the privilege is granted: "*.*" or "baton.*".
func (p Privilege) On() string {
	if p.Schema == "" {
		return "*.*"
	}
	return p.Schema + ".*"
}

// String returns e.g. "READ_ONLY ADMIN ON *.*".
func (p Privilege) String() string { return p.Name + " ON " + p.On() }

// AdminPrivileges returns what Baton's admin account needs on every server of a
// cluster of flavor f. semiSync adds what turning semi-sync's source side on needs.
func AdminPrivileges(f replication.Flavor, semiSync bool) []Privilege {
	schema := func(name, why string) Privilege { return Privilege{Name: name, Schema: detector.Schema, Why: why} }
	data := []Privilege{
		schema("SELECT", "read the heartbeat for replication lag; the heartbeat upsert reads the row it updates"),
		schema("INSERT", "write probe (heartbeat) and storage probe"),
		schema("UPDATE", "write probe and storage probe upsert their row"),
		schema("CREATE", "create the baton schema and its tables at bootstrap"),
	}
	if f == replication.FlavorMySQL {
		out := []Privilege{
			{Name: "SYSTEM_VARIABLES_ADMIN", Why: "SET GLOBAL super_read_only/read_only (fence, promote), semi-sync variables, SET sql_log_bin=0 (storage probe)", bySuper: true},
			{Name: "REPLICATION_SLAVE_ADMIN", Why: "STOP/START REPLICA, CHANGE REPLICATION SOURCE TO", bySuper: true},
			{Name: "RELOAD", Why: "RESET REPLICA ALL when promoting"},
			{Name: "REPLICATION CLIENT", Why: "SHOW REPLICA STATUS", bySuper: true},
			{Name: "CONNECTION_ADMIN", Why: "KILL other accounts' connections when fencing", bySuper: true},
			{Name: "PROCESS", Why: "see other accounts' connections to kill them when fencing"},
		}
		return append(out, data...)
	}
	out := []Privilege{
		// Not implied by SUPER since MariaDB 10.11.
		{Name: "READ_ONLY ADMIN", Why: "SET GLOBAL read_only (fence, promote, follow); write the storage probe on a read_only replica"},
		{Name: "REPLICATION SLAVE ADMIN", Why: "STOP/START SLAVE, CHANGE MASTER TO, SET GLOBAL gtid_slave_pos, rpl_semi_sync_slave_enabled", bySuper: true},
		// REPLICATION SLAVE ADMIN is not enough for RESET SLAVE, and SUPER is not either.
		{Name: "RELOAD", Why: "RESET SLAVE ALL when promoting"},
		{Name: "SLAVE MONITOR", Why: "SHOW SLAVE STATUS", bySuper: true},
		{Name: "BINLOG ADMIN", Why: "SET sql_log_bin=0 for the storage probe; SET GLOBAL gtid_binlog_state when a quarantined node rejoins", bySuper: true},
		{Name: "BINLOG MONITOR", Why: "SHOW BINARY LOGS, SHOW BINLOG EVENTS, SHOW MASTER STATUS: a quarantined node's errant GTIDs looked up in its binlog (SUPER is not enough for SHOW BINLOG EVENTS)"},
		{Name: "CONNECTION ADMIN", Why: "KILL other accounts' connections when fencing", bySuper: true},
		{Name: "PROCESS", Why: "see other accounts' connections to kill them when fencing"},
		{Name: "REPLICATION SLAVE", Why: "read a quarantined node's errant transactions from its binary log (mariadb-binlog --read-from-remote-server) into the archive"},
		{Name: "BINLOG REPLAY", Why: "undo a quarantined node's errant transactions (the BINLOG statements of mariadb-binlog --flashback); apply a failed primary's salvaged transactions with their GTIDs", bySuper: true},
	}
	if semiSync {
		out = append(out, Privilege{Name: "REPLICATION MASTER ADMIN", Why: "SET GLOBAL rpl_semi_sync_master_enabled when promoting", bySuper: true})
	}
	return append(out, data...)
}

// ReplicationPrivileges returns what the account replicas connect to their source
// with needs (on every server: any of them may become the source).
func ReplicationPrivileges(f replication.Flavor) []Privilege {
	return []Privilege{{Name: "REPLICATION SLAVE", Why: "replicas connect to the primary with this account"}}
}

// GrantOptions says which account CheckGrants checks.
type GrantOptions struct {
	// Flavor of the server; FlavorUnknown asks the server.
	Flavor replication.Flavor
	// SemiSync: the cluster runs semi-sync (Config.SemiSync).
	SemiSync bool
	// Replicates: replicas connect with this account too (no mysql.replication.user).
	Replicates bool
}

// ErrMissingGrants is wrapped by every MissingGrantsError.
var ErrMissingGrants = errors.New("agent: missing mysql privileges")

// MissingGrantsError names the privileges an account lacks and how to grant them.
type MissingGrantsError struct {
	Flavor  replication.Flavor
	Account string // 'user'@'host'
	Missing []Privilege
}

func (e *MissingGrantsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mysql account %s lacks ", e.Account)
	for i, p := range e.Missing {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", p, p.Why)
	}
	b.WriteString("; grant with: ")
	b.WriteString(strings.Join(GrantStatements(e.Account, e.Missing), "; "))
	return b.String()
}

// Unwrap lets errors.Is find ErrMissingGrants.
func (e *MissingGrantsError) Unwrap() error { return ErrMissingGrants }

// GrantStatements returns the GRANT statements that give account ('user'@'host') the
// privileges, one per level, in the order first seen.
func GrantStatements(account string, privs []Privilege) []string {
	var order []string
	by := map[string][]string{}
	for _, p := range privs {
		on := p.On()
		if _, ok := by[on]; !ok {
			order = append(order, on)
		}
		by[on] = append(by[on], p.Name)
	}
	out := make([]string, 0, len(order))
	for _, on := range order {
		out = append(out, "GRANT "+strings.Join(by[on], ", ")+" ON "+on+" TO "+account)
	}
	return out
}

// CheckGrants checks that the account db connects as has every privilege Baton's admin
// account needs (AdminPrivileges, plus ReplicationPrivileges when opts.Replicates),
// and returns a *MissingGrantsError naming each missing one with the GRANT statements
// that fix it. It reads SHOW GRANTS: the grants of the account, of its active role
// (MariaDB) and of PUBLIC. ALL PRIVILEGES covers everything at its level; a global
// privilege covers the baton schema; a database pattern (`bat%`) counts where it
// matches "baton". Table and column grants are not counted.
func CheckGrants(ctx context.Context, db *sql.DB, opts GrantOptions) error {
	ctx, cancel := context.WithTimeout(ctx, grantsTimeout)
	defer cancel()
	f := opts.Flavor
	if f == replication.FlavorUnknown {
		var err error
		if f, err = serverFlavor(ctx, db); err != nil {
			return fmt.Errorf("check grants: %w", err)
		}
	}
	need := AdminPrivileges(f, opts.SemiSync)
	if opts.Replicates {
		need = append(need, ReplicationPrivileges(f)...)
	}
	return CheckPrivileges(ctx, db, f, need)
}

// CheckPrivileges checks that the account db connects as has every privilege in need,
// on a server of flavor f (FlavorUnknown: asked). See CheckGrants.
func CheckPrivileges(ctx context.Context, db *sql.DB, f replication.Flavor, need []Privilege) error {
	ctx, cancel := context.WithTimeout(ctx, grantsTimeout)
	defer cancel()
	// One connection: the active role is a property of the session.
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("check grants: connect: %w", err)
	}
	defer conn.Close()
	if f == replication.FlavorUnknown {
		if f, err = serverFlavor(ctx, conn); err != nil {
			return fmt.Errorf("check grants: %w", err)
		}
	}
	var user string
	if err := conn.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user); err != nil {
		return fmt.Errorf("check grants: read current user: %w", err)
	}
	lines, err := showGrants(ctx, conn, f)
	if err != nil {
		return fmt.Errorf("check grants of %s: %w", user, err)
	}
	g := parseGrants(f, lines)
	var missing []Privilege
	for _, p := range need {
		if !g.has(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return &MissingGrantsError{Flavor: f, Account: accountName(user), Missing: missing}
	}
	return nil
}

// rowQueryer is a *sql.DB or a *sql.Conn.
type rowQueryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func serverFlavor(ctx context.Context, db rowQueryer) (replication.Flavor, error) {
	var v, c string
	if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.version, @@GLOBAL.version_comment").Scan(&v, &c); err != nil {
		return replication.FlavorUnknown, fmt.Errorf("read server version: %w", err)
	}
	return replication.DetectFlavor(v, c), nil
}

// showGrants returns the grant lines that apply to the session. MariaDB's plain SHOW
// GRANTS lists the account's grants, its active role's and PUBLIC's (SHOW GRANTS FOR
// CURRENT_USER() leaves the role's out). MySQL's lists role names only, unless asked
// with USING the active roles.
func showGrants(ctx context.Context, conn *sql.Conn, f replication.Flavor) ([]string, error) {
	q := "SHOW GRANTS"
	if f == replication.FlavorMySQL {
		var roles sql.NullString
		if err := conn.QueryRowContext(ctx, "SELECT CURRENT_ROLE()").Scan(&roles); err != nil {
			return nil, fmt.Errorf("read active roles: %w", err)
		}
		if roles.Valid && roles.String != "" && roles.String != "NONE" {
			q = "SHOW GRANTS FOR CURRENT_USER() USING " + roles.String
		}
	}
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	return lines, nil
}

// accountName turns CURRENT_USER()'s user@host into 'user'@'host'.
func accountName(s string) string {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	return q(s[:i]) + "@" + q(s[i+1:])
}

// grants is what SHOW GRANTS said, by level.
type grants struct {
	flavor replication.Flavor
	global map[string]bool
	// schemas are database-level grants: a LIKE pattern and its privileges.
	schemas []schemaGrant
}

type schemaGrant struct {
	pattern string
	privs   map[string]bool
}

const allPrivileges = "ALL PRIVILEGES"

func (g grants) has(p Privilege) bool {
	if g.global[allPrivileges] || g.global[p.Name] {
		return true
	}
	if p.Schema == "" {
		return p.bySuper && g.global["SUPER"]
	}
	for _, s := range g.schemas {
		if (s.privs[allPrivileges] || s.privs[p.Name]) && likeMatch(s.pattern, p.Schema) {
			return true
		}
	}
	return false
}

// parseGrants reads the lines of SHOW GRANTS. Lines it does not understand (role
// grants, PROXY, routines, table and column grants) grant nothing here.
func parseGrants(f replication.Flavor, lines []string) grants {
	g := grants{flavor: f, global: map[string]bool{}}
	for _, line := range lines {
		privs, on, ok := parseGrantLine(line)
		if !ok {
			continue
		}
		set := map[string]bool{}
		for _, p := range privs {
			set[canonicalPrivilege(f, p)] = true
		}
		switch {
		case on == "*.*":
			for p := range set {
				g.global[p] = true
			}
		case strings.HasSuffix(on, ".*"):
			db, ok := unquoteIdent(strings.TrimSuffix(on, ".*"))
			if ok {
				g.schemas = append(g.schemas, schemaGrant{pattern: db, privs: set})
			}
		}
	}
	return g
}

// parseGrantLine splits "GRANT p1, p2 ON obj TO who ..." into its privileges and its
// object. Column privileges ("SELECT (`a`)") are dropped: they never cover a table.
func parseGrantLine(line string) (privs []string, on string, ok bool) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(strings.ToUpper(line), "GRANT ") {
		return nil, "", false
	}
	rest := line[len("GRANT "):]
	i := indexKeyword(rest, " ON ")
	if i < 0 {
		return nil, "", false // a role grant: GRANT `r` TO `u`@`h`
	}
	list, rest := rest[:i], rest[i+len(" ON "):]
	j := indexKeyword(rest, " TO ")
	if j < 0 {
		return nil, "", false
	}
	on = strings.TrimSpace(rest[:j])
	for _, p := range splitTopLevel(list) {
		p = strings.ToUpper(strings.Join(strings.Fields(p), " "))
		if p == "" || strings.Contains(p, "(") {
			continue
		}
		privs = append(privs, p)
	}
	return privs, on, true
}

// indexKeyword finds kw (upper case, with its spaces) outside backticks, quotes and
// parentheses, case-insensitively.
func indexKeyword(s, kw string) int {
	var quote byte
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '`' || c == '\'' || c == '"':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
		case depth == 0 && i+len(kw) <= len(s) && strings.EqualFold(s[i:i+len(kw)], kw):
			return i
		}
	}
	return -1
}

// splitTopLevel splits a privilege list at commas outside parentheses.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '`' || c == '\'':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// canonicalPrivilege maps the names a server may print for one privilege to the one
// AdminPrivileges uses. MariaDB 10.5+ made REPLICATION CLIENT an alias of BINLOG
// MONITOR and spells REPLICA for SLAVE in some names; MySQL's REPLICATION CLIENT is
// its own privilege.
func canonicalPrivilege(f replication.Flavor, p string) string {
	switch p {
	case "ALL":
		return allPrivileges
	case "REPLICATION REPLICA":
		return "REPLICATION SLAVE"
	}
	if f == replication.FlavorMySQL {
		return p
	}
	switch p {
	case "REPLICATION CLIENT":
		return "BINLOG MONITOR"
	case "REPLICA MONITOR":
		return "SLAVE MONITOR"
	case "REPLICATION REPLICA ADMIN":
		return "REPLICATION SLAVE ADMIN"
	case "REPLICATION PRIMARY ADMIN":
		return "REPLICATION MASTER ADMIN"
	}
	return p
}

// unquoteIdent reads a database name as SHOW GRANTS prints it: `name` (a doubled
// backtick is one) or bare.
func unquoteIdent(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	if s[0] != '`' {
		return s, !strings.ContainsAny(s, " `")
	}
	if len(s) < 2 || s[len(s)-1] != '`' {
		return "", false
	}
	return strings.ReplaceAll(s[1:len(s)-1], "``", "`"), true
}

// likeMatch matches s against a database-grant pattern: '%' any run, '_' any one
// character, '\' escapes the next one. Database names compare case-sensitively
// (lower_case_table_names=0, the Linux default).
func likeMatch(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for i < len(p) {
			switch p[i] {
			case '%':
				for k := j; k <= len(t); k++ {
					if match(i+1, k) {
						return true
					}
				}
				return false
			case '_':
				if j >= len(t) {
					return false
				}
			case '\\':
				if i+1 < len(p) {
					i++
				}
				if j >= len(t) || t[j] != p[i] {
					return false
				}
			default:
				if j >= len(t) || t[j] != p[i] {
					return false
				}
			}
			i++
			j++
		}
		return j == len(t)
	}
	return match(0, 0)
}

// GrantOptions returns what CheckGrants checks for this configuration: semi-sync as
// configured, and the replication privilege when no separate replication account is.
func (c Config) GrantOptions() GrantOptions {
	return GrantOptions{SemiSync: c.SemiSync, Replicates: c.MySQL.Replication.User == ""}
}
