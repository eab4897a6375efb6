package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Up brings up a sandbox: namespaces and bridge, etcd, one mariadbd per node on its own
// filesystem, GTID replication from db1 to the others. Leftovers of an earlier crashed
// run of the same name are removed first; a sandbox of that name that is running is
// refused with ErrRunning. On failure nothing is left behind.
func Up(ctx context.Context, spec Spec, log *zap.Logger) (*Cluster, error) {
	if spec.Nodes == 0 {
		spec.Nodes = 3
	}
	if spec.EtcdMembers == 0 {
		spec.EtcdMembers = 1
	}
	if spec.DiskMB == 0 {
		spec.DiskMB = 256
	}
	if spec.Root == "" {
		spec.Root = DefaultRoot
	}
	if log == nil {
		log = zap.NewNop()
	}
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if err := Requirements(); err != nil {
		return nil, err
	}
	dir := Dir(spec.Root, spec.Name)
	if old, err := Open(spec.Root, spec.Name, log); err == nil && old.running() {
		return nil, fmt.Errorf("%w: sandbox %q is up; stop it with `baton-lab sandbox down --name %s`", ErrRunning, spec.Name, spec.Name)
	}
	if err := removeLeftovers(ctx, spec.Root, spec.Name, log); err != nil {
		return nil, fmt.Errorf("remove leftovers of an earlier run: %w", err)
	}

	c := newCluster(spec, dir, log)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := c.up(ctx, spec); err != nil {
		// Best effort: the caller gets the first error, the machine gets cleaned.
		if derr := c.Down(context.WithoutCancel(ctx)); derr != nil {
			log.Warn("clean up after a failed up", zap.Error(derr))
		}
		return nil, err
	}
	log.Info("sandbox up", zap.Int("nodes", len(c.Nodes)), zap.Duration("took", time.Since(start)))
	return c, nil
}

func newCluster(spec Spec, dir string, log *zap.Logger) *Cluster {
	c := &Cluster{
		Name:          spec.Name,
		Dir:           dir,
		ClientNetNS:   nsName(spec.Name, "client"),
		ClientIP:      clientIP,
		BridgeNetNS:   nsName(spec.Name, "net"),
		AdminUser:     "baton",
		AdminPassword: secret(),
		AppUser:       "app",
		AppPassword:   secret(),
		ReplUser:      "repl",
		ReplPassword:  secret(),
		PeerSecret:    secret(),
		NoFailsafe:    spec.NoFailsafe,
		ManualRejoin:  spec.ManualRejoin,
		AgentYAML:     spec.AgentYAML,
		RebuildRate:   spec.RebuildMaxRate,
		SemiSync:      spec.SemiSync,
		WithAgents:    spec.WithAgents,
		HookScript:    spec.HookScript,
		Binary:        spec.Binary,
		LabBinary:     spec.LabBinary,
		Created:       time.Now().UTC(),
		log:           log.With(zap.String("sandbox", spec.Name)),
	}
	if spec.VIP {
		c.VIP = vipCIDR
	}
	scheme := "http://"
	if spec.Secure {
		c.PKI = newPKI(dir, spec.Name)
		scheme = "https://"
		if spec.WithAgents {
			c.Web = &WebView{User: "baton", Password: secret(), Log: filepath.Join(dir, "web.log"),
				URL: "https://" + net.JoinHostPort(clientIP, strconv.Itoa(WebPort)) + "/"}
		}
	}
	for i := 0; i < spec.EtcdMembers; i++ {
		name := fmt.Sprintf("etcd%d", i+1)
		m := EtcdMember{
			Name:      name,
			NetNS:     nsName(spec.Name, name),
			IP:        etcdIP(i),
			ClientURL: scheme + etcdIP(i) + ":2379",
			PeerURL:   scheme + etcdIP(i) + ":2380",
			Dir:       filepath.Join(dir, name),
		}
		m.Socket = filepath.Join(m.Dir, "etcd.sock")
		if c.PKI != nil {
			m.Cert, m.Key = filepath.Join(c.PKI.Dir, name+".crt"), filepath.Join(c.PKI.Dir, name+".key")
		}
		c.EtcdMembers = append(c.EtcdMembers, m)
		c.Etcd = append(c.Etcd, m.Endpoint())
		c.EtcdInternal = append(c.EtcdInternal, m.ClientURL)
	}
	for i := 0; i < spec.Nodes; i++ {
		name := fmt.Sprintf("db%d", i+1)
		nd := filepath.Join(dir, name)
		n := Node{
			Name:       name,
			NetNS:      nsName(spec.Name, name),
			IP:         nodeIP(i),
			Port:       3306,
			ServerID:   i + 1,
			Dir:        nd,
			Socket:     filepath.Join(nd, "mysqld.sock"),
			Mount:      filepath.Join(nd, "disk"),
			Image:      filepath.Join(nd, "disk.img"),
			ErrorLog:   filepath.Join(nd, "error.log"),
			BridgePort: "p-" + name,
			Role:       "replica",
		}
		n.Datadir = filepath.Join(n.Mount, "data")
		if i == 0 {
			n.Role = "primary"
		}
		if c.PKI != nil {
			n.ServerCert, n.ServerKey = filepath.Join(nd, "tls", "server.crt"), filepath.Join(nd, "tls", "server.key")
			n.EtcdUser = EtcdNodeUser(spec.Name, name)
			n.EtcdCert, n.EtcdKey = filepath.Join(c.PKI.Dir, name+"-etcd.crt"), filepath.Join(c.PKI.Dir, name+"-etcd.key")
		}
		c.Nodes = append(c.Nodes, n)
	}
	return c
}

func (c *Cluster) up(ctx context.Context, spec Spec) error {
	tmpl, err := ensureTemplate(ctx, spec.Root)
	if err != nil {
		return err
	}
	if err := makeBridge(ctx, c.BridgeNetNS); err != nil {
		return err
	}
	if err := makeHost(ctx, c.BridgeNetNS, c.ClientNetNS, "p-client", c.ClientIP); err != nil {
		return err
	}
	for _, m := range c.EtcdMembers {
		if err := makeHost(ctx, c.BridgeNetNS, m.NetNS, "p-"+m.Name, m.IP); err != nil {
			return err
		}
	}
	for _, n := range c.Nodes {
		if err := makeHost(ctx, c.BridgeNetNS, n.NetNS, n.BridgePort, n.IP); err != nil {
			return err
		}
	}
	// Save early so that a crash from here on leaves a state file to clean up from.
	if err := c.save(); err != nil {
		return err
	}
	if c.PKI != nil {
		if err := c.makePKI(ctx); err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
	}
	for i := range c.EtcdMembers {
		if err := c.startEtcdMember(&c.EtcdMembers[i]); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for i := range c.Nodes {
		n := &c.Nodes[i]
		g.Go(func() error {
			if err := prepareDisk(gctx, n, tmpl, spec.DiskMB); err != nil {
				return fmt.Errorf("%s: prepare disk: %w", n.Name, err)
			}
			return c.startServer(gctx, n)
		})
	}
	g.Go(func() error { return c.waitEtcd(gctx, 60*time.Second) })
	err = g.Wait()
	if serr := c.save(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	if c.PKI != nil {
		if err := c.setupEtcdAuth(ctx); err != nil {
			return err
		}
	}
	primary := &c.Nodes[0]
	if err := c.setupPrimary(ctx, primary); err != nil {
		return fmt.Errorf("set up primary %s: %w", primary.Name, err)
	}
	for i := 1; i < len(c.Nodes); i++ {
		if err := c.follow(ctx, &c.Nodes[i], primary); err != nil {
			return fmt.Errorf("set up replica %s: %w", c.Nodes[i].Name, err)
		}
	}
	for i := 1; i < len(c.Nodes); i++ {
		if err := waitReplicated(ctx, primary, &c.Nodes[i], 20*time.Second); err != nil {
			return err
		}
	}
	if err := c.makeWritable(ctx, primary); err != nil {
		return err
	}
	if c.WithAgents {
		if err := c.save(); err != nil {
			return err
		}
		if err := c.startAgents(ctx); err != nil {
			return err
		}
		if c.Web != nil {
			if err := c.startWeb(ctx); err != nil {
				return err
			}
		}
		if spec.HAProxy {
			if err := c.startHAProxy(ctx); err != nil {
				return err
			}
		}
	}
	return c.save()
}

// running says whether any process of the sandbox is still alive.
func (c *Cluster) running() bool {
	for _, n := range c.Nodes {
		if alive(n.PID) {
			return true
		}
	}
	for _, m := range c.EtcdMembers {
		if alive(m.PID) {
			return true
		}
	}
	return false
}

// Down stops every process of the sandbox and removes its namespaces, mounts, loop
// devices and directory. It goes on past errors and returns the first.
func (c *Cluster) Down(ctx context.Context) error {
	var errs []error
	var pids []int
	for _, n := range c.Nodes {
		pids = append(pids, n.PID, n.AgentPID)
	}
	for _, m := range c.EtcdMembers {
		pids = append(pids, m.PID)
	}
	for _, p := range c.Holders {
		pids = append(pids, p)
	}
	if c.HAProxy != nil {
		pids = append(pids, c.HAProxy.PID)
	}
	if c.Web != nil {
		pids = append(pids, c.Web.PID)
	}
	for _, ns := range c.namespaces() {
		pids = append(pids, namespacePIDs(ctx, ns)...)
	}
	killAll(ctx, pids)
	for _, n := range c.Nodes {
		if err := unmount(ctx, n.Mount, n.Image); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range c.namespaces() {
		if err := run(ctx, "ip", "netns", "del", ns); err != nil && nsExists(ns) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killAll kills the given processes, all at once, and waits for them.
func killAll(ctx context.Context, pids []int) {
	seen := map[int]bool{}
	for _, p := range pids {
		if p > 0 && !seen[p] && p != os.Getpid() {
			seen[p] = true
			_ = kill(ctx, p)
		}
	}
}

func (c *Cluster) namespaces() []string {
	nss := []string{c.ClientNetNS}
	for _, m := range c.EtcdMembers {
		nss = append(nss, m.NetNS)
	}
	for _, n := range c.Nodes {
		nss = append(nss, n.NetNS)
	}
	// The bridge last: deleting it first would leave the veth ends behind for a moment.
	return append(nss, c.BridgeNetNS)
}

func nsExists(ns string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", ns))
	return err == nil
}

// unmount unmounts a node's filesystem and detaches its loop device. A lazy unmount
// is the fallback when something still holds it: the processes are gone by now, so
// the kernel releases it at once.
func unmount(ctx context.Context, mount, image string) error {
	if isMounted(mount) {
		if err := run(ctx, "umount", mount); err != nil {
			if err := run(ctx, "umount", "-l", mount); err != nil {
				return err
			}
		}
	}
	out, _ := output(ctx, "losetup", "-j", image)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if dev, _, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(dev, "/dev/loop") {
			_ = run(ctx, "losetup", "-d", dev)
		}
	}
	return nil
}

func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// removeLeftovers cleans what a crashed run of the sandbox called name left: processes
// in its namespaces, its mounts and loop devices, namespaces and directory.
func removeLeftovers(ctx context.Context, root, name string, log *zap.Logger) error {
	dir := Dir(root, name)
	if old, err := Open(root, name, log); err == nil {
		log.Info("removing leftovers of an earlier run", zap.String("sandbox", name))
		if err := old.Down(ctx); err != nil {
			return err
		}
	}
	// Namespaces and mounts not recorded (a crash before the state file was written).
	prefix := nsName(name, "")
	nss := sandboxNamespaces(name)
	for _, ns := range nss {
		killAll(ctx, namespacePIDs(ctx, ns))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		nd := filepath.Join(dir, e.Name())
		if err := unmount(ctx, filepath.Join(nd, "disk"), filepath.Join(nd, "disk.img")); err != nil {
			return err
		}
	}
	for _, ns := range nss {
		if ns == prefix+"net" {
			continue
		}
		_ = run(ctx, "ip", "netns", "del", ns)
	}
	if nsExists(prefix + "net") {
		_ = run(ctx, "ip", "netns", "del", prefix+"net")
	}
	return os.RemoveAll(dir)
}

func secret() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}
