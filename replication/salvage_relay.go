package replication

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	binlog "github.com/go-mysql-org/go-mysql/replication"
)

// The relay apply: the salvaged transactions applied by the candidate's own
// replication SQL thread rather than by a client session. A session commits one
// transaction at a time, each waiting for the disk (innodb_flush_log_at_trx_commit
// = 1): 0.35 ms each on the sandbox's disk, as long as the old primary took. The
// SQL thread with parallel replication runs them on several workers, commits them
// in binary log order, in groups that share one sync, and keeps their GTIDs, as it
// does for what it receives from a primary.
//
// The failed primary's agent copies the transactions' events byte for byte from
// its binary log files (SalvageRelay: they keep their checksums); the candidate's
// agent writes them as one of its server's relay log files and has the SQL thread
// apply that file (Instance.ApplyRelay). CheckRelay is what both, and the
// coordinator between them, check of the copy.

// SalvageRelay copies txns (a print's complete transactions, ParseBinlogPrint's)
// from files (the binary log files read, in order; txns name them by base name)
// into a relay log: the binary log magic, then for each file, before its first
// transaction, that file's Format_description event and a Rotate event naming it
// (fakeRotate), then the transactions' events,
// each exactly the bytes from its GTID event to its end. It is at most max bytes.
func SalvageRelay(files []string, txns []BinlogTxn, max int) ([]byte, error) {
	if len(txns) == 0 {
		return nil, errors.New("salvage relay: no transactions")
	}
	paths := map[string]string{}
	for _, f := range files {
		paths[filepath.Base(f)] = f
	}
	out := []byte(binlogMagic)
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	cur := ""
	for _, t := range txns {
		if t.File != cur {
			path, ok := paths[t.File]
			if !ok {
				return nil, fmt.Errorf("salvage relay: transaction %s is in %s, not a file read", t.GTID, t.File)
			}
			if f != nil {
				f.Close()
			}
			var err error
			if f, err = os.Open(path); err != nil {
				return nil, fmt.Errorf("salvage relay: %w", err)
			}
			cur = t.File
			fde, err := readFormatDescription(f)
			if err != nil {
				return nil, fmt.Errorf("salvage relay: %s: %w", t.File, err)
			}
			rot, err := fakeRotate(fde, t.File)
			if err != nil {
				return nil, fmt.Errorf("salvage relay: %s: %w", t.File, err)
			}
			out = append(append(out, midFileFDE(fde)...), rot...)
		}
		if t.Pos < int64(len(binlogMagic)) || t.End-t.Pos < eventHeaderLen {
			return nil, fmt.Errorf("salvage relay: transaction %s at %s:%d to %d: not a transaction's place", t.GTID, t.File, t.Pos, t.End)
		}
		n := int(t.End - t.Pos)
		if len(out)+n > max {
			return nil, fmt.Errorf("salvage relay: over %d bytes at transaction %s", max, t.GTID)
		}
		at := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := f.ReadAt(out[at:], t.Pos); err != nil {
			return nil, fmt.Errorf("salvage relay: transaction %s at %s:%d: %w", t.GTID, t.File, t.Pos, err)
		}
	}
	return out, nil
}

// fakeRotate is the Rotate event a replica's IO thread writes to its relay log
// where its source's binary log file begins (artificial, at no position): it
// names file, so that the SQL thread knows which of its source's files it
// applies. A SQL thread that never learnt one crashed (MariaDB 10.11, signal 11
// in a parallel worker, measured). It carries a checksum when fde says so, and
// fde's server id.
func fakeRotate(fde []byte, file string) ([]byte, error) {
	alg := fdeChecksum(fde)
	switch alg {
	case binlog.BINLOG_CHECKSUM_ALG_OFF, binlog.BINLOG_CHECKSUM_ALG_CRC32:
	default:
		return nil, fmt.Errorf("its Format_description event declares checksum algorithm %d", alg)
	}
	size := eventHeaderLen + 8 + len(file)
	if alg == binlog.BINLOG_CHECKSUM_ALG_CRC32 {
		size += 4
	}
	out := make([]byte, eventHeaderLen, size)
	out[4] = rotateEvent
	copy(out[5:9], fde[5:9]) // the server id
	binary.LittleEndian.PutUint32(out[9:13], uint32(size))
	binary.LittleEndian.PutUint16(out[17:19], logEventArtificial)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(binlogMagic)))
	out = append(out, file...)
	if alg == binlog.BINLOG_CHECKSUM_ALG_CRC32 {
		out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out))
	}
	return out, nil
}

// midFileFDE is fde as a primary sends it to a replica that starts in the middle
// of its file: no position (the replica does not move its source position by it),
// not marked in use, and created 0, so that the SQL thread does not take it for a
// restart of its source (which drops the replicated temporary tables); its
// checksum, when it has one, computed again.
func midFileFDE(fde []byte) []byte {
	out := bytes.Clone(fde)
	const createdAt = eventHeaderLen + 2 + 50 // binlog version, server version
	if len(out) < createdAt+4 {
		return out
	}
	binary.LittleEndian.PutUint32(out[13:17], 0) // log_pos
	binary.LittleEndian.PutUint16(out[17:19], binary.LittleEndian.Uint16(out[17:19])&^binlogInUse)
	binary.LittleEndian.PutUint32(out[createdAt:createdAt+4], 0)
	if fdeChecksum(out) == binlog.BINLOG_CHECKSUM_ALG_CRC32 {
		n := len(out) - 4
		binary.LittleEndian.PutUint32(out[n:], crc32.ChecksumIEEE(out[:n]))
	}
	return out
}

// fdeChecksum is the checksum algorithm a Format_description event declares (the
// byte before its own checksum), BINLOG_CHECKSUM_ALG_UNDEF when it cannot be read.
func fdeChecksum(fde []byte) byte {
	ev, err := binlog.NewBinlogParser().Parse(fde)
	if err != nil {
		return binlog.BINLOG_CHECKSUM_ALG_UNDEF
	}
	f, ok := ev.Event.(*binlog.FormatDescriptionEvent)
	if !ok {
		return binlog.BINLOG_CHECKSUM_ALG_UNDEF
	}
	return f.ChecksumAlgorithm
}

// readFormatDescription reads a binary log file's Format_description event, the
// first after its magic.
func readFormatDescription(f io.ReaderAt) ([]byte, error) {
	head := make([]byte, len(binlogMagic)+eventHeaderLen)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, fmt.Errorf("read its header: %w", err)
	}
	if string(head[:len(binlogMagic)]) != binlogMagic {
		return nil, errors.New("not a binary log file (no magic)")
	}
	h := head[len(binlogMagic):]
	size := binary.LittleEndian.Uint32(h[9:13])
	if h[4] != formatDescription || size < eventHeaderLen || size > 1<<16 {
		return nil, fmt.Errorf("its first event is not a Format_description event (type %d, %d bytes)", h[4], size)
	}
	fde := make([]byte, size)
	if _, err := f.ReadAt(fde, int64(len(binlogMagic))); err != nil {
		return nil, fmt.Errorf("read its Format_description event: %w", err)
	}
	return fde, nil
}

// CheckRelay checks that relay holds txns and nothing else: the binary log
// magic, then events whose sizes chain to its end and whose checksums hold (as
// its Format_description events say: a file logged without checksums has none to
// check), each Format_description event followed by a Rotate event naming the
// file of the transactions after it, both only between transactions, and each transaction, in order, starting
// with a GTID event of its GTID and as long as it was in its file (End - Pos).
func CheckRelay(relay []byte, txns []BinlogTxn) error {
	if len(txns) == 0 {
		return errors.New("check relay: no transactions")
	}
	if !bytes.HasPrefix(relay, []byte(binlogMagic)) {
		return errors.New("check relay: no binary log magic")
	}
	p := binlog.NewBinlogParser()
	p.SetFlavor("mariadb")
	p.SetRawMode(true)
	p.SetVerifyChecksum(true)
	i := -1       // the transaction being read
	var got int64 // its bytes read so far
	want := func() int64 { return txns[i].End - txns[i].Pos }
	described := false
	crc := false  // the last Format_description event declares CRC32 checksums
	rotated := "" // the file the last Rotate event named; "" right after a Format_description event
	for off := len(binlogMagic); off < len(relay); {
		if len(relay)-off < eventHeaderLen {
			return fmt.Errorf("check relay: it ends inside an event's header, at %d", off)
		}
		size := int(binary.LittleEndian.Uint32(relay[off+9 : off+13]))
		if size < eventHeaderLen || size > len(relay)-off {
			return fmt.Errorf("check relay: the event at %d says it is %d bytes, %d are left", off, size, len(relay)-off)
		}
		ev := relay[off : off+size]
		if _, err := p.Parse(ev); err != nil {
			return fmt.Errorf("check relay: the event at %d: %w", off, err)
		}
		switch typ := ev[4]; {
		case typ == formatDescription:
			if i >= 0 && got != want() {
				return fmt.Errorf("check relay: a Format_description event at %d, inside transaction %s", off, txns[i].GTID)
			}
			described, rotated = true, ""
			crc = fdeChecksum(ev) == binlog.BINLOG_CHECKSUM_ALG_CRC32
		case !described:
			return fmt.Errorf("check relay: an event (type %d) at %d before any Format_description event", typ, off)
		case typ == rotateEvent:
			end := len(ev)
			if crc {
				end -= 4
			}
			if rotated != "" || end < eventHeaderLen+8 {
				return fmt.Errorf("check relay: a Rotate event at %d not right after a Format_description event", off)
			}
			if rotated = string(ev[eventHeaderLen+8 : end]); rotated == "" {
				return fmt.Errorf("check relay: the Rotate event at %d names no file", off)
			}
		case rotated == "":
			return fmt.Errorf("check relay: an event (type %d) at %d where a Rotate event naming its file belongs", typ, off)
		case typ == eventMariaDBGTID:
			if i >= 0 && got != want() {
				return fmt.Errorf("check relay: transaction %s is %d bytes, %d in its file", txns[i].GTID, got, want())
			}
			if i++; i >= len(txns) {
				return fmt.Errorf("check relay: more than the %d transactions listed", len(txns))
			}
			if g, err := gtidOf(ev); err != nil || g != txns[i].GTID {
				return fmt.Errorf("check relay: transaction %d is %s (%v), listed as %s", i+1, g, err, txns[i].GTID)
			}
			if rotated != txns[i].File {
				return fmt.Errorf("check relay: transaction %s follows a Rotate event naming %q, listed in %s", txns[i].GTID, rotated, txns[i].File)
			}
			got = 0
		case i < 0:
			return fmt.Errorf("check relay: an event (type %d) at %d before the first transaction", typ, off)
		}
		if ev[4] != formatDescription && ev[4] != rotateEvent {
			if got += int64(size); got > want() {
				return fmt.Errorf("check relay: transaction %s is longer than the %d bytes it had in its file", txns[i].GTID, want())
			}
		}
		off += size
	}
	switch {
	case i < len(txns)-1:
		return fmt.Errorf("check relay: %d of the %d transactions listed", i+1, len(txns))
	case got != want():
		return fmt.Errorf("check relay: the last transaction, %s, is %d bytes, %d in its file", txns[i].GTID, got, want())
	}
	return nil
}

// gtidOf reads a MariaDB GTID event's GTID (domain-server-sequence): its sequence
// number and domain are the body's first 12 bytes, the server the header's.
func gtidOf(ev []byte) (string, error) {
	if len(ev) < eventHeaderLen+12 {
		return "", errors.New("a GTID event too short")
	}
	body := ev[eventHeaderLen:]
	return fmt.Sprintf("%d-%d-%d", binary.LittleEndian.Uint32(body[8:12]), binary.LittleEndian.Uint32(ev[5:9]),
		binary.LittleEndian.Uint64(body[0:8])), nil
}
