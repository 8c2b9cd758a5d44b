package brokertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// reconnectEvery is how often a Consumer retries after losing its broker.
const reconnectEvery = 100 * time.Millisecond

// Delivery is one message as a Consumer received it.
type Delivery struct {
	MessageID    string
	Exchange     string
	RoutingKey   string
	Headers      amqp.Table
	ContentType  string
	DeliveryMode uint8 // amqp.Persistent (2) or amqp.Transient (1 or 0)
	Redelivered  bool
	Body         []byte
	Received     time.Time
}

// Consumer records every message delivered from one queue. It acknowledges
// each message after recording it, and reconnects (every 100 ms) when the
// connection drops, so a broker restart loses nothing from a durable queue;
// a message whose ack was lost comes again and is recorded again.
//
// Its methods are safe for concurrent use.
type Consumer struct {
	url, queue string
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu         sync.Mutex
	conn       *amqp.Connection // current connection, nil while reconnecting
	closed     bool
	msgs       []Delivery
	perID      map[string]int
	arrived    chan struct{} // closed and replaced on every delivery
	lastErr    error         // why the last (re)connect failed or the last connection ended
	connects   int
	consumeTag string
}

// Consume starts a Consumer on queue and stops it when the test ends. It
// fails the test when the first connection cannot be made, so a typo in the
// queue name shows at once; later outages are retried.
func Consume(t testing.TB, url, queue string) *Consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Consumer{
		url:        url,
		queue:      queue,
		ctx:        ctx,
		cancel:     cancel,
		perID:      make(map[string]int),
		arrived:    make(chan struct{}),
		consumeTag: "brokertest-" + randomHex(4),
	}
	conn, deliveries, err := c.connect()
	if err != nil {
		cancel()
		t.Fatalf("brokertest: consume %q on %s: %v", queue, redact(url), err)
	}
	c.conn = conn
	c.connects = 1
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(conn, deliveries)
	}()
	t.Cleanup(c.Close)
	return c
}

func (c *Consumer) connect() (*amqp.Connection, <-chan amqp.Delivery, error) {
	conn, err := dial(c.url, "brokertest.Consumer")
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(256, 0, false); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(c.queue, c.consumeTag, false, false, false, false, nil)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("consume: %w", err)
	}
	return conn, deliveries, nil
}

// run owns the connection: it drains deliveries until the connection ends,
// then reconnects until Close.
func (c *Consumer) run(conn *amqp.Connection, deliveries <-chan amqp.Delivery) {
	for {
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		for d := range deliveries {
			c.record(d)
			// A lost ack only means a redelivery, which is recorded as one.
			_ = d.Ack(false)
		}
		conn.Close()
		if err := <-closed; err != nil {
			c.setErr(fmt.Errorf("connection closed: %w", err))
		}

		for {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(reconnectEvery):
			}
			var err error
			conn, deliveries, err = c.connect()
			if err != nil {
				c.setErr(err)
				continue
			}
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				conn.Close()
				return
			}
			c.conn = conn
			c.connects++
			c.mu.Unlock()
			break
		}
	}
}

func (c *Consumer) record(d amqp.Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, Delivery{
		MessageID:    d.MessageId,
		Exchange:     d.Exchange,
		RoutingKey:   d.RoutingKey,
		Headers:      d.Headers,
		ContentType:  d.ContentType,
		DeliveryMode: d.DeliveryMode,
		Redelivered:  d.Redelivered,
		Body:         d.Body,
		Received:     time.Now(),
	})
	c.perID[d.MessageId]++
	close(c.arrived)
	c.arrived = make(chan struct{})
}

func (c *Consumer) setErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// Close stops consuming and waits for the consumer's goroutine. Messages not
// yet acknowledged go back to the queue. It is safe to call more than once.
func (c *Consumer) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	conn := c.conn
	c.mu.Unlock()
	c.cancel()
	if conn != nil {
		conn.Close()
	}
	c.wg.Wait()
}

// Messages returns a copy of everything received so far, in arrival order.
func (c *Consumer) Messages() []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Delivery(nil), c.msgs...)
}

// Count is the number of deliveries, duplicates included.
func (c *Consumer) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// Unique is the number of distinct message ids received. Messages without
// an id all count as the one id "".
func (c *Consumer) Unique() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.perID)
}

// Duplicates is the number of deliveries beyond the first of each message
// id: Count() - Unique().
func (c *Consumer) Duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs) - len(c.perID)
}

// Seen reports how many times the message with this id was delivered.
func (c *Consumer) Seen(messageID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.perID[messageID]
}

// Connects is how many connections the consumer has opened; above 1 means
// it reconnected.
func (c *Consumer) Connects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connects
}

// WaitCount waits until at least n deliveries (duplicates included) have
// arrived. After timeout it returns an error that says how many did and why
// the consumer last lost its connection, if it did.
func (c *Consumer) WaitCount(n int, timeout time.Duration) error {
	return c.wait(timeout, func() bool { return len(c.msgs) >= n }, fmt.Sprintf("%d deliveries", n))
}

// WaitUnique waits until at least n distinct message ids have arrived, as
// WaitCount does for deliveries.
func (c *Consumer) WaitUnique(n int, timeout time.Duration) error {
	return c.wait(timeout, func() bool { return len(c.perID) >= n }, fmt.Sprintf("%d unique message ids", n))
}

// wait polls done, which is called with mu held, on every delivery.
func (c *Consumer) wait(timeout time.Duration, done func() bool, what string) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok := done()
		arrived := c.arrived
		count, unique, lastErr := len(c.msgs), len(c.perID), c.lastErr
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-arrived:
		case <-timer.C:
			err := fmt.Errorf("brokertest: queue %q: waited %v for %s, got %d deliveries of %d unique ids",
				c.queue, timeout, what, count, unique)
			if lastErr != nil {
				err = fmt.Errorf("%w (last connection problem: %v)", err, lastErr)
			}
			return err
		}
	}
}
