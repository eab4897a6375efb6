package cluster

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

var clusterPolicy = Policy{FailoverBlock: 5 * time.Minute, ConfirmLag: time.Second, SwitchoverMaxLag: time.Second}

func TestEffectivePolicy(t *testing.T) {
	own := Policy{FailoverBlock: time.Minute, ConfirmLag: 2 * time.Second, SwitchoverMaxLag: 3 * time.Second}
	cases := []struct {
		name    string
		snap    Snapshot
		own     Policy
		want    Policy
		source  PolicySource
		wantErr bool
	}{
		{"etcd wins over the own file", Snapshot{Policy: &PolicyRecord{Policy: clusterPolicy}}, own, clusterPolicy, PolicyFromEtcd, false},
		{"etcd with no anti-flap is still etcd's", Snapshot{Policy: &PolicyRecord{Policy: Policy{ConfirmLag: time.Second}}}, own,
			Policy{ConfirmLag: time.Second}, PolicyFromEtcd, false},
		{"missing key: own file", Snapshot{}, own, own, PolicyFromFile, false},
		{"unreadable key: own file", Snapshot{PolicyErr: "parse policy: unexpected EOF"}, own, own, PolicyFromFile, false},
		{"zero record in etcd is not a policy", Snapshot{Policy: &PolicyRecord{}}, own, own, PolicyFromFile, false},
		{"nothing valid anywhere: refused", Snapshot{}, Policy{}, Policy{}, PolicyUnknown, true},
		{"zero etcd record and zero own: refused", Snapshot{Policy: &PolicyRecord{}}, Policy{}, Policy{}, PolicyUnknown, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, src, _, err := EffectivePolicy(tc.snap, tc.own)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrNoPolicy)) {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want || src != tc.source {
				t.Fatalf("got %v from %s, want %v from %s", got, src, tc.want, tc.source)
			}
		})
	}
}

func TestPolicyDisagreements(t *testing.T) {
	eff := &PolicyRecord{Policy: clusterPolicy, SetBy: "db1"}
	other := clusterPolicy
	other.ConfirmLag = 2 * time.Second
	third := clusterPolicy
	third.FailoverBlock, third.SwitchoverMaxLag = 0, 5*time.Second
	same := clusterPolicy
	cases := []struct {
		name  string
		eff   *PolicyRecord
		nodes map[string]NodeStatus
		want  []PolicyDisagreement
	}{
		{"all agree", eff, map[string]NodeStatus{"db1": {Policy: &same}, "db2": {Policy: &same}}, nil},
		{"one differs", eff, map[string]NodeStatus{"db1": {Policy: &same}, "db2": {Policy: &other}},
			[]PolicyDisagreement{{Node: "db2", Diff: []string{"confirm_lag 2s (cluster: 1s)"}}}},
		{"two differ, sorted, every field named", eff, map[string]NodeStatus{"db3": {Policy: &third}, "db2": {Policy: &other}},
			[]PolicyDisagreement{
				{Node: "db2", Diff: []string{"confirm_lag 2s (cluster: 1s)"}},
				{Node: "db3", Diff: []string{"failover_block 0s (cluster: 5m0s)", "switchover_max_lag 5s (cluster: 1s)"}},
			}},
		{"a node that publishes none is skipped", eff, map[string]NodeStatus{"db2": {}}, nil},
		{"no cluster policy: nothing to compare with", nil, map[string]NodeStatus{"db2": {Policy: &other}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := PolicyDisagreements(tc.eff, tc.nodes); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParsePolicyRecord(t *testing.T) {
	cases := []struct {
		name, json string
		ok         bool
	}{
		{"valid", `{"policy":{"failover_block_ns":300000000000,"confirm_lag_ns":1000000000,"switchover_max_lag_ns":1000000000},"set_by":"db1"}`, true},
		{"empty object is not a permissive policy", `{}`, false},
		{"missing confirm_lag", `{"policy":{"failover_block_ns":0,"switchover_max_lag_ns":0}}`, false},
		{"negative block", `{"policy":{"failover_block_ns":-1,"confirm_lag_ns":1}}`, false},
		{"unknown field (a newer writer)", `{"policy":{"confirm_lag_ns":1,"failover_blok_ns":5}}`, false},
		{"not json", `failover_block: 5m`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePolicyRecord([]byte(tc.json))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestPolicySourceString(t *testing.T) {
	for s, want := range map[PolicySource]string{PolicyUnknown: "unknown", PolicyFromEtcd: "etcd", PolicyFromFile: "own file"} {
		if s.String() != want {
			t.Errorf("%d: %s, want %s", int(s), s, want)
		}
	}
}
