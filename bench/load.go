package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/valyala/fasthttp"
)

// The request every scenario answers: a browser click on a link with rules
// that are evaluated to the end, two recorded parameters and one ignored.
const (
	clickPath = "/r/tv-sale?subid=aff42&utm_campaign=spring&gclid=abc"
	browserUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)

// Load-generator clients. Both never follow redirects and keep their
// connections alive.
//
// fasthttp is the default: on this machine the load generator has one core,
// and vegeta's attacker, which sends through net/http's client and
// allocates a request and a result per hit, saturates that core at a
// fraction of what a bare net/http server on the other core answers (the
// results' "loadgen" section measures both). A generator that saturates
// first squeezes every ratio towards 1 and turns its own lateness into
// latency. vegeta stays selectable (-client vegeta) to show exactly that.
const (
	clientFast   = "fasthttp"
	clientVegeta = "vegeta"
)

// Histogram range: 1 µs to 60 s in nanoseconds, 3 significant digits.
const (
	histMin = int64(time.Microsecond)
	histMax = int64(60 * time.Second)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }

func record(h *hdrhistogram.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(int64(d), histMin), histMax))
}

// LoadResult is what one load run saw.
type LoadResult struct {
	Model       string   `json:"model"` // "open" or "closed"
	Client      string   `json:"client"`
	Rate        int      `json:"rate,omitempty"`    // offered requests/s (open model)
	Workers     int      `json:"workers,omitempty"` // connections
	Duration    float64  `json:"duration_s"`        // first request sent (or due) to last answer
	Requests    int64    `json:"requests"`          // sent
	Answered    int64    `json:"answered"`          // answered with the expected status
	Errors      int64    `json:"errors"`            // anything else: transport errors, other statuses
	ErrorSample []string `json:"error_sample,omitempty"`
	// Throughput is answered requests per second.
	Throughput float64 `json:"throughput"`
	// Latency: in the open model from the moment the request was due by
	// the schedule to the end of its response, so time spent waiting for a
	// free connection is charged (no coordinated omission); in the closed
	// model from the moment it was sent.
	Latency Percentiles `json:"latency"`
	// Wait is, in the open model, due time to send time: the queue in front
	// of busy connections plus any lateness of the generator itself.
	Wait Percentiles `json:"wait"`
	// Phases are Latency split by the caller's phases (drain runs).
	Phases []Percentiles `json:"phases,omitempty"`
}

// Percentiles of a latency distribution, in microseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	P9999 float64 `json:"p9999_us"`
	Max   float64 `json:"max_us"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	us := func(v int64) float64 { return float64(v) / 1e3 }
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1e3,
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		P9999: us(h.ValueAtQuantile(99.99)),
		Max:   us(h.Max()),
	}
}

// collector tallies one goroutine's results; collectors are merged at the
// end, so nothing is shared while the load runs.
type collector struct {
	res      LoadResult
	hist     *hdrhistogram.Histogram
	wait     *hdrhistogram.Histogram
	phases   []*hdrhistogram.Histogram
	phaseOf  func(due time.Time) int
	first    time.Time
	last     time.Time
	want     int
	errKinds map[string]bool
}

func newCollector(model string, want, phases int, phaseOf func(time.Time) int) *collector {
	c := &collector{
		res:      LoadResult{Model: model},
		hist:     newHist(),
		wait:     newHist(),
		want:     want,
		phaseOf:  phaseOf,
		errKinds: map[string]bool{},
	}
	for range phases {
		c.phases = append(c.phases, newHist())
	}
	return c
}

// add records one request: due is when the schedule wanted it sent (zero
// in the closed model), sent when it was, end when its answer was read.
func (c *collector) add(due, sent, end time.Time, code int, errText string) {
	c.res.Requests++
	start := sent
	if !due.IsZero() {
		start = due
	}
	if c.first.IsZero() || start.Before(c.first) {
		c.first = start
	}
	if end.After(c.last) {
		c.last = end
	}
	if code != c.want || errText != "" {
		c.res.Errors++
		if errText == "" {
			errText = fmt.Sprintf("status %d", code)
		}
		if len(c.errKinds) < 5 && !c.errKinds[errText] {
			c.errKinds[errText] = true
			c.res.ErrorSample = append(c.res.ErrorSample, errText)
		}
		return
	}
	c.res.Answered++
	lat := end.Sub(start)
	record(c.hist, lat)
	if !due.IsZero() {
		record(c.wait, sent.Sub(due))
	}
	if c.phaseOf != nil {
		if i := c.phaseOf(start); i >= 0 && i < len(c.phases) {
			record(c.phases[i], lat)
		}
	}
}

// merge adds o's counts and histograms to c.
func (c *collector) merge(o *collector) {
	c.res.Requests += o.res.Requests
	c.res.Answered += o.res.Answered
	c.res.Errors += o.res.Errors
	for _, e := range o.res.ErrorSample {
		if len(c.errKinds) < 5 && !c.errKinds[e] {
			c.errKinds[e] = true
			c.res.ErrorSample = append(c.res.ErrorSample, e)
		}
	}
	c.hist.Merge(o.hist)
	c.wait.Merge(o.wait)
	for i := range c.phases {
		c.phases[i].Merge(o.phases[i])
	}
	if !o.first.IsZero() && (c.first.IsZero() || o.first.Before(c.first)) {
		c.first = o.first
	}
	if o.last.After(c.last) {
		c.last = o.last
	}
}

func (c *collector) result() LoadResult {
	r := c.res
	if !c.first.IsZero() {
		r.Duration = c.last.Sub(c.first).Seconds()
	}
	if r.Duration > 0 {
		r.Throughput = float64(r.Answered) / r.Duration
	}
	r.Latency = percentiles(c.hist)
	if c.wait.TotalCount() > 0 {
		r.Wait = percentiles(c.wait)
	}
	for _, h := range c.phases {
		r.Phases = append(r.Phases, percentiles(h))
	}
	sort.Strings(r.ErrorSample)
	return r
}

// fastClient returns a fasthttp client for addr with up to conns
// keep-alive connections.
func fastClient(addr string, conns int) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                addr,
		MaxConns:            conns,
		ReadTimeout:         10 * time.Second,
		WriteTimeout:        10 * time.Second,
		MaxIdleConnDuration: time.Minute,
	}
}

// fastWorker is one connection's worth of the load: it sends the click
// request for every due time it receives (the closed model sends a zero
// time whenever it is free) and records the answers.
func fastWorker(hc *fasthttp.HostClient, addr string, c *collector, next func() (time.Time, bool)) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + clickPath)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.Header.Set("User-Agent", browserUA)
	req.Header.Set("Accept-Language", "en-US,en;q=0.9")
	for {
		due, ok := next()
		if !ok {
			return
		}
		sent := time.Now()
		err := hc.Do(req, resp)
		end := time.Now()
		if err != nil {
			c.add(due, sent, end, 0, err.Error())
			continue
		}
		c.add(due, sent, end, resp.StatusCode(), "")
	}
}

// closedLoad runs the closed model: workers keep-alive connections, each
// sending its next request as soon as the previous one is answered, for d.
// The rate adapts to the server, so its latencies describe a saturated
// server, not users; the open model is for latency.
func closedLoad(addr, client string, workers int, d time.Duration) LoadResult {
	if client == clientVegeta {
		return closedLoadVegeta(addr, workers, d)
	}
	hc := fastClient(addr, workers)
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(d)
	next := func() (time.Time, bool) { return time.Time{}, time.Now().Before(deadline) }
	cs := make([]*collector, workers)
	var wg sync.WaitGroup
	for w := range cs {
		cs[w] = newCollector("closed", http.StatusFound, 0, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fastWorker(hc, addr, cs[w], next)
		}()
	}
	wg.Wait()
	r := mergeCollectors("closed", cs, 0)
	r.Client, r.Workers = clientFast, workers
	return r
}

func mergeCollectors(model string, cs []*collector, phases int) LoadResult {
	all := newCollector(model, http.StatusFound, phases, nil)
	for _, c := range cs {
		all.merge(c)
	}
	return all.result()
}

// openOpts configures an open-model run.
type openOpts struct {
	rate   int           // requests/s
	d      time.Duration // length; 0 = until stop is closed
	stop   <-chan struct{}
	conns  int // connections; requests wait for a free one
	client string
	// phases and phaseOf split the latency by the request's due time:
	// phaseOf returns an index below phases (or -1 for none).
	phases  int
	phaseOf func(due time.Time) int
}

// openLoad runs the open model: requests are due at a constant rate,
// whatever the server does, and each latency is measured from its due time.
// A pacer computes request i's due time as begin + i/rate and queues it;
// conns workers, each with its own keep-alive connection, take due times
// from the queue. When the server is slow every connection is busy and due
// requests wait in the queue, and that wait is part of their latency, as it
// would be for users arriving at that rate. (This is wrk2's correction;
// vegeta's attacker reaches the same end by starting a new worker and
// connection whenever all are busy, see openLoadVegeta.)
func openLoad(addr string, o openOpts) LoadResult {
	if o.client == clientVegeta {
		return openLoadVegeta(addr, o)
	}
	if o.conns <= 0 {
		o.conns = 256
	}
	hc := fastClient(addr, o.conns)
	defer hc.CloseIdleConnections()
	queue := make(chan time.Time, 1<<16)
	next := func() (time.Time, bool) {
		t, ok := <-queue
		return t, ok
	}
	cs := make([]*collector, o.conns)
	var wg sync.WaitGroup
	for w := range cs {
		cs[w] = newCollector("open", http.StatusFound, o.phases, o.phaseOf)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fastWorker(hc, addr, cs[w], next)
		}()
	}
	pace(queue, o.rate, o.d, o.stop)
	close(queue)
	wg.Wait()
	r := mergeCollectors("open", cs, o.phases)
	r.Client, r.Rate, r.Workers = clientFast, o.rate, o.conns
	return r
}

// pace queues the due time of every request of a constant-rate schedule,
// waking at most every 200 µs and queueing all that have come due, so that
// a timer per request does not eat the generator's core at high rates.
// Due times come from the schedule, never from the clock, so a late wake-up
// or a full queue delays sending, not the time latency is measured from.
func pace(queue chan<- time.Time, rate int, d time.Duration, stop <-chan struct{}) {
	interval := time.Second / time.Duration(rate)
	begin := time.Now()
	var i int64
	for {
		elapsed := time.Since(begin)
		if d > 0 && elapsed >= d {
			elapsed = d - 1 // queue the last requests due before the end, then stop
		}
		select {
		case <-stop:
			return
		default:
		}
		for ; time.Duration(i)*interval <= elapsed; i++ {
			queue <- begin.Add(time.Duration(i) * interval)
		}
		if d > 0 && elapsed == d-1 {
			return
		}
		wait := time.Duration(i)*interval - time.Since(begin)
		time.Sleep(min(max(wait, 0), 200*time.Microsecond))
	}
}

// vegetaAttacker returns a vegeta attacker that never follows redirects and
// keeps up to conns connections alive.
func vegetaAttacker(workers, maxWorkers uint64, conns int) *vegeta.Attacker {
	return vegeta.NewAttacker(
		vegeta.Redirects(vegeta.NoFollow),
		vegeta.KeepAlive(true),
		vegeta.Connections(conns),
		vegeta.Workers(workers),
		vegeta.MaxWorkers(maxWorkers),
		vegeta.Timeout(10*time.Second),
		vegeta.MaxBody(0),
	)
}

func vegetaTarget(addr string) vegeta.Targeter {
	h := http.Header{}
	h.Set("User-Agent", browserUA)
	h.Set("Accept-Language", "en-US,en;q=0.9")
	return vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: "http://" + addr + clickPath, Header: h})
}

func addVegeta(c *collector, r *vegeta.Result, due time.Time) {
	c.add(due, r.Timestamp, r.Timestamp.Add(r.Latency), int(r.Code), r.Error)
}

// closedLoadVegeta is closedLoad through vegeta: an infinite rate with a
// fixed number of workers.
func closedLoadVegeta(addr string, workers int, d time.Duration) LoadResult {
	a := vegetaAttacker(uint64(workers), uint64(workers), workers)
	c := newCollector("closed", http.StatusFound, 0, nil)
	for r := range a.Attack(vegetaTarget(addr), vegeta.Rate{Freq: 0}, d, "closed") {
		addVegeta(c, r, time.Time{})
	}
	res := c.result()
	res.Client, res.Workers = clientVegeta, workers
	return res
}

// openLoadVegeta is openLoad through vegeta's attacker.
func openLoadVegeta(addr string, o openOpts) LoadResult {
	a := vegetaAttacker(64, 20000, 20000)
	c := newCollector("open", http.StatusFound, o.phases, o.phaseOf)
	interval := time.Second / time.Duration(o.rate)
	if o.stop != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-o.stop:
				a.Stop()
			case <-done:
			}
		}()
	}
	// vegeta's attack begins a few microseconds after this, so due times
	// are at most that much early: latencies err on the high side.
	begin := time.Now()
	for r := range a.Attack(vegetaTarget(addr), vegeta.Rate{Freq: o.rate, Per: time.Second}, o.d, "open") {
		// vegeta numbers requests in the order they leave; the n-th to
		// leave was due at the n-th tick of its pacer, (n+1) intervals in.
		addVegeta(c, r, begin.Add(time.Duration(r.Seq+1)*interval))
	}
	res := c.result()
	res.Client, res.Rate = clientVegeta, o.rate
	return res
}

// cmdLoad drives load at a running server and prints the result as JSON:
// the load generator alone, for trying things by hand.
func cmdLoad(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "server `host:port`")
	workers := fs.Int("workers", 64, "connections")
	rate := fs.Int("rate", 0, "open model: requests/s (0: closed model)")
	client := fs.String("client", clientFast, "fasthttp or vegeta")
	d := fs.Duration("d", 5*time.Second, "duration")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var r LoadResult
	if *rate > 0 {
		r = openLoad(*addr, openOpts{rate: *rate, d: *d, conns: *workers, client: *client})
	} else {
		r = closedLoad(*addr, *client, *workers, *d)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.Encode(r)
	return 0
}
