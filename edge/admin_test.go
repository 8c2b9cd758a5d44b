package edge_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/edgetest"
)

type adminFixture struct {
	h       http.Handler
	srv     *edge.Server
	reloads atomic.Int64
	next    atomic.Pointer[error]
	ready   atomic.Pointer[error]
}

func newAdmin(t *testing.T, token string) *adminFixture {
	t.Helper()
	a := &adminFixture{}
	cfg := edge.DefaultConfig()
	cfg.Recorder = &edgetest.Recorder{}
	srv, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetCatalog(edgetest.Catalog(t, testCatalog))
	a.srv = srv
	reg := prometheus.NewRegistry()
	for _, c := range srv.Collectors() {
		reg.MustRegister(c)
	}
	reloaded := edgetest.Catalog(t, `
links:
  - code: reloaded
    url: "https://r.example/?cid={click_id}"
`)
	a.h = edge.NewAdmin(edge.AdminConfig{
		Gatherer: reg,
		Token:    token,
		Ready: func() error {
			if p := a.ready.Load(); p != nil {
				return *p
			}
			return nil
		},
		OutboxStatus: func() any { return map[string]any{"pending": 3, "path": "/data/outbox.db"} },
		ReloadCatalog: func() error {
			a.reloads.Add(1)
			if p := a.next.Load(); p != nil {
				return *p
			}
			srv.SetCatalog(reloaded)
			return nil
		},
		Server: srv,
	})
	return a
}

func (a *adminFixture) do(t *testing.T, method, target, auth string) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	a.h.ServeHTTP(w, r)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestAdminToken(t *testing.T) {
	const token = "s3cret-token"
	tests := []struct {
		name       string
		configured string
		auth       string
		status     int
		reloads    int64
	}{
		{"missing", token, "", 401, 0},
		{"wrong", token, "Bearer nope", 403, 0},
		{"prefix of the token", token, "Bearer s3cret", 403, 0},
		{"wrong scheme", token, "Basic " + token, 401, 0},
		{"right", token, "Bearer " + token, 200, 1},
		{"right, scheme in lower case", token, "bearer " + token, 200, 1},
		{"none configured", "", "Bearer " + token, 403, 0},
		{"none configured, none sent", "", "", 403, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAdmin(t, tt.configured)
			res, body := a.do(t, "POST", "/admin/catalog/reload", tt.auth)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (body %q)", res.StatusCode, tt.status, body)
			}
			if got := a.reloads.Load(); got != tt.reloads {
				t.Errorf("ReloadCatalog called %d times, want %d", got, tt.reloads)
			}
			switch tt.status {
			case 401:
				if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want Bearer", res.Header.Get("WWW-Authenticate"))
				}
				if strings.TrimSpace(body) == "" {
					t.Errorf("401 without a reason")
				}
			case 403:
				if tt.configured != "" {
					if body != "wrong bearer token\n" {
						t.Errorf("body %q, want it to say the token is wrong", body)
					}
					break
				}
				if !strings.Contains(body, "admin token not configured") {
					t.Errorf("body %q, want it to say the token is not configured", body)
				}
			case 200:
				var got struct {
					Version string `json:"version"`
					Links   int    `json:"links"`
				}
				if err := json.Unmarshal([]byte(body), &got); err != nil || got.Version != a.srv.Catalog().Version() || got.Links != 1 {
					t.Errorf("body %q (%v), want the new version %s and 1 link", body, err, a.srv.Catalog().Version())
				}
			}
		})
	}
}

func TestAdminReloadErrors(t *testing.T) {
	a := newAdmin(t, "tok")
	old := a.srv.Catalog()
	for _, tt := range []struct {
		err    error
		status int
	}{
		{fmt.Errorf("catalog: links.yaml:3:5: link \"x\": url: missing: %w", catalog.ErrInvalid), 422},
		{errors.New("catalog: open links.yaml: no such file or directory"), 400},
	} {
		a.next.Store(&tt.err)
		res, body := a.do(t, "POST", "/admin/catalog/reload", "Bearer tok")
		if res.StatusCode != tt.status || !strings.Contains(body, tt.err.Error()) {
			t.Errorf("reload failing with %v: status %d body %q; want %d with the error", tt.err, res.StatusCode, body, tt.status)
		}
	}
	if a.srv.Catalog() != old {
		t.Errorf("a failed reload changed the catalog")
	}
	if res, _ := a.do(t, "GET", "/admin/catalog/reload", "Bearer tok"); res.StatusCode != 405 {
		t.Errorf("GET /admin/catalog/reload: status %d, want 405", res.StatusCode)
	}
}

// Reads on an admin without a token (cmd/clickedge allows that only on a
// loopback address).
func TestAdminReads(t *testing.T) {
	a := newAdmin(t, "")
	notReady := errors.New("outbox not open")

	res, body := a.do(t, "GET", "/healthz", "")
	if res.StatusCode != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", res.StatusCode, body)
	}
	res, body = a.do(t, "GET", "/readyz", "")
	if res.StatusCode != 200 {
		t.Errorf("/readyz (ready): %d %q, want 200", res.StatusCode, body)
	}
	a.ready.Store(&notReady)
	res, body = a.do(t, "GET", "/readyz", "")
	if res.StatusCode != 503 || !strings.Contains(body, "outbox not open") {
		t.Errorf("/readyz (not ready): %d %q, want 503 with the reason", res.StatusCode, body)
	}

	res, body = a.do(t, "GET", "/admin/outbox", "")
	var st map[string]any
	if res.StatusCode != 200 || json.Unmarshal([]byte(body), &st) != nil || st["pending"] != 3.0 {
		t.Errorf("/admin/outbox: %d %q, want 200 with the status JSON", res.StatusCode, body)
	}
	res, body = a.do(t, "GET", "/admin/catalog", "")
	if res.StatusCode != 200 || !strings.Contains(body, a.srv.Catalog().Version()) {
		t.Errorf("/admin/catalog: %d %q, want 200 with the version", res.StatusCode, body)
	}

	res, body = a.do(t, "GET", "/debug/pprof/", "")
	if res.StatusCode != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d, want 200 with the profile index", res.StatusCode)
	}
	res, _ = a.do(t, "GET", "/debug/pprof/goroutine?debug=1", "")
	if res.StatusCode != 200 {
		t.Errorf("/debug/pprof/goroutine: %d, want 200", res.StatusCode)
	}

	// A click first, so that every metric has a sample.
	a.srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/r/tv-sale", nil))
	res, body = a.do(t, "GET", "/metrics", "")
	if res.StatusCode != 200 {
		t.Fatalf("/metrics: %d", res.StatusCode)
	}
	for _, name := range []string{"clickedge_http_request_duration_seconds_bucket", "clickedge_clicks_total", "clickedge_bot_clicks_total"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if res, _ := a.do(t, "GET", "/nope", ""); res.StatusCode != 404 {
		t.Errorf("/nope: %d, want 404", res.StatusCode)
	}
}

func TestAdminOptionalEndpoints(t *testing.T) {
	h := edge.NewAdmin(edge.AdminConfig{})
	for _, tt := range []struct {
		method, target string
		status         int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/readyz", 200},
		{"GET", "/metrics", 404},
		{"GET", "/admin/outbox", 404},
		{"POST", "/admin/catalog/reload", 404},
		{"GET", "/admin/catalog", 200},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.target, nil))
		if w.Code != tt.status {
			t.Errorf("%s %s with an empty AdminConfig: %d, want %d", tt.method, tt.target, w.Code, tt.status)
		}
	}
}

// harden #7: with a token set, every admin route but /metrics, /healthz and
// /readyz needs it, pprof and reads included; those three stay open for
// scrapers and probes.
func TestAdminTokenGuardsEveryRoute(t *testing.T) {
	const token = "s3cret-token"
	a := newAdmin(t, token)
	for _, target := range []string{"/metrics", "/healthz", "/readyz"} {
		if res, body := a.do(t, "GET", target, ""); res.StatusCode != 200 {
			t.Errorf("GET %s without a token: %d %q, want 200", target, res.StatusCode, body)
		}
	}
	guarded := []struct {
		method, target string
		ok             int // the status with the token
	}{
		{"GET", "/debug/pprof/", 200},
		{"GET", "/debug/pprof/goroutine?debug=1", 200},
		{"GET", "/debug/pprof/cmdline", 200},
		{"GET", "/debug/pprof/symbol", 200},
		{"GET", "/admin/outbox", 200},
		{"GET", "/admin/catalog", 200},
		{"POST", "/admin/catalog/reload", 200},
		{"GET", "/admin/links", 404}, // not registered here: still no way to probe without the token
		{"GET", "/status", 404},
		{"GET", "/metrics/../debug/pprof/", 307}, // the mux redirects to the cleaned path, itself guarded
	}
	for _, g := range guarded {
		res, body := a.do(t, g.method, g.target, "")
		if res.StatusCode != 401 {
			t.Errorf("%s %s without a token: %d %q, want 401", g.method, g.target, res.StatusCode, body)
		}
		if strings.Contains(body, "goroutine") || strings.Contains(body, "pending") {
			t.Errorf("%s %s without a token leaked the content: %q", g.method, g.target, body)
		}
		if res, _ := a.do(t, g.method, g.target, "Bearer wrong"); res.StatusCode != 403 {
			t.Errorf("%s %s with a wrong token: %d, want 403", g.method, g.target, res.StatusCode)
		}
		res, body = a.do(t, g.method, g.target, "Bearer "+token)
		if res.StatusCode != g.ok {
			t.Errorf("%s %s with the token: %d %q, want %d", g.method, g.target, res.StatusCode, body, g.ok)
		}
	}
}

// harden #14: a reload refused on purpose answers 409; ?force=1 takes the
// forcing path, which a node may not offer.
func TestAdminReloadForce(t *testing.T) {
	var forced atomic.Int64
	h := edge.NewAdmin(edge.AdminConfig{
		Token:              "tok",
		ReloadCatalog:      func() error { return fmt.Errorf("empty: %w", edge.ErrRefused) },
		ForceReloadCatalog: func() error { forced.Add(1); return nil },
	})
	noForce := edge.NewAdmin(edge.AdminConfig{Token: "tok", ReloadCatalog: func() error { return nil }})
	for _, tt := range []struct {
		h      http.Handler
		target string
		status int
	}{
		{h, "/admin/catalog/reload", 409},
		{h, "/admin/catalog/reload?force=1", 200},
		{h, "/admin/catalog/reload?force=true", 200},
		{h, "/admin/catalog/reload?force=yes", 400},
		{noForce, "/admin/catalog/reload?force=1", 400},
		{noForce, "/admin/catalog/reload", 200},
	} {
		r := httptest.NewRequest("POST", tt.target, nil)
		r.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		tt.h.ServeHTTP(w, r)
		if w.Code != tt.status {
			t.Errorf("POST %s: %d %q, want %d", tt.target, w.Code, w.Body.String(), tt.status)
		}
	}
	if n := forced.Load(); n != 2 {
		t.Errorf("ForceReloadCatalog called %d times, want 2", n)
	}
}
