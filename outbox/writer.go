package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The writer goroutine owns the bbolt write path. It takes the oldest batch
// of appended records and every waiting ack, writes them in one transaction
// and commits it: natural batching, since whatever arrived during a commit
// goes into the next one.

const (
	// ackDelay lets acks without appends gather for a moment, so an idle
	// node that drains a backlog does not fsync once per confirm.
	ackDelay = 5 * time.Millisecond
	// ackBatch is the count of waiting acks that commits without delay.
	ackBatch = 4096
	// maxAcksPerCommit bounds the extra work acks add to one commit, and so
	// the latency a drain adds to live appends: moving an ack costs ~2µs,
	// so 4096 keep a commit within ~10ms while still absorbing ~400k
	// acks/s.
	maxAcksPerCommit = 4096

	// gatherWait is how long, at most, a Sync-mode commit waits for the
	// appenders of the previous commit to come back. When a commit ends,
	// all its appenders wake at once; without the wait the writer would
	// take the next batch after only the first few returned, and batches
	// would settle well below the number of writers. The batch waits
	// until it holds as many records as were in flight when the last
	// commit ended (that commit's plus those queued meanwhile), or for
	// gatherWait. An fsync costs ~1ms, so the wait is cheap.
	gatherWait = 200 * time.Microsecond

	minWriteRetry = 100 * time.Millisecond
	maxWriteRetry = 5 * time.Second
)

// writerState is owned by the writer goroutine.
type writerState struct {
	arena     arena // keys and rewritten values of the current transaction
	acks      []uint64
	spans     []span // delivered spans as committed (delivered.go)
	lastPrune time.Time
	lastBatch int       // records in the previous commit
	lastEnd   time.Time // when the previous commit ended
	gather    int       // records in flight when it ended: the next batch's goal
	// defineAt is, per route id, the sequence from which the next record
	// naming it carries it (routes.go).
	defineAt map[uint32]uint64
}

// defineEvery is how often, in sequences, a record carries its route:
// about 20 KiB of clicks, for one route's ~60 bytes.
const defineEvery = 64

// routeDef is a route a commit's record carries, and when it is due next.
type routeDef struct {
	id uint32
	at uint64
}

// arena hands out byte slices that stay valid until reset. bbolt keeps the
// key and value slices given to Put until the commit, so they must never
// move: a full chunk is replaced, never grown.
type arena struct {
	cur []byte
}

const arenaChunk = 1 << 20

func (a *arena) alloc(n int) []byte {
	if cap(a.cur)-len(a.cur) < n {
		a.cur = make([]byte, 0, max(n, arenaChunk))
	}
	start := len(a.cur)
	a.cur = a.cur[:start+n]
	return a.cur[start : start+n : start+n]
}

// reset makes the arena reusable once no transaction refers to it. Only the
// last chunk is kept.
func (a *arena) reset() { a.cur = a.cur[:0] }

func (o *Outbox) writeLoop() {
	w := writerState{spans: o.spans, defineAt: map[uint32]uint64{}}
	o.spans = nil // the writer's from now on
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	prune := time.NewTicker(o.opts.PruneInterval)
	defer prune.Stop()
	// With the log, the writer goes on moving until the log goroutine has
	// logged (or committed through the writer) everything queued at Close.
	stop := o.closing
	if o.wal != nil {
		stop = o.logDone
	}
	for {
		select {
		case <-o.wake:
		case <-timer.C:
		case <-prune.C:
		case <-stop:
			o.drain(&w)
			// The spill dies with the process: one last try to keep it,
			// then count what is left (harden #3).
			for o.restoreSpill(&w, true) {
			}
			var cause error
			if e := o.lastErr.Load(); e != nil {
				cause = e.err
			}
			left := routeCounter{lost: true}
			for _, buf := range o.spill.clear() {
				left.add(o, buf)
			}
			o.lost(&left, "still in the memory spill at close; the file could not take them", cause)
			return
		}
		// Each pass sets the timer again if it has to wait: a timer left
		// from an earlier pass (an ack delay whose acks went with a later
		// commit) would run an unasked commit, and with Prune a second
		// prune step.
		timer.Stop()
		for {
			wait, more := o.commitNext(&w, false)
			if wait > 0 {
				timer.Reset(wait)
				break
			}
			// With the log, the log goroutine restores the spill (through
			// the writer), so that sequences stay in order.
			if !more && (o.wal != nil || !o.restoreSpill(&w, false)) {
				break
			}
		}
		if o.wal != nil && o.spill.remaining() > 0 {
			o.signal() // the log goroutine restores the spill
		}
	}
}

// restoreSpill moves spilled records back into the file, in one commit, as
// soon as the file takes writes again: not during a write back-off (unless
// final) and only as far as Options.MaxBytes leaves room. It reports
// whether it committed any. Records the forwarder has in flight stay in the
// spill (but at Close), so that none is published twice.
func (o *Outbox) restoreSpill(w *writerState, final bool) bool {
	seqs, b := o.spillBatch(final)
	if b == nil {
		return false
	}
	w.acks = w.acks[:0] // the last commit's, applied already
	err := o.commit(w, b, false)
	w.arena.reset()
	o.spill.settle(seqs, err == nil)
	if err == nil {
		o.log.Info("outbox: spilled records moved back into the file", "records", len(seqs))
	}
	return err == nil
}

// spillBatch takes spilled records for a commit that moves them back into
// the file, or returns nil when it is not the time (see restoreSpill).
func (o *Outbox) spillBatch(final bool) ([]uint64, *batch) {
	if o.spill.remaining() == 0 {
		return nil, nil
	}
	if !final && time.Now().UnixNano() < o.failedUntil.Load() {
		return nil, nil
	}
	maxBytes := o.opts.MaxBatchBytes
	if limit := o.opts.MaxBytes; limit > 0 {
		o.mu.Lock()
		room := limit - o.pendingBytes.Load() - int64(o.queuedBytes+o.movingBytes)
		o.mu.Unlock()
		if room <= 0 {
			return nil, nil
		}
		maxBytes = int(min(int64(maxBytes), room))
	}
	seqs, bufs := o.spill.take(o.opts.MaxBatchRecords, maxBytes, final)
	if len(seqs) == 0 {
		return nil, nil
	}
	b := &batch{created: time.Now().UnixNano(), done: make(chan struct{}), recs: make([]*[]byte, len(bufs))}
	for i := range bufs {
		b.recs[i] = &bufs[i]
		b.bytes += len(bufs[i])
	}
	return seqs, b
}

// drain commits everything still queued, for Close.
// A failed commit fails the whole queue, so this ends.
func (o *Outbox) drain(w *writerState) {
	for {
		if _, more := o.commitNext(w, true); !more {
			return
		}
	}
}

// commitNext commits the next batch and waiting acks. It returns how long to
// wait before there is something worth committing (Async delay, ack delay,
// write back-off), or whether more work is queued.
func (o *Outbox) commitNext(w *writerState, final bool) (wait time.Duration, more bool) {
	now := time.Now()
	if until := o.failedUntil.Load(); until > 0 && !final {
		if d := time.Duration(until - now.UnixNano()); d > 0 {
			return d, false
		}
	}

	o.mu.Lock()
	var b *batch
	var moving []*batch // with the log: the logged batches b merges
	// A prune step due by time or asked for (a batch may ask too, below).
	pruneTimer := now.Sub(w.lastPrune) >= o.opts.PruneInterval || o.pruneNow.Load()
	if o.wal != nil {
		if d := o.moveWait(now, final, pruneTimer); d > 0 {
			o.mu.Unlock()
			return d, false
		}
		b, moving = o.takeMove(now)
	} else if len(o.queue) > 0 {
		b = o.queue[0]
		if !final && len(b.recs) > 0 && len(b.recs) < o.opts.MaxBatchRecords && b.bytes < o.opts.MaxBatchBytes {
			var d time.Duration
			if o.opts.Durability == Async {
				d = time.Duration(b.created + int64(o.opts.FlushInterval) - now.UnixNano())
			} else if len(o.queue) == 1 && len(b.recs) < w.gather {
				d = gatherWait - now.Sub(w.lastEnd)
			}
			if d > 0 {
				o.mu.Unlock()
				return d, false
			}
		}
	}
	pruneDue := pruneTimer || b != nil && b.prune
	if b == nil && len(o.acks) > 0 && len(o.acks) < ackBatch && !final {
		if d := ackDelay - now.Sub(o.acksSince); d > 0 && !pruneDue {
			o.mu.Unlock()
			return d, false
		}
	}
	if b == nil && len(o.acks) == 0 && !pruneDue {
		o.mu.Unlock()
		return 0, false
	}
	if b != nil && o.wal == nil {
		popBatch(&o.queue, &o.queuedBytes)
		if !o.stillOpen(b) {
			b = nil
		} else {
			o.committing = b
			w.lastBatch = len(b.recs)
			o.lastBatch.Store(int64(len(b.recs)))
		}
	}
	if b == nil && len(o.acks) == 0 && !pruneDue {
		more = len(o.queue) > 0 || len(o.moveQ) > 0
		o.mu.Unlock()
		return 0, more
	}
	n := min(len(o.acks), maxAcksPerCommit)
	w.acks = append(w.acks[:0], o.acks[:n]...)
	o.acks = append(o.acks[:0], o.acks[n:]...)
	if len(o.acks) > 0 {
		o.acksSince = now
	}
	more = len(o.queue) > 0 || len(o.acks) > 0 || len(o.moveQ) > 0
	o.mu.Unlock()

	if pruneDue {
		w.lastPrune = now
		o.pruneNow.Store(false)
	}
	err := o.commit(w, b, pruneDue)
	w.arena.reset()
	w.lastEnd = time.Now()
	timedOut := errors.Is(err, errTimedOut)

	o.mu.Lock()
	if o.wal == nil {
		o.committing = nil // with the log, the log goroutine's
	}
	w.gather = w.lastBatch
	if b == nil || len(b.recs) == 0 {
		w.gather = 0
	} else if len(o.queue) > 0 {
		w.gather += len(o.queue[0].recs)
	}
	if err != nil && len(w.acks) > 0 {
		// Keep the acks for the next commit; losing them would only cause
		// duplicates, but keeping them is free.
		o.acks = append(o.acks, w.acks...)
		o.ackQueued -= uint64(n - len(w.acks)) // duplicates were compacted away
	} else {
		o.ackDone += uint64(n)
	}
	if moving != nil {
		o.movingNow = 0
		if err != nil {
			// Logged records are durable in the log: they wait for the
			// next try, after the back-off.
			o.moveQ = append(moving, o.moveQ...)
		} else {
			o.movingBytes -= b.bytes
		}
	}
	o.mu.Unlock()

	if moving != nil {
		if err == nil {
			o.ctr.moves.Add(1)
			now := time.Now().UnixNano()
			for _, m := range moving {
				o.ctr.moveLatency.observe(float64(now-m.logged) / 1e9)
				for _, buf := range m.recs {
					o.putBuf(buf)
				}
			}
		}
		select {
		case o.moved <- struct{}{}:
		default:
		}
		if err != nil && !timedOut {
			return 0, false
		}
		return 0, more || o.pruneNow.Load()
	}
	if b != nil {
		if err != nil && !timedOut && o.opts.Durability == Async {
			o.rescueBatch(b, err)
		} else {
			if err == nil && o.opts.Durability == Async {
				o.reportCommitted(b)
			}
			for _, buf := range b.recs {
				o.putBuf(buf)
			}
		}
		b.end(err)
		if b.handled != nil {
			close(b.handled)
		}
	}
	if timedOut {
		// Nothing was written; the acks wait for the next commit.
		return 0, true
	}
	if err != nil {
		if o.wal == nil {
			o.failQueue(err) // with the log, the log goroutine decides
		}
		return 0, false
	}
	// A prune step that hit its bound goes on in the next commit.
	return 0, more || o.pruneNow.Load()
}

// errTimedOut is returned by commit when the timeout loop failed the batch
// before the writer could claim it; the transaction was rolled back.
var errTimedOut = errors.New("outbox: batch timed out before its commit")

// failQueue fails every queued batch after a write error: they would meet
// the same disk.
func (o *Outbox) failQueue(err error) {
	o.mu.Lock()
	q := o.queue
	o.queue = nil
	o.queuedBytes = 0
	o.mu.Unlock()
	for _, b := range q {
		if o.opts.Durability == Async {
			o.rescueBatch(b, err)
		} else {
			for _, buf := range b.recs {
				o.putBuf(buf)
			}
		}
		b.fail(err)
	}
}

// commit writes one batch, acks and a bounded prune step in a single
// transaction. On failure nothing of it is applied. When the disk is full
// and delivered records are retained for replay, the oldest of them are
// evicted and the commit tried again, before any new record is refused
// (harden #6).
func (o *Outbox) commit(w *writerState, b *batch, prune bool) error {
	err := o.tryCommit(w, b, prune)
	// Eviction starts small, doubles after each step and halves after one
	// that did not fit: a transaction that deletes records still writes
	// the pages on their path, and on a full disk only the file's few free
	// pages can take them. A small step fits and frees more than it takes;
	// the next, twice as big, fits in what it freed. (Acks no longer churn
	// pages, see delivered.go, so a full file has few free pages.)
	step := 16
	for try := 0; err != nil && diskFull(err) && o.retainedCount.Load() > 0 && try < 16; try++ {
		w.arena.reset() // the failed transaction is rolled back
		n, eerr := o.evictOldest(w, step)
		if eerr != nil && diskFull(eerr) && step > 1 {
			step /= 2
			continue
		}
		if eerr != nil || n == 0 {
			o.log.Warn("outbox: disk full; nothing more could be evicted", "err", eerr)
			break
		}
		o.log.Warn("outbox: disk full; evicted the oldest delivered records kept for replay", "records", n)
		err = o.tryCommit(w, b, prune)
		step = min(2*step, 1<<20)
	}
	if err != nil && !errors.Is(err, errTimedOut) {
		return o.commitFailed(err)
	}
	return err
}

// diskFull reports whether err says the filesystem has no room. bbolt
// reports a failed file resize as text only.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), "no space left on device")
}

// evictOldest deletes up to n delivered records kept for replay, oldest
// first (a format-1 file's retained bucket, then the delivered spans in
// sequence order), in a transaction of their own, to make room on a full
// disk. Deleting needs no new space: the pages it rewrites come from the
// file's free pages.
func (o *Outbox) evictOldest(w *writerState, n int) (int, error) {
	tx, err := o.db.Begin(true)
	if err != nil {
		return 0, err
	}
	c := counts{
		nextSeq:       o.nextSeq.Load(),
		pendingCount:  o.pendingCount.Load(),
		pendingBytes:  o.pendingBytes.Load(),
		retainedCount: o.retainedCount.Load(),
		retainedBytes: o.retainedBytes.Load(),
	}
	retained := tx.Bucket(bucketRetained)
	all := func(int64) bool { return true }
	evicted, err := o.pruneRetained(retained, &c, n, all)
	spans := newSpanEdit(w.spans)
	if err == nil && evicted < n {
		var m int
		m, err = o.pruneSpans(spans, tx.Bucket(bucketPending), &c, w, n-evicted, all)
		evicted += m
	}
	if err == nil && spans.changed() {
		err = spans.write(tx.Bucket(bucketDelivered), w)
	}
	if err == nil {
		err = c.put(tx.Bucket(bucketMeta))
	}
	oldestR := oldestDelivery(retained, spans.spans)
	if err == nil {
		err = tx.Commit()
	} else {
		_ = tx.Rollback()
	}
	w.arena.reset()
	if err != nil {
		return 0, fmt.Errorf("outbox: evict for space: %w", err)
	}
	w.spans = spans.spans
	o.retainedCount.Store(c.retainedCount)
	o.retainedBytes.Store(c.retainedBytes)
	o.oldestRetained.Store(oldestR)
	o.ctr.evicted.Add(uint64(evicted))
	return evicted, nil
}

func (o *Outbox) tryCommit(w *writerState, b *batch, prune bool) (err error) {
	start := time.Now()
	now := o.opts.Now()
	tx, err := o.db.Begin(true)
	if err != nil {
		return fmt.Errorf("outbox: begin commit: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	meta := tx.Bucket(bucketMeta)
	pending := tx.Bucket(bucketPending)
	retained := tx.Bucket(bucketRetained)
	// Keys only grow, so full pages waste nothing.
	pending.FillPercent = 1.0
	retained.FillPercent = 1.0

	c := counts{
		nextSeq:       o.nextSeq.Load(),
		pendingCount:  o.pendingCount.Load(),
		pendingBytes:  o.pendingBytes.Load(),
		retainedCount: o.retainedCount.Load(),
		retainedBytes: o.retainedBytes.Load(),
	}
	nrec := 0
	if b != nil {
		nrec = len(b.recs)
	}
	skip, err := o.applyIndex(w, tx, b, now)
	if err != nil {
		return err
	}
	nrec -= len(skip)
	if b != nil && b.seq != 0 && b.seq != c.nextSeq {
		return fmt.Errorf("outbox: move logged records from seq %d, but the file's next is %d", b.seq, c.nextSeq)
	}
	// A route goes into the file with the first record that names it; if
	// this transaction does not commit, the next one that holds such a
	// record writes it.
	// Every defineEvery sequences, a record that names a route carries it
	// too (record.go): Salvage takes a route from any such record when
	// the routes bucket's page is lost.
	var newRoutes []uint32
	var defined []routeDef
	defer func() {
		if err != nil {
			for _, id := range newRoutes {
				delete(o.stored, id)
			}
		}
	}()
	if b != nil {
		for i, buf := range b.recs {
			if skip[i] {
				continue // its index change was refused (index.go)
			}
			v := *buf
			if id, _ := recordRouteID(v); id != 0 {
				if !o.stored[id] {
					if err := o.routes.put(tx.Bucket(bucketRoutes), id); err != nil {
						return fmt.Errorf("outbox: commit route: %w", err)
					}
					o.stored[id] = true
					newRoutes = append(newRoutes, id)
				}
				if c.nextSeq >= w.defineAt[id] && !slices.ContainsFunc(defined, func(d routeDef) bool { return d.id == id }) {
					defined = append(defined, routeDef{id, c.nextSeq + defineEvery})
					enc := o.routes.lookup(uint64(id)).enc
					v = defineRoute(w.arena.alloc(definedLen(v, id, enc))[:0], v, id, enc)
				}
			}
			k := w.key(c.nextSeq)
			if err := pending.Put(k, v); err != nil {
				return fmt.Errorf("outbox: commit batch: %w", err)
			}
			c.nextSeq++
			c.pendingCount++
			c.pendingBytes += int64(len(v))
		}
	}

	// Acks and pruning change the delivered spans; the edit is kept only
	// if the transaction commits.
	var spans *spanEdit
	edit := func() *spanEdit {
		if spans == nil {
			spans = newSpanEdit(w.spans)
		}
		return spans
	}
	if len(w.acks) > 0 {
		edit()
	}
	acked, unknown, err := o.applyAcks(w, spans, pending, &c, now)
	if err != nil {
		return err
	}
	if o.opts.Retention < 0 && acked > 0 {
		// Nothing is kept for replay: the records go in this commit, as
		// many as a prune step takes (the rest in the next ones).
		prune = true
	}

	var pruned, evicted int
	if prune && c.retainedCount > 0 {
		// A negative retention keeps nothing: delivered records another
		// process left (a replay tool, a node run with retention) go too.
		cutoff := now.Add(-max(o.opts.Retention, 0)).UnixNano()
		expired := func(delivered int64) bool { return delivered <= cutoff }
		pruned, err = o.pruneRetained(retained, &c, o.opts.PruneBatch, expired)
		if err == nil && pruned < o.opts.PruneBatch {
			var n int
			n, err = o.pruneSpans(edit(), pending, &c, w, o.opts.PruneBatch-pruned, expired)
			pruned += n
		}
		if err != nil {
			return err
		}
		if pruned == o.opts.PruneBatch {
			// More may have expired: go on in the next commit rather than
			// wait for the next interval (a negative retention, a backlog
			// confirmed at once).
			o.pruneNow.Store(true)
		}
	}
	if max := o.opts.MaxBytes; max > 0 && c.pendingBytes+c.retainedBytes > max {
		over := func(int64) bool { return c.pendingBytes+c.retainedBytes > max }
		evicted, err = o.pruneRetained(retained, &c, 4*o.opts.PruneBatch, over)
		if err == nil && evicted < 4*o.opts.PruneBatch {
			var n int
			n, err = o.pruneSpans(edit(), pending, &c, w, 4*o.opts.PruneBatch-evicted, over)
			evicted += n
		}
		if err != nil {
			return err
		}
	}
	if prune {
		if _, err := o.pruneIndex(tx, now, o.opts.PruneBatch); err != nil {
			return err
		}
	}
	if spans != nil && spans.changed() {
		if err := spans.write(tx.Bucket(bucketDelivered), w); err != nil {
			return fmt.Errorf("outbox: commit acks: %w", err)
		}
	}

	if hook := o.opts.beforeCommit; hook != nil {
		if err := hook(); err != nil {
			return fmt.Errorf("outbox: commit: %w", err)
		}
	}
	if err := c.put(meta); err != nil {
		return fmt.Errorf("outbox: commit counters: %w", err)
	}
	newSpans := w.spans
	if spans != nil {
		newSpans = spans.spans
	}
	oldestP := firstPendingTime(pending, newSpans)
	oldestR := oldestDelivery(retained, newSpans)
	if b != nil && !b.claim() {
		return errTimedOut
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: commit: %w", err)
	}
	if hook := o.opts.afterCommit; hook != nil {
		hook()
	}
	w.spans = newSpans
	for _, d := range defined {
		w.defineAt[d.id] = d.at
	}

	o.nextSeq.Store(c.nextSeq)
	o.pendingCount.Store(c.pendingCount)
	o.pendingBytes.Store(c.pendingBytes)
	o.retainedCount.Store(c.retainedCount)
	o.retainedBytes.Store(c.retainedBytes)
	o.oldestPending.Store(oldestP)
	o.oldestRetained.Store(oldestR)
	o.failedUntil.Store(0)
	o.ctr.retry.Store(0)

	d := time.Since(start)
	o.ctr.commits.Add(1)
	o.ctr.commitLatency.observe(d.Seconds())
	if nrec > 0 {
		o.ctr.appended.Add(uint64(nrec))
		o.ctr.batchSize.observe(float64(nrec))
		o.notifyReader()
	}
	o.ctr.acked.Add(uint64(acked))
	o.ctr.ackUnknown.Add(uint64(unknown))
	o.ctr.pruned.Add(uint64(pruned))
	o.ctr.evicted.Add(uint64(evicted))
	if pruned+evicted > 0 {
		o.ctr.pruneLatency.observe(d.Seconds())
	}
	return nil
}

// commitFailed records a write error and starts the back-off during which
// Appends fail fast.
func (o *Outbox) commitFailed(err error) error {
	o.ctr.commitErrors.Add(1)
	o.lastErr.Store(&errorAt{err: err, at: o.opts.Now()})
	o.log.Error("outbox write failed", "path", o.path, "err", err)

	d := time.Duration(o.ctr.retry.Load())
	d = min(max(2*d, minWriteRetry), maxWriteRetry)
	o.ctr.retry.Store(int64(d))
	o.failedUntil.Store(time.Now().Add(d).UnixNano())
	return fmt.Errorf("%w: %w", ErrWrite, err)
}

// applyAcks marks acknowledged records delivered by adding their sequences
// to the delivered spans (delivered.go). A record is neither moved nor
// rewritten: per commit, the acks cost a lookup of each record's size in
// pages the forwarder has just read, and the write of the one or few span
// values they extend.
func (o *Outbox) applyAcks(w *writerState, spans *spanEdit, pending *bolt.Bucket, c *counts, now time.Time) (acked, unknown int, err error) {
	if len(w.acks) == 0 {
		return 0, 0, nil
	}
	slices.Sort(w.acks)
	w.acks = slices.Compact(w.acks)
	window := spanWindow(o.opts.Retention)
	at := now.UnixNano()
	var runFirst, runLast uint64
	var runBytes int64
	flush := func() {
		if runFirst != 0 {
			spans.add(runFirst, runLast, runBytes, at, window)
			runFirst = 0
		}
	}
	for _, seq := range w.acks {
		if spanIndex(spans.spans, seq) >= 0 {
			unknown++ // delivered already
			continue
		}
		v := pending.Get(w.key(seq))
		if v == nil {
			unknown++
			continue
		}
		n := int64(len(v))
		if runFirst != 0 && seq == runLast+1 {
			runLast, runBytes = seq, runBytes+n
		} else {
			flush()
			runFirst, runLast, runBytes = seq, seq, n
		}
		c.pendingCount--
		c.pendingBytes -= n
		c.retainedCount++
		c.retainedBytes += n
		acked++
	}
	flush()
	return acked, unknown, nil
}

// pruneRetained deletes up to limit delivered records from the oldest end
// while expired reports true for the record's delivery time. Records are
// visited in sequence order, which is delivery order but for records that
// were retried; those are kept longer, never shorter, than the retention.
func (o *Outbox) pruneRetained(retained *bolt.Bucket, c *counts, limit int, expired func(delivered int64) bool) (int, error) {
	n := 0
	cur := retained.Cursor()
	for n < limit {
		k, v := cur.First()
		if k == nil {
			break
		}
		var delivered int64
		if checkRecord(v) == nil {
			_, delivered = recordTimes(v)
		}
		if !expired(delivered) {
			break
		}
		size := int64(len(v))
		if err := cur.Delete(); err != nil {
			return n, fmt.Errorf("outbox: prune: %w", err)
		}
		c.retainedCount--
		c.retainedBytes -= size
		n++
	}
	return n, nil
}

// key returns seq as a key in the writer's arena.
func (w *writerState) key(seq uint64) []byte {
	k := w.arena.alloc(8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// counts mirrors the meta bucket.
type counts struct {
	nextSeq       uint64
	pendingCount  int64
	pendingBytes  int64
	retainedCount int64
	retainedBytes int64
}

func (c *counts) put(m *bolt.Bucket) error {
	return errors.Join(
		putUint64(m, metaNextSeq, c.nextSeq),
		putUint64(m, metaPendingCount, uint64(c.pendingCount)),
		putUint64(m, metaPendingBytes, uint64(c.pendingBytes)),
		putUint64(m, metaRetainedCount, uint64(c.retainedCount)),
		putUint64(m, metaRetainedBytes, uint64(c.retainedBytes)),
	)
}

// timeoutLoop fails Sync-mode appends whose commit has not reached its
// commit point within Options.CommitTimeout, so that a slow disk never
// hangs a request. A batch it fails is never committed (the writer rolls
// it back), so the caller may keep the record elsewhere without making a
// duplicate. A batch the writer already claimed is left to its commit.
func (o *Outbox) timeoutLoop() {
	t := time.NewTicker(max(o.opts.CommitTimeout/8, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-o.closing:
			return
		case <-t.C:
		}
		deadline := time.Now().Add(-o.opts.CommitTimeout).UnixNano()
		// Under o.mu, so that no Append joins a batch once it failed: a
		// failed batch leaves the queue at once.
		o.mu.Lock()
		if b := o.committing; b != nil && b.created < deadline && b.fail(ErrTimeout) {
			o.ctr.timeouts.Add(uint64(len(b.recs)))
		}
		n := 0
		for _, b := range o.queue {
			if b.created >= deadline {
				break
			}
			if b.fail(ErrTimeout) {
				o.ctr.timeouts.Add(uint64(len(b.recs)))
			}
			o.queuedBytes -= b.bytes
			for _, buf := range b.recs {
				o.putBuf(buf)
			}
			n++
		}
		if n > 0 {
			o.queue = append(o.queue[:0], o.queue[n:]...)
		}
		o.mu.Unlock()
	}
}
