package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
)

// These tests build the real binary and run `clickedge serve` as a child
// process, against the shared RabbitMQ.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clickedge-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "clickedge")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// edgeProc is a running `clickedge serve`.
type edgeProc struct {
	t           *testing.T
	cmd         *exec.Cmd
	http, admin string
	mu          sync.Mutex
	logs        strings.Builder
	exited      chan struct{}
}

// startEdge runs serve with the given config file contents (plus listen
// addresses and data_dir filled in) and waits for /readyz.
func startEdge(t *testing.T, dir, config string, env ...string) *edgeProc {
	t.Helper()
	p := &edgeProc{t: t, http: freePort(t), admin: freePort(t), exited: make(chan struct{})}
	cfgPath := filepath.Join(dir, "clickedge.yaml")
	full := fmt.Sprintf("http:\n  listen: %q\nadmin:\n  listen: %q\n  token: secret-token\ndata_dir: %q\n%s",
		p.http, p.admin, filepath.Join(dir, "data"), config)
	if err := os.WriteFile(cfgPath, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary(t), "serve", "-config", cfgPath)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("clickedge logs:\n%s", p.Logs())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("clickedge exited during start: %s", p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("clickedge not ready after 20s: %s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *edgeProc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// stop sends SIGTERM and returns the exit code.
func (p *edgeProc) stop() int {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("clickedge did not stop within 30s of SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

var noFollow = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

func get(t *testing.T, u string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

const testCatalog = `links:
  - code: tv-sale
    url: "https://shop.example/tv?cid={click_id}&sub={subid}"
    params: [subid, utm_campaign]
    rules:
      - name: mobile
        when: 'device == "mobile"'
        url: "https://m.shop.example/tv?cid={click_id}&c={param:utm_campaign}"
  - code: paused-one
    status: paused
    url: "https://old.example/?cid={click_id}"
    fallback_url: "https://old.example/closed"
`

var clickIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// The binary against the real broker: redirects go out with the contract's
// headers, and each click arrives as a persistent message whose body has
// the schema-1 fields and whose message_id is the click_id.
// TestServeEndToEnd runs with each public HTTP server (http.server).
func TestServeEndToEnd(t *testing.T) {
	for _, server := range []string{"fasthttp", "net"} {
		t.Run(server, func(t *testing.T) { testServeEndToEnd(t, server) })
	}
}

func testServeEndToEnd(t *testing.T, server string) {
	shared := brokertest.SharedURL(t)
	exchange := "ce-e2e-" + randHex(4)
	q := brokertest.TempQueue(t, shared, exchange, "click.#")
	c := brokertest.Consume(t, shared, q)
	t.Cleanup(func() { deleteExchange(shared, exchange) })
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "links.yaml"), []byte(testCatalog), 0o600)
	p := startEdge(t, dir, fmt.Sprintf("node:\n  id: t-1\n  region: eu-test\nforwarder:\n  amqp_urls: [%q]\n  exchange: %s\ncatalog:\n  file: links.yaml\n",
		shared, exchange), "CLICKEDGE_HTTP_SERVER="+server)
	waitLog(t, p, `"http_server":"`+server+`"`)

	locations := map[string]string{} // click_id -> Location
	for i, tc := range []struct {
		path, ua, wantPrefix, wantRule string
	}{
		{"/r/tv-sale?subid=aff%2042&x=1", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36", "https://shop.example/tv?cid=", ""},
		{"/r/tv-sale?utm_campaign=bf%26sale", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1", "https://m.shop.example/tv?cid=", "mobile"},
		{"/r/paused-one", "curl/8.0", "https://old.example/closed", ""},
	} {
		resp := get(t, "http://"+p.http+tc.path, "User-Agent", tc.ua)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != 302 || !strings.HasPrefix(loc, tc.wantPrefix) {
			t.Fatalf("GET %s = %d %q, want 302 to %s...", tc.path, resp.StatusCode, loc, tc.wantPrefix)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("GET %s: Cache-Control %q, want no-store", tc.path, resp.Header.Get("Cache-Control"))
		}
		if i < 2 {
			u, _ := url.Parse(loc)
			id := u.Query().Get("cid")
			if !clickIDRe.MatchString(id) {
				t.Fatalf("click_id %q is not 32 lowercase hex digits", id)
			}
			locations[id] = loc
		}
	}
	if got := get(t, "http://"+p.http+"/r/no-such-link"); got.StatusCode != 404 {
		t.Fatalf("unknown link = %d, want 404", got.StatusCode)
	}
	if err := c.WaitCount(3, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Messages() {
		var body map[string]any
		if err := json.Unmarshal(d.Body, &body); err != nil {
			t.Fatalf("message body is not JSON: %v: %s", err, d.Body)
		}
		for _, k := range []string{"v", "click_id", "ts", "link", "url", "rule", "region", "node", "country", "device", "params"} {
			if _, ok := body[k]; !ok {
				t.Fatalf("body lacks %q: %s", k, d.Body)
			}
		}
		id, _ := body["click_id"].(string)
		if d.MessageID != id || !clickIDRe.MatchString(id) {
			t.Fatalf("message_id %q, click_id %q: want equal, 32 hex", d.MessageID, id)
		}
		if d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" || d.RoutingKey != "click.eu-test" {
			t.Fatalf("delivery mode %d, content type %q, routing key %q; want 2, application/json, click.eu-test",
				d.DeliveryMode, d.ContentType, d.RoutingKey)
		}
		if d.Headers["region"] != "eu-test" || d.Headers["node"] != "t-1" || fmt.Sprint(d.Headers["schema"]) != "1" {
			t.Fatalf("headers %v, want region eu-test, node t-1, schema 1", d.Headers)
		}
		if body["v"] != float64(1) || body["region"] != "eu-test" || body["node"] != "t-1" {
			t.Fatalf("body fields: %s", d.Body)
		}
		ts, _ := body["ts"].(string)
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", ts); err != nil {
			t.Fatalf("ts %q is not RFC 3339 UTC with milliseconds: %v", ts, err)
		}
		if loc, ok := locations[id]; ok && body["url"] != loc {
			t.Fatalf("body url %q, Location was %q", body["url"], loc)
		}
		if strings.Contains(string(d.Body), "127.0.0.1") {
			t.Fatalf("the body carries the client IP: %s", d.Body)
		}
		switch body["link"] {
		case "tv-sale":
			if id2 := id; locations[id2] != "" && strings.HasPrefix(locations[id2], "https://m.") && body["rule"] != "mobile" {
				t.Fatalf("mobile click recorded rule %q, want mobile", body["rule"])
			}
		case "paused-one":
			if body["paused"] != true {
				t.Fatalf("paused link's click lacks paused:true: %s", d.Body)
			}
		}
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(p.Logs(), `"msg":"clickedge stopped","pending":0`) {
		t.Fatalf("graceful stop left records pending: %s", p.Logs())
	}
}

func deleteExchange(url, name string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	ch.ExchangeDelete(name, false, false)
}

// runServe runs serve expecting it to exit by itself; it returns the code
// and stderr.
func runServe(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"serve"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan struct{})
	go func() { cmd.Run(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve %v did not exit: %s", args, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func TestServeRefusesBadConfigAndCatalog(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("outbox:\n  durability: fsync\n"), 0o600)
	code, msg := runServe(t, "-config", bad)
	if code == 0 || !strings.Contains(msg, bad) || !strings.Contains(msg, "outbox.durability") {
		t.Fatalf("bad config: exit %d, stderr %q; want non-zero naming %s and the key", code, msg, bad)
	}

	cat := filepath.Join(dir, "links.yaml")
	os.WriteFile(cat, []byte("links:\n  - code: x1\n    url: \"https://a.example/?c={click_id}\"\n    rules:\n      - name: r1\n        when: 'cuntry == \"DE\"'\n        url: \"https://b.example/\"\n"), 0o600)
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("http:\n  listen: %q\nadmin:\n  listen: %q\ndata_dir: %q\ncatalog:\n  file: links.yaml\n",
		freePort(t), freePort(t), filepath.Join(dir, "data"))), 0o600)
	code, msg = runServe(t, "-config", cfg)
	for _, want := range []string{cat, `"x1"`, `"r1"`, "cuntry"} {
		if code == 0 || !strings.Contains(msg, want) {
			t.Fatalf("bad catalog: exit %d, stderr %q; want non-zero and %s in it", code, msg, want)
		}
	}
}

// SIGHUP and the admin API reload the catalog; a bad file is refused and
// the last good catalog keeps serving.
func TestServeReloadsCatalog(t *testing.T) {
	dir := t.TempDir()
	links := filepath.Join(dir, "links.yaml")
	os.WriteFile(links, []byte(testCatalog), 0o600)
	p := startEdge(t, dir, "forwarder:\n  amqp_urls: [\"amqp://guest:guest@127.0.0.1:1/\"]\ncatalog:\n  file: links.yaml\n")

	os.WriteFile(links, []byte("links:\n  - code: broken\n    url: \"ftp://x/\"\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "catalog reload refused")
	if r := get(t, "http://"+p.http+"/r/tv-sale"); r.StatusCode != 302 {
		t.Fatalf("after a refused reload tv-sale = %d, want 302 from the last good catalog", r.StatusCode)
	}

	os.WriteFile(links, []byte(testCatalog+"  - code: fresh\n    url: \"https://fresh.example/?c={click_id}\"\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "catalog reloaded")
	if r := get(t, "http://"+p.http+"/r/fresh"); r.StatusCode != 302 {
		t.Fatalf("after reload fresh = %d, want 302", r.StatusCode)
	}

	// The admin API needs the token.
	post := func(token string) int {
		req, _ := http.NewRequest("POST", "http://"+p.admin+"/admin/catalog/reload", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(""); code != 401 {
		t.Fatalf("reload without token = %d, want 401", code)
	}
	if code := post("wrong"); code != 403 {
		t.Fatalf("reload with a wrong token = %d, want 403", code)
	}
	if code := post("secret-token"); code != 200 {
		t.Fatalf("reload with the token = %d, want 200", code)
	}
}

func waitLog(t *testing.T, p *edgeProc, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", s, p.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Without a broker the edge serves, the clicks wait in the outbox, and the
// missing broker is logged once, not on every retry.
func TestServeWithoutBroker(t *testing.T) {
	dir := t.TempDir()
	p := startEdge(t, dir, "forwarder:\n  amqp_urls: [\"amqp://guest:guest@127.0.0.1:1/\"]\n  reconnect_max: 200ms\n")
	for range 5 {
		if r := get(t, "http://"+p.http+"/r/tv-sale?subid=a"); r.StatusCode != 302 {
			t.Fatalf("redirect without broker = %d, want 302", r.StatusCode)
		}
	}
	// harden #9: wait for several failed attempts (not a fixed sleep), so
	// that "logged once" is checked after retries that could repeat it.
	var b []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if m := connectErrsRe.FindSubmatch(b); m != nil && atoi(string(m[1])) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 failed connection attempts after 20s:\n%s", grep(string(b), "clickedge_forwarder_connect_errors_total"))
		}
		time.Sleep(50 * time.Millisecond) // polling, with a deadline
	}
	if !strings.Contains(string(b), "clickedge_outbox_pending_records 5") {
		t.Fatalf("metrics lack 5 pending records:\n%s", grep(string(b), "clickedge_outbox_pending"))
	}
	if !strings.Contains(string(b), "clickedge_forwarder_connected 0") {
		t.Fatal("metrics do not say the forwarder is disconnected")
	}
	if n := strings.Count(p.Logs(), "cannot reach the broker"); n != 1 {
		t.Fatalf("missing broker logged %d times, want once:\n%s", n, p.Logs())
	}
}

var connectErrsRe = regexp.MustCompile(`(?m)^clickedge_forwarder_connect_errors_total (\d+)`)

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A second node on the same data directory refuses to start, saying why.
func TestServeRefusesLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	startEdge(t, dir, "forwarder:\n  amqp_urls: [\"amqp://guest:guest@127.0.0.1:1/\"]\n")
	cfg := filepath.Join(t.TempDir(), "second.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("http:\n  listen: %q\nadmin:\n  listen: %q\ndata_dir: %q\n",
		freePort(t), freePort(t), filepath.Join(dir, "data"))), 0o600)
	code, msg := runServe(t, "-config", cfg)
	if code == 0 || !strings.Contains(msg, "locked by another process") {
		t.Fatalf("second node on a locked data dir: exit %d, %q", code, msg)
	}
}
