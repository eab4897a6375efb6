package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Addresses of a sandbox's hosts. Every sandbox has its own bridge namespace, so two
// sandboxes can use the same addresses at once without seeing each other.
const (
	subnetBits = 24
	clientIP   = "198.18.0.5"
	vipCIDR    = "198.18.0.100/24"
)

func nodeIP(i int) string { return fmt.Sprintf("198.18.0.%d", 11+i) }
func etcdIP(i int) string { return fmt.Sprintf("198.18.0.%d", 2+i) }

// nsName is the name of one of the sandbox's network namespaces.
func nsName(sandbox, host string) string { return "baton-" + sandbox + "-" + host }

// run runs a command and returns its error with the command's output in it.
func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := withTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// makeBridge makes the namespace holding the sandbox's bridge.
//
//	ip netns add NS; ip -n NS link add br0 type bridge; ip -n NS link set br0 up
func makeBridge(ctx context.Context, ns string) error {
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "name", "br0", "type", "bridge"},
		{"-n", ns, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			return fmt.Errorf("make bridge namespace: %w", err)
		}
	}
	return nil
}

// makeHost makes a namespace for one host and plugs it into the bridge: a veth pair
// with eth0 inside the host and port on the bridge, and the host's address on eth0.
// Nothing is created in the root namespace.
func makeHost(ctx context.Context, bridgeNS, ns, port, ip string) error {
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", bridgeNS, "link", "add", "name", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", bridgeNS, "link", "set", port, "master", "br0"},
		{"-n", bridgeNS, "link", "set", port, "up"},
		{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", ip, subnetBits), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			return fmt.Errorf("make host namespace %s: %w", ns, err)
		}
	}
	return nil
}

// setPort enables or disables a host's port on the bridge. A disabled port drops
// every frame in both directions, silently: peers see timeouts, not refusals, as in a
// real network partition.
//
//	bridge -n NS link set dev PORT state 0|3
func setPort(ctx context.Context, bridgeNS, port string, up bool) error {
	state := "0" // disabled
	if up {
		state = "3" // forwarding
	}
	if err := run(ctx, "bridge", "-n", bridgeNS, "link", "set", "dev", port, "state", state); err != nil {
		return fmt.Errorf("set bridge port %s: %w", port, err)
	}
	return nil
}

// sandboxNamespaces returns the existing network namespaces of the sandbox called name,
// recognised by exact host names so that sandbox "a" never takes "a-b"'s.
func sandboxNamespaces(name string) []string {
	hosts := map[string]bool{"net": true, "client": true}
	for i := 1; i <= 3; i++ {
		hosts[fmt.Sprintf("etcd%d", i)] = true
	}
	for i := 1; i <= MaxNodes; i++ {
		hosts[fmt.Sprintf("db%d", i)] = true
	}
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	prefix := nsName(name, "")
	var out []string
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), prefix); ok && hosts[rest] {
			out = append(out, e.Name())
		}
	}
	return out
}

// namespacePIDs returns the processes running in a namespace (`ip netns pids`).
func namespacePIDs(ctx context.Context, ns string) []int {
	out, err := output(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		var pid int
		if _, err := fmt.Sscanf(f, "%d", &pid); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}
