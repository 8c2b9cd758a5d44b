package catalog

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// describe renders everything a catalog says about its links, for
// comparing two parses.
func describe(c *Catalog) string {
	var b strings.Builder
	for l := range c.Links() {
		fmt.Fprintf(&b, "%s params=%q paused=%v url=%s redirect=%v", l.Code, l.Params, l.Paused(), l.URL(), l.RedirectOf())
		if f := l.Fallback(); f != nil {
			fmt.Fprintf(&b, " fallback=%s", f)
		}
		for _, r := range l.Rules {
			fmt.Fprintf(&b, "\n  rule %q when %q sticky=%v redirect=%v", r.Name, r.When, r.Sticky, r.Redirect)
			if r.URL != nil {
				fmt.Fprintf(&b, " url=%s", r.URL)
			}
			for _, t := range r.Split {
				fmt.Fprintf(&b, " split=%s/%d", t.URL, t.Weight)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// asYAML makes Parse read data, a JSON document, with the YAML decoder: a
// comment first keeps it from looking like JSON, and JSON is YAML.
func asYAML(data []byte) []byte {
	return append([]byte("# yaml\n"), bytes.TrimPrefix(data, []byte(bom))...)
}

const jsonExample = `{"links": [
  {"code": "a1", "url": "https://adv.example/land?cid={click_id}&s={subid}", "params": ["subid", "src"],
   "rules": [
     {"name": "de", "when": "country == \"DE\" && device == \"mobile\"", "url": "https://de.example/?c={click_id}"},
     {"name": "ab", "split": [{"url": "https://a.example/", "weight": 3}, {"url": "https://b.example/", "weight": 1}]}
   ]},
  {"code": "paused-one", "url": "https://p.example/", "status": "paused", "fallback_url": "https://fb.example/?r={region}"},
  {"code": "esc\u0061ped", "url": "https:\/\/e.example\/\u0041?x={country}"}
]}`

// TestJSONMatchesYAML: the JSON fast path builds the catalog the YAML
// decoder builds from the same document.
func TestJSONMatchesYAML(t *testing.T) {
	var big bytes.Buffer
	writeCatalog(&big, 3*linkChunk+17, true) // several chunks and a partial one
	for name, data := range map[string][]byte{
		"example": []byte(jsonExample),
		"bom":     append([]byte(bom+"\n "), jsonExample...),
		"empty":   []byte(`{"links": []}`),
		"number":  []byte(`{"links": [{"code": 12, "url": "https://x.example/"}, {"code": "b", "url": "https://x.example/", "rules": [{"name": "s", "split": [{"url": "https://y.example/", "weight": 2}]}]}]}`),
		"big":     big.Bytes(),
	} {
		t.Run(name, func(t *testing.T) {
			if !isJSON(data) {
				t.Fatal("not read as JSON")
			}
			cj, err := Parse("c.json", data)
			if err != nil {
				t.Fatal(err)
			}
			cy, err := Parse("c.yaml", asYAML(data))
			if err != nil {
				t.Fatal(err)
			}
			if dj, dy := describe(cj), describe(cy); dj != dy {
				t.Fatalf("JSON and YAML decoders differ:\nJSON:\n%.2000s\nYAML:\n%.2000s", dj, dy)
			}
			if cj.Len() != cy.Len() {
				t.Fatalf("Len %d vs %d", cj.Len(), cy.Len())
			}
			for l := range cy.Links() {
				if got := cj.Lookup(l.Code); got == nil || got.Code != l.Code {
					t.Fatalf("JSON catalog: Lookup(%q) = %v", l.Code, got)
				}
			}
		})
	}
}

// TestJSONRefusals: what the YAML decoder refuses, the JSON one refuses,
// naming the file, the link and a line.
func TestJSONRefusals(t *testing.T) {
	for name, tc := range map[string]struct{ data, want string }{
		"unknown key":    {`{"links": [{"code": "a", "url": "https://x.example/", "colour": 1}]}`, `link "a"`},
		"duplicate code": {`{"links": [{"code": "a", "url": "https://x.example/"}, {"code": "a", "url": "https://y.example/"}]}`, `link "a"`},
		"bad template":   {`{"links": [{"code": "a", "url": "https://x.example/{nope}"}]}`, `link "a"`},
		"bad weight":     {`{"links": [{"code": "a", "url": "https://x.example/", "rules": [{"name": "s", "split": [{"url": "https://y.example/", "weight": -1}]}]}]}`, `link "a"`},
		"bad when":       {`{"links": [{"code": "a", "url": "https://x.example/", "rules": [{"name": "r", "when": "nosuchvar == 1", "url": "https://y.example/"}]}]}`, `rule "r"`},
		"truncated":      {`{"links": [{"code": "a", "url": "https://x.example/"`, `c.json`},
		"trailing":       {`{"links": []} {}`, `c.json`},
		"dup key":        {`{"links": [{"code": "a", "code": "b", "url": "https://x.example/"}]}`, `c.json`},
		"bad escape":     {`{"links": [{"code": "a\x", "url": "https://x.example/"}]}`, `c.json`},
	} {
		t.Run(name, func(t *testing.T) {
			_, errJ := Parse("c.json", []byte(tc.data))
			_, errY := Parse("c.json", asYAML([]byte(tc.data)))
			if errJ == nil {
				t.Fatalf("JSON decoder accepted %s", tc.data)
			}
			if errY == nil {
				t.Fatalf("YAML decoder accepted %s (the JSON one refused: %v)", tc.data, errJ)
			}
			if !strings.Contains(errJ.Error(), tc.want) || !strings.HasPrefix(errJ.Error(), "c.json:") {
				t.Fatalf("JSON error %q: want the file and %q", errJ, tc.want)
			}
		})
	}
}

// TestIndexLongCodes: codes longer than a slot holds, equal in their
// first inlineCode bytes, are told apart.
func TestIndexLongCodes(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"links": [`)
	const n = 200
	prefix := strings.Repeat("p", inlineCode)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"code": "%s%d", "url": "https://x.example/%d"}`, prefix, i, i)
	}
	b.WriteString(`]}`)
	c, err := Parse("long.json", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		code := fmt.Sprintf("%s%d", prefix, i)
		l := c.Lookup(code)
		if l == nil || l.Code != code || l.URL().String() != fmt.Sprintf("https://x.example/%d", i) {
			t.Fatalf("Lookup(%q) = %v", code, l)
		}
	}
	for _, miss := range []string{prefix, prefix + "x", prefix + "200", prefix[:inlineCode-1], "", strings.Repeat("p", maxName+1)} {
		if l := c.Lookup(miss); l != nil {
			t.Fatalf("Lookup(%q) = %q, want nil", miss, l.Code)
		}
	}
}

// FuzzParseJSON: on any input read as JSON, the fast decoder and the YAML
// decoder agree on whether it is a good catalog, and on what it holds.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(jsonExample))
	f.Add([]byte(`{"links": []}`))
	f.Add([]byte(`{"links": [{"code": "a", "url": "https://x.example/\ud83d\ude00"}]}`))
	f.Add([]byte(`{"links": [{"code": "a", "url": "https://x.example/", "params": ["subid"], "rules": [{"name": "r", "when": "true", "split": [{"url": "https://y.example/", "weight": 1.0}]}]}]}`))
	f.Add([]byte(`{"links": [{"code": "a", "url": "https://x.example/", "redirect": 301, "rules": [{"name": "r", "sticky": true, "redirect": "meta", "split": [{"url": "https://y.example/", "weight": 1}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !isJSON(data) {
			return
		}
		cj, errJ := Parse("f.json", data)
		cy, errY := Parse("f.json", asYAML(data))
		switch {
		case errJ == nil && errY == nil:
			if dj, dy := describe(cj), describe(cy); dj != dy {
				t.Fatalf("decoders differ on %q:\nJSON:\n%s\nYAML:\n%s", data, dj, dy)
			}
		case errJ == nil:
			t.Fatalf("JSON decoder accepted what YAML refuses (%v): %q", errY, data)
		}
		// The JSON decoder may refuse what YAML's more lenient flow syntax
		// accepts (single quotes, unquoted keys, comments).
	})
}
