package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/clickedge/clickedge/outbox"
)

// ErrNoPeer is returned by HandOff when no live peer of the pool can take
// the records: the node keeps them in its outbox.
var ErrNoPeer = errors.New("cluster: no live peer to hand the outbox to")

// HandoffResult says what a hand-off did.
type HandoffResult struct {
	Peers   []string // peers that took records, in order
	Sent    int      // records acked by a peer and acked here
	Pending int64    // records still pending in the outbox afterwards
	Spilled int      // memory-only records still unsent afterwards
}

// handoffBatch is the body of POST /cluster/v1/handoff.
type handoffBatch struct {
	From    string       `json:"from"`
	Records []wireRecord `json:"records"`
}

// handoffAck is its answer: every record of the batch is committed.
type handoffAck struct {
	Committed int `json:"committed"`
}

// wireRecord is an outbox record on the wire: everything the broker will
// see, unchanged. The sequence is the sender's and is not sent.
type wireRecord struct {
	Exchange   string       `json:"exchange"`
	RoutingKey string       `json:"routing_key"`
	MessageID  string       `json:"message_id"`
	Time       int64        `json:"time"` // unix ns of the original append
	Headers    []wireHeader `json:"headers,omitempty"`
	Body       []byte       `json:"body"`
}

// wireHeader keeps a header's type (string, int64 or bool) through JSON.
type wireHeader struct {
	Key string  `json:"k"`
	S   *string `json:"s,omitempty"`
	I   *int64  `json:"i,omitempty"`
	B   *bool   `json:"b,omitempty"`
}

func toWire(r *outbox.Record) wireRecord {
	w := wireRecord{Exchange: r.Exchange, RoutingKey: r.RoutingKey, MessageID: r.MessageID, Body: r.Body}
	if !r.Time.IsZero() {
		w.Time = r.Time.UnixNano()
	}
	for _, h := range r.Headers {
		wh := wireHeader{Key: h.Key}
		switch v := h.Value.(type) {
		case string:
			wh.S = &v
		case int64:
			wh.I = &v
		case bool:
			wh.B = &v
		default:
			s := fmt.Sprint(v) // Append would have refused it
			wh.S = &s
		}
		w.Headers = append(w.Headers, wh)
	}
	return w
}

func fromWire(w *wireRecord) (*outbox.Record, error) {
	if w.MessageID == "" {
		return nil, errors.New("record without message_id")
	}
	if w.Exchange == "" {
		return nil, fmt.Errorf("record %s: no exchange", w.MessageID)
	}
	r := &outbox.Record{Exchange: w.Exchange, RoutingKey: w.RoutingKey, MessageID: w.MessageID, Body: w.Body}
	if w.Time != 0 {
		r.Time = time.Unix(0, w.Time)
	}
	for _, h := range w.Headers {
		n := 0
		var v any
		if h.S != nil {
			n, v = n+1, *h.S
		}
		if h.I != nil {
			n, v = n+1, *h.I
		}
		if h.B != nil {
			n, v = n+1, *h.B
		}
		if n != 1 || h.Key == "" {
			return nil, fmt.Errorf("record %s: header %q needs a key and exactly one of s, i, b", w.MessageID, h.Key)
		}
		r.Headers = append(r.Headers, outbox.Header{Key: h.Key, Value: v})
	}
	return r, nil
}

// HandOff sends every pending record of o (the memory spill first, then
// the file) to live peers, batch by batch, acking each batch in o only
// after a peer committed it. It tries peers whose forwarder is connected
// first, then those with the fewest pending records, and moves to the next
// when one fails. o's forwarder must
// be stopped: the hand-off is then o's only reader.
//
// It returns ErrNoPeer when no peer is alive, and otherwise the last
// peer's error if records remain; the result says how many were sent and
// how many remain.
func (c *Cluster) HandOff(ctx context.Context, o *outbox.Outbox) (HandoffResult, error) {
	var res HandoffResult
	peers := c.alivePeers()
	// Peers that reach the centre first (only this node may be cut off),
	// then the least loaded.
	slices.SortStableFunc(peers, func(a, b Member) int {
		ac, bc := a.Live.Forwarder == "connected", b.Live.Forwarder == "connected"
		if ac != bc {
			if ac {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Live.OutboxPending, b.Live.OutboxPending)
	})
	err := ErrNoPeer
	for _, p := range peers {
		n, perr := c.handOffTo(ctx, o, p)
		res.Sent += n
		if n > 0 {
			res.Peers = append(res.Peers, p.Name)
		}
		if perr == nil {
			err = nil
			break
		}
		err = fmt.Errorf("cluster: hand-off to %s: %w", p.Name, perr)
		// Commit the acks so far: the next peer then reads only what is
		// left (an uncommitted ack still reads as pending).
		o.Sync()
		c.log.Warn("hand-off to peer failed; trying the next", "peer", p.Name, "sent", n, "err", perr)
		if ctx.Err() != nil {
			break
		}
	}
	if serr := o.Sync(); serr != nil && err == nil {
		err = fmt.Errorf("cluster: hand-off: commit acks: %w", serr)
	}
	st := o.Stats()
	res.Pending, res.Spilled = st.Pending, st.Spill.Records
	if err == nil && (res.Pending > 0 || res.Spilled > 0) {
		err = fmt.Errorf("cluster: hand-off: %d records still pending, %d spilled", res.Pending, res.Spilled)
	}
	return res, err
}

// handOffTo sends o's records to p until none is left; it returns how many
// p acknowledged.
func (c *Cluster) handOffTo(ctx context.Context, o *outbox.Outbox, p Member) (int, error) {
	sent := 0
	send := func(recs []outbox.Record) error {
		b := handoffBatch{From: c.cfg.Name, Records: make([]wireRecord, len(recs))}
		for i := range recs {
			b.Records[i] = toWire(&recs[i])
		}
		var ack handoffAck
		if err := c.call(ctx, p, http.MethodPost, "/cluster/v1/handoff", b, &ack); err != nil {
			return err
		}
		if ack.Committed != len(recs) {
			return fmt.Errorf("peer committed %d of %d records", ack.Committed, len(recs))
		}
		return nil
	}
	var after uint64
	for {
		recs := o.ReadSpill(nil, after, c.cfg.HandoffRecords)
		if len(recs) == 0 {
			break
		}
		if err := send(recs); err != nil {
			return sent, err
		}
		seqs := seqsOf(recs)
		o.AckSpill(seqs...)
		after = seqs[len(seqs)-1]
		sent += len(recs)
		c.handoffSent.Add(uint64(len(recs)))
	}
	after = 0
	var buf []outbox.Record
	for {
		recs, err := o.ReadPending(buf[:0], after, c.cfg.HandoffRecords, c.cfg.HandoffBytes)
		if err != nil {
			return sent, fmt.Errorf("read outbox: %w", err)
		}
		if len(recs) == 0 {
			return sent, nil
		}
		if err := send(recs); err != nil {
			return sent, err
		}
		seqs := seqsOf(recs)
		if err := o.Ack(seqs...); err != nil {
			return sent, fmt.Errorf("ack outbox: %w", err)
		}
		after = seqs[len(seqs)-1]
		sent += len(recs)
		c.handoffSent.Add(uint64(len(recs)))
		c.log.Debug("hand-off batch acked", "peer", p.Name, "records", len(recs), "last_seq", after)
		buf = recs
	}
}

func seqsOf(recs []outbox.Record) []uint64 {
	s := make([]uint64, len(recs))
	for i := range recs {
		s[i] = recs[i].Seq
	}
	return s
}

// handoffParallel bounds the appends one batch runs at once: each waits
// for a commit, and concurrent ones share it.
const handoffParallel = 64

// serveHandoff is POST /cluster/v1/handoff: it appends every record of the
// batch to this node's outbox and answers only once they are committed.
func (c *Cluster) serveHandoff(w http.ResponseWriter, r *http.Request, body []byte) {
	if c.cfg.Outbox == nil {
		httpError(w, http.StatusServiceUnavailable, "this node takes no hand-offs (no outbox)")
		return
	}
	var b handoffBatch
	if err := json.Unmarshal(body, &b); err != nil {
		httpError(w, http.StatusBadRequest, "hand-off batch: "+err.Error())
		return
	}
	recs := make([]*outbox.Record, len(b.Records))
	for i := range b.Records {
		rec, err := fromWire(&b.Records[i])
		if err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("hand-off batch: record %d: %v", i, err))
			return
		}
		recs[i] = rec
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, handoffParallel)
	)
	for _, rec := range recs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Committed before it returns, whatever the durability, and
			// not spilled if the commit fails: the answer below tells the
			// sender it may delete its copy.
			if err := c.cfg.Outbox.AppendDurable(rec); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("record %s: %w", rec.MessageID, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		c.log.Error("hand-off batch not committed; the sender keeps it", "from", b.From, "records", len(recs), "err", firstErr)
		httpError(w, http.StatusServiceUnavailable, "not committed: "+firstErr.Error())
		return
	}
	c.handoffReceived.Add(uint64(len(recs)))
	c.log.Info("hand-off batch committed", "from", b.From, "records", len(recs))
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(handoffAck{Committed: len(recs)})
}
