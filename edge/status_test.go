package edge_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/edge"
)

func sampleStatus() *edge.Status {
	now := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	return &edge.Status{
		Node: "eu-central-1", Region: "eu-central", Version: "1.2.3",
		Started: now.Add(-time.Hour), Now: now,
		OutboxPending: 42, OutboxOldestAge: 3 * time.Second, OutboxFileBytes: 3 << 20,
		Forwarder: "disconnected", ForwarderError: "dial tcp: <refused>",
		CatalogVersion: "4d2a1094cb06", CatalogLinks: 7, CatalogLoaded: now.Add(-time.Minute),
		Members: []edge.StatusMember{
			{Name: "eu-central-1", State: "alive", Forwarder: "disconnected", CatalogVersion: "4d2a1094cb06"},
			{Name: "eu-central-2<script>", State: "dead", Forwarder: "connected", CatalogVersion: "0badc0ffee00"},
		},
		Sections: []edge.StatusSection{{Title: "Postbacks", Rows: [][2]string{{"registered", "5"}}}},
	}
}

func TestRenderStatus(t *testing.T) {
	page, err := edge.RenderStatus(sampleStatus())
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, want := range []string{
		`<td id="pending">42</td>`, `<td id="oldest">3s</td>`, `3.0 MiB`,
		`<td id="forwarder" class="bad">disconnected</td>`, `<td id="catalog-version">4d2a1094cb06</td>`,
		`<td class="bad">dead</td>`, `eu-central-2&lt;script&gt;`, `dial tcp: &lt;refused&gt;`,
		`<h2>Postbacks</h2>`, `up 1h0m0s`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=", "href=", "http://", "https://", "@import", "url("} {
		if strings.Contains(s, bad) {
			t.Errorf("status page contains %q: it must be self-contained and escape what it shows", bad)
		}
	}

	alone := sampleStatus()
	alone.Members = nil
	page, _ = edge.RenderStatus(alone)
	if !strings.Contains(string(page), "No cluster configured") {
		t.Errorf("page of a node without a cluster does not say so")
	}
}

func TestStatusEndpointAuth(t *testing.T) {
	get := func(h http.Handler, auth func(*http.Request)) *http.Response {
		r := httptest.NewRequest("GET", "/status", nil)
		if auth != nil {
			auth(r)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}
	status := func() *edge.Status { return sampleStatus() }

	open := edge.NewAdmin(edge.AdminConfig{Status: status})
	if res := get(open, nil); res.StatusCode != 200 {
		t.Fatalf("GET /status without a token configured = %d, want 200", res.StatusCode)
	} else {
		if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("Content-Security-Policy = %q, want default-src 'none'", csp)
		}
		b, _ := io.ReadAll(res.Body)
		if !strings.Contains(string(b), "eu-central-1") {
			t.Errorf("body lacks the node id")
		}
	}

	guarded := edge.NewAdmin(edge.AdminConfig{Status: status, Token: "s3cret"})
	for _, tc := range []struct {
		name string
		auth func(*http.Request)
		want int
	}{
		{"none", nil, 401},
		{"wrong bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, 401},
		{"wrong basic", func(r *http.Request) { r.SetBasicAuth("admin", "nope") }, 401},
		{"token as basic user", func(r *http.Request) { r.SetBasicAuth("s3cret", "") }, 401},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, 200},
		{"basic", func(r *http.Request) { r.SetBasicAuth("anyone", "s3cret") }, 200},
	} {
		res := get(guarded, tc.auth)
		if res.StatusCode != tc.want {
			t.Errorf("%s: GET /status = %d, want %d", tc.name, res.StatusCode, tc.want)
		}
		if tc.want == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: WWW-Authenticate = %q, want Basic (so a browser asks)", tc.name, res.Header.Get("WWW-Authenticate"))
		}
	}

	if res := get(edge.NewAdmin(edge.AdminConfig{}), nil); res.StatusCode != 404 {
		t.Errorf("GET /status with no Status func = %d, want 404", res.StatusCode)
	}
}
