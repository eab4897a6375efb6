package agent

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// metricRow is one metric the agent registers, as docs/metrics.md lists it.
type metricRow struct {
	Name, Type, Labels, Help string
}

// String is the row's line in docs/metrics.md's table.
func (r metricRow) String() string {
	labels := ""
	if r.Labels != "" {
		var ls []string
		for _, l := range strings.Split(r.Labels, ",") {
			ls = append(ls, "`"+l+"`")
		}
		labels = strings.Join(ls, ", ")
	}
	return fmt.Sprintf("| `%s` | %s | %s | %s |", r.Name, r.Type, labels, r.Help)
}

// describing records the descriptors of every collector registered through it.
type describing struct {
	prometheus.Registerer
	descs []*prometheus.Desc
}

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		d.descs = append(d.descs, desc)
	}
	return d.Registerer.Register(c)
}

func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// registeredMetrics lists every metric NewMetrics registers, sorted by name. Every
// descriptor must show up in a gather after one Update: a metric without a series
// would be invisible to this list, to the docs and to the alerts.
func registeredMetrics(t *testing.T) []metricRow {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec := &describing{Registerer: reg}
	m, err := NewMetrics(rec)
	if err != nil {
		t.Fatal(err)
	}
	m.Update(primaryView())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	var rows []metricRow
	for _, d := range rec.descs {
		sub := fqName.FindStringSubmatch(d.String())
		if sub == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		mf, ok := byName[sub[1]]
		if !ok {
			t.Fatalf("%s is registered but has no series after Update: give it one so that it can be listed", sub[1])
		}
		var labels []string
		if len(mf.GetMetric()) > 0 {
			for _, l := range mf.GetMetric()[0].GetLabel() {
				labels = append(labels, l.GetName())
			}
		}
		sort.Strings(labels)
		rows = append(rows, metricRow{Name: mf.GetName(), Type: strings.ToLower(mf.GetType().String()),
			Labels: strings.Join(labels, ","), Help: mf.GetHelp()})
	}
	if len(rows) != len(mfs) {
		t.Fatalf("%d descriptors but %d metric families gathered", len(rows), len(mfs))
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows
}

var (
	metricName = regexp.MustCompile(`^baton_[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	// Words in a help text that say the metric is a duration, or an amount of data.
	durationWords = regexp.MustCompile(`(?i)\b(latency|duration|lag|seconds|how long|age)\b`)
	byteWords     = regexp.MustCompile(`(?i)\bbytes\b`)
	// Units that Prometheus names never use: base units only.
	otherUnits = regexp.MustCompile(`_(ms|millis|milliseconds|us|microseconds|ns|nanoseconds|minutes|hours|days|kb|mb|gb|kib|mib|gib|kilobytes|megabytes|percent|pct)(_|$)`)
)

// conventionErrors says how a metric breaks Prometheus's naming conventions
// (https://prometheus.io/docs/practices/naming/), nil when it does not.
func conventionErrors(r metricRow) []string {
	var errs []string
	if !metricName.MatchString(r.Name) {
		errs = append(errs, "name must be baton_ then lower-case words joined by single underscores")
	}
	if strings.TrimSpace(r.Help) == "" {
		errs = append(errs, "help text is empty")
	}
	isCounter := r.Type == "counter"
	if isCounter != strings.HasSuffix(r.Name, "_total") {
		errs = append(errs, "counters, and only counters, end in _total")
	}
	base := strings.TrimSuffix(r.Name, "_total")
	if durationWords.MatchString(r.Help) && !strings.HasSuffix(base, "_seconds") {
		errs = append(errs, "a duration is in seconds and its name ends in _seconds")
	}
	if byteWords.MatchString(r.Help) && !strings.HasSuffix(base, "_bytes") {
		errs = append(errs, "an amount of data is in bytes and its name ends in _bytes")
	}
	if strings.Contains(base, "_seconds_") || strings.Contains(base, "_bytes_") {
		errs = append(errs, "the unit comes last (before _total)")
	}
	if otherUnits.MatchString(r.Name) {
		errs = append(errs, "use base units (seconds, bytes, ratios 0-1)")
	}
	if strings.HasSuffix(r.Name, "_info") && (r.Type != "gauge" || r.Labels == "") {
		errs = append(errs, "an _info metric is a gauge at 1 with labels")
	}
	return errs
}

func TestConventionErrors(t *testing.T) {
	cases := []struct {
		row  metricRow
		want int // how many errors
	}{
		{metricRow{"baton_failovers_total", "counter", "result", "Failovers run."}, 0},
		{metricRow{"baton_replication_lag_seconds", "gauge", "", "Heartbeat lag."}, 0},
		{metricRow{"baton_disk_free_bytes", "gauge", "", "Free bytes."}, 0},
		{metricRow{"baton_agent_info", "gauge", "cluster,node", "Always 1."}, 0},
		{metricRow{"baton_failovers", "counter", "", "Failovers run."}, 1},
		{metricRow{"baton_read_only_total", "gauge", "", "1 when read_only."}, 1},
		{metricRow{"baton_replication_lag_ms", "gauge", "", "Heartbeat lag."}, 2},
		{metricRow{"baton_disk_free", "gauge", "", "Free bytes."}, 1},
		{metricRow{"disk_free_bytes", "gauge", "", "Free bytes."}, 1},
		{metricRow{"baton_Disk__free_bytes", "gauge", "", "Free bytes."}, 1},
		{metricRow{"baton_read_only", "gauge", "", ""}, 1},
		{metricRow{"baton_probe_seconds_latency", "gauge", "", "Latency."}, 2},
		{metricRow{"baton_agent_info", "gauge", "", "Always 1."}, 1},
	}
	for _, tc := range cases {
		if got := conventionErrors(tc.row); len(got) != tc.want {
			t.Errorf("%s: %d errors %q, want %d", tc.row.Name, len(got), got, tc.want)
		}
	}
}

// TestMetricNames lists every metric the agent registers, with its help text, and
// checks each against the naming conventions.
func TestMetricNames(t *testing.T) {
	rows := registeredMetrics(t)
	for _, r := range rows {
		t.Logf("%s %s {%s}: %s", r.Name, r.Type, r.Labels, r.Help)
		for _, e := range conventionErrors(r) {
			t.Errorf("%s: %s", r.Name, e)
		}
	}
}

// TestMetricsDoc checks that docs/metrics.md lists exactly the metrics the agent
// registers, each with its type, labels and help text.
func TestMetricsDoc(t *testing.T) {
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `baton_") {
			continue
		}
		name := strings.Trim(strings.SplitN(line, "|", 3)[1], " `")
		documented[name] = strings.TrimSpace(line)
	}
	rows := registeredMetrics(t)
	for _, r := range rows {
		line, ok := documented[r.Name]
		switch {
		case !ok:
			t.Errorf("docs/metrics.md does not list %s; add the row\n%s", r.Name, r)
		case line != r.String():
			t.Errorf("docs/metrics.md's row for %s is out of date:\n%s\nwant\n%s", r.Name, line, r)
		}
		delete(documented, r.Name)
	}
	for name := range documented {
		t.Errorf("docs/metrics.md lists %s, which the agent does not register", name)
	}
}

// TestMetricsAlertInputs checks the values the alert rules depend on: the role, the
// primary of record, the disk forecast, the last failover and failsafe.
func TestMetricsAlertInputs(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	one := func(name string, labels map[string]string, want float64) {
		t.Helper()
		got := gather(t, reg, name, labels)
		if got != want && !(math.IsNaN(want) && math.IsNaN(got)) {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	// Before any status nothing reads as fine: no primary known, forecasts unknown.
	one("baton_primary_of_record_known", nil, 0)
	one("baton_disk_time_to_full_seconds", nil, math.NaN())
	one("baton_last_failover_timestamp_seconds", nil, math.NaN())
	one("baton_node_role", map[string]string{"role": "primary"}, 0)
	one("baton_failsafe_active", nil, 0)

	v := primaryView()
	v.Status.DiskFree = 10 << 30
	m.Update(v)
	one("baton_primary_of_record_known", nil, 1)
	one("baton_node_role", map[string]string{"role": "primary"}, 1)
	one("baton_node_role", map[string]string{"role": "quarantined"}, 0)
	one("baton_disk_time_to_full_seconds", nil, math.Inf(1)) // not filling
	one("baton_last_failover_timestamp_seconds", nil, 0)     // never failed over

	v.Status.DiskTimeToFull = 42*time.Minute + 500*time.Millisecond
	at := time.Date(2026, 2, 27, 10, 0, 0, 250e6, time.UTC)
	v.Primary.LastFailover = at
	m.Update(v)
	one("baton_disk_time_to_full_seconds", nil, 2520.5)
	one("baton_last_failover_timestamp_seconds", nil, float64(at.Unix())+0.25)

	v.Status.DiskFree, v.Status.DiskTimeToFull = 0, 0 // full, or unreadable: never "not filling"
	m.Update(v)
	one("baton_disk_time_to_full_seconds", nil, 0)

	for state, want := range map[FailsafeState]float64{FailsafeKept: 1, FailsafeHeldOff: 0, FailsafeFenced: 0, FailsafeStandby: 0, "": 0} {
		v.Failsafe = &FailsafeView{State: state}
		m.Update(v)
		one("baton_failsafe_active", map[string]string{}, want)
	}
	v.Failsafe = nil
	m.Update(v)
	one("baton_failsafe_active", nil, 0)

	one("baton_semi_sync_awaits_ack", nil, 0)
	v.Status.AwaitsAck = true
	m.Update(v)
	one("baton_semi_sync_awaits_ack", nil, 1)
	v.Status.AwaitsAck = false
	m.Update(v)
	one("baton_semi_sync_awaits_ack", nil, 0)

	r := replicaView()
	r.Status.Role = cluster.RoleQuarantined
	r.Primary = nil
	m.Update(r)
	one("baton_node_role", map[string]string{"role": "quarantined"}, 1)
	one("baton_node_role", map[string]string{"role": "primary"}, 0)
	one("baton_primary_of_record_known", nil, 0)
	one("baton_last_failover_timestamp_seconds", nil, math.NaN())

	r.Status.Role = "" // an agent that cannot tell yet
	m.Update(r)
	one("baton_node_role", map[string]string{"role": "unknown"}, 1)
	one("baton_node_role", map[string]string{"role": "quarantined"}, 0)

	m.SetFailsafe(true)
	one("baton_failsafe_active", nil, 1)
	m.SetFailsafe(false)
	one("baton_failsafe_active", nil, 0)
}

// TestForecastMetrics: each forecast is a series with its time to exhaustion (0 out,
// +Inf not growing, NaN unknown, never a number that reads as fine), a forecast that
// goes takes its series with it, and a replica's lag and heartbeat age are apart.
func TestForecastMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	series := func(name string) int {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return len(mf.GetMetric())
			}
		}
		return 0
	}
	one := func(name string, labels map[string]string, want float64) {
		t.Helper()
		got := gather(t, reg, name, labels)
		if got != want && !(math.IsNaN(want) && math.IsNaN(got)) && !(math.Abs(got-want) < 1e-9) {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	one("baton_innodb_history_list_length", nil, math.NaN())
	one("baton_innodb_oldest_transaction_age_seconds", nil, math.NaN())

	r := replicaView()
	r.Status.LagMS, r.Status.HeartbeatMS = 0, 1624 // caught up, the heartbeat's sawtooth and skew
	key := detector.Forecast{Resource: detector.ResourceAutoIncrement, Name: "shop.orders.id", Used: 2147483000, Limit: 2147483647,
		Rate: 10, RateKnown: true, Outlook: detector.OutlookFilling, Left: 64 * time.Second}
	r.Status.Forecasts = []detector.Forecast{
		key,
		{Resource: detector.ResourceDisk, Name: "/relay", Used: 1, Limit: 4, Outlook: detector.OutlookExhausted},
		{Resource: detector.ResourceConnections, Name: "connections", Used: 12, Limit: 60}, // rate not measured yet
		{Resource: detector.ResourcePurgeLag, Name: "history list", Used: 4000, Limit: 1e6, RateKnown: true, Outlook: detector.OutlookSteady},
	}
	m.Update(r)
	one("baton_replication_lag_seconds", nil, 0)
	one("baton_replication_heartbeat_age_seconds", nil, 1.624)
	one("baton_resource_time_to_exhaustion_seconds", map[string]string{"resource": "auto_increment", "name": "shop.orders.id"}, 64)
	one("baton_resource_time_to_exhaustion_seconds", map[string]string{"resource": "disk", "name": "/relay"}, 0)
	one("baton_resource_time_to_exhaustion_seconds", map[string]string{"resource": "connections", "name": "connections"}, math.NaN())
	one("baton_resource_time_to_exhaustion_seconds", map[string]string{"resource": "purge_lag", "name": "history list"}, math.Inf(1))
	one("baton_resource_used_ratio", map[string]string{"resource": "connections", "name": "connections"}, 0.2)
	one("baton_innodb_history_list_length", nil, 4000)
	one("baton_innodb_oldest_transaction_age_seconds", nil, 0) // none open

	r.Status.Forecasts = r.Status.Forecasts[1:] // the key is no longer reported
	r.Status.Forecasts[2].Oldest = &detector.Trx{Thread: 42, Age: 90 * time.Minute}
	m.Update(r)
	if n := series("baton_resource_time_to_exhaustion_seconds"); n != 3 {
		t.Errorf("%d series after a forecast went, want 3", n)
	}
	one("baton_innodb_oldest_transaction_age_seconds", nil, 5400)

	p := primaryView()
	m.Update(p)
	one("baton_replication_heartbeat_age_seconds", nil, math.NaN())
	if n := series("baton_resource_time_to_exhaustion_seconds"); n != 2 {
		t.Errorf("%d series for the primary's two forecasts, want 2", n)
	}
}
