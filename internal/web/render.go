package web

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/status"
)

//go:embed assets
var assets embed.FS

// Renderer renders the page and its live part from the embedded template.
type Renderer struct{ t *template.Template }

// NewRenderer parses the embedded template.
func NewRenderer() (*Renderer, error) {
	t, err := template.New("web").Funcs(funcs()).ParseFS(assets, "assets/page.html")
	if err != nil {
		return nil, fmt.Errorf("parse page template: %w", err)
	}
	return &Renderer{t: t}, nil
}

// Page writes the whole HTML page of p.
func (r *Renderer) Page(w io.Writer, p Page) error {
	if err := r.t.ExecuteTemplate(w, "page", p); err != nil {
		return fmt.Errorf("render page: %w", err)
	}
	return nil
}

// Clusters writes the live part of the page (what the browser swaps in at each
// change): every cluster of p.
func (r *Renderer) Clusters(w io.Writer, p Page) error {
	if err := r.t.ExecuteTemplate(w, "clusters", p); err != nil {
		return fmt.Errorf("render clusters: %w", err)
	}
	return nil
}

// eventCtx is what the event template gets: the event and an id unique on the page.
type eventCtx struct {
	ID string
	E  Event
}

func funcs() template.FuncMap {
	return template.FuncMap{
		"id":      anchor,
		"rebuild": status.RebuildText,
		"eventCtx": func(clusterName string, i int, e Event) eventCtx {
			return eventCtx{ID: fmt.Sprintf("%s-e%d", clusterName, e.Started.UnixNano()), E: e}
		},
		"rfc3339": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format(time.RFC3339Nano)
		},
		"when":   func(t time.Time) string { return when(t, time.DateTime) },
		"whenMS": func(t time.Time) string { return when(t, "2006-01-02 15:04:05.000") },
		"dur":    formatDuration,
		"health": HealthOf,
		"lag": func(n status.Node) string {
			if n.Role == cluster.RolePrimary || n.LagMS < 0 {
				return "-"
			}
			return formatDuration(time.Duration(n.LagMS) * time.Millisecond)
		},
		"bytes":   formatBytes,
		"first3":  func(fs []status.Forecast) []status.Forecast { return fs[:min(3, len(fs))] },
		"seconds": func(ms int64) string { return strconv.FormatInt(ms/1000, 10) + " s" },
		"f":       func(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) },
		"mod":     func(i, n int) int { return i % n },
		"mul":     func(a, b int) int { return a * b },
		"axis":    func() int { return AxisWidth },
		"lane":    func() int { return LaneHeight },
		"requestState": func(s cluster.RequestState) string {
			if s == cluster.RequestPending {
				return "pending"
			}
			return string(s)
		},
	}
}

func when(t time.Time, layout string) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(layout) + " UTC"
}

// anchor makes a cluster's name an HTML id: letters, digits, '-' and '_' are kept,
// anything else becomes '_'.
func anchor(name string) string {
	var b strings.Builder
	b.WriteString("c-")
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// formatDuration writes d for people: ms below ten seconds, then seconds, minutes.
func formatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < 10*time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

func formatBytes(n uint64) string {
	if n == 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
