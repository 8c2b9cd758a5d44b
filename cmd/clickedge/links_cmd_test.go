package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
)

func TestLinksValidate(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", testCatalog)
	bad := writeFile(t, dir, "bad.yaml", `links:
  - code: a
    url: "ftp://x.example/"
  - code: b
    url: "https://b.example/"
    rules:
      - name: r
        when: 'cuntry == "DE"'
        url: "https://c.example/"
  - code: a
    url: "https://a.example/"
`)
	code, out, _ := runCmd(t, nil, "links", "validate", good)
	if code != 0 || !strings.Contains(out, "2 links, valid") {
		t.Fatalf("validate good = %d %q", code, out)
	}
	code, _, errOut := runCmd(t, nil, "links", "validate", bad)
	if code != 1 {
		t.Fatalf("validate bad = %d, want 1", code)
	}
	// Every problem in one pass, each with file:line, link and field.
	for _, want := range []string{
		`bad.yaml:3:10: link "a": url:`,
		`bad.yaml:8:15: link "b": rule "r": when:`,
		`bad.yaml:10:11: link "a": code: duplicate`,
	} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("validate output lacks %q:\n%s", want, errOut)
		}
	}
	// Every error, not only the first 20.
	var many strings.Builder
	many.WriteString("links:\n")
	for i := range 30 {
		fmt.Fprintf(&many, "  - code: bad%d\n    url: \"ftp://x.example/\"\n", i)
	}
	code, _, errOut = runCmd(t, nil, "links", "validate", writeFile(t, dir, "many.yaml", many.String()))
	if code != 1 || strings.Count(errOut, "url:") != 30 || strings.Contains(errOut, "more errors") {
		t.Fatalf("validate of 30 bad links = %d, %d errors:\n%s", code, strings.Count(errOut, "url:"), errOut)
	}
	if code, _, _ := runCmd(t, nil, "links", "validate"); code != 2 {
		t.Fatalf("validate without a file = %d, want 2", code)
	}
}

func TestLinksTrace(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "links.yaml", testCatalog)
	code, out, errOut := runCmd(t, nil, "links", "trace", f, "tv-sale", "device=mobile")
	if code != 0 || !strings.Contains(out, `"rule": "mobile"`) || !strings.Contains(out, "https://m.shop.example/") {
		t.Fatalf("trace = %d %s %s", code, out, errOut)
	}
	if code, _, _ := runCmd(t, nil, "links", "trace", f, "nope"); code != 1 {
		t.Fatalf("trace of an unknown code = %d, want 1", code)
	}
	if code, _, _ := runCmd(t, nil, "links", "trace", f, "tv-sale", "cuntry=DE"); code != 2 {
		t.Fatalf("trace with an unknown fact = %d, want 2", code)
	}
}

// feedTopology gives a test its own links exchange and stream on the shared
// broker, deleted afterwards.
func feedTopology(t *testing.T, url string) (exchange, queue string) {
	t.Helper()
	id := randHex(4)
	exchange, queue = "test.links."+id, "test.links.stream."+id
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(queue, false, false, false)
			ch.ExchangeDelete(exchange, false, false)
		}
	})
	return exchange, queue
}

type catalogInfo struct {
	Version, Digest   string
	Links, Tombstones int
}

func adminCatalog(t *testing.T, p *edgeProc) catalogInfo {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.admin+"/admin/catalog", nil)
	req.Header.Set("Authorization", "Bearer secret-token") // every admin read needs it (harden #7)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /admin/catalog = %d", resp.StatusCode)
	}
	var ci catalogInfo
	if err := json.NewDecoder(resp.Body).Decode(&ci); err != nil {
		t.Fatal(err)
	}
	return ci
}

func adminDo(t *testing.T, p *edgeProc, method, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+p.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func waitStatus(t *testing.T, p *edgeProc, code string, want int) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if r := get(t, "http://"+p.http+"/r/"+code); r.StatusCode == want {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("/r/%s never answered %d:\n%s", code, want, p.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two nodes and the shared broker: the file seeds both alike; a change made
// through one node's API is served by the other; links push reaches both;
// export round-trips through validate; a node restarted without its file
// and without a broker serves its persisted catalog.
func TestLinksAcrossNodes(t *testing.T) {
	url := brokertest.SharedURL(t)
	exchange, queue := feedTopology(t, url)
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	start := func(name, broker string, withFile bool) *edgeProc {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if withFile {
			f := writeFile(t, dir, "links.yaml", testCatalog)
			os.Chtimes(f, mtime, mtime)
		}
		return startEdge(t, dir, fmt.Sprintf("node:\n  id: %s\nforwarder:\n  amqp_urls: [%q]\n  reconnect_max: 200ms\ncatalog:\n  file: links.yaml\nlinks:\n  exchange: %s\n  stream_queue: %s\n  stream_max_bytes: 64MiB\n",
			name, broker, exchange, queue))
	}
	a, b := start("a", url, true), start("b", url, true)
	if ca, cb := adminCatalog(t, a), adminCatalog(t, b); ca.Digest != cb.Digest || ca.Links != 2 {
		t.Fatalf("nodes seeded from one file differ: %+v, %+v", ca, cb)
	}

	if code := adminDo(t, a, "PUT", "/admin/links/fresh", `{"url":"https://fresh.example/?c={click_id}"}`); code != 201 {
		t.Fatalf("PUT = %d", code)
	}
	d := waitStatus(t, b, "fresh", 302)
	t.Logf("a's change served by b after %v", d)
	if code := adminDo(t, b, "DELETE", "/admin/links/tv-sale", ""); code != 200 {
		t.Fatalf("DELETE = %d", code)
	}
	waitStatus(t, a, "tv-sale", 404)
	if code := adminDo(t, a, "PUT", "/admin/links/bad", `{"url":"https://x.example/{param:zz}"}`); code != 422 {
		t.Fatalf("PUT of a bad link = %d, want 422", code)
	}

	// links push: every link of the file on both nodes, exit 0 once confirmed.
	cfgA := a.cmd.Args[3] // serve -config FILE
	pushed := writeFile(t, t.TempDir(), "push.yaml", "links:\n  - code: pushed\n    url: \"https://p.example/\"\n")
	code, out, errOut := runCmd(t, nil, "links", "push", "-config", cfgA, pushed)
	if code != 0 {
		t.Fatalf("links push = %d %s %s", code, out, errOut)
	}
	waitStatus(t, a, "pushed", 302)
	waitStatus(t, b, "pushed", 302)

	// links import: through one node's admin API, then the feed.
	imported := writeFile(t, t.TempDir(), "import.yaml", "links:\n  - code: imported\n    url: \"https://i.example/\"\n    redirect: 301\n")
	if code, _, errOut := runCmd(t, nil, "links", "import", "-admin", "http://"+b.admin, "-token", "wrong", imported); code != 1 || !strings.Contains(errOut, "403") {
		t.Fatalf("import with a wrong token = %d %s, want 1 and the 403", code, errOut)
	}
	if code, out, errOut := runCmd(t, nil, "links", "import", "-admin", "http://"+b.admin, "-token", "secret-token", imported); code != 0 {
		t.Fatalf("links import = %d %s %s", code, out, errOut)
	}
	waitStatus(t, a, "imported", 301)

	// export -> validate -> push round-trips.
	exported := filepath.Join(t.TempDir(), "export.json")
	if code, _, errOut := runCmd(t, nil, "links", "export", "-admin", "http://"+b.admin, "-token", "secret-token", "-o", exported); code != 0 {
		t.Fatalf("export = %d %s", code, errOut)
	}
	if code, out, errOut := runCmd(t, nil, "links", "validate", exported); code != 0 || !strings.Contains(out, "4 links") {
		t.Fatalf("validate of the export = %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "links", "push", "-config", cfgA, exported); code != 0 {
		t.Fatalf("push of the export = %d %s", code, errOut)
	}
	// The push returns once the broker confirmed its changes, not once
	// the nodes applied them: equal digests may be a moment when both
	// have applied the same part. Wait until they are equal and stay so
	// for 500 ms (the feed delivers in milliseconds), so that the restart
	// below compares with everything a applied.
	deadline := time.Now().Add(10 * time.Second)
	var same string
	var since time.Time
	for {
		da, db := adminCatalog(t, a).Digest, adminCatalog(t, b).Digest
		if da != db {
			same = ""
		} else if da != same {
			same, since = da, time.Now()
		} else if time.Since(since) >= 500*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("digests differ or keep changing: %+v, %+v", adminCatalog(t, a), adminCatalog(t, b))
		}
		time.Sleep(20 * time.Millisecond) // polling, with a deadline
	}

	resp, err := http.Get("http://" + b.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"clickedge_catalog_feed_connected 1", "clickedge_catalog_tombstones 1",
		`clickedge_catalog_changes_total{result="applied",source="feed"}`, `clickedge_catalog_changes_total{result="invalid",source="cluster"} 0`,
		"clickedge_catalog_version_timestamp_seconds"} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("metrics lack %q:\n%s", want, grep(string(metrics), "clickedge_catalog"))
		}
	}

	// A restart without the file and without a broker serves what a
	// persisted.
	want := adminCatalog(t, a)
	if code := a.stop(); code != 0 {
		t.Fatalf("stop = %d", code)
	}
	dirA := filepath.Dir(cfgA)
	os.Remove(filepath.Join(dirA, "links.yaml"))
	a2 := startEdge(t, dirA, "node:\n  id: a\nforwarder:\n  amqp_urls: [\"amqp://guest:guest@127.0.0.1:1/\"]\ncatalog:\n  file: links.yaml\n")
	if got := adminCatalog(t, a2); got.Digest != want.Digest || got.Links != want.Links {
		t.Fatalf("after restart %+v, want %+v", got, want)
	}
	waitStatus(t, a2, "fresh", 302)
	waitStatus(t, a2, "tv-sale", 404)
}
