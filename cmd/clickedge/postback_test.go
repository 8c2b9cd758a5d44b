package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
	"github.com/clickedge/clickedge/postback"
)

const (
	pbSecret       = "cmd-test-secret-0123456789"
	pbToken        = "cmd-test-token-0123456789"
	pbAdvertisers  = "- {id: acme, secret: " + pbSecret + "}\n- {id: tok, token: " + pbToken + "}\n"
	unreachableMQ  = "forwarder:\n  amqp_urls: [\"amqp://guest:guest@127.0.0.1:1/\"]\n"
	postbackOnlyNd = "node:\n  roles: [postback]\n"
)

// postbackURL returns a signed postback URL for acme, as the sign command
// prints it.
func postbackURL(t *testing.T, dir, base string, kv ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	args := append([]string{"sign", "-config", filepath.Join(dir, "clickedge.yaml"), "-url", "http://" + base, "-adv", "acme"}, kv...)
	if code := run(append([]string{"postback"}, args...), &out, &errb, nil); code != 0 {
		t.Fatalf("postback sign = %d: %s", code, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func pbGet(t *testing.T, u string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]string
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// A roles: [postback] node needs no catalog (catalog.file names a file
// that does not exist), is ready, serves /postback and 404s /r and /c;
// the actions reach the central exchange with the contract's routing key.
func TestPostbackOnlyNode(t *testing.T) {
	shared := brokertest.SharedURL(t)
	exchange := "ce-actions-" + randHex(4)
	q := brokertest.TempQueue(t, shared, exchange, "action.#")
	c := brokertest.Consume(t, shared, q)
	t.Cleanup(func() { deleteExchange(shared, exchange) })
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "advertisers.yaml"), []byte(pbAdvertisers), 0o600)
	p := startEdge(t, dir, fmt.Sprintf("node:\n  id: pb-1\n  region: eu-test\n  roles: [postback]\nforwarder:\n  amqp_urls: [%q]\n"+
		"catalog:\n  file: no-such-links.yaml\npostback:\n  advertisers: advertisers.yaml\n  exchange: %s\n", shared, exchange))

	for _, path := range []string{"/r/demo", "/c/demo", "/", "/postback/x"} {
		if r := get(t, "http://"+p.http+path); r.StatusCode != 404 {
			t.Fatalf("GET %s on a postback node = %d, want 404", path, r.StatusCode)
		}
	}
	cid := clickid.NewAt(time.Now().Add(-time.Hour)).String()
	u := postbackURL(t, dir, p.http, "click_id="+cid, "order_id=A 1/2", "amount=12.50", "currency=EUR")
	code, body := pbGet(t, u)
	if code != 200 || body["result"] != "registered" {
		t.Fatalf("GET %s = %d %v, want 200 registered", u, code, body)
	}
	want := postback.ActionID("acme", "A 1/2", "sale", postback.Approved)
	if body["action_id"] != want {
		t.Fatalf("action_id %s, want %s", body["action_id"], want)
	}
	if code, body := pbGet(t, u); code != 200 || body["result"] != "duplicate" {
		t.Fatalf("the same postback again = %d %v, want 200 duplicate", code, body)
	}
	if err := c.WaitCount(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	m := c.Messages()[0]
	var msg map[string]any
	json.Unmarshal(m.Body, &msg)
	if m.MessageID != want || m.RoutingKey != "action.eu-test" || msg["order_id"] != "A 1/2" || msg["amount"] != "12.50" ||
		msg["click_id"] != cid || msg["node"] != "pb-1" {
		t.Fatalf("message %s %s %s", m.MessageID, m.RoutingKey, m.Body)
	}
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`clickedge_postbacks_total{result="registered"} 1`, `clickedge_postbacks_total{result="duplicate"} 1`,
		`clickedge_postbacks_refused_total{reason="out_of_window"} 0`, "clickedge_postback_duration_seconds_bucket", "clickedge_postback_advertisers 2"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

// An edge-only node has no /postback; the default node has both.
func TestRolesRouting(t *testing.T) {
	for _, server := range []string{"fasthttp", "net"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "advertisers.yaml"), []byte(pbAdvertisers), 0o600)
		edgeOnly := startEdge(t, t.TempDir(), unreachableMQ+"node:\n  roles: [edge]\n", "CLICKEDGE_HTTP_SERVER="+server)
		if r := get(t, "http://"+edgeOnly.http+"/postback?adv=x"); r.StatusCode != 404 {
			t.Fatalf("%s: /postback on an edge node = %d, want 404", server, r.StatusCode)
		}
		both := startEdge(t, dir, unreachableMQ+"postback:\n  advertisers: advertisers.yaml\n", "CLICKEDGE_HTTP_SERVER="+server)
		if r := get(t, "http://"+both.http+"/r/tv-sale"); r.StatusCode != 302 {
			t.Fatalf("%s: /r/demo on a default node = %d, want 302", server, r.StatusCode)
		}
		tokenURL := "http://" + both.http + "/postback?adv=tok&token=" + pbToken + "&order_id=1&click_id=" + clickid.New().String()
		if code, body := pbGet(t, tokenURL); code != 200 || body["result"] != "registered" {
			t.Fatalf("%s: token postback on a default node = %d %v, want 200 registered", server, code, body)
		}
		// A POST form body larger than an edge request's but within the
		// postback limit is read, not refused 413.
		form := url.Values{"adv": {"tok"}, "token": {pbToken}, "order_id": {"2"}, "click_id": {clickid.New().String()}, "note": {strings.Repeat("n", 1000)}}
		for range 4 {
			form.Add("note"+randHex(2), strings.Repeat("m", 1000))
		}
		resp, err := http.Post("http://"+both.http+"/postback", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: a 5 KB form POST = %d, want 200", server, resp.StatusCode)
		}
	}
}

// A bad advertisers file stops the start, naming the file and the entry;
// on reload (SIGHUP, admin) it is refused and the last good set serves.
func TestAdvertisersLoadAndReload(t *testing.T) {
	dir := t.TempDir()
	advs := filepath.Join(dir, "advertisers.yaml")
	os.WriteFile(advs, []byte("- {id: acme, secret: short, window: forever}\n"), 0o600)
	cfg := filepath.Join(dir, "clickedge.yaml")
	os.WriteFile(cfg, []byte(unreachableMQ+postbackOnlyNd+"postback:\n  advertisers: advertisers.yaml\n"), 0o600)
	var out, errb bytes.Buffer
	data := filepath.Join(dir, "data")
	code := run([]string{"serve", "-config", cfg}, &out, &errb, []string{"CLICKEDGE_HTTP_LISTEN=127.0.0.1:0", "CLICKEDGE_ADMIN_LISTEN=127.0.0.1:0",
		"CLICKEDGE_DATA_DIR=" + data})
	if code != 1 || !strings.Contains(errb.String(), advs) || !strings.Contains(errb.String(), `entry 1 (id "acme"): window`) {
		t.Fatalf("serve with a bad advertisers file: exit %d, stderr %q; want 1 naming the file and entry", code, errb.String())
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("a start refused for its advertisers file left %s behind (%v)", data, err)
	}

	os.WriteFile(advs, []byte(pbAdvertisers), 0o600)
	p := startEdge(t, dir, unreachableMQ+postbackOnlyNd+"postback:\n  advertisers: advertisers.yaml\n")
	tokenURL := func(order string) string {
		return "http://" + p.http + "/postback?adv=tok&token=" + pbToken + "&order_id=" + order + "&click_id=" + clickid.New().String()
	}
	os.WriteFile(advs, []byte("- {id: tok, token: x, allow: [bogus]}\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "advertisers reload refused")
	if code, _ := pbGet(t, tokenURL("1")); code != 200 {
		t.Fatalf("after a refused reload the token postback = %d, want 200 from the last good set", code)
	}
	reload := func() (int, string) {
		req, _ := http.NewRequest("POST", "http://"+p.admin+"/admin/catalog/reload", nil)
		req.Header.Set("Authorization", "Bearer secret-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := reload(); code == 200 || !strings.Contains(body, "advertisers.yaml") {
		t.Fatalf("admin reload of a bad file = %d %q, want an error naming the file", code, body)
	}
	os.WriteFile(advs, []byte("- {id: other, token: "+pbToken+"}\n"), 0o600)
	if code, body := reload(); code != 200 {
		t.Fatalf("admin reload of a good file = %d %q", code, body)
	}
	if code, _ := pbGet(t, tokenURL("2")); code != 401 {
		t.Fatalf("tok after it left the file = %d, want 401", code)
	}
}

func TestPostbackConfigValidation(t *testing.T) {
	tests := []struct{ src, want string }{
		{"node:\n  roles: []\n", "node.roles: must name at least one"},
		{"node:\n  roles: [edge, redirect]\n", `node.roles[1]: must be edge or postback, got "redirect"`},
		{"node:\n  roles: [postback, postback]\n", `node.roles[1]: "postback" is listed twice`},
		{"postback:\n  exchange: clicks\n", "postback.exchange: must differ from forwarder.exchange"},
		{"postback:\n  exchange: amq.topic\n", "postback.exchange: must not start"},
		{"postback:\n  public_url: ftp://x\n", "postback.public_url: must be an http(s) URL"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(path, []byte(tt.src), 0o600)
		_, err := LoadConfig(path, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadConfig(%q) = %v, want %q", tt.src, err, tt.want)
		}
	}
	c, err := LoadConfig("", []string{"CLICKEDGE_NODE_ROLES=postback"})
	if err != nil || c.hasRole(roleEdge) || !c.hasRole(rolePostback) {
		t.Fatalf("CLICKEDGE_NODE_ROLES=postback: %v, roles %v", err, c.Node.Roles)
	}
}

// The sign command signs with the advertiser's secret (the URL verifies)
// and adds the token of a token advertiser.
func TestPostbackSignCommand(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "advertisers.yaml"), []byte(pbAdvertisers), 0o600)
	cfg := filepath.Join(dir, "clickedge.yaml")
	os.WriteFile(cfg, []byte("http:\n  listen: \":8181\"\npostback:\n  advertisers: advertisers.yaml\n"), 0o600)
	sign := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"postback", "sign", "-config", cfg}, args...), &out, &errb, nil)
		return code, strings.TrimSpace(out.String()), errb.String()
	}
	code, out, _ := sign("-adv", "acme", "order_id=A 1/2", "ts=1764547200")
	u, err := url.Parse(out)
	if code != 0 || err != nil || u.Host != "127.0.0.1:8181" || u.Path != "/postback" {
		t.Fatalf("sign = %d %q", code, out)
	}
	ps, err := postback.ParseQuery(nil, u.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := ps.Get("sig")
	if want := postback.Sign([]byte(pbSecret), postback.Canonical(ps)); sig != want {
		t.Fatalf("sig %s, want %s", sig, want)
	}
	if _, out, _ := sign("-adv", "acme", "order_id=1"); !strings.Contains(out, "&ts=") {
		t.Fatalf("sign without ts = %q, want ts added", out)
	}
	if code, out, _ := sign("-adv", "tok", "-url", "https://pb.example/", "order_id=1"); code != 0 || out != "https://pb.example/postback?adv=tok&order_id=1&token="+pbToken {
		t.Fatalf("sign for a token advertiser = %d %q", code, out)
	}
	if code, _, errs := sign("-adv", "nobody"); code != 1 || !strings.Contains(errs, `"nobody"`) {
		t.Fatalf("sign for an unknown advertiser = %d %q", code, errs)
	}
	if code, _, _ := sign("-adv", "acme", "novalue"); code != 2 {
		t.Fatalf("sign with a bad argument = %d, want 2", code)
	}
	if code, _, _ := sign("order_id=1"); code != 2 {
		t.Fatalf("sign without -adv = %d, want 2", code)
	}
}

// The outbox tools show both kinds of record: stats counts them by
// exchange, export and replay take -kind.
func TestOutboxToolsShowActions(t *testing.T) {
	url := brokertest.SharedURL(t)
	clicks, actions := "ce-kc-"+randHex(4), "ce-ka-"+randHex(4)
	fx := makeOutbox(t, 6, 2, clicks)
	// A long retention: the fixture's delivered records are old.
	o, err := outbox.Open(fx.path, &outbox.Options{Retention: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r := outboxtest.Record(fmt.Sprintf("%032x", 0xac7000+i))
		r.Exchange, r.RoutingKey = actions, "action.test"
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()

	code, stdout, stderr := runCmd(t, nil, "outbox", "stats", "-data", fx.dir, "-json")
	var st obStats
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil {
		t.Fatalf("stats -json: %d %s %s", code, stdout, stderr)
	}
	if c, a := st.Exchanges[clicks], st.Exchanges[actions]; c == nil || a == nil || c.Pending != 4 || c.Delivered != 2 || a.Pending != 3 {
		t.Fatalf("stats by exchange = %+v, want %s 4 pending 2 delivered and %s 3 pending", st.Exchanges, clicks, actions)
	}
	if _, stdout, _ := runCmd(t, nil, "outbox", "stats", "-data", fx.dir); !strings.Contains(stdout, "by exchange") || !strings.Contains(stdout, actions+" ") {
		t.Fatalf("stats lacks the breakdown:\n%s", stdout)
	}
	_, stdout, _ = runCmd(t, nil, "outbox", "export", "-data", fx.dir, "-kind", actions)
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 3 || !strings.Contains(lines[0], `"exchange":"`+actions+`"`) {
		t.Fatalf("export -kind %s gave %d lines:\n%s", actions, len(lines), stdout)
	}

	q := brokertest.TempQueue(t, url, actions, "action.#")
	c := brokertest.Consume(t, url, q)
	t.Cleanup(func() { deleteExchange(url, actions); deleteExchange(url, clicks) })
	code, stdout, stderr = runCmd(t, nil, "outbox", "replay", "-data", fx.dir, "-amqp", url, "-kind", actions, "-progress", "none")
	if code != 0 || !strings.Contains(stdout, "published      3") {
		t.Fatalf("replay -kind: %d\n%s%s", code, stdout, stderr)
	}
	if err := c.WaitCount(3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := rpFileStats(t, fx.path); st.Pending != 4 {
		t.Fatalf("after replay -kind %s: %d pending, want the 4 clicks", actions, st.Pending)
	}
}
