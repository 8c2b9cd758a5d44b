package edge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/edgetest"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// gateRecorder holds every Append until release is closed, telling entered
// about each one first: a test can have requests in flight at will.
type gateRecorder struct {
	edgetest.Recorder
	entered chan struct{}
	release chan struct{}
}

func (g *gateRecorder) Append(r *outbox.Record) error {
	g.entered <- struct{}{}
	<-g.release
	return g.Recorder.Append(r)
}

// TestFastShutdown: ShutdownWithContext stops accepting at once, lets the
// clicks in flight finish (each answered 302 and recorded), closes idle
// keep-alive connections, and only then returns.
func TestFastShutdown(t *testing.T) {
	const inFlight = 4
	rec := &gateRecorder{entered: make(chan struct{}, inFlight), release: make(chan struct{})}
	ts := newTestServer(t, func(c *edge.Config) { c.Recorder = rec })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	fs := ts.FastServer(edge.FastOptions{})
	served := make(chan error, 1)
	go func() { served <- fs.Serve(ln) }()

	// An idle keep-alive connection: one HEAD answered, then nothing.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleR := bufio.NewReader(idle)
	fmt.Fprintf(idle, "HEAD /r/tv-sale HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(idleR, &http.Request{Method: "HEAD"}); err != nil || res.StatusCode != 302 {
		t.Fatalf("HEAD on the idle connection: %v, %v", res, err)
	}

	type answer struct {
		status int
		loc    string
		close  bool
		err    error
	}
	answers := make(chan answer, inFlight)
	client := &http.Client{
		Transport:     &http.Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	for i := range inFlight {
		go func() {
			res, err := client.Get(fmt.Sprintf("http://%s/r/tv-sale?subid=s%d", addr, i))
			if err != nil {
				answers <- answer{err: err}
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			answers <- answer{status: res.StatusCode, loc: res.Header.Get("Location"), close: res.Close}
		}()
	}
	deadline := time.After(10 * time.Second) // a guard, not a wait: each step below is signalled
	for range inFlight {
		select {
		case <-rec.entered:
		case <-deadline:
			t.Fatal("the requests never reached the Recorder")
		}
	}

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- fs.ShutdownWithContext(ctx)
	}()
	// The listener closes first: new connections are refused.
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		select {
		case <-deadline:
			t.Fatal("still accepting connections after ShutdownWithContext began")
		default:
		}
	}
	select {
	case err := <-shut:
		t.Fatalf("ShutdownWithContext returned %v with %d requests in flight", err, inFlight)
	default:
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil after a shutdown", err)
	}

	close(rec.release)
	var locs []string
	for range inFlight {
		a := <-answers
		if a.err != nil || a.status != 302 {
			t.Fatalf("request in flight: status %d, err %v; want 302", a.status, a.err)
		}
		if !a.close {
			t.Errorf("answer without Connection: close while shutting down")
		}
		locs = append(locs, a.loc)
	}
	if err := <-shut; err != nil {
		t.Fatalf("ShutdownWithContext = %v", err)
	}
	// The idle connection was closed, not left hanging.
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := idleR.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection after shutdown: read %d bytes, %v; want EOF", n, err)
	}

	recs := rec.Appended()
	if len(recs) != inFlight {
		t.Fatalf("%d clicks recorded, want %d (every answered click)", len(recs), inFlight)
	}
	recorded := map[string]bool{}
	for _, r := range recs {
		recorded[r.MessageID] = true
	}
	for _, loc := range locs {
		if id := idRE.FindString(loc); !recorded[id] {
			t.Errorf("answered %s, but click %q was not recorded", loc, id)
		}
	}
}

// TestFastServerSettings checks what FastServer sets, and that the
// defaults apply where the options are zero.
func TestFastServerSettings(t *testing.T) {
	ts := newTestServer(t, nil)
	fs := ts.FastServer(edge.FastOptions{})
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"ReadTimeout", fs.ReadTimeout, edge.DefaultFastReadTimeout},
		{"WriteTimeout", fs.WriteTimeout, edge.DefaultFastWriteTimeout},
		{"IdleTimeout", fs.IdleTimeout, edge.DefaultFastIdleTimeout},
		{"ReadBufferSize", fs.ReadBufferSize, 64 << 10}, // harden #8
		{"MaxRequestBodySize", fs.MaxRequestBodySize, 4 << 10},
		{"DisableHeaderNamesNormalizing", fs.DisableHeaderNamesNormalizing, false},
		{"NoDefaultServerHeader", fs.NoDefaultServerHeader, true},
		{"NoDefaultDate", fs.NoDefaultDate, false},
		{"NoDefaultContentType", fs.NoDefaultContentType, true},
		{"ReduceMemoryUsage", fs.ReduceMemoryUsage, true}, // harden #7: idle connections hold no read buffer
		{"Concurrency", fs.Concurrency, edge.DefaultMaxConns},
		{"CloseOnShutdown", fs.CloseOnShutdown, true},
		{"SecureErrorLogMessage", fs.SecureErrorLogMessage, true},
	} {
		if c.got != c.want {
			t.Errorf("FastServer(zero options).%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	fs = ts.FastServer(edge.FastOptions{ReadTimeout: time.Second, WriteTimeout: 2 * time.Second, IdleTimeout: 3 * time.Second,
		MaxHeaderBytes: 8 << 10, Concurrency: 10})
	if fs.ReadTimeout != time.Second || fs.WriteTimeout != 2*time.Second || fs.IdleTimeout != 3*time.Second ||
		fs.ReadBufferSize != 8<<10 || fs.Concurrency != 10 {
		t.Errorf("FastServer(options) = read %v write %v idle %v buffer %d concurrency %d; want 1s 2s 3s 8192 10",
			fs.ReadTimeout, fs.WriteTimeout, fs.IdleTimeout, fs.ReadBufferSize, fs.Concurrency)
	}
}

// TestFastProtocolErrors: what fasthttp itself refuses gets net/http's
// answers, and the transport's log lines go to slog, rate-limited.
func TestFastProtocolErrors(t *testing.T) {
	var logs lockedBuffer
	ts := newTestServer(t, nil)
	fs := ts.FastServer(edge.FastOptions{MaxHeaderBytes: 4 << 10, Logger: textLogger(&logs)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); fs.Serve(ln) }()
	defer func() { ln.Close(); <-served }()

	tests := []struct {
		name   string
		req    string
		status int
		body   string
	}{
		{"bad path escape", "GET /r/tv%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "400 Bad Request"},
		{"header over MaxHeaderBytes", "GET /r/tv-sale HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5<<10) + "\r\n\r\n", 431,
			"431 Request Header Fields Too Large"},
		{"body over the limit", "POST /r/tv-sale HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("a", 5000), 413,
			"413 Request Entity Too Large"},
		{"garbage", "NOT HTTP\r\n\r\n", 400, "400 Bad Request"},
		{"small body, 405 as from net/http", "POST /r/tv-sale HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405, "method not allowed\n"},
		{"OPTIONS *, 200 as from net/http", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 200, ""},
	}
	for _, tt := range tests {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, tt.req)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		body, _ := io.ReadAll(res.Body)
		c.Close()
		if res.StatusCode != tt.status || string(body) != tt.body {
			t.Errorf("%s: %d %q, want %d %q", tt.name, res.StatusCode, body, tt.status, tt.body)
		}
		if tt.status >= 400 && tt.status != 405 {
			if ct := res.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || !res.Close {
				t.Errorf("%s: Content-Type %q, close %v; want text/plain; charset=utf-8 and the connection closed", tt.name, ct, res.Close)
			}
		}
	}
	if n := strings.Count(logs.String(), "\n"); n > 1 {
		t.Errorf("%d log lines within a second, want at most 1:\n%s", n, logs.String())
	}
	for _, l := range strings.SplitAfter(logs.String(), "\n") {
		if l != "" && (!strings.Contains(l, "level="+slog.LevelWarn.String()) || !strings.Contains(l, "edge: fasthttp:")) {
			t.Errorf("log line %q: want a Warn from edge: fasthttp", l)
		}
	}
}

// TestServeFastPeer: ServeFast finds the client as ServeHTTP does, from
// the peer fasthttp reports and X-Forwarded-For, with ctx.Init as a
// custom server would call it.
func TestServeFastPeer(t *testing.T) {
	ts := newTestServer(t, nil)
	tests := []struct {
		name    string
		peer    string
		xff     []string
		country string
	}{
		{"untrusted peer", "198.51.100.9:1", nil, "DE"},
		{"untrusted peer, xff ignored", clientPeer, []string{"198.51.100.9"}, "US"},
		{"trusted peer", "192.168.1.1:5000", []string{"198.51.100.9"}, "DE"},
		{"trusted mapped peer, two lines", "[::ffff:192.168.1.1]:5000", []string{"203.0.113.99, 198.51.100.9", "192.168.7.7, fd00::1"}, "DE"},
		{"IPv6 peer", "[2001:db8::5]:443", nil, "FR"},
	}
	for _, tt := range tests {
		hdr := []string{"User-Agent", desktopUA}
		for _, v := range tt.xff {
			hdr = append(hdr, "X-Forwarded-For", v)
		}
		ctx := fastCtx("GET", "/r/Summer", tt.peer, hdr...)
		ts.ServeFast(ctx)
		loc := string(ctx.Response.Header.Peek("Location"))
		if want := "https://deals.example/" + tt.country + "/summer?"; ctx.Response.StatusCode() != 302 || !strings.HasPrefix(loc, want) {
			t.Errorf("%s: %d %q, want 302 to %s...", tt.name, ctx.Response.StatusCode(), loc, want)
		}
	}
	// No TCP peer at all (a Unix socket): no country, as with net/http.
	var req fasthttp.Request
	req.SetRequestURI("/r/Summer")
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.UnixAddr{Name: "@", Net: "unix"}, nil)
	ts.ServeFast(ctx)
	if loc := string(ctx.Response.Header.Peek("Location")); !strings.HasPrefix(loc, "https://deals.example//summer?") {
		t.Errorf("Unix socket peer: Location %q, want no country", loc)
	}
}

// TestServeFastConcurrent runs many clicks at once through one fasthttp
// server with keep-alive connections, for the race detector and for the
// pooled scratch: every click recorded is the one answered.
func TestServeFastConcurrent(t *testing.T) {
	ts := newTestServer(t, func(c *edge.Config) { c.Now = nil })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := ts.FastServer(edge.FastOptions{})
	served := make(chan struct{})
	go func() { defer close(served); fs.Serve(ln) }()
	defer func() { fs.Shutdown(); <-served }()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()

	const workers, per = 8, 40
	var wg sync.WaitGroup
	locs := make([][]string, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				res, err := client.Get(fmt.Sprintf("http://%s/r/tv-sale?subid=w%d-%d", ln.Addr(), w, i))
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				locs[w] = append(locs[w], res.Header.Get("Location"))
			}
		}()
	}
	wg.Wait()
	byID := map[string]string{}
	for _, r := range readAllClicks(t, ts) {
		byID[r["click_id"].(string)] = r["url"].(string) + " " + r["params"].(map[string]any)["subid"].(string)
	}
	if len(byID) != workers*per {
		t.Fatalf("%d clicks recorded, want %d", len(byID), workers*per)
	}
	for w, ls := range locs {
		for i, loc := range ls {
			if got, want := byID[idRE.FindString(loc)], fmt.Sprintf("%s w%d-%d", loc, w, i); got != want {
				t.Errorf("worker %d request %d: click %q, want %q", w, i, got, want)
			}
		}
	}
}

// readAllClicks returns the bodies of every click in the test server's
// outbox.
func readAllClicks(t testing.TB, ts *testServer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range outboxtest.ReadAll(t, ts.ob) {
		out = append(out, decodeClick(t, r))
	}
	return out
}
