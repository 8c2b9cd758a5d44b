package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/clickedge/clickedge/outbox"
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

// gathered returns the value of the counter name{labels} in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
					return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}) {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v in the registry", name, labels)
	return 0
}

// Each kind of record the outbox loses is counted under its own metric,
// once. A node with both roles, its outbox full: clicks, actions (as a
// hand-off from a peer leaves them) and a links feed record are in the
// memory spill at stop, the file cannot take them back, and the outbox
// reports them lost (outbox.Options.OnLost). The clicks count in
// clickedge_clicks_total{outcome="dropped"}, the actions in
// clickedge_postbacks_dropped_total, neither in the other's; every one
// in clickedge_outbox_spill_dropped_records_total.
func TestStopCountsLostRecordsByKind(t *testing.T) {
	cfg, err := LoadConfig("", []string{"CLICKEDGE_NODE_ROLES=edge,postback", "CLICKEDGE_OUTBOX_MAX_BYTES=1MiB",
		"CLICKEDGE_HTTP_LISTEN=127.0.0.1:0", "CLICKEDGE_ADMIN_LISTEN=127.0.0.1:0",
		"CLICKEDGE_DATA_DIR=" + t.TempDir(), "CLICKEDGE_NODE_ID=eu-central-1", "CLICKEDGE_NODE_REGION=eu-central",
		"CLICKEDGE_FORWARDER_AMQP_URLS=amqp://guest:guest@127.0.0.1:1/",
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := startNode(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.stop()
		}
	}()
	hdr := []outbox.Header{{Key: "region", Value: "eu-central"}, {Key: "node", Value: "eu-central-1"}, {Key: "schema", Value: int64(1)}}
	peer := []outbox.Header{{Key: "region", Value: "eu-central"}, {Key: "node", Value: "eu-central-2"}, {Key: "schema", Value: int64(1)}}
	record := func(exchange, key string, headers []outbox.Header, id string, body int) *outbox.Record {
		return &outbox.Record{Exchange: exchange, RoutingKey: key, MessageID: id, Headers: headers, Body: bytes.Repeat([]byte("x"), body)}
	}
	// Fill the file to the last few bytes: records of decreasing size until
	// even a 1-byte body is refused. A spilled record (100 bytes of body)
	// cannot move back in.
	fill := 0
	for _, size := range []int{64 << 10, 8 << 10, 1 << 10, 128, 1} {
		for {
			fill++
			err := n.o.Append(record(cfg.Forwarder.Exchange, "click.eu-central", hdr, fmt.Sprintf("fill-%d", fill), size))
			if errors.Is(err, outbox.ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if fill > 10000 {
				t.Fatal("outbox.max_bytes never reached")
			}
		}
	}
	want := map[string]int{}
	for i := range 12 {
		var r *outbox.Record
		switch i % 4 {
		case 0, 1:
			r = record(cfg.Forwarder.Exchange, "click.eu-central", hdr, fmt.Sprintf("click-%d", i), 100)
		case 2:
			r = record(cfg.Postback.Exchange, "action.eu-central", [][]outbox.Header{hdr, peer}[i/4%2], fmt.Sprintf("action-%d", i), 100)
		case 3:
			if i < 8 {
				r = record(cfg.Postback.Exchange, "action.eu-central", peer, fmt.Sprintf("action-%d", i), 100)
			} else {
				r = record(cfg.Links.Exchange, "links", hdr, fmt.Sprintf("links-%d", i), 100)
			}
		}
		if err := n.o.Spill(r); err != nil {
			t.Fatal(err)
		}
		want[r.Exchange]++
	}
	o, reg := n.o, n.reg // stop lets go of them
	if code := n.stop(); code != 0 {
		t.Fatalf("stop = %d, want 0", code)
	}
	stopped = true
	if st := o.Stats(); st.Spill.Dropped != 12 || st.Spill.Records != 0 {
		t.Fatalf("after stop: spill dropped %d, held %d; want the 12 spilled records lost", st.Spill.Dropped, st.Spill.Records)
	}
	clicks := gathered(t, reg, "clickedge_clicks_total", "outcome", "dropped")
	actions := gathered(t, reg, "clickedge_postbacks_dropped_total")
	total := gathered(t, reg, "clickedge_outbox_spill_dropped_records_total")
	if clicks != float64(want[cfg.Forwarder.Exchange]) || actions != float64(want[cfg.Postback.Exchange]) || total != 12 {
		t.Fatalf("lost: clicks dropped %v, postbacks dropped %v, outbox spill dropped %v; want %d, %d (each kind once, under its own), 12",
			clicks, actions, total, want[cfg.Forwarder.Exchange], want[cfg.Postback.Exchange])
	}
	for _, result := range []string{"registered", "updated", "duplicate", "refused"} {
		if v := gathered(t, reg, "clickedge_postbacks_total", "result", result); v != 0 {
			t.Fatalf("clickedge_postbacks_total{result=%q} = %v, want 0: a lost action is not a result", result, v)
		}
	}
}
