//go:build integration

package sandbox_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/pki"
	"github.com/baton-ha/baton/internal/rawconn"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/sandbox/sandboxtest"
)

// secureCluster is a secure sandbox with what its test reads it with.
type secureCluster struct {
	*sandbox.Cluster
	store *cluster.Store
}

func (c secureCluster) snapshot(t *testing.T) cluster.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := c.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// baton runs a baton command from the root namespace as id (PKI.Operator,
// PKI.Viewer), and returns its stdout, stderr and exit status.
func (c secureCluster) baton(t *testing.T, id sandbox.Identity, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sandboxtest.Binary(t), args...)
	cmd.Env = append(os.Environ(), c.CLIEnv(id)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("baton %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mysqlFromClient connects to addr from the client namespace as the application,
// with tc (nil: plain text), and runs SELECT 1.
func mysqlFromClient(c *sandbox.Cluster, addr string, tc *tls.Config) error {
	return mysqlExecFromClient(c, addr, tc, "")
}

// mysqlExecFromClient is mysqlFromClient running stmt instead ("" for SELECT 1).
func mysqlExecFromClient(c *sandbox.Cluster, addr string, tc *tls.Config, stmt string) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = c.AppUser, c.AppPassword, "tcp", addr
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	cfg.DialFunc = sandbox.DialContext(c.ClientNetNS)
	cfg.TLS = tc
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if stmt != "" {
		_, err := db.ExecContext(ctx, stmt)
		return err
	}
	return db.QueryRowContext(ctx, "SELECT 1").Scan(new(int))
}

// TestSecureSandbox runs a secure sandbox (`sandbox up --secure`: TLS everywhere,
// etcd with client certificates and a role per cluster, the web view on HTTPS with
// a password) through what a plain-text one does — a switchover, an etcd outage in
// failsafe mode, a failover — and checks what the security adds: MySQL refuses plain
// text and replication checks its source's certificate; etcd answers no client
// without a certificate, and an agent's certificate cannot touch another cluster's
// keys nor start an agent without the cluster's role (which drops a virtual IP it
// had kept from a dead agent); /failsafe refuses a wrong or replayed signature;
// renewed agent certificates are taken up without a restart or a failover once the
// old ones are revoked; and no password or private key appears in any output.
func TestSecureSandbox(t *testing.T) {
	sc := sandboxtest.Up(t, sandbox.Spec{Name: "sbx-sec", Nodes: 3, SemiSync: true, WithAgents: true, VIP: true, EtcdMembers: 3, Secure: true})
	root, err := sc.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	c := secureCluster{Cluster: sc, store: cluster.NewStore(root, sc.Name)}
	keepLogsOnFailure(t, sc)
	ctx := context.Background()
	p := sc.PKI
	var outputs []string // every output a secret must not appear in

	w := sc.NewWriter(10*time.Millisecond, time.Second)
	w.Start(ctx)
	defer w.Stop()
	sandboxtest.WaitFor(t, 10*time.Second, "writes acknowledged through the virtual IP over TLS", func() bool { return len(w.Acks()) > 20 })

	t.Run("mysql refuses plain text, and checks names", func(t *testing.T) {
		tc, err := sc.MySQLTLS()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range sc.Nodes {
			var on int
			qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := sandboxtest.RootDB(t, sc, n.Name).QueryRowContext(qctx, "SELECT @@require_secure_transport").Scan(&on)
			cancel()
			if err != nil || on != 1 {
				t.Errorf("%s: require_secure_transport = %d (%v), want ON", n.Name, on, err)
			}
			// The same account, the same password: refused in plain text (MariaDB
			// answers 1045, access denied; MySQL names the insecure transport),
			// taken over TLS.
			addr := net.JoinHostPort(n.IP, strconv.Itoa(n.Port))
			var me *mysql.MySQLError
			if err := mysqlFromClient(sc, addr, nil); err == nil || !(strings.Contains(err.Error(), "insecure transport") || errors.As(err, &me) && me.Number == 1045) {
				t.Errorf("%s: plain-text connection: %v; want it refused", n.Name, err)
			}
			if err := mysqlFromClient(sc, addr, tc); err != nil {
				t.Errorf("%s: TLS connection checked against the sandbox's CA: %v", n.Name, err)
			}
		}
		// The connection Baton reads packet by packet (rawconn: the salvage apply,
		// the exit watch) takes the same TLS, and the server's name is checked.
		for _, n := range sc.Nodes {
			mc, err := sc.AdminDialer().Config(net.JoinHostPort(n.IP, strconv.Itoa(n.Port)))
			if err != nil {
				t.Fatal(err)
			}
			dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			rc, err := rawconn.Dial(dctx, mc, 0)
			cancel()
			if err != nil {
				t.Errorf("%s: rawconn over TLS: %v", n.Name, err)
				continue
			}
			rc.SetDeadline(time.Now().Add(3 * time.Second))
			r, err := rc.Execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
			rc.Close()
			if err != nil || len(r.Values) != 1 || len(r.Values[0]) != 2 || len(r.Values[0][1].AsString()) == 0 {
				t.Errorf("%s: rawconn's session: %v, %v; want TLS", n.Name, r, err)
			}
			mc.TLS.ServerName = "not-" + n.Name
			dctx, cancel = context.WithTimeout(ctx, 3*time.Second)
			if rc, err := rawconn.Dial(dctx, mc, 0); err == nil || !strings.Contains(err.Error(), "certificate") {
				if rc != nil {
					rc.Close()
				}
				t.Errorf("%s: rawconn with a certificate for another name: %v, want it refused", n.Name, err)
			}
			cancel()
		}
		// The application's account cannot write on a replica: read_only applies.
		err = mysqlExecFromClient(sc, net.JoinHostPort(sc.Nodes[1].IP, "3306"), tc, "INSERT INTO sandbox.t(v) VALUES ('app on a replica')")
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("the application wrote on replica db2: %v; want it refused by read_only", err)
		}
		// Another CA's client does not take the server's certificate.
		other, _ := pki.NewCA("another ca", 0)
		pool := x509.NewCertPool()
		pool.AddCert(other.Cert)
		addr := net.JoinHostPort(sc.Nodes[0].IP, "3306")
		if err := mysqlFromClient(sc, addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("a client trusting another CA connected: %v", err)
		}
	})

	t.Run("replication over TLS, the source's certificate checked", func(t *testing.T) {
		snap := c.snapshot(t)
		for _, n := range sc.Nodes {
			if n.Name == snap.Primary.Node {
				continue
			}
			st := slaveStatus(t, sc, n.Name)
			if st["Master_SSL_Allowed"] != "Yes" || st["Master_SSL_Verify_Server_Cert"] != "Yes" || st["Master_SSL_CA_File"] != p.CA ||
				st["Slave_IO_Running"] != "Yes" {
				t.Errorf("%s replicates with SSL %q, verify %q, CA %q, IO %q (%s); want TLS with the source's certificate checked",
					n.Name, st["Master_SSL_Allowed"], st["Master_SSL_Verify_Server_Cert"], st["Master_SSL_CA_File"], st["Slave_IO_Running"], st["Last_IO_Error"])
			}
		}
	})

	t.Run("etcd answers no client without a certificate", func(t *testing.T) {
		anon, err := sc.EtcdClientAs(sandbox.Identity{})
		if err != nil {
			t.Fatal(err)
		}
		defer anon.Close()
		// Nor a plain-text one, nor one whose certificate another CA signed.
		plain, err := clientv3.New(clientv3.Config{Endpoints: []string{strings.Replace(sc.Etcd[0], "unixs://", "unix://", 1)},
			DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		other, _ := pki.NewCA("another ca", 0)
		pair, _ := other.Issue(pki.Spec{CommonName: "root", Client: true})
		dir := t.TempDir()
		forged := sandbox.Identity{User: "root", Cert: filepath.Join(dir, "c.crt"), Key: filepath.Join(dir, "c.key")}
		if err := pair.Write(forged.Cert, forged.Key); err != nil {
			t.Fatal(err)
		}
		fc, err := sc.EtcdClientAs(forged)
		if err != nil {
			t.Fatal(err)
		}
		defer fc.Close()
		// etcd ends the handshake of each: the client retries until its deadline.
		// Each call has a deadline of its own (one shared deadline, spent by the
		// first, would fail the others without asking etcd), and they run at once.
		primaryKey := "/baton/" + sc.Name + "/primary"
		attempts := map[string]func(context.Context) error{
			"a client without a certificate read etcd": func(c context.Context) error {
				_, err := anon.Get(c, "/baton/", clientv3.WithPrefix())
				return err
			},
			"a client without a certificate wrote etcd": func(c context.Context) error {
				_, err := anon.Put(c, primaryKey, `{"node":"db3"}`)
				return err
			},
			"a plain-text client read etcd": func(c context.Context) error {
				_, err := plain.Get(c, "/baton/", clientv3.WithPrefix())
				return err
			},
			"a plain-text client wrote etcd": func(c context.Context) error {
				_, err := plain.Put(c, primaryKey, `{"node":"db3"}`)
				return err
			},
			"a certificate for root signed by another CA read etcd": func(c context.Context) error {
				_, err := fc.Get(c, "/baton/", clientv3.WithPrefix())
				return err
			},
			"a certificate for root signed by another CA wrote etcd": func(c context.Context) error {
				_, err := fc.Put(c, primaryKey, `{"node":"db3"}`)
				return err
			},
		}
		errs := make(chan string, len(attempts))
		for what, f := range attempts {
			go func() {
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				if f(actx) == nil {
					errs <- what
					return
				}
				errs <- ""
			}()
		}
		for range attempts {
			if what := <-errs; what != "" {
				t.Error(what)
			}
		}
		if p := c.snapshot(t).Primary; p.Node != "db1" {
			t.Errorf("primary %s after the refused writes", p.Node)
		}
	})

	t.Run("an agent's certificate reaches its own cluster's keys only", func(t *testing.T) {
		// Another cluster in the same etcd, written by root.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		otherKey, otherVal := "/baton/shop/primary", `{"node":"db7","epoch":3}`
		if _, err := root.Put(rctx, otherKey, otherVal); err != nil {
			t.Fatal(err)
		}
		a, err := sc.EtcdClientAs(sc.Nodes[0].NodeIdentity())
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if _, err := a.Get(rctx, "/baton/"+sc.Name+"/primary"); err != nil {
			t.Fatalf("db1's agent reading its own cluster: %v", err)
		}
		for what, op := range map[string]func() error{
			"overwrite": func() error { _, err := a.Put(rctx, otherKey, `{"node":"evil"}`); return err },
			"delete":    func() error { _, err := a.Delete(rctx, otherKey); return err },
			"read":      func() error { _, err := a.Get(rctx, "/baton/shop/", clientv3.WithPrefix()); return err },
			"txn": func() error {
				_, err := a.Txn(rctx).Then(clientv3.OpPut(otherKey, "x")).Commit()
				return err
			},
		} {
			if err := op(); err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("db1's agent: %s cluster shop's primary: %v; want permission denied", what, err)
			}
		}
		if got, err := root.Get(rctx, otherKey); err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != otherVal {
			t.Errorf("cluster shop's primary after the refused writes: %v %v", got, err)
		}
		if _, err := root.Delete(rctx, "/baton/shop/", clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
		// The viewer reads, and writes nothing.
		v, err := sc.EtcdClientAs(p.Viewer)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if _, err := v.Get(rctx, "/baton/", clientv3.WithPrefix()); err != nil {
			t.Errorf("the viewer reading: %v", err)
		}
		if _, err := v.Put(rctx, "/baton/"+sc.Name+"/config", `{"paused":true}`); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the viewer writing: %v; want permission denied", err)
		}
	})

	t.Run("an agent without the cluster's role does not start", func(t *testing.T) {
		n := sc.Nodes[1]
		before := c.snapshot(t)
		out, err := viewerAgent(t, ctx, sc, n, false)
		outputs = append(outputs, out)
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Fatalf("an agent with the viewer's certificate: %v; want exit status 2\n%s", err, out)
		}
		for _, want := range []string{`etcd user "baton-viewer" lacks what the agent needs on /baton/` + sc.Name + "/", "put:", "grant-permission baton-" + sc.Name} {
			if !strings.Contains(out, want) {
				t.Errorf("its error does not say %q:\n%s", want, out)
			}
		}
		after := c.snapshot(t)
		if after.Primary != before.Primary || after.Leader != before.Leader {
			t.Errorf("the refused agent changed the cluster: %+v -> %+v", before.Primary, after.Primary)
		}
	})

	t.Run("failsafe refuses a wrong or replayed signature", func(t *testing.T) {
		n := sc.Nodes[1]
		req := agent.FailsafeRequest{Cluster: sc.Name, From: "db1", Epoch: c.snapshot(t).Primary.Epoch, Nonce: "sbx-sec-replay", Sent: time.Now().UTC()}
		body, _ := json.Marshal(req)
		mac := hmac.New(sha256.New, []byte(sc.PeerSecret))
		mac.Write([]byte("baton failsafe request\n"))
		mac.Write(body)
		good := hex.EncodeToString(mac.Sum(nil))
		post := func(sig string) (int, string) {
			t.Helper()
			hc := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: sandbox.DialContext(sc.ClientNetNS)}, Timeout: 5 * time.Second}
			r, _ := http.NewRequest(http.MethodPost, "http://"+n.AgentHTTP+agent.FailsafePath, bytes.NewReader(body))
			r.Header.Set(agent.SignatureHeader, sig)
			resp, err := hc.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		wrong := strings.Repeat("0", len(good))
		if code, b := post(wrong); code != http.StatusUnauthorized {
			t.Errorf("a wrong signature: HTTP %d %s; want 401", code, b)
		}
		// Signed (etcd answers db2, so the answer is no and nothing is promised).
		if code, b := post(good); code != http.StatusOK || !strings.Contains(b, `"etcd_reachable":true`) {
			t.Errorf("a signed check: HTTP %d %s; want 200 and etcd reachable", code, b)
		}
		if code, b := post(good); code != http.StatusConflict || !strings.Contains(b, "answered already") {
			t.Errorf("the same check again: HTTP %d %s; want 409", code, b)
		}
		var st struct {
			Failsafe struct {
				State agent.FailsafeState `json:"state"`
			} `json:"failsafe"`
		}
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		b, err := sc.AgentStatus(sctx, n.Name)
		if err != nil || json.Unmarshal(b, &st) != nil || st.Failsafe.State != agent.FailsafeStandby {
			t.Errorf("%s's failsafe state after the refused checks: %q (%v); want %q", n.Name, st.Failsafe.State, err, agent.FailsafeStandby)
		}
	})

	t.Run("switchover", func(t *testing.T) {
		// The viewer cannot ask for one.
		_, stderr, code := c.baton(t, p.Viewer, "switchover", "--to", "db2", "--yes")
		outputs = append(outputs, stderr)
		if code == 0 || !strings.Contains(stderr, "permission denied") {
			t.Fatalf("switchover as the viewer: exit %d: %s; want permission denied", code, stderr)
		}
		out, stderr, code := c.baton(t, p.Operator, "switchover", "--to", "db2", "--yes", "--json")
		outputs = append(outputs, out, stderr)
		if code != 0 {
			t.Fatalf("switchover to db2: exit %d: %s %s", code, out, stderr)
		}
		sandboxtest.WaitFor(t, 15*time.Second, "db2 the primary, holding the leader key", func() bool {
			s := c.snapshot(t)
			return s.Primary.Node == "db2" && s.Leader == "db2"
		})
		after := time.Now()
		sandboxtest.WaitFor(t, 10*time.Second, "writes acknowledged by db2", func() bool {
			_, ok := w.FirstAckAfter(after, uint32(sc.Nodes[0].ServerID))
			return ok
		})
	})

	t.Run("etcd outage in failsafe mode", func(t *testing.T) {
		before := c.snapshot(t)
		if err := sc.StopEtcd(ctx, ""); err != nil {
			t.Fatal(err)
		}
		from := time.Now()
		time.Sleep(8 * time.Second)
		to := time.Now()
		if err := sc.StartEtcd(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if n := w.RefusedBetween(from, to); n > 0 {
			t.Errorf("%d writes refused during the etcd outage: the primary was fenced", n)
		}
		if a, ok := w.FirstAckAfter(from.Add(5*time.Second), 0); !ok || a.At.After(to) {
			t.Error("no write acknowledged 5 s into the etcd outage")
		}
		sandboxtest.WaitFor(t, 20*time.Second, "the same primary of record, holding the leader key, after the outage", func() bool {
			s := c.snapshot(t)
			return s.Primary == before.Primary && s.Leader == before.Primary.Node
		})
	})

	t.Run("renewed agent certificates are taken up without a restart", func(t *testing.T) {
		dir := t.TempDir()
		oldID := sandbox.Identity{User: sc.Nodes[0].EtcdUser, Cert: filepath.Join(dir, "old.crt"), Key: filepath.Join(dir, "old.key")}
		copyFile(t, sc.Nodes[0].EtcdCert, oldID.Cert)
		copyFile(t, sc.Nodes[0].EtcdKey, oldID.Key)
		before := c.snapshot(t)
		pids := map[string]int{}
		for _, n := range sc.Nodes {
			pids[n.Name] = n.AgentPID
		}
		logSize := map[string]int64{}
		for _, n := range sc.Nodes {
			if fi, err := os.Stat(n.AgentLog); err == nil {
				logSize[n.Name] = fi.Size()
			}
		}
		old, err := sc.RenewAgentCertificates()
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Revoke(old...); err != nil {
			t.Fatal(err)
		}
		oc, err := sc.EtcdClientAs(oldID)
		if err != nil {
			t.Fatal(err)
		}
		defer oc.Close()
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = oc.Get(rctx, "/baton/"+sc.Name+"/primary")
		cancel()
		if err == nil {
			t.Fatal("a revoked certificate still reads etcd")
		}
		// Every connection the agents hold is made again: each member restarted in
		// turn (the quorum kept). An agent that presented its old certificate would
		// be refused and lose its session.
		for _, m := range sc.EtcdMembers {
			if err := sc.StopEtcd(ctx, m.Name); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if err := sc.StartEtcd(ctx, m.Name); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second)
		}
		time.Sleep(6 * time.Second) // two session TTLs
		after := c.snapshot(t)
		if after.Primary != before.Primary || after.Leader != before.Leader {
			t.Errorf("the renewal moved the primary: %+v -> %+v", before.Primary, after.Primary)
		}
		for _, n := range sc.Nodes {
			// A live lease now, 6 s (two TTLs) after the last member's restart, was
			// renewed over a connection made after every member restarted: with the
			// new certificate, since the old one is revoked. A new lease is no failure
			// in itself: a member's restart can make the primary's renewal late on a
			// loaded machine, and a replica that promised to hold off failovers then
			// makes a new session (failsafe mode).
			if _, ok := after.Nodes[n.Name]; !ok || after.NodeLeases[n.Name] == 0 {
				t.Errorf("%s's agent has no etcd session after the renewal (lease %x before)", n.Name, before.NodeLeases[n.Name])
			} else if after.NodeLeases[n.Name] != before.NodeLeases[n.Name] {
				t.Logf("%s's agent made a new session meanwhile (lease %x -> %x)", n.Name, before.NodeLeases[n.Name], after.NodeLeases[n.Name])
			}
			if b, err := os.ReadFile(n.AgentLog); err == nil {
				for _, refused := range []string{"bad certificate", "certificate revoked", "handshake failed"} {
					if strings.Contains(string(b[min(logSize[n.Name], int64(len(b))):]), refused) {
						t.Errorf("%s's agent log says %q after the renewal", n.Name, refused)
					}
				}
			}
			cur, _ := sc.Node(n.Name)
			if cur.AgentPID != pids[n.Name] || !processAlive(cur.AgentPID) {
				t.Errorf("%s's agent was restarted or died", n.Name)
			}
		}
	})

	t.Run("failover", func(t *testing.T) {
		old := c.snapshot(t).Primary
		oldNode, err := sc.Node(old.Node)
		if err != nil {
			t.Fatal(err)
		}
		fault := time.Now()
		if err := sc.Fault(ctx, old.Node, sandbox.Kill); err != nil {
			t.Fatal(err)
		}
		sandboxtest.WaitFor(t, 30*time.Second, "a new primary holding the leader key", func() bool {
			s := c.snapshot(t)
			return s.Primary.Node != old.Node && s.Primary.Epoch > old.Epoch && s.Leader == s.Primary.Node
		})
		sandboxtest.WaitFor(t, 15*time.Second, "writes acknowledged by the new primary", func() bool {
			_, ok := w.FirstAckAfter(fault, uint32(oldNode.ServerID))
			return ok
		})
		w.Stop()
		newPrimary := c.snapshot(t).Primary.Node
		db := sandboxtest.RootDB(t, sc, newPrimary)
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		lost, err := w.Lost(lctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes lost in the failover: %v", len(lost), lost)
		}
		t.Logf("failover from %s to %s: writes resumed %s after the kill", old.Node, newPrimary, firstAfter(w, fault, uint32(oldNode.ServerID)))
		// Its salvage step works as in plain text: the coordinator asks the old
		// primary's agent, signed, and it reads its binary logs. With semi-sync
		// nothing acknowledged is left to apply (the apply over TLS is not exercised
		// here); a write in flight at the kill may be in the old primary's binary log
		// and on no replica, and the step says it stays behind, never acknowledged.
		var ev *cluster.Event
		sandboxtest.WaitFor(t, 20*time.Second, "the failover in the history", func() bool {
			hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			hist, err := c.store.History(hctx, 10)
			for i := range hist {
				if err == nil && hist[i].Kind == cluster.EventFailover && hist[i].From == old.Node && !hist[i].Started.Before(fault) {
					ev = &hist[i]
					return true
				}
			}
			return false
		})
		for _, st := range ev.Steps {
			if st.Name == "salvage" {
				t.Logf("salvage step: %s, note %q, error %q; record %+v", st.Took.Round(time.Millisecond), st.Note, st.Error, ev.Salvage)
				if st.Error != "" && !strings.Contains(st.Error, "never acknowledged: semi-sync was on") {
					t.Errorf("the failover's salvage step failed on a secure sandbox: %s", st.Error)
				}
			}
		}
	})

	t.Run("an agent refused by etcd drops the virtual IP it kept", func(t *testing.T) {
		// The primary's agent dies and leaves the virtual IP configured; the next
		// agent there reads etcd (the viewer's certificate may), which names the node
		// the primary of record: it keeps the address, then fails the permission
		// check. No reconciler of its will ever fence the node: the address must go.
		holders := func() string {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			hs, err := sc.VIPHolders(qctx)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Join(hs, ",")
		}
		snap := c.snapshot(t)
		prim, lease := snap.Primary, snap.NodeLeases[snap.Primary.Node]
		n, err := sc.Node(prim.Node)
		if err != nil {
			t.Fatal(err)
		}
		sandboxtest.WaitFor(t, 5*time.Second, prim.Node+" holding the virtual IP", func() bool { return holders() == prim.Node })
		if err := sc.Fault(ctx, n.Name, sandbox.KillAgent); err != nil {
			t.Fatal(err)
		}
		out, err := viewerAgent(t, ctx, sc, *n, true)
		outputs = append(outputs, out)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(out, `etcd user "baton-viewer" lacks`) {
			t.Errorf("an agent with the viewer's certificate on %s: %v; want exit status 2, refused by etcd\n%s", n.Name, err, out)
		}
		if !strings.Contains(out, "left configured stays") {
			t.Errorf("the refused agent did not keep the leftover virtual IP first: the test proves nothing\n%s", out)
		}
		if h := holders(); h != "" {
			t.Errorf("the virtual IP after the refused agent: held by %q; want no holder", h)
		}
		if err := sc.Fault(ctx, n.Name, sandbox.StartAgent); err != nil {
			t.Fatal(err)
		}
		// Its own agent again (a new session: the killed one's lease outlives it by a
		// few seconds), taking the address back.
		sandboxtest.WaitFor(t, 15*time.Second, n.Name+"'s own agent back in a new session, holding the virtual IP, "+n.Name+" still the primary", func() bool {
			s := c.snapshot(t)
			_, published := s.Nodes[n.Name]
			return published && s.NodeLeases[n.Name] != 0 && s.NodeLeases[n.Name] != lease && s.Primary == prim && holders() == n.Name
		})
	})

	t.Run("the web view: HTTPS and a password", func(t *testing.T) {
		hc, err := sc.WebClient()
		if err != nil {
			t.Fatal(err)
		}
		get := func(user, password string) (int, string) {
			t.Helper()
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(rctx, http.MethodGet, sc.Web.URL, nil)
			if user != "" {
				req.SetBasicAuth(user, password)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := get("", ""); code != http.StatusUnauthorized {
			t.Errorf("the web view without a password: HTTP %d; want 401", code)
		}
		if code, _ := get(sc.Web.User, "not-"+sc.Web.Password); code != http.StatusUnauthorized {
			t.Errorf("the web view with a wrong password: HTTP %d; want 401", code)
		}
		code, page := get(sc.Web.User, sc.Web.Password)
		if code != http.StatusOK || !strings.Contains(page, sc.Name) {
			t.Fatalf("the web view: HTTP %d; want the page of cluster %s", code, sc.Name)
		}
		outputs = append(outputs, page)
		// Plain HTTP on the same port gets no page.
		phc := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: sandbox.DialContext(sc.ClientNetNS)}, Timeout: 5 * time.Second}
		if resp, err := phc.Get(strings.Replace(sc.Web.URL, "https://", "http://", 1)); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), sc.Name) {
				t.Error("the web view answered plain HTTP with the page")
			}
		}
	})

	t.Run("outputs", func(t *testing.T) {
		for _, args := range [][]string{{"status", "--json"}, {"status"}, {"history", "--json"}, {"policy", "show", "--json"}} {
			out, stderr, code := c.baton(t, p.Viewer, args...)
			if code != 0 {
				t.Errorf("baton %v as the viewer: exit %d: %s", args, code, stderr)
			}
			outputs = append(outputs, out, stderr)
		}
		for _, n := range sc.Nodes {
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			b, err := sc.AgentStatus(sctx, n.Name)
			cancel()
			if err == nil {
				outputs = append(outputs, string(b))
			}
		}
	})

	t.Run("no secret in any output", func(t *testing.T) { noSecrets(t, c, outputs) })
}

// noSecrets fails the test when a password of the sandbox, its peer secret or a
// private key's material appears in outputs, in an agent's log, in the web view's
// log or in etcd's keys (the history included).
func noSecrets(t *testing.T, c secureCluster, outputs []string) {
	t.Helper()
	sc := c.Cluster
	corpus := map[string]string{}
	for i, o := range outputs {
		corpus[fmt.Sprintf("output %d", i+1)] = o
	}
	for _, n := range sc.Nodes {
		b, err := os.ReadFile(n.AgentLog)
		if err != nil {
			t.Fatal(err)
		}
		corpus[n.Name+"'s agent log"] = string(b)
	}
	if b, err := os.ReadFile(sc.Web.Log); err == nil {
		corpus["the web view's log"] = string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.store.Client().Get(ctx, "/baton/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		corpus["etcd "+string(kv.Key)] = string(kv.Value)
	}
	secrets := map[string]string{"the admin password": sc.AdminPassword, "the replication password": sc.ReplPassword,
		"the application's password": sc.AppPassword, "the peer secret": sc.PeerSecret, "the web view's password": sc.Web.Password}
	var keys []string
	_ = filepath.Walk(sc.Dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && strings.HasSuffix(path, ".key") {
			keys = append(keys, path)
		}
		return nil
	})
	if len(keys) < 10 {
		t.Fatalf("found %d private keys in the sandbox, want one per member, node server, agent, identity", len(keys))
	}
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		if block == nil {
			t.Fatalf("%s: no PEM", k)
		}
		// A run of the key's base64: any part of it printed would show.
		body := strings.ReplaceAll(string(b[bytes.IndexByte(b, '\n')+1:]), "\n", "")
		secrets["the private key "+k] = body[8:40]
	}
	pemKey := regexp.MustCompile(`PRIVATE KEY`)
	for where, text := range corpus {
		for what, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("%s shows %s", where, what)
			}
		}
		if pemKey.MatchString(text) {
			t.Errorf("%s shows a private key", where)
		}
	}
	t.Logf("no secret in %d outputs, logs and etcd keys (%d secrets looked for)", len(corpus), len(secrets))
}

// viewerAgent runs n's agent configuration with the viewer's etcd certificate
// (read-only: the agent must refuse to start) on another HTTP port and state
// directory, in n's namespace; keepVIP keeps its vip section. It returns the
// agent's output and how it ended.
func viewerAgent(t *testing.T, ctx context.Context, sc *sandbox.Cluster, n sandbox.Node, keepVIP bool) (string, error) {
	t.Helper()
	b, err := os.ReadFile(n.AgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	y = strings.ReplaceAll(y, n.EtcdCert, sc.PKI.Viewer.Cert)
	y = strings.ReplaceAll(y, n.EtcdKey, sc.PKI.Viewer.Key)
	y = strings.Replace(y, net.JoinHostPort(n.IP, strconv.Itoa(sandbox.AgentHTTPPort)), net.JoinHostPort(n.IP, "9199"), 1)
	y = strings.Replace(y, filepath.Join(n.Dir, "agent-state"), t.TempDir(), 1)
	if i := strings.Index(y, "\nvip:"); i >= 0 && !keepVIP {
		y = y[:i+1]
	}
	cfg := filepath.Join(t.TempDir(), "viewer-agent.yaml")
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(actx, "nsenter", "--net=/run/netns/"+n.NetNS, "--", sandboxtest.Binary(t), "agent", "--config", cfg).CombinedOutput()
	return string(out), err
}

func slaveStatus(t *testing.T, c *sandbox.Cluster, node string) map[string]string {
	t.Helper()
	db := sandboxtest.RootDB(t, c, node)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := map[string]string{}
	if !rows.Next() {
		t.Fatalf("%s: no replication configured", node)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	for i, col := range cols {
		out[col] = vals[i].String
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func firstAfter(w *sandbox.Writer, from time.Time, notServer uint32) time.Duration {
	a, ok := w.FirstAckAfter(from, notServer)
	if !ok {
		return -1
	}
	return a.At.Sub(from).Round(time.Millisecond)
}

// keepLogsOnFailure copies the agents' logs out of the sandbox when the test fails
// (the sandbox goes with the test).
func keepLogsOnFailure(t *testing.T, c *sandbox.Cluster) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		keep := filepath.Join(os.TempDir(), "baton-test-logs", c.Name)
		_ = os.MkdirAll(keep, 0o755)
		for _, n := range c.Nodes {
			if b, err := os.ReadFile(n.AgentLog); err == nil {
				_ = os.WriteFile(filepath.Join(keep, n.Name+"-agent.log"), b, 0o644)
			}
		}
		for _, m := range c.EtcdMembers {
			if b, err := os.ReadFile(filepath.Join(m.Dir, "etcd.log")); err == nil {
				_ = os.WriteFile(filepath.Join(keep, m.Name+".log"), b, 0o644)
			}
		}
		t.Logf("logs kept in %s", keep)
	})
}
