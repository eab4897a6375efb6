// Package cluster is one Baton cluster's state in etcd, under /baton/<cluster>/:
// the keys (Keys), the records kept under them and the types those records hold
// (Primary, NodeStatus, Intent, Request, Event, Policy, View, Decision, ...), the
// Store that reads and writes them, and the Cache, a watched copy of the keys that
// every agent reads through Reader.
//
// Every write that depends on what was read is fenced in its transaction: the
// primary of record changes only by comparing its mod revision (the epoch) and the
// coordinator's election key; the leader key is created only where none exists and
// the primary is unchanged. Safety rests on those comparisons, never on clocks.
//
// It never talks to a database server, never touches a node's kernel, and decides
// nothing: failover decides, reconcile acts on one node, and the operator's CLI,
// the web view and the lab only read or file requests through it.
package cluster
