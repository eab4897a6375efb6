package reconcile

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/replication"
)

// A quarantined node's way back: the reconciler looks its errant GTIDs up in its
// server's binary logs (NodeQuarantine with Inspect), and Analyze decides from that
// evidence whether it may repair the server (NodeRepairErrant); these functions are
// the side effects.

// MaxErrantTxns bounds the errant GTIDs a node publishes with their evidence.
const MaxErrantTxns = 20

// inspectBackoff is how long a failed look into the binary logs is not tried again.
const inspectBackoff = 5 * time.Second

// inspectTimeout bounds one look into the binary logs.
const inspectTimeout = 10 * time.Second

// rejoinState is the reconciler's evidence about its node's errant GTIDs. Its own
// lock: it is read while the reconciler's is held (build), never the other way.
type rejoinState struct {
	mu        sync.Mutex
	check     *ErrantCheck
	failedAt  time.Time
	failedWhy string // why the latest look failed, "" when it did not
	lastNote  string
	lastCheck string
	// refused is the errant set whose flashback was refused for good, and why.
	refused, refusedWhy string
}

// fill sets what Analyze needs of the evidence, and the disk's state, in self.
func (st *rejoinState) fill(self *Self, rep detector.Report, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	self.ErrantCheck = st.check
	self.InspectBackoff = !st.failedAt.IsZero() && now.Sub(st.failedAt) < inspectBackoff
	self.InspectErr = st.failedWhy
	if st.check != nil && st.check.Errant == st.refused {
		self.UndoRefused = st.refusedWhy
	}
	self.DiskRoom = DiskRoom(rep)
}

// txns returns the evidence to publish while the node is quarantined for errant.
func (st *rejoinState) txns(errant string) []replication.ErrantTxn {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.check == nil || st.check.Errant != errant {
		return nil
	}
	t := st.check.Evidence.Txns
	return append([]replication.ErrantTxn(nil), t[:min(len(t), MaxErrantTxns)]...)
}

// note logs why a quarantined node stays so, once per change of reason.
func (st *rejoinState) note(log *zap.Logger, why string) {
	st.mu.Lock()
	news := st.lastNote != why
	st.lastNote = why
	st.mu.Unlock()
	if news {
		log.Warn("quarantined: " + why)
	}
}

// refuse remembers that the flashback of errant was refused, and why: the next
// passes rebuild the node instead of trying the same flashback again.
func (st *rejoinState) refuse(errant, why string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.refused, st.refusedWhy = errant, why
}

func (st *rejoinState) set(c *ErrantCheck, failed time.Time) {
	st.setFailed(c, failed, "")
}

// setFailed is set, with why the look failed ("" when it did not).
func (st *rejoinState) setFailed(c *ErrantCheck, failed time.Time, why string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.check, st.failedAt, st.failedWhy = c, failed, why
}

// recall applies a node's recorded findings to a fresh look at its binary logs: a
// GTID once found real stays real, whatever the binary logs say now (a purge, or a
// file lost, leaves nothing to read). An unreadable record makes every GTID real.
func recall(txns []replication.ErrantTxn, rec *cluster.ErrantRecord) []replication.ErrantTxn {
	out := slices.Clone(txns)
	if rec == nil {
		return out
	}
	for i, t := range out {
		switch {
		case t.Kind == replication.ErrantReal:
		case rec.Unreadable:
			out[i].Kind = replication.ErrantReal
			out[i].Note = "the node's errant record cannot be read: taken as real"
		case slices.Contains(rec.Real, t.GTID):
			out[i].Kind = replication.ErrantReal
			out[i].Note = fmt.Sprintf("found written in the binary logs at %s (recorded); no longer readable there", rec.At.UTC().Format(time.RFC3339))
		}
	}
	return out
}

// newlyReal lists the GTIDs of txns found real in the binary logs (their events
// read) that rec does not hold yet. None for an unreadable record: it is left for
// a person to read, never written over.
func newlyReal(txns []replication.ErrantTxn, rec *cluster.ErrantRecord) []string {
	if rec != nil && rec.Unreadable {
		return nil
	}
	var out []string
	for _, t := range txns {
		if t.Kind != replication.ErrantReal || t.First == nil {
			continue
		}
		if rec != nil && slices.Contains(rec.Real, t.GTID) {
			continue
		}
		out = append(out, t.GTID)
	}
	return out
}

// inspectErrant looks the errant GTIDs of a up in the local binary logs and keeps
// the evidence for the next pass, with what earlier looks found real (recall); a
// new finding of real transactions is recorded in etcd before the evidence is
// kept, so that it outlives the binary logs and the agent.
func (r *Reconciler) inspectErrant(ctx context.Context, snap cluster.Snapshot, a Analysis) {
	ev, err := r.cfg.Local.InspectErrant(ctx, a.Primary, inspectTimeout)
	if err != nil {
		r.log.Warn("look the errant GTIDs up in the binary logs", zap.Error(err))
		r.rejoin.setFailed(nil, r.cfg.Now(), err.Error())
		return
	}
	errant := ev.Errant.String()
	if errant != a.Errant {
		// The server moved since the pass read it: look again at the next pass.
		r.log.Info("errant GTIDs changed while inspected", zap.String("was", a.Errant), zap.String("now", errant))
		r.rejoin.set(nil, time.Time{})
		return
	}
	var rec *cluster.ErrantRecord
	if got, ok := snap.ErrantRecords[r.cfg.Node]; ok {
		rec = &got
	}
	ev.Txns = recall(ev.Txns, rec)
	if found := newlyReal(ev.Txns, rec); len(found) > 0 {
		next := cluster.ErrantRecord{Node: r.cfg.Node, Real: found, At: r.cfg.Now().UTC()}
		if rec != nil {
			next.Real = append(slices.Clone(rec.Real), found...)
		}
		if err := r.cfg.Store.PutErrantRecord(ctx, next); err != nil {
			// Without the record the evidence is not kept: no decision is made on
			// a finding that would not survive the agent.
			r.log.Warn("record the real errant transactions", zap.Strings("gtids", found), zap.Error(err))
			r.rejoin.setFailed(nil, r.cfg.Now(), "record the real errant transactions in etcd: "+err.Error())
			return
		}
	}
	var kinds []string
	for _, t := range ev.Txns {
		k := t.GTID + " " + t.Kind.String()
		if t.First != nil {
			k += " (" + t.First.String() + ")"
		}
		if t.Note != "" {
			k += " (" + t.Note + ")"
		}
		kinds = append(kinds, k)
	}
	r.log.Info("errant GTIDs looked up in the binary logs", zap.String("errant", errant), zap.Bool("all_phantom", ev.Phantom()),
		zap.Strings("gtids", kinds[:min(len(kinds), MaxErrantTxns)]))
	r.rejoin.set(&ErrantCheck{Errant: errant, Evidence: ev}, time.Time{})
	r.Kick() // decide on the evidence now, not at the next tick
}

// repairErrant makes the local server forget its errant GTIDs (RepairErrant: its
// binlog GTID state reset to what its binary logs hold), follows the primary of
// record, and records what it did and why in the history and the log. Real errant
// transactions (an operator's discard) are archived first: no archive, no repair.
func (r *Reconciler) repairErrant(ctx context.Context, snap cluster.Snapshot, a Analysis) {
	r.rejoinWith(ctx, snap, a, false)
}

// undoErrant archives the node's real errant transactions, undoes them in place with
// MariaDB's flashback (one transaction, with a mark that refuses a second undo),
// then forgets their GTIDs and follows the primary of record, as repairErrant.
func (r *Reconciler) undoErrant(ctx context.Context, snap cluster.Snapshot, a Analysis) {
	r.rejoinWith(ctx, snap, a, true)
}

// rejoinWith is repairErrant, and with undo the flashback between the archive and
// the reset.
func (r *Reconciler) rejoinWith(ctx context.Context, snap cluster.Snapshot, a Analysis, undo bool) {
	start := r.cfg.Now()
	r.probeAs(a.Probe)
	r.rejoin.mu.Lock()
	check := r.rejoin.check
	r.rejoin.mu.Unlock()
	if check == nil || check.Errant != a.Errant {
		return // Analyze saw it; it went meanwhile (cannot happen: one pass at a time)
	}
	ev := check.Evidence
	fail := func(step string, err error) {
		r.log.Error("rejoin: "+step, zap.Error(err), zap.String("errant", a.Errant))
		// Look again before anything else, not at once: a step that failed (a
		// client program missing, a server refusing) would fail again.
		r.rejoin.set(nil, r.cfg.Now())
		if a.Request != nil {
			r.answerRejoin(ctx, a.RequestRev, *answer(*a.Request, cluster.RequestFailed, step+": "+err.Error()))
		}
	}
	var steps []cluster.Step
	step := func(name string, from time.Time, note string) {
		steps = append(steps, cluster.Step{Name: name, Took: r.cfg.Now().Sub(from), Note: note})
	}
	var archived replication.Archived
	if undo || len(ev.Real()) > 0 {
		t0 := r.cfg.Now()
		var err error
		if archived, err = r.archiveErrant(ctx, snap, a, ev, start); err != nil {
			fail("archive the errant transactions (no archive, no repair)", err)
			return
		}
		step("archive", t0, fmt.Sprintf("%s (%d bytes, GTIDs %s)", archived.Path, archived.Bytes, strings.Join(archived.GTIDs, ", ")))
	}
	if undo {
		t0 := r.cfg.Now()
		fb := strings.TrimSuffix(archived.Path, "-errant.sql") + "-flashback.sql"
		if err := r.cfg.Tools.Flashback(ctx, ev, a.Primary, fb); err != nil {
			if errors.Is(err, replication.ErrArchiveIncomplete) || errors.Is(err, replication.ErrNotUndoable) {
				// It would be refused again: the next passes rebuild instead.
				r.rejoin.refuse(a.Errant, err.Error())
			}
			fail("write the flashback", err)
			return
		}
		note := "flashback " + fb + " applied in one transaction"
		switch err := r.cfg.Tools.Undo(ctx, fb, a.Errant); {
		case errors.Is(err, replication.ErrUndoneBefore):
			note = "undone before (baton.undo holds its mark): not applied again"
		case errors.Is(err, replication.ErrNotUndoable):
			r.rejoin.refuse(a.Errant, err.Error()) // the same script would be refused again
			fail("undo the errant transactions with flashback", err)
			return
		case err != nil:
			fail("undo the errant transactions with flashback", err)
			return
		}
		step("undo", t0, note)
	}
	t0 := r.cfg.Now()
	if err := r.cfg.Local.RepairErrant(ctx, ev, a.Discard || undo); err != nil {
		fail("reset the binlog GTID state", err)
		return
	}
	step("reset_binlog_state", t0, "RESET MASTER; gtid_binlog_state = "+orDash(ev.Written))
	t0 = r.cfg.Now()
	src := r.cfg.Repl.At(a.Source.Host, a.Source.Port)
	followErr := r.cfg.Local.Follow(ctx, src, r.confirmView(snap))
	followed := r.cfg.Now()
	steps = append(steps, cluster.Step{Name: "follow", Took: followed.Sub(t0)})
	if followErr != nil {
		steps[len(steps)-1].Error = followErr.Error()
	}
	r.rejoin.set(nil, time.Time{})
	r.errantSet("")
	ev2 := cluster.Event{Kind: cluster.EventRejoin, From: r.cfg.Node, To: snap.Primary.Node, Epoch: snap.Primary.Epoch, Started: start.UTC(),
		Took: followed.Sub(start), Manual: a.Request != nil, Discarded: ev.GTIDs(), Archive: archived.Path, Steps: steps}
	what := "phantom GTIDs (numbered by the server, in no binary log: writes that never reached it)"
	switch {
	case undo:
		what = "errant transactions undone in place with flashback (their changes to the data reversed; archived in " + archived.Path + ")"
	case a.Discard:
		what = "errant transactions discarded on request (their binlog events removed, their changes to the data kept; archived in " + orDash(archived.Path) + ")"
	}
	ev2.Reason = fmt.Sprintf("%s: %s %s forgotten; gtid_binlog_state %s -> %s; following %s", a.Reason, what,
		strings.Join(ev.GTIDs(), ", "), ev.BinlogState, orDash(ev.Written), snap.Primary.Node)
	if ev.UnreadableTail != "" {
		ev2.Reason += "; the binlog ends in bytes no reader can parse, what a write cut by the full disk leaves (what lies there never reached a replica): " + ev.UnreadableTail
	}
	r.log.Warn("rejoined: "+ev2.Reason, zap.Strings("discarded", ev2.Discarded), zap.Bool("manual", ev2.Manual),
		zap.Duration("took", ev2.Took), zap.Error(followErr))
	if err := r.cfg.Store.AppendHistory(ctx, ev2); err != nil {
		r.log.Warn("record the rejoin in the history", zap.Error(err))
	}
	if archived.Path != "" {
		r.mu.Lock()
		r.archive = archived.Path
		r.mu.Unlock()
	}
	if a.Request != nil {
		out := answer(*a.Request, cluster.RequestDone, "")
		if followErr != nil {
			out = answer(*a.Request, cluster.RequestFailed, "repaired, but follow the primary: "+followErr.Error())
		}
		out.Result = &ev2
		r.answerRejoin(ctx, a.RequestRev, *out)
	}
	if followErr == nil {
		r.setRole(cluster.RoleReplica)
		r.setFenced("")
	}
	// The record may have been written at this pass's inspection, after the
	// snapshot was read: deleted whatever the snapshot says.
	r.forgetErrantRecord(ctx, snap, true)
}

// archiveErrant writes the node's errant transactions to a new file of the archive
// directory: a header a DBA reads first (the node, the primary, each GTID with what
// the binary log says of it, how to apply them again), then their events as
// mariadb-binlog prints them.
func (r *Reconciler) archiveErrant(ctx context.Context, snap cluster.Snapshot, a Analysis, ev replication.ErrantEvidence, at time.Time) (replication.Archived, error) {
	if r.cfg.Tools == nil || r.cfg.ArchiveDir == "" {
		return replication.Archived{}, errors.New("no archive: this agent has no client programs or archive directory")
	}
	path := filepath.Join(r.cfg.ArchiveDir, fmt.Sprintf("%s-%s-errant.sql", r.cfg.Node, at.UTC().Format("20060102T150405.000Z")))
	var h strings.Builder
	fmt.Fprintf(&h, "Baton: errant transactions of %s, archived %s before they were undone or discarded.\n", r.cfg.Node, at.UTC().Format(time.RFC3339))
	fmt.Fprintf(&h, "Primary of record: %s (epoch %d), GTID set %s\n", snap.Primary.Node, snap.Primary.Epoch, a.Primary.Executed)
	fmt.Fprintf(&h, "Errant set: %s; gtid_binlog_state was %s\n", a.Errant, ev.BinlogState)
	for _, t := range ev.Txns {
		if t.Kind == replication.ErrantPhantom {
			continue
		}
		line := DescribeErrant(t)
		if len(t.Tables) > 0 {
			line += "; tables " + strings.Join(t.Tables, ", ")
		}
		fmt.Fprintf(&h, "  %s\n", line)
	}
	h.WriteString("To apply them again (on the primary, after reading them): mariadb < THIS_FILE\n")
	h.WriteString("Each row change is decoded in the comments (### lines) under its BINLOG statement.")
	return r.cfg.Tools.Archive(ctx, ev, a.Primary, h.String(), path)
}

// forgetErrantRecord deletes the node's errant record once it has no errant GTIDs
// (a repair, a rejoin, a rebuild): kept, it would make the same GTIDs real if the
// node ever numbered them again. Unless always, only when snap shows one.
func (r *Reconciler) forgetErrantRecord(ctx context.Context, snap cluster.Snapshot, always bool) {
	if _, ok := snap.ErrantRecords[r.cfg.Node]; !ok && !always {
		return
	}
	if err := r.cfg.Store.DeleteErrantRecord(ctx, r.cfg.Node); err != nil {
		r.log.Warn("delete the errant record", zap.Error(err))
	}
}

// answerRejoin writes the outcome of an operator's rejoin request.
func (r *Reconciler) answerRejoin(ctx context.Context, rev int64, req cluster.RejoinRequest) {
	req.Finished = r.cfg.Now().UTC()
	if err := r.cfg.Store.AnswerRejoin(ctx, rev, req); err != nil {
		r.log.Warn("answer the rejoin request", zap.String("request", req.ID), zap.Error(err))
		return
	}
	r.log.Info("rejoin request answered", zap.String("request", req.ID), zap.String("state", string(req.State)), zap.String("error", req.Error))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
