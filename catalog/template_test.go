package catalog

import (
	"net/url"
	"strings"
	"testing"
)

var testParams = []string{"subid", "subid1", "subid2", "subid3", "subid4", "utm.source", "x"}

func mustTemplate(t testing.TB, src string) *Template {
	t.Helper()
	tpl, err := parseTemplate(src, "tv-sale", testParams)
	if err != nil {
		t.Fatalf("parseTemplate(%q): %v", src, err)
	}
	return tpl
}

func TestAppendURL(t *testing.T) {
	sub := func(v string) *Values { return &Values{Params: Params{{"subid", v}}} }
	tests := []struct {
		name string
		tpl  string
		v    *Values
		want string
	}{
		{"no macros", "https://shop.example/tv?a=1", sub("x"), "https://shop.example/tv?a=1"},
		{"host only", "https://shop.example", nil, "https://shop.example"},
		{"all plain macros", "https://shop.example/{link}?cid={click_id}&c={country}&r={region}&l={link}",
			&Values{ClickID: "0190abc", Country: "DE", Region: "eu-central"},
			"https://shop.example/tv-sale?cid=0190abc&c=DE&r=eu-central&l=tv-sale"},
		{"subids", "https://s.example/?a={subid}&b={subid1}&c={subid2}&d={subid3}&e={subid4}",
			&Values{Params: Params{{"subid4", "4"}, {"subid", "0"}, {"subid2", "2"}}},
			"https://s.example/?a=0&b=&c=2&d=&e=4"},
		{"param macro with dot", "https://s.example/?src={param:utm.source}",
			&Values{Params: Params{{"utm.source", "mail"}}}, "https://s.example/?src=mail"},
		{"nil values", "https://s.example/{country}?cid={click_id}&s={subid}", nil, "https://s.example/?cid=&s="},
		{"first duplicate wins", "https://s.example/?s={subid}",
			&Values{Params: Params{{"subid", "first"}, {"subid", "second"}}}, "https://s.example/?s=first"},

		// Query escaping (url.QueryEscape).
		{"query &=#", "https://s.example/?s={subid}", sub("a&b=c#d"), "https://s.example/?s=a%26b%3Dc%23d"},
		{"query space plus slash", "https://s.example/?s={subid}", sub("a b+c/d"), "https://s.example/?s=a+b%2Bc%2Fd"},
		{"query percent", "https://s.example/?s={subid}", sub("100%41"), "https://s.example/?s=100%2541"},
		{"query CRLF", "https://s.example/?s={subid}", sub("a\r\nLocation: x"), "https://s.example/?s=a%0D%0ALocation%3A+x"},
		{"query unicode", "https://s.example/?s={subid}", sub("ü日"), "https://s.example/?s=%C3%BC%E6%97%A5"},
		{"query invalid utf8", "https://s.example/?s={subid}", sub("\xff\x00"), "https://s.example/?s=%FF%00"},
		{"query unreserved kept", "https://s.example/?s={subid}", sub("aZ09-_.~"), "https://s.example/?s=aZ09-_.~"},

		// Path escaping (url.PathEscape): one segment, '/' and '?' escaped.
		{"path slash question", "https://s.example/p/{subid}/x", sub("a/b?c"), "https://s.example/p/a%2Fb%3Fc/x"},
		{"path space hash", "https://s.example/p/{subid}", sub("a b#c"), "https://s.example/p/a%20b%23c"},
		{"path keeps =&+:@", "https://s.example/p/{subid}", sub("a=b&c+d:e@f"), "https://s.example/p/a=b&c+d:e@f"},
		{"path percent", "https://s.example/p/{subid}", sub("%2F"), "https://s.example/p/%252F"},
		{"path CRLF", "https://s.example/p/{subid}", sub("\r\n"), "https://s.example/p/%0D%0A"},
		{"path unicode", "https://s.example/p/{subid}", sub("ü"), "https://s.example/p/%C3%BC"},
		{"path dotdot stays on host", "https://s.example/a/{subid}/b", sub(".."), "https://s.example/a/../b"},

		// Fragment: query escaping; a '#' in the query starts the fragment.
		{"fragment", "https://s.example/p#s={subid}", sub("a b&c/d"), "https://s.example/p#s=a+b%26c%2Fd"},
		{"fragment after query", "https://s.example/p/{subid}?q={subid}#f={subid}", sub("a b"),
			"https://s.example/p/a%20b?q=a+b#f=a+b"},
		{"encoded literal brace", "https://s.example/%7Bx%7D?s={subid}", sub("1"), "https://s.example/%7Bx%7D?s=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl := mustTemplate(t, tt.tpl)
			got := string(tpl.AppendURL([]byte("prefix:"), tt.v))
			if want := "prefix:" + tt.want; got != want {
				t.Errorf("AppendURL(%q) = %q, want %q", tt.tpl, got, want)
			}
		})
	}
}

func TestEscapeMatchesStdlib(t *testing.T) {
	inputs := []string{"", "plain", "a b", "a+b", "ü", "\x00\x7f\x80\xff", "a/b?c#d&e=f;g,h", "~!*'()$@:[]{}|\\^`\"<>", "%%25"}
	for c := range 256 {
		inputs = append(inputs, string([]byte{byte(c)}))
	}
	for _, s := range inputs {
		if got, want := string(appendEscaped(nil, s, true)), url.QueryEscape(s); got != want {
			t.Errorf("query escape %q = %q, want %q", s, got, want)
		}
		if got, want := string(appendEscaped(nil, s, false)), url.PathEscape(s); got != want {
			t.Errorf("path escape %q = %q, want %q", s, got, want)
		}
	}
}

func TestParseTemplateAccepts(t *testing.T) {
	tests := []struct{ src, origin string }{
		{"https://shop.example", "https://shop.example"},
		{"HTTPS://Shop.Example/Path?q=1#f", "HTTPS://Shop.Example"},
		{"http://127.0.0.1:8080/x", "http://127.0.0.1:8080"},
		{"https://[2001:db8::1]:443/", "https://[2001:db8::1]:443"},
		{"https://a-b_c.example?x={subid}", "https://a-b_c.example"},
		{"https://s.example#{click_id}", "https://s.example"},
		{"https://s.example/a;b,c!$'()*+=@:~[]", "https://s.example"},
	}
	for _, tt := range tests {
		tpl, err := parseTemplate(tt.src, "c", testParams)
		if err != nil {
			t.Errorf("parseTemplate(%q): %v", tt.src, err)
			continue
		}
		if tpl.Origin() != tt.origin || tpl.String() != tt.src {
			t.Errorf("parseTemplate(%q): Origin() = %q, String() = %q; want %q, %q", tt.src, tpl.Origin(), tpl.String(), tt.origin, tt.src)
		}
	}
}

func TestParseTemplateRefuses(t *testing.T) {
	tests := []struct{ src, want string }{
		{"", "missing"},
		{"ftp://s.example/", "must be an absolute http:// or https:// URL"},
		{"//s.example/", "must be an absolute"},
		{"/relative", "must be an absolute"},
		{"javascript:alert(1)", "must be an absolute"},
		{"https:s.example", "must be an absolute"},
		{"http{click_id}://s.example/", "must be an absolute"},
		{"{subid}", "must be an absolute"},
		{"https://", "missing host"},
		{"https:///path", "missing host"},
		{"https://:80/", "missing host"},
		{"https://{subid}.example/", "macros are not allowed in the scheme, userinfo, host or port"},
		{"https://s.example{subid}/", "macros are not allowed"},
		{"https://s.example:{subid}/", "macros are not allowed"},
		{"https://{subid}@s.example/", "macros are not allowed"},
		{"https://s.example}/", "macros are not allowed"},
		{"https://user@s.example/", "userinfo"},
		{"https://user:pw@s.example/", "userinfo"},
		{"https://good.example\\@evil.example/", "userinfo"},
		{"https://good.example\\.evil.example/", "bad host"},
		{"https://s.example/\\evil.example", `character '\\' is not allowed`},
		{"https://ex ample/", "bad host"},
		{"https://-s.example/", "bad host"},
		{"https://bücher.example/", "bad host"},
		{"https://s.example:99999/", "bad port"},
		{"https://s.example:0/", "bad port"},
		{"https://s.example:+80/", "bad port"},
		{"https://s.example:8a/", "bad port"},
		{"https://[::1%25eth0]/", "bad IPv6 host"},
		{"https://[1.2.3.4]/", "bad IPv6 host"},
		{"https://[::1/", "unterminated IPv6"},
		{"https://[::1]x/", "bad host"},
		{"https://s.example/a b", "space"},
		{"https://s.example/a\r\nLocation: https://evil.example", "control character 0x0d"},
		{"https://s.example/a\nb", "control character 0x0a"},
		{"https://s.example/\tb", "control character 0x09"},
		{"https://s.example/\x7f", "control character 0x7f"},
		{"https://s.example/ü", "non-ASCII byte 0xc3"},
		{"https://s.example/\"", "is not allowed"},
		{"https://s.example/<script>", "is not allowed"},
		{"https://s.example/%zz", "bad percent-encoding"},
		{"https://s.example/%4", "bad percent-encoding"},
		{"https://s.example/{nope}", "unknown macro {nope}"},
		{"https://s.example/{}", "unknown macro {}"},
		{"https://s.example/{subid5}", "unknown macro {subid5}"},
		{"https://s.example/{SUBID}", "unknown macro {SUBID}"},
		{"https://s.example/{subid", "unterminated macro"},
		{"https://s.example/}", "unmatched }"},
		{"https://s.example/?a={param:utm}", `the link does not record parameter "utm"`},
		{"https://s.example/?a={param:}", "parameter names are"},
		{"https://s.example/?a={param:a b}", "parameter names are"},
		{"https://s.example/" + strings.Repeat("a", maxURLLen), "longer than"},
	}
	for _, tt := range tests {
		_, err := parseTemplate(tt.src, "c", testParams)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseTemplate(%q) error = %v, want it to contain %q", tt.src, err, tt.want)
		}
	}
}

func TestParseTemplateParamNotRecorded(t *testing.T) {
	_, err := parseTemplate("https://s.example/?a={subid2}", "c", []string{"subid"})
	if err == nil || !strings.Contains(err.Error(), `macro {subid2}: the link does not record parameter "subid2" (params: subid)`) {
		t.Fatalf("parseTemplate error = %v, want the unrecorded subid2 named", err)
	}
}

func TestTemplateUses(t *testing.T) {
	tests := []struct {
		src    string
		uses   Macro
		params []string
	}{
		{"https://s.example/", 0, nil},
		{"https://s.example/?c={click_id}", MacroClickID, nil},
		{"https://s.example/{link}/{country}?r={region}", MacroLink | MacroCountry | MacroRegion, nil},
		{"https://s.example/?a={subid}&b={param:x}&c={subid}", MacroParam, []string{"subid", "x"}},
	}
	all := []Macro{MacroClickID, MacroLink, MacroCountry, MacroRegion, MacroParam}
	for _, tt := range tests {
		tpl := mustTemplate(t, tt.src)
		for _, m := range all {
			if got, want := tpl.Uses(m), tt.uses&m != 0; got != want {
				t.Errorf("%q: Uses(%b) = %v, want %v", tt.src, m, got, want)
			}
		}
		if got := tpl.Params(); strings.Join(got, ",") != strings.Join(tt.params, ",") {
			t.Errorf("%q: Params() = %q, want %q", tt.src, got, tt.params)
		}
	}
}

func TestAppendURLAllocs(t *testing.T) {
	tpl := mustTemplate(t, "https://s.example/p/{country}?cid={click_id}&s={subid}&x={param:x}#{link}")
	v := &Values{ClickID: "0190a5b2c3d47e8f9a0b1c2d3e4f5a6b", Country: "DE", Params: Params{{"subid", "a b&c"}, {"x", "ü"}}}
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() { buf = tpl.AppendURL(buf[:0], v) })
	if allocs != 0 {
		t.Fatalf("AppendURL allocs = %v, want 0", allocs)
	}
	if want := "https://s.example/p/DE?cid=0190a5b2c3d47e8f9a0b1c2d3e4f5a6b&s=a+b%26c&x=%C3%BC#tv-sale"; string(buf) != want {
		t.Fatalf("AppendURL = %q, want %q", buf, want)
	}
}
