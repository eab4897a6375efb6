package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/baton-ha/baton/replication"
)

const testSecret = "0123456789abcdef0123"

// testDonor is db3's donor endpoint over HTTP, its backup program standing in as
// payload (written in slices, the last one cut to cutAt bytes, then failing with
// fail when set).
type testDonor struct {
	d       *donor
	srv     *httptest.Server
	payload []byte
	fail    error
	cutAt   int
	started chan struct{}
	release chan struct{}
}

func newTestDonor(t *testing.T, payload []byte) *testDonor {
	t.Helper()
	td := &testDonor{payload: payload}
	td.d = &donor{cluster: "main", node: "db3", secret: []byte(testSecret), maxRate: 1 << 40, stall: 5 * time.Second, timeout: time.Minute,
		log: zap.NewNop(), busy: func() string { return "" },
		facts: func(ctx context.Context) (replication.Flavor, string, int64, error) {
			return replication.FlavorMariaDB, "0-1-100,0-2-149", int64(len(td.payload)), nil
		},
		backup: func(ctx context.Context, w io.Writer) error {
			if td.started != nil {
				close(td.started)
				<-td.release
			}
			p := td.payload
			if td.cutAt > 0 {
				p = p[:td.cutAt]
			}
			for len(p) > 0 {
				n := min(len(p), 4096)
				if _, err := w.Write(p[:n]); err != nil {
					return err
				}
				p = p[n:]
			}
			return td.fail
		}}
	td.srv = httptest.NewServer(td.d.handler())
	t.Cleanup(td.srv.Close)
	return td
}

func (td *testDonor) agent() string {
	u, _ := url.Parse(td.srv.URL)
	return u.Host
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBackupStream: the node receives, decrypted, exactly what the donor's backup
// program wrote, with the donor's binlog state and size, and the stream ends in
// io.EOF only once its signature checks; on the wire it is not the backup.
func TestBackupStream(t *testing.T) {
	payload := randomBytes(t, 300<<10)
	td := newTestDonor(t, payload)
	var wire bytes.Buffer
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Records what crosses the network.
		resp, err := http.DefaultTransport.RoundTrip(cloneTo(r, td.srv.URL))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		copyHeader(w.Header(), resp.Header)
		w.Header().Set("Trailer", SignatureHeader+", "+BackupErrorTrailer)
		w.WriteHeader(resp.StatusCode)
		if _, err := io.Copy(io.MultiWriter(w, &wire), resp.Body); err != nil {
			t.Errorf("proxy: %v", err)
		}
		copyHeader(w.Header(), resp.Trailer)
	}))
	defer proxy.Close()
	c := newBackupClient("main", "db1", []byte(testSecret))
	s, err := c.Fetch(t.Context(), "db3", strings.TrimPrefix(proxy.URL, "http://"), "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m := s.Meta(); m.Donor != "db3" || m.Flavor != replication.FlavorMariaDB || m.BinlogState != "0-1-100,0-2-149" || m.Size != int64(len(payload)) {
		t.Errorf("meta %+v", m)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("read the stream: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("received %d bytes, not the %d the donor wrote", len(got), len(payload))
	}
	if bytes.Contains(wire.Bytes(), payload[:64]) || wire.Len() != len(payload) {
		t.Errorf("on the wire: %d bytes, the backup in clear: %v", wire.Len(), bytes.Contains(wire.Bytes(), payload[:64]))
	}
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Errorf("a read after the end: %v, want io.EOF again", err)
	}
}

// cloneTo is r sent on to base. Its body is read first: the proxy's server closes
// r.Body once the proxy answers, which could race the transport still sending it
// (the transport then closes the connection mid-answer).
func cloneTo(r *http.Request, base string) *http.Request {
	u, _ := url.Parse(base + r.URL.Path)
	out := r.Clone(r.Context())
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(err)
	}
	out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	out.URL, out.RequestURI, out.Host = u, "", u.Host
	return out
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// TestBackupStreamFailures: every stream the node must not build on ends in an
// error, never io.EOF: the donor's program failing half way, the donor dying
// mid-stream, a byte changed on the way, a stream whose signature was removed; and
// a request signed with another secret, replayed, stale, for another donor or
// cluster, or made while the donor is busy gets no stream at all.
func TestBackupStreamFailures(t *testing.T) {
	payload := randomBytes(t, 64<<10)
	read := func(t *testing.T, agent string) error {
		t.Helper()
		c := newBackupClient("main", "db1", []byte(testSecret))
		s, err := c.Fetch(t.Context(), "db3", agent, "r1")
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = io.ReadAll(s)
		return err
	}
	t.Run("the backup program fails half way", func(t *testing.T) {
		td := newTestDonor(t, payload)
		td.cutAt, td.fail = 10000, errors.New("mariadb-backup: exit status 1: InnoDB: log sequence number overwritten")
		if err := read(t, td.agent()); err == nil || !strings.Contains(err.Error(), "backup failed: mariadb-backup: exit status 1") {
			t.Fatalf("read: %v", err)
		}
	})
	t.Run("the donor dies mid-stream", func(t *testing.T) {
		td := newTestDonor(t, payload)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &cutWriter{ResponseWriter: w, left: 20000}
			td.d.handler().ServeHTTP(rec, r)
		}))
		defer srv.Close()
		err := read(t, strings.TrimPrefix(srv.URL, "http://"))
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("read: %v, want the cut reported", err)
		}
		t.Logf("cut: %v", err)
	})
	t.Run("a byte changed on the way", func(t *testing.T) {
		td := newTestDonor(t, payload)
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			resp, err := http.DefaultTransport.RoundTrip(cloneTo(r, td.srv.URL))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			b[len(b)/2] ^= 1
			copyHeader(w.Header(), resp.Header)
			w.Header().Set("Trailer", SignatureHeader+", "+BackupErrorTrailer)
			w.WriteHeader(resp.StatusCode)
			w.Write(b)
			copyHeader(w.Header(), resp.Trailer)
		}))
		defer proxy.Close()
		if err := read(t, strings.TrimPrefix(proxy.URL, "http://")); err == nil || !strings.Contains(err.Error(), "not signed with this cluster's peer secret, or was altered") {
			t.Fatalf("read: %v", err)
		}
	})
	t.Run("the signature removed", func(t *testing.T) {
		td := newTestDonor(t, payload)
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			resp, err := http.DefaultTransport.RoundTrip(cloneTo(r, td.srv.URL))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			copyHeader(w.Header(), resp.Header) // the Trailer declaration is not in it
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
		}))
		defer proxy.Close()
		if err := read(t, strings.TrimPrefix(proxy.URL, "http://")); err == nil || !strings.Contains(err.Error(), "ended unsigned") {
			t.Fatalf("read: %v", err)
		}
	})
	t.Run("another secret", func(t *testing.T) {
		td := newTestDonor(t, payload)
		c := newBackupClient("main", "db1", []byte("another-secret-of-20b"))
		if _, err := c.Fetch(t.Context(), "db3", td.agent(), "r1"); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
			t.Fatalf("fetch: %v", err)
		}
	})
	t.Run("a forged answer", func(t *testing.T) {
		// Someone without the secret answers in the donor's place: the client's
		// check of the whole stream fails.
		forger := newTestDonor(t, payload)
		forger.d.secret = []byte("the-forger-own-secret")
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.Header.Set(SignatureHeader, sign(forger.d.secret, backupRequestMAC, b))
			forger.d.handler().ServeHTTP(w, r)
		}))
		defer srv.Close()
		if err := read(t, strings.TrimPrefix(srv.URL, "http://")); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("read of a forged stream: %v, want an error", err)
		}
	})
	for _, tc := range []struct {
		name string
		edit func(*BackupRequest)
		want string
	}{
		{"stale", func(r *BackupRequest) { r.Sent = time.Now().Add(-10 * time.Minute) }, "from this node's clock"},
		{"for another donor", func(r *BackupRequest) { r.To = "db4" }, `asked "db4"`},
		{"for another cluster", func(r *BackupRequest) { r.Cluster = "other" }, `cluster "other"`},
		{"from itself", func(r *BackupRequest) { r.From = "db3" }, "not another node"},
		{"no nonce", func(r *BackupRequest) { r.Nonce = "" }, "no nonce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDonor(t, payload)
			req := BackupRequest{Cluster: "main", From: "db1", To: "db3", ID: "r1", Nonce: "00112233445566778899aabbccddeeff", Sent: time.Now().UTC()}
			tc.edit(&req)
			code, body := postBackup(t, td, req)
			if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %q, want 400 with %q", code, body, tc.want)
			}
		})
	}
	t.Run("replayed", func(t *testing.T) {
		td := newTestDonor(t, nil)
		req := BackupRequest{Cluster: "main", From: "db1", To: "db3", ID: "r1", Nonce: "00112233445566778899aabbccddeeff", Sent: time.Now().UTC()}
		if code, body := postBackup(t, td, req); code != http.StatusOK {
			t.Fatalf("first: %d %q", code, body)
		}
		if code, body := postBackup(t, td, req); code != http.StatusBadRequest || !strings.Contains(body, "seen before") {
			t.Fatalf("the same request again: %d %q, want refused", code, body)
		}
	})
	t.Run("busy", func(t *testing.T) {
		td := newTestDonor(t, payload)
		td.started, td.release = make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = read(t, td.agent())
		}()
		<-td.started
		req := BackupRequest{Cluster: "main", From: "db2", To: "db3", ID: "r2", Nonce: "ffeeddccbbaa99887766554433221100", Sent: time.Now().UTC()}
		code, body := postBackup(t, td, req)
		close(td.release)
		wg.Wait()
		if code != http.StatusConflict || !strings.Contains(body, "streaming a backup already") {
			t.Fatalf("a second request during a backup: %d %q", code, body)
		}
		td.d.busy = func() string { return "db3 is being rebuilt itself" }
		req.Nonce = "aaeeddccbbaa99887766554433221100"
		if code, body := postBackup(t, td, req); code != http.StatusConflict || !strings.Contains(body, "being rebuilt") {
			t.Fatalf("a donor being rebuilt: %d %q", code, body)
		}
	})
	t.Run("no secret: no backup", func(t *testing.T) {
		td := newTestDonor(t, payload)
		td.d.secret = nil
		if err := read(t, td.agent()); err == nil || !strings.Contains(err.Error(), "HTTP 404: this agent gives no backup") {
			t.Fatalf("read: %v", err)
		}
	})
}

// postBackup posts req, signed, to td and returns the status and the body's start.
func postBackup(t *testing.T, td *testDonor, req BackupRequest) (int, string) {
	t.Helper()
	b, err := jsonMarshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hr, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, td.srv.URL+RebuildBackupPath, bytes.NewReader(b))
	hr.Header.Set(SignatureHeader, sign([]byte(testSecret), backupRequestMAC, b))
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(body)
}

// cutWriter is a connection that breaks after left bytes: the donor's host gone.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		c.ResponseWriter.Write(p[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection goes, mid-body
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

func (c *cutWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// TestBackupRate: a donor sends no faster than rebuild.max_rate.
func TestBackupRate(t *testing.T) {
	payload := randomBytes(t, 2<<20)
	td := newTestDonor(t, payload)
	td.d.maxRate = 8 << 20
	start := time.Now()
	c := newBackupClient("main", "db1", []byte(testSecret))
	s, err := c.Fetch(t.Context(), "db3", td.agent(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := io.Copy(io.Discard, s); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("2 MiB at 8 MiB/s took %s, want at least 250ms", took)
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		err  string
	}{
		{"64MiB", 64 << 20, ""}, {"1GiB", 1 << 30, ""}, {"500MB", 500e6, ""}, {"4096B", 4096, ""}, {"1.5GiB", 3 << 29, ""},
		{"64", 0, "needs a unit"}, {"fast", 0, "needs a unit"}, {"-1MiB", 0, "not a size"}, {"xMiB", 0, "not a size"},
	} {
		got, err := ParseByteSize(tc.in)
		if (err != nil) != (tc.err != "") || (err != nil && !strings.Contains(err.Error(), tc.err)) || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
	for _, tc := range []struct {
		b    ByteSize
		want string
	}{{64 << 20, "64MiB"}, {1 << 30, "1GiB"}, {1536, "1536B"}, {3 << 10, "3KiB"}} {
		if got := tc.b.String(); got != tc.want {
			t.Errorf("%d prints %q, want %q", tc.b, got, tc.want)
		}
	}
}

// TestRebuildSettings: the server's commands are both or neither, absolute,
// executable; every bound is positive; and the file reads sizes with units.
func TestRebuildSettings(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "ctl")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"neither command", "", ""},
		{"both", "server:\n  stop_command: [" + exe + ", stop]\n  start_command: [" + exe + ", start]\n  command_timeout: 2m\nrebuild:\n  timeout: 1h\n  max_rate: 100MiB\n", ""},
		{"only stop", "server:\n  stop_command: [" + exe + ", stop]\n", "both or neither"},
		{"relative", "server:\n  stop_command: [systemctl, stop, mariadb]\n  start_command: [" + exe + "]\n", "absolute path"},
		{"missing program", "server:\n  stop_command: [/nonexistent/ctl]\n  start_command: [" + exe + "]\n", "no such file"},
		{"not executable", "server:\n  stop_command: [" + plain + "]\n  start_command: [" + exe + "]\n", "not an executable"},
		{"zero command timeout", "server:\n  command_timeout: 0s\n", "server.command_timeout"},
		{"zero rebuild timeout", "rebuild:\n  timeout: 0s\n", "rebuild.timeout"},
		{"too slow", "rebuild:\n  max_rate: 100KiB\n", "rebuild.max_rate (100KiB): at least 1MiB"},
		{"a rate without a unit", "rebuild:\n  max_rate: 100\n", "needs a unit"},
	} {
		c, err := Parse([]byte(minimalYAML+tc.yaml), nil)
		if (err != nil) != (tc.err != "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
		if tc.name == "both" && err == nil && (c.Rebuild.MaxRate != 100<<20 || !c.Server.Configured() || c.Server.CommandTimeout != 2*time.Minute) {
			t.Errorf("read as %+v %+v", c.Server, c.Rebuild)
		}
		if tc.name == "neither command" && err == nil && (c.Rebuild.MaxRate != DefaultRebuildMaxRate || c.Rebuild.Timeout != DefaultRebuildTimeout || c.Server.Configured()) {
			t.Errorf("defaults read as %+v %+v", c.Server, c.Rebuild)
		}
	}
}

func TestRebuildAbility(t *testing.T) {
	found := func(string) (string, error) { return "/usr/bin/x", nil }
	none := func(string) (string, error) { return "", errors.New("not found") }
	noUnpack := func(p string) (string, error) {
		if p == "mbstream" {
			return "", errors.New("not found")
		}
		return "/usr/bin/" + p, nil
	}
	prog := replication.DefaultBackupPrograms(replication.FlavorMariaDB)
	cmds := ServerCommands{StopCommand: []string{"/bin/true"}, StartCommand: []string{"/bin/true"}, CommandTimeout: time.Minute}
	for _, tc := range []struct {
		name     string
		secret   Secret
		server   ServerCommands
		look     func(string) (string, error)
		donate   bool
		unableIs string
	}{
		{"all there", testSecret, cmds, found, true, ""},
		{"no commands: gives, is not rebuilt", testSecret, ServerCommands{}, found, true, "not configured"},
		{"no secret", "", cmds, found, false, "no peer secret"},
		{"no programs", testSecret, cmds, none, false, "mariadb-backup and mbstream not found"},
		{"no unpacker: gives all the same", testSecret, cmds, noUnpack, true, "mbstream not found"},
	} {
		cfg := DefaultConfig()
		cfg.PeerSecret, cfg.Server = tc.secret, tc.server
		donate, unable := rebuildAbility(cfg, prog, tc.look)
		if donate != tc.donate || (unable == "") != (tc.unableIs == "") || !strings.Contains(unable, tc.unableIs) {
			t.Errorf("%s: donate %v, unable %q; want %v, %q", tc.name, donate, unable, tc.donate, tc.unableIs)
		}
	}
}

// TestDatadirSize: a backup's estimate is the datadir's files but its binary and
// relay logs.
func TestDatadirSize(t *testing.T) {
	dd := t.TempDir()
	for name, n := range map[string]int{"ibdata1": 1000, "mysql/user.MAD": 300, "mysql-bin.000001": 5000, "mysql-bin.index": 40, "relay-bin.000002": 7000, "app/t.ibd": 200} {
		p := filepath.Join(dd, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := datadirSize(replication.Layout{Datadir: dd + "/", Paths: map[string]string{"log_bin_basename": filepath.Join(dd, "mysql-bin"), "relay_log_basename": "relay-bin"}})
	if err != nil || got != 1500 {
		t.Fatalf("size %d, %v; want 1500", got, err)
	}
}

// TestServerCommands: a command's failure says what it printed; one that hangs is
// killed, its children with it, after command_timeout.
func TestServerCommands(t *testing.T) {
	dir := t.TempDir()
	fail := filepath.Join(dir, "fail")
	hang := filepath.Join(dir, "hang")
	if err := os.WriteFile(fail, []byte("#!/bin/sh\necho \"Job for mariadb.service failed\" >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nsleep 60 &\nwait\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := serverCommands{cfg: ServerCommands{StopCommand: []string{fail}, StartCommand: []string{hang}, CommandTimeout: 300 * time.Millisecond}, log: zap.NewNop()}
	if err := c.Stop(t.Context()); err == nil || !strings.Contains(err.Error(), "exit status 3: Job for mariadb.service failed") {
		t.Errorf("stop: %v", err)
	}
	start := time.Now()
	if err := c.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "killed after 300ms") {
		t.Errorf("start: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the hanging command held on for %s", took)
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
