package outbox

import (
	"slices"
	"sync"
	"sync/atomic"
)

// The spill is a bounded memory queue for records the file could not take
// (size limit, write error, overload, timeout). The forwarder publishes it
// directly, before the file's backlog, since it does not survive the
// process. Records in it are not durable: a crash loses them, and Stats
// says how many are at risk. So the writer moves them back into the file as
// soon as it accepts writes again, and Close tries once more and counts
// what is left as lost (harden #3).

type spill struct {
	max int // bytes; <= 0 disables

	mu      sync.Mutex
	recs    []spilled // ordered by seq
	count   int       // of recs not acked
	bytes   int
	nextSeq uint64

	spilled, delivered, dropped, restored atomic.Uint64
}

type spilled struct {
	seq    uint64
	buf    []byte
	acked  bool // delivered, or moved into the file: gone
	moving bool // being committed to the file; not handed to the reader
	handed bool // read by the forwarder and maybe in flight: not moved
}

// Spill keeps r in the bounded memory spill, for a record that Append could
// not store. It returns ErrSpillFull, and counts the record as dropped, when
// the spill is full or disabled. Spilled records are read with ReadSpill and
// acknowledged with AckSpill.
func (o *Outbox) Spill(r *Record) error {
	if r.Time.IsZero() {
		r.Time = o.opts.Now()
	}
	var scratch [256]byte
	id, route, n, err := o.encodeRoute(r, scratch[:0])
	if err != nil {
		o.spill.dropped.Add(1)
		return err
	}
	s := &o.spill
	s.mu.Lock()
	full := s.max <= 0 || s.bytes+n > s.max
	s.mu.Unlock()
	if full || !s.put(appendRecord(make([]byte, 0, n), r, id, route)) {
		s.dropped.Add(1)
		return ErrSpillFull
	}
	o.notifyReader()
	return nil
}

// ReadSpill appends to dst up to max spilled records with Seq > after,
// oldest first. Their Spilled field is set.
func (o *Outbox) ReadSpill(dst []Record, after uint64, max int) []Record {
	s := &o.spill
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.recs, after+1, func(e spilled, seq uint64) int {
		return cmpUint64(e.seq, seq)
	})
	for ; i < len(s.recs) && max > 0; i++ {
		e := &s.recs[i]
		if e.acked || e.moving {
			continue
		}
		e.handed = true
		var r Record
		if err := decodeRecord(e.buf, &r, o.routes); err != nil {
			continue // cannot happen: encoded by us, in memory
		}
		r.Seq = e.seq
		r.Spilled = true
		dst = append(dst, r)
		max--
	}
	return dst
}

// AckSpill removes delivered records from the spill.
func (o *Outbox) AckSpill(seqs ...uint64) {
	s := &o.spill
	s.mu.Lock()
	for _, seq := range seqs {
		i, ok := slices.BinarySearchFunc(s.recs, seq, func(e spilled, seq uint64) int {
			return cmpUint64(e.seq, seq)
		})
		if !ok || s.recs[i].acked {
			continue
		}
		s.recs[i].acked = true
		s.count--
		s.bytes -= len(s.recs[i].buf)
		s.recs[i].buf = nil
		s.delivered.Add(1)
	}
	s.trim()
	s.mu.Unlock()
}

// trim drops the acked head; acks come mostly in order. s.mu is held.
func (s *spill) trim() {
	n := 0
	for n < len(s.recs) && s.recs[n].acked {
		n++
	}
	if n > 0 {
		s.recs = slices.Delete(s.recs, 0, n)
	}
}

// take marks up to maxRecs records (maxBytes in all, at least one) as
// moving and returns their seqs and bytes, oldest first. The reader no
// longer sees them; settle ends the move.
//
// Records handed to the forwarder are left alone unless final (Close):
// moving one that is in flight would publish it twice. The forwarder
// releases them when its session ends.
func (s *spill) take(maxRecs, maxBytes int, final bool) (seqs []uint64, bufs [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := range s.recs {
		e := &s.recs[i]
		if e.acked || e.moving || (e.handed && !final) {
			continue
		}
		if len(seqs) >= maxRecs || (len(seqs) > 0 && n+len(e.buf) > maxBytes) || len(e.buf) > maxBytes {
			break
		}
		e.moving = true
		seqs = append(seqs, e.seq)
		bufs = append(bufs, e.buf)
		n += len(e.buf)
	}
	return seqs, bufs
}

// settle ends a move: committed records leave the spill, the others are
// readable again. A record the reader had acked meanwhile stays counted
// as delivered.
func (s *spill) settle(seqs []uint64, committed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seq := range seqs {
		i, ok := slices.BinarySearchFunc(s.recs, seq, func(e spilled, seq uint64) int {
			return cmpUint64(e.seq, seq)
		})
		if !ok {
			continue
		}
		e := &s.recs[i]
		e.moving = false
		if !committed || e.acked {
			continue
		}
		e.acked = true
		s.count--
		s.bytes -= len(e.buf)
		e.buf = nil
		s.restored.Add(1)
	}
	s.trim()
}

// releaseSpill makes the spilled records the forwarder read but did not
// get confirmed movable into the file again; the forwarder calls it when
// a session ends.
func (o *Outbox) releaseSpill() {
	s := &o.spill
	s.mu.Lock()
	for i := range s.recs {
		s.recs[i].handed = false
	}
	s.mu.Unlock()
	o.signal() // the writer may move them now
}

// clear empties the spill and returns the records it held.
func (s *spill) clear() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var left [][]byte
	for i := range s.recs {
		if e := &s.recs[i]; !e.acked {
			left = append(left, e.buf)
		}
	}
	s.recs, s.count, s.bytes = nil, 0, 0
	return left
}

// remaining reports the records still in the spill.
func (s *spill) remaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

func (s *spill) stats() SpillStats {
	s.mu.Lock()
	st := SpillStats{Records: s.count, Bytes: s.bytes, Limit: s.max}
	s.mu.Unlock()
	st.Spilled = s.spilled.Load()
	st.Delivered = s.delivered.Load()
	st.Dropped = s.dropped.Load()
	st.Restored = s.restored.Load()
	return st
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rescue takes the records of an Async-mode batch whose commit failed
// (harden #2). Their Appends returned nil, so the clicks were answered: each
// goes to the spill, and one that does not fit is counted as dropped,
// reported to Options.OnLost with its route and logged. Nothing vanishes
// uncounted.
func (o *Outbox) rescue(recs []*[]byte, cause error) {
	lost := routeCounter{lost: true}
	fates := routeCounter{fate: FateSpilled}
	for _, buf := range recs {
		// The buffer changes hands: the spill keeps it.
		if o.spill.put(*buf) {
			o.ctr.rescued.Add(1)
			fates.add(o, *buf)
		} else {
			lost.add(o, *buf)
		}
	}
	fates.flush(o)
	if fates.total > 0 {
		o.notifyReader()
	}
	o.lost(&lost, "async commit failed and the memory spill is full", cause)
}

// lost counts the answered records added to c, which are neither stored
// nor spilled: in Stats.Spill.Dropped, to Options.OnLost by route (each
// kind of record has its own counter above the outbox: clicks, actions),
// and in the log by exchange.
func (o *Outbox) lost(c *routeCounter, why string, cause error) {
	if c.total <= 0 {
		return
	}
	o.spill.dropped.Add(uint64(c.total))
	c.flush(o)
	if cause != nil {
		o.log.Error("outbox: answered records LOST: "+why, "records", c.total, "exchanges", c.byExchange, "err", cause)
	} else {
		o.log.Error("outbox: answered records LOST: "+why, "records", c.total, "exchanges", c.byExchange)
	}
}

// put adds an encoded record to the spill, reporting false when it does
// not fit.
func (s *spill) put(buf []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max <= 0 || s.bytes+len(buf) > s.max {
		return false
	}
	s.nextSeq++
	s.recs = append(s.recs, spilled{seq: s.nextSeq, buf: buf})
	s.count++
	s.bytes += len(buf)
	s.spilled.Add(1)
	return true
}
