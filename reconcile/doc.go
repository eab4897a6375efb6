// Package reconcile brings one node into line with the primary of record. On every
// change of the keys it acts on, on a verdict change and every tick, Analyze (a pure
// function of the cluster's Snapshot and the node's Self) names one NodeAction with
// its reason, and the Reconciler carries it out on its own node: fence, promote
// once it holds the leader key, follow the primary, quarantine a node with errant
// transactions (and repair phantom ones), take or drop the virtual IP. It publishes
// the node's status under nodes/<name> on the agent's session lease.
//
// A reconciler never decides a failover and never acts on another node; the only
// other server it reaches is the primary, through PeerWatch's remote probe, which
// only reads and writes Baton's heartbeat.
package reconcile
