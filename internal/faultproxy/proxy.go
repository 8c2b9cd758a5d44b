package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialTimeout bounds the upstream dial of one connection.
const dialTimeout = 5 * time.Second

// Proxy relays TCP connections from its listener to a target address and
// injects the faults its Mode names.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // canceled by Close; aborts upstream dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mode atomic.Int32 // read on every chunk without taking mu

	mu      sync.Mutex
	changed chan struct{} // closed and replaced by every SetMode
	conns   map[*conn]struct{}
	closed  bool

	accepted atomic.Int64
	resets   atomic.Int64
	c2s      atomic.Int64
	s2c      atomic.Int64
	dropped  atomic.Int64
}

// Stats is a snapshot of a Proxy's counters.
type Stats struct {
	Accepted       int64 // connections accepted from clients
	Active         int   // connections open now
	Resets         int64 // connections the proxy reset (Reset mode, failed upstream dial, broken pipe)
	ClientToServer int64 // bytes written to the target
	ServerToClient int64 // bytes written to clients
	Dropped        int64 // bytes read and never written: discarded by DropServerToClient or held when a connection ended
}

// New starts a proxy in Pass mode on 127.0.0.1 with a kernel-chosen port that
// relays to target ("host:port").
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target:  target,
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		conns:   make(map[*conn]struct{}),
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.acceptLoop()
	}()
	return p, nil
}

// Addr is the address clients dial, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy relays to.
func (p *Proxy) Target() string { return p.target }

// Mode reports the current mode.
func (p *Proxy) Mode() Mode { return Mode(p.mode.Load()) }

// SetMode switches the mode for current and new connections. Switching to
// Reset resets every current connection before SetMode returns. It panics on
// a Mode that is not one of the constants.
func (p *Proxy) SetMode(m Mode) {
	if !m.valid() {
		panic(fmt.Sprintf("faultproxy: SetMode(%v): unknown mode", m))
	}
	var victims []*conn
	p.mu.Lock()
	p.mode.Store(int32(m))
	close(p.changed)
	p.changed = make(chan struct{})
	if m == Reset {
		for c := range p.conns {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		if c.teardown(true) {
			p.resets.Add(1)
		}
	}
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.conns)
	p.mu.Unlock()
	return Stats{
		Accepted:       p.accepted.Load(),
		Active:         active,
		Resets:         p.resets.Load(),
		ClientToServer: p.c2s.Load(),
		ServerToClient: p.s2c.Load(),
		Dropped:        p.dropped.Load(),
	}
}

// Close stops accepting, closes every connection (with a FIN, not a RST) and
// waits for all of the proxy's goroutines. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()

	p.cancel()
	err := p.ln.Close()
	for _, c := range conns {
		c.teardown(false)
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultproxy: close: %w", err)
	}
	return nil
}

// current returns the mode and, for Blackhole only, the channel that is
// closed when the mode next changes. Reading both under mu means a waiter
// cannot miss a change that happens between the two reads.
func (p *Proxy) current() (Mode, <-chan struct{}) {
	if m := Mode(p.mode.Load()); m != Blackhole {
		return m, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return Mode(p.mode.Load()), p.changed
}

func (p *Proxy) acceptLoop() {
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// Out of descriptors and the like: back off instead of spinning.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.accepted.Add(1)
		c := &conn{p: p, client: nc.(*net.TCPConn), done: make(chan struct{})}
		if !p.track(c) {
			c.teardown(false)
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			c.serve()
		}()
	}
}

func (p *Proxy) track(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
