package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/baton-ha/baton/cluster"
	"github.com/baton-ha/baton/detector"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/sandbox"
	"github.com/baton-ha/baton/internal/status"
	"github.com/baton-ha/baton/replication"
)

// up brings the sandbox up, after taking down a running one of the same name.
func (d *demo) up(ctx context.Context) error {
	d.narr.section("1. A cluster: 3 MariaDB servers, etcd, a Baton agent per node, a virtual IP")
	if old, err := sandbox.Open(d.root, d.name, d.log); err == nil {
		d.narr.say("a sandbox named %s is left from an earlier run: taking it down first", d.name)
		dctx, cancel := context.WithTimeout(ctx, demoDownLimit)
		derr := old.Down(dctx)
		cancel()
		if derr != nil {
			d.narr.say("taking it down: %v (going on: bringing up removes leftovers)", derr)
		}
	}
	return d.step("up", func() (string, error) {
		uctx, cancel := context.WithTimeout(ctx, demoUpLimit)
		defer cancel()
		start := time.Now()
		c, err := sandbox.Up(uctx, sandbox.Spec{Name: d.name, Nodes: 3, SemiSync: true, WithAgents: true, VIP: true,
			Binary: d.bin.Baton, LabBinary: d.bin.Lab, Root: d.root}, d.log)
		if err != nil {
			return "", fmt.Errorf("bring up sandbox %s: %v", d.name, err)
		}
		d.c = c
		if d.cli, err = c.EtcdClient(); err != nil {
			return "", fmt.Errorf("connect to the sandbox's etcd: %w", err)
		}
		d.store = cluster.NewStore(d.cli, c.Name)
		d.narr.say("sandbox %s up in %.1fs (state in %s):", c.Name, time.Since(start).Seconds(), c.Dir)
		for _, n := range c.Nodes {
			d.narr.say("  %s  mariadbd at %s:%d in network namespace %s, server_id %d, agent http://%s", n.Name, n.IP, n.Port,
				n.NetNS, n.ServerID, n.AgentHTTP)
		}
		d.narr.say("  etcd %s; virtual IP %s; clients in namespace %s (%s)", strings.Join(c.Etcd, ","), c.VIP, c.ClientNetNS, c.ClientIP)
		return fmt.Sprintf("%.1fs", time.Since(start).Seconds()), nil
	})
}

// steady waits for a settled cluster, starts the writer and the split-brain monitor,
// and shows the cluster. It returns the primary.
func (d *demo) steady(ctx context.Context, w *sandbox.Writer, mon *sandbox.SplitBrainMonitor) (string, error) {
	var primary string
	err := d.step("settled", func() (string, error) {
		var snap cluster.Snapshot
		err := lab.Until(ctx, demoReadyLimit, func() bool {
			var err error
			if snap, err = d.store.Load(ctx); err != nil || snap.Primary.Node == "" || snap.Leader != snap.Primary.Node {
				return false
			}
			for _, n := range d.c.Nodes {
				st, ok := snap.Nodes[n.Name]
				if !ok || st.Verdict != detector.Healthy {
					return false
				}
				if n.Name != snap.Primary.Node && (st.Role != cluster.RoleReplica || !st.IORunning || !st.SQLRunning) {
					return false
				}
			}
			return true
		})
		if err != nil {
			return "", fmt.Errorf("the cluster did not settle (a primary holding the leader key, every node healthy, replicas replicating) within %s", demoReadyLimit)
		}
		primary = snap.Primary.Node
		return "primary " + primary, nil
	})
	if err != nil {
		return "", err
	}
	d.sum.OldPrimary = primary
	err = d.step("writes", func() (string, error) {
		w.Start(ctx)
		mon.Start(ctx)
		if err := lab.Until(ctx, demoWritesLimit, func() bool { return len(w.Acks()) >= 20 }); err != nil {
			n, last := w.Failures()
			return "", fmt.Errorf("the writer got no 20 writes acknowledged through the VIP within %s (%d failed, last: %s)", demoWritesLimit, n, last)
		}
		return fmt.Sprintf("%d acknowledged", len(w.Acks())), nil
	})
	if err != nil {
		return "", err
	}
	d.narr.section("2. A writer in the client namespace writes through the VIP every 10 ms")
	d.narr.say("the writer: one INSERT at a time into %s (the virtual IP), each with a 1 s deadline; %d acknowledged so far",
		vipAddr(d.c), len(w.Acks()))
	d.narr.say("a split-brain monitor writes to every server directly every 50 ms, as a client that bypasses the VIP would")
	d.narr.say("")
	d.showStatus(ctx)
	return primary, nil
}

// failover fills the old primary's disk and narrates until writes resume on a new
// primary.
func (d *demo) failover(ctx context.Context, w *sandbox.Writer, old string) (*demoObserver, error) {
	oldNode, err := d.c.Node(old)
	if err != nil {
		return nil, err
	}
	d.narr.section(fmt.Sprintf("3. Fill the disk of %s, the primary, and watch", old))
	d.narr.say("%s stays up: SELECT 1 answers, connections succeed. Only writes hang. Times are from the fault.", old)
	obs, err := newDemoObserver(d.c, d.store, w, uint32(oldNode.ServerID), d.narr)
	if err != nil {
		return nil, fmt.Errorf("watch the cluster: %w", err)
	}
	if err := obs.start(ctx); err != nil {
		return obs, fmt.Errorf("watch the cluster: %w", err)
	}
	t0 := time.Now()
	d.narr.startClock(t0)
	obs.setFault(t0)
	d.narr.say("filling the disk of %s (%s), then one 64 KiB binlogged write so the binlog must grow", old, oldNode.Mount)
	err = d.step("disk_full", func() (string, error) {
		if err := d.c.Fault(ctx, old, sandbox.DiskFull); err != nil {
			return "", fmt.Errorf("fill the disk of %s: %v", old, err)
		}
		return "", nil
	})
	if err != nil {
		return obs, err
	}
	d.narr.say("disk of %s full: every binlogged write on it now waits for space (MariaDB retries every 60 s)", old)

	err = d.step("failover", func() (string, error) {
		if err := obs.wait(ctx, demoFailoverLimit, obs.reached(cluster.MilestonePromoted)); err != nil {
			return "", fmt.Errorf("no failover within %s of the full disk: %s", demoFailoverLimit, obs.describe())
		}
		return obs.snapshot().Primary.Node, nil
	})
	if err != nil {
		return obs, err
	}
	d.sum.NewPrimary = obs.snapshot().Primary.Node
	if err := d.step("vip_moved", func() (string, error) {
		if err := obs.wait(ctx, demoVIPLimit, obs.vipMoved); err != nil {
			return "", fmt.Errorf("the VIP is not on %s within %s of its promotion (held by: %v)", d.sum.NewPrimary, demoVIPLimit, obs.snapshot().VIP)
		}
		return "", nil
	}); err != nil {
		return obs, err
	}
	if err := d.step("writes_resumed", func() (string, error) {
		if err := obs.wait(ctx, demoResumeLimit, obs.writesResumed); err != nil {
			n, last := w.Failures()
			return "", fmt.Errorf("no write acknowledged by %s through the VIP within %s of its promotion (%d writes failed, last: %s)",
				d.sum.NewPrimary, demoResumeLimit, n, last)
		}
		return "", nil
	}); err != nil {
		return obs, err
	}
	if err := d.step("history", func() (string, error) {
		if err := obs.wait(ctx, demoHistoryLimit, obs.reached(cluster.MilestoneRecorded)); err != nil {
			return "", fmt.Errorf("no failover event in the history within %s", demoHistoryLimit)
		}
		return "", nil
	}); err != nil {
		return obs, err
	}
	err = d.step("detected", func() (string, error) {
		// Seen on the way: a verdict that lasted less than the agent's publishing
		// would be missed, which is a finding too.
		if _, ok := obs.at(cluster.MilestoneDetected); !ok {
			return "", fmt.Errorf("the failover happened, but etcd never showed %s failed", old)
		}
		if _, ok := obs.at(cluster.MilestoneDecided); !ok {
			return "", errors.New("the failover happened, but no coordinator decision was seen")
		}
		return "", nil
	})
	d.sum.DetectMS = obs.ms(obs.at(cluster.MilestoneDetected))
	d.sum.DecideMS = obs.ms(obs.at(cluster.MilestoneDecided))
	d.sum.FailoverMS = obs.ms(obs.at(cluster.MilestonePromoted))
	d.sum.VIPMS = obs.ms(obs.vipMovedAt())
	d.sum.WritesResumedMS = obs.ms(obs.resumedAt())
	if err != nil {
		return obs, err
	}

	err = d.step("nothing_lost", func() (string, error) {
		lost, acked, err := d.lost(ctx, w, d.sum.NewPrimary)
		if err != nil {
			return "", err
		}
		d.sum.LostWrites = len(lost)
		if len(lost) > 0 {
			return "", fmt.Errorf("%d of %d acknowledged writes are not on %s: %v", len(lost), acked, d.sum.NewPrimary, firstN(lost, 10))
		}
		d.narr.sayAt(time.Now(), "nothing lost: all %d acknowledged writes are on %s", acked, d.sum.NewPrimary)
		return fmt.Sprintf("%d acknowledged, 0 lost", acked), nil
	})
	if err != nil {
		return obs, err
	}
	if line := lastLineWith(oldNode.ErrorLog, "Disk is full", 0); line != "" {
		d.narr.say("%s's error log: %s", old, line)
	}
	return obs, nil
}

// afterFailover shows the cluster and the history event.
func (d *demo) afterFailover(ctx context.Context, obs *demoObserver) error {
	d.narr.section("4. The cluster after the failover, and the history event")
	d.showStatus(ctx)
	ev := obs.snapshot().LastEvent
	if ev == nil {
		return errors.New("no history event")
	}
	d.sum.FailoverReason = ev.Reason
	var b strings.Builder
	fmt.Fprintf(&b, "history: %s %s -> %s, epoch %d, %s in all, decided %s: %s\n", ev.Kind, ev.From, ev.To, ev.Epoch,
		ev.Took.Round(time.Millisecond), d.narr.rel(ev.Started), ev.Reason)
	for _, s := range ev.Steps {
		d.sum.FailoverSteps = append(d.sum.FailoverSteps, FlowStep{Name: s.Name, TookMS: s.Took.Milliseconds(), Note: s.Note, Error: s.Error})
		line := fmt.Sprintf("  %-18s %8s", s.Name, s.Took.Round(time.Millisecond))
		if s.Note != "" {
			line += "  " + s.Note
		}
		if s.Error != "" {
			line += "  error: " + s.Error
		}
		fmt.Fprintln(&b, line)
	}
	b.WriteString("  (fence_old_primary runs alongside stop_io and rank: a dead or hung old primary costs the fence its deadline, not the failover)\n")
	d.narr.block(b.String())
	return nil
}

// rejoinOld frees the old primary's disk and waits until it replicates from the new
// one, by itself.
//
// What happens to a primary fenced on a full disk, as seen on MariaDB 10.11: the
// writes that hung waiting for space had their GTIDs numbered already; the fence's
// KILL ends them with "Error writing file 'mysql-bin' (errno: 28)", InnoDB rolls them
// back, but gtid_binlog_state keeps the numbers. So the server claims transactions
// nobody has, and Baton quarantines it (errant GTIDs). Its agent looks each one up
// in the binary logs: none is there whole (at most the GTID event of the write cut
// off by the full disk, before a tail no one can read), so they are phantoms. Once
// the disk has room again, the agent resets the binlog GTID state to what the
// binlog holds (RESET MASTER, gtid_binlog_state, gtid_slave_pos: no restart) and
// follows the new primary, and records a rejoin event in the history.
func (d *demo) rejoinOld(ctx context.Context, obs *demoObserver) error {
	old := d.sum.OldPrimary
	oldNode, err := d.c.Node(old)
	if err != nil {
		return err
	}
	d.narr.section(fmt.Sprintf("5. Free the disk of %s: it rejoins by itself", old))
	st := obs.snapshot().Nodes[old]
	d.sum.QuarantinedAfterFailover = st.Role == cluster.RoleQuarantined
	d.sum.Errant = st.Errant
	if d.sum.QuarantinedAfterFailover {
		d.narr.say("%s is fenced and quarantined: its agent found errant GTIDs %s, transactions %s never got.", old, st.Errant, d.sum.NewPrimary)
		d.explainErrant(ctx, oldNode, st)
	} else {
		d.narr.say("%s is %s (read_only, no VIP, no leader key).", old, status.OrDash(string(st.Role)))
	}
	logFrom := fileSize(oldNode.ErrorLog)
	start := time.Now()
	limit := demoRejoinLimit
	switch d.rejoin {
	case RejoinRestart:
		d.narr.say("What an operator does: restart the server hard and free space. After a crash MariaDB rebuilds its GTID")
		d.narr.say("state from the binlog on disk, so the numbers of writes that never reached it are gone, and nothing")
		d.narr.say("acknowledged is lost: every acknowledged write is on %s. (A clean shutdown would save the inflated", d.sum.NewPrimary)
		d.narr.say("position and keep the server quarantined.) It is killed while the disk is still full, so that MariaDB")
		d.narr.say("writes nothing more of the failed binlog tail; then the disk is freed and the server started.")
		err = d.step("restart_old_primary", func() (string, error) {
			for _, f := range []sandbox.Fault{sandbox.Kill, sandbox.FreeDisk, sandbox.Start} {
				if err := d.c.Fault(ctx, old, f); err != nil {
					return "", fmt.Errorf("%s on %s: %w", f, old, err)
				}
				switch f {
				case sandbox.Kill:
					d.narr.sayAt(time.Now(), "mariadbd of %s killed (SIGKILL), its disk still full", old)
				case sandbox.FreeDisk:
					d.narr.sayAt(time.Now(), "disk of %s freed (the filler removed)", old)
				case sandbox.Start:
					d.narr.sayAt(time.Now(), "mariadbd of %s started on its data: crash recovery, read_only as after any restart", old)
				}
			}
			return "", nil
		})
	case RejoinFreeDisk:
		limit = demoAutoRejoinLimit
		d.narr.say("Freeing the disk of %s and nothing else: no operator step. Its agent waits for room on the disk,", old)
		d.narr.say("then forgets the phantom GTIDs (without a restart) and follows %s.", d.sum.NewPrimary)
		err = d.step("free_disk", func() (string, error) {
			if err := d.c.Fault(ctx, old, sandbox.FreeDisk); err != nil {
				return "", fmt.Errorf("free the disk of %s: %w", old, err)
			}
			d.narr.sayAt(time.Now(), "disk of %s freed (the filler removed)", old)
			return "", nil
		})
	}
	if err != nil {
		return err
	}
	err = d.step("rejoined", func() (string, error) {
		werr := obs.wait(ctx, limit, obs.reached(cluster.MilestoneRejoined))
		for _, line := range recoveryLines(oldNode.ErrorLog, logFrom) {
			d.narr.say("%s's error log: %s", old, line)
		}
		st := obs.snapshot().Nodes[old]
		d.sum.FinalRole = string(st.Role)
		if werr != nil {
			if st.Role == cluster.RoleQuarantined {
				return "", fmt.Errorf("%s is still quarantined %s after its disk was freed (errant GTIDs %s, %s)", old, limit, st.Errant, st.Reason)
			}
			return "", fmt.Errorf("%s did not rejoin as a replica within %s (role %s, verdict %s, IO thread %s, SQL thread %s %s)",
				old, limit, status.OrDash(string(st.Role)), st.Verdict.String(), threadState(st.IORunning), threadState(st.SQLRunning), st.ReplError)
		}
		d.sum.Rejoined = true
		at, _ := obs.at(cluster.MilestoneRejoined)
		d.sum.RejoinMS = at.Sub(start).Milliseconds()
		if ev := obs.snapshot().LastEvent; ev != nil && ev.Kind == cluster.EventRejoin && ev.From == old {
			d.sum.RejoinEvent = ev.Reason
			d.narr.say("history: rejoin of %s by its agent (%s): %s", old, automatic(ev.Manual), ev.Reason)
		}
		if d.rejoin == RejoinFreeDisk {
			d.narr.sayAt(at, "%s rejoined as a replica of %s by itself, %.1fs after its disk was freed", old, d.sum.NewPrimary, float64(d.sum.RejoinMS)/1000)
			return fmt.Sprintf("replica of %s %.1fs after the disk was freed", d.sum.NewPrimary, float64(d.sum.RejoinMS)/1000), nil
		}
		return fmt.Sprintf("replica of %s %.1fs after the restart began", d.sum.NewPrimary, float64(d.sum.RejoinMS)/1000), nil
	})
	if err != nil {
		return err
	}
	// The detector wants a few good rounds in a row before it calls a node healthy
	// again: the cluster is whole when it does.
	return d.step("all_healthy", func() (string, error) {
		healthy := func() bool {
			v := obs.snapshot()
			for _, n := range d.c.Nodes {
				if st, ok := v.Nodes[n.Name]; !ok || st.Verdict != detector.Healthy {
					return false
				}
			}
			return true
		}
		if err := lab.Until(ctx, demoHealthyLimit, healthy); err != nil {
			return "", fmt.Errorf("not every node is healthy %s after %s rejoined: %s", demoHealthyLimit, old, obs.describe())
		}
		return "", nil
	})
}

// explainErrant shows where a quarantined old primary's errant GTIDs come from: its
// GTID position against the last transaction its binlog really holds, the binlog
// writes that failed, and what its agent found in the binary logs.
func (d *demo) explainErrant(ctx context.Context, n *sandbox.Node, st cluster.NodeStatus) {
	pos, written, err := binlogTail(ctx, d.c, n)
	if err != nil {
		d.narr.say("(could not read %s's binlog: %v)", n.Name, err)
		return
	}
	failed := countLines(n.ErrorLog, "Error writing file 'mysql-bin'")
	d.narr.say("Where they come from: %s's gtid_binlog_pos is %s, but the last GTID event in its binlog files is %s.", n.Name, pos, written)
	d.narr.say("The writes that hung on the full disk were numbered first; the fence killed them and their binlog write")
	d.narr.say("failed (%d \"Error writing file 'mysql-bin' (errno: 28)\" in its error log), so no data differs, but", failed)
	d.narr.say("MariaDB kept the numbers. Its agent looked each one up in the binary logs:")
	for _, t := range st.ErrantTxns {
		line := fmt.Sprintf("  %s: %s", t.GTID, t.Kind)
		if t.Note != "" {
			line += " (" + t.Note + ")"
		} else if t.Kind == replication.ErrantPhantom {
			line += " (in no binary log)"
		}
		d.narr.say("%s", line)
	}
	if len(st.ErrantTxns) == 0 {
		d.narr.say("  (not published yet)")
	}
}

func automatic(manual bool) string {
	if manual {
		return "on an operator's request"
	}
	return "automatic"
}

// finish stops the writer, checks every acknowledged write is on the new primary and,
// caught up, on the rejoined old one, and shows the cluster.
func (d *demo) finish(ctx context.Context, w *sandbox.Writer, mon *sandbox.SplitBrainMonitor, obs *demoObserver) error {
	w.Stop()
	mon.Stop()
	d.sum.SplitBrainMS = mon.SplitBrain().Milliseconds()
	d.sum.MaxWriteGapMS = w.MaxGap().Milliseconds()
	final := obs.snapshot().Primary.Node
	err := d.step("nothing_lost_at_end", func() (string, error) {
		lost, acked, err := d.lost(ctx, w, final)
		if err != nil {
			return "", err
		}
		d.sum.AckedWrites, d.sum.LostWrites = acked, len(lost)
		if len(lost) > 0 {
			return "", fmt.Errorf("%d of %d acknowledged writes are not on %s: %v", len(lost), acked, final, firstN(lost, 10))
		}
		for _, n := range d.c.Nodes {
			if n.Name == final {
				continue
			}
			var nodeLost []int64
			werr := lab.Until(ctx, demoCatchupLimit, func() bool {
				nodeLost, _, err = d.lost(ctx, w, n.Name)
				return err == nil && len(nodeLost) == 0
			})
			if werr != nil {
				return "", fmt.Errorf("%s, a replica, still lacks %d acknowledged writes after %s (%v)", n.Name, len(nodeLost), demoCatchupLimit, err)
			}
		}
		d.narr.sayAt(time.Now(), "writer stopped: %d writes acknowledged in all; every one is on %s and, replicated, on every other node",
			acked, final)
		return fmt.Sprintf("%d acknowledged, 0 lost", acked), nil
	})
	if err != nil {
		return err
	}
	if err := d.step("no_split_brain", func() (string, error) {
		if d.sum.SplitBrainMS > 0 {
			return "", fmt.Errorf("two servers accepted writes at once for %d ms", d.sum.SplitBrainMS)
		}
		d.narr.sayAt(time.Now(), "split brain: none (the monitor never saw two servers accept writes in the same 100 ms)")
		return "", nil
	}); err != nil {
		return err
	}
	d.narr.section("7. The cluster at the end")
	d.showStatus(ctx)
	d.narr.say("")
	d.narr.say("fault -> %s unwritable %s, failover decided %s, %s holds the leader key %s, VIP moved %s, writes resumed %s",
		d.sum.OldPrimary, msString(d.sum.DetectMS), msString(d.sum.DecideMS), d.sum.NewPrimary, msString(d.sum.FailoverMS),
		msString(d.sum.VIPMS), msString(d.sum.WritesResumedMS))
	how := fmt.Sprintf("%s after the restart began", msString(d.sum.RejoinMS))
	if d.rejoin == RejoinFreeDisk {
		how = fmt.Sprintf("by itself, %s after its disk was freed", msString(d.sum.RejoinMS))
	}
	d.narr.say("%d writes acknowledged, %d lost, longest wait between two acknowledged writes %s, split brain %d ms; %s rejoined as a replica %s",
		d.sum.AckedWrites, d.sum.LostWrites, msString(d.sum.MaxWriteGapMS), d.sum.SplitBrainMS, d.sum.OldPrimary, how)
	if d.sum.CutPrimary != "" {
		d.narr.say("%s, cut off as primary, rejoined by itself %s after the heal, its errant writes undone and kept in %s",
			d.sum.CutPrimary, msString(d.sum.UndoMS), status.OrDash(d.sum.UndoArchive))
	}
	return nil
}

// explain tells how to explore a kept sandbox.
func (d *demo) explain() {
	d.narr.section("The cluster is still up (--keep)")
	root := ""
	if d.root != sandbox.DefaultRoot {
		root = " --root " + d.root
	}
	d.narr.say("baton status --etcd %s --cluster %s --watch", strings.Join(d.c.Etcd, ","), d.c.Name)
	d.narr.say("baton-lab sandbox status --name %s%s", d.c.Name, root)
	primary := d.sum.NewPrimary
	if primary == "" {
		primary = d.sum.OldPrimary
	}
	if primary == "" {
		primary = "db1"
	}
	d.narr.say("baton-lab sandbox fault --name %s%s --node %s freeze-writes   (or kill, stop, cut-network, disk-full, ...)", d.c.Name, root, primary)
	d.narr.say("agent logs: %s", filepath.Join(d.c.Dir, "*", "agent.log"))
	d.narr.say("baton-lab sandbox down --name %s%s", d.c.Name, root)
}

func (d *demo) showStatus(ctx context.Context) {
	st, err := status.Read(ctx, d.store, d.c.Name)
	if err != nil {
		d.narr.say("read the cluster's status: %v", err)
		return
	}
	var b bytes.Buffer
	status.Print(&b, st, d.color)
	d.narr.block(b.String())
}

// lost returns the acknowledged writes node lacks, and how many were acknowledged.
func (d *demo) lost(ctx context.Context, w *sandbox.Writer, node string) ([]int64, int, error) {
	db, err := d.c.RootDB(node)
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	acked := len(w.Acks()) // Lost judges the writes acknowledged before it reads
	lost, err := w.Lost(qctx, db)
	if err != nil {
		return nil, 0, fmt.Errorf("read the writer's rows on %s: %w", node, err)
	}
	return lost, acked, nil
}

// cutAndUndo is the second fault: the primary cut off the network while a client's
// commits are binlogged on it and wait for a semi-sync acknowledgement that cannot
// come. The replicas fail it over; once the network heals, the old primary has real
// errant transactions, and with the sandbox's rejoin mode (archive-and-repair) its
// agent archives them, undoes them and follows the new primary: no operator step.
func (d *demo) cutAndUndo(ctx context.Context, obs *demoObserver) error {
	cut := obs.snapshot().Primary.Node
	d.sum.CutPrimary = cut
	d.narr.section(fmt.Sprintf("6. Cut %s, the primary, off the network while it takes writes: it comes back by itself", cut))
	d.narr.say("After a failover the anti-flap block keeps the cluster from failing over again by itself for")
	d.narr.say("failover_block (5m): `baton unblock` lifts it, here so that the second fault is handled at once.")
	err := d.step("unblock", func() (string, error) {
		b, err := d.store.LiftBlock(ctx, "demo")
		switch {
		case errors.Is(err, cluster.ErrNoBlock):
			return "no block in force", nil
		case err != nil:
			return "", fmt.Errorf("lift the anti-flap block: %w", err)
		}
		return fmt.Sprintf("the block of the failover to %s lifted", b.To), nil
	})
	if err != nil {
		return err
	}
	node, err := d.c.Node(cut)
	if err != nil {
		return err
	}
	db, err := d.c.RootDB(cut)
	if err != nil {
		return err
	}
	defer db.Close()
	err = d.step("cut_network", func() (string, error) {
		if err := d.c.Fault(ctx, cut, sandbox.CutNetwork); err != nil {
			return "", fmt.Errorf("cut %s off the network: %w", cut, err)
		}
		d.narr.sayAt(time.Now(), "%s cut off the network: its commits are binlogged, then wait for an acknowledgement", cut)
		// One commit through its socket, certain to be binlogged and never acknowledged.
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, _ = db.ExecContext(wctx, "INSERT INTO sandbox.t(v) VALUES ('written on the cut-off primary, never acknowledged')")
		}()
		return "", nil
	})
	if err != nil {
		return err
	}
	var next string
	err = d.step("second_failover", func() (string, error) {
		if err := lab.Until(ctx, demoFailoverLimit, func() bool {
			v := obs.snapshot()
			next = v.Primary.Node
			return next != cut && v.Leader == next
		}); err != nil {
			return "", fmt.Errorf("no failover away from the cut-off %s within %s: %s", cut, demoFailoverLimit, obs.describe())
		}
		d.narr.sayAt(time.Now(), "%s promoted in place of %s", next, cut)
		return next, nil
	})
	if err != nil {
		return err
	}
	healed := time.Now()
	err = d.step("heal_network", func() (string, error) {
		if err := d.c.Fault(ctx, cut, sandbox.HealNetwork); err != nil {
			return "", fmt.Errorf("heal %s's network: %w", cut, err)
		}
		d.narr.sayAt(time.Now(), "%s back on the network (%s)", cut, node.IP)
		return "", nil
	})
	if err != nil {
		return err
	}
	return d.step("undone", func() (string, error) {
		var ev *cluster.Event
		err := lab.Until(ctx, demoAutoRejoinLimit, func() bool {
			v := obs.snapshot()
			n := v.Nodes[cut]
			if e := v.LastEvent; e != nil && e.Kind == cluster.EventRejoin && e.From == cut {
				ev = e
			}
			return ev != nil && n.Role == cluster.RoleReplica && n.IORunning && n.SQLRunning
		})
		if err != nil {
			st := obs.snapshot().Nodes[cut]
			return "", fmt.Errorf("%s did not rejoin by itself within %s of the heal (role %s: %s)", cut, demoAutoRejoinLimit, status.OrDash(string(st.Role)), st.Reason)
		}
		d.sum.UndoMS = time.Since(healed).Milliseconds()
		d.sum.UndoArchive, d.sum.UndoneGTIDs = ev.Archive, strings.Join(ev.Discarded, ", ")
		d.narr.say("history: rejoin of %s by its agent (%s): %s", cut, automatic(ev.Manual), ev.Reason)
		if ev.Archive != "" {
			d.narr.say("the errant transactions are kept in %s: read them, re-apply what matters (mariadb < FILE)", ev.Archive)
		}
		return fmt.Sprintf("replica of %s %.1fs after the heal", next, float64(d.sum.UndoMS)/1000), nil
	})
}
