package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/backoff"
)

// FeedSchema is the v of every feed message.
const FeedSchema = 1

// FeedMessage is the body of one message on the links exchange: a batch of
// entries one writer made (an API request, a bulk, a links push chunk).
type FeedMessage struct {
	V       int     `json:"v"`
	Node    string  `json:"node"` // the publisher
	Entries []Entry `json:"entries"`
}

// EncodeFeed encodes entries as a feed message body.
func EncodeFeed(node string, es []Entry) ([]byte, error) {
	return json.Marshal(&FeedMessage{V: FeedSchema, Node: node, Entries: es})
}

// FeedBatch is one message's worth of entries and its encoded body.
type FeedBatch struct {
	Entries []Entry
	Body    []byte
}

// EncodeFeedBatches encodes entries as feed messages of at most maxBytes
// each (the outbox caps a record), halving a batch until it fits. An entry
// too big for a message on its own is an error.
func EncodeFeedBatches(node string, es []Entry, maxBytes int) ([]FeedBatch, error) {
	if len(es) == 0 {
		return nil, nil
	}
	body, err := EncodeFeed(node, es)
	if err != nil {
		return nil, err
	}
	if len(body) <= maxBytes {
		return []FeedBatch{{Entries: es, Body: body}}, nil
	}
	if len(es) == 1 {
		return nil, fmt.Errorf("catalog: link %q is %d bytes in a feed message, over %d", es[0].Code, len(body), maxBytes)
	}
	a, err := EncodeFeedBatches(node, es[:len(es)/2], maxBytes)
	if err != nil {
		return nil, err
	}
	b, err := EncodeFeedBatches(node, es[len(es)/2:], maxBytes)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}

// DecodeFeed decodes a feed message body. It checks the shape only; the
// store validates every entry when it merges them.
func DecodeFeed(body []byte) (*FeedMessage, error) {
	var m FeedMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("catalog: feed message: %w", err)
	}
	if m.V != FeedSchema {
		return nil, fmt.Errorf("catalog: feed message: v %d: want %d", m.V, FeedSchema)
	}
	return &m, nil
}

// FeedMessageID is the message_id of a feed message: writer and the first
// entry's version, unique per batch.
func FeedMessageID(node string, es []Entry) string {
	if len(es) == 0 {
		return node
	}
	return node + "-" + strconv.FormatUint(es[0].HLC, 16) + "-" + strconv.Itoa(len(es))
}

// FeedRoutingKey is the routing key of feed messages.
const FeedRoutingKey = "links"

// DeclareFeed declares the feed's topology on ch: the exchange (durable
// topic) and the stream queue bound to it, with the same arguments
// everywhere (a queue redeclared with other arguments is refused). Nodes
// and links push both call it, so a message is never published before its
// queue exists.
func DeclareFeed(ch *amqp.Channel, exchange, queue string, maxBytes int64) error {
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", exchange, err)
	}
	args := amqp.Table{"x-queue-type": "stream", "x-max-length-bytes": maxBytes}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare stream queue %q: %w", queue, err)
	}
	if err := ch.QueueBind(queue, "#", exchange, false, nil); err != nil {
		return fmt.Errorf("bind %q to %q: %w", queue, exchange, err)
	}
	return nil
}

// FeedConfig configures a Feed, the consumer that applies the central
// links feed to a Store.
type FeedConfig struct {
	URLs     []string // brokers, tried in order; required
	Exchange string   // "links"
	// Queue is the stream queue every node reads (each from its own
	// offset). Default "links.stream".
	Queue string
	// MaxBytes is the stream's retention (x-max-length-bytes). Default 20 GB.
	MaxBytes int64
	// OffsetFile keeps the offset of the last message applied, so a
	// restarted node reads on from there. "": from the start every time.
	OffsetFile string
	// Store takes the entries; required.
	Store *Store
	// Prefetch is how many messages are in flight to this node. Default 256.
	Prefetch int
	// DialTimeout bounds connecting and the setup. Default 5 s.
	DialTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the wait between attempts.
	// Defaults 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// ConnectionName is shown by the broker. Default "clickedge links feed".
	ConnectionName string
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultFeedConfig returns a FeedConfig with the defaults above; URLs and
// Store are the caller's.
func DefaultFeedConfig() *FeedConfig {
	return &FeedConfig{
		Exchange:       "links",
		Queue:          "links.stream",
		MaxBytes:       20_000_000_000,
		Prefetch:       256,
		DialTimeout:    5 * time.Second,
		ReconnectMin:   100 * time.Millisecond,
		ReconnectMax:   5 * time.Second,
		ConnectionName: "clickedge links feed",
	}
}

// Feed consumes the links stream into a Store. One goroutine owns the
// connection; Close stops it.
type Feed struct {
	cfg FeedConfig
	log *slog.Logger

	connected atomic.Bool
	offset    atomic.Int64 // the last applied; -1 none
	messages  atomic.Uint64
	bad       atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// FeedStats is a snapshot of a Feed.
type FeedStats struct {
	Connected bool   `json:"connected"`
	Offset    int64  `json:"offset"`   // of the last message applied; -1 before the first
	Messages  uint64 `json:"messages"` // messages applied since start
	Bad       uint64 `json:"bad"`      // messages that did not decode (entries that fail validation are counted by the store)
}

// StartFeed starts consuming. It returns at once; the feed connects,
// reconnects and catches up in the background.
func StartFeed(cfg *FeedConfig) (*Feed, error) {
	d := DefaultFeedConfig()
	c := *cfg
	if len(c.URLs) == 0 || c.Store == nil {
		return nil, errors.New("catalog: feed: URLs and Store are required")
	}
	if c.Exchange == "" {
		c.Exchange = d.Exchange
	}
	if c.Queue == "" {
		c.Queue = d.Queue
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.Prefetch <= 0 {
		c.Prefetch = d.Prefetch
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = d.ReconnectMin
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = max(d.ReconnectMax, c.ReconnectMin)
	}
	if c.ConnectionName == "" {
		c.ConnectionName = d.ConnectionName
	}
	f := &Feed{cfg: c, log: c.Logger, done: make(chan struct{})}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.offset.Store(-1)
	if c.OffsetFile != "" {
		if b, err := os.ReadFile(c.OffsetFile); err == nil {
			if n, err := strconv.ParseInt(string(b), 10, 64); err == nil && n >= 0 {
				f.offset.Store(n)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		f.run(ctx)
	}()
	return f, nil
}

// Connected reports whether the feed is consuming.
func (f *Feed) Connected() bool { return f.connected.Load() }

// Stats returns a snapshot of the feed.
func (f *Feed) Stats() FeedStats {
	return FeedStats{Connected: f.connected.Load(), Offset: f.offset.Load(), Messages: f.messages.Load(), Bad: f.bad.Load()}
}

// Close stops the feed and waits for it; safe to call twice.
func (f *Feed) Close() error {
	f.once.Do(func() {
		f.cancel()
		<-f.done
	})
	return nil
}

func (f *Feed) run(ctx context.Context) {
	wait := backoff.Backoff{Min: f.cfg.ReconnectMin, Max: f.cfg.ReconnectMax}
	for ctx.Err() == nil {
		err := f.session(ctx)
		f.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if err == nil { // it was up: start the backoff again
			wait.Reset()
		}
		d := wait.Next()
		f.log.Warn("links feed: disconnected; retrying", "err", err, "in", d)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// dial tries each URL in order.
func dial(urls []string, timeout time.Duration, name string) (*amqp.Connection, error) {
	var errs []error
	for _, u := range urls {
		props := amqp.NewConnectionProperties()
		props.SetClientConnectionName(name)
		conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(timeout), Heartbeat: 10 * time.Second, Properties: props})
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// closeConn closes conn, giving the broker a second to answer.
func closeConn(conn *amqp.Connection) { _ = conn.CloseDeadline(time.Now().Add(time.Second)) }

// session consumes until the connection ends or ctx is done. It returns nil
// when it had been consuming.
func (f *Feed) session(ctx context.Context) error {
	conn, err := dial(f.cfg.URLs, f.cfg.DialTimeout, f.cfg.ConnectionName)
	if err != nil {
		return err
	}
	// A black-holed broker never answers connection.close: the deadline
	// closes the socket.
	defer closeConn(conn)
	// The setup is bounded: a booting broker may leave a channel call
	// unanswered.
	setup := time.AfterFunc(f.cfg.DialTimeout, func() { closeConn(conn) })
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := DeclareFeed(ch, f.cfg.Exchange, f.cfg.Queue, f.cfg.MaxBytes); err != nil {
		return err
	}
	if err := ch.Qos(f.cfg.Prefetch, 0, false); err != nil {
		return err
	}
	var from any = "first"
	if off := f.offset.Load(); off >= 0 {
		from = off + 1
	}
	deliveries, err := ch.Consume(f.cfg.Queue, "", false, false, false, false, amqp.Table{"x-stream-offset": from})
	if err != nil {
		return err
	}
	if !setup.Stop() {
		return errors.New("setup timed out")
	}
	f.connected.Store(true)
	f.log.Info("links feed: consuming", "queue", f.cfg.Queue, "from", from)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	var batch []amqp.Delivery
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case e := <-closed:
			if e == nil {
				return nil
			}
			return e
		case d, ok := <-deliveries:
			if !ok {
				return nil
			}
			batch = append(batch, d)
		}
	more:
		for len(batch) < f.cfg.Prefetch {
			select {
			case d, ok := <-deliveries:
				if !ok {
					break more
				}
				batch = append(batch, d)
			default:
				break more
			}
		}
		if err := f.apply(batch); err != nil {
			return err
		}
	}
}

// apply merges a batch of deliveries into the store, then acks them and
// keeps the offset: a crash before that replays them, which changes
// nothing.
func (f *Feed) apply(batch []amqp.Delivery) error {
	var es []Entry
	for _, d := range batch {
		m, err := DecodeFeed(d.Body)
		if err != nil {
			f.bad.Add(1)
			f.log.Error("links feed: message refused", "message_id", d.MessageId, "err", err)
			continue
		}
		es = append(es, m.Entries...)
	}
	if len(es) > 0 {
		if _, err := f.cfg.Store.Merge(es, SourceFeed); err != nil {
			if errors.Is(err, ErrClosed) {
				return err
			}
			if !errors.Is(err, ErrInvalid) {
				return fmt.Errorf("apply: %w", err) // not persisted: do not ack; read again
			}
			f.log.Error("links feed: entries refused (invalid); the rest applied", "err", err)
		}
	}
	last := batch[len(batch)-1]
	if err := last.Ack(true); err != nil {
		return err
	}
	f.messages.Add(uint64(len(batch)))
	if off, ok := streamOffset(last.Headers); ok {
		f.offset.Store(off)
		f.saveOffset(off)
	}
	return nil
}

func streamOffset(h amqp.Table) (int64, bool) {
	switch v := h["x-stream-offset"].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int:
		return int64(v), true
	}
	return 0, false
}

// saveOffset writes the offset file by rename. It is not fsynced: an older
// offset after a crash only replays messages, which merge as stale.
func (f *Feed) saveOffset(off int64) {
	if f.cfg.OffsetFile == "" {
		return
	}
	tmp := f.cfg.OffsetFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(off, 10)), 0o640); err == nil {
		err = os.Rename(tmp, f.cfg.OffsetFile)
		if err != nil {
			f.log.Warn("links feed: keep offset", "err", err)
		}
	}
}

// Push publishes entries to the feed and returns once the broker has
// confirmed every message (links push). Entries go in messages of at most
// chunk entries.
func Push(ctx context.Context, urls []string, exchange, queue string, maxBytes int64, node string, es []Entry, chunk int) error {
	if chunk <= 0 {
		chunk = 500
	}
	conn, err := dial(urls, 10*time.Second, "clickedge links push")
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer closeConn(conn)
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := DeclareFeed(ch, exchange, queue, maxBytes); err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	var confirms []*amqp.DeferredConfirmation
	for start := 0; start < len(es); start += chunk {
		batches, err := EncodeFeedBatches(node, es[start:min(start+chunk, len(es))], 4<<20)
		if err != nil {
			return err
		}
		for _, b := range batches {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, FeedRoutingKey, true, false, amqp.Publishing{
				ContentType:  "application/json",
				DeliveryMode: amqp.Persistent,
				MessageId:    FeedMessageID(node, b.Entries),
				Headers:      amqp.Table{"node": node, "schema": int32(FeedSchema)},
				Body:         b.Body,
			})
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			confirms = append(confirms, dc)
		}
	}
	for _, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("confirm: %w", err)
		}
		if !ok {
			return errors.New("the broker refused a message (nack)")
		}
	}
	select {
	case r := <-returns:
		return fmt.Errorf("message returned: %d %s", r.ReplyCode, r.ReplyText)
	default:
	}
	return nil
}
