package agent

import (
	"strings"
	"testing"
)

func TestSettingWarnings(t *testing.T) {
	cases := []struct {
		name     string
		vars     map[string]string
		semiSync bool   // Baton's semi_sync setting
		want     string // a substring of the one warning; "" for none
	}{
		{"MariaDB, skip_slave_start on", map[string]string{"skip_slave_start": "ON"}, false, ""},
		{"MariaDB, skip_slave_start off", map[string]string{"skip_slave_start": "OFF"}, false, "skip_slave_start=ON"},
		{"MySQL 8, skip_replica_start on", map[string]string{"skip_replica_start": "ON", "skip_slave_start": "ON"}, false, ""},
		{"MySQL 8, skip_replica_start off", map[string]string{"skip_replica_start": "OFF", "skip_slave_start": "OFF"}, false, "reconnects to its old source"},
		{"not reported: not judged", map[string]string{}, true, ""},
		{"semi-sync, kill_conn_timeout 1", map[string]string{"rpl_semi_sync_slave_kill_conn_timeout": "1"}, true, ""},
		{"semi-sync, kill_conn_timeout 0", map[string]string{"rpl_semi_sync_slave_kill_conn_timeout": "0"}, true, "never failed over"},
		{"semi-sync, the default 5", map[string]string{"rpl_semi_sync_slave_kill_conn_timeout": "5"}, true, "is 5 s"},
		{"no semi-sync: not used", map[string]string{"rpl_semi_sync_slave_kill_conn_timeout": "0"}, false, ""},
		{"nothing read", nil, true, ""},
	}
	for _, tc := range cases {
		got := settingWarnings(tc.vars, tc.semiSync)
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%s: warnings %q, want none", tc.name, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
			t.Errorf("%s: warnings %q, want one with %q", tc.name, got, tc.want)
		}
	}
}
