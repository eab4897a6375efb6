package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/failpoint"
	"github.com/baton-ha/baton/replication"
)

// Salvage: with asynchronous replication a failed primary may have logged, and
// acknowledged, transactions no replica received. When its mysqld is dead but its
// agent answers, the failover asks that agent for every transaction its binary
// log files hold after the candidate's position, and applies them to the
// candidate, with their own GTIDs, before the commit: the new primary then has
// every transaction the old one committed. docs/architecture.md, "Salvage", has
// the argument.

// DefaultSalvageTimeout bounds the salvage step when CoordinatorConfig says
// nothing: asking the old primary's agent, and applying what it answered.
const DefaultSalvageTimeout = 2 * time.Second

// Salvager is how a flow gets a failed primary's last transactions from its
// agent, and applies them to a candidate: internal/agent's, which signs its
// requests with the cluster's peer secret.
type Salvager interface {
	// Fetch asks the failed primary's agent, at agent (host:port), for what its
	// binary logs hold after q.After, within ctx.
	Fetch(ctx context.Context, agent string, q SalvageQuery) (SalvageTail, error)
	// Apply applies tail's transactions to the candidate to, behind g, within
	// ctx, and says how: through the candidate's agent and its server's
	// replication SQL thread when tail holds their relay copy
	// (replication.Instance.ApplyRelay), else, or when that agent could not start
	// it, through a session of Baton's account (replication.ApplySalvage).
	Apply(ctx context.Context, to SalvageTarget, tail SalvageTail, g replication.SalvageGuard) (string, error)
}

// SalvageTarget is the candidate a salvage is applied to: its server's address,
// its agent's (host:port, "" when it has none running).
type SalvageTarget struct {
	Node, Addr, Agent string
}

// SalvageQuery is what a flow asks a failed primary's agent.
type SalvageQuery struct {
	// Node is the failed primary, the primary of record at Epoch.
	Node  string
	Epoch uint64
	// Candidate is the server the transactions are for; After its executed set.
	Candidate string
	After     replication.GTIDSet
	// Fenced says this flow fenced the old primary's server (read_only on,
	// client connections killed): the agent may read the files of a server that
	// runs, as long as it sees it read_only too. Without it, the agent reads only
	// when it is sure mysqld does not run.
	Fenced bool
	// Budget is how long the agent may spend reading: it answers with what it
	// has read by then.
	Budget time.Duration
}

// SalvageTail is a failed primary's agent's answer.
type SalvageTail struct {
	// Script and Txns: what it read, whole transactions only (ParseBinlogPrint);
	// Stopped why it read no further, GTIDList the first file's Gtid_list.
	replication.BinlogPrint
	// Files are the binary log files read (base names).
	Files []string
	// Relay is Txns copied from those files byte for byte
	// (replication.SalvageRelay), for the candidate's SQL thread to apply; nil
	// when the agent made none.
	Relay []byte
	// Safe says why no server writes to the files: how the agent knows mysqld is
	// not running, or that it is fenced.
	Safe string
	// SemiSync is the old primary's semi-sync state as its agent last read it,
	// at SemiSyncAt; "" when it never did, or the cluster runs without.
	SemiSync   cluster.SemiSyncState
	SemiSyncAt time.Time
	// ReadTook is how long the agent took to read.
	ReadTook time.Duration
}

// salvageOutcome is what the salvage step did, for its step record, the history
// event, and the flow.
type salvageOutcome struct {
	rec  *cluster.Salvage
	note string
	// err, when set, says what went wrong or stayed behind: the step is recorded
	// failed, and the failover goes on.
	err error
	// refuse, when set, ends the flow: the candidate failed while the salvaged
	// transactions were applied, or this flow no longer owns its intent.
	refuse error
}

// salvageBudget splits the salvage step's time: the agent's reading, the answer's
// way back, the apply, and a last read of the candidate.
type salvageBudget struct {
	read, fetch, apply, total time.Duration
}

func budgetFor(total time.Duration) salvageBudget {
	if total <= 0 {
		total = DefaultSalvageTimeout
	}
	return salvageBudget{read: total / 2, fetch: total * 6 / 10, apply: total * 9 / 10, total: total}
}

// salvageRun is what the salvage step needs besides the flow: the candidate, and
// whether the flow fenced the old primary (waitFence waits for that fence to end).
type salvageRun struct {
	candidate string
	waitFence func() bool
	// fencing says whether the flow's fence of the old primary is still under way
	// (waitFence would wait); nil is never.
	fencing func() bool
	// owns checks that this flow still owns its intent (cluster.Store.HoldsIntent);
	// nil never reads as owning.
	owns func(context.Context) error
}

// salvage is the failover's salvage step, after the candidate has applied its
// relay log and before the commit. It never blocks the flow past
// CoordinatorConfig.SalvageTimeout, and anything short of a failed candidate or a
// lost intent lets the failover go on (availability first), saying what stayed
// behind on the old primary's disk.
func (f *flow) salvage(ctx context.Context, run salvageRun) salvageOutcome {
	cfg := f.c.cfg
	from, cand := f.d.From, run.candidate
	rec := &cluster.Salvage{From: from, To: cand}
	out := salvageOutcome{rec: rec}
	behind := func(format string, args ...any) salvageOutcome {
		rec.LeftBehind = fmt.Sprintf(format, args...)
		out.note, out.err = "nothing salvaged", errors.New(rec.LeftBehind)
		return out
	}
	if cfg.Salvage == nil {
		return salvageOutcome{note: fmt.Sprintf("salvage is off (salvage: false, or no peer_secret): whatever %s logged that no replica received stays on its disk", from)}
	}
	b := budgetFor(cfg.SalvageTimeout)
	start := time.Now()
	in, err := f.instance(cand)
	if err != nil {
		return behind("candidate %s: %v", cand, err)
	}
	rctx, cancel := context.WithTimeout(ctx, b.fetch)
	st, err := in.Status(rctx)
	cancel()
	if err != nil {
		return behind("candidate %s not read (%v): its position is unknown, whatever %s logged that no replica received stays on its disk", cand, err, from)
	}
	if st.Flavor != replication.FlavorMariaDB {
		return behind("salvage is MariaDB's only (%s runs %s)", cand, st.Flavor)
	}
	rec.After = st.Executed.Position()
	after := fmt.Sprintf("whatever %s logged after %s (%s's position)", from, rec.After, cand)
	if !st.ReadOnly {
		return behind("%s: candidate %s is writable before the commit, nothing is applied to it", after, cand)
	}
	n, live := f.snap.Nodes[from]
	if !live || n.Agent == "" {
		return behind("%s stays on its disk: its agent is not running", after)
	}
	if n.ServerRead && n.SemiSync == cluster.SemiSyncOn && !n.AwaitsAck && n.SemiSyncTimeout >= time.Minute &&
		run.fencing != nil && run.fencing() {
		// And no commit could fall back to asynchronous meanwhile: none was waiting
		// for an acknowledgement, and the timeout is a minute or more, far beyond the
		// fence's deadline (a fallback would make the tail hold acknowledged commits).
		// Under semi-sync nothing of the tail is applied (below). Asking would wait
		// for the fence of a server that still runs (a full disk's: 0.2 s measured),
		// in the failover's path, only to hear that from the agent, whose semi-sync
		// state is the one it publishes. A server not running is asked: its answer
		// comes at once and says what stayed behind.
		return behind("%s stays on its disk, not read: never acknowledged: semi-sync was on (as %s's agent published it, %s), and the read would wait for %s's fence, still under way",
			after, from, n.At.UTC().Format(time.RFC3339Nano), from)
	}
	fenced := run.waitFence != nil && run.waitFence()
	q := SalvageQuery{Node: from, Epoch: f.snap.Primary.Epoch, Candidate: cand, After: st.Executed, Fenced: fenced, Budget: b.read}
	fctx, cancel := context.WithDeadline(ctx, start.Add(b.fetch))
	tail, err := cfg.Salvage.Fetch(fctx, n.Agent, q)
	cancel()
	rec.Read = tail.ReadTook
	if err != nil {
		return behind("%s stays on its disk: its agent gave nothing: %v", after, err)
	}
	// What is applied is what the script holds: read it again here.
	print := replication.ParseBinlogPrint(tail.Script, tail.Files)
	if got, said := txnGTIDs(print.Txns), txnGTIDs(tail.Txns); !slices.Equal(got, said) {
		return behind("%s stays on its disk: the agent's answer lists %d transactions, its script holds %d", after, len(said), len(got))
	}
	print.GTIDList, print.HasGTIDList = tail.GTIDList, tail.HasGTIDList
	if tail.Relay != nil {
		if err := replication.CheckRelay(tail.Relay, print.Txns); err != nil {
			f.c.log.Warn("salvage: the relay copy is not the script's transactions; the script is applied through a session", zap.Error(err))
			tail.Relay = nil
		}
	}
	if len(print.Txns) == 0 {
		if tail.Stopped != "" {
			return behind("%s stays on its disk: no whole transaction read (%s)", after, tail.Stopped)
		}
		out.note = fmt.Sprintf("%s logged nothing after %s (%s)", from, rec.After, tail.Safe)
		return out
	}
	plan, err := replication.CheckSalvage(print, st.Executed)
	if err != nil {
		return behind("%s stays on its disk: %v", after, err)
	}
	first, last := print.Txns[0], print.Txns[len(print.Txns)-1]
	read := fmt.Sprintf("%d transactions (%s to %s, %s:%d to %s:%d)", len(print.Txns), first.GTID, last.GTID, first.File, first.Pos, last.File, last.End)
	if tail.Stopped != "" {
		read += "; the read stopped there: " + tail.Stopped
	}
	if tail.SemiSync == cluster.SemiSyncOn {
		// AFTER_SYNC: a commit was acknowledged only once a replica had it, and the
		// candidate has everything every replica received. The tail was never
		// acknowledged to a client, which may retry it: applying it as well would
		// commit it twice.
		return behind("%s on %s's disk were never acknowledged: semi-sync was on (as its agent last read it, %s); not applied",
			read, from, tail.SemiSyncAt.UTC().Format(time.RFC3339Nano))
	}
	if run.owns == nil {
		return behind("%s not applied: this flow cannot check that it still owns its intent", read)
	}
	octx, cancel := context.WithDeadline(ctx, start.Add(b.apply))
	err = run.owns(octx)
	cancel()
	if err != nil {
		out.refuse = fmt.Errorf("salvage: this flow no longer owns its intent (%w): nothing applied to %s", err, cand)
		return behind("%s not applied: %v", read, out.refuse)
	}
	failpoint.Hit(failpoint.BeforeSalvageApply)
	g := replication.SalvageGuard{BinlogState: st.MariaDB.BinlogState, SlavePos: st.MariaDB.SlavePos, SlavePosAfter: plan.After.Position(),
		UsingGTID: st.MariaDB.UsingGTID}
	actx, cancel := context.WithDeadline(ctx, start.Add(b.apply))
	applyStart := time.Now()
	cn := f.snap.Nodes[cand]
	via, applyErr := cfg.Salvage.Apply(actx, SalvageTarget{Node: cand, Addr: cn.Addr, Agent: cn.Agent}, tail, g)
	rec.Apply, rec.Via = time.Since(applyStart), via
	cancel()
	if errors.Is(applyErr, replication.ErrSessionNotEnded) {
		// The apply's session may still be committing what it was sent: what the
		// candidate has cannot be read as final, and it is not promoted beside it.
		out.refuse = &refusal{fmt.Sprintf("candidate %s: the salvage's session on it was abandoned and its end not seen (%v): refused, the next try ranks the replicas again", cand, applyErr)}
		return behind("%s: %v", read, out.refuse)
	}
	// What the candidate has now is what counts, whatever the apply said.
	// Its own time when the apply ran late (a candidate's agent whose apply the
	// coordinator had to settle itself): a read cut short would refuse a candidate
	// that is fine.
	vctx, cancel := context.WithDeadline(ctx, later(start.Add(b.total), time.Now().Add(finalReadReserve)))
	now, readErr := in.Status(vctx)
	cancel()
	if readErr != nil {
		out.refuse = &refusal{fmt.Sprintf("candidate %s failed while %s from %s were applied to it (apply: %v; read: %v): refused, the next try ranks the replicas again",
			cand, read, from, applyErr, readErr)}
		return behind("%s: %v", read, out.refuse)
	}
	var applied, missing []string
	for i, g := range plan.GTIDs {
		if now.Executed.Contain(replication.MustParseGTIDSet(replication.FlavorMariaDB, g)) {
			applied = append(applied, g)
			continue
		}
		missing = plan.GTIDs[i:]
		break
	}
	rec.Applied = len(applied)
	if len(applied) > 0 {
		a, z := print.Txns[0], print.Txns[len(applied)-1]
		rec.First, rec.Last, rec.File, rec.Pos, rec.EndFile, rec.EndPos = a.GTID, z.GTID, a.File, a.Pos, z.File, z.End
	}
	out.note = fmt.Sprintf("salvaged %d transactions from %s (%s) onto %s: %s to %s, %s:%d to %s:%d; read in %s, applied in %s by %s", rec.Applied, from, tail.Safe, cand,
		rec.First, rec.Last, rec.File, rec.Pos, rec.EndFile, rec.EndPos, rec.Read.Round(time.Millisecond), rec.Apply.Round(time.Millisecond), via)
	var left []string
	if len(missing) > 0 {
		why := "not applied"
		if applyErr != nil {
			why = "the apply stopped: " + applyErr.Error()
		}
		left = append(left, fmt.Sprintf("%d of the %d read (%s to %s): %s", len(missing), len(plan.GTIDs), missing[0], missing[len(missing)-1], why))
	} else if applyErr != nil {
		left = append(left, "the apply said: "+applyErr.Error())
	}
	if tail.Stopped != "" {
		left = append(left, "after "+last.GTID+": "+tail.Stopped)
	}
	if len(applied) == 0 {
		out.note = "nothing salvaged"
	}
	if len(left) > 0 {
		rec.LeftBehind = strings.Join(left, "; ")
		out.err = errors.New(rec.LeftBehind)
	}
	f.c.log.Info("salvage", zap.String("from", from), zap.String("to", cand), zap.Int("applied", rec.Applied),
		zap.String("first", rec.First), zap.String("last", rec.Last), zap.String("left_behind", rec.LeftBehind))
	return out
}

// finalReadReserve is the least time the salvage step's last read of the
// candidate gets.
const finalReadReserve = 300 * time.Millisecond

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func txnGTIDs(txns []replication.BinlogTxn) []string {
	out := make([]string, len(txns))
	for i, t := range txns {
		out[i] = t.GTID
	}
	return out
}
