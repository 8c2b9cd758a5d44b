package edge_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/clickedge/clickedge/edge/edgetest"
)

const answersCatalog = `links:
  - code: moved
    url: "https://new.example/?cid={click_id}"
    redirect: 301
  - code: temp
    url: "https://temp.example/?cid={click_id}"
    redirect: 307
  - code: hide
    url: "https://adv.example/p?a=1&b=2&cid={click_id}"
    redirect: meta
  - code: ab
    url: "https://x.example/"
    rules:
      - name: test
        sticky: true
        split:
          - {url: "https://a.example/?cid={click_id}", weight: 50}
          - {url: "https://b.example/?cid={click_id}", weight: 50}
`

var uidCookie = regexp.MustCompile(`^ce_uid=([0-9a-f]{16}); Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax$`)

func TestRedirectStatusesAndStickySplits(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, nil)
		ts.SetCatalog(edgetest.Catalog(t, answersCatalog))
		do := tr.start(t, ts.Server)

		for _, tc := range []struct {
			code   string
			status int
			host   string
		}{{"moved", 301, "https://new.example/"}, {"temp", 307, "https://temp.example/"}} {
			res, _ := do(t, "GET", "/r/"+tc.code)
			if res.StatusCode != tc.status || !strings.HasPrefix(res.Header.Get("Location"), tc.host) {
				t.Fatalf("%s = %d %q, want %d to %s", tc.code, res.StatusCode, res.Header.Get("Location"), tc.status, tc.host)
			}
			if res.Header.Get("Set-Cookie") != "" {
				t.Fatalf("%s sets a cookie", tc.code)
			}
		}

		// A meta refresh: 200, a page that refreshes to the target, no
		// Location, and no referrer for the target.
		res, body := do(t, "GET", "/r/hide")
		if res.StatusCode != 200 || res.Header.Get("Location") != "" || res.Header.Get("Referrer-Policy") != "no-referrer" ||
			!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("meta = %d %v", res.StatusCode, res.Header)
		}
		if !strings.Contains(body, `<meta name="referrer" content="no-referrer">`) ||
			!regexp.MustCompile(`content="0;url=https://adv\.example/p\?a=1&amp;b=2&amp;cid=[0-9a-f]{32}"`).MatchString(body) {
			t.Fatalf("meta page:\n%s", body)
		}
		if res, body := do(t, "HEAD", "/r/hide"); res.StatusCode != 200 || body != "" {
			t.Fatalf("HEAD meta = %d %q", res.StatusCode, body)
		}

		// A sticky split: the first answer sets the cookie; with it, the
		// user keeps the branch.
		res, _ = do(t, "GET", "/r/ab")
		m := uidCookie.FindStringSubmatch(res.Header.Get("Set-Cookie"))
		if res.StatusCode != 302 || m == nil {
			t.Fatalf("first sticky answer = %d, Set-Cookie %q", res.StatusCode, res.Header.Get("Set-Cookie"))
		}
		first := host(res.Header.Get("Location"))
		for range 10 {
			res, _ := do(t, "GET", "/r/ab", withHeader("Cookie", "other=1; ce_uid="+m[1]))
			if got := host(res.Header.Get("Location")); got != first || res.Header.Get("Set-Cookie") != "" {
				t.Fatalf("with the cookie: %s (Set-Cookie %q), want %s and no new cookie", got, res.Header.Get("Set-Cookie"), first)
			}
		}
		seen := map[string]int{}
		for i := range 200 {
			res, _ := do(t, "GET", "/r/ab", withHeader("Cookie", fmt.Sprintf("ce_uid=%016x", uint64(i+1)*0x9E3779B97F4A7C15)))
			seen[host(res.Header.Get("Location"))]++
		}
		if seen["a.example"] < 60 || seen["b.example"] < 60 {
			t.Fatalf("200 users over a 50/50 sticky split: %v", seen)
		}
		// A malformed cookie is replaced.
		res, _ = do(t, "GET", "/r/ab", withHeader("Cookie", "ce_uid=zz"))
		if !uidCookie.MatchString(res.Header.Get("Set-Cookie")) || res.StatusCode != http.StatusFound {
			t.Fatalf("malformed cookie: %d Set-Cookie %q", res.StatusCode, res.Header.Get("Set-Cookie"))
		}
	})
}

func host(loc string) string {
	loc = strings.TrimPrefix(loc, "https://")
	h, _, _ := strings.Cut(loc, "/")
	return h
}
