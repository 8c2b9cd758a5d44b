package postback

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseQuery: any input either parses or is refused with a FieldError,
// never a panic; and the canonical query of what parsed is stable: parsing
// it again gives the same canonical query (the signer and the verifier
// agree on every input).
func FuzzParseQuery(f *testing.F) {
	f.Add("adv=acme&click_id=0192f4a1b2c37d8e9f0a1b2c3d4e5f60&order_id=A+1%2F2&ts=1764547200&sig=00")
	f.Add("a=%zz&&b")
	f.Add("k=%C3%A9&k=x")
	f.Add("=&=")
	f.Fuzz(func(t *testing.T, raw string) {
		ps, err := ParseQuery(nil, raw)
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("ParseQuery(%q) error %T, want *FieldError", raw, err)
			}
			return
		}
		c := Canonical(ps)
		again, err := ParseQuery(nil, c)
		if err != nil {
			t.Fatalf("the canonical query %q of %q does not parse: %v", c, raw, err)
		}
		if c2 := Canonical(again); c2 != c {
			t.Fatalf("canonical of canonical = %q, want %q", c2, c)
		}
	})
}

// FuzzHandler sends arbitrary queries and bodies to a handler with a real
// outbox: never a panic, never a 5xx, and never a 200 unless the request
// carries the signature of its own canonical query (or the token).
func FuzzHandler(f *testing.F) {
	ts := strconv.FormatInt(testNow.Unix(), 10)
	cid := clickAt(-time.Hour)
	good := SignedQuery([]byte(testSecret), Params{{"adv", "signed"}, {"click_id", cid}, {"order_id", "F1"}, {"ts", ts}})
	f.Add("GET", good, "")
	f.Add("POST", "", good)
	f.Add("GET", strings.Replace(good, "F1", "F2", 1), "")
	f.Add("GET", good+"&amount=1.00", "")
	f.Add("GET", "adv=tok&token="+testToken+"&click_id="+cid+"&order_id=T", "")
	f.Add("DELETE", "", "")
	// One handler for every input: a fresh outbox per input would make the
	// fuzzer crawl. Orders repeat across inputs, so any result may come.
	e := newEnv(f, nil)
	f.Fuzz(func(t *testing.T, method, query, body string) {
		e.t = t
		if method != "GET" && method != "POST" {
			method = "PUT"
		}
		r := e.do("net/http", call{method: method, query: query, body: body, ctype: "application/x-www-form-urlencoded"})
		if r.Status >= 500 {
			t.Fatalf("%s %q %q: answer %d %q", method, query, body, r.Status, r.Error)
		}
		if r.Status != http.StatusOK {
			return
		}
		ps, err := ParseQuery(nil, query)
		if err == nil && method == "POST" {
			ps, err = ParseQuery(ps, body)
		}
		if err != nil {
			t.Fatalf("200 for parameters that do not parse: %v", err)
		}
		adv, _ := ps.Get("adv")
		switch adv {
		case "signed", "brief":
			sig, _ := ps.Get("sig")
			if !checkSig([]byte(testSecret), Canonical(ps), sig) {
				t.Fatalf("200 for %q %q without a good signature", query, body)
			}
		case "tok":
			tok, _ := ps.Get("token")
			if tok != testToken {
				t.Fatalf("200 for %q %q without the token", query, body)
			}
		default:
			t.Fatalf("200 for advertiser %q", adv)
		}
	})
}
