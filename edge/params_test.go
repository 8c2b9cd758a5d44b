package edge

import (
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/clickedge/clickedge/catalog"
)

var defaultNames = []string{"subid", "subid1", "subid2", "subid3", "subid4"}

// ps builds Params from name, value pairs.
func ps(kv ...string) catalog.Params {
	var p catalog.Params
	for i := 0; i+1 < len(kv); i += 2 {
		p = append(p, catalog.Param{Name: kv[i], Value: kv[i+1]})
	}
	return p
}

func TestParseParams(t *testing.T) {
	a300 := strings.Repeat("a", 300)
	tests := []struct {
		name      string
		names     []string
		raw       string
		want      catalog.Params
		truncated []string
		bad       string
	}{
		{"empty", defaultNames, "", nil, nil, ""},
		{"no names", nil, "subid=a", nil, nil, ""},
		{"simple", defaultNames, "subid=a&subid1=b", ps("subid", "a", "subid1", "b"), nil, ""},
		{"query order", defaultNames, "subid3=c&subid=a", ps("subid3", "c", "subid", "a"), nil, ""},
		{"unlisted ignored", defaultNames, "x=1&subid9=2&Subid=3", nil, nil, ""},
		{"first wins", defaultNames, "subid=a&subid=b", ps("subid", "a"), nil, ""},
		{"decoded", defaultNames, "subid=a+b%20c%2B%26", ps("subid", "a b c+&"), nil, ""},
		{"decoded key", defaultNames, "sub%69d=k&s%75bid1=l", ps("subid", "k", "subid1", "l"), nil, ""},
		{"key with a bad escape ignored", defaultNames, "subid%zz=1&subid=2", ps("subid", "2"), nil, ""},
		{"no value", defaultNames, "subid&subid1=", ps("subid", "", "subid1", ""), nil, ""},
		{"empty pairs", defaultNames, "&&subid=a&&=x&", ps("subid", "a"), nil, ""},
		{"semicolon is data", defaultNames, "subid=a;b", ps("subid", "a;b"), nil, ""},
		{"equals in value", defaultNames, "subid=a=b", ps("subid", "a=b"), nil, ""},
		{"bad escape", defaultNames, "subid=%zz", nil, nil, "subid"},
		{"short escape", defaultNames, "subid1=ok&subid=%4", nil, nil, "subid"},
		{"bad escape in a later duplicate ignored", defaultNames, "subid=ok&subid=%", ps("subid", "ok"), nil, ""},
		{"bad escape unlisted", defaultNames, "zz=%&subid=ok", ps("subid", "ok"), nil, ""},
		{"bad escape past the cap", defaultNames, "subid=" + a300 + "%", nil, nil, "subid"},
		{"cut plain", defaultNames, "subid=" + a300, ps("subid", a300[:256]), []string{"subid"}, ""},
		{"cut decoded", defaultNames, "subid=" + strings.Repeat("%61", 300), ps("subid", a300[:256]), []string{"subid"}, ""},
		{"exactly 256", defaultNames, "subid=" + a300[:256], ps("subid", a300[:256]), nil, ""},
		{"cut before a 2-byte rune", defaultNames, "subid=" + a300[:255] + "%C3%A9", ps("subid", a300[:255]), []string{"subid"}, ""},
		{"cut before a 4-byte rune", defaultNames, "subid=" + a300[:254] + "%F0%9F%98%80", ps("subid", a300[:254]), []string{"subid"}, ""},
		{"rune ends at 256", defaultNames, "subid=" + a300[:254] + "%C3%A9x", ps("subid", a300[:254]+"é"), []string{"subid"}, ""},
	}
	for _, tt := range tests {
		sc := newScratch().(*scratch)
		bad := sc.parseParams(tt.names, tt.raw)
		if bad != tt.bad {
			t.Errorf("%s: parseParams(%q) bad = %q, want %q", tt.name, tt.raw, bad, tt.bad)
			continue
		}
		if bad != "" {
			continue
		}
		if len(sc.params) != len(tt.want) || (len(tt.want) > 0 && !reflect.DeepEqual(sc.params, tt.want)) {
			t.Errorf("%s: parseParams(%q) = %q, want %q", tt.name, tt.raw, sc.params, tt.want)
		}
		if len(sc.truncated) != len(tt.truncated) || (len(tt.truncated) > 0 && !reflect.DeepEqual(sc.truncated, tt.truncated)) {
			t.Errorf("%s: truncated = %q, want %q", tt.name, sc.truncated, tt.truncated)
		}
	}
}

func TestParseParamsCap(t *testing.T) {
	var names []string
	var raw strings.Builder
	for i := range 20 {
		n := "p" + string(rune('a'+i))
		names = append(names, n)
		raw.WriteString(n + "=v&")
	}
	sc := newScratch().(*scratch)
	sc.parseParams(names, raw.String())
	if len(sc.params) != maxParams {
		t.Errorf("recorded %d params, want %d", len(sc.params), maxParams)
	}
}

func TestParseParamsValuesSurviveGrowth(t *testing.T) {
	// Decoded values live in sc.dec; when it grows, earlier values must not
	// change.
	sc := &scratch{}
	var raw strings.Builder
	var names []string
	for i := range 16 {
		n := "p" + string(rune('a'+i))
		names = append(names, n)
		raw.WriteString(n + "=" + strings.Repeat("%"+"4"+string("0123456789ABCDEF"[i]), 200) + "&")
	}
	if bad := sc.parseParams(names, raw.String()); bad != "" {
		t.Fatalf("bad = %q", bad)
	}
	for i, p := range sc.params {
		if want := strings.Repeat(string(rune(0x40+i)), 200); p.Value != want {
			t.Errorf("param %s = %q..., want %q...", p.Name, p.Value[:8], want[:8])
		}
	}
}

// refParams is parseParams written with net/url, as the reference.
func refParams(names []string, raw string) (catalog.Params, string) {
	var out catalog.Params
	seen := map[string]bool{}
	for _, pair := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || key == "" || seen[key] || len(out) == maxParams {
			continue
		}
		idx := -1
		for i, n := range names {
			if n == key {
				idx = i
			}
		}
		if idx < 0 {
			continue
		}
		seen[key] = true
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, key
		}
		val, _ = capValue(val)
		out = append(out, catalog.Param{Name: key, Value: val})
	}
	return out, ""
}

func FuzzParams(f *testing.F) {
	f.Add("subid=a&subid1=%20b+c&x=%zz")
	f.Add("sub%69d=k&subid=%")
	f.Add("subid=" + strings.Repeat("%C3%A9", 200))
	f.Fuzz(func(t *testing.T, raw string) {
		sc := newScratch().(*scratch)
		bad := sc.parseParams(defaultNames, raw)
		want, wantBad := refParams(defaultNames, raw)
		if bad != wantBad {
			t.Fatalf("parseParams(%q) bad = %q, net/url says %q", raw, bad, wantBad)
		}
		if bad != "" {
			return
		}
		if len(sc.params) != len(want) || (len(want) > 0 && !reflect.DeepEqual(sc.params, want)) {
			t.Fatalf("parseParams(%q) = %q, net/url says %q", raw, sc.params, want)
		}
		for _, p := range sc.params {
			if len(p.Value) > maxParamBytes {
				t.Fatalf("value of %s is %d bytes", p.Name, len(p.Value))
			}
		}
	})
}

func TestCapValue(t *testing.T) {
	a := strings.Repeat("a", 300)
	tests := []struct {
		in   string
		want string
		cut  bool
	}{
		{"", "", false},
		{a[:256], a[:256], false},
		{a[:257], a[:256], true},
		{a[:255] + "é", a[:255], true},
		{a[:254] + "é", a[:254] + "é", false},
		{a[:253] + "😀", a[:253], true},
		{a[:252] + "😀", a[:252] + "😀", false},
		{a[:250] + strings.Repeat("\x80", 10), a[:250] + "\x80\x80\x80", true}, // stray continuation bytes: back up at most 3
	}
	for _, tt := range tests {
		got, cut := capValue(tt.in)
		if got != tt.want || cut != tt.cut {
			t.Errorf("capValue(%d bytes ...%q) = %d bytes ...%q, %v; want %d bytes, %v",
				len(tt.in), tail(tt.in), len(got), tail(got), cut, len(tt.want), tt.cut)
		}
	}
}

func tail(s string) string { return s[max(0, len(s)-6):] }

func TestPrimaryLang(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"de", "de"},
		{"de-DE,de;q=0.9,en;q=0.8", "de"},
		{"DE-de", "de"},
		{"  en_US", "en"},
		{"fr;q=0.9", "fr"},
		{"zh-Hant-TW", "zh"},
		{"*", ""},
		{"*, de", ""},
		{"de1", ""},
		{"abcdefghi", ""},
		{"abcdefgh", "abcdefgh"},
		{"é", ""},
		{",de", ""},
		{"Ru", "ru"},
	}
	for _, tt := range tests {
		var buf [8]byte
		if got := primaryLang(tt.in, &buf); got != tt.want {
			t.Errorf("primaryLang(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
