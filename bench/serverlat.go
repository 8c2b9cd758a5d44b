package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Server-side latency: what the edge itself measured, from its native
// histogram clickedge_http_request_duration_seconds (buckets 10 % wide),
// for the redirects it answered during a run. The load generator's figures
// add the loopback, the kernel and its own scheduling; these are the
// handler's time, outbox commit included, which is what the issue's
// latency targets are about.

// nativeHist is a native histogram's positive buckets by index.
type nativeHist struct {
	schema  int32
	zero    uint64
	buckets map[int32]uint64
}

// scrapeRedirects reads the 302 redirects' native histogram from an edge's
// admin listener.
func scrapeRedirects(admin string) (*nativeHist, error) {
	req, err := http.NewRequest("GET", "http://"+admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var h *nativeHist
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("metrics: %w", err)
		}
		if mf.GetName() != "clickedge_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var route, code string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			if route != "redirect" || code != "302" {
				continue
			}
			x := m.GetHistogram()
			if x == nil || x.Schema == nil {
				return nil, errors.New("metrics: no native histogram (protobuf not negotiated?)")
			}
			if h == nil {
				h = &nativeHist{schema: x.GetSchema(), buckets: map[int32]uint64{}}
			}
			h.zero += x.GetZeroCount()
			idx, i := int32(0), 0
			var count int64
			for _, sp := range x.GetPositiveSpan() {
				idx += sp.GetOffset()
				for range sp.GetLength() {
					count += x.GetPositiveDelta()[i]
					h.buckets[idx] += uint64(count)
					idx++
					i++
				}
			}
		}
	}
	if h == nil {
		return &nativeHist{buckets: map[int32]uint64{}}, nil
	}
	return h, nil
}

// sub returns h minus an earlier scrape of the same histogram.
func (h *nativeHist) sub(earlier *nativeHist) *nativeHist {
	d := &nativeHist{schema: h.schema, zero: h.zero, buckets: map[int32]uint64{}}
	if earlier != nil {
		d.zero -= min(earlier.zero, d.zero)
	}
	for i, n := range h.buckets {
		if earlier != nil {
			n -= min(earlier.buckets[i], n)
		}
		if n > 0 {
			d.buckets[i] = n
		}
	}
	return d
}

// quantile returns the q-th quantile (0..1) in microseconds, interpolating
// linearly inside the bucket (whose bounds are base^(i-1) and base^i
// seconds). NaN when the histogram is empty.
func (h *nativeHist) quantile(q float64) float64 {
	total := h.zero
	idx := make([]int32, 0, len(h.buckets))
	for i, n := range h.buckets {
		idx = append(idx, i)
		total += n
	}
	if total == 0 {
		return math.NaN()
	}
	slices.Sort(idx)
	rank := q * float64(total)
	cum := float64(h.zero)
	if rank <= cum {
		return 0
	}
	base := math.Pow(2, math.Pow(2, -float64(h.schema)))
	for _, i := range idx {
		n := float64(h.buckets[i])
		if cum+n >= rank {
			lo, hi := math.Pow(base, float64(i-1)), math.Pow(base, float64(i))
			return (lo + (hi-lo)*(rank-cum)/n) * 1e6
		}
		cum += n
	}
	return math.Pow(base, float64(idx[len(idx)-1])) * 1e6
}

// count is the number of observations.
func (h *nativeHist) count() uint64 {
	n := h.zero
	for _, c := range h.buckets {
		n += c
	}
	return n
}

// ServerLatency is the edge's own view of one run's redirects, in µs.
type ServerLatency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
}

func (h *nativeHist) latency() *ServerLatency {
	if h == nil || h.count() == 0 {
		return nil
	}
	return &ServerLatency{Count: h.count(), P50: h.quantile(0.5), P90: h.quantile(0.9), P99: h.quantile(0.99), P999: h.quantile(0.999)}
}

// serverHist scrapes an edge's redirect histogram; nil for other servers
// or when the scrape fails (the run then has no server-side figures).
func (s *sut) serverHist() *nativeHist {
	if s.sc.kind != "edge" {
		return nil
	}
	h, err := scrapeRedirects(s.admin)
	if err != nil {
		s.b.problem("%s: server latency: %v", s.sc.Name, err)
		return nil
	}
	return h
}

// serverLatency is the edge's latency since the before scrape.
func (s *sut) serverLatency(before *nativeHist) *ServerLatency {
	if before == nil {
		return nil
	}
	after := s.serverHist()
	if after == nil {
		return nil
	}
	return after.sub(before).latency()
}

func serverText(l *ServerLatency) string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf(" (server p50 %.3f p99 %.3f)", l.P50/1e3, l.P99/1e3)
}
