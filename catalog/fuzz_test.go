package catalog

import (
	"bytes"
	"errors"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkRendered asserts the open-redirect invariants on one rendered URL.
func checkRendered(t *testing.T, tpl *Template, got string) {
	t.Helper()
	for i := 0; i < len(got); i++ {
		if c := got[i]; c <= ' ' || c == 0x7f {
			t.Fatalf("%q rendered %q: byte %#02x at %d", tpl, got, c, i)
		}
	}
	origin := tpl.Origin()
	if !strings.HasPrefix(got, origin) || (len(got) > len(origin) && strings.IndexByte("/?#", got[len(origin)]) < 0) {
		t.Fatalf("%q rendered %q, which does not continue its origin %q", tpl, got, origin)
	}
	u, err := url.Parse(got)
	if err != nil {
		t.Fatalf("%q rendered %q: %v", tpl, got, err)
	}
	o, err := url.Parse(origin)
	if err != nil {
		t.Fatalf("origin %q: %v", origin, err)
	}
	if u.Scheme != o.Scheme || u.Host != o.Host || u.User != nil || u.Opaque != "" {
		t.Fatalf("%q rendered %q: scheme %q host %q, want %q %q", tpl, got, u.Scheme, u.Host, o.Scheme, o.Host)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(designExample), "x\r\nLocation: https://evil.example/")
	f.Add(demoYAML, "@evil.example")
	f.Add([]byte("links:\n  - code: a\n    url: \"https://s.example/{subid}?q={subid1}#{click_id}\"\n"), "../..//evil.example")
	f.Add([]byte("links:\n  - {code: a, url: \"http://[::1]:80/?x={param:x}\", params: [x], rules: [{name: r, when: 'cidr(\"::/0\")', split: [{url: \"https://b.example\", weight: 1}]}]}\n"), "%00")
	f.Add([]byte("links: []\n"), "")
	f.Add([]byte("links:\n  - code: a\n    url: \"https://{subid}.example/\"\n"), "evil.example/")
	f.Fuzz(func(t *testing.T, data []byte, value string) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "fuzz.yaml") || strings.Contains(err.Error(), "internal error") {
				t.Fatalf("Parse error %q: want ErrInvalid naming the file", err)
			}
			return
		}
		hostile := []string{value, "\r\nLocation: https://evil.example/", "@evil.example:443/", "//evil.example", "\\evil", "#?&=%", "ü\x00\xff"}
		for l := range c.Links() {
			if c.Lookup(l.Code) != l {
				t.Fatalf("Lookup(%q) does not return the link Links() yields", l.Code)
			}
			tpls := []*Template{l.URL(), l.Fallback()}
			for _, r := range l.Rules {
				tpls = append(tpls, r.URL)
				for _, s := range r.Split {
					tpls = append(tpls, s.URL)
				}
			}
			for _, h := range hostile {
				v := &Values{ClickID: h, Country: h, Region: h}
				for _, p := range l.Params {
					v.Params = append(v.Params, Param{p, h})
				}
				for _, tpl := range tpls {
					if tpl != nil {
						checkRendered(t, tpl, string(tpl.AppendURL(nil, v)))
					}
				}
				facts := &Facts{Country: h, Device: h, City: h, Params: v.Params, Hour: len(h) % 24, IP: netip.MustParseAddr("10.0.0.1")}
				if tpl, _ := l.Route(facts, uint64(len(h))*0x9E3779B97F4A7C15); tpl == nil {
					t.Fatalf("Route(%q) = nil template", l.Code)
				}
			}
		}
	})
}

func FuzzAppendURL(f *testing.F) {
	f.Add("0190a5b2c3d47e8f9a0b1c2d3e4f5a6b", "DE", "eu-central", "aff 42", "a&b=c")
	f.Add("\r\n", "#", "?", "/../", "%zz")
	f.Add("ü日本", "\x00", "\xff", "+ +", ";,")
	const src = "https://s.example/p/{subid}/q?c={click_id}&x={param:x}&r={region}#f={country}"
	tpl := mustTemplate(f, src)
	f.Fuzz(func(t *testing.T, clickID, country, region, subid, x string) {
		v := &Values{ClickID: clickID, Country: country, Region: region, Params: Params{{"subid", subid}, {"x", x}}}
		got := string(tpl.AppendURL(nil, v))
		checkRendered(t, tpl, got)

		// Values never add structure: exactly one '?', one '#', and the path
		// keeps its segments; each value unescapes back to itself.
		rest, frag, ok := strings.Cut(strings.TrimPrefix(got, tpl.Origin()), "#")
		if !ok || strings.Contains(frag, "#") {
			t.Fatalf("%q: want exactly one '#'", got)
		}
		path, query, ok := strings.Cut(rest, "?")
		if !ok || strings.Contains(query, "?") {
			t.Fatalf("%q: want exactly one '?'", got)
		}
		segs := strings.Split(path, "/")
		if len(segs) != 4 || segs[1] != "p" || segs[3] != "q" {
			t.Fatalf("%q: path segments %q, want [\"\" p <subid> q]", got, segs)
		}
		if s, err := url.PathUnescape(segs[2]); err != nil || s != subid {
			t.Fatalf("%q: path segment unescapes to %q, %v; want %q", got, s, err, subid)
		}
		q, err := url.ParseQuery(query)
		if err != nil || len(q) != 3 || q.Get("c") != clickID || q.Get("x") != x || q.Get("r") != region {
			t.Fatalf("%q: query %v, %v; want c=%q x=%q r=%q", got, q, err, clickID, x, region)
		}
		if s, err := url.QueryUnescape(strings.TrimPrefix(frag, "f=")); err != nil || s != country {
			t.Fatalf("%q: fragment unescapes to %q, %v; want %q", got, s, err, country)
		}
	})
}

// FuzzRoute checks the closures against the expr VM on arbitrary facts.
func FuzzRoute(f *testing.F) {
	whens := []string{
		`country == "DE" && device == "mobile"`,
		`country in ["DE", "AT"] || city contains "erl"`,
		`hour >= 22 || weekday in [0, 6] || hour in 9..17`,
		`params["x"] == "y" || "subid" in params || params[country] != ""`,
		`cidr("10.0.0.0/8") || cidr("2001:db8::/32") || cidr(params.net, "192.168.0.0/16")`,
		`ip == params.x || ip startsWith "10."`,
		`city matches "^[A-Z][a-z]+$" && !bot`,
		`(lang < "m") == (device >= country)`,
	}
	var rules []*Rule
	for _, w := range whens {
		r := compileRule(f, w)
		if r.fast == nil {
			f.Fatalf("%q runs on the VM, want closures", w)
		}
		rules = append(rules, r)
	}
	f.Add("DE", "mobile", "Berlin", "y", "10.1.2.3", 23, 6, false)
	f.Add("", "", "", "", "::ffff:192.168.1.1", -1, 99, true)
	f.Fuzz(func(t *testing.T, country, device, city, x, ip string, hour, weekday int, bot bool) {
		fa := Facts{Country: country, Device: device, City: city, Lang: x, Bot: bot, Hour: hour, Weekday: weekday,
			Params: Params{{"x", x}, {"net", ip}}}
		fa.IP, _ = netip.ParseAddr(ip)
		for i, r := range rules {
			if got, want := r.fast(&fa), r.runVM(&fa); got != want {
				t.Fatalf("%s: closures = %v, VM = %v for %+v", whens[i], got, want, fa)
			}
		}
	})
}

// FuzzReplayLog replays arbitrary bytes as the store's change log: it must
// never panic; the intact prefix it reports must lie within the data and
// replay again to itself, whole; and a log it accepts must keep what it
// accepted when more bytes are appended after it (a torn next append).
func FuzzReplayLog(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, &Options{Node: "n1"})
	if err != nil {
		f.Fatal(err)
	}
	for _, code := range []string{"a", "b"} {
		if _, err := s.Put(code, linkJSON(code, "https://"+code+".example/")); err != nil {
			f.Fatal(err)
		}
	}
	s.Delete("a")
	s.Close()
	log, err := os.ReadFile(filepath.Join(dir, logFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(log)
	f.Add(log[:len(log)-3])
	f.Add(append(bytes.Clone(log), make([]byte, 40)...))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		good, err := replayLog(data, mustMem(t))
		if err != nil {
			return
		}
		if good < 0 || good > int64(len(data)) {
			t.Fatalf("intact prefix %d of %d bytes", good, len(data))
		}
		again, err := replayLog(data[:good], mustMem(t))
		if err != nil || again != good {
			t.Fatalf("the intact prefix replays to %d, %v; want %d, nil", again, err, good)
		}
		torn := append(bytes.Clone(data[:good]), 0, 0, 0, 9, 1, 2)
		if got, err := replayLog(torn, mustMem(t)); err != nil || got != good {
			t.Fatalf("with a torn append after it: %d, %v; want %d, nil", got, err, good)
		}
	})
}

func mustMem(t *testing.T) *Store {
	s, err := Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
