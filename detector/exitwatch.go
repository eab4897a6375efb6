package detector

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"

	"github.com/baton-ha/baton/internal/rawconn"
)

// The exit watch: a server that ends (a crash, kill -9, the OOM killer, a
// shutdown) closes its connections at once, and the round that follows finds its
// port refusing, which is certain; without the watch that round came at the next
// interval, up to Interval later. The watch holds one idle connection of the
// probe's account, sends nothing on it, and waits for it to close: its only effect
// is to bring a round forward (Detector.wake). It never decides anything: a
// connection closed for another reason (a KILL, the server's own timeout) only
// makes a round come early, and a frozen server closes nothing (its rounds'
// timeouts are the evidence there).

// watchIdleTimeout is the watch session's wait_timeout, so that the server does not
// close an idle watch every 8 hours (the default) for nothing.
const watchIdleTimeout = 365 * 24 * time.Hour

// watchExit runs until ctx ends: it connects (retrying every Interval while it
// cannot), waits for the connection to close, asks for a round, and connects
// again an Interval later. A watch that cannot connect is said once, with why (an
// account's connection limit, an authentication go-mysql's client lacks): crashes
// are then seen at the next round, as without it.
func (d *Detector) watchExit(ctx context.Context, mc *mysql.Config) {
	var off error
	for ctx.Err() == nil {
		closed, err := d.watchOnce(ctx, mc, func() {
			if off != nil {
				d.log.Info("exit watch on again")
				off = nil
			}
		})
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && off == nil:
			d.log.Warn("exit watch off: a crash is seen at the next round until it connects again", zap.Error(err))
			off = err
		case closed:
			d.awaitRefusal(ctx, mc)
			d.log.Info("the server closed the exit watch's connection: a round at once")
			d.wakeUp()
		}
		select {
		case <-ctx.Done():
		case <-time.After(d.cfg.Interval):
		}
	}
}

// refusalTries and refusalGap bound awaitRefusal: 100 ms at most.
const (
	refusalTries = 10
	refusalGap   = 10 * time.Millisecond
)

// awaitRefusal returns once a new connection fails, or after refusalTries that
// did not (a server alive: its connection was closed by someone else). A killed
// server's connections close a moment before its listening socket (measured: a
// connection made 0.5 ms after the close was taken, then lost): a round at the
// close itself would find "connection lost", which is not certain, and the
// certain round would wait for its turn.
func (d *Detector) awaitRefusal(ctx context.Context, mc *mysql.Config) {
	for i := 0; i < refusalTries && ctx.Err() == nil; i++ {
		cctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
		c, err := rawconn.Dial(cctx, mc, 0)
		cancel()
		if err != nil {
			return
		}
		c.Quit() // under the dial's deadline
		select {
		case <-ctx.Done():
		case <-time.After(refusalGap):
		}
	}
}

// watchOnce connects, calls on once the watch is set up, and waits for the server
// to close the connection (closed) or for ctx to end. err says why it could not
// set up.
func (d *Detector) watchOnce(ctx context.Context, mc *mysql.Config, on func()) (closed bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	c, err := rawconn.Dial(cctx, mc, 0)
	cancel()
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(d.cfg.Timeout)); err != nil {
		return false, err
	}
	if _, err := c.Execute("SET SESSION wait_timeout = " + strconv.FormatInt(int64(watchIdleTimeout/time.Second), 10)); err != nil {
		return false, fmt.Errorf("set the watch's wait_timeout: %w", err)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return false, err
	}
	on()
	// The end of ctx ends the read (a deadline is safe from another goroutine).
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	// The server sends nothing on an idle connection until it closes it (at most
	// an error packet first, as a shutdown or a KILL sends).
	_, err = c.ReadPacket()
	d.log.Debug("exit watch: connection ended", zap.Error(err))
	return ctx.Err() == nil, nil
}

// wakeUp asks Run for a round at once (at most one pending).
func (d *Detector) wakeUp() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}
