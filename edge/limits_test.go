package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/edgetest"
)

// limitServer is a public listener as cmd/clickedge runs it: fasthttp or
// net/http behind edge.Listen, with the limits counted.
type limitServer struct {
	addr   string
	limits *edge.Limits
	reg    *prometheus.Registry
}

func startLimitServer(t *testing.T, server string, lo edge.ListenerOptions, fo edge.FastOptions, wrap ...func(net.Listener) net.Listener) *limitServer {
	t.Helper()
	cfg := edge.DefaultConfig()
	cfg.Region, cfg.Node, cfg.Recorder = region, node, &edgetest.Recorder{}
	srv, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetCatalog(edgetest.Catalog(t, testCatalog))
	ls := &limitServer{limits: edge.NewLimits(), reg: prometheus.NewRegistry()}
	ls.reg.MustRegister(ls.limits.Collectors()...)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls.addr = raw.Addr().String()
	for _, w := range wrap {
		raw = w(raw)
	}
	lo.Name, lo.Limits, lo.NetHTTP = edge.ListenerPublic, ls.limits, server == "net"
	ln := edge.Listen(raw, lo)
	served := make(chan struct{})
	switch server {
	case "fasthttp":
		fo.Limits = ls.limits
		fs := srv.FastServer(fo)
		go func() { defer close(served); fs.Serve(ln) }()
		t.Cleanup(func() { fs.Shutdown(); <-served })
	case "net":
		hs := &http.Server{
			Handler: edge.LimitHTTP(srv, edge.HTTPLimits{Name: edge.ListenerPublic, MaxBody: 4 << 10, Limits: ls.limits}),
			// What newPublicServer sets.
			ReadHeaderTimeout: fo.ReadTimeout,
			ReadTimeout:       fo.ReadTimeout,
			WriteTimeout:      5 * time.Second,
			IdleTimeout:       fo.IdleTimeout,
			MaxHeaderBytes:    edge.DefaultMaxHeaderBytes,
		}
		go func() { defer close(served); hs.Serve(ln) }()
		t.Cleanup(func() { hs.Close(); <-served })
	}
	return ls
}

func (ls *limitServer) refused(code int) float64 {
	return refusedCount(ls.limits, edge.ListenerPublic, code)
}

// refusedCount reads one child of clickedge_http_refused_total.
func refusedCount(l *edge.Limits, listener string, code int) float64 {
	v := l.Collectors()[0].(*prometheus.CounterVec)
	c, err := v.GetMetricWithLabelValues(listener, fmt.Sprint(code))
	if err != nil {
		panic(err)
	}
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// roundTrip sends raw on a new connection and reads one answer.
func roundTrip(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, raw) // a refused request may not be read to its end
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%.60q...: %v", raw, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func headers(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: v\r\n", i)
	}
	return b.String()
}

// harden #8: on both HTTP servers, the header block is bounded at 64 KiB,
// the header count at 100 and the body at 4 KiB; beyond them the answer is
// 431 or 413, counted in clickedge_http_refused_total.
func TestListenerLimits(t *testing.T) {
	for _, server := range []string{"fasthttp", "net"} {
		t.Run(server, func(t *testing.T) {
			ls := startLimitServer(t, server, edge.ListenerOptions{}, edge.FastOptions{ReadTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second})
			big := "X-Big: " + strings.Repeat("a", edge.DefaultMaxHeaderBytes+(8<<10)) + "\r\n"
			near := "X-Big: " + strings.Repeat("a", edge.DefaultMaxHeaderBytes-(1<<10)) + "\r\n"
			tests := []struct {
				name   string
				req    string
				status int
			}{
				{"header block under 64 KiB", "GET /r/Summer HTTP/1.1\r\nHost: x\r\n" + near + "\r\n", 302},
				{"header block over 64 KiB", "GET /r/Summer HTTP/1.1\r\nHost: x\r\n" + big + "\r\n", 431},
				{"100 header lines", "GET /r/Summer HTTP/1.1\r\nHost: x\r\n" + headers(99) + "\r\n", 302},
				{"101 header lines", "GET /r/Summer HTTP/1.1\r\nHost: x\r\n" + headers(100) + "\r\n", 431},
				{"body over 4 KiB", "POST /r/Summer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("a", 5000), 413},
			}
			for _, tt := range tests {
				before := ls.refused(tt.status)
				res, body := roundTrip(t, ls.addr, tt.req)
				if res.StatusCode != tt.status {
					t.Errorf("%s: %d %q, want %d", tt.name, res.StatusCode, body, tt.status)
					continue
				}
				if tt.status >= 400 {
					if got := ls.refused(tt.status) - before; got != 1 {
						t.Errorf("%s: clickedge_http_refused_total{code=%q} rose by %v, want 1", tt.name, fmt.Sprint(tt.status), got)
					}
				}
			}
		})
	}
}

// harden #8: a client that sends its header slowly is cut off when the
// read timeout runs out, on both servers, whatever it still sends.
func TestListenerSlowClient(t *testing.T) {
	for _, server := range []string{"fasthttp", "net"} {
		t.Run(server, func(t *testing.T) {
			const timeout = 500 * time.Millisecond
			ls := startLimitServer(t, server, edge.ListenerOptions{}, edge.FastOptions{ReadTimeout: timeout, IdleTimeout: timeout})
			// start before Dial: the server's read deadline can start as soon
			// as the kernel completes the handshake, before Dial returns.
			start := time.Now()
			c, err := net.Dial("tcp", ls.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /r/Summer HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			closed := make(chan time.Duration, 1)
			go func() {
				// The server answers or closes; either way the read ends.
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, c)
				closed <- time.Since(start)
			}()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case d := <-closed:
					if d < timeout || d > timeout+2*time.Second {
						t.Fatalf("a slow client was cut off after %v, want %v (+ up to 2s)", d, timeout)
					}
					return
				case <-tick.C:
					c.Write([]byte("a")) // a byte at a time: still too slow
				}
			}
		})
	}
}

// harden #7: a full listener gives a new connection the slot of a quiet
// one; with none quiet it answers 503, counted.
func TestListenConnectionCap(t *testing.T) {
	ls := startLimitServer(t, "fasthttp", edge.ListenerOptions{MaxConns: 4, EvictQuiet: 200 * time.Millisecond},
		edge.FastOptions{ReadTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second})
	// Four connections that each sent a request and keep the slot.
	var held []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", ls.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /r/Summer HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != 302 {
			t.Fatalf("held connection: %v %v", res, err)
		}
		held = append(held, c)
	}
	// A connection in the middle of a request is never closed for another:
	// with every slot busy, a fifth connection is refused.
	for _, c := range held {
		io.WriteString(c, "GET /r/Summer HTTP/1.1\r\nHost: x\r\nX-Unfinished: ")
	}
	time.Sleep(300 * time.Millisecond) // longer than EvictQuiet: they are quiet, but busy
	res, body := roundTrip(t, ls.addr, "GET /r/Summer HTTP/1.1\r\nHost: x\r\n\r\n")
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "1" {
		t.Fatalf("fifth connection with every slot busy: %d %q, want 503 with Retry-After", res.StatusCode, body)
	}
	if got := ls.refused(503); got != 1 {
		t.Errorf("clickedge_http_refused_total{code=\"503\"} = %v, want 1", got)
	}
	// Once their requests are answered and they have been quiet for a
	// while, a new connection takes a slot: an idle one is closed for it.
	for _, c := range held {
		io.WriteString(c, "done\r\n\r\n")
		if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != 302 {
			t.Fatalf("finished request: %v %v", res, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, _ := roundTrip(t, ls.addr, "GET /r/Summer HTTP/1.1\r\nHost: x\r\n\r\n")
		if res.StatusCode == 302 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new connection still gets %d with only quiet connections open", res.StatusCode)
		}
		time.Sleep(50 * time.Millisecond) // polling, with a deadline
	}
	closed := 0
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	if closed == 0 {
		t.Errorf("no quiet connection was closed to admit the new one")
	}
}

// vecValue reads the child of a one-label counter vector.
func vecValue(c prometheus.Collector, label string) float64 {
	ch, err := c.(*prometheus.CounterVec).GetMetricWithLabelValues(label)
	if err != nil {
		panic(err)
	}
	var m dto.Metric
	if err := ch.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// countingListener counts the Read calls made on its connections: the
// system calls a request costs the server, less the poller's retries.
type countingListener struct {
	net.Listener
	reads *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, reads: l.reads}, nil
}

type countingConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// SyscallConn counts the reads made on the descriptor that returned (the
// listener's read ahead reads there); those that found nothing and wait
// are not counted, as Read does not count the poller's.
func (c countingConn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil, err
	}
	return countingRaw{RawConn: rc, reads: c.reads}, nil
}

type countingRaw struct {
	syscall.RawConn
	reads *atomic.Int64
}

func (r countingRaw) Read(f func(fd uintptr) bool) error {
	return r.RawConn.Read(func(fd uintptr) bool {
		done := f(fd)
		if done {
			r.reads.Add(1)
		}
		return done
	})
}

// A keep-alive request costs the fasthttp listener one read from the
// socket, not two: fasthttp waits for the next request with a 1-byte read
// (ReduceMemoryUsage), and the listener reads ahead into a pooled chunk
// that answers the read of the rest. Pipelined requests and a request
// larger than the chunk are read whole.
func TestListenerReadsAhead(t *testing.T) {
	var reads atomic.Int64
	ls := startLimitServer(t, "fasthttp", edge.ListenerOptions{}, edge.FastOptions{},
		func(l net.Listener) net.Listener { return countingListener{Listener: l, reads: &reads} })
	c, err := net.Dial("tcp", ls.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	answer := func(i int) {
		t.Helper()
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 302 {
			t.Fatalf("request %d: status %d, want 302", i, res.StatusCode)
		}
	}
	req := "GET /r/Summer?subid=a HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n\r\n"
	answer0 := func() { io.WriteString(c, req); answer(0) }
	answer0() // the connection's first request: fasthttp reads it another way
	const n = 100
	start := reads.Load()
	for i := range n {
		io.WriteString(c, req)
		answer(i + 1)
	}
	// Each request: one read. The server may already be waiting in the
	// read for the next one, counted before it returns: at most one more.
	if got := reads.Load() - start; got > n+1 {
		t.Errorf("%d keep-alive requests took %d reads from the socket, want at most %d (one each)", n, got, n+1)
	}

	// Three pipelined requests in one write, and one larger than a chunk.
	io.WriteString(c, req+req+req)
	for i := range 3 {
		answer(n + 1 + i)
	}
	big := "GET /r/Summer?subid=b HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 10<<10) + "\r\n\r\n"
	io.WriteString(c, big)
	answer(n + 4)
	answer0()
}
