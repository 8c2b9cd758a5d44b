package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// plan is what a run measures and for how long. The full and quick plans
// are below; flags override single fields.
type plan struct {
	Reps          int           `json:"reps"`
	Warmup        time.Duration `json:"warmup"`        // before every measured run, not counted
	CapDuration   time.Duration `json:"cap_duration"`  // closed model
	Workers       int           `json:"workers"`       // closed-model keep-alive connections
	OpenConns     int           `json:"open_conns"`    // open-model connections (requests queue for a free one)
	CapScenarios  []string      `json:"cap_scenarios"` // interleaved in this order in every repetition
	C64Workers    int           `json:"c64_workers"`   // the second closed-model run's connections
	C64Scenarios  []string      `json:"c64_scenarios"` // at C64Workers, interleaved
	LiveRate      int           `json:"live_rate"`     // open model: forwarder live against cut off at this rate
	LiveScenarios []string      `json:"live_scenarios"`
	LatDuration   time.Duration `json:"lat_duration"`  // open model, per rate
	LatFractions  []float64     `json:"lat_fractions"` // of bare's median capacity
	LatScenarios  []string      `json:"lat_scenarios"` // at every fraction
	FixedRate     int           `json:"fixed_rate"`    // one more open-model rate for every capacity scenario
	ProfileFor    time.Duration `json:"profile_for"`   // CPU profile length
	Profiles      []string      `json:"profiles"`      // scenarios profiled (in runs of their own)
	DrainReps     int           `json:"drain_reps"`
	DrainRate     int           `json:"drain_rate"` // live load during the drain runs
	DrainWarm     time.Duration `json:"drain_warm"` // connected, before the outage
	Outage        time.Duration `json:"outage"`     // forwarder black-holed
	DrainMax      time.Duration `json:"drain_max"`  // give up catching up after this
	DrainTail     time.Duration `json:"drain_tail"` // live load after catching up
	Links         []int         `json:"links"`      // link-cache sizes
	LinkReps      int           `json:"link_reps"`  // per size up to 1M; bigger ones once
	MicroReps     int           `json:"micro_reps"`
	ServerCPUs    string        `json:"server_cpus"`  // taskset list for the server under test; "" = unpinned
	ServerProcs   int           `json:"server_procs"` // its GOMAXPROCS; 0 = default
	LoadgenCPUs   string        `json:"loadgen_cpus"` // the bench process's CPUs; "" = unpinned
	LoadgenProcs  int           `json:"loadgen_procs"`
	Client        string        `json:"client"`               // load-generator client
	Queue         string        `json:"queue"`                // the bench's queue: transient, classic or quorum
	FwdWindow     int           `json:"fwd_window,omitempty"` // the edges' forwarder.window; 0 = clickedge's default
	WritePath     string        `json:"write_path,omitempty"` // the edges' outbox.write_path; "" = clickedge's default
}

var fullPlan = plan{
	Reps:          3,
	Warmup:        time.Second,
	CapDuration:   8 * time.Second,
	Workers:       256,
	OpenConns:     256,
	CapScenarios:  []string{"bare", "bare-fasthttp", "sync-cutoff", "async-cutoff", "sync-cutoff-net", "async-cutoff-net", "sync-broker", "async-broker", "direct"},
	C64Workers:    64,
	C64Scenarios:  []string{"bare", "sync-cutoff", "async-cutoff", "sync-broker", "async-broker", "seed", "direct"},
	LiveRate:      4000,
	LiveScenarios: []string{"sync-cutoff", "sync-broker", "async-cutoff", "async-broker"},
	LatDuration:   5 * time.Second,
	LatFractions:  []float64{0.25, 0.5, 0.75, 0.9},
	LatScenarios:  []string{"bare", "sync-cutoff", "async-cutoff"},
	FixedRate:     1000,
	ProfileFor:    8 * time.Second,
	Profiles:      []string{"bare", "sync-cutoff", "async-cutoff", "sync-broker"},
	DrainReps:     3,
	DrainRate:     4000,
	DrainWarm:     5 * time.Second,
	Outage:        60 * time.Second,
	DrainMax:      120 * time.Second,
	DrainTail:     3 * time.Second,
	Links:         []int{1_000_000, 10_000_000},
	LinkReps:      3,
	MicroReps:     3,
}

var quickPlan = plan{
	Reps:          1,
	Warmup:        300 * time.Millisecond,
	CapDuration:   time.Second,
	Workers:       256,
	OpenConns:     256,
	CapScenarios:  []string{"bare", "sync-cutoff", "async-cutoff", "direct"},
	C64Workers:    64,
	C64Scenarios:  []string{"bare", "sync-cutoff", "sync-broker"},
	LiveRate:      1000,
	LiveScenarios: []string{"sync-cutoff", "sync-broker"},
	LatDuration:   time.Second,
	LatFractions:  []float64{0.25},
	LatScenarios:  []string{"bare", "sync-cutoff", "async-cutoff"},
	FixedRate:     500,
	ProfileFor:    time.Second,
	Profiles:      []string{"sync-cutoff"},
	DrainReps:     1,
	DrainRate:     2000,
	DrainWarm:     time.Second,
	Outage:        3 * time.Second,
	DrainMax:      30 * time.Second,
	DrainTail:     300 * time.Millisecond,
	Links:         []int{50_000},
	LinkReps:      1,
	MicroReps:     1,
}

type runOptions struct {
	quick       bool
	out         string
	amqpURL     string
	only        string
	pin         string
	clickedge   string
	waitQuiet   time.Duration
	maxLoad     float64
	linkLimit   int64
	keep        bool
	reps        int
	capDuration time.Duration
	latDuration time.Duration
	workers     int
	outage      time.Duration
	drainRate   int
	links       string
	client      string
	serverProcs int
	scenarios   string
	c64         string
	fractions   string
	queue       string
	fwdWindow   int
	latScen     string
	liveScen    string
	writePath   string
	merge       bool
}

// bencher runs the phases and holds what they share.
type bencher struct {
	opts    runOptions
	plan    plan
	out     string // output directory
	tmp     string // scratch: configs, outboxes, logs, catalogs
	self    string // this binary, for the bare, direct and linkcache children
	edgeBin string
	sink    *sink
	res     *Results
	log     io.Writer
	seq     int
	mu      sync.Mutex
	rerun   *Rerun // with -merge
	// problems counts this invocation's problems (b.res.Problems also
	// holds a merged run's old ones).
	problems int
}

// clearPhases drops the merged results of the phases about to run again.
func (b *bencher) clearPhases() {
	r := b.res
	if b.want("capacity") {
		r.Capacity = nil
	}
	if b.want("capacity64") {
		r.Capacity64 = nil
	}
	if b.want("loadgen") {
		r.LoadgenCheck = nil
	}
	if b.want("latency") {
		r.Latency = nil
	}
	if b.want("drain") {
		r.Drain, r.Ceiling = nil, nil
	}
	if b.want("linkcache") {
		r.LinkCache = nil
	}
	if b.want("micro") {
		r.Micro = nil
	}
	var keep []Profile
	for _, p := range r.Profiles {
		linkcache := strings.HasPrefix(p.Scenario, "link cache")
		drain := p.Scenario == "drain"
		if (linkcache && b.want("linkcache")) || (drain && b.want("drain")) || (!linkcache && !drain && b.want("profile")) {
			continue
		}
		keep = append(keep, p)
	}
	r.Profiles = keep
}

func (b *bencher) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// problem records something that went wrong without stopping the run.
func (b *bencher) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.logf("PROBLEM: %s", msg)
	if b.rerun != nil {
		msg = "(rerun " + b.rerun.Phases + ") " + msg
	}
	b.mu.Lock()
	b.res.Problems = append(b.res.Problems, msg)
	b.problems++
	b.mu.Unlock()
}

// drainTimeout is how long a healed edge may take to deliver n records.
func (b *bencher) drainTimeout(n int64) time.Duration {
	return 60*time.Second + time.Duration(n/2000)*time.Second
}

// collectTimeout is how long counting n messages may take.
func (b *bencher) collectTimeout(n int64) time.Duration {
	return 30*time.Second + time.Duration(n/5000)*time.Second
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	var o runOptions
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "a smoke test of about a minute: short runs, one repetition, small catalog")
	fs.StringVar(&o.out, "out", "docs/bench", "output `directory` (results.json, results.md, charts, profiles); a relative path is taken from the repository root")
	fs.StringVar(&o.amqpURL, "amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ `URL` (host:port spelled out); the bench declares its own exchange and queue")
	fs.StringVar(&o.only, "only", "", "comma-separated `phases` to run: capacity, capacity64, loadgen, profile, latency, drain, linkcache, micro (default all; latency needs capacity)")
	fs.StringVar(&o.pin, "pin", "split", "CPU placement: split (server on the last CPU with GOMAXPROCS=1, load generator on the others) or none")
	fs.StringVar(&o.clickedge, "clickedge", "", "clickedge `binary` to test (default: go build ./cmd/clickedge)")
	fs.DurationVar(&o.waitQuiet, "wait-quiet", 30*time.Minute, "wait up to this long for the 1-minute load average to fall under -max-load (0: do not wait; -quick does not wait)")
	fs.Float64Var(&o.maxLoad, "max-load", 1.5, "1-minute load average that counts as quiet")
	var linkLimit float64
	fs.Float64Var(&linkLimit, "link-mem-limit", 14, "kill a link-cache child whose RSS passes this many `GiB`")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directory (configs, outboxes, server logs)")
	fs.IntVar(&o.reps, "reps", 0, "repetitions (default: the plan's)")
	fs.DurationVar(&o.capDuration, "cap-duration", 0, "closed-model run length (default: the plan's)")
	fs.DurationVar(&o.latDuration, "lat-duration", 0, "open-model run length (default: the plan's)")
	fs.IntVar(&o.workers, "workers", 0, "closed-model workers (default: the plan's)")
	fs.DurationVar(&o.outage, "outage", 0, "drain scenario outage (default: the plan's)")
	fs.IntVar(&o.fwdWindow, "fwd-window", 0, "the edges' forwarder.window: publishes awaiting their confirm (default: clickedge's)")
	fs.StringVar(&o.writePath, "write-path", "", "the edges' outbox.write_path: tree or log (default: clickedge's)")
	fs.IntVar(&o.drainRate, "drain-rate", 0, "drain scenario live load, requests/s (default: the plan's)")
	fs.StringVar(&o.client, "client", clientFast, "load-generator client: fasthttp or vegeta (see load.go)")
	fs.IntVar(&o.serverProcs, "server-procs", 2, "GOMAXPROCS of the servers under test with -pin split")
	fs.StringVar(&o.scenarios, "scenarios", "", "comma-separated capacity `scenarios` (default: the plan's): bare, bare-fasthttp, sync-cutoff, async-cutoff, sync-cutoff-net, async-cutoff-net, sync-cutoff-log, sync-broker, sync-broker-log, async-broker, direct")
	fs.StringVar(&o.latScen, "lat-scenarios", "", "comma-separated `scenarios` of the open model at each fraction (default: the plan's)")
	fs.StringVar(&o.liveScen, "live-scenarios", "", "comma-separated `scenarios` of the open model at the live rate, forwarding live against cut off (default: the plan's)")
	fs.StringVar(&o.c64, "c64-scenarios", "", "comma-separated `scenarios` of the capacity64 phase (default: the plan's); seed is the aiohttp design")
	fs.StringVar(&o.fractions, "fractions", "", "comma-separated open-model `fractions` of bare's capacity (default: the plan's, 0.25,0.5,0.75,0.9)")
	fs.StringVar(&o.queue, "queue", "classic", "the bench's queue on the broker: transient (not durable), classic (durable) or quorum")
	fs.BoolVar(&o.merge, "merge", false, "with -only: replace just those phases in the existing results.json of -out (the rest is kept, and the rerun is noted)")
	fs.StringVar(&o.links, "links", "", "comma-separated link-cache `sizes` (default: the plan's)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench run: unexpected arguments %q\n", fs.Args())
		return 2
	}
	o.linkLimit = int64(linkLimit * (1 << 30))
	o.out = inRepo(o.out)
	b, err := newBencher(o, stderr, "go -C bench run . "+strings.Join(args, " "))
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer b.cleanup()
	// On Ctrl-C or SIGTERM, remove the broker objects and the scratch
	// directory; the servers die with the bench (Pdeathsig).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		b.logf("%v: stopping", s)
		b.cleanup()
		os.Exit(130)
	}()
	if err := b.runAll(); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	if b.problems > 0 {
		fmt.Fprintf(stderr, "bench: finished with %d problems (see results.md)\n", b.problems)
		return 1
	}
	return 0
}

func newBencher(o runOptions, log io.Writer, command string) (*bencher, error) {
	p := fullPlan
	mode := "full"
	if o.quick {
		p, mode = quickPlan, "quick"
	}
	if o.reps > 0 {
		p.Reps, p.DrainReps, p.LinkReps, p.MicroReps = o.reps, o.reps, o.reps, o.reps
	}
	if o.capDuration > 0 {
		p.CapDuration = o.capDuration
	}
	if o.latDuration > 0 {
		p.LatDuration = o.latDuration
	}
	if o.workers > 0 {
		p.Workers = o.workers
	}
	if o.outage > 0 {
		p.Outage = o.outage
	}
	if o.drainRate > 0 {
		p.DrainRate = o.drainRate
	}
	if o.fwdWindow > 0 {
		p.FwdWindow = o.fwdWindow
	}
	p.WritePath = o.writePath
	if o.links != "" {
		p.Links = nil
		for _, s := range strings.Split(o.links, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("-links: bad size %q", s)
			}
			p.Links = append(p.Links, n)
		}
	}
	if o.scenarios != "" {
		p.CapScenarios = nil
		for _, s := range strings.Split(o.scenarios, ",") {
			s = strings.TrimSpace(s)
			if _, ok := scenarios[s]; !ok {
				return nil, fmt.Errorf("-scenarios: unknown scenario %q", s)
			}
			p.CapScenarios = append(p.CapScenarios, s)
		}
	}
	for _, l := range []struct {
		flag, val string
		dst       *[]string
	}{{"-lat-scenarios", o.latScen, &p.LatScenarios}, {"-live-scenarios", o.liveScen, &p.LiveScenarios}} {
		if l.val == "" {
			continue
		}
		*l.dst = nil
		for _, s := range strings.Split(l.val, ",") {
			s = strings.TrimSpace(s)
			if _, ok := scenarios[s]; !ok {
				return nil, fmt.Errorf("%s: unknown scenario %q", l.flag, s)
			}
			*l.dst = append(*l.dst, s)
		}
	}
	if o.fractions != "" {
		p.LatFractions = nil
		for _, s := range strings.Split(o.fractions, ",") {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || f <= 0 || f > 1 {
				return nil, fmt.Errorf("-fractions: bad fraction %q", s)
			}
			p.LatFractions = append(p.LatFractions, f)
		}
	}
	if o.c64 != "" {
		p.C64Scenarios = nil
		for _, s := range strings.Split(o.c64, ",") {
			s = strings.TrimSpace(s)
			if _, ok := scenarios[s]; !ok {
				return nil, fmt.Errorf("-c64-scenarios: unknown scenario %q", s)
			}
			p.C64Scenarios = append(p.C64Scenarios, s)
		}
	}
	switch o.pin {
	case "split":
		n := numCPU()
		if n < 2 {
			return nil, errors.New("-pin split needs at least 2 CPUs")
		}
		// Two Ps on the one CPU: with GOMAXPROCS=1, a goroutine blocked in
		// fsync holds the only P until sysmon takes it back, which stalls
		// every handler behind each commit (measured: 2.4x fewer sync
		// req/s). Every server gets the same setting.
		p.ServerCPUs, p.ServerProcs = strconv.Itoa(n-1), o.serverProcs
		p.LoadgenCPUs, p.LoadgenProcs = "0", 1
		if n > 2 {
			p.LoadgenCPUs, p.LoadgenProcs = "0-"+strconv.Itoa(n-2), n-1
		}
	case "none":
	default:
		return nil, fmt.Errorf("-pin: want split or none, not %q", o.pin)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "clickedge-bench-")
	if err != nil {
		return nil, err
	}
	p.Client, p.Queue = o.client, o.queue
	if !slices.Contains(queueKinds, o.queue) {
		return nil, fmt.Errorf("-queue: want one of %v, not %q", queueKinds, o.queue)
	}
	b := &bencher{opts: o, plan: p, out: o.out, tmp: tmp, self: self, log: log}
	b.res = &Results{Date: time.Now().Format("2006-01-02"), Mode: mode, Command: command, Plan: p}
	if o.merge {
		if o.only == "" {
			return nil, errors.New("-merge needs -only")
		}
		old, err := readResults(filepath.Join(o.out, "results.json"))
		if err != nil {
			return nil, fmt.Errorf("-merge: %w", err)
		}
		// The plan of this sitting: what the rerun phases ran with (their
		// connections, rates and targets' parameters).
		old.Plan = p
		b.res = old
		b.rerun = &Rerun{Phases: o.only, Command: command, Date: time.Now().Format("2006-01-02")}
		b.res.Reruns = append(b.res.Reruns, b.rerun)
	}
	return b, nil
}

func (b *bencher) cleanup() {
	if b.sink != nil {
		b.sink.close()
	}
	if b.opts.keep {
		b.logf("scratch kept in %s", b.tmp)
		return
	}
	os.RemoveAll(b.tmp)
}

func (b *bencher) want(phase string) bool {
	if b.opts.only == "" {
		return true
	}
	for _, p := range strings.Split(b.opts.only, ",") {
		if strings.TrimSpace(p) == phase {
			return true
		}
	}
	return false
}

func (b *bencher) runAll() error {
	if err := mkdir(filepath.Join(b.out, "profiles")); err != nil {
		return err
	}
	m := machineInfo(b.opts.amqpURL)
	if b.rerun == nil {
		b.res.LoadAvg.BeforeWait = loadAvg()
		b.res.Machine = m
	} else {
		b.rerun.Machine = &m
	}
	b.logf("machine: %d CPUs, %s, Linux %s, %s, RabbitMQ %s", m.NumCPU, m.CPUModel, m.Kernel, m.GoVersion, m.RabbitMQ)

	// Build before pinning: the compiler gets every CPU.
	if b.edgeBin = b.opts.clickedge; b.edgeBin == "" {
		b.logf("building ./cmd/clickedge")
		var err error
		if b.edgeBin, err = buildClickedge(b.tmp); err != nil {
			return err
		}
	}
	var err error
	if b.sink, err = newSink(b.opts.amqpURL, b.opts.queue); err != nil {
		return err
	}
	if brokerProc = brokerPID(b.opts.amqpURL); brokerProc > 0 {
		b.logf("broker: pid %d (%s), its CPU measured apart", brokerProc, procName(brokerProc))
	} else {
		b.logf("broker: no local process listens on %s; its CPU counts as other", redactURL(b.opts.amqpURL))
	}
	b.waitForQuiet()
	if b.plan.LoadgenCPUs != "" {
		if err := pinSelf(b.plan.LoadgenCPUs); err != nil {
			return err
		}
		runtime.GOMAXPROCS(b.plan.LoadgenProcs)
		b.logf("load generator pinned to CPU %s (GOMAXPROCS=%d); servers to CPU %s (GOMAXPROCS=%d)",
			b.plan.LoadgenCPUs, b.plan.LoadgenProcs, b.plan.ServerCPUs, b.plan.ServerProcs)
	}
	if b.rerun != nil {
		b.rerun.Commit = gitCommit()
		b.rerun.Started, b.rerun.LoadAvg = time.Now(), loadAvg()
		b.clearPhases()
	} else {
		b.res.Started = time.Now()
		b.res.LoadAvg.Start = loadAvg()
	}

	phases := []struct {
		name string
		fn   func() error
	}{
		{"capacity", b.capacity},
		{"capacity64", b.capacity64},
		{"loadgen", b.loadgenCheck},
		{"profile", b.profiles},
		{"latency", b.latency},
		{"drain", b.drain},
		{"linkcache", b.linkCache},
		{"micro", b.micro},
	}
	for _, ph := range phases {
		if !b.want(ph.name) {
			continue
		}
		b.logf("== %s", ph.name)
		if err := ph.fn(); err != nil {
			b.problem("%s: %v", ph.name, err)
		}
		if err := b.save(); err != nil {
			return err
		}
	}
	if b.rerun != nil {
		b.rerun.Finished, b.rerun.LoadAvgEnd = time.Now(), loadAvg()
	} else {
		b.res.Finished = time.Now()
		b.res.LoadAvg.End = loadAvg()
	}
	return b.save()
}

// save writes results.json, results.md and the charts.
func (b *bencher) save() error {
	b.res.Summary = Summary{}
	b.res.summarize()
	if err := writeJSON(filepath.Join(b.out, "results.json"), b.res); err != nil {
		return err
	}
	return writeReport(b.res, b.out)
}

// waitForQuiet polls the load average every minute until it is under
// -max-load or -wait-quiet has passed.
func (b *bencher) waitForQuiet() {
	start := time.Now()
	quiet := false
	defer func() {
		if b.rerun != nil {
			b.rerun.Waited, b.rerun.Quiet = time.Since(start).Seconds(), quiet
			return
		}
		b.res.LoadAvg.Waited, b.res.LoadAvg.Quiet = time.Since(start).Seconds(), quiet
	}()
	for {
		la := loadAvg()
		if la[0] < b.opts.maxLoad {
			quiet = true
			b.logf("load average %.2f %.2f %.2f: quiet enough", la[0], la[1], la[2])
			return
		}
		if b.opts.quick || time.Since(start) >= b.opts.waitQuiet {
			b.logf("load average %.2f %.2f %.2f: running anyway", la[0], la[1], la[2])
			return
		}
		b.logf("load average %.2f %.2f %.2f: waiting for it to fall under %.1f", la[0], la[1], la[2], b.opts.maxLoad)
		time.Sleep(time.Minute)
	}
}

// capacity runs the closed model for every capacity scenario, interleaved
// A, B, C, A, B, C so that drift over the run falls on all alike.
func (b *bencher) capacity() error {
	p := b.plan
	for rep := 1; rep <= p.Reps; rep++ {
		b.diskProbe("capacity", rep)
		for _, name := range p.CapScenarios {
			r, err := b.capacityRun(scenarios[name], rep, p.Workers)
			if err != nil {
				b.problem("capacity %s rep %d: %v", name, rep, err)
			}
			if r.Load.Requests > 0 {
				b.res.Capacity = append(b.res.Capacity, r)
			}
		}
		if err := b.save(); err != nil {
			return err
		}
	}
	return nil
}

// capacity64 runs the closed model again at Plan.C64Workers connections,
// where sync mode is bound by its commit latency rather than the CPU, with
// the seed's design and the direct publisher beside the edge.
func (b *bencher) capacity64() error {
	p := b.plan
	for rep := 1; rep <= p.Reps; rep++ {
		b.diskProbe("capacity64", rep)
		for _, name := range p.C64Scenarios {
			r, err := b.capacityRun(scenarios[name], rep, p.C64Workers)
			if err != nil {
				b.problem("capacity64 %s rep %d: %v", name, rep, err)
			}
			if r.Load.Requests > 0 {
				b.res.Capacity64 = append(b.res.Capacity64, r)
			}
		}
		if err := b.save(); err != nil {
			return err
		}
	}
	return nil
}

func (b *bencher) capacityRun(sc scenario, rep, workers int) (CapacityRun, error) {
	p := b.plan
	r := CapacityRun{Scenario: sc.Name, Rep: rep, At: time.Now()}
	s, err := b.start(sc)
	if err != nil {
		return r, err
	}
	warm := closedLoad(s.addr, b.opts.client, workers, p.Warmup)
	before := s.serverHist()
	cpu := newCPUMeter(s.p.pid())
	r.Load = closedLoad(s.addr, b.opts.client, workers, p.CapDuration)
	r.CPU = cpu.read()
	r.Server = s.serverLatency(before)
	if sc.publishes() && r.Load.Answered > 0 {
		r.BrokerPer1k = r.CPU.Broker * r.Load.Duration / float64(r.Load.Answered) * 1000
	}
	answered := warm.Answered + r.Load.Answered
	var pending int64
	if sc.cutoff {
		if st, err := outboxStatus(s.admin); err == nil {
			pending = st.Pending.Count
		}
	}
	r.Delivery, err = s.finish(answered)
	if sc.cutoff && r.Delivery.Wait > 0 {
		r.HealRate = float64(pending) / r.Delivery.Wait
	}
	b.logf("  %-13s c%d rep %d: %8.0f req/s  p50 %6.2f p99 %6.2f ms%s  cpu server %.2f loadgen %.2f broker %.2f other %.2f  delivered %d/%d %s",
		sc.Name, workers, rep, r.Load.Throughput, r.Load.Latency.P50/1e3, r.Load.Latency.P99/1e3, serverText(r.Server), r.CPU.Server, r.CPU.Loadgen,
		r.CPU.Broker, r.CPU.Other, r.Delivery.Delivered, r.Delivery.Answered, okText(r.Delivery.OK))
	if r.Load.Errors > 0 {
		b.problem("capacity %s rep %d: %d errors: %v", sc.Name, rep, r.Load.Errors, r.Load.ErrorSample)
	}
	return r, err
}

// loadgenCheck measures the load generator itself against the bare
// server: the closed model through vegeta and through fasthttp, and the
// open model through both at half of bare's capacity. It is the evidence
// for the default client choice.
func (b *bencher) loadgenCheck() error {
	p := b.plan
	run := func(client string, rep int, rate int) error {
		r := CapacityRun{Scenario: "bare/" + client, Rep: rep, At: time.Now()}
		s, err := b.start(scenarios["bare"])
		if err != nil {
			return err
		}
		var warm LoadResult
		cpu := (*cpuMeter)(nil)
		if rate == 0 {
			warm = closedLoad(s.addr, client, p.Workers, p.Warmup)
			cpu = newCPUMeter(s.p.pid())
			r.Load = closedLoad(s.addr, client, p.Workers, p.CapDuration)
		} else {
			r.Scenario += "/open"
			warm = openLoad(s.addr, openOpts{rate: rate, d: p.Warmup, conns: p.OpenConns, client: client})
			cpu = newCPUMeter(s.p.pid())
			r.Load = openLoad(s.addr, openOpts{rate: rate, d: p.LatDuration, conns: p.OpenConns, client: client})
		}
		r.CPU = cpu.read()
		r.Delivery, err = s.finish(warm.Answered + r.Load.Answered)
		b.res.LoadgenCheck = append(b.res.LoadgenCheck, r)
		b.logf("  %-22s rep %d: %8.0f req/s  p99 %7.2f ms  cpu server %.2f loadgen %.2f", r.Scenario, rep,
			r.Load.Throughput, r.Load.Latency.P99/1e3, r.CPU.Server, r.CPU.Loadgen)
		return err
	}
	for rep := 1; rep <= p.Reps; rep++ {
		for _, c := range []string{clientVegeta, clientFast} {
			if err := run(c, rep, 0); err != nil {
				b.problem("loadgen %s: %v", c, err)
			}
		}
	}
	if bm := b.res.bareMax(); bm > 0 && p.Reps > 1 {
		rate := int(math.Round(bm/2/100) * 100)
		for _, c := range []string{clientVegeta, clientFast} {
			if err := run(c, 1, rate); err != nil {
				b.problem("loadgen %s open: %v", c, err)
			}
		}
	}
	return nil
}

func okText(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISMATCH"
}

// profiles takes a CPU profile of each profiled scenario under closed-model
// load, in runs of their own so the measured runs are not perturbed.
func (b *bencher) profiles() error {
	p := b.plan
	for _, name := range p.Profiles {
		sc := scenarios[name]
		s, err := b.start(sc)
		if err != nil {
			b.problem("profile %s: %v", name, err)
			continue
		}
		warm := closedLoad(s.addr, b.opts.client, p.Workers, p.Warmup)
		file := filepath.Join("profiles", name+".pprof")
		errc := make(chan error, 1)
		go func() { errc <- cpuProfile(s.admin, p.ProfileFor, filepath.Join(b.out, file)) }()
		load := closedLoad(s.addr, b.opts.client, p.Workers, p.ProfileFor+time.Second)
		perr := <-errc
		if _, err := s.finish(warm.Answered + load.Answered); err != nil {
			b.problem("profile %s: delivery: %v", name, err)
		}
		if perr != nil {
			b.problem("profile %s: %v", name, perr)
			continue
		}
		b.addProfile(Profile{Scenario: name, File: file, Seconds: p.ProfileFor.Seconds(), RPS: load.Throughput})
		b.logf("  %s: profiled at %.0f req/s", name, load.Throughput)
	}
	return nil
}

// latency runs the open model at fractions of bare's median capacity, and
// at one fixed rate, for each scenario, interleaved.
func (b *bencher) latency() error {
	p := b.plan
	bareMax := b.res.bareMax()
	if bareMax == 0 {
		return errors.New("no bare capacity measured: run the capacity phase first")
	}
	type point struct {
		sc       string
		fraction float64
		rate     int
	}
	var points []point
	for _, f := range p.LatFractions {
		rate := int(math.Round(bareMax*f/100) * 100)
		for _, sc := range p.LatScenarios {
			points = append(points, point{sc, f, rate})
		}
	}
	if p.FixedRate > 0 {
		for _, sc := range p.CapScenarios {
			points = append(points, point{sc, 0, p.FixedRate})
		}
	}
	if p.LiveRate > 0 {
		for _, sc := range p.LiveScenarios {
			points = append(points, point{sc, 0, p.LiveRate})
		}
	}
	for rep := 1; rep <= p.Reps; rep++ {
		b.diskProbe("latency", rep)
		for _, pt := range points {
			r := LatencyRun{Scenario: pt.sc, Rep: rep, At: time.Now(), Fraction: pt.fraction, Rate: pt.rate}
			// An open-model rate above what the server can do only measures
			// an ever-growing queue.
			if c, ok := b.res.capacityOf(pt.sc); ok && float64(pt.rate) > 0.95*c.RPS.Median {
				r.Delivery.Note = fmt.Sprintf("over capacity: %d req/s offered, %.0f req/s measured", pt.rate, c.RPS.Median)
				b.res.Latency = append(b.res.Latency, r)
				continue
			}
			if err := b.latencyRun(&r); err != nil {
				b.problem("latency %s at %d/s rep %d: %v", pt.sc, pt.rate, rep, err)
			}
			if r.Load.Requests > 0 {
				b.res.Latency = append(b.res.Latency, r)
			}
		}
		if err := b.save(); err != nil {
			return err
		}
	}
	return nil
}

func (b *bencher) latencyRun(r *LatencyRun) error {
	p := b.plan
	sc := scenarios[r.Scenario]
	s, err := b.start(sc)
	if err != nil {
		return err
	}
	warm := openLoad(s.addr, openOpts{rate: r.Rate, d: p.Warmup, conns: p.OpenConns, client: b.opts.client})
	before := s.serverHist()
	cpu := newCPUMeter(s.p.pid())
	r.Load = openLoad(s.addr, openOpts{rate: r.Rate, d: p.LatDuration, conns: p.OpenConns, client: b.opts.client})
	r.CPU = cpu.read()
	r.Server = s.serverLatency(before)
	r.Delivery, err = s.finish(warm.Answered + r.Load.Answered)
	b.logf("  %-13s %6d/s rep %d: p50 %6.3f p99 %7.3f p99.9 %7.3f max %8.3f ms%s  cpu %.2f broker %.2f  %s",
		r.Scenario, r.Rate, r.Rep, r.Load.Latency.P50/1e3, r.Load.Latency.P99/1e3, r.Load.Latency.P999/1e3,
		r.Load.Latency.Max/1e3, serverText(r.Server), r.CPU.Server, r.CPU.Broker, okText(r.Delivery.OK))
	if r.Load.Errors > 0 {
		b.problem("latency %s at %d/s rep %d: %d errors: %v", r.Scenario, r.Rate, r.Rep, r.Load.Errors, r.Load.ErrorSample)
	}
	return err
}

func (b *bencher) drain() error {
	for rep := 1; rep <= b.plan.DrainReps; rep++ {
		for _, coalesced := range []bool{false, true} {
			c, err := b.ceilingRun(rep, coalesced)
			if err != nil {
				b.problem("ceiling rep %d: %v", rep, err)
				continue
			}
			b.res.Ceiling = append(b.res.Ceiling, c)
			b.logf("  ceiling rep %d: a bare publisher alone, window %d, coalesced %v: %.0f confirms/s; broker %.2f cores (%.3f s per 1,000), publisher %.2f, machine %.2f",
				rep, c.Window, c.Coalesced, c.Rate, c.CPU.Broker, c.BrokerPer1, c.CPU.Server, c.CPU.Machine)
		}
		b.logf("  drain rep %d: %d req/s live, %v outage", rep, b.plan.DrainRate, b.plan.Outage)
		r, err := b.drainRun(rep, rep == b.plan.DrainReps)
		if err != nil {
			b.problem("drain rep %d: %v", rep, err)
		}
		if r.Load.Requests > 0 {
			b.res.Drain = append(b.res.Drain, r)
		}
		if err := b.save(); err != nil {
			return err
		}
	}
	if len(b.res.Drain) > 0 && b.res.Drain[len(b.res.Drain)-1].Profiled {
		b.addProfile(Profile{Scenario: "drain", File: filepath.Join("profiles", "drain.pprof"), Seconds: b.plan.ProfileFor.Seconds()})
	}
	return nil
}

func (b *bencher) linkCache() error {
	limit := b.opts.linkLimit
	var done []LinkCacheRun // the last good run of each size, smallest first
	for _, n := range b.plan.Links {
		reps := b.plan.LinkReps
		if n > 1_000_000 {
			reps = 1 // minutes each; the spread at 1M stands for both
		}
		l := min(limit, memAvailable()-2<<30)
		// Memory grows linearly with the links; do not start a child that
		// the guard would kill minutes later.
		if len(done) > 0 {
			prev := done[len(done)-1]
			if proj := prev.PeakRSS * int64(n) / int64(prev.Links); proj > l {
				r := LinkCacheRun{Links: n, Format: "json", Rep: 1, Error: fmt.Sprintf(
					"not run: %d links peaked at %.2f GiB RSS, so %d would need about %.1f GiB, over the %.1f GiB guard (the machine has %s)",
					prev.Links, gib(prev.PeakRSS), n, gib(proj), gib(l), b.res.Machine.MemTotal)}
				b.res.LinkCache = append(b.res.LinkCache, r)
				b.problem("link cache %d: %s", n, r.Error)
				continue
			}
		}
		if last := b.linkCacheReps(n, "json", reps, l); last != nil {
			done = append(done, *last)
			if n == 1_000_000 {
				b.profileLinkCache(n, l)
			}
		}
		os.Remove(linkCachePath(b.tmp, n, "json"))
	}
	// The YAML form of the same links, once and smaller: goccy/go-yaml
	// builds the whole document's AST, which takes tens of seconds per
	// million links. It shows why big catalogs should be written as JSON.
	if len(b.plan.Links) > 0 {
		n := min(b.plan.Links[0], yamlLinks)
		b.linkCacheReps(n, "yaml", 1, min(limit, memAvailable()-2<<30))
		os.Remove(linkCachePath(b.tmp, n, "yaml"))
	}
	return nil
}

// yamlLinks is the size of the link-cache run in YAML.
const yamlLinks = 100_000

// linkCacheReps measures n links in format reps times and returns the last
// good run, or nil.
func (b *bencher) linkCacheReps(n int, format string, reps int, limit int64) *LinkCacheRun {
	var last *LinkCacheRun
	for rep := 1; rep <= reps; rep++ {
		r := b.measureLinkCache(n, format, rep, limit)
		b.res.LinkCache = append(b.res.LinkCache, r)
		if r.Error != "" {
			b.problem("link cache %d %s rep %d: %s", n, format, rep, r.Error)
			break
		}
		last = &r
		b.logf("  %9d links (%s) rep %d: load %.2fs heap %.0f MiB rss %.0f MiB (peak %.0f) lookup hot %.0f random %.0f miss %.0f ns",
			n, format, rep, r.LoadS, mib(r.HeapInuse), mib(r.RSS), mib(r.PeakRSS), r.LookupHotNs, r.LookupRandomNs, r.LookupMissNs)
	}
	return last
}

// profileLinkCache loads n links once more with a CPU profile of the load
// and a heap profile after it.
func (b *bencher) profileLinkCache(n int, limit int64) {
	name := fmt.Sprintf("linkcache-%d", n)
	cpu := filepath.Join("profiles", name+"-cpu.pprof")
	heap := filepath.Join("profiles", name+"-heap.pprof")
	r := b.measureLinkCache(n, "json", 0, limit, "-cpuprofile", filepath.Join(b.out, cpu), "-memprofile", filepath.Join(b.out, heap))
	if r.Error != "" {
		b.problem("link cache profile %d: %s", n, r.Error)
		return
	}
	b.addProfile(Profile{Scenario: fmt.Sprintf("link cache, %d links: CPU of catalog.Load", n), File: cpu, Seconds: r.LoadS})
	b.addProfile(Profile{Scenario: fmt.Sprintf("link cache, %d links: heap in use after the load", n), File: heap}, "-sample_index=inuse_space")
}

func (b *bencher) micro() error {
	for rep := 1; rep <= b.plan.MicroReps; rep++ {
		for _, m := range runMicro(rep) {
			b.res.Micro = append(b.res.Micro, m)
			b.logf("  %-24s rep %d: %6.1f ns/op %d allocs/op", m.Name, rep, m.NsPerOp, m.AllocsPerOp)
		}
	}
	return nil
}

// addProfile renders a profile's flat and cumulative tops and adds it to
// the results.
func (b *bencher) addProfile(x Profile, opts ...string) {
	path := filepath.Join(b.out, x.File)
	var err error
	if x.Top, err = pprofTop(path, 25, opts...); err == nil {
		x.TopCum, err = pprofTop(path, 25, append(opts, "-cum")...)
	}
	if err != nil {
		b.problem("profile %s: %v", x.Scenario, err)
	}
	b.res.Profiles = append(b.res.Profiles, x)
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
