package reconcile

import (
	"time"

	"github.com/baton-ha/baton/cluster"
)

// A deposed primary's virtual IP: clients that reconnect while no node answers on
// the address send their SYN into silence and wait for TCP's retransmission (1 s)
// or their own deadline, whereas an address that answers at once, even with a
// refusal (a read_only server's error, a reset from a port nobody listens on), lets
// them try again at once. So a deposed primary whose server cannot take a write
// (read_only, or mysqld not running) keeps the address after the failover's commit
// until the new primary of record announces it holds it (its status says so, after
// its gratuitous ARP), and HandoverBound at the most; it lets go of the leader key
// at once, as before, and of the address at once when its server might still be
// writable.

// HandoverBound bounds how long a deposed primary keeps the virtual IP after it
// first saw another node become the primary of record.
const HandoverBound = 2 * time.Second

// keepVIPForHandover says whether a deposed primary (self) may keep the virtual IP
// a moment longer: another node is the primary of record and has not announced
// the address yet, and HandoverBound has not passed since since (zero: the first
// look, now). Whether the server can take writes is the caller's to check. Pure.
func keepVIPForHandover(snap cluster.Snapshot, self string, since, now time.Time) bool {
	p := snap.Primary.Node
	if p == "" || p == self {
		return false
	}
	if st, ok := snap.Nodes[p]; ok && st.VIP {
		return false // the new primary holds it: its gratuitous ARP went out
	}
	return since.IsZero() || now.Sub(since) < HandoverBound
}
