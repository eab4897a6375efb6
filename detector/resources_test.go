package detector

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestIntegerMax(t *testing.T) {
	cases := []struct {
		dataType, columnType string
		want                 uint64
		ok                   bool
	}{
		{"tinyint", "tinyint(4)", 127, true},
		{"tinyint", "tinyint(3) unsigned", 255, true},
		{"smallint", "smallint(6)", 32767, true},
		{"mediumint", "mediumint(8) unsigned", 16777215, true},
		{"int", "int(11)", 2147483647, true},
		{"int", "int unsigned", 4294967295, true}, // MySQL 8.0.19+ prints no width
		{"INT", "INT(10) UNSIGNED ZEROFILL", 4294967295, true},
		{"bigint", "bigint(20)", 9223372036854775807, true},
		{"bigint", "bigint(20) unsigned", 18446744073709551615, true},
		{"double", "double", 0, false},
	}
	for _, tc := range cases {
		got, ok := IntegerMax(tc.dataType, tc.columnType)
		if got != tc.want || ok != tc.ok {
			t.Errorf("IntegerMax(%q, %q) = %d, %v, want %d, %v", tc.dataType, tc.columnType, got, ok, tc.want, tc.ok)
		}
	}
	if got := columnTypeName("int", "int(10) unsigned"); got != "int unsigned" {
		t.Errorf("columnTypeName = %q", got)
	}
}

func TestForecasterConfig(t *testing.T) {
	ok := ForecasterConfig{DSN: "baton@unix(/run/mysqld.sock)/"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*ForecasterConfig)
		want string
	}{
		{"timeout not below the interval", func(c *ForecasterConfig) { c.Interval, c.Timeout = time.Second, time.Second }, "below the interval"},
		{"window shorter than two reads", func(c *ForecasterConfig) {
			c.Interval, c.Timeout, c.Window = 10*time.Second, time.Second, 15*time.Second
		}, "two intervals"},
		{"bad dsn", func(c *ForecasterConfig) { c.DSN = "nope" }, "dsn"},
		{"negative tables", func(c *ForecasterConfig) { c.Tables = -1 }, "tables"},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

// TestForecasterForecast: readings at a steady growth give the time to exhaustion
// once half a window is in, not before; a value that runs out is exhausted at once.
func TestForecasterForecast(t *testing.T) {
	f := &Forecaster{cfg: ForecasterConfig{Window: time.Minute}, trends: map[string]*Trend{}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const max = 2147483647
	fc := Forecast{Resource: ResourceAutoIncrement, Name: "shop.orders.id", Detail: "int"}
	// 50 values a second, 3,000 left at the start: a minute to go.
	next := func(s int) uint64 { return max - 3000 + uint64(50*s) }
	var got Forecast
	for s := 0; s <= 40; s++ {
		got = f.forecast(fc, "auto_increment:shop.orders.id", false, t0.Add(time.Duration(s)*time.Second), next(s)-1, max, 2)
		if s < 30 && got.Outlook != OutlookUnknown {
			t.Fatalf("after %ds (under half a window): %q, want unknown", s, got.Outlook)
		}
	}
	if got.Outlook != OutlookFilling || math.Abs(got.Rate-50) > 0.01 {
		t.Fatalf("after 40s: %+v, want filling at 50/s", got)
	}
	if want := 20 * time.Second; got.Left < want-time.Second || got.Left > want+time.Second {
		t.Errorf("left %s, want about %s", got.Left, want)
	}
	got = f.forecast(fc, "auto_increment:shop.orders.id", false, t0.Add(41*time.Second), max-1, max, 2)
	if got.Outlook != OutlookExhausted || got.Says() != "exhausted" {
		t.Errorf("next value at the column's largest: %q, want exhausted", got.Outlook)
	}
	// A noisy resource keeps its window when it falls back.
	c := Forecast{Resource: ResourceConnections, Name: "connections"}
	for s := 0; s <= 40; s++ {
		used := uint64(10 + s%2*5) // 10, 15, 10, 15...
		got = f.forecast(c, "connections", true, t0.Add(time.Duration(s)*time.Second), used, 60, 1)
	}
	if got.Outlook != OutlookSteady || !got.RateKnown {
		t.Errorf("connections coming and going: %+v, want steady", got)
	}
}

// TestHotKeys: between full scans a forecaster reads again the keys it reports
// (those that run out first, however empty) and the hotKeys fullest, nothing else.
func TestHotKeys(t *testing.T) {
	f := &Forecaster{cfg: ForecasterConfig{Tables: 1}, keys: map[string]key{}, keyFC: map[string]Forecast{}}
	const max = 1000000
	for i := range 50 {
		name := fmt.Sprintf("app.t%02d.id", i)
		f.keys[name] = key{schema: "app", table: fmt.Sprintf("t%02d", i), name: name, next: uint64(1000 * (i + 1)), max: max}
		f.keyFC[name] = Forecast{Resource: ResourceAutoIncrement, Name: name, Outlook: OutlookSteady, RateKnown: true}
	}
	// t03 is nearly empty but fills fastest: reported, so read at every read.
	f.keyFC["app.t03.id"] = Forecast{Resource: ResourceAutoIncrement, Name: "app.t03.id", Outlook: OutlookFilling, RateKnown: true, Left: time.Hour}
	got := map[string]bool{}
	for _, k := range f.hot() {
		got[k.name] = true
	}
	if len(got) != hotKeys+1 {
		t.Errorf("%d hot keys, want %d (the fullest %d and the one that runs out first)", len(got), hotKeys+1, hotKeys)
	}
	if !got["app.t03.id"] {
		t.Error("the key that runs out first is not read between scans")
	}
	for i := 50 - hotKeys; i < 50; i++ {
		if name := fmt.Sprintf("app.t%02d.id", i); !got[name] {
			t.Errorf("%s, among the fullest, is not read between scans", name)
		}
	}
	if got["app.t10.id"] {
		t.Error("app.t10.id, neither reported nor among the fullest, is read between scans")
	}
}
