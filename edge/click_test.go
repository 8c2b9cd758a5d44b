package edge

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clickedge/clickedge/catalog"
)

// stdJSON is what encoding/json writes for s, without HTML escaping.
func stdJSON(t testing.TB, s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f" + `"`},
		{"<a&b>", `"<a&b>"`},
		{"é€😀", `"é€😀"`},
		{"a\xffb", `"a\ufffdb"`},
		{"\xe2\x82", `"\ufffd\ufffd"`},           // a cut rune: one replacement per byte, as encoding/json
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`}, // a surrogate is not UTF-8
		{"x\u2028y\u2029z", `"x\u2028y\u2029z"`},
	}
	for _, tt := range tests {
		got := string(appendJSONString(nil, tt.in))
		if got != tt.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if std := stdJSON(t, tt.in); got != std {
			t.Errorf("appendJSONString(%q) = %s, encoding/json writes %s", tt.in, got, std)
		}
	}
}

func TestAppendTimestamp(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 27, 5, 10, 0, 123_456_789, time.UTC), "2026-11-27T05:10:00.123Z"},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05.000Z"},
		{time.Date(2026, 12, 31, 23, 59, 59, 999_999_999, time.UTC), "2026-12-31T23:59:59.999Z"},
		{time.Date(2026, 6, 1, 2, 0, 0, 7_000_000, time.FixedZone("X", 3600)), "2026-06-01T01:00:00.007Z"},
		{time.Date(999, 6, 1, 2, 0, 0, 0, time.UTC), "0999-06-01T02:00:00.000Z"},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "10000-01-01T00:00:00.000Z"},
	}
	for _, tt := range tests {
		got := string(appendTimestamp(nil, tt.in))
		if got != tt.want {
			t.Errorf("appendTimestamp(%v) = %s, want %s", tt.in, got, tt.want)
		}
		if tt.in.Year() < 10000 {
			if std := tt.in.UTC().Format("2006-01-02T15:04:05.000Z07:00"); got != std {
				t.Errorf("appendTimestamp(%v) = %s, Format gives %s", tt.in, got, std)
			}
		}
	}
}

func testClick() *click {
	return &click{
		ID: "019a2b3c4d5e7f018123456789abcdef", Time: time.Date(2026, 11, 27, 5, 10, 0, 123_000_000, time.UTC),
		Link: "tv-sale", URL: "https://shop.example/tv?cid=019a2b3c4d5e7f018123456789abcdef&sub=a", Rule: "de-mobile",
		Region: "eu", Node: "eu-1", Country: "DE", Subdivision: "DE-BE", City: "Berlin",
		Device: "mobile", OS: "iOS", Browser: "Safari", Lang: "de", Bot: false, Preview: false,
		Params: catalog.Params{{Name: "subid", Value: "a"}}, Catalog: "0123456789ab",
	}
}

func TestClickJSON(t *testing.T) {
	c := testClick()
	want := `{"v":1,"click_id":"019a2b3c4d5e7f018123456789abcdef","ts":"2026-11-27T05:10:00.123Z","link":"tv-sale",` +
		`"url":"https://shop.example/tv?cid=019a2b3c4d5e7f018123456789abcdef&sub=a","rule":"de-mobile","region":"eu","node":"eu-1",` +
		`"country":"DE","subdivision":"DE-BE","city":"Berlin","device":"mobile","os":"iOS","browser":"Safari","lang":"de",` +
		`"bot":false,"preview":false,"params":{"subid":"a"},"catalog":"0123456789ab"}`
	if got := string(c.appendJSON(nil)); got != want {
		t.Errorf("appendJSON =\n%s\nwant\n%s", got, want)
	}
	c.Params = nil
	c.Truncated = []string{"subid", "subid1"}
	c.Paused, c.Bot, c.Preview = true, true, true
	got := string(c.appendJSON(nil))
	for _, part := range []string{`"params":{}`, `"truncated":["subid","subid1"]`, `"paused":true`, `"bot":true,"preview":true`} {
		if !strings.Contains(got, part) {
			t.Errorf("appendJSON = %s, want it to contain %s", got, part)
		}
	}
	if !json.Valid([]byte(got)) {
		t.Errorf("appendJSON = %s, not valid JSON", got)
	}
}

func FuzzClickJSON(f *testing.F) {
	f.Add("tv-sale", "https://x.example/?a=b", "rule", "DE", "Köln", "Mozilla\x00", "subid", "v\xff\u2028", "de")
	f.Add("", "", "", "", "", "", "", "", "")
	f.Add(`"`, `\`, "\n", "\x7f", "\xed\xa0\x80", "<>&", "p\"", "\xe2\x82", "😀")
	f.Fuzz(func(t *testing.T, link, url, rule, country, city, browser, pname, pvalue, lang string) {
		c := testClick()
		c.Link, c.URL, c.Rule, c.Country, c.City, c.Browser, c.Lang = link, url, rule, country, city, browser, lang
		c.Params = catalog.Params{{Name: pname, Value: pvalue}, {Name: pname + "2", Value: pvalue + pvalue}}
		c.Truncated = []string{pname}
		c.Paused = len(link)%2 == 1
		b := c.appendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("appendJSON = %q: not valid JSON", b)
		}
		var got struct {
			Link, URL, Rule, Country, City, Browser, Lang string
			Params                                        map[string]string
			Truncated                                     []string
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("Unmarshal(%q): %v", b, err)
		}
		// Each string decodes to what encoding/json's encoding of it decodes to.
		same := func(name, in, out string) {
			var want string
			if err := json.Unmarshal([]byte(stdJSON(t, in)), &want); err != nil {
				t.Fatal(err)
			}
			if out != want {
				t.Errorf("%s: %q decodes to %q, want %q", name, in, out, want)
			}
		}
		same("link", link, got.Link)
		same("url", url, got.URL)
		same("rule", rule, got.Rule)
		same("country", country, got.Country)
		same("city", city, got.City)
		same("browser", browser, got.Browser)
		same("lang", lang, got.Lang)
		if len(got.Truncated) != 1 {
			t.Errorf("truncated = %q, want one name", got.Truncated)
		}
		for _, in := range []string{pname, pname + "2"} {
			var key string
			json.Unmarshal([]byte(stdJSON(t, in)), &key)
			if _, ok := got.Params[key]; !ok {
				t.Errorf("params %q lack %q", got.Params, key)
			}
		}
		if s := string(appendJSONString(nil, pvalue)); s != stdJSON(t, pvalue) {
			t.Errorf("appendJSONString(%q) = %s, encoding/json writes %s", pvalue, s, stdJSON(t, pvalue))
		}
	})
}

func BenchmarkClickJSON(b *testing.B) {
	b.ReportAllocs()
	c := testClick()
	buf := make([]byte, 0, 1024)
	for b.Loop() {
		buf = c.appendJSON(buf[:0])
	}
}

// TestJSONPlain8 checks the word-at-a-time test against the byte table:
// every byte value at every position of an otherwise plain word.
func TestJSONPlain8(t *testing.T) {
	for pos := range 8 {
		for c := range 256 {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			want := c < utf8.RuneSelf && jsonSafe[c]
			if got := jsonPlain8(string(w)); got != want {
				t.Errorf("jsonPlain8(%q) = %v, want %v", w, got, want)
			}
		}
	}
	// Two unplain bytes at once, which carry from one byte into the next.
	for c := range 256 {
		for d := range 256 {
			w := string([]byte{byte(c), byte(d), 'x', 'x', 'x', 'x', 'x', byte(d)})
			want := c < utf8.RuneSelf && jsonSafe[c] && d < utf8.RuneSelf && jsonSafe[d]
			if got := jsonPlain8(w); got != want {
				t.Fatalf("jsonPlain8(%q) = %v, want %v", w, got, want)
			}
		}
	}
}
