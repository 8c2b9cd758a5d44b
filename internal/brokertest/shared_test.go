package brokertest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// fakeTB records Fatalf and Skipf instead of ending the real test, so the
// failure paths can be checked. fn runs on its own goroutine because both
// end it with runtime.Goexit, as the real ones do.
type fakeTB struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runFake(t *testing.T, fn func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestSharedURL(t *testing.T) {
	u := SharedURL(t)
	if want := DefaultURL; u != want && u != os.Getenv(EnvAMQPURL) {
		t.Fatalf("SharedURL() = %q, want %q or $%s", u, want, EnvAMQPURL)
	}
	conn, err := dial(u, t.Name())
	if err != nil {
		t.Fatalf("dial %s: %v", redact(u), err)
	}
	conn.Close()
}

func TestSharedURLFailsWhenUnreachable(t *testing.T) {
	t.Setenv(EnvSkipBroker, "")
	t.Setenv(EnvAMQPURL, "amqp://guest:secret@127.0.0.1:1/")
	f := runFake(t, func(tb testing.TB) { SharedURL(tb) })
	if !f.failed || f.skipped {
		t.Fatalf("SharedURL with no broker: failed=%v skipped=%v, want a failure", f.failed, f.skipped)
	}
	for _, want := range []string{"127.0.0.1:1", "make test", EnvAMQPURL, EnvSkipBroker} {
		if !strings.Contains(f.msg, want) {
			t.Errorf("failure message %q does not mention %q", f.msg, want)
		}
	}
	if strings.Contains(f.msg, "secret") {
		t.Errorf("failure message %q shows the password", f.msg)
	}
}

func TestSkipBroker(t *testing.T) {
	t.Setenv(EnvSkipBroker, "1")
	for name, fn := range map[string]func(testing.TB){
		"SharedURL": func(tb testing.TB) { SharedURL(tb) },
		"StartNode": func(tb testing.TB) { StartNode(tb, nil) },
	} {
		f := runFake(t, fn)
		if !f.skipped || f.failed {
			t.Errorf("%s with %s=1: skipped=%v failed=%v, want skipped", name, EnvSkipBroker, f.skipped, f.failed)
		}
		if !strings.Contains(f.msg, EnvSkipBroker) {
			t.Errorf("%s skip message %q does not give the reason", name, f.msg)
		}
	}
}

func TestStartNodeFailsWhenNotInstalled(t *testing.T) {
	t.Setenv(EnvSkipBroker, "")
	f := runFake(t, func(tb testing.TB) {
		StartNode(tb, &NodeOptions{ServerPath: "/nonexistent/rabbitmq-server"})
	})
	if !f.failed || f.skipped {
		t.Fatalf("StartNode without RabbitMQ: failed=%v skipped=%v, want a failure", f.failed, f.skipped)
	}
	for _, want := range []string{"not installed", "rabbitmq-server", EnvSkipBroker} {
		if !strings.Contains(f.msg, want) {
			t.Errorf("failure message %q does not mention %q", f.msg, want)
		}
	}
}

// publish sends persistent messages with publisher confirms and fails the
// test unless the broker acks every one.
func publish(t *testing.T, url, exchange, key string, ids ...string) {
	t.Helper()
	conn, err := dial(url, t.Name())
	if err != nil {
		t.Fatalf("dial %s: %v", redact(url), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm mode: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range ids {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{
			MessageId:    id,
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			Headers:      amqp.Table{"region": "eu-test", "schema": int32(1)},
			Body:         []byte(`{"v":1,"click_id":"` + id + `"}`),
		})
		if err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		acked, err := dc.WaitContext(ctx)
		if err != nil || !acked {
			t.Fatalf("confirm of %s: acked=%v err=%v", id, acked, err)
		}
	}
}

func TestTempQueueAndConsumer(t *testing.T) {
	u := SharedURL(t)
	key := "brokertest." + randomHex(4) // nobody else routes here
	q := TempQueue(t, u, "clicks", key)
	if !strings.HasPrefix(q, "brokertest.TestTempQueueAndConsumer.") {
		t.Errorf("TempQueue name = %q, want it to name the test", q)
	}
	c := Consume(t, u, q)

	publish(t, u, "clicks", key, "a", "b", "a")
	if err := c.WaitCount(3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := []int{c.Count(), c.Unique(), c.Duplicates(), c.Seen("a"), c.Seen("b"), c.Seen("zz")},
		[]int{3, 2, 1, 2, 1, 0}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Count, Unique, Duplicates, Seen(a), Seen(b), Seen(zz) = %v, want %v", got, want)
	}
	if err := c.WaitUnique(2, time.Second); err != nil {
		t.Fatalf("WaitUnique(2) after 2 unique ids: %v", err)
	}

	m := c.Messages()
	if len(m) != 3 {
		t.Fatalf("len(Messages()) = %d, want 3", len(m))
	}
	d := m[1]
	if d.MessageID != "b" || d.RoutingKey != key || d.Exchange != "clicks" ||
		d.DeliveryMode != amqp.Persistent || d.Redelivered || d.ContentType != "application/json" ||
		d.Headers["region"] != "eu-test" || string(d.Body) != `{"v":1,"click_id":"b"}` || d.Received.IsZero() {
		t.Fatalf("Messages()[1] = %+v, want message b as published", d)
	}

	// A wait that cannot be met says what it saw.
	err := c.WaitCount(4, 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "got 3 deliveries of 2 unique ids") {
		t.Fatalf("WaitCount(4) = %v, want a timeout naming 3 deliveries of 2 unique ids", err)
	}
	c.Close()
	c.Close() // twice is fine
}

func TestTempQueueDeletedOnCleanup(t *testing.T) {
	u := SharedURL(t)
	var q string
	t.Run("inner", func(t *testing.T) {
		q = TempQueue(t, u, "clicks", "brokertest."+randomHex(4))
	})
	conn, err := dial(u, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if e, ok := err.(*amqp.Error); !ok || e.Code != amqp.NotFound {
		t.Fatalf("passive declare of %q after cleanup = %v, want NOT_FOUND", q, err)
	}
}

func TestConsumeFailsOnMissingQueue(t *testing.T) {
	u := SharedURL(t)
	f := runFake(t, func(tb testing.TB) { Consume(tb, u, "brokertest.no-such-queue."+randomHex(4)) })
	if !f.failed || !strings.Contains(f.msg, "NOT_FOUND") {
		t.Fatalf("Consume on a missing queue: failed=%v msg=%q, want a NOT_FOUND failure", f.failed, f.msg)
	}
}

func TestQueueSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"TestX", "TestX"},
		{"TestX/sub_case-1", "TestX_sub_case-1"},
		{"Test é.*#", "Test_____"},
		{strings.Repeat("a", 200), strings.Repeat("a", 80)},
	}
	for _, tt := range tests {
		if got := queueSafe(tt.in); got != tt.want {
			t.Errorf("queueSafe(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:xxxxx@127.0.0.1:5672/"},
		{"amqp://127.0.0.1/", "amqp://127.0.0.1/"},
		{"::bad", "<unparsable URL>"},
	}
	for _, tt := range tests {
		if got := redact(tt.in); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
