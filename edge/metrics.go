package edge

import (
	"strconv"
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
// are resolved at New, so that the hot path does no label hashing.
var knownCodes = [...]int{200, 302, 400, 404, 405, 500, 503}

// durationBuckets: 50µs to 10s in 24 steps of about 1.7x. Native
// histograms (factor 1.1) give finer resolution to scrapers that ask for
// them; these serve the rest.
var durationBuckets = prometheus.ExponentialBucketsRange(50e-6, 10, 24)

type metrics struct {
	duration  *prometheus.HistogramVec
	clicks    *prometheus.CounterVec
	botClicks *prometheus.CounterVec

	observers [numRoutes][len(knownCodes)]prometheus.Observer
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
	for rt := range numRoutes {
		for i, code := range knownCodes {
			m.observers[rt][i] = m.duration.WithLabelValues(region, routeNames[rt], strconv.Itoa(code))
		}
	}
	for o := range numOutcomes {
		m.outcomes[o] = m.clicks.WithLabelValues(outcomeNames[o])
	}
	m.bots[0] = m.botClicks.WithLabelValues("crawler")
	m.bots[1] = m.botClicks.WithLabelValues("preview")
	return m
}

func (m *metrics) observe(rt route, code int, d time.Duration) {
	for i, c := range knownCodes {
		if c == code {
			m.observers[rt][i].Observe(d.Seconds())
			return
		}
	}
	m.duration.WithLabelValues(m.region, routeNames[rt], strconv.Itoa(code)).Observe(d.Seconds())
}

func (m *metrics) outcome(o int) { m.outcomes[o].Inc() }

func (m *metrics) botClick(preview bool) {
	if preview {
		m.bots[1].Inc()
	} else {
		m.bots[0].Inc()
	}
}
