// Package replication is everything Baton says to a MySQL or MariaDB server:
// reading replication status and GTID sets, ranking promotion candidates,
// waiting for a replica to catch up, promoting, repointing (follow) and
// fencing.
//
// The differences between MySQL 8 and MariaDB live here and nowhere else:
// callers see one Instance type, one Status and one GTIDSet whatever the
// server is.
//
// Every method of Instance takes a context and runs under its own deadline
// (Config.Timeout, never longer than the caller's context). A statement that
// changes the server and outlives its deadline is killed server-side through
// another connection, so that it cannot take effect later, out of order with
// what Baton did next (a hung SET GLOBAL read_only=OFF must not land after a
// later fence).
//
// The package never decides anything: it does not choose when to fail over,
// it only ranks candidates when asked (Rank and Errant are pure functions),
// and it never touches etcd, the kernel or the virtual IP.
package replication
