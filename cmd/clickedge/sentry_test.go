package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestScrubIPs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"client 203.0.113.7 refused", "client [ip] refused"},
		{"dial tcp 10.0.0.1:5672: connect: refused", "dial tcp [ip]:5672: connect: refused"},
		{"peer [2001:db8::1]:443 gone", "peer [[ip]]:443 gone"},
		{"addr ::1: refused", "addr [ip]: refused"},
		{"mapped ::ffff:192.0.2.1 here", "mapped [ip] here"},
		{"fe80::1%eth0", "[ip]"},
		{"2001:0db8:0000:0000:0000:ff00:0042:8329", "[ip]"},
		// Not addresses: left alone.
		{"at 01:02:03 took 1.26.8 ms", "at 01:02:03 took 1.26.8 ms"},
		{"click 0190a3f2c1d84e6b9a0b1c2d3e4f5a6b", "click 0190a3f2c1d84e6b9a0b1c2d3e4f5a6b"},
		{"999.1.1.1 is not one", "999.1.1.1 is not one"},
		{"ratio 1:2:3", "ratio 1:2:3"},
	} {
		if got := scrubIPs(tc.in); got != tc.want {
			t.Errorf("scrubIPs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// fakeSentry is a Sentry ingest endpoint on 127.0.0.1 that keeps every
// envelope's items (the envelope header, which repeats the DSN, is
// dropped).
type fakeSentry struct {
	srv   *httptest.Server
	mu    sync.Mutex
	items []string
	hold  chan struct{} // when non-nil, requests wait for it to close
}

func newFakeSentry(t *testing.T, hold bool) *fakeSentry {
	f := &fakeSentry{}
	if hold {
		f.hold = make(chan struct{})
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.hold != nil {
			select {
			case <-f.hold:
			case <-r.Context().Done():
				return
			}
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("fake sentry: %v", err)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		lines := bytes.Split(b, []byte("\n"))
		f.mu.Lock()
		for _, l := range lines[1:] {
			if len(bytes.TrimSpace(l)) > 0 {
				f.items = append(f.items, string(l))
			}
		}
		f.mu.Unlock()
		w.Write([]byte(`{"id":"0"}`))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSentry) dsn() string {
	return "http://publickey@" + strings.TrimPrefix(f.srv.URL, "http://") + "/1"
}

func (f *fakeSentry) payload() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.items, "\n")
}

func sentryConfig(t *testing.T, dsn string) *Config {
	cfg, err := LoadConfig("", []string{"CLICKEDGE_SENTRY_DSN=" + dsn, "CLICKEDGE_NODE_ID=eu-central-1", "CLICKEDGE_NODE_REGION=eu-central"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSentryEventsCarryNoIP sends an error log and a panic that both quote
// client addresses through the real SDK and HTTP transport to a local
// endpoint: the events arrive, and no address is in them.
func TestSentryEventsCarryNoIP(t *testing.T) {
	f := newFakeSentry(t, false)
	rep, err := newReporter(sentryConfig(t, f.dsn()))
	if err != nil || rep == nil {
		t.Fatalf("newReporter = %v, %v", rep, err)
	}
	logger := rep.logger(slog.New(slog.DiscardHandler)).With("component", "edge")
	logger.Info("not sent: below error", "client", "198.51.100.9")
	logger.Error("publish failed for 203.0.113.7", "peer", "203.0.113.7:5672", "client", "2001:db8::1",
		"err", fmt.Errorf("dial tcp [2001:db8::2]:5672: refused"))

	h := rep.recoverHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("boom from " + r.RemoteAddr + " via 192.0.2.44")
	}))
	func() {
		defer func() {
			if v := recover(); v == nil {
				t.Errorf("recoverHTTP swallowed the panic; net/http's own recovery must still see it")
			}
		}()
		req := httptest.NewRequest("GET", "/r/x", nil)
		req.RemoteAddr = "198.51.100.23:40000"
		h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	rep.close()

	got := f.payload()
	for _, want := range []string{"publish failed for [ip]", "boom from [ip]", `"region":"eu-central"`, `"component":"edge"`} {
		if !strings.Contains(got, want) {
			t.Errorf("events lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "not sent: below error") {
		t.Errorf("an info record was sent to Sentry")
	}
	if m := ipv4Re.FindAllString(got, -1); len(m) > 0 {
		for _, s := range m {
			if scrubIPs(s) != s {
				t.Errorf("an IPv4 address reached Sentry: %s", s)
			}
		}
	}
	for _, ip := range []string{"2001:db8::1", "2001:db8::2", "198.51.100", "203.0.113", "192.0.2.44"} {
		if strings.Contains(got, ip) {
			t.Errorf("%s reached Sentry", ip)
		}
	}
}

// TestSentryOffHotPath: with a Sentry that never answers, logging errors
// returns at once; a synchronous send would hang on the first one.
func TestSentryOffHotPath(t *testing.T) {
	f := newFakeSentry(t, true)
	rep, err := newReporter(sentryConfig(t, f.dsn()))
	if err != nil {
		t.Fatal(err)
	}
	logger := rep.logger(slog.New(slog.DiscardHandler))
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for i := range 500 {
			logger.Error("outbox write failed", "i", i)
		}
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		t.Logf("500 error records with Sentry hanging: %v", d)
	case <-time.After(10 * time.Second):
		t.Fatal("logging an error blocked on an unresponsive Sentry")
	}
	close(f.hold)
	rep.close()
}

func TestSentryConfig(t *testing.T) {
	if rep, err := newReporter(sentryConfig(t, "")); rep != nil || err != nil {
		t.Errorf("newReporter without a DSN = %v, %v, want nil, nil", rep, err)
	}
	var nilRep *reporter
	base := slog.New(slog.DiscardHandler)
	if nilRep.logger(base) != base || reporterOf(base) != nil {
		t.Errorf("a nil reporter changed the logger")
	}
	nilRep.close()

	_, err := LoadConfig("", []string{"CLICKEDGE_SENTRY_DSN=http://secretkey@/1"})
	if err == nil || !strings.Contains(err.Error(), "sentry.dsn") || strings.Contains(err.Error(), "secretkey") {
		t.Errorf("bad DSN: err = %v, want one naming sentry.dsn without the key", err)
	}
	cfg := sentryConfig(t, "https://secretkey@o1.ingest.sentry.io/42")
	if s := cfg.String(); strings.Contains(s, "secretkey") || !strings.Contains(s, "o1.ingest.sentry.io") {
		t.Errorf("redacted config shows %q", s)
	}
}

// FuzzScrubIPs: whatever the text, no address survives as a word: no run
// of address characters in the output (trailing or leading colons and dots
// taken as punctuation, a port allowed) parses as an IP address. Runs that
// only contain an address ("1.2.3.4567", "00001.2.3.4") are not addresses
// to a reader either and are left alone.
func FuzzScrubIPs(f *testing.F) {
	for _, s := range []string{"client 203.0.113.7", "[2001:db8::1]:443", "::ffff:1.2.3.4", "fe80::1%eth0",
		"1111.2.3.4", "1:2:3:4:5:6:7:8:9", "01:02:03", "a1.2.3.4b", "::", "1.2.3.4.5.6.7.8", "01::", ":0::01",
		"dial tcp 10.0.0.1:5672: refused", "0:0:0::0:0:0::100", "000X::0::1", "00000.0.0.0"} {
		f.Add(s)
	}
	addrRun := regexp.MustCompile(`[0-9A-Fa-f:.%]+`)
	f.Fuzz(func(t *testing.T, s string) {
		out := scrubIPs(s)
		for _, run := range addrRun.FindAllString(out, -1) {
			for _, c := range []string{run, strings.TrimRight(run, ":."), strings.TrimLeft(run, ":."),
				strings.Trim(run, ":.")} {
				a, err := netip.ParseAddr(c)
				if err != nil {
					ap, perr := netip.ParseAddrPort(c)
					a, err = ap.Addr(), perr
				}
				if err == nil && !a.WithZone("").IsUnspecified() && len(c) > 3 {
					t.Fatalf("scrubIPs(%q) = %q: %q is an address", s, out, c)
				}
			}
		}
	})
}

// TestServeSendsErrorsToSentry: a running node with sentry.dsn reports an
// error it logs (a refused catalog reload) with its node and region.
func TestServeSendsErrorsToSentry(t *testing.T) {
	f := newFakeSentry(t, false)
	dir := t.TempDir()
	links := filepath.Join(dir, "links.yaml")
	os.WriteFile(links, []byte("links:\n  - code: a\n    url: \"https://a.example/\"\n"), 0o644)
	p := startEdge(t, dir, fmt.Sprintf("node: {id: sentry-1, region: eu-central}\ncatalog: {file: %q}\n", links),
		"CLICKEDGE_SENTRY_DSN="+f.dsn(), "CLICKEDGE_FORWARDER_AMQP_URLS=amqp://guest:guest@127.0.0.1:1/")
	os.WriteFile(links, []byte("links:\n  - code: a\n    url: \"https://a.example/\"\n    rules:\n      - name: bad\n        when: 'country =='\n"), 0o644)
	req, _ := http.NewRequest("POST", "http://"+p.admin+"/admin/catalog/reload", nil)
	req.Header.Set("Authorization", "Bearer secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 422 {
		t.Fatalf("reload of a bad catalog = %d, want 422", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.payload(), "catalog reload refused") {
		if time.Now().After(deadline) {
			t.Fatalf("no event reached Sentry within 10s; got:\n%s", f.payload())
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := f.payload()
	for _, want := range []string{`"server_name":"sentry-1"`, `"region":"eu-central"`, `"node":"sentry-1"`} {
		if !strings.Contains(got, want) {
			t.Errorf("event lacks %s:\n%s", want, got)
		}
	}
}
