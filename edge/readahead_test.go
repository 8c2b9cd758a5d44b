package edge

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// A connection waiting for its next request with a small read holds no
// read-ahead chunk; the read takes one once bytes arrive, keeps what the
// caller did not ask for, and gives the chunk back once the rest is read.
// EOF and a read deadline end a waiting read as they would on the socket.
func TestIdleConnectionsHoldNoChunk(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listen(raw, ListenerOptions{Name: ListenerPublic})
	defer ln.Close()
	counts := &readAheadCounts{}
	ln.(*limitListener).counts = counts

	const n = 50
	type result struct {
		b   byte
		err error
	}
	var clients []net.Conn
	var servers []net.Conn
	results := make(chan result, n)
	defer func() {
		for _, c := range append(clients, servers...) {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
		go func() {
			var b [1]byte
			_, err := s.Read(b[:])
			results <- result{b[0], err}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for counts.waits.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d readers waiting", counts.waits.Load(), n)
		}
		time.Sleep(time.Millisecond) // polling, with a deadline
	}
	if got := counts.held.Load(); got != 0 {
		t.Fatalf("%d waiting connections hold %d read-ahead chunks, want none", n, got)
	}

	req := "GET /r/a HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Pad: p\r\n", 20) + "\r\n"
	for _, c := range clients {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		r := <-results
		if r.err != nil || r.b != 'G' {
			t.Fatalf("first read: %q, %v", r.b, r.err)
		}
	}
	if got := counts.held.Load(); got != n {
		t.Fatalf("after a 1-byte read of a %d-byte request, %d chunks held, want %d (one per connection, holding the rest)", len(req), got, n)
	}
	for _, s := range servers {
		buf := make([]byte, 8<<10)
		k, err := s.Read(buf)
		if err != nil || string(buf[:k]) != req[1:] {
			t.Fatalf("second read: %d bytes, %v; want the request's other %d bytes", k, err, len(req)-1)
		}
	}
	if got := counts.held.Load(); got != 0 {
		t.Fatalf("after the rest was read, %d chunks held, want none", got)
	}

	// A small read asking for more than one byte gets what it asks, in
	// order, across reads.
	io.WriteString(clients[0], "abcdefghij")
	var got []byte
	for len(got) < 10 {
		var b [3]byte
		k, err := servers[0].Read(b[:])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b[:k]...)
	}
	if string(got) != "abcdefghij" {
		t.Fatalf("read %q, want abcdefghij", got)
	}

	// EOF, and a deadline, end a waiting small read.
	clients[1].Close()
	var b [1]byte
	if _, err := servers[1].Read(b[:]); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want EOF", err)
	}
	servers[2].SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := servers[2].Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a deadline error", err)
	}
	if got := counts.held.Load(); got != 0 {
		t.Fatalf("%d chunks held after EOF and deadline, want none", got)
	}
}

// A small read that reads ahead allocates nothing: the chunk comes from a
// pool and the poller's callback is made once per connection (a closure
// per read, capturing its results, cost four allocations per request).
func TestReadAheadAllocatesNothing(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listen(raw, ListenerOptions{Name: ListenerPublic})
	defer ln.Close()
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := []byte("GET /r/x HTTP/1.1\r\nHost: a\r\n\r\n")
	p := make([]byte, 64)
	read := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		// fasthttp's first read: one byte; then the rest, from the chunk.
		if n, err := s.Read(p[:1]); n != 1 || err != nil {
			t.Fatalf("first read = %d, %v", n, err)
		}
		for got := 1; got < len(req); {
			n, err := s.Read(p)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	read() // the pool's first chunk
	if allocs := testing.AllocsPerRun(200, read); allocs > 0 {
		t.Fatalf("%.1f allocations per request read ahead, want 0", allocs)
	}
}
