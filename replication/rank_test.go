package replication

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/detector"
)

// cand builds a healthy MariaDB candidate; server_id is its index in the
// name ("db2" -> 2).
func cand(name, executed string, opts ...func(*Candidate)) Candidate {
	c := Candidate{
		Name:       name,
		Server:     Server{ServerID: uint32(name[len(name)-1] - '0'), Executed: maria(executed)},
		StorageOK:  true,
		SQLRunning: true,
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func prio(p int) func(*Candidate) { return func(c *Candidate) { c.Priority = p } }

// runway sets a candidate's disk forecast: filling with left > 0, not filling
// with left 0, full with left < 0.
func runway(left time.Duration) func(*Candidate) {
	return func(c *Candidate) {
		f := detector.Forecast{Resource: detector.ResourceDisk, Name: "/data", Used: 200 << 20, Limit: 256 << 20, RateKnown: true}
		switch {
		case left > 0:
			f.Outlook, f.Left, f.Rate = detector.OutlookFilling, left, 1<<20
		case left == 0:
			f.Outlook = detector.OutlookSteady
		default:
			f.Used, f.Outlook = 256<<20, detector.OutlookExhausted
		}
		c.Runway = f
	}
}
func lag(d time.Duration) func(*Candidate) { return func(c *Candidate) { c.Lag = d } }
func retrieved(s string) func(*Candidate)  { return func(c *Candidate) { c.Retrieved = maria(s) } }

var primary1 = &Server{ServerID: 1, Executed: maria("0-1-100")}

func TestRank(t *testing.T) {
	type want struct {
		name     string
		eligible bool
		reason   string // substring
	}
	tests := []struct {
		name       string
		primary    *Server
		candidates []Candidate
		want       []want
	}{
		{
			name:    "most advanced first",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-98"),
				cand("db3", "0-1-100"),
			},
			want: []want{
				{"db3", true, "most advanced"},
				{"db2", false, "lacks transactions db3 has: 0-1-100"},
			},
		},
		{
			name:    "tie broken by priority",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", prio(0), lag(0)),
				cand("db3", "0-1-100", prio(5), lag(3*time.Second)),
			},
			want: []want{
				{"db3", true, "priority 5"},
				{"db2", true, "lower priority (0 < 5)"},
			},
		},
		{
			name:    "tie broken by lag, unknown lag last",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", lag(-1)),
				cand("db3", "0-1-100", lag(2*time.Second)),
				cand("db4", "0-1-100", lag(100*time.Millisecond)),
			},
			want: []want{
				{"db4", true, "lag 100ms"},
				{"db3", true, "higher lag (2s > 100ms)"},
				{"db2", true, "higher lag (unknown > 100ms)"},
			},
		},
		{
			// After stop_io a replica that has applied everything it received may
			// report no lag at all (Seconds_Behind_Master is NULL once the IO thread
			// stops) while one still applying its relay log reports a number.
			name:    "caught up with unknown lag before one still applying",
			primary: primary1,
			candidates: []Candidate{
				cand("db3", "0-1-97", retrieved("0-1-100"), lag(2*time.Second)),
				cand("db2", "0-1-100", retrieved("0-1-100"), lag(-1)),
			},
			want: []want{
				{"db2", true, "nothing left to apply"},
				{"db3", true, "relay log not applied yet"},
			},
		},
		{
			name:    "caught up before one still applying that reports no lag",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-97", retrieved("0-1-100"), lag(0)),
				cand("db3", "0-1-100", retrieved("0-1-100"), lag(-1)),
			},
			want: []want{
				{"db3", true, "most advanced"},
				{"db2", true, "relay log not applied yet"},
			},
		},
		{
			name:    "both caught up: reported lag does not matter",
			primary: primary1,
			candidates: []Candidate{
				cand("db3", "0-1-100", retrieved("0-1-100"), lag(-1)),
				cand("db2", "0-1-100", retrieved("0-1-99"), lag(5*time.Second)),
			},
			want: []want{
				{"db2", true, "most advanced"},
				{"db3", true, "same priority and lag, ordered by name"},
			},
		},
		{
			name:    "full tie ordered by name",
			primary: primary1,
			candidates: []Candidate{
				cand("db3", "0-1-100"),
				cand("db2", "0-1-100"),
			},
			want: []want{
				{"db2", true, "most advanced"},
				{"db3", true, "same priority and lag, ordered by name"},
			},
		},
		{
			name:    "priority never beats missing transactions",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-99", prio(100)),
				cand("db3", "0-1-100"),
			},
			want: []want{
				{"db3", true, "most advanced"},
				{"db2", false, "lacks"},
			},
		},
		{
			name:    "no_promote excluded, but its transactions still count",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-99"),
				cand("db3", "0-1-100", func(c *Candidate) { c.NoPromote = true }),
			},
			want: []want{
				{"db2", false, "lacks transactions db3 has"},
				{"db3", false, "excluded: no_promote"},
			},
		},
		{
			name:    "unpromotable excluded, but its transactions still count",
			primary: primary1,
			candidates: []Candidate{
				cand("db3", "0-1-100", func(c *Candidate) { c.Unpromotable = "its agent is not running" }),
				cand("db2", "0-1-99"),
			},
			want: []want{
				{"db2", false, "lacks transactions db3 has: 0-1-100"},
				{"db3", false, "excluded: its agent is not running"},
			},
		},
		{
			name:    "broken storage and SQL error excluded",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", func(c *Candidate) { c.StorageOK = false }),
				cand("db3", "0-1-100", func(c *Candidate) { c.SQLRunning, c.SQLError = false, "Duplicate entry '5' for key 'PRIMARY'" }),
				cand("db4", "0-1-100"),
			},
			want: []want{
				{"db4", true, "most advanced"},
				{"db2", false, "excluded: storage probe failing"},
				{"db3", false, "excluded: SQL thread stopped with error: Duplicate entry"},
			},
		},
		{
			name:    "SQL thread stopped without error is fine",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", func(c *Candidate) { c.SQLRunning = false }),
			},
			want: []want{{"db2", true, "most advanced"}},
		},
		{
			// The errant replica is the most advanced in domain 0 too, but
			// it is never first, and its errant write does not block the
			// others.
			name:    "errant never ranked first",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100,0-2-101", prio(10)),
				cand("db3", "0-1-100"),
			},
			want: []want{
				{"db3", true, "most advanced"},
				{"db2", false, "excluded: errant transactions the primary never had: 0-2-101"},
			},
		},
		{
			name:    "errant replica with legitimate transactions the others lack",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100,5-2-1"),
				cand("db3", "0-1-99"),
			},
			want: []want{
				{"db3", false, "lacks transactions db2 has: 0-1-100"},
				{"db2", false, "excluded: errant"},
			},
		},
		{
			name:    "incomparable sets: nobody is safe",
			primary: &Server{ServerID: 1, Executed: maria("0-1-100,1-1-50")},
			candidates: []Candidate{
				cand("db2", "0-1-100,1-1-49"),
				cand("db3", "0-1-99,1-1-50"),
			},
			want: []want{
				{"db2", false, "lacks transactions db3 has: 1-1-50"},
				{"db3", false, "lacks transactions db2 has: 0-1-100"},
			},
		},
		{
			// Received but not yet applied counts: after the wait it will
			// have it. Target is what to wait for.
			name:    "retrieved transactions count",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-97", retrieved("0-1-100")),
				cand("db3", "0-1-99", retrieved("0-1-99")),
			},
			want: []want{
				{"db2", true, "most advanced"},
				{"db3", false, "lacks"},
			},
		},
		{
			name:    "no primary: own writes nobody else has are errant",
			primary: nil,
			candidates: []Candidate{
				cand("db2", "0-1-100,0-2-101"),
				cand("db3", "0-1-100"),
			},
			want: []want{
				{"db3", true, "most advanced"},
				{"db2", false, "excluded: errant transactions the primary never had: 0-2-101"},
			},
		},
		{
			name:    "no primary: a former primary's writes everyone has are fine",
			primary: nil,
			candidates: []Candidate{
				cand("db2", "0-2-50,0-1-100"),
				cand("db3", "0-2-50,0-1-100"),
			},
			want: []want{
				{"db2", true, "most advanced"},
				{"db3", true, "same priority and lag"},
			},
		},
		{
			name:    "primary without an executed set counts as no primary",
			primary: &Server{ServerID: 1},
			candidates: []Candidate{
				cand("db2", "0-1-100,0-2-101"),
				cand("db3", "0-1-100"),
			},
			want: []want{
				{"db3", true, "most advanced"},
				{"db2", false, "excluded: errant"},
			},
		},
		{
			name:       "single candidate, no primary: errant check impossible",
			primary:    nil,
			candidates: []Candidate{cand("db2", "0-1-100,0-2-3")},
			want:       []want{{"db2", true, "errant check skipped"}},
		},
		{
			name:    "unknown set and mixed flavors excluded",
			primary: primary1,
			candidates: []Candidate{
				{Name: "db2", StorageOK: true, SQLRunning: true},
				{Name: "db3", Server: Server{Executed: my(uP + ":1-5")}, StorageOK: true, SQLRunning: true},
				cand("db4", "0-1-100"),
			},
			want: []want{
				{"db4", true, "most advanced"},
				{"db2", false, "excluded: executed GTID set unknown"},
				{"db3", false, "excluded: flavor mysql differs"},
			},
		},
		{
			name: "mysql: superset, errant, stale primary",
			primary: &Server{ServerUUID: uP,
				Executed: my(uO + ":1-50," + uP + ":1-10")},
			candidates: []Candidate{
				{Name: "db2", Server: Server{ServerUUID: uR, Executed: my(uO + ":1-50," + uP + ":1-12," + uR + ":1")}, StorageOK: true, SQLRunning: true},
				{Name: "db3", Server: Server{ServerUUID: "e5f6a7b8-3c5d-11ef-8d2e-0242ac120005", Executed: my(uO + ":1-50," + uP + ":1-11")}, Retrieved: my(uP + ":5-12"), StorageOK: true, SQLRunning: true},
				{Name: "db4", Server: Server{ServerUUID: "f6a7b8c9-3c5d-11ef-8d2e-0242ac120006", Executed: my(uO + ":1-50," + uP + ":1-11")}, StorageOK: true, SQLRunning: true},
			},
			want: []want{
				{"db3", true, "most advanced"},
				{"db4", false, "lacks transactions db2 has: " + uP + ":12"},
				{"db2", false, "excluded: errant transactions the primary never had: " + uR + ":1"},
			},
		},
		{
			name:    "a full disk is never promoted, however advanced",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", runway(-1), prio(10)),
				cand("db3", "0-1-99", runway(0)),
			},
			want: []want{
				{"db3", false, "lacks transactions db2 has: 0-1-100"},
				{"db2", false, "excluded: its disk is full: disk /data: full"},
			},
		},
		{
			name:    "equally advanced: the longer runway first, and the reason says why",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", runway(6*time.Minute)),
				cand("db3", "0-1-100", runway(0)),
			},
			want: []want{
				{"db3", true, "its disk is not filling; preferred to db2, whose disk runs out sooner (at the current rate its disk is full in about 6m)"},
				{"db2", true, "shorter runway: at the current rate its disk is full in about 6m (db3's: not filling)"},
			},
		},
		{
			name:    "two disks filling within a day: the one that lasts longer first",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", runway(10*time.Minute)),
				cand("db3", "0-1-100", runway(2*time.Hour)),
			},
			want: []want{
				{"db3", true, "at the current rate its disk is full in about 2h"},
				{"db2", true, "shorter runway"},
			},
		},
		{
			name:    "a runway shorter than a day outweighs priority",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", runway(6*time.Minute), prio(10)),
				cand("db3", "0-1-100", runway(0)),
			},
			want: []want{
				{"db3", true, "preferred to db2"},
				{"db2", true, "shorter runway"},
			},
		},
		{
			name:    "a day or more is plenty: priority decides",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", runway(30*time.Hour), prio(5)),
				cand("db3", "0-1-100", runway(0)),
			},
			want: []want{
				{"db2", true, "priority 5"},
				{"db3", true, "lower priority (0 < 5)"},
			},
		},
		{
			name:    "an unknown runway is never read as plenty",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-100", prio(10)),
				cand("db3", "0-1-100", runway(2*time.Hour)),
			},
			want: []want{
				{"db3", true, "preferred to db2"},
				{"db2", true, "shorter runway: its disk's runway is unknown"},
			},
		},
		{
			name:    "a runway never outweighs missing transactions",
			primary: primary1,
			candidates: []Candidate{
				cand("db2", "0-1-99", runway(0)),
				cand("db3", "0-1-100", runway(6*time.Minute)),
			},
			want: []want{
				{"db3", true, "at the current rate its disk is full in about 6m"},
				{"db2", false, "lacks"},
			},
		},
		{
			name:       "empty",
			primary:    primary1,
			candidates: nil,
			want:       nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Rank(tt.primary, tt.candidates)
			if len(got) != len(tt.want) {
				t.Fatalf("Rank returned %d results, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Name != w.name || g.Eligible != w.eligible || !strings.Contains(g.Reason, w.reason) {
					t.Errorf("#%d: %s eligible=%t %q; want %s eligible=%t containing %q",
						i, g.Name, g.Eligible, g.Reason, w.name, w.eligible, w.reason)
				}
				// Incomplete is exactly "not excluded, only behind another".
				if want := strings.Contains(w.reason, "lacks"); g.Incomplete != want {
					t.Errorf("#%d: %s incomplete=%t, want %t (%q)", i, g.Name, g.Incomplete, want, g.Reason)
				}
			}
		})
	}
}

func TestRankTarget(t *testing.T) {
	got := Rank(primary1, []Candidate{cand("db2", "0-1-97", retrieved("0-1-100"))})
	if got[0].Target.Position() != "0-1-100" {
		t.Errorf("Target = %s, want 0-1-100", got[0].Target)
	}
	if !got[0].Errant.IsEmpty() {
		t.Errorf("Errant = %s", got[0].Errant)
	}
}

func TestStatusCandidate(t *testing.T) {
	st := Status{ServerID: 2, Executed: maria("0-1-5"), Retrieved: maria("0-1-6"),
		SQLThread: ThreadRunning, LastSQLError: "", Lag: 3 * time.Second, LagKnown: true}
	c := st.Candidate("db2")
	if c.Name != "db2" || c.ServerID != 2 || !c.SQLRunning || c.Lag != 3*time.Second || c.Retrieved.Position() != "0-1-6" {
		t.Errorf("Candidate = %+v", c)
	}
	st.LagKnown = false
	if c := st.Candidate("db2"); c.Lag >= 0 {
		t.Errorf("unknown lag = %s, want negative", c.Lag)
	}
}
