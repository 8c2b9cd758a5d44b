package main

import (
	"cmp"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/clickedge/clickedge/internal/faultproxy"
)

// scenario is one server configuration under test.
type scenario struct {
	Name  string // bare, sync-cutoff, async-cutoff, sync-broker, async-broker, direct
	Label string // for tables and charts
	kind  string // bare | edge | direct
	dur   string // edge: sync | async
	// server: the HTTP server, net or fasthttp; for the edge, "" is
	// clickedge's default (http.server fasthttp).
	server string
	// cutoff: the edge's forwarder reaches the broker only through a fault
	// proxy held in Blackhole during the load; after it, the proxy passes
	// again and the bench waits for the backlog to drain.
	cutoff bool
	// writePath: the edge's outbox.write_path for this scenario; "" is the
	// run's -write-path (or clickedge's default).
	writePath string
}

var scenarios = map[string]scenario{
	"bare":          {Name: "bare", Label: "bare net/http 302", kind: "bare", server: "net"},
	"bare-fasthttp": {Name: "bare-fasthttp", Label: "bare fasthttp 302", kind: "bare", server: "fasthttp"},
	"sync-cutoff":   {Name: "sync-cutoff", Label: "clickedge sync, forwarder cut off", kind: "edge", dur: "sync", cutoff: true},
	"async-cutoff":  {Name: "async-cutoff", Label: "clickedge async, forwarder cut off", kind: "edge", dur: "async", cutoff: true},
	"sync-cutoff-net": {Name: "sync-cutoff-net", Label: "clickedge sync, forwarder cut off, http.server net", kind: "edge", dur: "sync", cutoff: true,
		server: "net"},
	"async-cutoff-net": {Name: "async-cutoff-net", Label: "clickedge async, forwarder cut off, http.server net", kind: "edge", dur: "async", cutoff: true,
		server: "net"},
	"sync-broker": {Name: "sync-broker", Label: "clickedge sync, forwarding to the local broker", kind: "edge", dur: "sync"},
	// The same two with the log before the tree, so both write paths run
	// side by side in one invocation.
	"sync-cutoff-log": {Name: "sync-cutoff-log", Label: "clickedge sync, log before the tree, forwarder cut off", kind: "edge", dur: "sync", cutoff: true,
		writePath: "log"},
	"sync-broker-log": {Name: "sync-broker-log", Label: "clickedge sync, log before the tree, forwarding to the local broker", kind: "edge", dur: "sync",
		writePath: "log"},
	"async-broker": {Name: "async-broker", Label: "clickedge async, forwarding to the local broker", kind: "edge", dur: "async"},
	"direct":       {Name: "direct", Label: "direct publish + confirm per click", kind: "direct"},
	"seed":         {Name: "seed", Label: "the seed's design: aiohttp + aio-pika, confirm per click", kind: "seed"},
}

// sut is a running server under test.
type sut struct {
	b      *bencher
	sc     scenario
	p      *proc
	dir    string
	addr   string // public listener
	admin  string // clickedge's admin listener; for bare and direct, their pprof listener
	proxy  *faultproxy.Proxy
	closed bool
}

// start starts the server of scenario sc.
func (b *bencher) start(sc scenario) (*sut, error) {
	b.seq++
	dir := filepath.Join(b.tmp, fmt.Sprintf("%03d-%s", b.seq, sc.Name))
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &sut{b: b, sc: sc, dir: dir, addr: addr, admin: admin}
	spec := procSpec{
		name:    sc.Name,
		cpus:    b.plan.ServerCPUs,
		procs:   b.plan.ServerProcs,
		logFile: filepath.Join(dir, "server.log"),
	}
	switch sc.kind {
	case "bare":
		spec.argv = []string{b.self, "bare", "-listen", addr, "-pprof", admin, "-server", sc.server}
		spec.readyURL = "http://" + admin + "/debug/pprof/"
	case "seed":
		py, script, err := seedPython()
		if err != nil {
			return nil, err
		}
		spec.argv = []string{py, script, "--listen", addr, "--amqp", b.opts.amqpURL, "--exchange", b.sink.exchange, "--region", "bench"}
		spec.readyURL = "http://" + addr + "/stats"
	case "direct":
		spec.argv = []string{b.self, "direct", "-listen", addr, "-pprof", admin,
			"-amqp", b.opts.amqpURL, "-exchange", b.sink.exchange, "-region", "bench"}
		spec.readyURL = "http://" + addr + "/stats"
	case "edge":
		url := b.opts.amqpURL
		if sc.cutoff {
			host, err := amqpHost(url)
			if err != nil {
				return nil, err
			}
			if s.proxy, err = faultproxy.New(host); err != nil {
				return nil, err
			}
			// Cut off from the start: the edge never reaches the broker
			// while it is measured.
			s.proxy.SetMode(faultproxy.Blackhole)
			if !strings.Contains(url, host) {
				s.proxy.Close()
				return nil, fmt.Errorf("-amqp %s: spell out host:port", redactURL(url))
			}
			url = strings.Replace(url, host, s.proxy.Addr(), 1)
		}
		cfg, err := writeEdgeConfig(dir, edgeSpec{durability: sc.dur, server: sc.server, amqpURL: url, exchange: b.sink.exchange, region: "bench", window: b.plan.FwdWindow, writePath: cmp.Or(sc.writePath, b.plan.WritePath)}, addr, admin)
		if err != nil {
			return nil, err
		}
		spec.argv = []string{b.edgeBin, "serve", "-config", cfg}
		spec.readyURL = "http://" + admin + "/readyz"
	}
	if s.p, err = startProc(spec); err != nil {
		if s.proxy != nil {
			s.proxy.Close()
		}
		return nil, err
	}
	if sc.kind == "edge" && !sc.cutoff {
		if err := s.waitConnected(15 * time.Second); err != nil {
			s.abort()
			return nil, err
		}
	}
	return s, nil
}

// waitConnected waits until the edge's forwarder has a broker session.
func (s *sut) waitConnected(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := outboxStatus(s.admin)
		if err == nil && st.Forwarder != nil && st.Forwarder.Connected {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: forwarder not connected after %v (%v)", s.sc.Name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// abort kills the server without checking anything and empties the queue.
func (s *sut) abort() {
	if s.closed {
		return
	}
	s.closed = true
	s.p.kill()
	if s.proxy != nil {
		s.proxy.Close()
	}
	_ = s.b.sink.purge()
}

// finish ends a run: it reconnects a cut-off edge and waits for its outbox
// to drain, stops the server, and counts what reached the broker against
// answered, the 302s the load generator received.
func (s *sut) finish(answered int64) (Delivery, error) {
	s.closed = true
	d := Delivery{Answered: answered}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	switch s.sc.kind {
	case "bare":
		if err := s.p.stop(30 * time.Second); err != nil {
			fail("%v", err)
		}
		d.OK = len(errs) == 0
		d.Note = "baseline: records nothing"
		return d, errorsJoin(errs)
	case "direct", "seed":
		var st directStats
		if err := getJSON("http://"+s.addr+"/stats", &st); err != nil {
			fail("stats: %v", err)
		}
		d.Recorded = st.Acked
		if err := s.p.stop(30 * time.Second); err != nil {
			fail("%v", err)
		}
	case "edge":
		if s.proxy != nil {
			s.proxy.SetMode(faultproxy.Pass)
		}
		wait, _, err := waitPending(s.admin, s.b.drainTimeout(answered))
		d.Wait = wait.Seconds()
		if err != nil {
			fail("outbox: %v", err)
		}
		m, err := scrape(s.admin, "clickedge_clicks_total")
		if err != nil {
			fail("metrics: %v", err)
		}
		d.Recorded = int64(m[`clickedge_clicks_total{outcome="recorded"}`] + m[`clickedge_clicks_total{outcome="spilled"}`])
		if lost := m[`clickedge_clicks_total{outcome="dropped"}`]; lost > 0 {
			fail("%v clicks dropped", lost)
		}
		if err := s.p.stop(60 * time.Second); err != nil {
			fail("%v", err)
		}
		if s.proxy != nil {
			s.proxy.Close()
		}
	}
	distinct, dups, err := s.b.sink.collect(d.Recorded, s.b.collectTimeout(d.Recorded))
	d.Delivered, d.Duplicates = distinct, dups
	if err != nil {
		fail("%v", err)
		_ = s.b.sink.purge()
	}
	d.OK = d.Delivered == d.Answered && d.Recorded == d.Answered && len(errs) == 0
	if !d.OK && len(errs) == 0 {
		fail("answered %d, recorded %d, delivered %d", d.Answered, d.Recorded, d.Delivered)
	}
	d.Note = strings.Join(errs, "; ")
	return d, errorsJoin(errs)
}

// amqpHost returns the host:port of an AMQP URL.
func amqpHost(u string) (string, error) {
	p := strings.TrimPrefix(strings.TrimPrefix(u, "amqp://"), "amqps://")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[:i]
	}
	if i := strings.LastIndexByte(p, '@'); i >= 0 {
		p = p[i+1:]
	}
	if p == "" {
		return "", fmt.Errorf("amqp url %q: no host", redactURL(u))
	}
	if !strings.Contains(p, ":") {
		p += ":5672"
	}
	return p, nil
}

func errorsJoin(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(errs, "; "))
}

// publishes tells whether the scenario's server sends clicks to the broker
// while it is measured.
func (sc scenario) publishes() bool {
	return sc.kind == "direct" || sc.kind == "seed" || (sc.kind == "edge" && !sc.cutoff)
}
