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

// routeCounter gathers consecutive records of one route, so that
// Options.OnAsyncFate (fate) or Options.OnLost (lost) is called once per
// run rather than per record. Each record added is reported once; one
// whose route cannot be read (cannot happen: encoded by this Outbox) with
// an empty route. Owned by one goroutine.
type routeCounter struct {
	lost  bool // report to OnLost; else to OnAsyncFate with fate
	fate  Fate
	id    uint32
	n     int // of the current run
	total int // of every record added

	// byExchange counts lost records per exchange, for the log.
	byExchange map[string]int
}

// report calls the counter's callback for n records of r's route.
func (c *routeCounter) report(o *Outbox, r *Record, n int) {
	if !c.lost {
		o.opts.OnAsyncFate(r, c.fate, n)
		return
	}
	if c.byExchange == nil {
		c.byExchange = make(map[string]int)
	}
	c.byExchange[r.Exchange] += n
	if f := o.opts.OnLost; f != nil {
		f(r, n)
	}
}

// add counts one record, encoded as buf.
func (c *routeCounter) add(o *Outbox, buf []byte) {
	c.total++
	if !c.lost && o.opts.OnAsyncFate == nil {
		return
	}
	id, _ := recordRouteID(buf)
	if id != 0 && id == c.id {
		c.n++
		return
	}
	c.flush(o)
	if id != 0 {
		c.id, c.n = id, 1
		return
	}
	// A route stored inline: reported on its own.
	var r Record
	if decodeRecord(buf, &r, o.routes) != nil {
		c.report(o, &Record{}, 1)
		return
	}
	c.report(o, &Record{Exchange: r.Exchange, RoutingKey: r.RoutingKey, Headers: r.Headers}, 1)
}

// flush reports the run counted so far.
func (c *routeCounter) flush(o *Outbox) {
	if c.n == 0 {
		return
	}
	if rt := o.routes.lookup(uint64(c.id)); rt != nil {
		c.report(o, &Record{Exchange: rt.exchange, RoutingKey: rt.routingKey, Headers: rt.headers}, c.n)
	} else {
		c.report(o, &Record{}, c.n)
	}
	c.id, c.n = 0, 0
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
	c := routeCounter{fate: FateCommitted}
	for i, buf := range b.recs {
		if !waited[i] {
			c.add(o, *buf)
		}
	}
	c.flush(o)
}
