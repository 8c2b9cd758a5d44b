package main

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/catalog"
)

// TestMain lets the test binary stand in for the bench binary when the
// bench starts its children (bare, direct, linkcache) as os.Executable.
func TestMain(m *testing.M) {
	if os.Getenv("BENCH_CHILD") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestStatOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want Stat
	}{
		{nil, Stat{}},
		{[]float64{3}, Stat{Median: 3, Min: 3, Max: 3, N: 1}},
		{[]float64{5, 1, 3}, Stat{Median: 3, Min: 1, Max: 5, N: 3}},
		{[]float64{4, 1, 3, 2}, Stat{Median: 2.5, Min: 1, Max: 4, N: 4}},
	}
	for _, tt := range tests {
		if got := statOf(tt.in); got != tt.want {
			t.Errorf("statOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	if got := (Stat{Median: 10, Min: 9, Max: 12}).Spread(); got != 0.3 {
		t.Errorf("Spread = %v, want 0.3", got)
	}
}

// The open model measures from the due time: a request that waited 5 ms
// for a connection and took 1 ms is a 6 ms request.
func TestCollectorChargesWaitFromDueTime(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCollector("open", http.StatusFound, 2, func(due time.Time) int {
		if due.Before(t0.Add(time.Second)) {
			return 0
		}
		return 1
	})
	c.add(t0, t0.Add(5*time.Millisecond), t0.Add(6*time.Millisecond), 302, "")
	c.add(t0.Add(2*time.Second), t0.Add(2*time.Second), t0.Add(2*time.Second+time.Millisecond), 302, "")
	c.add(t0.Add(3*time.Second), t0.Add(3*time.Second), t0.Add(3*time.Second), 0, "connection reset")
	c.add(t0.Add(3*time.Second), t0.Add(3*time.Second), t0.Add(3*time.Second), 503, "")
	r := c.result()
	if r.Requests != 4 || r.Answered != 2 || r.Errors != 2 {
		t.Fatalf("requests/answered/errors = %d/%d/%d, want 4/2/2", r.Requests, r.Answered, r.Errors)
	}
	if got, want := r.ErrorSample, []string{"connection reset", "status 503"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ErrorSample = %q, want %q", got, want)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.001 }
	if !near(r.Latency.Max, 6000) {
		t.Errorf("Latency.Max = %v µs, want 6000 (due to end)", r.Latency.Max)
	}
	if !near(r.Wait.Max, 5000) {
		t.Errorf("Wait.Max = %v µs, want 5000 (due to sent)", r.Wait.Max)
	}
	if len(r.Phases) != 2 || r.Phases[0].Count != 1 || r.Phases[1].Count != 1 || !near(r.Phases[0].Max, 6000) {
		t.Errorf("Phases = %+v, want one 6 ms request in phase 0 and one in phase 1", r.Phases)
	}
	if !near(r.Duration, 3) {
		t.Errorf("Duration = %v s, want 3 (first due to last end)", r.Duration)
	}

	closed := newCollector("closed", http.StatusFound, 0, nil)
	closed.add(time.Time{}, t0, t0.Add(2*time.Millisecond), 302, "")
	if got := closed.result().Latency.Max; !near(got, 2000) {
		t.Errorf("closed Latency.Max = %v µs, want 2000 (sent to end)", got)
	}
}

func TestCollectorMerge(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := newCollector("closed", http.StatusFound, 0, nil)
	b := newCollector("closed", http.StatusFound, 0, nil)
	a.add(time.Time{}, t0, t0.Add(time.Millisecond), 302, "")
	b.add(time.Time{}, t0.Add(time.Second), t0.Add(time.Second+3*time.Millisecond), 302, "")
	b.add(time.Time{}, t0, t0, 0, "boom")
	all := newCollector("closed", http.StatusFound, 0, nil)
	all.merge(a)
	all.merge(b)
	r := all.result()
	if r.Requests != 3 || r.Answered != 2 || r.Errors != 1 || r.Latency.Count != 2 {
		t.Fatalf("merged %+v, want 3 requests, 2 answered, 1 error", r)
	}
	if math.Abs(r.Throughput-2/1.003) > 1e-6 {
		t.Errorf("Throughput = %v, want %v", r.Throughput, 2/1.003)
	}
}

func TestPaceQueuesTheSchedule(t *testing.T) {
	q := make(chan time.Time, 1000)
	start := time.Now()
	pace(q, 1000, 50*time.Millisecond, nil)
	close(q)
	var due []time.Time
	for d := range q {
		due = append(due, d)
	}
	if len(due) != 50 {
		t.Fatalf("pace queued %d requests for 50 ms at 1000/s, want 50", len(due))
	}
	if due[0].Before(start) {
		t.Errorf("first due time %v is before pace was called (%v)", due[0], start)
	}
	for i := 1; i < len(due); i++ {
		if got := due[i].Sub(due[i-1]); got != time.Millisecond {
			t.Fatalf("due[%d]-due[%d] = %v, want 1ms: due times come from the schedule, not the clock", i, i-1, got)
		}
	}

	stop := make(chan struct{})
	close(stop)
	q2 := make(chan time.Time, 10)
	pace(q2, 1000, 0, stop) // returns at once
	if len(q2) > 1 {
		t.Errorf("pace after stop queued %d, want at most 1", len(q2))
	}
}

func TestBareHandler(t *testing.T) {
	w := httptest.NewRecorder()
	bareHandler().ServeHTTP(w, httptest.NewRequest("GET", clickPath, nil))
	if w.Code != http.StatusFound || w.Header().Get("Location") != bareLocation || w.Body.Len() != 0 {
		t.Fatalf("bare: %d %q body %d bytes, want 302 %q and no body", w.Code, w.Header().Get("Location"), w.Body.Len(), bareLocation)
	}
}

// Both load models against a real listener, briefly.
func TestLoadModels(t *testing.T) {
	srv := httptest.NewServer(bareHandler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, client := range []string{clientFast, clientVegeta} {
		r := closedLoad(addr, client, 4, 200*time.Millisecond)
		if r.Answered == 0 || r.Errors != 0 || r.Client != client {
			t.Errorf("closedLoad(%s) = %d answered, %d errors %v, client %q; want some, none", client, r.Answered, r.Errors, r.ErrorSample, r.Client)
		}
		o := openLoad(addr, openOpts{rate: 500, d: 200 * time.Millisecond, conns: 8, client: client})
		// 100 are due; vegeta's pacer may fall a few behind (more so
		// under the race detector) and stops at the deadline.
		if o.Answered < 85 || o.Answered > 101 || o.Errors != 0 {
			t.Errorf("openLoad(%s) 500/s for 200ms = %d answered, %d errors %v; want about 100, none", client, o.Answered, o.Errors, o.ErrorSample)
		}
		if o.Latency.Count != o.Answered || o.Latency.P50 <= 0 {
			t.Errorf("openLoad(%s) latency %+v, want one sample per answer", client, o.Latency)
		}
	}
	// A 404 is not an answered click.
	r := closedLoad(strings.TrimPrefix(httptest.NewServer(http.NotFoundHandler()).URL, "http://"), clientFast, 1, 50*time.Millisecond)
	if r.Answered != 0 || r.Errors == 0 || r.ErrorSample[0] != "status 404" {
		t.Errorf("closedLoad(404 server) = %d answered, errors %v; want none answered, status 404", r.Answered, r.ErrorSample)
	}
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP clickedge_clicks_total Clicks.
# TYPE clickedge_clicks_total counter
clickedge_clicks_total{outcome="dropped"} 0
clickedge_clicks_total{outcome="recorded"} 12580
clickedge_clicks_total{outcome="spilled"} 3
clickedge_outbox_pending_records 7
`
	m, err := parseMetrics(strings.NewReader(in), "clickedge_clicks_total")
	if err != nil {
		t.Fatal(err)
	}
	if got := m[`clickedge_clicks_total{outcome="recorded"}`]; got != 12580 {
		t.Errorf("recorded = %v, want 12580", got)
	}
	if got := m[`clickedge_clicks_total{outcome="spilled"}`]; got != 3 {
		t.Errorf("spilled = %v, want 3", got)
	}
	if _, ok := m["clickedge_outbox_pending_records"]; ok || len(m) != 3 {
		t.Errorf("parseMetrics kept %v, want only the three clicks_total samples", m)
	}
}

func TestAMQPHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amqp://guest:guest@127.0.0.1:5672/", "127.0.0.1:5672"},
		{"amqp://127.0.0.1:5673", "127.0.0.1:5673"},
		{"amqp://user:p@ss@broker/vhost", "broker:5672"},
	}
	for _, tt := range tests {
		if got, err := amqpHost(tt.in); err != nil || got != tt.want {
			t.Errorf("amqpHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := amqpHost("amqp:///"); err == nil {
		t.Errorf("amqpHost(amqp:///) = nil error, want one")
	}
}

func TestPeakRate(t *testing.T) {
	var s []DrainSample
	for i := range 13 {
		// 1000/s, except 4000/s between t=1 and t=2.
		c := uint64(i) * 250
		if i > 4 {
			c += uint64(min(i-4, 4)) * 750
		}
		s = append(s, DrainSample{T: float64(i) * 0.25, Confirmed: c})
	}
	if got := peakRate(s, 0, 3); math.Abs(got-4000) > 1 {
		t.Errorf("peakRate = %v, want 4000", got)
	}
	if got := peakRate(s[:3], 0, 0.5); math.Abs(got-1000) > 1 {
		t.Errorf("peakRate over half a second = %v, want 1000", got)
	}
	if got := peakRate(s[:1], 0, 1); got != 0 {
		t.Errorf("peakRate of one sample = %v, want 0", got)
	}
}

func TestWriteCatalogParses(t *testing.T) {
	var buf, js bytes.Buffer
	if err := writeCatalog(&buf, 100, "yaml"); err != nil {
		t.Fatal(err)
	}
	if err := writeCatalog(&js, 100, "json"); err != nil {
		t.Fatal(err)
	}
	cj, err := catalog.Parse("generated.json", js.Bytes())
	if err != nil {
		t.Fatalf("Parse(generated JSON) = %v", err)
	}
	c, err := catalog.Parse("generated.yaml", buf.Bytes())
	if err != nil {
		t.Fatalf("Parse(generated) = %v", err)
	}
	if c.Len() != 100 {
		t.Fatalf("Len = %d, want 100", c.Len())
	}
	tests := []struct {
		i      int
		rules  int
		paused bool
	}{{0, 0, false}, {7, 1, false}, {8, 1, false}, {9, 0, true}, {99, 0, true}}
	if cj.Len() != c.Len() {
		t.Fatalf("JSON Len = %d, YAML %d", cj.Len(), c.Len())
	}
	for l := range c.Links() {
		j := cj.Lookup(l.Code)
		if j == nil || j.URL().String() != l.URL().String() || len(j.Rules) != len(l.Rules) || j.Paused() != l.Paused() ||
			strings.Join(j.Params, ",") != strings.Join(l.Params, ",") {
			t.Fatalf("link %s: the JSON form differs from the YAML form", l.Code)
		}
	}
	for _, tt := range tests {
		l := c.Lookup(linkCode(tt.i))
		if l == nil {
			t.Fatalf("Lookup(linkCode(%d)) = nil", tt.i)
		}
		if len(l.Rules) != tt.rules || l.Paused() != tt.paused {
			t.Errorf("link %d: %d rules, paused %v; want %d, %v", tt.i, len(l.Rules), l.Paused(), tt.rules, tt.paused)
		}
	}
	seen := map[string]bool{}
	for i := range 100_000 {
		code := linkCode(i)
		if seen[code] || len(code) < 7 {
			t.Fatalf("linkCode(%d) = %q: repeated or short", i, code)
		}
		seen[code] = true
	}
}

// syntheticResults is a small run, enough for every table and chart.
func syntheticResults() *Results {
	r := &Results{Date: "2026-11-27", Mode: "full", Command: "go run ./bench", Plan: fullPlan}
	r.Machine = Machine{NumCPU: 2, CPUModel: "Test CPU", RabbitMQ: "3.10.8"}
	rps := map[string]float64{"bare": 80000, "sync-cutoff": 36000, "async-cutoff": 76000, "direct": 2000}
	for rep := 1; rep <= 3; rep++ {
		for _, sc := range []string{"bare", "sync-cutoff", "async-cutoff", "direct"} {
			x := rps[sc] * (1 + float64(rep-2)/100)
			r.Capacity = append(r.Capacity, CapacityRun{Scenario: sc, Rep: rep,
				Load:     LoadResult{Throughput: x, Latency: Percentiles{P99: 3000}},
				Delivery: Delivery{OK: true}, CPU: CPUUse{Server: 0.95}})
		}
		r.Disk = append(r.Disk, DiskRun{Phase: "latency", Rep: rep, N: 100, Sync: Percentiles{P50: 150, P99: 400}})
		rps64 := map[string]float64{"bare": 38000, "sync-cutoff": 32000, "async-cutoff": 36000, "sync-broker": 20000, "seed": 1500}
		p99 := map[string]float64{"sync-broker": 5000, "seed": 60000}
		for _, sc := range []string{"bare", "sync-cutoff", "async-cutoff", "sync-broker", "seed"} {
			run := CapacityRun{Scenario: sc, Rep: rep, Load: LoadResult{Throughput: rps64[sc], Latency: Percentiles{P50: 1500, P99: p99[sc]}},
				Delivery: Delivery{OK: true}}
			if sc == "sync-broker" {
				run.BrokerPer1k = 0.05
			}
			r.Capacity64 = append(r.Capacity64, run)
		}
		for sc, p99 := range map[string]float64{"sync-cutoff": 2000, "sync-broker": 2500, "async-cutoff": 1200, "async-broker": 3000} {
			r.Latency = append(r.Latency, LatencyRun{Scenario: sc, Rep: rep, Rate: 4000,
				Load: LoadResult{Requests: 1, Throughput: 4000, Latency: Percentiles{P50: 300, P99: p99}}, Delivery: Delivery{OK: true},
				Server: &ServerLatency{P50: 200, P99: p99 / 2}})
		}
		for _, f := range []float64{0.25, 0.5} {
			r.Latency = append(r.Latency, LatencyRun{Scenario: "sync-cutoff", Rep: rep, Fraction: f, Rate: int(80000 * f),
				Load: LoadResult{Requests: 1, Throughput: 80000 * f, Latency: Percentiles{P50: 300, P99: 1500 * f * 2, P999: 4000, Max: 9000}}, Delivery: Delivery{OK: true},
				Server: &ServerLatency{P50: 280, P99: 900}})
			r.Latency = append(r.Latency, LatencyRun{Scenario: "bare", Rep: rep, Fraction: f, Rate: int(80000 * f),
				Load: LoadResult{Requests: 1, Throughput: 80000 * f, Latency: Percentiles{P50: 100, P99: 500, P999: 900, Max: 2000}}, Delivery: Delivery{OK: true}})
		}
		r.Drain = append(r.Drain, DrainRun{Rep: rep, LiveRate: 4000, Backlog: 600000, DeliveryRate: 35000, NetRate: 25000, CaughtUp: true,
			Threshold: 2048, Phases: map[string]Percentiles{"drain": {Count: 1, P99: 4000}}, Delivery: Delivery{OK: true},
			Series: []DrainSample{{T: 0, Pending: 0}, {T: 65, Pending: 600000}, {T: 90, Pending: 0}}})
		r.LinkCache = append(r.LinkCache, LinkCacheRun{Links: 1_000_000, Rep: rep, LoadS: 1.5, RSS: 250e6, HeapInuse: 200e6, LookupRandomNs: 90, LookupHotNs: 20})
		r.Micro = append(r.Micro, MicroRun{Name: "clickid.New", Rep: rep, NsPerOp: 60})
	}
	return r
}

func TestTargets(t *testing.T) {
	r := syntheticResults()
	r.summarize()
	want := map[string]bool{
		"clickedge sync RPS, forwarder cut off":                                     false, // 0.45×
		"clickedge async RPS, forwarder cut off":                                    true,  // 0.95×
		"sync p50 server latency at 50 % of bare's rate, cut off":                   true,  // 0.28 ms against 2 × 0.15
		"sync p99 at 50 % of bare's rate, cut off (server side)":                    true,  // 0.9 ms
		"sync p99 at 50 % of bare's rate, cut off (client side)":                    true,  // 1.5 ms
		"sync-cutoff at 64 connections (closed model) against bare net/http":        true,  // 0.84×
		"async-cutoff at 64 connections (closed model) against bare net/http":       false, // 0.95× against 1.0
		"sync p99 with the forwarder live against cut off, at 4000 req/s":           true,  // 1.25×
		"async p99 with the forwarder live against cut off, at 4000 req/s":          false, // 2.5×
		"sync, forwarding live, against the seed's aiohttp design (64 connections)": true,  // 13×
		"… and its p99 against the seed's":                                          true,
		"broker CPU per 1,000 clicks: sync / async forwarding, direct, seed":        true,
		"drain rate while serving 4k req/s":                                         true,
		"1M links: memory (RSS after load and GC)":                                  true,
		"1M links: load time":             true,
		"1M links: lookup (random codes)": true,
		"click_id generation time":        true,
		"click_id allocations":            true,
	}
	if len(r.Summary.Targets) != len(want) {
		t.Fatalf("%d targets, want %d", len(r.Summary.Targets), len(want))
	}
	for _, tg := range r.Summary.Targets {
		met, ok := want[tg.Measure]
		if !ok {
			t.Errorf("unexpected target %q", tg.Measure)
			continue
		}
		if tg.Met != met || tg.Missing {
			t.Errorf("%s: met %v (missing %v), want %v; shown %q", tg.Measure, tg.Met, tg.Missing, met, tg.Shown)
		}
	}
	if tg := r.Summary.Targets[0]; tg.Margin != "-44%" {
		t.Errorf("sync margin = %q, want -44%% (0.45 against 0.8)", tg.Margin)
	}

	empty := &Results{}
	empty.summarize()
	for _, tg := range empty.Summary.Targets {
		if !tg.Missing || tg.Met {
			t.Errorf("%s with nothing measured: missing %v met %v, want missing and not met", tg.Measure, tg.Missing, tg.Met)
		}
	}
}

func TestReport(t *testing.T) {
	r := syntheticResults()
	r.summarize()
	dir := t.TempDir()
	if err := writeJSON(filepath.Join(dir, "results.json"), r); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"report", "-out", dir}, &out, &errb); code != 0 {
		t.Fatalf("bench report = %d: %s", code, errb.String())
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| clickedge sync RPS, forwarder cut off | ≥ 0.8× bare | 0.45×",
		"| bare net/http 302 | 80000 |",
		"| clickedge sync, forwarder cut off | 40000 | 50% |",
		"## Backlog drain",
		"## Link cache",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	for _, f := range []string{"latency.png", "throughput.png", "drain.png"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Size() < 1000 {
			t.Errorf("chart %s: %v (size %d), want a PNG", f, err, fi.Size())
		}
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"nonsense"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("bench nonsense = %d, %q; want 2 and unknown command", code, errb.String())
	}
	if code := run([]string{"run", "-pin", "diagonal"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "-pin") {
		t.Errorf("bench run -pin diagonal = %d, %q; want 1 naming -pin", code, errb.String())
	}
	for _, f := range []string{"-lat-scenarios", "-live-scenarios", "-c64-scenarios"} {
		errb.Reset()
		if code := run([]string{"run", f, "sync-cutoff,nope"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), f+`: unknown scenario "nope"`) {
			t.Errorf("bench run %s sync-cutoff,nope = %d, %q; want 1 naming the flag and the scenario", f, code, errb.String())
		}
	}
}

var smoke = flag.Bool("smoke", false, "run TestSmoke: the bench against a real clickedge and the shared RabbitMQ (about 30 s)")

// TestSmoke runs the tool end to end, briefly: go -C bench test . -run Smoke -smoke
func TestSmoke(t *testing.T) {
	if !*smoke {
		t.Skip("needs -smoke (builds clickedge, uses the shared RabbitMQ)")
	}
	url := os.Getenv("CLICKEDGE_TEST_AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "-quick", "-out", out, "-amqp", url, "-only", "capacity,micro",
		"-scenarios", "bare,sync-cutoff,async-broker", "-cap-duration", "500ms"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("bench run = %d\n%s", code, stderr.String())
	}
	r, err := readResults(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Capacity) != 3 {
		t.Fatalf("%d capacity runs, want 3", len(r.Capacity))
	}
	for _, c := range r.Capacity {
		if !c.Delivery.OK || c.Load.Answered == 0 {
			t.Errorf("%s: answered %d, delivery %+v; want answers, all delivered", c.Scenario, c.Load.Answered, c.Delivery)
		}
		if c.Scenario != "bare" && c.Delivery.Delivered != c.Delivery.Answered {
			t.Errorf("%s: delivered %d, answered %d", c.Scenario, c.Delivery.Delivered, c.Delivery.Answered)
		}
	}
}

// With the -log scenarios measured, each sync target is read for both
// write paths, and the drain row names the broker's ceiling.
func TestTargetsWithLog(t *testing.T) {
	r := syntheticResults()
	for rep := 1; rep <= 3; rep++ {
		r.Capacity64 = append(r.Capacity64,
			CapacityRun{Scenario: "sync-cutoff-log", Rep: rep, Load: LoadResult{Throughput: 27000, Latency: Percentiles{P50: 1500, P99: 4000}}, Delivery: Delivery{OK: true}},
			CapacityRun{Scenario: "sync-broker-log", Rep: rep, Load: LoadResult{Throughput: 12000, Latency: Percentiles{P50: 1500, P99: 90000}}, Delivery: Delivery{OK: true}})
		for sc, p99 := range map[string]float64{"sync-cutoff-log": 1000, "sync-broker-log": 4000} {
			r.Latency = append(r.Latency, LatencyRun{Scenario: sc, Rep: rep, Rate: 4000,
				Load: LoadResult{Requests: 1, Throughput: 4000, Latency: Percentiles{P50: 300, P99: p99}}, Delivery: Delivery{OK: true},
				Server: &ServerLatency{P50: 200, P99: p99 / 2}})
		}
		r.Latency = append(r.Latency, LatencyRun{Scenario: "sync-cutoff-log", Rep: rep, Fraction: 0.5, Rate: 40000,
			Load: LoadResult{Requests: 1, Throughput: 40000, Latency: Percentiles{P50: 300, P99: 5000}}, Delivery: Delivery{OK: true},
			Server: &ServerLatency{P50: 250, P99: 4000}})
		r.Ceiling = append(r.Ceiling, CeilingRun{Rep: rep, Rate: 50000, Coalesced: true}, CeilingRun{Rep: rep, Rate: 30000})
	}
	r.summarize()
	want := map[string]bool{
		"sync + log p50 server latency at 50 % of bare's rate, cut off":                   true,  // 0.25 ms against 0.3
		"sync + log p99 at 50 % of bare's rate, cut off (server side)":                    false, // 4 ms
		"sync-cutoff-log at 64 connections (closed model) against bare net/http":          false, // 0.71×
		"sync/log p99 with the forwarder live against cut off, at 4000 req/s":             false, // 4×
		"sync + log, forwarding live, against the seed's aiohttp design (64 connections)": false, // 8×
	}
	seen := map[string]bool{}
	for _, tg := range r.Summary.Targets {
		seen[tg.Measure] = true
		if met, ok := want[tg.Measure]; ok && (tg.Met != met || tg.Missing) {
			t.Errorf("%s: met %v (missing %v), want %v; shown %q", tg.Measure, tg.Met, tg.Missing, met, tg.Shown)
		}
		if tg.Measure == "drain rate while serving 4k req/s" && !strings.Contains(tg.Shown, "the broker alone under a bare publisher (writes coalesced): 50.0k msg/s") {
			t.Errorf("drain row does not name the ceiling: %q", tg.Shown)
		}
	}
	for m := range want {
		if !seen[m] {
			t.Errorf("no target %q", m)
		}
	}
	if n := strings.Count(fmt.Sprint(r.Summary.Targets), "broker CPU per 1,000"); n != 1 {
		t.Errorf("the broker CPU row appears %d times, want once", n)
	}
}

// The disk probe reports its CPU per write and fdatasync: some, and never
// more than the wall time the pairs took (one thread).
func TestProbeDiskCPU(t *testing.T) {
	const n = 300
	start := time.Now()
	p, cpu, err := probeDisk(t.TempDir(), n)
	wall := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != n || p.P50 <= 0 {
		t.Fatalf("latency %+v, want %d samples", p, n)
	}
	perPair := float64(wall.Microseconds()) / n
	if cpu <= 0 || cpu > perPair*1.05 {
		t.Fatalf("CPU %.1f µs per pair, want above 0 and at most the %.1f µs each took", cpu, perPair)
	}
	t.Logf("p50 %.0f µs, CPU %.1f µs per write and fdatasync", p.P50, cpu)
}
