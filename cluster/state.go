package cluster

import (
	"encoding/json"
	"fmt"
	"path"
	"time"

	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// Keys names the etcd keys of one cluster, all under /baton/<cluster>/.
type Keys struct{ Prefix string }

// NewKeys returns the keys of cluster.
func NewKeys(cluster string) Keys { return Keys{Prefix: Root + cluster + "/"} }

func (k Keys) Primary() string           { return k.Prefix + "primary" }
func (k Keys) Leader() string            { return k.Prefix + "leader" }
func (k Keys) Coordinator() string       { return k.Prefix + "coordinator" }
func (k Keys) Config() string            { return k.Prefix + "config" }
func (k Keys) Policy() string            { return k.Prefix + "policy" }
func (k Keys) Intent() string            { return k.Prefix + "intent" }
func (k Keys) Request() string           { return k.Prefix + "request" }
func (k Keys) NodesPrefix() string       { return k.Prefix + "nodes/" }
func (k Keys) Node(name string) string   { return k.NodesPrefix() + name }
func (k Keys) HistoryPrefix() string     { return k.Prefix + "history/" }
func (k Keys) RejoinPrefix() string      { return k.Prefix + "rejoin/" }
func (k Keys) Rejoin(node string) string { return k.RejoinPrefix() + node }
func (k Keys) History(rev int64) string  { return fmt.Sprintf("%s%020d", k.HistoryPrefix(), rev) }
func (k Keys) ErrantPrefix() string      { return k.Prefix + "errant/" }
func (k Keys) Errant(node string) string { return k.ErrantPrefix() + node }

// AccessCheck is where a starting agent checks its etcd permissions (a key on a
// short lease, deleted at once): nothing reads it.
func (k Keys) AccessCheck(node string) string { return k.Prefix + "access-check/" + node }

// NodeName returns the node name of a nodes/ key.
func (k Keys) NodeName(key string) string { return path.Base(key) }

// Primary is the primary of record. Epoch is the fencing token: it grows by one at
// every change, and every change compares it.
type Primary struct {
	Node string `json:"node"`
	// Addr is where the primary's server is reached (host:port): kept here because
	// the node's own status vanishes with its agent, when it is needed most.
	Addr string `json:"addr"`
	// ServerID and ServerUUID identify the server: whose GTIDs are its own writes.
	ServerID   uint32    `json:"server_id,omitempty"`
	ServerUUID string    `json:"server_uuid,omitempty"`
	Epoch      uint64    `json:"epoch"`
	Since      time.Time `json:"since"`
	// LastFailover is when the latest failover (not switchover) committed: the
	// start of the anti-flap window.
	LastFailover time.Time `json:"last_failover,omitempty"`
	// Executed is a GTID set the flow saw this server hold (apply) before it
	// committed it as primary: the catch-up target. The server only adds to it, so
	// a replica whose transactions it all contains has nothing the primary lacks and
	// may follow it before the primary publishes its own set (which it does once
	// promoted): its replicas are then connected when it turns writable, and its
	// first commits need not wait for them. "" when not known (a bootstrap, a record
	// written before it existed): then replicas wait for the published set.
	Executed string `json:"executed,omitempty"`
}

// Role is what a node is, as its agent sees it.
type Role string

// Roles.
const (
	RolePrimary     Role = "primary"     // the primary of record, writable, holds leader
	RoleReplica     Role = "replica"     // replicates from the primary of record
	RoleFenced      Role = "fenced"      // was primary, made read_only; waits to rejoin
	RoleQuarantined Role = "quarantined" // has errant transactions: a person must act
	RoleUnknown     Role = "unknown"     // the agent cannot tell yet (server unreachable)
)

// NodeStatus is what an agent publishes about its node under nodes/<name>, on its
// session lease: the key vanishes when the agent dies.
type NodeStatus struct {
	Node string `json:"node"`
	// Addr is where peers reach the node's server (host:port).
	Addr string `json:"addr"`
	// Agent is where the other agents reach this node's agent (its HTTP server,
	// host:port), "" when not known.
	Agent string `json:"agent,omitempty"`
	Role  Role   `json:"role"`
	// Archive is the latest file, on this node's host, where its agent archived
	// errant transactions before undoing or discarding them; "" when none.
	Archive string `json:"archive,omitempty"`
	// Verdict and Reason are the detector's, for the local server.
	Verdict detector.Verdict `json:"verdict"`
	Reason  string           `json:"reason,omitempty"`
	// VerdictSince is when the verdict last changed.
	VerdictSince time.Time `json:"verdict_since"`
	// ServerRead says the agent read its server's status at this pass; when false,
	// ReadOnly, GTID, Source and the thread states say nothing (zero values).
	ServerRead bool `json:"server_read"`
	ReadOnly   bool `json:"read_only"`
	// GTID is the executed GTID set (replication.Status.Executed), "" when unknown.
	GTID       string `json:"gtid"`
	Flavor     string `json:"flavor,omitempty"`
	ServerID   uint32 `json:"server_id,omitempty"`
	ServerUUID string `json:"server_uuid,omitempty"`
	// Source is the replication source host:port, "" on a primary.
	Source     string `json:"source,omitempty"`
	IORunning  bool   `json:"io_running"`
	SQLRunning bool   `json:"sql_running"`
	// ReplError is the last IO or SQL thread error.
	ReplError string `json:"repl_error,omitempty"`
	// LagMS is how far the replica is behind the primary of record: 0 when it has
	// applied all it received and heartbeats keep arriving, else the age of the
	// newest heartbeat it applied less one heartbeat interval (its delay lies
	// between that and the age); -1 when unknown. It feeds /replica, baton status
	// and switchover_max_lag.
	LagMS int64 `json:"lag_ms"`
	// HeartbeatMS is the age of the newest heartbeat the replica applied, as read:
	// the primary's write probe writes one every probe interval, so it rises when
	// the primary stops writing, whether or not the replica is behind. -1 when
	// unknown. What confirms a stopped primary (confirm_lag): see HeartbeatAge.
	HeartbeatMS int64 `json:"heartbeat_ms"`
	// StorageOK is the storage probe's result (a replica's own write path).
	StorageOK bool `json:"storage_ok"`
	// DiskFree and DiskTimeToFull are for the filesystem of the datadir, binlog or
	// relay log with the least free space.
	DiskFree       uint64        `json:"disk_free_bytes,omitempty"`
	DiskTimeToFull time.Duration `json:"disk_time_to_full_ns,omitempty"`
	// Forecasts are when each resource that can stop the node's writes runs out:
	// each filesystem it writes, its auto-increment keys that run out first, the
	// purge lag, its connections (docs/operations.md, "Forecasts"); none from an
	// older agent.
	Forecasts []detector.Forecast `json:"forecasts,omitempty"`
	WriteMS   float64             `json:"write_ms"`
	PingMS    float64             `json:"ping_ms"`
	// VIP: the node holds the cluster's virtual IP now.
	VIP bool `json:"vip,omitempty"`
	// PrimaryView is this agent's remote probe of the primary of record (replicas only).
	PrimaryView *PeerView `json:"primary_view,omitempty"`
	// Priority and NoPromote come from the node's configuration.
	Priority  int  `json:"priority"`
	NoPromote bool `json:"no_promote,omitempty"`
	// Errant lists errant GTIDs when the node is quarantined.
	Errant string `json:"errant,omitempty"`
	// ErrantTxns is what the node's binary logs say of each errant GTID (phantom,
	// or real with its first event), once its agent looked; at most MaxErrantTxns.
	ErrantTxns []replication.ErrantTxn `json:"errant_txns,omitempty"`
	// Policy is the failover policy of the node's configuration file, compared with
	// the cluster's (the policy key) to report disagreement; nil from an older agent.
	Policy *Policy `json:"policy,omitempty"`
	// SemiSync is the server's semi-sync state, "" when the cluster is not
	// configured for semi-sync or the server was not read.
	SemiSync SemiSyncState `json:"semi_sync,omitempty"`
	// SemiSyncClients is how many semi-sync replicas are connected to this server,
	// published with SemiSync on only (0 otherwise, and from an older agent).
	SemiSyncClients int `json:"semi_sync_clients,omitempty"`
	// AwaitsAck says the writable primary's commits are stuck waiting for a
	// semi-sync acknowledgement: SemiSync on, commits waiting for one
	// (Rpl_semi_sync_master_wait_sessions), the verdict not healthy and no
	// filesystem full (a commit stuck on a full disk waits for space, not for a
	// replica). False when unknown.
	AwaitsAck bool `json:"awaits_ack,omitempty"`
	// SemiSyncTimeout is the server's rpl_semi_sync_master_timeout, published with
	// SemiSync (0 when unknown): how long a commit waits for an acknowledgement
	// before the server goes asynchronous, were it the primary.
	SemiSyncTimeout time.Duration `json:"semi_sync_timeout_ns,omitempty"`
	// Repaired is the latest drift the agent repaired on its own, with its time.
	Repaired string `json:"repaired,omitempty"`
	// CanDonate: this node's agent can stream a backup of its server to a node
	// being rebuilt (the backup program found, a peer secret to sign with). False
	// when unknown (an older agent).
	CanDonate bool `json:"can_donate,omitempty"`
	// CanRebuild: this node's agent can rebuild its own server from a donor (the
	// server's stop and start commands configured, the programs found, a peer
	// secret); RebuildUnable says why not. False when unknown.
	CanRebuild    bool   `json:"can_rebuild,omitempty"`
	RebuildUnable string `json:"rebuild_unable,omitempty"`
	// Rebuild is the node's rebuild under way, or the latest one that failed; nil
	// when neither.
	Rebuild *RebuildProgress `json:"rebuild,omitempty"`
	// Epoch is the primary epoch the agent last acted on.
	Epoch uint64    `json:"epoch"`
	At    time.Time `json:"at"`
}

// SemiSyncState is a node's semi-sync as its status reports it.
type SemiSyncState string

// Semi-sync states. On a primary anything but SemiSyncOn means a commit can be
// acknowledged before any replica has it.
const (
	SemiSyncOn          SemiSyncState = "on"          // source side on, commits wait for a replica
	SemiSyncAsync       SemiSyncState = "async"       // source side on but fallen back: commits do not wait
	SemiSyncOff         SemiSyncState = "off"         // source side off on a writable server
	SemiSyncReplicaOn   SemiSyncState = "replica on"  // read-only server, replica side on
	SemiSyncReplicaOff  SemiSyncState = "replica off" // read-only server, replica side off
	SemiSyncUnavailable SemiSyncState = "unavailable" // configured, but the server has no semi-sync
)

// Unprotected says whether a writable primary in this state acknowledges commits
// that no replica has.
func (s SemiSyncState) Unprotected() bool {
	return s == SemiSyncAsync || s == SemiSyncOff || s == SemiSyncUnavailable
}

// PeerView is one agent's remote probe of another node's server.
type PeerView struct {
	Node string `json:"node"`
	// Reachable: a connection and SELECT 1 succeeded within the probe deadline.
	Reachable bool `json:"reachable"`
	// FailedSince is when the probes started failing (zero while reachable).
	FailedSince time.Time `json:"failed_since,omitempty"`
	Error       string    `json:"error,omitempty"`
	// Write is the outcome of the remote write probe, which runs only while the
	// primary's own agent is gone (nobody else would see its writes stop).
	Write PeerWrite `json:"write,omitempty"`
	At    time.Time `json:"at"`
}

// PeerWrite is what a replica's remote write probe of the primary found. The zero
// value means no write probe ran: it never reads as a failure.
type PeerWrite string

// Remote write probe outcomes.
const (
	PeerWriteUnknown  PeerWrite = ""          // not probed, or no clear answer (too many connections)
	PeerWriteOK       PeerWrite = "ok"        // the heartbeat write committed in time
	PeerWriteReadOnly PeerWrite = "read_only" // refused by read_only: fenced, or set by hand
	PeerWriteFailing  PeerWrite = "failing"   // timed out or failed, FailAfter probes in a row
)

// Refused says whether the outcome means the server takes no writes.
func (w PeerWrite) Refused() bool { return w == PeerWriteReadOnly || w == PeerWriteFailing }

// Settings are the cluster's dynamic settings (the config key).
type Settings struct {
	Paused bool `json:"paused"`
	// PausedBy and PausedAt say who paused the cluster, for status.
	PausedBy string    `json:"paused_by,omitempty"`
	PausedAt time.Time `json:"paused_at,omitempty"`
}

// RequestKind is what an operator asked for.
type RequestKind string

// Request kinds.
const (
	RequestSwitchover RequestKind = "switchover"
	RequestFailover   RequestKind = "failover"
)

// Request is an operator's request, carried out by the coordinator, which writes
// its progress back into the same key.
type Request struct {
	ID    string      `json:"id"`
	Kind  RequestKind `json:"kind"`
	To    string      `json:"to,omitempty"` // "" lets the coordinator choose
	Force bool        `json:"force,omitempty"`
	// Epoch is the primary epoch the request was made against: a request made
	// against an older epoch is refused.
	Epoch uint64    `json:"epoch"`
	At    time.Time `json:"at"`
	// Set by the coordinator.
	State    RequestState `json:"state,omitempty"`
	Steps    []Step       `json:"steps,omitempty"`
	Error    string       `json:"error,omitempty"`
	Result   *Event       `json:"result,omitempty"`
	Finished time.Time    `json:"finished,omitempty"`
}

// RejoinRequest is an operator's request (`baton rejoin`) that a quarantined node
// forget its errant GTIDs and follow the primary of record, under rejoin/<node>.
// The node's own agent carries it out and writes the outcome back into the key.
type RejoinRequest struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	// DiscardErrant allows real errant transactions (in the node's binlog) to be
	// discarded; without it only phantoms are.
	DiscardErrant bool `json:"discard_errant,omitempty"`
	// Errant is the node's errant GTID set the operator saw: the request is refused
	// if the node has other errant GTIDs by the time its agent reads it.
	Errant string    `json:"errant"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
	// Set by the node's agent.
	State    RequestState `json:"state,omitempty"`
	Error    string       `json:"error,omitempty"`
	Result   *Event       `json:"result,omitempty"`
	Finished time.Time    `json:"finished,omitempty"`
}

// ErrantRecord is what a quarantined node's agent found real among its errant
// GTIDs, kept under errant/<node> with no lease: a finding made while the binary
// logs still held the transactions outlives them (a purge to free the disk) and the
// agent (a restart), so that no later look, which can no longer read them, lets
// them pass for phantoms. The agent deletes it once its node has no errant GTIDs.
type ErrantRecord struct {
	Node string `json:"node"`
	// Real lists the errant GTIDs found written whole in the binary logs.
	Real []string  `json:"real"`
	At   time.Time `json:"at"`
	// Unreadable: the key is there but does not parse (set when read, never
	// written): every errant GTID of the node counts as real.
	Unreadable bool `json:"-"`
}

// Pending says whether the request waits for the node's agent.
func (r RejoinRequest) Pending() bool { return r.ID != "" && r.State == RequestPending }

// RequestState is where a request stands.
type RequestState string

// Request states.
const (
	RequestPending RequestState = ""
	RequestRunning RequestState = "running"
	RequestDone    RequestState = "done"
	RequestRefused RequestState = "refused"
	RequestFailed  RequestState = "failed"
)

// Step is one step of a flow, with its timing.
type Step struct {
	Name  string        `json:"name"`
	Took  time.Duration `json:"took_ns"`
	Error string        `json:"error,omitempty"`
	Note  string        `json:"note,omitempty"`
	// BestEffort: the flow goes on when this step fails (a dead old primary cannot
	// be fenced over the network, say): its Error is no failure of the flow.
	BestEffort bool `json:"best_effort,omitempty"`
}

// Outcome says how a step ended, for people: its note, "went on without it: ..." for
// a best-effort step that failed, "error: ..." for one that stopped the flow.
func (s Step) Outcome() string {
	switch {
	case s.Error == "":
		return s.Note
	case s.BestEffort:
		return "not done, the flow went on without it: " + s.Error
	}
	return "error: " + s.Error
}

// Event is one entry of the history: a failover, switchover, fence, rejoin or
// rebuild.
type Event struct {
	Kind     EventKind     `json:"kind"`
	From     string        `json:"from,omitempty"`
	To       string        `json:"to,omitempty"`
	Epoch    uint64        `json:"epoch"`
	Reason   string        `json:"reason"`
	Started  time.Time     `json:"started"`
	Took     time.Duration `json:"took_ns"`
	Steps    []Step        `json:"steps,omitempty"`
	Manual   bool          `json:"manual,omitempty"`
	Detected time.Time     `json:"detected,omitempty"` // when the primary was first seen failing
	// Discarded lists the errant GTIDs a rejoin made the node forget: phantoms, or
	// real transactions undone in place or discarded on an operator's word (Manual).
	Discarded []string `json:"discarded,omitempty"`
	// Archive is the file, on the node's host, that holds the real errant
	// transactions a rejoin undid or discarded (or a rebuild replaced), written
	// before it did.
	Archive string `json:"archive,omitempty"`
	// Salvage is what a failover did with the transactions the failed primary had
	// logged and no replica had received; nil when it did not try (a switchover,
	// or salvage off).
	Salvage *Salvage `json:"salvage,omitempty"`
	// Runway says what a failover or switchover bought: how long the new
	// primary's disk lasts at the current rate, as its agent last forecast it
	// ("db2 promoted; at the current rate its disk is full in about 6m: free
	// space on it").
	Runway string `json:"runway,omitempty"`
	// Donor, Bytes and Kept are a rebuild's: the node whose backup was copied, how
	// many bytes its stream brought, and where, on the rebuilt node's host, its old
	// datadir is kept (Baton never deletes it).
	Donor string `json:"donor,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
	Kept  string `json:"kept,omitempty"`
}

// Salvage is a failover's salvage step: the failed primary's last transactions,
// read from its binary logs on disk by its agent, applied to the new primary
// before it took writes.
type Salvage struct {
	From string `json:"from"` // the failed primary
	To   string `json:"to"`   // the candidate
	// After is the candidate's position when the step read it: what came after
	// it in From's binary logs is what the step looked for.
	After string `json:"after,omitempty"`
	// Applied counts the transactions applied to the candidate, with their own
	// GTIDs (First to Last); File and Pos are where the first starts in From's
	// binary logs, EndFile and EndPos where the last ends.
	Applied int    `json:"applied"`
	First   string `json:"first,omitempty"`
	Last    string `json:"last,omitempty"`
	File    string `json:"file,omitempty"`
	Pos     int64  `json:"pos,omitempty"`
	EndFile string `json:"end_file,omitempty"`
	EndPos  int64  `json:"end_pos,omitempty"`
	// Read is how long From's agent took to read its binary logs; Apply how long
	// the candidate took to apply what it read.
	Read  time.Duration `json:"read_ns,omitempty"`
	Apply time.Duration `json:"apply_ns,omitempty"`
	// Via says how the candidate applied them: its replication SQL thread (from a
	// relay log its agent wrote), or a session of Baton's account.
	Via string `json:"via,omitempty"`
	// LeftBehind says what stayed in From's binary logs, and why; "" when
	// nothing did. From is quarantined with it when it returns, and its agent
	// archives it before undoing or discarding it.
	LeftBehind string `json:"left_behind,omitempty"`
}

// Intent marks a flow in progress for an epoch, on the coordinator's session lease:
// while it exists, reconcilers leave replication threads alone (the coordinator has
// stopped them on purpose). It vanishes with the coordinator.
type Intent struct {
	Kind      FlowKind  `json:"kind"`
	Epoch     uint64    `json:"epoch"`
	From      string    `json:"from"`
	To        string    `json:"to,omitempty"`
	Started   time.Time `json:"started"`
	Candidate string    `json:"candidate,omitempty"`
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err)) // only plain structs are marshalled
	}
	return string(b)
}
