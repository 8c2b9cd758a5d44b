package edge_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/device"
	"github.com/clickedge/clickedge/edge/edgetest"
	"github.com/clickedge/clickedge/outbox"
)

type noopRecorder struct{}

func (noopRecorder) Append(*outbox.Record) error { return nil }
func (noopRecorder) Spill(*outbox.Record) error  { return nil }

const benchTarget = "/r/tv-sale?subid=aff42&utm_campaign=spring%20sale&gclid=abc"

// bareLocation is what the bare baselines redirect to: a click's URL.
const bareLocation = "https://shop.example/tv?cid=019a2b3c4d5e7f018123456789abcdef&sub=aff42&camp=spring+sale"

// bareHTTP302 and bareFast302 are the floors: handlers that only answer a
// constant redirect, with the headers a click's redirect has.
var bareHTTP302 = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Location"] = []string{bareLocation}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(http.StatusFound)
})

func bareFast302(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusFound)
	ctx.Response.Header.Set("Location", bareLocation)
	ctx.Response.Header.Set("Cache-Control", "no-store")
}

// benchRequest is a typical click: a browser, geo-located, two recorded
// parameters, one ignored, and a rule set that is evaluated to the end.
func benchRequest() *http.Request {
	r := httptest.NewRequest("GET", benchTarget, nil)
	r.RemoteAddr = clientPeer
	r.Header.Set("User-Agent", desktopUA)
	r.Header.Set("Accept-Language", "en-US,en;q=0.9")
	return r
}

// BenchmarkRedirect measures GET /r/{code} through ServeHTTP with a
// reusable ResponseWriter, so that what is counted is the Server's own work
// (net/http adds its own allocations for the request and the header map).
//
//	go test -run XXX -bench Redirect -benchtime 200000x ./edge/
func BenchmarkRedirect(b *testing.B) {
	device.Warm()
	cat := edgetest.Catalog(b, testCatalog)
	db := testGeo(b)
	newServer := func(b *testing.B, rec edge.Recorder) *edge.Server {
		cfg := edge.DefaultConfig()
		cfg.Region = region
		cfg.Recorder = rec
		cfg.Geo = db
		s, err := edge.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		s.SetCatalog(cat)
		return s
	}
	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		r := benchRequest()
		w := edgetest.NewResponseWriter()
		for b.Loop() {
			w.Reset()
			h.ServeHTTP(w, r)
			if w.Status != http.StatusFound {
				b.Fatalf("status %d", w.Status)
			}
		}
	}

	b.Run("bare302", func(b *testing.B) {
		run(b, bareHTTP302)
	})
	b.Run("noop", func(b *testing.B) {
		run(b, newServer(b, noopRecorder{}))
	})
	b.Run("outbox-async", func(b *testing.B) {
		ob, err := outbox.Open(filepath.Join(b.TempDir(), "outbox.db"), &outbox.Options{Durability: outbox.Async})
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		run(b, newServer(b, ob))
	})
	// The same click through ServeFast, on one RequestCtx reused the way
	// fasthttp reuses it for the requests of a connection.
	runFast := func(b *testing.B, h fasthttp.RequestHandler) {
		b.ReportAllocs()
		ctx := fastCtx("GET", benchTarget, clientPeer, "User-Agent", desktopUA, "Accept-Language", "en-US,en;q=0.9")
		for b.Loop() {
			ctx.Response.Reset()
			h(ctx)
			if ctx.Response.StatusCode() != http.StatusFound {
				b.Fatalf("status %d", ctx.Response.StatusCode())
			}
		}
	}
	b.Run("fast-bare302", func(b *testing.B) {
		runFast(b, bareFast302)
	})
	b.Run("fast-noop", func(b *testing.B) {
		runFast(b, newServer(b, noopRecorder{}).ServeFast)
	})
	b.Run("fast-outbox-async", func(b *testing.B) {
		ob, err := outbox.Open(filepath.Join(b.TempDir(), "outbox.db"), &outbox.Options{Durability: outbox.Async})
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		runFast(b, newServer(b, ob).ServeFast)
	})
	b.Run("noop-parallel", func(b *testing.B) {
		s := newServer(b, noopRecorder{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := benchRequest()
			w := edgetest.NewResponseWriter()
			for pb.Next() {
				w.Reset()
				s.ServeHTTP(w, r)
			}
		})
	})
	b.Run("outbox-sync-parallel", func(b *testing.B) {
		// Many clients at once: the group commit amortizes each fsync.
		ob, err := outbox.Open(filepath.Join(b.TempDir(), "outbox.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		s := newServer(b, ob)
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			r := benchRequest()
			w := edgetest.NewResponseWriter()
			for pb.Next() {
				w.Reset()
				s.ServeHTTP(w, r)
			}
		})
	})
}

// BenchmarkRegister measures GET /c/{code}.
func BenchmarkRegister(b *testing.B) {
	device.Warm()
	cfg := edge.DefaultConfig()
	cfg.Recorder = noopRecorder{}
	s, err := edge.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s.SetCatalog(edgetest.Catalog(b, testCatalog))
	r := benchRequest()
	r.URL.Path = "/c/tv-sale"
	w := edgetest.NewResponseWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		s.ServeHTTP(w, r)
		if w.Status != http.StatusOK {
			b.Fatalf("status %d", w.Status)
		}
	}
}

// BenchmarkNotFound measures the cheapest answer, an unknown code.
func BenchmarkNotFound(b *testing.B) {
	cfg := edge.DefaultConfig()
	cfg.Recorder = noopRecorder{}
	s, err := edge.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s.SetCatalog(edgetest.Catalog(b, testCatalog))
	r := httptest.NewRequest("GET", "/r/nope", nil)
	w := edgetest.NewResponseWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		s.ServeHTTP(w, r)
	}
}

// BenchmarkLoopback measures whole requests over loopback TCP: a bare
// net/http 302, a bare fasthttp 302, and the Server (noop Recorder) behind
// each, driven by 64 keep-alive connections in a closed loop (each sends
// its next request when the last is answered). It reports req/s; b.N is
// the total number of requests.
//
// Client and server share the process and its cores, so the figures are
// for comparing the four, not absolute capacity (bench/ pins the server
// to its own core for that).
//
//	go test -run XXX -bench Loopback -benchtime 200000x ./edge/
func BenchmarkLoopback(b *testing.B) {
	device.Warm()
	cfg := edge.DefaultConfig()
	cfg.Region = region
	cfg.Recorder = noopRecorder{}
	cfg.Geo = testGeo(b)
	s, err := edge.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s.SetCatalog(edgetest.Catalog(b, testCatalog))

	serveNet := func(h http.Handler) func(net.Listener) func() {
		return func(ln net.Listener) func() {
			hs := &http.Server{Handler: h}
			go hs.Serve(ln)
			return func() { hs.Close() }
		}
	}
	serveFast := func(fs *fasthttp.Server) func(net.Listener) func() {
		return func(ln net.Listener) func() {
			go fs.Serve(ln)
			return func() { fs.Shutdown() }
		}
	}
	for _, c := range []struct {
		name  string
		serve func(net.Listener) (stop func())
	}{
		{"bare-nethttp", serveNet(bareHTTP302)},
		{"bare-fasthttp", serveFast(&fasthttp.Server{Handler: bareFast302, NoDefaultServerHeader: true, NoDefaultContentType: true})},
		{"edge-nethttp", serveNet(s.Handler())},
		{"edge-fasthttp", serveFast(s.FastServer(edge.FastOptions{}))},
	} {
		b.Run(c.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer c.serve(ln)()
			loadLoopback(b, ln.Addr().String(), 64)
		})
	}
}

// loadLoopback sends b.N requests for benchTarget over conns keep-alive
// connections and reports req/s. The client is a minimal HTTP/1.1 reader,
// so that as little of the shared CPU as possible goes to it.
func loadLoopback(b *testing.B, addr string, conns int) {
	req := []byte("GET " + benchTarget + " HTTP/1.1\r\nHost: bench\r\nUser-Agent: " + desktopUA +
		"\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n")
	clients := make([]*loopClient, conns)
	for i := range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = &loopClient{c: c, r: bufio.NewReader(c)}
		if err := clients[i].do(req); err != nil { // warm the connection up
			b.Fatal(err)
		}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := cl.do(req); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}

type loopClient struct {
	c net.Conn
	r *bufio.Reader
}

// do sends req and reads one answer, which must be a 302.
func (l *loopClient) do(req []byte) error {
	if _, err := l.c.Write(req); err != nil {
		return err
	}
	line, err := l.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 302 ")) {
		return fmt.Errorf("status line %q", line)
	}
	clen := 0
	for {
		line, err = l.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
			clen, _ = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
		}
	}
	_, err = l.r.Discard(clen)
	return err
}
