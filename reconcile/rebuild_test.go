package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// rbHarness is a node being rebuilt, with everything around it stood in for: the
// donor's stream, the unpacker and the prepare, the server's stop and start
// commands (a flag for "running", the datadir's ibdata1 saying whose data it is),
// the server's SQL, and a real etcd.
type rbHarness struct {
	t       *testing.T
	det     *trendDetector
	root    string
	datadir string
	state   string
	store   *cluster.Store
	cfg     *RebuildConfig
	r       *Reconciler

	mu      sync.Mutex
	running bool   // the server runs
	on      string // what the server runs on: the ibdata1 it found when started
	stops   int
	starts  int
	// stream is what the donor sends; cutAfter > 0 ends it with an error after so
	// many bytes (the donor died); stall makes it send nothing; size is the
	// donor's estimate (len(stream) when 0).
	stream   []byte
	cutAfter int
	stall    bool
	size     int64
	// full > 0 makes the unpacker fail with ENOSPC after so many bytes.
	full int
	// position is what the prepared backup records as its position.
	position string
	restored []string // RestorePosition's GTID sets, in order
	followed int
	// seen is the journal's step on disk when each stand-in was called.
	seen map[string]cluster.RebuildStep
	// hooks run when the stand-in of that name is called, after it did its part;
	// an error is its result (crash: cancel the agent's context and return).
	hooks map[string]func() error
}

func newRebuildHarness(t *testing.T) *rbHarness {
	t.Helper()
	root := t.TempDir()
	h := &rbHarness{t: t, root: root, datadir: filepath.Join(root, "mysql"), state: filepath.Join(root, "state"),
		running: true, on: "old", stream: bytes.Repeat([]byte("page"), 4096), position: "mysql-bin.000009\t42\t0-2-150\n",
		seen: map[string]cluster.RebuildStep{}, hooks: map[string]func() error{}}
	if err := os.Mkdir(h.datadir, 0o750); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"ibdata1": "old", "errant-evidence": "the node's own data"} {
		if err := os.WriteFile(filepath.Join(h.datadir, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	cli, _ := sandboxtest.Etcd(t)
	h.store = cluster.NewStore(cli, "rb")
	h.setPrimary(cluster.Primary{Node: "db2", Addr: "198.18.0.2:3306", ServerID: 2, Epoch: 5})
	h.cfg = &RebuildConfig{Fetcher: h, Control: h, Restorer: h, Files: h, StateDir: h.state,
		CommandTimeout: 2 * time.Second, StallTimeout: time.Second, Backoff: time.Minute, upProbe: h.up}
	h.det = &trendDetector{}
	h.restart()
	return h
}

// trendDetector counts the calls that make the disks' trends start afresh.
type trendDetector struct {
	reportDetector
	restarts int
}

func (d *trendDetector) RestartTrends() { d.restarts++ }

// restart makes a new reconciler on the same state directory: an agent that
// starts again.
func (h *rbHarness) restart() {
	h.t.Helper()
	r, err := NewReconciler(ReconcilerConfig{Node: "db1", Addr: "198.18.0.1:3306", Store: h.store, Cluster: nullReader{}, Local: &rbLocal{h: h},
		Detector: h.det, ConfirmLag: time.Second, Repl: replication.Source{User: "repl"}, Rebuild: h.cfg, Log: zap.NewNop()})
	if err != nil {
		h.t.Fatal(err)
	}
	h.r = r
}

func (h *rbHarness) setPrimary(p cluster.Primary) {
	h.t.Helper()
	b, _ := json.Marshal(p)
	if _, err := h.store.Client().Put(context.Background(), h.store.Keys.Primary(), string(b)); err != nil {
		h.t.Fatal(err)
	}
}

// snap is the cluster as the pass that orders the rebuild saw it: db3 a donor.
func (h *rbHarness) snap() cluster.Snapshot {
	s, err := h.store.Load(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	s.Nodes["db3"] = donorOf("db3", 0)
	return s
}

// rebuildOf is the analysis that orders a rebuild of db1 from db3.
func rebuildOf() Analysis {
	return Analysis{Action: NodeRebuild, Role: cluster.RoleQuarantined, Donor: "db3", Reason: "data diverged",
		Source: replication.Source{Host: "198.18.0.2", Port: 3306}}
}

// run orders a and carries it out, as a pass and the runner would.
func (h *rbHarness) run(ctx context.Context, a Analysis) {
	h.t.Helper()
	h.r.startRebuild(h.snap(), a)
	select {
	case o := <-h.r.rebuildSt.orders:
		if o.a.Resume {
			h.r.resumeRebuild(ctx)
		} else {
			h.r.rebuild(ctx, o)
		}
	default:
		h.t.Fatal("no rebuild ordered")
	}
}

// note records the journal's step on disk as the stand-in name is called, and runs
// its hook.
func (h *rbHarness) note(name string) error {
	var j rebuildJournal
	if b, err := os.ReadFile(filepath.Join(h.state, rebuildJournalFile)); err == nil && json.Unmarshal(b, &j) == nil {
		h.seen[name] = j.Step
	} else {
		h.seen[name] = ""
	}
	if f := h.hooks[name]; f != nil {
		return f()
	}
	return nil
}

func (h *rbHarness) up(string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running, nil
}

func (h *rbHarness) Stop(ctx context.Context) error {
	h.mu.Lock()
	h.running = false
	h.stops++
	h.mu.Unlock()
	return h.note("stop")
}

func (h *rbHarness) Start(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(h.datadir, "ibdata1"))
	if err != nil {
		return fmt.Errorf("mariadbd exited: %w", err)
	}
	h.mu.Lock()
	h.running, h.on = true, string(b)
	h.starts++
	h.mu.Unlock()
	return h.note("start")
}

func (h *rbHarness) Fetch(ctx context.Context, donor, agent, id string) (BackupStream, error) {
	if donor != "db3" || agent != "db3:9107" {
		return nil, fmt.Errorf("asked %s at %s", donor, agent)
	}
	size := h.size
	if size == 0 {
		size = int64(len(h.stream))
	}
	return &rbStream{h: h, ctx: ctx, r: bytes.NewReader(h.stream), meta: BackupMeta{Donor: donor, Flavor: replication.FlavorMariaDB,
		BinlogState: "0-1-100,0-2-149", Size: size}}, nil
}

func (h *rbHarness) Unpack(ctx context.Context, r io.Reader, dir string) error {
	if err := h.note("unpack"); err != nil {
		return err
	}
	var got bytes.Buffer
	buf := make([]byte, 1024)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if h.full > 0 && got.Len() >= h.full {
			// What mbstream says when the disk fills.
			return fmt.Errorf("mbstream: exit status 1: write: %w", syscall.ENOSPC)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("mbstream: exit status 1: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "payload"), got.Bytes(), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ibdata1"), []byte("new"), 0o600)
}

func (h *rbHarness) Prepare(ctx context.Context, dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "xtrabackup_binlog_info"), []byte(h.position), 0o600); err != nil {
		return err
	}
	return h.note("prepare")
}

func (h *rbHarness) Layout(ctx context.Context) (replication.Layout, error) {
	return replication.Layout{Datadir: h.datadir + "/", Paths: map[string]string{"log_bin_basename": filepath.Join(h.datadir, "mysql-bin")}}, nil
}

func (h *rbHarness) RestorePosition(ctx context.Context, pos replication.BackupPosition, binlogState string) error {
	if err := h.note("restore"); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running || h.on != "new" {
		return fmt.Errorf("the server runs %v, on %q", h.running, h.on)
	}
	if binlogState != "0-1-100,0-2-149" {
		return fmt.Errorf("binlog state %q", binlogState)
	}
	h.restored = append(h.restored, pos.GTID.String())
	return nil
}

// rbStream is the donor's stream.
type rbStream struct {
	h    *rbHarness
	ctx  context.Context
	r    *bytes.Reader
	n    int
	meta BackupMeta
}

func (s *rbStream) Read(p []byte) (int, error) {
	if s.h.stall {
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	if s.h.cutAfter > 0 && s.n >= s.h.cutAfter {
		return 0, errors.New("read tcp 198.18.0.11:50312->198.18.0.13:9107: connection reset by peer")
	}
	if len(p) > 512 {
		p = p[:512]
	}
	n, err := s.r.Read(p)
	s.n += n
	return n, err
}

func (s *rbStream) Close() error     { return nil }
func (s *rbStream) Meta() BackupMeta { return s.meta }

// rbLocal is the node's server as the reconciler sees it: read_only when running.
type rbLocal struct {
	Local
	h *rbHarness
}

func (l *rbLocal) Status(ctx context.Context) (replication.Status, error) {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	if !l.h.running {
		return replication.Status{}, errors.New("connect: no such file or directory")
	}
	return replication.Status{Flavor: replication.FlavorMariaDB, ReadOnly: true}, nil
}

func (l *rbLocal) Fence(ctx context.Context) (replication.FenceReport, error) {
	return replication.FenceReport{ReadOnly: true}, nil
}

func (l *rbLocal) Follow(ctx context.Context, src replication.Source, confirm func(context.Context) error) error {
	if err := confirm(ctx); err != nil {
		return err
	}
	l.h.mu.Lock()
	l.h.followed++
	l.h.mu.Unlock()
	return nil
}

// nullReader is a cluster reader nobody reads in these tests.
type nullReader struct{}

func (nullReader) Snapshot(context.Context) (cluster.Snapshot, error) {
	return cluster.Snapshot{}, errors.New("not used")
}
func (nullReader) Subscribe(func(string) bool) (<-chan struct{}, func()) {
	return make(chan struct{}), func() {}
}

// keptDirs are the directories where Baton kept an old datadir.
func (h *rbHarness) keptDirs() []string {
	m, _ := filepath.Glob(filepath.Join(h.root, "mysql.baton-old-*"))
	return m
}

func (h *rbHarness) newDirs() []string {
	m, _ := filepath.Glob(filepath.Join(h.root, "mysql.baton-new-*"))
	return m
}

func (h *rbHarness) journalExists() bool {
	_, err := os.Stat(filepath.Join(h.state, rebuildJournalFile))
	return err == nil
}

// checkRolledBack holds the node to what a failed rebuild leaves: the datadir as it
// was, the server running on it, no copy left, no journal, nothing kept aside, the
// failure in the status, and no automatic try before the back-off.
func (h *rbHarness) checkRolledBack(why string) {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.datadir, "ibdata1"))
	if err != nil || string(b) != "old" {
		h.t.Errorf("the datadir holds %q (%v), want the old data", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(h.datadir, "errant-evidence")); err != nil || string(b) != "the node's own data" {
		h.t.Errorf("the node's own files: %q, %v", b, err)
	}
	h.mu.Lock()
	running, on := h.running, h.on
	h.mu.Unlock()
	if !running || on != "old" {
		h.t.Errorf("the server runs %v, on %q data: want running on the old datadir", running, on)
	}
	if n := h.newDirs(); len(n) > 0 {
		h.t.Errorf("the unfinished copy is left: %v", n)
	}
	if k := h.keptDirs(); len(k) > 0 {
		h.t.Errorf("an old datadir kept aside after a rollback: %v", k)
	}
	if h.journalExists() {
		h.t.Error("the journal is left after the rollback")
	}
	p := h.r.rebuildSt.status()
	if p == nil || p.Step != cluster.RebuildFailed || !strings.Contains(p.Error, why) {
		h.t.Errorf("status rebuild %+v, want failed with %q", p, why)
	}
	self := h.r.rebuildSt.self(h.r.cfg.Rebuild, time.Now())
	if self.Running != nil || self.Interrupted || !self.Backoff {
		h.t.Errorf("after the failure: %+v, want nothing running and a back-off", self)
	}
	if len(h.restored) > 0 {
		h.t.Errorf("a position was restored: %v", h.restored)
	}
}

// TestRebuild: the whole rebuild on stand-ins: the journal records each step before
// the step is taken; the server is stopped only once the copy is prepared; the old
// datadir is kept, whole; the server is started on the copy and given its position;
// the node follows the primary; the history's event says what was done; an
// operator's request is taken up and answered.
func TestRebuild(t *testing.T) {
	h := newRebuildHarness(t)
	ctx := t.Context()
	req := cluster.RebuildRequest{ID: "q1", Node: "db1", From: "db3", By: "ops", At: time.Now().UTC()}
	if err := h.store.PutRebuild(ctx, req); err != nil {
		t.Fatal(err)
	}
	_, rev, err := h.store.RebuildRequestRev(ctx, "db1")
	if err != nil {
		t.Fatal(err)
	}
	a := rebuildOf()
	a.RebuildRequest, a.RebuildRev = &req, rev
	var stepsSeen []cluster.RebuildStep
	h.hooks["unpack"] = func() error {
		// Under way: the request is taken up, the status shows the rebuild.
		cur, _, _ := h.store.RebuildRequestRev(ctx, "db1")
		if cur == nil || cur.State != cluster.RequestRunning || cur.Started.IsZero() {
			t.Errorf("request during the rebuild: %+v, want running", cur)
		}
		if p := h.r.rebuildSt.status(); p == nil || p.Step != cluster.RebuildStream || p.From != "db3" || !p.Manual {
			t.Errorf("status during the stream: %+v", p)
		}
		if s := h.r.rebuildSt.self(h.r.cfg.Rebuild, time.Now()); s.Running == nil {
			t.Error("Analyze would not see the rebuild under way")
		}
		return nil
	}
	h.run(ctx, a)
	for _, name := range []string{"unpack", "prepare", "stop", "start", "restore"} {
		stepsSeen = append(stepsSeen, h.seen[name])
	}
	want := []cluster.RebuildStep{cluster.RebuildStream, cluster.RebuildPrepare, cluster.RebuildStop, cluster.RebuildStart, cluster.RebuildPosition}
	if fmt.Sprint(stepsSeen) != fmt.Sprint(want) {
		t.Errorf("the journal on disk during unpack, prepare, stop, start, restore: %v, want %v", stepsSeen, want)
	}
	if h.stops != 1 || h.starts != 1 || !h.running || h.on != "new" {
		t.Errorf("stops %d starts %d, running %v on %q: want the server stopped once and started on the copy", h.stops, h.starts, h.running, h.on)
	}
	if fmt.Sprint(h.restored) != "[0-2-150]" {
		t.Errorf("positions restored %v, want the backup's 0-2-150", h.restored)
	}
	if b, _ := os.ReadFile(filepath.Join(h.datadir, "payload")); !bytes.Equal(b, h.stream) {
		t.Errorf("the datadir holds %d bytes of the stream, want all %d", len(b), len(h.stream))
	}
	kept := h.keptDirs()
	if len(kept) != 1 {
		t.Fatalf("old datadirs kept: %v, want one", kept)
	}
	if b, err := os.ReadFile(filepath.Join(kept[0], "errant-evidence")); err != nil || string(b) != "the node's own data" {
		t.Errorf("the kept datadir %s: %q, %v", kept[0], b, err)
	}
	if n := h.newDirs(); len(n) > 0 || h.journalExists() {
		t.Errorf("left: copies %v, journal %v", n, h.journalExists())
	}
	if h.followed != 1 || h.r.role != cluster.RoleReplica {
		t.Errorf("followed %d times, role %s: want it following the primary", h.followed, h.r.role)
	}
	if p := h.r.rebuildSt.status(); p != nil {
		t.Errorf("status after the rebuild: %+v, want none", p)
	}
	if h.det.restarts != 1 {
		t.Errorf("the disks' trends restarted %d times after the rebuild, want once (the copy's fill is no rate)", h.det.restarts)
	}
	hist, err := h.store.History(ctx, 1)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history %v, %v", hist, err)
	}
	ev := hist[0]
	if ev.Kind != cluster.EventRebuild || ev.From != "db1" || ev.To != "db2" || ev.Donor != "db3" || ev.Bytes != int64(len(h.stream)) ||
		ev.Kept != kept[0] || !ev.Manual || !strings.Contains(ev.Reason, "kept at "+kept[0]) || len(ev.Steps) < 7 {
		t.Errorf("history event %+v", ev)
	}
	cur, _, err := h.store.RebuildRequestRev(ctx, "db1")
	if err != nil || cur == nil || cur.State != cluster.RequestDone || cur.Result == nil || cur.Result.Kept != kept[0] {
		t.Errorf("request after the rebuild: %+v, %v; want done with the event", cur, err)
	}
}

// TestRebuildFailuresPutEverythingBack: a donor that dies mid-stream, a stream that
// stalls, a disk that fills during the copy, a filesystem without room, a backup
// without a GTID position, a failover or switchover in progress, the node named
// primary of record meanwhile: each time the node keeps its old datadir and its
// running server, the copy goes, and the failure is in its status; the server is
// never stopped.
func TestRebuildFailuresPutEverythingBack(t *testing.T) {
	cases := []struct {
		name  string
		setup func(h *rbHarness)
		why   string
	}{
		{"the donor dies mid-stream", func(h *rbHarness) { h.cutAfter = 5000 }, "connection reset by peer"},
		{"the stream stalls", func(h *rbHarness) { h.stall = true }, "nothing came from db3 for 1s"},
		{"the disk fills during the copy", func(h *rbHarness) { h.full = 6000 }, "no space left on device"},
		{"no room for the copy", func(h *rbHarness) { h.size = 1 << 60 }, "not enough room for the copy"},
		{"no size from the donor", func(h *rbHarness) { h.size = -1 }, "gave no size"},
		{"the backup has no GTID position", func(h *rbHarness) { h.position = "mysql-bin.000009\t42\n" }, "no GTID position"},
		{"a flow in progress at the last moment", func(h *rbHarness) {
			h.hooks["prepare"] = func() error {
				_, err := h.store.Client().Put(context.Background(), h.store.Keys.Intent(), `{"kind":"failover","epoch":5,"from":"db2"}`)
				return err
			}
		}, "in progress"},
		{"the node named primary of record meanwhile", func(h *rbHarness) {
			h.hooks["prepare"] = func() error {
				h.setPrimary(cluster.Primary{Node: "db1", Addr: "198.18.0.1:3306", Epoch: 6})
				return nil
			}
		}, "became the primary of record"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newRebuildHarness(t)
			tc.setup(h)
			h.run(t.Context(), rebuildOf())
			h.checkRolledBack(tc.why)
			if h.stops != 0 || h.starts != 0 {
				t.Errorf("stops %d starts %d: the server was touched", h.stops, h.starts)
			}
			if hist, _ := h.store.History(t.Context(), 1); len(hist) > 0 {
				t.Errorf("history %+v after a failure", hist)
			}
		})
	}
}

// TestRebuildAfterAFailoverMeanwhile: a failover that ended while the copy was made
// is no reason to stop (the copy holds what the donor had, which the new primary
// has too); the event says so, and the node follows the new primary.
func TestRebuildAfterAFailoverMeanwhile(t *testing.T) {
	h := newRebuildHarness(t)
	h.hooks["prepare"] = func() error {
		h.setPrimary(cluster.Primary{Node: "db3", Addr: "198.18.0.3:3306", ServerID: 3, Epoch: 6})
		return nil
	}
	h.run(t.Context(), rebuildOf())
	hist, err := h.store.History(t.Context(), 1)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history %v, %v", hist, err)
	}
	if ev := hist[0]; ev.To != "db3" || ev.Epoch != 6 || !strings.Contains(ev.Reason, "moved to db3, epoch 6") || h.followed != 1 {
		t.Errorf("event %+v, followed %d: want the rebuild done, following db3", ev, h.followed)
	}
}

// TestRebuildResumedAfterAgentRestart: the agent dies at each step of a rebuild
// (its context ends in the middle of the step); the next agent finds the journal,
// and before anything else either finishes the rebuild (the copy was swapped in
// whole) or puts the old datadir back and starts the server on it. Never both
// datadirs lost, never the server left stopped.
func TestRebuildResumedAfterAgentRestart(t *testing.T) {
	cases := []struct {
		at      string // the stand-in during which the agent dies
		forward bool
	}{
		{"unpack", false},
		{"prepare", false},
		{"stop", false},
		{"start", true},
		{"restore", true},
	}
	for _, tc := range cases {
		t.Run("dies during "+tc.at, func(t *testing.T) {
			h := newRebuildHarness(t)
			ctx, die := context.WithCancel(t.Context())
			h.hooks[tc.at] = func() error {
				die()
				return context.Canceled
			}
			h.run(ctx, rebuildOf())
			if !h.journalExists() {
				t.Fatal("no journal left by the agent that died")
			}
			delete(h.hooks, tc.at)
			h.restart()
			// The new agent's first pass: the half-done rebuild comes first, whatever
			// its server says.
			self := h.r.self(leases["db1"])
			self.Read, self.Status = LocalFailed, replication.Status{}
			a := Analyze(h.snap(), self)
			if a.Action != NodeRebuild || !a.Resume || a.Role != cluster.RoleQuarantined {
				t.Fatalf("the restarted agent's analysis: %s (%s), want a resumed rebuild", a.Action, a.Reason)
			}
			h.run(t.Context(), a)
			if h.journalExists() {
				t.Error("the journal is left after the resumption")
			}
			if !tc.forward {
				h.checkRolledBack("the agent stopped during step")
				return
			}
			if !h.running || h.on != "new" || len(h.restored) == 0 || len(h.keptDirs()) != 1 {
				t.Errorf("running %v on %q, restored %v, kept %v: want the rebuild finished", h.running, h.on, h.restored, h.keptDirs())
			}
			hist, err := h.store.History(t.Context(), 1)
			if err != nil || len(hist) != 1 || hist[0].Kind != cluster.EventRebuild || !strings.Contains(hist[0].Reason, "finished by an agent restarted") {
				t.Errorf("history %+v, %v", hist, err)
			}
		})
	}
}

// TestRebuildResumeMidSwap: an agent that died between the two renames of the swap
// (the datadir aside, the copy not yet in) leaves no datadir at its path; the next
// agent puts the old one back and starts the server on it.
func TestRebuildResumeMidSwap(t *testing.T) {
	h := newRebuildHarness(t)
	id := "20261201T000000Z-abcdef"
	newDir, kept := rebuildPaths(h.datadir, id)
	if err := os.Mkdir(newDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(newDir, "ibdata1"), []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(h.datadir, kept); err != nil {
		t.Fatal(err)
	}
	h.running = false
	j := &rebuildJournal{ID: id, Donor: "db3", Step: cluster.RebuildSwap, Started: time.Now().UTC(), Datadir: h.datadir, New: newDir, Kept: kept,
		Flavor: "mariadb", GTID: "0-2-150", Reason: "data diverged"}
	if err := writeRebuildJournal(h.state, j); err != nil {
		t.Fatal(err)
	}
	h.restart()
	self := h.r.self(leases["db1"])
	if !self.Rebuild.Interrupted {
		t.Fatalf("the restarted agent does not see the rebuild: %+v", self.Rebuild)
	}
	a := Analyze(h.snap(), func() Self { s := unanswered("db1"); s.Rebuild = self.Rebuild; return s }())
	h.run(t.Context(), a)
	h.checkRolledBack("the agent stopped during step swap")
	if h.starts != 1 {
		t.Errorf("the server was started %d times, want once, on the old datadir", h.starts)
	}
}

// TestRebuildUnreadableJournal: a journal that cannot be read says nothing of what
// was done: nothing is done, and the node waits quarantined for a person, saying so.
func TestRebuildUnreadableJournal(t *testing.T) {
	h := newRebuildHarness(t)
	if err := os.MkdirAll(h.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.state, rebuildJournalFile), []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.restart()
	a := Analyze(h.snap(), func() Self {
		s := read("db1", readOnly(writable(1, "0-1-100")))
		s.Rebuild = h.r.self(1).Rebuild
		return s
	}())
	h.run(t.Context(), a)
	self := h.r.rebuildSt.self(h.r.cfg.Rebuild, time.Now())
	if self.Interrupted || self.Running != nil || !strings.Contains(self.Stuck, "cannot be read") {
		t.Fatalf("after an unreadable journal: %+v, want stuck, saying why", self)
	}
	b := Analyze(h.snap(), func() Self { s := read("db1", readOnly(writable(1, "0-1-100"))); s.Rebuild = self; return s }())
	if b.Action != NodeWait || b.Role != cluster.RoleQuarantined || !strings.Contains(b.Reason, "cannot be read") {
		t.Errorf("then: %s %s (%s), want waiting quarantined", b.Action, b.Role, b.Reason)
	}
	if h.stops+h.starts != 0 || !h.journalExists() {
		t.Errorf("stops %d starts %d, journal kept %v: want nothing touched", h.stops, h.starts, h.journalExists())
	}
}

func TestDecideResume(t *testing.T) {
	swapped := dirFacts{Datadir: true, Kept: true}
	cases := []struct {
		name string
		j    rebuildJournal
		f    dirFacts
		want resumeDecision
	}{
		{"stream", rebuildJournal{Step: cluster.RebuildStream}, dirFacts{Datadir: true, New: true}, resumeBack},
		{"prepared, not stopped", rebuildJournal{Step: cluster.RebuildPrepare, GTID: "0-2-1"}, dirFacts{Datadir: true, New: true}, resumeBack},
		{"stopped", rebuildJournal{Step: cluster.RebuildStop, GTID: "0-2-1"}, dirFacts{Datadir: true, New: true}, resumeBack},
		{"mid-swap", rebuildJournal{Step: cluster.RebuildSwap, GTID: "0-2-1"}, dirFacts{Kept: true, New: true}, resumeBack},
		{"swap recorded, done whole: not known to be synced, back", rebuildJournal{Step: cluster.RebuildSwap, GTID: "0-2-1"}, swapped, resumeBack},
		{"starting on the copy", rebuildJournal{Step: cluster.RebuildStart, GTID: "0-2-1"}, swapped, resumeForward},
		{"setting the position", rebuildJournal{Step: cluster.RebuildPosition, GTID: "0-2-1"}, swapped, resumeForward},
		{"following", rebuildJournal{Step: cluster.RebuildFollow, GTID: "0-2-1"}, swapped, resumeForward},
		{"no position recorded: never forward", rebuildJournal{Step: cluster.RebuildStart}, swapped, resumeBack},
		{"rolling back already", rebuildJournal{Step: cluster.RebuildStart, GTID: "0-2-1", Failure: "start failed"}, swapped, resumeBack},
		{"a copy left beside: not a state a swap leaves", rebuildJournal{Step: cluster.RebuildStart, GTID: "0-2-1"}, dirFacts{Datadir: true, Kept: true, New: true}, resumeBack},
		{"a step this version does not know", rebuildJournal{Step: "verify", GTID: "0-2-1"}, swapped, resumeBack},
	}
	for _, tc := range cases {
		if got := decideResume(tc.j, tc.f); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRollbackMoves(t *testing.T) {
	j := rebuildJournal{Datadir: "/d/mysql", New: "/d/mysql.baton-new-x", Kept: "/d/mysql.baton-old-x"}
	cases := []struct {
		name  string
		f     dirFacts
		moves string
		stop  bool
		err   string
	}{
		{"never swapped", dirFacts{Datadir: true, New: true}, "[]", false, ""},
		{"never made a copy", dirFacts{Datadir: true}, "[]", false, ""},
		{"swapped", dirFacts{Datadir: true, Kept: true}, "[{/d/mysql /d/mysql.baton-new-x} {/d/mysql.baton-old-x /d/mysql}]", true, ""},
		{"half swapped", dirFacts{Kept: true, New: true}, "[{/d/mysql.baton-old-x /d/mysql}]", false, ""},
		{"half rolled back", dirFacts{Kept: true, New: true}, "[{/d/mysql.baton-old-x /d/mysql}]", false, ""},
		{"all three", dirFacts{Datadir: true, Kept: true, New: true}, "", false, "cannot be told"},
		{"nothing", dirFacts{New: true}, "", false, "is missing"},
	}
	for _, tc := range cases {
		moves, stop, err := rollbackMoves(j, tc.f)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v %v %v, want error %q", tc.name, moves, stop, err, tc.err)
		case tc.err == "" && (err != nil || fmt.Sprint(moves) != tc.moves || stop != tc.stop):
			t.Errorf("%s: %v stop %v %v, want %s stop %v", tc.name, moves, stop, err, tc.moves, tc.stop)
		}
	}
}

// TestLayoutProblem: only a datadir that is a directory of its own filesystem, with
// every file of the server in it, is swapped.
func TestLayoutProblem(t *testing.T) {
	dd := filepath.Join(t.TempDir(), "mysql")
	if err := os.Mkdir(dd, 0o700); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		l    replication.Layout
		why  string
	}{
		{"fine", replication.Layout{Datadir: dd + "/", Paths: map[string]string{"log_bin_basename": dd + "/mysql-bin"}}, ""},
		{"binary logs elsewhere", replication.Layout{Datadir: dd, Paths: map[string]string{"log_bin_basename": "/var/log/mysql/mysql-bin"}}, "outside its datadir"},
		{"relative", replication.Layout{Datadir: "data"}, "not a directory Baton can swap"},
		{"root", replication.Layout{Datadir: "/"}, "not a directory Baton can swap"},
		{"top level", replication.Layout{Datadir: "/mysql"}, "not a directory Baton can swap"},
		{"missing", replication.Layout{Datadir: dd + "-gone"}, "no such file"},
	}
	for _, tc := range cases {
		got := layoutProblem(tc.l)
		if (got == "") != (tc.why == "") || !strings.Contains(got, tc.why) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.why)
		}
	}
}

// TestServerUp: a server holding its datadir's files (a process with a lock on
// ibdata1, as InnoDB takes) is running; once that process is gone it is not; a
// directory with neither of the files a server locks tells nothing.
func TestServerUp(t *testing.T) {
	if os.Getenv("BATON_TEST_HOLD_LOCK") != "" {
		return // the helper below, not a test
	}
	dd := t.TempDir()
	if _, err := serverUp(dd); err == nil {
		t.Fatal("an empty directory: want an error, not \"stopped\"")
	}
	if err := os.WriteFile(filepath.Join(dd, "ibdata1"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if up, err := serverUp(dd); err != nil || up {
		t.Fatalf("nobody holds ibdata1: up %v, %v", up, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerUpHelper$")
	cmd.Env = append(os.Environ(), "BATON_TEST_HOLD_LOCK="+filepath.Join(dd, "ibdata1"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "locked" {
		t.Fatalf("the helper: %q, %v", line, err)
	}
	if up, err := serverUp(dd); err != nil || !up {
		t.Errorf("another process holds ibdata1: up %v, %v; want running", up, err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if up, err := serverUp(dd); err != nil || up {
		t.Errorf("the holder is gone: up %v, %v; want stopped", up, err)
	}
}

// TestServerUpHelper holds an fcntl lock on the file BATON_TEST_HOLD_LOCK names
// until its standard input closes (for TestServerUp).
func TestServerUpHelper(t *testing.T) {
	path := os.Getenv("BATON_TEST_HOLD_LOCK")
	if path == "" {
		t.Skip("a helper of TestServerUp")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// TestRebuildProgressPublished: a rebuild's start, its steps, its failure and every
// twentieth of its stream (8 MiB at least, 128 MiB at most) are published at once; a
// few bytes more are not.
func TestRebuildProgressPublished(t *testing.T) {
	p := func(step cluster.RebuildStep, bytes int64) *cluster.RebuildProgress {
		return &cluster.RebuildProgress{ID: "r", Step: step, Bytes: bytes, Size: 10 << 30}
	}
	small := func(bytes int64) *cluster.RebuildProgress {
		return &cluster.RebuildProgress{ID: "r", Step: cluster.RebuildStream, Bytes: bytes, Size: 40 << 20}
	}
	cases := []struct {
		name string
		a, b *cluster.RebuildProgress
		want bool
	}{
		{"none", nil, nil, false},
		{"started", nil, p(cluster.RebuildArchive, 0), true},
		{"ended", p(cluster.RebuildFollow, 9), nil, true},
		{"a step", p(cluster.RebuildStream, 9), p(cluster.RebuildPrepare, 9), true},
		{"a few bytes", p(cluster.RebuildStream, 1<<20), p(cluster.RebuildStream, 2<<20), false},
		{"128 MiB more, of 10 GiB", p(cluster.RebuildStream, 100<<20), p(cluster.RebuildStream, 130<<20), true},
		{"100 MiB more, of 10 GiB", p(cluster.RebuildStream, 130<<20), p(cluster.RebuildStream, 230<<20), false},
		{"8 MiB more, of 40 MiB", small(7 << 20), small(9 << 20), true},
		{"6 MiB more, of 40 MiB", small(9 << 20), small(15 << 20), false},
	}
	for _, tc := range cases {
		a := cluster.NodeStatus{Node: "db1", Rebuild: tc.a}
		b := cluster.NodeStatus{Node: "db1", Rebuild: tc.b}
		if got := publishNow(a, b, publishMarks{confirmLag: time.Second, gtidStep: DefaultGTIDStep}); got != tc.want {
			t.Errorf("%s: publishNow %v, want %v", tc.name, got, tc.want)
		}
	}
}
