package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/status"
)

// Prefix is where every cluster's keys are: /baton/<cluster>/.
const Prefix = cluster.Root

// Config is what a Server needs.
type Config struct {
	Client *clientv3.Client
	Log    *zap.Logger
	// History is how many events of each cluster's history are shown.
	History int
	// Rescan is how often the list of clusters is read again (a cluster's own
	// changes are watched, not polled).
	Rescan time.Duration
	// MinRedraw is the least time between two redraws of one cluster: agents
	// publish several times a second between them.
	MinRedraw time.Duration
	// Timeout bounds each etcd call.
	Timeout time.Duration
	// KeepAlive is how often an idle event stream gets a comment, so that proxies
	// keep it open.
	KeepAlive time.Duration
}

// DefaultConfig is a Config with every duration and count set; Client is to be set.
func DefaultConfig() Config {
	return Config{History: 20, Rescan: 5 * time.Second, MinRedraw: 200 * time.Millisecond,
		Timeout: cluster.DefaultEtcdTimeout, KeepAlive: 15 * time.Second, Log: zap.NewNop()}
}

func (c Config) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("web: config: Client is nil")
	case c.Log == nil:
		return errors.New("web: config: Log is nil")
	case c.History <= 0:
		return fmt.Errorf("web: config: History %d: must be positive", c.History)
	case c.Rescan <= 0:
		return fmt.Errorf("web: config: Rescan %s: must be positive", c.Rescan)
	case c.MinRedraw < 0:
		return fmt.Errorf("web: config: MinRedraw %s: must not be negative", c.MinRedraw)
	case c.Timeout <= 0:
		return fmt.Errorf("web: config: Timeout %s: must be positive", c.Timeout)
	case c.KeepAlive <= 0:
		return fmt.Errorf("web: config: KeepAlive %s: must be positive", c.KeepAlive)
	}
	return nil
}

// Server follows every cluster in etcd and serves the web view. Run follows; the
// Handler serves, from the state Run keeps.
type Server struct {
	cfg    Config
	render *Renderer

	mu       sync.Mutex
	clusters map[string]Cluster
	err      string
	at       time.Time
	version  uint64        // grows at each change
	live     []byte        // the clusters part of the page at version
	changed  chan struct{} // closed at the next change
}

// New returns a server of cfg; nothing runs until Run.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r, err := NewRenderer()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, render: r, clusters: map[string]Cluster{}, changed: make(chan struct{})}
	s.publishLocked()
	return s, nil
}

// Run finds the clusters under Prefix and follows each with an etcd watch, until
// ctx ends; it returns ctx's error. An unreachable etcd is shown on the page and
// tried again.
func (s *Server) Run(ctx context.Context) error {
	watching := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	defer func() {
		for _, cancel := range watching {
			cancel()
		}
		wg.Wait()
	}()
	for {
		names, err := s.listClusters(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.cfg.Log.Warn("list clusters", zap.Error(err))
			s.setErr(err.Error())
		} else {
			s.setErr("")
			found := map[string]bool{}
			for _, name := range names {
				found[name] = true
				if _, ok := watching[name]; ok {
					continue
				}
				wctx, cancel := context.WithCancel(ctx)
				watching[name] = cancel
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.follow(wctx, name)
				}()
			}
			for name, cancel := range watching {
				if !found[name] {
					cancel()
					delete(watching, name)
					s.drop(name)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.cfg.Rescan):
		}
	}
}

// listClusters reads the names of the clusters that have keys under Prefix.
func (s *Server) listClusters(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return cluster.List(ctx, s.cfg.Client)
}

// follow keeps one cluster's view up to date from an etcd watch until ctx ends. It
// shows the newest state at most once per MinRedraw.
func (s *Server) follow(ctx context.Context, name string) {
	store := cluster.NewStore(s.cfg.Client, name)
	store.Timeout = s.cfg.Timeout
	log := s.cfg.Log.With(zap.String("cluster", name))
	latest := make(chan cluster.Snapshot, 1)
	go func() {
		_ = store.Watch(ctx, func(snap cluster.Snapshot) error {
			select { // keep only the newest: this goroutine is the only sender
			case <-latest:
			default:
			}
			latest <- snap
			return nil
		})
	}()
	var (
		history []cluster.Event
		histErr string
		read    bool
		last    *cluster.Event
	)
	for {
		var snap cluster.Snapshot
		select {
		case <-ctx.Done():
			return
		case snap = <-latest:
		}
		st := status.Of(ctx, store, name, snap)
		// The history changes only with its newest event, which the snapshot holds.
		if !read || !sameEvent(last, snap.LastEvent) {
			h, err := store.History(ctx, s.cfg.History)
			if err != nil {
				log.Warn("read history", zap.Error(err))
				histErr = err.Error()
			} else {
				history, histErr, read, last = h, "", true, snap.LastEvent
			}
		}
		c := NewCluster(st, history)
		c.HistoryErr = histErr
		s.set(name, c)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.MinRedraw):
		}
	}
}

func sameEvent(a, b *cluster.Event) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Started.Equal(b.Started) && a.Epoch == b.Epoch && a.Kind == b.Kind
}

func (s *Server) set(name string, c Cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters[name] = c
	s.publishLocked()
}

func (s *Server) drop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clusters, name)
	s.publishLocked()
}

func (s *Server) setErr(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == msg {
		return
	}
	s.err = msg
	s.publishLocked()
}

// pageLocked is the page of the current state; s.mu is held.
func (s *Server) pageLocked() Page {
	p := Page{Err: s.err, At: s.at}
	names := make([]string, 0, len(s.clusters))
	for n := range s.clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p.Clusters = append(p.Clusters, s.clusters[n])
	}
	return p
}

// publishLocked renders the live part of the page and wakes every event stream;
// s.mu is held.
func (s *Server) publishLocked() {
	s.at = time.Now()
	var b bytes.Buffer
	if err := s.render.Clusters(&b, s.pageLocked()); err != nil {
		s.cfg.Log.Error("render", zap.Error(err))
		b.Reset()
		fmt.Fprintf(&b, "<p class=\"alert\">the page could not be drawn: %s</p>", html.EscapeString(err.Error()))
	}
	s.live = b.Bytes()
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
}

// current is the live part of the page, its version, and a channel closed at the
// next change.
func (s *Server) current() ([]byte, uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live, s.version, s.changed
}

// Handler serves the page (/), its live updates (/events) and its stylesheet and
// script (/static/).
func (s *Server) Handler() http.Handler {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(fmt.Sprintf("embedded assets: %v", err)) // the directory is embedded above
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /events", s.serveEvents)
	files := http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	mux.Handle("GET /static/web.css", files)
	mux.Handle("GET /static/web.js", files)
	return secureHeaders(mux)
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	p := s.pageLocked()
	s.mu.Unlock()
	var b bytes.Buffer
	if err := s.render.Page(&b, p); err != nil {
		s.cfg.Log.Error("render page", zap.Error(err))
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}

// serveEvents streams the live part of the page as Server-Sent Events: one
// "clusters" event now and one at each change, until the client goes.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not hold the stream
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	flusher.Flush()
	keep := time.NewTicker(s.cfg.KeepAlive)
	defer keep.Stop()
	var sent uint64
	for {
		live, version, changed := s.current()
		if version != sent {
			if err := writeEvent(w, "clusters", live); err != nil {
				return
			}
			flusher.Flush()
			sent = version
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// writeEvent writes one Server-Sent Event; each line of data is its own data field.
func writeEvent(w http.ResponseWriter, name string, data []byte) error {
	var b bytes.Buffer
	b.WriteString("event: " + name + "\n")
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(bytes.TrimSuffix(line, []byte("\r")))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// secureHeaders forbids what the page never needs: inline scripts, other origins,
// being framed.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
