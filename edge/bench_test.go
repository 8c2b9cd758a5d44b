package edge_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/device"
	"github.com/clickedge/clickedge/edge/edgetest"
	"github.com/clickedge/clickedge/outbox"
)

type noopRecorder struct{}

func (noopRecorder) Append(*outbox.Record) error { return nil }
func (noopRecorder) Spill(*outbox.Record) error  { return nil }

// benchRequest is a typical click: a browser, geo-located, two recorded
// parameters, one ignored, and a rule set that is evaluated to the end.
func benchRequest() *http.Request {
	r := httptest.NewRequest("GET", "/r/tv-sale?subid=aff42&utm_campaign=spring%20sale&gclid=abc", nil)
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
		// The floor: a handler that only answers a constant redirect.
		const loc = "https://shop.example/tv?cid=019a2b3c4d5e7f018123456789abcdef&sub=aff42&camp=spring+sale"
		run(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Location"] = []string{loc}
			h["Cache-Control"] = []string{"no-store"}
			w.WriteHeader(http.StatusFound)
		}))
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
