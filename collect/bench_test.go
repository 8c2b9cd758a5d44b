package collect

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/internal/pgtest"
)

// BenchmarkBacklog measures inserted rows per second while the collector
// drains a backlog: COLLECT_BENCH_MESSAGES clicks (default 100000) are
// queued first, then a collector with each batch size of
// COLLECT_BENCH_BATCHES (default 500,2000,5000) empties the queue into a
// fresh database. A private RabbitMQ node and a private PostgreSQL with
// fsync on, both on this machine, as in docs/performance.md.
// COLLECT_BENCH_QUEUE_TYPE (quorum), COLLECT_BENCH_WRITERS (the default)
// and COLLECT_BENCH_PREFETCH (2 x batch) vary the rest:
//
//	go test -run '^$' -bench Backlog -benchtime 1x -timeout 30m ./collect/
func BenchmarkBacklog(b *testing.B) {
	messages := 100000
	if s := os.Getenv("COLLECT_BENCH_MESSAGES"); s != "" {
		messages, _ = strconv.Atoi(s)
	}
	batches := []int{500, 2000, 5000}
	if s := os.Getenv("COLLECT_BENCH_BATCHES"); s != "" {
		batches = nil
		for _, f := range strings.Split(s, ",") {
			n, _ := strconv.Atoi(f)
			batches = append(batches, n)
		}
	}
	queueType := "quorum"
	if s := os.Getenv("COLLECT_BENCH_QUEUE_TYPE"); s != "" {
		queueType = s
	}
	node := brokertest.StartNode(b, nil)
	pg := pgtest.Start(b, &pgtest.Options{Durable: true})
	for _, bs := range batches {
		b.Run(fmt.Sprintf("batch=%d", bs), func(b *testing.B) {
			for range b.N {
				benchBacklog(b, node.URL(), pg, messages, bs, queueType)
			}
		})
	}
}

func benchBacklog(b *testing.B, amqpURL string, pg *pgtest.Cluster, messages, batchSize int, queueType string) {
	b.StopTimer()
	dbURL := pg.CreateDatabase(fmt.Sprintf("bench_%d", dbSeq.Add(1)))
	base := fmt.Sprintf("bench.%d.%d", batchSize, time.Now().UnixNano())
	n := names{clicks: base + ".clicks", actions: base + ".actions", clickQ: base + ".q.clicks", actionQ: base + ".q.actions", deadQ: base + ".q.dead"}

	store, err := NewStore(StoreConfig{DatabaseURL: dbURL})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.URLs = []string{amqpURL}
	cfg.Store = store
	cfg.QueueType = queueType
	cfg.BatchSize = batchSize
	if s := os.Getenv("COLLECT_BENCH_WRITERS"); s != "" {
		cfg.Writers, _ = strconv.Atoi(s) // 0: the default
	}
	if s := os.Getenv("COLLECT_BENCH_PREFETCH"); s != "" {
		cfg.Prefetch, _ = strconv.Atoi(s) // 0: the default, 2 * batch
	}
	n.apply(cfg)
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	// Declare the queues (and migrate) with a first session, then stop.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for !c.Stats().DatabaseUp {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	// The backlog.
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		b.Fatal(err)
	}
	ch, _ := conn.Channel()
	_ = ch.Confirm(false)
	var dcs []*amqp.DeferredConfirmation
	var bytes int
	day := time.Now()
	for i := range messages {
		id, body := clickBodyAt(day.Add(-time.Duration(i)*time.Millisecond), "bench-link", "eu")
		bytes += len(body)
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), n.clicks, "click.eu", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: id, ContentType: "application/json", Body: body})
		if err != nil {
			b.Fatal(err)
		}
		dcs = append(dcs, dc)
		if len(dcs) == 2048 {
			for _, dc := range dcs {
				dc.Wait()
			}
			dcs = dcs[:0]
		}
	}
	for _, dc := range dcs {
		dc.Wait()
	}
	conn.Close()

	// The drain.
	c, err = New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	if f := os.Getenv("COLLECT_BENCH_CPUPROFILE"); f != "" {
		// The drain alone, not the backlog's publishing.
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		_ = pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	b.StartTimer()
	cpu0, pg0 := cpuTime(), pg.CPUTime()
	start := time.Now()
	go func() { done <- c.Run(ctx) }()
	for c.Stats().Clicks < uint64(messages) {
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	cpu, pgCPU := cpuTime()-cpu0, pg.CPUTime()-pg0
	b.StopTimer()
	cancel()
	<-done
	s := c.Stats()
	b.ReportMetric(float64(messages)/took.Seconds(), "rows/s")
	b.ReportMetric(float64(bytes)/float64(messages), "B/msg")
	b.ReportMetric(s.BatchDuration.Sum/float64(s.BatchDuration.Count)*1000, "ms/batch")
	b.ReportMetric(float64(s.WriteTime.Milliseconds())/float64(s.Batches), "write-ms/batch")
	b.ReportMetric(float64(cpu.Microseconds())/float64(messages), "collector-cpu-us/msg")
	b.ReportMetric(float64(pgCPU.Microseconds())/float64(messages), "postgres-cpu-us/msg")
	b.Logf("batch %d, %d writers, %s queue: %d rows in %v = %.0f rows/s (%d batches, mean %.1f ms from first message to ack, %.1f ms writing; CPU per message: collector %.1f µs, PostgreSQL %.1f µs)",
		batchSize, c.cfg.Writers, queueType, messages, took.Round(time.Millisecond), float64(messages)/took.Seconds(),
		s.Batches, s.BatchDuration.Sum/float64(s.BatchDuration.Count)*1000, float64(s.WriteTime.Milliseconds())/float64(s.Batches),
		float64(cpu.Microseconds())/float64(messages), float64(pgCPU.Microseconds())/float64(messages))
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
