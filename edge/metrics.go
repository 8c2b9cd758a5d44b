package edge

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Click outcomes, the outcome label of clickedge_clicks_total.
const (
	outcomeRecorded   = iota // stored by Recorder.Append
	outcomeSpilled           // Append failed, Spill took it
	outcomeDropped           // Append and Spill failed: lost, user redirected
	outcomeRejected          // Append failed, user got 503 (Reject policy)
	outcomeSkippedBot        // a bot, not recorded (Skip policy)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"recorded", "spilled", "dropped", "rejected", "skipped_bot"}

// knownCodes are the statuses the Server answers with; their label children
// are resolved once and cached, so that the hot path does no label hashing.
var knownCodes = [...]int{200, 302, 400, 404, 405, 500, 503}

// initialSeries are the (route, code) series exported from start, at zero:
// the answers every serving node gives, which the dashboards and alert
// ratios divide by. Every other series appears on its first request, so a
// node exports no buckets for answers it never gave (a histogram series is
// len(durationBuckets)+3 lines per node).
var initialSeries = [...]struct {
	rt   route
	code int
}{{routeRedirect, 302}, {routeRegister, 200}}

// durationBuckets: 10µs to 10s in 28 steps of about 1.67x, nine of them
// below 1 ms: an async-durability redirect answers in tens of
// microseconds, a sync one in about a millisecond (an fsync), so p99 must
// be resolvable down there. Native histograms (factor 1.1) give finer
// resolution to scrapers that ask for them; these serve the rest.
var durationBuckets = prometheus.ExponentialBucketsRange(10e-6, 10, 28)

// observerBox lets an Observer (an interface) sit in an atomic.Pointer.
type observerBox struct{ prometheus.Observer }

type metrics struct {
	duration  *prometheus.HistogramVec
	clicks    *prometheus.CounterVec
	botClicks *prometheus.CounterVec

	observers [numRoutes][len(knownCodes)]atomic.Pointer[observerBox] // nil until first used
	outcomes  [numOutcomes]prometheus.Counter
	bots      [2]prometheus.Counter // crawler, preview
	region    string
}

func newMetrics(region string) *metrics {
	m := &metrics{
		region: region,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "clickedge_http_request_duration_seconds",
			Help:                            "Time to answer a request on the public listener, by route (redirect, register, other) and status code.",
			Buckets:                         durationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"region", "route", "code"}),
		clicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_clicks_total",
			Help: "Clicks (GET requests for known links) by outcome: recorded, spilled (outbox refused, kept in memory), dropped (lost), rejected (answered 503), skipped_bot.",
		}, []string{"outcome"}),
		botClicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_bot_clicks_total",
			Help: "Clicks by bots, by kind: crawler, or preview (link-preview and chat-unfurl fetchers).",
		}, []string{"kind"}),
	}
	for _, s := range initialSeries {
		m.observer(s.rt, s.code)
	}
	for o := range numOutcomes {
		m.outcomes[o] = m.clicks.WithLabelValues(outcomeNames[o])
	}
	m.bots[0] = m.botClicks.WithLabelValues("crawler")
	m.bots[1] = m.botClicks.WithLabelValues("preview")
	return m
}

func (m *metrics) observe(rt route, code int, d time.Duration) {
	m.observer(rt, code).Observe(d.Seconds())
}

// observer returns the (rt, code) child, creating it on first use. Two
// first uses at once both resolve the same child from the vector, so the
// race is harmless.
func (m *metrics) observer(rt route, code int) prometheus.Observer {
	for i, c := range knownCodes {
		if c == code {
			if b := m.observers[rt][i].Load(); b != nil {
				return b.Observer
			}
			b := &observerBox{m.duration.WithLabelValues(m.region, routeNames[rt], strconv.Itoa(code))}
			m.observers[rt][i].Store(b)
			return b.Observer
		}
	}
	return m.duration.WithLabelValues(m.region, routeNames[rt], strconv.Itoa(code))
}

func (m *metrics) outcome(o int) { m.outcomes[o].Inc() }

func (m *metrics) botClick(preview bool) {
	if preview {
		m.bots[1].Inc()
	} else {
		m.bots[0].Inc()
	}
}
