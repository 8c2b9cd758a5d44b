package main

import (
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestServerLatencyScrape serves a native histogram shaped like the edge's
// and checks that the bench reads its quantiles back within a bucket's
// width, and that a later scrape minus an earlier one keeps only the new
// observations.
func TestServerLatencyScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                        "clickedge_http_request_duration_seconds",
		Buckets:                     prometheus.ExponentialBucketsRange(50e-6, 10, 24),
		NativeHistogramBucketFactor: 1.1,
	}, []string{"region", "route", "code"})
	reg.MustRegister(h)
	obs := h.WithLabelValues("bench", "redirect", "302")
	other := h.WithLabelValues("bench", "redirect", "404")
	for range 1000 {
		obs.Observe(10e-3) // an old run: 10 ms
		other.Observe(1)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	admin := strings.TrimPrefix(srv.URL, "http://")

	before, err := scrapeRedirects(admin)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		d := 300 * time.Microsecond
		if i >= 980 { // the slowest 2 %
			d = 3 * time.Millisecond
		}
		obs.Observe(d.Seconds())
	}
	after, err := scrapeRedirects(admin)
	if err != nil {
		t.Fatal(err)
	}
	l := after.sub(before).latency()
	if l == nil || l.Count != 1000 {
		t.Fatalf("latency = %+v, want 1000 new observations", l)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", l.P50, 300}, {"p99", l.P99, 3000}} {
		if math.Abs(c.got-c.want)/c.want > 0.1 {
			t.Errorf("%s = %.0f µs, want %.0f within 10 %%", c.name, c.got, c.want)
		}
	}
}
