//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// central is the network's side: a consumer on a durable queue bound with
// click.#, connected to the broker directly (not through the fault proxy),
// recording every delivery by message_id and checking each message against
// the contract as it arrives.
//
// It is not brokertest.Consumer because that one keeps every delivery with
// its body; a thousand kill -9 cycles deliver over a million clicks, and
// the checker only needs, per id, how many copies came and when the first
// did.
type central struct {
	url, queue string
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu          sync.Mutex
	conn        *amqp.Connection
	seen        map[clickID]arrival
	deliveries  int
	redelivered int      // deliveries the broker flagged as redelivered (our ack was lost)
	bad         int      // deliveries that break the contract
	badSamples  []string // the first few, for the failure message
	lastErr     error    // why the last reconnect failed
	events      []string // connection history, for failure messages
}

// event notes a connection event with the time.
func (c *central) event(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.events) < 200 {
		c.events = append(c.events, time.Now().UTC().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	}
}

// history returns the connection events.
func (c *central) history() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// arrival is what central keeps per click_id.
type arrival struct {
	first  int64 // unix ns of the first delivery
	copies int32 // deliveries, redeliveries included
	redel  int32 // deliveries flagged redelivered
}

// prefetch bounds unacknowledged deliveries to the consumer.
const prefetch = 512

// startCentral starts consuming queue on url and stops when the test ends.
func startCentral(t testing.TB, url, queue string) *central {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &central{url: url, queue: queue, ctx: ctx, cancel: cancel, seen: make(map[clickID]arrival, 1<<16)}
	conn, ds, err := c.connect()
	if err != nil {
		cancel()
		t.Fatalf("central: consume %q: %v", queue, err)
	}
	c.conn = conn
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(conn, ds)
	}()
	t.Cleanup(c.close)
	return c
}

func (c *central) connect() (*amqp.Connection, <-chan amqp.Delivery, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("e2e central")
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Dial:       amqp.DefaultDial(2 * time.Second),
		Heartbeat:  5 * time.Second,
		Properties: props,
	})
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Qos(prefetch, 0, false)
	}
	var ds <-chan amqp.Delivery
	if err == nil {
		ds, err = ch.Consume(c.queue, "", false, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, ds, nil
}

// run records deliveries until the connection or the consumer ends (the
// broker died, the queue was deleted), then reconnects every 100 ms.
func (c *central) run(conn *amqp.Connection, ds <-chan amqp.Delivery) {
	for {
		n := 0
		var ackErr error
		for d := range ds {
			c.record(&d)
			n++
			// A lost ack means a redelivery, which is recorded as one.
			if err := d.Ack(false); err != nil && ackErr == nil {
				ackErr = err
			}
		}
		c.event("consumer ended after %d deliveries (first ack error: %v; connection closed: %v)", n, ackErr, conn.IsClosed())
		conn.Close()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			var err error
			if conn, ds, err = c.connect(); err != nil {
				c.mu.Lock()
				if c.lastErr == nil || c.lastErr.Error() != err.Error() {
					c.events = append(c.events, time.Now().UTC().Format("15:04:05.000")+" reconnect: "+err.Error())
				}
				c.lastErr = err
				c.mu.Unlock()
				continue
			}
			c.event("reconnected")
			c.mu.Lock()
			c.conn = conn
			c.mu.Unlock()
			break
		}
	}
}

// clickBody is the part of the click message the suite checks.
type clickBody struct {
	V       int    `json:"v"`
	ClickID string `json:"click_id"`
	Link    string `json:"link"`
	URL     string `json:"url"`
	Region  string `json:"region"`
	Node    string `json:"node"`
	TS      string `json:"ts"`
}

func (c *central) record(d *amqp.Delivery) {
	now := time.Now().UnixNano()
	problem := contractProblem(d)
	id, ok := parseClickID(d.MessageId)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deliveries++
	if d.Redelivered {
		c.redelivered++
	}
	if problem != "" || !ok {
		if problem == "" {
			problem = "message_id is not 32 lowercase hex digits"
		}
		c.bad++
		if len(c.badSamples) < 5 {
			c.badSamples = append(c.badSamples, fmt.Sprintf("message_id %q: %s", d.MessageId, problem))
		}
		if !ok {
			return
		}
	}
	a := c.seen[id]
	if a.copies == 0 {
		a.first = now
	}
	a.copies++
	if d.Redelivered {
		a.redel++
	}
	c.seen[id] = a
}

// contractProblem checks one message against the outward contract and
// says what is wrong, or "".
func contractProblem(d *amqp.Delivery) string {
	switch {
	case d.Exchange != "clicks":
		return fmt.Sprintf("exchange %q, want clicks", d.Exchange)
	case d.RoutingKey != "click."+edgeRegion:
		return fmt.Sprintf("routing key %q, want click.%s", d.RoutingKey, edgeRegion)
	case d.DeliveryMode != amqp.Persistent:
		return fmt.Sprintf("delivery mode %d, want persistent", d.DeliveryMode)
	case d.ContentType != "application/json":
		return fmt.Sprintf("content type %q, want application/json", d.ContentType)
	case d.Headers["region"] != edgeRegion || d.Headers["node"] == nil || d.Headers["schema"] == nil:
		return fmt.Sprintf("headers %v, want region, node and schema", d.Headers)
	}
	var b clickBody
	if err := json.Unmarshal(d.Body, &b); err != nil {
		return fmt.Sprintf("body is not JSON: %v", err)
	}
	switch {
	case b.V != 1:
		return fmt.Sprintf("body v %d, want 1", b.V)
	case b.ClickID != d.MessageId:
		return fmt.Sprintf("body click_id %q differs from message_id", b.ClickID)
	case b.Region != edgeRegion || b.Link != demoLink || b.Node == "":
		return fmt.Sprintf("body region %q link %q node %q", b.Region, b.Link, b.Node)
	case !strings.Contains(b.URL, "cid="+b.ClickID):
		return fmt.Sprintf("body url %q does not carry the click_id", b.URL)
	}
	if _, err := time.Parse(time.RFC3339Nano, b.TS); err != nil {
		return fmt.Sprintf("body ts %q: %v", b.TS, err)
	}
	return ""
}

// close stops consuming; unacknowledged deliveries go back to the queue.
func (c *central) close() {
	c.cancel()
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	c.wg.Wait()
}

// has reports whether id was delivered.
func (c *central) has(id clickID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id].copies > 0
}

// count is the number of deliveries so far, duplicates included.
func (c *central) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deliveries
}

// snapshot copies what the checker needs.
func (c *central) snapshot() (seen map[clickID]arrival, deliveries, redelivered, bad int, badSamples []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen = make(map[clickID]arrival, len(c.seen))
	for id, a := range c.seen {
		seen[id] = a
	}
	return seen, c.deliveries, c.redelivered, c.bad, slices.Clone(c.badSamples)
}

// waitDelivered waits until all but at most allowed of ids have been
// delivered and returns the ones still missing.
func (c *central) waitDelivered(ids []clickID, allowed int, timeout time.Duration) []clickID {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		missing := ids[:0:0]
		for _, id := range ids {
			if c.seen[id].copies == 0 {
				missing = append(missing, id)
			}
		}
		c.mu.Unlock()
		if len(missing) <= allowed || time.Now().After(deadline) {
			return missing
		}
		ids = missing
		time.Sleep(100 * time.Millisecond)
	}
}

// waitQuiet waits until no delivery arrived for quiet, or timeout.
func (c *central) waitQuiet(quiet, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	last, since := c.count(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if n := c.count(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
}
