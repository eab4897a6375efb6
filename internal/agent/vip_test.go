package agent

import (
	"testing"

	"github.com/baton-ha/baton/cluster"
)

func TestKeepLeftoverVIP(t *testing.T) {
	primaryIs := func(node string) cluster.Snapshot {
		return cluster.Snapshot{Rev: 7, View: cluster.View{Primary: cluster.Primary{Node: node, Epoch: 3}}}
	}
	for _, tc := range []struct {
		name string
		snap cluster.Snapshot
		node string
		want bool
	}{
		{"this node is the primary of record: the restart costs no write", primaryIs("db1"), "db1", true},
		{"another node is: drop it", primaryIs("db2"), "db1", false},
		{"no primary of record yet", cluster.Snapshot{Rev: 7}, "db1", false},
		{"etcd not read (zero snapshot)", cluster.Snapshot{}, "db1", false},
		{"a zero snapshot naming nobody is never this node", cluster.Snapshot{View: cluster.View{Primary: cluster.Primary{Node: "db1"}}}, "db1", false},
	} {
		if got := keepLeftoverVIP(tc.snap, tc.node); got != tc.want {
			t.Errorf("%s: keepLeftoverVIP = %v, want %v", tc.name, got, tc.want)
		}
	}
}
