package catalog

import (
	"net/netip"
	"time"
)

// Param is one recorded query parameter.
type Param struct {
	Name, Value string
}

// Params are the recorded query parameters of a click, in any order. A slice
// rather than a map so the edge can fill a reused buffer per request; with at
// most 16 entries a linear scan beats hashing. When a name occurs twice the
// first entry wins.
type Params []Param

// Get returns the value of the first parameter called name, or "".
func (p Params) Get(name string) string {
	for i := range p {
		if p[i].Name == name {
			return p[i].Value
		}
	}
	return ""
}

// Lookup is like Get but also reports whether the parameter is present.
func (p Params) Lookup(name string) (string, bool) {
	for i := range p {
		if p[i].Name == name {
			return p[i].Value, true
		}
	}
	return "", false
}

// Facts are what rules know about a request: the variables of a `when`
// expression. The zero value is a request about which nothing is known.
// Route reads Facts and never keeps or modifies them, so the edge can reuse
// one per request.
type Facts struct {
	Country     string // country: ISO 3166-1 alpha-2, "" when unknown
	Subdivision string // subdivision: ISO 3166-2, e.g. "DE-BE"
	City        string // city
	Device      string // device: desktop | mobile | tablet | bot | unknown
	OS          string // os
	Browser     string // browser
	Lang        string // lang: the preferred language, e.g. "de"
	Bot         bool   // bot
	Params      Params // params: the recorded query parameters only (a map to expressions)
	Hour        int    // hour: 0..23, UTC
	Weekday     int    // weekday: 0 (Sunday)..6, UTC, as time.Weekday
	IP          netip.Addr
	EdgeRegion  string // edge_region: the region of the node serving the request
}

// noFacts stands in for a nil *Facts without an allocation.
var noFacts Facts

// SetTime fills Hour and Weekday from t, in UTC.
func (f *Facts) SetTime(t time.Time) {
	t = t.UTC()
	f.Hour, f.Weekday = t.Hour(), int(t.Weekday())
}

// clientAddr is the address rules see: an IPv4-mapped IPv6 address is its
// IPv4 address and a zone is dropped, so "10.0.0.0/8" matches a dual-stack
// listener's ::ffff:10.1.2.3.
func clientAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// ipString is the `ip` variable: "" when the address is unknown.
func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return clientAddr(a).String()
}
