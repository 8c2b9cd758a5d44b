package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/clickedge/clickedge/edge"
)

// Files of deploy/ whose metric names must be on /metrics.
const (
	deployDir      = "../../deploy"
	pendingMetrics = deployDir + "/prometheus/pending_metrics.txt"
)

var (
	promToken = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// Strings inside matchers and templates are not metric names.
	promString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// metricNames returns the clickedge_* metric names an expression uses.
// Recording-rule names (region:clickedge_...:rate5m) start with their
// level and are left out.
func metricNames(expr string) []string {
	var names []string
	for _, tok := range promToken.FindAllString(promString.ReplaceAllString(expr, `""`), -1) {
		if strings.HasPrefix(tok, "clickedge_") && !strings.Contains(tok, ":") {
			names = append(names, tok)
		}
	}
	return names
}

// usedMetrics returns every clickedge_* name the rules, alerts and
// dashboards under dir use, each with where.
func usedMetrics(t *testing.T, dir string) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(where, expr string) {
		for _, n := range metricNames(expr) {
			if !slices.Contains(used[n], where) {
				used[n] = append(used[n], where)
			}
		}
	}
	for _, f := range []string{"prometheus/rules.yml", "prometheus/alerts.yml"} {
		var rf struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				add(f+" "+r.Alert+r.Record, r.Expr)
			}
		}
	}
	dashboards, _ := filepath.Glob(filepath.Join(dir, "grafana", "*.json"))
	if len(dashboards) == 0 {
		t.Fatalf("no dashboards under %s/grafana", dir)
	}
	for _, f := range dashboards {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// Every "expr", "query" and "definition" string, wherever it is
		// (panels, rows, variables).
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
						add(filepath.Base(f), s)
					}
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(v)
	}
	return used
}

// exportedNames returns the sample names of an exposition: each family's
// name, and _bucket, _count, _sum for histograms and summaries.
func exportedNames(t *testing.T, r io.Reader) map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"], names[name+"_count"], names[name+"_sum"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_count"], names[name+"_sum"] = true, true
		}
	}
	return names
}

// readPending returns the names in pending_metrics.txt.
func readPending(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pending := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			pending[l] = true
		}
	}
	return pending
}

// metricProblems is the check: a used name must be exported or pending; a
// pending name must not be exported (the list would go stale) and, with
// its _bucket/_count/_sum forms, must be used by something.
func metricProblems(used map[string][]string, exported, pending map[string]bool) []string {
	var probs []string
	for name, where := range used {
		switch {
		case exported[name]:
		case pending[name] || pending[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")]:
		default:
			probs = append(probs, fmt.Sprintf("%s (used by %s) is not on /metrics and not in pending_metrics.txt", name, strings.Join(where, ", ")))
		}
	}
	for name := range pending {
		if exported[name] {
			probs = append(probs, fmt.Sprintf("%s is in pending_metrics.txt but /metrics exports it: remove it from the list", name))
		}
	}
	slices.Sort(probs)
	return probs
}

// startMetricsNode runs the built binary with no broker and returns its
// admin address.
func startMetricsNode(t *testing.T, extra string, env ...string) *edgeProc {
	t.Helper()
	env = append(env, "CLICKEDGE_FORWARDER_AMQP_URLS=amqp://guest:guest@127.0.0.1:1/")
	return startEdge(t, t.TempDir(), extra, env...)
}

func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestDeployMetricsExist: every metric name in deploy/prometheus and
// deploy/grafana is on a freshly started node's /metrics (before any
// traffic: series are exported from start), or listed as pending.
func TestDeployMetricsExist(t *testing.T) {
	used := usedMetrics(t, deployDir)
	if len(used) < 15 {
		t.Fatalf("found %d metric names in deploy/: the extraction is broken", len(used))
	}
	p := startMetricsNode(t, "")
	body := scrape(t, p.admin)
	exported := exportedNames(t, strings.NewReader(body))
	// The collector's names (job clickedge-collect) come from a running
	// collector's metrics listener, not from serve's.
	collected := 0
	for name := range exportedNames(t, strings.NewReader(scrapeCollector(t))) {
		if strings.HasPrefix(name, "clickedge_collect_") {
			exported[name] = true
			collected++
		}
	}
	if collected < 10 || !exported["clickedge_collect_lag_seconds"] {
		t.Errorf("the collector's /metrics has %d clickedge_collect_* names: the scrape is broken", collected)
	}
	usesCollector := false
	for name := range used {
		usesCollector = usesCollector || strings.HasPrefix(name, "clickedge_collect_")
	}
	if !usesCollector {
		t.Errorf("no clickedge_collect_* name in deploy/: the collector alerts are gone or not extracted")
	}
	for _, prob := range metricProblems(used, exported, readPending(t, pendingMetrics)) {
		t.Error(prob)
	}

	// The region label clickedge sets itself agrees with node.region.
	for _, line := range strings.Split(body, "\n") {
		if i := strings.Index(line, `region="`); i >= 0 && !strings.HasPrefix(line, "#") {
			if !strings.HasPrefix(line[i:], `region="local"`) {
				t.Errorf("series with a region label other than node.region: %s", line)
			}
		}
	}
}

// scrapeCollector runs the collector as `clickedge collect` does
// (runCollector) against a broker and a database that do not answer, and
// returns its metrics listener's /metrics: every collector metric is
// exported from start, before either connects.
func scrapeCollector(t *testing.T) string {
	t.Helper()
	cfg, err := LoadConfig("", []string{"CLICKEDGE_COLLECTOR_METRICS_LISTEN=127.0.0.1:0",
		"CLICKEDGE_COLLECTOR_DATABASE_URL=postgres://clickedge@127.0.0.1:1/clickedge?connect_timeout=1",
		"CLICKEDGE_FORWARDER_AMQP_URLS=amqp://guest:guest@127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan int, 1)
	go func() {
		done <- runCollector(ctx, cfg, newLogger(io.Discard, cfg.Log.SlogLevel()), io.Discard, func(a string) { addrc <- a })
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the collector did not stop within 30s of its context's end")
		}
	}()
	select {
	case addr := <-addrc:
		return scrape(t, addr)
	case code := <-done:
		t.Fatalf("runCollector = %d before its metrics listener listened", code)
	}
	return ""
}

// TestDeployMetricsCheckFails shows the check can fail: a dashboard copy
// with a panel on a metric nobody exports, and a pending list naming an
// exported metric, are both reported.
func TestDeployMetricsCheckFails(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(deployDir+"/prometheus")); err != nil {
		t.Fatal(err)
	}
	os.Rename(dir, dir+"-x")
	os.MkdirAll(filepath.Join(dir, "grafana"), 0o755)
	os.Rename(dir+"-x", filepath.Join(dir, "prometheus"))
	b, _ := os.ReadFile(deployDir + "/grafana/clickedge.json")
	broken := strings.Replace(string(b), "clickedge_catalog_links{", "clickedge_catalog_linkz_total{", 1)
	if broken == string(b) {
		t.Fatal("clickedge_catalog_links not in the dashboard; update this test")
	}
	os.WriteFile(filepath.Join(dir, "grafana", "clickedge.json"), []byte(broken), 0o644)
	alerts, _ := os.ReadFile(filepath.Join(dir, "prometheus", "alerts.yml"))
	brokenAlerts := strings.Replace(string(alerts), "clickedge_collect_lag_seconds{", "clickedge_collect_lagz_seconds{", 1)
	if brokenAlerts == string(alerts) {
		t.Fatal("clickedge_collect_lag_seconds not in alerts.yml; update this test")
	}
	os.WriteFile(filepath.Join(dir, "prometheus", "alerts.yml"), []byte(brokenAlerts), 0o644)

	exposition := "# TYPE clickedge_catalog_links gauge\nclickedge_catalog_links 1\n" +
		"# TYPE clickedge_outbox_pending_records gauge\nclickedge_outbox_pending_records 0\n"
	exported := exportedNames(t, strings.NewReader(exposition))
	pending := map[string]bool{"clickedge_outbox_pending_records": true}
	probs := strings.Join(metricProblems(usedMetrics(t, dir), exported, pending), "\n")
	for _, want := range []string{
		"clickedge_catalog_linkz_total (used by clickedge.json) is not on /metrics",
		"clickedge_outbox_pending_records is in pending_metrics.txt but /metrics exports it",
		"clickedge_forwarder_connected (used by prometheus/alerts.yml ClickedgeForwarderDown",
		"clickedge_collect_lagz_seconds (used by prometheus/alerts.yml ClickedgeCollectorLag) is not on /metrics",
	} {
		if !strings.Contains(probs, want) {
			t.Errorf("problems lack %q:\n%s", want, probs)
		}
	}
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`sum by (region) (rate(clickedge_http_request_duration_seconds_count{job="clickedge", code=~"5.."}[5m])) / region:clickedge_x:rate5m{l="clickedge_not_a_metric"}`)
	if want := []string{"clickedge_http_request_duration_seconds_count"}; !slices.Equal(got, want) {
		t.Errorf("metricNames = %q, want %q", got, want)
	}
}

// TestMetricsHygiene: on a fresh node no label value grows with links or
// clicks (every label of every series has a small, fixed set of values),
// and histograms export only the series they are meant to from start.
func TestMetricsHygiene(t *testing.T) {
	p := startMetricsNode(t, "")
	// Some traffic of every kind, so that label values appear.
	for _, path := range []string{"/r/tv-sale?subid=a", "/r/summer?subid=b", "/c/app-ab", "/r/nope", "/r/old-promo", "/x"} {
		resp, err := noFollow.Get("http://" + p.http + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	body := scrape(t, p.admin)
	// Prometheus's own linter: naming, units, _total on counters, help.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run scripts/ensure-tools.sh (make test does)")
	}
	lint := exec.Command(promtool, "check", "metrics")
	lint.Stdin = strings.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	fams, err := func() (map[string]*dto.MetricFamily, error) {
		pr := expfmt.NewTextParser(model.UTF8Validation)
		return pr.TextToMetricFamilies(strings.NewReader(body))
	}()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		"region": true, "route": true, "code": true, "outcome": true, "kind": true, "reason": true,
		"result": true, "version": true, "revision": true, "goversion": true,
		// bounded sets: catalog change sources, listeners, member states,
		// hand-off directions, collector tables; peer is bounded by the
		// size of a region's pool
		"source": true, "listener": true, "state": true, "direction": true, "table": true, "peer": true,
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "clickedge_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %q: not one of the bounded labels %v", name, l.GetName(), allowed)
				}
				for _, code := range []string{"tv-sale", "summer", "app-ab", "old-promo"} {
					if strings.Contains(l.GetValue(), code) {
						t.Errorf("%s{%s=%q}: a label value names a link", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
	series := len(fams["clickedge_http_request_duration_seconds"].GetMetric())
	if series > 6 {
		t.Errorf("%d request-duration series after 6 kinds of request, want only those answered", series)
	}
}

// TestHealthcheckCommand: exit 0 on a ready node, 1 when it is gone.
func TestHealthcheckCommand(t *testing.T) {
	p := startMetricsNode(t, "")
	var out, errb strings.Builder
	if code := run([]string{"healthcheck", "-url", "http://" + p.admin + "/readyz"}, &out, &errb, nil); code != 0 {
		t.Errorf("healthcheck of a ready node = %d: %s", code, errb.String())
	}
	p.stop()
	errb.Reset()
	if code := run([]string{"healthcheck", "-url", "http://" + p.admin + "/readyz", "-timeout", "1s"}, &out, &errb, nil); code != 1 {
		t.Errorf("healthcheck of a stopped node = %d, want 1", code)
	}
}

// TestStatusPageInChromium renders GET /status of a running node in
// headless Chromium (the admin token as the basic-auth password, as a
// browser would send it) and checks what a person sees. With
// CLICKEDGE_TEST_SCREENSHOT=path it also saves a screenshot.
func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/ensure-tools.sh (make test does)")
	}
	p := startMetricsNode(t, "node:\n  id: eu-central-1\n  region: eu-central\n")
	// Something pending: the forwarder has no broker.
	for range 3 {
		resp, err := noFollow.Get("http://" + p.http + "/r/tv-sale")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	url := "http://admin:secret-token@" + p.admin + "/status"
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=2000"}
	cmd := exec.Command(chromium, append(args, "--dump-dom", url)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	start := time.Now()
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	t.Logf("chromium rendered /status in %v", time.Since(start))
	s := string(dom)
	for _, want := range []string{
		`<h1 id="node">clickedge eu-central-1</h1>`, `<b id="region">eu-central</b>`,
		`<td id="pending">3</td>`, `<td id="forwarder" class="bad">disconnected</td>`,
		`id="catalog-version">`, `No cluster configured`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, s)
		}
	}
	// Without the token the browser gets the 401 page, not the status.
	noauth, _ := exec.Command(chromium, append(args, "--user-data-dir="+t.TempDir(), "--dump-dom", "http://"+p.admin+"/status")...).Output()
	if strings.Contains(string(noauth), "pending records") {
		t.Errorf("the status page rendered without the token")
	}
	if shot := os.Getenv("CLICKEDGE_TEST_SCREENSHOT"); shot != "" {
		c := exec.Command(chromium, append(args, "--window-size=1000,700", "--screenshot="+shot, url)...)
		c.Env = cmd.Env
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("screenshot: %v\n%s", err, out)
		}
	}
}

// TestStatusHooks: a feature fills the status page's members and sections
// through statusHooks (the cluster will), on a node started in-process.
func TestStatusHooks(t *testing.T) {
	cfg, err := LoadConfig("", []string{
		"CLICKEDGE_HTTP_LISTEN=127.0.0.1:0", "CLICKEDGE_ADMIN_LISTEN=127.0.0.1:0",
		"CLICKEDGE_DATA_DIR=" + t.TempDir(), "CLICKEDGE_NODE_ID=eu-central-1", "CLICKEDGE_NODE_REGION=eu-central",
		"CLICKEDGE_FORWARDER_AMQP_URLS=amqp://guest:guest@127.0.0.1:1/",
	})
	if err != nil {
		t.Fatal(err)
	}
	saved := statusHooks
	t.Cleanup(func() { statusHooks = saved })
	statusHooks = append(statusHooks, func(n *node, s *edge.Status) {
		s.Members = []edge.StatusMember{
			{Name: n.cfg.Node.ID, State: "alive", Forwarder: s.Forwarder, CatalogVersion: s.CatalogVersion},
			{Name: "eu-central-2", State: "suspect", Forwarder: "connected"},
		}
		s.Sections = append(s.Sections, edge.StatusSection{Title: "Postbacks", Rows: [][2]string{{"registered", "7"}}})
	})
	n, err := startNode(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer n.stop()
	resp, err := http.Get("http://" + n.adminLn.Addr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	for _, want := range []string{`<td>eu-central-2</td>`, `<td class="bad">suspect</td>`, `<h2>Postbacks</h2>`, `<th>registered</th><td>7</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(page, "No cluster configured") {
		t.Errorf("status page says no cluster although a hook listed members")
	}
}

// TestStatusClusterMembers: with cluster.bind set, the status page lists
// the region's pool through the cluster's status hook: two in-process
// nodes on loopback join, and each one's page shows both alive, with the
// live state each gossips (forwarder, catalog version).
func TestStatusClusterMembers(t *testing.T) {
	binds := []string{freePort(t), freePort(t)}
	var nodes []*node
	for i, id := range []string{"eu-central-1", "eu-central-2"} {
		roles := []string{"edge,postback", "edge"}[i] // each gossips its own node.roles
		cfg, err := LoadConfig("", []string{"CLICKEDGE_NODE_ROLES=" + roles,
			"CLICKEDGE_HTTP_LISTEN=127.0.0.1:0", "CLICKEDGE_ADMIN_LISTEN=127.0.0.1:0",
			"CLICKEDGE_DATA_DIR=" + t.TempDir(), "CLICKEDGE_NODE_ID=" + id, "CLICKEDGE_NODE_REGION=eu-central",
			"CLICKEDGE_FORWARDER_AMQP_URLS=amqp://guest:guest@127.0.0.1:1/",
			"CLICKEDGE_CLUSTER_BIND=" + binds[i], "CLICKEDGE_CLUSTER_JOIN=" + strings.Join(binds, ","),
		})
		if err != nil {
			t.Fatal(err)
		}
		n, err := startNode(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer n.stop()
		nodes = append(nodes, n)
	}
	page := func(n *node) string {
		resp, err := http.Get("http://" + n.adminLn.Addr().String() + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	alive := func(name string) string { return "<tr><td>" + name + "</td>" }
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range nodes {
		for {
			p := page(n)
			if strings.Count(p, `<td class="ok">alive</td>`) == 2 && strings.Contains(p, alive("eu-central-1")) && strings.Contains(p, alive("eu-central-2")) {
				if strings.Contains(p, "No cluster configured") {
					t.Errorf("%s: the page says no cluster", n.cfg.Node.ID)
				}
				// The peer's live state: no broker, so disconnected; the
				// replicated catalog's version it gossips (the store's HLC).
				if !strings.Contains(p, `alive</td><td>edge,postback</td>`) || !strings.Contains(p, `alive</td><td>edge</td>`) {
					t.Errorf("%s: members lack their roles (edge,postback and edge):\n%s", n.cfg.Node.ID, p)
				}
				if !strings.Contains(p, `<td class="bad">disconnected</td>`) {
					t.Errorf("%s: members lack the forwarder state:\n%s", n.cfg.Node.ID, p)
				}
				if v := fmt.Sprint(n.lk.store.Version()); !strings.Contains(p, fmt.Sprintf("<td>%s</td>", v)) {
					t.Errorf("%s: members lack the catalog version %s:\n%s", n.cfg.Node.ID, v, p)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the status page does not list both members alive within 15s:\n%s", n.cfg.Node.ID, p)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
