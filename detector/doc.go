// Package detector decides whether one MySQL/MariaDB server can really take writes.
//
// A Detector probes a server on a fixed interval, each kind of probe on its own
// connection with a deadline: liveness (a fresh connection and SELECT 1), a binlogged
// write into baton.heartbeat on a primary, a non-binlogged write into a local table and
// the replication threads on a replica, and statfs of the data and binlog directories
// with a least-squares fill rate. Every round of probes becomes one observation
// (Assess), and a pure state machine with hysteresis (Machine) turns observations into
// a Verdict with a reason a person can act on. A change of verdict is reported once.
//
// It exists for the primary that is running but cannot write: a full disk, a frozen or
// read-only filesystem, a global read lock. SELECT 1 keeps answering in those cases;
// a write with a deadline does not, so the write probe is what decides.
//
// The detector only observes. It never changes the server's configuration, never
// creates tables while probing (Bootstrap does that, once, beforehand), never writes
// binlogged rows on a replica (that would make errant GTIDs), and knows nothing of
// etcd or of failover decisions: the agent publishes its Report and the coordinator
// decides.
package detector
