package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clickedge/clickedge/internal/backoff"
)

// The forwarder delivers the outbox to the broker: it reads pending records,
// publishes them through a Session with a window of unconfirmed publishes,
// and acknowledges in the outbox exactly the records the broker confirmed
// (basic.ack without basic.return). Everything else stays pending and is
// published again: after a reconnect, every record that was never
// confirmed; after a nack or return, the failed records, once a back-off
// has passed.
//
// A nack stops all publishing for the back-off: the broker failed to take a
// message, whatever its route. A return (unroutable) holds only its route,
// the pair (exchange, routing key): records of that route are skipped, and
// stay pending, until the route's own back-off has passed, while every
// other route flows on. An unbound `actions` exchange or a missing queue
// for link changes never delays clicks. A held route is then probed (at
// most ProbeWindow of its records in flight) until one is delivered.
//
// Two cursors share the window: the live cursor follows new records, and a
// backlog pass walks the older pending records from the start. A pass
// starts at every (re)connect and after every failure, so after an outage
// the backlog drains at full speed while live clicks keep flowing, each
// taking at least half the window when both have records.

// ForwarderConfig configures a Forwarder. Build it with
// DefaultForwarderConfig and change what you need.
type ForwarderConfig struct {
	// Publisher opens broker sessions. Required.
	Publisher Publisher

	// Window is the most publishes awaiting their confirm. Default 1024.
	Window int

	// ReadBatch is the most records read from the outbox at once. Default 256.
	ReadBatch int

	// ConfirmTimeout: when the oldest unconfirmed publish is older than
	// this and the broker has not blocked us, the session is presumed dead
	// and replaced. Default 30s.
	ConfirmTimeout time.Duration

	// PublishTimeout bounds one Publish while the broker blocks
	// publishing; the forwarder then retries without dropping the session.
	// Default 5s.
	PublishTimeout time.Duration

	// ReconnectMin and ReconnectMax bound the exponential back-off, with
	// jitter, between failed connection attempts, and between sessions
	// that ended without delivering a record. Defaults 100ms and 30s.
	ReconnectMin, ReconnectMax time.Duration

	// RetryMin and RetryMax bound the back-off after a nack (all
	// publishing) or a return (the returned route only). Defaults 1s and
	// 10s: RetryMax is how long delivery may take to resume after a queue
	// is bound again, and a retry costs only a probe window.
	RetryMin, RetryMax time.Duration

	// ProbeWindow is the window after a nack or return, until one publish
	// is delivered again: an unroutable exchange costs a few publishes per
	// retry, not the whole backlog. Default 16.
	ProbeWindow int

	// Logger receives connection changes and failures (rate-limited). Nil
	// discards.
	Logger *slog.Logger
}

// DefaultForwarderConfig returns the defaults described on ForwarderConfig.
func DefaultForwarderConfig() *ForwarderConfig {
	return &ForwarderConfig{
		Window:         1024,
		ReadBatch:      256,
		ConfirmTimeout: 30 * time.Second,
		PublishTimeout: 5 * time.Second,
		ReconnectMin:   100 * time.Millisecond,
		ReconnectMax:   30 * time.Second,
		RetryMin:       time.Second,
		RetryMax:       10 * time.Second,
		ProbeWindow:    16,
	}
}

// Forwarder delivers an outbox's records to the broker. See the comment at
// the top of forwarder.go.
type Forwarder struct {
	o   *Outbox
	cfg ForwarderConfig
	log *slog.Logger

	closing   chan struct{}
	closeCtx  context.Context // set before closing is closed
	cancel    context.CancelFunc
	ctx       context.Context
	done      chan struct{}
	closeOnce sync.Once

	// The loop's state; owned by the loop goroutine.
	live         uint64 // last disk seq handed to Publish by the live cursor
	spillAfter   uint64 // last spill seq handed to Publish
	maxPublished uint64 // highest disk seq published since start
	maxSpillPub  uint64
	lastLogged   string

	st forwarderCounters
}

type forwarderCounters struct {
	connected      atomic.Bool
	blocked        atomic.Bool
	retrying       atomic.Bool
	heldRoutes     atomic.Int64
	addr           atomic.Pointer[string]
	published      atomic.Uint64
	confirmed      atomic.Uint64
	nacked         atomic.Uint64
	returned       atomic.Uint64
	republished    atomic.Uint64
	reconnects     atomic.Uint64
	connectErrors  atomic.Uint64
	sessionErrors  atomic.Uint64
	inFlight       atomic.Int64
	lastErr        atomic.Pointer[errorAt]
	confirmLatency *histogram
}

// ForwarderStats is a snapshot of the forwarder.
type ForwarderStats struct {
	Connected     bool
	Addr          string // broker of the current session, "" when none
	Blocked       bool   // the broker blocked publishing (resource alarm)
	Retrying      bool   // backing off after a nack, or holding a route after a return
	HeldRoutes    int    // routes held after a return (their records wait; others flow)
	InFlight      int    // publishes awaiting their confirm
	Published     uint64
	Confirmed     uint64 // delivered: basic.ack without basic.return
	Nacked        uint64
	Returned      uint64 // unroutable: basic.return
	Republished   uint64 // publishes of records published before (after a reconnect or failure)
	Reconnects    uint64 // sessions opened after the first
	ConnectErrors uint64
	SessionErrors uint64 // sessions that failed after opening
	LastError     string
	LastErrorAt   time.Time
	// ConfirmLatency is seconds from publish to confirm.
	ConfirmLatency Histogram
}

// NewForwarder starts delivering o's records through cfg.Publisher. Close
// stops it.
func NewForwarder(o *Outbox, cfg *ForwarderConfig) (*Forwarder, error) {
	if cfg == nil || cfg.Publisher == nil {
		return nil, errors.New("outbox: forwarder needs a Publisher")
	}
	c := *cfg
	d := DefaultForwarderConfig()
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.ReadBatch <= 0 {
		c.ReadBatch = d.ReadBatch
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = d.ConfirmTimeout
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = d.PublishTimeout
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = d.ReconnectMin
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = max(d.ReconnectMax, c.ReconnectMin)
	}
	if c.RetryMin <= 0 {
		c.RetryMin = d.RetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(d.RetryMax, c.RetryMin)
	}
	if c.ProbeWindow <= 0 {
		c.ProbeWindow = d.ProbeWindow
	}
	c.ProbeWindow = min(c.ProbeWindow, c.Window)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f := &Forwarder{
		o:       o,
		cfg:     c,
		log:     c.Logger,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	f.st.confirmLatency = newHistogram(LatencyBuckets)
	f.ctx, f.cancel = context.WithCancel(context.Background())
	// Records committed before the start are the first backlog pass.
	f.live = o.nextSeq.Load() - 1
	go func() {
		defer close(f.done)
		f.run()
	}()
	return f, nil
}

// Close stops reading records, waits until ctx ends for the confirms of
// what is in flight, acknowledges the confirmed records, and closes the
// session. Records without a confirm stay pending. Safe to call twice.
func (f *Forwarder) Close(ctx context.Context) error {
	f.closeOnce.Do(func() {
		f.closeCtx = ctx
		close(f.closing)
	})
	select {
	case <-f.done:
	case <-ctx.Done():
		f.cancel() // interrupt a Connect or a blocked Publish
		<-f.done
	}
	f.cancel()
	return f.o.Sync()
}

// Stats returns a snapshot.
func (f *Forwarder) Stats() ForwarderStats {
	s := ForwarderStats{
		Connected:      f.st.connected.Load(),
		Blocked:        f.st.blocked.Load(),
		Retrying:       f.st.retrying.Load() || f.st.heldRoutes.Load() > 0,
		HeldRoutes:     int(f.st.heldRoutes.Load()),
		InFlight:       int(f.st.inFlight.Load()),
		Published:      f.st.published.Load(),
		Confirmed:      f.st.confirmed.Load(),
		Nacked:         f.st.nacked.Load(),
		Returned:       f.st.returned.Load(),
		Republished:    f.st.republished.Load(),
		Reconnects:     f.st.reconnects.Load(),
		ConnectErrors:  f.st.connectErrors.Load(),
		SessionErrors:  f.st.sessionErrors.Load(),
		ConfirmLatency: f.st.confirmLatency.snapshot(),
	}
	if a := f.st.addr.Load(); a != nil && s.Connected {
		s.Addr = *a
	}
	if e := f.st.lastErr.Load(); e != nil {
		s.LastError = e.err.Error()
		s.LastErrorAt = e.at
	}
	return s
}

func (f *Forwarder) closed() bool {
	select {
	case <-f.closing:
		return true
	default:
		return false
	}
}

func (f *Forwarder) setErr(err error) {
	f.st.lastErr.Store(&errorAt{err: err, at: time.Now()})
}

// run connects, serves sessions and reconnects until Close.
func (f *Forwarder) run() {
	wait := backoff.Backoff{Min: f.cfg.ReconnectMin, Max: f.cfg.ReconnectMax}
	sessions := 0
	for !f.closed() {
		sess, err := f.cfg.Publisher.Connect(f.ctx)
		if err != nil {
			f.st.connectErrors.Add(1)
			f.setErr(err)
			// Log the first failure and changes, not every retry.
			if msg := err.Error(); msg != f.lastLogged {
				f.log.Warn("forwarder cannot reach the broker; clicks wait in the outbox", "err", err)
				f.lastLogged = msg
			}
			if !f.sleep(wait.Next()) {
				return
			}
			continue
		}
		f.lastLogged = ""
		if sessions++; sessions > 1 {
			f.st.reconnects.Add(1)
		}
		addr := sess.Addr()
		f.st.addr.Store(&addr)
		f.st.connected.Store(true)
		f.log.Info("forwarder connected", "broker", addr)

		confirmed := f.st.confirmed.Load()
		err = f.serve(sess)

		f.st.connected.Store(false)
		f.st.blocked.Store(false)
		f.st.inFlight.Store(0)
		sess.Close()
		// What the session had in flight from the spill may go back into
		// the file now.
		f.o.releaseSpill()
		// Only a session that delivered something resets the back-off: one
		// that keeps failing right after it opens (a broker that accepts
		// and then drops us) is retried ever more slowly, like a refused
		// connection (harden #5).
		if f.st.confirmed.Load() > confirmed {
			wait.Reset()
		}
		if err != nil {
			f.st.sessionErrors.Add(1)
			f.setErr(err)
			f.log.Warn("forwarder session ended; unconfirmed records will be published again", "broker", addr, "err", err)
			f.lastLogged = err.Error()
			if !f.sleep(wait.Next()) {
				return
			}
		}
	}
}

// sleep waits for d or Close, reporting false on Close.
func (f *Forwarder) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.closing:
		return false
	}
}

// flight is one publish awaiting its confirm.
type flight struct {
	seq     uint64
	spilled bool
	sent    time.Time
	route   route
}

// route is where a record goes: returns hold a route, not the forwarder.
type route struct{ exchange, key string }

// hold is a route's back-off after a return.
type hold struct {
	until    time.Time       // skip the route's records until then
	retry    backoff.Backoff // the back-off that sets until
	probing  bool            // past until: at most ProbeWindow in flight, until one delivery
	inflight int             // the route's publishes awaiting their confirm
	skipped  bool            // records were returned or skipped: a pass must publish them again
}

// flightKey identifies a record across the disk and spill sequences.
type flightKey struct {
	seq     uint64
	spilled bool
}

// pass is a walk over the older pending records, from the start.
type pass struct {
	after     uint64 // last seq read
	end       uint64 // the pass covers seqs <= end
	republish uint64 // seqs <= this were published before the pass
	active    bool
	probing   bool // failure recovery: small window until one delivery
	retryAt   time.Time
}

// session is the state of one serve call.
type session struct {
	s        Session
	inflight map[uint64]flight // by tag
	inSet    map[flightKey]struct{}
	pass     pass
	paused   bool // after a failure, until pass.retryAt
	// retry spaces the retries after a nack, a return or a failed ack
	// commit (RetryMin to RetryMax); reset by a delivery after one.
	retry backoff.Backoff
	// passDue, when set, is when to try again a backlog pass that could
	// not start (its acks did not commit); passProbe is its mode.
	passDue   time.Time
	passProbe bool
	acks      []uint64
	spillAck  []uint64
	buf       []Record
	// holds are the routes held after a return (and routes with records
	// in flight while one is). Empty in the common case, so the check per
	// publish is one length test.
	holds map[route]*hold
	// holdPass asks for a backlog pass: a held route with skipped
	// records was delivered again.
	holdPass bool
}

// serve runs one session until it fails or the forwarder closes. It returns
// nil on a clean close.
func (f *Forwarder) serve(s Session) error {
	ss := &session{
		s:        s,
		inflight: make(map[uint64]flight, f.cfg.Window),
		inSet:    make(map[flightKey]struct{}, f.cfg.Window),
		holds:    map[route]*hold{},
		retry:    backoff.Backoff{Min: f.cfg.RetryMin, Max: f.cfg.RetryMax},
	}
	defer f.st.heldRoutes.Store(0)
	// Everything pending up to the live cursor was never confirmed on this
	// session: publish it again, from the oldest.
	f.startPass(ss, false)
	f.spillAfter = 0
	// However the session ends, the confirms it already delivered count
	// (harden #5): without this, records confirmed just before a
	// connection dropped were published again.
	defer f.takeConfirms(ss)

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := f.fill(ss); err != nil {
			return err
		}
		select {
		case c := <-s.Confirms():
			f.confirm(ss, c)
			// Take every confirm that is already there, then ack once.
			for more := true; more; {
				select {
				case c := <-s.Confirms():
					f.confirm(ss, c)
				default:
					more = false
				}
			}
			f.flushAcks(ss)
		case <-s.Done():
			return fmt.Errorf("session: %w", s.Err())
		case <-f.o.Notify():
		case <-tick.C:
			if err := f.checkTimeouts(ss); err != nil {
				return err
			}
		case <-f.closing:
			return f.finish(ss)
		}
	}
}

// takeConfirms applies every confirm the session has already delivered and
// acknowledges them. The channel is never closed, so it reads until empty.
func (f *Forwarder) takeConfirms(ss *session) {
	for {
		select {
		case c := <-ss.s.Confirms():
			f.confirm(ss, c)
			continue
		default:
		}
		break
	}
	f.flushAcks(ss)
}

// startPass begins a backlog pass over the pending records up to the live
// cursor. After a failure it starts in probe mode.
func (f *Forwarder) startPass(ss *session, probe bool) {
	// Acks of earlier confirms may not be committed yet; a pass started
	// before they are would publish those records again. If the commit
	// fails, the pass waits for a retry (harden #5).
	if err := f.o.commitAcks(); err != nil {
		// Live records and the spill keep flowing meanwhile: a failing disk
		// is when the spill matters most.
		delay := ss.retry.Next()
		err = fmt.Errorf("commit the acks before a backlog pass: %w", err)
		f.setErr(err)
		if ss.passDue.IsZero() {
			f.log.Warn("forwarder: backlog pass postponed; the outbox cannot commit acks", "err", err,
				"retry_in", delay.String())
		}
		ss.pass.active = false
		ss.passDue = time.Now().Add(delay)
		ss.passProbe = probe
		return
	}
	ss.passDue = time.Time{}
	ss.pass = pass{
		end:       f.live,
		republish: f.maxPublished,
		active:    true,
		probing:   probe,
	}
}

// window is how many more publishes may be in flight now.
func (f *Forwarder) window(ss *session) int {
	w := f.cfg.Window
	if ss.pass.probing {
		w = f.cfg.ProbeWindow
	}
	return w - len(ss.inflight)
}

// fill publishes records until the window is full or nothing is left.
func (f *Forwarder) fill(ss *session) error {
	if ss.paused {
		if time.Now().Before(ss.pass.retryAt) {
			return nil
		}
		ss.paused = false
		f.st.retrying.Store(false)
		f.spillAfter = 0
		f.startPass(ss, true)
	} else if !ss.passDue.IsZero() && !time.Now().Before(ss.passDue) {
		f.startPass(ss, ss.passProbe)
	}
	f.releaseHolds(ss)
	for {
		if f.closed() {
			return nil
		}
		room := f.window(ss)
		if room <= 0 || ss.paused {
			return nil
		}
		progress := false

		// The spill first: it does not survive a crash.
		ss.buf = f.o.ReadSpill(ss.buf[:0], f.spillAfter, min(room, f.cfg.ReadBatch))
		for i := range ss.buf {
			r := &ss.buf[i]
			k := flightKey{r.Seq, true}
			if _, busy := ss.inSet[k]; busy {
				f.spillAfter = r.Seq
				continue
			}
			if f.held(ss, r) {
				f.spillAfter = r.Seq
				progress = true // read on: other routes may follow
				continue
			}
			ok, err := f.publish(ss, r, r.Seq <= f.maxSpillPub)
			if !ok {
				return err
			}
			f.spillAfter = r.Seq
			f.maxSpillPub = max(f.maxSpillPub, r.Seq)
			progress = true
		}

		// Live and backlog share what is left; each may take half when
		// both have records.
		room = f.window(ss)
		liveRoom := room
		if ss.pass.active {
			liveRoom = (room + 1) / 2
		}
		n, err := f.fillLive(ss, liveRoom)
		if err != nil {
			return err
		}
		progress = progress || n > 0
		if ss.pass.active {
			n, err := f.fillPass(ss, f.window(ss))
			if err != nil {
				return err
			}
			progress = progress || n > 0
		}
		if !progress {
			return nil
		}
	}
}

func (f *Forwarder) fillLive(ss *session, room int) (int, error) {
	if room <= 0 {
		return 0, nil
	}
	var err error
	ss.buf, err = f.o.ReadPending(ss.buf[:0], f.live, min(room, f.cfg.ReadBatch), 0)
	if err != nil {
		return 0, f.readFailed(ss, err)
	}
	n := 0
	for i := range ss.buf {
		r := &ss.buf[i]
		if f.held(ss, r) {
			f.live = r.Seq // it stays pending; the pass after its hold takes it
			n++            // progress: read on, other routes may follow
			continue
		}
		ok, err := f.publish(ss, r, r.Seq <= f.maxPublished)
		if !ok {
			return n, err
		}
		f.live = r.Seq
		f.maxPublished = max(f.maxPublished, r.Seq)
		n++
	}
	return n, nil
}

func (f *Forwarder) fillPass(ss *session, room int) (int, error) {
	p := &ss.pass
	if room <= 0 {
		return 0, nil
	}
	var err error
	ss.buf, err = f.o.ReadPending(ss.buf[:0], p.after, min(room, f.cfg.ReadBatch), 0)
	if err != nil {
		return 0, f.readFailed(ss, err)
	}
	n := 0
	for i := range ss.buf {
		r := &ss.buf[i]
		if r.Seq > p.end {
			p.active = false
			return n, nil
		}
		if _, busy := ss.inSet[flightKey{r.Seq, false}]; !busy {
			if f.held(ss, r) {
				n++ // progress: read on, other routes may follow
			} else {
				ok, err := f.publish(ss, r, r.Seq <= p.republish)
				if !ok {
					return n, err
				}
				f.maxPublished = max(f.maxPublished, r.Seq)
				n++
			}
		}
		p.after = r.Seq
	}
	if len(ss.buf) == 0 {
		p.active = false
	}
	return n, nil
}

// readFailed handles an outbox read error: a damaged record. It is never
// skipped: the forwarder stops reading and retries later, loudly.
func (f *Forwarder) readFailed(ss *session, err error) error {
	f.setErr(err)
	f.log.Error("forwarder cannot read the outbox; delivery is stopped", "err", err)
	f.pause(ss)
	return nil
}

// publish sends r. It reports false when the record was not handed to the
// session: err is nil if the broker blocked us (the session lives on),
// non-nil if the session failed.
func (f *Forwarder) publish(ss *session, r *Record, again bool) (bool, error) {
	ctx := f.ctx
	if ss.s.Blocked() {
		// Only a blocked broker makes Publish wait for ctx; a timer per
		// publish would cost more than the publish.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(f.ctx, f.cfg.PublishTimeout)
		defer cancel()
	}
	tag, err := ss.s.Publish(ctx, r)
	if errors.Is(err, ErrBlocked) {
		f.st.blocked.Store(true)
		return false, nil
	}
	if err != nil {
		if f.ctx.Err() != nil {
			return false, nil // closing
		}
		return false, fmt.Errorf("publish: %w", err)
	}
	f.st.blocked.Store(false)
	rt := route{r.Exchange, r.RoutingKey}
	ss.inflight[tag] = flight{seq: r.Seq, spilled: r.Spilled, sent: time.Now(), route: rt}
	if len(ss.holds) > 0 {
		if h := ss.holds[rt]; h != nil {
			h.inflight++
		}
	}
	ss.inSet[flightKey{r.Seq, r.Spilled}] = struct{}{}
	f.st.inFlight.Store(int64(len(ss.inflight)))
	f.st.published.Add(1)
	if again {
		f.st.republished.Add(1)
	}
	return true, nil
}

// confirm applies one broker answer.
func (f *Forwarder) confirm(ss *session, c Confirm) {
	fl, ok := ss.inflight[c.Tag]
	if !ok {
		return // a confirm for a tag we do not know: nothing to acknowledge
	}
	delete(ss.inflight, c.Tag)
	delete(ss.inSet, flightKey{fl.seq, fl.spilled})
	f.st.inFlight.Store(int64(len(ss.inflight)))
	f.st.confirmLatency.observe(time.Since(fl.sent).Seconds())
	var h *hold
	if len(ss.holds) > 0 {
		if h = ss.holds[fl.route]; h != nil {
			h.inflight--
		}
	}
	if c.Delivered() {
		if h != nil {
			// The route takes messages again: end its hold, and let a
			// pass publish what was skipped meanwhile.
			delete(ss.holds, fl.route)
			f.st.heldRoutes.Store(int64(len(ss.holds)))
			ss.holdPass = ss.holdPass || h.skipped
			f.log.Info("forwarder: route delivers again", "exchange", fl.route.exchange, "routing_key", fl.route.key)
		}
		f.st.confirmed.Add(1)
		if fl.spilled {
			ss.spillAck = append(ss.spillAck, fl.seq)
		} else {
			ss.acks = append(ss.acks, fl.seq)
		}
		if ss.pass.probing {
			ss.pass.probing = false
			ss.retry.Reset()
		}
		return
	}
	if c.Returned {
		f.st.returned.Add(1)
		f.setErr(fmt.Errorf("broker returned a message to exchange %q with routing key %q (unroutable): %s",
			fl.route.exchange, fl.route.key, c.Reason))
		f.holdRoute(ss, fl.route, h, c.Reason)
		return
	}
	f.st.nacked.Add(1)
	err := fmt.Errorf("broker nacked a message with routing key %q: %s", fl.route.key, c.Reason)
	f.setErr(err)
	if !ss.paused {
		f.log.Warn("forwarder: message not delivered; it stays pending and is retried", "routing_key", fl.route.key,
			"outcome", "nacked", "reason", c.Reason, "retry_in", ss.retry.Base().String())
	}
	f.pause(ss)
}

// holdRoute holds rt after a return: its records wait out a back-off that
// doubles with each failed probe, while other routes flow. Returns of
// publishes made before the hold began change nothing.
func (f *Forwarder) holdRoute(ss *session, rt route, h *hold, reason string) {
	if h != nil {
		h.skipped = true // the returned record: a pass publishes it again
	}
	switch {
	case h == nil:
		h = &hold{skipped: true, retry: backoff.Backoff{Min: f.cfg.RetryMin, Max: f.cfg.RetryMax}}
		for _, fl := range ss.inflight {
			if fl.route == rt {
				h.inflight++
			}
		}
		ss.holds[rt] = h
		f.st.heldRoutes.Store(int64(len(ss.holds)))
	case h.probing:
		h.probing = false // a probe came back: hold again, longer
	default:
		return // already held
	}
	d := h.retry.Next()
	h.until = time.Now().Add(d)
	f.log.Warn("forwarder: route unroutable; its records stay pending and are retried, other routes flow",
		"exchange", rt.exchange, "routing_key", rt.key, "reason", reason, "retry_in", d.String())
}

// held reports whether r's route is held, so r must wait (it stays
// pending). A route past its back-off is probed: at most ProbeWindow of its
// records in flight until one is delivered.
func (f *Forwarder) held(ss *session, r *Record) bool {
	if len(ss.holds) == 0 {
		return false
	}
	h := ss.holds[route{r.Exchange, r.RoutingKey}]
	if h == nil || h.probing && h.inflight < f.cfg.ProbeWindow {
		return false
	}
	h.skipped = true
	return true
}

// releaseHolds starts probing the held routes whose back-off has passed,
// and starts a backlog pass to publish the records they skipped, oldest
// first (the spill's too).
func (f *Forwarder) releaseHolds(ss *session) {
	due := ss.holdPass
	ss.holdPass = false
	if len(ss.holds) > 0 {
		now := time.Now()
		for _, h := range ss.holds {
			if !h.probing && !now.Before(h.until) {
				h.probing = true
				due = due || h.skipped
				h.skipped = false
			}
		}
	}
	if due && !ss.paused {
		f.spillAfter = 0
		f.startPass(ss, ss.pass.probing)
	}
}

// pause stops publishing after a failure until a back-off has passed; then
// a probing pass publishes the failed records again, oldest first.
func (f *Forwarder) pause(ss *session) {
	if ss.paused {
		return
	}
	ss.pass.retryAt = time.Now().Add(ss.retry.Next())
	ss.pass.active = false
	ss.paused = true
	f.st.retrying.Store(true)
}

func (f *Forwarder) flushAcks(ss *session) {
	if len(ss.acks) > 0 {
		_ = f.o.Ack(ss.acks...)
		ss.acks = ss.acks[:0]
	}
	if len(ss.spillAck) > 0 {
		f.o.AckSpill(ss.spillAck...)
		ss.spillAck = ss.spillAck[:0]
	}
}

// checkTimeouts replaces a session whose confirms stopped coming.
func (f *Forwarder) checkTimeouts(ss *session) error {
	if len(ss.inflight) == 0 || ss.s.Blocked() {
		return nil
	}
	var oldest time.Time
	for _, fl := range ss.inflight {
		if oldest.IsZero() || fl.sent.Before(oldest) {
			oldest = fl.sent
		}
	}
	if d := time.Since(oldest); d > f.cfg.ConfirmTimeout {
		return fmt.Errorf("no confirm for %v (%d publishes in flight): presuming the connection dead", d.Round(time.Second), len(ss.inflight))
	}
	return nil
}

// finish waits for the confirms of what is in flight, until the close
// deadline, and acknowledges what was confirmed.
func (f *Forwarder) finish(ss *session) error {
	ctx := f.closeCtx
	for len(ss.inflight) > 0 {
		select {
		case c := <-ss.s.Confirms():
			f.confirm(ss, c)
		case <-ss.s.Done():
			return nil // serve takes what was delivered
		case <-ctx.Done():
			f.flushAcks(ss)
			f.log.Warn("forwarder closed with publishes unconfirmed; they stay pending", "in_flight", len(ss.inflight))
			return nil
		}
	}
	f.flushAcks(ss)
	return nil
}
