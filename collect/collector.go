package collect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/backoff"
)

// Header names on a dead-lettered copy, beside the original's headers.
const (
	ReasonHeader = "x-clickedge-reason"        // a Reason
	DetailHeader = "x-clickedge-reason-detail" // which field and why
	QueueHeader  = "x-clickedge-queue"         // the queue it was consumed from
)

// Config configures a Collector. DefaultConfig gives every default.
type Config struct {
	// URLs are the brokers, tried in order on every (re)connect; required.
	URLs []string
	// QueueType is the x-queue-type of the queues it declares: "quorum"
	// (replicated on a RabbitMQ cluster) or "classic".
	QueueType string
	// ClickExchange and ActionExchange are the topic exchanges the edges
	// and registration nodes publish to; declared durable if missing.
	ClickExchange, ActionExchange string
	// ClickQueue is bound to ClickExchange with "click.#", ActionQueue to
	// ActionExchange with "action.#"; DeadQueue receives poison through
	// the default exchange. All durable, all declared.
	ClickQueue, ActionQueue, DeadQueue string
	// BatchSize is the most messages in one transaction; BatchInterval the
	// longest the first message of a batch waits for more.
	BatchSize     int
	BatchInterval time.Duration
	// Prefetch is the broker's unacked window per consumer; it must hold
	// a batch being written and the next one filling. Zero means
	// 2 * BatchSize.
	Prefetch int
	// Writers is how many lanes consume in parallel, each with its own
	// AMQP channel, batches and PostgreSQL connection: while one waits for
	// its commit, another parses or copies. Zero means 2.
	Writers int
	// Heartbeat and DialTimeout are the AMQP connection's; DialTimeout
	// also bounds the channel and topology setup after the handshake.
	Heartbeat, DialTimeout time.Duration
	// RetryMin and RetryMax bound the back-off (doubling) between broker
	// connection attempts and between attempts to write a batch.
	RetryMin, RetryMax time.Duration
	// ShutdownTimeout bounds how long a stop waits for the batch in hand
	// to be written and acked; what is not acked is redelivered later.
	ShutdownTimeout time.Duration
	// ConnectionName is shown by the broker's management UI.
	ConnectionName string
	// Store writes the rows; required. Each further writer gets a Store
	// of the same configuration.
	Store *Store
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock for lag and batch latency; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults; URLs and Store must still be set.
func DefaultConfig() *Config {
	return &Config{
		QueueType:       "quorum",               // survives a broker node's loss on a cluster
		ClickExchange:   "clicks",               // DESIGN: the edges publish there
		ActionExchange:  "actions",              // DESIGN: registration nodes publish there
		ClickQueue:      "collector.clicks",     // DESIGN
		ActionQueue:     "collector.actions",    // DESIGN
		DeadQueue:       "collector.dead",       // DESIGN
		BatchSize:       2000,                   // docs/performance.md: throughput flat above ~1000
		BatchInterval:   100 * time.Millisecond, // the latency a lone click waits at most
		Heartbeat:       5 * time.Second,
		DialTimeout:     5 * time.Second,
		RetryMin:        100 * time.Millisecond,
		RetryMax:        10 * time.Second,
		ShutdownTimeout: 10 * time.Second,
		ConnectionName:  "clickedge collect",
	}
}

// Collector consumes clicks and actions and writes them through a Store.
type Collector struct {
	cfg    Config
	log    *slog.Logger
	stores []*Store // one per writer
	st     stats
	seq    atomic.Uint64 // batch sequence

	// afterCommit, when set by a test, runs in the writer between a
	// batch's commit and its ack.
	afterCommit func(clicks *amqp.Channel)
}

// New checks cfg and returns a Collector; Run starts it.
func New(cfg *Config) (*Collector, error) {
	c := *cfg
	switch {
	case len(c.URLs) == 0:
		return nil, errors.New("collect: Config.URLs is empty")
	case c.Store == nil:
		return nil, errors.New("collect: Config.Store is nil")
	case c.QueueType != "quorum" && c.QueueType != "classic":
		return nil, fmt.Errorf("collect: Config.QueueType must be quorum or classic, got %q", c.QueueType)
	case c.BatchSize < 1:
		return nil, fmt.Errorf("collect: Config.BatchSize must be > 0, got %d", c.BatchSize)
	case c.BatchInterval <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.DialTimeout <= 0:
		return nil, errors.New("collect: Config: BatchInterval, RetryMin and DialTimeout must be > 0, RetryMax >= RetryMin")
	}
	if c.Writers <= 0 {
		c.Writers = 2
	}
	if c.Prefetch <= 0 {
		c.Prefetch = 2 * c.BatchSize
	}
	if c.Prefetch < c.BatchSize {
		return nil, fmt.Errorf("collect: Config.Prefetch (%d) must hold a batch (%d)", c.Prefetch, c.BatchSize)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	col := &Collector{cfg: c, log: c.Logger, stores: []*Store{c.Store}}
	for range c.Writers - 1 {
		col.stores = append(col.stores, c.Store.clone())
	}
	return col, nil
}

// Stats returns a snapshot of the counters; safe for concurrent use.
func (c *Collector) Stats() Stats { return c.st.snapshot() }

// Run consumes until ctx ends, reconnecting to the broker and retrying the
// database as long as it takes. When ctx ends it stops reading, writes and
// acks the batch in hand (within ShutdownTimeout), closes the connections
// and returns nil. Nothing is acked before its transaction committed.
func (c *Collector) Run(ctx context.Context) error {
	defer func() {
		for _, s := range c.stores {
			s.Close()
		}
	}()
	wait := c.backoff()
	for ctx.Err() == nil {
		conn, err := c.dial()
		if err != nil {
			err = fmt.Errorf("broker unreachable: %w", err)
		} else {
			opened := c.cfg.Now()
			err = c.session(ctx, conn)
			conn.Close()
			c.st.releaseAll()
			c.st.update(func(s *Stats) { s.Connected = false })
			if ctx.Err() != nil {
				return nil
			}
			err = fmt.Errorf("broker session ended: %w", err)
			if c.cfg.Now().Sub(opened) > c.cfg.RetryMax {
				wait.Reset() // it was up a while: start the back-off again
			}
		}
		d := wait.Next()
		c.log.Warn("reconnecting to the broker", "retry_in", d.String(), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	return nil
}

func (c *Collector) dial() (*amqp.Connection, error) {
	var errs []error
	for _, u := range c.cfg.URLs {
		props := amqp.NewConnectionProperties()
		props.SetClientConnectionName(c.cfg.ConnectionName)
		conn, err := amqp.DialConfig(u, amqp.Config{
			Heartbeat:  c.cfg.Heartbeat,
			Dial:       amqp.DefaultDial(c.cfg.DialTimeout),
			Properties: props,
		})
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", redact(u), err))
	}
	return nil, errors.Join(errs...)
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// channels are a session's AMQP channels and its deliveries.
//
// Each queue has its own AMQP channel: delivery tags are numbered per
// channel, and deliveries of two consumers on one channel reach us through
// two Go channels, so an ack multiple on a shared channel could cover a
// message still waiting in the other consumer's buffer, uncommitted.
type channels struct {
	clickCh, actionCh *amqp.Channel // one consumer each; acks
	dead              *amqp.Channel // confirm mode; dead-letter publishes
	clicks, actions   <-chan amqp.Delivery
	closed            []chan *amqp.Error // the channels' close reasons
}

// setup declares the topology and starts consuming. A broker that
// accepted the handshake but does not answer (booting, overloaded) would
// leave it waiting forever: the connection is closed after DialTimeout.
func (c *Collector) setup(conn *amqp.Connection) ([]*channels, error) {
	timer := time.AfterFunc(c.cfg.DialTimeout, func() { conn.Close() })
	var lanes []*channels
	err := c.declare(conn)
	for i := 0; err == nil && i < c.cfg.Writers; i++ {
		var chs *channels
		if chs, err = c.openLane(conn); err == nil {
			lanes = append(lanes, chs)
		}
	}
	if !timer.Stop() {
		return nil, fmt.Errorf("setup not done within %v: %v", c.cfg.DialTimeout, err)
	}
	return lanes, err
}

// declare declares the exchanges and queues on a channel of its own.
func (c *Collector) declare(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	args := amqp.Table{amqp.QueueTypeArg: c.cfg.QueueType}
	for _, q := range []struct{ exchange, queue, key string }{
		{c.cfg.ClickExchange, c.cfg.ClickQueue, "click.#"},
		{c.cfg.ActionExchange, c.cfg.ActionQueue, "action.#"},
	} {
		if err := ch.ExchangeDeclare(q.exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %q: %w", q.exchange, err)
		}
		if _, err := ch.QueueDeclare(q.queue, true, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %q (x-queue-type %s): %w", q.queue, c.cfg.QueueType, err)
		}
		if err := ch.QueueBind(q.queue, q.key, q.exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %q to %q with %q: %w", q.queue, q.exchange, q.key, err)
		}
	}
	if _, err := ch.QueueDeclare(c.cfg.DeadQueue, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %q (x-queue-type %s): %w", c.cfg.DeadQueue, c.cfg.QueueType, err)
	}
	return nil
}

// openLane opens one lane's channels and starts its consumers.
func (c *Collector) openLane(conn *amqp.Connection) (*channels, error) {
	chs := new(channels)
	consume := func(queue string) (*amqp.Channel, <-chan amqp.Delivery, error) {
		ch, err := conn.Channel()
		if err != nil {
			return nil, nil, fmt.Errorf("open channel: %w", err)
		}
		chs.closed = append(chs.closed, ch.NotifyClose(make(chan *amqp.Error, 1)))
		if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
			return nil, nil, fmt.Errorf("qos: %w", err)
		}
		ds, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("consume %q: %w", queue, err)
		}
		return ch, ds, nil
	}
	var err error
	if chs.clickCh, chs.clicks, err = consume(c.cfg.ClickQueue); err != nil {
		return nil, err
	}
	if chs.actionCh, chs.actions, err = consume(c.cfg.ActionQueue); err != nil {
		return nil, err
	}
	if chs.dead, err = conn.Channel(); err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	chs.closed = append(chs.closed, chs.dead.NotifyClose(make(chan *amqp.Error, 1)))
	if err := chs.dead.Confirm(false); err != nil {
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	return chs, nil
}

// batch is what one transaction writes and an ack multiple per queue
// acks.
type batch struct {
	seq                 uint64
	first               time.Time // arrival of the first message
	clickTag, actionTag uint64    // the last delivery tag of each channel; 0 if none
	n                   int
	clicks              []*Click
	actions             []*Action
	// The deliveries the rows came from, index for index, in case the
	// database refuses a row and it must be dead-lettered.
	clickDs, actionDs []amqp.Delivery
	dead              []deadLetter
}

type deadLetter struct {
	d      amqp.Delivery
	queue  string
	poison *Poison
}

// session consumes on one connection, in Writers lanes, until it breaks
// or ctx ends.
func (c *Collector) session(ctx context.Context, conn *amqp.Connection) error {
	lanes, err := c.setup(conn)
	if err != nil {
		return err
	}
	c.st.update(func(s *Stats) { s.Connected = true; s.Sessions++ })
	c.log.Info("consuming", "clicks", c.cfg.ClickQueue, "actions", c.cfg.ActionQueue,
		"queue_type", c.cfg.QueueType, "batch_size", c.cfg.BatchSize, "prefetch", c.cfg.Prefetch,
		"writers", c.cfg.Writers)
	// A lane that fails closes the connection, which ends the others: the
	// session is reconnected whole.
	errs := make(chan error, len(lanes))
	for i, chs := range lanes {
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		go func() {
			err := c.lane(ctx, chs, c.stores[i], closed)
			errs <- err // first, so that the cause is the first error read
			if err != nil {
				conn.Close()
			}
		}()
	}
	var first error
	for range lanes {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// lane consumes on one channel: this goroutine reads deliveries into
// batches; a writer goroutine commits them in order and acks each after
// its commit, so the next batch fills while the last one is written.
func (c *Collector) lane(ctx context.Context, chs *channels, store *Store, closed chan *amqp.Error) error {

	// wctx ends the writer's retries: when the connection is gone (its
	// acks could not land) or the shutdown deadline passed.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	work := make(chan *batch)
	werr := make(chan error, 1)
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		// Connect (and migrate) before the first batch, so the schema is
		// there from the start and readiness reflects the database.
		if err := c.connectStore(wctx, store); err != nil {
			return
		}
		for b := range work {
			if err := c.commit(wctx, chs, store, b); err != nil {
				werr <- err
				return
			}
		}
	}()
	stop := func(cause error) error {
		close(work)
		wcancel()
		<-wdone
		return cause
	}

	var cur *batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var hand bool
		select {
		case d, ok := <-chs.clicks:
			if !ok {
				return stop(fmt.Errorf("consumer of %q closed: %v", c.cfg.ClickQueue, closeReason(append(chs.closed, closed)...)))
			}
			cur = c.add(cur, timer, d, c.cfg.ClickQueue)
			hand = cur.n >= c.cfg.BatchSize
		case d, ok := <-chs.actions:
			if !ok {
				return stop(fmt.Errorf("consumer of %q closed: %v", c.cfg.ActionQueue, closeReason(append(chs.closed, closed)...)))
			}
			cur = c.add(cur, timer, d, c.cfg.ActionQueue)
			hand = cur.n >= c.cfg.BatchSize
		case <-timer.C:
			hand = cur != nil
		case err := <-werr:
			return stop(err)
		case err := <-closed:
			return stop(fmt.Errorf("connection closed: %v", err))
		case <-ctx.Done():
			return c.shutdown(cur, work, werr, wcancel, wdone)
		}
		if !hand {
			continue
		}
		timer.Stop()
		select {
		case work <- cur:
			cur = nil
		case err := <-werr:
			return stop(err)
		case err := <-closed:
			return stop(fmt.Errorf("connection closed: %v", err))
		case <-ctx.Done():
			return c.shutdown(cur, work, werr, wcancel, wdone)
		}
	}
}

func closeReason(chans ...chan *amqp.Error) string {
	for _, ch := range chans {
		select {
		case err := <-ch:
			if err != nil {
				return err.Error()
			}
		default:
		}
	}
	return "channel or connection closed"
}

// shutdown hands the batch in hand to the writer and lets it finish,
// within ShutdownTimeout.
func (c *Collector) shutdown(cur *batch, work chan *batch, werr chan error, wcancel context.CancelFunc, wdone chan struct{}) error {
	deadline := time.NewTimer(c.cfg.ShutdownTimeout)
	defer deadline.Stop()
	expired := false
	if cur != nil {
		select {
		case work <- cur:
		case <-werr:
		case <-deadline.C:
			expired = true
		}
	}
	close(work)
	if !expired {
		select {
		case <-wdone:
			return nil
		case <-deadline.C:
		}
	}
	c.log.Warn("stopping before the last batch was written; it will be redelivered", "timeout", c.cfg.ShutdownTimeout.String())
	wcancel()
	<-wdone
	return nil
}

// add parses d into cur (a new batch if nil) and arms the batch timer for
// a new batch.
func (c *Collector) add(cur *batch, timer *time.Timer, d amqp.Delivery, queue string) *batch {
	now := c.cfg.Now()
	if cur == nil {
		cur = &batch{seq: c.seq.Add(1), first: now}
		timer.Reset(c.cfg.BatchInterval)
	}
	cur.n++
	var p *Poison
	var at time.Time
	if queue == c.cfg.ClickQueue {
		cur.clickTag = d.DeliveryTag
		var row *Click
		if row, p = ParseClick(d.Body); p == nil {
			cur.clicks = append(cur.clicks, row)
			cur.clickDs = append(cur.clickDs, d)
			at = row.TS
		}
	} else {
		cur.actionTag = d.DeliveryTag
		var row *Action
		if row, p = ParseAction(d.Body); p == nil {
			cur.actions = append(cur.actions, row)
			cur.actionDs = append(cur.actionDs, d)
			at = row.TS
		}
	}
	if p != nil {
		cur.dead = append(cur.dead, deadLetter{d: d, queue: queue, poison: p})
		at = now
	}
	c.st.hold(cur.seq, at)
	return cur
}

// commit writes b (retrying the database as long as ctx allows), publishes
// its poison to the dead-letter queue and waits for the confirms, then
// acks everything up to b's last delivery tag. An error ends the session:
// what was not acked is redelivered, and the conflict clause absorbs rows
// committed twice.
func (c *Collector) commit(ctx context.Context, chs *channels, store *Store, b *batch) error {
	if len(b.clicks)+len(b.actions) > 0 {
		r, err := c.write(ctx, store, b)
		if err != nil {
			return err
		}
		c.st.update(func(s *Stats) {
			s.Clicks += uint64(r.Clicks)
			s.ClickDuplicates += uint64(r.ClickDuplicates)
			s.Actions += uint64(r.Actions)
			s.ActionDuplicates += uint64(r.ActionDuplicates)
		})
	}
	if err := c.deadLetter(ctx, chs.dead, b.dead); err != nil {
		return err
	}
	if c.afterCommit != nil {
		c.afterCommit(chs.clickCh)
	}
	for _, a := range []struct {
		ch  *amqp.Channel
		tag uint64
	}{{chs.clickCh, b.clickTag}, {chs.actionCh, b.actionTag}} {
		if a.tag == 0 {
			continue
		}
		// A failure leaves the rest unacked: redelivered, absorbed.
		if err := a.ch.Ack(a.tag, true); err != nil {
			return fmt.Errorf("ack: %w (%s)", err, closeReason(chs.closed...))
		}
	}
	took := c.cfg.Now().Sub(b.first)
	c.st.release(b.seq)
	c.st.update(func(s *Stats) {
		s.Batches++
		s.BatchDuration.observe(took.Seconds())
	})
	return nil
}

// backoff is the back-off of one retry loop (internal/backoff): from
// RetryMin to RetryMax, half jitter, so that collectors that failed
// together do not retry together.
func (c *Collector) backoff() backoff.Backoff {
	return backoff.Backoff{Min: c.cfg.RetryMin, Max: c.cfg.RetryMax}
}

// connectStore opens the Store's connection, retrying until it works or
// ctx ends.
func (c *Collector) connectStore(ctx context.Context, store *Store) error {
	wait := c.backoff()
	for attempt := 1; ; attempt++ {
		err := store.Connect(ctx)
		if err == nil {
			c.st.update(func(s *Stats) { s.DatabaseUp = true })
			return nil
		}
		c.st.update(func(s *Stats) { s.DatabaseUp = false })
		d := wait.Next()
		if attempt == 1 || attempt%10 == 0 {
			c.log.Warn("database unreachable; retrying", "attempt", attempt, "retry_in", d.String(), "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

// write retries the Store until the batch is committed or ctx ends.
func (c *Collector) write(ctx context.Context, store *Store, b *batch) (Result, error) {
	wait := c.backoff()
	for attempt := 1; ; attempt++ {
		began := time.Now()
		r, err := store.Write(ctx, b.clicks, b.actions)
		if isRefusal(err) {
			r, err = c.isolate(ctx, store, b)
		}
		if err == nil {
			took := time.Since(began)
			c.st.update(func(s *Stats) { s.DatabaseUp = true; s.WriteTime += took })
			if attempt > 1 {
				c.log.Info("database writes resumed", "attempts", attempt)
			}
			return r, nil
		}
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("write abandoned: %w", err)
		}
		c.st.update(func(s *Stats) { s.WriteErrors++; s.DatabaseUp = false })
		d := wait.Next()
		if attempt == 1 || attempt%10 == 0 {
			c.log.Warn("database write failed; nothing acked, retrying", "attempt", attempt,
				"rows", len(b.clicks)+len(b.actions), "retry_in", d.String(), "err", err)
		}
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("write abandoned: %w", err)
		case <-time.After(d):
		}
	}
}

// isRefusal reports whether err is the database refusing the data (SQLSTATE
// class 22, data exception, or 23, integrity constraint violation): the
// same batch would be refused forever.
func isRefusal(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}

// isolate writes b's rows one at a time after the database refused the
// batch, and moves the rows it refuses to b.dead, so that one bad row
// never blocks the rest. Parsing keeps out everything known to be refused
// (NUL, invalid UTF-8, bad numbers); this is the net under it.
func (c *Collector) isolate(ctx context.Context, store *Store, b *batch) (Result, error) {
	var total Result
	refused := func(err error, d amqp.Delivery, queue string) {
		var pe *pgconn.PgError
		errors.As(err, &pe)
		b.dead = append(b.dead, deadLetter{d: d, queue: queue,
			poison: &Poison{Reason: ReasonRefused, Detail: fmt.Sprintf("SQLSTATE %s: %s", pe.Code, pe.Message)}})
	}
	var clicks []*Click
	var clickDs []amqp.Delivery
	for i, row := range b.clicks {
		r, err := store.Write(ctx, []*Click{row}, nil)
		switch {
		case isRefusal(err):
			refused(err, b.clickDs[i], c.cfg.ClickQueue)
		case err != nil:
			return total, err
		default:
			clicks, clickDs = append(clicks, row), append(clickDs, b.clickDs[i])
			total.Clicks += r.Clicks
			total.ClickDuplicates += r.ClickDuplicates
		}
	}
	// From here a retry of the batch (after a failure below) writes only
	// what is left: refused rows are not tried again.
	b.clicks, b.clickDs = clicks, clickDs
	var actions []*Action
	var actionDs []amqp.Delivery
	for i, row := range b.actions {
		r, err := store.Write(ctx, nil, []*Action{row})
		switch {
		case isRefusal(err):
			refused(err, b.actionDs[i], c.cfg.ActionQueue)
		case err != nil:
			return total, err
		default:
			actions, actionDs = append(actions, row), append(actionDs, b.actionDs[i])
			total.Actions += r.Actions
			total.ActionDuplicates += r.ActionDuplicates
		}
	}
	b.actions, b.actionDs = actions, actionDs
	c.log.Warn("database refused rows; dead-lettering them, the rest is written",
		"refused", len(b.dead), "clicks", len(clicks), "actions", len(actions))
	return total, nil
}

// deadLetter publishes poison to DeadQueue with the reason in headers and
// waits for the broker's confirms.
func (c *Collector) deadLetter(ctx context.Context, ch *amqp.Channel, dead []deadLetter) error {
	if len(dead) == 0 {
		return nil
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(dead))
	for _, dl := range dead {
		d := dl.d
		h := amqp.Table{}
		for k, v := range d.Headers {
			h[k] = v
		}
		h[ReasonHeader] = string(dl.poison.Reason)
		h[DetailHeader] = dl.poison.Detail
		h[QueueHeader] = dl.queue
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", c.cfg.DeadQueue, false, false, amqp.Publishing{
			Headers:         h,
			ContentType:     d.ContentType,
			ContentEncoding: d.ContentEncoding,
			DeliveryMode:    amqp.Persistent,
			MessageId:       d.MessageId,
			Timestamp:       d.Timestamp,
			Type:            d.Type,
			AppId:           d.AppId,
			Body:            d.Body,
		})
		if err != nil {
			return fmt.Errorf("dead-letter publish: %w", err)
		}
		confirms = append(confirms, dc)
	}
	for _, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("dead-letter confirm: %w", err)
		}
		if !ok {
			return errors.New("dead-letter publish nacked by the broker")
		}
	}
	c.st.update(func(s *Stats) {
		if s.DeadByReason == nil {
			s.DeadByReason = make(map[Reason]uint64)
		}
		for _, dl := range dead {
			s.DeadLettered++
			s.DeadByReason[dl.poison.Reason]++
		}
	})
	for _, dl := range dead {
		c.log.Warn("message dead-lettered", "queue", dl.queue, "message_id", dl.d.MessageId,
			"reason", string(dl.poison.Reason), "detail", dl.poison.Detail)
	}
	return nil
}
