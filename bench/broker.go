package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// sink is the bench's own exchange and queue on the broker: every server
// under test publishes to the exchange, and after each run the bench counts
// what reached the queue. The names are unique per bench run, so other
// users of a shared broker neither see these clicks nor add to them.
type sink struct {
	url      string
	exchange string
	queue    string
	conn     *amqp.Connection
	ch       *amqp.Channel
}

// Queue kinds for the bench's queue.
var queueKinds = []string{"transient", "classic", "classic2", "quorum"}

// queueArgs is how a queue of kind is declared: durable or not, and its
// arguments. It expires after 10 idle minutes if the bench dies before
// deleting it.
func queueArgs(kind string) (durable bool, args amqp.Table) {
	args = amqp.Table{"x-queue-type": "classic", "x-expires": int32(10 * 60 * 1000)}
	switch kind {
	case "quorum":
		args["x-queue-type"] = "quorum"
	case "classic2":
		// RabbitMQ 3.10's second classic queue store (a per-queue
		// message store and index): a broker setting, not clickedge's.
		args["x-queue-version"] = int32(2)
	}
	return kind != "transient", args
}

func newSink(url, kind string) (*sink, error) {
	var b [4]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s := &sink{url: url, exchange: "bench.clicks." + id, queue: "bench.clicks." + id}
	var err error
	if s.conn, err = amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "bench sink"}}); err != nil {
		return nil, fmt.Errorf("broker %s: %w", redactURL(url), err)
	}
	if s.ch, err = s.conn.Channel(); err != nil {
		s.conn.Close()
		return nil, err
	}
	// The exchange as clickedge declares it (a different declaration would
	// close the edge's channel). The queue expires after 10 idle minutes if
	// the bench dies before deleting it. transient (not durable) keeps the
	// broker's own disk writes out of what is measured; classic and quorum
	// (durable) make the broker fsync before it confirms, as a production
	// queue would, for clickedge and the direct server alike.
	err = s.ch.ExchangeDeclare(s.exchange, "topic", true, false, false, false, nil)
	if err == nil {
		durable, args := queueArgs(kind)
		_, err = s.ch.QueueDeclare(s.queue, durable, false, false, false, args)
	}
	if err == nil {
		err = s.ch.QueueBind(s.queue, "click.#", s.exchange, false, nil)
	}
	if err != nil {
		s.conn.Close()
		return nil, fmt.Errorf("broker: declare bench topology: %w", err)
	}
	return s, nil
}

// Delivery is the check made after every run: what the load generator saw
// answered against what reached the broker.
type Delivery struct {
	Answered   int64   `json:"answered"`         // 302s the load generator received, warm-up included
	Recorded   int64   `json:"recorded"`         // the server's own count of clicks kept (edge: recorded+spilled; direct: acked)
	Delivered  int64   `json:"delivered"`        // distinct message ids that reached the queue
	Duplicates int64   `json:"duplicates"`       // extra copies (allowed: at-least-once)
	OK         bool    `json:"ok"`               // Delivered == Answered == Recorded
	Wait       float64 `json:"wait_s,omitempty"` // seconds from heal (or load end) until the outbox had nothing pending
	Note       string  `json:"note,omitempty"`
}

// collect consumes the queue until it has seen want distinct message ids
// and the queue stayed empty for a moment, or until timeout. It returns the
// distinct count and the duplicates.
func (s *sink) collect(want int64, timeout time.Duration) (distinct, dups int64, err error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	defer ch.Close()
	if err := ch.Qos(4096, 0, false); err != nil {
		return 0, 0, err
	}
	deliveries, err := ch.Consume(s.queue, "", false, true, false, false, nil)
	if err != nil {
		return 0, 0, err
	}
	seen := make(map[[16]byte]struct{}, want)
	deadline := time.After(timeout)
	quiet := 300 * time.Millisecond
	idle := time.NewTimer(quiet)
	defer idle.Stop()
	var n int
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return int64(len(seen)), dups, fmt.Errorf("broker: consumer closed")
			}
			var id [16]byte
			if _, err := hex.Decode(id[:], []byte(d.MessageId)); err != nil || len(d.MessageId) != 32 {
				return int64(len(seen)), dups, fmt.Errorf("broker: message id %q is not a click id", d.MessageId)
			}
			if _, ok := seen[id]; ok {
				dups++
			} else {
				seen[id] = struct{}{}
			}
			if n++; n%1024 == 0 {
				d.Ack(true)
			}
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(quiet)
		case <-idle.C:
			if int64(len(seen)) >= want {
				ch.Ack(0, true) // whatever is unacked
				return int64(len(seen)), dups, nil
			}
			idle.Reset(quiet)
		case <-deadline:
			return int64(len(seen)), dups, fmt.Errorf("broker: %d of %d clicks after %v", len(seen), want, timeout)
		}
	}
}

// purge empties the queue (after a failed run, so the next starts clean).
func (s *sink) purge() error {
	_, err := s.ch.QueuePurge(s.queue, false)
	return err
}

func (s *sink) close() {
	if s.ch != nil {
		s.ch.QueueDelete(s.queue, false, false, false)
		s.ch.ExchangeDelete(s.exchange, false, false)
	}
	if s.conn != nil {
		s.conn.Close()
	}
}

// redactURL hides the password in an AMQP URL.
func redactURL(u string) string {
	if p, err := amqp.ParseURI(u); err == nil && p.Password != "" {
		p.Password = "xxxxx"
		return p.String()
	}
	return u
}
