package cluster

import (
	"encoding/json"
	"strings"
	"testing"
)

// The kinds are stored in etcd and printed by `baton history --json`: their
// spelling is the wire format.
func TestKindWireFormat(t *testing.T) {
	in := mustJSON(Intent{Kind: FlowSwitchover, Epoch: 3, From: "db1"})
	if !strings.Contains(in, `"kind":"switchover"`) {
		t.Errorf("intent = %s, want kind switchover", in)
	}
	var ev Event
	if err := json.Unmarshal([]byte(`{"kind":"bootstrap","to":"db1","epoch":1}`), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != EventBootstrap {
		t.Errorf("event kind = %q, want %q", ev.Kind, EventBootstrap)
	}
	for _, tc := range []struct {
		a         Action
		flow      FlowKind
		event     EventKind
		pre, post HookStage
	}{
		{Failover, FlowFailover, EventFailover, HookPreFailover, HookPostFailover},
		{Switchover, FlowSwitchover, EventSwitchover, HookPreSwitchover, HookPostSwitchover},
	} {
		k := tc.a.Flow()
		if k != tc.flow || k.Event() != tc.event || k.PreHook() != tc.pre || k.PostHook() != tc.post {
			t.Errorf("%s: flow %q event %q hooks %q %q", tc.a, k, k.Event(), k.PreHook(), k.PostHook())
		}
		if !k.PreHook().Valid() || !k.PostHook().Valid() {
			t.Errorf("%s: hook stages not valid", tc.a)
		}
	}
	if k := Bootstrap.Flow(); k != "" {
		t.Errorf("bootstrap.Flow() = %q, want none", k)
	}
	if HookStage("pre_bootstrap").Valid() {
		t.Error("pre_bootstrap is not a hook stage")
	}
}
