package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
	"github.com/baton-ha/baton/replication"
)

// The print of a failed primary's binary logs after 0-1-2, as its agent reads it:
// replication/testdata/salvage (0-1-3 .. 0-1-7 whole, then an XA transaction).
var salvageFiles = []string{"mysql-bin.000001", "mysql-bin.000002"}

func salvagePrint(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../replication/testdata/salvage/print-after-0-1-2.txt")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tailOf is what the agent answers for the print cut at cut (whole transactions
// only, as ParseBinlogPrint keeps them).
func tailOf(t *testing.T, cut func([]byte) []byte) SalvageTail {
	t.Helper()
	out := salvagePrint(t)
	if cut != nil {
		out = cut(out)
	}
	tail := SalvageTail{BinlogPrint: replication.ParseBinlogPrint(out, salvageFiles), Files: salvageFiles, Safe: "mysqld is not running"}
	if len(tail.Txns) > 0 {
		paths := []string{"../replication/testdata/salvage/" + salvageFiles[0], "../replication/testdata/salvage/" + salvageFiles[1]}
		relay, err := replication.SalvageRelay(paths, tail.Txns, replication.MaxSalvage)
		if err != nil {
			t.Fatal(err)
		}
		tail.Relay = relay
	}
	return tail
}

// cutAfter cuts the print right after marker.
func cutAfter(marker string) func([]byte) []byte {
	return func(b []byte) []byte {
		i := bytes.Index(b, []byte(marker))
		if i < 0 {
			panic("marker not in the print: " + marker)
		}
		return b[:i+len(marker)]
	}
}

// whole is the print up to 0-1-7's end: five whole transactions, nothing after.
var whole = cutAfter("COMMIT/*!*/;\n# at 1046\n")

// salvageServer is the candidate: it answers its status, and an apply moves its
// executed set (fakeSalvager.Apply).
type salvageServer struct {
	Server
	mu       sync.Mutex
	executed string
	readOnly bool
	readErr  error
}

func (s *salvageServer) Status(context.Context) (replication.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		return replication.Status{}, s.readErr
	}
	return replication.Status{Flavor: replication.FlavorMariaDB, Role: replication.RoleReplica, ServerID: 2, ReadOnly: s.readOnly,
		Executed: replication.MustParseGTIDSet(replication.FlavorMariaDB, s.executed),
		MariaDB:  replication.MariaDBPositions{BinlogState: s.executed, SlavePos: s.executed},
		IOThread: replication.ThreadStopped, SQLThread: replication.ThreadRunning}, nil
}

func (s *salvageServer) StopIO(context.Context) error           { return nil }
func (s *salvageServer) StartReplication(context.Context) error { return nil }
func (s *salvageServer) WaitExecuted(context.Context, replication.GTIDSet, time.Duration) error {
	return nil
}

func (s *salvageServer) set(executed string, readErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.executed, s.readErr = executed, readErr
}

// deadServer is an old primary whose mysqld is dead: its fence fails.
type deadServer struct{ Server }

func (deadServer) Fence(context.Context) (replication.FenceReport, error) {
	return replication.FenceReport{}, errors.New("dial tcp 198.18.0.11:3306: connect: connection refused")
}

type mapPool map[string]Server

func (p mapPool) Instance(name, _ string) (Server, error) {
	if s, ok := p[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("no server %s", name)
}

// fakeSalvager answers a fetch with tail (or fetchErr; or blocks until its
// context ends), and applies by moving the candidate to appliedTo (and failing with
// applyErr, and, with candidateDies, leaving the candidate unreadable).
type fakeSalvager struct {
	mu            sync.Mutex
	tail          SalvageTail
	fetchErr      error
	block         bool
	cand          *salvageServer
	appliedTo     string
	applyErr      error
	candidateDies bool
	onApply       func()
	queries       []SalvageQuery
	agents        []string
	applies       int
	guards        []replication.SalvageGuard
	targets       []SalvageTarget
	relays        [][]byte
}

func (s *fakeSalvager) Fetch(ctx context.Context, agent string, q SalvageQuery) (SalvageTail, error) {
	s.mu.Lock()
	s.queries, s.agents = append(s.queries, q), append(s.agents, agent)
	block, tail, err := s.block, s.tail, s.fetchErr
	s.mu.Unlock()
	if block {
		<-ctx.Done()
		return SalvageTail{}, fmt.Errorf("ask %s: %w", agent, ctx.Err())
	}
	return tail, err
}

func (s *fakeSalvager) Apply(ctx context.Context, to SalvageTarget, tail SalvageTail, g replication.SalvageGuard) (string, error) {
	s.mu.Lock()
	s.applies++
	s.guards, s.targets, s.relays = append(s.guards, g), append(s.targets, to), append(s.relays, tail.Relay)
	onApply := s.onApply
	s.mu.Unlock()
	if onApply != nil {
		onApply()
	}
	if s.appliedTo != "" {
		s.cand.set(s.appliedTo, nil)
	}
	if s.candidateDies {
		s.cand.set(s.appliedTo, errors.New("dial tcp 198.18.0.12:3306: connect: connection refused"))
	}
	return "the fake", s.applyErr
}

func salvageSnap() cluster.Snapshot {
	return cluster.Snapshot{View: cluster.View{
		Primary: cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", ServerID: 1, Epoch: 4},
		Nodes: map[string]cluster.NodeStatus{
			"db1": {Node: "db1", Addr: "198.18.0.11:3306", Agent: "198.18.0.11:9107", Role: cluster.RolePrimary, Epoch: 4},
			"db2": {Node: "db2", Addr: "198.18.0.12:3306", Agent: "198.18.0.12:9107", Role: cluster.RoleReplica, ServerRead: true, ReadOnly: true,
				GTID: "0-1-2", Epoch: 4, StorageOK: true},
		},
	}}
}

func salvageFlow(cand *salvageServer, s Salvager) *flow {
	return &flow{c: &Coordinator{cfg: CoordinatorConfig{Servers: mapPool{"db1": deadServer{}, "db2": cand}, Salvage: s,
		SalvageTimeout: DefaultSalvageTimeout}, log: zap.NewNop()},
		snap: salvageSnap(), d: cluster.Decision{Action: cluster.Failover, From: "db1", Candidates: []string{"db2"}}}
}

func owned(context.Context) error { return nil }

// TestSalvageStep: what the failover's salvage step does with the old primary's
// agent's answer, at each way it can go wrong. Nothing but a failed candidate or a
// lost intent stops the failover; whatever is not applied is said, and nothing is
// applied that is not whole, that does not continue the candidate, that semi-sync
// never acknowledged, or without the flow still owning its intent.
func TestSalvageStep(t *testing.T) {
	type want struct {
		applied    int
		applies    int    // Apply calls
		fetches    int    // Fetch calls
		behind     string // in LeftBehind; "" for nothing left behind
		refuse     string // in the refusal; "" for none
		first      string
		file       string
		pos        int64
		endFile    string
		endPos     int64
		refusalish bool // the refusal is a *refusal (the request says refused)
	}
	cases := []struct {
		name    string
		cand    *salvageServer
		sal     *fakeSalvager
		snap    func(*cluster.Snapshot)
		owns    func(context.Context) error
		fenced  bool
		fencing bool // the fence still under way
		noSalv  bool
		want    want
		wantOut func(t *testing.T, s *fakeSalvager, out salvageOutcome)
	}{
		{
			name: "every transaction after the candidate's position, applied with its GTIDs",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole), appliedTo: "0-1-7"},
			owns: owned,
			want: want{applied: 5, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 1046},
			wantOut: func(t *testing.T, s *fakeSalvager, out salvageOutcome) {
				q := s.queries[0]
				if q.After.Position() != "0-1-2" || q.Node != "db1" || q.Epoch != 4 || q.Candidate != "db2" || s.agents[0] != "198.18.0.11:9107" {
					t.Errorf("asked %s %+v, want db1's agent for what follows db2's 0-1-2 at epoch 4", s.agents[0], q)
				}
				if q.Budget <= 0 || q.Budget >= DefaultSalvageTimeout {
					t.Errorf("the agent's read budget %s is not within the step's %s", q.Budget, DefaultSalvageTimeout)
				}
				g := s.guards[0]
				if g.BinlogState != "0-1-2" || g.SlavePos != "0-1-2" || g.SlavePosAfter != "0-1-7" {
					t.Errorf("guard %+v: want the state read (0-1-2) and gtid_slave_pos moved to 0-1-7", g)
				}
				if out.note == "" || !strings.Contains(out.note, "salvaged 5 transactions") || !strings.Contains(out.note, "by the fake") {
					t.Errorf("note %q", out.note)
				}
				if to := s.targets[0]; to != (SalvageTarget{Node: "db2", Addr: "198.18.0.12:3306", Agent: "198.18.0.12:9107"}) || len(s.relays[0]) == 0 || out.rec.Via != "the fake" {
					t.Errorf("applied to %+v, relay of %d bytes, via %q: want db2's server and agent, the relay copy, and how it was applied", to, len(s.relays[0]), out.rec.Via)
				}
			},
		},
		{
			name: "a relay copy that is not the script's transactions: not passed on, the script is applied",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal: &fakeSalvager{tail: func() SalvageTail {
				tl := tailOf(t, whole)
				tl.Relay = bytes.Clone(tl.Relay)
				tl.Relay[len(tl.Relay)-3] ^= 1
				return tl
			}(), appliedTo: "0-1-7"},
			owns: owned,
			want: want{applied: 5, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 1046},
			wantOut: func(t *testing.T, s *fakeSalvager, out salvageOutcome) {
				if s.relays[0] != nil {
					t.Errorf("a damaged relay copy of %d bytes was passed on", len(s.relays[0]))
				}
			},
		},
		{
			name:   "the flow fenced the old primary: the agent is told",
			cand:   &salvageServer{executed: "0-1-2", readOnly: true},
			sal:    &fakeSalvager{tail: tailOf(t, whole), appliedTo: "0-1-7"},
			owns:   owned,
			fenced: true,
			want:   want{applied: 5, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 1046},
			wantOut: func(t *testing.T, s *fakeSalvager, out salvageOutcome) {
				if !s.queries[0].Fenced {
					t.Error("the query does not say the flow fenced the old primary")
				}
			},
		},
		{
			name: "a torn tail: the whole transactions before it are applied, the torn one is not, and it is said",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, cutAfter("Xid = 1036\n")), appliedTo: "0-1-6"},
			owns: owned,
			want: want{applied: 4, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 819,
				behind: "0-1-7 at mysql-bin.000002:819 is incomplete"},
		},
		{
			name: "an XA transaction stops the read: what comes before is applied",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, nil), appliedTo: "0-1-7"},
			owns: owned,
			want: want{applied: 5, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 1046,
				behind: "XA"},
		},
		{
			name: "the old primary's agent is gone: nothing asked, the failover goes on and says so",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole)},
			snap: func(s *cluster.Snapshot) { delete(s.Nodes, "db1") },
			owns: owned,
			want: want{behind: "whatever db1 logged after 0-1-2 (db2's position) stays on its disk: its agent is not running"},
		},
		{
			name: "the agent dies mid-transfer: nothing applied",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{fetchErr: errors.New("ask 198.18.0.11:9107: unexpected EOF")},
			owns: owned,
			want: want{fetches: 1, behind: "its agent gave nothing: ask 198.18.0.11:9107: unexpected EOF"},
		},
		{
			name: "the agent refuses (mysqld may run): nothing applied",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{fetchErr: errors.New("refused: mysqld may be running: 198.18.0.11:3306 accepts connections")},
			owns: owned,
			want: want{fetches: 1, behind: "mysqld may be running"},
		},
		{
			name: "semi-sync on, as the old primary's agent published, its fence under way: not asked, the tail was never acknowledged",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole)},
			snap: func(s *cluster.Snapshot) {
				n := s.Nodes["db1"]
				n.ServerRead, n.SemiSync, n.SemiSyncTimeout = true, cluster.SemiSyncOn, time.Hour
				s.Nodes["db1"] = n
			},
			owns:    owned,
			fencing: true,
			want:    want{behind: "not read: never acknowledged: semi-sync was on"},
		},
		{
			name: "semi-sync on but a commit waiting for an acknowledgement (it may fall back): asked",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole), appliedTo: "0-1-7"},
			snap: func(s *cluster.Snapshot) {
				n := s.Nodes["db1"]
				n.ServerRead, n.SemiSync, n.SemiSyncTimeout, n.AwaitsAck = true, cluster.SemiSyncOn, time.Hour, true
				s.Nodes["db1"] = n
			},
			owns:    owned,
			fencing: true,
			want:    want{applied: 5, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 1046},
		},
		{
			name: "semi-sync on with a short timeout (10 s, MariaDB's default): asked",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole), appliedTo: "0-1-7"},
			snap: func(s *cluster.Snapshot) {
				n := s.Nodes["db1"]
				n.ServerRead, n.SemiSync, n.SemiSyncTimeout = true, cluster.SemiSyncOn, 10*time.Second
				s.Nodes["db1"] = n
			},
			owns:    owned,
			fencing: true,
			want:    want{applied: 5, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 1046},
		},
		{
			name: "semi-sync on, the fence over (or a server not running): asked, and not applied",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal: &fakeSalvager{tail: func() SalvageTail {
				tl := tailOf(t, whole)
				tl.SemiSync, tl.SemiSyncAt = cluster.SemiSyncOn, time.Now()
				return tl
			}()},
			snap: func(s *cluster.Snapshot) {
				n := s.Nodes["db1"]
				n.ServerRead, n.SemiSync = true, cluster.SemiSyncOn
				s.Nodes["db1"] = n
			},
			owns: owned,
			want: want{fetches: 1, behind: "never acknowledged: semi-sync was on"},
		},
		{
			name: "semi-sync on in a status whose server was not read, the fence under way: asked",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole), appliedTo: "0-1-7"},
			snap: func(s *cluster.Snapshot) {
				n := s.Nodes["db1"]
				n.ServerRead, n.SemiSync = false, cluster.SemiSyncOn
				s.Nodes["db1"] = n
			},
			owns:    owned,
			fencing: true,
			want:    want{applied: 5, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 1046},
		},
		{
			name: "semi-sync was on: the tail was never acknowledged, not applied",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal: &fakeSalvager{tail: func() SalvageTail {
				tl := tailOf(t, whole)
				tl.SemiSync, tl.SemiSyncAt = cluster.SemiSyncOn, time.Now()
				return tl
			}()},
			owns: owned,
			want: want{fetches: 1, behind: "never acknowledged: semi-sync was on"},
		},
		{
			name: "semi-sync fallen back to asynchronous: applied (acknowledged writes may be there)",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal: &fakeSalvager{tail: func() SalvageTail {
				tl := tailOf(t, whole)
				tl.SemiSync = cluster.SemiSyncAsync
				return tl
			}(), appliedTo: "0-1-7"},
			owns: owned,
			want: want{applied: 5, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000002", endPos: 1046},
		},
		{
			name: "the candidate fails while applying: refused, and the refusal names it",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole), appliedTo: "0-1-4", candidateDies: true, applyErr: errors.New("mariadb: ERROR 2013: Lost connection to server during query")},
			owns: owned,
			want: want{applies: 1, fetches: 1, refuse: "candidate db2 failed while 5 transactions", refusalish: true, behind: "candidate db2 failed"},
		},
		{
			name: "the apply's session abandoned, its end not seen: refused, whatever the candidate reads now",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal: &fakeSalvager{tail: tailOf(t, whole), appliedTo: "0-1-4",
				applyErr: fmt.Errorf("statements 3 of 9: did not finish in time (%w), and %w", context.DeadlineExceeded, replication.ErrSessionNotEnded)},
			owns: owned,
			want: want{applies: 1, fetches: 1, refuse: "its end not seen", refusalish: true, behind: "its end not seen"},
		},
		{
			name: "the apply stops on a statement Baton's account may not run: the prefix stays applied, the rest is said",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole), appliedTo: "0-1-3", applyErr: errors.New("mariadb: ERROR 1142 (42000) at line 73: CREATE command denied")},
			owns: owned,
			want: want{applied: 1, applies: 1, fetches: 1, first: "0-1-3", file: "mysql-bin.000001", pos: 782, endFile: "mysql-bin.000001", endPos: 1033,
				behind: "4 of the 5 read (0-1-4 to 0-1-7): the apply stopped: mariadb: ERROR 1142"},
		},
		{
			name: "this flow lost its intent (a stall, a new coordinator): nothing applied, the flow ends",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole)},
			owns: func(context.Context) error { return fmt.Errorf("holds intent: %w", cluster.ErrConflict) },
			want: want{fetches: 1, refuse: "no longer owns its intent", behind: "not applied"},
		},
		{
			name: "no way to check the intent (a zero value): nothing applied",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole)},
			want: want{fetches: 1, behind: "cannot check that it still owns its intent"},
		},
		{
			name: "the candidate's position unknown: nobody asked",
			cand: &salvageServer{executed: "0-1-2", readOnly: true, readErr: errors.New("i/o timeout")},
			sal:  &fakeSalvager{tail: tailOf(t, whole)},
			owns: owned,
			want: want{behind: "its position is unknown"},
		},
		{
			name: "the candidate moved past the print (it has 0-1-4): refused as a repeat, nothing applied",
			cand: &salvageServer{executed: "0-1-4", readOnly: true},
			sal:  &fakeSalvager{tail: tailOf(t, whole)},
			owns: owned,
			want: want{fetches: 1, behind: "does not come after"},
		},
		{
			name: "the print starts after the candidate (purged binary logs): refused as a gap",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal: &fakeSalvager{tail: func() SalvageTail {
				tl := tailOf(t, whole)
				tl.GTIDList = "0-1-2,0-3-9"
				return tl
			}()},
			owns: owned,
			want: want{fetches: 1, behind: "lacks"},
		},
		{
			name: "an answer whose list is not its script: nothing applied",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal: &fakeSalvager{tail: func() SalvageTail {
				tl := tailOf(t, whole)
				tl.Txns = tl.Txns[:2]
				return tl
			}()},
			owns: owned,
			want: want{fetches: 1, behind: "lists 2 transactions, its script holds 5"},
		},
		{
			name: "a writable candidate: nothing applied to it",
			cand: &salvageServer{executed: "0-1-2"},
			sal:  &fakeSalvager{tail: tailOf(t, whole)},
			owns: owned,
			want: want{behind: "writable before the commit"},
		},
		{
			name: "nothing after the position: nothing to apply, nothing left",
			cand: &salvageServer{executed: "0-1-2", readOnly: true},
			sal:  &fakeSalvager{tail: SalvageTail{Safe: "mysqld is not running"}},
			owns: owned,
			want: want{fetches: 1},
		},
		{
			name:   "salvage off: the step says so, no record",
			cand:   &salvageServer{executed: "0-1-2", readOnly: true},
			noSalv: true,
			owns:   owned,
			wantOut: func(t *testing.T, _ *fakeSalvager, out salvageOutcome) {
				if out.rec != nil || out.err != nil || !strings.Contains(out.note, "off") {
					t.Errorf("salvage off: %+v", out)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s Salvager
			if !tc.noSalv {
				tc.sal.cand = tc.cand
				s = tc.sal
			}
			f := salvageFlow(tc.cand, s)
			if tc.snap != nil {
				tc.snap(&f.snap)
			}
			out := f.salvage(t.Context(), salvageRun{candidate: "db2", waitFence: func() bool { return tc.fenced },
				fencing: func() bool { return tc.fencing }, owns: tc.owns})
			if tc.wantOut != nil {
				tc.wantOut(t, tc.sal, out)
			}
			if tc.noSalv {
				return
			}
			w := tc.want
			if out.rec == nil {
				t.Fatalf("no record: %+v", out)
			}
			r := *out.rec
			if r.Applied != w.applied || tc.sal.applies != w.applies || len(tc.sal.queries) != w.fetches {
				t.Errorf("applied %d (%d applies, %d fetches), want %d (%d, %d); left behind %q", r.Applied, tc.sal.applies, len(tc.sal.queries),
					w.applied, w.applies, w.fetches, r.LeftBehind)
			}
			if w.first != "" && (r.First != w.first || r.File != w.file || r.Pos != w.pos || r.EndFile != w.endFile || r.EndPos != w.endPos) {
				t.Errorf("record %+v, want %s from %s:%d to %s:%d", r, w.first, w.file, w.pos, w.endFile, w.endPos)
			}
			switch {
			case w.behind == "" && (r.LeftBehind != "" || out.err != nil):
				t.Errorf("left behind %q (%v), want nothing", r.LeftBehind, out.err)
			case w.behind != "" && (!strings.Contains(r.LeftBehind, w.behind) || out.err == nil):
				t.Errorf("left behind %q (%v), want it to say %q", r.LeftBehind, out.err, w.behind)
			}
			switch {
			case w.refuse == "" && out.refuse != nil:
				t.Errorf("refused: %v", out.refuse)
			case w.refuse != "" && (out.refuse == nil || !strings.Contains(out.refuse.Error(), w.refuse)):
				t.Errorf("refusal %v, want it to say %q", out.refuse, w.refuse)
			}
			var r2 *refusal
			if w.refusalish != errors.As(out.refuse, &r2) {
				t.Errorf("refusal %v: a *refusal %v, want %v", out.refuse, !w.refusalish, w.refusalish)
			}
		})
	}
}

// TestSalvageDeadline: an agent that never answers (frozen, its host cut off after
// the connection was made) holds the failover no longer than the salvage timeout.
func TestSalvageDeadline(t *testing.T) {
	cand := &salvageServer{executed: "0-1-2", readOnly: true}
	sal := &fakeSalvager{block: true, cand: cand}
	f := salvageFlow(cand, sal)
	f.c.cfg.SalvageTimeout = 400 * time.Millisecond
	start := time.Now()
	out := f.salvage(t.Context(), salvageRun{candidate: "db2", waitFence: func() bool { return false }, owns: owned})
	took := time.Since(start)
	if took > f.c.cfg.SalvageTimeout {
		t.Errorf("the step took %s, over its %s", took, f.c.cfg.SalvageTimeout)
	}
	if out.refuse != nil || out.rec == nil || !strings.Contains(out.rec.LeftBehind, "deadline") || sal.applies != 0 {
		t.Errorf("outcome %+v (%d applies): want nothing applied, the deadline said, the failover going on", out, sal.applies)
	}
}

// TestFailoverSalvagesBeforeTheCommit runs whole failovers on an embedded etcd,
// with fake servers: the salvaged transactions are applied while the old primary
// is still the primary of record and the flow's intent stands (the candidate is
// not writable yet), and the history event says what was salvaged. When the
// candidate fails while applying, the failover is refused: the primary of record
// stays as it was, the intent is withdrawn, and the refusal names the candidate.
func TestFailoverSalvagesBeforeTheCommit(t *testing.T) {
	for _, dies := range []bool{false, true} {
		t.Run(fmt.Sprintf("candidate dies %v", dies), func(t *testing.T) {
			cli, _ := sandboxtest.Etcd(t)
			store := cluster.NewStore(cli, "salv")
			ctx := t.Context()
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			e := concurrency.NewElection(s, store.Keys.Coordinator())
			if err := e.Campaign(ctx, "db2"); err != nil {
				t.Fatal(err)
			}
			g := cluster.CoordinatorGuard(e.Key(), e.Rev())
			if err := store.BootstrapPrimary(ctx, g, cluster.Primary{Node: "db1", Addr: "198.18.0.11:3306", ServerID: 1, Epoch: 1}); err != nil {
				t.Fatal(err)
			}
			snap, err := store.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			base := salvageSnap()
			snap.Nodes = base.Nodes
			cand := &salvageServer{executed: "0-1-2", readOnly: true}
			var during cluster.Snapshot
			sal := &fakeSalvager{tail: tailOf(t, whole), cand: cand, appliedTo: "0-1-7", onApply: func() {
				during, _ = store.Load(ctx)
			}}
			if dies {
				sal.candidateDies, sal.applyErr = true, errors.New("mariadb: ERROR 2013: Lost connection")
			}
			c, err := NewCoordinator(CoordinatorConfig{Node: "db2", Store: store, Cluster: &cluster.Cache{}, Servers: mapPool{"db1": deadServer{}, "db2": cand},
				Policy: policy(), CatchupTimeout: time.Second, PromoteTimeout: 100 * time.Millisecond, Salvage: sal})
			if err != nil {
				t.Fatal(err)
			}
			f := &flow{c: c, s: s, g: g, snap: snap, d: cluster.Decision{Action: cluster.Failover, From: "db1", Candidates: []string{"db2"}, Reason: "test"},
				policy: cluster.Policy{ConfirmLag: time.Second, SwitchoverMaxLag: time.Second}, started: time.Now()}
			ev, err := f.run(ctx)
			if sal.applies != 1 {
				t.Fatalf("%d applies, want 1", sal.applies)
			}
			if during.Primary.Node != "db1" || during.Intent == nil || during.Intent.From != "db1" {
				t.Fatalf("applied with primary %+v, intent %+v: want db1 still the primary of record, the intent standing", during.Primary, during.Intent)
			}
			after, lerr := store.Load(ctx)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if dies {
				var r *refusal
				if !errors.As(err, &r) || !strings.Contains(err.Error(), "candidate db2 failed") {
					t.Fatalf("run = %v, want a refusal naming db2", err)
				}
				if after.Primary.Node != "db1" || after.Intent != nil {
					t.Fatalf("after the refusal: primary %+v, intent %+v; want db1, no intent", after.Primary, after.Intent)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if after.Primary.Node != "db2" || after.Primary.Epoch != 2 {
				t.Fatalf("primary %+v, want db2 at epoch 2", after.Primary)
			}
			if ev.Salvage == nil || ev.Salvage.Applied != 5 || ev.Salvage.File != "mysql-bin.000001" || ev.Salvage.Pos != 782 || ev.Salvage.LeftBehind != "" {
				t.Fatalf("event salvage %+v: want 5 applied from mysql-bin.000001:782, nothing left", ev.Salvage)
			}
			hist, err := store.History(ctx, 1)
			if err != nil || len(hist) != 1 || hist[0].Salvage == nil || hist[0].Salvage.Applied != 5 {
				t.Fatalf("history %+v, %v: want the failover with its salvage", hist, err)
			}
			at := map[string]int{}
			var names []string
			for i, st := range hist[0].Steps {
				at[st.Name] = i
				names = append(names, st.Name)
			}
			if !(at["catchup"] < at["salvage"] && at["salvage"] < at["io_stopped"] && at["io_stopped"] < at["commit"]) {
				t.Errorf("steps %v: want salvage after catchup, before io_stopped and the commit", names)
			}
		})
	}
}
