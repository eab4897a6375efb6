//go:build integration

package vip

// Helpers for tests that need network namespaces. Every namespace is named
// vipt-<pid>-<tag>, uses addresses in 198.18.0.0/15 only, and is deleted in
// t.Cleanup; namespaces left by a test process that died are deleted before
// the first new one is made.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/baton-ha/baton/internal/testenv"
)

const nsPrefix = "vipt-"

var sweepOnce sync.Once

// requireNetnsPrivileges skips the test (fails it under make test, see
// internal/testenv) when it cannot make namespaces.
func requireNetnsPrivileges(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Need(t, fmt.Errorf("iproute2's ip in PATH to build network namespaces: %v", err))
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("read capabilities: %v", err)
	}
	for _, c := range []struct {
		bit  int
		name string
	}{{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_NET_RAW, "CAP_NET_RAW"}} {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			testenv.Need(t, fmt.Errorf("%s (run as root) to make network namespaces", c.name))
		}
	}
}

// ip runs the ip command and fails the test on error.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := ipOut(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ipOut(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// sweepLeftovers deletes vipt- namespaces whose creating process is gone.
func sweepLeftovers(t *testing.T) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return // no namespace was ever named on this host
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); err == unix.ESRCH {
			if _, err := ipOut("netns", "del", name); err != nil {
				t.Logf("delete leftover namespace: %v", err)
			} else {
				t.Logf("deleted leftover namespace %s", name)
			}
		}
	}
}

// newNS makes a namespace named vipt-<pid>-<tag> with lo up.
func newNS(t *testing.T, tag string) string {
	t.Helper()
	requireNetnsPrivileges(t)
	sweepOnce.Do(func() { sweepLeftovers(t) })
	name := fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), tag)
	_, _ = ipOut("netns", "del", name) // from an earlier run of this test in this process
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if _, err := ipOut("netns", "del", name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ip(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// nsThread runs functions on one OS thread that has entered a network
// namespace. The thread is never handed back to the Go scheduler: it exits
// with its goroutine, so a namespace switch or a dropped capability cannot
// leak to other goroutines.
type nsThread struct {
	work chan func()
	done chan struct{}
}

// startNSThread starts a thread in namespace ns and runs setup there
// (after entering the namespace) before any work.
func startNSThread(t *testing.T, ns string, setup func() error) *nsThread {
	t.Helper()
	th := &nsThread{work: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(th.done)
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with this goroutine.
		h, err := netns.GetFromName(ns)
		if err != nil {
			ready <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		err = netns.Set(h)
		h.Close()
		if err != nil {
			ready <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		if setup != nil {
			if err := setup(); err != nil {
				ready <- err
				return
			}
		}
		ready <- nil
		for f := range th.work {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(th.work)
		<-th.done
	})
	return th
}

// do runs f on the namespace's thread and waits for it.
func (th *nsThread) do(f func()) {
	fin := make(chan struct{})
	th.work <- func() { defer close(fin); f() }
	<-fin
}

// dropCapability removes capability c from the calling thread's effective,
// permitted and inheritable sets. Capabilities are per thread in Linux, so
// only a locked thread should call it.
func dropCapability(c int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	bit := uint32(1) << (c % 32)
	data[c/32].Effective &^= bit
	data[c/32].Permitted &^= bit
	data[c/32].Inheritable &^= bit
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// host is one namespace on a test LAN.
type host struct {
	ns  string
	ip  string // with prefix length
	mac string
}

// newLAN builds a bridge in its own namespace and one namespace per host,
// each with eth0 (fixed MAC, given address) plugged into the bridge.
func newLAN(t *testing.T, tag string, hosts map[string]string) map[string]host {
	t.Helper()
	br := newNS(t, tag+"-br")
	ip(t, "-n", br, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
	ip(t, "-n", br, "link", "set", "br0", "up")
	out := map[string]host{}
	i := 0
	for name, addr := range hosts {
		i++
		ns := newNS(t, tag+"-"+name)
		port := "p" + name
		mac := fmt.Sprintf("02:00:c6:12:00:%02x", i)
		ip(t, "-n", ns, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", port, "netns", br)
		ip(t, "-n", br, "link", "set", port, "master", "br0")
		ip(t, "-n", br, "link", "set", port, "up")
		ip(t, "-n", ns, "addr", "add", addr, "dev", "eth0")
		ip(t, "-n", ns, "link", "set", "eth0", "up")
		out[name] = host{ns: ns, ip: addr, mac: mac}
	}
	return out
}

// neighbour returns the MAC and state of ns's neighbour entry for addr on
// eth0, as `ip neigh` shows it; mac is "" when there is no usable entry.
func neighbour(t *testing.T, ns, addr string) (mac, state string) {
	t.Helper()
	out := strings.TrimSpace(ip(t, "-n", ns, "-4", "neigh", "show", "to", addr, "dev", "eth0"))
	if out == "" {
		return "", ""
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			mac = f[i+1]
		}
	}
	return mac, f[len(f)-1]
}

// holds reports whether ns has addr (an IP, no prefix) on eth0, per `ip addr`.
func holds(t *testing.T, ns, addr string) bool {
	t.Helper()
	out := ip(t, "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0")
	return strings.Contains(out, " "+addr+"/")
}
