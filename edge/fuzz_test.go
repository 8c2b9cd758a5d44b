package edge_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/catalog"
	"github.com/clickedge/clickedge/edge/edgetest"
	"github.com/clickedge/clickedge/outbox"
)

// checkingRecorder checks every click it is given and keeps none.
type checkingRecorder struct {
	bad   atomic.Pointer[string]
	count atomic.Int64
}

func (c *checkingRecorder) Append(r *outbox.Record) error {
	c.count.Add(1)
	var click struct {
		ClickID string `json:"click_id"`
		URL     string `json:"url"`
	}
	if !json.Valid(r.Body) || json.Unmarshal(r.Body, &click) != nil || click.ClickID != r.MessageID {
		s := string(r.Body)
		c.bad.Store(&s)
	}
	return nil
}

func (c *checkingRecorder) Spill(r *outbox.Record) error { return c.Append(r) }

// origins returns every scheme://host[:port] the catalog can send users to.
func origins(c *catalog.Catalog) []string {
	var out []string
	for l := range c.Links() {
		out = append(out, l.URL().Origin())
		if fb := l.Fallback(); fb != nil {
			out = append(out, fb.Origin())
		}
		for _, r := range l.Rules {
			if r.URL != nil {
				out = append(out, r.URL.Origin())
			}
			for _, t := range r.Split {
				out = append(out, t.URL.Origin())
			}
		}
	}
	return out
}

func FuzzRequest(f *testing.F) {
	for _, seed := range []struct {
		method      uint8
		path, query string
	}{
		{0, "/r/tv-sale", "subid=aff&utm_campaign=x%20y"},
		{0, "/r/tv-sale", "subid1=newsletter&subid=%0d%0aLocation:%20https://evil.example"},
		{1, "/c/Summer", "subid=../../x&subid2=%zz"},
		{0, "/r/old-promo", "subid=" + strings.Repeat("é", 200)},
		{0, "/r/gone", ""},
		{2, "/r/tv-sale", ""},
		{0, "/r/tv-sale/", "subid=%"},
		{0, "/r/\r\nX: y", "subid=\r\n"},
		{0, "/c/many", "p00=a&p15=" + strings.Repeat("%F0%9F%98%80", 80)},
		{3, "//r/x", "&&&=&=="},
	} {
		f.Add(seed.method, seed.path, seed.query)
	}
	rec := &checkingRecorder{}
	cat := edgetest.Catalog(f, testCatalog)
	allowed := origins(cat)
	cfg := edge.DefaultConfig()
	cfg.Region = region
	cfg.Recorder = rec
	srv, err := edge.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	srv.SetCatalog(cat)
	methods := []string{"GET", "HEAD", "POST", "OPTIONS"}

	f.Fuzz(func(t *testing.T, method uint8, path, query string) {
		r := &http.Request{
			Method:     methods[int(method)%len(methods)],
			URL:        &url.URL{Path: path, RawQuery: query},
			Header:     http.Header{"User-Agent": {desktopUA}, "Accept-Language": {path}},
			RemoteAddr: clientPeer,
		}
		w := edgetest.NewResponseWriter()
		w.Snap = true
		srv.ServeHTTP(w, r)
		switch w.Status {
		case 200, 302, 400, 404, 405:
		default:
			t.Fatalf("%s %q ? %q: status %d", r.Method, path, query, w.Status)
		}
		for k, vs := range w.Snapshot {
			for _, v := range vs {
				if strings.ContainsAny(k+v, "\r\n") {
					t.Fatalf("%s %q ? %q: header %s: %q has CR or LF", r.Method, path, query, k, v)
				}
			}
		}
		if loc := w.Snapshot.Get("Location"); loc != "" {
			ok := false
			for _, o := range allowed {
				if rest, found := strings.CutPrefix(loc, o); found && (rest == "" || strings.ContainsRune("/?#", rune(rest[0]))) {
					ok = true
					break
				}
			}
			if !ok {
				t.Fatalf("%s %q ? %q: Location %q is off the catalog's hosts", r.Method, path, query, loc)
			}
		}
		if w.Status == 302 && w.Snapshot.Get("Location") == "" {
			t.Fatalf("302 without a Location")
		}
		if bad := rec.bad.Load(); bad != nil {
			t.Fatalf("%s %q ? %q: bad click body %q", r.Method, path, query, *bad)
		}
	})
}
