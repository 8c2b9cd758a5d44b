package main

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"time"
)

// Results is everything one bench run measured: docs/bench/results.json.
// The raw runs are kept; summaries are derived from them (again, by the
// report command), so a change to the report needs no new measurement.
type Results struct {
	Date     string        `json:"date"`
	Mode     string        `json:"mode"` // quick | full
	Command  string        `json:"command"`
	Machine  Machine       `json:"machine"`
	Plan     plan          `json:"plan"`
	LoadAvg  LoadAvgs      `json:"load_average"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Capacity []CapacityRun `json:"capacity"`
	// Capacity64 is the closed model at Plan.C64Workers connections: a
	// count at which sync mode is bound by its latency, not the CPU.
	Capacity64 []CapacityRun `json:"capacity64,omitempty"`
	Latency    []LatencyRun  `json:"latency"`
	// Disk holds the disk's own fdatasync latency, probed before each
	// repetition of the phases that measure the outbox.
	Disk []DiskRun `json:"disk,omitempty"`
	// LoadgenCheck is the bare server under vegeta and under fasthttp.
	LoadgenCheck []CapacityRun `json:"loadgen_check"`
	Drain        []DrainRun    `json:"drain"`
	// Ceiling is the broker alone under a bare publisher, beside each
	// drain run: what the drain target is read against.
	Ceiling   []CeilingRun   `json:"ceiling,omitempty"`
	LinkCache []LinkCacheRun `json:"link_cache"`
	Micro     []MicroRun     `json:"micro"`
	Profiles  []Profile      `json:"profiles"`
	Problems  []string       `json:"problems,omitempty"`
	Reruns    []*Rerun       `json:"reruns,omitempty"` // phases measured again later (-merge)

	Summary Summary `json:"summary"`
}

// LoadAvgs are /proc/loadavg readings around the run.
type LoadAvgs struct {
	BeforeWait [3]float64 `json:"before_wait"` // when the bench started
	Start      [3]float64 `json:"start"`       // when measuring began
	End        [3]float64 `json:"end"`
	Waited     float64    `json:"waited_s"` // seconds spent waiting for a quiet machine
	Quiet      bool       `json:"quiet"`    // the 1-minute load was under the threshold at start
}

// Rerun records phases that were measured again into an existing
// results.json (-only ... -merge), and when.
type Rerun struct {
	Phases     string     `json:"phases"`
	Command    string     `json:"command"`
	Commit     string     `json:"commit"` // of the clickedge measured in the rerun
	Date       string     `json:"date"`
	Started    time.Time  `json:"started"`
	Finished   time.Time  `json:"finished"`
	LoadAvg    [3]float64 `json:"load_average_start"`
	LoadAvgEnd [3]float64 `json:"load_average_end"`
	Waited     float64    `json:"waited_s"` // for a quiet machine
	Quiet      bool       `json:"quiet"`
	// Machine is where the rerun ran: a later sitting may get another
	// draw of the same kind of machine.
	Machine *Machine `json:"machine,omitempty"`
}

// CapacityRun is one closed-model run.
type CapacityRun struct {
	Scenario string     `json:"scenario"`
	Rep      int        `json:"rep"`
	At       time.Time  `json:"at"`
	Load     LoadResult `json:"load"`
	CPU      CPUUse     `json:"cpu"`
	Delivery Delivery   `json:"delivery"`
	// HealRate is, for a cut-off edge, the backlog divided by the time it
	// took to deliver it after the proxy healed, with no load running.
	HealRate float64 `json:"heal_rate,omitempty"`
	// Server is the edge's own latency for the run's redirects.
	Server *ServerLatency `json:"server_latency,omitempty"`
	// BrokerPer1k is the broker's CPU seconds per 1,000 clicks answered,
	// for the scenarios that publish while they serve.
	BrokerPer1k float64 `json:"broker_cpu_s_per_1k,omitempty"`
}

// LatencyRun is one open-model run at a fixed rate.
type LatencyRun struct {
	Scenario string     `json:"scenario"`
	Rep      int        `json:"rep"`
	At       time.Time  `json:"at"`
	Fraction float64    `json:"fraction,omitempty"` // of bare's median capacity; 0 for a fixed rate
	Rate     int        `json:"rate"`
	Load     LoadResult `json:"load"`
	CPU      CPUUse     `json:"cpu"`
	Delivery Delivery   `json:"delivery"`
	// Server is the edge's own latency for the run's redirects.
	Server *ServerLatency `json:"server_latency,omitempty"`
}

// Profile is a CPU profile taken during a closed-model run.
type Profile struct {
	Scenario string  `json:"scenario"`
	File     string  `json:"file"` // relative to the output directory
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`     // throughput while profiled
	Top      string  `json:"top"`     // go tool pprof -top
	TopCum   string  `json:"top_cum"` // go tool pprof -top -cum
}

// Summary holds the figures derived from the runs.
type Summary struct {
	Capacity   []CapacitySummary `json:"capacity"`
	Capacity64 []CapacitySummary `json:"capacity64,omitempty"`
	Latency    []LatencySummary  `json:"latency"`
	Drain      *DrainSummary     `json:"drain,omitempty"`
	Ceiling    *Stat             `json:"ceiling,omitempty"` // confirms/s of the bare publisher, writes coalesced as clickedge's
	Targets    []Target          `json:"targets"`
}

// Stat is a median with its spread over repetitions.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

func statOf(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Stat{Median: median(s), Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// median of sorted values.
func median(s []float64) float64 {
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Spread is (max-min)/median, as a fraction.
func (s Stat) Spread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / s.Median
}

// CapacitySummary is a scenario's closed-model throughput.
type CapacitySummary struct {
	Scenario string `json:"scenario"`
	RPS      Stat   `json:"rps"`
	// Ratio is the scenario's throughput over bare's, taken pairwise per
	// repetition (the runs of one repetition are neighbours in time).
	Ratio      Stat    `json:"ratio"`
	ServerCPU  float64 `json:"server_cpu"`  // median cores used by the server
	LoadgenCPU float64 `json:"loadgen_cpu"` // median cores used by the load generator
	BrokerCPU  float64 `json:"broker_cpu"`  // median cores used by the broker
	OtherCPU   float64 `json:"other_cpu"`   // median cores used by everything else
	P50        float64 `json:"p50_us"`      // median closed-model p50
	P99        float64 `json:"p99_us"`      // median closed-model p99 (saturated)
	// ServerP50 and ServerP99 are the edge's own latency (medians), µs.
	ServerP50   float64 `json:"server_p50_us,omitempty"`
	ServerP99   float64 `json:"server_p99_us,omitempty"`
	BrokerPer1k float64 `json:"broker_cpu_s_per_1k,omitempty"`
	Verified    int     `json:"verified"` // runs whose delivery check passed
	Runs        int     `json:"runs"`
	HealRate    Stat    `json:"heal_rate"` // cut-off only
}

// LatencySummary is one scenario at one offered rate.
type LatencySummary struct {
	Scenario   string  `json:"scenario"`
	Fraction   float64 `json:"fraction,omitempty"`
	Rate       int     `json:"rate"`
	Throughput float64 `json:"throughput"`
	P50        Stat    `json:"p50_us"`
	P90        Stat    `json:"p90_us"`
	P99        Stat    `json:"p99_us"`
	P999       Stat    `json:"p999_us"`
	Max        Stat    `json:"max_us"`
	ServerCPU  float64 `json:"server_cpu"`
	BrokerCPU  float64 `json:"broker_cpu"`
	OtherCPU   float64 `json:"other_cpu"`
	// ServerP50 and ServerP99 are the edge's own latency (medians), µs.
	ServerP50 Stat    `json:"server_p50_us"`
	ServerP99 Stat    `json:"server_p99_us"`
	WaitP99   float64 `json:"wait_p99_us"` // median p99 of due-to-sent: requests queued for a free connection
	Errors    int64   `json:"errors"`
	Verified  int     `json:"verified"`
	Runs      int     `json:"runs"`
	Skipped   string  `json:"skipped,omitempty"`
}

// Target is one row of the target table.
type Target struct {
	Measure string  `json:"measure"`
	Target  string  `json:"target"`
	Value   float64 `json:"value"`
	Shown   string  `json:"shown"` // the value as the table shows it
	Met     bool    `json:"met"`
	Margin  string  `json:"margin"` // how far over or under
	Missing bool    `json:"missing,omitempty"`
}

func capacityRuns(runs []CapacityRun, sc string) []CapacityRun {
	var out []CapacityRun
	for _, c := range runs {
		if c.Scenario == sc {
			out = append(out, c)
		}
	}
	return out
}

// bareMax is bare's median closed-model throughput, or 0.
func (r *Results) bareMax() float64 {
	for _, c := range r.Summary.Capacity {
		if c.Scenario == "bare" {
			return c.RPS.Median
		}
	}
	return 0
}

func (r *Results) capacityOf(sc string) (CapacitySummary, bool) {
	for _, c := range r.Summary.Capacity {
		if c.Scenario == sc {
			return c, true
		}
	}
	return CapacitySummary{}, false
}

func (r *Results) summarize() {
	r.Summary = Summary{}
	r.Summary.Capacity = summarizeCapacity(r.Capacity)
	r.Summary.Capacity64 = summarizeCapacity(r.Capacity64)

	type key struct {
		sc   string
		rate int
	}
	groups := map[key][]LatencyRun{}
	var keys []key
	for _, l := range r.Latency {
		k := key{l.Scenario, l.Rate}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], l)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := slices.Index(scenarioOrder, a.sc) - slices.Index(scenarioOrder, b.sc); c != 0 {
			return c
		}
		return a.rate - b.rate
	})
	for _, k := range keys {
		runs := groups[k]
		s := LatencySummary{Scenario: k.sc, Rate: k.rate, Fraction: runs[0].Fraction, Runs: len(runs)}
		var thr, p50, p90, p99, p999, mx, cpu, bcpu, other, wait, sp50, sp99 []float64
		for _, l := range runs {
			if l.Load.Requests == 0 { // skipped
				s.Skipped = l.Delivery.Note
				s.Runs--
				continue
			}
			thr = append(thr, l.Load.Throughput)
			p50 = append(p50, l.Load.Latency.P50)
			p90 = append(p90, l.Load.Latency.P90)
			p99 = append(p99, l.Load.Latency.P99)
			p999 = append(p999, l.Load.Latency.P999)
			mx = append(mx, l.Load.Latency.Max)
			cpu = append(cpu, l.CPU.Server)
			bcpu = append(bcpu, l.CPU.Broker)
			other = append(other, l.CPU.Other)
			if l.Server != nil {
				sp50 = append(sp50, l.Server.P50)
				sp99 = append(sp99, l.Server.P99)
			}
			wait = append(wait, l.Load.Wait.P99)
			s.Errors += l.Load.Errors
			if l.Delivery.OK {
				s.Verified++
			}
		}
		s.Throughput = statOf(thr).Median
		s.P50, s.P90, s.P99, s.P999, s.Max = statOf(p50), statOf(p90), statOf(p99), statOf(p999), statOf(mx)
		s.ServerCPU, s.OtherCPU, s.WaitP99 = statOf(cpu).Median, statOf(other).Median, statOf(wait).Median
		s.BrokerCPU, s.ServerP50, s.ServerP99 = statOf(bcpu).Median, statOf(sp50), statOf(sp99)
		r.Summary.Latency = append(r.Summary.Latency, s)
	}
	r.Summary.Drain = summarizeDrain(r.Drain)
	r.Summary.Ceiling = nil
	if slices.ContainsFunc(r.Ceiling, func(c CeilingRun) bool { return c.Coalesced }) {
		var rates []float64
		for _, c := range r.Ceiling {
			if c.Coalesced {
				rates = append(rates, c.Rate)
			}
		}
		st := statOf(rates)
		r.Summary.Ceiling = &st
	}
	r.Summary.Targets = r.targets()
}

// scenarioOrder is the order of tables and charts.
var scenarioOrder = []string{"bare", "bare-fasthttp", "sync-cutoff", "async-cutoff", "sync-cutoff-net", "async-cutoff-net", "sync-cutoff-log", "sync-broker", "sync-broker-log", "async-broker", "direct", "seed"}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// summarizeCapacity gives each scenario's closed-model figures, with its
// throughput over bare's taken pairwise per repetition.
func summarizeCapacity(all []CapacityRun) []CapacitySummary {
	var out []CapacitySummary
	bare := map[int]float64{}
	for _, c := range capacityRuns(all, "bare") {
		bare[c.Rep] = c.Load.Throughput
	}
	for _, name := range scenarioOrder {
		runs := capacityRuns(all, name)
		if len(runs) == 0 {
			continue
		}
		var rps, ratio, scpu, lcpu, bcpu, ocpu, p50, p99, heal, sp50, sp99, per1k []float64
		s := CapacitySummary{Scenario: name, Runs: len(runs)}
		for _, c := range runs {
			rps = append(rps, c.Load.Throughput)
			if b := bare[c.Rep]; b > 0 {
				ratio = append(ratio, c.Load.Throughput/b)
			}
			scpu = append(scpu, c.CPU.Server)
			lcpu = append(lcpu, c.CPU.Loadgen)
			bcpu = append(bcpu, c.CPU.Broker)
			ocpu = append(ocpu, c.CPU.Other)
			p50 = append(p50, c.Load.Latency.P50)
			p99 = append(p99, c.Load.Latency.P99)
			if c.HealRate > 0 {
				heal = append(heal, c.HealRate)
			}
			if c.Server != nil {
				sp50 = append(sp50, c.Server.P50)
				sp99 = append(sp99, c.Server.P99)
			}
			if c.BrokerPer1k > 0 {
				per1k = append(per1k, c.BrokerPer1k)
			}
			if c.Delivery.OK {
				s.Verified++
			}
		}
		s.RPS, s.Ratio, s.HealRate = statOf(rps), statOf(ratio), statOf(heal)
		s.ServerCPU, s.LoadgenCPU, s.BrokerCPU, s.OtherCPU = statOf(scpu).Median, statOf(lcpu).Median, statOf(bcpu).Median, statOf(ocpu).Median
		s.P50, s.P99 = statOf(p50).Median, statOf(p99).Median
		if len(sp50) > 0 {
			s.ServerP50, s.ServerP99 = statOf(sp50).Median, statOf(sp99).Median
		}
		if len(per1k) > 0 {
			s.BrokerPer1k = statOf(per1k).Median
		}
		out = append(out, s)
	}
	return out
}

// capacity64Of is a scenario's summary at Plan.C64Workers connections.
func (r *Results) capacity64Of(sc string) (CapacitySummary, bool) {
	for _, c := range r.Summary.Capacity64 {
		if c.Scenario == sc {
			return c, true
		}
	}
	return CapacitySummary{}, false
}
