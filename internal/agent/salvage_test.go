package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/replication"
)

// refusingAddr is a TCP address nothing listens at: a connection is refused.
func refusingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// listeningAddr is a TCP address that accepts connections until the test ends.
func listeningAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// processNamed starts a process whose name is name (a copy of sleep), stopped
// with the test, and returns its pid.
func processNamed(t *testing.T, name string) int {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep program")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prog, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// deadPID is the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true program")
	}
	return cmd.Process.Pid
}

func pidFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mariadbd.pid")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMysqldGone: salvage reads the binary log files of a server only when certain
// that it does not run; anything short of a refusal to connect and a process gone
// is no certainty.
func TestMysqldGone(t *testing.T) {
	refusing, listening := refusingAddr(t), listeningAddr(t)
	type goneCase struct {
		name     string
		addr     string
		pidFile  string
		want     bool
		wantWhy  string
		makePids func() string
	}
	cases := []goneCase{
		{name: "it listens", addr: listening, pidFile: pidFile(t, "1\n"), wantWhy: "accepts connections"},
		{name: "refuses, pid file gone (a clean stop)", addr: refusing, pidFile: filepath.Join(t.TempDir(), "none.pid"), want: true, wantWhy: "no pid file"},
		{name: "refuses, its process gone (killed)", addr: refusing, pidFile: pidFile(t, strconv.Itoa(deadPID(t))+"\n"), want: true, wantWhy: "is gone"},
		{name: "refuses, but mariadbd runs (starting up, or shutting down)", addr: refusing, pidFile: pidFile(t, strconv.Itoa(processNamed(t, "mariadbd"))), wantWhy: "runs"},
		{name: "refuses, the pid is another program's now", addr: refusing, pidFile: pidFile(t, strconv.Itoa(processNamed(t, "postfix"))), want: true, wantWhy: "is now postfix's"},
		{name: "refuses, the pid file unknown (never read from the server)", addr: refusing, wantWhy: "not known"},
		{name: "refuses, a pid file of garbage", addr: refusing, pidFile: pidFile(t, "hello"), wantWhy: "holds"},
		{name: "a socket that is not there (removed at a clean stop), no pid file", addr: "unix:" + filepath.Join(t.TempDir(), "mysqld.sock"),
			pidFile: filepath.Join(t.TempDir(), "none.pid"), want: true},
		{name: "an address that cannot be dialled is no refusal", addr: "unix:" + strings.Repeat("/x", 80), pidFile: filepath.Join(t.TempDir(), "none.pid"), wantWhy: "not a refusal"},
	}
	// A mariadbd that exited and that its parent has not reaped yet (a zombie): its
	// pid still answers kill(0), but it runs no more.
	zombie := processNamed(t, "mariadbd")
	if err := syscall.Kill(zombie, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !exited(zombie) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cases = append(cases, goneCase{name: "refuses, mariadbd exited, not reaped yet", addr: refusing, pidFile: pidFile(t, strconv.Itoa(zombie)), want: true, wantWhy: "has exited"})
	for _, tc := range cases {
		got, why := mysqldGone(t.Context(), tc.addr, tc.pidFile)
		if got != tc.want || !strings.Contains(why, tc.wantWhy) {
			t.Errorf("%s: gone %v (%s), want %v (%q)", tc.name, got, why, tc.want, tc.wantWhy)
		}
	}
}

// The binary logs of replication/testdata/salvage: 0-1-3 .. 0-1-7 whole after
// 0-1-2, then an XA transaction.
const testIndex = "../../replication/testdata/salvage/mysql-bin.index"

const salvageSecret = "salvage-secret-0123456789"

type testNode struct {
	sv       *salvager
	known    cluster.Primary
	writable bool
	readOnly bool
	roErr    error
}

func newTestNode(t *testing.T, addr string, pidFile string) *testNode {
	t.Helper()
	sv := newSalvager(salvageConfig{Cluster: "shop", Node: "db1", Secret: []byte(salvageSecret), LocalAddr: addr})
	sv.files = serverFiles{Datadir: filepath.Dir(testIndex), BinlogIndex: testIndex, PidFile: pidFile, At: time.Now()}
	return &testNode{sv: sv, known: cluster.Primary{Node: "db1", Epoch: 4}, readOnly: true}
}

func (n *testNode) side() salvageSide {
	return salvageSide{
		known:    func() (cluster.Primary, bool) { return n.known, n.writable },
		readOnly: func(context.Context) (bool, error) { return n.readOnly, n.roErr },
	}
}

func needBinlogProgram(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mariadb-binlog"); err != nil {
		t.Skip("mariadb-binlog not installed (mariadb-client)")
	}
}

func query(after string, fenced bool) failover.SalvageQuery {
	return failover.SalvageQuery{Node: "db1", Epoch: 4, Candidate: "db2", After: replication.MustParseGTIDSet(replication.FlavorMariaDB, after),
		Fenced: fenced, Budget: time.Second}
}

// TestSalvageEndpoint: the failed primary's agent reads its binary logs for a
// signed request, only when no server can be writing to them, and the asking side
// gets exactly the whole transactions after the candidate's position.
func TestSalvageEndpoint(t *testing.T) {
	needBinlogProgram(t)
	gone := func(t *testing.T) *testNode {
		return newTestNode(t, refusingAddr(t), filepath.Join(t.TempDir(), "none.pid"))
	}
	running := func(t *testing.T) *testNode { return newTestNode(t, listeningAddr(t), pidFile(t, "1")) }
	cases := []struct {
		name    string
		node    func(t *testing.T) *testNode
		change  func(n *testNode)
		q       failover.SalvageQuery
		wantErr string
		want    int // transactions
	}{
		{name: "mysqld dead: every whole transaction after the position", node: gone, q: query("0-1-2", false), want: 5},
		{name: "mysqld dead, candidate further on", node: gone, q: query("0-1-6", false), want: 1},
		{name: "mysqld dead, nothing after the position", node: gone, q: query("0-1-10", false), want: 0},
		{name: "a position the binary logs never reached: nothing after it", node: gone, q: query("0-1-40", false), want: 0},
		{name: "mysqld runs, not fenced by the flow: refused", node: running, q: query("0-1-2", false), wantErr: "mysqld may be running"},
		{name: "mysqld runs, fenced by the flow and read_only: read", node: running, q: query("0-1-2", true), want: 5},
		{name: "mysqld runs, fenced by the flow but writable again: refused", node: running, change: func(n *testNode) { n.readOnly = false },
			q: query("0-1-2", true), wantErr: "writable now"},
		{name: "mysqld runs, fenced by the flow but unreadable now: refused", node: running, change: func(n *testNode) { n.roErr = errors.New("i/o timeout") },
			q: query("0-1-2", true), wantErr: "cannot be read now"},
		{name: "a newer primary of record known: refused (a stale flow)", node: gone, change: func(n *testNode) { n.known = cluster.Primary{Node: "db3", Epoch: 5} },
			q: query("0-1-2", false), wantErr: "newer primary of record: db3 at epoch 5"},
		{name: "a replica asked at a later epoch than it knows: refused (its binary logs hold the cluster's changes)", node: gone,
			change: func(n *testNode) { n.known = cluster.Primary{Node: "db3", Epoch: 3} },
			q:      query("0-1-2", false), wantErr: "is not the primary of record it knows (db3 at epoch 3), asked at epoch 4"},
		{name: "this node at an older epoch than asked: refused", node: gone, change: func(n *testNode) { n.known = cluster.Primary{Node: "db1", Epoch: 3} },
			q: query("0-1-2", false), wantErr: "asked at epoch 4"},
		{name: "the primary of record never read: refused", node: gone, change: func(n *testNode) { n.known = cluster.Primary{} },
			q: query("0-1-2", false), wantErr: "has not read the primary of record"},
		{name: "this node is the writable primary: refused", node: gone, change: func(n *testNode) { n.writable = true }, q: query("0-1-2", false), wantErr: "is the writable primary"},
		{name: "asked for another node: refused", node: gone, q: func() failover.SalvageQuery { q := query("0-1-2", false); q.Node = "db9"; return q }(),
			wantErr: `answered by "db1"`},
		{name: "files purged past the position: refused", node: gone, change: func(n *testNode) {
			dir := t.TempDir()
			b, _ := os.ReadFile(filepath.Join(filepath.Dir(testIndex), "mysql-bin.000002"))
			_ = os.WriteFile(filepath.Join(dir, "mysql-bin.000002"), b, 0o600)
			_ = os.WriteFile(filepath.Join(dir, "mysql-bin.index"), []byte("./mysql-bin.000002\n"), 0o600)
			n.sv.files.Datadir, n.sv.files.BinlogIndex = dir, filepath.Join(dir, "mysql-bin.index")
		}, q: query("0-1-2", false), wantErr: "starts after"},
		{name: "the binary logs never learned from the server: refused", node: gone, change: func(n *testNode) { n.sv.files = serverFiles{} },
			q: query("0-1-2", false), wantErr: "not known"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.node(t)
			if tc.change != nil {
				tc.change(n)
			}
			srv := httptest.NewServer(n.sv.handler(n.side()))
			defer srv.Close()
			asker := newSalvager(salvageConfig{Cluster: "shop", Node: "db2", Secret: []byte(salvageSecret)})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			tail, err := asker.Fetch(ctx, strings.TrimPrefix(srv.URL, "http://"), tc.q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("fetch: %d transactions, %v; want an error saying %q", len(tail.Txns), err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tail.Txns) != tc.want || tail.Safe == "" {
				t.Fatalf("%d transactions (safe %q), want %d", len(tail.Txns), tail.Safe, tc.want)
			}
			if tc.want > 0 {
				// What the flow then does with it: the script holds exactly the list.
				p := replication.ParseBinlogPrint(tail.Script, tail.Files)
				if len(p.Txns) != tc.want || !tail.HasGTIDList {
					t.Fatalf("the script holds %d transactions (Gtid_list printed %v), want %d", len(p.Txns), tail.HasGTIDList, tc.want)
				}
				if _, err := replication.CheckSalvage(p, tc.q.After); err != nil {
					t.Fatalf("the answer does not continue the candidate: %v", err)
				}
				if err := replication.CheckRelay(tail.Relay, p.Txns); err != nil {
					t.Fatalf("the relay copy is not the script's transactions: %v", err)
				}
			}
		})
	}
}

// TestSalvageRequestsAreSigned: only a request signed with the cluster's secret is
// read, and only once; an answer not signed with it, or to another request, is no
// answer.
func TestSalvageRequestsAreSigned(t *testing.T) {
	needBinlogProgram(t)
	n := newTestNode(t, refusingAddr(t), filepath.Join(t.TempDir(), "none.pid"))
	srv := httptest.NewServer(n.sv.handler(n.side()))
	defer srv.Close()
	agent := strings.TrimPrefix(srv.URL, "http://")
	ctx := t.Context()

	post := func(body []byte, sig string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+SalvagePath, strings.NewReader(string(body)))
		req.Header.Set(SignatureHeader, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	req := SalvageRequest{Cluster: "shop", From: "db2", Node: "db1", Epoch: 4, Candidate: "db2", After: "0-1-2", Flavor: "mariadb",
		Budget: time.Second, Nonce: "n-1", Sent: time.Now().UTC()}
	body, _ := json.Marshal(req)
	if code, _ := post(body, ""); code != http.StatusUnauthorized {
		t.Errorf("unsigned: HTTP %d, want 401", code)
	}
	if code, _ := post(body, sign([]byte("another-secret-0123456789"), salvageRequestMAC, body)); code != http.StatusUnauthorized {
		t.Errorf("signed with another secret: HTTP %d, want 401", code)
	}
	if code, _ := post(body, sign([]byte(salvageSecret), requestMAC, body)); code != http.StatusUnauthorized {
		t.Errorf("signed as a failsafe request: HTTP %d, want 401", code)
	}
	old := req
	old.Nonce, old.Sent = "n-old", time.Now().Add(-10*time.Minute)
	ob, _ := json.Marshal(old)
	if code, _ := post(ob, sign([]byte(salvageSecret), salvageRequestMAC, ob)); code != http.StatusBadRequest {
		t.Errorf("sent 10 minutes ago: HTTP %d, want 400", code)
	}
	code, first := post(body, sign([]byte(salvageSecret), salvageRequestMAC, body))
	if code != http.StatusOK || !strings.Contains(first, "0-1-3") {
		t.Fatalf("signed: HTTP %d %.200s", code, first)
	}
	if code, again := post(body, sign([]byte(salvageSecret), salvageRequestMAC, body)); code != http.StatusOK || !strings.Contains(again, "answered before") || strings.Contains(again, `"script"`) {
		t.Errorf("the same request again (a replay): HTTP %d %.200s; want a refusal, nothing read", code, again)
	}

	// The asking side: a wrong secret's answer, or an answer to another request.
	other := newSalvager(salvageConfig{Cluster: "shop", Node: "db2", Secret: []byte("another-secret-0123456789")})
	if _, err := other.Fetch(ctx, agent, query("0-1-2", false)); err == nil {
		t.Error("a fetch with another secret got an answer")
	}
	replay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(SignatureHeader, sign([]byte(salvageSecret), salvageAnswerMAC, []byte(first)))
		io.WriteString(w, first) // an old answer, signed, for nonce n-1
	}))
	defer replay.Close()
	asker := newSalvager(salvageConfig{Cluster: "shop", Node: "db2", Secret: []byte(salvageSecret)})
	if _, err := asker.Fetch(ctx, strings.TrimPrefix(replay.URL, "http://"), query("0-1-2", false)); err == nil || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("a replayed answer: %v, want it refused for its nonce", err)
	}
	forged := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(SignatureHeader, sign([]byte(salvageSecret), answerMAC, []byte(first)))
		io.WriteString(w, first)
	}))
	defer forged.Close()
	if _, err := asker.Fetch(ctx, strings.TrimPrefix(forged.URL, "http://"), query("0-1-2", false)); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("an answer signed as a failsafe answer: %v, want it refused", err)
	}
}

// TestSalvageAgentDiesMidTransfer: the failed primary's agent dies while its answer
// is on its way; the flow gets an error, never a part of an answer.
func TestSalvageAgentDiesMidTransfer(t *testing.T) {
	needBinlogProgram(t)
	n := newTestNode(t, refusingAddr(t), filepath.Join(t.TempDir(), "none.pid"))
	h := n.sv.handler(n.side())
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		hj, ok := w.(http.Hijacker)
		if !ok {
			t.Error("no hijacker")
			return
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		once.Do(func() {
			// Headers promising the whole answer, half of it, then the connection dies.
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
				SignatureHeader, rec.Header().Get(SignatureHeader), len(body))
			buf.Write(body[:len(body)/2])
			buf.Flush()
		})
		conn.Close()
	}))
	defer srv.Close()
	asker := newSalvager(salvageConfig{Cluster: "shop", Node: "db2", Secret: []byte(salvageSecret)})
	tail, err := asker.Fetch(t.Context(), strings.TrimPrefix(srv.URL, "http://"), query("0-1-2", false))
	if err == nil || len(tail.Script) != 0 || len(tail.Txns) != 0 {
		t.Fatalf("fetch: %d transactions, %v; want an error and nothing", len(tail.Txns), err)
	}
}

// TestSalvageNoteStatus: the semi-sync state reported is the one of the latest
// status in which the server was read, not the unknown one of a dead server.
func TestSalvageNoteStatus(t *testing.T) {
	sv := newSalvager(salvageConfig{Cluster: "shop", Node: "db1", Secret: []byte(salvageSecret)})
	at := time.Now()
	sv.noteStatus(cluster.NodeStatus{ServerRead: true, SemiSync: cluster.SemiSyncOn, At: at})
	sv.noteStatus(cluster.NodeStatus{ServerRead: false, At: at.Add(time.Second)})
	if sv.semi != cluster.SemiSyncOn || !sv.semiAt.Equal(at) {
		t.Fatalf("semi-sync %q at %v, want on at %v", sv.semi, sv.semiAt, at)
	}
}
