//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/internal/faultproxy"
)

// The links stage: two nodes and a broker, each node reaching the broker
// through its own fault proxy so one can be cut off alone.
const linksToken = "e2e-links-token"

type linksWorld struct {
	t    *testing.T
	dir  string
	node *brokertest.Node
}

// linkNode is one edge of the stage: its proxy, its config and its process.
type linkNode struct {
	w     *linksWorld
	name  string
	dir   string
	proxy *faultproxy.Proxy
	cfg   string
	e     *edgeProc
}

func (w *linksWorld) newNode(name string) *linkNode {
	w.t.Helper()
	p, err := faultproxy.New(fmt.Sprintf("127.0.0.1:%d", w.node.Port()))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { p.Close() })
	n := &linkNode{w: w, name: name, dir: filepath.Join(w.dir, name), proxy: p}
	os.MkdirAll(n.dir, 0o755)
	cfg := fmt.Sprintf(`node:
  id: %s
  region: %s
http:
  listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
  token: %s
data_dir: %q
forwarder:
  amqp_urls: ["amqp://guest:guest@%s/"]
  heartbeat: 2s
  dial_timeout: 2s
  reconnect_min: 100ms
  reconnect_max: 1s
  shutdown_timeout: 2s
links:
  write_rate: 1000
  write_burst: 1000
log:
  level: info
`, name, edgeRegion, linksToken, filepath.Join(n.dir, "data"), p.Addr())
	n.cfg = filepath.Join(n.dir, "clickedge.yaml")
	if err := os.WriteFile(n.cfg, []byte(cfg), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (n *linkNode) start() {
	n.w.t.Helper()
	n.e = startEdge(n.w.t, n.cfg, filepath.Join(n.dir, "edge.log"))
}

func (n *linkNode) waitFeed() {
	n.w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m, err := n.e.metrics(); err == nil && m["clickedge_catalog_feed_connected"] == 1 {
			return
		}
		if time.Now().After(deadline) {
			n.w.t.Fatalf("%s: feed not connected after 20s:\n%s", n.name, n.e.logTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var linksClient = &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (n *linkNode) admin(method, path, body string) (int, string) {
	n.w.t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.e.Admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+linksToken)
	resp, err := linksClient.Do(req)
	if err != nil {
		n.w.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// redirect returns the status and Location of /r/code.
func (n *linkNode) redirect(code string) (int, string) {
	n.w.t.Helper()
	resp, err := linksClient.Get("http://" + n.e.HTTP + "/r/" + code)
	if err != nil {
		n.w.t.Fatalf("GET /r/%s: %v", code, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

type linksCatalog struct {
	Version, Digest   string
	Links, Tombstones int
}

func (n *linkNode) catalog() linksCatalog {
	n.w.t.Helper()
	_, body := n.admin("GET", "/admin/catalog", "")
	var c linksCatalog
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		n.w.t.Fatalf("%s: /admin/catalog: %v: %s", n.name, err, body)
	}
	return c
}

// waitFor polls cond every millisecond until it holds, and returns how long
// that took; past limit it fails.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func (w *linksWorld) converged(limit time.Duration, nodes ...*linkNode) {
	w.t.Helper()
	waitFor(w.t, limit, "digests equal", func() bool {
		d := nodes[0].catalog().Digest
		for _, n := range nodes[1:] {
			if n.catalog().Digest != d {
				return false
			}
		}
		return true
	})
}

func linkBody(url string) string { return fmt.Sprintf(`{"url":%q}`, url) }

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

func TestLinks(t *testing.T) {
	w := &linksWorld{t: t, dir: t.TempDir(), node: brokertest.StartNode(t, nil)}
	// The clicks the probes below make need a queue, as in production:
	// link changes share the forwarder with clicks, and unroutable clicks
	// would pause it.
	brokertest.TempQueue(t, w.node.URL(), "clicks", "click.#")
	a, b := w.newNode("links-a"), w.newNode("links-b")
	a.start()
	b.start()
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []*linkNode{a, b} {
				if n.e != nil {
					t.Logf("%s log, last lines:\n%s", n.name, n.e.logTail(40))
				}
			}
		}
	})
	a.waitFeed()
	b.waitFeed()

	// Propagation: 100 changes, half written on each node, each timed from
	// the writer's 2xx to the other node's redirect to the new target.
	var lat []time.Duration
	for i := range 100 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		code := fmt.Sprintf("p%03d", i)
		target := fmt.Sprintf("https://t%d.example/", i)
		if st, body := from.admin("PUT", "/admin/links/"+code, linkBody(target)); st != 201 {
			t.Fatalf("PUT %s = %d %s", code, st, body)
		}
		lat = append(lat, waitFor(t, 10*time.Second, "propagation of "+code, func() bool {
			st, loc := to.redirect(code)
			return st == 302 && loc == target
		}))
	}
	p50, p99 := quantile(lat, 0.50), quantile(lat, 0.99)
	t.Logf("propagation of 100 changes through the feed: p50 %v, p99 %v, max %v", p50, p99, slices.Max(lat))
	if p99 > time.Second {
		t.Fatalf("propagation p99 %v, want <= 1s", p99)
	}

	// Deletes.
	for i := range 10 {
		code := fmt.Sprintf("p%03d", i)
		if st, _ := b.admin("DELETE", "/admin/links/"+code, ""); st != 200 {
			t.Fatalf("DELETE %s = %d", code, st)
		}
	}
	for i := range 10 {
		code := fmt.Sprintf("p%03d", i)
		waitFor(t, 5*time.Second, "delete of "+code+" on a", func() bool { st, _ := a.redirect(code); return st == 404 })
	}

	// Invalid changes are refused everywhere: through the API (422) and
	// when a rogue publisher puts one on the feed.
	if st, body := a.admin("PUT", "/admin/links/evil", `{"url":"https://x.example/","rules":[{"name":"r","when":"nope(","url":"https://y.example/"}]}`); st != 422 || !strings.Contains(body, `"field": "rules[0].when"`) {
		t.Fatalf("bad PUT = %d %s, want 422 naming rules[0].when", st, body)
	}
	rogue(t, w.node.URL(), `{"v":1,"node":"rogue","entries":[{"code":"evil","hlc":"99999999999999999","node":"rogue","link":{"code":"evil","url":"javascript:alert(1)"}},`+
		`{"code":"sentinel","hlc":"99999999999999999","node":"rogue","link":{"code":"sentinel","url":"https://s.example/"}}]}`)
	for _, n := range []*linkNode{a, b} {
		waitFor(t, 5*time.Second, n.name+" applies the valid entry beside the invalid one", func() bool { st, _ := n.redirect("sentinel"); return st == 302 })
		if st, _ := n.redirect("evil"); st != 404 {
			t.Fatalf("%s serves the invalid link: %d", n.name, st)
		}
		if m := n.e.mustMetrics(t); m[`clickedge_catalog_changes_total{result="invalid",source="feed"}`] < 1 {
			t.Fatalf("%s: invalid feed entry not counted", n.name)
		}
	}

	// Concurrent writes to one code on both nodes converge on one winner.
	var wg sync.WaitGroup
	for round := range 20 {
		for _, n := range []*linkNode{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.admin("PUT", "/admin/links/contested", linkBody(fmt.Sprintf("https://%s.example/%d", n.name, round)))
			}()
		}
	}
	wg.Wait()
	w.converged(5*time.Second, a, b)
	_, la := a.redirect("contested")
	_, lb := b.redirect("contested")
	if la != lb {
		t.Fatalf("contested code: a sends to %s, b to %s", la, lb)
	}

	// A node restarted while cut off serves its last catalog, then catches
	// up after the heal.
	a.proxy.SetMode(faultproxy.Reset)
	if code, _, ok := a.e.terminate(t); !ok || code != 0 {
		t.Fatalf("stop a = %d", code)
	}
	for i := range 5 {
		b.admin("PUT", fmt.Sprintf("/admin/links/away%d", i), linkBody(fmt.Sprintf("https://away%d.example/", i)))
	}
	b.admin("DELETE", "/admin/links/p050", "")
	a.start() // cut off: no broker
	if st, loc := a.redirect("p051"); st != 302 || loc != "https://t51.example/" {
		t.Fatalf("restarted while cut off: p051 = %d %s, want its last catalog", st, loc)
	}
	if st, _ := a.redirect("p050"); st != 302 {
		t.Fatalf("restarted while cut off: p050 = %d, want still served (its delete came later)", st)
	}
	healed := time.Now()
	a.proxy.SetMode(faultproxy.Pass)
	w.converged(10*time.Second, a, b)
	t.Logf("restarted node caught up %v after the heal", time.Since(healed))
	if st, _ := a.redirect("away4"); st != 302 {
		t.Fatal("caught-up node lacks a change made while it was away")
	}
	if st, _ := a.redirect("p050"); st != 404 {
		t.Fatal("caught-up node lacks a delete made while it was away")
	}

	// An empty node receives everything.
	c := w.newNode("links-c")
	began := time.Now()
	c.start()
	w.converged(10*time.Second, a, b, c)
	t.Logf("empty node had the full catalog (%d links, %d tombstones) %v after start", c.catalog().Links, c.catalog().Tombstones, time.Since(began))
}

// rogue publishes body to the links exchange as some other program might.
func rogue(t *testing.T, url, body string) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("links", "links", true, false, amqp.Publishing{ContentType: "application/json", Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	if !dc.Wait() {
		t.Fatal("rogue message nacked")
	}
}
