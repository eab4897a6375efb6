package agent

// The relay apply, both sides: the coordinator's agent sends the candidate's agent
// the salvaged transactions as the failed primary's agent copied them from its
// binary log files (SalvageAnswer.Relay), and the candidate's agent has its own
// server's replication SQL thread apply them, from one of that server's relay log
// files (replication.Instance.ApplyRelay): parallel workers commit them in groups,
// where a session would wait for the disk at each one. A candidate's agent that
// cannot start it (none running, its server refuses, its relay log directory not
// writable) says so before anything was given to the SQL thread, and the
// coordinator applies the print through a session of Baton's account
// (replication.ApplySalvage) as before. Requests and answers are signed with the
// cluster's peer secret, as salvage requests are.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/replication"
)

// SalvageApplyPath is where a candidate's agent applies a salvage (POST).
const SalvageApplyPath = "/salvage/apply"

const (
	relayRequestMAC = "baton salvage apply request\n"
	relayAnswerMAC  = "baton salvage apply answer\n"
	// maxRelayRequest bounds a relay apply request: a relay of MaxSalvage in
	// base64, and its list of transactions.
	maxRelayRequest = replication.MaxSalvage*3/2 + 8<<20
	// maxRelayApply bounds a candidate's apply, whatever the request asks.
	maxRelayApply = time.Minute
	// relayAnswerMargin is the part of the coordinator's time left for the
	// request's way there and the answer's way back.
	relayAnswerMargin = 100 * time.Millisecond
	// relayMarginPerMiB adds to it for each MiB of the relay copy (encoding,
	// transfer, decoding).
	relayMarginPerMiB = 20 * time.Millisecond
	// relayStopTimeout bounds the coordinator's own settling of a relay apply its
	// candidate's agent did not settle (TakeOverRelay), past any wait.
	relayStopTimeout = time.Second
)

// RelayRequest asks a candidate's agent to apply a salvage's relay copy.
type RelayRequest struct {
	Cluster string `json:"cluster"`
	// From is the asking node (the coordinator's); Node the candidate.
	From string `json:"from"`
	Node string `json:"node"`
	// Txns are the transactions Relay holds (CheckRelay), Guard what the
	// coordinator read of the candidate.
	Txns  []replication.BinlogTxn  `json:"txns"`
	Relay []byte                   `json:"relay"`
	Guard replication.SalvageGuard `json:"guard"`
	// Budget is how long the candidate's agent may take.
	Budget time.Duration `json:"budget_ns"`
	Nonce  string        `json:"nonce"`
	Sent   time.Time     `json:"sent"`
}

func (r *RelayRequest) stamp() (string, time.Time) { return r.Nonce, r.Sent }

// RelayAnswer is the candidate's agent's answer. Started says whether the SQL
// thread was given anything: when not, the candidate has none of it. Error says
// what went wrong, "" when every transaction was applied.
type RelayAnswer struct {
	Cluster string        `json:"cluster"`
	Node    string        `json:"node"`
	Nonce   string        `json:"nonce"`
	Started bool          `json:"started"`
	Error   string        `json:"error,omitempty"`
	Threads int           `json:"threads,omitempty"`
	Took    time.Duration `json:"took_ns,omitempty"`
}

// applyHandler answers POST SalvageApplyPath, as salvage requests are answered
// (handler): unsigned, 401; signed, a signed answer. intent is the flow under way
// as this agent last read the cluster (nil for none).
func (s *salvager) applyHandler(intent func() *cluster.Intent) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entry := time.Now() // the apply's time counts from here, not from after the body's reading
		var req RelayRequest
		if !s.readRequest(w, r, "salvage apply request", relayRequestMAC, maxRelayRequest, &req) {
			return
		}
		// The server's write timeout is shorter than the longest apply.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(min(req.Budget, maxRelayApply) + 5*time.Second))
		a := s.applyRelay(r.Context(), entry, req, intent())
		writeSigned(w, s.cfg.Secret, relayAnswerMAC, a)
	})
}

// applyRelay applies req on the local server, or says why not: only while a
// failover away from another node is under way (intent), so that the peer secret
// alone does not let anyone write to a replica.
func (s *salvager) applyRelay(ctx context.Context, entry time.Time, req RelayRequest, intent *cluster.Intent) RelayAnswer {
	a := RelayAnswer{Cluster: s.cfg.Cluster, Node: s.cfg.Node, Nonce: req.Nonce}
	log := s.cfg.Log.With(zap.String("from", req.From), zap.Int("txns", len(req.Txns)))
	refuse := func(why string) RelayAnswer {
		a.Error = why
		log.Warn("salvage apply: not started", zap.String("why", why))
		return a
	}
	switch {
	case req.Cluster != s.cfg.Cluster:
		return refuse(fmt.Sprintf("asked for cluster %q; this node is in %q", req.Cluster, s.cfg.Cluster))
	case req.Node != s.cfg.Node:
		return refuse(fmt.Sprintf("asked for %q; this node is %q", req.Node, s.cfg.Node))
	case intent == nil || intent.Kind != cluster.FlowFailover:
		return refuse("no failover is under way as this node last read the cluster: a salvage is applied only during one")
	case intent.From == s.cfg.Node:
		return refuse("the failover under way is away from this node")
	case s.local == nil:
		return refuse("this agent has no connection to its server")
	}
	if why, replay := s.seen(req.Nonce, time.Now()); replay {
		return refuse(why)
	}
	if !s.busy.TryLock() {
		return refuse("another salvage is under way on this node")
	}
	defer s.busy.Unlock()
	budget := min(req.Budget, maxRelayApply)
	if budget <= 0 {
		return refuse("no time to apply in")
	}
	if age := time.Since(req.Sent); age > budget {
		// Sent longer ago than it had time for (a stall of this agent, or clocks
		// that differ by as much): the coordinator has moved on.
		return refuse(fmt.Sprintf("sent %s ago, more than its %s to apply in", age.Round(time.Millisecond), budget.Round(time.Millisecond)))
	}
	// The coordinator going away (its connection closed) ends the apply if the SQL
	// thread was not started yet; once it is, the apply runs to its own end
	// (ApplyRelay), before its deadline.
	actx, cancel := context.WithDeadline(ctx, entry.Add(budget))
	defer cancel()
	// What the apply may leave changed if this agent dies in the middle, and the
	// coordinator with it (when it was this agent): put back when it starts again.
	prior, err := s.local.ParallelThreads(actx)
	if err != nil {
		return refuse(err.Error())
	}
	if err := s.mark(relayMark{Threads: prior, At: time.Now().UTC()}); err != nil {
		return refuse("record the replication settings before the apply: " + err.Error())
	}
	start := time.Now()
	res, err := s.local.ApplyRelay(actx, req.Relay, req.Txns, req.Guard)
	if !errors.Is(err, replication.ErrSessionNotEnded) && !errors.Is(err, replication.ErrSettingsNotBack) {
		s.unmark() // the apply put them back, or never changed them
	}
	a.Took, a.Threads = time.Since(start), res.Threads
	a.Started = !errors.Is(err, replication.ErrRelayNotStarted)
	if err != nil {
		a.Error = err.Error()
	}
	log.Info("salvage apply", zap.Bool("started", a.Started), zap.Int("threads", res.Threads), zap.String("file", res.File),
		zap.Duration("took", a.Took), zap.String("error", a.Error))
	return a
}

// Apply applies tail to the candidate to (failover.Salvager): through its agent
// and its server's SQL thread when tail holds a relay copy, else, or when that
// agent did not start it, through a session of Baton's account. Whatever the
// candidate's agent did not settle (no answer came, or it started and failed) the
// coordinator settles itself before it returns (replication.TakeOverRelay), so
// that what the candidate has then is final and its settings are back.
func (s *salvager) Apply(ctx context.Context, to failover.SalvageTarget, tail failover.SalvageTail, g replication.SalvageGuard) (string, error) {
	session := "a session of Baton's account"
	applySession := func(why string) (string, error) {
		if why != "" {
			s.cfg.Log.Warn("salvage: applying through a session", zap.String("candidate", to.Node), zap.String("why", why))
			session += " (" + why + ")"
		}
		return session, replication.ApplySalvage(ctx, s.cfg.Dialer, to.Addr, tail.Script, g)
	}
	if len(tail.Relay) == 0 || to.Agent == "" || !s.on() {
		return applySession("")
	}
	db, err := s.cfg.Dialer.Open(to.Addr)
	if err != nil {
		return applySession(err.Error())
	}
	defer db.Close()
	cand, err := replication.New(db, replication.Config{Name: to.Node, Flavor: replication.FlavorMariaDB, NoSpare: true})
	if err != nil {
		return applySession(err.Error())
	}
	defer cand.Close()
	// What the relay apply changes, to put back if its agent does not.
	threads, err := cand.ParallelThreads(ctx)
	if err != nil {
		return applySession(err.Error())
	}
	prior := replication.RelaySettings{Threads: threads, UsingGTID: g.UsingGTID}
	a, err := s.askRelay(ctx, to, tail, g)
	via := to.Node + "'s replication SQL thread"
	if a.Threads > 0 {
		via += fmt.Sprintf(" (%d workers)", a.Threads)
	}
	settle := func(wait time.Duration) error {
		if errors.Is(ctx.Err(), context.Canceled) {
			// This flow was cancelled (its coordinator stepping down): it takes
			// nothing over; what the candidate has is not final.
			return fmt.Errorf("%w: the flow was cancelled before the relay apply was settled", replication.ErrSessionNotEnded)
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait+relayStopTimeout)
		defer cancel()
		until, _ := replication.ParseGTIDSet(replication.FlavorMariaDB, g.SlavePosAfter)
		return cand.TakeOverRelay(sctx, prior, until, wait)
	}
	switch {
	case err == nil && a.Error == "":
		return via, nil
	case err == nil && !a.Started, errors.Is(err, syscall.ECONNREFUSED):
		// Nothing was given to the SQL thread: what the agent changed before it
		// stopped is put back, then the session's apply, behind the same guard, in
		// the time left.
		why := a.Error
		if err != nil {
			why = err.Error()
		}
		if serr := settle(0); serr != nil {
			s.cfg.Log.Warn("salvage: the candidate's replication settings not put back after a relay apply that did not start", zap.Error(serr))
		}
		return applySession(to.Node + "'s agent did not start the relay apply: " + why)
	case err == nil:
		err = errors.New(a.Error)
		if serr := settle(0); serr != nil {
			return via, fmt.Errorf("%w; and %w", err, serr)
		}
		return via, err
	}
	// No answer: the SQL thread may be applying (an agent killed in the middle
	// leaves it running). It is given what is left of the apply's time.
	wait := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl), 0)
	}
	if serr := settle(wait); serr != nil {
		return via, fmt.Errorf("%s's agent did not answer (%w), and the relay apply could not be settled: %w", to.Node, err, serr)
	}
	return via, fmt.Errorf("%s's agent did not answer (%w); its SQL thread was given the apply's time, then stopped", to.Node, err)
}

// askRelay sends the relay apply request to the candidate's agent and reads its
// signed answer, within ctx less relayAnswerMargin for the candidate.
func (s *salvager) askRelay(ctx context.Context, to failover.SalvageTarget, tail failover.SalvageTail, g replication.SalvageGuard) (RelayAnswer, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return RelayAnswer{}, errors.New("no deadline")
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return RelayAnswer{}, fmt.Errorf("no random nonce: %w", err)
	}
	// The candidate's time ends before this side's by more than the request's way
	// there and the answer's way back.
	margin := relayAnswerMargin + time.Duration(len(tail.Relay)>>20)*relayMarginPerMiB
	req := RelayRequest{Cluster: s.cfg.Cluster, From: s.cfg.Node, Node: to.Node, Txns: tail.Txns, Relay: tail.Relay, Guard: g,
		Budget: time.Until(dl) - margin, Nonce: hex.EncodeToString(nonce), Sent: time.Now().UTC()}
	body, err := json.Marshal(req)
	if err != nil {
		return RelayAnswer{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+to.Agent+SalvageApplyPath, bytes.NewReader(body))
	if err != nil {
		return RelayAnswer{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(SignatureHeader, sign(s.cfg.Secret, relayRequestMAC, body))
	resp, err := s.client.Do(hr)
	if err != nil {
		return RelayAnswer{}, fmt.Errorf("ask %s: %w", to.Agent, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return RelayAnswer{}, fmt.Errorf("read %s's answer: %w", to.Agent, err)
	}
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		// Refused before it was read (no such path, salvage off, unsigned, too
		// large, stale): nothing started.
		return RelayAnswer{Error: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, firstLine(b))}, nil
	case resp.StatusCode != http.StatusOK:
		return RelayAnswer{}, fmt.Errorf("%s answered HTTP %d: %s", to.Agent, resp.StatusCode, firstLine(b))
	}
	if len(b) > maxBody || !signedBy(s.cfg.Secret, relayAnswerMAC, b, resp.Header.Get(SignatureHeader)) {
		return RelayAnswer{}, fmt.Errorf("%s's answer is not signed with this cluster's peer secret", to.Agent)
	}
	var a RelayAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return RelayAnswer{}, fmt.Errorf("decode %s's answer: %w", to.Agent, err)
	}
	if a.Cluster != req.Cluster || a.Node != req.Node || a.Nonce != req.Nonce {
		return RelayAnswer{}, fmt.Errorf("%s answered another request (%s, %s)", to.Agent, a.Cluster, a.Node)
	}
	return a, nil
}

// relayWritable says why a salvage applied to this node could not be written to
// its server's relay log files, as far as the relay log index tells (the server
// makes both alike: 0660, in the same directory), "" when it could or there is
// no index yet to tell: the agent needs write access to them (the mysql group;
// with systemd, a ReadWritePaths= for their directory). Such a salvage then goes
// through a session of Baton's account, slower.
func (s *salvager) relayWritable() string {
	s.mu.Lock()
	index := s.files.RelayIndex
	s.mu.Unlock()
	if index == "" {
		return ""
	}
	if err := unix.Access(index, unix.W_OK); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Sprintf("the server's relay log files (%s) are not writable by this agent (%v)", index, err)
	}
	return ""
}

// relayMarkFile, in the agent's state_dir, holds slave_parallel_threads as it was
// before a relay apply this agent ran, until that apply has put it back (or the
// coordinator has: TakeOverRelay). An agent killed in the middle, and the
// coordinator with it (often the same agent), would leave the server at
// RelayThreads workers: the next start puts it back (settleRelayLeftover).
const relayMarkFile = "salvage-relay.json"

type relayMark struct {
	Threads int       `json:"threads"`
	At      time.Time `json:"at"`
}

// mark records m (no state_dir: nothing to record in, nothing recorded).
func (s *salvager) mark(m relayMark) error {
	if s.cfg.StateDir == "" {
		return nil
	}
	path := filepath.Join(s.cfg.StateDir, relayMarkFile)
	var old relayMark
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &old) == nil {
		m.Threads = old.Threads // an earlier apply's record not settled yet: its count is the one from before
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".new", b, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".new", path)
}

func (s *salvager) unmark() {
	if s.cfg.StateDir != "" {
		if err := os.Remove(filepath.Join(s.cfg.StateDir, relayMarkFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.cfg.Log.Warn("salvage: remove the relay apply's record", zap.Error(err))
		}
	}
}

// settleRelayLeftover puts back what a relay apply of an earlier agent left
// changed (relayMarkFile): slave_parallel_threads, when the server still runs
// RelayThreads workers, which only the apply sets. A server that cannot be read or
// set keeps the record for the next start.
func (s *salvager) settleRelayLeftover(ctx context.Context) {
	if s.cfg.StateDir == "" || s.local == nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.StateDir, relayMarkFile))
	if err != nil {
		return // none (or unreadable: nothing to go by)
	}
	var m relayMark
	if err := json.Unmarshal(b, &m); err != nil {
		s.cfg.Log.Warn("salvage: a relay apply's record that does not read: forgotten", zap.Error(err))
		s.unmark()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cur, err := s.local.ParallelThreads(ctx)
	if err != nil {
		s.cfg.Log.Warn("salvage: a relay apply of an earlier agent may have left slave_parallel_threads changed; the server cannot be read now", zap.Int("was", m.Threads), zap.Error(err))
		return
	}
	if cur == replication.RelayThreads && m.Threads != cur {
		if err := s.local.SetParallelThreads(ctx, m.Threads); err != nil {
			s.cfg.Log.Warn(fmt.Sprintf("salvage: a relay apply of an earlier agent left slave_parallel_threads at %d, not put back to %d now (the next start tries again)", cur, m.Threads), zap.Error(err))
			return
		}
		s.cfg.Log.Info("salvage: slave_parallel_threads put back, as it was before a relay apply of an earlier agent", zap.Int("threads", m.Threads), zap.Time("apply", m.At))
	}
	s.unmark()
}
