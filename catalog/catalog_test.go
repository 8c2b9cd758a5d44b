package catalog

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

//go:embed testdata/demo.yaml
var demoYAML []byte

// designExample is the catalog example of DESIGN.md, verbatim.
const designExample = `links:
  - code: tv-sale                 # [A-Za-z0-9_-]{1,64}
    url: "https://shop.example/tv?cid={click_id}&sub={subid}"
    status: active                # active | paused
    fallback_url: "https://shop.example/"   # used while paused
    params: [subid, subid1, utm_campaign]   # query params recorded
    rules:                        # first match wins; none = url
      - name: de-mobile
        when: 'country == "DE" && device == "mobile"'
        url: "https://m.shop.example/de?cid={click_id}"
      - name: night-split
        when: 'hour >= 22'
        split:
          - {url: "https://a.example/?cid={click_id}", weight: 70}
          - {url: "https://b.example/?cid={click_id}", weight: 30}
`

func mustParse(t testing.TB, src string) *Catalog {
	t.Helper()
	c, err := Parse("links.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func render(tpl *Template, v *Values) string {
	if tpl == nil {
		return "<nil>"
	}
	return string(tpl.AppendURL(nil, v))
}

func TestParseDesignExample(t *testing.T) {
	c := mustParse(t, designExample)
	if c.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", c.Len())
	}
	l := c.Lookup("tv-sale")
	if l == nil {
		t.Fatal(`Lookup("tv-sale") = nil`)
	}
	if got, want := l.Params, []string{"subid", "subid1", "utm_campaign"}; !slices.Equal(got, want) {
		t.Errorf("Params = %q, want %q", got, want)
	}
	if l.Paused() {
		t.Error("Paused() = true, want false")
	}
	v := &Values{ClickID: "c1", Params: Params{{"subid", "a b"}}}
	if got, want := render(l.Fallback(), v), "https://shop.example/"; got != want {
		t.Errorf("Fallback = %q, want %q", got, want)
	}
	tests := []struct {
		f        Facts
		wantURL  string
		wantRule string
	}{
		{Facts{Country: "DE", Device: "mobile", Hour: 23}, "https://m.shop.example/de?cid=c1", "de-mobile"},
		{Facts{Country: "DE", Device: "desktop", Hour: 23}, "", "night-split"},
		{Facts{Country: "FR", Hour: 12}, "https://shop.example/tv?cid=c1&sub=a+b", ""},
	}
	for _, tt := range tests {
		tpl, rule := l.Route(&tt.f, 0)
		if rule != tt.wantRule || (tt.wantURL != "" && render(tpl, v) != tt.wantURL) {
			t.Errorf("Route(%+v) = %q, %q; want %q, %q", tt.f, render(tpl, v), rule, tt.wantURL, tt.wantRule)
		}
	}
}

func TestParseDemo(t *testing.T) {
	c, err := Parse("demo.yaml", demoYAML)
	if err != nil {
		t.Fatalf("Parse(demo.yaml): %v", err)
	}
	var codes []string
	paused, splits, rules := 0, 0, 0
	for l := range c.Links() {
		codes = append(codes, l.Code)
		if l.Paused() {
			paused++
			if l.Fallback() == nil {
				t.Errorf("paused link %q has no fallback", l.Code)
			}
		}
		for _, r := range l.Rules {
			rules++
			if r.Split != nil {
				splits++
			}
			if r.When != "" && r.fast == nil {
				t.Errorf("demo rule %q of %q runs on the VM; keep the demo on the fast path", r.Name, l.Code)
			}
		}
	}
	if len(codes) < 3 || len(codes) > 4 || paused == 0 || splits == 0 || rules < 3 {
		t.Errorf("demo has links %q with %d paused, %d rules, %d splits; want 3-4 links, a paused one, rules and a split",
			codes, paused, rules, splits)
	}
}

func TestParams(t *testing.T) {
	c := mustParse(t, `links:
  - code: default
    url: "https://s.example/?s={subid}&s4={subid4}"
  - code: listed
    url: "https://s.example/?x={param:utm.source}"
    params: [utm.source, subid]
  - code: none
    url: "https://s.example/"
    params: []
`)
	tests := []struct {
		code string
		want []string
	}{
		{"default", []string{"subid", "subid1", "subid2", "subid3", "subid4"}},
		{"listed", []string{"utm.source", "subid"}},
		{"none", []string{}},
	}
	for _, tt := range tests {
		if got := c.Lookup(tt.code).Params; !slices.Equal(got, tt.want) {
			t.Errorf("Lookup(%q).Params = %q, want %q", tt.code, got, tt.want)
		}
	}
	c = mustParse(t, "links:\n  - code: \"007\"\n    url: \"https://s.example/\"\n    params: [\"1.50\", 2]\n")
	if l := c.Lookup("007"); l == nil || !slices.Equal(l.Params, []string{"1.50", "2"}) {
		t.Errorf(`Lookup("007") = %v, want the link with params ["1.50" "2"]`, l)
	}
}

func TestPaused(t *testing.T) {
	c := mustParse(t, `links:
  - code: with-fallback
    status: paused
    url: "https://s.example/live?c={click_id}"
    fallback_url: "https://s.example/sorry?c={click_id}&l={link}"
  - code: without
    status: paused
    url: "https://s.example/live"
  - code: active
    status: active
    url: "https://s.example/live"
    fallback_url: "https://s.example/sorry"
`)
	tests := []struct {
		code        string
		paused      bool
		fallback    string
		routeAnyway string
	}{
		{"with-fallback", true, "https://s.example/sorry?c=id&l=with-fallback", "https://s.example/live?c=id"},
		{"without", true, "<nil>", "https://s.example/live"},
		{"active", false, "https://s.example/sorry", "https://s.example/live"},
	}
	v := &Values{ClickID: "id"}
	for _, tt := range tests {
		l := c.Lookup(tt.code)
		tpl, _ := l.Route(&Facts{}, 0)
		if l.Paused() != tt.paused || render(l.Fallback(), v) != tt.fallback || render(tpl, v) != tt.routeAnyway {
			t.Errorf("%s: Paused() = %v, Fallback = %q, Route = %q; want %v, %q, %q",
				tt.code, l.Paused(), render(l.Fallback(), v), render(tpl, v), tt.paused, tt.fallback, tt.routeAnyway)
		}
	}
}

func TestRouteFirstMatch(t *testing.T) {
	c := mustParse(t, `links:
  - code: l
    url: "https://default.example/"
    rules:
      - name: de-mobile
        when: 'country == "DE" && device == "mobile"'
        url: "https://1.example/"
      - name: de
        when: 'country == "DE"'
        url: "https://2.example/"
      - name: mobile
        when: 'device == "mobile"'
        url: "https://3.example/"
      - name: vm-rule
        when: 'lower(city) == "paris"'
        url: "https://4.example/"
      - name: rest
        url: "https://5.example/"
`)
	l := c.Lookup("l")
	tests := []struct {
		f        Facts
		wantRule string
		wantURL  string
	}{
		{Facts{Country: "DE", Device: "mobile"}, "de-mobile", "https://1.example/"},
		{Facts{Country: "DE", Device: "desktop"}, "de", "https://2.example/"},
		{Facts{Country: "FR", Device: "mobile"}, "mobile", "https://3.example/"},
		{Facts{Country: "FR", City: "PARIS"}, "vm-rule", "https://4.example/"},
		{Facts{}, "rest", "https://5.example/"},
	}
	for _, tt := range tests {
		tpl, rule := l.Route(&tt.f, 0)
		if rule != tt.wantRule || render(tpl, nil) != tt.wantURL {
			t.Errorf("Route(%+v) = %q, %q; want %q, %q", tt.f, render(tpl, nil), rule, tt.wantURL, tt.wantRule)
		}
	}
}

func TestRouteNoMatch(t *testing.T) {
	l := mustParse(t, designExample).Lookup("tv-sale")
	tpl, rule := l.Route(&Facts{}, 12345)
	if tpl != l.URL() || rule != "" {
		t.Fatalf("Route(no match) = %q, %q; want the link URL and \"\"", tpl, rule)
	}
	if tpl, rule := l.Route(nil, 0); tpl != l.URL() || rule != "" {
		t.Fatalf("Route(nil) = %q, %q; want the link URL and \"\"", tpl, rule)
	}
}

func TestSplitDistribution(t *testing.T) {
	l := mustParse(t, designExample).Lookup("tv-sale")
	f := &Facts{Hour: 23}
	rng := rand.New(rand.NewPCG(7, 11))
	const draws = 100_000
	counts := map[string]int{}
	for range draws {
		tpl, rule := l.Route(f, rng.Uint64())
		if rule != "night-split" {
			t.Fatalf("Route rule = %q, want night-split", rule)
		}
		counts[tpl.Origin()]++
	}
	a := float64(counts["https://a.example"]) / draws
	b := float64(counts["https://b.example"]) / draws
	if a < 0.69 || a > 0.71 || b < 0.29 || b > 0.31 {
		t.Fatalf("split shares a=%.4f b=%.4f over %d draws, want 0.70 and 0.30 within 0.01", a, b, draws)
	}
}

func TestSplitBounds(t *testing.T) {
	l := mustParse(t, designExample).Lookup("tv-sale")
	f := &Facts{Hour: 23}
	// The first rnd that maps to draw 70 of 100: ceil(70 * 2^64 / 100).
	q, r := bits.Div64(70, 0, 100)
	edge := q
	if r != 0 {
		edge++
	}
	tests := []struct {
		rnd  uint64
		want string
	}{
		{0, "https://a.example"},
		{edge - 1, "https://a.example"},
		{edge, "https://b.example"},
		{^uint64(0), "https://b.example"},
	}
	for _, tt := range tests {
		tpl, _ := l.Route(f, tt.rnd)
		if tpl.Origin() != tt.want {
			t.Errorf("Route(rnd=%#x) = %q, want %q", tt.rnd, tpl.Origin(), tt.want)
		}
		again, _ := l.Route(f, tt.rnd)
		if again != tpl {
			t.Errorf("Route(rnd=%#x) is not deterministic", tt.rnd)
		}
	}
}

// TestRefusals checks every refusal names the file, the line, the link, the
// rule and the key.
func TestRefusals(t *testing.T) {
	const head = "links:\n  - code: l\n    url: \"https://s.example/\"\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"bad code", "links:\n  - code: \"a b\"\n    url: \"https://s.example/\"\n",
			[]string{`links.yaml:2:11: link #1: code: "a b": must match [A-Za-z0-9_-]{1,64}`}},
		{"long code", "links:\n  - code: " + strings.Repeat("a", 65) + "\n    url: \"https://s.example/\"\n",
			[]string{`link #1: code: "aaaa`}},
		{"number code", "links:\n  - code: 007\n    url: \"https://s.example/\"\n    params: [1.50, \"2\", 3]\n    rules:\n      - name: 0x10\n        url: \"https://s.example/\"\n",
			[]string{
				`links.yaml:2:11: link #1: code: 007 is read by YAML as the number 7: quote it`,
				`links.yaml:4:14: link #1: params[0]: 1.50 is read by YAML as the number 1.5: quote it`,
				`links.yaml:6:15: link #1: rule "16": name: 0x10 is read by YAML as the number 16: quote it`,
			}},
		{"missing code", "links:\n  - url: \"https://s.example/\"\n",
			[]string{`links.yaml:2:5: link #1: code: missing`}},
		{"duplicate code", head + "  - code: l\n    url: \"https://t.example/\"\n",
			[]string{`links.yaml:4:11: link "l": code: duplicate: already used at line 2`}},
		{"missing url", "links:\n  - code: l\n",
			[]string{`links.yaml:2:5: link "l": url: missing`}},
		{"bad url", "links:\n  - code: l\n    url: \"https://{subid}.example/\"\n",
			[]string{`links.yaml:3:10: link "l": url: "https://{subid}.example/": macros are not allowed in the scheme, userinfo, host or port`}},
		{"bad fallback", head + "    fallback_url: \"/sorry\"\n",
			[]string{`links.yaml:4:19: link "l": fallback_url: "/sorry": must be an absolute http:// or https:// URL`}},
		{"status", head + "    status: stopped\n",
			[]string{`links.yaml:4:13: link "l": status: "stopped": must be active or paused`}},
		{"unknown macro", "links:\n  - code: l\n    url: \"https://s.example/?a={utm}\"\n",
			[]string{`link "l": url: "https://s.example/?a={utm}": unknown macro {utm}`}},
		{"unrecorded param macro", "links:\n  - code: l\n    url: \"https://s.example/?a={param:utm}\"\n    params: [subid]\n",
			[]string{`link "l": url: "https://s.example/?a={param:utm}": macro {param:utm}: the link does not record parameter "utm" (params: subid)`}},
		{"unrecorded subid macro", "links:\n  - code: l\n    url: \"https://s.example/?a={subid1}\"\n    params: [subid]\n",
			[]string{`macro {subid1}: the link does not record parameter "subid1"`}},
		{"bad param name", head + "    params: [ok, \"b d\"]\n",
			[]string{`links.yaml:4:18: link "l": params[1]: "b d": parameter names are [A-Za-z0-9_.-]{1,64}`}},
		{"duplicate param", head + "    params: [a, a]\n",
			[]string{`link "l": params[1]: "a": listed twice`}},
		{"too many params", head + "    params: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]\n",
			[]string{`links.yaml:4:13: link "l": params: 17 parameters: at most 16`}},
		{"bad expression", head + "    rules:\n      - name: de-mobile\n        when: 'cuntry == \"DE\"'\n        url: \"https://m.example/\"\n",
			[]string{`links.yaml:6:15: link "l": rule "de-mobile": when: unknown name cuntry (1:1)`}},
		{"syntax", head + "    rules:\n      - name: r\n        when: 'country == '\n        url: \"https://m.example/\"\n",
			[]string{`link "l": rule "r": when: unexpected token EOF`}},
		{"non-bool", head + "    rules:\n      - name: r\n        when: 'hour'\n        url: \"https://m.example/\"\n",
			[]string{`link "l": rule "r": when: expected bool, but got int`}},
		{"empty when", head + "    rules:\n      - name: r\n        when: ''\n        url: \"https://m.example/\"\n",
			[]string{`link "l": rule "r": when: empty expression`}},
		{"unrecorded params key", head + "    rules:\n      - name: r\n        when: 'params[\"utm\"] == \"x\"'\n        url: \"https://m.example/\"\n",
			[]string{`link "l": rule "r": when: params["utm"]: the link does not record parameter "utm"`}},
		{"bad cidr", head + "    rules:\n      - name: r\n        when: 'cidr(\"10.0.0.0/99\")'\n        url: \"https://m.example/\"\n",
			[]string{`link "l": rule "r": when: cidr: bad prefix "10.0.0.0/99"`}},
		{"url and split", head + "    rules:\n      - name: r\n        url: \"https://m.example/\"\n        split:\n          - {url: \"https://a.example/\", weight: 1}\n",
			[]string{`links.yaml:5:9: link "l": rule "r": has both url and split: want one`}},
		{"neither url nor split", head + "    rules:\n      - name: r\n        when: 'bot'\n",
			[]string{`links.yaml:5:9: link "l": rule "r": has neither url nor split: want one`}},
		{"empty split", head + "    rules:\n      - name: r\n        split: []\n",
			[]string{`links.yaml:6:16: link "l": rule "r": split: needs at least one entry`}},
		{"weights", head + "    rules:\n      - name: r\n        split:\n" +
			"          - {url: \"https://a.example/\", weight: 0}\n" +
			"          - {url: \"https://b.example/\", weight: -3}\n" +
			"          - {url: \"https://c.example/\", weight: 2.5}\n" +
			"          - {url: \"https://d.example/\", weight: \"7\"}\n" +
			"          - {url: \"https://e.example/\"}\n" +
			"          - {url: \"https://f.example/\", weight: 1000001}\n" +
			"          - {weight: 1}\n",
			[]string{
				`links.yaml:7:49: link "l": rule "r": split[0].weight: 0: must be a positive integer`,
				`links.yaml:8:49: link "l": rule "r": split[1].weight: -3: must be a positive integer`,
				`links.yaml:9:49: link "l": rule "r": split[2].weight: 2.5: must be a positive integer`,
				`links.yaml:10:49: link "l": rule "r": split[3].weight: 7: must be a positive integer`,
				`links.yaml:11:14: link "l": rule "r": split[4].weight: missing`,
				`link "l": rule "r": split[5].weight: 1000001: must be a positive integer up to 1000000`,
				`links.yaml:13:14: link "l": rule "r": split[6].url: missing`,
			}},
		{"bad split url", head + "    rules:\n      - name: r\n        split:\n          - {url: \"https://a.example/\\r\\n\", weight: 1}\n",
			[]string{`link "l": rule "r": split[0].url: "https://a.example/\r\n": byte 18: control character 0x0d`}},
		{"rule name", head + "    rules:\n      - when: 'bot'\n        url: \"https://m.example/\"\n      - name: \"a b\"\n        url: \"https://m.example/\"\n",
			[]string{`links.yaml:5:9: link "l": rule #1: name: missing`, `links.yaml:7:15: link "l": rule "a b": name: must match`}},
		{"duplicate rule", head + "    rules:\n      - name: r\n        when: bot\n        url: \"https://m.example/\"\n      - name: r\n        url: \"https://m.example/\"\n",
			[]string{`links.yaml:8:15: link "l": rule "r": name: duplicate rule name in this link`}},
		{"unreachable", head + "    rules:\n      - name: all\n        url: \"https://m.example/\"\n      - name: never\n        when: bot\n        url: \"https://m.example/\"\n",
			[]string{`links.yaml:7:9: link "l": rule "never": unreachable: rule "all" before it has no when and always matches`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("links.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse = %d links, nil error; want %q", c.Len(), tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error =\n%v\nwant it to contain\n%s", err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tt.want) {
				t.Errorf("Parse error has %d lines, want %d:\n%v", n, len(tt.want), err)
			}
		})
	}
}

func TestStrictYAML(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top key", "links: []\nlnks: []\n", `links.yaml:2:1: unknown key "lnks"`},
		{"unknown link key", "links:\n  - code: l\n    url: \"https://s.example/\"\n    stauts: paused\n",
			`links.yaml:4:5: link "l": stauts: unknown key "stauts"`},
		{"unknown rule key", "links:\n  - code: l\n    url: \"https://s.example/\"\n    rules:\n      - name: r\n        wen: bot\n        url: \"https://s.example/\"\n",
			`links.yaml:6:9: link "l": rules[0].wen: unknown key "wen"`},
		{"unknown split key", "links:\n  - code: l\n    url: \"https://s.example/\"\n    rules:\n      - name: r\n        split:\n          - {url: \"https://s.example/\", weigth: 1}\n",
			`link "l": rules[0].split[0].weigth: unknown key "weigth"`},
		{"wrong type", "links:\n  - code: l\n    url: {a: 1}\n", `links.yaml:3:10: link "l": url: want a string, got a mapping`},
		{"list expected", "links:\n  - code: l\n    url: \"https://s.example/\"\n    params: subid\n", `links.yaml:4:13: link "l": params: string was used where sequence is expected`},
		{"links not a list", "links: {code: l}\n", `links.yaml:1:8:`},
		{"syntax", "links:\n  - code: [\n", `links.yaml:2:11:`},
		{"duplicate key", "links:\n  - code: l\n    code: m\n", `links.yaml:3:5: mapping key "code" already defined at [2:5]`},
		{"empty file", "", `links.yaml: empty file`},
		{"comments only", "# nothing\n", `links.yaml: empty file`},
		{"no links key", "{}\n", `links.yaml:1: links: missing`},
		{"two documents", "links: []\n---\nlinks: []\n", `links.yaml: more than one YAML document`},
		{"undefined alias", "links:\n  - code: l\n    url: *nope\n", `links.yaml:3:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("links.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
		})
	}
}

func TestUnknownKeyStillChecksTheRest(t *testing.T) {
	_, err := Parse("links.yaml", []byte("links:\n  - code: l\n    url: \"ftp://s.example/\"\n    stauts: paused\n"))
	for _, want := range []string{`links.yaml:3:10: link "l": url: "ftp://s.example/": must be an absolute`, `links.yaml:4:5: link "l": stauts: unknown key`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse error = %v, want it to contain %q", err, want)
		}
	}
}

func TestEmptyCatalog(t *testing.T) {
	c := mustParse(t, "links: []\n")
	if c.Len() != 0 || c.Lookup("x") != nil {
		t.Fatalf("Len() = %d, want 0", c.Len())
	}
}

func TestAnchors(t *testing.T) {
	c := mustParse(t, `links:
  - code: a
    url: &u "https://s.example/?s={subid}"
    params: &p [subid, x]
  - code: b
    url: *u
    params: *p
`)
	if got := render(c.Lookup("b").URL(), &Values{Params: Params{{"subid", "1"}}}); got != "https://s.example/?s=1" {
		t.Fatalf("aliased url renders %q", got)
	}
}

func TestErrorsSortedAndCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("links:\n")
	for i := range 30 {
		fmt.Fprintf(&b, "  - code: c%d\n    url: \"https://s.example/{bad%d}\"\n", i, i)
	}
	_, err := Parse("links.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("Parse = nil error, want 30 problems")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 || lines[maxErrors] != "links.yaml: and 10 more errors" {
		t.Fatalf("got %d lines ending %q, want %d errors and \"links.yaml: and 10 more errors\"", len(lines), lines[len(lines)-1], maxErrors)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("Parse error %T does not unwrap to a list", err)
	}
	prev := 0
	for i, e := range joined.Unwrap()[:maxErrors] {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %d is %T, want *Error", i, e)
		}
		if ce.File != "links.yaml" || ce.Line <= prev || ce.Link != fmt.Sprintf("link %q", fmt.Sprintf("c%d", i)) || ce.Field != "url" {
			t.Errorf("error %d = %+v, want links.yaml, line after %d, link c%d, field url", i, ce, prev, i)
		}
		prev = ce.Line
	}
}

func TestVersion(t *testing.T) {
	a1 := mustParse(t, designExample)
	a2 := mustParse(t, designExample)
	b := mustParse(t, designExample+"\n")
	if len(a1.Version()) != 12 || a1.Version() != a2.Version() || a1.Version() == b.Version() {
		t.Fatalf("Version() = %q, %q, %q; want 12 hex digits, equal for equal input only", a1.Version(), a2.Version(), b.Version())
	}
}

func TestLookup(t *testing.T) {
	c := mustParse(t, designExample)
	tests := []struct {
		code string
		want bool
	}{
		{"tv-sale", true},
		{"TV-SALE", false},
		{"tv-sale ", false},
		{"", false},
		{"../tv-sale", false},
	}
	for _, tt := range tests {
		if got := c.Lookup(tt.code) != nil; got != tt.want {
			t.Errorf("Lookup(%q) found = %v, want %v", tt.code, got, tt.want)
		}
	}
	var nilCat *Catalog
	if nilCat.Lookup("tv-sale") != nil || nilCat.Len() != 0 {
		t.Error("nil catalog: Lookup or Len found links")
	}
	for range nilCat.Links() {
		t.Error("nil catalog: Links yielded a link")
	}
}

func TestLinksOrderAndBreak(t *testing.T) {
	c := mustParse(t, "links:\n  - {code: z, url: \"https://s.example/\"}\n  - {code: a, url: \"https://s.example/\"}\n  - {code: m, url: \"https://s.example/\"}\n")
	var got []string
	for l := range c.Links() {
		got = append(got, l.Code)
		if len(got) == 2 {
			break
		}
	}
	if want := []string{"z", "a"}; !slices.Equal(got, want) {
		t.Fatalf("Links() = %q, want %q", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "links.yaml")
	if err := os.WriteFile(path, []byte(designExample), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.Len() != 1 || c.Name() != path {
		t.Fatalf("Load = %v, %v; want 1 link named %s", c, err, path)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Fatalf("Load(missing) = %v, want a not-exist error that is not ErrInvalid", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("links:\n  - code: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":2:5: ") {
		t.Fatalf("Load(bad) = %v, want an error starting with %s:2:5: ", err, bad)
	}
}

func TestFactsSetTime(t *testing.T) {
	var f Facts
	// 2024-06-09 was a Sunday; 23:30 in UTC+2 is 21:30 UTC.
	tm, err := time.Parse(time.RFC3339, "2024-06-09T23:30:00+02:00")
	if err != nil {
		t.Fatal(err)
	}
	f.SetTime(tm)
	if f.Hour != 21 || f.Weekday != 0 {
		t.Fatalf("SetTime: Hour, Weekday = %d, %d; want 21, 0", f.Hour, f.Weekday)
	}
}

func TestParamsGet(t *testing.T) {
	p := Params{{"a", "1"}, {"b", ""}, {"a", "2"}}
	tests := []struct {
		name, want string
		ok         bool
	}{{"a", "1", true}, {"b", "", true}, {"c", "", false}}
	for _, tt := range tests {
		got, ok := p.Lookup(tt.name)
		if got != tt.want || ok != tt.ok || p.Get(tt.name) != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestIPVariable(t *testing.T) {
	tests := []struct {
		ip   netip.Addr
		want string
	}{
		{netip.Addr{}, ""},
		{netip.MustParseAddr("10.0.0.1"), "10.0.0.1"},
		{netip.MustParseAddr("::ffff:10.0.0.1"), "10.0.0.1"},
		{netip.MustParseAddr("fe80::1%eth0"), "fe80::1"},
	}
	for _, tt := range tests {
		if got := ipString(tt.ip); got != tt.want {
			t.Errorf("ipString(%v) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

// TestConcurrentUse shares one snapshot between goroutines, closures and the
// pooled VM alike; run with -race.
func TestConcurrentUse(t *testing.T) {
	c := mustParse(t, `links:
  - code: l
    url: "https://s.example/?c={click_id}&s={subid}"
    rules:
      - name: fast
        when: 'country == "DE" && cidr("10.0.0.0/8")'
        url: "https://fast.example/?c={click_id}"
      - name: vm
        when: 'lower(city) == "paris" && params.subid != ""'
        split:
          - {url: "https://a.example/?s={subid}", weight: 1}
          - {url: "https://b.example/?s={subid}", weight: 1}
`)
	cases := []struct {
		f    Facts
		rule string
	}{
		{Facts{Country: "DE", IP: netip.MustParseAddr("10.0.0.1")}, "fast"},
		{Facts{City: "PARIS", Params: Params{{"subid", "x"}}}, "vm"},
		{Facts{City: "PARIS"}, ""},
	}
	done := make(chan error)
	for g := range 8 {
		go func() {
			var buf []byte
			for i := range 2000 {
				tc := &cases[(g+i)%len(cases)]
				tpl, rule := c.Lookup("l").Route(&tc.f, uint64(i)<<40)
				if rule != tc.rule {
					done <- fmt.Errorf("Route = rule %q, want %q", rule, tc.rule)
					return
				}
				buf = tpl.AppendURL(buf[:0], &Values{ClickID: "id", Params: tc.f.Params})
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestAliasBomb(t *testing.T) {
	// 300 links aliasing one with 300 rules aliasing one 300-way split:
	// 27 million templates from 16 KB.
	var b strings.Builder
	b.WriteString("links:\n  - code: a\n    url: \"https://s.example/\"\n    rules:\n      - &r\n        name: r\n        split: [")
	for j := range 300 {
		fmt.Fprintf(&b, "{url: \"https://s.example/%d\", weight: 1},", j)
	}
	b.WriteString("]\n  - &l\n    code: b\n    url: \"https://s.example/\"\n    rules: [")
	b.WriteString(strings.Repeat("*r,", 300))
	b.WriteString("]\n")
	b.WriteString(strings.Repeat("  - *l\n", 300))
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if want := "bomb.yaml:1: links: YAML aliases expand"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Parse(alias bomb) = %v, want an error starting %q", err, want)
	}
}

func TestAliasSharedRules(t *testing.T) {
	// Sharing a rules block between many links is what aliases are for.
	var b strings.Builder
	b.WriteString("links:\n  - code: l0\n    url: \"https://s.example/\"\n    rules: &shared\n")
	for i := range 5 {
		fmt.Fprintf(&b, "      - {name: r%d, when: 'country == \"C%d\"', url: \"https://s.example/%d?c={click_id}\"}\n", i, i, i)
	}
	for i := 1; i < 5000; i++ {
		fmt.Fprintf(&b, "  - {code: l%d, url: \"https://s.example/\", rules: *shared}\n", i)
	}
	c := mustParse(t, b.String())
	if _, rule := c.Lookup("l4999").Route(&Facts{Country: "C3"}, 0); c.Len() != 5000 || rule != "r3" {
		t.Fatalf("Len() = %d, Route rule = %q; want 5000, r3", c.Len(), rule)
	}
}
