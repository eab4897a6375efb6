package agent

import (
	"strings"
	"testing"
)

func TestSettingWarnings(t *testing.T) {
	cases := []struct {
		name string
		vars map[string]string
		want string // a substring of the one warning; "" for none
	}{
		{"MariaDB, skip_slave_start on", map[string]string{"skip_slave_start": "ON"}, ""},
		{"MariaDB, skip_slave_start off", map[string]string{"skip_slave_start": "OFF"}, "skip_slave_start=ON"},
		{"MySQL 8, skip_replica_start on", map[string]string{"skip_replica_start": "ON", "skip_slave_start": "ON"}, ""},
		{"MySQL 8, skip_replica_start off", map[string]string{"skip_replica_start": "OFF", "skip_slave_start": "OFF"}, "reconnects to its old source"},
		{"not reported: not judged", map[string]string{}, ""},
		{"semi-sync replica, kill_conn_timeout 1", map[string]string{"rpl_semi_sync_slave_enabled": "ON", "rpl_semi_sync_slave_kill_conn_timeout": "1"}, ""},
		{"semi-sync replica, kill_conn_timeout 0", map[string]string{"rpl_semi_sync_slave_enabled": "ON", "rpl_semi_sync_slave_kill_conn_timeout": "0"}, "never failed over"},
		{"semi-sync replica, default 5", map[string]string{"rpl_semi_sync_slave_enabled": "ON", "rpl_semi_sync_slave_kill_conn_timeout": "5"}, "is 5 s"},
		{"no semi-sync replica side: not called", map[string]string{"rpl_semi_sync_slave_enabled": "OFF", "rpl_semi_sync_slave_kill_conn_timeout": "0"}, ""},
		{"nothing read", nil, ""},
	}
	for _, tc := range cases {
		got := settingWarnings(tc.vars)
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%s: warnings %q, want none", tc.name, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
			t.Errorf("%s: warnings %q, want one with %q", tc.name, got, tc.want)
		}
	}
}
