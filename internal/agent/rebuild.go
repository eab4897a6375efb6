package agent

// Rebuilding a node from a donor's backup, the agent's part: the settings (how the
// node's server is stopped and started, how long a rebuild may take, how fast a
// donor sends), the donor's endpoint that streams a backup of its server to the
// node being rebuilt, and the node's side of that stream. The rebuild's steps are
// reconcile's (reconcile/rebuild.go).
//
// The stream goes from agent to agent over HTTP, authenticated with the cluster's
// peer secret as the failsafe check is: the request signed (HMAC-SHA256, with a
// nonce and its time, a request too far from the donor's clock or seen before
// refused), the answer signed over the whole stream in a trailer, so that nothing
// is built on a cut-off or forged copy. The stream is also encrypted (AES-256-CTR,
// with keys derived from the secret, the request's nonce and the donor's own): a
// backup holds every row and the accounts' password hashes.

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
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
	"gopkg.in/yaml.v3"

	"github.com/baton-ha/baton/reconcile"
	"github.com/baton-ha/baton/replication"
)

// Defaults of the rebuild's settings.
const (
	DefaultServerCommandTimeout = reconcile.DefaultCommandTimeout
	DefaultRebuildTimeout       = reconcile.DefaultRebuildTimeout
	DefaultRebuildMaxRate       = 64 << 20 // bytes a second
	// minRebuildRate is the slowest a donor may be asked to send: slower, a
	// datadir of any size takes days, and the redo log the backup copies alongside
	// grows all that time.
	minRebuildRate = 1 << 20
)

// ServerCommands are how the agent stops and starts its node's server, for the
// swap of a rebuild (the datadir renamed aside, the copy in). Each is an argv (no
// shell), its program an absolute path; both or neither. Without them the node is
// never rebuilt by its agent.
type ServerCommands struct {
	StopCommand  []string `yaml:"stop_command" json:"stop_command,omitempty"`
	StartCommand []string `yaml:"start_command" json:"start_command,omitempty"`
	// CommandTimeout bounds each command, and the wait for the server to stop
	// (release its files) or start (answer) after it.
	CommandTimeout time.Duration `yaml:"command_timeout" json:"command_timeout"`
}

// Configured says whether the commands are set.
func (s ServerCommands) Configured() bool { return len(s.StopCommand) > 0 && len(s.StartCommand) > 0 }

// RebuildSettings bound a rebuild, and the load a donor takes.
type RebuildSettings struct {
	// Timeout bounds a whole rebuild of this node, the copy included; one that
	// takes longer is rolled back.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// MaxRate is the most this node sends a second when it is a donor.
	MaxRate ByteSize `yaml:"max_rate" json:"max_rate"`
}

// ByteSize is a number of bytes, written in the file with a unit: 64MiB, 1GiB,
// 500MB, 4096B.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}

// ParseByteSize reads a size with its unit.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	for _, u := range byteUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%q is not a size: write it as e.g. 64MiB, 1GiB or 500MB", s)
		}
		return ByteSize(v * float64(u.n)), nil
	}
	return 0, fmt.Errorf("%q needs a unit: write it as e.g. 64MiB, 1GiB or 500MB", s)
}

// UnmarshalYAML reads a size with its unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int64(b) >= u.n && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

func (s ServerCommands) validate() error {
	if (len(s.StopCommand) == 0) != (len(s.StartCommand) == 0) {
		return errors.New("config: server.stop_command and server.start_command: both or neither (a rebuild stops the server, swaps its datadir and starts it)")
	}
	for _, c := range []struct {
		field string
		argv  []string
	}{{"server.stop_command", s.StopCommand}, {"server.start_command", s.StartCommand}} {
		if len(c.argv) == 0 {
			continue
		}
		if !filepath.IsAbs(c.argv[0]) {
			return fmt.Errorf("config: %s: %q: the program must be an absolute path (it runs without a shell or PATH search)", c.field, c.argv[0])
		}
		fi, err := os.Stat(c.argv[0])
		if err != nil {
			return fmt.Errorf("config: %s: %w", c.field, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("config: %s: %s is not an executable file", c.field, c.argv[0])
		}
	}
	if s.CommandTimeout <= 0 {
		return fmt.Errorf("config: server.command_timeout (%s): must be positive", s.CommandTimeout)
	}
	return nil
}

func (r RebuildSettings) validate() error {
	switch {
	case r.Timeout <= 0:
		return fmt.Errorf("config: rebuild.timeout (%s): must be positive", r.Timeout)
	case r.MaxRate < minRebuildRate:
		return fmt.Errorf("config: rebuild.max_rate (%s): at least %s", r.MaxRate, ByteSize(minRebuildRate))
	}
	return nil
}

// RebuildBackupPath is where a donor's agent streams a backup of its server to a
// node being rebuilt (POST, signed).
const RebuildBackupPath = "/rebuild/backup"

// Headers of the backup stream.
const (
	// BackupMetaHeader carries the donor's answer before the stream (base64 of
	// JSON BackupAnswer), covered by the stream's signature.
	BackupMetaHeader = "X-Baton-Backup"
	// BackupErrorTrailer says, after a stream the donor could not finish, why: the
	// stream is then not signed.
	BackupErrorTrailer = "X-Baton-Backup-Error"
)

// MAC prefixes of a rebuild's request and stream: never taken for one another, nor
// for the failsafe check's.
const (
	backupRequestMAC = "baton rebuild request\n"
	backupStreamMAC  = "baton rebuild stream\n"
	backupKeyInfo    = "baton rebuild stream keys v1"
)

// BackupRequest is what a node being rebuilt asks a donor's agent.
type BackupRequest struct {
	Cluster string `json:"cluster"`
	// From is the node being rebuilt; To the donor asked.
	From string `json:"from"`
	To   string `json:"to"`
	// ID is the rebuild's.
	ID    string    `json:"id"`
	Nonce string    `json:"nonce"`
	Sent  time.Time `json:"sent"`
}

// BackupAnswer is what the donor says before the stream.
type BackupAnswer struct {
	Cluster string `json:"cluster"`
	Donor   string `json:"donor"`
	To      string `json:"to"`
	ID      string `json:"id"`
	Nonce   string `json:"nonce"`
	// Salt is the donor's own random part of the stream's keys.
	Salt   string `json:"salt"`
	Flavor string `json:"flavor"`
	// BinlogState is the donor's gtid_binlog_state, read before the backup began.
	BinlogState string `json:"binlog_state,omitempty"`
	// Size is the donor's estimate of the stream's size.
	Size int64 `json:"size"`
}

// streamKeys derives the stream's encryption and MAC keys from the peer secret,
// the request's nonce and the donor's salt: each stream has keys of its own, even
// for a request replayed.
func streamKeys(secret []byte, nonce, salt string) (enc, mac []byte, err error) {
	k, err := hkdf.Key(sha256.New, secret, []byte(nonce+"/"+salt), backupKeyInfo, 64)
	if err != nil {
		return nil, nil, err
	}
	return k[:32], k[32:], nil
}

// newStreamCipher is AES-256-CTR with a zero IV: each stream's key is its own.
func newStreamCipher(key []byte) (cipher.Stream, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewCTR(b, make([]byte, aes.BlockSize)), nil
}

// newStreamMAC is the stream's MAC, over the answer's header then the ciphertext.
func newStreamMAC(key []byte, metaHeader string) hash.Hash {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(backupStreamMAC))
	m.Write([]byte(metaHeader))
	m.Write([]byte{'\n'})
	return m
}

// donor is this agent's side of a rebuild as a donor: it streams backups of its
// server, one at a time.
type donor struct {
	cluster, node string
	secret        []byte
	maxRate       int64
	stall         time.Duration
	timeout       time.Duration
	log           *zap.Logger
	// facts reads the server's flavor, its gtid_binlog_state and the size of its
	// datadir's files (the backup's estimate), before the backup.
	facts func(ctx context.Context) (replication.Flavor, string, int64, error)
	// backup streams a backup of the server to w.
	backup func(ctx context.Context, w io.Writer) error
	// busy says why this node cannot give a backup now ("" when it can).
	busy func() string

	mu      sync.Mutex
	running bool
	seen    map[string]time.Time // nonces of requests answered, for replays
}

// handler answers POST RebuildBackupPath: a request not signed with the cluster's
// peer secret gets a 401 and changes nothing.
func (d *donor) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		off := ""
		if len(d.secret) == 0 {
			off = "this agent gives no backup (no peer secret, or no backup program)"
		}
		var req BackupRequest
		if !readSigned(w, r, signedRequest{what: "backup request", secret: d.secret, mac: backupRequestMAC, off: off, log: d.log}, &req) {
			return
		}
		if why := d.refusal(req); why != "" {
			text(w, http.StatusBadRequest, "bad request: "+why)
			return
		}
		if why := d.busy(); why != "" {
			text(w, http.StatusConflict, "not now: "+why)
			return
		}
		d.mu.Lock()
		if d.running {
			d.mu.Unlock()
			text(w, http.StatusConflict, "not now: "+d.node+" is streaming a backup already")
			return
		}
		d.running = true
		d.mu.Unlock()
		// The server's WriteTimeout counts from the request: the answer, after the
		// donor sized its datadir, gets its own deadline, and each write of the
		// stream moves it (deadlineWriter).
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d.stall + time.Minute))
		defer func() {
			d.mu.Lock()
			d.running = false
			d.mu.Unlock()
		}()
		d.serve(w, r, req)
	})
}

// refusal says why req is not for this donor or is stale or replayed, "" when it
// is to be served; it remembers the nonce.
func (d *donor) refusal(req BackupRequest) string {
	switch {
	case req.Cluster != d.cluster:
		return fmt.Sprintf("asked for cluster %q; this node is in %q", req.Cluster, d.cluster)
	case req.To != d.node:
		return fmt.Sprintf("asked %q; this node is %q", req.To, d.node)
	case req.From == "" || req.From == d.node:
		return fmt.Sprintf("asked by %q: not another node", req.From)
	case len(req.Nonce) < 16 || req.ID == "":
		return "no nonce or rebuild id"
	}
	if why := staleRequest(req.Sent); why != "" {
		return why
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen = map[string]time.Time{}
	}
	for n, at := range d.seen {
		if time.Since(at) > 2*maxRequestAge {
			delete(d.seen, n)
		}
	}
	if _, ok := d.seen[req.Nonce]; ok {
		return "a request seen before (replayed?)"
	}
	d.seen[req.Nonce] = time.Now()
	return ""
}

// serve streams the backup: the answer in a header, the encrypted stream, and its
// signature in a trailer once the backup program has succeeded; a failure after
// the stream began is a trailer saying why, and no signature.
func (d *donor) serve(w http.ResponseWriter, r *http.Request, req BackupRequest) {
	ctx, cancel := context.WithTimeout(r.Context(), d.timeout)
	defer cancel()
	fctx, fcancel := context.WithTimeout(ctx, time.Minute)
	flavor, state, size, err := d.facts(fctx)
	fcancel()
	if err != nil {
		text(w, http.StatusServiceUnavailable, "read this node's server: "+err.Error())
		return
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		text(w, http.StatusInternalServerError, "no random salt: "+err.Error())
		return
	}
	ans := BackupAnswer{Cluster: d.cluster, Donor: d.node, To: req.From, ID: req.ID, Nonce: req.Nonce, Salt: hex.EncodeToString(salt),
		Flavor: flavor.String(), BinlogState: state, Size: size}
	b, err := json.Marshal(ans)
	if err != nil {
		text(w, http.StatusInternalServerError, "marshal the answer: "+err.Error())
		return
	}
	meta := base64.StdEncoding.EncodeToString(b)
	encKey, macKey, err := streamKeys(d.secret, req.Nonce, ans.Salt)
	if err != nil {
		text(w, http.StatusInternalServerError, "derive the stream's keys: "+err.Error())
		return
	}
	ctr, err := newStreamCipher(encKey)
	if err != nil {
		text(w, http.StatusInternalServerError, "the stream's cipher: "+err.Error())
		return
	}
	mac := newStreamMAC(macKey, meta)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set(BackupMetaHeader, meta)
	h.Set("Trailer", SignatureHeader+", "+BackupErrorTrailer)
	w.WriteHeader(http.StatusOK)
	start := time.Now()
	d.log.Warn("rebuild: streaming a backup of this node's server", zap.String("to", req.From), zap.String("rebuild", req.ID),
		zap.Int64("estimate", size), zap.String("max_rate", ByteSize(d.maxRate).String()))
	out := &paced{w: &deadlineWriter{w: w, rc: http.NewResponseController(w), stall: d.stall}, rate: d.maxRate, start: start, ctx: ctx}
	sw := &sealingWriter{out: out, ctr: ctr, mac: mac}
	err = d.backup(ctx, sw)
	if err == nil && out.err != nil {
		err = out.err
	}
	if err != nil {
		d.log.Error("rebuild: the backup did not complete", zap.String("to", req.From), zap.String("rebuild", req.ID), zap.Int64("bytes", out.sent), zap.Error(err))
		h.Set(BackupErrorTrailer, firstLine([]byte(err.Error())))
		return
	}
	h.Set(SignatureHeader, hex.EncodeToString(mac.Sum(nil)))
	d.log.Warn("rebuild: backup streamed", zap.String("to", req.From), zap.String("rebuild", req.ID), zap.Int64("bytes", out.sent),
		zap.Duration("took", time.Since(start).Round(time.Millisecond)))
}

// sealingWriter encrypts what it is given and feeds the ciphertext to the MAC and
// on.
type sealingWriter struct {
	out io.Writer
	ctr cipher.Stream
	mac hash.Hash
	buf []byte
}

func (s *sealingWriter) Write(p []byte) (int, error) {
	if cap(s.buf) < len(p) {
		s.buf = make([]byte, len(p))
	}
	c := s.buf[:len(p)]
	s.ctr.XORKeyStream(c, p)
	s.mac.Write(c)
	if _, err := s.out.Write(c); err != nil {
		return 0, err
	}
	return len(p), nil
}

// paced writes at most rate bytes a second (on average from start, in slices of
// 256 KiB at most), so that a donor's disk and network keep room for its own work.
type paced struct {
	w     io.Writer
	rate  int64
	start time.Time
	ctx   context.Context
	sent  int64
	err   error
}

func (p *paced) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), 256<<10)
		k, err := p.w.Write(b[:n])
		p.sent += int64(k)
		written += k
		if err != nil {
			p.err = err
			return written, err
		}
		b = b[n:]
		if p.rate > 0 {
			due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-p.ctx.Done():
					p.err = p.ctx.Err()
					return written, p.err
				case <-time.After(wait):
				}
			}
		}
	}
	return written, nil
}

// deadlineWriter moves the connection's write deadline before each write: a long
// stream outlives the server's WriteTimeout, a reader that stops reading does not.
type deadlineWriter struct {
	w     io.Writer
	rc    *http.ResponseController
	stall time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.stall))
	return d.w.Write(p)
}

// backupClient is the node's side: it asks a donor's agent for a backup and
// checks what comes back.
type backupClient struct {
	cluster, node string
	secret        []byte
	client        *http.Client
}

func newBackupClient(cluster, node string, secret []byte) *backupClient {
	tr := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		// The donor reads its server and sizes its datadir before it answers.
		ResponseHeaderTimeout: 2 * time.Minute, DisableCompression: true, MaxIdleConnsPerHost: 1}
	return &backupClient{cluster: cluster, node: node, secret: secret, client: &http.Client{Transport: tr}}
}

var _ reconcile.BackupFetcher = (*backupClient)(nil)

// Fetch asks donor's agent, at agent, for a backup of its server for the rebuild
// id. The stream returned decrypts as it is read, and its last Read says whether
// it was the donor's whole, signed stream.
func (c *backupClient) Fetch(ctx context.Context, donor, agent, id string) (reconcile.BackupStream, error) {
	if len(c.secret) == 0 {
		return nil, errors.New("no peer secret to sign the request with")
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	req := BackupRequest{Cluster: c.cluster, From: c.node, To: donor, ID: id, Nonce: hex.EncodeToString(nonce), Sent: time.Now().UTC()}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+agent+RebuildBackupPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(SignatureHeader, sign(c.secret, backupRequestMAC, body))
	resp, err := c.client.Do(hr)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, firstLine(b))
	}
	s, err := c.open(req, resp)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	return s, nil
}

// open checks the donor's answer to req and makes the stream that reads it.
func (c *backupClient) open(req BackupRequest, resp *http.Response) (*backupStream, error) {
	meta := resp.Header.Get(BackupMetaHeader)
	b, err := base64.StdEncoding.DecodeString(meta)
	if err != nil {
		return nil, fmt.Errorf("the donor's answer: %w", err)
	}
	var ans BackupAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("the donor's answer: %w", err)
	}
	switch {
	case ans.Cluster != req.Cluster:
		return nil, fmt.Errorf("answered for cluster %q", ans.Cluster)
	case ans.Donor != req.To:
		return nil, fmt.Errorf("answered by %q", ans.Donor)
	case ans.To != req.From || ans.ID != req.ID || ans.Nonce != req.Nonce:
		return nil, errors.New("answered another request")
	case len(ans.Salt) < 16:
		return nil, errors.New("the answer has no salt")
	}
	flavor, err := replication.ParseFlavor(ans.Flavor)
	if err != nil {
		return nil, fmt.Errorf("the donor's answer: %w", err)
	}
	encKey, macKey, err := streamKeys(c.secret, req.Nonce, ans.Salt)
	if err != nil {
		return nil, err
	}
	ctr, err := newStreamCipher(encKey)
	if err != nil {
		return nil, err
	}
	// The answer is checked with the stream, at its end: its header is under the
	// stream's MAC, which only the secret's holders can make.
	return &backupStream{resp: resp, ctr: ctr, mac: newStreamMAC(macKey, meta), donor: ans.Donor,
		meta: reconcile.BackupMeta{Donor: ans.Donor, Flavor: flavor, BinlogState: ans.BinlogState, Size: ans.Size}}, nil
}

// backupStream is a donor's stream as the node reads it: decrypted, its MAC
// checked at the end against the signature in the trailer.
type backupStream struct {
	resp  *http.Response
	ctr   cipher.Stream
	mac   hash.Hash
	donor string
	meta  reconcile.BackupMeta
	err   error // sticky: how the stream ended
}

func (s *backupStream) Meta() reconcile.BackupMeta { return s.meta }

func (s *backupStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.resp.Body.Read(p)
	if n > 0 {
		s.mac.Write(p[:n])
		s.ctr.XORKeyStream(p[:n], p[:n])
	}
	switch {
	case errors.Is(err, io.EOF):
		// The trailer comes with the body's end.
		sig := s.resp.Trailer.Get(SignatureHeader)
		switch {
		case s.resp.Trailer.Get(BackupErrorTrailer) != "":
			s.err = fmt.Errorf("%s's backup failed: %s", s.donor, s.resp.Trailer.Get(BackupErrorTrailer))
		case sig == "":
			s.err = fmt.Errorf("the stream from %s ended unsigned: cut short", s.donor)
		case !hmac.Equal([]byte(sig), []byte(hex.EncodeToString(s.mac.Sum(nil)))):
			s.err = fmt.Errorf("the stream from %s is not signed with this cluster's peer secret, or was altered", s.donor)
		default:
			s.err = io.EOF
		}
	case err != nil:
		s.err = fmt.Errorf("the stream from %s was cut: %w", s.donor, err)
	}
	return n, s.err
}

func (s *backupStream) Close() error { return s.resp.Body.Close() }

// serverCommands runs the configured commands that stop and start the node's
// server.
type serverCommands struct {
	cfg           ServerCommands
	cluster, node string
	log           *zap.Logger
}

var _ reconcile.ServerControl = serverCommands{}

func (c serverCommands) Stop(ctx context.Context) error {
	return c.run(ctx, "server.stop_command", c.cfg.StopCommand)
}

func (c serverCommands) Start(ctx context.Context) error {
	return c.run(ctx, "server.start_command", c.cfg.StartCommand)
}

// run runs argv without a shell, with an environment of its own (the agent's holds
// secrets), in its own process group, killed whole after command_timeout; a
// failure carries the start of its output.
func (c serverCommands) run(ctx context.Context, field string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("%s is not configured", field)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "BATON_CLUSTER=" + c.cluster, "BATON_NODE=" + c.node}
	cmd.Dir = "/"
	out := &limitedBuffer{limit: hookOutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	c.log.Info("rebuild: "+field, zap.Strings("argv", argv), zap.Duration("took", time.Since(start).Round(time.Millisecond)),
		zap.ByteString("output", out.Bytes()), zap.Error(err))
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("%s: killed after %s: %w", field, c.cfg.CommandTimeout, ctx.Err())
	case err != nil:
		return fmt.Errorf("%s: %w: %s", field, err, firstLine(out.Bytes()))
	}
	return nil
}

// backupRestorer unpacks and prepares a backup with the server's programs.
type backupRestorer struct{ prog replication.BackupPrograms }

func (b backupRestorer) Unpack(ctx context.Context, r io.Reader, dir string) error {
	return replication.Unpack(ctx, b.prog, r, dir)
}

func (b backupRestorer) Prepare(ctx context.Context, dir string) error {
	return replication.Prepare(ctx, b.prog, dir)
}

// rebuildAbility says what this agent can do of a rebuild, from its configuration
// and the programs on its host: give a backup (a peer secret, the backup program),
// and rebuild its own node (also the server's commands and the unpacker); unable
// says why not, "" when it can.
func rebuildAbility(cfg Config, prog replication.BackupPrograms, lookPath func(string) (string, error)) (canDonate bool, unable string) {
	var missing []string
	for _, p := range []string{prog.Backup, prog.Unpack} {
		if _, err := lookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	_, backupErr := lookPath(prog.Backup)
	canDonate = cfg.PeerSecret != "" && backupErr == nil
	switch {
	case !cfg.Server.Configured():
		return canDonate, "server.stop_command and server.start_command are not configured"
	case cfg.PeerSecret == "":
		return canDonate, "no peer secret to authenticate the donor's stream with (peer_secret_file or " + EnvPeerSecret + ")"
	case len(missing) > 0:
		return canDonate, strings.Join(missing, " and ") + " not found in PATH (install the server's backup programs, e.g. mariadb-backup)"
	}
	return canDonate, ""
}

// datadirSize is the size of the files under the server's datadir that a backup
// copies: every regular file but the binary and relay logs (and their indexes).
func datadirSize(l replication.Layout) (int64, error) {
	dd := filepath.Clean(l.Datadir)
	var skip []string
	for _, v := range []string{"log_bin_basename", "relay_log_basename"} {
		if p := l.Paths[v]; p != "" {
			if !filepath.IsAbs(p) {
				p = filepath.Join(dd, p)
			}
			skip = append(skip, filepath.Clean(p)+".")
		}
	}
	var total int64
	err := filepath.WalkDir(dd, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone meanwhile (a temporary table)
			}
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		for _, s := range skip {
			if strings.HasPrefix(p, s) {
				return nil
			}
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		total += fi.Size()
		return nil
	})
	return total, err
}

// donorFacts reads what a donor says before its backup: its server's flavor, its
// gtid_binlog_state (MariaDB) and the size of its datadir's files.
func donorFacts(local *replication.Instance, db *sql.DB) func(ctx context.Context) (replication.Flavor, string, int64, error) {
	return func(ctx context.Context) (replication.Flavor, string, int64, error) {
		f, err := local.Flavor(ctx)
		if err != nil {
			return replication.FlavorUnknown, "", 0, err
		}
		state := ""
		if f == replication.FlavorMariaDB {
			if err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_state").Scan(&state); err != nil {
				return f, "", 0, fmt.Errorf("read gtid_binlog_state: %w", err)
			}
		}
		l, err := local.Layout(ctx)
		if err != nil {
			return f, "", 0, err
		}
		size, err := datadirSize(l)
		if err != nil {
			return f, "", 0, fmt.Errorf("size the datadir %s (the agent must read it to give a backup): %w", l.Datadir, err)
		}
		return f, state, size, nil
	}
}
