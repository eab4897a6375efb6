package replication

import (
	"strings"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Seeds: forms the servers really print, plus the malformed ones that
// tripped parsers before.
var mysqlSeeds = []string{
	"",
	uP + ":1-1337",
	uO + ":1-58213,\n" + uP + ":1-1335",
	uP + ":1-100:102-200:205," + uR + ":1-2",
	strings.ToUpper(uP) + ":5",
	uP + ":1-5:6-10," + uP + ":11-12",
	uP + ":mytag:1-5",
	uP + ":0-5",
	uP + ":7-5",
	uP + ":9223372036854775807",
	uP + ":",
	",,",
	":1-2",
}

var mariaSeeds = []string{
	"",
	"0-1-5",
	"1-1-1,0-1-7",
	"0-1-6,0-2-7,1-1-1",
	"0-1-100, 0-2-150,\n5-3-2",
	"0-0-0",
	"4294967295-4294967295-18446744073709551615",
	"0-1",
	"-1-2",
	"0-1-2-3",
	"0-1-9,0-1-7",
}

// FuzzParseMySQL: whatever parses prints in a form that parses back to the
// same set, and the set operations agree with themselves.
func FuzzParseMySQL(f *testing.F) {
	for _, s := range mysqlSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkParse(t, FlavorMySQL, in)
	})
}

// FuzzParseMariaDB: the same for MariaDB positions, and Position (one GTID
// per domain) is the same position as the full state.
func FuzzParseMariaDB(f *testing.F) {
	for _, s := range mariaSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s := checkParse(t, FlavorMariaDB, in)
		if s.Flavor() == FlavorUnknown {
			return
		}
		p, err := ParseGTIDSet(FlavorMariaDB, s.Position())
		if err != nil {
			t.Fatalf("Position %q does not parse: %v", s.Position(), err)
		}
		if !p.Equal(s) || strings.Count(p.String(), ",") != len(s.positions())-1 && !p.IsEmpty() {
			t.Fatalf("Position %q is not the position of %q", s.Position(), s)
		}
	})
}

func checkParse(t *testing.T, f Flavor, in string) GTIDSet {
	s, err := ParseGTIDSet(f, in)
	if err != nil {
		return GTIDSet{}
	}
	out := s.String()
	back, err := ParseGTIDSet(f, out)
	if err != nil {
		t.Fatalf("%q parsed, printed as %q, which does not parse: %v", in, out, err)
	}
	if back.String() != out {
		t.Fatalf("%q -> %q -> %q: printing is not stable", in, out, back.String())
	}
	if !back.Equal(s) || !s.Contain(back) || !back.Contain(s) {
		t.Fatalf("%q: reparsed set %q differs", in, back)
	}
	if m := s.Missing(s); m != "" {
		t.Fatalf("%q misses %q of itself", in, m)
	}
	u, err := s.Union(back)
	if err != nil || !u.Equal(s) {
		t.Fatalf("%q ∪ itself = %q, %v", in, u, err)
	}
	if s.IsEmpty() != (out == "") {
		t.Fatalf("%q: IsEmpty %t but prints %q", in, s.IsEmpty(), out)
	}
	return s
}

// FuzzMySQLSetModel checks go-mysql's interval arithmetic (Contain, Minus,
// union) against plain sets of (uuid, number), for small sets.
func FuzzMySQLSetModel(f *testing.F) {
	f.Add(uP+":1-10", uP+":3-5")
	f.Add(uP+":1-5:7-10", uP+":5-7")
	f.Add(uP+":1-5,"+uR+":1-3", uR+":2,"+uP+":1")
	f.Add(uP+":2-3:5:8-9", uP+":1-10")
	f.Add("", uP+":4")
	f.Fuzz(func(t *testing.T, as, bs string) {
		a, err := ParseGTIDSet(FlavorMySQL, as)
		if err != nil {
			return
		}
		b, err := ParseGTIDSet(FlavorMySQL, bs)
		if err != nil {
			return
		}
		ma, ok := model(a)
		if !ok {
			return
		}
		mb, ok := model(b)
		if !ok {
			return
		}
		wantContain := true
		for k := range mb {
			if !ma[k] {
				wantContain = false
			}
		}
		if got := a.Contain(b); got != wantContain {
			t.Fatalf("%q.Contain(%q) = %t, model says %t", a, b, got, wantContain)
		}
		// Errant with no primary uuid is plain set difference.
		e, err := Errant(Server{Executed: a}, Server{Executed: b})
		if err != nil {
			t.Fatal(err)
		}
		me, _ := model(e)
		for k := range ma {
			if !mb[k] != me[k] {
				t.Fatalf("errant(%q, %q) = %q: wrong about %v", a, b, e, k)
			}
		}
		if len(me) > len(ma) {
			t.Fatalf("errant(%q, %q) = %q has more than the candidate", a, b, e)
		}
		u, err := a.Union(b)
		if err != nil {
			t.Fatal(err)
		}
		mu, _ := model(u)
		if len(mu) != len(union(ma, mb)) {
			t.Fatalf("%q ∪ %q = %q: %d transactions, want %d", a, b, u, len(mu), len(union(ma, mb)))
		}
	})
}

type gtidKey struct {
	sid string
	n   int64
}

// model expands a MySQL set, if it is small enough.
func model(s GTIDSet) (map[gtidKey]bool, bool) {
	out := map[gtidKey]bool{}
	if s.IsEmpty() {
		return out, true
	}
	set := s.GoMySQL().(*gomysql.MysqlGTIDSet)
	for sid, u := range set.Sets {
		for _, iv := range u.Intervals {
			if iv.Stop-iv.Start > 5000 || len(out) > 20000 {
				return nil, false
			}
			for n := iv.Start; n < iv.Stop; n++ {
				out[gtidKey{sid, n}] = true
			}
		}
	}
	return out, true
}

func union(a, b map[gtidKey]bool) map[gtidKey]bool {
	out := map[gtidKey]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
