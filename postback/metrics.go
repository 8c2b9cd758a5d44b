package postback

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results: the result label of clickedge_postbacks_total.
type result int

const (
	resultRegistered result = iota
	resultDuplicate
	resultUpdated
	resultRefused
	numResults
)

var resultNames = [numResults]string{"registered", "duplicate", "updated", "refused"}

// Refusal reasons: the reason label of clickedge_postbacks_refused_total,
// one per class of answer.
type reason int

const (
	reasonBadRequest   reason = iota // 400, 405, 413
	reasonUnauthorized               // 401
	reasonForbidden                  // 403
	reasonConflict                   // 409
	reasonOutOfWindow                // 422
	reasonUnavailable                // 503: the outbox could not take it
	numReasons
)

var reasonNames = [numReasons]string{"bad_request", "unauthorized", "forbidden", "conflict", "out_of_window", "unavailable"}

// durationBuckets resolve the commit-bound answers (about 1 ms at sync
// durability) finely: 50µs to 10s, about 1.5x apart.
var durationBuckets = prometheus.ExponentialBucketsRange(50e-6, 10, 30)

type metrics struct {
	results  *prometheus.CounterVec
	refused  *prometheus.CounterVec
	dropped  prometheus.Counter
	duration prometheus.Histogram

	byResult [numResults]prometheus.Counter
	byReason [numReasons]prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_postbacks_total",
			Help: "Postbacks answered, by result: registered (new order), updated (status moved forward), duplicate (seen before), refused (non-200).",
		}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_postbacks_refused_total",
			Help: "Postbacks refused, by reason: bad_request (400/405/413), unauthorized (401), forbidden (403), conflict (409), out_of_window (422), unavailable (503).",
		}, []string{"reason"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickedge_postbacks_dropped_total",
			Help: "Actions the outbox lost after they were answered, neither committed nor delivered: an async commit that failed with the memory spill full, or a spill left at shutdown. Actions registered here are committed before their answer, a peer's taken over in a hand-off before the hand-off is acknowledged: it stays 0 unless that breaks. Not a result: not in clickedge_postbacks_total.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                            "clickedge_postback_duration_seconds",
			Help:                            "Time to answer a postback, commit included.",
			Buckets:                         durationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}),
	}
	for r := range numResults {
		m.byResult[r] = m.results.WithLabelValues(resultNames[r])
	}
	for r := range numReasons {
		m.byReason[r] = m.refused.WithLabelValues(reasonNames[r])
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.results, m.refused, m.dropped, m.duration}
}
