//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/internal/faultproxy"
)

// The cluster stage: a region's pool of three binaries on loopback
// (127.0.0.11-13, the default memberlist timings), its failure detection,
// its keys, its borders, and the outbox hand-off of a node stopped while
// the region is cut off from the centre.

const clusterToken = "e2e-cluster-token"

// clusterKey is a keyring file's key (32 bytes, base64).
func clusterKey(b byte) string {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// clusterEdge describes one node of the pool.
type clusterEdge struct {
	name, region, bind, keyFile, amqpURL string
	join                                 []string
	dir                                  string
}

// gossipAddr returns a free port on ip (TCP checked; the UDP port of the
// same number is practically always free as well).
func gossipAddr(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("loopback address %s unusable: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (c clusterEdge) config(t *testing.T) string {
	t.Helper()
	y := edgeConfig{NodeID: c.name, DataDir: filepath.Join(c.dir, "data-"+c.name), AMQPURL: c.amqpURL}.yaml()
	y = strings.Replace(y, "admin:\n  listen: \"127.0.0.1:0\"\n", "admin:\n  listen: \"127.0.0.1:0\"\n  token: "+clusterToken+"\n", 1)
	if c.region != "" {
		y = strings.Replace(y, "region: "+edgeRegion+"\n", "region: "+c.region+"\n", 1)
	}
	seeds, _ := json.Marshal(c.join)
	y += fmt.Sprintf("cluster:\n  bind: %q\n  join: %s\n  keyring_file: %q\n", c.bind, seeds, c.keyFile)
	p := filepath.Join(c.dir, c.name+".yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c clusterEdge) start(t *testing.T) *edgeProc {
	t.Helper()
	return startEdge(t, c.config(t), filepath.Join(logDir(t, c.dir), c.name+".log"))
}

func logDir(t *testing.T, dir string) string {
	if d := os.Getenv("E2E_LOGDIR"); d != "" {
		p := filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
		os.MkdirAll(p, 0o755)
		return p
	}
	return dir
}

type memberView struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Addr  string `json:"addr"`
	Live  struct {
		OutboxPending int64 `json:"outbox_pending"`
	} `json:"live"`
}

// view is e's GET /admin/cluster, by member name.
func view(e *edgeProc) map[string]memberView {
	req, _ := http.NewRequest("GET", "http://"+e.Admin+"/admin/cluster", nil)
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var ans struct {
		Members []memberView `json:"members"`
	}
	json.NewDecoder(resp.Body).Decode(&ans)
	out := map[string]memberView{}
	for _, m := range ans.Members {
		out[m.Name] = m
	}
	return out
}

// awaitState waits until e lists name in state, and returns how long it
// took.
func awaitState(t *testing.T, e *edgeProc, name, state string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if view(e)[name].State == state {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s is not %s within %v in its peer's view: %+v\npeer log:\n%s", name, state, limit, view(e), e.logTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The pool forms; a SIGKILLed member is dead within 15 s and alive again
// within 15 s of its restart; a node with the wrong key or of another
// region never joins; keys rotate with one node down, which is reported,
// and the node restarted from its keyring file rejoins.
func TestClusterMembership(t *testing.T) {
	dir := t.TempDir()
	keyFiles := map[string]string{}
	for _, n := range []string{"a", "b", "c"} {
		keyFiles[n] = filepath.Join(dir, n+"-keyring.json")
		os.WriteFile(keyFiles[n], []byte(`["`+clusterKey(1)+`"]`), 0o600)
	}
	broker := "amqp://guest:guest@" + gossipAddr(t, "127.0.0.1") + "/" // nothing listens: cut off
	nodes := map[string]clusterEdge{}
	seed := gossipAddr(t, "127.0.0.11")
	for i, n := range []string{"a", "b", "c"} {
		bind := seed
		if i > 0 {
			bind = gossipAddr(t, fmt.Sprintf("127.0.0.%d", 11+i))
		}
		nodes[n] = clusterEdge{name: n, bind: bind, keyFile: keyFiles[n], amqpURL: broker, join: []string{seed}, dir: dir}
	}
	a, b, c := nodes["a"].start(t), nodes["b"].start(t), nodes["c"].start(t)
	for _, n := range []string{"a", "b", "c"} {
		awaitState(t, a, n, "alive", 15*time.Second)
		awaitState(t, b, n, "alive", 15*time.Second)
	}
	h := &harnessLite{t: t}

	c.kill()
	h.note("SIGKILLed member dead in its peers' view after %v (limit 15s)", awaitState(t, a, "c", "dead", 15*time.Second))
	c = nodes["c"].start(t)
	h.note("restarted member alive again after %v (limit 15s)", awaitState(t, a, "c", "alive", 15*time.Second))

	// Another key, same region: refused.
	badKey := filepath.Join(dir, "bad-keyring.json")
	os.WriteFile(badKey, []byte(`["`+clusterKey(99)+`"]`), 0o600)
	x := clusterEdge{name: "x", bind: gossipAddr(t, "127.0.0.14"), keyFile: badKey, amqpURL: broker, join: []string{seed}, dir: dir}.start(t)
	// Same key, another region: refused by the pool label.
	y := clusterEdge{name: "y", region: "other", bind: gossipAddr(t, "127.0.0.15"), keyFile: keyFiles["a"], amqpURL: broker, join: []string{seed}, dir: dir}.start(t)
	time.Sleep(3 * time.Second) // several join attempts and gossip rounds
	for _, name := range []string{"x", "y"} {
		if m, ok := view(a)[name]; ok {
			t.Errorf("the pool lists %s (%s): wrong key or region let in", name, m.State)
		}
	}
	if v := view(x); len(v) != 1 {
		t.Errorf("the wrong-key node sees %d members, want itself only", len(v))
	}
	if v := view(y); len(v) != 1 {
		t.Errorf("the other region's node sees %d members, want itself only", len(v))
	}
	x.kill()
	y.kill()

	// Rotation with c down.
	newKey := clusterKey(50)
	keys := func(args ...string) (int, string) {
		return runTool(t, time.Minute, append(append([]string{"cluster", "keys"}, args...), "-admin", a.Admin, "-token", clusterToken)...)
	}
	c.kill()
	awaitState(t, a, "c", "dead", 15*time.Second)
	if code, out := keys("install", newKey); code != 1 || !strings.Contains(out, "member c failed") {
		t.Fatalf("keys install with c down = %d, want 1 naming c:\n%s", code, out)
	}
	c = nodes["c"].start(t)
	awaitState(t, a, "c", "alive", 15*time.Second)
	for _, step := range [][]string{{"install", newKey}, {"use", newKey}, {"remove", clusterKey(1)}} {
		if code, out := keys(step...); code != 0 {
			t.Fatalf("keys %s with every member up = %d:\n%s", step[0], code, out)
		}
	}
	for n, f := range keyFiles {
		b, _ := os.ReadFile(f)
		if !strings.Contains(string(b), newKey) || strings.Contains(string(b), clusterKey(1)) {
			t.Errorf("%s's keyring file after rotation: %s", n, b)
		}
	}
	c.kill()
	awaitState(t, a, "c", "dead", 15*time.Second)
	c = nodes["c"].start(t)
	h.note("after the rotation, restarted c alive again after %v", awaitState(t, b, "c", "alive", 15*time.Second))
	// keys list asks a, whose view may lag b's by a gossip round.
	awaitState(t, a, "c", "alive", 15*time.Second)
	if code, out := keys("list"); code != 0 || !strings.Contains(out, "3/3") {
		t.Errorf("keys list = %d:\n%s", code, out)
	}
}

// harnessLite logs notes for scenarios without the broker harness.
type harnessLite struct{ t *testing.T }

func (h *harnessLite) note(format string, args ...any) { h.t.Logf(format, args...) }

// Hand-off with lost = 0: the region is cut off from the broker while
// node c answers clicks; c is stopped (SIGTERM) during the partition and
// hands its outbox to a and b, exiting 0 with nothing pending; after the
// heal every answered click arrives.
func TestClusterHandoff(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "keyring.json")
	os.WriteFile(key, []byte(`["`+clusterKey(7)+`"]`), 0o600)
	seed := gossipAddr(t, "127.0.0.11")
	var edges []*edgeProc
	for i, n := range []string{"a", "b", "c"} {
		bind := seed
		if i > 0 {
			bind = gossipAddr(t, fmt.Sprintf("127.0.0.%d", 11+i))
		}
		e := clusterEdge{name: n, bind: bind, keyFile: key, amqpURL: h.cfg.AMQPURL, join: []string{seed}, dir: dir}.start(t)
		edges = append(edges, e)
	}
	a, b, c := edges[0], edges[1], edges[2]
	for _, n := range []string{"a", "b", "c"} {
		awaitState(t, a, n, "alive", 15*time.Second)
	}
	h.edge = c
	h.cur.Store(c)
	h.load.point(c.HTTP)
	h.runFor(3 * time.Second)

	f := h.beginFault("partition; c stopped during it")
	h.proxy.SetMode(faultproxy.Reset)
	h.runFor(5 * time.Second)
	h.load.point("")
	pending := c.mustMetrics(t)["clickedge_outbox_pending_records"]
	st := h.stopEdge()
	if st.Pending != 0 || st.SpillUnsent != 0 {
		t.Fatalf("c stopped with %d pending, %d spilled; want everything handed off", st.Pending, st.SpillUnsent)
	}
	var received float64
	for _, e := range []*edgeProc{a, b} {
		received += e.mustMetrics(t)[`clickedge_cluster_handoff_records_total{direction="received"}`]
	}
	h.note("c had %.0f pending at the stop; a and b received %.0f by hand-off", pending, received)
	if received < pending {
		t.Errorf("peers received %.0f records, c had %.0f pending", received, pending)
	}
	h.cur.Store(a)
	h.runFor(2 * time.Second)
	h.proxy.SetMode(faultproxy.Pass)
	h.heal(f)
	// Settle on both peers: the handed-off clicks leave through them.
	h.settle()
	for _, e := range []*edgeProc{a, b} {
		deadline := time.Now().Add(30 * time.Second)
		for e.mustMetrics(t)["clickedge_outbox_pending_records"] > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	h.central.waitQuiet(time.Second, 15*time.Second)
	h.finish("cluster hand-off during a partition", criteria{answerAll: true})
}

// catalogInfo is GET /admin/catalog.
func catalogInfo(e *edgeProc) (digest string, links int) {
	req, _ := http.NewRequest("GET", "http://"+e.Admin+"/admin/catalog", nil)
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := metricsClient.Do(req)
	if err != nil {
		return "", -1
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return "", -1
	}
	defer resp.Body.Close()
	var c struct {
		Digest string `json:"digest"`
		Links  int    `json:"links"`
	}
	json.NewDecoder(resp.Body).Decode(&c)
	return c.Digest, c.Links
}

// linkStatus is GET /admin/links/{code}'s status on e.
func linkStatus(e *edgeProc, code string) int {
	req, _ := http.NewRequest("GET", "http://"+e.Admin+"/admin/links/"+code, nil)
	req.Header.Set("Authorization", "Bearer "+clusterToken) // admin reads need it too (harden #7)
	resp, err := metricsClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func adminDo(t *testing.T, e *edgeProc, method, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+e.Admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := metricsClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Anti-entropy with the region cut off from the centre (no links feed):
// a change made on any node is served by every node within 5 s, deletes
// included, and a node started with an empty data_dir during the cut has
// the whole catalog within 10 s.
func TestClusterAntiEntropy(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "keyring.json")
	os.WriteFile(key, []byte(`["`+clusterKey(9)+`"]`), 0o600)
	seed := gossipAddr(t, "127.0.0.11")
	var edges []*edgeProc
	for i, n := range []string{"a", "b", "c"} {
		bind := seed
		if i > 0 {
			bind = gossipAddr(t, fmt.Sprintf("127.0.0.%d", 11+i))
		}
		edges = append(edges, clusterEdge{name: n, bind: bind, keyFile: key, amqpURL: h.cfg.AMQPURL, join: []string{seed}, dir: dir}.start(t))
	}
	a, b, c := edges[0], edges[1], edges[2]
	for _, n := range []string{"a", "b", "c"} {
		awaitState(t, a, n, "alive", 15*time.Second)
	}
	f := h.beginFault("region cut off from the centre")
	h.proxy.SetMode(faultproxy.Reset)
	defer func() { h.proxy.SetMode(faultproxy.Pass); h.heal(f) }()

	within := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
		h.note("%s after %v (limit %v)", what, time.Since(start).Round(time.Millisecond), limit)
	}
	for i, w := range edges {
		code := fmt.Sprintf("cut-%d", i)
		if s := adminDo(t, w, "PUT", "/admin/links/"+code, `{"url":"https://cut.example/?cid={click_id}"}`); s/100 != 2 {
			t.Fatalf("PUT %s = %d", code, s)
		}
		within(fmt.Sprintf("link written on node %d served everywhere", i), 5*time.Second, func() bool {
			return linkStatus(a, code) == 200 && linkStatus(b, code) == 200 && linkStatus(c, code) == 200
		})
	}
	if s := adminDo(t, b, "DELETE", "/admin/links/cut-0", ""); s/100 != 2 {
		t.Fatalf("DELETE = %d", s)
	}
	within("delete on b applied everywhere", 5*time.Second, func() bool {
		return linkStatus(a, "cut-0") == 404 && linkStatus(c, "cut-0") == 404
	})
	within("equal digests", 5*time.Second, func() bool {
		da, _ := catalogInfo(a)
		db, _ := catalogInfo(b)
		dc, _ := catalogInfo(c)
		return da != "" && da == db && db == dc
	})

	// A new node, empty data_dir, during the cut.
	d := clusterEdge{name: "d", bind: gossipAddr(t, "127.0.0.14"), keyFile: key, amqpURL: h.cfg.AMQPURL, join: []string{seed}, dir: dir}.start(t)
	within("empty node has the whole catalog", 10*time.Second, func() bool {
		da, _ := catalogInfo(a)
		dd, _ := catalogInfo(d)
		return dd == da && linkStatus(d, "cut-2") == 200 && linkStatus(d, "cut-0") == 404
	})
}
