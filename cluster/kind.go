package cluster

// FlowKind is the kind of a flow that moves the primary: what an Intent announces.
// Its string is what is stored in etcd, so a value never changes spelling.
type FlowKind string

// Flow kinds.
const (
	FlowFailover   FlowKind = "failover"   // replace a failed primary
	FlowSwitchover FlowKind = "switchover" // move a healthy primary, planned
)

func (k FlowKind) String() string { return string(k) }

// Flow returns the kind of flow that carries out a; "" for an action that is not a
// flow.
func (a Action) Flow() FlowKind {
	switch a {
	case Failover:
		return FlowFailover
	case Switchover:
		return FlowSwitchover
	}
	return ""
}

// Event returns the kind of the history event the flow records.
func (k FlowKind) Event() EventKind { return EventKind(k) }

// PreHook and PostHook return the hook stages that run around a flow of kind k.
func (k FlowKind) PreHook() HookStage  { return HookStage("pre_" + k) }
func (k FlowKind) PostHook() HookStage { return HookStage("post_" + k) }

// EventKind is the kind of a history entry, as stored in etcd.
type EventKind string

// Event kinds. Only these are written; an entry read back may carry another (written
// by a newer version), which is printed as it is.
const (
	EventBootstrap  EventKind = "bootstrap"  // the first primary of record
	EventFailover   EventKind = "failover"   // a failed primary replaced
	EventSwitchover EventKind = "switchover" // a healthy primary moved
	EventRejoin     EventKind = "rejoin"     // a quarantined node forgot its errant GTIDs and follows the primary
	EventFence      EventKind = "fence"      // the coordinator fenced a writable server whose agent is gone (a deposed primary)
	EventRebuild    EventKind = "rebuild"    // a node rebuilt from a donor's backup, its old datadir kept
	EventUnblock    EventKind = "unblock"    // an operator lifted the anti-flap block (baton unblock)
)

func (k EventKind) String() string { return string(k) }

// HookStage says when an operator's hook runs. Its string is the configuration
// file's key and what a hook is told.
type HookStage string

// Hook stages.
const (
	HookPreFailover    HookStage = "pre_failover"
	HookPostFailover   HookStage = "post_failover"
	HookPreSwitchover  HookStage = "pre_switchover"
	HookPostSwitchover HookStage = "post_switchover"
)

func (s HookStage) String() string { return string(s) }

// Valid says whether s is one of the four stages.
func (s HookStage) Valid() bool {
	switch s {
	case HookPreFailover, HookPostFailover, HookPreSwitchover, HookPostSwitchover:
		return true
	}
	return false
}
