package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/failover"
	"github.com/baton-ha/baton/internal/agent"
)

// Shared by `baton switchover` and `baton failover`: check the request as the
// coordinator will, ask for confirmation, file it in etcd and follow its progress.

const (
	// pollEvery is how often the request's progress is read back.
	pollEvery = 50 * time.Millisecond
	// pickupTimeout bounds the wait for a coordinator to start on a request; past it
	// the request is withdrawn, so that it cannot run later, unseen.
	pickupTimeout = 10 * time.Second
)

func requestFlags(kind cluster.RequestKind) []cli.Flag {
	flags := append(clusterFlags(),
		&cli.StringFlag{Name: "to", Usage: "node to promote (default: the coordinator chooses the most complete healthy replica)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "show the plan and the pre-checks, change nothing"},
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (needed when stdin is not a terminal)"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object at the end instead of the plan and progress lines"},
		&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "how long to follow the request before giving up watching (it goes on in the coordinator)"},
	)
	if kind == cluster.RequestFailover {
		flags = append(flags, &cli.BoolFlag{Name: "force", Usage: "fail over even though the primary is healthy (its writes stop at once; prefer switchover), or a replica's server cannot be read (writes only it has are lost)"})
	}
	return flags
}

// requestResult is what `--json` prints: one object, whatever the outcome.
type requestResult struct {
	OK      bool   `json:"ok"`
	Kind    string `json:"kind"`
	Request string `json:"request,omitempty"`
	DryRun  bool   `json:"dry_run,omitempty"`
	From    string `json:"from"`
	To      string `json:"to"`
	// Epoch is the new primary epoch when done, else the current one.
	Epoch uint64     `json:"epoch"`
	Steps []stepJSON `json:"steps"`
	// TotalMS is the time from filing the request to seeing it done; FlowMS the
	// coordinator's own measure of the flow.
	TotalMS int64 `json:"total_ms"`
	FlowMS  int64 `json:"flow_ms"`
	// WriteBlockMS: see writeBlock.
	WriteBlockMS int64          `json:"write_block_ms"`
	Error        string         `json:"error"`
	Plan         *failover.Plan `json:"plan,omitempty"`
	// Policy is what the plan was made with: the cluster's, unless PolicyNote says
	// otherwise.
	Policy     cluster.Policy `json:"policy"`
	PolicyNote string         `json:"policy_note,omitempty"`
}

type stepJSON struct {
	Name   string `json:"name"`
	TookMS int64  `json:"took_ms"`
	Error  string `json:"error"`
	Note   string `json:"note,omitempty"`
}

func stepsJSON(steps []cluster.Step) []stepJSON {
	out := make([]stepJSON, 0, len(steps))
	for _, s := range steps {
		out = append(out, stepJSON{Name: s.Name, TookMS: s.Took.Milliseconds(), Error: s.Error, Note: s.Note})
	}
	return out
}

// writeBlock is how long a flow kept writes from being acknowledged, as its
// coordinator measured it: from the start of the announce step (the old primary's
// agent fences itself as soon as it sees the flow's intent) to the end of the
// promote step (the new primary's agent has made its server writable), and on to
// the end of can_commit or address (its virtual IP moved), whichever is last, when
// there is one (with semi-sync a
// commit is acknowledged only once a replica is connected to acknowledge it): the
// sum of the steps in between, which run one after the other. Checks before the
// announce (pre hook, ranking, open writes) do not block writes and are not counted;
// a failover fences the old primary beside the other steps, so that step is not
// added either. Not counted: the few ms the coordinator spends recording each step in
// etcd, and what clients add (gratuitous ARP reaching them, reconnecting), and for a
// failover the time before it started (see the history's detected). ok is false when
// the flow did not get as far as a successful promote step.
func writeBlock(kind string, steps []cluster.Step) (d time.Duration, ok bool) {
	in, promoted := false, false
	var after, upTo time.Duration
	for _, s := range steps {
		if s.Name == "announce" {
			in = true
		}
		if !in || (kind == string(cluster.RequestFailover) && s.Name == "fence_old_primary") {
			continue
		}
		if promoted {
			// After the promotion, with semi-sync, commits wait until a replica is
			// connected to acknowledge them (through repoint_silent to the end of
			// can_commit), and clients of a virtual IP until it has moved (the end
			// of address): up to the last of these. Without either nothing after
			// promote counts.
			after += s.Took
			if s.Name == "can_commit" || s.Name == "address" {
				upTo = after
			}
			continue
		}
		d += s.Took
		if s.Name == "promote" {
			if s.Error != "" {
				return d, false
			}
			promoted = true
		}
	}
	return d + upTo, promoted
}

// planPolicy returns the policy a request is planned with: the cluster's, from etcd
// (what the coordinator decides with), else, while the cluster has none readable, the
// --config file's or Baton's defaults; note says which when it is not the cluster's.
func planPolicy(snap cluster.Snapshot, configPath string) (cluster.Policy, string, error) {
	own := agent.DefaultConfig().Policy()
	from := "Baton's defaults"
	if configPath != "" {
		c, err := agent.Load(configPath, os.Getenv)
		if err != nil {
			return cluster.Policy{}, "", err
		}
		own, from = c.Policy(), configPath+"'s"
	}
	p, src, why, err := cluster.EffectivePolicy(snap, own)
	if err != nil {
		return cluster.Policy{}, "", err
	}
	if src == cluster.PolicyFromEtcd {
		return p, "", nil
	}
	return p, fmt.Sprintf("%s: planned with %s policy, as a coordinator would decide with its own file's", why, from), nil
}

// runRequest is the action of `baton switchover` and `baton failover`.
func runRequest(cctx *cli.Context, kind cluster.RequestKind) error {
	name := string(kind)
	fail := func(code int, format string, args ...any) error {
		return cli.Exit("baton "+name+": "+fmt.Sprintf(format, args...), code)
	}
	if cctx.NArg() > 0 {
		return fail(exitBadInput, "unexpected argument %q (give the node to promote with --to)", cctx.Args().First())
	}
	if cctx.Duration("timeout") <= 0 {
		return fail(exitBadInput, "--timeout %s: must be positive", cctx.Duration("timeout"))
	}
	jsonOut, dryRun, to := cctx.Bool("json"), cctx.Bool("dry-run"), cctx.String("to")
	if to != "" {
		if err := cluster.CheckName("--to", to); err != nil {
			return fail(exitBadInput, "%v", err)
		}
	}
	l, err := loadCluster(cctx)
	if err != nil {
		return fail(exitBadInput, "%v", err)
	}
	defer l.close()
	store, ctx, snap := l.store, l.ctx, l.snap
	if to != "" {
		if _, ok := snap.Nodes[to]; !ok && to != snap.Primary.Node {
			return fail(exitBadInput, "unknown node %q, or its agent is not running (known: %s)", to, strings.Join(knownNodes(snap), ", "))
		}
		if to == snap.Primary.Node {
			return fail(exitBadInput, "--to %s: it is the primary of record already (epoch %d); name a replica", to, snap.Primary.Epoch)
		}
	}
	req := cluster.Request{ID: newRequestID(string(kind)), Kind: kind, To: to, Force: cctx.Bool("force"),
		Epoch: snap.Primary.Epoch, At: time.Now().UTC()}
	policy, policyNote, err := planPolicy(snap, cctx.String("config"))
	if err != nil {
		return fail(exitBadInput, "%v", err)
	}
	plan := failover.PlanRequest(time.Now(), snap.View, policy, req)
	res := requestResult{Kind: name, DryRun: dryRun, From: plan.From, To: plan.To, Epoch: plan.Epoch, Steps: []stepJSON{}, Plan: &plan,
		Policy: policy, PolicyNote: policyNote}
	finish := func(code int, format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		res.OK, res.Error = code == 0, msg
		if jsonOut {
			printJSON(os.Stdout, res)
		}
		if code == 0 {
			return nil
		}
		return fail(code, "%s", msg)
	}
	if !jsonOut {
		printPolicy(os.Stdout, snap, policy, policyNote)
		printPlan(os.Stdout, snap, plan, to, dryRun)
	}
	if plan.Refused {
		return finish(exitRefused, "refused: %s", plan.Reason)
	}
	if snap.Coordinator == "" {
		return finish(exitBadInput, "no coordinator is elected, nothing would carry this out: are the agents running? (see `baton status`)")
	}
	if dryRun {
		if !jsonOut {
			fmt.Println("dry run: nothing changed")
		}
		return finish(0, "")
	}
	if code, err := confirmed(cctx.Bool("yes"), fmt.Sprintf("%s from %s to %s?", name, plan.From, orAny(plan.To))); err != nil {
		return finish(code, "%v", err)
	}

	filed := time.Now()
	if err := store.PutRequest(ctx, req); err != nil {
		if errors.Is(err, cluster.ErrConflict) {
			return finish(exitRefused, "%v: wait for it (see `baton status`)", err)
		}
		return finish(exitBadInput, "%v", err)
	}
	res.Request = req.ID
	if !jsonOut {
		fmt.Printf("filed request %s; coordinator %s carries it out\n", req.ID, snap.Coordinator)
	}
	final, err := followRequest(ctx, store, req, cctx.Duration("timeout"), func(s cluster.Step) {
		if !jsonOut {
			printStep(os.Stdout, s)
		}
	})
	res.TotalMS = time.Since(filed).Milliseconds()
	if final != nil {
		res.Steps = stepsJSON(final.Steps)
		if wb, ok := writeBlock(name, final.Steps); ok {
			res.WriteBlockMS = wb.Milliseconds()
		}
	}
	if err != nil {
		return finish(exitRefused, "%v", err)
	}
	switch final.State {
	case cluster.RequestDone:
		ev := final.Result
		if ev == nil {
			return finish(exitRefused, "request %s is done but carries no result: see `baton history`", req.ID)
		}
		res.To, res.From, res.Epoch, res.FlowMS = ev.To, ev.From, ev.Epoch, ev.Took.Milliseconds()
		if !jsonOut {
			fmt.Printf("done: %s is the primary (epoch %d), was %s; took %s (coordinator %s), writes blocked %s\n",
				ev.To, ev.Epoch, ev.From, roundMS(time.Since(filed)), roundMS(ev.Took), roundMS(time.Duration(res.WriteBlockMS)*time.Millisecond))
		}
		return finish(0, "")
	case cluster.RequestRefused:
		return finish(exitRefused, "refused by the coordinator: %s", final.Error)
	default:
		return finish(exitRefused, "failed: %s (see `baton status`)", final.Error)
	}
}

// followRequest reads the request back every pollEvery, calls onStep for each new
// step, and returns it once it is done, refused or failed. A request no coordinator
// picks up within pickupTimeout, or still pending when ctx ends, is withdrawn.
func followRequest(ctx context.Context, store *cluster.Store, req cluster.Request, limit time.Duration,
	onStep func(cluster.Step)) (*cluster.Request, error) {
	start := time.Now()
	seen := 0
	var last *cluster.Request
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		cur, err := store.Request(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			// etcd may be electing a leader: keep following until the limit.
		case err == nil && (cur == nil || cur.ID != req.ID):
			who := "deleted"
			if cur != nil {
				who = "replaced by request " + cur.ID
			}
			return last, fmt.Errorf("request %s was %s before it finished: see `baton status` and `baton history`", req.ID, who)
		case err == nil:
			last = cur
			for ; seen < len(cur.Steps); seen++ {
				onStep(cur.Steps[seen])
			}
			switch cur.State {
			case cluster.RequestDone, cluster.RequestRefused, cluster.RequestFailed:
				return cur, nil
			case cluster.RequestPending:
				if time.Since(start) > pickupTimeout {
					return last, withdraw(ctx, store, req.ID, fmt.Sprintf("no coordinator started on it within %s", pickupTimeout))
				}
			}
		}
		if time.Since(start) > limit {
			return last, fmt.Errorf("request %s not finished after %s; it goes on in the coordinator: follow it with `baton status`", req.ID, limit)
		}
		select {
		case <-ctx.Done():
			if last == nil || last.State == cluster.RequestPending {
				return last, withdraw(ctx, store, req.ID, "interrupted")
			}
			return last, fmt.Errorf("interrupted; request %s goes on in the coordinator: follow it with `baton status`", req.ID)
		case <-tick.C:
		}
	}
}

// withdraw deletes request id if it is still pending, so that it never runs; why
// says why it is withdrawn. It goes on after an interrupt (ctx ended): the request
// must not stay pending, unseen; the store call has its own deadline.
func withdraw(ctx context.Context, store *cluster.Store, id, why string) error {
	started, err := store.WithdrawRequest(context.WithoutCancel(ctx), id)
	switch {
	case errors.Is(err, cluster.ErrConflict):
		return fmt.Errorf("%s, but request %s changed meanwhile: follow it with `baton status`", why, id)
	case err != nil:
		return fmt.Errorf("%s, and withdrawing request %s failed (it may still run): %w", why, id, err)
	case started != nil:
		return fmt.Errorf("%s, but request %s has started (%s): follow it with `baton status`", why, id, started.State)
	}
	return fmt.Errorf("%s: request %s withdrawn, nothing changed", why, id)
}

// confirm asks question on a terminal and says whether the answer is yes. Without a
// terminal there is nobody to ask: that is an error that says to pass --yes.
func confirm(in *os.File, out io.Writer, question string) (bool, error) {
	if !isTTY(in) {
		return false, errors.New("stdin is not a terminal, so nobody can confirm: pass --yes to proceed")
	}
	fmt.Fprintf(out, "%s [y/N] ", question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

func printPlan(w io.Writer, snap cluster.Snapshot, pl failover.Plan, requested string, dryRun bool) {
	what := fmt.Sprintf("%s from %s (epoch %d) to %s", pl.Kind, orDash(pl.From), pl.Epoch, orAny(pl.To))
	if dryRun {
		what += " (dry run)"
	}
	fmt.Fprintf(w, "plan: %s\n", what)
	for _, c := range pl.Primary {
		fmt.Fprintf(w, "  %s %s (primary): %s\n", mark(c.OK), orDash(pl.From), c.Detail)
	}
	for _, c := range pl.Candidates {
		ok := true
		for _, ch := range c.Checks {
			ok = ok && ch.OK
		}
		label := ""
		switch {
		case c.Node == pl.To && requested != "":
			label = " (target)"
		case c.Node == pl.To:
			label = " (expected choice)"
		case requested != "":
			label = " (not the target)"
		}
		fmt.Fprintf(w, "  %s %s%s: %s\n", mark(ok), c.Node, label, c.Summary())
	}
	if snap.Settings.Paused {
		fmt.Fprintf(w, "  note: the cluster is paused (by %s): requests still run, automatic failover does not\n", orDash(snap.Settings.PausedBy))
	}
	if pl.Refused {
		fmt.Fprintf(w, "verdict: refused: %s\n", pl.Reason)
	} else {
		fmt.Fprintf(w, "verdict: safe: %s\n", pl.Reason)
	}
}

// printPolicy says which failover policy the plan was made with.
func printPolicy(w io.Writer, snap cluster.Snapshot, p cluster.Policy, note string) {
	if note != "" {
		fmt.Fprintf(w, "policy: %s\n  note: %s\n", p, note)
		return
	}
	fmt.Fprintf(w, "policy: %s (the cluster's, set by %s)\n", p, orDash(snap.Policy.SetBy))
	for _, d := range cluster.PolicyDisagreements(snap.Policy, snap.Nodes) {
		fmt.Fprintf(w, "  note: %s's configuration file disagrees: %s\n", d.Node, strings.Join(d.Diff, ", "))
	}
}

func printStep(w io.Writer, s cluster.Step) {
	fmt.Fprintf(w, "  %-18s %6d ms  %s\n", s.Name, s.Took.Milliseconds(), s.Outcome())
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func mark(ok bool) string {
	if ok {
		return "ok  "
	}
	return "FAIL"
}

func orAny(s string) string {
	if s == "" {
		return "the best candidate"
	}
	return s
}

func roundMS(d time.Duration) string { return d.Round(time.Millisecond).String() }

func knownNodes(snap cluster.Snapshot) []string {
	var out []string
	for n := range snap.Nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// isTTY says whether f is a terminal: a character device that answers a terminal
// ioctl (/dev/null is a character device too, and nobody types into it).
func isTTY(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// loaded is what a command that files an operator's request works with: the
// cluster's store, a context an interrupt cancels, and the cluster as it read it.
type loaded struct {
	store *cluster.Store
	ctx   context.Context
	snap  cluster.Snapshot
	close func()
}

// loadCluster opens the cluster's store and reads it once. Its errors are bad
// input (nothing changed: a wrong flag, etcd unreachable). The caller calls close.
func loadCluster(cctx *cli.Context) (loaded, error) {
	store, _, closeFn, err := openCluster(cctx)
	if err != nil {
		return loaded{}, err
	}
	ctx, stop := signal.NotifyContext(cctx.Context, os.Interrupt, syscall.SIGTERM)
	l := loaded{store: store, ctx: ctx, close: func() { stop(); closeFn() }}
	if l.snap, err = store.Load(ctx); err != nil {
		l.close()
		return loaded{}, err
	}
	return l, nil
}

// confirmed asks question on the terminal unless yes: an exit code and why when
// the answer is no or nobody can answer, 0 when it may go on.
func confirmed(yes bool, question string) (int, error) {
	if yes {
		return 0, nil
	}
	ok, err := confirm(os.Stdin, os.Stderr, question)
	switch {
	case err != nil:
		return exitBadInput, err
	case !ok:
		return exitRefused, errors.New("not confirmed: nothing changed")
	}
	return 0, nil
}

// newRequestID names a request: its kind, time and a random suffix.
func newRequestID(kind string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s-%s", kind, time.Now().UTC().Format("20060102T150405"), hex.EncodeToString(b))
}
