package brokertest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestNodeKillAndRestartKeepPersistentMessages(t *testing.T) {
	t.Parallel()
	n := StartNode(t, nil)
	if n.Port() == 5672 || n.Name() == "rabbit@localhost" || !strings.HasSuffix(n.URL(), ":"+itoa(n.Port())+"/") {
		t.Fatalf("node %s on %s (port %d): must be private and consistent", n.Name(), n.URL(), n.Port())
	}
	q := TempQueue(t, n.URL(), "clicks", "click.#")
	publish(t, n.URL(), "clicks", "click.eu", "m1")

	beam := n.beamPid()
	if beam == 0 {
		t.Fatal("no beam.smp pid for a running node")
	}
	n.Kill()
	if alive(beam) {
		t.Fatalf("beam.smp %d alive after Kill", beam)
	}
	if left := nodeProcs(n.dir); len(left) > 0 {
		t.Fatalf("processes %v of the node alive after Kill", left)
	}
	if conn, err := dial(n.URL(), t.Name()); err == nil {
		conn.Close()
		t.Fatal("dial after Kill succeeded")
	}

	n.Start()
	c := Consume(t, n.URL(), q)
	if err := c.WaitCount(1, 10*time.Second); err != nil {
		t.Fatalf("after Kill+Start: %v", err)
	}
	if d := c.Messages()[0]; d.MessageID != "m1" || d.DeliveryMode != amqp.Persistent || d.RoutingKey != "click.eu" {
		t.Fatalf("after Kill+Start got %+v, want persistent m1 on click.eu", d)
	}

	// A graceful restart under a live consumer: it reconnects by itself.
	n.Restart()
	// Publish once the consumer is back: consuming proves the queue has
	// recovered, and a publish routed before that is returned (and lost:
	// publish does not watch for returns).
	for deadline := time.Now().Add(15 * time.Second); c.Connects() < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("consumer not reconnected 15s after the restart (%d connects)", c.Connects())
		}
		time.Sleep(20 * time.Millisecond) // polling, with a deadline
	}
	publish(t, n.URL(), "clicks", "click.eu", "m2")
	if err := c.WaitUnique(2, 15*time.Second); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	if got := c.Connects(); got < 2 {
		t.Fatalf("Connects() = %d after a restart, want at least 2", got)
	}

	out, err := n.Ctl("list_queues", "name", "durable")
	if err != nil || !strings.Contains(out, q) {
		t.Fatalf("Ctl(list_queues) = %q, %v; want it to list %s", out, err, q)
	}
	if _, err := n.Ctl("-n", "rabbit@localhost", "status"); err == nil {
		t.Fatal("Ctl accepted -n: it must never address another node")
	}
}

func TestNodeDiskAlarmBlocksPublishersAndCleanupLeavesNothing(t *testing.T) {
	t.Parallel()
	var dir string
	var beam int
	t.Run("node", func(t *testing.T) {
		n := StartNode(t, nil)
		dir, beam = n.dir, n.beamPid()

		conn, err := dial(n.URL(), t.Name())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		n.SetDiskFreeLimit("100000GB")
		// RabbitMQ blocks, and sends connection.blocked to, a connection
		// when it publishes during the alarm.
		if err := ch.Publish("", "nowhere", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-blocked:
			if !b.Active {
				t.Fatalf("first Blocking = %+v, want Active", b)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no connection.blocked within 15s of the disk alarm")
		}
		n.ClearAlarm()
		select {
		case b := <-blocked:
			if b.Active {
				t.Fatalf("Blocking after ClearAlarm = %+v, want inactive", b)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no connection.unblocked within 15s of clearing the alarm")
		}
	})
	if beam == 0 || dir == "" {
		t.Fatal("the node did not start")
	}
	if alive(beam) {
		t.Errorf("beam.smp %d alive after cleanup", beam)
	}
	if left := nodeProcs(dir); len(left) > 0 {
		t.Errorf("processes %v of the node alive after cleanup", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("node directory %s after cleanup: %v, want it removed", dir, err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
