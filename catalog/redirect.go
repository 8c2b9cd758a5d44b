package catalog

import (
	"fmt"
	"hash/fnv"
)

// Redirect is how a routed request is answered.
type Redirect uint16

const (
	RedirectDefault Redirect = 0   // the link's own, else 302
	RedirectMeta    Redirect = 1   // 200 with an HTML page that refreshes to the target and sends no referrer
	Redirect301     Redirect = 301 // Moved Permanently
	Redirect302     Redirect = 302 // Found
	Redirect307     Redirect = 307 // Temporary Redirect (the method and body are kept)
)

// String is the form the file takes: "301", "302", "307" or "meta"; ""
// for the default.
func (r Redirect) String() string {
	switch r {
	case RedirectDefault:
		return ""
	case RedirectMeta:
		return "meta"
	}
	return fmt.Sprint(uint16(r))
}

// Status is the HTTP status of the answer: 200 for a meta refresh, 302 for
// the default.
func (r Redirect) Status() int {
	switch r {
	case RedirectDefault:
		return 302
	case RedirectMeta:
		return 200
	}
	return int(r)
}

// parseRedirect reads the redirect key: 301, 302 or 307 as a number or a
// string, or "meta"; absent is the default.
func parseRedirect(v any) (Redirect, error) {
	var n uint64
	switch v := v.(type) {
	case nil:
		return RedirectDefault, nil
	case string:
		switch v {
		case "meta":
			return RedirectMeta, nil
		case "301", "302", "307":
			fmt.Sscan(v, &n)
		}
	case uint64:
		n = v
	case int64:
		n = uint64(max(v, 0))
	case int:
		n = uint64(max(v, 0))
	case float64: // encoding/json's number, in a LinkSpec
		if v == float64(uint64(v)) {
			n = uint64(v)
		}
	}
	switch n {
	case 301, 302, 307:
		return Redirect(n), nil
	}
	return 0, fmt.Errorf("%v: want 301, 302, 307 or meta", v)
}

// Decision is where a request goes and how it is answered.
type Decision struct {
	URL      *Template // never nil
	Rule     string    // the matched rule; "" for the link's URL
	Redirect Redirect  // never RedirectDefault: the rule's, else the link's, else 302
	// Sticky is set when a sticky split decided: the branch came from the
	// user, and the edge must keep the user's cookie.
	Sticky bool
}

// Decide is Route that also says how to answer: the first rule whose
// expression holds decides; a split draws its branch from rnd, or for a
// sticky split from user (the same user always gets the same branch of a
// rule, on every node), and the link's URL serves when no rule matches.
// Like Route it ignores Paused and does not allocate.
func (l *Link) Decide(f *Facts, rnd, user uint64) Decision {
	if f == nil {
		f = &noFacts
	}
	d := Decision{URL: &l.url, Redirect: l.redirect}
rules:
	for _, r := range l.Rules {
		if !r.matches(f) {
			continue
		}
		d.Rule = r.Name
		if r.Redirect != RedirectDefault {
			d.Redirect = r.Redirect
		}
		switch {
		case r.URL != nil:
			d.URL = r.URL
		case r.Sticky:
			d.URL, d.Sticky = r.pick(mix64(user^r.salt)), true
		default:
			d.URL = r.pick(rnd)
		}
		break rules
	}
	if d.Redirect == RedirectDefault {
		d.Redirect = Redirect302
	}
	return d
}

// RedirectOf is how the link answers when no rule decides (and while
// paused): its own redirect, else 302.
func (l *Link) RedirectOf() Redirect {
	if l.redirect == RedirectDefault {
		return Redirect302
	}
	return l.redirect
}

// mix64 is splitmix64's finaliser: a user id and a rule's salt become a
// uniform draw.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// stickySalt ties a sticky draw to the link and the rule, the same on
// every node.
func stickySalt(code, rule string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(code))
	h.Write([]byte{0})
	h.Write([]byte(rule))
	return h.Sum64()
}
