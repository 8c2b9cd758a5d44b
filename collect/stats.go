package collect

import (
	"sync"
	"time"
)

// Stats is a snapshot of a Collector's counters.
type Stats struct {
	Connected        bool   // a broker session is open
	DatabaseUp       bool   // the last write (or connect) succeeded
	Clicks           uint64 // click rows inserted
	ClickDuplicates  uint64 // click messages whose row was already there
	Actions          uint64 // action rows inserted
	ActionDuplicates uint64
	DeadLettered     uint64 // poison messages published to the dead-letter queue
	DeadByReason     map[Reason]uint64
	Batches          uint64 // batches committed and acked
	WriteErrors      uint64 // failed writes (each retried)
	Sessions         uint64 // broker sessions opened
	// WriteTime is the time spent in successful Store writes, in all.
	WriteTime time.Duration
	// BatchDuration is the latency of each committed batch, from its first
	// message's arrival to its ack.
	BatchDuration Histogram
	// OldestPending is the message time (a click's ts, an action's ts) of
	// the oldest message received and not yet acked; zero when none.
	OldestPending time.Time
}

// Lag is how far behind the collector is at now: the age of the oldest
// message it holds unacked, 0 when it holds none.
func (s Stats) Lag(now time.Time) time.Duration {
	if s.OldestPending.IsZero() {
		return 0
	}
	return max(0, now.Sub(s.OldestPending))
}

// Histogram is a cumulative-free histogram: Counts[i] observations were
// <= Bounds[i] and > Bounds[i-1]; observations above the last bound count
// only in Count and Sum.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// batchBounds are the batch duration buckets, in seconds.
var batchBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

func (h *Histogram) observe(v float64) {
	if h.Bounds == nil {
		h.Bounds = batchBounds
		h.Counts = make([]uint64, len(batchBounds))
	}
	h.Count++
	h.Sum += v
	for i, b := range h.Bounds {
		if v <= b {
			h.Counts[i]++
			return
		}
	}
}

func (h Histogram) clone() Histogram {
	if h.Bounds == nil {
		h.Bounds = batchBounds
		h.Counts = make([]uint64, len(batchBounds))
		return h
	}
	h.Counts = append([]uint64(nil), h.Counts...)
	return h
}

// stats is the mutable side of Stats; every field is guarded by mu.
type stats struct {
	mu sync.Mutex
	s  Stats
	// inflight holds the oldest message time of each batch received and
	// not yet acked, by batch sequence number.
	inflight map[uint64]time.Time
}

func (st *stats) update(f func(*Stats)) {
	st.mu.Lock()
	f(&st.s)
	st.mu.Unlock()
}

func (st *stats) hold(seq uint64, oldest time.Time) {
	st.mu.Lock()
	if st.inflight == nil {
		st.inflight = make(map[uint64]time.Time)
	}
	if cur, ok := st.inflight[seq]; !ok || oldest.Before(cur) {
		st.inflight[seq] = oldest
	}
	st.mu.Unlock()
}

func (st *stats) release(seq uint64) {
	st.mu.Lock()
	delete(st.inflight, seq)
	st.mu.Unlock()
}

func (st *stats) releaseAll() {
	st.mu.Lock()
	clear(st.inflight)
	st.mu.Unlock()
}

func (st *stats) snapshot() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.s
	s.BatchDuration = st.s.BatchDuration.clone()
	s.DeadByReason = make(map[Reason]uint64, len(st.s.DeadByReason))
	for r, n := range st.s.DeadByReason {
		s.DeadByReason[r] = n
	}
	for _, t := range st.inflight {
		if s.OldestPending.IsZero() || t.Before(s.OldestPending) {
			s.OldestPending = t
		}
	}
	return s
}
