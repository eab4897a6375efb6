package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// slavePosAfter is the gtid_slave_pos a repaired server gets: the position of
// the written state, and of the old gtid_slave_pos's GTIDs whose (domain,
// server_id) has no errant transaction.
func slavePosAfter(written string, slavePos string, errant GTIDSet) (string, error) {
	w, err := ParseGTIDSet(FlavorMariaDB, written)
	if err != nil {
		return "", err
	}
	sp, err := ParseGTIDSet(FlavorMariaDB, slavePos)
	if err != nil {
		return "", err
	}
	keep := newMariaSet()
	for _, g := range sortedMaria(sp.maria) {
		if errant.maria != nil {
			if _, bad := errant.maria.Sets[g.DomainID][g.ServerID]; bad {
				continue
			}
		}
		addMaria(keep, g)
	}
	u, err := w.Union(GTIDSet{flavor: FlavorMariaDB, maria: keep})
	if err != nil {
		return "", err
	}
	return u.Position(), nil
}

// unloggedBelow lists the entries of oldest (the Gtid_list of the oldest binary log
// left) that say more of an errant (domain, server_id) was logged than written
// keeps: setting gtid_binlog_state to written would forget transactions the binary
// logs say were written (purged since, or never looked up). None: nothing logged is
// forgotten.
func unloggedBelow(oldest GTIDSet, written string, errant GTIDSet) ([]string, error) {
	w, err := ParseGTIDSet(FlavorMariaDB, written)
	if err != nil {
		return nil, err
	}
	if oldest.maria == nil || errant.maria == nil {
		return nil, nil
	}
	var out []string
	for _, g := range sortedMaria(oldest.maria) {
		if _, bad := errant.maria.Sets[g.DomainID][g.ServerID]; !bad {
			continue
		}
		kept := uint64(0)
		if w.maria != nil {
			if wg, ok := w.maria.Sets[g.DomainID][g.ServerID]; ok {
				kept = wg.SequenceNumber
			}
		}
		if g.SequenceNumber > kept {
			out = append(out, g.String())
		}
	}
	return out, nil
}

// RepairErrant makes a MariaDB server's binlog GTID state what its binary logs
// hold, without a restart, so that it can follow the primary again: the errant
// GTIDs of ev are forgotten. It is for phantoms (ev.Phantom: nothing written is
// lost) and, on an operator's word (discard), for real errant transactions (their
// binlog events go, their changes to the data stay). Without discard it refuses
// evidence that is not all phantoms (ErrNotPhantom), whatever its caller decided.
//
// On one connection: the server must be read_only; replication is stopped; under
// FLUSH TABLES WITH READ LOCK, gtid_binlog_state is read again and must be
// ev.BinlogState (else ErrEvidenceStale: something was written since the
// inspection); without discard, the oldest binary log's Gtid_list is read again
// and must not list more of an errant server_id than ev.Written keeps (else
// ErrNotPhantom: it says those transactions were written); RESET MASTER (the only way MariaDB lets gtid_binlog_state be set:
// it removes the binary log files, whose transactions, the errant ones apart,
// the primary has), SET GLOBAL gtid_binlog_state = ev.Written; the lock goes;
// then gtid_slave_pos is set to the same position (slavePosAfter). Replication
// is left stopped: Follow points it at the primary with MASTER_USE_GTID=slave_pos.
//
// MySQL: ErrRepairUnsupported (see the comment at the top of this file).
func (in *Instance) RepairErrant(ctx context.Context, ev ErrantEvidence, discard bool) error {
	if ev.Flavor != FlavorMariaDB {
		return fmt.Errorf("repair errant transactions of %s (%s): %w", in.name, ev.Flavor, ErrRepairUnsupported)
	}
	if ev.Errant.IsEmpty() {
		return fmt.Errorf("repair errant transactions of %s: no errant transactions inspected", in.name)
	}
	if !discard && !ev.Phantom() {
		return fmt.Errorf("repair errant transactions of %s: %w", in.name, ErrNotPhantom)
	}
	slavePos, err := slavePosAfter(ev.Written, ev.SlavePos, ev.Errant)
	if err != nil {
		return fmt.Errorf("repair errant transactions of %s: %w", in.name, err)
	}
	if slavePos == "" {
		// Replicating from nowhere fetches every transaction again.
		return fmt.Errorf("repair errant transactions of %s: no GTID position would be left (nothing but errant transactions in the binlog): rebuild the server", in.name)
	}
	err = in.call(ctx, in.timeout*3, func(ctx context.Context, s *serverConn) error {
		if s.flavor != FlavorMariaDB {
			return ErrRepairUnsupported
		}
		st, err := s.status(ctx)
		if err != nil {
			return err
		}
		if !st.ReadOnly {
			return errors.New("the server is writable: a repair is made only on a read_only server")
		}
		if err := s.exec(ctx, stopReplicationQuery(s.flavor)); err != nil {
			return err
		}
		if err := s.exec(ctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
			return err
		}
		locked := true
		defer func() {
			if locked && !s.broken {
				_ = s.exec(ctx, "UNLOCK TABLES")
			}
		}()
		var now string
		if err := s.conn.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_state").Scan(&now); err != nil {
			return fmt.Errorf("read gtid_binlog_state: %w", err)
		}
		if now != ev.BinlogState {
			return fmt.Errorf("gtid_binlog_state is %q, was %q when the binlog was read: %w", now, ev.BinlogState, ErrEvidenceStale)
		}
		end, err := s.binlogEnd(ctx)
		if err != nil {
			return err
		}
		if end != ev.BinlogEnd {
			return fmt.Errorf("the binlog ends at %s, ended at %s when it was read: %w", end, ev.BinlogEnd, ErrEvidenceStale)
		}
		if !discard {
			files, err := s.binlogFiles(ctx)
			if err != nil {
				return err
			}
			if len(files) == 0 || !files[0].HasBefore {
				return fmt.Errorf("the oldest binary log's Gtid_list cannot be read: %w", ErrNotPhantom)
			}
			logged, err := unloggedBelow(files[0].Before, ev.Written, ev.Errant)
			if err != nil {
				return err
			}
			if len(logged) > 0 {
				return fmt.Errorf("%s's Gtid_list lists %s as written, above %q: %w", files[0].Name, strings.Join(logged, ","), ev.Written, ErrNotPhantom)
			}
		}
		if err := s.exec(ctx, "RESET MASTER"); err != nil {
			return err
		}
		if ev.Written != "" {
			if err := s.exec(ctx, "SET GLOBAL gtid_binlog_state = "+quote(ev.Written, s.noBackslashEscapes)); err != nil {
				// An empty binlog state would make the server look as if it had nothing,
				// and anything pointing it at the primary would fetch everything again:
				// put back the state it had (errant GTIDs and all: it stays quarantined).
				if rerr := s.exec(ctx, "SET GLOBAL gtid_binlog_state = "+quote(ev.BinlogState, s.noBackslashEscapes)); rerr != nil {
					s.in.log.Error("binlog GTID state left empty after RESET MASTER: do not let this server replicate before it is set",
						zap.String("gtid_binlog_state_was", ev.BinlogState), zap.Error(rerr))
					return fmt.Errorf("%w; putting back %q: %v", err, ev.BinlogState, rerr)
				}
				return err
			}
		}
		if err := s.exec(ctx, "UNLOCK TABLES"); err != nil {
			return err
		}
		locked = false
		if err := s.exec(ctx, setSlavePosQuery(slavePos)); err != nil {
			return err
		}
		s.in.log.Warn("errant GTIDs forgotten: binary logs reset to the state they hold",
			zap.String("was", ev.BinlogState), zap.String("gtid_binlog_state", ev.Written), zap.String("gtid_slave_pos", slavePos),
			zap.String("errant", ev.Errant.String()))
		return nil
	})
	if err != nil {
		return fmt.Errorf("repair errant transactions of %s: %w", in.name, err)
	}
	return nil
}
