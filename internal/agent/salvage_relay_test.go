package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/replication"
)

// TestSalvageApplyRequests: a candidate's agent reads only a relay apply request
// signed with the cluster's secret, for itself, once; what it refuses it says was
// not started, and so does an agent that has no such path or refuses the request
// unread (the coordinator then applies through a session). An answer that is not
// signed, or not for this request, or an agent's server error, is no answer: the
// coordinator cannot know whether the SQL thread started.
func TestSalvageApplyRequests(t *testing.T) {
	cand := newSalvager(salvageConfig{Cluster: "shop", Node: "db2", Secret: []byte(salvageSecret)}) // no local server
	var intent *cluster.Intent
	srv := httptest.NewServer(cand.applyHandler(func() *cluster.Intent { return intent }))
	defer srv.Close()
	agent := strings.TrimPrefix(srv.URL, "http://")
	asker := newSalvager(salvageConfig{Cluster: "shop", Node: "db3", Secret: []byte(salvageSecret)})
	g := replication.SalvageGuard{BinlogState: "0-1-2", SlavePos: "0-1-2", SlavePosAfter: "0-1-7"}
	tail := failover.SalvageTail{BinlogPrint: replication.BinlogPrint{Txns: []replication.BinlogTxn{{GTID: "0-1-3"}}}, Relay: []byte("\xfebin")}
	ask := func(to failover.SalvageTarget) (RelayAnswer, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return asker.askRelay(ctx, to, tail, g)
	}

	// The peer secret alone does not make a replica apply anything: only during
	// a failover away from another node.
	for _, in := range []*cluster.Intent{nil, {Kind: cluster.FlowSwitchover, From: "db1"}, {Kind: cluster.FlowFailover, From: "db2"}} {
		intent = in
		a, err := ask(failover.SalvageTarget{Node: "db2", Agent: agent})
		if err != nil || a.Started || !strings.Contains(a.Error, "failover") {
			t.Errorf("with intent %+v: %+v, %v; want not started: no failover away from another node", in, a, err)
		}
	}
	intent = &cluster.Intent{Kind: cluster.FlowFailover, From: "db1", Epoch: 4}
	a, err := ask(failover.SalvageTarget{Node: "db2", Agent: agent})
	if err != nil || a.Started || !strings.Contains(a.Error, "no connection to its server") {
		t.Errorf("an agent without its server: %+v, %v; want not started, and why", a, err)
	}
	a, err = ask(failover.SalvageTarget{Node: "db9", Agent: agent})
	if err == nil || a.Started {
		t.Errorf("an answer from another node than asked: %+v, %v; want no answer", a, err)
	}

	post := func(body []byte, sig string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+SalvageApplyPath, strings.NewReader(string(body)))
		req.Header.Set(SignatureHeader, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	req := RelayRequest{Cluster: "shop", From: "db3", Node: "db2", Budget: time.Second, Nonce: "n-1", Sent: time.Now().UTC()}
	body, _ := json.Marshal(req)
	if code := post(body, ""); code != http.StatusUnauthorized {
		t.Errorf("unsigned: HTTP %d, want 401", code)
	}
	if code := post(body, sign([]byte(salvageSecret), salvageRequestMAC, body)); code != http.StatusUnauthorized {
		t.Errorf("signed as a salvage read request: HTTP %d, want 401", code)
	}
	if code := post(body, sign([]byte(salvageSecret), relayRequestMAC, body)); code != http.StatusOK {
		t.Errorf("signed: HTTP %d, want 200", code)
	}

	serve := func(h http.HandlerFunc) failover.SalvageTarget {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return failover.SalvageTarget{Node: "db2", Agent: strings.TrimPrefix(s.URL, "http://")}
	}
	a, err = ask(serve(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	if err != nil || a.Started || !strings.Contains(a.Error, "404") {
		t.Errorf("an agent without the path (an older one): %+v, %v; want not started", a, err)
	}
	if a, err = ask(serve(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })); err == nil {
		t.Errorf("an agent's server error: %+v; want no answer", a)
	}
	if a, err = ask(serve(func(w http.ResponseWriter, r *http.Request) {
		var got RelayRequest
		json.NewDecoder(r.Body).Decode(&got)
		out, _ := json.Marshal(RelayAnswer{Cluster: "shop", Node: "db2", Nonce: got.Nonce, Started: true})
		w.Header().Set(SignatureHeader, sign([]byte(salvageSecret), salvageAnswerMAC, out))
		w.Write(out)
	})); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("an answer signed as a salvage read answer: %+v, %v; want it refused", a, err)
	}
	if a, err = ask(serve(func(w http.ResponseWriter, r *http.Request) {
		out, _ := json.Marshal(RelayAnswer{Cluster: "shop", Node: "db2", Nonce: "n-old", Started: true})
		w.Header().Set(SignatureHeader, sign([]byte(salvageSecret), relayAnswerMAC, out))
		w.Write(out)
	})); err == nil {
		t.Errorf("an answer to another request: %+v; want it refused", a)
	}
}
