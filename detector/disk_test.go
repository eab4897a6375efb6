package detector

import (
	"math"
	"os"
	"testing"
	"time"
)

func TestTrendRate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const mib = 1 << 20
	cases := []struct {
		name    string
		samples func(add func(sec float64, free uint64))
		want    float64 // bytes/s; NaN: no estimate
	}{
		{"no samples", func(func(float64, uint64)) {}, math.NaN()},
		{"span too short", func(add func(float64, uint64)) { add(0, 100*mib); add(1, 99*mib) }, math.NaN()},
		{"steady fill", func(add func(float64, uint64)) {
			for s := 0; s <= 20; s++ {
				add(float64(s), uint64(100*mib-s*mib))
			}
		}, mib},
		{"steady free space", func(add func(float64, uint64)) {
			for s := 0; s <= 20; s++ {
				add(float64(s), 100*mib)
			}
		}, 0},
		{"freeing", func(add func(float64, uint64)) {
			for s := 0; s <= 20; s++ {
				add(float64(s), uint64(50*mib+2*s*mib))
			}
		}, -2 * mib},
		{"steps average out", func(add func(float64, uint64)) {
			// 10 MiB taken every 10 s, in one step: 1 MiB/s on average.
			for s := 0; s <= 40; s++ {
				add(float64(s), uint64(200*mib-(s/10)*10*mib))
			}
		}, mib},
		{"freed space starts a new trend", func(add func(float64, uint64)) {
			// Full, then 150 MiB freed: the fall before the jump says nothing now.
			for s := 0; s <= 10; s++ {
				add(float64(s), uint64(100*mib-10*s*mib))
			}
			for s := 11; s <= 40; s++ {
				add(float64(s), uint64(150*mib-(s-11)*mib/2))
			}
		}, mib / 2},
		{"old samples leave the window", func(add func(float64, uint64)) {
			for s := 0; s <= 100; s++ {
				free := uint64(100 * mib)
				if s > 60 {
					free -= uint64((s - 60) * mib)
				}
				add(float64(s), free)
			}
		}, mib},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTrend(30*time.Second, 10*time.Second)
			tc.samples(func(sec float64, free uint64) {
				tr.Add(t0.Add(time.Duration(sec*float64(time.Second))), free, 1<<30)
			})
			got, ok := tr.Rate()
			if math.IsNaN(tc.want) {
				if ok {
					t.Fatalf("rate %f, want no estimate", got)
				}
				return
			}
			if !ok {
				t.Fatal("no estimate")
			}
			if math.Abs(got-tc.want) > 0.1*mib {
				t.Fatalf("rate %.0f B/s, want %.0f", got, tc.want)
			}
		})
	}
}

// Seed 212 round 24 of the fault campaign: a replica's server restarted cleanly.
// InnoDB removed its 12 MiB temporary tablespace at the stop (space freed: a new
// trend) and wrote it again 4 s later at the start; the step down then read as a
// fill of about 280 KiB/s for a minute (the replica reported degraded). Starting the
// trends afresh when the server answers again leaves nothing to extrapolate.
func TestTrendAfterAServerRestart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const mib = 1 << 20
	down, up := &Result{Class: Refused}, &Result{Class: OK}
	for _, tc := range []struct {
		name     string
		restart  bool // the detector's rule applied
		wantFill bool
	}{
		{"the step at the start read as a fill", false, true},
		{"trends started afresh when the server answers again", true, false},
	} {
		tr := NewTrend(time.Minute, 30*time.Second)
		notRunning := false
		free := func(sec float64) uint64 {
			switch {
			case sec < 10: // running
				return 150 * mib
			case sec < 14: // stopped: ibtmp1 removed
				return 162 * mib
			default: // started: ibtmp1 written again
				return 150 * mib
			}
		}
		for sec := 0.0; sec <= 45; sec += 0.5 {
			ping := up
			if sec >= 10 && sec < 14 {
				ping = down
			}
			var afresh bool
			afresh, notRunning = trendsAfresh(notRunning, ping)
			if afresh && tc.restart {
				tr.Restart()
			}
			tr.Add(t0.Add(time.Duration(sec*float64(time.Second))), free(sec), 256*mib)
		}
		rate, ok := tr.Rate()
		filling := ok && rate > 50*1024
		if filling != tc.wantFill {
			t.Errorf("%s: rate %.0f B/s (estimate %t); want a fill: %t", tc.name, rate, ok, tc.wantFill)
		}
	}
}

func TestTrendsAfresh(t *testing.T) {
	ok, refused, timeout := &Result{Class: OK}, &Result{Class: Refused}, &Result{Class: TimedOut}
	cases := []struct {
		name           string
		was            bool
		ping           *Result
		afresh, notRun bool
	}{
		{"running, answers", false, ok, false, false},
		{"running, refused: stopped", false, refused, false, true},
		{"stopped, still refused", true, refused, false, true},
		{"stopped, answers: started again", true, ok, true, false},
		{"stopped, times out: starting, not answering yet", true, timeout, false, true},
		{"running, times out: frozen, not restarted", false, timeout, false, false},
		{"frozen, answers: the same process", false, ok, false, false},
		{"no ping", true, nil, false, true},
	}
	for _, tc := range cases {
		afresh, notRun := trendsAfresh(tc.was, tc.ping)
		if afresh != tc.afresh || notRun != tc.notRun {
			t.Errorf("%s: afresh %t, not running %t; want %t, %t", tc.name, afresh, notRun, tc.afresh, tc.notRun)
		}
	}
}

func TestTrendBoundsMemory(t *testing.T) {
	t0 := time.Now()
	tr := NewTrend(time.Hour, time.Second)
	for i := 0; i < 10*trendCap; i++ {
		tr.Add(t0.Add(time.Duration(i)*time.Millisecond), uint64(1e9-i), 1<<30)
	}
	if len(tr.samples) > trendCap {
		t.Fatalf("%d samples kept, cap %d", len(tr.samples), trendCap)
	}
	// Out of order samples are ignored.
	n := len(tr.samples)
	tr.Add(t0, 5, 1<<30)
	if len(tr.samples) != n {
		t.Fatal("a sample older than the latest was added")
	}
}

func TestTimeToFull(t *testing.T) {
	cases := []struct {
		free uint64
		rate float64
		want time.Duration
	}{
		{100, 10, 10 * time.Second},
		{100, 0, 0},
		{100, -5, 0},
		{0, 10, 1},
		{1 << 40, 1e-9, 0},
	}
	for _, c := range cases {
		if got := timeToFull(c.free, c.rate); got != c.want {
			t.Errorf("timeToFull(%d, %g) = %s, want %s", c.free, c.rate, got, c.want)
		}
	}
}

func TestStatfs(t *testing.T) {
	total, free, err := statfs(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 || free > total {
		t.Fatalf("statfs %s: total %d free %d", os.TempDir(), total, free)
	}
	if _, _, err := statfs("/no/such/dir"); err == nil {
		t.Fatal("statfs of a missing directory succeeded")
	}
}
