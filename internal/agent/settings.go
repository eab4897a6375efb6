package agent

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// settingsTimeout bounds the read of the server settings the agent warns about.
const settingsTimeout = 2 * time.Second

// serverSettings reads the server variables settingWarnings looks at; a variable
// the server does not have is absent from the map.
func serverSettings(ctx context.Context, db *sql.DB) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, settingsTimeout)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('skip_slave_start', 'skip_replica_start', "+
		"'rpl_semi_sync_slave_kill_conn_timeout')")
	if err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	defer rows.Close()
	vars := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, fmt.Errorf("read server settings: %w", err)
		}
		vars[strings.ToLower(name)] = strings.ToUpper(value)
	}
	return vars, rows.Err()
}

// settingWarnings says which of the server's settings work against Baton, each with
// what to set and why. Settings the server does not report are not judged: MySQL 8
// reports skip_replica_start (a unit-tested case here: no MySQL server runs in the
// tests), MariaDB 10.11 has skip_slave_start as a start-up option only and reports
// nothing, so there the README's requirement is all there is.
func settingWarnings(vars map[string]string, semiSync bool) []string {
	var out []string
	skip, ok := vars["skip_replica_start"]
	if !ok {
		skip, ok = vars["skip_slave_start"]
	}
	if ok && skip != "ON" && skip != "1" {
		out = append(out, "skip_slave_start (skip_replica_start) is OFF: a replica that restarts reconnects to its old source "+
			"before its agent points it at the primary of record; after a failover that source may be the deposed primary, "+
			"whose pending commits it would fetch and acknowledge, and then hold as errant transactions: "+
			"set skip_slave_start=ON in the server's configuration")
	}
	// MariaDB: a semi-sync replica's IO thread, told to stop, first connects to its
	// source to kill its dump thread, for up to this many seconds; a frozen source
	// accepts the connection and never answers. 0 is no limit (measured: STOP SLAVE
	// waits for ever), and the rank of a failover waits 1.5 s for the IO threads.
	// Judged when Baton runs semi-sync (semi_sync: true), not by the replica side's
	// state now: the primary has it off, and needs the value once it is demoted.
	if kill, ok := vars["rpl_semi_sync_slave_kill_conn_timeout"]; ok && semiSync {
		switch {
		case kill == "0":
			out = append(out, "rpl_semi_sync_slave_kill_conn_timeout is 0, which is no limit: a replica told to stop replicating from a "+
				"frozen primary waits for it for ever, and such a primary is never failed over (every try is refused at rank): "+
				"set rpl_semi_sync_slave_kill_conn_timeout=1")
		case kill != "1":
			out = append(out, "rpl_semi_sync_slave_kill_conn_timeout is "+kill+" s: a frozen primary's failover waits that long for "+
				"the replicas' IO threads to stop, and a try that waits more than 1.5 s is refused and made again later: "+
				"set rpl_semi_sync_slave_kill_conn_timeout=1")
		}
	}
	return out
}
