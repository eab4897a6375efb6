package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

var errEtcdDown = errors.New("context deadline exceeded")

func TestAnswerFor(t *testing.T) {
	req := FailsafeRequest{Cluster: "main", From: "db1", Epoch: 4, Nonce: "n1"}
	known := cluster.Primary{Node: "db1", Epoch: 4}
	cases := []struct {
		name     string
		req      FailsafeRequest
		known    cluster.Primary
		writable bool
		etcdErr  error
		holdOff  time.Duration
		confirm  bool
		etcdUp   bool
		reason   string
	}{
		{name: "etcd unreachable, same primary", req: req, known: known, etcdErr: errEtcdDown, holdOff: 3 * time.Second, confirm: true, reason: "unreachable from db2"},
		{name: "etcd unreachable, this node saw an older epoch", req: req, known: cluster.Primary{Node: "db3", Epoch: 3}, etcdErr: errEtcdDown, holdOff: time.Second, confirm: true},
		{name: "etcd unreachable, this node never read etcd", req: req, etcdErr: errEtcdDown, holdOff: time.Second, confirm: true},
		{name: "etcd reachable", req: req, known: known, holdOff: time.Second, etcdUp: true, reason: "etcd is reachable from db2"},
		{name: "a newer epoch is known", req: req, known: cluster.Primary{Node: "db3", Epoch: 5}, etcdErr: errEtcdDown, holdOff: time.Second, reason: "newer primary of record: db3 at epoch 5"},
		{name: "another primary at the same epoch", req: req, known: cluster.Primary{Node: "db3", Epoch: 4}, etcdErr: errEtcdDown, holdOff: time.Second, reason: "db3 at epoch 4"},
		{name: "this node is the writable primary", req: req, known: known, writable: true, etcdErr: errEtcdDown, holdOff: time.Second, reason: "itself the writable primary"},
		{name: "wrong cluster", req: FailsafeRequest{Cluster: "other", From: "db1", Epoch: 4}, known: known, etcdErr: errEtcdDown, holdOff: time.Second, reason: `cluster "other"`},
		{name: "asked by itself", req: FailsafeRequest{Cluster: "main", From: "db2", Epoch: 4}, known: known, etcdErr: errEtcdDown, holdOff: time.Second, reason: "not a peer"},
		{name: "zero request", req: FailsafeRequest{}, known: known, etcdErr: errEtcdDown, holdOff: time.Second},
		{name: "epoch zero", req: FailsafeRequest{Cluster: "main", From: "db1"}, etcdErr: errEtcdDown, holdOff: time.Second, reason: "epoch 0"},
		{name: "no hold-off to promise", req: req, known: known, etcdErr: errEtcdDown, reason: "no hold-off"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := answerFor(c.req, "main", "db2", c.known, c.writable, c.etcdErr, c.holdOff)
			if a.Confirm != c.confirm || a.EtcdReachable != c.etcdUp {
				t.Fatalf("confirm %v, etcd reachable %v (%s); want %v, %v", a.Confirm, a.EtcdReachable, a.Reason, c.confirm, c.etcdUp)
			}
			if c.reason != "" && !strings.Contains(a.Reason, c.reason) {
				t.Fatalf("reason %q; want it to contain %q", a.Reason, c.reason)
			}
			if a.Confirm && a.HoldOff != c.holdOff {
				t.Fatalf("hold-off %s; want %s", a.HoldOff, c.holdOff)
			}
			if !a.Confirm && a.HoldOff != 0 {
				t.Fatalf("a refusal promises a hold-off of %s", a.HoldOff)
			}
			if a.Nonce != c.req.Nonce || a.Node != "db2" || a.Cluster != "main" {
				t.Fatalf("answer not addressed to the request: %+v", a)
			}
		})
	}
}

func TestJudgeFailsafe(t *testing.T) {
	p2, p3 := failsafePeer{Node: "db2", Agent: "10.0.0.2:9107"}, failsafePeer{Node: "db3", Agent: "10.0.0.3:9107"}
	yesFor := func(p failsafePeer, holdOff time.Duration) peerAnswer {
		return peerAnswer{Peer: p, Answer: &FailsafeAnswer{Node: p.Node, Confirm: true, HoldOff: holdOff, Reason: "etcd unreachable"}}
	}
	yes := func(p failsafePeer) peerAnswer { return yesFor(p, 3*time.Second) }
	const margin = time.Second
	cases := []struct {
		name    string
		peers   []failsafePeer
		answers []peerAnswer
		keep    bool
		holdOff time.Duration
		note    string
	}{
		{name: "all confirm", peers: []failsafePeer{p2, p3}, answers: []peerAnswer{yes(p2), yes(p3)}, keep: true, holdOff: 3 * time.Second, note: "all 2 peers confirm"},
		// Hole 5: nodes with different settings promise different hold-offs; the
		// primary relies on the shortest.
		{name: "the earliest hold-off counts", peers: []failsafePeer{p2, p3}, answers: []peerAnswer{yes(p2), yesFor(p3, 2*time.Second)}, keep: true, holdOff: 2 * time.Second, note: "all 2 peers confirm"},
		{name: "the earliest hold-off counts, either order", peers: []failsafePeer{p2, p3}, answers: []peerAnswer{yesFor(p2, 2500*time.Millisecond), yesFor(p3, 10*time.Second)}, keep: true, holdOff: 2500 * time.Millisecond},
		{name: "a yes without a hold-off is no promise", peers: []failsafePeer{p2, p3}, answers: []peerAnswer{yes(p2), yesFor(p3, 0)}, note: "db3: confirms with no hold-off"},
		{name: "a hold-off no longer than the fence margin keeps nothing", peers: []failsafePeer{p2}, answers: []peerAnswer{yesFor(p2, margin)}, note: "db2: hold-off 1s is not longer than the fence margin"},
		{name: "a negative hold-off", peers: []failsafePeer{p2}, answers: []peerAnswer{yesFor(p2, -time.Second)}, note: "db2: confirms with no hold-off"},
		{name: "no peers", note: "no peer known"},
		{name: "no answers at all", peers: []failsafePeer{p2, p3}, note: "db2: not asked"},
		{name: "one did not answer", peers: []failsafePeer{p2, p3}, answers: []peerAnswer{yes(p2), {Peer: p3, Err: errors.New("connection refused")}}, note: "db3: no answer: connection refused"},
		{name: "one reaches etcd", peers: []failsafePeer{p2, p3}, answers: []peerAnswer{yes(p2), {Peer: p3, Answer: &FailsafeAnswer{Node: "db3", EtcdReachable: true, Reason: "etcd is reachable from db3"}}}, note: "db3: etcd is reachable"},
		{name: "a zero answer", peers: []failsafePeer{p2}, answers: []peerAnswer{{Peer: p2, Answer: &FailsafeAnswer{}}}},
		{name: "an empty slot", peers: []failsafePeer{p2}, answers: []peerAnswer{{Peer: p2}}, note: "db2: no answer"},
		{name: "answers from others do not count", peers: []failsafePeer{p2, p3}, answers: []peerAnswer{yes(p2), yes(failsafePeer{Node: "db9"})}, note: "db3: not asked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keep, holdOff, note := judgeFailsafe(c.peers, c.answers, margin)
			if keep != c.keep || !strings.Contains(note, c.note) {
				t.Fatalf("keep %v, note %q; want %v, %q", keep, note, c.keep, c.note)
			}
			if keep && holdOff != c.holdOff {
				t.Fatalf("hold-off relied on %s; want %s", holdOff, c.holdOff)
			}
			if !keep && holdOff != 0 {
				t.Fatalf("no keep, yet a hold-off of %s", holdOff)
			}
		})
	}
}

func TestFailsafePeers(t *testing.T) {
	snap := cluster.Snapshot{View: cluster.View{Members: map[string]cluster.Member{
		"db1": {Node: "db1", Agent: "a1:9107"}, "db2": {Node: "db2", Agent: "a2-old:9107"}, "db4": {Node: "db4"},
	}}}
	snap.Nodes = map[string]cluster.NodeStatus{"db2": {Node: "db2", Agent: "a2:9107"}, "db3": {Node: "db3", Agent: "a3:9107"}}
	got := failsafePeers("db1", snap)
	want := []failsafePeer{{"db2", "a2:9107"}, {"db3", "a3:9107"}, {"db4", ""}}
	if len(got) != len(want) {
		t.Fatalf("peers %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("peers %v; want %v", got, want)
		}
	}
	if len(failsafePeers("db1", cluster.Snapshot{})) != 0 {
		t.Fatal("a zero snapshot has peers")
	}
}

func TestReadAnswer(t *testing.T) {
	secret := []byte("0123456789abcdef-secret")
	req := FailsafeRequest{Cluster: "main", From: "db1", Epoch: 2, Nonce: "abc"}
	good := FailsafeAnswer{Cluster: "main", Node: "db2", Nonce: "abc", Confirm: true}
	body := func(a FailsafeAnswer) []byte { b, _ := json.Marshal(a); return b }
	cases := []struct {
		name   string
		status int
		body   []byte
		sig    string
		err    string
	}{
		{name: "good", status: 200, body: body(good), sig: sign(secret, answerMAC, body(good))},
		{name: "wrong secret", status: 200, body: body(good), sig: sign([]byte("another-secret-of-16"), answerMAC, body(good)), err: "not signed"},
		{name: "no signature", status: 200, body: body(good), err: "not signed"},
		{name: "a request's signature", status: 200, body: body(good), sig: sign(secret, requestMAC, body(good)), err: "not signed"},
		{name: "tampered body", status: 200, body: body(FailsafeAnswer{Cluster: "main", Node: "db2", Nonce: "abc", Confirm: true, Reason: "x"}), sig: sign(secret, answerMAC, body(good)), err: "not signed"},
		{name: "another nonce (replay)", status: 200, body: body(FailsafeAnswer{Cluster: "main", Node: "db2", Nonce: "old", Confirm: true}), sig: sign(secret, answerMAC, body(FailsafeAnswer{Cluster: "main", Node: "db2", Nonce: "old", Confirm: true})), err: "nonce"},
		{name: "another node", status: 200, body: body(FailsafeAnswer{Cluster: "main", Node: "db3", Nonce: "abc", Confirm: true}), sig: sign(secret, answerMAC, body(FailsafeAnswer{Cluster: "main", Node: "db3", Nonce: "abc", Confirm: true})), err: `answered by "db3"`},
		{name: "HTTP 401", status: 401, body: []byte("unauthorized: not signed\n"), err: "HTTP 401: unauthorized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := readAnswer(secret, req, "db2", c.status, c.body, c.sig)
			if c.err == "" {
				if err != nil || !a.Confirm {
					t.Fatalf("answer %+v, %v; want a confirmation", a, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err %v; want one containing %q", err, c.err)
			}
		})
	}
}

// peerAgent is a failsafe peer served over HTTP whose etcd client points at
// endpoint (a real etcd, or a socket nobody serves).
type peerAgent struct {
	fs    *failsafe
	srv   *httptest.Server
	known cluster.Primary

	mu       sync.Mutex
	cancel   bool          // its session's work was ended
	stopping time.Duration // how long its work takes to stop
	stopped  time.Time     // when its work last stopped
}

func (p *peerAgent) interrupted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cancel
}

// interrupt is the session's Interrupt as the peer's work answers it: stopped after
// p.stopping, or an error if ctx ends first.
func (p *peerAgent) interrupt(ctx context.Context) error {
	p.mu.Lock()
	p.cancel = true
	d := p.stopping
	p.mu.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return fmt.Errorf("session work still running: coordinator: %w", ctx.Err())
	}
	p.mu.Lock()
	p.stopped = time.Now()
	p.mu.Unlock()
	return nil
}

func peerConfig(t *testing.T, node, secret string) failsafeConfig {
	return failsafeConfig{Cluster: "main", Node: node, Secret: []byte(secret), SessionTTL: 3 * time.Second,
		FenceMargin: time.Second, Interval: 500 * time.Millisecond, EtcdTimeout: 300 * time.Millisecond, CheckTimeout: 800 * time.Millisecond,
		StateDir: t.TempDir(), Log: zap.NewNop()}
}

func newPeerAgent(t *testing.T, node, secret string, cli *clientv3.Client) *peerAgent {
	t.Helper()
	return newPeerAgentWith(t, peerConfig(t, node, secret), cli)
}

func newPeerAgentWith(t *testing.T, cfg failsafeConfig, cli *clientv3.Client) *peerAgent {
	t.Helper()
	p := &peerAgent{known: cluster.Primary{Node: "db1", Epoch: 7}}
	p.fs = newFailsafe(cfg)
	p.fs.attach(p.interrupt)
	p.srv = httptest.NewServer(p.fs.handler(failsafePeerSide{
		reachEtcd: func(ctx context.Context) error { _, err := cli.Get(ctx, "/baton/main/primary"); return err },
		known:     func() (cluster.Primary, bool) { return p.known, false },
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *peerAgent) addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

// deadEtcd is a client of an etcd that does not exist (a unix socket nobody
// serves): every call fails, as with every member stopped.
func deadEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + filepath.Join(t.TempDir(), "none.sock")},
		DialTimeout: 200 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestFailsafeCheck runs the check end to end over HTTP, with peers whose etcd is a
// real one (reachable) or none at all.
func TestFailsafeCheck(t *testing.T) {
	const secret = "the-cluster-peer-secret"
	live, _ := sandboxtest.Etcd(t)
	primary := newFailsafe(failsafeConfig{Cluster: "main", Node: "db1", Secret: []byte(secret), SessionTTL: 3 * time.Second,
		FenceMargin: time.Second, Interval: 500 * time.Millisecond, EtcdTimeout: 300 * time.Millisecond, CheckTimeout: 800 * time.Millisecond, Log: zap.NewNop()})
	ctx := context.Background()
	peersOf := func(ps ...*peerAgent) []failsafePeer {
		var out []failsafePeer
		for i, p := range ps {
			out = append(out, failsafePeer{Node: []string{"db2", "db3"}[i], Agent: p.addr()})
		}
		return out
	}

	t.Run("every peer cut from etcd: kept, peers hold off", func(t *testing.T) {
		db2, db3 := newPeerAgent(t, "db2", secret, deadEtcd(t)), newPeerAgent(t, "db3", secret, deadEtcd(t))
		start := time.Now()
		keep, note, _ := primary.confirm(ctx, peersOf(db2, db3), 7)
		if !keep {
			t.Fatalf("not kept: %s", note)
		}
		until := primary.validUntil()
		if d := until.Sub(start); d > 2*time.Second+50*time.Millisecond || d < 1500*time.Millisecond {
			t.Fatalf("kept for %s after asking; want session_ttl - fence_margin (2s)", d)
		}
		for _, p := range []*peerAgent{db2, db3} {
			if p.fs.heldOff() == "" || !p.interrupted() {
				t.Fatalf("%s answered yes but does not hold off (held off %q, session ended %v)", p.fs.cfg.Node, p.fs.heldOff(), p.interrupted())
			}
			if v := p.fs.view(); v.State != FailsafeHeldOff {
				t.Fatalf("%s failsafe state %q; want %q", p.fs.cfg.Node, v.State, FailsafeHeldOff)
			}
		}
		if !primary.startKeeping(42) {
			t.Fatal("startKeeping refused with a fresh confirmation")
		}
		if kept, lease := primary.kept(); !kept || lease != 42 {
			t.Fatalf("kept %v on lease %d; want kept on 42", kept, lease)
		}
		primary.stopKeeping(FailsafeFenced, "test")
		if kept, _ := primary.kept(); kept || primary.startKeeping(42) {
			t.Fatal("still kept after stopKeeping")
		}
	})

	// Hole 5: a peer configured with a shorter session_ttl promises a shorter
	// hold-off; the primary keeps only until the earliest promise (from its asking)
	// less the fence margin, so that its fence is over before that promise ends.
	t.Run("peers promise different hold-offs: kept until the earliest, less the margin", func(t *testing.T) {
		db2, db3 := newPeerAgent(t, "db2", secret, deadEtcd(t)), newPeerAgent(t, "db3", secret, deadEtcd(t))
		db3.fs.cfg.SessionTTL = 2 * time.Second
		primary.stopKeeping(FailsafeStandby, "")
		start := time.Now()
		keep, note, _ := primary.confirm(ctx, peersOf(db2, db3), 7)
		if !keep {
			t.Fatalf("not kept: %s", note)
		}
		if d := primary.validUntil().Sub(start); d > time.Second+50*time.Millisecond || d < 500*time.Millisecond {
			t.Fatalf("kept for %s after asking; want db3's hold-off (2s) less the fence margin (1s)", d)
		}
	})

	t.Run("one peer reaches etcd: fence", func(t *testing.T) {
		db2, db3 := newPeerAgent(t, "db2", secret, deadEtcd(t)), newPeerAgent(t, "db3", secret, live)
		keep, note, _ := primary.confirm(ctx, peersOf(db2, db3), 7)
		if keep || !strings.Contains(note, "db3: etcd is reachable") {
			t.Fatalf("kept %v (%s); want a fence because db3 reaches etcd", keep, note)
		}
		if db3.fs.heldOff() != "" || db3.interrupted() {
			t.Fatal("db3 reached etcd but holds off")
		}
	})

	t.Run("a peer with another secret: fence, and it changes nothing there", func(t *testing.T) {
		db2, db3 := newPeerAgent(t, "db2", secret, deadEtcd(t)), newPeerAgent(t, "db3", "another-secret-entirely", deadEtcd(t))
		keep, note, _ := primary.confirm(ctx, peersOf(db2, db3), 7)
		if keep || !strings.Contains(note, "db3: no answer: HTTP 401") {
			t.Fatalf("kept %v (%s); want a fence because db3 refused the signature", keep, note)
		}
		if db3.fs.heldOff() != "" || db3.interrupted() {
			t.Fatal("an unauthenticated request made db3 hold off")
		}
	})

	t.Run("a peer knows a newer primary: fence", func(t *testing.T) {
		db2, db3 := newPeerAgent(t, "db2", secret, deadEtcd(t)), newPeerAgent(t, "db3", secret, deadEtcd(t))
		db3.known = cluster.Primary{Node: "db2", Epoch: 8}
		keep, note, _ := primary.confirm(ctx, peersOf(db2, db3), 7)
		if keep || !strings.Contains(note, "newer primary") {
			t.Fatalf("kept %v (%s); want a fence", keep, note)
		}
	})

	t.Run("a peer whose agent is down or unknown: fence", func(t *testing.T) {
		db2 := newPeerAgent(t, "db2", secret, deadEtcd(t))
		dead := httptest.NewServer(http.NotFoundHandler())
		addr := strings.TrimPrefix(dead.URL, "http://")
		dead.Close()
		keep, note, _ := primary.confirm(ctx, []failsafePeer{{Node: "db2", Agent: db2.addr()}, {Node: "db3", Agent: addr}}, 7)
		if keep || !strings.Contains(note, "db3: no answer") {
			t.Fatalf("kept %v (%s); want a fence", keep, note)
		}
		keep, note, _ = primary.confirm(ctx, []failsafePeer{{Node: "db2", Agent: db2.addr()}, {Node: "db3"}}, 7)
		if keep || !strings.Contains(note, "not known") {
			t.Fatalf("kept %v (%s); want a fence", keep, note)
		}
	})
}

func TestFailsafeHandlerRefusals(t *testing.T) {
	const secret = "the-cluster-peer-secret"
	p := newPeerAgent(t, "db2", secret, deadEtcd(t))
	post := func(body []byte, sig string) int {
		req, _ := http.NewRequest(http.MethodPost, p.srv.URL+FailsafePath, strings.NewReader(string(body)))
		req.Header.Set(SignatureHeader, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	old, _ := json.Marshal(FailsafeRequest{Cluster: "main", From: "db1", Epoch: 7, Nonce: "n", Sent: time.Now().Add(-time.Hour)})
	if code := post(old, sign([]byte(secret), requestMAC, old)); code != http.StatusBadRequest {
		t.Fatalf("a request sent an hour ago: HTTP %d; want 400", code)
	}
	fresh, _ := json.Marshal(FailsafeRequest{Cluster: "main", From: "db1", Epoch: 7, Nonce: "n", Sent: time.Now()})
	if code := post(fresh, ""); code != http.StatusUnauthorized {
		t.Fatalf("an unsigned request: HTTP %d; want 401", code)
	}
	if code := post(fresh, sign([]byte(secret), answerMAC, fresh)); code != http.StatusUnauthorized {
		t.Fatalf("a request signed as an answer: HTTP %d; want 401", code)
	}
	if p.fs.heldOff() != "" || p.interrupted() {
		t.Fatal("a refused request made the node hold off")
	}
	resp, err := http.Get(p.srv.URL + FailsafePath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: HTTP %d; want 405", resp.StatusCode)
	}
	if code := post(fresh, sign([]byte(secret), requestMAC, fresh)); code != http.StatusOK || p.fs.heldOff() == "" {
		t.Fatalf("a good request: HTTP %d, held off %q; want 200 and a hold-off", code, p.fs.heldOff())
	}
}

func TestFailsafeHoldoffLeft(t *testing.T) {
	f := newFailsafe(failsafeConfig{Cluster: "main", Node: "db2", Secret: []byte("0123456789abcdef"), SessionTTL: 3 * time.Second, FenceMargin: time.Second})
	if left, why := f.holdoffLeft(); left != 0 || why != "" {
		t.Fatalf("held off for %s (%s) with no promise", left, why)
	}
	start := time.Now()
	f.notePromise(start.Add(300*time.Millisecond), "db1")
	if left, why := f.holdoffLeft(); left <= 200*time.Millisecond || left > 300*time.Millisecond || !strings.Contains(why, "hold-off") {
		t.Fatalf("held off for %s (%q) after a promise of 300ms", left, why)
	}
	time.Sleep(time.Until(start.Add(300 * time.Millisecond)))
	if left, _ := f.holdoffLeft(); left != 0 || f.heldOff() != "" {
		t.Fatal("still held off after the hold-off passed")
	}
	var off *failsafe
	if off.on() || off.heldOff() != "" || off.view().State != FailsafeOff {
		t.Fatal("a nil failsafe is not off")
	}
	if kept, _ := off.kept(); kept {
		t.Fatal("a nil failsafe keeps a primary")
	}
}

// The keeper renews the old lease just as the session loop makes a session on it
// again (etcd is back for both at once): a renewal or a confirmation recorded after
// the session took over must not bring "primary kept" back. It did (TestFailsafe in
// make test: /status said the last confirmation ran out, instead of standby, after
// etcd came back).
func TestFailsafeKeeperLateAfterResume(t *testing.T) {
	f := newFailsafe(failsafeConfig{Cluster: "main", Node: "db1", Secret: []byte("0123456789abcdef"), SessionTTL: 3 * time.Second, FenceMargin: time.Second})
	f.mu.Lock()
	f.keptUntil = time.Now().Add(2 * time.Second) // a confirmation came in
	f.mu.Unlock()
	if !f.startKeeping(7) {
		t.Fatal("not kept with a confirmation in force")
	}
	f.renewed(time.Now(), "etcd answers again")
	if v := f.view(); v.State != FailsafeKept {
		t.Fatalf("kept and renewed: %+v", v)
	}
	f.resumed() // the session loop: a session again
	f.renewed(time.Now(), "etcd answers again: lease renewed, the session resumes")
	f.stillKept("primary kept, all 2 peers confirm etcd is unreachable")
	if v := f.view(); v.State != FailsafeStandby {
		t.Fatalf("after the session took over: %+v; want standby", v)
	}
	if kept, _ := f.kept(); kept {
		t.Fatal("a late renewal kept the primary without etcd again")
	}
}

// keptNode is the reconciler as failsafe mode sees it: a writable primary on any
// lease whose peers are peers, and whose fences are recorded.
type keptNode struct {
	peers []failsafePeer
}

func (n *keptNode) WritablePrimary(clientv3.LeaseID) bool { return true }
func (n *keptNode) Current() (cluster.NodeStatus, cluster.Snapshot) {
	var snap cluster.Snapshot
	snap.Primary = cluster.Primary{Node: "db1", Epoch: 7}
	snap.Nodes = map[string]cluster.NodeStatus{}
	for _, p := range n.peers {
		snap.Nodes[p.Node] = cluster.NodeStatus{Node: p.Node, Agent: p.Agent}
	}
	return cluster.NodeStatus{}, snap
}
func (n *keptNode) FenceLocal(context.Context, string) {}

// The keep window is a promise's end less the fence margin: the fence must start
// then, not once a check still under way gives up. A peer slow to answer (its
// answer would come after the window) kept the primary writable past it, by a
// renewal's and a check's time.
func TestKeeperFencesWhenTheWindowEnds(t *testing.T) {
	const secret = "the-cluster-peer-secret"
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	a := testAgent(t, minimalYAML)
	a.fs = newFailsafe(failsafeConfig{Cluster: "main", Node: "db1", Secret: []byte(secret), SessionTTL: 3 * time.Second,
		FenceMargin: time.Second, Interval: 500 * time.Millisecond, EtcdTimeout: 300 * time.Millisecond, CheckTimeout: 800 * time.Millisecond, Log: zap.NewNop()})
	f := a.fs
	f.mu.Lock()
	f.keptUntil = time.Now().Add(400 * time.Millisecond) // a confirmation came in
	f.mu.Unlock()
	if !f.startKeeping(7) {
		t.Fatal("not kept with a confirmation in force")
	}
	until := f.validUntil()
	node := &keptNode{peers: []failsafePeer{{Node: "db2", Agent: strings.TrimPrefix(slow.URL, "http://")}}}
	err := a.keepPrimary(context.Background(), deadEtcd(t), 7, node)
	if err == nil {
		t.Fatal("the keeper returned without a fence")
	}
	if late := time.Since(until); late > 150*time.Millisecond {
		t.Fatalf("fenced %s after the keep window ended (%v); want at its end", late.Round(time.Millisecond), err)
	}
	if v := f.view(); v.State != FailsafeFenced {
		t.Fatalf("failsafe state %q after the fence; want %q", v.State, FailsafeFenced)
	}
}

// askOnce sends one signed check to p and returns its answer and when it came.
func askOnce(t *testing.T, p *peerAgent, secret string) (FailsafeAnswer, time.Time) {
	t.Helper()
	asker := newFailsafe(failsafeConfig{Cluster: "main", Node: "db1", Secret: []byte(secret), SessionTTL: 3 * time.Second,
		FenceMargin: time.Second, EtcdTimeout: 300 * time.Millisecond, CheckTimeout: 800 * time.Millisecond, Log: zap.NewNop()})
	req := FailsafeRequest{Cluster: "main", From: "db1", Epoch: 7, Nonce: "n1", Sent: time.Now().UTC()}
	answers := asker.ask(context.Background(), []failsafePeer{{Node: p.fs.cfg.Node, Agent: p.addr()}}, req)
	at := time.Now()
	if answers[0].Err != nil {
		t.Fatalf("no answer: %v", answers[0].Err)
	}
	return *answers[0].Answer, at
}

// Hole 3: a flow in progress when the promise is given. The answer that promises
// must go out only once the node's work has stopped; work that does not stop within
// the check's time makes the answer a no (the promise, recorded, is kept anyway).
func TestFailsafePromiseWaitsForTheWork(t *testing.T) {
	const secret = "the-cluster-peer-secret"
	p := newPeerAgent(t, "db2", secret, deadEtcd(t))
	p.stopping = 200 * time.Millisecond // a flow's step under way
	a, at := askOnce(t, p, secret)
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if !a.Confirm {
		t.Fatalf("no yes: %s", a.Reason)
	}
	if stopped.IsZero() || stopped.After(at) {
		t.Fatalf("the yes came before the work stopped (stopped %v, answered %v)", stopped, at)
	}

	q := newPeerAgent(t, "db3", secret, deadEtcd(t))
	q.stopping = 5 * time.Second // a flow that will not stop in time
	a, _ = askOnce(t, q, secret)
	if a.Confirm || a.HoldOff != 0 || !strings.Contains(a.Reason, "did not stop") {
		t.Fatalf("work that does not stop: confirm %v, hold-off %s (%s); want a no saying so", a.Confirm, a.HoldOff, a.Reason)
	}
	if q.fs.heldOff() == "" {
		t.Fatal("the promise recorded before the work was asked to stop is not held")
	}
}

// A promise that cannot be recorded (no state directory, or one that cannot be
// written) is not given: a restarted agent would forget it.
func TestFailsafePromiseNeedsItsRecord(t *testing.T) {
	const secret = "the-cluster-peer-secret"
	cfg := peerConfig(t, "db2", secret)
	cfg.StateDir = ""
	p := newPeerAgentWith(t, cfg, deadEtcd(t))
	if a, _ := askOnce(t, p, secret); a.Confirm || !strings.Contains(a.Reason, "record") {
		t.Fatalf("no state directory: confirm %v (%s); want a no", a.Confirm, a.Reason)
	}
	cfg = peerConfig(t, "db3", secret)
	cfg.StateDir = filepath.Join(cfg.StateDir, "missing", "dir")
	q := newPeerAgentWith(t, cfg, deadEtcd(t))
	if a, _ := askOnce(t, q, secret); a.Confirm || !strings.Contains(a.Reason, "record") {
		t.Fatalf("state directory missing: confirm %v (%s); want a no", a.Confirm, a.Reason)
	}
	if p.interrupted() || q.interrupted() {
		t.Fatal("work stopped for a promise not given")
	}
}

// Hole 3: the promise lived in memory only, and a restarted agent (its supervisor
// restarts it at once) forgot it and could coordinate a failover while the kept
// primary still relied on it. The agent restarted within the promise holds off for
// what is left of it.
func TestFailsafePromiseOutlivesARestart(t *testing.T) {
	const secret = "the-cluster-peer-secret"
	cfg := peerConfig(t, "db2", secret)
	p := newPeerAgentWith(t, cfg, deadEtcd(t))
	a, at := askOnce(t, p, secret)
	if !a.Confirm {
		t.Fatalf("no yes: %s", a.Reason)
	}
	// The agent restarts: a new failsafe, the same state directory.
	again := newFailsafe(cfg)
	if err := again.restore(); err != nil {
		t.Fatal(err)
	}
	left, why := again.holdoffLeft()
	want := a.HoldOff - time.Since(at)
	if left <= 0 || why == "" || left > a.HoldOff || left < want-300*time.Millisecond {
		t.Fatalf("restarted agent held off for %s (%q); want what is left of the promise, about %s", left, why, want)
	}
	if v := again.view(); v.State != FailsafeHeldOff {
		t.Fatalf("restarted agent's failsafe state %q; want %q", v.State, FailsafeHeldOff)
	}
	// Even with failsafe mode turned off by the restart.
	off := cfg
	off.Secret = nil
	if off := newFailsafe(off); off.restore() != nil || off.heldOff() == "" {
		t.Fatal("a restart with failsafe mode off forgot the promise")
	}
	// Once it has run out, nothing holds the node.
	time.Sleep(left + 50*time.Millisecond)
	late := newFailsafe(cfg)
	if err := late.restore(); err != nil {
		t.Fatal(err)
	}
	if left, why := late.holdoffLeft(); left != 0 {
		t.Fatalf("held off for %s (%s) after the promise ran out", left, why)
	}
}

// A promise record that cannot be read is no reason to act: the agent holds off for
// a whole session_ttl, as if a promise had just been given.
func TestFailsafeUnreadablePromise(t *testing.T) {
	for name, body := range map[string]string{"garbage": "{not json", "zero": "{}", "empty": ""} {
		t.Run(name, func(t *testing.T) {
			cfg := peerConfig(t, "db2", "the-cluster-peer-secret")
			if err := os.WriteFile(filepath.Join(cfg.StateDir, promiseFile), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			f := newFailsafe(cfg)
			if err := f.restore(); err != nil {
				t.Fatal(err)
			}
			if left, _ := f.holdoffLeft(); left < cfg.SessionTTL-100*time.Millisecond || left > cfg.SessionTTL {
				t.Fatalf("held off for %s after an unreadable promise; want session_ttl (%s)", left, cfg.SessionTTL)
			}
		})
	}
}

// An agent whose state directory cannot be made does not start: it could not keep
// a promise across its own restart, nor see one an earlier agent gave.
func TestAgentNeedsItsStateDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, minimalYAML+"state_dir: "+filepath.Join(file, "state")+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), "state_dir") {
		t.Fatalf("run with a state_dir that cannot be made: %v; want an error naming state_dir", err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	b := testAgent(t, minimalYAML+"state_dir: "+dir+"\n")
	if err := b.fs.restore(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state directory made: %v, %v; want mode 0700", st, err)
	}
}

// A signed check recorded on the network and sent again changes nothing: the node
// neither reads etcd nor promises again (its hold-off and its record stay as they
// were), and answers 409. So does a check sent before the agent started, which an
// earlier run may have answered.
func TestFailsafeReplayRefused(t *testing.T) {
	const secret = "the-cluster-peer-secret"
	reads := 0
	cfg := peerConfig(t, "db2", secret)
	p := &peerAgent{known: cluster.Primary{Node: "db1", Epoch: 7}}
	p.fs = newFailsafe(cfg)
	p.fs.attach(p.interrupt)
	p.srv = httptest.NewServer(p.fs.handler(failsafePeerSide{
		reachEtcd: func(context.Context) error { reads++; return errors.New("etcd down") },
		known:     func() (cluster.Primary, bool) { return p.known, false },
	}))
	t.Cleanup(p.srv.Close)
	post := func(body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, p.srv.URL+FailsafePath, bytes.NewReader(body))
		req.Header.Set(SignatureHeader, sign([]byte(secret), requestMAC, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	holdoff := func() time.Time {
		p.fs.mu.Lock()
		defer p.fs.mu.Unlock()
		return p.fs.holdoffUntil
	}
	record := filepath.Join(cfg.StateDir, "failsafe-promise.json")

	// Sent before the agent started, within the clock tolerance: refused.
	early, _ := json.Marshal(FailsafeRequest{Cluster: "main", From: "db1", Epoch: 7, Nonce: "early", Sent: p.fs.started.Add(-time.Second)})
	if code, body := post(early); code != http.StatusConflict || !strings.Contains(body, "before this agent started") {
		t.Fatalf("a check sent before the agent started: HTTP %d %q; want 409", code, body)
	}
	if reads != 0 || p.fs.heldOff() != "" || p.interrupted() {
		t.Fatalf("a check sent before the agent started read etcd (%d) or held the node off", reads)
	}

	fresh, _ := json.Marshal(FailsafeRequest{Cluster: "main", From: "db1", Epoch: 7, Nonce: "n-replayed", Sent: time.Now().UTC()})
	if code, body := post(fresh); code != http.StatusOK || !strings.Contains(body, `"confirm":true`) {
		t.Fatalf("the check itself: HTTP %d %s; want a yes", code, body)
	}
	until := holdoff()
	st, err := os.Stat(record)
	if err != nil || until.IsZero() || reads != 1 {
		t.Fatalf("the yes left no promise (%v, until %v, %d reads)", err, until, reads)
	}
	before, _ := os.ReadFile(record)
	time.Sleep(20 * time.Millisecond) // a second promise would be a later one
	code, body := post(fresh)
	if code != http.StatusConflict || !strings.Contains(body, "answered already") {
		t.Fatalf("the same check again: HTTP %d %q; want 409", code, body)
	}
	after, _ := os.ReadFile(record)
	st2, _ := os.Stat(record)
	if reads != 1 || !holdoff().Equal(until) || !bytes.Equal(before, after) || !st2.ModTime().Equal(st.ModTime()) {
		t.Fatalf("the replay changed something: %d etcd reads, hold-off %v -> %v, record changed %v", reads, until, holdoff(), !bytes.Equal(before, after))
	}
}
