//go:build e2e

package e2e

import (
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Scenario 4: unroutable clicks. While clicks flow, the consumer's queue
// (the only one bound to the exchange) is first unbound and bound again,
// then deleted and declared again, so the broker returns every publish
// (mandatory). The edge must delete nothing from the outbox: returned
// clicks stay pending (the outbox depth grows,
// clickedge_forwarder_returned_total rises) and are delivered once the
// queue is back.
//
// A queue deleted while messages are routed to it takes with it the
// messages already routed but not yet enqueued, and RabbitMQ confirms
// those to the publisher when the queue exits normally: a loss inside the
// broker, after its confirm, that no publisher can see (the suite measured
// it: a plain delete under this load lost a few dozen confirmed clicks).
// So the delete comes the way an operator retires a queue: unbind first
// (from then on every publish is returned and nothing new is routed to
// it), let the consumer drain what the queue holds, then delete it (if
// empty). The edge sees the same thing as a plain delete, a NO_ROUTE
// return for every publish, and the consumer gets every message the
// broker confirmed.
func TestUnroutable(t *testing.T) {
	h := newHarness(t)
	h.startEdge()
	h.runFor(3 * time.Second)

	f := h.beginFault("queue unbound")
	h.unbind()
	h.runFor(8 * time.Second)
	returned1, pending1 := h.returnedAndPending()
	// A return holds its route (exchange, routing key), not the forwarder:
	// the clicks' one route is held while unbound, and released once a
	// probe is delivered after the rebind (checked below).
	if held := h.edge.mustMetrics(t)["clickedge_forwarder_held_routes"]; held != 1 {
		t.Errorf("clickedge_forwarder_held_routes = %v while the queue is unbound, want 1", held)
	}
	h.bind()
	h.heal(f)
	h.note("queue unbound 8s: %v returned publishes, %v pending at the rebind", returned1, pending1)
	// The forwarder retries returned clicks with a doubling back-off
	// (1 s, 2 s, 4 s, 8 s, ...): let it catch up before the next fault, so
	// that each fault's resume time is its own.
	if n := h.waitCaughtUp(0, resumeLimit+10*time.Second); n > 0 {
		t.Errorf("%d clicks answered during the unbind still undelivered %v after the rebind", n, resumeLimit+10*time.Second)
	}
	m := h.edge.mustMetrics(t)
	if held := m["clickedge_forwarder_held_routes"]; held != 0 {
		t.Errorf("clickedge_forwarder_held_routes = %v once caught up after the rebind, want 0", held)
	}
	// With the log (the default write path) its figures reach /metrics
	// through the binary, and the moves gather (fewer commits than clicks).
	if writePath() == "log" {
		logged, moves := m["clickedge_outbox_log_records_total"], m["clickedge_outbox_moves_total"]
		if logged == 0 || moves == 0 || moves >= logged {
			t.Errorf("clickedge_outbox_log_records_total = %v, clickedge_outbox_moves_total = %v; want both > 0 and fewer moves than records", logged, moves)
		}
		// The log's frames (each a write and an fdatasync) hold one
		// record or more.
		if frames := m["clickedge_outbox_log_write_duration_seconds_count"]; frames == 0 || frames > logged {
			t.Errorf("clickedge_outbox_log_write_duration_seconds_count = %v frames for %v records logged, want 1 to %v", frames, logged, logged)
		}
		for _, name := range []string{"clickedge_outbox_log_waits_total", "clickedge_outbox_log_restarts_total", "clickedge_outbox_moving_records"} {
			if _, ok := m[name]; !ok {
				t.Errorf("%s is not exported", name)
			}
		}
	}
	h.runFor(2 * time.Second)

	f = h.beginFault("queue deleted")
	h.unbind()
	h.drainQueue(10 * time.Second)
	h.deleteQueueWhenEmpty(10 * time.Second)
	h.runFor(8 * time.Second)
	returned2, pending2 := h.returnedAndPending()
	h.amqp(func(ch *amqp.Channel) error {
		args := amqp.Table{amqp.QueueTTLArg: int64((30 * time.Minute) / time.Millisecond)}
		_, err := ch.QueueDeclare(h.queue, true, false, false, false, args)
		return err
	})
	h.bind()
	h.heal(f)
	h.note("queue deleted 8s: %v returned publishes in all, %v pending at the re-declare", returned2, pending2)
	h.runFor(5 * time.Second)
	h.settle()

	if returned1 == 0 || returned2 <= returned1 {
		t.Errorf("clickedge_forwarder_returned_total = %v after the unbind, %v after the delete: want it to rise each time", returned1, returned2)
	}
	if pending1 < float64(loadRate()) || pending2 < float64(loadRate()) {
		t.Errorf("pending at the heal = %v and %v, want the clicks of the fault (>= %d) kept in the outbox", pending1, pending2, loadRate())
	}
	h.details["returned_total"] = returned2
	h.finish("4 unroutable (unbind, delete)", criteria{answerAll: true})
}

func (h *harness) unbind() {
	h.t.Helper()
	h.amqp(func(ch *amqp.Channel) error { return ch.QueueUnbind(h.queue, "click.#", "clicks", nil) })
}

func (h *harness) bind() {
	h.t.Helper()
	h.amqp(func(ch *amqp.Channel) error { return ch.QueueBind(h.queue, "click.#", "clicks", false, nil) })
}

// drainQueue waits until the unbound queue has no ready messages and the
// consumer has had nothing new for 200 ms.
func (h *harness) drainQueue(timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ready int
		h.amqp(func(ch *amqp.Channel) error {
			q, err := ch.QueueDeclarePassive(h.queue, true, false, false, false, nil)
			ready = q.Messages
			return err
		})
		if ready == 0 {
			h.central.waitQuiet(200*time.Millisecond, time.Second)
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("queue %q still holds %d messages %v after the unbind", h.queue, ready, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// returnedAndPending reads the forwarder's returns and the outbox depth.
func (h *harness) returnedAndPending() (returned, pending float64) {
	m := h.edge.mustMetrics(h.t)
	return m["clickedge_forwarder_returned_total"], m["clickedge_outbox_pending_records"]
}

// amqp runs fn on a fresh channel to the node (not through the proxy).
func (h *harness) amqp(fn func(*amqp.Channel) error) {
	h.t.Helper()
	if err := amqpDo(h.node.URL(), fn); err != nil {
		h.t.Fatalf("amqp: %v", err)
	}
}

func amqpDo(url string, fn func(*amqp.Channel) error) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return fn(ch)
}

// deleteQueueWhenEmpty deletes the queue with if-empty, retrying while
// the broker refuses because messages are ready in it.
func (h *harness) deleteQueueWhenEmpty(timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	tries := 0
	for {
		tries++
		err := amqpDo(h.node.URL(), func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(h.queue, false, true, false)
			return err
		})
		if err == nil {
			h.note("queue deleted (if-empty) on try %d", tries)
			return
		}
		var aerr *amqp.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
			h.t.Fatalf("delete queue %q: %v", h.queue, err)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("delete queue %q: never empty within %v (%d tries): %v", h.queue, timeout, tries, err)
		}
		time.Sleep(time.Duration(min(tries, 20)) * time.Millisecond)
	}
}
