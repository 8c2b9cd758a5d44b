package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// chunkSize is how much one direction reads, and so holds in Blackhole, at a
// time.
const chunkSize = 32 << 10

type direction int

const (
	clientToServer direction = iota
	serverToClient
)

// conn is one relayed connection. serve runs the server-to-client pump on its
// own goroutine and the client-to-server pump on a second one.
type conn struct {
	p      *Proxy
	client *net.TCPConn
	done   chan struct{} // closed by teardown

	mu     sync.Mutex
	server *net.TCPConn // nil until dialled
	torn   bool
}

func (c *conn) serve() {
	if !c.gateDial() {
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(c.p.ctx, "tcp", c.p.target)
	if err != nil {
		// The target refused or timed out: show the client what a refused
		// connection looks like rather than an orderly close.
		if c.teardown(true) {
			c.p.resets.Add(1)
		}
		return
	}
	server := nc.(*net.TCPConn)
	if !c.setServer(server) {
		server.Close()
		return
	}

	var pumps sync.WaitGroup
	pumps.Add(1)
	go func() {
		defer pumps.Done()
		c.pump(c.client, server, clientToServer)
	}()
	c.pump(server, c.client, serverToClient)
	pumps.Wait()
	c.teardown(false)
}

// gateDial waits out Blackhole before the upstream dial and resets the client
// in Reset. It reports whether to go on.
func (c *conn) gateDial() bool {
	for {
		m, changed := c.p.current()
		switch m {
		case Reset:
			if c.teardown(true) {
				c.p.resets.Add(1)
			}
			return false
		case Blackhole:
			select {
			case <-changed:
				continue
			case <-c.done:
				return false
			}
		}
		return true
	}
}

func (c *conn) setServer(s *net.TCPConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.torn {
		return false
	}
	c.server = s
	return true
}

// pump copies src to dst through the mode gate until EOF or an error.
func (c *conn) pump(src, dst *net.TCPConn, dir direction) {
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.deliver(buf[:n], dst, dir) {
			return
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			c.deliverEOF(dst, dir)
			return
		}
		// A reset from the peer, or teardown closed src under us. Like
		// bytes, a reset reaches the other side only when the mode lets
		// this direction through.
		if m, ok := c.wait(dir); ok && !drops(m, dir) && c.teardown(true) {
			c.p.resets.Add(1)
		}
		return
	}
}

// deliver writes b to dst as the mode allows. It reports whether the pump
// should keep reading.
func (c *conn) deliver(b []byte, dst *net.TCPConn, dir direction) bool {
	m, ok := c.wait(dir)
	if !ok {
		c.p.dropped.Add(int64(len(b)))
		return false
	}
	if drops(m, dir) {
		c.p.dropped.Add(int64(len(b)))
		return true
	}
	n, err := dst.Write(b)
	c.counter(dir).Add(int64(n))
	if err != nil {
		c.p.dropped.Add(int64(len(b) - n))
		if c.teardown(true) {
			c.p.resets.Add(1)
		}
		return false
	}
	return true
}

// deliverEOF passes a half-close on as the mode allows.
func (c *conn) deliverEOF(dst *net.TCPConn, dir direction) {
	m, ok := c.wait(dir)
	if !ok || drops(m, dir) {
		return
	}
	_ = dst.CloseWrite()
}

// drops reports whether mode m discards what flows in direction dir.
func drops(m Mode, dir direction) bool {
	return m == DropServerToClient && dir == serverToClient
}

// wait blocks while the mode is Blackhole and returns the mode bytes may move
// in; ok is false when the connection is gone or being reset.
func (c *conn) wait(dir direction) (m Mode, ok bool) {
	for {
		m, changed := c.p.current()
		switch m {
		case Reset:
			return m, false
		case Blackhole:
			select {
			case <-changed:
				continue
			case <-c.done:
				return m, false
			}
		}
		select {
		case <-c.done:
			return m, false
		default:
			return m, true
		}
	}
}

func (c *conn) counter(dir direction) *atomic.Int64 {
	if dir == clientToServer {
		return &c.p.c2s
	}
	return &c.p.s2c
}

// teardown closes both sides, with a RST when rst is set, and wakes every
// waiter. Only the first call does anything; it reports whether it was the
// first.
func (c *conn) teardown(rst bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.torn {
		return false
	}
	c.torn = true
	close(c.done)
	for _, tc := range []*net.TCPConn{c.client, c.server} {
		if tc == nil {
			continue
		}
		if rst {
			_ = tc.SetLinger(0)
		}
		_ = tc.Close()
	}
	return true
}
