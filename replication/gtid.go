package replication

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// ErrFlavorMismatch is returned when two GTID sets of different flavors are
// combined: a MariaDB position and a MySQL set cannot be compared.
var ErrFlavorMismatch = errors.New("replication: gtid sets of different flavors")

// GTIDSet is what a server has executed (or received), in its flavor's terms.
// The zero value is an empty set of unknown flavor, contained in every set.
//
// On MySQL it is a real set (server_uuid:intervals, from gtid_executed) and
// Contain/Equal are set operations (go-mysql's MysqlGTIDSet).
//
// On MariaDB it is, despite the name, a list of positions: the last sequence
// number seen for each (domain, server_id) pair, as gtid_binlog_state prints
// it ("0-1-100,0-2-150"). MariaDB GTIDs within a domain are ordered (Baton
// requires gtid_strict_mode), so a server whose last GTID in domain 0 has
// sequence 150 has executed every earlier transaction of that domain, whatever
// server_id wrote them. Contain and Equal therefore compare, per domain, the
// highest sequence number (the position); the server_id entries are kept
// because Errant needs them to tell who wrote what. go-mysql's own
// MariadbGTIDSet.Contain requires the same server_id on both sides, which is
// wrong after a failover (0-2-150 does contain 0-1-100), so it is not used.
type GTIDSet struct {
	flavor Flavor
	my     *gomysql.MysqlGTIDSet   // FlavorMySQL
	maria  *gomysql.MariadbGTIDSet // FlavorMariaDB
}

// ParseGTIDSet parses a GTID set as the server prints it: for MySQL
// gtid_executed or Retrieved_Gtid_Set (UUID:interval[:interval],... possibly
// with newlines after the commas), for MariaDB gtid_binlog_state,
// gtid_binlog_pos, gtid_slave_pos, gtid_current_pos or Gtid_IO_Pos
// (domain-server-sequence,...). An empty string is the empty set.
// MySQL 8.3 tagged GTIDs (UUID:tag:N) are not supported and are an error.
func ParseGTIDSet(f Flavor, s string) (GTIDSet, error) {
	elems := splitGTID(s)
	switch f {
	case FlavorMySQL:
		for _, e := range elems {
			if err := checkMySQLElem(e); err != nil {
				return GTIDSet{}, fmt.Errorf("parse mysql gtid set %q: %w", s, err)
			}
		}
		set, err := gomysql.ParseGTIDSet(gomysql.MySQLFlavor, strings.Join(elems, ","))
		if err != nil {
			return GTIDSet{}, fmt.Errorf("parse mysql gtid set %q: %w", s, err)
		}
		return GTIDSet{flavor: f, my: set.(*gomysql.MysqlGTIDSet)}, nil
	case FlavorMariaDB:
		set := newMariaSet()
		for _, e := range elems {
			g, err := gomysql.ParseMariadbGTID(e)
			if err != nil {
				return GTIDSet{}, fmt.Errorf("parse mariadb gtid position %q: %w", s, err)
			}
			addMaria(set, g)
		}
		return GTIDSet{flavor: f, maria: set}, nil
	default:
		return GTIDSet{}, fmt.Errorf("parse gtid set %q: %w", s, errUnknownFlavor)
	}
}

var errUnknownFlavor = errors.New("replication: unknown flavor")

// MustParseGTIDSet is ParseGTIDSet for constants in tests and examples; it
// panics on a malformed set.
func MustParseGTIDSet(f Flavor, s string) GTIDSet {
	set, err := ParseGTIDSet(f, s)
	if err != nil {
		panic(err)
	}
	return set
}

// splitGTID drops every blank (MySQL prints a newline after each comma) and
// empty element.
func splitGTID(s string) []string {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r':
			return -1
		}
		return r
	}, s)
	var out []string
	for e := range strings.SplitSeq(s, ",") {
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}

// checkMySQLElem refuses what MySQL itself refuses but go-mysql accepts:
// transaction number 0, and tags (which go-mysql would misread as a UUID).
func checkMySQLElem(e string) error {
	parts := strings.Split(e, ":")
	for _, iv := range parts[1:] {
		lo, _, _ := strings.Cut(iv, "-")
		n, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			return fmt.Errorf("interval %q: not a number (tagged gtids are not supported)", iv)
		}
		if n < 1 {
			return fmt.Errorf("interval %q: transaction numbers start at 1", iv)
		}
	}
	return nil
}

func newMariaSet() *gomysql.MariadbGTIDSet {
	return &gomysql.MariadbGTIDSet{Sets: map[uint32]map[uint32]*gomysql.MariadbGTID{}}
}

// addMaria keeps the highest sequence number per (domain, server_id); unlike
// go-mysql's AddSet it never moves an entry backwards.
func addMaria(set *gomysql.MariadbGTIDSet, g *gomysql.MariadbGTID) {
	servers, ok := set.Sets[g.DomainID]
	if !ok {
		servers = map[uint32]*gomysql.MariadbGTID{}
		set.Sets[g.DomainID] = servers
	}
	if cur, ok := servers[g.ServerID]; !ok || g.SequenceNumber > cur.SequenceNumber {
		servers[g.ServerID] = g.Clone()
	}
}

// Flavor is the flavor the set was parsed for (FlavorUnknown for the zero value).
func (s GTIDSet) Flavor() Flavor { return s.flavor }

// IsEmpty reports whether the set holds no transaction.
func (s GTIDSet) IsEmpty() bool {
	switch s.flavor {
	case FlavorMySQL:
		return s.my.IsEmpty()
	case FlavorMariaDB:
		return s.maria.IsEmpty()
	}
	return true
}

// Count is how many transactions the set holds: for MySQL the length of its
// intervals, for MariaDB the sum of each domain's position (its highest sequence
// number). It measures how far a server has gone, e.g. to tell whether a change of
// the set is worth reporting; two sets of equal count need not be equal.
func (s GTIDSet) Count() uint64 {
	var n uint64
	switch s.flavor {
	case FlavorMySQL:
		for _, u := range s.my.Sets {
			for _, iv := range u.Intervals {
				if iv.Stop > iv.Start {
					n += uint64(iv.Stop - iv.Start)
				}
			}
		}
	case FlavorMariaDB:
		for _, g := range s.positions() {
			n += g.SequenceNumber
		}
	}
	return n
}

// String prints the set in the server's own syntax, sorted, so that equal
// sets print the same. For MariaDB it lists every (domain, server_id) entry;
// Position gives the one-GTID-per-domain form that MASTER_GTID_WAIT and
// gtid_slave_pos take.
func (s GTIDSet) String() string {
	switch s.flavor {
	case FlavorMySQL:
		return s.my.String()
	case FlavorMariaDB:
		return formatMaria(sortedMaria(s.maria))
	}
	return ""
}

// Position is, for MariaDB, the highest GTID of each domain
// ("0-2-150,1-1-7"): the form MASTER_GTID_WAIT and SET GLOBAL gtid_slave_pos
// accept. For MySQL it is String.
func (s GTIDSet) Position() string {
	if s.flavor != FlavorMariaDB {
		return s.String()
	}
	pos := s.positions()
	out := make([]*gomysql.MariadbGTID, 0, len(pos))
	for _, g := range pos {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *gomysql.MariadbGTID) int { return cmpU32(a.DomainID, b.DomainID) })
	return formatMaria(out)
}

// positions is the highest GTID per domain. Two server_ids with the same
// sequence number in one domain can only come from a server without
// gtid_strict_mode; the lower server_id is then chosen, so the result is
// deterministic.
func (s GTIDSet) positions() map[uint32]*gomysql.MariadbGTID {
	pos := map[uint32]*gomysql.MariadbGTID{}
	if s.maria == nil {
		return pos
	}
	for d, servers := range s.maria.Sets {
		for _, g := range servers {
			cur, ok := pos[d]
			if !ok || g.SequenceNumber > cur.SequenceNumber ||
				(g.SequenceNumber == cur.SequenceNumber && g.ServerID < cur.ServerID) {
				pos[d] = g
			}
		}
	}
	return pos
}

func sortedMaria(set *gomysql.MariadbGTIDSet) []*gomysql.MariadbGTID {
	var out []*gomysql.MariadbGTID
	for _, servers := range set.Sets {
		for _, g := range servers {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *gomysql.MariadbGTID) int {
		if c := cmpU32(a.DomainID, b.DomainID); c != 0 {
			return c
		}
		return cmpU32(a.ServerID, b.ServerID)
	})
	return out
}

func formatMaria(gs []*gomysql.MariadbGTID) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		// Not g.String(): go-mysql prints 0-0-0 as "".
		parts[i] = fmt.Sprintf("%d-%d-%d", g.DomainID, g.ServerID, g.SequenceNumber)
	}
	return strings.Join(parts, ",")
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Contain reports whether s holds every transaction of o. For MariaDB that
// means: in every domain of o, s is at the same or a higher sequence number.
// Sets of different flavors contain each other only when the contained one
// is empty.
func (s GTIDSet) Contain(o GTIDSet) bool {
	if o.IsEmpty() {
		return true
	}
	if s.flavor != o.flavor {
		return false
	}
	switch s.flavor {
	case FlavorMySQL:
		return s.my.Contain(o.my)
	case FlavorMariaDB:
		mine := s.positions()
		for d, g := range o.positions() {
			m, ok := mine[d]
			if !ok || m.SequenceNumber < g.SequenceNumber {
				return false
			}
		}
		return true
	}
	return false
}

// Equal reports whether s and o hold the same transactions: for MariaDB, the
// same position in every domain.
func (s GTIDSet) Equal(o GTIDSet) bool {
	if s.IsEmpty() && o.IsEmpty() {
		return true
	}
	if s.flavor != o.flavor {
		return false
	}
	if s.flavor == FlavorMySQL {
		return s.my.Equal(o.my)
	}
	return s.Contain(o) && o.Contain(s)
}

// Union is every transaction of s and of o: for MariaDB the highest sequence
// number of each (domain, server_id). Either may be the zero value.
func (s GTIDSet) Union(o GTIDSet) (GTIDSet, error) {
	switch {
	case o.flavor == FlavorUnknown:
		return s.Clone(), nil
	case s.flavor == FlavorUnknown:
		return o.Clone(), nil
	case s.flavor != o.flavor:
		return GTIDSet{}, fmt.Errorf("union of %s and %s gtid sets: %w", s.flavor, o.flavor, ErrFlavorMismatch)
	}
	out := s.Clone()
	switch s.flavor {
	case FlavorMySQL:
		for _, u := range o.my.Sets {
			out.my.AddSet(u.Clone()) // AddSet keeps the pointer: never share it
		}
	case FlavorMariaDB:
		for _, servers := range o.maria.Sets {
			for _, g := range servers {
				addMaria(out.maria, g)
			}
		}
	}
	return out, nil
}

// Clone returns a deep copy.
func (s GTIDSet) Clone() GTIDSet {
	switch s.flavor {
	case FlavorMySQL:
		return GTIDSet{flavor: s.flavor, my: s.my.Clone().(*gomysql.MysqlGTIDSet)}
	case FlavorMariaDB:
		return GTIDSet{flavor: s.flavor, maria: s.maria.Clone().(*gomysql.MariadbGTIDSet)}
	}
	return GTIDSet{}
}

// GoMySQL returns a copy of the underlying go-mysql set
// (*mysql.MysqlGTIDSet or *mysql.MariadbGTIDSet), or nil for the zero value.
func (s GTIDSet) GoMySQL() gomysql.GTIDSet {
	switch s.flavor {
	case FlavorMySQL:
		return s.my.Clone()
	case FlavorMariaDB:
		return s.maria.Clone()
	}
	return nil
}

// Missing describes, in the server's syntax, what o has and s lacks: for
// MySQL the set difference o-s, for MariaDB o's position in each domain where
// s is behind. Empty when s contains o.
func (s GTIDSet) Missing(o GTIDSet) string {
	if s.Contain(o) {
		return ""
	}
	if s.flavor != o.flavor && !s.IsEmpty() {
		return o.String()
	}
	switch o.flavor {
	case FlavorMySQL:
		diff := o.my.Clone().(*gomysql.MysqlGTIDSet)
		if s.my != nil {
			_ = diff.Minus(*s.my)
		}
		return diff.String()
	case FlavorMariaDB:
		mine := s.positions()
		var out []*gomysql.MariadbGTID
		for d, g := range o.positions() {
			if m, ok := mine[d]; !ok || m.SequenceNumber < g.SequenceNumber {
				out = append(out, g)
			}
		}
		slices.SortFunc(out, func(a, b *gomysql.MariadbGTID) int { return cmpU32(a.DomainID, b.DomainID) })
		return formatMaria(out)
	}
	return ""
}
