package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/replication"
)

// A node its agent cannot repair in place is rebuilt: a healthy replica's backup
// (the donor's), streamed from the donor's agent, is unpacked into a new directory
// beside the node's datadir and prepared; only then is the node's server stopped,
// its datadir renamed aside (kept: Baton never deletes it) and the copy renamed in;
// the server is started on it, told the backup's GTID position, and follows the
// primary of record. Each step is recorded in the agent's state directory before it
// is taken (the journal), so that an agent that dies half way finds the rebuild at
// start and finishes it (the copy was in place and prepared) or puts the old datadir
// back. Until the copy is verified the node stays quarantined, and its old datadir
// intact. docs/architecture.md, "Rebuild", has why each step is safe.

// BackupMeta is what a donor says of the backup it streams, before the stream.
type BackupMeta struct {
	Donor string
	// Flavor is the donor's server's.
	Flavor replication.Flavor
	// BinlogState is the donor's gtid_binlog_state, read before its backup began
	// (so no newer than the backup's position): MariaDB only.
	BinlogState string
	// Size is the donor's estimate of the stream's size (its datadir's files), 0
	// when it has none.
	Size int64
}

// BackupStream is a donor's backup as it arrives. Read it to its end: Read returns
// an error, never io.EOF, when the stream is cut short or is not the donor's whole,
// signed backup, so that nothing is built on a partial or forged copy.
type BackupStream interface {
	io.ReadCloser
	Meta() BackupMeta
}

// BackupFetcher asks a donor's agent (donor, reached at agent, host:port) for a
// backup of its server, for the rebuild id.
type BackupFetcher interface {
	Fetch(ctx context.Context, donor, agent, id string) (BackupStream, error)
}

// ServerControl stops and starts this node's server (the configured commands). Each
// returns once the command has; the reconciler then waits for the server itself.
type ServerControl interface {
	Stop(ctx context.Context) error
	Start(ctx context.Context) error
}

// BackupRestorer unpacks and prepares a backup (the server's backup programs).
type BackupRestorer interface {
	Unpack(ctx context.Context, r io.Reader, dir string) error
	Prepare(ctx context.Context, dir string) error
}

// ServerFiles is what a rebuild asks the node's server (a *replication.Instance):
// where it keeps its files, and, once started on the copy, to take the backup's
// GTID position.
type ServerFiles interface {
	Layout(ctx context.Context) (replication.Layout, error)
	RestorePosition(ctx context.Context, pos replication.BackupPosition, binlogState string) error
}

var _ ServerFiles = (*replication.Instance)(nil)

// RebuildConfig lets a reconciler rebuild its node. Unset in ReconcilerConfig: the
// node is never rebuilt by its agent.
type RebuildConfig struct {
	Fetcher  BackupFetcher
	Control  ServerControl
	Restorer BackupRestorer
	Files    ServerFiles
	// StateDir holds the journal (rebuild.json). Required.
	StateDir string
	// Unable says why this agent cannot rebuild its node although it is configured
	// (a program missing, no peer secret): "" when it can.
	Unable string
	// Timeout bounds a whole rebuild (DefaultRebuildTimeout when zero);
	// CommandTimeout each server command and the wait for the server after it
	// (DefaultCommandTimeout); StallTimeout a stream that brings nothing
	// (DefaultStallTimeout); Backoff the wait before a node tries again by itself
	// after a failed rebuild, doubled at each failure up to MaxRebuildBackoff
	// (DefaultRebuildBackoff).
	Timeout        time.Duration
	CommandTimeout time.Duration
	StallTimeout   time.Duration
	Backoff        time.Duration
	// upProbe replaces serverUp in tests: a lock held by the test process itself
	// does not show to it.
	upProbe func(datadir string) (bool, error)
}

// serverUp says whether the node's server runs on datadir (serverUp, or the tests'
// probe).
func (cfg *RebuildConfig) serverUp(datadir string) (bool, error) {
	if cfg.upProbe != nil {
		return cfg.upProbe(datadir)
	}
	return serverUp(datadir)
}

// Rebuild defaults.
const (
	DefaultRebuildTimeout = 6 * time.Hour
	DefaultCommandTimeout = 5 * time.Minute
	DefaultStallTimeout   = 2 * time.Minute
	DefaultRebuildBackoff = time.Minute
	MaxRebuildBackoff     = time.Hour
)

// rebuildJournalFile, in StateDir, records the rebuild under way.
const rebuildJournalFile = "rebuild.json"

// rebuildJournal is a rebuild as recorded in the state directory before each step:
// enough for a restarted agent to finish it or put the old datadir back.
type rebuildJournal struct {
	ID      string              `json:"id"`
	Donor   string              `json:"donor"`
	Step    cluster.RebuildStep `json:"step"`
	Started time.Time           `json:"started"`
	// Request is the operator's request carried out, "" for the agent's own.
	Request string `json:"request,omitempty"`
	By      string `json:"by,omitempty"`
	Reason  string `json:"reason"`
	// Primary and Epoch are the primary of record when it began.
	Primary string `json:"primary"`
	Epoch   uint64 `json:"epoch"`
	Flavor  string `json:"flavor"`
	// Datadir is the server's datadir; New the copy beside it; Kept where the old
	// datadir goes.
	Datadir string `json:"datadir"`
	New     string `json:"new"`
	Kept    string `json:"kept"`
	// The backup's position (GTID ""until it is prepared), and the donor's
	// gtid_binlog_state.
	GTID        string `json:"gtid,omitempty"`
	BinlogFile  string `json:"binlog_file,omitempty"`
	BinlogPos   uint64 `json:"binlog_pos,omitempty"`
	BinlogState string `json:"binlog_state,omitempty"`
	Bytes       int64  `json:"bytes,omitempty"`
	Size        int64  `json:"size,omitempty"`
	// Archive is where the node's errant transactions were archived; ArchiveNote
	// why they were not.
	Archive     string         `json:"archive,omitempty"`
	ArchiveNote string         `json:"archive_note,omitempty"`
	Steps       []cluster.Step `json:"steps,omitempty"`
	// Failure says why the rebuild is being rolled back; "" while it goes forward.
	Failure string `json:"failure,omitempty"`
	// Resumed: an agent that started after the rebuild began carried it on.
	Resumed bool `json:"resumed,omitempty"`
}

func (j *rebuildJournal) progress(bytes int64) *cluster.RebuildProgress {
	p := &cluster.RebuildProgress{ID: j.ID, Step: j.Step, From: j.Donor, Bytes: max(bytes, j.Bytes), Size: j.Size, Started: j.Started,
		Manual: j.Request != ""}
	if j.Failure != "" {
		p.Step, p.Error = cluster.RebuildRollback, j.Failure
	}
	if stepIndex(j.Step) > stepIndex(cluster.RebuildStop) {
		p.Kept = j.Kept
	}
	return p
}

// rebuildOrder is what a pass asks the rebuild runner to do.
type rebuildOrder struct {
	a    Analysis
	snap cluster.Snapshot
	// flavor is the node's server's, as the pass read it.
	flavor replication.Flavor
	// check is the evidence of the node's errant transactions, for the archive.
	check *ErrantCheck
	id    string
}

// rebuildState is the reconciler's rebuild: the one running, the latest failure,
// and whether a journal an earlier agent left waits to be resumed. Its own lock:
// read while the reconciler's is held (build), never the other way.
type rebuildState struct {
	mu          sync.Mutex
	journal     *rebuildJournal // the rebuild under way (its runner's), nil when none
	interrupted bool            // a journal on disk that no runner carries on
	stuck       string          // why the node waits for a person, or for retryAt, before anything else
	failed      *cluster.RebuildProgress
	retryAt     time.Time
	backoff     time.Duration
	bytes       atomic.Int64
	orders      chan rebuildOrder
}

// self fills what Analyze needs to know of the rebuild.
func (st *rebuildState) self(cfg *RebuildConfig, now time.Time) RebuildSelf {
	var s RebuildSelf
	switch {
	case cfg == nil:
		s.Unable = "not configured"
	case cfg.Unable != "":
		s.Unable = cfg.Unable
	default:
		s.Able = true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	waiting := now.Before(st.retryAt)
	switch {
	case st.journal != nil:
		s.Running = st.journal.progress(st.bytes.Load())
	case st.interrupted && !s.Able:
		s.Stuck = "a rebuild was left half done, and this agent cannot carry it on (" + s.Unable + "): a person looks (runbook)"
	case st.interrupted && waiting:
		s.Stuck = orDash(st.stuck)
	case st.interrupted:
		s.Interrupted = true
	}
	s.Backoff = waiting && !st.interrupted
	if st.failed != nil {
		f := *st.failed
		s.Failed = &f
	}
	return s
}

// status is the rebuild as the node's status shows it: the one under way, or the
// latest failure.
func (st *rebuildState) status() *cluster.RebuildProgress {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.journal != nil:
		return st.journal.progress(st.bytes.Load())
	case st.failed != nil:
		f := *st.failed
		return &f
	}
	return nil
}

// loadRebuildJournal reads the journal an earlier agent left, nil when none.
func loadRebuildJournal(dir string) (*rebuildJournal, error) {
	b, err := os.ReadFile(filepath.Join(dir, rebuildJournalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j rebuildJournal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, err
	}
	if j.ID == "" || j.Datadir == "" || j.New == "" || j.Kept == "" || j.Step == "" {
		return nil, errors.New("an incomplete journal")
	}
	return &j, nil
}

// writeRebuildJournal records j in dir durably (a new file renamed over the old
// one, both and the directory synced) before it returns.
func writeRebuildJournal(dir string, j *rebuildJournal) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, rebuildJournalFile+".*")
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
	if err := os.Rename(tmp.Name(), filepath.Join(dir, rebuildJournalFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// stepIndex orders the forward steps; -1 for the others.
func stepIndex(s cluster.RebuildStep) int {
	for i, x := range []cluster.RebuildStep{cluster.RebuildArchive, cluster.RebuildStream, cluster.RebuildPrepare, cluster.RebuildStop,
		cluster.RebuildSwap, cluster.RebuildStart, cluster.RebuildPosition, cluster.RebuildFollow} {
		if x == s {
			return i
		}
	}
	return -1
}

// dirFacts says which of a rebuild's three directories exist.
type dirFacts struct{ Datadir, Kept, New bool }

// resumeDecision is what a restarted agent does with a rebuild it finds half done.
type resumeDecision int

const (
	// resumeBack puts the old datadir back (rollbackMoves), starts the server on
	// it and removes the copy.
	resumeBack resumeDecision = iota
	// resumeForward starts the server on the copy (in place, prepared), sets its
	// position (unless that was done and verified) and finishes.
	resumeForward
)

// decideResume says whether an interrupted rebuild is finished or rolled back: it
// goes forward only when the copy was swapped in whole (the journal went past the
// swap, the old datadir is kept aside, the copy is at the datadir's path, nothing
// else is left) and the rebuild was not being rolled back already; everything else
// goes back. Pure.
func decideResume(j rebuildJournal, f dirFacts) resumeDecision {
	if j.Failure == "" && stepIndex(j.Step) > stepIndex(cluster.RebuildSwap) && j.GTID != "" && f.Datadir && f.Kept && !f.New {
		return resumeForward
	}
	return resumeBack
}

// rollbackMove is one rename of a rollback: from, to.
type rollbackMove struct{ From, To string }

// rollbackMoves are the renames that put the old datadir back at its path, given
// which directories exist: the copy (at the datadir's path after the swap) goes
// back to its own name, then the kept datadir to the datadir's path. stopFirst says
// the server must be stopped first (it may run on the copy). An error when the
// directories are not in a state a rebuild leaves (the datadir gone with nothing
// kept; all three present): a person looks. Pure.
func rollbackMoves(j rebuildJournal, f dirFacts) (moves []rollbackMove, stopFirst bool, err error) {
	switch {
	case f.Datadir && !f.Kept:
		return nil, false, nil // never swapped: the datadir is the old one
	case f.Datadir && f.Kept && !f.New:
		// Swapped: the datadir's path holds the copy.
		return []rollbackMove{{j.Datadir, j.New}, {j.Kept, j.Datadir}}, true, nil
	case !f.Datadir && f.Kept:
		// Half swapped (or half rolled back): the old datadir is aside.
		return []rollbackMove{{j.Kept, j.Datadir}}, false, nil
	case f.Datadir && f.Kept && f.New:
		return nil, false, fmt.Errorf("%s, %s and %s all exist: which one the server's own data is cannot be told; a person looks", j.Datadir, j.Kept, j.New)
	}
	return nil, false, fmt.Errorf("the datadir %s is missing and no old datadir is kept at %s: a person looks", j.Datadir, j.Kept)
}

// rebuildPaths are the copy's and the kept datadir's paths beside datadir, for the
// rebuild id. Pure.
func rebuildPaths(datadir, id string) (newDir, kept string) {
	d := filepath.Clean(datadir)
	return d + ".baton-new-" + id, d + ".baton-old-" + id
}

// newRebuildID is a rebuild's id: its start time and a random suffix, fit for a
// directory name.
func newRebuildID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// startRebuild hands a rebuild (or the resumption of one) to the runner
// (RunRebuilds). The node counts as being rebuilt from here on: the next pass does
// not order another.
func (r *Reconciler) startRebuild(snap cluster.Snapshot, a Analysis) {
	if r.cfg.Rebuild == nil {
		r.log.Error("rebuild asked for, but this agent cannot rebuild its node (not configured)")
		return
	}
	o := rebuildOrder{a: a, snap: snap, id: newRebuildID(r.cfg.Now())}
	r.mu.Lock()
	if r.local != nil {
		o.flavor = r.local.Flavor
	}
	r.mu.Unlock()
	r.rejoin.mu.Lock()
	if c := r.rejoin.check; c != nil && c.Errant == a.Errant {
		o.check = c
	}
	r.rejoin.mu.Unlock()
	st := &r.rebuildSt
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.journal != nil {
		return
	}
	// Recorded as under way at once, in memory; the runner writes the journal.
	st.journal = &rebuildJournal{ID: o.id, Donor: a.Donor, Step: cluster.RebuildArchive, Started: r.cfg.Now().UTC(), Reason: a.Reason}
	if a.Resume {
		st.journal.Donor = "-"
	}
	if a.RebuildRequest != nil {
		st.journal.Request = a.RebuildRequest.ID
	}
	st.bytes.Store(0)
	select {
	case st.orders <- o:
	default:
		st.journal = nil // the runner is busy: cannot be, one rebuild at a time
	}
}

// RunRebuilds carries out the rebuilds the passes order, one at a time, until ctx
// ends. The agent runs it for its lifetime, apart from the session's work: a
// rebuild takes long, and outlives an etcd session that lapses meanwhile. An agent
// stopping in the middle leaves the journal: the next one resumes it.
func (r *Reconciler) RunRebuilds(ctx context.Context) error {
	st := &r.rebuildSt
	for {
		select {
		case <-ctx.Done():
			return nil
		case o := <-st.orders:
			if o.a.Resume {
				r.resumeRebuild(ctx)
			} else {
				r.rebuild(ctx, o)
			}
			r.Kick()
		}
	}
}

// rebuildRun is one rebuild as its runner carries it out.
type rebuildRun struct {
	r   *Reconciler
	j   *rebuildJournal
	cfg *RebuildConfig
	// reqRev is the operator's request's mod revision, 0 when none.
	req    *cluster.RebuildRequest
	reqRev int64
}

// step records that the rebuild goes on to s: in the journal (on disk, synced)
// before anything of s is done, then in the status.
func (run *rebuildRun) step(s cluster.RebuildStep) error {
	run.j.Step = s
	run.j.Bytes = run.r.rebuildSt.bytes.Load()
	if err := writeRebuildJournal(run.cfg.StateDir, run.j); err != nil {
		return fmt.Errorf("record the rebuild's step %s in %s: %w", s, run.cfg.StateDir, err)
	}
	st := &run.r.rebuildSt
	st.mu.Lock()
	st.journal = run.j
	st.mu.Unlock()
	run.r.log.Info("rebuild: "+s.String(), zap.String("rebuild", run.j.ID), zap.String("donor", run.j.Donor))
	return nil
}

// timed runs fn as the step called name, recording how long it took.
func (run *rebuildRun) timed(name cluster.RebuildStep, note func() string, fn func() error) error {
	t0 := run.r.cfg.Now()
	err := fn()
	s := cluster.Step{Name: name.String(), Took: run.r.cfg.Now().Sub(t0)}
	if note != nil {
		s.Note = note()
	}
	if err != nil {
		s.Error = err.Error()
	}
	run.j.Steps = append(run.j.Steps, s)
	return err
}

// rebuild rebuilds the node from o.a.Donor's backup, or puts everything back and
// says why.
func (r *Reconciler) rebuild(ctx context.Context, o rebuildOrder) {
	cfg := r.cfg.Rebuild
	st := &r.rebuildSt
	st.mu.Lock()
	j := st.journal
	st.mu.Unlock()
	if j == nil || j.ID != o.id {
		return
	}
	a := o.a
	j.Primary, j.Epoch, j.Flavor = o.snap.Primary.Node, o.snap.Primary.Epoch, o.flavor.String()
	run := &rebuildRun{r: r, j: j, cfg: cfg}
	if req := a.RebuildRequest; req != nil {
		j.By = req.By
		running := *req
		running.State, running.Started = cluster.RequestRunning, r.cfg.Now().UTC()
		rev, err := r.cfg.Store.AnswerRebuild(ctx, a.RebuildRev, running)
		if err != nil {
			// Withdrawn or replaced meanwhile: not carried out.
			r.log.Warn("rebuild request not taken up", zap.String("request", req.ID), zap.Error(err))
			r.endRebuild(nil, nil)
			return
		}
		run.req, run.reqRev = &running, rev
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	donor, ok := o.snap.Nodes[a.Donor]
	if !ok || donor.Agent == "" {
		run.fail(ctx, fmt.Errorf("donor %s: where its agent listens is not known", a.Donor), false)
		return
	}
	layout, err := cfg.Files.Layout(rctx)
	if err != nil {
		run.fail(ctx, err, false)
		return
	}
	if why := layoutProblem(layout); why != "" {
		run.fail(ctx, errors.New(why), false)
		return
	}
	j.Datadir = filepath.Clean(layout.Datadir)
	j.New, j.Kept = rebuildPaths(j.Datadir, j.ID)
	r.log.Warn("rebuilding this node: "+a.Reason, zap.String("rebuild", j.ID), zap.String("donor", a.Donor),
		zap.String("datadir", j.Datadir), zap.String("old_datadir_kept_at", j.Kept))

	// The journal first: from here on a restarted agent finds the rebuild.
	if err := run.step(cluster.RebuildArchive); err != nil {
		run.fail(ctx, err, false)
		return
	}
	_ = run.timed(cluster.RebuildArchive, func() string { return orDash(j.Archive) + " " + j.ArchiveNote }, func() error {
		run.archive(rctx, o)
		return nil
	})
	if err := run.forward(rctx, donor); err != nil {
		run.fail(ctx, err, ctx.Err() != nil)
		return
	}
	run.finish(ctx)
}

// layoutProblem says why a server's layout cannot be rebuilt by swapping its
// datadir, "" when it can: files outside the datadir (a copy of it alone would not
// hold them, and the old ones would mix with the copy), or a datadir that is a
// mount point (renaming it is impossible; the copy would go to another
// filesystem). Reads the filesystem.
func layoutProblem(l replication.Layout) string {
	dd := filepath.Clean(l.Datadir)
	if !filepath.IsAbs(dd) || dd == "/" || filepath.Dir(dd) == "/" {
		return fmt.Sprintf("the datadir %q is not a directory Baton can swap (it must be below a directory of its own filesystem, e.g. /var/lib/mysql)", l.Datadir)
	}
	if out := l.Outside(); len(out) > 0 {
		return "the server keeps files outside its datadir (" + strings.Join(out, ", ") + "): a copy of the datadir would not hold them; rebuild by hand"
	}
	var d, p unix.Stat_t
	if err := unix.Stat(dd, &d); err != nil {
		return fmt.Sprintf("the datadir %s: %v", dd, err)
	}
	if err := unix.Stat(filepath.Dir(dd), &p); err != nil {
		return fmt.Sprintf("the datadir's parent %s: %v", filepath.Dir(dd), err)
	}
	if d.Dev != p.Dev {
		return fmt.Sprintf("the datadir %s is a mount point: Baton swaps a datadir by renaming it within its filesystem; make the datadir a directory inside the mount (e.g. %s/data)", dd, dd)
	}
	return ""
}

// archive archives the node's errant transactions before anything replaces them,
// when the evidence allows (the same archive a rejoin writes); otherwise it notes
// why not: the old datadir, kept, holds them all the same.
func (run *rebuildRun) archive(ctx context.Context, o rebuildOrder) {
	j, r := run.j, run.r
	switch {
	case o.a.Errant == "":
		j.ArchiveNote = "no errant GTIDs to archive (the old datadir is kept)"
	case o.check == nil:
		j.ArchiveNote = "errant transactions not archived: they were not looked up in the binary logs (the old datadir, kept, holds them)"
	case len(o.check.Evidence.Real()) == 0:
		j.ArchiveNote = "every errant GTID a phantom: nothing to archive"
	default:
		archived, err := r.archiveErrant(ctx, o.snap, o.a, o.check.Evidence, r.cfg.Now())
		if err != nil {
			j.ArchiveNote = "errant transactions not archived (" + err.Error() + "); the old datadir, kept, holds them"
			return
		}
		j.Archive = archived.Path
		r.mu.Lock()
		r.archive = archived.Path
		r.mu.Unlock()
	}
}

// forward takes the rebuild from the archive to a server verified on the copy.
func (run *rebuildRun) forward(ctx context.Context, donor cluster.NodeStatus) error {
	j, cfg, r := run.j, run.cfg, run.r
	if err := run.step(cluster.RebuildStream); err != nil {
		return err
	}
	if err := run.timed(cluster.RebuildStream, func() string { return fmt.Sprintf("%d bytes from %s", r.rebuildSt.bytes.Load(), j.Donor) },
		func() error { return run.stream(ctx, donor) }); err != nil {
		return err
	}
	if err := run.step(cluster.RebuildPrepare); err != nil {
		return err
	}
	if err := run.timed(cluster.RebuildPrepare, func() string { return "GTID position " + orDash(j.GTID) }, func() error { return run.prepare(ctx) }); err != nil {
		return err
	}
	// The last moment to give up cheaply: nothing of the node's has changed yet.
	if err := run.checkpoint(ctx); err != nil {
		return err
	}
	if err := run.step(cluster.RebuildStop); err != nil {
		return err
	}
	if err := run.timed(cluster.RebuildStop, nil, func() error { return run.stopServer(ctx) }); err != nil {
		return err
	}
	if err := run.step(cluster.RebuildSwap); err != nil {
		return err
	}
	if err := run.timed(cluster.RebuildSwap, func() string { return "old datadir kept at " + j.Kept }, func() error { return run.swap() }); err != nil {
		return err
	}
	return run.startAndPosition(ctx, cfg)
}

// startAndPosition starts the server on the copy and sets its GTID position: the
// copy is verified once the server holds it.
func (run *rebuildRun) startAndPosition(ctx context.Context, cfg *RebuildConfig) error {
	j := run.j
	if err := run.step(cluster.RebuildStart); err != nil {
		return err
	}
	if err := run.timed(cluster.RebuildStart, nil, func() error { return run.startServer(ctx) }); err != nil {
		return err
	}
	if err := run.step(cluster.RebuildPosition); err != nil {
		return err
	}
	return run.timed(cluster.RebuildPosition, func() string { return "gtid " + j.GTID + ", gtid_binlog_state " + orDash(j.BinlogState) }, func() error {
		f, err := replication.ParseFlavor(j.Flavor)
		if err != nil {
			return fmt.Errorf("the server's flavor %q: %w", j.Flavor, err)
		}
		set, err := replication.ParseGTIDSet(f, j.GTID)
		if err != nil {
			return fmt.Errorf("the backup's position %q: %w", j.GTID, err)
		}
		pctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout)
		defer cancel()
		return cfg.Files.RestorePosition(pctx, replication.BackupPosition{File: j.BinlogFile, Pos: j.BinlogPos, GTID: set}, j.BinlogState)
	})
}

// stream fetches the donor's backup and unpacks it into the new directory, after
// checking that its filesystem has room for it beside the datadir, which stays.
func (run *rebuildRun) stream(ctx context.Context, donor cluster.NodeStatus) error {
	j, cfg, r := run.j, run.cfg, run.r
	if err := os.Mkdir(j.New, 0o700); err != nil {
		return fmt.Errorf("make the directory for the copy: %w", err)
	}
	if err := syncDir(filepath.Dir(j.New)); err != nil {
		return err
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bs, err := cfg.Fetcher.Fetch(sctx, donor.Node, donor.Agent, j.ID)
	if err != nil {
		return fmt.Errorf("ask %s for its backup: %w", donor.Node, err)
	}
	defer bs.Close()
	meta := bs.Meta()
	if j.Flavor == "" || j.Flavor == replication.FlavorUnknown.String() {
		j.Flavor = meta.Flavor.String()
	}
	if meta.Flavor.String() != j.Flavor {
		return fmt.Errorf("the donor's server is %s, this node's %s", meta.Flavor, j.Flavor)
	}
	j.BinlogState, j.Size = meta.BinlogState, meta.Size
	if err := roomFor(filepath.Dir(j.New), meta.Size); err != nil {
		return err
	}
	if err := writeRebuildJournal(cfg.StateDir, j); err != nil {
		return err
	}
	// A stream that brings nothing for StallTimeout is cut: a donor frozen or cut
	// off is no reason to wait for the whole rebuild's time.
	counted := &countingReader{r: bs, n: &r.rebuildSt.bytes}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(min(cfg.StallTimeout/4, 5*time.Second))
		defer t.Stop()
		last, at := int64(-1), time.Now()
		for {
			select {
			case <-stop:
				return
			case <-sctx.Done():
				return
			case <-t.C:
				n := r.rebuildSt.bytes.Load()
				if n != last {
					last, at = n, time.Now()
					continue
				}
				if time.Since(at) > cfg.StallTimeout {
					cancel(fmt.Errorf("nothing came from %s for %s", donor.Node, cfg.StallTimeout))
					return
				}
			}
		}
	}()
	err = cfg.Restorer.Unpack(sctx, counted, j.New)
	if err == nil {
		// The unpacker ends at the stream's end, and the stream's own check (its
		// signature, over the whole) at its very end: read what may be left.
		_, err = io.Copy(io.Discard, counted)
	}
	switch {
	case sctx.Err() != nil && context.Cause(sctx) != nil && !errors.Is(context.Cause(sctx), context.Canceled):
		err = context.Cause(sctx) // the stall, or the rebuild's time
	case counted.err != nil && !errors.Is(counted.err, io.EOF):
		err = counted.err // the stream's own failure says more than the unpacker's
	}
	if err != nil {
		return fmt.Errorf("copy %s's backup: %w", donor.Node, err)
	}
	if counted.total == 0 {
		return fmt.Errorf("copy %s's backup: an empty stream", donor.Node)
	}
	j.Bytes = counted.total
	return nil
}

// countingReader counts what goes through it, and keeps the error that ended it.
type countingReader struct {
	r     io.Reader
	n     *atomic.Int64
	total int64
	err   error
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.total += int64(k)
	c.n.Add(int64(k))
	if err != nil {
		c.err = err
	}
	return k, err
}

// roomFor says whether the filesystem of dir has room for a copy of size bytes
// (the donor's estimate, with a tenth and 64 MiB more for what it misses), leaving
// the 2% free that the detector asks of a data disk. An unknown size is no room
// check: refused.
func roomFor(dir string, size int64) error {
	if size <= 0 {
		return errors.New("the donor gave no size for its backup: the room it needs cannot be checked")
	}
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	avail := int64(s.Bavail) * s.Bsize
	total := int64(s.Blocks) * s.Bsize
	need := size + size/10 + 64<<20
	if avail-need < total/50 {
		return fmt.Errorf("not enough room for the copy on %s's filesystem: it needs about %s beside the datadir (which is kept) and 2%% of the disk free, %s is free; free space or grow the disk, then try again",
			dir, humanBytes(need), humanBytes(avail))
	}
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// prepare prepares the copy, reads the position it stands at, and gives it the
// datadir's owner and mode.
func (run *rebuildRun) prepare(ctx context.Context) error {
	j, cfg := run.j, run.cfg
	if err := cfg.Restorer.Prepare(ctx, j.New); err != nil {
		return err
	}
	f, err := replication.ParseFlavor(j.Flavor)
	if err != nil {
		return fmt.Errorf("the server's flavor %q: %w", j.Flavor, err)
	}
	pos, err := replication.ReadBackupPosition(f, j.New)
	if err != nil {
		return err
	}
	j.GTID, j.BinlogFile, j.BinlogPos = pos.GTID.String(), pos.File, pos.Pos
	if f == replication.FlavorMariaDB {
		j.GTID = pos.GTID.Position()
	}
	if err := copyOwner(j.Datadir, j.New); err != nil {
		return fmt.Errorf("give the copy the datadir's owner: %w", err)
	}
	return writeRebuildJournal(cfg.StateDir, j)
}

// copyOwner gives the tree at dst the owner and group of src, and dst itself
// src's mode: the server runs as the datadir's owner.
func copyOwner(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner", src)
	}
	uid, gid := int(sys.Uid), int(sys.Gid)
	err = filepath.WalkDir(dst, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return err
	}
	return os.Chmod(dst, fi.Mode().Perm())
}

// checkpoint reads etcd afresh before the first step that touches the node's own
// server: the node must not be the primary of record nor hold the leader key, and
// no flow may be in progress (one that is ends within CommandTimeout, else the
// rebuild gives up). A failover that ended meanwhile is no reason to stop: the copy
// holds what the donor had, which any new primary has too (a candidate contains
// every replica's transactions), and what it lacks the rebuilt node's errant
// check finds.
func (run *rebuildRun) checkpoint(ctx context.Context) error {
	r, j := run.r, run.j
	deadline := r.cfg.Now().Add(run.cfg.CommandTimeout)
	for {
		fresh, err := r.cfg.Store.Load(ctx)
		if err != nil {
			return fmt.Errorf("confirm in etcd that the node may be rebuilt: %w", err)
		}
		switch {
		case fresh.Primary.Node == r.cfg.Node:
			return fmt.Errorf("%s became the primary of record (epoch %d) during the rebuild", r.cfg.Node, fresh.Primary.Epoch)
		case fresh.Leader == r.cfg.Node:
			return fmt.Errorf("%s holds the leader key", r.cfg.Node)
		case fresh.Intent == nil:
			if fresh.Primary.Epoch != j.Epoch {
				j.Reason += fmt.Sprintf(" (the primary of record moved to %s, epoch %d, during the copy)", fresh.Primary.Node, fresh.Primary.Epoch)
			}
			return nil
		case r.cfg.Now().After(deadline):
			return fmt.Errorf("a %s from %s has been in progress for %s: not stopping the server meanwhile", fresh.Intent.Kind, fresh.Intent.From, run.cfg.CommandTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// serverUp says whether the node's server runs on datadir: a process holds
// InnoDB's or Aria's lock on its files there. An error when that cannot be told.
func serverUp(datadir string) (bool, error) {
	seen := false
	for _, name := range []string{"ibdata1", "aria_log_control"} {
		f, err := os.Open(filepath.Join(datadir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
		err = unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk)
		f.Close()
		if err != nil {
			return false, fmt.Errorf("look for a lock on %s: %w", name, err)
		}
		seen = true
		if lk.Type != unix.F_UNLCK {
			return true, nil
		}
	}
	if !seen {
		return false, fmt.Errorf("%s holds neither ibdata1 nor aria_log_control: whether a server runs on it cannot be told", datadir)
	}
	return false, nil
}

// stopServer stops the node's server (the configured command) and waits until no
// process holds its files.
func (run *rebuildRun) stopServer(ctx context.Context) error {
	cfg, dd := run.cfg, run.j.Datadir
	ctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout)
	defer cancel()
	if up, err := cfg.serverUp(dd); err != nil {
		return err
	} else if up {
		if err := cfg.Control.Stop(ctx); err != nil {
			return fmt.Errorf("stop the server: %w", err)
		}
	}
	return waitServer(ctx, cfg, dd, false)
}

// startServer starts the node's server (the configured command), unless it runs,
// and waits until it holds its files and answers, read_only.
func (run *rebuildRun) startServer(ctx context.Context) error {
	r, cfg, dd := run.r, run.cfg, run.j.Datadir
	ctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout)
	defer cancel()
	up, err := cfg.serverUp(dd)
	if err != nil {
		return err
	}
	if !up {
		if err := cfg.Control.Start(ctx); err != nil {
			return fmt.Errorf("start the server: %w", err)
		}
		if err := waitServer(ctx, cfg, dd, true); err != nil {
			return err
		}
	}
	for {
		sctx, scancel := context.WithTimeout(ctx, r.cfg.StatusTimeout)
		st, err := r.cfg.Local.Status(sctx)
		scancel()
		if err == nil {
			if !st.ReadOnly {
				// A server configured without read_only: never writable while it is
				// being rebuilt.
				fctx, fcancel := context.WithTimeout(ctx, r.cfg.FenceTimeout)
				_, ferr := r.cfg.Local.Fence(fctx)
				fcancel()
				if ferr != nil {
					return fmt.Errorf("the server started writable and could not be made read_only: %w", ferr)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server started but does not answer: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitServer waits until the server runs on datadir (up) or no longer does.
func waitServer(ctx context.Context, cfg *RebuildConfig, datadir string, up bool) error {
	for {
		now, err := cfg.serverUp(datadir)
		if err == nil && now == up {
			return nil
		}
		select {
		case <-ctx.Done():
			state := "stopped"
			if up {
				state = "running"
			}
			if err != nil {
				return fmt.Errorf("the server is not %s on %s: %w", state, datadir, err)
			}
			return fmt.Errorf("the server is not %s on %s after the command", state, datadir)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// swap renames the datadir aside (kept) and the copy in, the parent synced.
func (run *rebuildRun) swap() error {
	j := run.j
	if err := os.Rename(j.Datadir, j.Kept); err != nil {
		return fmt.Errorf("keep the old datadir: %w", err)
	}
	if err := os.Rename(j.New, j.Datadir); err != nil {
		return fmt.Errorf("put the copy in place: %w", err)
	}
	return syncDir(filepath.Dir(j.Datadir))
}

// facts reads which of the rebuild's directories exist.
func (j *rebuildJournal) facts() (dirFacts, error) {
	var f dirFacts
	for _, d := range []struct {
		path string
		set  *bool
	}{{j.Datadir, &f.Datadir}, {j.Kept, &f.Kept}, {j.New, &f.New}} {
		_, err := os.Stat(d.path)
		switch {
		case err == nil:
			*d.set = true
		case !errors.Is(err, fs.ErrNotExist):
			return f, err
		}
	}
	return f, nil
}

// fail ends a rebuild that did not complete: the old datadir back in place (it
// may be so already), the server running on it, the copy removed, the request
// answered, and the node quarantined with the reason until it tries again. With
// stopping (the agent itself stops) it does nothing: the journal stays, and the
// next agent resumes.
func (run *rebuildRun) fail(ctx context.Context, cause error, stopping bool) {
	r, j := run.r, run.j
	if stopping {
		r.log.Warn("rebuild interrupted: the agent stops; the next one resumes it", zap.String("rebuild", j.ID), zap.Error(cause))
		return
	}
	r.log.Error("rebuild failed: putting the old datadir back", zap.String("rebuild", j.ID), zap.String("step", j.Step.String()), zap.Error(cause))
	j.Failure = cause.Error()
	if err := run.rollback(context.WithoutCancel(ctx)); err != nil {
		r.log.Error("rebuild: roll back", zap.String("rebuild", j.ID), zap.Error(err))
		r.rollbackFailed(run, err)
		return
	}
	why := fmt.Sprintf("%s at %s: %s; the old datadir is in use again", j.Step, r.cfg.Now().UTC().Format(time.RFC3339), cause)
	if run.req != nil {
		out := *run.req
		out.State, out.Error, out.Finished = cluster.RequestFailed, why, r.cfg.Now().UTC()
		if _, err := r.cfg.Store.AnswerRebuild(context.WithoutCancel(ctx), run.reqRev, out); err != nil {
			r.log.Warn("answer the rebuild request", zap.Error(err))
		}
	}
	r.endRebuild(j, &cluster.RebuildProgress{ID: j.ID, Step: cluster.RebuildFailed, From: j.Donor, Started: j.Started,
		Bytes: j.Bytes, Size: j.Size, Manual: j.Request != "", Error: why, Finished: r.cfg.Now().UTC()})
}

// rollback puts the old datadir back at its path, the server running on it, and
// removes the copy; then the journal. It may be run again after it failed half way.
func (run *rebuildRun) rollback(ctx context.Context) error {
	r, j, cfg := run.r, run.j, run.cfg
	if j.Datadir == "" {
		return removeRebuildJournal(cfg.StateDir) // nothing was done yet
	}
	if err := writeRebuildJournal(cfg.StateDir, j); err != nil {
		return err
	}
	st := &r.rebuildSt
	st.mu.Lock()
	st.journal = j
	st.mu.Unlock()
	facts, err := j.facts()
	if err != nil {
		return err
	}
	moves, stopFirst, err := rollbackMoves(*j, facts)
	if err != nil {
		return err
	}
	if stopFirst {
		if err := run.stopServer(ctx); err != nil {
			return err
		}
	}
	for _, m := range moves {
		if err := os.Rename(m.From, m.To); err != nil {
			return fmt.Errorf("put the old datadir back: %w", err)
		}
	}
	if len(moves) > 0 {
		if err := syncDir(filepath.Dir(j.Datadir)); err != nil {
			return err
		}
	}
	if stepIndex(j.Step) >= stepIndex(cluster.RebuildStop) || len(moves) > 0 {
		if err := run.startServer(ctx); err != nil {
			return err
		}
	}
	// Baton's own copy, never the node's data: unverified, it goes.
	if err := os.RemoveAll(j.New); err != nil {
		r.log.Warn("remove the unfinished copy", zap.String("dir", j.New), zap.Error(err))
	}
	return removeRebuildJournal(cfg.StateDir)
}

func removeRebuildJournal(dir string) error {
	err := os.Remove(filepath.Join(dir, rebuildJournalFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	}
	return syncDir(dir)
}

// rollbackFailed records a rollback that could not complete: the journal stays,
// and it is tried again (Interrupted) after the back-off; meanwhile the node waits,
// quarantined, saying why.
func (r *Reconciler) rollbackFailed(run *rebuildRun, err error) {
	st := &r.rebuildSt
	st.mu.Lock()
	defer st.mu.Unlock()
	st.journal = nil
	st.interrupted = true
	st.backoff = nextBackoff(st.backoff, run.cfg.Backoff)
	st.retryAt = r.cfg.Now().Add(st.backoff)
	st.stuck = fmt.Sprintf("a rebuild could not be rolled back (%v); the journal %s says what was done; tried again at %s",
		err, filepath.Join(run.cfg.StateDir, rebuildJournalFile), st.retryAt.UTC().Format(time.RFC3339))
	st.failed = &cluster.RebuildProgress{ID: run.j.ID, Step: cluster.RebuildFailed, From: run.j.Donor, Started: run.j.Started,
		Error: st.stuck, Finished: r.cfg.Now().UTC()}
}

func nextBackoff(cur, first time.Duration) time.Duration {
	if cur <= 0 {
		return first
	}
	return min(2*cur, MaxRebuildBackoff)
}

// endRebuild records a rebuild's end: failed (and when the node tries again by
// itself), or nil for one that was not carried out or succeeded.
func (r *Reconciler) endRebuild(j *rebuildJournal, failed *cluster.RebuildProgress) {
	st := &r.rebuildSt
	st.mu.Lock()
	defer st.mu.Unlock()
	st.journal, st.interrupted, st.stuck = nil, false, ""
	if failed == nil {
		if j != nil {
			st.failed, st.backoff, st.retryAt = nil, 0, time.Time{}
		}
		return
	}
	st.failed = failed
	st.backoff = nextBackoff(st.backoff, r.cfg.Rebuild.Backoff)
	st.retryAt = r.cfg.Now().Add(st.backoff)
}

// finish records a rebuild whose copy is verified: the history's event, the
// request's answer; then the node follows the primary of record.
func (run *rebuildRun) finish(ctx context.Context) {
	r, j := run.r, run.j
	if err := run.step(cluster.RebuildFollow); err != nil {
		r.log.Warn("record the rebuild's last step", zap.Error(err))
	}
	// From here on the copy is the node's data: replication, then the record.
	bg := context.WithoutCancel(ctx)
	var followErr error
	fresh, err := r.cfg.Store.Load(bg)
	switch {
	case err != nil:
		followErr = err
	case fresh.Primary.Node == "" || fresh.Primary.Node == r.cfg.Node:
		followErr = fmt.Errorf("no primary of record to follow (%q)", fresh.Primary.Node)
	default:
		_ = run.timed(cluster.RebuildFollow, nil, func() error {
			host, port, err := replication.SplitAddr(fresh.Primary.Addr)
			if err != nil {
				followErr = err
				return err
			}
			fctx, cancel := context.WithTimeout(bg, 2*r.cfg.StatusTimeout+10*time.Second)
			defer cancel()
			followErr = r.cfg.Local.Follow(fctx, r.cfg.Repl.At(host, port), r.confirmView(fresh))
			return followErr
		})
	}
	// The copy filled the disk at the stream's rate: a fill rate still made of it
	// would forecast a full disk, and call the rebuilt node degraded, for a window.
	if t, ok := r.cfg.Detector.(interface{ RestartTrends() }); ok {
		t.RestartTrends()
	}
	done := r.cfg.Now()
	ev := cluster.Event{Kind: cluster.EventRebuild, From: r.cfg.Node, To: fresh.Primary.Node, Epoch: fresh.Primary.Epoch, Started: j.Started,
		Took: done.Sub(j.Started), Manual: j.Request != "", Archive: j.Archive, Donor: j.Donor, Bytes: j.Bytes, Kept: j.Kept, Steps: j.Steps}
	ev.Reason = fmt.Sprintf("rebuilt from %s's backup (%s, GTID position %s); the old datadir is kept at %s (Baton never deletes it)",
		j.Donor, humanBytes(j.Bytes), j.GTID, j.Kept)
	if j.Archive != "" {
		ev.Reason += "; errant transactions archived in " + j.Archive
	} else if j.ArchiveNote != "" {
		ev.Reason += "; " + j.ArchiveNote
	}
	if j.Resumed {
		ev.Reason += "; finished by an agent restarted during it"
	}
	if followErr != nil && !errors.Is(followErr, errViewChanged) {
		ev.Reason += "; follow the primary: " + followErr.Error() + " (the agent tries again)"
	}
	ev.Reason += ". Why: " + j.Reason
	r.log.Warn("rebuilt: "+ev.Reason, zap.String("rebuild", j.ID), zap.Duration("took", ev.Took), zap.Int64("bytes", j.Bytes))
	if err := r.cfg.Store.AppendHistory(bg, ev); err != nil {
		r.log.Warn("record the rebuild in the history", zap.Error(err))
	}
	if run.req != nil {
		out := *run.req
		out.State, out.Finished, out.Result = cluster.RequestDone, r.cfg.Now().UTC(), &ev
		if _, err := r.cfg.Store.AnswerRebuild(bg, run.reqRev, out); err != nil {
			r.log.Warn("answer the rebuild request", zap.Error(err))
		}
	}
	// The node's errant GTIDs and its reasons to be quarantined went with its old
	// data.
	r.rejoin.set(nil, time.Time{})
	r.errantSet("")
	r.setStuck("")
	r.forgetErrantRecord(bg, fresh, true)
	if followErr == nil {
		r.setRole(cluster.RoleReplica)
		r.setFenced("")
	}
	if err := removeRebuildJournal(run.cfg.StateDir); err != nil {
		r.log.Error("remove the rebuild's journal: the next agent would take this rebuild for an interrupted one", zap.Error(err))
	}
	r.endRebuild(j, nil)
}

// resumeRebuild carries on the rebuild an earlier agent left half done (its
// journal): forward when the copy was swapped in whole, else back.
func (r *Reconciler) resumeRebuild(ctx context.Context) {
	cfg := r.cfg.Rebuild
	st := &r.rebuildSt
	j, err := loadRebuildJournal(cfg.StateDir)
	if err != nil || j == nil {
		st.mu.Lock()
		st.journal = nil
		if err != nil {
			// Nothing is known of what was done: nothing is done; a person looks.
			st.interrupted, st.retryAt = true, time.Now().Add(100*365*24*time.Hour)
			st.stuck = fmt.Sprintf("the rebuild's journal %s cannot be read (%v): a person looks at the datadir and the directories beside it, then removes the journal",
				filepath.Join(cfg.StateDir, rebuildJournalFile), err)
		} else {
			st.interrupted = false
		}
		st.mu.Unlock()
		return
	}
	j.Resumed = true
	st.mu.Lock()
	st.journal, st.interrupted = j, false
	st.bytes.Store(j.Bytes)
	st.mu.Unlock()
	run := &rebuildRun{r: r, j: j, cfg: cfg}
	if j.Request != "" {
		if req, rev, err := r.cfg.Store.RebuildRequestRev(ctx, r.cfg.Node); err == nil && req != nil && req.ID == j.Request && req.Open() {
			run.req, run.reqRev = req, rev
		}
	}
	facts, err := j.facts()
	if err != nil {
		r.rollbackFailed(run, err)
		return
	}
	r.log.Warn("resuming a rebuild an earlier agent left half done", zap.String("rebuild", j.ID), zap.String("step", j.Step.String()),
		zap.String("failure", j.Failure), zap.Any("dirs", facts))
	if decideResume(*j, facts) == resumeBack {
		cause := j.Failure
		if cause == "" {
			cause = "the agent stopped during step " + j.Step.String()
		}
		run.fail(ctx, errors.New(cause), false)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if j.Step != cluster.RebuildFollow {
		if err := run.startAndPosition(rctx, cfg); err != nil {
			run.fail(ctx, err, ctx.Err() != nil)
			return
		}
	}
	run.finish(ctx)
}

// answerRebuildRequest writes the node's answer to an operator's rebuild request
// (a refusal at a pass).
func (r *Reconciler) answerRebuildRequest(ctx context.Context, rev int64, req cluster.RebuildRequest) {
	req.Finished = r.cfg.Now().UTC()
	if _, err := r.cfg.Store.AnswerRebuild(ctx, rev, req); err != nil {
		r.log.Warn("answer the rebuild request", zap.String("request", req.ID), zap.Error(err))
		return
	}
	r.log.Info("rebuild request answered", zap.String("request", req.ID), zap.String("state", string(req.State)), zap.String("error", req.Error))
}

// Rebuilding is this node's rebuild under way, nil when none: a node being rebuilt
// gives no backup to another.
func (r *Reconciler) Rebuilding() *cluster.RebuildProgress {
	st := &r.rebuildSt
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.journal == nil {
		return nil
	}
	return st.journal.progress(st.bytes.Load())
}
