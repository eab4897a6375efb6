package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/internal/status"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:  "history",
		Usage: "past failovers, switchovers, bootstraps, newest first, with the reason and every step's time",
		Description: `Events are kept in etcd (the last ` + fmt.Sprint(cluster.HistoryKeep) + `). Each shows when it started, from and to which
node, the new epoch, how long it took, whether an operator asked for it, why, and the
time of each step (write_block_ms in --json: see docs/operations.md).

Examples:
   baton history
   baton history --limit 5 --json`,
		Flags: append(clusterFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array"},
			&cli.IntFlag{Name: "limit", Value: 20, Usage: "at most this many events (0: all kept)"},
		),
		Action: func(cctx *cli.Context) error {
			if cctx.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("baton history: unexpected argument %q", cctx.Args().First()), exitBadInput)
			}
			limit := cctx.Int("limit")
			if limit < 0 {
				return cli.Exit(fmt.Sprintf("baton history: --limit %d: must not be negative", limit), exitBadInput)
			}
			store, _, closeFn, err := openCluster(cctx)
			if err != nil {
				return cli.Exit("baton history: "+err.Error(), exitBadInput)
			}
			defer closeFn()
			events, err := store.History(cctx.Context, limit)
			if err != nil {
				return cli.Exit("baton history: "+err.Error(), exitBadInput)
			}
			if cctx.Bool("json") {
				out := make([]historyEvent, 0, len(events))
				for _, e := range events {
					out = append(out, toHistoryEvent(e))
				}
				printJSON(os.Stdout, out)
				return nil
			}
			printHistory(os.Stdout, events)
			return nil
		},
	}
}

// historyEvent is one event as `baton history --json` prints it, durations in ms.
type historyEvent struct {
	Kind         string     `json:"kind"`
	From         string     `json:"from,omitempty"`
	To           string     `json:"to,omitempty"`
	Epoch        uint64     `json:"epoch"`
	Reason       string     `json:"reason"`
	Manual       bool       `json:"manual"`
	Started      time.Time  `json:"started"`
	Detected     *time.Time `json:"detected,omitempty"`
	TookMS       int64      `json:"took_ms"`
	WriteBlockMS *int64     `json:"write_block_ms,omitempty"`
	Steps        []stepJSON `json:"steps"`
	Discarded    []string   `json:"discarded,omitempty"`
	Archive      string     `json:"archive,omitempty"`
	// Salvage is a failover's salvage step (cluster.Salvage), its times in ms.
	Salvage *salvageJSON `json:"salvage,omitempty"`
	// Runway is what the move bought: the new primary's disk at the current rate.
	Runway string `json:"runway,omitempty"`
	Donor  string `json:"donor,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
	Kept   string `json:"kept,omitempty"`
}

type salvageJSON struct {
	From       string `json:"from"`
	To         string `json:"to"`
	After      string `json:"after,omitempty"`
	Applied    int    `json:"applied"`
	First      string `json:"first,omitempty"`
	Last       string `json:"last,omitempty"`
	File       string `json:"file,omitempty"`
	Pos        int64  `json:"pos,omitempty"`
	EndFile    string `json:"end_file,omitempty"`
	EndPos     int64  `json:"end_pos,omitempty"`
	ReadMS     int64  `json:"read_ms"`
	ApplyMS    int64  `json:"apply_ms"`
	Via        string `json:"via,omitempty"`
	LeftBehind string `json:"left_behind,omitempty"`
}

func toHistoryEvent(e cluster.Event) historyEvent {
	h := historyEvent{Kind: e.Kind.String(), From: e.From, To: e.To, Epoch: e.Epoch, Reason: e.Reason, Manual: e.Manual,
		Started: e.Started, TookMS: e.Took.Milliseconds(), Steps: stepsJSON(e.Steps), Discarded: e.Discarded, Archive: e.Archive,
		Runway: e.Runway,
		Donor:  e.Donor, Bytes: e.Bytes, Kept: e.Kept}
	if !e.Detected.IsZero() {
		d := e.Detected
		h.Detected = &d
	}
	if sv := e.Salvage; sv != nil {
		h.Salvage = &salvageJSON{From: sv.From, To: sv.To, After: sv.After, Applied: sv.Applied, First: sv.First, Last: sv.Last,
			File: sv.File, Pos: sv.Pos, EndFile: sv.EndFile, EndPos: sv.EndPos, ReadMS: sv.Read.Milliseconds(), ApplyMS: sv.Apply.Milliseconds(),
			Via: sv.Via, LeftBehind: sv.LeftBehind}
	}
	if wb, ok := writeBlock(e.Kind.String(), e.Steps); ok {
		ms := wb.Milliseconds()
		h.WriteBlockMS = &ms
	}
	return h
}

func printHistory(w io.Writer, events []cluster.Event) {
	if len(events) == 0 {
		fmt.Fprintln(w, "no events yet")
		return
	}
	for i, e := range events {
		if i > 0 {
			fmt.Fprintln(w)
		}
		who := "automatic"
		if e.Manual {
			who = "operator"
		}
		fmt.Fprintf(w, "%s  %s %s -> %s  epoch %d  took %s  (%s)\n", e.Started.Local().Format("2006-01-02 15:04:05.000"),
			e.Kind, orDash(e.From), orDash(e.To), e.Epoch, roundMS(e.Took), who)
		fmt.Fprintf(w, "  reason: %s\n", e.Reason)
		if e.Runway != "" {
			fmt.Fprintf(w, "  bought: %s\n", e.Runway)
		}
		if len(e.Discarded) > 0 {
			fmt.Fprintf(w, "  discarded GTIDs: %s\n", strings.Join(e.Discarded, ", "))
		}
		if e.Archive != "" {
			fmt.Fprintf(w, "  archive (on %s): %s\n", e.From, e.Archive)
		}
		if sv := e.Salvage; sv != nil {
			if sv.Applied > 0 {
				fmt.Fprintf(w, "  salvaged: %d transactions from %s's binary logs onto %s (%s to %s, %s:%d to %s:%d)\n",
					sv.Applied, sv.From, sv.To, sv.First, sv.Last, sv.File, sv.Pos, sv.EndFile, sv.EndPos)
				if sv.Via != "" {
					fmt.Fprintf(w, "  applied by: %s, in %s\n", sv.Via, roundMS(sv.Apply))
				}
			}
			if sv.LeftBehind != "" {
				fmt.Fprintf(w, "  left on %s's disk: %s\n", sv.From, sv.LeftBehind)
			}
		}
		if e.Donor != "" {
			fmt.Fprintf(w, "  copied from %s: %s\n", e.Donor, status.Bytes(e.Bytes))
		}
		if e.Kept != "" {
			fmt.Fprintf(w, "  old datadir kept (on %s): %s\n", e.From, e.Kept)
		}
		if !e.Detected.IsZero() {
			fmt.Fprintf(w, "  detected: %s before it started\n", roundMS(e.Started.Sub(e.Detected)))
		}
		if wb, ok := writeBlock(e.Kind.String(), e.Steps); ok {
			switch {
			case !e.Detected.IsZero():
				fmt.Fprintf(w, "  writes down: at least %s, from the primary first seen failing until a commit could be acknowledged again (%s of it the flow's own); clients add their way back in (the virtual IP's move, their reconnect)\n",
					roundMS(e.Started.Sub(e.Detected)+wb), roundMS(wb))
			default:
				fmt.Fprintf(w, "  writes blocked: %s, from the announce until a commit could be acknowledged again; clients add their way back in (the virtual IP's move, their reconnect)\n", roundMS(wb))
			}
		}
		if len(e.Steps) > 0 {
			var parts []string
			for _, s := range e.Steps {
				p := fmt.Sprintf("%s %dms", s.Name, s.Took.Milliseconds())
				if s.Error != "" {
					p += " (" + s.Outcome() + ")"
				}
				parts = append(parts, p)
			}
			fmt.Fprintf(w, "  steps: %s\n", strings.Join(parts, ", "))
		}
	}
}
