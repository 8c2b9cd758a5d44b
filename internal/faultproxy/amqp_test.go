package faultproxy_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/internal/faultproxy"
)

// TestAMQPThroughFaults checks the faults against a real AMQP client and
// broker: one-way loss delivers a publish but loses its confirm; a blackhole
// holds a publish and its confirm until it heals; a reset ends the
// connection.
func TestAMQPThroughFaults(t *testing.T) {
	u := brokertest.SharedURL(t)
	key := "brokertest.faultproxy." + t.Name()
	q := brokertest.TempQueue(t, u, "clicks", key)
	c := brokertest.Consume(t, u, q) // direct, not through the proxy

	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pu.Host = p.Addr()
	conn, err := amqp.DialConfig(pu.String(), amqp.Config{Heartbeat: time.Minute})
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	pub := func(id string) *amqp.DeferredConfirmation {
		t.Helper()
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "clicks", key, true, false,
			amqp.Publishing{MessageId: id, DeliveryMode: amqp.Persistent, Body: []byte(id)})
		if err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		return dc
	}

	// Blackhole: nothing arrives, then everything does.
	p.SetMode(faultproxy.Blackhole)
	held := pub("held")
	if err := c.WaitCount(1, 200*time.Millisecond); err == nil {
		t.Fatal("a publish crossed the blackhole")
	}
	p.SetMode(faultproxy.Pass)
	if err := c.WaitCount(1, 5*time.Second); err != nil {
		t.Fatalf("held publish after heal: %v", err)
	}
	select {
	case <-held.Done():
		if !held.Acked() {
			t.Fatal("held publish was nacked")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no confirm for the held publish after heal")
	}

	// One-way loss: the publish arrives, its confirm does not.
	p.SetMode(faultproxy.DropServerToClient)
	lost := pub("confirm-lost")
	if err := c.WaitCount(2, 5*time.Second); err != nil {
		t.Fatalf("publish under one-way loss: %v", err)
	}
	select {
	case <-lost.Done():
		t.Fatal("a confirm crossed one-way loss")
	case <-time.After(200 * time.Millisecond):
	}

	// Reset: the client learns its connection is gone.
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	p.SetMode(faultproxy.Reset)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed after Reset")
	}
	if got := c.Seen("confirm-lost"); got != 1 {
		t.Fatalf("Seen(confirm-lost) = %d, want 1", got)
	}
}
