package outboxtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clickedge/clickedge/outbox"
)

var _ outbox.Publisher = (*FakePublisher)(nil)

// FakePublisher is an in-memory broker for forwarder tests: it confirms
// what it receives, and can hold confirms, return messages as unroutable,
// refuse connections, block publishing and drop sessions.
type FakePublisher struct {
	// Unroutable makes every publish come back as basic.return + ack.
	Unroutable atomic.Bool
	// HoldConfirms queues confirms until Release.
	HoldConfirms atomic.Bool
	// RefuseConnect makes Connect fail.
	RefuseConnect atomic.Bool
	// DropSessions makes every session fail right after Connect returned
	// it: a broker that accepts connections and then drops them.
	DropSessions atomic.Bool

	mu       sync.Mutex
	noRoute  map[string]bool // routing keys returned as unroutable
	received map[string]int  // message id -> publishes that reached the "broker"
	cur      *FakeSession
	sessions int
	connects []time.Time  // every Connect call, refused or not
	waiting  atomic.Int32 // Publish calls waiting while blocked
	waits    atomic.Int64 // Publish calls that have waited on a block
}

// BlockedWaits counts the Publish calls that found the session blocked
// and waited.
func (p *FakePublisher) BlockedWaits() int { return int(p.waits.Load()) }

// WaitingPublishes counts Publish calls waiting on a blocked session.
func (p *FakePublisher) WaitingPublishes() int { return int(p.waiting.Load()) }

// NewFakePublisher returns a fake broker that confirms everything.
func NewFakePublisher() *FakePublisher {
	return &FakePublisher{received: map[string]int{}}
}

// Connect implements outbox.Publisher.
func (p *FakePublisher) Connect(ctx context.Context) (outbox.Session, error) {
	p.mu.Lock()
	p.connects = append(p.connects, time.Now())
	p.mu.Unlock()
	if p.RefuseConnect.Load() {
		return nil, errors.New("fake: connection refused")
	}
	s := &FakeSession{p: p, confirms: make(chan outbox.Confirm, 1<<16), done: make(chan struct{})}
	p.mu.Lock()
	p.cur = s
	p.sessions++
	p.mu.Unlock()
	if p.DropSessions.Load() {
		s.fail(errors.New("fake: connection dropped after open"))
	}
	return s, nil
}

// SetUnroutableKeys makes publishes with these routing keys come back as
// basic.return + ack (no queue bound for them); others are delivered. No
// keys: every key routes again (unless Unroutable is set).
func (p *FakePublisher) SetUnroutableKeys(keys ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noRoute = map[string]bool{}
	for _, k := range keys {
		p.noRoute[k] = true
	}
}

func (p *FakePublisher) routes(key string) bool {
	if p.Unroutable.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.noRoute[key]
}

// ConnectTimes returns when each Connect call happened.
func (p *FakePublisher) ConnectTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.connects...)
}

// ReleaseAndBreak hands the held confirms of the current session to its
// Confirms channel and fails the session at once, before the forwarder
// can take them: confirms that were delivered when the session ended.
func (p *FakePublisher) ReleaseAndBreak() {
	p.mu.Lock()
	s := p.cur
	p.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, c := range held {
		s.confirms <- c
	}
	s.fail(errors.New("fake: connection broken after its confirms"))
}

// Received returns how many times each message id reached the fake broker
// (delivered publishes, not returned ones).
func (p *FakePublisher) Received() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]int, len(p.received))
	for k, v := range p.received {
		m[k] = v
	}
	return m
}

// Sessions counts the sessions opened.
func (p *FakePublisher) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sessions
}

// Break fails the current session: its held confirms are lost.
func (p *FakePublisher) Break() {
	p.mu.Lock()
	s := p.cur
	p.mu.Unlock()
	if s != nil {
		s.fail(errors.New("fake: connection broken"))
	}
}

// Release sends the held confirms of the current session.
func (p *FakePublisher) Release() {
	p.mu.Lock()
	s := p.cur
	p.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, c := range held {
		s.confirms <- c
	}
}

// SetBlocked blocks or unblocks publishing on the current session.
func (p *FakePublisher) SetBlocked(b bool) {
	p.mu.Lock()
	s := p.cur
	p.mu.Unlock()
	if s != nil {
		s.blocked.Store(b)
	}
}

// FakeSession is a session of FakePublisher.
type FakeSession struct {
	p        *FakePublisher
	confirms chan outbox.Confirm
	done     chan struct{}
	once     sync.Once
	err      atomic.Pointer[error]
	blocked  atomic.Bool

	mu   sync.Mutex
	tag  uint64
	held []outbox.Confirm
}

func (s *FakeSession) fail(err error) {
	s.once.Do(func() {
		s.err.Store(&err)
		close(s.done)
	})
}

// Publish implements outbox.Session.
func (s *FakeSession) Publish(ctx context.Context, r *outbox.Record) (uint64, error) {
	select {
	case <-s.done:
		return 0, s.Err()
	default:
	}
	if s.blocked.Load() {
		s.p.waiting.Add(1)
		s.p.waits.Add(1)
		defer s.p.waiting.Add(-1)
		select {
		case <-ctx.Done():
			return 0, outbox.ErrBlocked
		case <-s.done:
			return 0, s.Err()
		}
	}
	s.mu.Lock()
	s.tag++
	c := outbox.Confirm{Tag: s.tag, Ack: true}
	if !s.p.routes(r.RoutingKey) {
		c.Returned, c.Reason = true, "312 NO_ROUTE"
	} else {
		s.p.mu.Lock()
		s.p.received[r.MessageID]++
		s.p.mu.Unlock()
	}
	hold := s.p.HoldConfirms.Load()
	if hold {
		s.held = append(s.held, c)
	}
	s.mu.Unlock()
	if !hold {
		s.confirms <- c
	}
	return c.Tag, nil
}

func (s *FakeSession) Confirms() <-chan outbox.Confirm { return s.confirms }
func (s *FakeSession) Done() <-chan struct{}           { return s.done }
func (s *FakeSession) Blocked() bool                   { return s.blocked.Load() }
func (s *FakeSession) Addr() string                    { return "fake" }
func (s *FakeSession) Close() error                    { s.fail(errors.New("fake: closed")); return nil }

func (s *FakeSession) Err() error {
	if e := s.err.Load(); e != nil {
		return *e
	}
	return nil
}
