package detector

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// Schema names. The heartbeat is binlogged and reaches every replica; the storage
// probe's rows are written with sql_log_bin=0 and so differ from server to server.
const (
	Schema         = "baton"
	HeartbeatTable = "heartbeat"
	StorageTable   = "storage_probe"
)

// bootstrapTimeout bounds Bootstrap when the caller's context has no earlier deadline.
const bootstrapTimeout = 10 * time.Second

var schemaDDL = []struct{ table, ddl string }{
	{HeartbeatTable, "CREATE TABLE IF NOT EXISTS " + Schema + "." + HeartbeatTable + ` (
  node      VARCHAR(64)     NOT NULL PRIMARY KEY COMMENT 'who wrote the row: the primary, or a peer probing it',
  seq       BIGINT UNSIGNED NOT NULL,
  ts        DATETIME(6)     NOT NULL COMMENT 'UTC_TIMESTAMP(6) of the server that took the write',
  server_id INT UNSIGNED    NOT NULL,
  epoch     BIGINT UNSIGNED NOT NULL DEFAULT 0 COMMENT 'the primary epoch the writer knew'
) ENGINE=InnoDB COMMENT='Baton write probe: one binlogged upsert per probe; replicas compute lag from it'`},
	{StorageTable, "CREATE TABLE IF NOT EXISTS " + Schema + "." + StorageTable + ` (
  node VARCHAR(64)     NOT NULL PRIMARY KEY,
  seq  BIGINT UNSIGNED NOT NULL,
  ts   DATETIME(6)     NOT NULL
) ENGINE=InnoDB COMMENT='Baton storage probe: written with sql_log_bin=0, rows differ per server'`},
}

// Bootstrap creates the baton schema and its tables where they are missing. Run it on
// the primary: the DDL is binlogged, so replicas get the tables through replication.
// It refuses to create anything on a read_only server, where a privileged user's DDL
// would make errant GTIDs. Nothing is written when everything exists, so running it
// at every start costs no GTIDs.
//
// The probes never create tables: on a full disk CREATE TABLE fails at once while an
// INSERT hangs, and the hang is what the write probe must see.
func Bootstrap(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, bootstrapTimeout)
	defer cancel()
	missing, err := missingTables(ctx, db)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if len(missing) == 0 {
		return nil
	}
	var ro int
	if err := db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&ro); err != nil {
		return fmt.Errorf("bootstrap: read read_only: %w", err)
	}
	if ro != 0 {
		return fmt.Errorf("bootstrap: %s.%s is missing and the server is read_only: run the bootstrap on the primary", Schema, missing[0])
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+Schema); err != nil {
		return fmt.Errorf("bootstrap: create database %s: %w", Schema, err)
	}
	for _, t := range schemaDDL {
		for _, m := range missing {
			if m != t.table {
				continue
			}
			if _, err := conn.ExecContext(ctx, t.ddl); err != nil {
				return fmt.Errorf("bootstrap: create table %s.%s: %w", Schema, t.table, err)
			}
		}
	}
	return nil
}

func missingTables(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx,
		"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?)",
		Schema, HeartbeatTable, StorageTable)
	if err != nil {
		return nil, fmt.Errorf("list baton tables: %w", err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list baton tables: %w", err)
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list baton tables: %w", err)
	}
	var missing []string
	for _, t := range schemaDDL {
		if !have[t.table] {
			missing = append(missing, t.table)
		}
	}
	return missing, nil
}

// Locations are where a server writes: its data, binary logs and relay logs, each a
// directory; empty when the server has none (binary logging off).
type Locations struct {
	Datadir, BinlogDir, RelayLogDir string
}

// AskLocations asks a server where it writes, for a detector on the same host to
// statfs those filesystems.
func AskLocations(ctx context.Context, db *sql.DB) (Locations, error) {
	ctx, cancel := context.WithTimeout(ctx, bootstrapTimeout)
	defer cancel()
	var dd string
	var binlog, relay sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT @@datadir, @@log_bin_basename, @@relay_log_basename").Scan(&dd, &binlog, &relay); err != nil {
		return Locations{}, fmt.Errorf("read the datadir, binlog and relay log paths: %w", err)
	}
	if dd == "" {
		return Locations{}, errors.New("read the datadir, binlog and relay log paths: server reports an empty datadir")
	}
	loc := Locations{Datadir: filepath.Clean(dd)}
	dir := func(base sql.NullString) string {
		if !base.Valid || base.String == "" {
			return ""
		}
		p := base.String
		if !filepath.IsAbs(p) {
			p = filepath.Join(loc.Datadir, p)
		}
		return filepath.Dir(p)
	}
	loc.BinlogDir, loc.RelayLogDir = dir(binlog), dir(relay)
	return loc, nil
}
