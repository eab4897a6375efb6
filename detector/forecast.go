package detector

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Resource is something a server runs out of, and then takes no more writes (or
// none into one table): space on a filesystem it writes, the values of an
// auto-increment key, room for InnoDB's undo history, connections.
type Resource string

// The resources Baton forecasts. docs/operations.md says what each means and what to
// do about it.
const (
	// ResourceDisk is a filesystem the server writes: its datadir, binary logs or
	// relay logs.
	ResourceDisk Resource = "disk"
	// ResourceAutoIncrement is one table's auto-increment key against the largest
	// value its column type holds: when it runs out, that table takes no insert on
	// any node.
	ResourceAutoIncrement Resource = "auto_increment"
	// ResourcePurgeLag is InnoDB's history list (undo that purge has not removed)
	// against a limit: an open transaction holds purge back, the undo grows and the
	// disk fills.
	ResourcePurgeLag Resource = "purge_lag"
	// ResourceConnections is the server's connections against max_connections.
	ResourceConnections Resource = "connections"
)

// Outlook is where a resource stands. The zero value is unknown, and never reads as
// fine: a forecast that could not be made is not a resource that lasts.
type Outlook string

// Outlooks.
const (
	OutlookUnknown   Outlook = ""          // not measured yet, or unreadable (Forecast.Err says why)
	OutlookExhausted Outlook = "exhausted" // run out now
	OutlookFilling   Outlook = "filling"   // runs out in Forecast.Left at the current rate
	OutlookSteady    Outlook = "steady"    // not growing (or so slowly that it never runs out)
)

// Trx is an open transaction: for the purge lag, the oldest one, which holds purge
// back.
type Trx struct {
	Thread uint64        `json:"thread"`
	Age    time.Duration `json:"age_ns"`
	User   string        `json:"user,omitempty"`
	Host   string        `json:"host,omitempty"`
}

// Forecast is when one resource that can stop a server's writes runs out at its
// current rate.
type Forecast struct {
	Resource Resource `json:"resource"`
	// Name says which one: a filesystem's path, an auto-increment key's
	// schema.table.column, "history list", "connections".
	Name string `json:"name"`
	// Detail is what the name does not say: what a filesystem holds ("datadir,
	// binlog, relay log"), an auto-increment column's type ("int unsigned").
	Detail string `json:"detail,omitempty"`
	// Used and Limit are in the resource's unit: bytes, values, undo log records,
	// connections. Exhausted at Limit.
	Used  float64 `json:"used"`
	Limit float64 `json:"limit"`
	// Rate is how fast Used grows, per second, over the forecast's window; negative
	// while it shrinks, 0 until the window spans enough time (RateKnown).
	Rate      float64 `json:"rate_per_s"`
	RateKnown bool    `json:"rate_known,omitempty"`
	Outlook   Outlook `json:"outlook"`
	// Left is the time until Limit at Rate, with OutlookFilling.
	Left time.Duration `json:"left_ns,omitempty"`
	// Oldest is, for the purge lag, the oldest open transaction; nil when none is
	// open (or not read).
	Oldest *Trx `json:"oldest_trx,omitempty"`
	// Err says why the resource could not be read (OutlookUnknown).
	Err string `json:"error,omitempty"`
}

// Forever is the time to exhaustion beyond which a resource counts as steady: a
// growth that slow is noise, not a forecast.
const Forever = 100 * 365 * 24 * time.Hour

// Foresee says where a resource stands from what is used of it, its limit and the
// growth rate (per second; rateKnown false while the window is too short). A resource
// is exhausted once less than exhaustedAt is left (a disk with less than
// MinUsableFree is full: no server can use what little it keeps). Without a rate, a resource that is not exhausted is
// unknown: free space alone says nothing of when it runs out.
func Foresee(used, limit, rate float64, rateKnown bool, exhaustedAt float64) (Outlook, time.Duration) {
	left := limit - used
	switch {
	case limit <= 0 || math.IsNaN(used) || math.IsNaN(limit):
		return OutlookUnknown, 0
	case left < exhaustedAt:
		return OutlookExhausted, 0
	case !rateKnown || math.IsNaN(rate):
		return OutlookUnknown, 0
	case rate <= 0:
		return OutlookSteady, 0
	}
	s := left / rate
	if s >= Forever.Seconds() {
		return OutlookSteady, 0
	}
	d := time.Duration(s * float64(time.Second))
	if d <= 0 {
		d = time.Nanosecond // running out now, yet not out: keep it apart from "not growing"
	}
	return OutlookFilling, d
}

// Says is where the resource stands in a few words, the same everywhere Baton shows
// it (baton status, the agent's /status, the web view, the history): "full in about
// 9m", "exhausted", "not filling", "unknown".
func (f Forecast) Says() string {
	disk := f.Resource == ResourceDisk
	switch f.Outlook {
	case OutlookExhausted:
		if disk {
			return "full"
		}
		return "exhausted"
	case OutlookFilling:
		if disk {
			return "full in about " + About(f.Left)
		}
		return "exhausted in about " + About(f.Left)
	case OutlookSteady:
		if disk {
			return "not filling"
		}
		return "not growing"
	}
	return "unknown"
}

// Line says the forecast in one line with its figures, for people: "disk /data
// (datadir, binlog): full in about 9m (160 MiB free of 256 MiB, filling at 310
// KiB/s)".
func (f Forecast) Line() string {
	var b strings.Builder
	b.WriteString(f.Title())
	b.WriteString(": ")
	b.WriteString(f.Says())
	if f.Outlook == OutlookUnknown {
		if f.Err != "" {
			b.WriteString(" (" + f.Err + ")")
		} else if f.Limit > 0 {
			b.WriteString(" (" + f.figures() + "; growth not measured yet)")
		}
		return b.String()
	}
	if f.Limit <= 0 {
		return b.String()
	}
	b.WriteString(" (" + f.figures())
	if f.RateKnown && f.Rate > 0 && f.Outlook != OutlookSteady {
		b.WriteString(", " + f.rate())
	}
	b.WriteString(")")
	if o := f.Oldest; o != nil && f.Resource == ResourcePurgeLag {
		b.WriteString("; oldest open transaction " + About(o.Age) + " old (thread " + strconv.FormatUint(o.Thread, 10))
		if o.User != "" {
			b.WriteString(", " + o.User)
			if o.Host != "" {
				b.WriteString("@" + o.Host)
			}
		}
		b.WriteString(")")
	}
	return b.String()
}

// Title names the resource: "disk /data (datadir, binlog)", "auto-increment
// shop.orders.id (int)", "purge lag", "connections".
func (f Forecast) Title() string {
	var t string
	switch f.Resource {
	case ResourceDisk:
		t = "disk " + f.Name
	case ResourceAutoIncrement:
		t = "auto-increment " + f.Name
	case ResourcePurgeLag:
		t = "purge lag"
	case ResourceConnections:
		t = "connections"
	default:
		t = string(f.Resource) + " " + f.Name
	}
	if f.Detail != "" {
		t += " (" + f.Detail + ")"
	}
	return t
}

func (f Forecast) figures() string {
	switch f.Resource {
	case ResourceDisk:
		return fmtBytes(f.Limit-f.Used) + " free of " + fmtBytes(f.Limit)
	case ResourcePurgeLag:
		return "history list " + Count(f.Used) + " of " + Count(f.Limit)
	}
	return Count(f.Used) + " of " + Count(f.Limit) + " used"
}

func (f Forecast) rate() string {
	switch f.Resource {
	case ResourceDisk:
		return "filling at " + fmtBytes(f.Rate) + "/s"
	case ResourceConnections:
		return fmt.Sprintf("growing by %.2g a minute", f.Rate*60)
	}
	if f.Rate < 1 {
		return fmt.Sprintf("growing by %.2g a minute", f.Rate*60)
	}
	return "growing by " + Count(f.Rate) + " a second"
}

// SecondsLeft is the forecast as a number of seconds, for a metric: 0 when
// exhausted, +Inf when not growing, NaN when unknown (no alert threshold matches it,
// and no graph reads it as fine).
func (f Forecast) SecondsLeft() float64 {
	switch f.Outlook {
	case OutlookExhausted:
		return 0
	case OutlookFilling:
		return f.Left.Seconds()
	case OutlookSteady:
		return math.Inf(1)
	}
	return math.NaN()
}

// Ratio is Used over Limit, NaN when unknown.
func (f Forecast) Ratio() float64 {
	if f.Limit <= 0 || (f.Outlook == OutlookUnknown && f.Err != "") {
		return math.NaN()
	}
	return f.Used / f.Limit
}

// Sooner says whether a runs out before b: exhausted first, then filling by time
// left, then unknown, then steady. It orders a node's forecasts for people.
func Sooner(a, b Forecast) bool {
	rank := func(f Forecast) int {
		switch f.Outlook {
		case OutlookExhausted:
			return 0
		case OutlookFilling:
			return 1
		case OutlookUnknown:
			return 2
		}
		return 3
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra < rb
	}
	if a.Outlook == OutlookFilling && a.Left != b.Left {
		return a.Left < b.Left
	}
	return a.Ratio() > b.Ratio()
}

// About writes a forecast's time for people, as precise as a forecast is: "45s",
// "9m", "5h20m", "12d".
func About(d time.Duration) string {
	if s := d.Round(time.Second); s < time.Minute {
		return strconv.Itoa(int(max(time.Second, s)/time.Second)) + "s"
	}
	if m := d.Round(time.Minute); m < time.Hour {
		return strconv.Itoa(int(m/time.Minute)) + "m"
	}
	if hm := d.Round(10 * time.Minute); hm < 48*time.Hour {
		h, m := int(hm/time.Hour), int(hm%time.Hour/time.Minute)
		if m == 0 {
			return strconv.Itoa(h) + "h"
		}
		return strconv.Itoa(h) + "h" + strconv.Itoa(m) + "m"
	}
	return strconv.Itoa(int(d.Round(24*time.Hour)/(24*time.Hour))) + "d"
}

// Count writes a number with thousands separated: "2,147,483,647".
func Count(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	neg := x < 0
	s := strconv.FormatFloat(math.Abs(math.Round(x)), 'f', 0, 64)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
