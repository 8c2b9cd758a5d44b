// Package edgetest holds test helpers for code that drives an edge.Server: catalogs from YAML, an in-memory Recorder, a reusable ResponseWriter and fasthttp request contexts.
package edgetest

import (
	"bytes"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/outbox"
)

// Catalog parses a catalog from YAML text, failing the test if it is invalid.
func Catalog(tb testing.TB, yaml string) *catalog.Catalog {
	tb.Helper()
	c, err := catalog.Parse("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatalf("catalog.Parse: %v", err)
	}
	return c
}

// Recorder is an in-memory edge.Recorder. It keeps a deep copy of every
// record it accepts, since the Server reuses the record's memory. The zero
// value accepts everything; set AppendErr or SpillErr to make it fail.
// Safe for concurrent use.
type Recorder struct {
	mu        sync.Mutex
	appendErr error
	spillErr  error
	appended  []outbox.Record
	spilled   []outbox.Record
	failed    int // refused Appends
}

// SetErrors makes later Appends and Spills fail with the given errors (nil:
// succeed).
func (r *Recorder) SetErrors(appendErr, spillErr error) {
	r.mu.Lock()
	r.appendErr, r.spillErr = appendErr, spillErr
	r.mu.Unlock()
}

// Append stores a copy of rec, or returns the configured error.
func (r *Recorder) Append(rec *outbox.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.appendErr != nil {
		r.failed++
		return r.appendErr
	}
	r.appended = append(r.appended, Clone(rec))
	return nil
}

// Spill stores a copy of rec as spilled, or returns the configured error.
func (r *Recorder) Spill(rec *outbox.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.spillErr != nil {
		return r.spillErr
	}
	c := Clone(rec)
	c.Spilled = true
	r.spilled = append(r.spilled, c)
	return nil
}

// Appended returns copies of the records Append accepted, in order.
func (r *Recorder) Appended() []outbox.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.appended)
}

// Spilled returns copies of the records Spill accepted, in order.
func (r *Recorder) Spilled() []outbox.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spilled)
}

// Failed returns how many Appends returned an error.
func (r *Recorder) Failed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// Clone returns a copy of rec that shares no memory with it.
func Clone(rec *outbox.Record) outbox.Record {
	c := *rec
	// Strings may point into reused buffers (unsafe.String): copy the bytes.
	c.Exchange = string([]byte(rec.Exchange))
	c.RoutingKey = string([]byte(rec.RoutingKey))
	c.MessageID = string([]byte(rec.MessageID))
	c.Headers = slices.Clone(rec.Headers)
	c.Body = bytes.Clone(rec.Body)
	return c
}

// ResponseWriter is an http.ResponseWriter for benchmarks and tests that
// call ServeHTTP directly: Reset makes it reusable without allocating.
type ResponseWriter struct {
	Status int
	Body   bytes.Buffer
	header http.Header
	// Snapshot is the header as it was at WriteHeader, as net/http sends it.
	Snapshot http.Header
	// Snap makes WriteHeader copy the header into Snapshot (allocates).
	Snap bool
}

// NewResponseWriter returns an empty ResponseWriter.
func NewResponseWriter() *ResponseWriter {
	return &ResponseWriter{header: make(http.Header, 8)}
}

// Header returns the header map.
func (w *ResponseWriter) Header() http.Header { return w.header }

// WriteHeader records the status once.
func (w *ResponseWriter) WriteHeader(status int) {
	if w.Status != 0 {
		return
	}
	w.Status = status
	if w.Snap {
		w.Snapshot = w.header.Clone()
	}
}

// Write records the body, answering 200 first if no status was written.
func (w *ResponseWriter) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.Body.Write(b)
}

// Reset empties the writer for the next request, keeping its memory.
func (w *ResponseWriter) Reset() {
	w.Status = 0
	w.Body.Reset()
	clear(w.header)
	w.Snapshot = nil
}

// NewRequestCtx returns a fasthttp.RequestCtx holding a request as a
// fasthttp server would hand it to ServeFast, from remote (nil: 0.0.0.0:0),
// with header given as name, value pairs. Reuse it for many calls by
// resetting ctx.Response between them, as fasthttp does between the
// requests of a connection.
func NewRequestCtx(method, target string, remote net.Addr, header ...string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(target)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, remote, discard{})
	return ctx
}

// discard is a fasthttp.Logger that drops everything.
type discard struct{}

func (discard) Printf(string, ...any) {}
