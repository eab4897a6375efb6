package status

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
)

// WarnWithin is, by resource, how soon a forecast must run out to be a warning in
// baton status and the web view: the lead time of its alert rule
// (deploy/prometheus/baton.rules.yml), long enough to act. Widening an INT key is a
// table rebuild; a forgotten transaction, a full disk or a pile of connections is
// an hour's work at most.
var WarnWithin = map[detector.Resource]time.Duration{
	detector.ResourceDisk:          time.Hour,
	detector.ResourceAutoIncrement: 30 * 24 * time.Hour,
	detector.ResourcePurgeLag:      time.Hour,
	detector.ResourceConnections:   10 * time.Minute,
}

// LongOpenTrx is the age from which the oldest open transaction is a warning: it
// holds purge back, and the undo it keeps grows with every write.
const LongOpenTrx = time.Hour

// warns says whether a forecast is a warning: run out, or running out within its
// resource's WarnWithin.
func warns(f detector.Forecast) bool {
	switch f.Outlook {
	case detector.OutlookExhausted:
		return true
	case detector.OutlookFilling:
		return f.Left < WarnWithin[f.Resource]
	}
	return false
}

// ForecastWarnings says what runs out soon, node by node, and what no failover can
// fix: an auto-increment key running out on every node (the table is replicated:
// whichever node is primary refuses its inserts), every node's disk filling at once.
// Forecasts never decide anything (failover.Decide does not read them); the
// candidates' runways only order a failover's candidates.
func ForecastWarnings(snap cluster.Snapshot) []string {
	names := make([]string, 0, len(snap.Nodes))
	for name := range snap.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []string
	keys := map[string][]string{}           // auto-increment key -> nodes where it runs out soon
	worst := map[string]detector.Forecast{} // its forecast that runs out first
	failed := map[string][]string{}         // a forecast that could not be made -> nodes
	for _, name := range names {
		n := snap.Nodes[name]
		for _, f := range n.Forecasts {
			switch {
			case f.Err != "":
				what := f.Title() + " not forecast: " + f.Err
				failed[what] = append(failed[what], name)
			case !warns(f):
				if o := f.Oldest; f.Resource == detector.ResourcePurgeLag && o != nil && o.Age >= LongOpenTrx {
					out = append(out, fmt.Sprintf("%s: a transaction has been open for %s (thread %d%s): it holds purge back, and the undo grows with every write; end it (KILL %d) if nobody is waiting on it",
						name, detector.About(o.Age), o.Thread, who(o), o.Thread))
				}
			case f.Resource == detector.ResourceAutoIncrement:
				keys[f.Name] = append(keys[f.Name], name)
				if w, ok := worst[f.Name]; !ok || detector.Sooner(f, w) {
					worst[f.Name] = f
				}
			default:
				out = append(out, name+": "+f.Line()+advice(f))
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		nodes, f := keys[key], worst[key]
		if len(nodes) == len(names) {
			out = append(out, fmt.Sprintf("%s (%s) %s on every node (%s): inserts into %s fail on whichever node is primary, and no failover can fix it (the table is replicated); make the column wider (ALTER TABLE %s MODIFY %s BIGINT UNSIGNED ..., keeping its other attributes)",
				key, f.Detail, f.Says(), strings.Join(nodes, ", "), table(key), table(key), column(key)))
			continue
		}
		for _, name := range nodes {
			g, _ := snap.Nodes[name].Forecast(detector.ResourceAutoIncrement, key)
			out = append(out, name+": "+g.Line()+"; make the column wider before it runs out")
		}
	}
	for _, what := range slices.Sorted(maps.Keys(failed)) {
		out = append(out, strings.Join(failed[what], ", ")+": "+what)
	}
	if w := everyDiskFills(snap, names); w != "" {
		out = append(out, w)
	}
	return out
}

// everyDiskFills says when every node's disk fills within the disk's warning time:
// a failover then buys little time.
func everyDiskFills(snap cluster.Snapshot, names []string) string {
	if len(names) < 2 {
		return ""
	}
	var each []string
	for _, name := range names {
		rw := snap.Nodes[name].Runway()
		if !warns(rw) {
			return ""
		}
		each = append(each, name+": "+rw.Says())
	}
	return "every node's disk fills within the hour (" + strings.Join(each, ", ") + "): a failover buys little time; free space, or stop what writes so much"
}

// advice is what to do about a forecast that warns, after its line.
func advice(f detector.Forecast) string {
	switch f.Resource {
	case detector.ResourceDisk:
		return ": free space on it (binary logs every replica has, files that are not the server's), or grow the filesystem"
	case detector.ResourcePurgeLag:
		if o := f.Oldest; o != nil {
			return fmt.Sprintf(": purge is held back; the oldest open transaction is thread %d: end it if nobody waits on it (KILL %d)", o.Thread, o.Thread)
		}
		return ": purge cannot keep up with the writes"
	case detector.ResourceConnections:
		return ": find what opens them (SHOW PROCESSLIST), or raise max_connections"
	}
	return ""
}

func who(o *detector.Trx) string {
	if o.User == "" {
		return ""
	}
	if o.Host == "" {
		return ", " + o.User
	}
	return ", " + o.User + "@" + o.Host
}

// table is schema.table of an auto-increment key's schema.table.column; column its
// column.
func table(key string) string {
	if i := strings.LastIndexByte(key, '.'); i > 0 {
		return key[:i]
	}
	return key
}

func column(key string) string { return key[strings.LastIndexByte(key, '.')+1:] }

// printForecasts writes, node by node, the three forecasts that run out first.
func printForecasts(w io.Writer, st Cluster) {
	var rows []string
	for _, n := range st.Nodes {
		if len(n.Forecasts) == 0 {
			continue
		}
		var says []string
		for _, f := range n.Forecasts[:min(3, len(n.Forecasts))] {
			says = append(says, f.Title()+": "+f.Says)
		}
		rows = append(rows, n.Name+"\t"+strings.Join(says, "; "))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "runs out first (baton status --json has every forecast):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, "  "+r)
	}
	_ = tw.Flush()
}
