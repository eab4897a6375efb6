package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrConflict says a fenced transaction lost: the epoch, the coordinator or the
// leader changed under it, or what it was to change is busy (PendingError). Nothing
// was written.
var ErrConflict = errors.New("etcd state changed, transaction not applied")

// PendingError says an operator's request was not filed because another one is
// pending or running: a conflict (errors.Is(err, ErrConflict)) that says which.
type PendingError struct {
	// What is the request in the way, e.g. "switchover request switchover-2024... is running".
	What string
}

func (e *PendingError) Error() string { return "another " + e.What }

// Is makes a PendingError an ErrConflict.
func (e *PendingError) Is(target error) bool { return target == ErrConflict }

// DefaultEtcdTimeout bounds each etcd call of the Store.
const DefaultEtcdTimeout = 2 * time.Second

// HistoryKeep is how many history events are kept.
const HistoryKeep = 200

// Store reads and writes one cluster's state in etcd. Every call has its own
// deadline (Timeout, never past the caller's).
type Store struct {
	cli     *clientv3.Client
	Keys    Keys
	Timeout time.Duration
	// wrote is the etcd revision of this store's latest write: a Cache reading for
	// the same agent waits until it has applied it (Cache.Snapshot), so that an agent
	// never acts on a view older than its own last change.
	wrote atomic.Int64
}

// Wrote is the etcd revision of the store's latest write, 0 before any.
func (s *Store) Wrote() int64 { return s.wrote.Load() }

// written records a write that etcd answered at rev.
func (s *Store) written(rev int64) {
	for {
		old := s.wrote.Load()
		if rev <= old || s.wrote.CompareAndSwap(old, rev) {
			return
		}
	}
}

// NewStore returns the store of cluster.
func NewStore(cli *clientv3.Client, cluster string) *Store {
	return &Store{cli: cli, Keys: NewKeys(cluster), Timeout: DefaultEtcdTimeout}
}

// Client is the etcd client behind the store.
func (s *Store) Client() *clientv3.Client { return s.cli }

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.Timeout)
}

// Snapshot is a View with the revisions that fenced writes compare.
type Snapshot struct {
	View
	Rev           int64 // etcd revision the snapshot was read at
	PrimaryModRev int64 // 0 when there is no primary key
	RequestModRev int64
	LeaderLease   clientv3.LeaseID
	// IntentModRev and IntentLease are the intent key's revision and lease, 0 when
	// there is no intent: a coordinator finds by them an intent of its own that a
	// flow could not withdraw (DeleteIntent compares the revision).
	IntentModRev int64
	IntentLease  clientv3.LeaseID
	// Coordinator is the node of the elected coordinator, "" when none.
	Coordinator string
	// NodeLeases are the agents' session leases, by node.
	NodeLeases map[string]clientv3.LeaseID
	// Policy is the cluster's failover policy (the policy key), nil when the key is
	// missing or unreadable; PolicyErr then says why for an unreadable one.
	Policy       *PolicyRecord
	PolicyModRev int64
	PolicyErr    string
	// Decision is what the elected coordinator published last, nil when none.
	Decision *CoordinatorStatus
	// LastEvent is the newest event of the history, nil when there is none.
	LastEvent *Event
	// BlockLease is the lease the anti-flap block (View.Block) lives on: its time
	// left is the block's.
	BlockLease clientv3.LeaseID
	// Rejoins are the operators' rejoin requests, by node, with their mod revisions.
	Rejoins      map[string]RejoinRequest
	RejoinModRev map[string]int64
	// ErrantRecords are the nodes' recorded findings of real errant GTIDs, by node.
	ErrantRecords map[string]ErrantRecord
	// Rebuilds are the operators' rebuild requests, by node, with their mod
	// revisions.
	Rebuilds      map[string]RebuildRequest
	RebuildModRev map[string]int64
}

// Member is where a node's server was last seen, kept under members/<name> with no
// lease: a node whose agent died is still known, and the coordinator reads its
// server before it promotes another (its server may hold transactions the live
// replicas lack). A node taken out of the cluster for good must be removed by hand
// (etcdctl del /baton/<cluster>/members/<name>), or failover refuses while its
// server cannot be read.
type Member struct {
	Node       string `json:"node"`
	Addr       string `json:"addr"`
	ServerID   uint32 `json:"server_id,omitempty"`
	ServerUUID string `json:"server_uuid,omitempty"`
	// Agent is where its agent was last reached (HTTP host:port), for the failsafe
	// check while etcd is unreachable.
	Agent string `json:"agent,omitempty"`
}

// MembersPrefix is where the members are kept.
func (k Keys) MembersPrefix() string { return k.Prefix + "members/" }

// PutMember records where a node's server is, if the coordinator still leads.
func (s *Store) PutMember(ctx context.Context, g Guard, m Member) error {
	return s.txn(ctx, "record member "+m.Node, g, clientv3.OpPut(s.Keys.MembersPrefix()+m.Node, mustJSON(m)))
}

// Load reads the cluster's state in one transaction, so every part is of the same
// revision. Nodes whose status does not parse are skipped (and reported).
func (s *Store) Load(ctx context.Context) (Snapshot, error) { return s.loadAt(ctx, 0) }

// loadAt is Load at etcd revision rev; 0 is the latest.
func (s *Store) loadAt(ctx context.Context, rev int64) (Snapshot, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.Keys
	at := func(opts ...clientv3.OpOption) []clientv3.OpOption {
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		return opts
	}
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(k.Primary(), at()...),
		clientv3.OpGet(k.Leader(), at()...),
		clientv3.OpGet(k.Config(), at()...),
		clientv3.OpGet(k.Intent(), at()...),
		clientv3.OpGet(k.Request(), at()...),
		clientv3.OpGet(k.NodesPrefix(), at(clientv3.WithPrefix())...),
		clientv3.OpGet(k.Coordinator()+"/", at(clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))...),
		clientv3.OpGet(k.Policy(), at()...),
		clientv3.OpGet(k.FailoverBlock(), at()...),
		clientv3.OpGet(k.Decision(), at()...),
		clientv3.OpGet(k.MembersPrefix(), at(clientv3.WithPrefix())...),
		clientv3.OpGet(k.HistoryPrefix(), at(clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))...),
		clientv3.OpGet(k.RejoinPrefix(), at(clientv3.WithPrefix())...),
		clientv3.OpGet(k.ErrantPrefix(), at(clientv3.WithPrefix())...),
		clientv3.OpGet(k.RebuildPrefix(), at(clientv3.WithPrefix())...),
	).Commit()
	if err != nil {
		return Snapshot{}, fmt.Errorf("load cluster state: %w", err)
	}
	if rev == 0 {
		rev = resp.Header.Revision
	}
	var kvs []*mvccpb.KeyValue
	for _, r := range resp.Responses {
		kvs = append(kvs, r.GetResponseRange().Kvs...)
	}
	return k.snapshotOf(rev, kvs)
}

// snapshotOf is the cluster's state at revision rev made of its keys kvs, given in
// any order: what Load reads in one transaction, or what a Cache holds. Of the
// election's keys the oldest (the elected coordinator) counts, of the history the
// newest event; keys it does not know are ignored. Nodes whose status does not parse
// are skipped.
func (k Keys) snapshotOf(rev int64, kvs []*mvccpb.KeyValue) (Snapshot, error) {
	kvs = slices.Clone(kvs)
	slices.SortFunc(kvs, func(a, b *mvccpb.KeyValue) int { return bytes.Compare(a.Key, b.Key) })
	snap := Snapshot{Rev: rev, NodeLeases: map[string]clientv3.LeaseID{},
		Rejoins: map[string]RejoinRequest{}, RejoinModRev: map[string]int64{}, ErrantRecords: map[string]ErrantRecord{},
		Rebuilds: map[string]RebuildRequest{}, RebuildModRev: map[string]int64{}}
	snap.Nodes, snap.Members = map[string]NodeStatus{}, map[string]Member{}
	var coordinator, lastEvent *mvccpb.KeyValue
	for _, kv := range kvs {
		key := string(kv.Key)
		switch {
		case key == k.Primary():
			if err := json.Unmarshal(kv.Value, &snap.Primary); err != nil {
				return Snapshot{}, fmt.Errorf("parse %s: %w", k.Primary(), err)
			}
			snap.PrimaryModRev = kv.ModRevision
		case key == k.Leader():
			snap.Leader = string(kv.Value)
			snap.LeaderLease = clientv3.LeaseID(kv.Lease)
		case key == k.Config():
			if err := json.Unmarshal(kv.Value, &snap.Settings); err != nil {
				return Snapshot{}, fmt.Errorf("parse %s: %w", k.Config(), err)
			}
		case key == k.Intent():
			var in Intent
			if err := json.Unmarshal(kv.Value, &in); err == nil {
				snap.Intent = &in
			}
			snap.IntentModRev, snap.IntentLease = kv.ModRevision, clientv3.LeaseID(kv.Lease)
		case key == k.Request():
			var req Request
			if err := json.Unmarshal(kv.Value, &req); err == nil {
				snap.Request = &req
				snap.RequestModRev = kv.ModRevision
			}
		case key == k.Policy():
			snap.PolicyModRev = kv.ModRevision
			// An unreadable policy does not make the snapshot unreadable: the rest of the
			// cluster's state is needed all the more.
			if rec, err := parsePolicyRecord(kv.Value); err != nil {
				snap.PolicyErr = err.Error()
			} else {
				snap.Policy = &rec
			}
		case key == k.FailoverBlock():
			// A block that does not parse still blocks: the key's presence is the mark.
			b := FailoverBlock{}
			_ = json.Unmarshal(kv.Value, &b)
			snap.Block = &b
			snap.BlockLease = clientv3.LeaseID(kv.Lease)
		case key == k.Decision():
			var d CoordinatorStatus
			if err := json.Unmarshal(kv.Value, &d); err == nil {
				snap.Decision = &d
			}
		case strings.HasPrefix(key, k.NodesPrefix()):
			var n NodeStatus
			if err := json.Unmarshal(kv.Value, &n); err != nil {
				continue
			}
			snap.Nodes[k.NodeName(key)] = n
			snap.NodeLeases[k.NodeName(key)] = clientv3.LeaseID(kv.Lease)
		case strings.HasPrefix(key, k.Coordinator()+"/"):
			if coordinator == nil || kv.CreateRevision < coordinator.CreateRevision {
				coordinator = kv
			}
		case strings.HasPrefix(key, k.MembersPrefix()):
			var m Member
			if err := json.Unmarshal(kv.Value, &m); err == nil && m.Node != "" {
				snap.Members[m.Node] = m
			}
		case strings.HasPrefix(key, k.HistoryPrefix()):
			lastEvent = kv // sorted by key: the newest comes last
		case strings.HasPrefix(key, k.RejoinPrefix()):
			var rq RejoinRequest
			if err := json.Unmarshal(kv.Value, &rq); err == nil && rq.Node == strings.TrimPrefix(key, k.RejoinPrefix()) {
				snap.Rejoins[rq.Node] = rq
				snap.RejoinModRev[rq.Node] = kv.ModRevision
			}
		case strings.HasPrefix(key, k.RebuildPrefix()):
			var rq RebuildRequest
			if err := json.Unmarshal(kv.Value, &rq); err == nil && rq.Node == strings.TrimPrefix(key, k.RebuildPrefix()) {
				snap.Rebuilds[rq.Node] = rq
				snap.RebuildModRev[rq.Node] = kv.ModRevision
			}
		case strings.HasPrefix(key, k.ErrantPrefix()):
			var rec ErrantRecord
			if err := json.Unmarshal(kv.Value, &rec); err == nil && rec.Node == strings.TrimPrefix(key, k.ErrantPrefix()) {
				snap.ErrantRecords[rec.Node] = rec
			} else {
				// A record that does not parse still says something was found real:
				// nothing of that node passes for a phantom.
				node := strings.TrimPrefix(key, k.ErrantPrefix())
				snap.ErrantRecords[node] = ErrantRecord{Node: node, Unreadable: true}
			}
		}
	}
	if coordinator != nil {
		snap.Coordinator = string(coordinator.Value)
	}
	if lastEvent != nil {
		var e Event
		if err := json.Unmarshal(lastEvent.Value, &e); err == nil {
			snap.LastEvent = &e
		}
	}
	return snap, nil
}

// PutRejoin files an operator's rejoin request for r.Node, unless one for that
// node is still pending (and younger than five minutes).
func (s *Store) PutRejoin(ctx context.Context, r RejoinRequest) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.Keys.Rejoin(r.Node)
	get, err := s.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read rejoin request of %s: %w", r.Node, err)
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if len(get.Kvs) == 1 {
		var old RejoinRequest
		if json.Unmarshal(get.Kvs[0].Value, &old) == nil && old.Pending() && time.Since(old.At) < 5*time.Minute {
			return &PendingError{What: fmt.Sprintf("rejoin request (%s) for %s is pending", old.ID, r.Node)}
		}
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", get.Kvs[0].ModRevision)
	}
	return s.txn(ctx, "file rejoin request for "+r.Node, []clientv3.Cmp{cmp}, clientv3.OpPut(key, mustJSON(r)))
}

// AnswerRejoin writes the node agent's answer to a rejoin request, if the key is
// still at modRev (the request it read).
func (s *Store) AnswerRejoin(ctx context.Context, modRev int64, r RejoinRequest) error {
	key := s.Keys.Rejoin(r.Node)
	return s.txn(ctx, "answer rejoin request "+r.ID, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)},
		clientv3.OpPut(key, mustJSON(r)))
}

// PutErrantRecord records what node's agent found real among its errant GTIDs.
func (s *Store) PutErrantRecord(ctx context.Context, rec ErrantRecord) error {
	return s.txn(ctx, "record real errant transactions of "+rec.Node, nil, clientv3.OpPut(s.Keys.Errant(rec.Node), mustJSON(rec)))
}

// DeleteErrantRecord removes node's record, once it has no errant GTIDs.
func (s *Store) DeleteErrantRecord(ctx context.Context, node string) error {
	return s.txn(ctx, "delete the errant record of "+node, nil, clientv3.OpDelete(s.Keys.Errant(node)))
}

// RejoinRequestRev returns the rejoin request of node and its mod revision, nil
// when there is none.
func (s *Store) RejoinRequestRev(ctx context.Context, node string) (*RejoinRequest, int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	get, err := s.cli.Get(ctx, s.Keys.Rejoin(node))
	if err != nil {
		return nil, 0, fmt.Errorf("read rejoin request of %s: %w", node, err)
	}
	if len(get.Kvs) == 0 {
		return nil, 0, nil
	}
	var r RejoinRequest
	if err := json.Unmarshal(get.Kvs[0].Value, &r); err != nil {
		return nil, 0, fmt.Errorf("parse rejoin request of %s: %w", node, err)
	}
	return &r, get.Kvs[0].ModRevision, nil
}

// CreatePolicy makes rec the cluster's policy if there is none (a create-only
// transaction), and returns the policy key as it is afterwards: rec when created, the
// existing one otherwise (nil and an error when that one is unreadable).
func (s *Store) CreatePolicy(ctx context.Context, rec PolicyRecord) (cur *PolicyRecord, created bool, err error) {
	if err := rec.Policy.Validate(); err != nil {
		return nil, false, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.Keys.Policy()
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, mustJSON(rec))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, false, fmt.Errorf("create policy: %w", err)
	}
	if resp.Succeeded {
		s.written(resp.Header.Revision)
		return &rec, true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 {
		return nil, false, fmt.Errorf("create policy: %w", ErrConflict) // deleted meanwhile
	}
	old, err := parsePolicyRecord(kvs[0].Value)
	if err != nil {
		return nil, false, err
	}
	return &old, false, nil
}

// PutPolicy replaces the cluster's policy, if the key is still at modRev (0: if there
// is none). It is the operator's path (`baton policy apply`).
func (s *Store) PutPolicy(ctx context.Context, modRev int64, rec PolicyRecord) error {
	if err := rec.Policy.Validate(); err != nil {
		return err
	}
	key := s.Keys.Policy()
	cmp := clientv3.Compare(clientv3.ModRevision(key), "=", modRev)
	if modRev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return s.txn(ctx, "write policy", []clientv3.Cmp{cmp}, clientv3.OpPut(key, mustJSON(rec)))
}

// PutNode publishes a node's status on the agent's lease.
func (s *Store) PutNode(ctx context.Context, lease clientv3.LeaseID, n NodeStatus) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Put(ctx, s.Keys.Node(n.Node), mustJSON(n), clientv3.WithLease(lease))
	if err != nil {
		return fmt.Errorf("publish status of %s: %w", n.Node, err)
	}
	s.written(resp.Header.Revision)
	return nil
}

// Guard is the comparison that makes a write the elected coordinator's alone: its
// election key still exists with the revision it was created at.
type Guard []clientv3.Cmp

// CoordinatorGuard is the guard of an election won with key at rev.
func CoordinatorGuard(key string, rev int64) Guard {
	return Guard{clientv3.Compare(clientv3.CreateRevision(key), "=", rev)}
}

func (s *Store) txn(ctx context.Context, what string, cmps []clientv3.Cmp, ops ...clientv3.Op) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w", what, ErrConflict)
	}
	s.written(resp.Header.Revision)
	return nil
}

// BootstrapPrimary records the first primary of record, if there is none.
func (s *Store) BootstrapPrimary(ctx context.Context, g Guard, p Primary) error {
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.Keys.Primary()), "=", 0)}, g...)
	return s.txn(ctx, "bootstrap primary "+p.Node, cmps, clientv3.OpPut(s.Keys.Primary(), mustJSON(p)))
}

// FailoverBlock is the anti-flap key: it exists, on a lease of failover_block's
// length, from a failover's commit until etcd expires the lease.
func (k Keys) FailoverBlock() string { return k.Prefix + "failover_block" }

// Decision is the key where the elected coordinator publishes its latest decision,
// on its session lease.
func (k Keys) Decision() string { return k.Prefix + "decision" }

// PutDecision publishes the coordinator's latest decision on its lease, if it
// still leads.
func (s *Store) PutDecision(ctx context.Context, g Guard, lease clientv3.LeaseID, st CoordinatorStatus) error {
	return s.txn(ctx, "publish decision", g, clientv3.OpPut(s.Keys.Decision(), mustJSON(st), clientv3.WithLease(lease)))
}

// GrantBlock grants the lease a failover's anti-flap key is written on: d rounded
// up to whole seconds (etcd may raise it to its minimum TTL).
func (s *Store) GrantBlock(ctx context.Context, d time.Duration) (clientv3.LeaseID, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	ttl := int64((d + time.Second - 1) / time.Second)
	resp, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, fmt.Errorf("grant anti-flap lease of %s: %w", d, err)
	}
	return resp.ID, nil
}

// RevokeLease revokes a lease, and with it the keys on it.
func (s *Store) RevokeLease(ctx context.Context, id clientv3.LeaseID) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Revoke(ctx, id)
	if err != nil {
		return fmt.Errorf("revoke lease %x: %w", int64(id), err)
	}
	s.written(resp.Header.Revision)
	return nil
}

// LiftBlock ends the anti-flap block before its time, for an operator (baton
// unblock): the key goes, and so does its lease. ErrNoBlock when none is in force;
// the history records who lifted which block.
func (s *Store) LiftBlock(ctx context.Context, by string) (FailoverBlock, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.Keys.FailoverBlock()
	get, err := s.cli.Get(ctx, key)
	if err != nil {
		return FailoverBlock{}, fmt.Errorf("read the failover block: %w", err)
	}
	if len(get.Kvs) == 0 {
		return FailoverBlock{}, ErrNoBlock
	}
	var b FailoverBlock
	_ = json.Unmarshal(get.Kvs[0].Value, &b)
	kv := get.Kvs[0]
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return FailoverBlock{}, fmt.Errorf("lift the failover block: %w", err)
	}
	if !resp.Succeeded {
		return FailoverBlock{}, fmt.Errorf("lift the failover block: %w", ErrConflict)
	}
	s.written(resp.Header.Revision)
	if kv.Lease != 0 {
		// The key is gone already; the lease is only its timer.
		_, _ = s.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease))
	}
	ev := Event{Kind: EventUnblock, To: b.To, Epoch: b.Epoch, Manual: true, Started: time.Now().UTC(),
		Reason: fmt.Sprintf("%s lifted the anti-flap block of the failover to %s at epoch %d (set at %s, for %s)", by, b.To, b.Epoch,
			b.At.UTC().Format(time.RFC3339), b.For)}
	if err := s.AppendHistory(ctx, ev); err != nil {
		return b, fmt.Errorf("block lifted, but record it in the history: %w", err)
	}
	return b, nil
}

// ErrNoBlock: no anti-flap block is in force.
var ErrNoBlock = errors.New("cluster: no failover block in force")

// Block is an anti-flap block to write in a commit, on Lease (from GrantBlock).
type Block struct {
	FailoverBlock
	Lease clientv3.LeaseID
}

// CommitPrimary is the commit point of a failover or switchover: the primary of
// record becomes p, if the primary key is still at modRev (same epoch), the
// coordinator still leads and the flow's own intent, put at intentRev, is still there
// unchanged. It deletes that intent in the same transaction. Comparing the intent as
// well as the election key means a flow can only finish what it announced.
//
// With a block (a failover), the anti-flap key is written in the same transaction.
func (s *Store) CommitPrimary(ctx context.Context, g Guard, modRev, intentRev int64, p Primary, block *Block) error {
	if intentRev <= 0 {
		return fmt.Errorf("commit primary %s epoch %d: no intent revision: a flow commits only what it announced", p.Node, p.Epoch)
	}
	cmps := append([]clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(s.Keys.Primary()), "=", modRev),
		clientv3.Compare(clientv3.ModRevision(s.Keys.Intent()), "=", intentRev),
	}, g...)
	ops := []clientv3.Op{clientv3.OpPut(s.Keys.Primary(), mustJSON(p)), clientv3.OpDelete(s.Keys.Intent())}
	if block != nil {
		if block.Lease == 0 {
			return fmt.Errorf("commit primary %s epoch %d: anti-flap block without a lease", p.Node, p.Epoch)
		}
		ops = append(ops, clientv3.OpPut(s.Keys.FailoverBlock(), mustJSON(block.FailoverBlock), clientv3.WithLease(block.Lease)))
	}
	return s.txn(ctx, fmt.Sprintf("commit primary %s epoch %d", p.Node, p.Epoch), cmps, ops...)
}

// PutIntent announces a flow, on the coordinator's lease, if the primary key is still
// at modRev and the coordinator still leads. It returns the intent's mod revision,
// which DeleteIntent and CommitPrimary compare.
func (s *Store) PutIntent(ctx context.Context, g Guard, lease clientv3.LeaseID, modRev int64, in Intent) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.Keys.Primary()), "=", modRev)}, g...)
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(s.Keys.Intent(), mustJSON(in), clientv3.WithLease(lease))).Commit()
	if err != nil {
		return 0, fmt.Errorf("announce %s: %w", in.Kind, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("announce %s: %w", in.Kind, ErrConflict)
	}
	s.written(resp.Header.Revision)
	return resp.Header.Revision, nil // the put is the txn's only write: its revision
}

// DeleteIntent ends an abandoned flow: it deletes the intent put at intentRev, if
// the coordinator still leads and that intent is still there unchanged. A
// coordinator that stalled past its lease therefore cannot delete its successor's
// intent (which would let reconcilers restart replication toward the old primary in
// the middle of the successor's flow). ErrConflict says nothing was deleted.
func (s *Store) DeleteIntent(ctx context.Context, g Guard, intentRev int64) error {
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.Keys.Intent()), "=", intentRev)}, g...)
	return s.txn(ctx, "withdraw intent", cmps, clientv3.OpDelete(s.Keys.Intent()))
}

// HoldsIntent says, with a linearizable read and without writing, whether the
// flow that put its intent at intentRev still owns it: the intent is there
// unchanged and its coordinator still leads. ErrConflict says it does not. It is
// what a flow checks right before a step that cannot be undone and must not run
// for a deposed coordinator.
func (s *Store) HoldsIntent(ctx context.Context, g Guard, intentRev int64) error {
	if intentRev <= 0 {
		return errors.New("holds intent: no intent revision")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.Keys.Intent()), "=", intentRev)}, g...)
	resp, err := s.cli.Txn(ctx).If(cmps...).Commit()
	if err != nil {
		return fmt.Errorf("holds intent: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("holds intent: %w", ErrConflict)
	}
	return nil
}

// AcquireLeader makes node the holder of the leader key, on its lease, if nobody
// holds it and the primary key is still at modRev (the node is still the primary of
// record it read).
func (s *Store) AcquireLeader(ctx context.Context, lease clientv3.LeaseID, node string, primaryModRev int64) error {
	k := s.Keys
	return s.txn(ctx, "acquire leader for "+node, []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(k.Leader()), "=", 0),
		clientv3.Compare(clientv3.ModRevision(k.Primary()), "=", primaryModRev),
	}, clientv3.OpPut(k.Leader(), node, clientv3.WithLease(lease)))
}

// ReleaseLeader deletes the leader key if this lease holds it.
func (s *Store) ReleaseLeader(ctx context.Context, lease clientv3.LeaseID) error {
	k := s.Keys
	err := s.txn(ctx, "release leader", []clientv3.Cmp{
		clientv3.Compare(clientv3.LeaseValue(k.Leader()), "=", lease),
	}, clientv3.OpDelete(k.Leader()))
	if errors.Is(err, ErrConflict) {
		return nil // not ours (any more): nothing to release
	}
	return err
}

// PutSettings writes the cluster's dynamic settings.
func (s *Store) PutSettings(ctx context.Context, st Settings) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Put(ctx, s.Keys.Config(), mustJSON(st))
	if err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	s.written(resp.Header.Revision)
	return nil
}

// PutRequest files an operator's request if none is pending or running.
func (s *Store) PutRequest(ctx context.Context, r Request) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.Keys
	get, err := s.cli.Get(ctx, k.Request())
	if err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(k.Request()), "=", 0)
	if len(get.Kvs) == 1 {
		var old Request
		if json.Unmarshal(get.Kvs[0].Value, &old) == nil && (old.State == RequestPending || old.State == RequestRunning) &&
			time.Since(old.At) < 5*time.Minute {
			return &PendingError{What: fmt.Sprintf("%s request (%s) is %s", old.Kind, old.ID, stateName(old.State))}
		}
		cmp = clientv3.Compare(clientv3.ModRevision(k.Request()), "=", get.Kvs[0].ModRevision)
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(k.Request(), mustJSON(r))).Commit()
	if err != nil {
		return fmt.Errorf("file request: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("file request: %w", ErrConflict)
	}
	s.written(resp.Header.Revision)
	return nil
}

// WithdrawRequest deletes request id while it is still pending, comparing the key's
// mod revision, so that no coordinator starts it later. It returns the request, not
// withdrawn, when a coordinator has started on it (or finished it); nil and no error
// when id is withdrawn or is no longer the cluster's request. An error wrapping
// ErrConflict says the request changed between the read and the delete: nothing was
// deleted.
func (s *Store) WithdrawRequest(ctx context.Context, id string) (started *Request, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.Keys.Request()
	get, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if len(get.Kvs) == 0 {
		return nil, nil
	}
	var r Request
	if err := json.Unmarshal(get.Kvs[0].Value, &r); err != nil || r.ID != id {
		return nil, nil // another request took its place: id is no longer there to run
	}
	if r.State != RequestPending {
		return &r, nil
	}
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", get.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return nil, fmt.Errorf("withdraw request %s: %w", id, err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("withdraw request %s: %w", id, ErrConflict)
	}
	s.written(resp.Header.Revision)
	return nil, nil
}

func stateName(s RequestState) string {
	if s == RequestPending {
		return "pending"
	}
	return string(s)
}

// UpdateRequest writes a request's progress, if it is still the same request.
func (s *Store) UpdateRequest(ctx context.Context, g Guard, r Request) error {
	ctx2, cancel := s.ctx(ctx)
	defer cancel()
	get, err := s.cli.Get(ctx2, s.Keys.Request())
	if err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	if len(get.Kvs) != 1 {
		return fmt.Errorf("request %s: deleted: %w", r.ID, ErrConflict)
	}
	var cur Request
	if err := json.Unmarshal(get.Kvs[0].Value, &cur); err != nil || cur.ID != r.ID {
		return fmt.Errorf("request %s: replaced: %w", r.ID, ErrConflict)
	}
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.Keys.Request()), "=", get.Kvs[0].ModRevision)}, g...)
	return s.txn(ctx, "update request "+r.ID, cmps, clientv3.OpPut(s.Keys.Request(), mustJSON(r)))
}

// Request returns the current request, nil when there is none.
func (s *Store) Request(ctx context.Context) (*Request, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	get, err := s.cli.Get(ctx, s.Keys.Request())
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if len(get.Kvs) == 0 {
		return nil, nil
	}
	var r Request
	if err := json.Unmarshal(get.Kvs[0].Value, &r); err != nil {
		return nil, fmt.Errorf("parse request: %w", err)
	}
	return &r, nil
}

// AppendHistory records an event and prunes the oldest beyond HistoryKeep.
func (s *Store) AppendHistory(ctx context.Context, e Event) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.Keys.HistoryPrefix() + fmt.Sprintf("%020d", e.Started.UnixNano())
	put, err := s.cli.Put(ctx, key, mustJSON(e))
	if err != nil {
		return fmt.Errorf("append history: %w", err)
	}
	s.written(put.Header.Revision)
	resp, err := s.cli.Get(ctx, s.Keys.HistoryPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil || len(resp.Kvs) <= HistoryKeep {
		return nil
	}
	last := string(resp.Kvs[len(resp.Kvs)-HistoryKeep-1].Key)
	_, err = s.cli.Delete(ctx, s.Keys.HistoryPrefix(), clientv3.WithRange(last+"\x00"))
	return err
}

// History returns up to limit events, newest first.
func (s *Store) History(ctx context.Context, limit int) ([]Event, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.cli.Get(ctx, s.Keys.HistoryPrefix(), opts...)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	var out []Event
	for _, kv := range resp.Kvs {
		var e Event
		if err := json.Unmarshal(kv.Value, &e); err == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// LeaseTTL returns the time left on a lease, -1 when it is gone.
func (s *Store) LeaseTTL(ctx context.Context, id clientv3.LeaseID) (time.Duration, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.TimeToLive(ctx, id)
	if err != nil {
		return 0, err
	}
	return time.Duration(resp.TTL) * time.Second, nil
}
