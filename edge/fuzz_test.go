package edge_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/edge"
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

// FuzzTransportsAgree sends the same bytes to the Server through net/http
// and through fasthttp, both on real listeners, and checks that the two
// answer alike: status, Location, Content-Type, body and the other
// headers the Server sets (click ids aside, which are fresh per request),
// and that neither writes a header line the Server did not mean to write
// (no CR or LF inside a value, no unknown header).
//
// Inputs are made into well-formed HTTP/1.1 requests first (control bytes
// in the path and query are percent-escaped, dropped from header values),
// since what each HTTP library does with a broken request line is its own
// business; the escapes still carry every byte to the Server.
func FuzzTransportsAgree(f *testing.F) {
	for _, seed := range []struct {
		method                           uint8
		path, query, ua, lang, xff, xff2 string
	}{
		{0, "/r/tv-sale", "subid=aff&utm_campaign=x%20y", desktopUA, "en-US", "", ""},
		{0, "/r/tv-sale", "subid1=newsletter&subid=%0d%0aLocation:%20https://evil.example", desktopUA, "", "", ""},
		{1, "/c/Summer", "subid=../../x&subid2=%zz", iphoneUA, "de", "198.51.100.9", ""},
		{0, "/r/Summer", "subid=a", desktopUA, "", "203.0.113.99, 198.51.100.9", "192.168.7.7"},
		{0, "/r/tv-sale", "", iphoneUA, "", "10.1.2.3", ""},
		{0, "/r/old-promo", "subid=" + strings.Repeat("é", 200), "", "", "", ""},
		{0, "/r/gone", "", slackbot, "", "", ""},
		{2, "/r/tv-sale", "", googlebot, "", "unknown", ""},
		{0, "/r/tv-sale/", "subid=%", "", "", "", ""},
		{0, "/r/tv%2Dsale", "subid=%2", "", "DE-de", "", ""},
		{0, "/r/tv-sale%zz", "", "", "", "", ""},
		{0, "/r/tv-sale#frag", "", "", "", "", ""},
		{0, "/r/\r\nX: y", "subid=\r\n", "a\r\nb", "", "", ""},
		{0, "/c/many", "p00=a&p15=" + strings.Repeat("%F0%9F%98%80", 80), "", "", "", ""},
		{3, "//r/x", "&&&=&==", "", "", "", ""},
		{4, "/r/tv-sale", "", "", "", "", ""},
		{128, "/r/tv-sale", "subid=abs", "", "", "", ""},
	} {
		f.Add(seed.method, seed.path, seed.query, seed.ua, seed.lang, seed.xff, seed.xff2)
	}
	rec := &checkingRecorder{}
	cfg := edge.DefaultConfig()
	cfg.Region = region
	cfg.Node = node
	cfg.Recorder = rec
	cfg.Geo = testGeo(f)
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}
	srv, err := edge.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	srv.SetCatalog(edgetest.Catalog(f, testCatalog))

	netLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(netLn)
	f.Cleanup(func() { hs.Close() })
	fastLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	fs := srv.FastServer(edge.FastOptions{})
	go fs.Serve(fastLn)
	f.Cleanup(func() { fastLn.Close() })

	methods := []string{"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE"}
	f.Fuzz(func(t *testing.T, method uint8, path, query, ua, lang, xff, xff2 string) {
		m := methods[int(method&0x7f)%len(methods)]
		target := "/" + escapeCTL(strings.TrimPrefix(path, "/"), "?")
		if query != "" {
			target += "?" + escapeCTL(query, "")
		}
		if method&0x80 != 0 {
			target = "http://edge.example" + target // absolute-form
		}
		var req strings.Builder
		fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: edge.example\r\n", m, target)
		for _, h := range [][2]string{{"User-Agent", ua}, {"Accept-Language", lang}, {"X-Forwarded-For", xff}, {"X-Forwarded-For", xff2}} {
			if v := dropCTL(h[1]); v != "" {
				fmt.Fprintf(&req, "%s: %s\r\n", h[0], v)
			}
		}
		req.WriteString("\r\n")
		if req.Len() > 12<<10 {
			t.Skip("larger than fasthttp's default header limit")
		}
		a := rawRoundTrip(t, netLn.Addr().String(), req.String(), m == "HEAD")
		b := rawRoundTrip(t, fastLn.Addr().String(), req.String(), m == "HEAD")
		if a.status != b.status || a.body != b.body || !maps.Equal(a.header, b.header) {
			t.Fatalf("request %q:\nnet/http: %d %q %q\nfasthttp: %d %q %q", req.String(), a.status, a.header, a.body, b.status, b.header, b.body)
		}
		if bad := rec.bad.Load(); bad != nil {
			t.Fatalf("request %q: bad click body %q", req.String(), *bad)
		}
	})
}

// escapeCTL percent-escapes control bytes, space, DEL and the bytes in
// also, so that s can stand in a request line.
func escapeCTL(s, also string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte(also, c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// dropCTL removes the bytes that may not stand in a header value (control
// bytes but tab, DEL) and the blanks at either end, which the parsers trim.
func dropCTL(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c >= ' ' || c == '\t') && c != 0x7f {
			b.WriteByte(c)
		}
	}
	return strings.Trim(b.String(), " \t")
}

// rawAnswer is a response as it came off the wire.
type rawAnswer struct {
	status int
	header map[string]string // the headers the Server sets, click ids replaced by {id}
	body   string            // click ids replaced by {id}
}

// compared are the headers FuzzTransportsAgree compares; Date and
// Connection are the transports' own, and Content-Length is checked
// against the body instead (net/http's own 400 has none).
var compared = map[string]bool{
	"Location": true, "Content-Type": true, "Cache-Control": true, "Allow": true,
	"Retry-After": true, "X-Content-Type-Options": true,
}

// rawRoundTrip sends req on a new connection and reads one answer. It
// fails the test if a header line holds a bare CR or LF, if a header is
// not one the Server or the transport writes, or if Content-Length does
// not match the body.
func rawRoundTrip(t *testing.T, addr, req string, head bool) rawAnswer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// Closed with a reset, so that thousands of runs a second leave no
	// TIME_WAIT behind to run out of ports.
	defer func() { c.(*net.TCPConn).SetLinger(0); c.Close() }()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	// net/http reads the answer; the bytes it read are checked as sent.
	var wire bytes.Buffer
	method := "GET"
	if head {
		method = "HEAD"
	}
	res, err := http.ReadResponse(bufio.NewReader(io.TeeReader(c, &wire)), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s: reading the answer: %v (read %q)", addr, err, wire.Bytes())
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s: reading the body: %v", addr, err)
	}
	raw := wire.String()
	hdr, rest, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		t.Fatalf("%s: answer %q has no end of header", addr, raw)
	}
	body := string(b)
	if !strings.HasPrefix(rest, body) {
		t.Fatalf("%s: body %q is not what was sent after the header, %q", addr, body, rest)
	}
	lines := strings.Split(hdr, "\r\n")
	var a rawAnswer
	var proto, text string
	if _, err := fmt.Sscanf(lines[0], "%s %d %s", &proto, &a.status, &text); err != nil {
		t.Fatalf("%s: status line %q: %v", addr, lines[0], err)
	}
	a.header = map[string]string{}
	clen := ""
	for _, l := range lines[1:] {
		if strings.ContainsAny(l, "\r\n") {
			t.Fatalf("%s: header line %q holds a CR or LF", addr, l)
		}
		k, v, ok := strings.Cut(l, ": ")
		switch {
		case !ok:
			t.Fatalf("%s: header line %q is not name: value", addr, l)
		case compared[k]:
			if _, dup := a.header[k]; dup {
				t.Fatalf("%s: header %s twice", addr, k)
			}
			a.header[k] = idRE.ReplaceAllString(v, "{id}")
		case k == "Content-Length":
			clen = v
		case k == "Date" || k == "Connection":
		default:
			t.Fatalf("%s: unexpected header line %q", addr, l)
		}
	}
	if head && body != "" {
		t.Fatalf("%s: HEAD answered with a body %q", addr, body)
	}
	if !head && clen != "" && clen != strconv.Itoa(len(body)) {
		t.Fatalf("%s: Content-Length %s, body %d bytes", addr, clen, len(body))
	}
	a.body = idRE.ReplaceAllString(body, "{id}")
	return a
}
