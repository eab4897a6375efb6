package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/reconcile"
)

// serveHTTP serves the read-only endpoints until ctx ends.
func (a *Agent) serveHTTP(ctx context.Context, store *cluster.Store, rec *reconcile.Reconciler, det *detector.Detector, state *sessionState, reg prometheus.Gatherer, metrics *Metrics) error {
	view := func() View {
		n, snap := rec.Current()
		up, lease := state.get()
		kept, keptLease := a.fs.kept()
		if !up && kept {
			// Failsafe mode keeps the primary: its leader key is on the lease it held.
			lease = keptLease
		}
		v := ViewOf(a.cfg.Cluster, a.cfg.Node, n, snap)
		v.Failsafe = a.fs.view()
		v.HoldsLeader = (up || kept) && snap.Leader == a.cfg.Node && snap.LeaderLease == lease
		v.SessionAlive = up
		v.MaxReplicaLag = a.cfg.Timings.MaxReplicaLag
		v.MaxStatusAge = 4*a.cfg.Timings.ProbeInterval + 2*time.Second
		v.Live = LiveOf(det.Report())
		if snap.Rev != 0 {
			v.Policy = policyView(snap, a.cfg.Policy())
		}
		return v
	}
	// Metrics follow the view even when nobody asks for /metrics.
	go func() {
		t := time.NewTicker(a.cfg.Timings.ProbeInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				metrics.Update(view())
			}
		}
	}()
	mux := http.NewServeMux()
	mux.Handle(FailsafePath, a.fs.handler(failsafePeerSide{
		reachEtcd: func(ctx context.Context) error {
			_, err := store.Client().Get(ctx, store.Keys.Primary())
			return err
		},
		known: func() (cluster.Primary, bool) {
			_, snap := rec.Current()
			up, lease := state.get()
			kept, _ := a.fs.kept()
			return snap.Primary, kept || (up && rec.WritablePrimary(lease))
		},
	}))
	if a.sv != nil {
		mux.Handle(SalvagePath, a.sv.handler(salvageSide{
			known: func() (cluster.Primary, bool) {
				_, snap := rec.Current()
				up, lease := state.get()
				kept, _ := a.fs.kept()
				return snap.Primary, kept || (up && rec.WritablePrimary(lease))
			},
			readOnly: a.sv.localReadOnly,
		}))
		mux.Handle(SalvageApplyPath, a.sv.applyHandler(func() *cluster.Intent {
			_, snap := rec.Current()
			return snap.Intent
		}))
	}
	if a.donor != nil {
		mux.Handle(RebuildBackupPath, a.donor.handler())
	}
	mux.Handle("/", NewHandler(view, reg))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	a.log.Info("http listening", zap.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ViewOf is what a node's agent says of the cluster on /status (and its metrics) as
// read from snap, with its node's status n: the same snapshot baton status and the
// web view read, field for field (the session's and the agent's own state are set
// apart).
func ViewOf(clusterName, node string, n cluster.NodeStatus, snap cluster.Snapshot) View {
	v := View{Cluster: clusterName, Node: node, Status: n, Coordinator: snap.Coordinator,
		Paused: snap.Settings.Paused, Blocked: snap.Block != nil}
	if snap.Primary.Node != "" {
		p := snap.Primary
		v.Primary = &p
	}
	return v
}
