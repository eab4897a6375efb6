package agent

// Failsafe mode: an etcd outage must not stop the writes of every cluster.
//
// When the primary's agent cannot renew its etcd session, it asks every other
// node's agent, directly, whether it can reach etcd. If every one answers, none can,
// and none knows a newer primary, nobody can be promoting (a promotion needs etcd),
// and each of them has promised to take no part in a failover for session_ttl: the
// primary goes on taking writes until session_ttl - fence_margin after it asked, and
// asks again every probe_interval. Anything else (a peer that does not answer, that
// reaches etcd, an answer not signed with the cluster's peer secret) fences it as
// without failsafe mode. docs/architecture.md, "Failsafe mode", has the argument.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
)

const (
	// FailsafePath is where an agent answers the failsafe check (POST).
	FailsafePath = "/failsafe"
	// SignatureHeader carries the HMAC-SHA256 of a failsafe request or answer body.
	SignatureHeader = "X-Baton-Signature"
	// maxRequestAge bounds how far a request's send time may be from the answering
	// node's clock, so that a request recorded on the network cannot be replayed
	// later to hold a node off failovers. A clock further off refuses the check:
	// the primary fences, as without failsafe mode.
	maxRequestAge = 5 * time.Minute
	maxBody       = 4 << 10
	// maxFailsafeNonces bounds the nonces an agent remembers (the checks of the last
	// maxRequestAge: a kept primary asks every probe interval, about 600 in 5 min).
	// Past it, signed checks are refused: the primary fences, as without failsafe mode.
	maxFailsafeNonces = 10000
)

// FailsafeState is where failsafe mode stands on a node, as /status and `baton
// status` show it.
type FailsafeState string

// Failsafe states.
const (
	FailsafeOff     FailsafeState = "off"          // not configured
	FailsafeStandby FailsafeState = "standby"      // etcd reachable, nothing to do
	FailsafeKept    FailsafeState = "primary kept" // this primary takes writes without etcd, every peer confirming
	FailsafeHeldOff FailsafeState = "held off"     // this node promised a kept primary to take no part in a failover
	FailsafeFenced  FailsafeState = "fenced"       // the check failed: this primary fenced itself
)

func (s FailsafeState) String() string { return string(s) }

// FailsafeRequest is what the primary's agent asks every peer's agent when it cannot
// renew its etcd session.
type FailsafeRequest struct {
	Cluster string `json:"cluster"`
	// From is the asking node, the primary of record at Epoch as it knows it.
	From  string `json:"from"`
	Epoch uint64 `json:"epoch"`
	// Nonce is echoed in the answer: an answer to another request is no answer.
	Nonce string    `json:"nonce"`
	Sent  time.Time `json:"sent"`
}

// FailsafeAnswer is a peer's answer. Only Confirm keeps the primary writable.
type FailsafeAnswer struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	Nonce   string `json:"nonce"`
	// EtcdReachable: the peer read etcd just now, so a failover is possible.
	EtcdReachable bool `json:"etcd_reachable"`
	// Confirm: etcd is unreachable from the peer, it knows no newer primary than the
	// asker, it is not a writable primary itself, and it holds off from any failover
	// (no promotion, no coordinator) for HoldOff from when it recorded the promise,
	// after it got the question and before it answered.
	Confirm bool          `json:"confirm"`
	HoldOff time.Duration `json:"hold_off_ns,omitempty"`
	Reason  string        `json:"reason"`
	// KnownPrimary and KnownEpoch are the primary of record as the peer last read it.
	KnownPrimary string `json:"known_primary,omitempty"`
	KnownEpoch   uint64 `json:"known_epoch,omitempty"`
}

// FailsafeView is failsafe mode as /status shows it.
type FailsafeView struct {
	State FailsafeState `json:"state"`
	// Note says it in a sentence, e.g. "primary kept, all 2 peers confirm etcd is
	// unreachable".
	Note  string    `json:"note,omitempty"`
	Since time.Time `json:"since,omitempty"`
	// Peers are the answers of the latest check this node made.
	Peers []FailsafePeerView `json:"peers,omitempty"`
}

// FailsafePeerView is one peer's answer to the latest check.
type FailsafePeerView struct {
	Node   string `json:"node"`
	Agent  string `json:"agent,omitempty"`
	Answer string `json:"answer"`
	OK     bool   `json:"ok"`
}

// The MACs of requests and answers differ by a prefix, so that one is never taken
// for the other.
const (
	requestMAC = "baton failsafe request\n"
	answerMAC  = "baton failsafe answer\n"
)

// failsafePeer is a node the primary must hear from.
type failsafePeer struct {
	Node  string
	Agent string // its agent's HTTP host:port, "" when not known
}

// failsafePeers are every node of the cluster but self: the members (every node
// seen with a live agent, kept without a lease) and the live agents, with where
// their agents were last reached.
func failsafePeers(self string, snap cluster.Snapshot) []failsafePeer {
	addr := map[string]string{}
	for name, m := range snap.Members {
		addr[name] = m.Agent
	}
	for name, n := range snap.Nodes {
		if n.Agent != "" || addr[name] == "" {
			addr[name] = n.Agent
		}
	}
	var peers []failsafePeer
	for name, a := range addr {
		if name != self {
			peers = append(peers, failsafePeer{Node: name, Agent: a})
		}
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Node < peers[j].Node })
	return peers
}

// answerFor is the peer side of the check, pure: what this node answers req, given
// the primary of record as it last read it, whether it is (or keeps) the writable
// primary itself, and how reading etcd just now went (nil: it answered).
func answerFor(req FailsafeRequest, clusterName, self string, known cluster.Primary, writablePrimary bool, etcdErr error, holdOff time.Duration) FailsafeAnswer {
	a := FailsafeAnswer{Cluster: clusterName, Node: self, Nonce: req.Nonce, KnownPrimary: known.Node, KnownEpoch: known.Epoch}
	switch {
	case req.Cluster != clusterName:
		a.Reason = fmt.Sprintf("asked for cluster %q; this node is in %q", req.Cluster, clusterName)
	case req.From == "" || req.From == self:
		a.Reason = fmt.Sprintf("asked by %q: not a peer", req.From)
	case req.Epoch == 0:
		a.Reason = "asked with epoch 0: no primary of record"
	case writablePrimary:
		a.Reason = self + " is itself the writable primary"
	case etcdErr == nil:
		a.EtcdReachable = true
		a.Reason = "etcd is reachable from " + self
	case known.Node != "" && (known.Epoch > req.Epoch || (known.Epoch == req.Epoch && known.Node != req.From)):
		a.Reason = fmt.Sprintf("%s knows a newer primary of record: %s at epoch %d", self, known.Node, known.Epoch)
	case holdOff <= 0:
		a.Reason = "no hold-off to promise"
	default:
		a.Confirm, a.HoldOff = true, holdOff
		a.Reason = fmt.Sprintf("etcd is unreachable from %s (%v); holding off failovers for %s", self, etcdErr, holdOff)
	}
	return a
}

// peerAnswer is one peer's part of a check: its answer, or why there is none.
type peerAnswer struct {
	Peer   failsafePeer
	Answer *FailsafeAnswer
	Err    error
}

// judgeFailsafe says whether the primary may go on taking writes without etcd: at
// least one peer, and every peer answered, validly, and confirmed with a hold-off
// longer than the fence margin. holdOff is the earliest hold-off answered: each
// peer promised it from a time after the question was sent, so the primary may
// rely on the promises until the question's sending + holdOff, and must be fenced
// (which takes up to the margin) by then. Peers' settings may differ: the shortest
// promise counts, never the primary's own session_ttl. The note says why, for the
// log and /status.
func judgeFailsafe(peers []failsafePeer, answers []peerAnswer, margin time.Duration) (keep bool, holdOff time.Duration, note string) {
	if len(peers) == 0 {
		return false, 0, "no peer known to confirm that etcd is unreachable"
	}
	got := map[string]peerAnswer{}
	for _, a := range answers {
		got[a.Peer.Node] = a
	}
	var refusals []string
	for _, p := range peers {
		a, ok := got[p.Node]
		switch {
		case !ok:
			refusals = append(refusals, p.Node+": not asked")
		case a.Err != nil:
			refusals = append(refusals, p.Node+": no answer: "+a.Err.Error())
		case a.Answer == nil:
			refusals = append(refusals, p.Node+": no answer")
		case !a.Answer.Confirm:
			refusals = append(refusals, p.Node+": "+a.Answer.Reason)
		case a.Answer.HoldOff <= 0:
			refusals = append(refusals, p.Node+": confirms with no hold-off")
		case a.Answer.HoldOff <= margin:
			refusals = append(refusals, fmt.Sprintf("%s: hold-off %s is not longer than the fence margin (%s)", p.Node, a.Answer.HoldOff, margin))
		case holdOff == 0 || a.Answer.HoldOff < holdOff:
			holdOff = a.Answer.HoldOff
		}
	}
	if len(refusals) > 0 {
		return false, 0, strings.Join(refusals, "; ")
	}
	return true, holdOff, fmt.Sprintf("all %d peers confirm etcd is unreachable, holding off for at least %s", len(peers), holdOff)
}

// readAnswer checks a peer's HTTP answer to req: a 200, signed with the secret, for
// this request (cluster, node and nonce), else an error saying what is wrong.
func readAnswer(secret []byte, req FailsafeRequest, peer string, status int, body []byte, sig string) (FailsafeAnswer, error) {
	if status != http.StatusOK {
		return FailsafeAnswer{}, fmt.Errorf("HTTP %d: %s", status, firstLine(body))
	}
	if !signedBy(secret, answerMAC, body, sig) {
		return FailsafeAnswer{}, errors.New("the answer is not signed with this cluster's peer secret")
	}
	var a FailsafeAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return FailsafeAnswer{}, fmt.Errorf("decode the answer: %w", err)
	}
	switch {
	case a.Cluster != req.Cluster:
		return FailsafeAnswer{}, fmt.Errorf("answered for cluster %q", a.Cluster)
	case a.Node != peer:
		return FailsafeAnswer{}, fmt.Errorf("answered by %q", a.Node)
	case a.Nonce != req.Nonce:
		return FailsafeAnswer{}, errors.New("answered another request (nonce)")
	}
	return a, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// failsafeConfig configures failsafe mode for one agent.
type failsafeConfig struct {
	Cluster, Node string
	Secret        []byte
	// SessionTTL is the hold-off a peer promises, and with FenceMargin bounds how long
	// one check keeps the primary writable: SessionTTL - FenceMargin from its sending.
	SessionTTL  time.Duration
	FenceMargin time.Duration
	// Interval is how often a kept primary checks again.
	Interval time.Duration
	// EtcdTimeout bounds a peer's read of etcd; CheckTimeout bounds a whole check.
	EtcdTimeout  time.Duration
	CheckTimeout time.Duration
	// StateDir is where a promise to hold off is recorded before it is given, so that
	// a restarted agent keeps it (state_dir). "": no promise can be given.
	StateDir string
	Log      *zap.Logger
}

// failsafe is one agent's failsafe mode: the checks it makes as a primary, the
// answers it gives as a peer, and the hold-off it promised.
type failsafe struct {
	cfg    failsafeConfig
	client *http.Client

	mu           sync.Mutex
	holdoffUntil time.Time                   // monotonic; this node promised to hold off until then
	interrupt    func(context.Context) error // ends the session's work, waiting for it; nil when none
	keptUntil    time.Time                   // monotonic; the latest confirmation keeps writes until then
	keeping      bool                        // the primary is kept without an etcd session
	keptLease    clientv3.LeaseID            // the session lease the kept primary held the leader key on
	state        FailsafeState
	note         string
	since        time.Time
	peers        []FailsafePeerView
	// started is when this agent started (wall clock): a check sent before then may
	// have been answered by an earlier run, whose nonces are forgotten.
	started time.Time
	// nonces are the checks answered, each until it is too old to be taken anyway
	// (its send time plus maxRequestAge, by this node's clock): a check seen again is
	// a replay, refused before anything is read or promised.
	nonces map[string]time.Time
}

func newFailsafe(cfg failsafeConfig) *failsafe {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	// No proxy from the environment: the peers are on the nodes' own network.
	tr := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: cfg.CheckTimeout}).DialContext,
		MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}
	return &failsafe{cfg: cfg, client: &http.Client{Transport: tr, Timeout: cfg.CheckTimeout}, state: FailsafeStandby, since: time.Now(),
		started: time.Now(), nonces: map[string]time.Time{}}
}

// firstSeen records the nonce of a signed check and says whether this agent answers
// it: a nonce seen before (a request recorded on the network and sent again), or a
// check sent before this agent started (an earlier run may have answered it), is a
// replay. "" when it is not one, else why.
func (f *failsafe) firstSeen(req FailsafeRequest) string {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for n, until := range f.nonces {
		if now.After(until) {
			delete(f.nonces, n)
		}
	}
	switch {
	case req.Nonce == "":
		return "no nonce"
	case req.Sent.Before(f.started):
		return fmt.Sprintf("sent %s, before this agent started (%s): an earlier run may have answered it", req.Sent.Format(time.RFC3339Nano), f.started.UTC().Format(time.RFC3339Nano))
	case !f.nonces[req.Nonce].IsZero():
		return "this check (nonce " + req.Nonce + ") was answered already"
	case len(f.nonces) >= maxFailsafeNonces:
		return fmt.Sprintf("over %d checks in %s", maxFailsafeNonces, maxRequestAge)
	}
	f.nonces[req.Nonce] = req.Sent.Add(maxRequestAge + time.Second)
	return ""
}

// on says whether failsafe mode is configured; a nil *failsafe is off.
func (f *failsafe) on() bool { return f != nil && len(f.cfg.Secret) > 0 }

// view is failsafe mode for /status.
func (f *failsafe) view() *FailsafeView {
	if !f.on() {
		return &FailsafeView{State: FailsafeOff, Note: "failsafe mode is off: the primary fences itself when its agent cannot renew its etcd session"}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := &FailsafeView{State: f.state, Note: f.note, Since: f.since.UTC(), Peers: append([]FailsafePeerView(nil), f.peers...)}
	switch {
	case f.state == FailsafeHeldOff && !time.Now().Before(f.holdoffUntil):
		v.State, v.Note = FailsafeStandby, ""
	case f.state == FailsafeKept && !(f.keeping && time.Now().Before(f.keptUntil)):
		// The keeper fences at once; until then this is no longer a kept primary.
		v.State, v.Note = FailsafeFenced, "the last confirmation ran out"
	}
	return v
}

// kept says whether the primary is kept writable without an etcd session now, and
// on which lease it held the leader key.
func (f *failsafe) kept() (bool, clientv3.LeaseID) {
	if !f.on() {
		return false, clientv3.NoLease
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keeping && time.Now().Before(f.keptUntil), f.keptLease
}

func (f *failsafe) setState(state FailsafeState, note string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setStateLocked(state, note)
}

// setStateLocked is setState with f.mu held.
func (f *failsafe) setStateLocked(state FailsafeState, note string) {
	if f.state != state {
		f.since = time.Now()
	}
	f.state, f.note = state, note
}

// heldOff says why this node must not make its server writable or coordinate now,
// "" when nothing stops it. A promise holds with failsafe mode off too: one
// restored from before a restart that turned it off.
func (f *failsafe) heldOff() string {
	if f == nil {
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if left := time.Until(f.holdoffUntil); left > 0 {
		return heldOffWhy(left)
	}
	return ""
}

func heldOffWhy(left time.Duration) string {
	return fmt.Sprintf("failsafe hold-off for %s more: a primary kept without etcd relies on this node's promise", left.Round(time.Millisecond))
}

// holdOff records, in memory, the promise to take no part in a failover until
// until (monotonic).
func (f *failsafe) notePromise(until time.Time, from string) {
	f.mu.Lock()
	if until.After(f.holdoffUntil) {
		f.holdoffUntil = until
	}
	was := f.state
	if f.state != FailsafeHeldOff {
		f.since = time.Now()
	}
	f.state, f.note = FailsafeHeldOff, "holding off failovers: "+from+" is kept as primary while etcd is unreachable"
	f.mu.Unlock()
	if was != FailsafeHeldOff {
		f.cfg.Log.Warn("failsafe: holding off failovers", zap.String("primary", from), zap.Duration("for", time.Until(until).Round(time.Millisecond)))
	}
}

// promise promises to take no part in a failover for holdOff from now, for the
// primary from at epoch, and keeps the promise before it is made: it records it in
// StateDir (so that a restarted agent keeps it), then holds off in memory (no
// session and no work starts from then on), then ends the session's work and
// waits until it has stopped, within ctx. An error means the promise must not be
// given: not recorded, or the work did not stop in time (the hold-off stays then:
// it only delays a failover).
func (f *failsafe) promise(ctx context.Context, from string, epoch uint64, holdOff time.Duration) error {
	// The promise runs from now: after the question was sent, before the answer.
	start := time.Now()
	rec := promiseRecord{From: from, Epoch: epoch, Given: start.UTC(), Until: start.Add(holdOff).UTC(), HoldOff: holdOff}
	if err := writePromise(f.cfg.StateDir, rec); err != nil {
		return fmt.Errorf("record the promise: %w", err)
	}
	f.notePromise(start.Add(holdOff), from)
	f.mu.Lock()
	interrupt := f.interrupt
	f.mu.Unlock()
	if interrupt == nil {
		return nil
	}
	if err := interrupt(ctx); err != nil {
		return fmt.Errorf("this node's work did not stop in time: %w", err)
	}
	return nil
}

// promiseFile, in StateDir, records the latest promise to hold off.
const promiseFile = "failsafe-promise.json"

// promiseRecord is a promise to hold off as recorded on disk. Its times are wall
// times: a monotonic time does not survive a restart.
type promiseRecord struct {
	From    string        `json:"from"`
	Epoch   uint64        `json:"epoch"`
	Given   time.Time     `json:"given"`
	Until   time.Time     `json:"until"`
	HoldOff time.Duration `json:"hold_off_ns"`
}

// writePromise records rec in dir durably (a new file renamed over the old one,
// both and the directory synced) before it returns.
func writePromise(dir string, rec promiseRecord) error {
	if dir == "" {
		return errors.New("no state_dir to record it in")
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, promiseFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, removes nothing
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, promiseFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// restore makes StateDir (0700) if it is missing and holds off for what is left of
// a promise recorded there by an earlier agent, timed by the wall clock (the only
// one that survives a restart): a clock stepped back lengthens it, never past the
// hold-off promised; stepped forward, it shortens it. A record that cannot be read
// holds the node off for a whole session_ttl: an unknown promise is no reason to
// act.
func (f *failsafe) restore() error {
	dir := f.cfg.StateDir
	if dir == "" {
		return errors.New("failsafe: no state_dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, promiseFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var rec promiseRecord
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err == nil && (rec.HoldOff <= 0 || rec.Until.IsZero() || rec.From == "") {
		err = errors.New("an incomplete record")
	}
	if err != nil {
		f.cfg.Log.Error("failsafe: a promise to hold off could not be read: holding off for session_ttl", zap.String("file", filepath.Join(dir, promiseFile)), zap.Error(err))
		f.notePromise(time.Now().Add(f.cfg.SessionTTL), "a primary (the record is unreadable)")
		return nil
	}
	left := min(time.Until(rec.Until), rec.HoldOff)
	if left <= 0 {
		return nil
	}
	f.cfg.Log.Warn("failsafe: a promise given before this agent started still holds", zap.String("primary", rec.From),
		zap.Time("until", rec.Until), zap.Duration("left", left.Round(time.Millisecond)))
	f.notePromise(time.Now().Add(left), rec.From)
	return nil
}

// attach records how to end the current session's work and wait for it.
func (f *failsafe) attach(interrupt func(context.Context) error) {
	f.mu.Lock()
	f.interrupt = interrupt
	f.mu.Unlock()
}

// holdoffLeft says how long this node must still hold off, and why; 0 when it need
// not.
func (f *failsafe) holdoffLeft() (time.Duration, string) {
	if f == nil {
		return 0, ""
	}
	f.mu.Lock()
	left := time.Until(f.holdoffUntil)
	f.mu.Unlock()
	if left <= 0 {
		return 0, ""
	}
	return left, heldOffWhy(left)
}

// confirm asks every peer once. When all confirm, writes are kept until the
// earliest hold-off answered, less FenceMargin, after the asking began (each peer
// holds off from a time after the asking; the fence takes up to FenceMargin).
// It returns whether they all confirmed, the note, and whether some peer reached
// etcd.
func (f *failsafe) confirm(ctx context.Context, peers []failsafePeer, epoch uint64) (keep bool, note string, etcdSeen bool) {
	start := time.Now() // monotonic
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return false, "no random nonce: " + err.Error(), false
	}
	req := FailsafeRequest{Cluster: f.cfg.Cluster, From: f.cfg.Node, Epoch: epoch, Nonce: hex.EncodeToString(nonce), Sent: time.Now().UTC()}
	answers := f.ask(ctx, peers, req)
	keep, holdOff, note := judgeFailsafe(peers, answers, f.cfg.FenceMargin)
	views := make([]FailsafePeerView, 0, len(answers))
	for _, a := range answers {
		v := FailsafePeerView{Node: a.Peer.Node, Agent: a.Peer.Agent}
		switch {
		case a.Err != nil:
			v.Answer = "no answer: " + a.Err.Error()
		case a.Answer != nil:
			v.Answer, v.OK = a.Answer.Reason, a.Answer.Confirm
			etcdSeen = etcdSeen || a.Answer.EtcdReachable
		}
		views = append(views, v)
	}
	f.mu.Lock()
	f.peers = views
	if keep {
		if until := start.Add(holdOff - f.cfg.FenceMargin); until.After(f.keptUntil) {
			f.keptUntil = until
		}
	}
	f.mu.Unlock()
	return keep, note, etcdSeen
}

// ask sends req to every peer at once and waits for all, each within CheckTimeout.
func (f *failsafe) ask(ctx context.Context, peers []failsafePeer, req FailsafeRequest) []peerAnswer {
	body, err := json.Marshal(req)
	if err != nil {
		out := make([]peerAnswer, len(peers))
		for i, p := range peers {
			out[i] = peerAnswer{Peer: p, Err: err}
		}
		return out
	}
	sig := sign(f.cfg.Secret, requestMAC, body)
	ctx, cancel := context.WithTimeout(ctx, f.cfg.CheckTimeout)
	defer cancel()
	out := make([]peerAnswer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		out[i].Peer = p
		if p.Agent == "" {
			out[i].Err = errors.New("where its agent listens is not known (it never published it)")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := f.askOne(ctx, p, req, body, sig)
			out[i].Answer, out[i].Err = a, err
		}()
	}
	wg.Wait()
	return out
}

func (f *failsafe) askOne(ctx context.Context, p failsafePeer, req FailsafeRequest, body []byte, sig string) (*FailsafeAnswer, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.Agent+FailsafePath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(SignatureHeader, sig)
	resp, err := f.client.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	a, err := readAnswer(f.cfg.Secret, req, p.Node, resp.StatusCode, b, resp.Header.Get(SignatureHeader))
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// failsafePeerSide is what the answering side needs of its agent.
type failsafePeerSide struct {
	// reachEtcd reads etcd once (a linearizable read), within ctx.
	reachEtcd func(ctx context.Context) error
	// known is the primary of record as this node last read it, and whether this
	// node is (or keeps) the writable primary itself.
	known func() (cluster.Primary, bool)
}

// handler answers the failsafe check (POST FailsafePath). A request not signed with
// the cluster's secret gets a 401 and changes nothing; a signed one sent again (a
// replay) gets a 409 and changes nothing either.
func (f *failsafe) handler(side failsafePeerSide) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		off := ""
		if !f.on() {
			off = "failsafe mode is off on this node"
		}
		var req FailsafeRequest
		if !readSigned(w, r, signedRequest{what: "failsafe check", secret: f.cfg.Secret, mac: requestMAC, off: off, log: f.cfg.Log}, &req) {
			return
		}
		if why := staleRequest(req.Sent); why != "" {
			text(w, http.StatusBadRequest, "bad request: "+why)
			return
		}
		if why := f.firstSeen(req); why != "" {
			f.cfg.Log.Warn("failsafe: a replayed check refused", zap.String("remote", r.RemoteAddr), zap.String("from", req.From), zap.String("why", why))
			text(w, http.StatusConflict, "replayed: "+why)
			return
		}
		received := time.Now()
		ectx, cancel := context.WithTimeout(r.Context(), f.cfg.EtcdTimeout)
		etcdErr := side.reachEtcd(ectx)
		cancel()
		if etcdErr != nil && ectx.Err() != nil {
			etcdErr = fmt.Errorf("no answer within %s", f.cfg.EtcdTimeout)
		}
		known, writable := side.known()
		a := answerFor(req, f.cfg.Cluster, f.cfg.Node, known, writable, etcdErr, f.cfg.SessionTTL)
		if a.Confirm {
			// The promise is kept before it is made: recorded, and this node's work
			// stopped, before the yes goes out, within the asker's time (less the
			// answer's way back).
			pctx, cancel := context.WithDeadline(r.Context(), received.Add(f.cfg.CheckTimeout-f.cfg.CheckTimeout/8))
			err := f.promise(pctx, req.From, req.Epoch, a.HoldOff)
			cancel()
			if err != nil {
				f.cfg.Log.Warn("failsafe: no promise given", zap.String("primary", req.From), zap.Error(err))
				a.Confirm, a.HoldOff = false, 0
				a.Reason = fmt.Sprintf("%s cannot promise to hold off: %v", f.cfg.Node, err)
			}
		}
		writeSigned(w, f.cfg.Secret, answerMAC, a)
	})
}

// startKeeping turns the primary to kept, if a confirmation holds now; it says
// whether it did.
func (f *failsafe) startKeeping(lease clientv3.LeaseID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !time.Now().Before(f.keptUntil) {
		return false
	}
	f.keeping, f.keptLease = true, lease
	if f.state != FailsafeKept {
		f.since = time.Now()
	}
	f.state = FailsafeKept
	f.note = "primary kept, " + f.lastNote()
	return true
}

// lastCheck says what the peers answered at the latest check.
func (f *failsafe) lastCheck() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.peers) == 0 {
		return "no peer asked"
	}
	var parts []string
	for _, p := range f.peers {
		parts = append(parts, p.Node+": "+p.Answer)
	}
	return strings.Join(parts, "; ")
}

// lastNote sums up the latest check's answers; f.mu held.
func (f *failsafe) lastNote() string {
	return fmt.Sprintf("all %d peers confirm etcd is unreachable", len(f.peers))
}

// stopKeeping ends keeping the primary, in state (fenced).
func (f *failsafe) stopKeeping(state FailsafeState, note string) {
	f.mu.Lock()
	f.keeping, f.keptUntil = false, time.Time{}
	f.mu.Unlock()
	f.setState(state, note)
}

// renewed records that the kept primary renewed its lease at start: the lease
// protects it again until SessionTTL - FenceMargin after that.
func (f *failsafe) renewed(start time.Time, note string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.keeping {
		return // a new session took over meanwhile (resumed): nothing is kept
	}
	if until := start.Add(f.cfg.SessionTTL - f.cfg.FenceMargin); until.After(f.keptUntil) {
		f.keptUntil = until
	}
	f.setStateLocked(FailsafeKept, note)
}

// stillKept records a new confirmation's note, unless a new session took over
// meanwhile (resumed).
func (f *failsafe) stillKept(note string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keeping {
		f.setStateLocked(FailsafeKept, note)
	}
}

// validUntil is when the latest confirmation (or renewal) stops keeping the primary.
func (f *failsafe) validUntil() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keptUntil
}

// resumed records that an etcd session is up again: nothing is kept any more.
func (f *failsafe) resumed() {
	if !f.on() {
		return
	}
	f.mu.Lock()
	was := f.keeping
	f.keeping, f.keptUntil = false, time.Time{}
	f.mu.Unlock()
	if was {
		f.cfg.Log.Info("failsafe: etcd session back; the primary is kept by its lease again")
	}
	if f.heldOff() == "" {
		f.setState(FailsafeStandby, "")
	}
}
