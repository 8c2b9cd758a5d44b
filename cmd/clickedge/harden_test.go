package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// harden #7: serve refuses an admin listener on a non-loopback address
// without a token, naming admin.token, and creates nothing.
func TestServeRefusesExposedAdmin(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:%s", ":%s", "[::]:%s"} {
		dir := t.TempDir()
		_, port, _ := net.SplitHostPort(freePort(t))
		admin := fmt.Sprintf(listen, port)
		cfg := filepath.Join(dir, "c.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("http:\n  listen: %q\nadmin:\n  listen: %q\ndata_dir: %q\n",
			freePort(t), admin, filepath.Join(dir, "data"))), 0o600)
		code, msg := runServe(t, "-config", cfg)
		if code != 1 || !strings.Contains(msg, "admin.token") || !strings.Contains(msg, admin) {
			t.Errorf("admin.listen %s without a token: exit %d, stderr %q; want 1 naming admin.token", admin, code, msg)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
			t.Errorf("admin.listen %s without a token: data_dir created (%v)", admin, err)
		}
	}
}

// harden #14: a start that fails after the outbox was opened (here: the
// public port is taken) removes the outbox file and the data_dir it
// created; an existing data_dir and outbox are left alone.
func TestFailedStartLeavesNoOutbox(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "new", "data")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("http:\n  listen: %q\nadmin:\n  listen: %q\ndata_dir: %q\n",
		taken.Addr().String(), freePort(t), data)), 0o600)
	code, msg := runServe(t, "-config", cfg)
	if code != 1 || !strings.Contains(msg, "http.listen") {
		t.Fatalf("serve on a taken port: exit %d, stderr %q; want 1 naming http.listen", code, msg)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("the failed start left %s behind (%v)", filepath.Join(dir, "new"), err)
	}

	// An existing data_dir keeps what was there; only the new outbox goes.
	if code, msg := runServe(t, "-config", cfg); code != 1 {
		t.Fatalf("second try: exit %d, %s", code, msg)
	}
	os.MkdirAll(data, 0o750)
	keep := filepath.Join(data, "keep.txt")
	os.WriteFile(keep, []byte("x"), 0o600)
	runServe(t, "-config", cfg)
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a failed start removed a file it did not create: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "outbox.db")); !os.IsNotExist(err) {
		t.Errorf("the failed start left outbox.db in an existing data_dir (%v)", err)
	}
}

// harden #14: a reload to a catalog with no links while links serve is
// refused (SIGHUP and the admin API: 409 with how to force it); with
// ?force=1 it is loaded.
func TestReloadRefusesEmptyCatalogUnlessForced(t *testing.T) {
	dir := t.TempDir()
	links := filepath.Join(dir, "links.yaml")
	os.WriteFile(links, []byte(testCatalog), 0o600)
	p := startEdge(t, dir, "forwarder:\n  amqp_urls: [\"amqp://guest:guest@127.0.0.1:1/\"]\ncatalog:\n  file: links.yaml\n")

	os.WriteFile(links, []byte("links: []\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "has no links")
	if r := get(t, "http://"+p.http+"/r/tv-sale"); r.StatusCode != 302 {
		t.Fatalf("after a refused empty reload tv-sale = %d, want 302 from the last good catalog", r.StatusCode)
	}
	post := func(query string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+p.admin+"/admin/catalog/reload"+query, nil)
		req.Header.Set("Authorization", "Bearer secret-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, body := post(""); code != 409 || !strings.Contains(body, "force=1") {
		t.Fatalf("admin reload of an empty catalog = %d %q, want 409 saying how to force it", code, body)
	}
	if r := get(t, "http://"+p.http+"/r/tv-sale"); r.StatusCode != 302 {
		t.Fatalf("after a refused admin reload tv-sale = %d, want 302", r.StatusCode)
	}
	if code, body := post("?force=1"); code != 200 {
		t.Fatalf("forced reload = %d %q, want 200", code, body)
	}
	if r := get(t, "http://"+p.http+"/r/tv-sale"); r.StatusCode != 404 {
		t.Fatalf("after a forced empty reload tv-sale = %d, want 404", r.StatusCode)
	}
}

// harden #14: the outbox tools find the data directory the way serve does
// when -data is not given: $CLICKEDGE_DATA_DIR, else data_dir of
// $CLICKEDGE_CONFIG, else serve's default; a missing one is a failure (1)
// that says to give -data.
func TestOutboxDataDefault(t *testing.T) {
	fx := makeOutbox(t, 3, 1, "clicks")
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %q\n", fx.dir)), 0o600)
	for _, env := range [][]string{
		{"CLICKEDGE_DATA_DIR=" + fx.dir},
		{"CLICKEDGE_CONFIG=" + cfg},
	} {
		code, stdout, stderr := runCmd(t, env, "outbox", "stats")
		if code != 0 || !strings.Contains(stdout, "pending        2 records") {
			t.Errorf("outbox stats with %v: exit %d, stdout %q, stderr %q; want the outbox of %s", env, code, stdout, stderr, fx.dir)
		}
	}
	t.Chdir(t.TempDir())
	code, _, stderr := runCmd(t, nil, "outbox", "stats")
	if code != 1 || !strings.Contains(stderr, "clickedge-data does not exist (give -data DIR") {
		t.Errorf("outbox stats with no -data in an empty directory: exit %d, stderr %q; want 1 naming ./clickedge-data", code, stderr)
	}
}

// harden #7: with a token on the admin listener, `outbox stats -admin`
// sends it, and says what is missing without it.
func TestOutboxStatsAdminToken(t *testing.T) {
	srv := httptest.NewServer(edge.NewAdmin(edge.AdminConfig{Token: "tok", OutboxStatus: func() any {
		return map[string]any{"node": "eu-1", "region": "eu-central", "path": "/var/lib/clickedge/outbox.db"}
	}}))
	defer srv.Close()
	code, _, stderr := runCmd(t, nil, "outbox", "stats", "-admin", srv.URL)
	if code != 1 || !strings.Contains(stderr, "CLICKEDGE_ADMIN_TOKEN") {
		t.Errorf("stats -admin without the token: exit %d, stderr %q; want 1 saying how to give the token", code, stderr)
	}
	for _, tc := range []struct {
		env  []string
		args []string
	}{
		{[]string{"CLICKEDGE_ADMIN_TOKEN=tok"}, nil},
		{nil, []string{"-token", "tok"}},
	} {
		code, stdout, stderr := runCmd(t, tc.env, append([]string{"outbox", "stats", "-admin", srv.URL}, tc.args...)...)
		if code != 0 || !strings.Contains(stdout, "eu-1") {
			t.Errorf("stats -admin %v %v: exit %d, stdout %q, stderr %q", tc.env, tc.args, code, stdout, stderr)
		}
	}
}

// harden #14: one timestamp precision everywhere: RFC 3339, UTC, to the
// millisecond, as the click's ts: the log lines, export and stats.
func TestTimestampsAreMilliseconds(t *testing.T) {
	ms := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	var b strings.Builder
	newLogger(&b, slog.LevelInfo).Info("x", "at", time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600)))
	var line map[string]any
	if err := json.Unmarshal([]byte(b.String()), &line); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "at"} {
		if s, _ := line[k].(string); !ms.MatchString(s) {
			t.Errorf("log %s = %q, want RFC 3339 UTC with milliseconds", k, line[k])
		}
	}
	if line["at"] != "2026-01-02T02:04:05.123Z" {
		t.Errorf("log at = %q, want 2026-01-02T02:04:05.123Z", line["at"])
	}
	fx := makeOutbox(t, 3, 1, "clicks")
	for _, l := range exportLines(t, "-data", fx.dir) {
		for _, k := range []string{"appended", "delivered"} {
			if s, ok := l[k].(string); ok && !ms.MatchString(s) {
				t.Errorf("export %s = %q, want RFC 3339 UTC with milliseconds", k, s)
			}
		}
	}
}

// harden #14: export -pending -delivered means both states, not neither.
func TestExportBothStates(t *testing.T) {
	fx := makeOutbox(t, 5, 2, "clicks")
	all := exportLines(t, "-data", fx.dir)
	both := exportLines(t, "-data", fx.dir, "-pending", "-delivered")
	pending := exportLines(t, "-data", fx.dir, "-pending")
	delivered := exportLines(t, "-data", fx.dir, "-delivered")
	if len(all) != 5 || len(both) != 5 || len(pending) != 3 || len(delivered) != 2 {
		t.Errorf("export: all %d, -pending -delivered %d, -pending %d, -delivered %d; want 5, 5, 3, 2",
			len(all), len(both), len(pending), len(delivered))
	}
}

// harden #14: a config's problems come in one pass: a bad variable, and
// the file's invalid values, in one error; a file that does not decode and
// a bad variable, too.
func TestConfigErrorsInOnePass(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("outbox:\n  durability: fsync\nforwarder:\n  window: 0\n"), 0o600)
	_, err := LoadConfig(bad, []string{"CLICKEDGE_HTTP_IDLE_TIMEOUT=soon", "CLICKEDGE_NODE_REGON=eu"})
	if err == nil {
		t.Fatal("LoadConfig accepted a bad file and bad variables")
	}
	for _, want := range []string{"outbox.durability", "forwarder.window", "CLICKEDGE_HTTP_IDLE_TIMEOUT", "CLICKEDGE_NODE_REGON", "did you mean CLICKEDGE_NODE_REGION"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig error lacks %q:\n%v", want, err)
		}
	}
	undecodable := filepath.Join(dir, "u.yaml")
	os.WriteFile(undecodable, []byte("outbox:\n  durabilty: sync\n"), 0o600)
	_, err = LoadConfig(undecodable, []string{"CLICKEDGE_HTTP_IDLE_TIMEOUT=soon"})
	for _, want := range []string{"durabilty", "CLICKEDGE_HTTP_IDLE_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig error lacks %q:\n%v", want, err)
		}
	}
}

// harden #14: `outbox replay -exchange` never creates the exchange it is
// given: a missing one is refused (exit 1) before anything is published,
// and is still missing afterwards; an existing one is used.
func TestReplayExchangeMustExist(t *testing.T) {
	url := brokertest.SharedURL(t)
	fx := makeOutbox(t, 5, 0, "clicks")
	missing := rpTestExchange(t)
	rpDeleteExchange(t, url, missing) // in case the check is ever broken
	code, stdout, stderr := runCmd(t, nil, "outbox", "replay", "-data", fx.dir, "-amqp", url, "-exchange", missing, "-progress", "none")
	if code != 1 || !strings.Contains(stderr, "no such exchange") {
		t.Fatalf("replay -exchange %s (missing): exit %d, stdout %q, stderr %q; want 1 and no such exchange", missing, code, stdout, stderr)
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclarePassive(missing, "topic", true, false, false, false, nil); err == nil {
		t.Fatalf("replay created exchange %s", missing)
	}
	if st := rpFileStats(t, fx.path); st.Pending != 5 {
		t.Errorf("after the refused replay: %d pending, want 5", st.Pending)
	}

	// An existing exchange: replayed to it.
	ex := rpTestExchange(t)
	q := brokertest.TempQueue(t, url, ex, "click.#")
	rpDeleteExchange(t, url, ex)
	c := brokertest.Consume(t, url, q)
	code, stdout, stderr = runCmd(t, nil, "outbox", "replay", "-data", fx.dir, "-amqp", url, "-exchange", ex, "-progress", "none")
	if code != 0 || !strings.Contains(stdout, "confirmed      5") {
		t.Fatalf("replay -exchange %s (existing): exit %d\n%s%s", ex, code, stdout, stderr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Count() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 5 replayed clicks reached the queue", c.Count())
		}
		time.Sleep(20 * time.Millisecond) // polling, with a deadline
	}
}

// harden #14: the forwarder's warning about a click returned unroutable
// (312 NO_ROUTE) carries a hint with the fix; other lines do not.
func TestNoRouteWarningHasAHint(t *testing.T) {
	var logs lockedBuf
	lg := withNoRouteHint(newLogger(&logs, slog.LevelInfo).With("component", "forwarder"), "clicks")
	o := outboxtest.Open(t, nil)
	if err := o.Append(outboxtest.Record("0123456789abcdef0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	pub := outboxtest.NewFakePublisher()
	pub.Unroutable.Store(true)
	fc := outbox.DefaultForwarderConfig()
	fc.Publisher, fc.Logger = pub, lg
	f, err := outbox.NewForwarder(o, fc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "NO_ROUTE") {
		if time.Now().After(deadline) {
			t.Fatalf("no NO_ROUTE warning within 10s:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling, with a deadline
	}
	lg.Info("unrelated", "reason", "something else")
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		reason, _ := m["reason"].(string)
		hint, _ := m["hint"].(string)
		switch {
		case strings.Contains(reason, "NO_ROUTE") && !strings.Contains(hint, "click.#"):
			t.Errorf("NO_ROUTE warning without the hint: %s", l)
		case !strings.Contains(reason, "NO_ROUTE") && hint != "":
			t.Errorf("hint on a line that is not about NO_ROUTE: %s", l)
		}
	}
}

// lockedBuf is a strings.Builder safe for the forwarder's goroutine and
// the test's.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
