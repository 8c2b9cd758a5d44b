package catalog

import (
	"errors"
	"strings"
	"testing"
)

const redirectCatalog = `links:
  - code: moved
    url: "https://new.example/"
    redirect: 301
  - code: hidden
    url: "https://adv.example/"
    redirect: meta
    rules:
      - name: keep-method
        when: 'country == "DE"'
        url: "https://de.example/"
        redirect: "307"
  - code: ab
    url: "https://x.example/"
    rules:
      - name: test
        sticky: true
        split:
          - {url: "https://a.example/", weight: 70}
          - {url: "https://b.example/", weight: 30}
`

func TestRedirectAndSticky(t *testing.T) {
	for _, form := range []string{"yaml", "json"} {
		data := []byte(redirectCatalog)
		if form == "json" {
			data = []byte(`{"links":[
{"code":"moved","url":"https://new.example/","redirect":301},
{"code":"hidden","url":"https://adv.example/","redirect":"meta","rules":[{"name":"keep-method","when":"country == \"DE\"","url":"https://de.example/","redirect":"307"}]},
{"code":"ab","url":"https://x.example/","rules":[{"name":"test","sticky":true,"split":[{"url":"https://a.example/","weight":70},{"url":"https://b.example/","weight":30}]}]}]}`)
		}
		c, err := Parse("links."+form, data)
		if err != nil {
			t.Fatalf("%s: %v", form, err)
		}
		for _, tc := range []struct {
			code    string
			f       Facts
			rule    string
			want    Redirect
			url     string
			status  int
			sticky  bool
			display string
		}{
			{"moved", Facts{}, "", Redirect301, "https://new.example/", 301, false, "301"},
			{"hidden", Facts{}, "", RedirectMeta, "https://adv.example/", 200, false, "meta"},
			{"hidden", Facts{Country: "DE"}, "keep-method", Redirect307, "https://de.example/", 307, false, "307"},
			{"ab", Facts{}, "test", Redirect302, "", 302, true, "302"},
		} {
			d := c.Lookup(tc.code).Decide(&tc.f, 1, 42)
			if d.Rule != tc.rule || d.Redirect != tc.want || d.Redirect.Status() != tc.status || d.Sticky != tc.sticky ||
				(tc.url != "" && d.URL.String() != tc.url) || d.Redirect.String() != tc.display {
				t.Fatalf("%s: Decide(%s, %+v) = %+v (%s), want rule %q redirect %v url %q sticky %v", form, tc.code, tc.f, d, d.URL, tc.rule, tc.want, tc.url, tc.sticky)
			}
		}
		// A sticky split: the same user gets the same branch whatever the
		// click's draw; users spread by weight.
		ab := c.Lookup("ab")
		counts := map[string]int{}
		for user := range uint64(10000) {
			first := ab.Decide(nil, 0, user).URL.String()
			for rnd := range uint64(5) {
				if got := ab.Decide(nil, rnd*0x9E3779B97F4A7C15, user).URL.String(); got != first {
					t.Fatalf("%s: user %d got %s, then %s", form, user, first, got)
				}
			}
			counts[first]++
		}
		if a := counts["https://a.example/"]; a < 6700 || a > 7300 {
			t.Fatalf("%s: sticky 70/30 split gave %v", form, counts)
		}
	}
}

func TestRedirectRefused(t *testing.T) {
	for _, tc := range []struct{ link, path string }{
		{`{"url":"https://x.example/","redirect":303}`, "redirect"},
		{`{"url":"https://x.example/","redirect":"permanent"}`, "redirect"},
		{`{"url":"https://x.example/","rules":[{"name":"r","url":"https://y.example/","redirect":"308"}]}`, "rules[0].redirect"},
		{`{"url":"https://x.example/","rules":[{"name":"r","url":"https://y.example/","sticky":true}]}`, "rules[0].sticky"},
	} {
		_, _, err := CheckLink("x", []byte(tc.link))
		if !errors.Is(err, ErrInvalid) || FieldOf(err) != tc.path {
			t.Fatalf("CheckLink(%s) = %v (field %q), want field %q", tc.link, err, FieldOf(err), tc.path)
		}
	}
	// The canonical form keeps them.
	canon, _, err := CheckLink("x", []byte(`{"url":"https://x.example/","redirect":301,"rules":[{"name":"r","sticky":true,"redirect":"meta","split":[{"url":"https://a.example/","weight":1}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"redirect":301`, `"sticky":true`, `"redirect":"meta"`} {
		if !strings.Contains(string(canon), want) {
			t.Fatalf("canonical %s lacks %s", canon, want)
		}
	}
}
