package main

import (
	"fmt"
	"math"
)

// issue17Targets adds issue 17's targets: a durable click's latency against
// the disk's own fdatasync, 64 connections, forwarding that costs the edge
// nothing, the seed's design on the same box, and the drain under load.
// Every figure comes from this run; the disk's from the probes in it.
func (r *Results) issue17Targets(atLeast, atMost func(*Target, float64), add func(Target, bool)) {
	diskP50, diskP99, diskOK := r.diskSummary()
	diskText := "disk not probed"
	if diskOK {
		diskText = fmt.Sprintf("disk fdatasync p50 %.3f ms, p99 %.3f ms (median of %d probes)", diskP50.Median/1e3, diskP99.Median/1e3, diskP50.N)
	}
	// Each sync target is read for the default write path and, when the
	// run has it, for the log before the tree (the -log scenarios).
	for _, sc := range []string{"sync-cutoff", "sync-cutoff-log"} {
		r.latencyTargets(sc, diskP50, diskP99, diskOK, diskText, atMost, add)
	}

	// 2. 64 connections, closed model, forwarder cut off.
	for _, c := range []struct {
		sc   string
		want float64
	}{{"sync-cutoff", 0.8}, {"sync-cutoff-log", 0.8}, {"async-cutoff", 1.0}} {
		t := Target{Measure: fmt.Sprintf("%s at %d connections (closed model) against bare net/http", c.sc, r.Plan.C64Workers),
			Target: fmt.Sprintf("≥ %.1f× bare", c.want)}
		s, ok := r.capacity64Of(c.sc)
		if !ok && c.sc == "sync-cutoff-log" {
			continue
		}
		bare, bok := r.capacity64Of("bare")
		ok = ok && bok && s.Ratio.N > 0
		if ok {
			t.Value = s.Ratio.Median
			t.Shown = fmt.Sprintf("%.2f× (%.2f–%.2f; %.0f vs %.0f req/s; p50 %.2f ms, server p50 %.2f ms)", s.Ratio.Median, s.Ratio.Min, s.Ratio.Max,
				s.RPS.Median, bare.RPS.Median, s.P50/1e3, s.ServerP50/1e3)
			atLeast(&t, c.want)
		}
		add(t, ok)
	}

	// 3. Forwarding live costs the edge nothing.
	for _, d := range []string{"sync", "sync/log", "async"} {
		broker, cutoff := d+"-broker", d+"-cutoff"
		if d == "sync/log" {
			broker, cutoff = "sync-broker-log", "sync-cutoff-log"
		}
		live, lok := r.latencyAt(broker, r.Plan.LiveRate)
		cut, cok := r.latencyAt(cutoff, r.Plan.LiveRate)
		if d == "sync/log" && !lok && !cok {
			continue
		}
		t := Target{Measure: fmt.Sprintf("%s p99 with the forwarder live against cut off, at %d req/s", d, r.Plan.LiveRate), Target: "≤ 1.5× cut off"}
		ok := lok && cok && live.Runs > 0 && cut.Runs > 0 && cut.P99.Median > 0
		if ok {
			t.Value = live.P99.Median / cut.P99.Median
			t.Shown = fmt.Sprintf("%.2f× (%.2f ms live, %.2f ms cut off; server p99 %.2f / %.2f ms; broker %.2f cores)", t.Value, live.P99.Median/1e3, cut.P99.Median/1e3,
				live.ServerP99.Median/1e3, cut.ServerP99.Median/1e3, live.BrokerCPU)
			atMost(&t, 1.5)
		}
		add(t, ok)
	}

	// 4. The same box as the broker: against the seed's design.
	for _, sc := range []string{"sync-broker", "sync-broker-log"} {
		e, eok := r.capacity64Of(sc)
		if !eok && sc == "sync-broker-log" {
			continue
		}
		name := "sync"
		if sc == "sync-broker-log" {
			name = "sync + log"
		}
		t := Target{Measure: fmt.Sprintf("%s, forwarding live, against the seed's aiohttp design (%d connections)", name, r.Plan.C64Workers), Target: "≥ 10× its req/s"}
		sd, sok := r.capacity64Of("seed")
		ok := eok && sok && sd.RPS.Median > 0
		if ok {
			t.Value = e.RPS.Median / sd.RPS.Median
			t.Shown = fmt.Sprintf("%.1f× (%.0f vs %.0f req/s)", t.Value, e.RPS.Median, sd.RPS.Median)
			atLeast(&t, 10)
		}
		add(t, ok)
		t = Target{Measure: "… and its p99 against the seed's", Target: "lower"}
		if ok {
			t.Value = e.P99 / sd.P99
			t.Shown = fmt.Sprintf("%.2f ms vs %.2f ms", e.P99/1e3, sd.P99/1e3)
			atMost(&t, 1)
			t.Met = e.P99 < sd.P99
		}
		add(t, ok)
		if sc != "sync-broker" {
			continue
		}
		t = Target{Measure: "broker CPU per 1,000 clicks: sync / async forwarding, direct, seed", Target: "measured (no target)"}
		if ok {
			var parts []string
			for _, sc := range []string{"sync-broker", "async-broker", "direct", "seed"} {
				if c, ok := r.capacity64Of(sc); ok && c.BrokerPer1k > 0 {
					parts = append(parts, fmt.Sprintf("%s %.3f s", sc, c.BrokerPer1k))
				}
			}
			t.Value = e.BrokerPer1k
			t.Shown = fmt.Sprint(parts)
			t.Met, t.Margin = true, "—"
		}
		add(t, ok && e.BrokerPer1k > 0)
	}

	// 5. Drain under live load.
	{
		t := Target{Measure: fmt.Sprintf("drain rate while serving %s req/s", rateText(r.Plan.DrainRate)), Target: "≥ 15k msg/s"}
		d := r.Summary.Drain
		if d != nil {
			t.Value = d.DeliveryRate.Median
			t.Shown = fmt.Sprintf("%.1fk msg/s (%.1fk–%.1fk); backlog shrinks at %.1fk/s", d.DeliveryRate.Median/1e3,
				d.DeliveryRate.Min/1e3, d.DeliveryRate.Max/1e3, d.NetRate.Median/1e3)
			atLeast(&t, 15000)
			if c := r.Summary.Ceiling; c != nil {
				t.Shown += fmt.Sprintf("; the broker alone under a bare publisher (writes coalesced): %.1fk msg/s (%.1fk–%.1fk), so the drain is %.0f%% of what the broker confirms at all",
					c.Median/1e3, c.Min/1e3, c.Max/1e3, 100*d.DeliveryRate.Median/c.Median)
			}
			if d.LiveRate < 4000 {
				t.Shown += fmt.Sprintf(" (live load %d req/s, not 4k)", d.LiveRate)
			}
		}
		add(t, d != nil)
	}
}

// latencyTargets adds target 1 (1a and 1b) for one sync scenario; a -log
// scenario the run did not measure adds nothing.
func (r *Results) latencyTargets(sc string, diskP50, diskP99 Stat, diskOK bool, diskText string, atMost func(*Target, float64), add func(Target, bool)) {
	var half *LatencySummary
	for i, l := range r.Summary.Latency {
		if l.Scenario == sc && l.Fraction == 0.5 {
			half = &r.Summary.Latency[i]
		}
	}
	if half == nil && sc != "sync-cutoff" {
		return
	}
	name := "sync"
	if sc == "sync-cutoff-log" {
		name = "sync + log"
	}
	// 1a. The median durable click within two of the disk's fdatasyncs.
	{
		t := Target{Measure: name + " p50 server latency at 50 % of bare's rate, cut off", Target: "≤ 2 fdatasyncs of this disk (p50)"}
		ok := diskOK && half != nil && half.Runs > 0 && half.ServerP50.N > 0
		if ok {
			want := 2 * diskP50.Median
			t.Target = fmt.Sprintf("≤ 2 × %.3f = %.3f ms", diskP50.Median/1e3, want/1e3)
			t.Value = half.ServerP50.Median
			t.Shown = fmt.Sprintf("%.3f ms (%.3f–%.3f) at %d req/s; %s", t.Value/1e3, half.ServerP50.Min/1e3, half.ServerP50.Max/1e3, half.Rate, diskText)
			atMost(&t, want)
		} else if half != nil && half.Runs == 0 {
			t.Shown = half.Skipped
		}
		add(t, ok)
	}
	// 1b. The tail at half of bare's closed-loop rate.
	for _, side := range []string{"server", "client"} {
		t := Target{Measure: fmt.Sprintf("%s p99 at 50 %% of bare's rate, cut off (%s side)", name, side), Target: "≤ 2 ms, or ≤ 1.5× disk fdatasync p99"}
		ok := half != nil && half.Runs > 0 && (side == "client" || half.ServerP99.N > 0)
		if ok {
			want := 2000.0
			if diskOK {
				want = max(want, 1.5*diskP99.Median)
				t.Target = fmt.Sprintf("≤ %.2f ms (2 ms; 1.5 × disk p99 = %.2f ms)", want/1e3, 1.5*diskP99.Median/1e3)
			}
			st := half.P99
			if side == "server" {
				st = half.ServerP99
			}
			t.Value = st.Median
			t.Shown = fmt.Sprintf("%.2f ms (%.2f–%.2f) at %d req/s", t.Value/1e3, st.Min/1e3, st.Max/1e3, half.Rate)
			if side == "client" {
				t.Shown += fmt.Sprintf("; bare's own p99 there %s", r.latencyP99Text("bare", half.Rate))
			}
			atMost(&t, want)
		} else if half != nil && half.Runs == 0 {
			t.Shown = half.Skipped
		}
		add(t, ok)
	}

}

// latencyAt is a scenario's open-model summary at a rate.
func (r *Results) latencyAt(sc string, rate int) (LatencySummary, bool) {
	for _, l := range r.Summary.Latency {
		if l.Scenario == sc && l.Rate == rate {
			return l, true
		}
	}
	return LatencySummary{}, false
}

func (r *Results) latencyP99Text(sc string, rate int) string {
	l, ok := r.latencyAt(sc, rate)
	if !ok || l.Runs == 0 || math.IsNaN(l.P99.Median) {
		return "not measured"
	}
	return fmt.Sprintf("%.2f ms", l.P99.Median/1e3)
}
