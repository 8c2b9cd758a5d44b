//go:build e2e

package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Result is one scenario's figures, named as RabbitMQ's Jepsen checker
// names them, plus what the issue asks for on top.
type Result struct {
	Scenario string `json:"scenario"`
	Passed   bool   `json:"passed"`

	// Attempts is every request started against a running edge.
	Attempts int64 `json:"attempts"`
	// Answered is distinct click_ids answered with a 302.
	Answered int `json:"answered"`
	// Unanswered is request attempts written to an edge that got no
	// answer: the edge may have recorded them (see Recovered).
	Unanswered int64 `json:"unanswered"`
	// NotSent is requests refused at connect: no edge saw them.
	NotSent int64 `json:"not_sent"`
	// OtherAnswers is answers that were not a 302 with a click_id.
	OtherAnswers int64       `json:"other_answers"`
	Statuses     map[int]int `json:"statuses,omitempty"`
	// LastError is the last request error other than a refused connect.
	LastError string `json:"last_error,omitempty"`
	// AnsweredTwice is click_ids the edge handed out twice: must be 0.
	AnsweredTwice int `json:"answered_twice"`

	DeliveredUnique int `json:"delivered_unique"`
	Deliveries      int `json:"deliveries"`
	// Lost is answered but never delivered.
	Lost        int      `json:"lost"`
	LostSamples []string `json:"lost_samples,omitempty"`
	// Duplicated is deliveries beyond the first per click_id.
	Duplicated int `json:"duplicated"`
	// Republished is the part of Duplicated the edge published again
	// (after a crash or a lost confirm); the rest the broker redelivered
	// because the consumer's ack was lost.
	Republished int      `json:"republished"`
	Redelivered int      `json:"redelivered"`
	DupSamples  []string `json:"dup_samples,omitempty"`
	// Recovered is delivered although its request got no answer (at most
	// Unanswered of them).
	Recovered int `json:"recovered"`
	// Unexpected is delivered but never issued: delivered, not answered,
	// beyond what the unanswered requests explain.
	Unexpected         int      `json:"unexpected"`
	ContractViolations int      `json:"contract_violations"`
	ViolationSamples   []string `json:"violation_samples,omitempty"`

	Faults        int   `json:"faults"`
	FaultRequests int64 `json:"fault_requests"`
	FaultAnswered int64 `json:"fault_answered"`
	// FaultAnsweredPct is the share of requests started during faults
	// that were answered with a redirect.
	FaultAnsweredPct float64 `json:"fault_answered_pct"`
	FaultP99Ms       float64 `json:"fault_p99_ms"`
	FaultMaxMs       float64 `json:"fault_max_ms"`
	P99Ms            float64 `json:"p99_ms"`
	// ResumeS, per fault: heal to the first delivery of a click answered
	// since the fault began (-1: none).
	ResumeS []float64 `json:"resume_s"`
	// DrainS, per fault: heal until every click answered before the heal
	// was delivered (when lost reached 0 again).
	DrainS          []float64 `json:"drain_s"`
	ResumeMaxS      float64   `json:"resume_max_s"`
	DrainMaxS       float64   `json:"drain_max_s"`
	PeakOutboxDepth int64     `json:"peak_outbox_depth"`
	PeakSpill       int64     `json:"peak_spill"`
	DurationS       float64   `json:"duration_s"`

	Notes   []string       `json:"notes,omitempty"`
	Details map[string]any `json:"details,omitempty"`
}

// compute checks what was answered against what was delivered.
func (h *harness) compute(name string) Result {
	d := h.load
	answered := d.answeredIDs()
	seen, deliveries, redelivered, bad, badSamples := h.central.snapshot()
	d.mu.Lock()
	r := Result{
		Scenario:      name,
		Answered:      len(answered),
		AnsweredTwice: d.dupAnswer,
		Statuses:      maps.Clone(d.statuses),
		P99Ms:         float64(d.hist.ValueAtQuantile(99)) / 1000,
		FaultP99Ms:    float64(d.faultHist.ValueAtQuantile(99)) / 1000,
		FaultMaxMs:    float64(d.faultHist.Max()) / 1000,
	}
	if d.lastErr != nil {
		r.LastError = d.lastErr.Error()
	}
	d.mu.Unlock()
	r.Attempts = d.attempts.Load()
	r.Unanswered = d.unanswered.Load()
	r.NotSent = d.notSent.Load()
	r.OtherAnswers = d.other.Load()
	r.FaultRequests = d.faultAttempts.Load()
	r.FaultAnswered = d.faultAnswered.Load()
	if r.FaultRequests > 0 {
		r.FaultAnsweredPct = 100 * float64(r.FaultAnswered) / float64(r.FaultRequests)
	}

	r.DeliveredUnique, r.Deliveries, r.Redelivered = len(seen), deliveries, redelivered
	r.ContractViolations, r.ViolationSamples = bad, badSamples
	for id := range answered {
		if seen[id].copies == 0 {
			r.Lost++
			if len(r.LostSamples) < 5 {
				r.LostSamples = append(r.LostSamples, id.String())
			}
		}
	}
	notAnswered := 0
	for id, a := range seen {
		r.Duplicated += int(a.copies) - 1
		r.Republished += int(a.copies-a.redel) - 1
		if a.copies > 1 && len(r.DupSamples) < 5 {
			r.DupSamples = append(r.DupSamples, fmt.Sprintf("%s: %d copies (%d redelivered), answered %s, first delivered %s",
				id, a.copies, a.redel, clock(answered[id]), clock(a.first)))
		}
		if _, ok := answered[id]; !ok {
			notAnswered++
		}
	}
	r.Recovered = min(notAnswered, int(r.Unanswered))
	r.Unexpected = notAnswered - r.Recovered

	// Per fault: resume (first delivery after the heal) and drain (the
	// last first-arrival among clicks answered before the heal).
	type ans struct{ at, first int64 }
	order := make([]ans, 0, len(answered))
	for id, at := range answered {
		first := int64(math.MaxInt64) // lost: never arrived
		if a, ok := seen[id]; ok {
			first = a.first
		}
		order = append(order, ans{at, first})
	}
	slices.SortFunc(order, func(a, b ans) int { return cmp.Compare(a.at, b.at) })
	prefixMax := make([]int64, len(order)+1)
	for i, a := range order {
		prefixMax[i+1] = max(prefixMax[i], a.first)
	}
	for _, f := range h.faults {
		if f.Heal.IsZero() {
			continue
		}
		heal := f.Heal.UnixNano()
		// Resume: the first click answered since the fault began reaches
		// the consumer after the heal. Only the edge's forwarder can have
		// sent it then, unlike a broker redelivering what it already held.
		// A click may arrive shortly before its 302 reaches the client,
		// hence the second of slack when cutting the scan short.
		best := int64(math.MaxInt64)
		for i := sort.Search(len(order), func(i int) bool { return order[i].at >= f.Start.UnixNano() }); i < len(order); i++ {
			if best != math.MaxInt64 && order[i].at > best+int64(time.Second) {
				break
			}
			if first := order[i].first; first > heal && first < best {
				best = first
			}
		}
		resume := -1.0
		if best != math.MaxInt64 {
			resume = time.Duration(best - heal).Seconds()
		}
		r.ResumeS = append(r.ResumeS, round(resume))
		n := sort.Search(len(order), func(i int) bool { return order[i].at >= heal })
		drain := 0.0
		if last := prefixMax[n]; last == math.MaxInt64 {
			drain = -1 // some click answered before the heal was never delivered
		} else if last > heal {
			drain = time.Duration(last - heal).Seconds()
		}
		r.DrainS = append(r.DrainS, round(drain))
	}
	r.Faults = len(r.ResumeS)
	for i := range r.ResumeS {
		r.ResumeMaxS = max(r.ResumeMaxS, r.ResumeS[i])
		r.DrainMaxS = max(r.DrainMaxS, r.DrainS[i])
	}
	r.PeakOutboxDepth = h.peakDepth.Load()
	r.PeakSpill = h.peakSpill.Load()
	r.DurationS = round(time.Since(h.began).Seconds())
	r.Notes = h.notes
	if len(h.details) > 0 {
		r.Details = h.details
	}
	return r
}

// clock formats a unix-ns time for samples; 0 is "never".
func clock(ns int64) string {
	if ns == 0 {
		return "never"
	}
	return time.Unix(0, ns).UTC().Format("15:04:05.000")
}

func round(x float64) float64 { return math.Round(x*1000) / 1000 }

var (
	resultsMu sync.Mutex
	results   []Result
)

func record(r Result) {
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
}

// table renders results as a Markdown table, the one docs/reliability.md
// keeps.
func table(rs []Result) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| scenario\t answered\t delivered\t lost\t dup (edge/broker)\t recovered\t unexpected\t unanswered\t faults\t answered in faults\t p99 in faults\t resume max\t drain max\t peak depth\t peak spill\t time\t ok\t")
	fmt.Fprintln(w, "|---\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---\t")
	for _, r := range rs {
		inFaults := "-"
		p99 := "-"
		if r.FaultRequests > 0 {
			inFaults = fmt.Sprintf("%.2f%% of %d", r.FaultAnsweredPct, r.FaultRequests)
			p99 = fmt.Sprintf("%.1fms", r.FaultP99Ms)
		}
		ok := "PASS"
		if !r.Passed {
			ok = "FAIL"
		}
		fmt.Fprintf(w, "| %s\t %d\t %d\t %d\t %d (%d/%d)\t %d\t %d\t %d\t %d\t %s\t %s\t %.1fs\t %.1fs\t %d\t %d\t %.0fs\t %s\t\n",
			r.Scenario, r.Answered, r.DeliveredUnique, r.Lost, r.Duplicated, r.Republished, r.Duplicated-r.Republished,
			r.Recovered, r.Unexpected, r.Unanswered, r.Faults, inFaults, p99, r.ResumeMaxS, r.DrainMaxS,
			r.PeakOutboxDepth, r.PeakSpill, r.DurationS, ok)
	}
	// Debug mode ends every cell with '|': with the leading "| " that
	// makes an aligned Markdown table.
	w.Flush()
	return b.String()
}

// writeReport prints the table of every scenario that ran and writes the
// JSON to E2E_REPORT.
func writeReport() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	fmt.Printf("\n== clickedge e2e: %d scenarios, %s, E2E_CYCLES=%d E2E_WRITE_PATH=%s E2E_RATE=%d E2E_BLACKHOLE=%v\n%s\n",
		len(results), time.Now().UTC().Format(time.RFC3339), killCycles(), writePath(), loadRate(), blackholeFor(), table(results))
	for _, r := range results {
		for _, n := range r.Notes {
			fmt.Printf("  %s: %s\n", r.Scenario, n)
		}
	}
	path := os.Getenv("E2E_REPORT")
	if path == "" {
		path = filepath.Join(os.TempDir(), "clickedge-e2e-report.json")
	}
	out := struct {
		Date      string   `json:"date"`
		Cycles    int      `json:"cycles"`
		WritePath string   `json:"write_path"`
		Rate      int      `json:"rate"`
		Blackhole string   `json:"blackhole"`
		Seed      uint64   `json:"seed"`
		Results   []Result `json:"results"`
	}{time.Now().UTC().Format(time.RFC3339), killCycles(), writePath(), loadRate(), blackholeFor().String(), seed(), results}
	b, err := json.MarshalIndent(out, "", "  ")
	if err == nil {
		err = os.WriteFile(path, append(b, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: write report %s: %v\n", path, err)
		return
	}
	fmt.Printf("e2e: report written to %s\n", path)
}
