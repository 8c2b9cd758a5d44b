package brokertest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Environment variables that tests (not libraries) read.
const (
	// EnvAMQPURL names the shared broker.
	EnvAMQPURL = "CLICKEDGE_TEST_AMQP_URL"
	// EnvSkipBroker, set to 1, skips tests that need a broker.
	EnvSkipBroker = "CLICKEDGE_TEST_SKIP_BROKER"
)

// DefaultURL is the shared broker when EnvAMQPURL is unset.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// dialTimeout bounds every TCP connect this package makes to a broker.
const dialTimeout = 2 * time.Second

// tempQueueExpiry lets the broker drop a TempQueue whose cleanup never ran
// (the test binary was killed). It counts from the last use, so a queue a
// test is still consuming from never expires.
const tempQueueExpiry = 30 * time.Minute

// SharedURL returns the URL of the shared broker after checking that it
// answers an AMQP handshake. It fails the test when the broker is not
// reachable, and skips it only when CLICKEDGE_TEST_SKIP_BROKER=1.
func SharedURL(t testing.TB) string {
	t.Helper()
	skipIfRequested(t)
	u := os.Getenv(EnvAMQPURL)
	if u == "" {
		u = DefaultURL
	}
	conn, err := dial(u, "brokertest.SharedURL")
	if err != nil {
		t.Fatalf("brokertest: the shared RabbitMQ at %s is not reachable: %v\n"+
			"Tests need a running broker: `make test` starts one; or point %s at one;\n"+
			"or set %s=1 to skip the tests that need it.",
			redact(u), err, EnvAMQPURL, EnvSkipBroker)
	}
	conn.Close()
	return u
}

// skipIfRequested skips the test when EnvSkipBroker is 1.
func skipIfRequested(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvSkipBroker) == "1" {
		t.Skipf("brokertest: %s=1: skipping a test that needs RabbitMQ", EnvSkipBroker)
	}
}

// TempQueue declares the topic exchange (durable, as the edge declares it)
// and a uniquely named durable queue bound to it with bindingKey, and deletes
// the queue when the test ends. The queue is durable so it survives a
// private node's restart, and not exclusive so any connection may consume
// it.
func TempQueue(t testing.TB, url, exchange, bindingKey string) string {
	t.Helper()
	name := "brokertest." + queueSafe(t.Name()) + "." + randomHex(4)
	conn, err := dial(url, "brokertest.TempQueue")
	if err != nil {
		t.Fatalf("brokertest: TempQueue: dial %s: %v", redact(url), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("brokertest: TempQueue: open channel: %v", err)
	}
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("brokertest: TempQueue: declare exchange %q: %v", exchange, err)
	}
	args := amqp.Table{amqp.QueueTTLArg: int64(tempQueueExpiry / time.Millisecond)}
	if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
		t.Fatalf("brokertest: TempQueue: declare queue %q: %v", name, err)
	}
	if err := ch.QueueBind(name, bindingKey, exchange, false, nil); err != nil {
		t.Fatalf("brokertest: TempQueue: bind %q to %q with %q: %v", name, exchange, bindingKey, err)
	}
	t.Cleanup(func() {
		if err := deleteQueue(url, name); err != nil {
			// A private node stopped by the test takes its queues with it;
			// on the shared broker x-expires removes the leftover.
			t.Logf("brokertest: delete queue %q: %v", name, err)
		}
	})
	return name
}

func deleteQueue(url, name string) error {
	conn, err := dial(url, "brokertest.TempQueue.cleanup")
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	_, err = ch.QueueDelete(name, false, false, false)
	return err
}

// dial opens an AMQP connection with a short connect timeout and a name the
// management UI shows.
func dial(u, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	return amqp.DialConfig(u, amqp.Config{
		Dial:       amqp.DefaultDial(dialTimeout),
		Heartbeat:  5 * time.Second,
		Properties: props,
	})
}

// redact hides the password of an AMQP URL in messages.
func redact(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "<unparsable URL>"
	}
	return pu.Redacted()
}

// queueSafe turns a test name into something short and readable in a queue
// name.
func queueSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 80 {
			break
		}
	}
	return b.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("brokertest: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
