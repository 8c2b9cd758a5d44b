package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/clickedge/clickedge/edge"
)

// harden #8: the admin listener bounds header size (64 KiB), header count
// (100), body (1 MiB) and slow clients, answers 431/413, and counts them
// under listener="admin".
func TestAdminListenerLimits(t *testing.T) {
	lim := edge.NewLimits()
	reg := prometheus.NewRegistry()
	reg.MustRegister(lim.Collectors()...)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		w.Write([]byte("ok"))
	})
	srv := newAdminServer(h, lim, slog.New(slog.DiscardHandler))
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := edge.Listen(raw, edge.ListenerOptions{Name: edge.ListenerAdmin, MaxConns: edge.DefaultAdminMaxConns, NetHTTP: true, Limits: lim})
	go srv.Serve(ln)
	defer srv.Close()

	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Errorf("admin server timeouts: header %v read %v write %v idle %v; want all set (slow clients)",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
	}
	var many strings.Builder
	for i := range 100 {
		fmt.Fprintf(&many, "X-H%d: v\r\n", i)
	}
	for _, tt := range []struct {
		name   string
		req    string
		status int
	}{
		{"plain", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 200},
		{"header over 64 KiB", "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 70<<10) + "\r\n\r\n", 431},
		{"101 header lines", "GET /x HTTP/1.1\r\nHost: a\r\n" + many.String() + "\r\n", 431},
		{"body over 1 MiB", fmt.Sprintf("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", 2<<20), 413},
	} {
		var before float64
		if tt.status != 200 {
			before = refusedValue(t, reg, "admin", tt.status)
		}
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go io.WriteString(c, tt.req)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if res.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, res.StatusCode, tt.status)
		}
		if tt.status != 200 {
			if d := refusedValue(t, reg, "admin", tt.status) - before; d != 1 {
				t.Errorf("%s: clickedge_http_refused_total{listener=\"admin\",code=\"%d\"} rose by %v, want 1", tt.name, tt.status, d)
			}
		}
	}
}

// refusedValue reads clickedge_http_refused_total{listener, code}.
func refusedValue(t *testing.T, g prometheus.Gatherer, listener string, code int) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "clickedge_http_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labels(m)["listener"] == listener && labels(m)["code"] == fmt.Sprint(code) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no clickedge_http_refused_total{listener=%q,code=\"%d\"}", listener, code)
	return 0
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// harden #7, #8: a flood of idle connections beyond the admin listener's
// cap (256) does not lock out the scraper: /metrics is answered within 1 s
// while 400 idle connections are held open and reconnect a second after
// they are closed.
func TestAdminListenerFlood(t *testing.T) {
	lim := edge.NewLimits()
	reg := prometheus.NewRegistry()
	reg.MustRegister(lim.Collectors()...)
	srv := newAdminServer(edge.NewAdmin(edge.AdminConfig{Gatherer: reg, Token: "tok"}), lim, slog.New(slog.DiscardHandler))
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := raw.Addr().String()
	go srv.Serve(edge.Listen(raw, edge.ListenerOptions{Name: edge.ListenerAdmin, MaxConns: edge.DefaultAdminMaxConns, NetHTTP: true, Limits: lim}))
	defer srv.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				done := make(chan struct{})
				go func() { io.Copy(io.Discard, c); close(done) }()
				select {
				case <-stop:
					c.Close()
					<-done
					return
				case <-done: // closed by the server: come back a second later
					c.Close()
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second): // the attacker's pace
				}
			}
		}()
	}
	// The flood fills the cap first (on a loaded machine the dials take a
	// while), then ages past EvictQuiet, so that its connections are the
	// idle kind the listener may evict.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if openConns(t, reg, edge.ListenerAdmin) >= edge.DefaultAdminMaxConns {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flood never filled the admin listener: %v open", openConns(t, reg, edge.ListenerAdmin))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * edge.DefaultEvictQuiet)

	bound := time.Second
	if raceEnabled {
		bound = 3 * time.Second // the detector's slowdown, beside other packages' tests
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for i, end := 0, time.Now().Add(2500*time.Millisecond); time.Now().Before(end); i++ {
		time.Sleep(50 * time.Millisecond) // the scraper's pace, across the flood's reconnects
		start := time.Now()
		res, err := client.Get("http://" + addr + "/metrics")
		d := time.Since(start)
		if err != nil {
			t.Fatalf("scrape %d during the flood: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || d > bound {
			t.Fatalf("scrape %d during the flood: %d after %v, want 200 within %v", i, res.StatusCode, d, bound)
		}
	}
}

// openConns reads clickedge_http_open_connections{listener} from reg.
func openConns(t *testing.T, reg *prometheus.Registry, listener string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "clickedge_http_open_connections" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "listener" && l.GetValue() == listener {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatal("clickedge_http_open_connections is not exported")
	return 0
}
