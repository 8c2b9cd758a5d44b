package outbox

// Fate is what became of a record whose Append returned before its commit
// (Async mode); see Options.OnAsyncFate.
type Fate uint8

const (
	// FateCommitted: the record is in the file.
	FateCommitted Fate = iota
	// FateSpilled: its commit failed and it is in the memory spill.
	FateSpilled
)

func (f Fate) String() string {
	switch f {
	case FateCommitted:
		return "committed"
	case FateSpilled:
		return "spilled"
	}
	return "unknown"
}

// fateCounter gathers the fates of consecutive records of one route, so
// that Options.OnAsyncFate is called once per run rather than per record.
// Owned by one goroutine.
type fateCounter struct {
	id   uint32
	fate Fate
	n    int
}

// add counts one record, encoded as buf.
func (c *fateCounter) add(o *Outbox, buf []byte, f Fate) {
	if o.opts.OnAsyncFate == nil {
		return
	}
	id, _ := recordRouteID(buf)
	if id != 0 && id == c.id && f == c.fate {
		c.n++
		return
	}
	c.flush(o)
	if id != 0 {
		c.id, c.fate, c.n = id, f, 1
		return
	}
	// A route stored inline: reported on its own.
	var r Record
	if decodeRecord(buf, &r, o.routes) == nil {
		o.opts.OnAsyncFate(&Record{Exchange: r.Exchange, RoutingKey: r.RoutingKey, Headers: r.Headers}, f, 1)
	}
}

// flush reports the run counted so far.
func (c *fateCounter) flush(o *Outbox) {
	if c.n == 0 {
		return
	}
	if rt := o.routes.lookup(uint64(c.id)); rt != nil {
		o.opts.OnAsyncFate(&Record{Exchange: rt.exchange, RoutingKey: rt.routingKey, Headers: rt.headers}, c.fate, c.n)
	}
	*c = fateCounter{}
}

// reportCommitted reports the records of a committed Async batch whose
// Appends returned at once: all but AppendIndexed's, whose callers waited.
func (o *Outbox) reportCommitted(b *batch) {
	if o.opts.OnAsyncFate == nil {
		return
	}
	var waited map[int]bool
	if len(b.index) > 0 {
		waited = make(map[int]bool, len(b.index))
		for _, op := range b.index {
			waited[op.rec] = true
		}
	}
	var c fateCounter
	for i, buf := range b.recs {
		if !waited[i] {
			c.add(o, *buf, FateCommitted)
		}
	}
	c.flush(o)
}
