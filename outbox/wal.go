package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The log before the tree (Options.Log). A sync batch is made durable by one
// pwrite of its records into a preallocated file and one fdatasync, instead
// of a bbolt commit (scattered pages and two fdatasyncs, one at a time); the
// writer moves logged batches into bbolt later, many per commit.
//
// Layout of <path>.log, a file of fixed size, zero-filled when created so
// that overwriting it never changes the file's metadata (fdatasync then
// flushes data only):
//
//	[0, 512)     header slot A   magic "CEOBLOG1", generation u64, crc32c u32
//	[512, 1024)  header slot B   the same; the valid slot with the higher
//	                             generation is current
//	[4096, ...)  frames, each starting on a 4 KiB boundary:
//	             magic u32, payload length u32, generation u64, first seq
//	             u64, record count u32, crc32c u32 (of the 28 bytes before it
//	             and the payload), then the payload: per record a u32 length
//	             and the encoded record.
//
// Frames are written one after another from logDataStart; the first frame
// that is not whole, not of the current generation or fails its checksum
// ends the log. A frame's appenders are answered only after its fdatasync,
// and the next frame is written only after that, so a frame that ends the
// log early was never answered (a torn tail). Frames start on page
// boundaries so that writing one never rewrites a page of an answered one.
//
// The log is reused once everything in it is committed to bbolt: the next
// frame goes to logDataStart under a new generation, written to the other
// header slot in the same fdatasync as that frame. Frames of older
// generations left behind end the scan, whichever header write survived a
// crash: their records were in bbolt already. When the new generation's
// first frame reached the disk and its header did not, the old frames past
// it are of the current generation again; their records are in bbolt too,
// which is how the scan tells them from damage (logScan.check), and the
// next frame opens a new generation. Within a generation sequences only
// grow. On Open, records of the current generation whose sequence is at or
// above bbolt's next_seq are committed to bbolt before anything else.

const (
	logSuffix     = ".log"
	logMagic      = "CEOBLOG1"
	logSlotSize   = 512
	logPage       = 4096
	logDataStart  = logPage
	frameMagic    = 0x434c4f47 // "CLOG"
	frameHeadLen  = 32
	recLenLen     = 4
	minLogBytes   = 64 << 10
	logZeroChunk  = 1 << 20
	logHeaderSize = 8 + 8 + 4
)

// DefaultLogBytes is the size of the log file when Options.LogBytes is zero.
const DefaultLogBytes = 32 << 20

// errLogFull is returned by walWriter.write when the frame does not fit in
// what is left of the log.
var errLogFull = errors.New("outbox: log full")

// ErrLogPending is returned by Open with Options.ReadOnly when the log next
// to the file holds records not yet moved into it: reading the file alone
// would miss them. Opening the outbox for writing once moves them.
var ErrLogPending = errors.New("outbox: the log holds records not yet moved into the file")

// logPath is the log's path for the outbox file at path.
func logPath(path string) string { return path + logSuffix }

// LogPath is where the outbox at path keeps its log (Options.Log).
func LogPath(path string) string { return logPath(path) }

// walWriter is the open log. It is owned by the log goroutine (after Open's
// replay).
type walWriter struct {
	f     *os.File
	size  int64
	gen   uint64
	off   int64 // where the next frame goes
	buf   []byte
	trace logTracer // nil but in tests
}

// logTracer sees the log's writes and fdatasyncs, in the order made (tests
// build power-loss images of the log from them).
type logTracer interface {
	wrote(off int64, p []byte)
	synced()
}

// loggedRecord is one record found in the log.
type loggedRecord struct {
	seq uint64
	rec []byte
}

// logScan is what a scan of the log found.
type logScan struct {
	gen     uint64
	frames  int
	records []loggedRecord // of the current generation, in sequence order
	end     int64          // offset after the last valid frame
	// after holds the valid frames of the current generation past end
	// (check says what they are).
	after []frameInfo
}

// frameInfo describes a valid frame found past the end of a scan.
type frameInfo struct {
	off   int64
	seq   uint64
	count int
}

// createLog makes a zero-filled log of size bytes with generation 1 at
// path, durably: written under a temporary name, synced, renamed, and the
// directory synced.
func createLog(path string, size int64) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: create log: %w", err)
	}
	zero := make([]byte, logZeroChunk)
	for off := int64(0); off < size; off += logZeroChunk {
		n := min(int64(logZeroChunk), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			f.Close()
			os.Remove(tmp)
			return fmt.Errorf("outbox: create log: %w", err)
		}
	}
	if _, err := f.WriteAt(logHeader(1), 0); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("outbox: create log: %w", err)
	}
	return nil
}

// logHeader encodes a header slot for generation gen.
func logHeader(gen uint64) []byte {
	h := make([]byte, logSlotSize)
	copy(h, logMagic)
	binary.BigEndian.PutUint64(h[8:], gen)
	binary.BigEndian.PutUint32(h[16:], crc32.Checksum(h[:16], castagnoli))
	return h
}

// headerSlot returns the offset of generation gen's header slot.
func headerSlot(gen uint64) int64 { return int64(gen%2) * logSlotSize }

// readLogGen returns the current generation: the higher of the two valid
// header slots.
func readLogGen(f io.ReaderAt) (uint64, error) {
	var best uint64
	h := make([]byte, logHeaderSize)
	for slot := int64(0); slot < 2; slot++ {
		if _, err := f.ReadAt(h, slot*logSlotSize); err != nil {
			return 0, err
		}
		if string(h[:8]) != logMagic || binary.BigEndian.Uint32(h[16:]) != crc32.Checksum(h[:16], castagnoli) {
			continue
		}
		best = max(best, binary.BigEndian.Uint64(h[8:]))
	}
	if best == 0 {
		return 0, errors.New("no valid header")
	}
	return best, nil
}

// scanLog reads every frame of the current generation, and notes the valid
// ones past the end for check.
func scanLog(f *os.File) (*logScan, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return scanLogAt(f, st.Size())
}

// scanLogAt is scanLog of a log of size bytes read from f.
func scanLogAt(f io.ReaderAt, size int64) (*logScan, error) {
	gen, err := readLogGen(f)
	if err != nil {
		return nil, err
	}
	s := &logScan{gen: gen, end: logDataStart}
	head := make([]byte, frameHeadLen)
	var payload []byte
	// frameAt reads the frame at off into head and payload: its length,
	// and whether it is a whole, valid frame of the generation.
	frameAt := func(off int64) (n int64, ok bool, err error) {
		if _, err := f.ReadAt(head, off); err != nil {
			return 0, false, err
		}
		if binary.BigEndian.Uint32(head) != frameMagic || binary.BigEndian.Uint64(head[8:]) != gen {
			return 0, false, nil
		}
		n = int64(binary.BigEndian.Uint32(head[4:]))
		if off+frameHeadLen+n > size {
			return 0, false, nil
		}
		payload = append(payload[:0], make([]byte, n)...)
		if _, err := f.ReadAt(payload, off+frameHeadLen); err != nil && n > 0 {
			return 0, false, err
		}
		crc := crc32.Update(crc32.Checksum(head[:28], castagnoli), castagnoli, payload)
		return n, crc == binary.BigEndian.Uint32(head[28:]), nil
	}
	for off := int64(logDataStart); off+frameHeadLen <= size; {
		n, ok, err := frameAt(off)
		if err != nil {
			return nil, err
		}
		if !ok {
			break // a torn tail, or the end of what the generation wrote
		}
		seq := binary.BigEndian.Uint64(head[16:])
		if n := len(s.records); n > 0 && seq <= s.records[n-1].seq {
			// Left from before the log started over (check).
			s.after = append(s.after, frameInfo{off: off, seq: seq, count: int(binary.BigEndian.Uint32(head[24:]))})
			break
		}
		recs, ok := splitFrame(payload, seq, int(binary.BigEndian.Uint32(head[24:])))
		if !ok {
			break
		}
		s.records = append(s.records, recs...)
		s.frames++
		off = alignPage(off + frameHeadLen + n)
		s.end = off
	}
	for off := s.end + logPage; off+frameHeadLen <= size; off += logPage {
		if _, ok, err := frameAt(off); err != nil {
			return nil, err
		} else if ok {
			s.after = append(s.after, frameInfo{off: off, seq: binary.BigEndian.Uint64(head[16:]), count: int(binary.BigEndian.Uint32(head[24:]))})
		}
	}
	return s, nil
}

// check reports damage: answered records past the end of the scan, given
// next, the file's next_seq (0 when not known: then no record counts as
// in the file). A torn tail is the last frame ever written in its
// generation, and a frame's appenders are answered only after it is
// synced, so a valid frame past the end holding records the file lacks
// means a frame in the middle is damaged: its records, and those after
// it, were answered. A valid frame past the end whose records are all in
// the file is harmless: it is left from before the log started over, when
// the new generation's first frame reached the disk and its header did
// not (a crash between the two writes of one fdatasync).
func (s *logScan) check(next uint64) error {
	for _, fi := range s.after {
		if fi.seq+uint64(fi.count) > next {
			return fmt.Errorf("the frame at offset %d is damaged and a valid frame follows at offset %d", s.end, fi.off)
		}
	}
	return nil
}

// splitFrame cuts a frame's payload into its records, copied.
func splitFrame(p []byte, seq uint64, count int) ([]loggedRecord, bool) {
	// count is the header's word: each record takes at least its length.
	recs := make([]loggedRecord, 0, min(count, len(p)/recLenLen))
	for len(p) > 0 {
		if len(p) < recLenLen {
			return nil, false
		}
		n := int(binary.BigEndian.Uint32(p))
		p = p[recLenLen:]
		if n > len(p) {
			return nil, false
		}
		recs = append(recs, loggedRecord{seq: seq, rec: append([]byte(nil), p[:n]...)})
		seq++
		p = p[n:]
	}
	return recs, len(recs) == count
}

func alignPage(off int64) int64 { return (off + logPage - 1) &^ (logPage - 1) }

// unmoved returns the records at or above next, bbolt's next_seq.
func (s *logScan) unmoved(next uint64) []loggedRecord {
	for i, r := range s.records {
		if r.seq >= next {
			return s.records[i:]
		}
	}
	return nil
}

// LogReport describes the log next to an outbox file, for the tools.
type LogReport struct {
	Path       string
	Generation uint64
	Frames     int    // frames of the current generation
	Records    int    // records in them
	FirstSeq   uint64 // of the records, 0 when none
	LastSeq    uint64
}

// InspectLog reads the log next to the outbox file at path. It returns nil
// and no error when there is no log. Not knowing the file's next sequence,
// it takes every valid frame past the end of the log for damage; Verify,
// which knows it, tells damage from frames whose records are in the file.
func InspectLog(path string) (*LogReport, error) { return inspectLog(path, 0) }

// inspectLog is InspectLog, given the file's next sequence (logScan.check).
func inspectLog(path string, next uint64) (*LogReport, error) {
	f, err := os.Open(logPath(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("outbox: open log: %w", err)
	}
	defer f.Close()
	s, err := scanLog(f)
	if err == nil {
		err = s.check(next)
	}
	if err != nil {
		return nil, corruptError(logPath(path), err)
	}
	rep := &LogReport{Path: logPath(path), Generation: s.gen, Frames: s.frames, Records: len(s.records)}
	if n := len(s.records); n > 0 {
		rep.FirstSeq, rep.LastSeq = s.records[0].seq, s.records[n-1].seq
	}
	return rep, nil
}

// openWAL opens (creating it when missing) the log of size bytes.
func openWAL(path string, size int64) (*walWriter, *logScan, error) {
	lp := logPath(path)
	if _, err := os.Stat(lp); errors.Is(err, os.ErrNotExist) {
		if err := createLog(lp, size); err != nil {
			return nil, nil, err
		}
	}
	f, err := os.OpenFile(lp, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("outbox: open log: %w", err)
	}
	s, err := scanLog(f)
	if err != nil {
		f.Close()
		return nil, nil, corruptError(lp, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &walWriter{f: f, size: st.Size(), gen: s.gen, off: s.end}, s, nil
}

// fits reports whether a frame of the records fits at the current offset.
func (l *walWriter) fits(recs []*[]byte) bool {
	n := int64(frameHeadLen)
	for _, r := range recs {
		n += recLenLen + int64(len(*r))
	}
	return l.off+n+logSlack <= l.size
}

// frameFits reports whether a frame of the records would fit in an empty
// log at all.
func (l *walWriter) frameFits(bytes, records int) bool {
	return int64(frameHeadLen+logSlack+bytes+recLenLen*records) <= l.size-logDataStart
}

// write appends one frame of recs, numbered from seq, and makes it durable
// with one fdatasync. When newGen is set the frame opens a new generation:
// its header slot is written first, in the same fdatasync (neither write
// is relied on before it returns).
func (l *walWriter) write(recs []*[]byte, seq uint64, newGen bool) error {
	gen, off := l.gen, l.off
	if newGen {
		gen, off = l.gen+1, logDataStart
	}
	b := l.buf[:0]
	b = append(b, make([]byte, frameHeadLen)...)
	for _, r := range recs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(*r)))
		b = append(b, *r...)
	}
	if off+int64(len(b)) > l.size {
		return errLogFull
	}
	binary.BigEndian.PutUint32(b[0:], frameMagic)
	binary.BigEndian.PutUint32(b[4:], uint32(len(b)-frameHeadLen))
	binary.BigEndian.PutUint64(b[8:], gen)
	binary.BigEndian.PutUint64(b[16:], seq)
	binary.BigEndian.PutUint32(b[24:], uint32(len(recs)))
	crc := crc32.Update(crc32.Checksum(b[:28], castagnoli), castagnoli, b[frameHeadLen:])
	binary.BigEndian.PutUint32(b[28:], crc)
	l.buf = b
	if newGen {
		h := logHeader(gen)
		if _, err := l.f.WriteAt(h, headerSlot(gen)); err != nil {
			return err
		}
		if l.trace != nil {
			l.trace.wrote(headerSlot(gen), h)
		}
	}
	if _, err := l.f.WriteAt(b, off); err != nil {
		return err
	}
	if l.trace != nil {
		l.trace.wrote(off, b)
	}
	if err := fdatasync(l.f); err != nil {
		return err
	}
	if l.trace != nil {
		l.trace.synced()
	}
	l.gen = gen
	l.off = alignPage(off + int64(len(b)))
	return nil
}

// moveGoal is the count of logged records a move holds before the writer
// stops letting them gather (moveWait). A bbolt commit costs two
// fdatasyncs and a few pages (meta, the tree's root and branch, the route
// and span pages) whatever it moves; from a few hundred records on, that
// fixed cost is a small share of the commit, so waiting longer buys little.
// Above 256 records per DefaultMoveDelay (25k records/s) a move is full
// before its delay ends: the wait shrinks as the rate grows, and busy
// nodes move as before (natural batching).
const moveGoal = 256

// moveWait returns how long the writer lets the logged batches at the head
// of moveQ gather before it moves them (Options.MoveDelay), or 0 to move
// now: at a low rate each batch would otherwise cost a bbolt commit of its
// own. It never waits at Close (final), when a prune step or acks are due
// (they ride in the move's commit, and a move in theirs), when a batch to
// commit directly waits behind the logged ones (an indexed append, Sync,
// the spill's way back), when the log is half used or the log goroutine
// waits for room in it, or once the batches hold moveGoal records or a
// quarter of MaxBatchBytes. The wait ends MoveDelay after the oldest
// batch was logged; every logged batch, direct batch and ack wakes the
// writer, which asks again. o.mu is held.
func (o *Outbox) moveWait(now time.Time, final, pruneDue bool) time.Duration {
	if final || pruneDue || o.opts.MoveDelay <= 0 || len(o.moveQ) == 0 || o.logWaiting.Load() ||
		2*(o.logOff.Load()-logDataStart) >= o.logSize-logDataStart {
		return 0
	}
	recs, bytes := 0, 0
	for _, m := range o.moveQ {
		if m.seq == 0 {
			return 0
		}
		recs += len(m.recs)
		bytes += m.bytes
	}
	if recs >= min(moveGoal, o.opts.MaxBatchRecords) || 4*bytes >= o.opts.MaxBatchBytes {
		return 0
	}
	d := time.Duration(o.moveQ[0].logged + int64(o.opts.MoveDelay) - now.UnixNano())
	if len(o.acks) > 0 {
		if len(o.acks) >= ackBatch {
			return 0
		}
		d = min(d, ackDelay-now.Sub(o.acksSince))
	}
	return max(d, 0)
}

// takeMove takes the writer's next work with the log: a batch to commit
// directly, or the logged batches at the head of moveQ merged into one
// (returned too, so that a failed move can put them back). o.mu is held.
func (o *Outbox) takeMove(now time.Time) (*batch, []*batch) {
	if len(o.moveQ) == 0 {
		return nil, nil
	}
	if o.moveQ[0].seq == 0 {
		head := popBatch(&o.moveQ, &o.movingBytes)
		if !o.stillOpen(head) {
			close(head.handled) // timed out before the writer got to it
			return nil, nil
		}
		return head, nil
	}
	n, recs, bytes := 0, 0, 0
	for _, m := range o.moveQ {
		if m.seq == 0 || n > 0 && (recs+len(m.recs) > o.opts.MaxBatchRecords || bytes+m.bytes > o.opts.MaxBatchBytes) {
			break
		}
		n++
		recs += len(m.recs)
		bytes += m.bytes
	}
	moving := slices.Clone(o.moveQ[:n])
	clear(o.moveQ[:n])
	o.moveQ = o.moveQ[n:]
	// movingBytes keeps them until the commit: Append's MaxBytes check
	// must not miss them while they are neither here nor in the tree.
	b := &batch{created: now.UnixNano(), done: make(chan struct{}), seq: moving[0].seq, bytes: bytes, recs: make([]*[]byte, 0, recs)}
	for _, m := range moving {
		b.recs = append(b.recs, m.recs...)
	}
	o.movingNow = len(b.recs)
	return b, moving
}

// logState is owned by the log goroutine.
type logState struct {
	// defined holds the routes a frame of the current generation carries
	// (see frameRecords).
	defined  map[uint32]bool
	next     uint64    // the sequence of the next logged record
	lastEnd  time.Time // when the previous frame was synced
	gather   int       // records in flight then: the next frame's goal
	failedAt time.Time // the last write error of the log, for a back-off
	retry    time.Duration
	// rotate makes the next frame open a new generation: Open found
	// valid frames past the log's end (logScan.check), and a frame
	// written where the log ends would make them the log's again.
	rotate bool
}

// logLoop takes queued batches in order: a sync batch is logged and
// answered, then handed to the writer to move; any other (indexed appends,
// Sync's empty batch, the spill) is handed to the writer to commit, and the
// loop waits for it, so that sequences stay in the order the file takes
// them and everything logged before a direct commit is in the tree first.
func (o *Outbox) logLoop() {
	defer close(o.logDone)
	defer o.wal.f.Close()
	ls := logState{next: o.nextSeq.Load(), rotate: o.logRotate}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		final := false
		select {
		case <-o.logWake:
		case <-timer.C:
		case <-o.closing:
			final = true
		}
		for {
			wait, more := o.logNext(&ls, final)
			if wait > 0 {
				timer.Reset(wait)
				break
			}
			if !more && (final || !o.logRestoreSpill(&ls)) {
				break
			}
		}
		if final {
			return
		}
	}
}

// logRestoreSpill has the writer move spilled records back into the file
// (restoreSpill), reporting whether it did.
func (o *Outbox) logRestoreSpill(ls *logState) bool {
	seqs, b := o.spillBatch(false)
	if b == nil {
		return false
	}
	b.handled = make(chan struct{})
	o.mu.Lock()
	o.moveQ = append(o.moveQ, b)
	o.movingBytes += b.bytes
	o.mu.Unlock()
	o.signalWriter()
	<-b.handled
	ls.next = o.nextSeq.Load()
	o.spill.settle(seqs, b.err == nil)
	if b.err == nil {
		o.log.Info("outbox: spilled records moved back into the file", "records", len(seqs))
	}
	return b.err == nil
}

// logNext logs or hands over the oldest queued batch.
func (o *Outbox) logNext(ls *logState, final bool) (wait time.Duration, more bool) {
	now := time.Now()
	o.mu.Lock()
	if len(o.queue) == 0 {
		o.mu.Unlock()
		return 0, false
	}
	b := o.queue[0]
	if !final && len(o.queue) == 1 && len(b.recs) > 0 && len(b.recs) < ls.gather &&
		len(b.recs) < o.opts.MaxBatchRecords && b.bytes < o.opts.MaxBatchBytes {
		// As in the writer without the log (gatherWait): let the previous
		// frame's appenders come back.
		if d := gatherWait - now.Sub(ls.lastEnd); d > 0 {
			o.mu.Unlock()
			return d, false
		}
	}
	popBatch(&o.queue, &o.queuedBytes)
	more = len(o.queue) > 0
	if !o.stillOpen(b) {
		o.mu.Unlock()
		return 0, more
	}
	o.committing = b
	o.movingBytes += b.bytes
	direct := len(b.recs) == 0 || b.index != nil || !o.wal.frameFits(b.bytes, len(b.recs))
	if direct {
		b.handled = make(chan struct{})
		o.moveQ = append(o.moveQ, b)
	}
	o.mu.Unlock()

	if direct {
		o.signalWriter()
		// Not b.done: the timeout loop may end the batch while logged
		// batches ahead of it still wait for their move, and the next
		// sequence is known only once the writer is past it.
		<-b.handled
		ls.next = o.nextSeq.Load()
		o.endLogBatch(b, false)
		return 0, more
	}

	err := o.logBatch(ls, b)
	ls.lastEnd = time.Now()
	if err != nil {
		o.endLogBatch(b, true)
		b.end(err)
		return 0, more
	}
	o.ctr.logged.Add(uint64(len(b.recs)))
	o.ctr.logLatency.observe(ls.lastEnd.Sub(now).Seconds())
	b.logged = ls.lastEnd.UnixNano()
	o.mu.Lock()
	if o.committing == b {
		o.committing = nil
	}
	o.moveQ = append(o.moveQ, b)
	ls.gather = len(b.recs)
	if len(o.queue) > 0 {
		ls.gather += len(o.queue[0].recs)
	}
	more = len(o.queue) > 0
	o.mu.Unlock()
	b.end(nil) // the appenders are answered: their records are durable
	o.signalWriter()
	return 0, more
}

// endLogBatch forgets a batch the log goroutine handed over or failed.
func (o *Outbox) endLogBatch(b *batch, failed bool) {
	o.mu.Lock()
	if o.committing == b {
		o.committing = nil
	}
	if failed {
		o.movingBytes -= b.bytes
	}
	o.mu.Unlock()
	if failed {
		for _, buf := range b.recs {
			o.putBuf(buf)
		}
	}
}

// logBatch writes b as one frame and fdatasyncs it. When the log has no
// room, it waits until the writer has moved everything logged and starts a
// new generation; while the tree does not take writes (a write back-off),
// the batch fails at once with ErrWrite, so the caller can spill it. The
// batch is claimed just before its write, as the writer claims a commit.
func (o *Outbox) logBatch(ls *logState, b *batch) error {
	if !ls.failedAt.IsZero() && time.Since(ls.failedAt) < ls.retry {
		return o.writeError()
	}
	l := o.wal
	defer o.logWaiting.Store(false)
	for {
		allMoved := o.nextSeq.Load() >= ls.next
		// Reuse the log from its start whenever it is all moved and a
		// quarter used, so that a busy node rarely finds it full.
		if allMoved && (ls.rotate || l.off > logDataStart && (l.off > l.size/4 || !l.fits(b.recs))) {
			return o.logWrite(ls, b, true)
		}
		if !ls.rotate && l.fits(b.recs) {
			return o.logWrite(ls, b, false)
		}
		if time.Now().UnixNano() < o.failedUntil.Load() {
			o.ctr.logFull.Add(1)
			return o.writeError()
		}
		o.ctr.logWaits.Add(1)
		o.logWaiting.Store(true) // the writer moves without gathering
		o.signalWriter()
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-o.moved:
		case <-b.done: // timed out (ErrTimeout)
		case <-t.C:
		}
		t.Stop()
		if b.state.Load() != batchOpen {
			<-b.done // failed by the timeout loop; err is set before done
			return b.err
		}
	}
}

func (o *Outbox) logWrite(ls *logState, b *batch, newGen bool) error {
	var err error
	if hook := o.opts.beforeLog; hook != nil {
		err = hook()
	}
	if err == nil && !b.claim() {
		<-b.done // timed out just now
		return b.err
	}
	var defs []uint32
	if err == nil {
		var frame []*[]byte
		frame, defs = o.frameRecords(ls, b.recs, newGen)
		err = o.wal.write(frame, ls.next, newGen)
	}
	if err != nil {
		ls.failedAt = time.Now()
		ls.retry = min(max(2*ls.retry, minWriteRetry), maxWriteRetry)
		o.logFailedUntil.Store(ls.failedAt.Add(ls.retry).UnixNano())
		o.ctr.commitErrors.Add(1)
		o.lastErr.Store(&errorAt{err: err, at: o.opts.Now()})
		o.log.Error("outbox log write failed", "path", logPath(o.path), "err", err)
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	ls.failedAt, ls.retry = time.Time{}, 0
	o.logFailedUntil.Store(0)
	o.logOff.Store(o.wal.off)
	if newGen {
		o.ctr.logRestarts.Add(1)
		ls.rotate = false
	}
	if newGen || ls.defined == nil {
		ls.defined = map[uint32]bool{}
	}
	for _, id := range defs {
		ls.defined[id] = true
	}
	b.seq = ls.next
	ls.next += uint64(len(b.recs))
	return nil
}

// logSlack is room a frame may need beyond its records: the routes it
// carries (frameRecords), in practice one or two, each at most
// maxRouteBytes. A frame that needs more than this and does not fit fails
// like any failed log write (ErrWrite: its appenders spill).
const logSlack = 2 * (maxRouteBytes + 16)

// frameRecords returns the records of a frame: recs, but for the first
// record naming each route that no frame of the generation carries yet,
// which is written in its defined form (the route carried too), and the
// routes so defined. A route reaches bbolt only with the move of its first
// record, so without this a crash between the log's fdatasync and that
// move would leave logged records naming a route that is nowhere on disk.
// The batch's own records stay as they are: the tree stores routes once.
func (o *Outbox) frameRecords(ls *logState, recs []*[]byte, newGen bool) ([]*[]byte, []uint32) {
	var frame []*[]byte
	var defs []uint32
	for i, r := range recs {
		id, _ := recordRouteID(*r)
		if id == 0 || !newGen && ls.defined[id] || slices.Contains(defs, id) {
			continue
		}
		rt := o.routes.lookup(uint64(id))
		if rt == nil {
			continue // cannot happen: Append interned it
		}
		if frame == nil {
			frame = slices.Clone(recs)
		}
		d := defineRoute(make([]byte, 0, definedLen(*r, id, rt.enc)), *r, id, rt.enc)
		frame[i] = &d
		defs = append(defs, id)
	}
	if frame == nil {
		return recs, nil
	}
	return frame, defs
}

// replayLog commits the records a log left that the file does not hold
// yet, before anything else touches the file; without Options.Log (or in
// Async mode) it then removes the log.
func (o *Outbox) replayLog() error {
	lp := logPath(o.path)
	f, err := os.Open(lp)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("outbox: open log: %w", err)
	}
	s, err := scanLog(f)
	f.Close()
	if err != nil {
		return corruptError(lp, err)
	}
	err = o.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		p := tx.Bucket(bucketPending)
		next := getUint64(m, metaNextSeq)
		if err := s.check(next); err != nil {
			return corruptError(lp, err)
		}
		recs := s.unmoved(next)
		if len(recs) == 0 {
			return nil
		}
		count := int64(getUint64(m, metaPendingCount))
		bytes := int64(getUint64(m, metaPendingBytes))
		// Routes first: the generation's frames carry every route their
		// records name that the file may lack (frameRecords).
		routes, err := tx.CreateBucketIfNotExists(bucketRoutes)
		if err != nil {
			return err
		}
		for _, r := range s.records {
			if checkRecord(r.rec) != nil {
				continue // refused below if it is to be moved
			}
			if id, enc := routeCarriedBy(r.rec); id != 0 {
				k, v := routeEntry(id, string(enc))
				if routes.Get(k) == nil {
					if err := routes.Put(k, v); err != nil {
						return err
					}
				}
			}
		}
		for _, r := range recs {
			if err := checkRecord(r.rec); err != nil {
				return corruptError(lp, fmt.Errorf("record %d: %w", r.seq, err))
			}
			if id, ok := recordRouteID(r.rec); !ok {
				return corruptError(lp, fmt.Errorf("record %d: route field does not parse", r.seq))
			} else if id != 0 {
				if routes.Get(routeKey(id)) == nil {
					return corruptError(lp, fmt.Errorf("record %d names route %d, which neither the file nor the log holds", r.seq, id))
				}
			}
			k := seqKey(r.seq)
			if err := p.Put(k[:], r.rec); err != nil {
				return err
			}
			count++
			bytes += int64(len(r.rec))
			next = r.seq + 1
		}
		o.replayed = len(recs)
		return errors.Join(putUint64(m, metaNextSeq, next),
			putUint64(m, metaPendingCount, uint64(count)),
			putUint64(m, metaPendingBytes, uint64(bytes)))
	})
	if err != nil {
		return fmt.Errorf("outbox: move the log's records into %s: %w", o.path, err)
	}
	if o.replayed > 0 {
		o.log.Warn("outbox: moved records left in the log into the file", "records", o.replayed, "log", lp)
	}
	if !o.opts.Log || o.opts.Durability != Sync {
		if err := os.Remove(lp); err != nil {
			return fmt.Errorf("outbox: remove log: %w", err)
		}
		return syncDir(filepath.Dir(lp))
	}
	return nil
}

// checkLogMoved fails a read-only Open when the log holds records the file
// does not: a reader of the file alone would miss them.
func (o *Outbox) checkLogMoved() error {
	rep, err := inspectLog(o.path, o.nextSeq.Load())
	if err != nil || rep == nil || rep.Records == 0 {
		return err
	}
	if rep.LastSeq < o.nextSeq.Load() {
		return nil
	}
	return fmt.Errorf("%w: %s holds records up to seq %d, the file ends before seq %d; open the outbox for writing once "+
		"(starting the node does) to move them", ErrLogPending, rep.Path, rep.LastSeq, o.nextSeq.Load())
}

// salvageLog copies the records of src's log that the salvaged outbox at
// dst lacks (by message id) into it, with new sequences, and returns how
// many. A salvaged file gets sequences of its own, so the log cannot be
// replayed by sequence next to it. Frames up to damage in the log are
// taken; the damage is returned with the count.
func salvageLog(src, dst string) (int, error) {
	f, err := os.Open(logPath(src))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s, serr := scanLog(f)
	f.Close()
	if serr == nil {
		serr = s.check(0)
	}
	if s == nil || len(s.records) == 0 {
		return 0, serr
	}
	o, err := Open(dst, &Options{Durability: Async, Retention: 100 * 365 * 24 * time.Hour, SpillBytes: -1})
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	err = o.Scan(nil, func(r *Record) error { seen[r.MessageID] = true; return nil })
	n := 0
	for _, lr := range s.records {
		if err != nil {
			break
		}
		var r Record
		if err = decodeRecord(lr.rec, &r, o.routes); err == nil && !seen[r.MessageID] {
			seen[r.MessageID] = true
			err = o.Append(&r)
			n++
		}
	}
	if err == nil {
		err = o.Sync()
	}
	if cerr := o.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return n, serr
}

// popBatch removes the first batch of *q and its bytes from *bytes.
func popBatch(q *[]*batch, bytes *int) *batch {
	b := (*q)[0]
	(*q)[0] = nil
	*q = (*q)[1:]
	*bytes -= b.bytes
	return b
}

// stillOpen reports whether a batch just taken may be committed: one the
// timeout loop failed while it was queued was answered "not stored"
// (harden #4), so it must not be, and its buffers go back to the pool.
func (o *Outbox) stillOpen(b *batch) bool {
	if b.state.Load() == batchOpen {
		return true
	}
	for _, buf := range b.recs {
		o.putBuf(buf)
	}
	return false
}
