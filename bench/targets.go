package main

import (
	"fmt"
	"math"
)

// targets checks the issue's target table against the summary. A target
// whose measurement is missing is listed as such, never as met.
func (r *Results) targets() []Target {
	var ts []Target
	// atLeast and atMost fill in Met and Margin for a target value.
	atLeast := func(t *Target, want float64) {
		t.Met = t.Value >= want
		t.Margin = fmt.Sprintf("%+.0f%%", (t.Value/want-1)*100)
	}
	atMost := func(t *Target, want float64) {
		t.Met = t.Value <= want
		t.Margin = fmt.Sprintf("%+.0f%%", (t.Value/want-1)*100)
	}
	add := func(t Target, ok bool) {
		if !ok || math.IsNaN(t.Value) {
			t.Missing, t.Met, t.Margin = true, false, ""
			if t.Shown == "" {
				t.Shown = "not measured"
			}
		}
		ts = append(ts, t)
	}

	for _, c := range []struct {
		sc   string
		want float64
	}{{"sync-cutoff", 0.8}, {"async-cutoff", 0.9}} {
		t := Target{Measure: fmt.Sprintf("clickedge %s RPS, forwarder cut off", c.sc[:len(c.sc)-7]),
			Target: fmt.Sprintf("≥ %.1f× bare", c.want)}
		s, ok := r.capacityOf(c.sc)
		if ok && s.Ratio.N > 0 {
			t.Value = s.Ratio.Median
			t.Shown = fmt.Sprintf("%.2f× (%.2f–%.2f; %.0f vs %.0f req/s)", s.Ratio.Median, s.Ratio.Min, s.Ratio.Max, s.RPS.Median, r.bareMax())
			atLeast(&t, c.want)
		}
		add(t, ok && s.Ratio.N > 0)
	}

	r.issue17Targets(atLeast, atMost, add)

	lc := r.linkCacheAt(1_000_000)
	{
		t := Target{Measure: "1M links: memory (RSS after load and GC)", Target: "≤ 300 MB"}
		if lc != nil {
			t.Value = lc.rss / 1e6
			t.Shown = fmt.Sprintf("%.0f MB RSS (live heap %.0f MB, heap in use %.0f MB, peak RSS %.0f MB)", lc.rss/1e6, lc.live/1e6, lc.heap/1e6, lc.peak/1e6)
			atMost(&t, 300)
		}
		add(t, lc != nil)
	}
	{
		t := Target{Measure: "1M links: load time", Target: "≤ 2 s"}
		if lc != nil {
			t.Value = lc.load
			t.Shown = fmt.Sprintf("%.2f s", lc.load)
			atMost(&t, 2)
		}
		add(t, lc != nil)
	}
	{
		t := Target{Measure: "1M links: lookup (random codes)", Target: "≤ 100 ns"}
		if lc != nil {
			t.Value = lc.lookup
			t.Shown = fmt.Sprintf("%.0f ns (same code again: %.0f ns)", lc.lookup, lc.hot)
			atMost(&t, 100)
		}
		add(t, lc != nil)
	}

	ns, allocs, ok := r.microMedian("clickid.New")
	{
		t := Target{Measure: "click_id generation time", Target: "≤ 150 ns"}
		if ok {
			t.Value = ns
			t.Shown = fmt.Sprintf("%.1f ns", ns)
			atMost(&t, 150)
		}
		add(t, ok)
	}
	{
		t := Target{Measure: "click_id allocations", Target: "0"}
		if ok {
			t.Value = allocs
			t.Shown = fmt.Sprintf("%.0f allocs/op", allocs)
			t.Met = allocs == 0
			t.Margin = "exact"
		}
		add(t, ok)
	}
	return ts
}

type linkCacheMedian struct {
	rss, heap, live, peak, load, lookup, hot float64
}

func (r *Results) linkCacheAt(n int) *linkCacheMedian {
	var rss, heap, live, peak, load, lookup, hot []float64
	for _, l := range r.LinkCache {
		if l.Links != n || l.Error != "" {
			continue
		}
		rss = append(rss, float64(l.RSS))
		heap = append(heap, float64(l.HeapInuse))
		live = append(live, float64(l.HeapLive))
		peak = append(peak, float64(l.PeakRSS))
		load = append(load, l.LoadS)
		lookup = append(lookup, l.LookupRandomNs)
		hot = append(hot, l.LookupHotNs)
	}
	if len(rss) == 0 {
		return nil
	}
	return &linkCacheMedian{statOf(rss).Median, statOf(heap).Median, statOf(live).Median, statOf(peak).Median,
		statOf(load).Median, statOf(lookup).Median, statOf(hot).Median}
}

func (r *Results) microMedian(name string) (ns, allocs float64, ok bool) {
	var n, a []float64
	for _, m := range r.Micro {
		if m.Name == name {
			n = append(n, m.NsPerOp)
			a = append(a, float64(m.AllocsPerOp))
		}
	}
	if len(n) == 0 {
		return 0, 0, false
	}
	return statOf(n).Median, statOf(a).Max, true
}

func rateText(r int) string {
	if r >= 1000 && r%1000 == 0 {
		return fmt.Sprintf("%dk", r/1000)
	}
	return fmt.Sprint(r)
}
