package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A node that its agent cannot repair in place (errant DDL or statements, purged
// events, too many errant transactions, a diverged row, a MySQL node) is rebuilt: its
// agent clones a healthy replica (a donor) with the server's own backup program,
// streamed from the donor's agent, swaps the copy in for the datadir (the old one is
// kept, renamed) and follows the primary. These are the records it leaves in etcd:
// an operator's request under rebuild/<node>, the progress in the node's status,
// and a rebuild event in the history.

func (k Keys) RebuildPrefix() string      { return k.Prefix + "rebuild/" }
func (k Keys) Rebuild(node string) string { return k.RebuildPrefix() + node }

// RebuildRequest is an operator's request (`baton rebuild`) that a node be rebuilt
// from a donor's backup, under rebuild/<node>. The node's own agent carries it out
// and writes its progress and outcome back into the key.
type RebuildRequest struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	// From is the donor asked for; "" lets the node's agent choose a healthy
	// replica.
	From string    `json:"from,omitempty"`
	By   string    `json:"by,omitempty"`
	At   time.Time `json:"at"`
	// Set by the node's agent: running once it took the request up (Started),
	// then done, refused or failed.
	State    RequestState `json:"state,omitempty"`
	Started  time.Time    `json:"started,omitempty"`
	Error    string       `json:"error,omitempty"`
	Result   *Event       `json:"result,omitempty"`
	Finished time.Time    `json:"finished,omitempty"`
}

// Pending says whether the request waits for the node's agent to take it up.
func (r RebuildRequest) Pending() bool { return r.ID != "" && r.State == RequestPending }

// Open says whether the request is pending or running: neither answered nor
// withdrawn.
func (r RebuildRequest) Open() bool {
	return r.ID != "" && (r.State == RequestPending || r.State == RequestRunning)
}

// RebuildStep is where a rebuild stands. Its string is what etcd and the agent's
// journal hold, so a value never changes spelling.
type RebuildStep string

// Rebuild steps, in order; then the two ends of a rebuild that did not complete.
const (
	RebuildArchive  RebuildStep = "archive"  // the node's errant transactions archived, when the evidence allows
	RebuildStream   RebuildStep = "stream"   // the donor's backup streamed into a new directory beside the datadir
	RebuildPrepare  RebuildStep = "prepare"  // the backup prepared (the server's backup program makes it consistent)
	RebuildStop     RebuildStep = "stop"     // the node's server stopped (server.stop_command)
	RebuildSwap     RebuildStep = "swap"     // the datadir renamed aside (kept), the copy renamed in
	RebuildStart    RebuildStep = "start"    // the server started on the copy (server.start_command)
	RebuildPosition RebuildStep = "position" // the server's GTID position set to the backup's
	RebuildFollow   RebuildStep = "follow"   // verified; replication from the primary of record
	RebuildRollback RebuildStep = "rollback" // putting the old datadir back after a failure
	RebuildFailed   RebuildStep = "failed"   // over without a rebuild: the old datadir in use, the node quarantined
)

func (s RebuildStep) String() string { return string(s) }

// RebuildProgress is a node's rebuild as its status shows it: the one under way,
// or the latest that failed (Step RebuildFailed, Error) while the node waits to try
// again. Nil in the status when neither.
type RebuildProgress struct {
	ID   string      `json:"id"`
	Step RebuildStep `json:"step"`
	// From is the donor.
	From string `json:"from"`
	// Bytes is what the donor's stream has brought so far; Size the donor's
	// estimate of the whole (0 when not known yet).
	Bytes   int64     `json:"bytes"`
	Size    int64     `json:"size,omitempty"`
	Started time.Time `json:"started"`
	Manual  bool      `json:"manual,omitempty"`
	// Kept is where the node's old datadir is kept, once it was renamed aside.
	Kept string `json:"kept,omitempty"`
	// Error says why the rebuild failed (Step RebuildFailed), and what was put
	// back.
	Error    string    `json:"error,omitempty"`
	Finished time.Time `json:"finished,omitempty"`
}

// Running says whether p is a rebuild under way.
func (p *RebuildProgress) Running() bool {
	return p != nil && p.Step != "" && p.Step != RebuildFailed
}

// PutRebuild files an operator's rebuild request for r.Node, unless one for that
// node is still open: pending (and younger than five minutes) or running.
func (s *Store) PutRebuild(ctx context.Context, r RebuildRequest) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.Keys.Rebuild(r.Node)
	get, err := s.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read rebuild request of %s: %w", r.Node, err)
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if len(get.Kvs) == 1 {
		var old RebuildRequest
		if json.Unmarshal(get.Kvs[0].Value, &old) == nil {
			switch {
			case old.Pending() && time.Since(old.At) < 5*time.Minute:
				return &PendingError{What: fmt.Sprintf("rebuild request (%s) for %s is pending", old.ID, r.Node)}
			case old.State == RequestRunning:
				return &PendingError{What: fmt.Sprintf("rebuild request (%s) for %s is running", old.ID, r.Node)}
			}
		}
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", get.Kvs[0].ModRevision)
	}
	return s.txn(ctx, "file rebuild request for "+r.Node, []clientv3.Cmp{cmp}, clientv3.OpPut(key, mustJSON(r)))
}

// AnswerRebuild writes the node agent's progress or answer to a rebuild request,
// if the key is still at modRev (the request it read). It returns the key's new
// mod revision, for the next answer.
func (s *Store) AnswerRebuild(ctx context.Context, modRev int64, r RebuildRequest) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.Keys.Rebuild(r.Node)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).Then(clientv3.OpPut(key, mustJSON(r))).Commit()
	if err != nil {
		return 0, fmt.Errorf("answer rebuild request %s: %w", r.ID, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("answer rebuild request %s: %w", r.ID, ErrConflict)
	}
	s.written(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// RebuildRequestRev returns the rebuild request of node and its mod revision, nil
// when there is none.
func (s *Store) RebuildRequestRev(ctx context.Context, node string) (*RebuildRequest, int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	get, err := s.cli.Get(ctx, s.Keys.Rebuild(node))
	if err != nil {
		return nil, 0, fmt.Errorf("read rebuild request of %s: %w", node, err)
	}
	if len(get.Kvs) == 0 {
		return nil, 0, nil
	}
	var r RebuildRequest
	if err := json.Unmarshal(get.Kvs[0].Value, &r); err != nil {
		return nil, 0, fmt.Errorf("parse rebuild request of %s: %w", node, err)
	}
	return &r, get.Kvs[0].ModRevision, nil
}
