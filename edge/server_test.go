package edge_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/edge/edgetest"
	"github.com/clickedge/clickedge/edge/geo"
	"github.com/clickedge/clickedge/edge/geo/geotest"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// The Recorders the Server is used with.
var (
	_ edge.Recorder = (*outbox.Outbox)(nil)
	_ edge.Recorder = (*edgetest.Recorder)(nil)
)

const testCatalog = `
links:
  - code: tv-sale
    url: "https://shop.example/tv?cid={click_id}&sub={subid}&camp={param:utm_campaign}"
    params: [subid, subid1, utm_campaign]
    rules:
      - name: de-mobile
        when: 'country == "DE" && device == "mobile"'
        url: "https://m.shop.example/de/tv?cid={click_id}&sub={subid}"
      - name: newsletter
        when: 'params["subid1"] == "newsletter"'
        url: "https://news.shop.example/{subid}/tv?cid={click_id}"
      - name: german
        when: 'lang == "de"'
        url: "https://shop.example/de/tv?cid={click_id}"
      - name: office
        when: 'cidr("10.0.0.0/8")'
        url: "https://staging.shop.example/tv?cid={click_id}"
  - code: Summer
    url: "https://deals.example/{country}/summer?click={click_id}&aff={subid}&r={region}"
  - code: old-promo
    status: paused
    url: "https://promo.example/2023?cid={click_id}"
    fallback_url: "https://promo.example/?cid={click_id}&aff={subid}"
  - code: gone
    status: paused
    url: "https://promo.example/gone?cid={click_id}"
  - code: many
    url: "https://many.example/?cid={click_id}&last={param:p15}"
    params: [p00, p01, p02, p03, p04, p05, p06, p07, p08, p09, p10, p11, p12, p13, p14, p15]
`

const (
	desktopUA  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	iphoneUA   = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"
	googlebot  = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	slackbot   = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
	clientIP   = "203.0.113.7" // US in the test geo database
	clientPeer = clientIP + ":4321"
	region     = "test-region"
	node       = "node-1"
)

// testNow is the clock of every test server: ts "2026-11-27T05:10:00.123Z".
var testNow = time.Date(2026, 11, 27, 5, 10, 0, 123_456_789, time.UTC)

var (
	geoOnce sync.Once
	geoPath string
)

// testGeo opens a small City database: 198.51.100.0/24 is Berlin, DE;
// 203.0.113.0/24 San Francisco, US; 2001:db8::/32 France.
func testGeo(t testing.TB) *geo.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.WriteCityDB(t, path, map[string]geotest.City{
		"198.51.100.0/24": {Country: "DE", Subdivision: "DE-BE", Name: "Berlin"},
		"203.0.113.0/24":  {Country: "US", Subdivision: "US-CA", Name: "San Francisco"},
		"2001:db8::/32":   {Country: "FR"},
	})
	db, err := geo.Open(path, nil)
	if err != nil {
		t.Fatalf("geo.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type testServer struct {
	*edge.Server
	ob  *outbox.Outbox
	cat *catalog.Catalog
}

// newTestServer returns a Server on a fresh sync outbox with the test
// catalog, geo database and clock. mod may change the config.
func newTestServer(t testing.TB, mod func(*edge.Config)) *testServer {
	t.Helper()
	ts := &testServer{ob: outboxtest.Open(t, nil), cat: edgetest.Catalog(t, testCatalog)}
	cfg := edge.DefaultConfig()
	cfg.Region = region
	cfg.Node = node
	cfg.Recorder = ts.ob
	cfg.Geo = testGeo(t)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00::/8")}
	cfg.Now = func() time.Time { return testNow }
	if mod != nil {
		mod(cfg)
	}
	srv, err := edge.New(cfg)
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	srv.SetCatalog(ts.cat)
	ts.Server = srv
	return ts
}

type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }
func addHeader(k, v string) reqOpt  { return func(r *http.Request) { r.Header.Add(k, v) } }
func withPeer(p string) reqOpt      { return func(r *http.Request) { r.RemoteAddr = p } }

// serve runs one request through h and returns the response and its body.
func serve(t testing.TB, h http.Handler, method, target string, opts ...reqOpt) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = clientPeer
	r.Header.Set("User-Agent", desktopUA)
	for _, o := range opts {
		o(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

var idRE = regexp.MustCompile(`[0-9a-f]{32}`)

// decodeClick decodes a record's body, failing the test if it is not JSON.
func decodeClick(t testing.TB, rec outbox.Record) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body, &m); err != nil {
		t.Fatalf("record body %q: %v", rec.Body, err)
	}
	return m
}

func TestContract(t *testing.T) {
	long := strings.Repeat("a", 300)
	longUTF8 := strings.Repeat("a", 255) + "é" // the é straddles byte 256
	var many strings.Builder
	manyParams := map[string]any{}
	for i := range 16 {
		fmt.Fprintf(&many, "p%02d=v%d&", i, i)
		manyParams[fmt.Sprintf("p%02d", i)] = fmt.Sprintf("v%d", i)
	}
	many.WriteString("p99=x")

	tests := []contractCase{
		{
			name: "redirect with macros", method: "GET",
			target: "/r/tv-sale?subid=aff42&utm_campaign=spring%20sale&other=x",
			status: 302, location: "https://shop.example/tv?cid={id}&sub=aff42&camp=spring+sale", recorded: true,
			click: map[string]any{"link": "tv-sale", "rule": "", "country": "US", "subdivision": "US-CA", "city": "San Francisco",
				"device": "desktop", "bot": false, "preview": false,
				"params": map[string]any{"subid": "aff42", "utm_campaign": "spring sale"}},
		},
		{
			name: "query value escaped in the query", method: "GET",
			target: "/r/tv-sale?subid=a+b%26c%3Dd%2F%C3%A9%23",
			status: 302, location: "https://shop.example/tv?cid={id}&sub=a+b%26c%3Dd%2F%C3%A9%23&camp=", recorded: true,
			click: map[string]any{"params": map[string]any{"subid": "a b&c=d/é#"}},
		},
		{
			name: "query value escaped in the path", method: "GET",
			target: "/r/tv-sale?subid1=newsletter&subid=x/y%20z%3F",
			status: 302, location: "https://news.shop.example/x%2Fy%20z%3F/tv?cid={id}", recorded: true,
			click: map[string]any{"rule": "newsletter", "params": map[string]any{"subid": "x/y z?", "subid1": "newsletter"}},
		},
		{
			name: "country and region macros, default params list", method: "GET",
			target: "/r/Summer?subid=s1&subid4=four&subid5=no", opts: []reqOpt{withPeer("198.51.100.9:1")},
			status: 302, location: "https://deals.example/DE/summer?click={id}&aff=s1&r=test-region", recorded: true,
			click: map[string]any{"link": "Summer", "country": "DE", "subdivision": "DE-BE", "city": "Berlin", "region": region,
				"params": map[string]any{"subid": "s1", "subid4": "four"}},
		},
		{
			name: "first occurrence wins, others ignored", method: "GET",
			target: "/r/tv-sale?foo=bar&subid=a&subid=b&SUBID=c",
			status: 302, location: "https://shop.example/tv?cid={id}&sub=a&camp=", recorded: true,
			click: map[string]any{"params": map[string]any{"subid": "a"}},
		},
		{
			name: "escaped key", method: "GET",
			target: "/r/tv-sale?sub%69d=k",
			status: 302, location: "https://shop.example/tv?cid={id}&sub=k&camp=", recorded: true,
			click: map[string]any{"params": map[string]any{"subid": "k"}},
		},
		{
			name: "empty value recorded", method: "GET",
			target: "/r/tv-sale?subid=&subid1",
			status: 302, location: "https://shop.example/tv?cid={id}&sub=&camp=", recorded: true,
			click: map[string]any{"params": map[string]any{"subid": "", "subid1": ""}},
		},
		{
			name: "long value cut to 256 bytes", method: "GET",
			target: "/r/tv-sale?subid=" + long,
			status: 302, location: "https://shop.example/tv?cid={id}&sub=" + long[:256] + "&camp=", recorded: true,
			click: map[string]any{"params": map[string]any{"subid": long[:256]}, "truncated": []any{"subid"}},
		},
		{
			name: "cut at a UTF-8 boundary", method: "GET",
			target: "/r/tv-sale?utm_campaign=" + strings.Repeat("a", 255) + "%C3%A9&subid=" + long,
			status: 302, location: "https://shop.example/tv?cid={id}&sub=" + long[:256] + "&camp=" + longUTF8[:255], recorded: true,
			click: map[string]any{"params": map[string]any{"subid": long[:256], "utm_campaign": longUTF8[:255]},
				"truncated": []any{"utm_campaign", "subid"}},
		},
		{
			name: "sixteen params", method: "GET", target: "/r/many?" + many.String(),
			status: 302, location: "https://many.example/?cid={id}&last=v15", recorded: true,
			click: map[string]any{"params": manyParams},
		},
		{
			name: "bad escape in a recorded parameter", method: "GET", target: "/r/tv-sale?subid=ok&subid1=%zz",
			status: 400, body: "bad percent-encoding in parameter \"subid1\"\n",
		},
		{
			name: "cut escape in a recorded parameter", method: "GET", target: "/r/tv-sale?subid=abc%4",
			status: 400, body: "bad percent-encoding in parameter \"subid\"\n",
		},
		{
			name: "bad escape in an ignored parameter", method: "GET", target: "/r/tv-sale?foo=%zz&subid=ok",
			status: 302, location: "https://shop.example/tv?cid={id}&sub=ok&camp=", recorded: true,
		},
		{
			name: "bad escape on HEAD", method: "HEAD", target: "/r/tv-sale?subid=%",
			status: 400,
		},
		{name: "unknown link", method: "GET", target: "/r/nope", status: 404, body: "unknown link\n"},
		{name: "case-different code", method: "GET", target: "/r/summer", status: 404, body: "unknown link\n"},
		{name: "case-different code 2", method: "GET", target: "/r/TV-SALE", status: 404, body: "unknown link\n"},
		{name: "malformed code", method: "GET", target: "/r/tv.sale", status: 404, body: "malformed link code\n"},
		{name: "malformed code, escaped space", method: "GET", target: "/r/tv%20sale", status: 404, body: "malformed link code\n"},
		{name: "code too long", method: "GET", target: "/r/" + strings.Repeat("a", 65), status: 404, body: "malformed link code\n"},
		{name: "trailing slash", method: "GET", target: "/r/tv-sale/", status: 404, body: "not found\n"},
		{name: "extra segment", method: "GET", target: "/r/tv-sale/x", status: 404, body: "not found\n"},
		{name: "escaped slash", method: "GET", target: "/r/tv-sale%2Fx", status: 404, body: "not found\n"},
		{name: "no code", method: "GET", target: "/r/", status: 404, body: "missing link code\n"},
		{name: "no code on /c", method: "GET", target: "/c/", status: 404, body: "missing link code\n"},
		{name: "bare /r", method: "GET", target: "/r", status: 404, body: "not found\n"},
		{name: "root", method: "GET", target: "/", status: 404, body: "not found\n"},
		{name: "other path", method: "GET", target: "/favicon.ico", status: 404, body: "not found\n"},
		{name: "other path, POST", method: "POST", target: "/postbackx", status: 404, body: "not found\n"},
		{name: "POST /r", method: "POST", target: "/r/tv-sale", status: 405, body: "method not allowed\n"},
		{name: "PUT /c", method: "PUT", target: "/c/tv-sale", status: 405, body: "method not allowed\n"},
		{name: "DELETE /r/ unknown", method: "DELETE", target: "/r/nope", status: 405},
		{
			name: "paused with fallback", method: "GET", target: "/r/old-promo?subid=z",
			status: 302, location: "https://promo.example/?cid={id}&aff=z", recorded: true,
			click: map[string]any{"link": "old-promo", "rule": "", "paused": true, "url": "https://promo.example/?cid={id}&aff=z"},
		},
		{name: "paused without fallback", method: "GET", target: "/r/gone", status: 404, body: "link paused\n"},
		{name: "paused without fallback, /c", method: "GET", target: "/c/gone", status: 404, body: "link paused\n"},
		{
			name: "HEAD redirects like GET", method: "HEAD", target: "/r/tv-sale?subid=h",
			status: 302, location: "https://shop.example/tv?cid={id}&sub=h&camp=",
		},
		{
			name: "HEAD paused", method: "HEAD", target: "/r/old-promo",
			status: 302, location: "https://promo.example/?cid={id}&aff=",
		},
		{name: "HEAD unknown", method: "HEAD", target: "/r/nope", status: 404, body: ""},
		{
			name: "register", method: "GET", target: "/c/tv-sale?subid=q",
			status: 200, body: `{"click_id":"{id}","url":"https://shop.example/tv?cid={id}&sub=q&camp="}` + "\n", recorded: true,
			click: map[string]any{"url": "https://shop.example/tv?cid={id}&sub=q&camp="},
		},
		{name: "HEAD register", method: "HEAD", target: "/c/tv-sale?subid=q", status: 200, body: ""},
		{
			name: "client from a trusted proxy", method: "GET", target: "/r/tv-sale",
			opts:   []reqOpt{withPeer("192.168.1.1:5000"), withHeader("X-Forwarded-For", "198.51.100.9")},
			status: 302, location: "https://shop.example/tv?cid={id}&sub=&camp=", recorded: true,
			click: map[string]any{"country": "DE"},
		},
		{
			name: "right-most untrusted in a chain", method: "GET", target: "/r/tv-sale",
			opts: []reqOpt{withPeer("[::ffff:192.168.1.1]:5000"),
				addHeader("X-Forwarded-For", "203.0.113.99, 198.51.100.9"), addHeader("X-Forwarded-For", "192.168.7.7, fd00::1")},
			status: 302, location: "https://shop.example/tv?cid={id}&sub=&camp=", recorded: true,
			click: map[string]any{"country": "DE"},
		},
		{
			name: "forwarded client seen by rules", method: "GET", target: "/r/tv-sale",
			opts:   []reqOpt{withPeer("192.168.1.1:5000"), withHeader("X-Forwarded-For", "10.1.2.3")},
			status: 302, location: "https://staging.shop.example/tv?cid={id}", recorded: true,
			click: map[string]any{"rule": "office", "country": ""},
		},
		{
			name: "spoofed X-Forwarded-For from an untrusted peer", method: "GET", target: "/r/tv-sale",
			opts:   []reqOpt{withHeader("X-Forwarded-For", "10.1.2.3, 198.51.100.9")},
			status: 302, location: "https://shop.example/tv?cid={id}&sub=&camp=", recorded: true,
			click: map[string]any{"country": "US", "rule": ""},
		},
		{
			name: "IPv6 client", method: "GET", target: "/r/tv-sale", opts: []reqOpt{withPeer("[2001:db8::5]:443")},
			status: 302, location: "https://shop.example/tv?cid={id}&sub=&camp=", recorded: true,
			click: map[string]any{"country": "FR", "subdivision": "", "city": ""},
		},
		{
			name: "rule on geo and device", method: "GET", target: "/r/tv-sale?subid=m",
			opts:   []reqOpt{withPeer("198.51.100.9:1"), withHeader("User-Agent", iphoneUA)},
			status: 302, location: "https://m.shop.example/de/tv?cid={id}&sub=m", recorded: true,
			click: map[string]any{"rule": "de-mobile", "device": "mobile", "os": "iOS", "browser": "Safari", "country": "DE"},
		},
		{
			name: "rule on language", method: "GET", target: "/r/tv-sale",
			opts:   []reqOpt{withHeader("Accept-Language", "DE-de,de;q=0.9,en;q=0.5")},
			status: 302, location: "https://shop.example/de/tv?cid={id}", recorded: true,
			click: map[string]any{"rule": "german", "lang": "de"},
		},
		{
			name: "crawler recorded as a bot", method: "GET", target: "/r/tv-sale",
			opts:   []reqOpt{withHeader("User-Agent", googlebot)},
			status: 302, location: "https://shop.example/tv?cid={id}&sub=&camp=", recorded: true,
			click: map[string]any{"device": "bot", "bot": true, "preview": false, "browser": "Googlebot"},
		},
		{
			name: "preview recorded as a bot", method: "GET", target: "/r/tv-sale",
			opts:   []reqOpt{withHeader("User-Agent", slackbot)},
			status: 302, location: "https://shop.example/tv?cid={id}&sub=&camp=", recorded: true,
			click: map[string]any{"device": "bot", "bot": true, "preview": true},
		},
		{
			name: "no User-Agent", method: "GET", target: "/r/tv-sale", opts: []reqOpt{func(r *http.Request) { r.Header.Del("User-Agent") }},
			status: 302, location: "https://shop.example/tv?cid={id}&sub=&camp=", recorded: true,
			click: map[string]any{"device": "unknown", "bot": false, "os": "", "browser": "", "lang": ""},
		},
		{
			name: "CRLF in a parameter", method: "GET", target: "/r/tv-sale?subid=%0d%0aSet-Cookie:%20a=b&utm_campaign=%0A%0D",
			status: 302, location: "https://shop.example/tv?cid={id}&sub=%0D%0ASet-Cookie%3A+a%3Db&camp=%0A%0D", recorded: true,
			click: map[string]any{"params": map[string]any{"subid": "\r\nSet-Cookie: a=b", "utm_campaign": "\n\r"}},
		},
		{
			name: "CRLF in a parameter, path position", method: "GET", target: "/r/tv-sale?subid1=newsletter&subid=%0d%0aLocation:%20https://evil.example/",
			status: 302, location: "https://news.shop.example/%0D%0ALocation:%20https:%2F%2Fevil.example%2F/tv?cid={id}", recorded: true,
		},
		{name: "CRLF in the path", method: "GET", target: "/r/tv-sale%0d%0aSet-Cookie:%20a=b", status: 404, body: "malformed link code\n"},
		{name: "CRLF in the path, /c", method: "GET", target: "/c/%0d%0a", status: 404, body: "malformed link code\n"},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { checkContract(t, tr, tt) })
			}
		})
	}
}

// contractCase is one row of TestContract.
type contractCase struct {
	name     string
	method   string
	target   string
	opts     []reqOpt
	status   int
	location string // exact; {id} is the click id; "" means no Location header
	body     string // exact, for error answers; "" means not checked
	recorded bool
	click    map[string]any // fields the click must have (a subset)
}

// checkContract runs one TestContract case through a transport.
func checkContract(t *testing.T, tr transport, tt contractCase) {
	ts := newTestServer(t, nil)
	before := ts.ob.Stats()
	res, body := tr.start(t, ts.Server)(t, tt.method, tt.target, tt.opts...)

	if res.StatusCode != tt.status {
		t.Fatalf("%s %s: status %d, want %d (body %q)", tt.method, tt.target, res.StatusCode, tt.status, body)
	}
	checkHeaders(t, res)
	checkHeaderSet(t, res)
	if tt.method == "GET" {
		if got, want := res.Header.Get("Content-Length"), fmt.Sprint(len(body)); got != want {
			t.Errorf("Content-Length = %q, want %s (the body's length)", got, want)
		}
	}
	loc := res.Header.Get("Location")
	id := idRE.FindString(loc)
	if id == "" {
		id = idRE.FindString(body)
	}
	if tt.location != "" {
		if want := strings.ReplaceAll(tt.location, "{id}", id); id == "" || loc != want {
			t.Errorf("Location = %q,\nwant %q", loc, want)
		}
		if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("Content-Length") != "0" || body != "" {
			t.Errorf("302: Cache-Control %q, Content-Length %q, body %q; want no-store, 0, empty",
				res.Header.Get("Cache-Control"), res.Header.Get("Content-Length"), body)
		}
	} else if loc != "" {
		t.Errorf("Location = %q, want none", loc)
	}
	if tt.body != "" || tt.method == "HEAD" {
		if want := strings.ReplaceAll(tt.body, "{id}", id); body != want {
			t.Errorf("body = %q, want %q", body, want)
		}
	}
	switch tt.status {
	case 405:
		if got := res.Header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("Allow = %q, want %q", got, "GET, HEAD")
		}
	case 400, 404:
		if ct := res.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("Content-Type = %q, want text/plain", ct)
		}
	case 200:
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
	}
	if res.Header.Get("X-Click-Id") != "" {
		t.Errorf("X-Click-Id header set; the click id belongs in the URL only")
	}

	recs := outboxtest.ReadAll(t, ts.ob)
	if !tt.recorded {
		if len(recs) != 0 {
			t.Fatalf("%d records in the outbox, want none", len(recs))
		}
		if after := ts.ob.Stats(); after.Appended != before.Appended || after.Queued != before.Queued {
			t.Errorf("outbox stats changed: appended %d -> %d, queued %d -> %d",
				before.Appended, after.Appended, before.Queued, after.Queued)
		}
		return
	}
	if len(recs) != 1 {
		t.Fatalf("%d records in the outbox, want 1", len(recs))
	}
	c := decodeClick(t, recs[0])
	if c["click_id"] != id || recs[0].MessageID != id {
		t.Errorf("click_id %v, message_id %q; want both %q (from the answer)", c["click_id"], recs[0].MessageID, id)
	}
	if want := strings.ReplaceAll(tt.location, "{id}", id); tt.location != "" && c["url"] != want {
		t.Errorf("click url = %v, want %q", c["url"], want)
	}
	if _, ok := c["truncated"]; ok && tt.click["truncated"] == nil {
		t.Errorf("click has truncated %v, want none", c["truncated"])
	}
	if _, ok := c["paused"]; ok && tt.click["paused"] == nil {
		t.Errorf("click has paused %v, want none", c["paused"])
	}
	for k, want := range tt.click {
		if s, ok := want.(string); ok {
			want = strings.ReplaceAll(s, "{id}", id)
		}
		if !reflect.DeepEqual(c[k], want) {
			t.Errorf("click %s = %#v, want %#v", k, c[k], want)
		}
	}
}

// checkHeaders fails if any header holds a control byte, or if a header
// that only the catalog may set (Location) points off the catalog's hosts.
func checkHeaders(t testing.TB, res *http.Response) {
	t.Helper()
	for k, vs := range res.Header {
		for _, v := range vs {
			if strings.ContainsAny(k+v, "\r\n\x00") {
				t.Errorf("header %q: %q holds CR, LF or NUL", k, v)
			}
		}
	}
	if res.Header.Get("Set-Cookie") != "" {
		t.Errorf("Set-Cookie = %q, want none", res.Header.Get("Set-Cookie"))
	}
}

// forEachTransport runs f as a subtest for each transport.
func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

// checkHeaderSet fails unless the answer has exactly the headers its
// status calls for; Date and Connection, which the transports add, aside.
func checkHeaderSet(t testing.TB, res *http.Response) {
	t.Helper()
	want := []string{"Cache-Control", "Content-Length"}
	switch res.StatusCode {
	case 302:
		want = append(want, "Location")
	case 200:
		want = append(want, "Content-Type")
	case 405:
		want = append(want, "Content-Type", "X-Content-Type-Options", "Allow")
	case 503:
		want = append(want, "Content-Type", "X-Content-Type-Options", "Retry-After")
	default:
		want = append(want, "Content-Type", "X-Content-Type-Options")
	}
	var got []string
	for k := range res.Header {
		if k != "Date" && k != "Connection" {
			got = append(got, k)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("status %d: headers %q, want %q", res.StatusCode, got, want)
	}
}

func TestClickSchema(t *testing.T) {
	ts := newTestServer(t, nil)
	res, _ := serve(t, ts, "GET", "/r/tv-sale?subid=s&subid1=t",
		withHeader("Accept-Language", "en-US,en;q=0.8"), withHeader("X-Forwarded-For", "198.51.100.1"))
	if res.StatusCode != 302 {
		t.Fatalf("status %d, want 302", res.StatusCode)
	}
	recs := outboxtest.ReadAll(t, ts.ob)
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	rec := recs[0]
	c := decodeClick(t, rec)

	str := func(v any) bool { _, ok := v.(string); return ok }
	boolean := func(v any) bool { _, ok := v.(bool); return ok }
	fields := map[string]func(any) bool{
		"v":           func(v any) bool { return v == 1.0 },
		"click_id":    func(v any) bool { s, _ := v.(string); _, err := clickid.Parse(s); return err == nil },
		"ts":          func(v any) bool { return v == "2026-11-27T05:10:00.123Z" },
		"link":        func(v any) bool { return v == "tv-sale" },
		"url":         func(v any) bool { s, _ := v.(string); return strings.HasPrefix(s, "https://shop.example/tv?cid=") },
		"rule":        str,
		"region":      func(v any) bool { return v == region },
		"node":        func(v any) bool { return v == node },
		"country":     func(v any) bool { return v == "US" },
		"subdivision": str,
		"city":        str,
		"device":      func(v any) bool { return v == "desktop" },
		"os":          func(v any) bool { return v == "Windows" },
		"browser":     func(v any) bool { return v == "Chrome" },
		"lang":        func(v any) bool { return v == "en" },
		"bot":         boolean,
		"preview":     boolean,
		"params":      func(v any) bool { m, ok := v.(map[string]any); return ok && m["subid"] == "s" && m["subid1"] == "t" },
		"catalog":     func(v any) bool { return v == ts.cat.Version() },
	}
	for k, ok := range fields {
		v, present := c[k]
		if !present {
			t.Errorf("click has no %q field", k)
			continue
		}
		if !ok(v) {
			t.Errorf("click %s = %#v (%T): wrong value or type", k, v, v)
		}
	}
	for k := range c {
		if _, known := fields[k]; !known {
			t.Errorf("click has unexpected field %q", k)
		}
	}

	id := c["click_id"].(string)
	if rec.MessageID != id {
		t.Errorf("message_id %q != click_id %q", rec.MessageID, id)
	}
	if got := res.Header.Get("Location"); !strings.Contains(got, id) {
		t.Errorf("Location %q does not carry click_id %s", got, id)
	}
	parsed, _ := clickid.Parse(id)
	if got := parsed.Time().UnixMilli(); got != testNow.UnixMilli() {
		t.Errorf("click id time %d ms, want %d (the click's ts)", got, testNow.UnixMilli())
	}
	if rec.Exchange != "clicks" || rec.RoutingKey != "click."+region {
		t.Errorf("exchange %q, routing key %q; want clicks, click.%s", rec.Exchange, rec.RoutingKey, region)
	}
	wantHeaders := []outbox.Header{{Key: "region", Value: region}, {Key: "node", Value: node}, {Key: "schema", Value: int64(1)}}
	if !reflect.DeepEqual(rec.Headers, wantHeaders) {
		t.Errorf("headers %v, want %v", rec.Headers, wantHeaders)
	}
	if want := testNow.Truncate(time.Millisecond); !rec.Time.Equal(want) {
		t.Errorf("record time %v, want the click's ts %v", rec.Time, want)
	}
	for _, ip := range []string{clientIP, "198.51.100.1"} {
		if strings.Contains(string(rec.Body), ip) {
			t.Errorf("body %s holds the client address %s", rec.Body, ip)
		}
	}
}

func TestHeadRecordsNothing(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, nil)
		do := tr.start(t, ts.Server)
		before := ts.ob.Stats()
		for _, target := range []string{"/r/tv-sale", "/c/tv-sale", "/r/old-promo", "/r/tv-sale?subid=x"} {
			res, body := do(t, "HEAD", target, withHeader("User-Agent", googlebot))
			if res.StatusCode != 302 && res.StatusCode != 200 {
				t.Errorf("HEAD %s: status %d", target, res.StatusCode)
			}
			if body != "" {
				t.Errorf("HEAD %s: body %q, want none", target, body)
			}
		}
		if err := ts.ob.Sync(); err != nil {
			t.Fatal(err)
		}
		after := ts.ob.Stats()
		if after.Appended != before.Appended || after.Pending != before.Pending || after.Spill.Spilled != before.Spill.Spilled {
			t.Errorf("outbox stats changed by HEAD: appended %d -> %d, pending %d -> %d, spilled %d -> %d",
				before.Appended, after.Appended, before.Pending, after.Pending, before.Spill.Spilled, after.Spill.Spilled)
		}
		if n := counterValue(t, ts.Server, "clickedge_bot_clicks_total", "kind", "crawler"); n != 0 {
			t.Errorf("bot clicks counted for HEAD: %v", n)
		}
		// A HEAD for /c answers with the GET's length.
		res, _ := do(t, "HEAD", "/c/tv-sale?subid=q")
		get, body := do(t, "GET", "/c/tv-sale?subid=q")
		if res.Header.Get("Content-Length") != get.Header.Get("Content-Length") || get.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
			t.Errorf("Content-Length: HEAD %q, GET %q, GET body %d bytes", res.Header.Get("Content-Length"), get.Header.Get("Content-Length"), len(body))
		}
	})
}

func TestRecordErrorPolicies(t *testing.T) {
	tests := []struct {
		name      string
		policy    edge.RecordErrorPolicy
		spillErr  error
		target    string
		status    int
		spilled   int
		outcome   string
		logSubstr string
		logKind   string
	}{
		{"spill", edge.Spill, nil, "/r/tv-sale", 302, 1, "spilled", "spilled to memory", "kind=full"},
		{"spill on /c", edge.Spill, nil, "/c/tv-sale", 200, 1, "spilled", "spilled to memory", "kind=full"},
		{"spill refused", edge.Spill, outbox.ErrSpillFull, "/r/tv-sale", 302, 0, "dropped", "click LOST", "kind=spill_full"},
		{"reject", edge.Reject, nil, "/r/tv-sale", 503, 0, "rejected", "answered 503", "kind=full"},
		{"reject on /c", edge.Reject, nil, "/c/tv-sale", 503, 0, "rejected", "answered 503", "kind=full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachTransport(t, func(t *testing.T, tr transport) {
				rec := &edgetest.Recorder{}
				rec.SetErrors(fmt.Errorf("wrapped: %w", outbox.ErrFull), tt.spillErr)
				var logs lockedBuffer
				ts := newTestServer(t, func(c *edge.Config) {
					c.Recorder = rec
					c.OnRecordError = tt.policy
					c.Logger = textLogger(&logs)
				})
				res, body := tr.start(t, ts.Server)(t, "GET", tt.target+"?subid=x")
				if res.StatusCode != tt.status {
					t.Fatalf("status %d, want %d (body %q)", res.StatusCode, tt.status, body)
				}
				if tt.status == 503 {
					if got := res.Header.Get("Retry-After"); got != "1" {
						t.Errorf("Retry-After = %q, want 1", got)
					}
					if body == "" {
						t.Errorf("503 without a reason")
					}
				}
				spilled := rec.Spilled()
				if len(spilled) != tt.spilled {
					t.Fatalf("%d spilled records, want %d", len(spilled), tt.spilled)
				}
				if tt.spilled == 1 {
					c := decodeClick(t, spilled[0])
					id := idRE.FindString(res.Header.Get("Location") + body)
					if c["click_id"] != id || spilled[0].MessageID != id {
						t.Errorf("spilled click_id %v, message id %q; want %q", c["click_id"], spilled[0].MessageID, id)
					}
				}
				if n := counterValue(t, ts.Server, "clickedge_clicks_total", "outcome", tt.outcome); n != 1 {
					t.Errorf("clicks_total{outcome=%q} = %v, want 1", tt.outcome, n)
				}
				if n := counterValue(t, ts.Server, "clickedge_clicks_total", "outcome", "recorded"); n != 0 {
					t.Errorf("clicks_total{outcome=recorded} = %v, want 0", n)
				}
				if !strings.Contains(logs.String(), tt.logSubstr) || !strings.Contains(logs.String(), tt.logKind) {
					t.Errorf("log %q does not say %q with %s", logs.String(), tt.logSubstr, tt.logKind)
				}
			})
		})
	}
}

func TestLogRateLimit(t *testing.T) {
	rec := &edgetest.Recorder{}
	rec.SetErrors(outbox.ErrWrite, nil)
	var logs lockedBuffer
	var mu sync.Mutex
	now := testNow
	ts := newTestServer(t, func(c *edge.Config) {
		c.Recorder = rec
		c.Logger = textLogger(&logs)
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	for range 10 {
		serve(t, ts, "GET", "/r/tv-sale")
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("10 failures in one second logged %d lines, want 1:\n%s", n, logs.String())
	}
	mu.Lock()
	now = now.Add(999 * time.Millisecond)
	mu.Unlock()
	serve(t, ts, "GET", "/r/tv-sale")
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("a failure 999ms later logged; %d lines, want 1", n)
	}
	mu.Lock()
	now = now.Add(time.Millisecond)
	mu.Unlock()
	serve(t, ts, "GET", "/r/tv-sale")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "suppressed=10") {
		t.Fatalf("after a second: lines %q, want a second one with suppressed=10", lines)
	}
	// Another kind of error has its own budget.
	rec.SetErrors(outbox.ErrTimeout, nil)
	serve(t, ts, "GET", "/r/tv-sale")
	if n := strings.Count(logs.String(), "kind=timeout"); n != 1 {
		t.Errorf("a new kind of error logged %d times, want 1", n)
	}
}

func TestBotSkip(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, func(c *edge.Config) { c.BotClicks = edge.Skip })
		do := tr.start(t, ts.Server)
		for _, ua := range []string{googlebot, slackbot} {
			res, _ := do(t, "GET", "/r/tv-sale?subid=b", withHeader("User-Agent", ua))
			if res.StatusCode != 302 || !strings.HasPrefix(res.Header.Get("Location"), "https://shop.example/tv?cid=") {
				t.Errorf("%s: status %d, Location %q; want a redirect", ua, res.StatusCode, res.Header.Get("Location"))
			}
		}
		do(t, "GET", "/r/tv-sale?subid=b") // a person
		if recs := outboxtest.ReadAll(t, ts.ob); len(recs) != 1 {
			t.Errorf("%d records, want 1 (the person's)", len(recs))
		}
		for _, c := range []struct {
			name, label, value string
			want               float64
		}{
			{"clickedge_clicks_total", "outcome", "skipped_bot", 2},
			{"clickedge_clicks_total", "outcome", "recorded", 1},
			{"clickedge_bot_clicks_total", "kind", "crawler", 1},
			{"clickedge_bot_clicks_total", "kind", "preview", 1},
		} {
			if got := counterValue(t, ts.Server, c.name, c.label, c.value); got != c.want {
				t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
			}
		}
	})
}

// scribbler overwrites the record's memory as soon as Append returns, the
// way the next request reusing the pooled buffers would.
type scribbler struct{ *outbox.Outbox }

func (s scribbler) Append(r *outbox.Record) error {
	err := s.Outbox.Append(r)
	for i := range r.Body {
		r.Body[i] = 'X'
	}
	id := unsafeBytes(r.MessageID)
	for i := range id {
		id[i] = 'X'
	}
	return err
}

func TestRecordIntactAfterReuse(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ob := outboxtest.Open(t, &outbox.Options{Durability: outbox.Async})
		ts := newTestServer(t, func(c *edge.Config) { c.Recorder = scribbler{ob} })
		do := tr.start(t, ts.Server)
		var ids []string
		for i := range 50 {
			res, _ := do(t, "GET", fmt.Sprintf("/r/tv-sale?subid=n%d", i))
			id := idRE.FindString(res.Header.Get("Location"))
			if id == "" {
				t.Fatalf("request %d: Location %q without an id", i, res.Header.Get("Location"))
			}
			ids = append(ids, id)
		}
		if err := ob.Sync(); err != nil {
			t.Fatal(err)
		}
		recs := outboxtest.ReadAll(t, ob)
		if len(recs) != len(ids) {
			t.Fatalf("%d records, want %d", len(recs), len(ids))
		}
		for i, rec := range recs {
			c := decodeClick(t, rec)
			if rec.MessageID != ids[i] || c["click_id"] != ids[i] {
				t.Errorf("record %d: message id %q, click_id %v; want %s", i, rec.MessageID, c["click_id"], ids[i])
			}
			if p, _ := c["params"].(map[string]any); p["subid"] != fmt.Sprintf("n%d", i) {
				t.Errorf("record %d: params %v, want subid n%d", i, c["params"], i)
			}
		}
	})
}

func TestConcurrentClicks(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, func(c *edge.Config) { c.Now = nil })
		do := tr.start(t, ts.Server)
		const workers, per = 8, 40
		var wg sync.WaitGroup
		locs := make([][]string, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					res, _ := do(t, "GET", fmt.Sprintf("/r/tv-sale?subid=w%d-%d", w, i))
					locs[w] = append(locs[w], res.Header.Get("Location"))
				}
			}()
		}
		wg.Wait()
		recs := outboxtest.ReadAll(t, ts.ob)
		if len(recs) != workers*per {
			t.Fatalf("%d records, want %d", len(recs), workers*per)
		}
		byID := map[string]map[string]any{}
		for _, rec := range recs {
			c := decodeClick(t, rec)
			if c["click_id"] != rec.MessageID {
				t.Fatalf("click_id %v != message id %s", c["click_id"], rec.MessageID)
			}
			byID[rec.MessageID] = c
		}
		for w, ls := range locs {
			for i, loc := range ls {
				c := byID[idRE.FindString(loc)]
				if c == nil || c["url"] != loc || c["params"].(map[string]any)["subid"] != fmt.Sprintf("w%d-%d", w, i) {
					t.Errorf("worker %d request %d: Location %q has click %v", w, i, loc, c)
				}
			}
		}
	})
}

func TestSetCatalog(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.SetCatalog(nil)
	if res, _ := serve(t, ts, "GET", "/r/tv-sale"); res.StatusCode != 404 {
		t.Errorf("no catalog: status %d, want 404", res.StatusCode)
	}
	if ts.Catalog() != nil {
		t.Errorf("Catalog() = %v, want nil", ts.Catalog())
	}
	next := edgetest.Catalog(t, `
links:
  - code: fresh
    url: "https://fresh.example/?cid={click_id}"
`)
	ts.SetCatalog(next)
	if ts.Catalog() != next {
		t.Errorf("Catalog() is not the catalog just set")
	}
	res, _ := serve(t, ts, "GET", "/r/fresh")
	if res.StatusCode != 302 || !strings.HasPrefix(res.Header.Get("Location"), "https://fresh.example/?cid=") {
		t.Errorf("new catalog: status %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	recs := outboxtest.ReadAll(t, ts.ob)
	if len(recs) != 1 || decodeClick(t, recs[0])["catalog"] != next.Version() {
		t.Errorf("records %d; want one naming catalog %s", len(recs), next.Version())
	}
}

func TestNewConfig(t *testing.T) {
	good := func() *edge.Config {
		c := edge.DefaultConfig()
		c.Recorder = &edgetest.Recorder{}
		return c
	}
	if _, err := edge.New(good()); err != nil {
		t.Fatalf("New(DefaultConfig with a Recorder) = %v", err)
	}
	c := edge.DefaultConfig()
	if c.Region != "local" || c.Exchange != "clicks" || c.Node == "" || c.OnRecordError != edge.Spill || c.BotClicks != edge.Record {
		t.Errorf("DefaultConfig() = %+v", c)
	}
	tests := []struct {
		name string
		mod  func(*edge.Config)
		want string
	}{
		{"no recorder", func(c *edge.Config) { c.Recorder = nil }, "recorder"},
		{"empty region", func(c *edge.Config) { c.Region = "" }, "region"},
		{"dotted region", func(c *edge.Config) { c.Region = "eu.central" }, "region"},
		{"empty node", func(c *edge.Config) { c.Node = "" }, "node"},
		{"node with space", func(c *edge.Config) { c.Node = "a b" }, "node"},
		{"empty exchange", func(c *edge.Config) { c.Exchange = "" }, "exchange"},
		{"bad prefix", func(c *edge.Config) { c.TrustedProxies = []netip.Prefix{{}} }, "trusted_proxies"},
		{"bad policy", func(c *edge.Config) { c.OnRecordError = 7 }, "on_record_error"},
		{"bad bot policy", func(c *edge.Config) { c.BotClicks = 7 }, "bot_clicks"},
	}
	for _, tt := range tests {
		c := good()
		tt.mod(c)
		if _, err := edge.New(c); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
}

func TestParsePolicies(t *testing.T) {
	for _, s := range []string{"spill", "reject"} {
		p, err := edge.ParseRecordErrorPolicy(s)
		if err != nil || p.String() != s {
			t.Errorf("ParseRecordErrorPolicy(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"record", "skip"} {
		p, err := edge.ParseBotPolicy(s)
		if err != nil || p.String() != s {
			t.Errorf("ParseBotPolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := edge.ParseRecordErrorPolicy("drop"); err == nil {
		t.Errorf("ParseRecordErrorPolicy(drop) = nil error")
	}
	if _, err := edge.ParseBotPolicy(""); err == nil {
		t.Errorf("ParseBotPolicy(\"\") = nil error")
	}
}

func TestMetrics(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, nil)
		do := tr.start(t, ts.Server)
		do(t, "GET", "/r/tv-sale")
		do(t, "GET", "/c/tv-sale")
		do(t, "GET", "/r/nope")
		do(t, "GET", "/nope")
		do(t, "GET", "/r/tv-sale", withHeader("User-Agent", googlebot))

		counts := map[string]uint64{}
		for _, mf := range gather(t, ts.Server) {
			if mf.GetName() != "clickedge_http_request_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["region"] != region {
					t.Errorf("duration series with region %q, want %q", labels["region"], region)
				}
				h := m.GetHistogram()
				counts[labels["route"]+" "+labels["code"]] = h.GetSampleCount()
				if h.GetZeroThreshold() == 0 && h.GetSchema() == 0 && len(h.GetPositiveSpan()) == 0 && h.GetSampleCount() > 0 {
					t.Errorf("histogram %v has no native buckets", labels)
				}
			}
		}
		want := map[string]uint64{"redirect 302": 2, "register 200": 1, "redirect 404": 1, "other 404": 1}
		for k, n := range want {
			got, ok := counts[k]
			if !ok || got != n {
				t.Errorf("request_duration{route code = %s} count = %d (present %v), want %d", k, got, ok, n)
			}
		}
		// No buckets for answers never given: a series appears on first use.
		for k := range counts {
			if _, ok := want[k]; !ok {
				t.Errorf("request_duration{route code = %s} exported, but no request got that answer", k)
			}
		}
		if n := counterValue(t, ts.Server, "clickedge_clicks_total", "outcome", "recorded"); n != 3 {
			t.Errorf("clicks_total{recorded} = %v, want 3", n)
		}
		if n := counterValue(t, ts.Server, "clickedge_bot_clicks_total", "kind", "crawler"); n != 1 {
			t.Errorf("bot_clicks_total{crawler} = %v, want 1", n)
		}
	})
}

// counterValue returns the value of a counter child, or -1 if it is absent.
func counterValue(t testing.TB, s *edge.Server, name, label, value string) float64 {
	t.Helper()
	for _, mf := range gather(t, s) {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// TestDurationBuckets: the latency histogram resolves p99 below 1 ms (an
// async redirect takes tens of microseconds), and a fresh server exports
// only the series every node uses, at zero.
func TestDurationBuckets(t *testing.T) {
	ts := newTestServer(t, nil)
	var series []string
	for _, mf := range gather(t, ts.Server) {
		if mf.GetName() != "clickedge_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			series = append(series, labels["route"]+" "+labels["code"])
			var below1ms int
			prev := 0.0
			for _, b := range m.GetHistogram().GetBucket() {
				ub := b.GetUpperBound()
				if ub < 1e-3 {
					below1ms++
				}
				if prev > 0 && ub/prev > 1.8 {
					t.Errorf("bucket %g follows %g: step %.2fx, want <= 1.8x", ub, prev, ub/prev)
				}
				prev = ub
			}
			if first := m.GetHistogram().GetBucket()[0].GetUpperBound(); first > 20e-6 {
				t.Errorf("first bucket %g s, want <= 20µs", first)
			}
			if below1ms < 8 {
				t.Errorf("%d buckets below 1 ms, want >= 8", below1ms)
			}
		}
	}
	slices.Sort(series)
	if want := []string{"redirect 302", "register 200"}; !slices.Equal(series, want) {
		t.Errorf("series of a fresh server = %q, want %q", series, want)
	}
}
