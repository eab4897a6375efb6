package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// A node rebuilt from a donor: who may give it its backup (DonorUnfit, ChooseDonor)
// and whether `baton rebuild` may file a request (PrecheckRebuild) are decided by
// the same rules the node's agent applies (Analyze), on what the agents published.

// RebuildRefusal says why a rebuild may not be filed or carried out now.
type RebuildRefusal struct{ Why string }

func (r *RebuildRefusal) Error() string { return r.Why }

// DonorUnfit says why n cannot give node's rebuild its backup, "" when it can: a
// replica of the primary of record in the current epoch, its server read and
// healthy, both replication threads running without error, its lag known, no errant
// GTIDs, not being rebuilt itself, the same flavor as the node (flavor, "" when not
// known), and its agent able to stream a backup (CanDonate). The primary of record
// is judged as a donor too (healthy, its server read), but ChooseDonor takes it only
// when no replica can give. Pure.
func DonorUnfit(snap cluster.Snapshot, node, flavor string, n cluster.NodeStatus) string {
	primary := n.Node == snap.Primary.Node && snap.Primary.Node != ""
	switch {
	case n.Node == node:
		return "it is the node to rebuild"
	case !n.CanDonate:
		return "its agent cannot stream a backup (no backup program or peer secret)"
	case !n.ServerRead:
		return "its agent could not read its server"
	case n.Verdict != detector.Healthy:
		return "verdict " + n.Verdict.String()
	case n.Rebuild.Running():
		return "it is being rebuilt itself"
	case flavor != "" && n.Flavor != flavor:
		return fmt.Sprintf("its server is %s, the node's %s", orDash(n.Flavor), flavor)
	case primary && n.Role != cluster.RolePrimary:
		return "the primary of record, not writable yet (role " + orDash(string(n.Role)) + ")"
	case primary:
		return ""
	case n.Role != cluster.RoleReplica:
		return "role " + orDash(string(n.Role))
	case n.Errant != "":
		return "errant GTIDs " + n.Errant
	case n.Epoch != snap.Primary.Epoch:
		return fmt.Sprintf("its agent acted on epoch %d, the primary of record is at %d", n.Epoch, snap.Primary.Epoch)
	case n.Source != snap.Primary.Addr:
		return fmt.Sprintf("it replicates from %s, not from the primary of record (%s)", orDash(n.Source), snap.Primary.Addr)
	case !n.IORunning || !n.SQLRunning:
		return "replication is not running" + strings.TrimSuffix(" ("+n.ReplError+")", " ()")
	case n.ReplError != "":
		return "replication error: " + n.ReplError
	case n.LagMS < 0:
		return "its lag is unknown"
	}
	return ""
}

// ChooseDonor names the node whose backup node's rebuild copies (flavor is the
// node's server's, "" when not known): want, when given
// (it must be a live agent's node and a fit replica: DonorUnfit); otherwise the
// best fit replica (a no_promote replica first, as it serves no failover, then the
// least lag, then the name), and the primary of record only when no replica fits.
// An unknown want wraps ErrUnknownNode; no donor is a *RebuildRefusal. Pure.
func ChooseDonor(snap cluster.Snapshot, node, flavor, want string) (string, error) {
	if want != "" {
		n, live := snap.Nodes[want]
		_, member := snap.Members[want]
		switch {
		case !live && !member:
			return "", fmt.Errorf("%w: donor %q (live agents: %s)", ErrUnknownNode, want, strings.Join(liveNodes(snap), ", "))
		case want == node:
			return "", &RebuildRefusal{Why: fmt.Sprintf("%s cannot be its own donor", want)}
		case !live:
			return "", &RebuildRefusal{Why: fmt.Sprintf("donor %s: its agent is not running", want)}
		case want == snap.Primary.Node:
			return "", &RebuildRefusal{Why: fmt.Sprintf("donor %s is the primary of record, not a replica (without --from the primary gives only when no replica can)", want)}
		}
		if why := DonorUnfit(snap, node, flavor, n); why != "" {
			return "", &RebuildRefusal{Why: fmt.Sprintf("donor %s is not a healthy replica: %s", want, why)}
		}
		return want, nil
	}
	var fit []cluster.NodeStatus
	var unfit []string
	for _, name := range liveNodes(snap) {
		n := snap.Nodes[name]
		if name == node || name == snap.Primary.Node {
			continue
		}
		if why := DonorUnfit(snap, node, flavor, n); why != "" {
			unfit = append(unfit, name+": "+why)
			continue
		}
		fit = append(fit, n)
	}
	if len(fit) > 0 {
		slices.SortFunc(fit, func(a, b cluster.NodeStatus) int {
			if a.NoPromote != b.NoPromote {
				if a.NoPromote {
					return -1
				}
				return 1
			}
			return cmp.Or(cmp.Compare(a.LagMS, b.LagMS), cmp.Compare(a.Node, b.Node))
		})
		return fit[0].Node, nil
	}
	if p, ok := snap.Nodes[snap.Primary.Node]; ok && p.Node != node {
		why := DonorUnfit(snap, node, flavor, p)
		if why == "" {
			return p.Node, nil
		}
		unfit = append(unfit, p.Node+" (the primary): "+why)
	}
	if len(unfit) == 0 {
		unfit = append(unfit, "no other node's agent is running")
	}
	return "", &RebuildRefusal{Why: "no healthy donor: " + strings.Join(unfit, "; ")}
}

// liveNodes are the nodes whose agents are alive, sorted.
func liveNodes(snap cluster.Snapshot) []string {
	out := make([]string, 0, len(snap.Nodes))
	for name := range snap.Nodes {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// PrecheckRebuild says whether an operator's rebuild of node, from donor from ("":
// the agent chooses), may be filed, on the cluster's state in etcd (snap): nil to
// file it; an error wrapping ErrUnknownNode for a node or donor the cluster does
// not know (bad input); a *RebuildRefusal otherwise, saying why: the primary of
// record, a node holding the leader key, whose agent is not running or cannot
// rebuild it, one being rebuilt already, no healthy donor, or a donor that is not a
// healthy replica. The node's agent decides again on what it finds (Analyze). Pure.
func PrecheckRebuild(snap cluster.Snapshot, node, from string) error {
	n, live := snap.Nodes[node]
	_, member := snap.Members[node]
	refuse := func(format string, args ...any) error {
		return &RebuildRefusal{Why: fmt.Sprintf(format, args...)}
	}
	switch {
	case node == "":
		return fmt.Errorf("%w: the node name is empty", ErrUnknownNode)
	case !live && !member && node != snap.Primary.Node:
		return fmt.Errorf("%w %q (known: %s)", ErrUnknownNode, node, strings.Join(liveNodes(snap), ", "))
	case node == snap.Primary.Node:
		return refuse("%s is the primary of record: it is never rebuilt (fail it over first)", node)
	case snap.Leader == node:
		return refuse("%s holds the leader key: wait until its agent has fenced it", node)
	case !live:
		return refuse("%s's agent is not running: nothing would carry it out", node)
	case n.Rebuild.Running():
		return refuse("%s is being rebuilt already (from %s, step %s)", node, n.Rebuild.From, n.Rebuild.Step)
	case !n.CanRebuild:
		return refuse("%s's agent cannot rebuild it: %s", node, orDash(n.RebuildUnable))
	}
	if _, err := ChooseDonor(snap, node, n.Flavor, from); err != nil {
		return err
	}
	return nil
}
