package outbox

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Delivered spans: how an ack costs O(1) page writes, not one rewrite per
// record.
//
// A record is written once, into the pending bucket, and stays there until
// it is pruned. An ack does not move it: the sequences the broker confirmed
// are kept as spans, runs of consecutive sequences, in the delivered bucket
// (key: the span's first sequence; value: its last sequence, first and last
// delivery time, encoded bytes and a CRC-32C of key and value, so that a
// damaged span is found by Verify and ignored by Salvage rather than mark
// pending records delivered). A record in the pending bucket whose
// sequence lies in a span is delivered; every other one is pending. The
// forwarder acknowledges in publish order but for the odd return or nack,
// so a commit that carries thousands of acks extends one span: a single
// 40-byte value, where moving the records rewrote them all (twice their
// bytes in pages) inside the commit that made new clicks durable.
//
// Retention counts from a span's last delivery. A span takes new sequences
// only while its first delivery is less than spanWindow old, so a span's
// records are kept at most spanWindow longer than Options.Retention, never
// shorter. Pruning deletes a span's records from its first sequence on, a
// bounded number per commit, and shrinks or removes the span in the same
// transaction.
//
// Files written before spans (format 1) hold delivered records, moved and
// marked, in the retained bucket; those are read, pruned and evicted as
// before, and nothing new is moved there.

var bucketDelivered = []byte("delivered")

// spanValueLen is the encoded size of a span's value: four 8-byte fields
// and the checksum.
const spanValueLen = 36

// span is a run of delivered sequences [first, last], all of them records
// in the pending bucket.
type span struct {
	first, last uint64
	since       int64 // first delivery in the span, Unix nanoseconds
	at          int64 // last delivery in the span: retention counts from it
	bytes       int64 // encoded bytes of its records
}

func (s span) count() int64 { return int64(s.last - s.first + 1) }

func (s span) value() []byte {
	v := make([]byte, spanValueLen)
	binary.BigEndian.PutUint64(v[0:], s.last)
	binary.BigEndian.PutUint64(v[8:], uint64(s.since))
	binary.BigEndian.PutUint64(v[16:], uint64(s.at))
	binary.BigEndian.PutUint64(v[24:], uint64(s.bytes))
	binary.BigEndian.PutUint32(v[32:], spanChecksum(seqKey(s.first), v))
	return v
}

// spanChecksum is the CRC-32C of a span's key and its value's fields.
func spanChecksum(k [8]byte, v []byte) uint32 {
	return crc32.Update(crc32.Checksum(k[:], castagnoli), castagnoli, v[:32])
}

// decodeSpan parses a delivered bucket entry.
func decodeSpan(k, v []byte) (span, error) {
	if len(k) != 8 || len(v) != spanValueLen {
		return span{}, fmt.Errorf("delivered: entry %x has a %d-byte key and a %d-byte value", k, len(k), len(v))
	}
	if want, got := binary.BigEndian.Uint32(v[32:]), spanChecksum([8]byte(k), v); want != got {
		return span{}, fmt.Errorf("delivered: span at %d fails its checksum", keySeq(k))
	}
	s := span{
		first: keySeq(k),
		last:  binary.BigEndian.Uint64(v[0:]),
		since: int64(binary.BigEndian.Uint64(v[8:])),
		at:    int64(binary.BigEndian.Uint64(v[16:])),
		bytes: int64(binary.BigEndian.Uint64(v[24:])),
	}
	if s.last < s.first || s.first == 0 || s.bytes < 0 {
		return span{}, fmt.Errorf("delivered: span %d-%d (%d bytes) is not a span", s.first, s.last, s.bytes)
	}
	return s, nil
}

// loadSpans reads the delivered bucket, checking that spans are ordered and
// do not overlap.
func loadSpans(b *bolt.Bucket) ([]span, error) {
	if b == nil {
		return nil, nil
	}
	var out []span
	err := b.ForEach(func(k, v []byte) error {
		s, err := decodeSpan(k, v)
		if err != nil {
			return err
		}
		if n := len(out); n > 0 && s.first <= out[n-1].last {
			return fmt.Errorf("delivered: span %d-%d overlaps %d-%d", s.first, s.last, out[n-1].first, out[n-1].last)
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// spanWindow is how long a span takes new sequences after its first
// delivery: a record may be kept this much longer than the retention.
func spanWindow(retention time.Duration) time.Duration {
	return min(max(retention/256, time.Second), 10*time.Minute)
}

// spanIndex returns the index of the span holding seq, or -1.
func spanIndex(spans []span, seq uint64) int {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].last >= seq })
	if i < len(spans) && spans[i].first <= seq {
		return i
	}
	return -1
}

// spanEdit is a transaction's change to the spans: the writer applies it to
// a copy and keeps the copy only once the commit succeeded.
type spanEdit struct {
	spans []span          // the new set, sorted
	put   map[uint64]bool // firsts whose value must be written
	del   map[uint64]bool // firsts whose key must be removed
}

func newSpanEdit(spans []span) *spanEdit {
	return &spanEdit{spans: slices.Clone(spans), put: map[uint64]bool{}, del: map[uint64]bool{}}
}

func (e *spanEdit) changed() bool { return len(e.put)+len(e.del) > 0 }

func (e *spanEdit) setKey(s span) { e.put[s.first] = true; delete(e.del, s.first) }
func (e *spanEdit) dropKey(first uint64) {
	delete(e.put, first)
	e.del[first] = true
}

// add marks the run [first, last] delivered at now. The run must not
// overlap a span. It joins the span before or after it when that span is
// still within window of its first delivery.
func (e *spanEdit) add(first, last uint64, bytes, now int64, window time.Duration) {
	i := sort.Search(len(e.spans), func(i int) bool { return e.spans[i].first > last })
	joinable := func(s span) bool { return now-s.since <= int64(window) }
	if i > 0 && e.spans[i-1].last+1 == first && joinable(e.spans[i-1]) {
		p := &e.spans[i-1]
		p.last, p.at, p.bytes = last, max(p.at, now), p.bytes+bytes
		if i < len(e.spans) && e.spans[i].first == last+1 && joinable(e.spans[i]) {
			n := e.spans[i]
			p.last, p.since, p.at, p.bytes = n.last, min(p.since, n.since), max(p.at, n.at), p.bytes+n.bytes
			e.dropKey(n.first)
			e.spans = slices.Delete(e.spans, i, i+1)
		}
		e.setKey(*p)
		return
	}
	if i < len(e.spans) && e.spans[i].first == last+1 && joinable(e.spans[i]) {
		n := &e.spans[i]
		e.dropKey(n.first)
		n.first, n.at, n.bytes = first, max(n.at, now), n.bytes+bytes
		e.setKey(*n)
		return
	}
	s := span{first: first, last: last, since: now, at: now, bytes: bytes}
	e.spans = slices.Insert(e.spans, i, s)
	e.setKey(s)
}

// write stores the edit's changes in the delivered bucket. Deletes go first:
// a span whose first sequence moved may reuse a key another span dropped.
func (e *spanEdit) write(b *bolt.Bucket, w *writerState) error {
	for first := range e.del {
		k := w.key(first)
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	if len(e.put) == 0 {
		return nil
	}
	for _, s := range e.spans {
		if !e.put[s.first] {
			continue
		}
		if err := b.Put(w.key(s.first), s.value()); err != nil {
			return err
		}
	}
	return nil
}

// pruneSpans deletes, from the pending bucket, up to limit records of spans
// for which expired is true (given the span's last delivery), visiting
// spans in sequence order, and shrinks or drops those spans.
func (o *Outbox) pruneSpans(e *spanEdit, pending *bolt.Bucket, c *counts, w *writerState, limit int, expired func(at int64) bool) (int, error) {
	n := 0
	for i := 0; i < len(e.spans) && n < limit; {
		s := &e.spans[i]
		if !expired(s.at) {
			i++
			continue
		}
		seq := s.first
		for ; seq <= s.last && n < limit && expired(s.at); seq++ {
			k := w.key(seq)
			v := pending.Get(k)
			if v == nil {
				continue // Verify reports such a span; pruning it is harmless
			}
			size := int64(len(v))
			if err := pending.Delete(k); err != nil {
				return n, fmt.Errorf("outbox: prune: %w", err)
			}
			n++
			s.bytes -= size
			c.retainedCount--
			c.retainedBytes -= size
		}
		e.dropKey(s.first)
		if seq > s.last {
			e.spans = slices.Delete(e.spans, i, i+1)
			continue
		}
		s.first = seq
		e.setKey(*s)
		i++
	}
	return n, nil
}

// firstPendingTime returns the append time of the first record of the
// pending bucket that no span covers, or 0.
func firstPendingTime(b *bolt.Bucket, spans []span) int64 {
	if b == nil {
		return 0
	}
	c := b.Cursor()
	k, v := c.First()
	for k != nil {
		i := spanIndex(spans, keySeq(k))
		if i < 0 {
			break
		}
		next := seqKey(spans[i].last + 1)
		k, v = c.Seek(next[:])
	}
	if v == nil || checkRecord(v) != nil {
		return 0
	}
	a, _ := recordTimes(v)
	return a
}

// oldestDelivery returns the oldest delivery time of the records kept for
// replay: the first of the retained bucket (format 1) and the spans' first
// deliveries; 0 when none.
func oldestDelivery(retained *bolt.Bucket, spans []span) int64 {
	t := oldestTime(retained, true)
	for _, s := range spans {
		if t == 0 || s.since < t {
			t = s.since
		}
	}
	return t
}
