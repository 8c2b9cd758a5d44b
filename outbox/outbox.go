package outbox

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors returned by the outbox. Append and Spill return them wrapped, so
// test with errors.Is.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("outbox: closed")

	// ErrFull is returned by Append when pending records (committed and
	// queued) would exceed Options.MaxBytes. The record was not stored.
	ErrFull = errors.New("outbox: size limit reached")

	// ErrWrite is returned by Append when the commit that held the record
	// failed (ENOSPC, EIO, ...), and by every Append during the back-off that
	// follows such a failure. The record was not stored. The underlying
	// error is wrapped too.
	ErrWrite = errors.New("outbox: write failed")

	// ErrTimeout is returned by Append in Sync mode when the commit holding
	// the record did not reach its commit point within
	// Options.CommitTimeout. The record was not stored: the writer rolls
	// such a batch back, so a caller that keeps a copy elsewhere (the
	// spill) makes no duplicate.
	ErrTimeout = errors.New("outbox: commit timed out")

	// ErrOverloaded is returned by Append when more than
	// Options.MaxQueueBytes of records wait for their commit: the disk does
	// not keep up. The record was not stored.
	ErrOverloaded = errors.New("outbox: write queue full")

	// ErrSpillFull is returned by Spill when the memory spill holds
	// Options.SpillBytes already, or the spill is disabled. The record is
	// lost and counted in Stats.SpillDropped.
	ErrSpillFull = errors.New("outbox: spill full")

	// ErrCorrupt is returned by Open, and by reads, when the file is
	// damaged. Nothing is repaired or skipped silently: see the error text
	// for what to do.
	ErrCorrupt = errors.New("outbox: file is damaged")

	// ErrLocked is returned by Open when another process holds the file
	// for longer than Options.LockTimeout.
	ErrLocked = errors.New("outbox: file is locked by another process")
)

// Durability selects when Append returns.
type Durability int

const (
	// Sync: Append returns after the commit holding the record is fsynced.
	Sync Durability = iota
	// Async: Append returns at once; the record is committed within
	// Options.FlushInterval plus one commit.
	Async
)

func (d Durability) String() string {
	switch d {
	case Sync:
		return "sync"
	case Async:
		return "async"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// ParseDurability parses "sync" or "async".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "sync":
		return Sync, nil
	case "async":
		return Async, nil
	}
	return 0, fmt.Errorf("unknown durability %q (want sync or async)", s)
}

// Defaults for zero Options fields.
const (
	DefaultFlushInterval   = 10 * time.Millisecond
	DefaultMaxBatchRecords = 8192
	DefaultMaxBatchBytes   = 8 << 20
	DefaultMaxQueueBytes   = 64 << 20
	DefaultMaxRecordBytes  = 1 << 20
	DefaultRetention       = 24 * time.Hour
	DefaultPruneInterval   = time.Second
	DefaultPruneBatch      = 1000
	DefaultCommitTimeout   = 5 * time.Second
	DefaultSpillBytes      = 32 << 20
	DefaultLockTimeout     = time.Second
	DefaultMoveDelay       = 10 * time.Millisecond
)

// Options configures an Outbox. A nil *Options means all defaults; every
// zero field means its default.
type Options struct {
	// Durability is Sync (the zero value) or Async.
	Durability Durability

	// FlushInterval is, in Async mode, the longest a record waits in memory
	// before its commit starts: the loss window on a crash is FlushInterval
	// plus one commit. Zero means DefaultFlushInterval. Ignored in Sync mode,
	// where a commit starts as soon as the previous one ends.
	FlushInterval time.Duration

	// MaxBatchRecords and MaxBatchBytes cap one commit. Zero means
	// DefaultMaxBatchRecords and DefaultMaxBatchBytes.
	MaxBatchRecords int
	MaxBatchBytes   int

	// MaxQueueBytes bounds the records accepted but not yet committed;
	// beyond it Append returns ErrOverloaded. Zero means DefaultMaxQueueBytes.
	MaxQueueBytes int

	// MaxBytes caps the encoded bytes of records held on disk. Delivered
	// records are evicted, oldest first, to stay under it; when pending
	// records alone reach it, Append returns ErrFull. The file is larger
	// than this by the B-tree's overhead (see docs/performance.md). Zero
	// means no limit but the disk.
	MaxBytes int64

	// MaxRecordBytes caps one encoded record. Zero means DefaultMaxRecordBytes.
	MaxRecordBytes int

	// Retention is how long delivered records are kept for replay, counted
	// from their delivery. Zero means DefaultRetention; negative means
	// delivered records are deleted at once.
	Retention time.Duration

	// PruneInterval is how often expired delivered records are deleted, and
	// PruneBatch how many at most in one commit, which bounds the extra
	// latency pruning adds to a commit. Zero means DefaultPruneInterval and
	// DefaultPruneBatch.
	PruneInterval time.Duration
	PruneBatch    int

	// CommitTimeout bounds how long a Sync-mode Append waits for its commit
	// before it returns ErrTimeout. Zero means DefaultCommitTimeout.
	CommitTimeout time.Duration

	// SpillBytes bounds the memory spill (see Spill). Zero means
	// DefaultSpillBytes; negative disables the spill.
	SpillBytes int

	// LockTimeout is how long Open waits for another process to release
	// the file. Zero means DefaultLockTimeout.
	LockTimeout time.Duration

	// SkipVerify skips the full check of the file that Open does by
	// default (every page and every record checksum; see Verify). Open is
	// then O(1) in the file size, but damage is found only when a record is
	// read. The zero value verifies.
	SkipVerify bool

	// Log puts a log before the tree (wal.go) in Sync mode: a batch of
	// appends is answered after one write and one fdatasync of a
	// preallocated file next to the bbolt file (<path>.log), and moved into
	// bbolt by the writer afterwards, many batches per commit. False keeps
	// one bbolt commit (two fdatasyncs) per batch. Ignored in Async mode.
	// Whatever the setting, Open first moves records a log left into the
	// file.
	Log bool

	// LogBytes is the size of the log file, allocated and zero-filled when
	// it is created. Zero means DefaultLogBytes.
	LogBytes int64

	// MoveDelay is, with the log, how long at most the writer lets logged
	// batches gather before it moves them into the tree in one commit,
	// while they hold fewer than 256 records: at a low rate one bbolt
	// commit then moves many batches instead of one each. Readers (the
	// forwarder) see a record once it is moved, so this adds up to
	// MoveDelay to a record's way to the broker, never to an Append (see
	// Stats.MoveLatency). Zero means DefaultMoveDelay; negative moves at
	// once.
	MoveDelay time.Duration

	// ReadOnly opens the file without taking the write lock exclusively and
	// without a writer: Append, Ack and Spill return ErrClosed. For tools.
	ReadOnly bool

	// Logger receives rare events (write errors, recovery). Nil discards.
	Logger *slog.Logger

	// OnLost, when set, is told of records that were accepted and are now
	// lost: in Async mode, records of a failed commit that the spill could
	// not take (harden #2); at Close, records still in the spill that the
	// file could not take back (harden #3). Like OnAsyncFate it is called
	// once per run of records of one route: n records of the route in r
	// (Exchange, RoutingKey and Headers set, nothing else; all empty for a
	// record whose route cannot be read; r and its Headers must not be
	// modified or kept). One outbox holds several kinds of record (clicks,
	// the postback role's actions, a peer's records taken over in a
	// hand-off), told apart by exchange: the route lets the caller count
	// each loss under its own kind. Each lost record is reported once; all
	// are counted in Stats.Spill.Dropped and logged (with a count per
	// exchange) too. Records that Spill refuses are not reported here:
	// Spill's caller gets ErrSpillFull. It is called from the writer
	// goroutine and from Close, must be thread-safe and must not block or
	// call back into the Outbox.
	OnLost func(r *Record, n int)

	// OnAsyncFate, when set, is told what became of records whose Append
	// returned before their commit (Async mode; never called in Sync
	// mode, nor for AppendIndexed and AppendDurable, whose callers wait):
	// n records of the route in r (Exchange, RoutingKey and Headers set,
	// nothing else; r and its Headers must not be modified or kept) were
	// committed (FateCommitted) or, after a failed commit, moved to the
	// spill (FateSpilled). Those the spill cannot take go to OnLost.
	// Together, each such record is reported once. Records of every kind
	// that Append took pass through it: a caller counting one kind filters
	// by route. Called from the writer goroutine; must be thread-safe and
	// must not block or call back into the Outbox.
	OnAsyncFate func(r *Record, f Fate, n int)

	// Now returns the current time. Nil means time.Now. Tests use it to
	// drive retention without sleeping.
	Now func() time.Time

	// Freelist settings, chosen by measurement (BenchmarkBacklog,
	// docs/performance.md): the hashmap freelist, not written to disk.
	// With a synced freelist every commit rewrites it, and after a drain of
	// 5M records that made commits 30x slower (p99 25.6ms vs 0.8ms); not
	// syncing it costs a page walk at open, which Open's verification does
	// anyway. Tests and benchmarks override these.
	freelistType   bolt.FreelistType
	noFreelistSync *bool

	// beforeCommit, when set, runs in the writer before each commit; an
	// error fails the commit. Tests inject slow and failing disks with it.
	beforeCommit func() error
	// beforeLog is the same for each write to the log.
	beforeLog func() error
	// afterCommit runs in the writer after each commit of its batches,
	// moves and acks, before the rest of the outbox sees the commit.
	afterCommit func()
	// logTrace sees every write to the log and every fdatasync of it.
	logTrace logTracer
}

// testLog makes Options.Log the default, for running the package's tests
// with the log (export_test.go).
var testLog bool

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.FlushInterval <= 0 {
		r.FlushInterval = DefaultFlushInterval
	}
	if r.MaxBatchRecords <= 0 {
		r.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if r.MaxBatchBytes <= 0 {
		r.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if r.MaxQueueBytes <= 0 {
		r.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if r.MaxRecordBytes <= 0 {
		r.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if r.Retention == 0 {
		r.Retention = DefaultRetention
	}
	if r.PruneInterval <= 0 {
		r.PruneInterval = DefaultPruneInterval
	}
	if r.PruneBatch <= 0 {
		r.PruneBatch = DefaultPruneBatch
	}
	if r.CommitTimeout <= 0 {
		r.CommitTimeout = DefaultCommitTimeout
	}
	if r.SpillBytes == 0 {
		r.SpillBytes = DefaultSpillBytes
	}
	if testLog {
		r.Log = true
	}
	if r.LogBytes <= 0 {
		r.LogBytes = DefaultLogBytes
	}
	r.LogBytes = max(r.LogBytes, minLogBytes)
	if r.MoveDelay == 0 {
		r.MoveDelay = DefaultMoveDelay
	}
	if r.LockTimeout <= 0 {
		r.LockTimeout = DefaultLockTimeout
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.freelistType == "" {
		r.freelistType = bolt.FreelistMapType
	}
	if r.noFreelistSync == nil {
		t := true
		r.noFreelistSync = &t
	}
	return r
}

// Bucket names. The file holds nothing else but the index (index.go).
var (
	bucketMeta     = []byte("meta")
	bucketPending  = []byte("pending")
	bucketRetained = []byte("retained")
)

// Keys in the meta bucket: 8-byte big-endian counters, updated in every
// commit so that they always match the committed records.
var (
	metaFormat        = []byte("format")
	metaNextSeq       = []byte("next_seq")
	metaPendingCount  = []byte("pending_count")
	metaPendingBytes  = []byte("pending_bytes")
	metaRetainedCount = []byte("retained_count")
	metaRetainedBytes = []byte("retained_bytes")
)

// fileFormat 3 stores each route once, in the routes bucket, and writes
// version-3 records that name it (routes.go, record.go). Format 2 keeps
// delivered records in place, named by the spans of the delivered bucket
// (delivered.go); format 1 moved each one to the retained bucket. An older
// file is upgraded when opened for writing (its records stay as they are,
// and are read as before); a build that reads only older formats refuses a
// newer file rather than misread it.
const (
	fileFormat       = 3
	oldestFileFormat = 1
)

// formatKnown reports whether this build reads file format f.
func formatKnown(f uint64) bool { return f >= oldestFileFormat && f <= fileFormat }

// Outbox is a durable queue of records in one bbolt file. It is safe for
// concurrent use: any number of goroutines may Append and Spill; one
// reader (the forwarder) reads and acknowledges.
type Outbox struct {
	path string
	opts Options
	db   *bolt.DB
	log  *slog.Logger

	mu          sync.Mutex
	queue       []*batch // uncommitted, oldest first; the last one takes appends
	queuedBytes int
	committing  *batch   // taken by the writer, commit in progress
	acks        []uint64 // acknowledged seqs waiting for a commit
	acksSince   time.Time
	ackQueued   uint64 // acks ever queued
	ackDone     uint64 // acks ever taken into a successful commit
	closed      bool

	// With the log (Options.Log): batches the log goroutine took from
	// queue, oldest first, for the writer: logged ones (seq set, already
	// answered) and ones the writer commits directly (seq 0: indexed
	// appends, Sync's empty batches, the spill).
	moveQ       []*batch
	movingBytes int
	movingNow   int           // records of the move the writer is committing
	wal         *walWriter    // owned by the log goroutine
	logWake     chan struct{} // cap 1: there is work for the log goroutine
	moved       chan struct{} // cap 1: the writer committed a move
	logSize     int64         // the log file's size
	logOff      atomic.Int64  // where the log's next frame goes, for the writer's moveWait
	logWaiting  atomic.Bool   // the log goroutine waits for room (logBatch)
	logDone     chan struct{} // closed when the log goroutine has ended
	logRotate   bool          // the log's first frame opens a new generation (logState.rotate)
	replayed    int           // records moved from the log by Open

	wake    chan struct{} // cap 1: there is work for the writer
	notify  chan struct{} // cap 1: new records for the reader
	closing chan struct{}
	wg      sync.WaitGroup

	// bufs recycles encode buffers. A bounded channel rather than a
	// sync.Pool: a pool is emptied by every GC, and at 30k appends/s that
	// made one encode in five allocate.
	bufs chan *[]byte

	// Committed state, written by the writer after each commit.
	pendingCount   atomic.Int64
	pendingBytes   atomic.Int64
	retainedCount  atomic.Int64
	retainedBytes  atomic.Int64
	nextSeq        atomic.Uint64
	oldestPending  atomic.Int64 // unix nanos, 0 when none
	oldestRetained atomic.Int64
	failedUntil    atomic.Int64 // unix nanos, wall clock; Appends fail fast before it
	logFailedUntil atomic.Int64 // the same for the log (Options.Log)
	pruneNow       atomic.Bool
	lastBatch      atomic.Int64 // records in the last commit, to size new batches
	lastErr        atomic.Pointer[errorAt]

	spill spill
	ctr   counters

	// spans are the delivered spans as of the last commit (delivered.go):
	// set by load, then owned by the writer.
	spans []span

	// routes is the route table (routes.go): loaded at open, grown by
	// encoders. stored holds the ids already in the file: set by load,
	// then owned by the writer.
	routes *routeTable
	stored map[uint32]bool

	closeOnce sync.Once
	closeErr  error
}

type errorAt struct {
	err error
	at  time.Time
}

// batch is a group of records committed together. Appenders waiting for it
// block on done; err is set before done is closed.
//
// A batch's fate has one owner (harden #4): either the timeout loop fails
// it while it is still queued or being prepared (fail), and the writer then
// rolls its transaction back; or the writer claims it just before the
// commit point (claim), and its appenders learn the commit's outcome,
// however long the disk takes. So ErrTimeout always means "not stored".
type batch struct {
	recs    []*[]byte
	bytes   int
	created int64 // unix nanos, wall clock (not Options.Now)
	done    chan struct{}
	state   atomic.Uint32
	err     error
	index   []*indexOp    // conditional index changes of some records (index.go)
	seq     uint64        // with the log: the first record's sequence, once logged
	logged  int64         // unix nanos when logged
	handled chan struct{} // with the log, for a batch the writer commits directly: closed once it is past it
	prune   bool          // run a retention step in this batch's commit (Prune)
}

const (
	batchOpen    uint32 = iota // queued or being prepared
	batchDone                  // done is closed
	batchClaimed               // the writer passed the commit point
)

// fail ends an open batch with err. It reports false when the writer had
// claimed the batch or it had ended already.
func (b *batch) fail(err error) bool {
	if !b.state.CompareAndSwap(batchOpen, batchDone) {
		return false
	}
	b.err = err
	close(b.done)
	return true
}

// claim makes the writer the batch's owner; false means it was failed
// (timed out) first and must not be committed.
// A commit tried again after an eviction claims its batch a second time.
func (b *batch) claim() bool {
	return b.state.CompareAndSwap(batchOpen, batchClaimed) || b.state.Load() == batchClaimed
}

// end ends the batch with its commit's outcome. Only the writer calls it.
func (b *batch) end(err error) {
	if b.state.Load() == batchClaimed {
		b.err = err
		b.state.Store(batchDone)
		close(b.done)
		return
	}
	b.fail(err)
}

// Open opens or creates the outbox file at path. The file is checked before
// use (see Options.SkipVerify); a damaged file makes Open fail with an error
// wrapping ErrCorrupt that says what to do.
func Open(path string, opts *Options) (*Outbox, error) {
	o := &Outbox{
		path:    path,
		opts:    opts.withDefaults(),
		wake:    make(chan struct{}, 1),
		notify:  make(chan struct{}, 1),
		closing: make(chan struct{}),
		ctr:     newCounters(),
		bufs:    make(chan *[]byte, 4096),
		routes:  newRouteTable(),
		stored:  map[uint32]bool{},
	}
	o.log = o.opts.Logger
	o.spill.max = o.opts.SpillBytes

	db, err := openBolt(path, &o.opts)
	if err != nil {
		return nil, err
	}
	o.db = db
	if err := o.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if !o.opts.ReadOnly && o.opts.Log && o.opts.Durability == Sync {
		wal, scan, err := openWAL(path, o.opts.LogBytes)
		switch {
		case err != nil && diskFull(err):
			// The tree alone still keeps every promise, one bbolt commit
			// per batch.
			o.log.Warn("outbox: no room to create the log; committing to the file directly", "err", err)
		case err != nil:
			_ = db.Close()
			return nil, err
		default:
			o.wal = wal
			wal.trace = o.opts.logTrace
			o.logRotate = len(scan.after) > 0
			o.logSize = wal.size
			o.logOff.Store(wal.off)
			o.logWake = make(chan struct{}, 1)
			o.moved = make(chan struct{}, 1)
			o.logDone = make(chan struct{})
			o.wg.Add(1)
			go func() { defer o.wg.Done(); o.logLoop() }()
		}
	}
	if !o.opts.ReadOnly {
		o.wg.Add(1)
		go func() { defer o.wg.Done(); o.writeLoop() }()
		if o.opts.Durability == Sync {
			// In Async mode nobody waits for a commit: nothing to time out.
			o.wg.Add(1)
			go func() { defer o.wg.Done(); o.timeoutLoop() }()
		}
	}
	return o, nil
}

// openBolt opens the bbolt file. The file is locked and verified inside
// bbolt's OpenFile hook, before bbolt reads a byte of it: bbolt trusts its
// pages and may panic, even on another goroutine, on a damaged file.
func openBolt(path string, opts *Options) (*bolt.DB, error) {
	bopts := &bolt.Options{
		Timeout:         opts.LockTimeout,
		FreelistType:    opts.freelistType,
		NoFreelistSync:  *opts.noFreelistSync,
		ReadOnly:        opts.ReadOnly,
		InitialMmapSize: 256 << 20,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			if err != nil {
				return nil, err
			}
			if err := lockFile(f, !opts.ReadOnly, opts.LockTimeout); err != nil {
				f.Close()
				return nil, fmt.Errorf("%w: %s (is a clickedge node running on this data directory?)", ErrLocked, name)
			}
			if !opts.SkipVerify {
				if _, err := verifyFile(f); err != nil {
					f.Close()
					return nil, err
				}
			}
			return f, nil
		},
	}
	db, err := bolt.Open(path, 0o600, bopts)
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, ErrLocked), errors.Is(err, ErrCorrupt):
		return nil, err
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (is a clickedge node running on this data directory?)", ErrLocked, path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, corruptError(path, err)
	}
	return nil, fmt.Errorf("outbox: open %s: %w", path, err)
}

// corruptError explains a damaged file and what to do about it.
func corruptError(path string, cause error) error {
	return fmt.Errorf("%w: %s: %v; the node will not start on it. Stop, keep a copy of the file, "+
		"then run `clickedge outbox salvage -data DIR -out NEWDIR` to copy every readable record into a "+
		"fresh outbox, and start the node on NEWDIR (docs/runbook.md)", ErrCorrupt, path, cause)
}

// load creates the buckets of a new file and reads the counters of an
// existing one.
func (o *Outbox) load() error {
	init := func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m != nil && m.Get(metaFormat) != nil && !formatKnown(getUint64(m, metaFormat)) {
			return nil // refused below, untouched
		}
		for _, name := range [][]byte{bucketMeta, bucketPending, bucketRetained, bucketDelivered, bucketRoutes} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := createIndexBuckets(tx); err != nil {
			return err
		}
		m = tx.Bucket(bucketMeta)
		if m.Get(metaFormat) == nil {
			if err := putUint64(m, metaFormat, fileFormat); err != nil {
				return err
			}
			return putUint64(m, metaNextSeq, 1)
		}
		if getUint64(m, metaFormat) != fileFormat {
			return putUint64(m, metaFormat, fileFormat) // format 1 or 2: upgraded
		}
		return nil
	}
	if !o.opts.ReadOnly {
		if err := o.db.Update(init); err != nil {
			return fmt.Errorf("outbox: initialise %s: %w", o.path, err)
		}
		if err := o.replayLog(); err != nil {
			return err
		}
	}
	err := o.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			if o.opts.ReadOnly {
				return fmt.Errorf("outbox: %s is not an outbox (no meta bucket)", o.path)
			}
			return corruptError(o.path, errors.New("meta bucket missing"))
		}
		if f := getUint64(m, metaFormat); !formatKnown(f) {
			return fmt.Errorf("outbox: %s has file format %d; this build reads formats %d to %d", o.path, f, oldestFileFormat, fileFormat)
		}
		spans, err := loadSpans(tx.Bucket(bucketDelivered))
		if err != nil {
			return corruptError(o.path, err)
		}
		o.spans = spans
		if err := o.routes.load(tx.Bucket(bucketRoutes)); err != nil {
			return corruptError(o.path, err)
		}
		for id := range o.routes.snap.Load().byID {
			o.stored[id] = true
		}
		o.nextSeq.Store(getUint64(m, metaNextSeq))
		o.pendingCount.Store(int64(getUint64(m, metaPendingCount)))
		o.pendingBytes.Store(int64(getUint64(m, metaPendingBytes)))
		o.retainedCount.Store(int64(getUint64(m, metaRetainedCount)))
		o.retainedBytes.Store(int64(getUint64(m, metaRetainedBytes)))
		o.oldestPending.Store(firstPendingTime(tx.Bucket(bucketPending), spans))
		o.oldestRetained.Store(oldestDelivery(tx.Bucket(bucketRetained), spans))
		return nil
	})
	if err == nil && o.opts.ReadOnly {
		err = o.checkLogMoved()
	}
	return err
}

// oldestTime returns the append (or delivery) time of the first record in b.
func oldestTime(b *bolt.Bucket, delivered bool) int64 {
	if b == nil {
		return 0
	}
	_, v := b.Cursor().First()
	if v == nil || checkRecord(v) != nil {
		return 0
	}
	a, d := recordTimes(v)
	if delivered {
		return d
	}
	return a
}

// Path returns the file's path.
func (o *Outbox) Path() string { return o.path }

// Append stores r. In Sync mode it returns once the record is committed and
// fsynced; in Async mode once it is queued. r is encoded before Append
// returns, so the caller may reuse it. Append sets r.Time when zero.
//
// The errors ErrFull, ErrWrite, ErrTimeout, ErrOverloaded and
// ErrInvalidRecord mean the record is not stored; the caller decides
// whether to Spill it. Append blocks for at most Options.CommitTimeout
// unless its commit has already passed its commit point (the write and
// fsync of the transaction), whose outcome it then waits for.
func (o *Outbox) Append(r *Record) error { return o.append(r, nil) }

// AppendDurable is Append that returns once r is committed to the file,
// whatever Options.Durability: for a record the caller must not
// acknowledge to anyone before it is on disk, such as a peer's record
// taken over in a hand-off. A failed commit returns its error (ErrWrite,
// ErrTimeout, ...) and r is not spilled, as with AppendIndexed: the caller
// still holds it and keeps the responsibility. With the log before the
// tree it is committed to the tree directly. Append followed by Sync is
// not the same in Async mode: a record whose batch failed goes to the
// memory spill, and the Sync can still succeed.
func (o *Outbox) AppendDurable(r *Record) error { return o.append(r, &indexOp{waitOnly: true}) }

// append is Append, with an index change committed with the record when op
// is set (AppendIndexed); such an append waits for its commit in either
// durability mode.
func (o *Outbox) append(r *Record, op *indexOp) error {
	if o.opts.ReadOnly {
		return ErrClosed
	}
	if r.Time.IsZero() {
		r.Time = o.opts.Now()
	}
	buf, err := o.encode(r)
	if err != nil {
		return err
	}
	n := len(*buf)
	now := time.Now().UnixNano()
	if until := o.failedUntil.Load(); now < until && o.wal == nil {
		// With the log, the log goroutine decides: the log may still
		// have room while the tree does not take writes.
		o.putBuf(buf)
		return o.writeError()
	}

	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		o.putBuf(buf)
		return ErrClosed
	}
	if o.queuedBytes+n > o.opts.MaxQueueBytes {
		o.mu.Unlock()
		o.putBuf(buf)
		o.ctr.overloaded.Add(1)
		return ErrOverloaded
	}
	if max := o.opts.MaxBytes; max > 0 && o.pendingBytes.Load()+int64(o.queuedBytes+o.movingBytes+n) > max {
		o.mu.Unlock()
		o.putBuf(buf)
		o.ctr.full.Add(1)
		return ErrFull
	}
	b := o.openBatch(now)
	b.recs = append(b.recs, buf)
	if op != nil {
		op.rec = len(b.recs) - 1
		b.index = append(b.index, op)
	}
	b.bytes += n
	o.queuedBytes += n
	full := len(b.recs) >= o.opts.MaxBatchRecords || b.bytes >= o.opts.MaxBatchBytes
	first := len(b.recs) == 1
	o.mu.Unlock()

	if o.opts.Durability == Async && !full && op == nil {
		// The writer is woken by the first record of a batch and then waits
		// for FlushInterval, so a wake per record is not needed.
		if first {
			o.signal()
		}
		return nil
	}
	o.signal()
	if o.opts.Durability == Async && op == nil {
		return nil
	}
	<-b.done
	return b.err
}

// openBatch returns the batch that takes new records, starting a new one
// when the last is full or taken. o.mu is held.
func (o *Outbox) openBatch(now int64) *batch {
	if n := len(o.queue); n > 0 {
		b := o.queue[n-1]
		if len(b.recs) < o.opts.MaxBatchRecords && b.bytes < o.opts.MaxBatchBytes {
			return b
		}
	}
	// Sized like the last commit, so the slice does not grow record by
	// record.
	b := &batch{created: now, done: make(chan struct{}), recs: make([]*[]byte, 0, min(int(o.lastBatch.Load())+16, o.opts.MaxBatchRecords))}
	o.queue = append(o.queue, b)
	return b
}

// signal wakes the goroutine that takes queued batches: the log goroutine
// with the log, else the writer.
func (o *Outbox) signal() {
	if o.logWake != nil {
		select {
		case o.logWake <- struct{}{}:
		default:
		}
		return
	}
	o.signalWriter()
}

func (o *Outbox) signalWriter() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// encodeRoute encodes r's route into scratch and interns it: it returns the
// route id (0: inline), the encoded route and the record's encoded size.
func (o *Outbox) encodeRoute(r *Record, scratch []byte) (id uint32, route []byte, n int, err error) {
	route, err = appendRoute(scratch, r.Exchange, r.RoutingKey, r.Headers)
	if err != nil {
		return 0, nil, 0, err
	}
	id = o.routes.intern(route)
	return id, route, encodedLen(r, id, route), nil
}

func (o *Outbox) encode(r *Record) (*[]byte, error) {
	var scratch [256]byte
	id, route, n, err := o.encodeRoute(r, scratch[:0])
	if err != nil {
		return nil, err
	}
	if n > o.opts.MaxRecordBytes {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrInvalidRecord, n, o.opts.MaxRecordBytes)
	}
	var buf *[]byte
	select {
	case buf = <-o.bufs:
	default:
	}
	if buf == nil || cap(*buf) < n {
		b := make([]byte, 0, max(n, 512))
		buf = &b
	}
	*buf = appendRecord((*buf)[:0], r, id, route)
	return buf, nil
}

func (o *Outbox) putBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		select {
		case o.bufs <- b:
		default:
		}
	}
}

func (o *Outbox) writeError() error {
	if e := o.lastErr.Load(); e != nil {
		return fmt.Errorf("%w: %w", ErrWrite, e.err)
	}
	return ErrWrite
}

// Ack marks records as delivered. It returns at once; the change rides in
// the next commit with appends, so acknowledging costs no fsync of its own.
// A crash before that commit leaves the records pending, and they are
// delivered again: a duplicate, never a loss. Acks of unknown or already
// delivered sequences are ignored and counted.
func (o *Outbox) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	if o.opts.ReadOnly {
		return ErrClosed
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	if len(o.acks) == 0 {
		// The writer measures the ack delay against time.Now: an
		// Options.Now clock behind it would commit every ack at once, one
		// ahead of it would hold the acks back until the next Sync.
		o.acksSince = time.Now()
	}
	o.acks = append(o.acks, seqs...)
	o.ackQueued += uint64(len(seqs))
	o.mu.Unlock()
	o.signalWriter()
	return nil
}

// Sync waits until every record appended and every ack made before the
// call is committed. It returns the commit's error.
func (o *Outbox) Sync() error { return o.sync(false) }

// sync is Sync; with prune, the first commit it forces runs a retention
// step (the request rides with the batch: with the log, a flag set apart
// could be seen by a commit the writer runs before the batch reaches it).
func (o *Outbox) sync(prune bool) error {
	if o.opts.ReadOnly {
		return nil
	}
	var target uint64
	for first := true; ; first = false {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		if first {
			target = o.ackQueued
		} else if o.ackDone >= target {
			o.mu.Unlock()
			return nil
		}
		// An empty batch at the tail forces a commit, which carries acks;
		// a commit takes at most maxAcksPerCommit, hence the loop.
		b := &batch{created: time.Now().UnixNano(), done: make(chan struct{}), prune: prune && first}
		o.queue = append(o.queue, b)
		o.mu.Unlock()
		o.signal()
		<-b.done
		if b.err != nil {
			return b.err
		}
	}
}

// commitAcks makes sure every ack queued so far is committed, for the
// forwarder before a backlog pass. It returns at once when there is
// nothing to commit, and fails fast, without waiting for a commit, during
// a write back-off.
func (o *Outbox) commitAcks() error {
	o.mu.Lock()
	done := o.ackDone >= o.ackQueued
	o.mu.Unlock()
	if done {
		return nil
	}
	if time.Now().UnixNano() < o.failedUntil.Load() {
		return o.writeError()
	}
	return o.Sync()
}

// Prune runs a retention step now (rather than at the next
// Options.PruneInterval) and waits for its commit. At most
// Options.PruneBatch expired records are deleted per call.
func (o *Outbox) Prune() error { return o.sync(true) }

// Notify returns a channel that receives a value after commits that added
// records and after spills. It has a buffer of one and a single intended
// receiver, the forwarder.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }

func (o *Outbox) notifyReader() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// Close stops the writer after it has committed everything queued, and
// closes the file. It is safe to call twice; later calls return the first
// call's result.
func (o *Outbox) Close() error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closed = true
		o.mu.Unlock()
		close(o.closing)
		o.wg.Wait()
		o.closeErr = o.db.Close()
	})
	return o.closeErr
}

func putUint64(b *bolt.Bucket, key []byte, v uint64) error {
	k := seqKey(v)
	return b.Put(key, k[:])
}

func getUint64(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return keySeq(v)
}
