package edge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/edge"
)

type linksFixture struct {
	t     *testing.T
	h     http.Handler
	store *catalog.Store
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const linksToken = "s3cret-admin-token"

func newLinks(t *testing.T, token string, rate float64, burst int) *linksFixture {
	t.Helper()
	st, err := catalog.Open("", &catalog.Options{Node: "eu-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &linksFixture{t: t, store: st, logs: &syncBuffer{}}
	f.h = edge.NewAdmin(edge.AdminConfig{Token: token, Links: &edge.LinksConfig{
		Store: st, WriteRate: rate, WriteBurst: burst,
		Logger: slog.New(slog.NewTextHandler(f.logs, nil)),
	}})
	return f
}

func (f *linksFixture) do(method, path, token, body string) (int, http.Header, string) {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Header(), string(b)
}

func (f *linksFixture) must(method, path, body string, want int) string {
	f.t.Helper()
	code, _, got := f.do(method, path, linksToken, body)
	if code != want {
		f.t.Fatalf("%s %s = %d %s, want %d", method, path, code, got, want)
	}
	return got
}

const tvLink = `{"url":"https://shop.example/tv?cid={click_id}","rules":[
	{"name":"de","when":"country == \"DE\" && device == \"mobile\"","url":"https://m.shop.example/de"},
	{"name":"night","when":"hour >= 22","split":[{"url":"https://a.example/","weight":70},{"url":"https://b.example/","weight":30}]}]}`

func TestLinksAdminAuth(t *testing.T) {
	for _, tc := range []struct {
		name, configured, sent string
		want                   int
	}{
		{"no token configured", "", linksToken, http.StatusForbidden},
		{"missing", linksToken, "", http.StatusUnauthorized},
		{"wrong", linksToken, "nope", http.StatusForbidden},
		{"right", linksToken, linksToken, http.StatusCreated},
	} {
		f := newLinks(t, tc.configured, 0, 0)
		for _, req := range []struct{ method, path, body string }{
			{"PUT", "/admin/links/tv", tvLink},
			{"DELETE", "/admin/links/tv", ""},
			{"POST", "/admin/links/bulk", `{"delete":["tv"]}`},
		} {
			code, h, body := f.do(req.method, req.path, tc.sent, req.body)
			want := tc.want
			if tc.want == http.StatusCreated && req.method != "PUT" {
				want = http.StatusOK // the PUT before made tv
			}
			if code != want {
				t.Fatalf("%s: %s %s = %d %s, want %d", tc.name, req.method, req.path, code, body, want)
			}
			if code == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
				t.Fatalf("%s: 401 without WWW-Authenticate", tc.name)
			}
		}
		if tc.want != http.StatusCreated && f.store.Version() != 0 {
			t.Fatalf("%s: a refused write changed the store", tc.name)
		}
		if strings.Contains(f.logs.String(), "s3cret") || strings.Contains(f.logs.String(), "nope") {
			t.Fatalf("%s: a token is in the logs:\n%s", tc.name, f.logs)
		}
	}
}

func TestLinksAdminCRUD(t *testing.T) {
	f := newLinks(t, linksToken, 0, 0)
	f.must("PUT", "/admin/links/tv", tvLink, http.StatusCreated)
	got := f.must("PUT", "/admin/links/tv", strings.Replace(tvLink, `{"url"`, `{"code":"tv","url"`, 1), http.StatusOK)
	var ch struct{ Code, Version, Node string }
	if err := json.Unmarshal([]byte(got), &ch); err != nil || ch.Code != "tv" || ch.Node != "eu-1" {
		t.Fatalf("PUT answer %s", got)
	}
	if v, _ := strconv.ParseUint(ch.Version, 10, 64); v != f.store.Version() {
		t.Fatalf("PUT version %s, want the store's %d", ch.Version, f.store.Version())
	}
	code, h, body := f.do("GET", "/admin/links/tv", linksToken, "") // reads need the token too when one is set (harden #7)
	if code != 200 || h.Get("X-Catalog-Version") != ch.Version {
		t.Fatalf("GET = %d %s (version %q)", code, body, h.Get("X-Catalog-Version"))
	}
	var spec catalog.LinkSpec
	if err := json.Unmarshal([]byte(body), &spec); err != nil || spec.Code != "tv" || len(spec.Rules) != 2 || spec.Rules[1].Split[0].Weight != 70 {
		t.Fatalf("GET body %s", body)
	}
	// What GET returns, PUT takes back unchanged.
	f.must("PUT", "/admin/links/tv", body, http.StatusOK)

	for i := range 5 {
		f.must("PUT", fmt.Sprintf("/admin/links/l%d", i), `{"url":"https://l.example/"}`, http.StatusCreated)
	}
	var codes []string
	after := ""
	for pages := 0; ; pages++ {
		var page struct {
			Links []catalog.LinkSpec
			Next  string
		}
		body := f.must("GET", "/admin/links?limit=2&after="+after, "", http.StatusOK)
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err)
		}
		for _, l := range page.Links {
			codes = append(codes, l.Code)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if want := "l0 l1 l2 l3 l4 tv"; strings.Join(codes, " ") != want {
		t.Fatalf("listed %v, want %s", codes, want)
	}

	f.must("DELETE", "/admin/links/l2", "", http.StatusOK)
	f.must("GET", "/admin/links/l2", "", http.StatusNotFound)
	f.must("DELETE", "/admin/links/l2", "", http.StatusNotFound)
	f.must("GET", "/admin/links/nope", "", http.StatusNotFound)
	if f.store.Catalog().Lookup("l2") != nil {
		t.Fatal("deleted link served")
	}
	f.must("GET", "/admin/links?limit=0", "", http.StatusBadRequest)

	var info struct {
		Version, Digest   string
		Links, Tombstones int
	}
	json.Unmarshal([]byte(f.must("GET", "/admin/catalog", "", http.StatusOK)), &info)
	if info.Version != strconv.FormatUint(f.store.Version(), 10) || info.Digest != f.store.Digest() || info.Links != 5 || info.Tombstones != 1 {
		t.Fatalf("GET /admin/catalog = %+v", info)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "who="+edge.TokenID(linksToken)) || !strings.Contains(logs, `what="delete l2"`) {
		t.Fatalf("writes not logged with who and what:\n%s", logs)
	}
}

func TestLinksAdminRefusesBadLinks(t *testing.T) {
	f := newLinks(t, linksToken, 0, 0)
	f.must("PUT", "/admin/links/keep", `{"url":"https://k.example/"}`, http.StatusCreated)
	digest := f.store.Digest()
	for _, tc := range []struct{ name, path, body, field string }{
		{"bad when", "/admin/links/x", `{"url":"https://x.example/","rules":[{"name":"r","when":"cuntry == 1","url":"https://y.example/"}]}`, "rules[0].when"},
		{"bad url", "/admin/links/x", `{"url":"ftp://x.example/"}`, "url"},
		{"code differs", "/admin/links/x", `{"code":"y","url":"https://x.example/"}`, "code"},
		{"bad code", "/admin/links/a.b", `{"url":"https://x.example/"}`, "code"},
		{"split weight", "/admin/links/x", `{"url":"https://x.example/","rules":[{"name":"r","split":[{"url":"https://a.example/","weight":-1}]}]}`, "rules[0].split[0].weight"},
		{"not json", "/admin/links/x", `url: x`, ""},
	} {
		code, _, body := f.do("PUT", tc.path, linksToken, tc.body)
		var p struct{ Error, Field string }
		json.Unmarshal([]byte(body), &p)
		if code != http.StatusUnprocessableEntity || p.Field != tc.field || p.Error == "" {
			t.Fatalf("%s: PUT = %d %s, want 422 with field %q", tc.name, code, body, tc.field)
		}
	}
	// A bulk with one bad link applies nothing.
	code, _, body := f.do("POST", "/admin/links/bulk", linksToken,
		`{"upsert":[{"code":"a","url":"https://a.example/"},{"code":"b","url":"https://b.example/{param:zz}"}],"delete":["keep"]}`)
	var p struct {
		Error, Field, Code string
		Index              int
	}
	json.Unmarshal([]byte(body), &p)
	if code != http.StatusUnprocessableEntity || p.Code != "b" || p.Index != 1 || p.Field != "url" {
		t.Fatalf("bad bulk = %d %s", code, body)
	}
	if f.store.Digest() != digest {
		t.Fatal("a refused write changed the store")
	}
	f.must("POST", "/admin/links/bulk", `{"upsert":[{"code":"a","url":"https://a.example/"}],"delete":["keep"]}`, http.StatusOK)
	if f.store.Catalog().Lookup("a") == nil || f.store.Catalog().Lookup("keep") != nil {
		t.Fatal("bulk not applied")
	}
	f.must("POST", "/admin/links/bulk", `{"upsert":[],"delete":[]}`, http.StatusBadRequest)
	f.must("POST", "/admin/links/bulk", `{"links":[]}`, http.StatusBadRequest)
	f.must("PUT", "/admin/links/big", `{"url":"https://x.example/`+strings.Repeat("a", 2<<20)+`"}`, http.StatusRequestEntityTooLarge)
}

func TestLinksAdminRateLimit(t *testing.T) {
	f := newLinks(t, linksToken, 0.001, 2)
	f.must("PUT", "/admin/links/a", `{"url":"https://a.example/"}`, http.StatusCreated)
	f.must("PUT", "/admin/links/b", `{"url":"https://a.example/"}`, http.StatusCreated)
	code, h, _ := f.do("PUT", "/admin/links/c", linksToken, `{"url":"https://a.example/"}`)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("third write = %d (Retry-After %q), want 429 with Retry-After", code, h.Get("Retry-After"))
	}
	if f.store.Catalog().Lookup("c") != nil {
		t.Fatal("a rate-limited write was applied")
	}
	f.must("GET", "/admin/links/a", "", http.StatusOK) // reads are not limited
}

func TestLinksAdminTrace(t *testing.T) {
	f := newLinks(t, linksToken, 0, 0)
	f.must("PUT", "/admin/links/tv", tvLink, http.StatusCreated)
	version := f.store.Version()
	for _, tc := range []struct{ query, rule, url string }{
		{"country=DE&device=mobile&hour=12", "de", "https://m.shop.example/de"},
		{"country=FR&hour=23&rnd=0", "night", "https://a.example/"},
		{"country=FR&hour=23&rnd=18446744073709551615", "night", "https://b.example/"},
		{"country=FR&hour=10", "", "https://shop.example/tv?cid={click_id}"},
	} {
		var tr catalog.Trace
		json.Unmarshal([]byte(f.must("GET", "/admin/links/tv/trace?"+tc.query, "", http.StatusOK)), &tr)
		if tr.Rule != tc.rule || tr.URL != tc.url {
			t.Fatalf("trace %s = %+v, want rule %q url %s", tc.query, tr, tc.rule, tc.url)
		}
		if tc.rule == "night" && (len(tr.Split) != 2 || tr.Split[0].Weight != 70 || tr.Split[1].Weight != 30) {
			t.Fatalf("trace of a split without its branches: %+v", tr)
		}
	}
	f.must("GET", "/admin/links/tv/trace?cuntry=DE", "", http.StatusBadRequest)
	f.must("GET", "/admin/links/tv/trace?hour=25", "", http.StatusBadRequest)
	f.must("GET", "/admin/links/none/trace", "", http.StatusNotFound)
	if f.store.Version() != version {
		t.Fatal("trace changed the store")
	}
}
