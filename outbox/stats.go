package outbox

import (
	"math"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the outbox, cheap enough for every metrics scrape.
type Stats struct {
	Path       string
	Durability string
	FileSize   int64 // bytes on disk

	Pending        int64     // committed records not yet delivered
	PendingBytes   int64     // their encoded size
	OldestPending  time.Time // append time of the oldest pending record; zero when none
	Retained       int64     // delivered records kept for replay
	RetainedBytes  int64
	OldestRetained time.Time // delivery time of the oldest retained record
	NextSeq        uint64

	Queued      int // records accepted, waiting for their commit
	QueuedBytes int

	Appended     uint64 // records committed since Open
	Acked        uint64 // records moved to delivered since Open
	AckUnknown   uint64 // acks for records that were not pending
	Pruned       uint64 // retained records deleted after their retention
	Evicted      uint64 // retained records deleted early to stay under MaxBytes
	Commits      uint64
	CommitErrors uint64
	Full         uint64 // Appends refused with ErrFull
	Overloaded   uint64 // Appends refused with ErrOverloaded
	Timeouts     uint64 // Appends that returned ErrTimeout
	Rescued      uint64 // Async records of failed commits moved to the spill

	LastError   string // the last write error, "" when none
	LastErrorAt time.Time
	Failing     bool // in the back-off after a write error

	Spill SpillStats

	// With the log (Options.Log): records logged since Open, logged and
	// not yet moved into the tree (counted in Queued too), moved from the
	// log by Open, batches refused because the log was full while the
	// tree took no writes, and commits (counted in Commits too) that moved
	// logged records into the tree. LogWaits counts the times the logger
	// found no room and waited for the writer to move everything logged
	// (answers wait meanwhile); LogRestarts the times the log started over
	// from its beginning (a new generation).
	Logged      uint64
	Moving      int
	LogReplayed int
	LogFull     uint64
	Moves       uint64
	LogWaits    uint64
	LogRestarts uint64

	BatchSize     Histogram // records per commit
	CommitLatency Histogram // seconds from begin to fsynced commit
	PruneLatency  Histogram // seconds, for commits that pruned or evicted
	LogLatency    Histogram // seconds to log a batch: its write and fdatasync
	MoveLatency   Histogram // seconds from a batch's fdatasync in the log to its commit in the tree
}

// OldestPendingAge is how long the oldest pending record has waited, or 0.
func (s *Stats) OldestPendingAge(now time.Time) time.Duration {
	if s.OldestPending.IsZero() {
		return 0
	}
	return now.Sub(s.OldestPending)
}

// SpillStats describes the memory spill.
type SpillStats struct {
	Records   int    // held now
	Bytes     int    // held now
	Limit     int    // Options.SpillBytes; <= 0 when disabled
	Spilled   uint64 // records taken since Open
	Delivered uint64 // records acked by the forwarder
	Restored  uint64 // records moved back into the file once it took writes again
	Dropped   uint64 // records lost: refused by a full spill, or accepted and then neither stored nor spilled (Options.OnLost)
}

// Stats returns a snapshot. It does not touch the write path.
func (o *Outbox) Stats() Stats {
	s := Stats{
		Path:          o.path,
		Durability:    o.opts.Durability.String(),
		Pending:       o.pendingCount.Load(),
		PendingBytes:  o.pendingBytes.Load(),
		Retained:      o.retainedCount.Load(),
		RetainedBytes: o.retainedBytes.Load(),
		NextSeq:       o.nextSeq.Load(),
		Appended:      o.ctr.appended.Load(),
		Acked:         o.ctr.acked.Load(),
		AckUnknown:    o.ctr.ackUnknown.Load(),
		Pruned:        o.ctr.pruned.Load(),
		Evicted:       o.ctr.evicted.Load(),
		Commits:       o.ctr.commits.Load(),
		CommitErrors:  o.ctr.commitErrors.Load(),
		Full:          o.ctr.full.Load(),
		Overloaded:    o.ctr.overloaded.Load(),
		Timeouts:      o.ctr.timeouts.Load(),
		Rescued:       o.ctr.rescued.Load(),
		Failing:       max(o.failedUntil.Load(), o.logFailedUntil.Load()) > time.Now().UnixNano(),
		Spill:         o.spill.stats(),
		BatchSize:     o.ctr.batchSize.snapshot(),
		CommitLatency: o.ctr.commitLatency.snapshot(),
		PruneLatency:  o.ctr.pruneLatency.snapshot(),
		LogLatency:    o.ctr.logLatency.snapshot(),
		MoveLatency:   o.ctr.moveLatency.snapshot(),
		Logged:        o.ctr.logged.Load(),
		LogFull:       o.ctr.logFull.Load(),
		Moves:         o.ctr.moves.Load(),
		LogWaits:      o.ctr.logWaits.Load(),
		LogRestarts:   o.ctr.logRestarts.Load(),
		LogReplayed:   o.replayed,
	}
	s.OldestPending = fromUnixNano(o.oldestPending.Load())
	s.OldestRetained = fromUnixNano(o.oldestRetained.Load())
	if e := o.lastErr.Load(); e != nil {
		s.LastError = e.err.Error()
		s.LastErrorAt = e.at
	}
	o.mu.Lock()
	for _, b := range o.queue {
		s.Queued += len(b.recs)
	}
	s.Moving = o.movingNow
	for _, b := range o.moveQ {
		if b.seq != 0 {
			s.Moving += len(b.recs)
		}
	}
	s.Queued += s.Moving
	s.QueuedBytes = o.queuedBytes + o.movingBytes
	o.mu.Unlock()
	if fi, err := os.Stat(o.path); err == nil {
		s.FileSize = fi.Size()
	}
	return s
}

type counters struct {
	appended, acked, ackUnknown, pruned, evicted atomic.Uint64
	commits, commitErrors                        atomic.Uint64
	full, overloaded, timeouts, rescued          atomic.Uint64
	retry                                        atomic.Int64 // current write back-off, ns
	logged, logFull, moves                       atomic.Uint64
	logWaits, logRestarts                        atomic.Uint64

	batchSize     *histogram
	commitLatency *histogram
	pruneLatency  *histogram
	logLatency    *histogram
	moveLatency   *histogram
}

func newCounters() counters {
	return counters{
		batchSize:     newHistogram(ExponentialBuckets(1, 2, 17)), // 1 .. 65536
		commitLatency: newHistogram(LatencyBuckets),
		pruneLatency:  newHistogram(LatencyBuckets),
		logLatency:    newHistogram(LatencyBuckets),
		moveLatency:   newHistogram(LatencyBuckets),
	}
}

// LatencyBuckets are the bounds, in seconds, of latency histograms: 50µs to
// about 10s in steps of √2.
var LatencyBuckets = ExponentialBuckets(50e-6, math.Sqrt2, 36)

// Histogram is a snapshot of a bucketed distribution: Counts[i]
// observations were <= Bounds[i] and > Bounds[i-1]; the last count is for
// observations above the last bound. It maps onto a Prometheus histogram.
type Histogram struct {
	Bounds []float64
	Counts []uint64 // len(Bounds)+1
	Count  uint64
	Sum    float64
}

// Quantile estimates the q-quantile (0..1) as the upper bound of the bucket
// that holds it.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.Count)))
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank && i < len(h.Bounds) {
			return h.Bounds[i]
		}
	}
	return math.Inf(1)
}

// ExponentialBuckets returns n bounds starting at start, each factor times
// the previous.
func ExponentialBuckets(start, factor float64, n int) []float64 {
	b := make([]float64, n)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

// histogram is a fixed-bucket histogram, safe for concurrent use.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{Bounds: h.bounds, Counts: make([]uint64, len(h.counts))}
	for i := range s.Counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Count = h.count.Load()
	s.Sum = math.Float64frombits(h.sum.Load())
	return s
}
