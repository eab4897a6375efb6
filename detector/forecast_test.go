package detector

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestForesee(t *testing.T) {
	cases := []struct {
		name              string
		used, limit, rate float64
		rateKnown         bool
		exhaustedAt       float64
		want              Outlook
		wantLeft          time.Duration
	}{
		{"filling", 900, 1000, 10, true, 1, OutlookFilling, 10 * time.Second},
		{"exhausted at the limit", 1000, 1000, 10, true, 1, OutlookExhausted, 0},
		{"exhausted below the usable rest", 1000 - 512, 1000, 0, false, 1024, OutlookExhausted, 0},
		{"one value left is not exhausted", 999, 1000, 1, true, 1, OutlookFilling, time.Second},
		{"not growing", 500, 1000, 0, true, 1, OutlookSteady, 0},
		{"shrinking", 500, 1000, -3, true, 1, OutlookSteady, 0},
		{"growth too slow to matter", 0, 1e18, 1e-3, true, 1, OutlookSteady, 0},
		// A zero rate that was never measured is not "not growing".
		{"rate not measured yet", 500, 1000, 0, false, 1, OutlookUnknown, 0},
		{"no limit known", 500, 0, 10, true, 1, OutlookUnknown, 0},
		{"nothing read", math.NaN(), 1000, 10, true, 1, OutlookUnknown, 0},
	}
	for _, tc := range cases {
		got, left := Foresee(tc.used, tc.limit, tc.rate, tc.rateKnown, tc.exhaustedAt)
		if got != tc.want || left != tc.wantLeft {
			t.Errorf("%s: %q %s, want %q %s", tc.name, got, left, tc.want, tc.wantLeft)
		}
	}
}

// TestForecastWords: every view says a forecast in the same words, and an unknown one
// never reads as fine in any of them.
func TestForecastWords(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name    string
		f       Forecast
		says    string
		line    []string // substrings of Line
		seconds float64  // NaN: unknown
	}{
		{"disk filling", Forecast{Resource: ResourceDisk, Name: "/data", Detail: "datadir, binlog", Used: 96 * mib, Limit: 256 * mib,
			Rate: 310 << 10, RateKnown: true, Outlook: OutlookFilling, Left: 9*time.Minute + 11*time.Second},
			"full in about 9m", []string{"disk /data (datadir, binlog): full in about 9m", "160.0 MiB free of 256.0 MiB", "filling at 310.0 KiB/s"}, 551},
		{"disk full", Forecast{Resource: ResourceDisk, Name: "/data", Used: 256 * mib, Limit: 256 * mib, Outlook: OutlookExhausted},
			"full", []string{"disk /data: full (0 B free"}, 0},
		{"disk not filling", Forecast{Resource: ResourceDisk, Name: "/data", Used: mib, Limit: 256 * mib, RateKnown: true, Outlook: OutlookSteady},
			"not filling", []string{"not filling (255.0 MiB free"}, math.Inf(1)},
		{"disk unreadable", Forecast{Resource: ResourceDisk, Name: "/data", Err: "statfs /data: permission denied"},
			"unknown", []string{"unknown (statfs /data: permission denied)"}, math.NaN()},
		{"auto-increment", Forecast{Resource: ResourceAutoIncrement, Name: "shop.orders.id", Detail: "int", Used: 2147480000, Limit: 2147483647,
			Rate: 60, RateKnown: true, Outlook: OutlookFilling, Left: time.Minute},
			"exhausted in about 1m", []string{"auto-increment shop.orders.id (int): exhausted in about 1m", "2,147,480,000 of 2,147,483,647 used", "growing by 60 a second"}, 60},
		{"auto-increment rate not known yet", Forecast{Resource: ResourceAutoIncrement, Name: "shop.orders.id", Detail: "int", Used: 10, Limit: 127},
			"unknown", []string{"10 of 127 used; growth not measured yet"}, math.NaN()},
		{"purge lag", Forecast{Resource: ResourcePurgeLag, Name: "history list", Used: 12345, Limit: 1e6, Rate: 85, RateKnown: true,
			Outlook: OutlookFilling, Left: 3*time.Hour + 12*time.Minute, Oldest: &Trx{Thread: 42, Age: 5 * time.Minute, User: "app", Host: "10.0.0.5"}},
			"exhausted in about 3h10m", []string{"purge lag: exhausted in about 3h10m", "history list 12,345 of 1,000,000", "oldest open transaction 5m old (thread 42, app@10.0.0.5)"}, 11520},
		{"connections", Forecast{Resource: ResourceConnections, Name: "connections", Used: 12, Limit: 60, RateKnown: true, Outlook: OutlookSteady},
			"not growing", []string{"connections: not growing (12 of 60 used)"}, math.Inf(1)},
		{"connections out", Forecast{Resource: ResourceConnections, Name: "connections", Used: 60, Limit: 60, Outlook: OutlookExhausted},
			"exhausted", []string{"connections: exhausted (60 of 60 used)"}, 0},
		{"the zero forecast", Forecast{}, "unknown", []string{"unknown"}, math.NaN()},
	}
	for _, tc := range cases {
		if got := tc.f.Says(); got != tc.says {
			t.Errorf("%s: Says() = %q, want %q", tc.name, got, tc.says)
		}
		line := tc.f.Line()
		for _, want := range tc.line {
			if !strings.Contains(line, want) {
				t.Errorf("%s: Line() = %q, want it to contain %q", tc.name, line, want)
			}
		}
		got := tc.f.SecondsLeft()
		if !(got == tc.seconds || math.IsNaN(got) && math.IsNaN(tc.seconds) || math.Abs(got-tc.seconds) < 1) {
			t.Errorf("%s: SecondsLeft() = %v, want %v", tc.name, got, tc.seconds)
		}
	}
}

func TestAbout(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "1s",
		400 * time.Millisecond:                "1s",
		45 * time.Second:                      "45s",
		59*time.Second + 600*time.Millisecond: "1m",
		9*time.Minute + 11*time.Second:        "9m",
		59*time.Minute + 40*time.Second:       "1h",
		5*time.Hour + 17*time.Minute:          "5h20m",
		47 * time.Hour:                        "47h",
		12*24*time.Hour + 5*time.Hour:         "12d",
	} {
		if got := About(d); got != want {
			t.Errorf("About(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestCount(t *testing.T) {
	for x, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 2147483647: "2,147,483,647", -12345: "-12,345", 0.4: "0"} {
		if got := Count(x); got != want {
			t.Errorf("Count(%v) = %q, want %q", x, got, want)
		}
	}
}

func TestSooner(t *testing.T) {
	f := func(o Outlook, left time.Duration) Forecast { return Forecast{Outlook: o, Left: left, Limit: 1} }
	order := []Forecast{f(OutlookExhausted, 0), f(OutlookFilling, time.Minute), f(OutlookFilling, time.Hour), f(OutlookUnknown, 0), f(OutlookSteady, 0)}
	for i := range order {
		for j := range order {
			if got := Sooner(order[i], order[j]); got != (i < j) {
				t.Errorf("Sooner(%v, %v) = %v", order[i], order[j], got)
			}
		}
	}
}

func TestDiskForecast(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name string
		d    Disk
		want Outlook
	}{
		{"fill rate not known yet", Disk{Path: "/data", Total: 256 * mib, Free: 100 * mib}, OutlookUnknown},
		{"filling", Disk{Path: "/data", Total: 256 * mib, Free: 100 * mib, FillRate: mib, RateKnown: true, TimeToFull: 100 * time.Second}, OutlookFilling},
		{"not filling", Disk{Path: "/data", Total: 256 * mib, Free: 100 * mib, RateKnown: true}, OutlookSteady},
		{"full, rate or not", Disk{Path: "/data", Total: 256 * mib, Free: mib / 2}, OutlookExhausted},
		{"unreadable", Disk{Path: "/data", Err: "statfs: no such file"}, OutlookUnknown},
		{"not read", Disk{Path: "/data"}, OutlookUnknown},
	}
	for _, tc := range cases {
		f := tc.d.Forecast()
		if f.Outlook != tc.want || f.Resource != ResourceDisk || f.Name != "/data" {
			t.Errorf("%s: %+v, want outlook %q", tc.name, f, tc.want)
		}
		if tc.want == OutlookFilling && f.Left != tc.d.TimeToFull {
			t.Errorf("%s: left %s, want the detector's time to full %s", tc.name, f.Left, tc.d.TimeToFull)
		}
		if full := tc.d.Full(); full != (tc.want == OutlookExhausted) {
			t.Errorf("%s: Full() = %v, outlook %q", tc.name, full, f.Outlook)
		}
	}
}
