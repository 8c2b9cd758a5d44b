package rabbit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
	"github.com/clickedge/clickedge/outbox/rabbit"
)

// BenchmarkDrain fills an outbox and measures how fast the forwarder
// delivers it to the shared broker with publisher confirms, for several
// windows. Window 1 waits for each confirm before the next publish.
// RABBIT_BENCH_RECORDS sets the backlog (default 200k; the documented run
// uses 1M); RABBIT_BENCH_WINDOWS the windows (default 1,1024);
// When the broker runs on this machine its CPU is reported per 1,000
// messages (broker-cpu-ms/1k).
//
//	RABBIT_BENCH_RECORDS=1000000 go test -run '^$' -bench Drain -benchtime 1x -timeout 30m ./outbox/rabbit/
func BenchmarkDrain(b *testing.B) {
	n := 200_000
	if s := os.Getenv("RABBIT_BENCH_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	shared := brokertest.SharedURL(b)
	windows := []int{1, 1024}
	if s := os.Getenv("RABBIT_BENCH_WINDOWS"); s != "" {
		windows = nil
		for _, f := range strings.Split(s, ",") {
			w, _ := strconv.Atoi(f)
			windows = append(windows, w)
		}
	}
	for _, window := range windows {
		records := n
		if window == 1 {
			records = min(n, 5000) // at ~1-2k/s, more would only take longer
		}
		b.Run(fmt.Sprintf("records=%d/window=%d", records, window), func(b *testing.B) {
			o, err := outbox.Open(filepath.Join(b.TempDir(), "o.db"), &outbox.Options{Durability: outbox.Async})
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			exchange := randomName("ce-bench-")
			sinkQueue(b, shared, exchange)
			fillOutbox(b, o, exchange, records)

			cfg := rabbit.DefaultConfig()
			cfg.URLs = []string{shared}
			cfg.Exchange = exchange
			p, err := rabbit.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			fc := outbox.DefaultForwarderConfig()
			fc.Publisher = p
			fc.Window = window
			b.ResetTimer()
			broker := brokertest.LocalPID(shared)
			brokerStart := brokertest.CPUTime(broker)
			start := time.Now()
			f, err := outbox.NewForwarder(o, fc)
			if err != nil {
				b.Fatal(err)
			}
			outboxtest.WaitFor(b, 30*time.Minute, "drain", func() bool {
				return f.Stats().Confirmed >= uint64(records)
			})
			d := time.Since(start)
			brokerCPU := brokertest.CPUTime(broker) - brokerStart
			b.StopTimer()
			f.Close(context.Background())
			st := f.Stats()
			b.ReportMetric(float64(records)/d.Seconds(), "msg/s")
			b.ReportMetric(st.ConfirmLatency.Quantile(0.5)*1e3, "confirm-p50-ms")
			b.ReportMetric(st.ConfirmLatency.Quantile(0.99)*1e3, "confirm-p99-ms")
			if broker > 0 {
				b.ReportMetric(brokerCPU.Seconds()*1e3/float64(records)*1000, "broker-cpu-ms/1k")
			}
			if o.Sync(); o.Stats().Pending != 0 {
				b.Fatalf("%d records still pending after the drain", o.Stats().Pending)
			}
		})
	}
}

// sinkQueue binds a queue that keeps only the newest 10k messages, so a
// benchmark can route a million messages without filling the broker.
func sinkQueue(b *testing.B, url, exchange string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	q := exchange + ".sink"
	args := amqp.Table{"x-max-length": int64(10000), "x-overflow": "drop-head"}
	if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind(q, "click.#", exchange, false, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		ch, _ := conn.Channel()
		ch.QueueDelete(q, false, false, false)
		ch.ExchangeDelete(exchange, false, false)
	})
}

func fillOutbox(b *testing.B, o *outbox.Outbox, exchange string, n int) {
	var wg sync.WaitGroup
	const writers = 64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				r := outboxtest.Record(fmt.Sprintf("bench-%08d", i))
				r.Exchange = exchange
				err := o.Append(r)
				for errors.Is(err, outbox.ErrOverloaded) {
					time.Sleep(time.Millisecond)
					err = o.Append(r)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := o.Sync(); err != nil {
		b.Fatal(err)
	}
}
