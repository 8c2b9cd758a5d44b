package collect

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/internal/pgtest"
)

// names are one test's exchanges and queues, so tests on the shared broker
// never see each other's messages.
type names struct{ clicks, actions, clickQ, actionQ, deadQ string }

func newNames(t *testing.T, amqpURL string) names {
	base := uniqueName(t)
	n := names{clicks: base + ".clicks", actions: base + ".actions",
		clickQ: base + ".q.clicks", actionQ: base + ".q.actions", deadQ: base + ".q.dead"}
	t.Cleanup(func() {
		conn, err := amqp.Dial(amqpURL)
		if err != nil {
			return // a private node is gone with its queues
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		for _, q := range []string{n.clickQ, n.actionQ, n.deadQ} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, e := range []string{n.clicks, n.actions} {
			_ = ch.ExchangeDelete(e, false, false)
		}
	})
	return n
}

func (n names) apply(cfg *Config) {
	cfg.ClickExchange, cfg.ActionExchange = n.clicks, n.actions
	cfg.ClickQueue, cfg.ActionQueue, cfg.DeadQueue = n.clickQ, n.actionQ, n.deadQ
}

// running is a Collector run by a test.
type running struct {
	c      *Collector
	cancel context.CancelFunc
	done   chan error
}

func startCollector(t *testing.T, amqpURL, dbURL string, n names, edit func(*Config)) *running {
	t.Helper()
	store, err := NewStore(StoreConfig{DatabaseURL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.URLs = []string{amqpURL}
	cfg.Store = store
	cfg.BatchSize = 200
	cfg.BatchInterval = 20 * time.Millisecond
	cfg.RetryMax = 500 * time.Millisecond
	cfg.DialTimeout = 2 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n.apply(cfg)
	if edit != nil {
		edit(cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(r.stop)
	// Wait until its queues are declared, so publishes are routed.
	waitFor(t, 30*time.Second, "the collector's first session", func() (bool, string) {
		s := c.Stats()
		return s.Connected, fmt.Sprintf("%+v", s)
	})
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
	r.done <- nil // stop is idempotent
}

// testWriter sends log lines to t.Log, and drops them once the test ended.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // logging after the test ended panics
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// publisher publishes with confirms, one message at a time in a window.
type publisher struct {
	t    testing.TB
	conn *amqp.Connection
	ch   *amqp.Channel
	dcs  []*amqp.DeferredConfirmation
}

func newPublisher(t testing.TB, url string) *publisher {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	p := &publisher{t: t, conn: conn, ch: ch}
	t.Cleanup(func() { conn.Close() })
	return p
}

func (p *publisher) publish(exchange, key, id string, body []byte) {
	p.t.Helper()
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, true, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Body: body,
		Headers: amqp.Table{"region": "eu", "node": "eu-1", "schema": int32(1)},
	})
	if err != nil {
		p.t.Fatalf("publish: %v", err)
	}
	p.dcs = append(p.dcs, dc)
	if len(p.dcs) >= 256 {
		p.wait()
	}
}

// wait waits for every confirm so far.
func (p *publisher) wait() {
	p.t.Helper()
	for _, dc := range p.dcs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil || !ok {
			p.t.Fatalf("publish not confirmed: ack %v, %v", ok, err)
		}
	}
	p.dcs = p.dcs[:0]
}

// queueDepth is the number of ready messages in q.
func queueDepth(t testing.TB, url, q string) int {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect queue %s: %v", q, err)
	}
	return qi.Messages
}

// getAll takes every message from q (acking them).
func getAll(t testing.TB, url, q string) []amqp.Delivery {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(q, true)
		if err != nil {
			t.Fatalf("get %s: %v", q, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// waitRows waits until the tables hold exactly the wanted rows, then
// checks that ids are unique (the keys guarantee it; this checks the keys).
func waitRows(t *testing.T, dbURL string, clicks, actions int64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d clicks and %d actions", clicks, actions), func() (bool, string) {
		c, err1 := tryQueryInt(dbURL, "SELECT count(*) FROM clicks")
		a, err2 := tryQueryInt(dbURL, "SELECT count(*) FROM actions")
		if err1 != nil || err2 != nil {
			return false, fmt.Sprintf("query: %v %v", err1, err2)
		}
		if c > clicks || a > actions {
			t.Fatalf("clicks %d, actions %d: more than the %d and %d published", c, a, clicks, actions)
		}
		return c == clicks && a == actions, fmt.Sprintf("clicks %d, actions %d", c, a)
	})
	if d := queryInt(t, dbURL, "SELECT count(DISTINCT click_id) FROM clicks"); d != clicks {
		t.Fatalf("distinct click ids = %d, want %d", d, clicks)
	}
	if d := queryInt(t, dbURL, "SELECT count(DISTINCT action_id) FROM actions"); d != actions {
		t.Fatalf("distinct action ids = %d, want %d", d, actions)
	}
}

// Clicks and actions in, each exactly once, duplicates absorbed, poison
// dead-lettered with its reason while the rest of its batch is written,
// and everything acked.
func TestCollectorRowsDuplicatesPoison(t *testing.T) {
	for _, qt := range []string{"quorum", "classic"} {
		t.Run(qt, func(t *testing.T) {
			amqpURL := brokertest.SharedURL(t)
			dbURL := pgtest.SharedDatabase(t)
			n := newNames(t, amqpURL)
			r := startCollector(t, amqpURL, dbURL, n, func(c *Config) { c.QueueType = qt })

			pub := newPublisher(t, amqpURL)
			const clicks = 1000
			var ids []string
			var bodies [][]byte
			for i := range clicks {
				id, body := clickBodyAt(time.Now().Add(-time.Duration(i)*time.Minute), fmt.Sprintf("l%d", i%7), "eu")
				ids, bodies = append(ids, id), append(bodies, body)
				pub.publish(n.clicks, "click.eu", id, body)
				if i%100 == 0 {
					pub.publish(n.clicks, "click.eu", "poison", []byte("not json at all"))
				}
			}
			const actions = 30
			for i := range actions {
				id, body := actionMsg(ids[i], "acme", fmt.Sprint("o-", i), "sale", "approved", "9.99")
				pub.publish(n.actions, "action.eu", id, body)
			}
			pub.publish(n.actions, "action.eu", "bad", []byte(`{"v":2,"action_id":"x"}`))
			// Every click again: the edge's at-least-once duplicates.
			for i := range clicks {
				pub.publish(n.clicks, "click.us", ids[i], bodies[i])
			}
			pub.wait()

			waitRows(t, dbURL, clicks, actions, 60*time.Second)
			waitFor(t, 30*time.Second, "all duplicates counted and everything acked", func() (bool, string) {
				s := r.c.Stats()
				return s.ClickDuplicates == clicks && s.DeadLettered == 11 && s.Lag(time.Now()) == 0,
					fmt.Sprintf("dups %d dead %d lag %v", s.ClickDuplicates, s.DeadLettered, s.Lag(time.Now()))
			})
			s := r.c.Stats()
			if s.Clicks != clicks || s.Actions != actions || s.DeadByReason[ReasonNotJSON] != 10 || s.DeadByReason[ReasonUnknownVersion] != 1 {
				t.Errorf("Stats = %+v", s)
			}
			r.stop()
			if d := queueDepth(t, amqpURL, n.clickQ) + queueDepth(t, amqpURL, n.actionQ); d != 0 {
				t.Errorf("%d messages left in the queues after the collector stopped, want 0 (all acked)", d)
			}
			dead := getAll(t, amqpURL, n.deadQ)
			if len(dead) != 11 {
				t.Fatalf("dead-letter queue holds %d messages, want 11", len(dead))
			}
			for _, d := range dead {
				reason, _ := d.Headers[ReasonHeader].(string)
				queue, _ := d.Headers[QueueHeader].(string)
				switch d.MessageId {
				case "poison":
					if reason != string(ReasonNotJSON) || queue != n.clickQ || string(d.Body) != "not json at all" {
						t.Errorf("dead %s: reason %q queue %q body %q", d.MessageId, reason, queue, d.Body)
					}
				case "bad":
					if reason != string(ReasonUnknownVersion) || queue != n.actionQ {
						t.Errorf("dead %s: reason %q queue %q", d.MessageId, reason, queue)
					}
				default:
					t.Errorf("unexpected dead message %q", d.MessageId)
				}
				if d.Headers["region"] != "eu" || d.Headers[DetailHeader] == "" {
					t.Errorf("dead %s lost its headers or detail: %v", d.MessageId, d.Headers)
				}
			}
		})
	}
}

// A row the database refuses (here: a constraint added by hand) is
// dead-lettered with the database's reason, and the rest of its batch is
// written: one bad row never blocks the queue.
func TestCollectorDatabaseRefusesRow(t *testing.T) {
	amqpURL := brokertest.SharedURL(t)
	dbURL := pgtest.SharedDatabase(t)
	n := newNames(t, amqpURL)
	r := startCollector(t, amqpURL, dbURL, n, func(c *Config) { c.BatchInterval = 200 * time.Millisecond })
	waitFor(t, 30*time.Second, "the schema", func() (bool, string) { return r.c.Stats().DatabaseUp, "not yet" })
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER TABLE clicks ADD CONSTRAINT no_evil CHECK (link <> 'evil')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	pub := newPublisher(t, amqpURL)
	for i := range 52 {
		link := "good"
		if i == 10 || i == 40 {
			link = "evil"
		}
		id, body := clickBodyAt(time.Now(), link, "eu")
		pub.publish(n.clicks, "click.eu", id, body)
	}
	pub.wait()
	waitRows(t, dbURL, 50, 0, 30*time.Second)
	waitFor(t, 30*time.Second, "two refused rows dead-lettered", func() (bool, string) {
		s := r.c.Stats()
		return s.DeadByReason[ReasonRefused] == 2 && s.Lag(time.Now()) == 0, fmt.Sprintf("%+v", s)
	})
	r.stop()
	for _, d := range getAll(t, amqpURL, n.deadQ) {
		if reason, _ := d.Headers[ReasonHeader].(string); reason != string(ReasonRefused) ||
			!strings.Contains(fmt.Sprint(d.Headers[DetailHeader]), "no_evil") || !strings.Contains(string(d.Body), `"evil"`) {
			t.Errorf("dead-lettered %s: reason %q detail %q", d.Body, reason, d.Headers[DetailHeader])
		}
	}
}

// publishStream publishes n fresh clicks (routing click.eu) in windows of
// 20, pausing every after each, from a goroutine; it returns their ids.
func publishStream(url, exchange string, n int, every time.Duration) (<-chan error, []string) {
	ids := make([]string, n)
	bodies := make([][]byte, n)
	for i := range n {
		ids[i], bodies[i] = clickBodyAt(time.Now(), "stream", "eu")
	}
	errc := make(chan error, 1)
	go func() {
		errc <- func() error {
			conn, err := amqp.Dial(url)
			if err != nil {
				return err
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			if err := ch.Confirm(false); err != nil {
				return err
			}
			var dcs []*amqp.DeferredConfirmation
			for i := range n {
				dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, "click.eu", true, false,
					amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: ids[i], Body: bodies[i]})
				if err != nil {
					return err
				}
				dcs = append(dcs, dc)
				if len(dcs) == 20 || i == n-1 {
					for _, dc := range dcs {
						if ok, err := dc.WaitContext(context.Background()); err != nil || !ok {
							return fmt.Errorf("publish not confirmed: %v %v", ok, err)
						}
					}
					dcs = dcs[:0]
					time.Sleep(every) // a steady stream, not one burst
				}
			}
			return nil
		}()
	}()
	return errc, ids
}

// PostgreSQL crashing and restarting under load loses nothing: the batch
// in hand is retried, nothing is acked before it commits.
func TestCollectorDatabaseCrash(t *testing.T) {
	amqpURL := brokertest.SharedURL(t)
	pg, dbURL := privateDB(t)
	n := newNames(t, amqpURL)
	r := startCollector(t, amqpURL, dbURL, n, nil)

	const total = 3000
	errc, _ := publishStream(amqpURL, n.clicks, total, 5*time.Millisecond)
	waitFor(t, 30*time.Second, "some rows", func() (bool, string) {
		c, _ := tryQueryInt(dbURL, "SELECT count(*) FROM clicks")
		return c > 200, fmt.Sprint(c)
	})
	pg.Crash()
	waitFor(t, 30*time.Second, "a failed write", func() (bool, string) {
		s := r.c.Stats()
		return s.WriteErrors > 0 && !s.DatabaseUp, fmt.Sprintf("%+v", s)
	})
	// Down, the collector holds what it has and acks nothing.
	held := r.c.Stats()
	if held.Lag(time.Now()) == 0 {
		t.Errorf("lag is 0 with the database down and messages in hand")
	}
	pg.Restart()
	if err := <-errc; err != nil {
		t.Fatalf("publish: %v", err)
	}
	waitRows(t, dbURL, total, 0, 90*time.Second)
	if s := r.c.Stats(); s.Clicks+s.ClickDuplicates < total || !s.DatabaseUp {
		t.Errorf("Stats = %+v", s)
	}
}

// A collector started while PostgreSQL is down consumes nothing it cannot
// write: it keeps retrying, and once the database is up every message is
// written once.
func TestCollectorDatabaseDownAtStart(t *testing.T) {
	amqpURL := brokertest.SharedURL(t)
	pg, dbURL := privateDB(t)
	n := newNames(t, amqpURL)
	pg.Stop()
	r := startCollector(t, amqpURL, dbURL, n, nil)
	pub := newPublisher(t, amqpURL)
	for range 300 {
		id, body := clickBodyAt(time.Now(), "x", "eu")
		pub.publish(n.clicks, "click.eu", id, body)
	}
	pub.wait()
	if s := r.c.Stats(); s.DatabaseUp || s.Batches != 0 {
		t.Fatalf("with the database down: %+v, want not up and no batch acked", s)
	}
	// What it holds unacked shows as lag, which an alert can see.
	waitFor(t, 30*time.Second, "lag while holding messages", func() (bool, string) {
		lag := r.c.Stats().Lag(time.Now())
		return lag > 0, lag.String()
	})
	pg.Restart()
	waitRows(t, dbURL, 300, 0, 60*time.Second)
}

// A broker killed and restarted: the collector reconnects, and every
// message published before and after is written once.
func TestCollectorBrokerRestart(t *testing.T) {
	node := brokertest.StartNode(t, nil)
	dbURL := pgtest.SharedDatabase(t)
	n := newNames(t, node.URL())
	r := startCollector(t, node.URL(), dbURL, n, nil)

	pub := newPublisher(t, node.URL())
	var want int64
	for range 500 {
		id, body := clickBodyAt(time.Now(), "before", "eu")
		pub.publish(n.clicks, "click.eu", id, body)
		want++
	}
	pub.wait()
	pub.conn.Close()
	node.Kill()
	waitFor(t, 30*time.Second, "the collector to notice", func() (bool, string) {
		return !r.c.Stats().Connected, "still connected"
	})
	node.Start()
	waitFor(t, 60*time.Second, "a new session", func() (bool, string) {
		s := r.c.Stats()
		return s.Connected && s.Sessions >= 2, fmt.Sprintf("%+v", s)
	})
	pub = newPublisher(t, node.URL())
	for range 500 {
		id, body := clickBodyAt(time.Now(), "after", "eu")
		pub.publish(n.clicks, "click.eu", id, body)
		want++
	}
	pub.wait()
	waitRows(t, dbURL, want, 0, 60*time.Second)
}

// A crash between a batch's commit and its ack (here: the channel closes
// there) loses nothing and duplicates nothing: the batch is redelivered to
// the next session and absorbed by the keys, counted as duplicates.
func TestCollectorCommitWithoutAck(t *testing.T) {
	amqpURL := brokertest.SharedURL(t)
	dbURL := pgtest.SharedDatabase(t)
	n := newNames(t, amqpURL)
	var once sync.Once
	r := startCollector(t, amqpURL, dbURL, n, func(c *Config) { c.RetryMin = 10 * time.Millisecond })
	r.stop()
	r.c.afterCommit = func(ch *amqp.Channel) { once.Do(func() { ch.Close() }) }
	pub := newPublisher(t, amqpURL)
	for range 1000 {
		id, body := clickBodyAt(time.Now(), "x", "eu")
		pub.publish(n.clicks, "click.eu", id, body)
	}
	pub.wait()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitRows(t, dbURL, 1000, 0, 60*time.Second)
	waitFor(t, 30*time.Second, "the unacked batch to come back as duplicates", func() (bool, string) {
		s := r.c.Stats()
		return s.ClickDuplicates > 0 && s.Sessions >= 2 && s.Lag(time.Now()) == 0, fmt.Sprintf("%+v", s)
	})
	if d := queueDepth(t, amqpURL, n.clickQ); d != 0 {
		t.Errorf("queue depth %d after catching up, want 0", d)
	}
}

// The helper process: a collector in a child process, so a test can kill
// -9 it. It runs only when COLLECT_TEST_CHILD is set.
func TestHelperCollectorProcess(t *testing.T) {
	if os.Getenv("COLLECT_TEST_CHILD") != "1" {
		t.Skip("helper process for TestCollectorKill9")
	}
	f := strings.Split(os.Getenv("COLLECT_TEST_NAMES"), ",")
	store, err := NewStore(StoreConfig{DatabaseURL: os.Getenv("COLLECT_TEST_DB")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.URLs = []string{os.Getenv("COLLECT_TEST_AMQP")}
	cfg.Store = store
	cfg.BatchSize = 300
	cfg.BatchInterval = 20 * time.Millisecond
	names{f[0], f[1], f[2], f[3], f[4]}.apply(cfg)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for range time.Tick(10 * time.Millisecond) {
			s := c.Stats()
			fmt.Printf("stats %d %d\n", s.Clicks, s.ClickDuplicates)
		}
	}()
	_ = c.Run(ctx)
}

type child struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	dups int
	rows int
	done chan struct{}
}

func startChild(t *testing.T, amqpURL, dbURL string, n names) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCollectorProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "COLLECT_TEST_CHILD=1", "COLLECT_TEST_AMQP="+amqpURL, "COLLECT_TEST_DB="+dbURL,
		"COLLECT_TEST_NAMES="+strings.Join([]string{n.clicks, n.actions, n.clickQ, n.actionQ, n.deadQ}, ","))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		buf := make([]byte, 64<<10)
		var line []byte
		for {
			k, err := out.Read(buf)
			for _, b := range buf[:k] {
				if b != '\n' {
					line = append(line, b)
					continue
				}
				if f := strings.Fields(string(line)); len(f) == 3 && f[0] == "stats" {
					rows, _ := strconv.Atoi(f[1])
					dups, _ := strconv.Atoi(f[2])
					c.mu.Lock()
					c.rows, c.dups = rows, dups
					c.mu.Unlock()
				}
				line = line[:0]
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	_ = c.cmd.Wait()
}

func (c *child) counts() (rows, dups int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rows, c.dups
}

// Two collectors consume the same queues; one is killed with SIGKILL in
// the middle and a new one started: every click is written exactly once,
// and the messages the killed one had written but not acked come back as
// duplicates that change nothing.
func TestCollectorKill9(t *testing.T) {
	amqpURL := brokertest.SharedURL(t)
	dbURL := pgtest.SharedDatabase(t)
	n := newNames(t, amqpURL)
	// Declare the topology and the schema once, in process, then leave it
	// to the children.
	r := startCollector(t, amqpURL, dbURL, n, nil)
	r.stop()

	a, b := startChild(t, amqpURL, dbURL, n), startChild(t, amqpURL, dbURL, n)
	const total = 6000
	errc, _ := publishStream(amqpURL, n.clicks, total, 5*time.Millisecond)
	waitFor(t, 60*time.Second, "the first child to write", func() (bool, string) {
		rows, _ := a.counts()
		return rows > 500, fmt.Sprint(rows)
	})
	a.kill()
	c := startChild(t, amqpURL, dbURL, n)
	if err := <-errc; err != nil {
		t.Fatalf("publish: %v", err)
	}
	waitRows(t, dbURL, total, 0, 120*time.Second)
	_, bd := b.counts()
	_, cd := c.counts()
	t.Logf("duplicates absorbed after the kill: %d + %d", bd, cd)
}
