package outbox

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// State selects records by delivery state.
type State uint8

const (
	// StatePending selects records the broker has not confirmed.
	StatePending State = 1 << iota
	// StateDelivered selects delivered records kept for replay.
	StateDelivered
	// StateAll selects both. The zero State means StateAll too.
	StateAll = StatePending | StateDelivered
)

func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateDelivered:
		return "delivered"
	case StateAll, 0:
		return "all"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// DefaultScanBatch is the records Scan examines per read transaction when
// ScanOptions.Batch is zero.
const DefaultScanBatch = 1024

// ScanOptions selects the records Scan visits. A nil *ScanOptions visits
// every record.
type ScanOptions struct {
	// State selects pending or delivered records. Zero means both.
	State State

	// From and To bound the append time: From is inclusive, To exclusive.
	// A zero value leaves that side open.
	From, To time.Time

	// After skips records with Seq <= After; a resumed scan passes the last
	// sequence it saw. Zero starts at the beginning.
	After uint64

	// Batch is how many records are examined (matching or not) in one read
	// transaction. Zero means DefaultScanBatch.
	Batch int
}

// Scan calls fn for every record that matches opts, in sequence order,
// pending and delivered records interleaved.
//
// It reads in batches, each in a read transaction of its own, and calls fn
// between transactions, never inside one: a slow fn (a rate-limited replay)
// pins no pages, so the file does not grow behind a long scan and the
// writer is never held up. Appends, acks and pruning may run meanwhile:
// each record is seen at most once (a record acknowledged during the scan
// is seen in one state or the other); records appended during the scan are
// seen when their sequence is above the last one read.
//
// fn owns the *Record it is given. An error from fn stops the scan and is
// returned unwrapped. A record that fails its checksum stops the scan with
// an error wrapping ErrCorrupt that names it.
func (o *Outbox) Scan(opts *ScanOptions, fn func(*Record) error) error {
	var so ScanOptions
	if opts != nil {
		so = *opts
	}
	if so.Batch <= 0 {
		so.Batch = DefaultScanBatch
	}
	from, to := int64(0), int64(0)
	if !so.From.IsZero() {
		from = so.From.UnixNano()
	}
	if !so.To.IsZero() {
		to = so.To.UnixNano()
	}
	after := so.After
	for {
		var batch []Record
		last, done, err := o.walk(so.State, after, so.Batch, func(seq uint64, bucket []byte, v []byte, delivered int64) error {
			if err := checkRecord(v); err != nil {
				return corruptError(o.path, fmt.Errorf("record %d in %s: %w", seq, bucket, err))
			}
			appended, _ := recordTimes(v)
			if (from != 0 && appended < from) || (to != 0 && appended >= to) {
				return nil
			}
			batch = append(batch, Record{Seq: seq})
			r := &batch[len(batch)-1]
			if err := decodeRecord(v, r, o.routes); err != nil {
				return corruptError(o.path, fmt.Errorf("record %d in %s: %w", seq, bucket, err))
			}
			if delivered != 0 && r.Delivered.IsZero() {
				r.Delivered = fromUnixNano(delivered)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := range batch {
			if err := fn(&batch[i]); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
		after = last
	}
}

// walk visits up to limit records with Seq > after in one read transaction,
// in sequence order, of the states state selects: the pending bucket's
// records, each delivered when a span covers it (delivered is then the
// span's last delivery), and the delivered records a format-1 file moved
// to the retained bucket (delivered is the record's own). delivered is 0
// for a pending record. visit's value is valid only during the call. walk
// returns the last sequence visited and whether no record is left after
// it.
func (o *Outbox) walk(state State, after uint64, limit int, visit func(seq uint64, bucket, v []byte, delivered int64) error) (last uint64, done bool, err error) {
	if state == 0 {
		state = StateAll
	}
	last = after
	err = o.db.View(func(tx *bolt.Tx) error {
		if after == ^uint64(0) {
			done = true
			return nil
		}
		spans, err := loadSpans(tx.Bucket(bucketDelivered))
		if err != nil {
			return corruptError(o.path, err)
		}
		var p *recordCursor
		if b := tx.Bucket(bucketPending); b != nil {
			p = &recordCursor{c: b.Cursor(), spans: spans, want: state}
			p.seek(after + 1)
		}
		var rc *bolt.Cursor
		var rk, rv []byte
		if b := tx.Bucket(bucketRetained); b != nil && state&StateDelivered != 0 {
			rc = b.Cursor()
			start := seqKey(after + 1)
			rk, rv = rc.Seek(start[:])
		}
		for n := 0; ; n++ {
			fromPending := p != nil && p.k != nil && (rk == nil || string(p.k) < string(rk))
			if !fromPending && rk == nil {
				done = true
				return nil
			}
			if n == limit {
				return nil
			}
			if fromPending {
				if len(p.k) != 8 {
					return corruptError(o.path, fmt.Errorf("%s: key %x is not a sequence number", bucketPending, p.k))
				}
				last = keySeq(p.k)
				if err := visit(last, bucketPending, p.v, p.at); err != nil {
					return err
				}
				p.next()
				continue
			}
			if len(rk) != 8 {
				return corruptError(o.path, fmt.Errorf("%s: key %x is not a sequence number", bucketRetained, rk))
			}
			last = keySeq(rk)
			var delivered int64
			if checkRecord(rv) == nil {
				_, delivered = recordTimes(rv)
			}
			if err := visit(last, bucketRetained, rv, max(delivered, 1)); err != nil {
				return err
			}
			rk, rv = rc.Next()
		}
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	return last, done, err
}

// recordCursor walks the pending bucket, classifying each record by the
// delivered spans and skipping, a span at a time, the records of a state
// not wanted.
type recordCursor struct {
	c     *bolt.Cursor
	spans []span
	want  State
	i     int // the first span whose last is >= the current sequence
	k, v  []byte
	at    int64 // the covering span's last delivery; 0 when pending
}

func (r *recordCursor) seek(seq uint64) {
	k := seqKey(seq)
	r.k, r.v = r.c.Seek(k[:])
	r.settle()
}

func (r *recordCursor) next() {
	r.k, r.v = r.c.Next()
	r.settle()
}

// settle moves forward from the cursor's record to the first one of a
// wanted state.
func (r *recordCursor) settle() {
	for r.k != nil && len(r.k) == 8 {
		seq := keySeq(r.k)
		for r.i < len(r.spans) && r.spans[r.i].last < seq {
			r.i++
		}
		in := r.i < len(r.spans) && r.spans[r.i].first <= seq
		switch {
		case in && r.want&StateDelivered != 0:
			r.at = r.spans[r.i].at
			return
		case !in && r.want&StatePending != 0:
			r.at = 0
			return
		case in:
			k := seqKey(r.spans[r.i].last + 1)
			r.k, r.v = r.c.Seek(k[:])
		case r.i < len(r.spans):
			k := seqKey(r.spans[r.i].first)
			r.k, r.v = r.c.Seek(k[:])
		default:
			r.k, r.v = nil, nil
		}
	}
}

// Span describes one set of records: pending or delivered.
type Span struct {
	Count int64
	Bytes int64 // encoded bytes

	// FirstSeq and LastSeq are the lowest and highest sequence; 0 when
	// Count is 0.
	FirstSeq, LastSeq uint64

	// OldestAppend and NewestAppend bound the append times. Append times
	// follow sequence order only roughly (they are taken before the
	// commit), so these are the minimum and maximum, not the times of
	// FirstSeq and LastSeq.
	OldestAppend, NewestAppend time.Time

	// OldestDelivery and NewestDelivery bound the delivery times of
	// delivered records; zero for pending ones.
	OldestDelivery, NewestDelivery time.Time
}

func (s *Span) add(seq uint64, size int, appended, delivered int64) {
	if s.Count == 0 {
		s.FirstSeq = seq
		s.OldestAppend, s.NewestAppend = fromUnixNano(appended), fromUnixNano(appended)
		if delivered != 0 {
			s.OldestDelivery, s.NewestDelivery = fromUnixNano(delivered), fromUnixNano(delivered)
		}
	} else {
		if a := fromUnixNano(appended); a.Before(s.OldestAppend) {
			s.OldestAppend = a
		} else if a.After(s.NewestAppend) {
			s.NewestAppend = a
		}
		if delivered != 0 {
			if d := fromUnixNano(delivered); s.OldestDelivery.IsZero() || d.Before(s.OldestDelivery) {
				s.OldestDelivery = d
			} else if d.After(s.NewestDelivery) {
				s.NewestDelivery = d
			}
		}
	}
	s.LastSeq = seq
	s.Count++
	s.Bytes += int64(size)
}

// Summary is what Summarize found in the file.
type Summary struct {
	Path      string
	FileSize  int64
	NextSeq   uint64 // the sequence the next append gets
	Pending   Span
	Delivered Span
	// Exchanges counts the records by exchange (kinds.go); nil when the
	// file holds none.
	Exchanges map[string]*ExchangeCount
}

// Summarize reads every record's header and returns counts, sizes and time
// ranges of the pending and delivered sets. It is O(records), unlike Stats,
// and reads in batches as Scan does. A record that fails its checksum makes
// it fail with ErrCorrupt.
func (o *Outbox) Summarize() (*Summary, error) {
	s := &Summary{Path: o.path}
	var after uint64
	for {
		last, done, err := o.walk(StateAll, after, 16*DefaultScanBatch, func(seq uint64, bucket, v []byte, delivered int64) error {
			if err := checkRecord(v); err != nil {
				return corruptError(o.path, fmt.Errorf("record %d in %s: %w", seq, bucket, err))
			}
			appended, _ := recordTimes(v)
			s.countExchange(o.routes, v, delivered != 0)
			if delivered == 0 {
				s.Pending.add(seq, len(v), appended, 0)
			} else {
				s.Delivered.add(seq, len(v), appended, delivered)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
		after = last
	}
	s.NextSeq = o.nextSeq.Load()
	if fi, err := os.Stat(o.path); err == nil {
		s.FileSize = fi.Size()
	}
	return s, nil
}
