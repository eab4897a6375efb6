package agent

// Salvage: a failover asks the failed primary's agent for the transactions its
// binary log files hold after the candidate's position (failover/salvage.go). This
// file is both sides of that request: the failed primary's agent answers POST
// /salvage by reading its own binary log files with mariadb-binlog, only once it
// is sure that no server writes to them (mysqld is not running, or the flow fenced
// it and it is read_only); the coordinator's agent asks, and applies the answer to
// the candidate (salvage_relay.go). Requests and answers are signed with the
// cluster's peer secret as failsafe checks are (HMAC-SHA256, each kind with its own
// prefix), carry a nonce and their time, and a nonce is answered once.
// docs/architecture.md, "Salvage", has the argument.

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/internal/failpoint"
	"github.com/baton-ha/baton/replication"
)

// SalvagePath is where an agent answers a salvage request (POST).
const SalvagePath = "/salvage"

const (
	salvageRequestMAC = "baton salvage request\n"
	salvageAnswerMAC  = "baton salvage answer\n"
	// maxSalvageRead bounds an agent's read, whatever the request asks.
	maxSalvageRead = 10 * time.Second
	// maxSalvageAnswer bounds an answer's size: a print and a relay copy of
	// MaxSalvage each, in base64, and their list of transactions.
	maxSalvageAnswer = replication.MaxSalvage*3 + 8<<20
	// maxNonces bounds the nonces remembered (one per request, for maxRequestAge).
	maxNonces = 4096
)

// SalvageRequest is what a coordinator asks the failed primary's agent.
type SalvageRequest struct {
	Cluster string `json:"cluster"`
	// From is the asking node (the coordinator's); Node the node asked, the
	// primary of record at Epoch.
	From  string `json:"from"`
	Node  string `json:"node"`
	Epoch uint64 `json:"epoch"`
	// Candidate is the server the transactions are for, After its executed set
	// (MariaDB's form), Flavor that set's flavor: "" is never an empty set.
	Candidate string `json:"candidate"`
	After     string `json:"after"`
	Flavor    string `json:"flavor"`
	// Fenced: the asking flow fenced Node's server (read_only on, client
	// connections killed).
	Fenced bool `json:"fenced"`
	// Budget is how long the agent may read.
	Budget time.Duration `json:"budget_ns"`
	Nonce  string        `json:"nonce"`
	Sent   time.Time     `json:"sent"`
}

// SalvageAnswer is the failed primary's agent's answer. Refused says why nothing
// was read; else Script holds the whole transactions read (Txns), and Stopped why
// the read went no further.
type SalvageAnswer struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	Nonce   string `json:"nonce"`
	Refused string `json:"refused,omitempty"`
	// Safe says why no server writes to the files read.
	Safe        string                  `json:"safe,omitempty"`
	Files       []string                `json:"files,omitempty"`
	GTIDList    string                  `json:"gtid_list,omitempty"`
	HasGTIDList bool                    `json:"has_gtid_list,omitempty"`
	Txns        []replication.BinlogTxn `json:"txns,omitempty"`
	Stopped     string                  `json:"stopped,omitempty"`
	Script      []byte                  `json:"script,omitempty"`
	// Relay is Txns copied from the files byte for byte
	// (replication.SalvageRelay), for the candidate's SQL thread; none when it
	// could not be made (the print is applied then).
	Relay []byte `json:"relay,omitempty"`
	// SemiSync is the node's semi-sync state as its agent last read it from its
	// server, at SemiSyncAt.
	SemiSync   cluster.SemiSyncState `json:"semi_sync,omitempty"`
	SemiSyncAt time.Time             `json:"semi_sync_at,omitempty"`
	ReadTook   time.Duration         `json:"read_took_ns,omitempty"`
}

// serverFiles is where the local server keeps what salvage reads, learned from the
// server while it answered: once mysqld is dead it cannot be asked.
type serverFiles struct {
	Datadir     string
	BinlogIndex string
	PidFile     string
	// RelayIndex is the relay log index: a salvage applied to this node writes
	// one of the relay log files it lists (salvage_relay.go).
	RelayIndex string
	At         time.Time
}

// salvageConfig configures salvage for one agent.
type salvageConfig struct {
	Cluster, Node string
	Secret        []byte
	// LocalAddr is the local server's address for the agent's connections
	// (Config.LocalAddr): a server that listens there is running.
	LocalAddr string
	// Binlog is mariadb-binlog ("" finds it in PATH).
	Binlog string
	// Dialer is how Baton's account connects to a candidate to apply.
	Dialer replication.Dialer
	// StateDir is the agent's state_dir: a relay apply's record (relayMarkFile).
	StateDir string
	Log      *zap.Logger
}

// salvager is one agent's salvage: failover.Salvager as a coordinator, the
// /salvage handler as a failed primary's agent.
type salvager struct {
	cfg    salvageConfig
	client *http.Client
	busy   sync.Mutex // one read at a time
	// db is the local server, for its read_only, and local the same server as
	// the candidate of a relay apply (both set before the handlers serve).
	db    *sql.DB
	local *replication.Instance

	mu     sync.Mutex
	files  serverFiles
	semi   cluster.SemiSyncState
	semiAt time.Time
	nonces map[string]time.Time
}

func newSalvager(cfg salvageConfig) *salvager {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}
	return &salvager{cfg: cfg, client: &http.Client{Transport: tr}, nonces: map[string]time.Time{}}
}

var _ failover.Salvager = (*salvager)(nil)

// learnFiles asks the local server where its data directory, binary log index
// and pid file are, and keeps the answer.
func (s *salvager) learnFiles(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var dd, index, pid, relay sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT @@datadir, @@log_bin_index, @@pid_file, @@relay_log_index").Scan(&dd, &index, &pid, &relay); err != nil {
		return fmt.Errorf("read the server's files: %w", err)
	}
	f := serverFiles{Datadir: filepath.Clean(dd.String), BinlogIndex: index.String, PidFile: pid.String, RelayIndex: relay.String, At: time.Now()}
	if f.RelayIndex != "" && !filepath.IsAbs(f.RelayIndex) {
		f.RelayIndex = filepath.Join(f.Datadir, f.RelayIndex)
	}
	if f.BinlogIndex != "" && !filepath.IsAbs(f.BinlogIndex) {
		f.BinlogIndex = filepath.Join(f.Datadir, f.BinlogIndex)
	}
	if f.PidFile != "" && !filepath.IsAbs(f.PidFile) {
		f.PidFile = filepath.Join(f.Datadir, f.PidFile)
	}
	s.mu.Lock()
	s.files = f
	s.mu.Unlock()
	return nil
}

// localReadOnly reads the local server's read_only.
func (s *salvager) localReadOnly(ctx context.Context) (bool, error) {
	if s.db == nil {
		return false, errors.New("no connection to the local server")
	}
	var ro bool
	if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.read_only").Scan(&ro); err != nil {
		return false, err
	}
	return ro, nil
}

// on says whether this agent salvages (a peer secret to sign with, salvage on).
func (s *salvager) on() bool { return s != nil && len(s.cfg.Secret) > 0 }

// noteStatus keeps the semi-sync state of the node's latest status in which its
// server was read.
func (s *salvager) noteStatus(n cluster.NodeStatus) {
	if !n.ServerRead {
		return
	}
	s.mu.Lock()
	s.semi, s.semiAt = n.SemiSync, n.At
	s.mu.Unlock()
}

// watch keeps the server's files and semi-sync state up to date while the server
// answers, until ctx ends: every interval the latest status, every minute the
// files (a restart may move them).
func (s *salvager) watch(ctx context.Context, db *sql.DB, current func() cluster.NodeStatus, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var learned time.Time
	for {
		s.noteStatus(current())
		if time.Since(learned) >= time.Minute {
			if err := s.learnFiles(ctx, db); err == nil {
				learned = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// mysqldGone says whether the node's mysqld is certainly not running: its address
// refuses connections (nothing listens), and the process its pid file named is
// gone (or the file is). Anything else, a timeout included, is no certainty. why
// says what was seen.
func mysqldGone(ctx context.Context, addr, pidFile string) (bool, string) {
	network, target := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, target = "unix", p
	}
	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	conn, err := (&net.Dialer{}).DialContext(dctx, network, target)
	cancel()
	if err == nil {
		conn.Close()
		return false, addr + " accepts connections"
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !(network == "unix" && errors.Is(err, fs.ErrNotExist)) {
		return false, fmt.Sprintf("%s: %v (not a refusal)", addr, err)
	}
	listen := addr + " refuses connections"
	if pidFile == "" {
		return false, listen + ", and the pid file is not known"
	}
	pid, _, err := readPidFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return true, listen + ", no pid file " + pidFile
	}
	if err != nil {
		return false, fmt.Sprintf("%s, %v", listen, err)
	}
	switch err := syscall.Kill(pid, 0); {
	case errors.Is(err, syscall.ESRCH):
		return true, fmt.Sprintf("%s, process %d (%s) is gone", listen, pid, pidFile)
	case err != nil && !errors.Is(err, syscall.EPERM):
		return false, fmt.Sprintf("%s, process %d: %v", listen, pid, err)
	}
	if z, err := zombie(pid); err == nil && z {
		// Exited, its parent has not reaped it yet: its sockets and files are closed.
		return true, fmt.Sprintf("%s, process %d (%s) has exited", listen, pid, pidFile)
	}
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return false, fmt.Sprintf("%s, process %d runs (%v)", listen, pid, err)
	}
	switch name := strings.TrimSpace(string(comm)); name {
	case "mariadbd", "mysqld":
		return false, fmt.Sprintf("%s, but process %d (%s) runs: starting, or stopping", listen, pid, name)
	default:
		return true, fmt.Sprintf("%s, process %d of %s is gone (the pid is now %s's)", listen, pid, pidFile, name)
	}
}

// salvageSide is what the answering side needs of its agent.
type salvageSide struct {
	// known is the primary of record as this node last read it, and whether this
	// node is (or keeps) the writable primary itself.
	known func() (cluster.Primary, bool)
	// readOnly reads the local server's read_only, within ctx.
	readOnly func(ctx context.Context) (bool, error)
}

// refusal says why this node answers req with nothing, "" when it may read: the
// request is for this node, the primary of record it knows at the epoch asked,
// and no server can be writing to its binary logs.
func (s *salvager) refusal(ctx context.Context, req SalvageRequest, side salvageSide) (safe, refused string) {
	known, writable := side.known()
	switch {
	case req.Cluster != s.cfg.Cluster:
		return "", fmt.Sprintf("asked for cluster %q; this node is in %q", req.Cluster, s.cfg.Cluster)
	case req.Node != s.cfg.Node:
		return "", fmt.Sprintf("asked for %q; this node is %q", req.Node, s.cfg.Node)
	case req.Epoch == 0:
		return "", "asked with epoch 0: no primary of record"
	case req.Flavor != replication.FlavorMariaDB.String():
		return "", fmt.Sprintf("the candidate's position is of flavor %q: salvage is MariaDB's only", req.Flavor)
	case known.Node == "":
		return "", s.cfg.Node + " has not read the primary of record: it answers only as the primary of record it knows"
	case known.Epoch > req.Epoch || (known.Epoch == req.Epoch && known.Node != s.cfg.Node):
		return "", fmt.Sprintf("%s knows a newer primary of record: %s at epoch %d", s.cfg.Node, known.Node, known.Epoch)
	case known.Node != s.cfg.Node || known.Epoch != req.Epoch:
		// A replica's binary logs hold every change of the cluster: only the failed
		// primary's own agent, at the epoch it knows, gives them out.
		return "", fmt.Sprintf("%s is not the primary of record it knows (%s at epoch %d), asked at epoch %d", s.cfg.Node, known.Node, known.Epoch, req.Epoch)
	case writable:
		return "", s.cfg.Node + " is the writable primary"
	}
	s.mu.Lock()
	files := s.files
	s.mu.Unlock()
	gone, why := mysqldGone(ctx, s.cfg.LocalAddr, files.PidFile)
	if gone {
		return "mysqld is not running: " + why, ""
	}
	if !req.Fenced {
		return "", "mysqld may be running (" + why + "), and the flow did not fence it"
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	ro, err := side.readOnly(rctx)
	cancel()
	switch {
	case err != nil:
		return "", fmt.Sprintf("the flow fenced the server, but it cannot be read now (%v): it may have been restarted writable", err)
	case !ro:
		return "", "the flow fenced the server, but it is writable now"
	}
	return "fenced by the flow, read_only on", ""
}

// seen records nonce, and says whether it was seen before (a replay) or cannot
// be remembered.
func (s *salvager) seen(nonce string, now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, until := range s.nonces {
		if now.After(until) {
			delete(s.nonces, n)
		}
	}
	if _, ok := s.nonces[nonce]; ok {
		return "this request was answered before (nonce)", true
	}
	if len(s.nonces) >= maxNonces {
		return "too many requests to remember", true
	}
	s.nonces[nonce] = now.Add(2 * maxRequestAge)
	return "", false
}

// stamped is a salvage request's nonce and send time.
type stamped interface {
	stamp() (nonce string, sent time.Time)
}

func (r *SalvageRequest) stamp() (string, time.Time) { return r.Nonce, r.Sent }

// readRequest reads a signed salvage request (what, mac, a body of at most max
// bytes, 0 for maxBody) into v, and refuses, saying so to the client, one without
// a nonce or sent too far from this node's clock. It says whether v was read.
func (s *salvager) readRequest(w http.ResponseWriter, r *http.Request, what, mac string, max int, v stamped) bool {
	off := ""
	if len(s.cfg.Secret) == 0 {
		off = "salvage is off on this node"
	}
	if !readSigned(w, r, signedRequest{what: what, secret: s.cfg.Secret, mac: mac, off: off, max: max, log: s.cfg.Log}, v) {
		return false
	}
	nonce, sent := v.stamp()
	if nonce == "" {
		text(w, http.StatusBadRequest, "bad request: a nonce is required")
		return false
	}
	if why := staleRequest(sent); why != "" {
		text(w, http.StatusBadRequest, "bad request: "+why)
		return false
	}
	return true
}

// handler answers POST SalvagePath. A request not signed with the cluster's
// secret gets a 401 and reads nothing; a signed one gets a signed answer, a
// refusal included.
func (s *salvager) handler(side salvageSide) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req SalvageRequest
		if !s.readRequest(w, r, "salvage request", salvageRequestMAC, 0, &req) {
			return
		}
		a := s.answer(r.Context(), req, side)
		failpoint.Hit(failpoint.SalvageAnswer)
		writeSigned(w, s.cfg.Secret, salvageAnswerMAC, a)
	})
}

// answer reads what req asks for, or says why not.
func (s *salvager) answer(ctx context.Context, req SalvageRequest, side salvageSide) SalvageAnswer {
	a := SalvageAnswer{Cluster: s.cfg.Cluster, Node: s.cfg.Node, Nonce: req.Nonce}
	s.mu.Lock()
	files := s.files
	a.SemiSync, a.SemiSyncAt = s.semi, s.semiAt
	s.mu.Unlock()
	log := s.cfg.Log.With(zap.String("from", req.From), zap.String("candidate", req.Candidate), zap.String("after", req.After))
	refuse := func(why string) SalvageAnswer {
		a.Refused = why
		log.Warn("salvage: nothing read", zap.String("why", why))
		return a
	}
	if why, replay := s.seen(req.Nonce, time.Now()); replay {
		return refuse(why)
	}
	if !s.busy.TryLock() {
		return refuse("another salvage read is under way")
	}
	defer s.busy.Unlock()
	after, err := replication.ParseGTIDSet(replication.FlavorMariaDB, req.After)
	if err != nil && req.Flavor == replication.FlavorMariaDB.String() {
		return refuse("the candidate's position: " + err.Error())
	}
	safe, why := s.refusal(ctx, req, side)
	if why != "" {
		return refuse(why)
	}
	a.Safe = safe
	if files.BinlogIndex == "" {
		return refuse("where the binary logs are is not known: the server never said (log_bin off, or it was never reached)")
	}
	budget := min(req.Budget, maxSalvageRead)
	if budget <= 0 {
		budget = time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	start := time.Now()
	all, err := replication.BinlogIndex(files.BinlogIndex, files.Datadir)
	if err != nil {
		return refuse("list the binary logs: " + err.Error())
	}
	read, _, err := replication.BinlogFilesFrom(all, after)
	if err != nil {
		return refuse(err.Error())
	}
	tail, err := replication.ReadBinlogTail(rctx, s.cfg.Binlog, read, after, replication.MaxSalvage)
	a.ReadTook = time.Since(start)
	if err != nil {
		return refuse(err.Error())
	}
	for _, f := range read {
		a.Files = append(a.Files, filepath.Base(f))
	}
	a.GTIDList, a.HasGTIDList, a.Txns, a.Stopped, a.Script = tail.GTIDList, tail.HasGTIDList, tail.Txns, tail.Stopped, tail.Script
	if len(tail.Txns) > 0 {
		relay, err := replication.SalvageRelay(read, tail.Txns, replication.MaxSalvage)
		if err != nil {
			log.Warn("salvage: no relay copy of what was read: the candidate applies the print through a session", zap.Error(err))
		}
		a.Relay = relay
		a.ReadTook = time.Since(start)
	}
	log.Info("salvage: read", zap.String("safe", safe), zap.Int("txns", len(tail.Txns)), zap.Strings("files", a.Files),
		zap.String("stopped", tail.Stopped), zap.Duration("took", a.ReadTook))
	return a
}

// Fetch asks the failed primary's agent at agent for what its binary logs hold
// after q.After (failover.Salvager), within ctx.
func (s *salvager) Fetch(ctx context.Context, agent string, q failover.SalvageQuery) (failover.SalvageTail, error) {
	if len(s.cfg.Secret) == 0 {
		return failover.SalvageTail{}, errors.New("no peer secret to sign the request with")
	}
	if q.After.Flavor() == replication.FlavorUnknown {
		return failover.SalvageTail{}, errors.New("the candidate's position is unknown")
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return failover.SalvageTail{}, fmt.Errorf("no random nonce: %w", err)
	}
	req := SalvageRequest{Cluster: s.cfg.Cluster, From: s.cfg.Node, Node: q.Node, Epoch: q.Epoch, Candidate: q.Candidate,
		After: q.After.Position(), Flavor: q.After.Flavor().String(), Fenced: q.Fenced, Budget: q.Budget,
		Nonce: hex.EncodeToString(nonce), Sent: time.Now().UTC()}
	body, err := json.Marshal(req)
	if err != nil {
		return failover.SalvageTail{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+agent+SalvagePath, bytes.NewReader(body))
	if err != nil {
		return failover.SalvageTail{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(SignatureHeader, sign(s.cfg.Secret, salvageRequestMAC, body))
	resp, err := s.client.Do(hr)
	if err != nil {
		return failover.SalvageTail{}, fmt.Errorf("ask %s: %w", agent, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSalvageAnswer+1))
	if err != nil {
		return failover.SalvageTail{}, fmt.Errorf("read %s's answer: %w", agent, err)
	}
	if len(b) > maxSalvageAnswer {
		return failover.SalvageTail{}, fmt.Errorf("%s's answer is over %d bytes", agent, maxSalvageAnswer)
	}
	a, err := readSalvageAnswer(s.cfg.Secret, req, resp.StatusCode, b, resp.Header.Get(SignatureHeader))
	if err != nil {
		return failover.SalvageTail{}, fmt.Errorf("%s: %w", agent, err)
	}
	if a.Refused != "" {
		return failover.SalvageTail{}, fmt.Errorf("%s's agent refused: %s", q.Node, a.Refused)
	}
	return failover.SalvageTail{
		BinlogPrint: replication.BinlogPrint{Txns: a.Txns, Script: a.Script, GTIDList: a.GTIDList, HasGTIDList: a.HasGTIDList, Stopped: a.Stopped},
		Files:       a.Files, Relay: a.Relay, Safe: a.Safe, SemiSync: a.SemiSync, SemiSyncAt: a.SemiSyncAt, ReadTook: a.ReadTook,
	}, nil
}

// readSalvageAnswer checks an agent's HTTP answer to req: a 200, signed with the
// secret as an answer, for this request (cluster, node and nonce).
func readSalvageAnswer(secret []byte, req SalvageRequest, status int, body []byte, sig string) (SalvageAnswer, error) {
	if status != http.StatusOK {
		return SalvageAnswer{}, fmt.Errorf("HTTP %d: %s", status, firstLine(body))
	}
	if !signedBy(secret, salvageAnswerMAC, body, sig) {
		return SalvageAnswer{}, errors.New("the answer is not signed with this cluster's peer secret")
	}
	var a SalvageAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return SalvageAnswer{}, fmt.Errorf("decode the answer: %w", err)
	}
	switch {
	case a.Cluster != req.Cluster:
		return SalvageAnswer{}, fmt.Errorf("answered for cluster %q", a.Cluster)
	case a.Node != req.Node:
		return SalvageAnswer{}, fmt.Errorf("answered by %q", a.Node)
	case a.Nonce != req.Nonce:
		return SalvageAnswer{}, errors.New("answered another request (nonce)")
	}
	return a, nil
}

// newSalvager is this agent's salvage, from its configuration: off (no secret)
// unless salvage is on and mariadb-binlog (mariadb-client) is installed, which a
// failed primary's agent reads its binary logs with.
func (a *Agent) newSalvager() *salvager {
	cfg := a.cfg
	sc := salvageConfig{Cluster: cfg.Cluster, Node: cfg.Node, LocalAddr: cfg.LocalAddr(), StateDir: cfg.StatePath(),
		Log: a.log.With(zap.String("component", "salvage"))}
	d, derr := cfg.Dialer()
	sc.Dialer = d
	if cfg.SalvageOn() {
		sc.Secret = []byte(cfg.PeerSecret.Reveal())
		if _, err := exec.LookPath("mariadb-binlog"); err != nil {
			sc.Log.Warn("salvage off: install mariadb-client (a failover then leaves what a failed primary logged that no replica received on its disk)", zap.Error(err))
			sc.Secret = nil
		} else if derr != nil {
			sc.Log.Warn("salvage off: no way to connect to a candidate", zap.Error(derr))
			sc.Secret = nil
		}
	}
	if !cfg.SalvageOn() {
		sc.Log.Info("salvage off: a failover leaves what a failed primary logged that no replica received on its disk")
	}
	return newSalvager(sc)
}
