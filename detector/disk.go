package detector

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// trendCap bounds the samples a Trend keeps, whatever the window and interval: memory
// stays fixed even with a fast interval and a long window.
const trendCap = 256

type sample struct {
	at   time.Time
	free float64
}

// Trend estimates how fast a filesystem fills, by least squares over the free-space
// samples of a time window. Free space moves in steps (binlog rotation, InnoDB
// extending a file), so a fit over a window says more than the last two samples.
// When space is freed (free grows by more than 1% of the filesystem: binlogs purged,
// a file deleted) the samples before it no longer predict anything and are dropped.
type Trend struct {
	window  time.Duration
	minSpan time.Duration
	samples []sample // oldest first, at most trendCap
}

// NewTrend keeps samples for window and estimates once they span at least minSpan.
func NewTrend(window, minSpan time.Duration) *Trend {
	return &Trend{window: window, minSpan: minSpan}
}

// Add records the free bytes of a filesystem of total bytes at a time. Samples must
// come in time order; one at or before the latest is ignored.
func (t *Trend) Add(at time.Time, free, total uint64) {
	if n := len(t.samples); n > 0 {
		last := t.samples[n-1]
		if !at.After(last.at) {
			return
		}
		if float64(free)-last.free > float64(total)/100 {
			t.samples = t.samples[:0]
		}
	}
	t.samples = append(t.samples, sample{at, float64(free)})
	cut := 0
	for cut < len(t.samples) && at.Sub(t.samples[cut].at) > t.window {
		cut++
	}
	if over := len(t.samples) - cut - trendCap; over > 0 {
		cut += over
	}
	if cut > 0 {
		t.samples = append(t.samples[:0], t.samples[cut:]...)
	}
}

// Restart drops every sample: the next ones start a new trend.
func (t *Trend) Restart() { t.samples = t.samples[:0] }

// trendsAfresh says, from a round's ping, whether the disk trends must start afresh
// (afresh) and whether the server is now not running (notRunning), given whether it
// was not running at the round before (wasNotRunning). A server that stops and
// starts again removes and writes files of its own (InnoDB's temporary tablespace,
// 12 MiB by default, written in full at start-up): steps of free space, not a fill.
// The one at the stop frees space, which starts a new trend anyway; the one at the
// start would then weigh as a fast fill until it left the window. So the trends
// start afresh at the first round the server answers after it did not run.
func trendsAfresh(wasNotRunning bool, ping *Result) (afresh, notRunning bool) {
	switch {
	case ping == nil:
		return false, wasNotRunning
	case ping.Class == Refused:
		return false, true
	case ping.Class == OK:
		return wasNotRunning, false
	}
	return false, wasNotRunning // frozen, cut off, busy: the same process, whatever it does
}

// Rate returns the fill rate in bytes per second (positive while free space shrinks)
// and whether the samples span enough time to say.
func (t *Trend) Rate() (float64, bool) {
	n := len(t.samples)
	if n < 2 || t.samples[n-1].at.Sub(t.samples[0].at) < t.minSpan {
		return 0, false
	}
	t0 := t.samples[0].at
	var mx, my float64
	for _, s := range t.samples {
		mx += s.at.Sub(t0).Seconds()
		my += s.free
	}
	mx /= float64(n)
	my /= float64(n)
	var sxy, sxx float64
	for _, s := range t.samples {
		dx := s.at.Sub(t0).Seconds() - mx
		sxy += dx * (s.free - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0, false
	}
	return -sxy / sxx, true
}

// timeToFull is free / rate while the disk fills, 0 otherwise.
func timeToFull(free uint64, rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	s := float64(free) / rate
	if s > float64(100*365*24*3600) {
		return 0 // not filling in any sense that matters
	}
	ttf := time.Duration(s * float64(time.Second))
	if ttf == 0 {
		ttf = 1 // full now, yet "filling": keep it distinct from "not filling"
	}
	return ttf
}

// statfs reads a filesystem's size and the space an unprivileged process (mysqld runs
// as mysql) may still use: ext4 keeps reserved blocks for root.
func statfs(path string) (total, free uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bavail * bs, nil
}
