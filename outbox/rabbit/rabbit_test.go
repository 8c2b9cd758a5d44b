package rabbit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/internal/faultproxy"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
	"github.com/clickedge/clickedge/outbox/rabbit"
)

func randomName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// viaProxy returns brokerURL with its host replaced by a fault proxy.
func viaProxy(t *testing.T, brokerURL string) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	return u.String(), p
}

func received(c *brokertest.Consumer) func() map[string]int {
	return func() map[string]int {
		m := map[string]int{}
		for _, d := range c.Messages() {
			m[d.MessageID]++
		}
		return m
	}
}

// bind binds or unbinds queue from exchange on the broker at brokerURL.
func bind(t *testing.T, brokerURL, queue, exchange, key string, on bool) {
	t.Helper()
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if on {
		err = ch.QueueBind(queue, key, exchange, false, nil)
	} else {
		err = ch.QueueUnbind(queue, key, exchange, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// The same contract as the fake publisher, against the shared RabbitMQ,
// through a fault proxy that can break the connection.
func TestForwarderContractRabbitMQ(t *testing.T) {
	shared := brokertest.SharedURL(t)
	outboxtest.RunForwarderContract(t, func(t *testing.T) *outboxtest.ForwarderEnv {
		exchange := randomName("ce-test-")
		q := brokertest.TempQueue(t, shared, exchange, "click.#")
		c := brokertest.Consume(t, shared, q)
		pubURL, proxy := viaProxy(t, shared)
		cfg := rabbit.DefaultConfig()
		cfg.URLs = []string{pubURL}
		cfg.Exchange = exchange
		cfg.Heartbeat = 2 * time.Second
		p, err := rabbit.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			conn, err := amqp.Dial(shared)
			if err == nil {
				ch, _ := conn.Channel()
				ch.ExchangeDelete(exchange, false, false)
				conn.Close()
			}
		})
		return &outboxtest.ForwarderEnv{
			Publisher: p, Exchange: exchange, RoutingKey: "click.test",
			Received: received(c),
			Break: func() {
				proxy.SetMode(faultproxy.Reset)
				time.Sleep(50 * time.Millisecond)
				proxy.SetMode(faultproxy.Pass)
			},
			Unroutable: func(b bool) { bind(t, shared, q, exchange, "click.#", !b) },
			Timeout:    30 * time.Second,
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []*rabbit.Config{
		{},
		{URLs: []string{"http://x/"}},
		{URLs: []string{"amqp://ok/", "::bad"}},
	} {
		if _, err := rabbit.New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg.URLs)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:secret@h:5672/":  "amqp://guest:xxxxx@h:5672/",
		"amqp://h/vhost":               "amqp://h/vhost",
		"amqps://u:p%40ss@broker/prod": "amqps://u:xxxxx@broker/prod",
	} {
		if got := rabbit.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConnectTriesURLsInOrder(t *testing.T) {
	shared := brokertest.SharedURL(t)
	cfg := rabbit.DefaultConfig()
	cfg.URLs = []string{"amqp://guest:guest@127.0.0.1:1/", shared}
	cfg.DialTimeout = time.Second
	p, _ := rabbit.New(cfg)
	s, err := p.Connect(context.Background())
	if err != nil {
		t.Fatalf("Connect with a dead first URL = %v", err)
	}
	defer s.Close()
	if got, want := s.Addr(), rabbit.Redact(shared); got != want {
		t.Fatalf("connected to %s, want the second URL %s", got, want)
	}
	cfg.URLs = []string{"amqp://guest:guest@127.0.0.1:1/"}
	p, _ = rabbit.New(cfg)
	if _, err := p.Connect(context.Background()); err == nil {
		t.Fatal("Connect to a dead broker succeeded")
	}
}

// A broker that completes the handshake and then never answers (a node
// still booting after a restart did this): Connect gives up after
// DialTimeout instead of hanging on channel.open while heartbeats keep the
// connection alive. Not parallel: the hook is package-wide.
func TestConnectBoundsSetup(t *testing.T) {
	shared := brokertest.SharedURL(t)
	u, proxy := viaProxy(t, shared)
	cfg := rabbit.DefaultConfig()
	cfg.URLs = []string{u}
	cfg.DialTimeout = time.Second
	cfg.Heartbeat = 5 * time.Second // amqp091 drops a silent peer only after 15 s
	p, err := rabbit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	restore := rabbit.SetTestHookSetup(func() { proxy.SetMode(faultproxy.Blackhole) })
	start := time.Now()
	s, err := p.Connect(context.Background())
	elapsed := time.Since(start)
	restore()
	if err == nil {
		s.Close()
		t.Fatal("Connect succeeded through a black-holed setup")
	}
	if elapsed > 4*time.Second || !strings.Contains(err.Error(), "unanswered") {
		t.Fatalf("Connect = %v after %v; want a setup timeout after about 1s", err, elapsed)
	}

	// A cancelled context ends the setup at once, too.
	proxy.SetMode(faultproxy.Pass)
	ctx, cancel := context.WithCancel(context.Background())
	restore = rabbit.SetTestHookSetup(func() { proxy.SetMode(faultproxy.Blackhole); cancel() })
	start = time.Now()
	s, err = p.Connect(ctx)
	elapsed = time.Since(start)
	restore()
	if err == nil {
		s.Close()
		t.Fatal("Connect succeeded with a cancelled context")
	}
	if elapsed > 500*time.Millisecond {
		t.Fatalf("Connect with a cancelled context took %v: %v", elapsed, err)
	}

	proxy.SetMode(faultproxy.Pass)
	s, err = p.Connect(context.Background())
	if err != nil {
		t.Fatalf("Connect after the path healed = %v", err)
	}
	s.Close()
}

func TestDeclaresQueueForSingleBox(t *testing.T) {
	shared := brokertest.SharedURL(t)
	cfg := rabbit.DefaultConfig()
	cfg.URLs = []string{shared}
	cfg.Exchange = randomName("ce-test-")
	cfg.DeclareQueue = randomName("ce-test-q-")
	p, _ := rabbit.New(cfg)
	s, err := p.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, _ := amqp.Dial(shared)
	defer conn.Close()
	ch, _ := conn.Channel()
	defer func() {
		ch.QueueDelete(cfg.DeclareQueue, false, false, false)
		ch.ExchangeDelete(cfg.Exchange, false, false)
	}()
	// A passive declare with the same arguments succeeds only if the queue
	// exists as a quorum queue.
	if _, err := ch.QueueDeclarePassive(cfg.DeclareQueue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("queue %s not declared: %v", cfg.DeclareQueue, err)
	}
}

// faultRig is a private broker node, a fault proxy in front of it, an
// outbox with a forwarder going through the proxy, and a consumer reading
// the node directly.
type faultRig struct {
	t     *testing.T
	node  *brokertest.Node
	proxy *faultproxy.Proxy
	o     *outbox.Outbox
	f     *outbox.Forwarder
	c     *brokertest.Consumer

	mu   sync.Mutex
	ids  []string
	next atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

const rigHeartbeat = 2 * time.Second

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	r := &faultRig{t: t, node: brokertest.StartNode(t, nil), stop: make(chan struct{})}
	pubURL, proxy := viaProxy(t, r.node.URL())
	r.proxy = proxy
	q := brokertest.TempQueue(t, r.node.URL(), "clicks", "click.#")
	r.c = brokertest.Consume(t, r.node.URL(), q)
	r.o = outboxtest.Open(t, &outbox.Options{Durability: outbox.Async})
	cfg := rabbit.DefaultConfig()
	cfg.URLs = []string{pubURL}
	cfg.Heartbeat = rigHeartbeat
	cfg.DialTimeout = 2 * time.Second
	p, err := rabbit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fc := outbox.DefaultForwarderConfig()
	fc.Publisher = p
	fc.ReconnectMax = time.Second
	fc.ConfirmTimeout = 10 * time.Second
	r.f, err = outbox.NewForwarder(r.o, fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.stopLoad()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.f.Close(ctx)
	})
	t.Cleanup(func() {
		// Runs before the forwarder's Close above: what it was doing when
		// the test gave up.
		if t.Failed() {
			t.Logf("forwarder stats at the end: %+v", r.f.Stats())
			t.Logf("outbox stats at the end: %+v", r.o.Stats())
		}
	})
	outboxtest.WaitFor(t, 30*time.Second, "forwarder connected", func() bool { return r.f.Stats().Connected })
	return r
}

// load appends records at about perSecond until stopLoad.
func (r *faultRig) load(perSecond int) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			if r.appendN(perSecond/100) != nil {
				return
			}
		}
	}()
}

func (r *faultRig) appendN(n int) error {
	for range n {
		id := fmt.Sprintf("%s-%07d", r.t.Name(), r.next.Add(1))
		if err := r.o.Append(outboxtest.Record(id)); err != nil {
			r.t.Errorf("Append: %v", err)
			return err
		}
		r.mu.Lock()
		r.ids = append(r.ids, id)
		r.mu.Unlock()
	}
	return nil
}

func (r *faultRig) stopLoad() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// settle stops the load, waits until everything is delivered and acked,
// and checks that nothing was lost and nothing acked without a confirm.
func (r *faultRig) settle(timeout time.Duration) (records, dups int) {
	r.t.Helper()
	r.stopLoad()
	r.mu.Lock()
	ids := append([]string(nil), r.ids...)
	r.mu.Unlock()
	outboxtest.WaitFor(r.t, timeout, "the outbox to drain", func() bool {
		r.o.Sync()
		return r.o.Stats().Pending == 0
	})
	if err := r.c.WaitUnique(len(ids), timeout); err != nil {
		r.t.Fatalf("consumer: %v", err)
	}
	dups = outboxtest.CheckDelivered(r.t, r.o, ids, received(r.c), timeout)
	return len(ids), dups
}

// Broker killed (SIGKILL) while confirms are outstanding, then restarted:
// every record arrives, and none was acked in the outbox without a confirm
// (CheckDelivered: every retained record reached the consumer).
func TestBrokerKillAndRestart(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	r.load(2000)
	outboxtest.WaitFor(t, 10*time.Second, "confirms flowing", func() bool { return r.f.Stats().Confirmed > 500 })
	// A burst, so that the kill lands with confirms outstanding.
	r.appendN(20000)
	var inFlight int
	outboxtest.WaitFor(t, 10*time.Second, "confirms outstanding", func() bool {
		inFlight = r.f.Stats().InFlight
		return inFlight >= 50
	})
	r.node.Kill()
	outboxtest.WaitFor(t, 15*time.Second, "the forwarder to notice", func() bool { return !r.f.Stats().Connected })
	time.Sleep(time.Second) // clicks pile up meanwhile
	r.node.Start()
	n, dups := r.settle(90 * time.Second)
	fs := r.f.Stats()
	if fs.Republished == 0 {
		t.Fatal("nothing was republished after the kill: the test did not catch confirms outstanding")
	}
	t.Logf("kill -9 with %d in flight: %d records, lost 0, %d duplicates, %d republished, %d reconnects",
		inFlight, n, dups, fs.Republished, fs.Reconnects)
}

// The proxy black-holes the connection for 30 s: the forwarder notices
// within the heartbeat window (three missed heartbeats), keeps trying, and
// delivers everything once the path heals.
func TestBlackhole30s(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	r.load(1000)
	outboxtest.WaitFor(t, 10*time.Second, "confirms flowing", func() bool { return r.f.Stats().Confirmed > 200 })
	start := time.Now()
	r.proxy.SetMode(faultproxy.Blackhole)
	outboxtest.WaitFor(t, 30*time.Second, "the blackhole to be noticed", func() bool { return !r.f.Stats().Connected })
	detected := time.Since(start)
	// amqp091 drops the connection after three heartbeat intervals without
	// a frame; allow one interval of slack for timers.
	if limit := 4*rigHeartbeat + time.Second; detected > limit {
		t.Fatalf("blackhole noticed after %v, want within %v", detected, limit)
	}
	time.Sleep(30*time.Second - time.Since(start))
	pendingDuring := r.o.Stats().Pending
	r.proxy.SetMode(faultproxy.Pass)
	healed := time.Now()
	outboxtest.WaitFor(t, 30*time.Second, "reconnect after the heal", func() bool { return r.f.Stats().Connected })
	resumed := time.Since(healed)
	n, dups := r.settle(60 * time.Second)
	t.Logf("blackhole: noticed after %v, %d records waited, resumed %v after the heal; %d records, lost 0, %d duplicates",
		detected.Round(time.Millisecond), pendingDuring, resumed.Round(time.Millisecond), n, dups)
}

// Connections reset, then broker-to-client bytes dropped (confirms lost
// while publishes still arrive): nothing is lost; the duplicates are the
// publishes whose confirms were lost.
func TestResetAndOneWayLoss(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	r.load(1000)
	outboxtest.WaitFor(t, 10*time.Second, "confirms flowing", func() bool { return r.f.Stats().Confirmed > 200 })
	for range 3 {
		r.proxy.SetMode(faultproxy.Reset)
		time.Sleep(100 * time.Millisecond)
		r.proxy.SetMode(faultproxy.Pass)
		outboxtest.WaitFor(t, 15*time.Second, "reconnect after reset", func() bool { return r.f.Stats().Connected })
		time.Sleep(300 * time.Millisecond)
	}
	c0 := r.c.Unique()
	r.proxy.SetMode(faultproxy.DropServerToClient)
	outboxtest.WaitFor(t, 30*time.Second, "lost confirms to be noticed", func() bool { return !r.f.Stats().Connected })
	// harden #9: the scenario's claim (publishes arrive while confirms are
	// lost) must be exercised, not noted.
	if r.c.Unique() == c0 {
		t.Fatal("no publish reached the broker during one-way loss: the scenario was not exercised")
	}
	r.proxy.SetMode(faultproxy.Pass)
	n, dups := r.settle(60 * time.Second)
	fs := r.f.Stats()
	t.Logf("3 resets + one-way loss: %d records, lost 0, %d duplicates, %d republished, %d reconnects", n, dups, fs.Republished, fs.Reconnects)
}

// A disk alarm makes the broker block publishers (connection.blocked): the
// forwarder pauses without dropping the session or deadlocking, the edge
// keeps appending, and delivery resumes when the alarm clears.
func TestBrokerAlarmPausesAndResumes(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	r.load(500)
	outboxtest.WaitFor(t, 10*time.Second, "confirms flowing", func() bool { return r.f.Stats().Confirmed > 100 })
	r.node.SetDiskFreeLimit("100000GB")
	outboxtest.WaitFor(t, 30*time.Second, "the forwarder to see the block", func() bool { return r.f.Stats().Blocked })
	// harden #9: while blocked, the edge keeps appending (each Append
	// returns promptly) and the forwarder keeps its session and goes on
	// waiting in Publish with its PublishTimeout rather than hanging: its
	// Close, given a deadline, would return (checked by the rig's cleanup).
	p0 := r.o.Stats().Pending
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		start := time.Now()
		if err := r.appendN(1); err != nil {
			t.Fatalf("Append while the broker blocks = %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Append took %v while the broker blocked publishing", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if fs := r.f.Stats(); !fs.Blocked || !fs.Connected {
		t.Fatalf("after 3s of alarm: blocked %v connected %v, want both", fs.Blocked, fs.Connected)
	}
	blockedPending := r.o.Stats().Pending
	if blockedPending <= p0 {
		t.Fatalf("pending %d -> %d: the appends during the block did not wait in the outbox", p0, blockedPending)
	}
	fs := r.f.Stats()
	if !fs.Connected || fs.SessionErrors != 0 {
		t.Fatalf("blocked broker dropped the session: %+v", fs)
	}
	if blockedPending == 0 {
		t.Fatal("nothing waited in the outbox while the broker was blocked")
	}
	r.node.ClearAlarm()
	n, dups := r.settle(60 * time.Second)
	t.Logf("alarm: %d records waited while blocked; %d records, lost 0, %d duplicates", blockedPending, n, dups)
}

// Publishes made back to back share socket writes (internal/wcoalesce),
// and every one of them still arrives and is confirmed.
func TestPublishesShareWrites(t *testing.T) {
	shared := brokertest.SharedURL(t)
	exchange := randomName("ce-test-")
	q := brokertest.TempQueue(t, shared, exchange, "click.#")
	c := brokertest.Consume(t, shared, q)
	cfg := rabbit.DefaultConfig()
	cfg.URLs = []string{shared}
	cfg.Exchange = exchange
	p, err := rabbit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 2000
	for i := range n {
		r := &outbox.Record{Seq: uint64(i + 1), MessageID: fmt.Sprintf("m-%d", i), Exchange: exchange, RoutingKey: "click.test", Body: []byte(`{"n":1}`)}
		if _, err := s.Publish(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	acked := 0
	deadline := time.After(30 * time.Second)
	for acked < n {
		select {
		case cf := <-s.Confirms():
			if !cf.Delivered() {
				t.Fatalf("publish %d not delivered: %+v", cf.Tag, cf)
			}
			acked++
		case <-deadline:
			t.Fatalf("%d of %d confirmed", acked, n)
		}
	}
	for end := time.Now().Add(30 * time.Second); len(received(c)()) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d of %d messages reached the queue", len(received(c)()), n)
		}
	}
	writes, syscalls := rabbit.WriteCounts(s)
	if writes < n || syscalls >= writes {
		t.Errorf("%d publishes: %d writes became %d kernel writes; want fewer kernel writes than writes", n, writes, syscalls)
	}
	t.Logf("%d publishes: %d writes, %d kernel writes", n, writes, syscalls)
}
