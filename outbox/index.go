package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The index is a small key/value map in the outbox's file whose changes
// commit in the same transaction as the record they accompany: a caller
// (the postback role) that answers from the index and appends a record
// can never find, after a crash, an index entry without its record or a
// record without its entry. It is owned by the writer like everything
// else in the file; readers use their own read transaction.
//
// Layout: bucket "index" maps a 16-byte key to 8 bytes (expiry in unix
// seconds, 48 bits big-endian, then the caller's 16-bit value);
// "index_expiry" maps expiry (8 bytes big-endian) + key to 8 zero bytes,
// so that expired entries are found oldest first and pruned in bounded
// steps with the records' retention. Both have fixed-size elements, which
// Verify checks and Salvage recognises as non-records.

// IndexKeyLen is the length of an index key. Callers hash what they index
// (postback: SHA-256 of advertiser, order and action, cut to 16 bytes), so
// keys are bounded whatever the input.
const IndexKeyLen = 16

// Index bucket names.
var (
	bucketIndex       = []byte("index")
	bucketIndexExpiry = []byte("index_expiry")
)

// ErrIndexChanged is returned by AppendIndexed when the key's entry at
// commit time is not the one the caller expected (IndexUpdate.Old): another
// append changed it, or it expired, in between. Neither the record nor the
// entry was stored; read the entry again and decide again.
var ErrIndexChanged = errors.New("outbox: index entry changed")

// IndexEntry is what the index holds for a key.
type IndexEntry struct {
	// Value is the caller's: the outbox only stores and compares it.
	Value uint16
	// Expires is when the entry stops existing, to the second. IndexGet
	// ignores expired entries; the writer deletes them, at most
	// Options.PruneBatch per Options.PruneInterval.
	Expires time.Time
}

// IndexUpdate is a conditional change of one index entry.
type IndexUpdate struct {
	Key [IndexKeyLen]byte
	// Old is the entry the caller's decision rests on, as IndexGet
	// returned it; OldOK false means the key had no live entry.
	Old   IndexEntry
	OldOK bool
	// New replaces it.
	New IndexEntry
}

// indexOp is an IndexUpdate riding in a batch with its record.
type indexOp struct {
	rec int // the record's position in batch.recs
	// waitOnly: no index change, the append only waits for its commit and
	// is not spilled if it fails (AppendDurable).
	waitOnly bool
	u        IndexUpdate
	err      error // set by the writer before the batch finishes: nil or ErrIndexChanged
}

// IndexGet returns key's live entry; ok is false when it has none or the
// entry has expired. It reads committed state: an AppendIndexed that has
// returned nil is visible.
func (o *Outbox) IndexGet(key [IndexKeyLen]byte) (e IndexEntry, ok bool, err error) {
	now := o.opts.Now()
	err = o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIndex)
		if b == nil {
			return nil
		}
		e, ok = liveEntry(b.Get(key[:]), now)
		return nil
	})
	if err != nil {
		return IndexEntry{}, false, fmt.Errorf("outbox: index get: %w", err)
	}
	return e, ok, nil
}

// AppendIndexed appends r and applies u in the same commit, provided the
// key's live entry then still equals u.Old (or is still absent when
// !u.OldOK); otherwise it stores neither and returns ErrIndexChanged.
//
// It always waits for the commit, in Async mode too (where the commit may
// start up to Options.FlushInterval later): the caller's answer depends on
// it. Its other errors are Append's, and mean that neither the record nor
// the entry is stored: a batch's fate has one owner, so ErrTimeout is
// never followed by a late commit. In Async mode a failed commit does not
// move the record to the spill (its caller was told), unlike Append's.
func (o *Outbox) AppendIndexed(r *Record, u IndexUpdate) error {
	op := &indexOp{u: u}
	if err := o.append(r, op); err != nil {
		return err
	}
	return op.err
}

// applyIndex applies the batch's index updates in record order inside tx,
// so that a later update of the same key in the batch sees an earlier one.
// It returns the positions of the records whose update was refused; they
// must not be stored.
func (o *Outbox) applyIndex(w *writerState, tx *bolt.Tx, b *batch, now time.Time) (skip map[int]bool, err error) {
	if b == nil || len(b.index) == 0 {
		return nil, nil
	}
	idx, exp := tx.Bucket(bucketIndex), tx.Bucket(bucketIndexExpiry)
	for _, op := range b.index {
		op.err = nil // a commit tried before may have set it, and rolled back
		if op.waitOnly {
			continue
		}
		k := op.u.Key[:]
		raw := idx.Get(k)
		cur, ok := liveEntry(raw, now)
		if ok != op.u.OldOK || ok && !sameEntry(cur, op.u.Old) {
			op.err = ErrIndexChanged
			if skip == nil {
				skip = make(map[int]bool)
			}
			skip[op.rec] = true
			continue
		}
		if raw != nil {
			old, _ := decodeEntry(raw)
			if err := exp.Delete(expiryKey(w, old.Expires, op.u.Key)); err != nil {
				return nil, fmt.Errorf("outbox: commit index: %w", err)
			}
		}
		v := w.arena.alloc(8)
		encodeEntry(v, op.u.New)
		if err := idx.Put(w.arena.clone(k), v); err != nil {
			return nil, fmt.Errorf("outbox: commit index: %w", err)
		}
		if err := exp.Put(expiryKey(w, op.u.New.Expires, op.u.Key), zero8[:]); err != nil {
			return nil, fmt.Errorf("outbox: commit index: %w", err)
		}
	}
	return skip, nil
}

var zero8 [8]byte

// rescueBatch is rescue for an Async batch whose commit failed. The
// records of AppendIndexed waited for the commit and their callers are told
// it failed, so they are not spilled (a spilled one would be delivered
// although its caller was told it is not stored, and its entry was not
// written); the others were answered already and go to the spill.
func (o *Outbox) rescueBatch(b *batch, cause error) {
	if len(b.index) == 0 {
		o.rescue(b.recs, cause)
		return
	}
	waited := make(map[int]bool, len(b.index))
	for _, op := range b.index {
		waited[op.rec] = true
	}
	answered := make([]*[]byte, 0, len(b.recs)-len(waited))
	for i, buf := range b.recs {
		if waited[i] {
			o.putBuf(buf)
			continue
		}
		answered = append(answered, buf)
	}
	o.rescue(answered, cause)
}

// pruneIndex deletes up to limit entries that expired by now, oldest
// first.
func (o *Outbox) pruneIndex(tx *bolt.Tx, now time.Time, limit int) (int, error) {
	idx, exp := tx.Bucket(bucketIndex), tx.Bucket(bucketIndexExpiry)
	if idx == nil || exp == nil {
		return 0, nil
	}
	cutoff := now.Unix()
	n := 0
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && n < limit; k, _ = c.First() {
		if len(k) != 8+IndexKeyLen || int64(binary.BigEndian.Uint64(k)) > cutoff {
			break
		}
		key := k[8:]
		// The entry may have been renewed since: only an entry that is
		// itself expired goes.
		if e, ok := decodeEntry(idx.Get(key)); ok && e.Expires.Unix() <= cutoff {
			if err := idx.Delete(key); err != nil {
				return n, fmt.Errorf("outbox: prune index: %w", err)
			}
		}
		if err := c.Delete(); err != nil {
			return n, fmt.Errorf("outbox: prune index: %w", err)
		}
		n++
	}
	return n, nil
}

// createIndexBuckets is part of a writable Open.
func createIndexBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketIndex, bucketIndexExpiry} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// isIndexBucket reports whether name is one of the index's buckets, which
// hold no records (Verify, Salvage).
func isIndexBucket(name string) bool {
	return name == string(bucketIndex) || name == string(bucketIndexExpiry)
}

// checkIndexElement returns why an element of an index bucket is malformed,
// or "" (Verify).
func checkIndexElement(bucket string, k, v []byte) string {
	switch {
	case bucket == string(bucketIndex) && len(k) != IndexKeyLen:
		return fmt.Sprintf("key %x is not %d bytes", k, IndexKeyLen)
	case bucket == string(bucketIndexExpiry) && len(k) != 8+IndexKeyLen:
		return fmt.Sprintf("key %x is not %d bytes", k, 8+IndexKeyLen)
	case len(v) != 8:
		return fmt.Sprintf("key %x has a %d-byte value", k, len(v))
	}
	return ""
}

func liveEntry(raw []byte, now time.Time) (IndexEntry, bool) {
	e, ok := decodeEntry(raw)
	if !ok || e.Expires.Unix() <= now.Unix() {
		return IndexEntry{}, false
	}
	return e, true
}

func sameEntry(a, b IndexEntry) bool {
	return a.Value == b.Value && a.Expires.Unix() == b.Expires.Unix()
}

func encodeEntry(dst []byte, e IndexEntry) {
	s := uint64(max(e.Expires.Unix(), 0)) & (1<<48 - 1)
	binary.BigEndian.PutUint64(dst, s<<16|uint64(e.Value))
}

func decodeEntry(raw []byte) (IndexEntry, bool) {
	if len(raw) != 8 {
		return IndexEntry{}, false
	}
	v := binary.BigEndian.Uint64(raw)
	return IndexEntry{Value: uint16(v), Expires: time.Unix(int64(v>>16), 0)}, true
}

func expiryKey(w *writerState, t time.Time, key [IndexKeyLen]byte) []byte {
	k := w.arena.alloc(8 + IndexKeyLen)
	binary.BigEndian.PutUint64(k, uint64(max(t.Unix(), 0))&(1<<48-1))
	copy(k[8:], key[:])
	return k
}

// clone copies b into the arena, for keys bbolt keeps until the commit.
func (a *arena) clone(b []byte) []byte {
	c := a.alloc(len(b))
	copy(c, b)
	return c
}
