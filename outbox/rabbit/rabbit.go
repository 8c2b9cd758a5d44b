// Package rabbit is the amqp091-go publisher that the outbox forwarder
// drives: one connection, one channel in confirm mode, mandatory persistent
// publishes.
//
// It avoids the known amqp091-go pitfalls: every notify channel is buffered
// and always drained by a goroutine of its own, so the library's reader never
// blocks on us (which would deadlock Close and Publish); confirms are read
// from NotifyPublish rather than DeferredConfirmation.Wait, which can hang;
// publishing pauses while the broker has blocked the connection
// (NotifyBlocked); heartbeats detect a dead peer, and Close force-closes the
// socket when the graceful close does not finish, so a black-holed
// connection never hangs the forwarder.
//
// A basic.return for a message arrives before its basic.ack, on another Go
// channel: the drain goroutine takes every queued return before it applies
// an ack, so an unroutable message is never reported delivered.
package rabbit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/wcoalesce"
	"github.com/clickedge/clickedge/outbox"
)

var _ outbox.Publisher = (*Publisher)(nil)

// Config configures a Publisher. Build it with DefaultConfig.
type Config struct {
	// URLs are tried in order on every connect. Required.
	URLs []string

	// Exchange is declared (durable topic) on connect. Default "clicks".
	// Exchanges named by records are declared when first seen.
	Exchange string

	// DeclareQueue, when set, declares a durable queue of this name bound
	// to Exchange with BindingKey, for single-box setups. Default "" (none:
	// queues belong to the consumers).
	DeclareQueue string
	// QueueType is the x-queue-type of DeclareQueue. Default "quorum".
	QueueType string
	// BindingKey binds DeclareQueue. Default "click.#".
	BindingKey string

	// Exchanges are declared (durable topic) on connect too, besides
	// Exchange: the postback role's "actions", so that consumers can bind
	// to it before the first action is sent. Default none.
	Exchanges []string
	// Queues are declared (durable, QueueType) and bound on connect like
	// DeclareQueue, each to its own exchange and key, for single-box
	// setups. Default none.
	Queues []QueueBinding

	// Heartbeat is the AMQP heartbeat; a silent peer is dropped after three
	// missed ones. Default 5s.
	Heartbeat time.Duration
	// DialTimeout bounds the TCP connect and the AMQP handshake of one URL,
	// and again the channel and topology setup after it. Default 5s.
	DialTimeout time.Duration
	// CloseTimeout bounds the graceful close before the socket is closed.
	// Default 1s.
	CloseTimeout time.Duration

	// ConfirmBuffer is the capacity of the confirm channels; it must be at
	// least the forwarder's window. Default 65536.
	ConfirmBuffer int

	// ConnectionName is shown in the broker's management UI.
	ConnectionName string

	// Logger receives topology and blocking events. Nil discards.
	Logger *slog.Logger
}

// QueueBinding is a queue the publisher declares and binds (Config.Queues).
type QueueBinding struct {
	Queue, Exchange, Key string
}

// DefaultConfig returns the defaults described on Config, for the broker on
// this host.
func DefaultConfig() *Config {
	return &Config{
		URLs:          []string{"amqp://guest:guest@127.0.0.1:5672/"},
		Exchange:      "clicks",
		QueueType:     "quorum",
		BindingKey:    "click.#",
		Heartbeat:     5 * time.Second,
		DialTimeout:   5 * time.Second,
		CloseTimeout:  time.Second,
		ConfirmBuffer: 65536,
	}
}

// Publisher connects to the first broker in Config.URLs that answers.
type Publisher struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns a Publisher. It does not connect.
func New(cfg *Config) (*Publisher, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	c := *cfg
	d := DefaultConfig()
	if len(c.URLs) == 0 {
		return nil, errors.New("rabbit: no broker URLs")
	}
	for i, u := range c.URLs {
		if _, err := amqp.ParseURI(u); err != nil {
			return nil, fmt.Errorf("rabbit: url %d (%s): %w", i, Redact(u), err)
		}
	}
	if c.Exchange == "" {
		c.Exchange = d.Exchange
	}
	if c.QueueType == "" {
		c.QueueType = d.QueueType
	}
	if c.BindingKey == "" {
		c.BindingKey = d.BindingKey
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = d.CloseTimeout
	}
	if c.ConfirmBuffer <= 0 {
		c.ConfirmBuffer = d.ConfirmBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Publisher{cfg: c, log: c.Logger}, nil
}

// Connect tries each URL in order and returns a session on the first that
// accepts a connection, a confirm-mode channel and the topology.
func (p *Publisher) Connect(ctx context.Context) (outbox.Session, error) {
	var errs []error
	for _, u := range p.cfg.URLs {
		s, err := p.dial(ctx, u)
		if err == nil {
			return s, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", Redact(u), err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("rabbit: connect: %w", errors.Join(errs...))
}

// Redact returns an AMQP URL without its password.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func (p *Publisher) dial(ctx context.Context, rawURL string) (*session, error) {
	var netConn net.Conn
	props := amqp.NewConnectionProperties()
	if p.cfg.ConnectionName != "" {
		props.SetClientConnectionName(p.cfg.ConnectionName)
	}
	conn, err := amqp.DialConfig(rawURL, amqp.Config{
		Heartbeat:  p.cfg.Heartbeat,
		Locale:     "en_US",
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: p.cfg.DialTimeout, KeepAlive: 30 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the handshake; amqp091 clears it once open.
			if err := c.SetDeadline(time.Now().Add(p.cfg.DialTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			// Publishes made while the previous write is in the kernel
			// leave together in the next one (internal/wcoalesce):
			// amqp091 flushes once per publish.
			netConn = wcoalesce.New(c)
			return netConn, nil
		},
	})
	if err != nil {
		return nil, err
	}
	s := &session{
		p:        p,
		conn:     conn,
		netConn:  netConn,
		addr:     Redact(rawURL),
		confirms: make(chan outbox.Confirm, p.cfg.ConfirmBuffer),
		done:     make(chan struct{}),
		unblock:  make(chan struct{}),
		ids:      make(map[uint64]string),
		declared: map[string]bool{},
		headers:  amqp.Table{},
	}
	if err := p.boundedSetup(ctx, s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// testHookSetup, when set, runs after the AMQP handshake and before the
// channel and topology setup (export_test.go).
var testHookSetup func()

// boundedSetup runs s.setup within Config.DialTimeout and ctx. amqp091's
// channel and topology calls wait for the broker's answer without a
// deadline, and heartbeats keep a connection alive while the broker never
// answers them: a RabbitMQ node that accepts connections while it is still
// booting has been seen to leave channel.open unanswered, which hung
// Connect, and so the forwarder, for good. When the bound passes, the
// socket is closed, which fails the pending call.
func (p *Publisher) boundedSetup(ctx context.Context, s *session) error {
	if s.netConn == nil {
		return s.setup()
	}
	timer := time.AfterFunc(p.cfg.DialTimeout, func() { s.netConn.Close() })
	stop := context.AfterFunc(ctx, func() { s.netConn.Close() })
	if testHookSetup != nil {
		testHookSetup()
	}
	err := s.setup()
	fired := !timer.Stop()
	cancelled := !stop()
	switch {
	case err == nil && !fired && !cancelled:
		return nil
	case fired:
		return fmt.Errorf("channel and topology setup unanswered after %v: %w", p.cfg.DialTimeout, errOr(err))
	case cancelled:
		return fmt.Errorf("channel and topology setup: %w", context.Cause(ctx))
	}
	return err
}

// errOr returns err, or a placeholder when the setup succeeded just as its
// bound closed the socket.
func errOr(err error) error {
	if err == nil {
		return errors.New("socket closed by the bound")
	}
	return err
}

// session is one connection and confirm-mode channel.
type session struct {
	p       *Publisher
	conn    *amqp.Connection
	ch      *amqp.Channel
	netConn net.Conn
	addr    string

	confirms chan outbox.Confirm
	done     chan struct{}
	errMu    sync.Mutex
	err      error
	failOnce sync.Once

	blocked   atomic.Bool
	blockMu   sync.Mutex
	unblock   chan struct{} // closed and replaced when the broker unblocks
	closeOnce sync.Once

	mu       sync.Mutex
	ids      map[uint64]string // message id by delivery tag, until its confirm
	returned map[string]string // reply text by message id, until its ack

	// Owned by the publishing goroutine.
	nextTag  uint64
	declared map[string]bool
	headers  amqp.Table
}

func (s *session) setup() error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	s.ch = ch
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	cfg := &s.p.cfg
	// Buffered notify channels, drained by one goroutine, always.
	pubs := ch.NotifyPublish(make(chan amqp.Confirmation, cfg.ConfirmBuffer))
	rets := ch.NotifyReturn(make(chan amqp.Return, cfg.ConfirmBuffer))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	connClosed := s.conn.NotifyClose(make(chan *amqp.Error, 1))
	blocks := s.conn.NotifyBlocked(make(chan amqp.Blocking, 16))
	go s.drain(pubs, rets, chClosed, connClosed, blocks)

	if err := s.declareExchange(cfg.Exchange); err != nil {
		return err
	}
	for _, name := range cfg.Exchanges {
		if err := s.declareExchange(name); err != nil {
			return err
		}
	}
	queues := cfg.Queues
	if q := cfg.DeclareQueue; q != "" {
		queues = append([]QueueBinding{{Queue: q, Exchange: cfg.Exchange, Key: cfg.BindingKey}}, queues...)
	}
	for _, q := range queues {
		if err := s.declareExchange(q.Exchange); err != nil {
			return err
		}
		args := amqp.Table{"x-queue-type": cfg.QueueType}
		if _, err := ch.QueueDeclare(q.Queue, true, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %q (%s): %w", q.Queue, cfg.QueueType, err)
		}
		if err := ch.QueueBind(q.Queue, q.Key, q.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %q to %q with %q: %w", q.Queue, q.Exchange, q.Key, err)
		}
	}
	return nil
}

func (s *session) declareExchange(name string) error {
	if s.declared[name] {
		return nil
	}
	if err := s.ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", name, err)
	}
	s.declared[name] = true
	return nil
}

// drain is the only reader of the library's notify channels.
func (s *session) drain(pubs <-chan amqp.Confirmation, rets <-chan amqp.Return,
	chClosed, connClosed <-chan *amqp.Error, blocks <-chan amqp.Blocking) {
	takeReturns := func() {
		for {
			select {
			case r, ok := <-rets:
				if !ok {
					return
				}
				s.noteReturn(r)
			default:
				return
			}
		}
	}
	for {
		select {
		case r, ok := <-rets:
			if ok {
				s.noteReturn(r)
			} else {
				rets = nil
			}
		case c, ok := <-pubs:
			if !ok {
				s.fail(errors.New("confirm channel closed"))
				pubs = nil
				continue
			}
			// A return is queued before its ack: take returns first.
			takeReturns()
			s.mu.Lock()
			id := s.ids[c.DeliveryTag]
			delete(s.ids, c.DeliveryTag)
			reason, returned := s.returned[id]
			if returned {
				delete(s.returned, id)
			}
			s.mu.Unlock()
			s.confirms <- outbox.Confirm{Tag: c.DeliveryTag, Ack: c.Ack, Returned: returned, Reason: reason}
		case b, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			s.setBlocked(b.Active, b.Reason)
		case e, ok := <-chClosed:
			s.fail(closeErr("channel", e, ok))
			chClosed = nil
		case e, ok := <-connClosed:
			s.fail(closeErr("connection", e, ok))
			connClosed = nil
		case <-s.done:
			// Keep draining until the library closes its channels, so its
			// reader never blocks on us.
			if pubs == nil && rets == nil {
				return
			}
			select {
			case _, ok := <-pubs:
				if !ok {
					pubs = nil
				}
			case _, ok := <-rets:
				if !ok {
					rets = nil
				}
			case <-time.After(s.p.cfg.CloseTimeout + time.Second):
				return
			}
		}
	}
}

func closeErr(what string, e *amqp.Error, ok bool) error {
	if ok && e != nil {
		return fmt.Errorf("%s closed by the broker: %w", what, e)
	}
	return fmt.Errorf("%s closed", what)
}

func (s *session) noteReturn(r amqp.Return) {
	s.mu.Lock()
	if s.returned == nil {
		s.returned = map[string]string{}
	}
	s.returned[r.MessageId] = fmt.Sprintf("%d %s (exchange %q, routing key %q)", r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey)
	s.mu.Unlock()
}

func (s *session) setBlocked(active bool, reason string) {
	s.blockMu.Lock()
	defer s.blockMu.Unlock()
	was := s.blocked.Swap(active)
	if was == active {
		return
	}
	if active {
		s.p.log.Warn("broker blocked publishing; the forwarder pauses", "broker", s.addr, "reason", reason)
		return
	}
	s.p.log.Info("broker unblocked publishing", "broker", s.addr)
	close(s.unblock)
	s.unblock = make(chan struct{})
}

func (s *session) fail(err error) {
	s.failOnce.Do(func() {
		s.errMu.Lock()
		s.err = err
		s.errMu.Unlock()
		close(s.done)
	})
}

// Publish implements outbox.Session.
func (s *session) Publish(ctx context.Context, r *outbox.Record) (uint64, error) {
	for s.blocked.Load() {
		s.blockMu.Lock()
		wait := s.unblock
		s.blockMu.Unlock()
		if !s.blocked.Load() {
			break
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return 0, outbox.ErrBlocked
		case <-s.done:
			return 0, s.Err()
		}
	}
	select {
	case <-s.done:
		return 0, s.Err()
	default:
	}
	if r.Exchange != "" {
		if err := s.declareExchange(r.Exchange); err != nil {
			return 0, err
		}
	}
	// The library encodes the table before Publish returns, so one map
	// serves every publish.
	clear(s.headers)
	for _, h := range r.Headers {
		s.headers[h.Key] = h.Value
	}
	tag := s.nextTag + 1
	s.mu.Lock()
	s.ids[tag] = r.MessageID
	s.mu.Unlock()
	err := s.ch.PublishWithContext(ctx, r.Exchange, r.RoutingKey, true, false, amqp.Publishing{
		Headers:      s.headers,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    r.MessageID,
		Timestamp:    r.Time,
		AppId:        "clickedge",
		Body:         r.Body,
	})
	if err != nil {
		s.mu.Lock()
		delete(s.ids, tag)
		s.mu.Unlock()
		s.fail(fmt.Errorf("publish: %w", err))
		return 0, err
	}
	s.nextTag = tag
	return tag, nil
}

func (s *session) Confirms() <-chan outbox.Confirm { return s.confirms }
func (s *session) Done() <-chan struct{}           { return s.done }
func (s *session) Blocked() bool                   { return s.blocked.Load() }
func (s *session) Addr() string                    { return s.addr }

func (s *session) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Close closes the channel and connection gracefully, and the socket if
// that does not finish within Config.CloseTimeout (a black-holed peer never
// answers connection.close).
func (s *session) Close() error {
	s.closeOnce.Do(func() {
		s.fail(errors.New("session closed"))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = s.conn.Close()
		}()
		select {
		case <-done:
		case <-time.After(s.p.cfg.CloseTimeout):
			if s.netConn != nil {
				_ = s.netConn.Close()
			}
			<-done
		}
	})
	return nil
}
