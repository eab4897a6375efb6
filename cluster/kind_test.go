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

// TestStepOutcome: a best-effort step that failed in a flow that went on is not
// called an error; one that stopped the flow is.
func TestStepOutcome(t *testing.T) {
	for _, tc := range []struct {
		s    Step
		want string
	}{
		{Step{Name: "rank", Note: "db2: caught up"}, "db2: caught up"},
		{Step{Name: "fence_old_primary", Error: "i/o timeout", BestEffort: true}, "not done, the flow went on without it: i/o timeout"},
		{Step{Name: "catchup", Error: "db2 did not apply 0-1-100 within 10s"}, "error: db2 did not apply 0-1-100 within 10s"},
	} {
		if got := tc.s.Outcome(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.s.Name, got, tc.want)
		}
	}
}
