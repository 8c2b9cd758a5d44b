//go:build e2e

package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// clickID is a click_id as 16 bytes: a map of a million of them stays small.
type clickID [16]byte

func (id clickID) String() string { return hex.EncodeToString(id[:]) }

// parseClickID accepts exactly the contract's form: 32 lowercase hex digits.
func parseClickID(s string) (clickID, bool) {
	var id clickID
	if len(s) != 32 {
		return id, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return id, false
		}
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

const (
	// loadWorkers is how many keep-alive clients the driver runs.
	loadWorkers = 32
	// requestTimeout: a redirect slower than this counts as not answered.
	requestTimeout = 10 * time.Second
)

// driver is the load: loadWorkers goroutines sharing one keep-alive
// transport, GETting /r/tv-sale without following the redirect, at a total
// rate. It records every answered click_id with the time of the answer.
//
// A request that got no answer is ambiguous only if it was written to a
// server: the edge may have committed its click and died before answering,
// and that click may legitimately be delivered ("recovered"). The driver
// counts written attempts with httptrace, so the transport's silent retry
// of an idempotent GET on a dead keep-alive connection is counted too;
// requests refused at connect were never seen by any edge.
type driver struct {
	rate    int // requests per second over all workers; 0 = as fast as possible
	client  *http.Client
	target  atomic.Pointer[string] // URL to GET; nil while no edge runs
	inFault atomic.Bool            // requests started now count as "during a fault"

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup

	attempts   atomic.Int64 // requests started against an edge
	unanswered atomic.Int64 // attempts written to an edge that got no answer
	notSent    atomic.Int64 // requests that never reached an edge (connect refused)
	other      atomic.Int64 // answers that were not a 302 with a click_id

	faultAttempts atomic.Int64 // requests started during a fault
	faultAnswered atomic.Int64 // ... and answered with a redirect

	mu        sync.Mutex
	answered  map[clickID]int64       // click_id -> answer time, unix ns
	dupAnswer int                     // the same click_id answered twice: must be 0
	statuses  map[int]int             // non-302 status codes
	lastErr   error                   // the last request error other than a refused connect
	hist      *hdrhistogram.Histogram // latency of answered requests, µs
	faultHist *hdrhistogram.Histogram // ... started during a fault
}

func newDriver(rate int) *driver {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:        2 * loadWorkers,
		MaxIdleConnsPerHost: 2 * loadWorkers,
		IdleConnTimeout:     30 * time.Second,
	}
	return &driver{
		rate: rate,
		client: &http.Client{
			Transport:     tr,
			Timeout:       requestTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		stop:      make(chan struct{}),
		answered:  make(map[clickID]int64, 1<<16),
		statuses:  make(map[int]int),
		hist:      hdrhistogram.New(1, int64(requestTimeout/time.Microsecond), 3),
		faultHist: hdrhistogram.New(1, int64(requestTimeout/time.Microsecond), 3),
	}
}

// point aims the load at an edge's public address; "" pauses it.
func (d *driver) point(httpAddr string) {
	if httpAddr == "" {
		d.target.Store(nil)
		return
	}
	u := "http://" + httpAddr + "/r/" + demoLink + "?subid=e2e&utm_campaign=reliability"
	d.target.Store(&u)
}

// start launches the workers.
func (d *driver) start() {
	for i := range loadWorkers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.work(i)
		}()
	}
}

// halt stops the workers and waits for the requests in flight.
func (d *driver) halt() {
	d.stopOnce.Do(func() { close(d.stop) })
	d.wg.Wait()
	d.client.CloseIdleConnections()
}

func (d *driver) work(i int) {
	var interval time.Duration
	if d.rate > 0 {
		interval = time.Duration(int64(time.Second) * loadWorkers / int64(d.rate))
	}
	// Spread the workers over one interval so the load is smooth.
	next := time.Now().Add(interval * time.Duration(i) / loadWorkers)
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		if interval > 0 {
			now := time.Now()
			if wait := next.Sub(now); wait > 0 {
				select {
				case <-d.stop:
					return
				case <-time.After(wait):
				}
			} else if -wait > time.Second {
				next = now // fell behind (edge down): do not burst to catch up
			}
			next = next.Add(interval)
		}
		tgt := d.target.Load()
		if tgt == nil {
			select {
			case <-d.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			continue
		}
		d.once(*tgt)
	}
}

// once does one request and files its outcome.
func (d *driver) once(target string) {
	var wrote atomic.Int32
	trace := &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Add(1)
			}
		},
	}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	fault := d.inFault.Load()
	d.attempts.Add(1)
	if fault {
		d.faultAttempts.Add(1)
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		// The transport waits for its write loop before failing a
		// request, so wrote is final here.
		if n := wrote.Load(); n > 0 {
			d.unanswered.Add(int64(n))
		} else {
			d.notSent.Add(1)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			d.mu.Lock()
			d.lastErr = err
			d.mu.Unlock()
		}
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	now := time.Now()
	if n := wrote.Load(); n > 1 {
		d.unanswered.Add(int64(n - 1)) // earlier attempts on dead connections
	}
	id, ok := clickIDFromLocation(resp)
	if !ok {
		d.other.Add(1)
		d.mu.Lock()
		d.statuses[resp.StatusCode]++
		d.mu.Unlock()
		return
	}
	if fault {
		d.faultAnswered.Add(1)
	}
	lat := now.Sub(start).Microseconds()
	d.mu.Lock()
	if _, dup := d.answered[id]; dup {
		d.dupAnswer++
	}
	d.answered[id] = now.UnixNano()
	d.hist.RecordValue(lat)
	if fault {
		d.faultHist.RecordValue(lat)
	}
	d.mu.Unlock()
}

// clickIDFromLocation takes the click_id from a 302 to the demo link, whose
// every target carries it as cid=.
func clickIDFromLocation(resp *http.Response) (clickID, bool) {
	if resp.StatusCode != http.StatusFound {
		return clickID{}, false
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return clickID{}, false
	}
	return parseClickID(u.Query().Get("cid"))
}

// answeredIDs returns a copy of the answered click ids and their times.
func (d *driver) answeredIDs() map[clickID]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[clickID]int64, len(d.answered))
	for id, at := range d.answered {
		m[id] = at
	}
	return m
}

// answeredCount is how many distinct clicks were answered so far.
func (d *driver) answeredCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.answered)
}
