//go:build integration

package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// TestServerSettingsOnMariaDB: the settings the agent warns about, read from a real
// MariaDB 10.11 replica as the README configures it (semi-sync replica side on,
// rpl_semi_sync_slave_kill_conn_timeout=1): no warning; the same replica with the
// timeout at 0 (no limit) is warned about.
func TestServerSettingsOnMariaDB(t *testing.T) {
	c := sandboxtest.Up(t, sandbox.Spec{Name: "agt-sets", Nodes: 2, SemiSync: true})
	db, err := c.RootDB("db2")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	vars, err := serverSettings(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if vars["rpl_semi_sync_slave_kill_conn_timeout"] != "1" {
		t.Fatalf("read %v: want the semi-sync replica's kill timeout 1", vars)
	}
	if w := settingWarnings(vars, true); len(w) != 0 {
		t.Fatalf("warnings %q for the README's settings", w)
	}
	if _, err := db.ExecContext(ctx, "SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = 0"); err != nil {
		t.Fatal(err)
	}
	if vars, err = serverSettings(ctx, db); err != nil {
		t.Fatal(err)
	}
	if w := settingWarnings(vars, true); len(w) != 1 || !strings.Contains(w[0], "never failed over") {
		t.Fatalf("warnings %q with the timeout at 0: want one saying the primary is never failed over", w)
	}
}
