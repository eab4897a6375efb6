package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
)

// Config is one campaign.
type Config struct {
	Seed        uint64
	Rounds      int // rounds to run
	FromRound   int // the first round's number (1: from the start); a replay starts later
	Nodes       int // 3 by default
	EtcdMembers int // 1 or 3
	// FailoverBlock is the anti-flap window set as the cluster's policy: the
	// campaign's rounds come faster than the default 5 minutes.
	FailoverBlock time.Duration
	Name          string // sandbox name
	Bin           lab.Binaries
	LogDir        string // a failed round's logs go to LogDir/seed-S-round-R
	KeepGoing     bool   // go on after a failed round
	Progress      io.Writer
	// Schedules, when set, are the rounds to run instead of drawing them (Rounds and
	// FromRound are then taken from them): a replay that does not depend on Draw.
	Schedules []Schedule
}

// Validate checks the configuration and names the bad field.
func (cfg Config) Validate() error {
	switch {
	case cfg.Rounds < 1 || cfg.Rounds > 100000:
		return fmt.Errorf("rounds: %d: use 1 to 100000", cfg.Rounds)
	case cfg.FromRound < 1:
		return fmt.Errorf("from-round: %d: at least 1", cfg.FromRound)
	case cfg.Nodes < 3 || cfg.Nodes > sandbox.MaxNodes:
		return fmt.Errorf("nodes: %d: use 3 to %d", cfg.Nodes, sandbox.MaxNodes)
	case cfg.EtcdMembers != 1 && cfg.EtcdMembers != 3:
		return fmt.Errorf("etcd-members: %d: use 1 or 3", cfg.EtcdMembers)
	case cfg.FailoverBlock < 0 || cfg.FailoverBlock > time.Hour:
		return fmt.Errorf("failover-block: %s: from 0 to 1h", cfg.FailoverBlock)
	case cfg.Name == "":
		return errors.New("name: a sandbox name is required")
	case cfg.Bin.Baton == "" || cfg.Bin.Lab == "":
		return errors.New("bin: both the baton and the baton-lab executables are required")
	case cfg.Bin.Failpoint == "":
		return errors.New("bin: the agents run baton built with -tags failpoint (bin/" + lab.FailpointName + ", `make build`), and there is none")
	case cfg.LogDir == "":
		return errors.New("log-dir: a directory for failed rounds' logs is required")
	}
	return nil
}

// ErrViolations says a campaign found violations; the report has them.
var ErrViolations = errors.New("chaos: invariants violated")

// Run runs the campaign on one sandbox kept across rounds (brought up again only to
// repair a node the runbook could not) and returns its report. It stops at the first
// round with a violation unless cfg.KeepGoing, and then returns ErrViolations with
// the report; the round's logs are in cfg.LogDir.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.Schedules) > 0 {
		cfg.Rounds, cfg.FromRound, cfg.Seed = len(cfg.Schedules), cfg.Schedules[0].Round, cfg.Schedules[0].Seed
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, rep: NewReport(cfg.Seed, cfg.FromRound, cfg.Nodes, cfg.EtcdMembers, cfg.FailoverBlock)}
	started := time.Now()
	defer func() { r.rep.Seconds = time.Since(started).Round(time.Second).Seconds() }()
	if err := r.up(ctx); err != nil {
		return r.rep, err
	}
	defer func() { r.e.close() }()
	failed := false
	for i := 0; i < cfg.Rounds && ctx.Err() == nil; i++ {
		round := cfg.FromRound + i
		s := Draw(cfg.Seed, round, cfg.EtcdMembers)
		if len(cfg.Schedules) > 0 {
			s = cfg.Schedules[i]
			round = s.Round
		}
		ok, err := r.round(ctx, s)
		if err != nil {
			return r.rep, fmt.Errorf("round %d: %w", round, err)
		}
		if !ok {
			failed = true
			if !cfg.KeepGoing {
				break
			}
		}
	}
	if failed {
		return r.rep, ErrViolations
	}
	return r.rep, ctx.Err()
}

type runner struct {
	cfg Config
	rep *Report
	e   *env
	log []string // the current round's events
	t0  time.Time
	// binlogMark is where the next round's gtid_binlog_state reads start in the
	// env's record.
	binlogMark int
}

func (r *runner) say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if !r.t0.IsZero() {
		line = fmt.Sprintf("%7.3fs %s", time.Since(r.t0).Seconds(), line)
	}
	r.log = append(r.log, line)
	if r.cfg.Progress != nil {
		fmt.Fprintln(r.cfg.Progress, line)
	}
}

// up brings up a fresh cluster (taking down one of the same name), sets the
// campaign's anti-flap window, and starts the writer, the monitor and the poller.
func (r *runner) up(ctx context.Context) error {
	if r.e != nil {
		r.e.close()
		r.e = nil
	}
	r.binlogMark = 0
	// The agents run the build with failpoints: any of them can be armed at a step.
	// 512 MB disks: on the default 256 MB, the campaign's own writes (about 190 KiB/s
	// of binary log) brought a disk within the forecast's 10 minutes of full after
	// some 17 rounds, and a replica was rightly degraded, which the liveness check
	// counts as unsettled (seed 449, round 18). A disk-full fault fills the whole
	// disk whatever its size.
	spec := sandbox.Spec{Name: r.cfg.Name, Nodes: r.cfg.Nodes, SemiSync: true, WithAgents: true, VIP: true,
		EtcdMembers: r.cfg.EtcdMembers, Binary: r.cfg.Bin.Failpoint, LabBinary: r.cfg.Bin.Lab, DiskMB: 512}
	if old, err := sandbox.Open("", spec.Name, nil); err == nil {
		_ = old.Down(ctx)
	}
	c, err := sandbox.Up(ctx, spec, nil)
	if err != nil {
		return fmt.Errorf("sandbox up: %w", err)
	}
	e := newEnv(c)
	e.done = func() { _ = c.Down(context.WithoutCancel(ctx)) }
	r.e = e
	cli, err := c.EtcdClient()
	if err != nil {
		return err
	}
	e.store = cluster.NewStore(cli, c.Name)
	done := e.done
	e.done = func() { cli.Close(); done() }
	for _, n := range c.Nodes {
		db, err := c.RootDB(n.Name)
		if err != nil {
			return err
		}
		e.dbs[n.Name] = db
		e.node[uint32(n.ServerID)] = n.Name
	}
	if err := r.setPolicy(ctx); err != nil {
		return err
	}
	// The workload gets its own copy of the sandbox's state: faults re-read the
	// state file into r.e.c while the writer's goroutines read theirs.
	wc, err := sandbox.Open("", c.Name, nil)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.wg.Add(1)
	go e.pollEpochs(pctx)
	for name, db := range e.dbs {
		e.wg.Add(1)
		go e.sampleBinlog(pctx, name, db)
	}
	e.w = wc.NewWriter(20*time.Millisecond, 500*time.Millisecond)
	e.w.Start(pctx)
	e.mon = wc.NewSplitBrainMonitor(50 * time.Millisecond)
	e.mon.Start(pctx)
	if err := lab.Until(ctx, 15*time.Second, func() bool { return len(e.w.Acks()) >= 20 }); err != nil {
		n, last := e.w.Failures()
		return fmt.Errorf("no steady writes on the new cluster (%d failures, last: %s): %w", n, last, err)
	}
	return nil
}

// setPolicy sets the cluster's anti-flap window to the campaign's, as `baton policy
// apply` would, keeping the rest of the policy.
func (r *runner) setPolicy(ctx context.Context) error {
	var snap cluster.Snapshot
	if err := lab.Until(ctx, 10*time.Second, func() bool {
		s, err := r.e.store.Load(ctx)
		snap = s
		return err == nil && s.Policy != nil
	}); err != nil {
		return fmt.Errorf("read the cluster's policy: %w", err)
	}
	rec := *snap.Policy
	rec.Policy.FailoverBlock = r.cfg.FailoverBlock
	rec.SetBy, rec.At = "operator:baton-lab bench chaos", time.Now().UTC()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.e.store.PutPolicy(pctx, snap.PolicyModRev, rec); err != nil {
		return fmt.Errorf("set the campaign's policy: %w", err)
	}
	return nil
}

// step is one injection or heal of a round, at its time.
type step struct {
	at   time.Duration
	heal bool
	i    int // index into the round's faults
}

// resolved is a fault bound to what it hits.
type resolved struct {
	Fault
	node   string // a node fault's node (a request's: the node it names, if any)
	member string // an etcd member ("" with EtcdAllStop: every one)
	done   bool   // injected, to heal
	err    string
	pause  *pauseWatch // a PauseAt's watcher, once armed
}

func (f resolved) String() string {
	switch {
	case f.Kind.Class() == ClassRequest && f.node != "":
		return fmt.Sprintf("%s to %s", f.Kind, f.node)
	case f.node != "":
		return fmt.Sprintf("%s on %s (%s)", f.Name(), f.node, f.Target)
	case f.member != "":
		return fmt.Sprintf("%s on %s", f.Kind, f.member)
	}
	return f.Kind.String()
}

// round runs one round: it returns false when an invariant broke (the logs are then
// kept), and an error only when the campaign cannot go on.
func (r *runner) round(ctx context.Context, s Schedule) (bool, error) {
	r.log, r.t0 = nil, time.Now()
	r.say("round %d: %s", s.Round, s)
	if err := r.ready(ctx, s.Round); err != nil {
		return false, err
	}
	before, snap := r.e.observe(ctx)
	r.say("before: %s", describe(before))
	fs := r.resolve(ctx, s, before, snap)
	var steps []step
	for i, f := range fs {
		steps = append(steps, step{at: f.At, i: i})
		if !f.Kind.OneShot() && f.Kind != PauseAt { // a pause is healed by its watcher
			steps = append(steps, step{at: f.At + f.For, heal: true, i: i})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	start := time.Now()
	var injected, healed time.Time
	var errs []string
	for _, st := range steps {
		if d := time.Until(start.Add(st.at)); d > 0 {
			select {
			case <-ctx.Done():
				r.healAll(fs)
				return false, ctx.Err()
			case <-time.After(d):
			}
		}
		f := &fs[st.i]
		if !st.heal {
			if injected.IsZero() {
				injected = time.Now()
			}
			if err := r.inject(ctx, f, before, start.Add(s.End()+pauseReach)); err != nil {
				f.err = err.Error()
				r.say("inject %s: %v", f, err)
				errs = append(errs, fmt.Sprintf("round %d: inject %s: %v", s.Round, f, err))
				continue
			}
			f.done = !f.Kind.OneShot()
			r.say("injected %s", f)
			continue
		}
		if err := r.heal(ctx, f); err != nil {
			r.say("heal %s: %v", f, err)
			errs = append(errs, fmt.Sprintf("round %d: heal %s: %v", s.Round, f, err))
		} else {
			r.say("healed %s", f)
		}
		healed = time.Now()
	}
	// A pause ends when its watcher continued (or disarmed) the agent.
	for i := range fs {
		f := &fs[i]
		if f.pause == nil {
			continue
		}
		select {
		case <-f.pause.done:
		case <-ctx.Done():
			r.healAll(fs)
			return false, ctx.Err()
		}
		f.done = false
		r.say("%s: %s", f, f.pause.outcome)
		if f.pause.err != "" {
			errs = append(errs, fmt.Sprintf("round %d: %s: %s", s.Round, f, f.pause.err))
		}
		if f.pause.ended.After(healed) {
			healed = f.pause.ended
		}
		r.rep.Pause(f.Point, !f.pause.reached.IsZero())
	}
	if healed.IsZero() {
		healed = time.Now()
	}

	// Settle: the primary within LiveBound, the rest within Settle, and settled for
	// settledFor on end: a replica whose agent restarts replication in a loop looks
	// healthy for a moment each time.
	var live, writeBack, settledSince time.Time
	var final Cluster
	for {
		final, _ = r.e.observe(ctx)
		if ok, _ := final.Live(); ok && live.IsZero() {
			live = time.Now()
			r.say("live: %s", final.Primary)
		}
		if writeBack.IsZero() {
			if a, ok := r.e.firstAckSent(healed); ok {
				writeBack = a
				r.say("writes back")
			}
		}
		ok, _ := final.Settled()
		switch {
		case !ok:
			settledSince = time.Time{}
		case settledSince.IsZero():
			settledSince = time.Now()
		}
		if (ok && time.Since(settledSince) >= settledFor && !writeBack.IsZero()) || time.Since(healed) > s.SettleBound() || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, why := final.Settled(); why != "" {
		r.say("not settled: %s", why)
	}
	r.e.durability(ctx, &final)
	r.say("after: %s", describe(final))
	for _, n := range r.e.takeNotes() {
		r.say("%s", n)
	}
	judged := time.Now().Add(-transient)
	binlog, mark := r.e.binlogSince(r.binlogMark, judged)
	r.binlogMark = mark
	forgets, starts, real := r.e.accounts()
	o := Observation{Writes: r.e.writes(start), Epochs: r.e.epochList(), Healed: healed, Live: live, WriteBack: writeBack, End: time.Now(),
		WriteBackBound: s.AckersFullBound(s.WriteBackBound(r.cfg.Nodes), fullDisks(fs), final), Final: final, Binlog: binlog, BinlogJudgedUntil: judged,
		Forgets: forgets, Starts: starts, Real: real}
	vs, checks := Check(o)
	var acks []time.Time
	for _, a := range r.e.w.Acks() {
		acks = append(acks, a.At)
	}
	back := WritesBack(acks, injected, time.Now())
	var parts []string
	for _, f := range fs {
		parts = append(parts, f.String())
	}
	r.rep.Errors = append(r.rep.Errors, errs...)
	r.rep.Add(s, RoundResult{Round: s.Round, Schedule: s.String(), Resolved: strings.Join(parts, "; "),
		PrimaryFrom: before.Primary, PrimaryTo: final.Primary}, vs, checks, back)
	for _, v := range vs {
		r.say("VIOLATION %s: %s", v.Name, v.Detail)
	}
	r.say("round %d: %d violations, writes back %s", s.Round, len(vs), back.Round(time.Millisecond))
	if len(vs) > 0 {
		dir := r.keepLogs(s, o)
		replay := fmt.Sprintf("baton-lab bench chaos --seed %d --from-round %d --rounds 1", s.Seed, s.Round)
		if len(r.cfg.Schedules) > 0 {
			replay = "the schedule above, given as Config.Schedules (it was not drawn)"
		}
		fmt.Fprintf(os.Stderr, "round %d of seed %d failed: %s\nschedule: %s\nlogs: %s\nreplay: %s\n", s.Round, s.Seed, vs[0].Detail, s, dir, replay)
	}
	// A node quarantined at the round's end repairs itself (its agent undoes its
	// errant transactions, or rebuilds it from a donor): the campaign waits for that,
	// within SelfRepairBound. Only one still quarantined then is an operator's step,
	// which the campaign takes the way the runbook says, so that the next round
	// starts from a healthy cluster.
	for node, why := range final.Quarantined() {
		q := Quarantine{Round: s.Round, Node: node, Reason: why, Faults: strings.Join(parts, "; ")}
		if how, took, ok := r.awaitSelfRepair(ctx, node); ok {
			q.ByItself, q.HealthyMS, q.Repair = true, took.Milliseconds(), how
		} else {
			// Kept before the runbook's steps restart anything: why it stayed.
			dir := r.keepLogs(s, o)
			q.Repair = "operator step (" + how + "; logs in " + dir + "): " + r.repair(ctx, node, final.Primary)
		}
		r.say("quarantined %s: %s; repaired: %s", node, why, q.Repair)
		r.rep.Quarantines = append(r.rep.Quarantines, q)
	}
	return len(vs) == 0, nil
}

// SelfRepairBound is how long the campaign waits, after a round, for a node
// quarantined at its end to be a healthy replica again by itself.
const SelfRepairBound = 90 * time.Second

// awaitSelfRepair waits up to SelfRepairBound for node to replicate from the
// primary, healthy, and says how (the newest history event about it), how long it
// took, and whether it did.
func (r *runner) awaitSelfRepair(ctx context.Context, node string) (string, time.Duration, bool) {
	start := time.Now()
	err := lab.Until(ctx, SelfRepairBound, func() bool {
		c, _ := r.e.observe(ctx)
		n, ok := c.Nodes[node]
		p, pok := c.Nodes[c.Primary]
		return ok && pok && c.Primary != node && n.Role == "replica" && n.Verdict == detector.Healthy &&
			n.Source == p.Addr && n.IO && n.SQL
	})
	took := time.Since(start)
	if err != nil {
		return fmt.Sprintf("still quarantined after %s", SelfRepairBound), took, false
	}
	how := "by itself"
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if evs, err := r.e.store.History(hctx, 10); err == nil {
		for _, e := range evs {
			if e.From == node && (e.Kind == cluster.EventRejoin || e.Kind == cluster.EventRebuild) {
				how = "by itself (" + e.Kind.String() + ")"
				break
			}
		}
	}
	return fmt.Sprintf("%s in %s", how, took.Round(100*time.Millisecond)), took, true
}

// fullDisks names the nodes whose disk the round filled.
func fullDisks(fs []resolved) []string {
	var out []string
	for _, f := range fs {
		if f.Kind == DiskFull && f.err == "" {
			out = append(out, f.node)
		}
	}
	return out
}

// ready makes sure the cluster is settled with nothing quarantined before a round:
// each node that is not a healthy replica is repaired (the runbook, then a rebuild
// from the primary); if that fails, a new cluster.
func (r *runner) ready(ctx context.Context, round int) error {
	var c Cluster
	healthy := func() bool {
		c, _ = r.e.observe(ctx)
		ok, _ := c.Settled()
		return ok && len(c.Quarantined()) == 0
	}
	// A quarantined node waits for a person: no point waiting for it.
	_ = lab.Until(ctx, Settle, func() bool {
		ok := healthy()
		settled, _ := c.Settled()
		return ok || settled
	})
	if healthy() {
		return nil
	}
	_, why := c.Settled()
	r.say("before round %d: not healthy (%s): repairing", round, describe(c))
	if ok, _ := c.Live(); ok {
		p := c.Nodes[c.Primary]
		for _, n := range c.sorted() {
			if n.Name != c.Primary && (n.Role != "replica" || n.Source != p.Addr || !n.IO || !n.SQL) {
				r.rep.ReadyRepairs++
				r.say("repair %s: %s", n.Name, r.repair(ctx, n.Name, c.Primary))
			}
		}
		if lab.Until(ctx, Settle, healthy) == nil {
			return nil
		}
		_, why = c.Settled()
	}
	r.say("still not healthy (%s; %s): a new cluster", why, describe(c))
	r.rep.Rebuilds++
	r.binlogMark = 0
	return r.up(ctx)
}

// repair is the runbook for a quarantined node: SIGKILL its server (crash recovery
// drops an unacknowledged tail that did not reach its binlog), free its disk, start
// it, and let its agent rejoin it; if it stays quarantined (the tail was committed
// there), it is rebuilt from the primary, and what the rebuild made it forget is
// recorded. It says what it did.
func (r *runner) repair(ctx context.Context, node, primary string) string {
	n, err := r.e.c.Node(node)
	if err != nil {
		return err.Error()
	}
	var did []string
	if err := r.e.c.Fault(ctx, node, sandbox.Kill); err == nil {
		did = append(did, "kill")
	}
	if _, err := os.Stat(filepath.Join(n.Mount, "filler")); err == nil {
		if err := r.e.c.Fault(ctx, node, sandbox.FreeDisk); err == nil {
			did = append(did, "free disk")
		}
	}
	r.e.noteStart(node, false)
	if err := r.e.c.Fault(ctx, node, sandbox.Start); err == nil {
		did = append(did, "start")
	}
	replica := func() bool {
		c, _ := r.e.observe(ctx)
		st := c.Nodes[node]
		return st.Role == "replica" && st.IO && st.SQL
	}
	runbook := "runbook (" + strings.Join(did, ", ") + ")"
	if lab.Until(ctx, 15*time.Second, replica) == nil {
		return runbook + ": a replica again"
	}
	was, rerr := r.e.binlogState(ctx, node)
	rebuilt := time.Now()
	err = r.e.c.Rebuild(ctx, node, primary)
	// Whatever it did, the node's state was replaced meanwhile: recorded below.
	rebuild := Forget{Node: node, At: rebuilt, Until: time.Now(), By: "campaign", Discard: true, What: "rebuilt from " + primary}
	if err != nil {
		r.e.noteForget(rebuild)
		return fmt.Sprintf("%s: still quarantined; rebuild from %s: %v", runbook, primary, err)
	}
	forgot := "what it forgot unknown"
	now, nerr := r.e.binlogState(ctx, node)
	gone, lerr := Lowered(was, now)
	switch {
	case errors.Join(rerr, nerr, lerr) != nil:
		// Nothing precise to report: the whole state counts as forgotten.
		gone = []string{}
		if st, err := parseBinlogState(was); err == nil {
			for _, ds := range sortedDS(st) {
				gone = append(gone, rangeString(ds, 1, st[ds]))
			}
		}
		forgot = fmt.Sprintf("forgot gtid_binlog_state %q (%v)", was, errors.Join(rerr, nerr, lerr))
	case len(gone) == 0:
		forgot = "forgot nothing"
	default:
		forgot = "forgot " + strings.Join(gone, ", ")
	}
	rebuild.GTIDs = gone
	r.e.noteForget(rebuild)
	if lab.Until(ctx, 20*time.Second, replica) == nil {
		return fmt.Sprintf("%s: still quarantined; rebuilt from %s (%s): a replica again", runbook, primary, forgot)
	}
	return fmt.Sprintf("%s: still quarantined; rebuilt from %s (%s): not a replica within 20 s", runbook, primary, forgot)
}

// resolve binds each fault of the schedule to the node or member it hits, by the
// roles the cluster has now. A second fault that would act on a process the first
// acts on moves to another node.
func (r *runner) resolve(ctx context.Context, s Schedule, c Cluster, snap cluster.Snapshot) []resolved {
	primary := c.Primary
	if primary == "" {
		primary = r.e.lastSnapshot().Primary.Node
	}
	var others []string
	for _, n := range r.e.c.Nodes {
		if n.Name != primary {
			others = append(others, n.Name)
		}
	}
	coord := snap.Coordinator
	if coord == "" {
		coord = primary
	}
	var out []resolved
	used := map[string]Class{}
	for _, f := range s.Faults {
		rf := resolved{Fault: f}
		switch f.Target {
		case TargetPrimary, TargetQuarantined: // quarantined: looked up again when injected
			rf.node = primary
		case TargetCoordinator:
			rf.node = coord
		case TargetReplica:
			rf.node = others[f.Index%len(others)]
		case TargetEtcd:
			switch {
			case f.Kind == EtcdAllStop:
			case f.Index < 0:
				lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				leader, err := r.e.c.EtcdLeader(lctx)
				cancel()
				if err != nil {
					leader = r.e.c.EtcdMembers[0].Name
				}
				rf.member = leader
			default:
				rf.member = r.e.c.EtcdMembers[f.Index%len(r.e.c.EtcdMembers)].Name
			}
		}
		if rf.node != "" && f.Kind.Class() != ClassRequest {
			if cl, ok := used[rf.node]; ok && clash(cl, f.Kind.Class()) {
				for _, o := range others {
					if _, taken := used[o]; !taken {
						rf.node = o
						break
					}
				}
			}
			used[rf.node] = f.Kind.Class()
		}
		out = append(out, rf)
	}
	return out
}

// serverFault is the sandbox fault that injects a kind, and healFault the one that
// heals it.
var (
	serverFault = map[Kind]sandbox.Fault{
		DiskFull: sandbox.DiskFull, FreezeWrites: sandbox.FreezeWrites, Stop: sandbox.Stop, Kill: sandbox.Kill,
		CutNetwork: sandbox.CutNetwork, ReadonlyFS: sandbox.ReadonlyFS, ExhaustConnections: sandbox.ExhaustConnections,
		CutEtcd: sandbox.CutEtcd, KillAgent: sandbox.KillAgent, StopAgent: sandbox.StopAgent,
		Restart: sandbox.Shutdown, FreezeNode: sandbox.FreezeNode, PurgeBinlogs: sandbox.PurgeBinlogs,
	}
)

// settledFor is how long every observation must find the cluster settled for the
// round to end before its settle bound.
const settledFor = 3 * time.Second

// pauseReach is how long after the round's static faults end an armed agent may
// still reach its step (a failover takes seconds) before it is disarmed.
const pauseReach = 20 * time.Second

func (r *runner) inject(ctx context.Context, f *resolved, before Cluster, reachBy time.Time) error {
	switch f.Kind {
	case EtcdMemberStop:
		return r.e.c.StopEtcd(ctx, f.member)
	case EtcdAllStop:
		return r.e.c.StopEtcd(ctx, "")
	case SwitchoverRequest, FailoverRequest:
		return r.request(ctx, f.Kind, f.node)
	case RestartAgent:
		if f.Hard {
			return r.e.c.Fault(ctx, f.node, sandbox.KillAgent)
		}
		return r.e.c.Fault(ctx, f.node, sandbox.TermAgent)
	case PauseAt:
		w, err := r.arm(ctx, f.node, f.Point, f.For, reachBy)
		if err != nil {
			return err
		}
		f.pause = w
		return nil
	case PurgeBinlogs:
		if f.Target == TargetQuarantined {
			f.node = before.Primary // the round's first primary, unless one is quarantined now
			for node, st := range r.e.lastSnapshot().Nodes {
				if st.Role == "quarantined" {
					f.node = node
					break
				}
			}
		}
	}
	sf, ok := serverFault[f.Kind]
	if !ok {
		return fmt.Errorf("no fault for %s", f.Kind)
	}
	return r.e.c.Fault(ctx, f.node, sf)
}

// request files an operator's request as `baton switchover --yes` / `baton failover
// --yes` do, to the node named (none: the coordinator chooses), without waiting for
// it.
func (r *runner) request(ctx context.Context, k Kind, to string) error {
	kind := cluster.RequestSwitchover
	if k == FailoverRequest {
		kind = cluster.RequestFailover
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	snap, err := r.e.store.Load(lctx)
	if err != nil {
		return fmt.Errorf("read the cluster (as baton %s would): %w", kind, err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	req := cluster.Request{ID: fmt.Sprintf("%s-%s-%s", kind, time.Now().UTC().Format("20060102T150405"), hex.EncodeToString(b)),
		Kind: kind, To: to, Epoch: snap.Primary.Epoch, At: time.Now().UTC()}
	return r.e.store.PutRequest(lctx, req)
}

// heal undoes an injected fault. A full disk is freed (MariaDB retries its writes
// for up to 60 s); a node still unhealthy after settling gets the runbook. A server
// started again is noted: its gtid_binlog_state is read from its binary logs then.
func (r *runner) heal(ctx context.Context, f *resolved) error {
	if !f.done {
		return nil
	}
	f.done = false
	switch f.Kind {
	case EtcdMemberStop:
		return r.e.c.StartEtcd(ctx, f.member)
	case EtcdAllStop:
		return r.e.c.StartEtcd(ctx, "")
	case RestartAgent:
		return r.e.c.Fault(ctx, f.node, sandbox.StartAgent)
	case PauseAt:
		if f.pause != nil {
			f.pause.cont()
		}
		return nil
	case Kill, Restart, ReadonlyFS:
		r.e.noteStart(f.node, f.Kind == ReadonlyFS)
	case DiskFull:
		if err := r.e.c.Fault(ctx, f.node, sandbox.FreeDisk); err != nil {
			return err
		}
		if running, err := r.e.c.ServerRunning(f.node); err == nil && !running {
			// MariaDB 10.11 can abort on a full disk ("[FATAL] InnoDB: Error (Out of
			// disk space) in rollback", signal 6: seed 451 round 17, its failover
			// itself right). Its supervisor starts it again (Debian's unit:
			// Restart=on-abort); the sandbox has none, so the campaign does.
			r.say("mariadbd on %s ended on the full disk: started again, as its supervisor would", f.node)
			r.e.noteStart(f.node, false)
			return r.e.c.Fault(ctx, f.node, sandbox.Start)
		}
		return nil
	case Stop:
		if running, err := r.e.c.ServerRunning(f.node); err == nil && !running {
			// Its agent ended the frozen server for a failover: healing starts it
			// again (sandbox.Cont), as its supervisor would.
			r.e.noteStart(f.node, false)
		}
	}
	sf := serverFault[f.Kind]
	return r.e.c.Fault(ctx, f.node, sf.Inverse())
}

// healAll heals what is still injected, when the campaign is interrupted.
func (r *runner) healAll(fs []resolved) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range fs {
		_ = r.heal(ctx, &fs[i])
	}
}

// keepLogs copies the agents' and servers' logs, the round's events and its
// observation (every acknowledged write, the epochs, the final state) to a directory
// of its own, and returns it.
func (r *runner) keepLogs(s Schedule, o Observation) string {
	dir := filepath.Join(r.cfg.LogDir, fmt.Sprintf("seed-%d-round-%d", s.Seed, s.Round))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Sprintf("(not kept: %v)", err)
	}
	r.rep.LogDir = r.cfg.LogDir
	for _, n := range r.e.c.Nodes {
		copyFile(n.AgentLog, filepath.Join(dir, n.Name+"-agent.log"))
		copyFile(n.ErrorLog, filepath.Join(dir, n.Name+"-mariadb.err"))
	}
	_ = os.WriteFile(filepath.Join(dir, "events.txt"), []byte(strings.Join(r.log, "\n")+"\n"), 0o644)
	slices.SortFunc(o.Writes, func(a, b Write) int { return a.At.Compare(b.At) })
	if b, err := json.MarshalIndent(o, "", " "); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "observation.json"), b, 0o644)
	}
	return dir
}

func copyFile(from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		return
	}
	_ = os.WriteFile(to, b, 0o644)
}
