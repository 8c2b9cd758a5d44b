package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoServer writes back whatever it reads and half-closes when the client
// does.
type echoServer struct {
	ln       net.Listener
	wg       sync.WaitGroup
	accepted atomic.Int64
	received atomic.Int64
	resets   atomic.Int64 // connections that ended with ECONNRESET
	active   atomic.Int64
}

func newEchoServer(t testing.TB) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.active.Add(1)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer e.active.Add(-1)
				defer c.Close()
				e.echo(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.wg.Wait()
	})
	return e
}

func (e *echoServer) echo(c *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		e.received.Add(int64(n))
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			c.CloseWrite()
			return
		}
		if err != nil {
			if errors.Is(err, syscall.ECONNRESET) {
				e.resets.Add(1)
			}
			return
		}
	}
}

func newProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatalf("New(%q): %v", target, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func write(t testing.TB, c net.Conn, s string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

func readN(t testing.TB, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(buf)
}

// expectSilence asserts nothing arrives on c for d and that c is still open.
// Proving an absence needs some wait; d is kept short.
func expectSilence(t testing.TB, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := c.Read(b[:])
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %d bytes %q, %v; want nothing and a deadline error", n, b[:n], err)
	}
}

// expectReset dials addr and wants the connection reset. The proxy resets
// right after accepting; on loopback that RST can beat the dialler's own
// connect check, so either step may report it.
func expectReset(t testing.TB, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection to %s: %v, want ECONNRESET", addr, err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestModeString(t *testing.T) {
	tests := []struct {
		m    Mode
		want string
	}{
		{Pass, "pass"},
		{Blackhole, "blackhole"},
		{Reset, "reset"},
		{DropServerToClient, "drop-server-to-client"},
		{Mode(9), "Mode(9)"},
		{Mode(-1), "Mode(-1)"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(tt.m), got, tt.want)
		}
	}
}

func TestNewBadTarget(t *testing.T) {
	if p, err := New("no-port"); err == nil {
		p.Close()
		t.Fatalf("New(%q) = nil error, want one", "no-port")
	}
}

func TestSetModeUnknownPanics(t *testing.T) {
	p := newProxy(t, "127.0.0.1:1")
	defer func() {
		if recover() == nil {
			t.Fatal("SetMode(Mode(42)) did not panic")
		}
		if got := p.Mode(); got != Pass {
			t.Fatalf("Mode() after bad SetMode = %v, want %v", got, Pass)
		}
	}()
	p.SetMode(Mode(42))
}

func TestPass(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())

	write(t, c, "hello")
	if got := readN(t, c, 5); got != "hello" {
		t.Fatalf("echo = %q, want %q", got, "hello")
	}
	waitFor(t, "counters", func() bool {
		s := p.Stats()
		return s.ClientToServer == 5 && s.ServerToClient == 5
	})
	s := p.Stats()
	if s.Accepted != 1 || s.Active != 1 || s.Dropped != 0 || s.Resets != 0 {
		t.Fatalf("Stats() = %+v, want 1 accepted, 1 active, nothing dropped or reset", s)
	}

	// A half-close travels through and the echo server's answering FIN
	// comes back, after which the proxy forgets the connection.
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read after half-close = %d, %v; want 0, EOF", n, err)
	}
	waitFor(t, "connection to end", func() bool { return p.Stats().Active == 0 })
}

func TestBlackholeHoldsBytesAndKeepsConnectionsOpen(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c1 := dial(t, p.Addr())
	write(t, c1, "a")
	if got := readN(t, c1, 1); got != "a" {
		t.Fatalf("echo = %q, want %q", got, "a")
	}

	p.SetMode(Blackhole)
	if got := p.Mode(); got != Blackhole {
		t.Fatalf("Mode() = %v, want %v", got, Blackhole)
	}
	write(t, c1, "held")
	c2 := dial(t, p.Addr())
	write(t, c2, "new")
	waitFor(t, "second accept", func() bool { return p.Stats().Accepted == 2 })
	expectSilence(t, c1, 100*time.Millisecond)
	expectSilence(t, c2, 10*time.Millisecond)
	if got := e.received.Load(); got != 1 {
		t.Fatalf("server received %d bytes during blackhole, want 1 (from before)", got)
	}
	if got := e.accepted.Load(); got != 1 {
		t.Fatalf("server accepted %d connections, want 1: a connection accepted in blackhole must not be dialled yet", got)
	}

	// Held bytes arrive in order once the hole heals; nothing was closed.
	p.SetMode(Pass)
	if got := readN(t, c1, 4); got != "held" {
		t.Fatalf("c1 after heal = %q, want %q", got, "held")
	}
	if got := readN(t, c2, 3); got != "new" {
		t.Fatalf("c2 after heal = %q, want %q", got, "new")
	}
	if s := p.Stats(); s.Dropped != 0 || s.Resets != 0 {
		t.Fatalf("Stats() = %+v, want nothing dropped or reset", s)
	}
}

func TestBlackholeHoldsHalfClose(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())
	write(t, c, "x")
	readN(t, c, 1)

	p.SetMode(Blackhole)
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	expectSilence(t, c, 50*time.Millisecond)
	if got := e.active.Load(); got != 1 {
		t.Fatalf("server connections = %d, want 1: the FIN must be held", got)
	}
	p.SetMode(Pass)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read after heal = %d, %v; want 0, EOF", n, err)
	}
}

func TestResetCurrentAndNewConnections(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c1 := dial(t, p.Addr())
	write(t, c1, "a")
	readN(t, c1, 1)

	p.SetMode(Reset)
	c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c1.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read on current connection after Reset = %v, want ECONNRESET", err)
	}
	waitFor(t, "server side reset", func() bool { return e.resets.Load() == 1 })

	expectReset(t, p.Addr())
	waitFor(t, "both resets counted", func() bool { return p.Stats().Resets == 2 })
	if got := e.accepted.Load(); got != 1 {
		t.Fatalf("server accepted %d connections, want 1: a reset connection is never dialled", got)
	}

	p.SetMode(Pass)
	c3 := dial(t, p.Addr())
	write(t, c3, "ok")
	if got := readN(t, c3, 2); got != "ok" {
		t.Fatalf("echo after Reset->Pass = %q, want %q", got, "ok")
	}
}

func TestDropServerToClient(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())
	write(t, c, "a")
	readN(t, c, 1)

	p.SetMode(DropServerToClient)
	write(t, c, "lost")
	waitFor(t, "server to receive", func() bool { return e.received.Load() == 5 })
	waitFor(t, "drop count", func() bool { return p.Stats().Dropped == 4 })
	expectSilence(t, c, 50*time.Millisecond)

	// Lost bytes stay lost; later ones flow again.
	p.SetMode(Pass)
	write(t, c, "back")
	if got := readN(t, c, 4); got != "back" {
		t.Fatalf("after Drop->Pass read %q, want %q", got, "back")
	}
	// The proxy counts a chunk after writing it, so the client may read
	// it before the count moves: wait for the counts, then hold them.
	waitFor(t, "9 bytes client->server, 5 server->client", func() bool {
		s := p.Stats()
		return s.ClientToServer == 9 && s.ServerToClient == 5
	})
	if s := p.Stats(); s.Dropped != 4 {
		t.Fatalf("Stats() = %+v, want 4 dropped", s)
	}
}

func TestDropServerToClientHidesServerClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := newProxy(t, ln.Addr().String())
	p.SetMode(DropServerToClient)
	c := dial(t, p.Addr())
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srv.Write([]byte("bye"))
	srv.Close()
	// The client hears neither the bytes nor the FIN.
	expectSilence(t, c, 50*time.Millisecond)
	waitFor(t, "drop count", func() bool { return p.Stats().Dropped == 3 })
}

func TestModeSwitchMidStream(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())

	const total = 4 << 20
	sent := make([]byte, total)
	for i := range sent {
		sent[i] = byte(i % 251)
	}
	writeErr := make(chan error, 1)
	go func() {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write(sent)
		writeErr <- err
	}()
	got := make([]byte, 0, total)
	readErr := make(chan error, 1)
	var progress atomic.Int64
	go func() {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 64<<10)
		for len(got) < total {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			progress.Store(int64(len(got)))
			if err != nil {
				readErr <- err
				return
			}
		}
		readErr <- nil
	}()

	// Cut the stream several times while it flows: each Pass resumes it
	// without losing or reordering a byte.
	for i := 1; i <= 4; i++ {
		mark := int64(i) * total / 5
		waitFor(t, "stream progress", func() bool { return progress.Load() >= mark })
		p.SetMode(Blackhole)
		p.SetMode(Pass)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := <-readErr; err != nil {
		t.Fatalf("read after %d bytes: %v", len(got), err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("echoed stream differs from the sent one (%d vs %d bytes)", len(got), len(sent))
	}
	if s := p.Stats(); s.ClientToServer != total || s.ServerToClient != total || s.Dropped != 0 {
		t.Fatalf("Stats() = %+v, want %d bytes each way, none dropped", s, total)
	}
}

func TestTargetDownResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()

	p := newProxy(t, target)
	expectReset(t, p.Addr())
	waitFor(t, "reset count", func() bool { return p.Stats().Resets == 1 })
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	e := newEchoServer(t)
	base := runtime.NumGoroutine()

	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// One connection flowing, one holding bytes in a blackhole, one accepted
	// during the blackhole and never dialled.
	flowing := dial(t, p.Addr())
	write(t, flowing, "a")
	readN(t, flowing, 1)
	held := dial(t, p.Addr())
	write(t, held, "b")
	readN(t, held, 1)
	p.SetMode(Blackhole)
	write(t, held, "held")
	pending := dial(t, p.Addr())
	write(t, pending, "pending")
	waitFor(t, "three accepts", func() bool { return p.Stats().Accepted == 3 })

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s := p.Stats(); s.Active != 0 {
		t.Fatalf("Active after Close = %d, want 0", s.Active)
	}
	for _, c := range []*net.TCPConn{flowing, held, pending} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 16)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("client Read after Close = %d, %v; want the connection closed", n, err)
		}
		c.Close()
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatalf("dial %s after Close succeeded, want refused", p.Addr())
	}
	waitFor(t, "server connections to end", func() bool { return e.active.Load() == 0 })
	waitFor(t, "goroutines to return", func() bool { return runtime.NumGoroutine() <= base })
}

func TestConcurrentModeSwitches(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	stop := make(chan struct{})
	var switcher sync.WaitGroup
	switcher.Add(1)
	go func() {
		defer switcher.Done()
		modes := []Mode{Blackhole, DropServerToClient, Reset, Pass}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p.SetMode(modes[i%len(modes)])
			_ = p.Stats()
		}
	}()
	var clients sync.WaitGroup
	var dialled atomic.Int64
	for i := 0; i < 4; i++ {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for j := 0; j < 20; j++ {
				c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
				if err != nil {
					continue // reset before connect returned
				}
				dialled.Add(1)
				c.SetDeadline(time.Now().Add(20 * time.Millisecond))
				c.Write([]byte("ping"))
				c.Read(make([]byte, 4))
				c.Close()
			}
		}()
	}
	clients.Wait()
	close(stop)
	switcher.Wait()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// harden #9: with no connection made the check below holds trivially.
	if dialled.Load() == 0 {
		t.Fatal("no client connected through the switching proxy")
	}
	if s := p.Stats(); s.Active != 0 || s.Accepted < dialled.Load() {
		t.Fatalf("Stats() after Close = %+v, want at least %d accepted and none active", s, dialled.Load())
	}
}

func BenchmarkPassEcho(b *testing.B) {
	e := newEchoServer(b)
	p := newProxy(b, e.ln.Addr().String())
	c := dial(b, p.Addr())
	msg := bytes.Repeat([]byte("x"), 16<<10)
	buf := make([]byte, len(msg))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}
