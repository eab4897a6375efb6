// Package failover decides and carries out the moves of a cluster's primary:
// Decide, a pure function of the cluster's View and Policy; PlanRequest, the same
// checks for an operator's request and its dry run; and the elected Coordinator,
// which runs Decide on every change and carries out failovers and switchovers
// (announce the intent, stop the replicas' IO threads, fence the old primary over
// the network, rank, catch up, commit the new primary of record in one fenced
// transaction, record the history).
//
// The coordinator talks to database servers (to stop replication, fence and catch
// up) through Server, but never touches a node's kernel or virtual IP and never
// promotes a server itself: the new primary's own reconciler (package reconcile)
// does, once it holds the leader key. What it does not guarantee: a server whose
// agent is gone and that keeps taking writes from clients that bypass the virtual
// IP is fenced only best effort (read_only over the network); semi-sync (AFTER_SYNC)
// is what keeps such writes from being acknowledged.
package failover
