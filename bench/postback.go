package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/postback"
)

// The postback benchmark: signed postbacks per second at sync durability,
// against the redirect path of the same node in the same run. One
// clickedge with both roles, its forwarder cut off (every record stays in
// the outbox, as in the redirect benchmarks' sync-cutoff scenario), so the
// figures are the node and its disk, not the broker. Every postback is a
// new order (a new action, one record and one index entry), signed with
// HMAC-SHA256 by the generator as an advertiser would.

const (
	benchAdv    = "bench"
	benchSecret = "bench-secret-0123456789abcdef"
)

// PostbackResult is one run of `bench postback`.
type PostbackResult struct {
	Date        string  `json:"date"`
	Commit      string  `json:"commit,omitempty"`
	CPUs        int     `json:"cpus"`
	ServerCPUs  string  `json:"server_cpus"`
	LoadgenCPUs string  `json:"loadgen_cpus"`
	Workers     int     `json:"workers"`
	Duration    float64 `json:"duration_s"`
	Rate        int     `json:"rate"`
	Capacity    PBPair  `json:"capacity"` // closed model
	Latency     PBPair  `json:"latency"`  // open model at Rate
	Registered  float64 `json:"registered"`
	Appended    uint64  `json:"outbox_appended"`
	// Forwarding is true when the node forwarded to a broker (-amqp);
	// then Delivered counts the actions and clicks that reached its queues.
	Forwarding bool       `json:"forwarding"`
	Delivered  *[2]int64  `json:"delivered_actions_clicks,omitempty"`
	Problems   []string   `json:"problems,omitempty"`
	LoadAvg    [3]float64 `json:"load_avg_before"`
}

// PBPair is the same load against /postback and /r/.
type PBPair struct {
	Postback LoadResult `json:"postback"`
	Redirect LoadResult `json:"redirect"`
}

func cmdPostback(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := fs.Duration("d", 10*time.Second, "length of each run")
	workers := fs.Int("workers", 256, "closed-model connections")
	rate := fs.Int("rate", 1000, "open-model rate (requests/s) for the latency runs")
	pin := fs.String("pin", "split", "split (server on the last CPU with GOMAXPROCS=2, generator on the others) or none")
	bin := fs.String("clickedge", "", "clickedge binary; default: built from ./cmd/clickedge")
	out := fs.String("out", "", "also write the JSON result to this `file`")
	amqpURL := fs.String("amqp", "", "forward to this broker `URL` (queues declared for both kinds, every answered request checked there); default: forwarder cut off")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	r, err := runPostbackBench(*d, *workers, *rate, *pin, *bin, *amqpURL, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bench postback: %v\n", err)
		return 1
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	fmt.Fprintf(stdout, "%s\n", b)
	if *out != "" {
		os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	fmt.Fprint(stderr, postbackTable(r))
	if len(r.Problems) > 0 {
		return 1
	}
	return 0
}

func runPostbackBench(d time.Duration, workers, rate int, pin, bin, amqpURL string, logw io.Writer) (*PostbackResult, error) {
	r := &PostbackResult{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Workers: workers,
		Duration: d.Seconds(), Rate: rate, LoadAvg: loadAvg(), Commit: gitCommit()}
	dir, err := os.MkdirTemp("", "clickedge-bench-postback-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		if bin, err = buildClickedge(dir); err != nil {
			return nil, err
		}
	}
	procs := 0
	if pin == "split" {
		n := runtime.NumCPU()
		if n < 2 {
			return nil, fmt.Errorf("-pin split needs 2 CPUs")
		}
		r.ServerCPUs, r.LoadgenCPUs, procs = strconv.Itoa(n-1), "0", 2
		if n > 2 {
			r.LoadgenCPUs = "0-" + strconv.Itoa(n-2)
		}
		if err := pinSelf(r.LoadgenCPUs); err != nil {
			return nil, err
		}
	}
	public, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	broker := "amqp://guest:guest@127.0.0.1:1/" // nothing listens: cut off
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	actionsQ, clicksQ := "bench-actions-"+suffix, "bench-clicks-"+suffix
	if amqpURL != "" {
		broker, r.Forwarding = amqpURL, true
	}
	cfg, err := writeEdgeConfig(dir, edgeSpec{durability: "sync", amqpURL: broker, exchange: "clicks", region: "bench"}, public, admin)
	if err != nil {
		return nil, err
	}
	advs := fmt.Sprintf("- {id: %s, secret: %s}\n", benchAdv, benchSecret)
	if err := os.WriteFile(filepath.Join(dir, "advertisers.yaml"), []byte(advs), 0o644); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "postback:\n  advertisers: advertisers.yaml\n")
	if r.Forwarding {
		// Queues for both kinds, so that nothing is unroutable. The keys
		// forwarder.declare_queue and postback.declare_queue come after
		// the sections writeEdgeConfig wrote: YAML refuses a second
		// "forwarder:", so the click queue goes through the environment.
		fmt.Fprintf(f, "  declare_queue: %s\n", actionsQ)
	}
	f.Close()
	var env []string
	if r.Forwarding {
		env = append(env, "CLICKEDGE_FORWARDER_DECLARE_QUEUE="+clicksQ, "CLICKEDGE_FORWARDER_QUEUE_TYPE=classic")
		defer deleteQueues(amqpURL, actionsQ, clicksQ)
	}
	p, err := startProc(procSpec{name: "clickedge", argv: []string{bin, "serve", "-config", cfg}, env: env, cpus: r.ServerCPUs, procs: procs,
		readyURL: "http://" + admin + "/readyz", logFile: filepath.Join(dir, "clickedge.log")})
	if err != nil {
		return nil, err
	}
	defer p.stop(30 * time.Second)

	logf := func(format string, args ...any) {
		fmt.Fprintf(logw, "%s bench postback: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	// Latency first, on a small outbox; then capacity, which fills it.
	gen := newPostbackGen(public)
	logf("latency: postback at %d/s, %v", rate, d)
	r.Latency.Postback = openPostbacks(public, gen, rate, d)
	logf("latency: redirect at %d/s, %v", rate, d)
	r.Latency.Redirect = openLoad(public, openOpts{rate: rate, d: d, conns: 64, client: clientFast})
	logf("capacity: postback, %d connections, %v", workers, d)
	r.Capacity.Postback = closedPostbacks(public, gen, workers, d)
	logf("capacity: redirect, %d connections, %v", workers, d)
	r.Capacity.Redirect = closedLoad(public, clientFast, workers, d)

	m, err := scrape(admin, "clickedge_postbacks_total")
	if err != nil {
		return nil, err
	}
	r.Registered = m[`clickedge_postbacks_total{result="registered"}`]
	st, err := outboxStatus(admin)
	if err != nil {
		return nil, err
	}
	if st.Counters == nil {
		return nil, fmt.Errorf("GET /admin/outbox: no counters (not a live node?)")
	}
	r.Appended = st.Counters.Appended
	answered := r.Capacity.Postback.Answered + r.Latency.Postback.Answered
	if int64(r.Registered) != answered {
		r.Problems = append(r.Problems, fmt.Sprintf("%d postbacks answered 200 but %v registered", answered, r.Registered))
	}
	if clicks := r.Capacity.Redirect.Answered + r.Latency.Redirect.Answered; st.Counters.Appended != uint64(answered+clicks) {
		r.Problems = append(r.Problems, fmt.Sprintf("outbox appended %d records for %d postbacks and %d clicks answered",
			st.Counters.Appended, answered, clicks))
	}
	if r.Forwarding {
		clicks := r.Capacity.Redirect.Answered + r.Latency.Redirect.Answered
		logf("waiting for the outbox to drain")
		deadline := time.Now().Add(3 * time.Minute)
		for {
			st, err := outboxStatus(admin)
			if err == nil && st.Pending.Count == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		na, nc, err := queueDepths(amqpURL, actionsQ, clicksQ)
		if err != nil {
			return nil, err
		}
		r.Delivered = &[2]int64{na, nc}
		// At least once: fewer messages than answers is a loss. More are
		// duplicates (a republish) or requests committed whose answer the
		// generator did not count; the result keeps both counts.
		if na < answered || nc < clicks {
			r.Problems = append(r.Problems, fmt.Sprintf("the queues hold %d actions and %d clicks for %d postbacks and %d clicks answered",
				na, nc, answered, clicks))
		}
	}
	for _, lr := range []LoadResult{r.Capacity.Postback, r.Latency.Postback} {
		if lr.Errors > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%d postbacks not answered 200 (e.g. %v)", lr.Errors, lr.ErrorSample))
		}
	}
	return r, nil
}

// postbackGen makes signed postbacks for new orders.
type postbackGen struct {
	addr  string
	click string
	next  atomic.Int64
}

func newPostbackGen(addr string) *postbackGen {
	return &postbackGen{addr: addr, click: clickid.NewAt(time.Now().Add(-time.Minute)).String()}
}

// uri returns the next postback's request URI.
func (g *postbackGen) uri() string {
	n := g.next.Add(1)
	q := postback.SignedQuery([]byte(benchSecret), postback.Params{
		{Key: "adv", Value: benchAdv}, {Key: "click_id", Value: g.click}, {Key: "order_id", Value: "bench-" + strconv.FormatInt(n, 10)},
		{Key: "amount", Value: "12.50"}, {Key: "currency", Value: "EUR"}, {Key: "ts", Value: strconv.FormatInt(time.Now().Unix(), 10)},
	})
	return "http://" + g.addr + "/postback?" + q
}

// postbackWorker is fastWorker for postbacks: a new signed URI each time.
func postbackWorker(hc *fasthttp.HostClient, g *postbackGen, c *collector, next func() (time.Time, bool)) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodGet)
	for {
		due, ok := next()
		if !ok {
			return
		}
		req.SetRequestURI(g.uri())
		sent := time.Now()
		err := hc.Do(req, resp)
		end := time.Now()
		if err != nil {
			c.add(due, sent, end, 0, err.Error())
			continue
		}
		errText := ""
		if resp.StatusCode() != http.StatusOK {
			errText = string(resp.Body())
		}
		c.add(due, sent, end, resp.StatusCode(), errText)
	}
}

func closedPostbacks(addr string, g *postbackGen, workers int, d time.Duration) LoadResult {
	hc := fastClient(addr, workers)
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(d)
	next := func() (time.Time, bool) { return time.Time{}, time.Now().Before(deadline) }
	cs := make([]*collector, workers)
	var wg sync.WaitGroup
	for w := range cs {
		cs[w] = newCollector("closed", http.StatusOK, 0, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			postbackWorker(hc, g, cs[w], next)
		}()
	}
	wg.Wait()
	r := mergePostbacks("closed", cs)
	r.Client, r.Workers = clientFast, workers
	return r
}

func openPostbacks(addr string, g *postbackGen, rate int, d time.Duration) LoadResult {
	const conns = 64
	hc := fastClient(addr, conns)
	defer hc.CloseIdleConnections()
	queue := make(chan time.Time, 1<<16)
	next := func() (time.Time, bool) {
		t, ok := <-queue
		return t, ok
	}
	cs := make([]*collector, conns)
	var wg sync.WaitGroup
	for w := range cs {
		cs[w] = newCollector("open", http.StatusOK, 0, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			postbackWorker(hc, g, cs[w], next)
		}()
	}
	pace(queue, rate, d, nil)
	close(queue)
	wg.Wait()
	r := mergePostbacks("open", cs)
	r.Client, r.Rate, r.Workers = clientFast, rate, conns
	return r
}

func mergePostbacks(model string, cs []*collector) LoadResult {
	all := newCollector(model, http.StatusOK, 0, nil)
	for _, c := range cs {
		all.merge(c)
	}
	return all.result()
}

func postbackTable(r *PostbackResult) string {
	ms := func(us float64) string { return fmt.Sprintf("%.2f", us/1000) }
	fwd := "forwarder cut off"
	if r.Forwarding {
		fwd = "forwarding to the broker"
		if r.Delivered != nil {
			fwd += fmt.Sprintf(" (queues: %d actions, %d clicks)", r.Delivered[0], r.Delivered[1])
		}
	}
	s := fmt.Sprintf("\n%s, %d CPUs (server %q, generator %q), sync durability, %s\n\n", r.Date, r.CPUs, r.ServerCPUs, r.LoadgenCPUs, fwd)
	s += "| run | path | answered/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |\n|---|---|---|---|---|---|---|---|\n"
	row := func(run, path string, l LoadResult) {
		s += fmt.Sprintf("| %s | %s | %.0f | %s | %s | %s | %s | %d |\n", run, path, l.Throughput,
			ms(l.Latency.P50), ms(l.Latency.P99), ms(l.Latency.P999), ms(l.Latency.Max), l.Errors)
	}
	row(fmt.Sprintf("capacity, %d connections", r.Workers), "/postback (signed)", r.Capacity.Postback)
	row(fmt.Sprintf("capacity, %d connections", r.Workers), "/r/tv-sale", r.Capacity.Redirect)
	row(fmt.Sprintf("latency, %d/s offered", r.Rate), "/postback (signed)", r.Latency.Postback)
	row(fmt.Sprintf("latency, %d/s offered", r.Rate), "/r/tv-sale", r.Latency.Redirect)
	for _, p := range r.Problems {
		s += "\nPROBLEM: " + p + "\n"
	}
	return s
}

// queueDepths returns the ready messages of two queues.
func queueDepths(url, a, b string) (int64, int64, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	qa, err := ch.QueueDeclarePassive(a, true, false, false, false, amqp.Table{"x-queue-type": "classic"})
	if err != nil {
		return 0, 0, fmt.Errorf("queue %s: %w", a, err)
	}
	ch2, err := conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	qb, err := ch2.QueueDeclarePassive(b, true, false, false, false, amqp.Table{"x-queue-type": "classic"})
	if err != nil {
		return 0, 0, fmt.Errorf("queue %s: %w", b, err)
	}
	return int64(qa.Messages), int64(qb.Messages), nil
}

func deleteQueues(url string, names ...string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		for _, n := range names {
			ch.QueueDelete(n, false, false, false)
		}
	}
}
