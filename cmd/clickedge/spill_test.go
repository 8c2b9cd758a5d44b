package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// metricSample returns the value of one sample line of the edge's /metrics.
func metricSample(t *testing.T, admin, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("/metrics has no %s", sample)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// harden #3: SIGTERM with a non-empty spill. No broker, a 1 MiB outbox:
// the file fills, clicks go to the spill; at SIGTERM the file still cannot
// take them, so the node counts every one as dropped and says so in its
// last log line, instead of losing them uncounted.
func TestServeSIGTERMCountsSpillLeft(t *testing.T) {
	dir := t.TempDir()
	p := startEdge(t, dir, "outbox:\n  max_bytes: 1MiB\nforwarder:\n  amqp_urls: [\"amqp://guest:guest@127.0.0.1:1/\"]\n  reconnect_max: 200ms\n")
	const workers = 8
	for round := 0; metricSample(t, p.admin, `clickedge_clicks_total{outcome="spilled"}`) < 20; round++ {
		if round > 100 {
			t.Fatal("no click spilled after 100 rounds: the outbox never filled")
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					if r := get(t, fmt.Sprintf("http://%s/r/tv-sale?subid=%d-%d-%d", p.http, round, w, i)); r.StatusCode != 302 {
						t.Errorf("redirect = %d, want 302", r.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	spilled := metricSample(t, p.admin, `clickedge_clicks_total{outcome="spilled"}`)
	if d := metricSample(t, p.admin, `clickedge_clicks_total{outcome="dropped"}`); d != 0 {
		t.Fatalf("%v dropped before the stop, want 0 (32 MiB spill)", d)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	stopped := grep(p.Logs(), "clickedge stopped")
	if want := fmt.Sprintf(`"dropped":%d}`, int(spilled)); !strings.Contains(stopped, want) {
		t.Fatalf("last line %q does not count the %v spilled clicks as dropped (%s)", stopped, spilled, want)
	}
	if lost := grep(p.Logs(), "answered records LOST"); lost == "" {
		t.Fatalf("the loss at exit was not logged as an error:\n%s", p.Logs())
	}
}
