package catalog

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/catalog/catalogtest"
)

const benchCatalog = `links:
  - code: plain
    url: "https://shop.example/tv?cid={click_id}"
  - code: geo
    url: "https://shop.example/tv?cid={click_id}"
    rules:
      - name: de-mobile
        when: 'country == "DE" && device == "mobile"'
        url: "https://m.shop.example/de?cid={click_id}"
  - code: split
    url: "https://shop.example/tv?cid={click_id}"
    rules:
      - name: night
        when: 'hour >= 22'
        split:
          - {url: "https://a.example/?cid={click_id}", weight: 70}
          - {url: "https://b.example/?cid={click_id}", weight: 30}
  - code: param
    url: "https://shop.example/tv?cid={click_id}"
    params: [x, subid]
    rules:
      - name: x
        when: 'params["x"] == "y"'
        url: "https://x.example/?cid={click_id}"
  - code: cidr
    url: "https://shop.example/tv?cid={click_id}"
    rules:
      - name: office
        when: 'cidr("10.0.0.0/8")'
        url: "https://office.example/?cid={click_id}"
  - code: vm
    url: "https://shop.example/tv?cid={click_id}"
    rules:
      - name: lower
        when: 'lower(city) == "berlin" && hour % 2 == 0'
        url: "https://office.example/?cid={click_id}"
  - code: macros
    url: "https://shop.example/p/{country}/tv?cid={click_id}&sub={subid}"
`

func benchLink(b *testing.B, code string) *Link {
	b.Helper()
	c, err := Parse("bench.yaml", []byte(benchCatalog))
	if err != nil {
		b.Fatal(err)
	}
	l := c.Lookup(code)
	if l == nil {
		b.Fatalf("Lookup(%q) = nil", code)
	}
	return l
}

func benchRoute(b *testing.B, code string, f *Facts, wantRule string) {
	l := benchLink(b, code)
	if _, rule := l.Route(f, 1); rule != wantRule {
		b.Fatalf("Route rule = %q, want %q", rule, wantRule)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Route(f, uint64(i)*0x9E3779B97F4A7C15)
	}
}

func BenchmarkLookup(b *testing.B) {
	c, err := Parse("bench.yaml", []byte(benchCatalog))
	if err != nil {
		b.Fatal(err)
	}
	code := string([]byte("param")) // not the map's own key string
	b.ReportAllocs()
	for b.Loop() {
		if c.Lookup(code) == nil {
			b.Fatal("nil")
		}
	}
}

func BenchmarkRouteNoRules(b *testing.B) { benchRoute(b, "plain", &Facts{}, "") }

func BenchmarkRouteCountryDevice(b *testing.B) {
	benchRoute(b, "geo", &Facts{Country: "DE", Device: "mobile"}, "de-mobile")
}

func BenchmarkRouteSplit(b *testing.B) { benchRoute(b, "split", &Facts{Hour: 23}, "night") }

func BenchmarkRouteParam(b *testing.B) {
	f := &Facts{Params: Params{{"subid", "a"}, {"x", "y"}}}
	benchRoute(b, "param", f, "x")
}

func BenchmarkRouteCIDR(b *testing.B) {
	benchRoute(b, "cidr", &Facts{IP: netip.MustParseAddr("10.1.2.3")}, "office")
}

func BenchmarkRouteVM(b *testing.B) {
	benchRoute(b, "vm", &Facts{City: "Berlin", Hour: 4}, "lower")
}

func BenchmarkAppendURL(b *testing.B) {
	t := benchLink(b, "macros").URL()
	v := &Values{ClickID: "0190a5b2c3d47e8f9a0b1c2d3e4f5a6b", Country: "DE", Params: Params{{"subid", "aff 42&x=1"}}}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = t.AppendURL(buf[:0], v)
	}
}

// BenchmarkRouteCountryDeviceVM is the same rule as
// BenchmarkRouteCountryDevice forced onto the expr VM, for comparison.
func BenchmarkRouteCountryDeviceVM(b *testing.B) {
	r := benchLink(b, "geo").Rules[0]
	f := &Facts{Country: "DE", Device: "mobile"}
	if !r.runVM(f) {
		b.Fatal("runVM = false, want true")
	}
	b.ReportAllocs()
	for b.Loop() {
		r.runVM(f)
	}
}

func BenchmarkParse1000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("links:\n")
	for i := range 1000 {
		fmt.Fprintf(&sb, `  - code: link-%d
    url: "https://shop.example/p/%d?cid={click_id}&sub={subid}"
    rules:
      - name: de-mobile
        when: 'country == "DE" && device == "mobile"'
        url: "https://m.shop.example/%d?cid={click_id}"
`, i, i, i)
	}
	data := []byte(sb.String())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// linkCode is the generated catalog's (catalogtest), as bench/ uses it.
var linkCode = catalogtest.LinkCode

// writeCatalog writes n links in the shape bench/linkcache.go measures,
// as JSON or YAML.
func writeCatalog(w io.Writer, n int, asJSON bool) {
	format := "yaml"
	if asJSON {
		format = "json"
	}
	if err := catalogtest.Write(w, n, format); err != nil {
		panic(err)
	}
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the process's resident set size, from /proc (0 elsewhere).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// benchLoad parses data, n links, per iteration and reports the time per
// link and the live heap one catalog holds.
func benchLoad(b *testing.B, name string, data []byte, n int) {
	base := liveHeap()
	debug.FreeOSMemory()
	rss0 := rss()
	cpu0 := cpuTime()
	var c *Catalog
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c = nil
		var err error
		if c, err = Parse(name, data); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/link")
	// CPU time, GC's included: steadier than the wall time on a shared
	// machine, and what the parse costs the node.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/link")
	live := liveHeap() - base
	if c.Len() != n {
		b.Fatalf("Len() = %d, want %d", c.Len(), n)
	}
	b.ReportMetric(float64(live)/(1<<20), "MB-live")
	b.ReportMetric(float64(live)/float64(n), "B/link")
	debug.FreeOSMemory()
	b.ReportMetric(float64(rss()-rss0)/(1<<20), "MB-rss")
	runtime.KeepAlive(c)
	runtime.KeepAlive(data) // counted in base
}

// BenchmarkLoad1M parses a generated catalog of a million links; it runs
// only with -bench, and takes a while in YAML.
func BenchmarkLoad1M(b *testing.B) {
	const n = 1_000_000
	for _, format := range []string{"json", "yaml"} {
		b.Run(format, func(b *testing.B) {
			var buf bytes.Buffer
			writeCatalog(&buf, n, format == "json")
			benchLoad(b, "links."+format, buf.Bytes(), n)
		})
	}
}

// BenchmarkLookupRandom1M looks up codes in random order over a million
// links: the DRAM-bound case a big catalog sees in production.
func BenchmarkLookupRandom1M(b *testing.B) {
	const n = 1_000_000
	var buf bytes.Buffer
	writeCatalog(&buf, n, true)
	c, err := Parse("links.json", buf.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	// Fresh, contiguous key strings, as requests bring them.
	const samples = 1 << 20
	rnd := rand.New(rand.NewPCG(1, 2))
	var all strings.Builder
	offs := make([]int, samples+1)
	for i := range samples {
		all.WriteString(linkCode(rnd.IntN(n)))
		offs[i+1] = all.Len()
	}
	s := all.String()
	keys := make([]string, samples)
	for i := range keys {
		keys[i] = s[offs[i]:offs[i+1]]
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if c.Lookup(keys[i&(samples-1)]) == nil {
			b.Fatal("nil")
		}
	}
}
