package catalog

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
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
