package rabbit_test

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/outbox/rabbit"
)

// The postback role's exchange is declared on connect, before any action
// is sent, and a single-box queue can be bound to it.
func TestDeclaresMoreExchangesAndQueues(t *testing.T) {
	shared := brokertest.SharedURL(t)
	cfg := rabbit.DefaultConfig()
	cfg.URLs = []string{shared}
	cfg.Exchange = randomName("ce-test-")
	actions := randomName("ce-test-actions-")
	queue := randomName("ce-test-aq-")
	cfg.Exchanges = []string{actions}
	cfg.Queues = []rabbit.QueueBinding{{Queue: queue, Exchange: actions, Key: "action.#"}}
	p, err := rabbit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, err := amqp.Dial(shared)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(actions, false, false)
		ch.ExchangeDelete(cfg.Exchange, false, false)
	}()
	// Passive declares succeed only if the exchange exists as a durable
	// topic exchange and the queue as a quorum queue.
	if err := ch.ExchangeDeclarePassive(actions, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("exchange %s not declared: %v", actions, err)
	}
	if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("queue %s not declared: %v", queue, err)
	}
	if err := ch.Publish(actions, "action.test", true, false, amqp.Publishing{Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
}
