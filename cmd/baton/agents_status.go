package main

// `baton status --agents`: when etcd cannot be read (an outage), the cluster as its
// agents see it, from their /status.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/baton-ha/baton/internal/agent"
)

// agentAnswer is one agent's /status, or why there is none.
type agentAnswer struct {
	Addr string      `json:"addr"`
	View *agent.View `json:"view,omitempty"`
	Err  string      `json:"error,omitempty"`
}

// readAgents asks every agent for its /status at once, each within timeout.
func readAgents(ctx context.Context, addrs []string, timeout time.Duration) []agentAnswer {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: timeout}
	defer hc.CloseIdleConnections()
	out := make([]agentAnswer, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		out[i].Addr = addr
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := readAgent(ctx, hc, addr)
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			out[i].View = v
		}()
	}
	wg.Wait()
	return out
}

func readAgent(ctx context.Context, hc *http.Client, addr string) (*agent.View, error) {
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + addr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var v agent.View
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("not an agent's /status: %w", err)
	}
	return &v, nil
}

// printAgents shows the cluster as its agents see it, with what failsafe mode does
// about the outage.
func printAgents(w io.Writer, etcdErr string, answers []agentAnswer) {
	fmt.Fprintf(w, "etcd: %s\nthe cluster as its agents see it (their /status):\n\n", etcdErr)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tAGENT\tROLE\tVERDICT\tREAD_ONLY\tETCD SESSION\tFAILSAFE")
	var kept, primary string
	var epoch uint64
	for _, a := range answers {
		if a.View == nil {
			fmt.Fprintf(tw, "-\t%s\t-\t-\t-\t-\tno answer: %s\n", a.Addr, a.Err)
			continue
		}
		v := a.View
		st := v.Status
		ro := "-"
		if st.ServerRead {
			ro = map[bool]string{true: "yes", false: "no"}[st.ReadOnly]
		}
		session := map[bool]string{true: "up", false: "down"}[v.SessionAlive]
		fs := "-"
		if f := v.Failsafe; f != nil {
			fs = string(f.State)
			if f.Note != "" {
				fs += ": " + f.Note
			}
			if f.State == agent.FailsafeKept {
				kept = v.Node + ": " + f.Note
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(v.Node), a.Addr, orDash(string(st.Role)), st.Verdict, ro, session, fs)
		if p := v.Primary; p != nil && p.Epoch >= epoch {
			primary, epoch = p.Node, p.Epoch
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	if primary != "" {
		fmt.Fprintf(w, "primary of record, as the agents last read it: %s at epoch %d\n", primary, epoch)
	}
	if kept != "" {
		fmt.Fprintf(w, "failsafe: %s\n", kept)
	}
	fmt.Fprintln(w, "no failover is possible while etcd is unreachable: a promotion needs etcd (docs/operations.md, \"etcd is down\")")
}
