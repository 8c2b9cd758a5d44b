package main

import (
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// brokerURL is the machine's broker (make test starts or installs it).
func brokerURL() string {
	if u := os.Getenv("BENCH_AMQP"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// The ceiling publisher gets every publish confirmed, stops on time, and
// leaves nothing behind on the broker.
func TestPublishCeiling(t *testing.T) {
	res, err := publishCeiling(brokerURL(), "classic", 64, 300, 500*time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published == 0 || res.Confirmed != res.Published {
		t.Errorf("published %d, confirmed %d; want equal and > 0", res.Published, res.Confirmed)
	}
	if res.Seconds < 0.5 || res.Seconds > 30 {
		t.Errorf("ran %.2fs, want about 0.5s", res.Seconds)
	}
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclarePassive(res.Queue, true, false, false, false, nil); err == nil {
		t.Errorf("queue %s is still there after the run", res.Queue)
	}
	if _, err := publishCeiling(brokerURL(), "classic", 0, 300, time.Millisecond, false); err == nil {
		t.Error("window 0 accepted")
	}
}
