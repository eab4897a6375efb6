package replication

import (
	"fmt"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/google/uuid"
)

// Server is who a server is and what it has executed: the input of Errant.
// GTIDs name the server that wrote them, by server_id on MariaDB and by
// server_uuid on MySQL; only the field of the set's flavor is used.
type Server struct {
	ServerID   uint32
	ServerUUID string
	Executed   GTIDSet
}

// Errant returns the transactions of candidate that primary never had:
// writes made on the replica itself, or transactions it got from an earlier
// primary that the current one never received. A server with errant
// transactions must not be promoted (the others would never get them, or
// would fail on them) and cannot simply follow the primary.
//
// The primary's own transactions are never errant, whatever primary.Executed
// says: a replica can only have them from the primary, so a candidate ahead
// of a stale primary.Executed (read earlier, or the last one a dead primary
// reported) is not flagged.
//
// MySQL: candidate - primary, minus the primary's server_uuid.
//
// MariaDB (positions per domain and server_id, see GTIDSet): an entry
// domain-server-seq of the candidate is errant unless it was written by the
// primary, or the primary has the same (domain, server_id) at seq or beyond.
// An entry of a third server that the primary's gtid_binlog_state does not
// list at all, at or below the primary's position in that domain, is taken
// as history older than the primary's binlog (a server restored from a
// backup lists less history); the candidate's own writes are never excused
// that way: a replica with its own server_id in a domain where the primary
// has none, or a lower one, has written locally.
func Errant(candidate, primary Server) (GTIDSet, error) {
	return errant(candidate, primary, false)
}

// errant is Errant; onlyOwn keeps only the candidate's own writes, for when
// primary is not the real primary but what the other replicas hold.
func errant(candidate, primary Server, onlyOwn bool) (GTIDSet, error) {
	c, p := candidate.Executed, primary.Executed
	if c.flavor == FlavorUnknown {
		return GTIDSet{}, nil
	}
	if p.flavor != FlavorUnknown && p.flavor != c.flavor {
		return GTIDSet{}, fmt.Errorf("errant transactions: candidate is %s, primary is %s: %w", c.flavor, p.flavor, ErrFlavorMismatch)
	}
	switch c.flavor {
	case FlavorMySQL:
		diff := c.my.Clone().(*gomysql.MysqlGTIDSet)
		if p.my != nil {
			if err := diff.Minus(*p.my); err != nil {
				return GTIDSet{}, fmt.Errorf("errant transactions: %w", err)
			}
		}
		if id, err := uuid.Parse(primary.ServerUUID); err == nil {
			delete(diff.Sets, id.String())
		}
		if onlyOwn {
			own, err := uuid.Parse(candidate.ServerUUID)
			for sid := range diff.Sets {
				if err != nil || sid != own.String() {
					delete(diff.Sets, sid)
				}
			}
		}
		return GTIDSet{flavor: FlavorMySQL, my: diff}, nil
	case FlavorMariaDB:
		out := newMariaSet()
		var pset *gomysql.MariadbGTIDSet
		if p.maria != nil {
			pset = p.maria
		} else {
			pset = newMariaSet()
		}
		ppos := p.positions()
		for d, servers := range c.maria.Sets {
			for s, g := range servers {
				if onlyOwn && s != candidate.ServerID {
					continue
				}
				if s == primary.ServerID && primary.ServerID != 0 {
					continue
				}
				if pg, ok := pset.Sets[d][s]; ok && pg.SequenceNumber >= g.SequenceNumber {
					continue
				}
				_, listed := pset.Sets[d][s]
				if pos, ok := ppos[d]; !listed && ok && s != candidate.ServerID && g.SequenceNumber <= pos.SequenceNumber {
					continue
				}
				addMaria(out, g)
			}
		}
		return GTIDSet{flavor: FlavorMariaDB, maria: out}, nil
	}
	return GTIDSet{}, nil
}

// without returns s less the entries of e: for MySQL the set difference, for
// MariaDB s without the (domain, server_id) entries e lists (Errant's result),
// so that the rest of a server's position can still be compared.
func without(s, e GTIDSet) GTIDSet {
	if e.IsEmpty() || s.flavor != e.flavor {
		return s
	}
	out := s.Clone()
	switch s.flavor {
	case FlavorMySQL:
		_ = out.my.Minus(*e.my)
	case FlavorMariaDB:
		for d, servers := range e.maria.Sets {
			for sid := range servers {
				delete(out.maria.Sets[d], sid)
			}
			if len(out.maria.Sets[d]) == 0 {
				delete(out.maria.Sets, d)
			}
		}
	}
	return out
}
