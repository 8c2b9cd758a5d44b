package main

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clickedge/clickedge/internal/faultproxy"
)

// DrainRun is one backlog-drain run: an edge under constant live load loses
// its broker for the outage, builds a backlog in its outbox, and delivers
// it after the link heals while the live load goes on.
type DrainRun struct {
	Rep        int       `json:"rep"`
	At         time.Time `json:"at"`
	Durability string    `json:"durability"`
	LiveRate   int       `json:"live_rate"` // offered requests/s throughout
	OutageS    float64   `json:"outage_s"`

	Backlog      int64   `json:"backlog"`       // pending records when the link healed
	ReconnectS   float64 `json:"reconnect_s"`   // heal to the first new confirm
	DrainS       float64 `json:"drain_s"`       // first new confirm to caught up
	DeliveryRate float64 `json:"delivery_rate"` // confirms/s while draining: backlog and live clicks
	NetRate      float64 `json:"net_rate"`      // backlog shrink/s: delivery rate minus the live rate
	PeakRate     float64 `json:"peak_rate"`     // best 1 s of confirms while draining
	CaughtUp     bool    `json:"caught_up"`     // pending fell to the threshold before the deadline
	Threshold    int64   `json:"threshold"`     // "caught up": pending at or below this

	Load     LoadResult             `json:"load"`   // the live load, whole run
	Phases   map[string]Percentiles `json:"phases"` // live latency by phase: connected, outage, drain, after
	CPU      CPUUse                 `json:"cpu"`    // during the drain
	Delivery Delivery               `json:"delivery"`
	Series   []DrainSample          `json:"series"`             // the outbox, sampled every 250 ms
	Profiled bool                   `json:"profiled,omitempty"` // a CPU profile was taken during the drain
}

// DrainSample is one poll of the edge's outbox during a drain run.
type DrainSample struct {
	T         float64 `json:"t"` // seconds since the load began
	Pending   int64   `json:"pending"`
	Confirmed uint64  `json:"confirmed"`
	Appended  uint64  `json:"appended"`
}

// DrainSummary is the median over the drain runs.
type DrainSummary struct {
	Runs         int             `json:"runs"`
	CaughtUp     int             `json:"caught_up"`
	Verified     int             `json:"verified"`
	LiveRate     int             `json:"live_rate"`
	Backlog      Stat            `json:"backlog"`
	DeliveryRate Stat            `json:"delivery_rate"`
	NetRate      Stat            `json:"net_rate"`
	PeakRate     Stat            `json:"peak_rate"`
	DrainS       Stat            `json:"drain_s"`
	LiveP99      map[string]Stat `json:"live_p99_us"` // by phase
}

func summarizeDrain(runs []DrainRun) *DrainSummary {
	if len(runs) == 0 {
		return nil
	}
	s := &DrainSummary{Runs: len(runs), LiveRate: runs[0].LiveRate, LiveP99: map[string]Stat{}}
	var backlog, rate, net, peak, dur []float64
	p99 := map[string][]float64{}
	for _, r := range runs {
		if r.CaughtUp {
			s.CaughtUp++
		}
		if r.Delivery.OK {
			s.Verified++
		}
		backlog = append(backlog, float64(r.Backlog))
		rate = append(rate, r.DeliveryRate)
		net = append(net, r.NetRate)
		peak = append(peak, r.PeakRate)
		dur = append(dur, r.DrainS)
		for ph, p := range r.Phases {
			if p.Count > 0 {
				p99[ph] = append(p99[ph], p.P99)
			}
		}
	}
	s.Backlog, s.DeliveryRate, s.NetRate, s.PeakRate, s.DrainS = statOf(backlog), statOf(rate), statOf(net), statOf(peak), statOf(dur)
	for ph, v := range p99 {
		s.LiveP99[ph] = statOf(v)
	}
	return s
}

var drainPhases = []string{"connected", "outage", "drain", "after"}

// drainRun runs one backlog drain.
func (b *bencher) drainRun(rep int, profile bool) (DrainRun, error) {
	p := b.plan
	sc := scenarios["sync-broker"]
	sc.Name = "drain"
	sc.cutoff = true
	r := DrainRun{Rep: rep, At: time.Now(), Durability: sc.dur, LiveRate: p.DrainRate, OutageS: p.Outage.Seconds(),
		Threshold: int64(max(2048, p.DrainRate/5)), Phases: map[string]Percentiles{}}
	s, err := b.start(sc)
	if err != nil {
		return r, err
	}
	// start holds a cut-off edge's proxy in Blackhole; here the edge begins
	// connected.
	s.proxy.SetMode(faultproxy.Pass)
	if err := s.waitConnected(15 * time.Second); err != nil {
		s.abort()
		return r, err
	}

	// Phase boundaries in Unix nanoseconds, set as they happen; requests
	// are assigned to a phase (an index into drainPhases) by their due time.
	var outageAt, healAt, caughtAt atomic.Int64
	phaseOf := func(due time.Time) int {
		t := due.UnixNano()
		switch {
		case outageAt.Load() == 0 || t < outageAt.Load():
			return 0
		case healAt.Load() == 0 || t < healAt.Load():
			return 1
		case caughtAt.Load() == 0 || t < caughtAt.Load():
			return 2
		}
		return 3
	}

	stop := make(chan struct{})
	var load LoadResult
	var wg sync.WaitGroup
	wg.Add(1)
	begin := time.Now()
	go func() {
		defer wg.Done()
		load = openLoad(s.addr, openOpts{rate: p.DrainRate, stop: stop, conns: p.OpenConns, client: b.opts.client,
			phases: len(drainPhases), phaseOf: phaseOf})
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}

	var series []DrainSample
	sample := func() DrainSample {
		st, err := outboxStatus(s.admin)
		if err != nil {
			return DrainSample{T: time.Since(begin).Seconds(), Pending: -1}
		}
		d := DrainSample{T: time.Since(begin).Seconds(), Pending: st.Pending.Count,
			Confirmed: st.Forwarder.Confirmed, Appended: st.Counters.Appended}
		series = append(series, d)
		return d
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	waitUntil := func(t time.Time) {
		for time.Now().Before(t) {
			<-tick.C
			sample()
		}
	}

	waitUntil(begin.Add(p.DrainWarm))
	s.proxy.SetMode(faultproxy.Blackhole)
	outageAt.Store(time.Now().UnixNano())
	b.logf("    outage: forwarder black-holed for %v", p.Outage)
	waitUntil(time.Now().Add(p.Outage))

	at := sample()
	s.proxy.SetMode(faultproxy.Pass)
	heal := time.Now()
	healAt.Store(heal.UnixNano())
	r.Backlog = at.Pending
	b.logf("    healed with %d pending", at.Pending)

	cpu := newCPUMeter(s.p.pid())
	var profErr chan error
	if profile {
		profErr = make(chan error, 1)
		r.Profiled = true
		go func() {
			path := filepath.Join(b.out, "profiles", "drain.pprof")
			profErr <- cpuProfile(s.admin, p.ProfileFor, path)
		}()
	}
	var first *DrainSample
	deadline := heal.Add(p.DrainMax)
	var last DrainSample
	for time.Now().Before(deadline) {
		<-tick.C
		d := sample()
		if d.Pending < 0 {
			continue
		}
		if first == nil && d.Confirmed > at.Confirmed {
			// The first poll with new confirms: the drain began within the
			// last 250 ms. Count from the poll before it.
			prev := series[len(series)-2]
			first = &prev
			r.ReconnectS = d.T - heal.Sub(begin).Seconds()
		}
		last = d
		if first != nil && d.Pending <= r.Threshold {
			r.CaughtUp = true
			caughtAt.Store(time.Now().UnixNano())
			break
		}
	}
	r.CPU = cpu.read()
	if first != nil && last.T > first.T {
		r.DrainS = last.T - first.T
		r.DeliveryRate = float64(last.Confirmed-first.Confirmed) / r.DrainS
		r.NetRate = float64(first.Pending-last.Pending) / r.DrainS
		r.PeakRate = peakRate(series, first.T, last.T)
	}
	b.logf("    drain: %d records in %.1fs: %.0f confirms/s, net %.0f/s, caught up %v",
		r.Backlog, r.DrainS, r.DeliveryRate, r.NetRate, r.CaughtUp)
	if !r.CaughtUp {
		caughtAt.Store(time.Now().UnixNano())
	}
	waitUntil(time.Now().Add(p.DrainTail))
	stopLoad()
	r.Load = load
	for i, ph := range drainPhases {
		if i < len(load.Phases) {
			r.Phases[ph] = load.Phases[i]
		}
	}
	r.Series = series
	if profErr != nil {
		if err := <-profErr; err != nil {
			b.problem("drain profile: %v", err)
			r.Profiled = false
		}
	}
	d, err := s.finish(load.Answered)
	r.Delivery = d
	if err != nil {
		return r, fmt.Errorf("drain: %w", err)
	}
	return r, nil
}

// peakRate is the highest confirm rate over any 1 s window of samples
// between from and to (or over the whole span when it is shorter).
func peakRate(series []DrainSample, from, to float64) float64 {
	var in []DrainSample
	for _, s := range series {
		if s.T >= from && s.T <= to && s.Pending >= 0 {
			in = append(in, s)
		}
	}
	if len(in) < 2 {
		return 0
	}
	if in[len(in)-1].T-in[0].T < 1 {
		return float64(in[len(in)-1].Confirmed-in[0].Confirmed) / (in[len(in)-1].T - in[0].T)
	}
	var best float64
	j := 0
	for i := range in {
		for j < len(in) && in[j].T-in[i].T < 1 {
			j++
		}
		if j == len(in) {
			break
		}
		best = max(best, float64(in[j].Confirmed-in[i].Confirmed)/(in[j].T-in[i].T))
	}
	return best
}
