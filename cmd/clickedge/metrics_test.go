package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// With the log (outbox.write_path: log), the outbox exports its figures:
// records logged, log full refusals, records moving, moves and their
// latency.
func TestOutboxLogMetrics(t *testing.T) {
	o, err := outbox.Open(filepath.Join(t.TempDir(), "outbox.db"), &outbox.Options{Log: true, MoveDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for i := range 3 {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("a%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Sync(); err != nil { // moves them, whatever MoveDelay
		t.Fatal(err)
	}
	// Gathering for an hour (fewer than the move goal): moving.
	if err := o.Append(outboxtest.Record("b")); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&outboxCollector{o: o})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				got[mf.GetName()] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[mf.GetName()] = m.Gauge.GetValue()
			case m.Histogram != nil:
				got[mf.GetName()] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{
		"clickedge_outbox_log_records_total":          4,
		"clickedge_outbox_log_full_total":             0,
		"clickedge_outbox_moving_records":             1,
		"clickedge_outbox_moves_total":                1,
		"clickedge_outbox_log_waits_total":            0,
		"clickedge_outbox_log_restarts_total":         0,
		"clickedge_outbox_move_latency_seconds":       0, // at least one observation, below
		"clickedge_outbox_log_write_duration_seconds": 0, // frames, below
	} {
		v, ok := got[name]
		if !ok {
			t.Errorf("%s is not exported", name)
			continue
		}
		if name == "clickedge_outbox_log_write_duration_seconds" {
			// One frame per Append at most (each waits for its own in
			// sync mode), and at least two: "b" came after the Sync.
			if v < 2 || v > 4 {
				t.Errorf("%s = %v frames for 4 records, want 2 to 4", name, v)
			}
			continue
		}
		if name == "clickedge_outbox_move_latency_seconds" || name == "clickedge_outbox_moves_total" {
			if v < 1 {
				t.Errorf("%s = %v (observations), want at least 1", name, v)
			}
			continue
		}
		if v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}
