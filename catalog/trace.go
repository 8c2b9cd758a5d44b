package catalog

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Trace is what a link does for a request, for the dry run (GET
// /admin/links/{code}/trace, clickedge links trace): nothing is recorded.
type Trace struct {
	Code   string        `json:"code"`
	Paused bool          `json:"paused,omitempty"`
	Rule   string        `json:"rule"`            // the matched rule, "" for the link's url (or a paused link's fallback)
	URL    string        `json:"url"`             // the target template chosen (a split: the branch drawn)
	Split  []TraceBranch `json:"split,omitempty"` // every branch of a matched split
	// Redirect is the answer: "301", "302", "307" or "meta".
	Redirect string `json:"redirect"`
	// Sticky: the split's branch is the user's (drawn from the sticky
	// cookie), so the same user always gets the same one.
	Sticky bool `json:"sticky,omitempty"`
}

// TraceBranch is one branch of a split with its weight.
type TraceBranch struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// Trace routes f as a click would, drawing a split branch with rnd, and
// says what was chosen. A paused link answers its fallback ("" without one).
func (l *Link) Trace(f *Facts, rnd uint64) Trace {
	tr := Trace{Code: l.Code, Paused: l.paused, Redirect: l.RedirectOf().String()}
	if l.paused {
		if l.fallback != nil {
			tr.URL = l.fallback.String()
		}
		return tr
	}
	d := l.Decide(f, rnd, rnd)
	rule := d.Rule
	tr.Rule, tr.URL, tr.Redirect, tr.Sticky = rule, d.URL.String(), d.Redirect.String(), d.Sticky
	for _, r := range l.Rules {
		if r.Name == rule && rule != "" && r.Split != nil {
			for _, b := range r.Split {
				tr.Split = append(tr.Split, TraceBranch{URL: b.URL.String(), Weight: b.Weight})
			}
		}
	}
	return tr
}

// FactsFromQuery builds the facts of a dry run from query parameters named
// like the expression variables: country, subdivision, city, device, os,
// browser, lang, bot (true/false), hour (0-23), weekday (0-6), ip,
// edge_region, and param.NAME for each recorded parameter; hour and
// weekday default to now's. An unknown name or a bad value is an error
// naming it.
func FactsFromQuery(q url.Values, now time.Time) (*Facts, error) {
	f := &Facts{}
	f.SetTime(now)
	for name, vs := range q {
		v := vs[0]
		switch {
		case name == "country":
			f.Country = v
		case name == "subdivision":
			f.Subdivision = v
		case name == "city":
			f.City = v
		case name == "device":
			f.Device = v
		case name == "os":
			f.OS = v
		case name == "browser":
			f.Browser = v
		case name == "lang":
			f.Lang = v
		case name == "edge_region":
			f.EdgeRegion = v
		case name == "bot":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("bot: %q: want true or false", v)
			}
			f.Bot = b
		case name == "hour" || name == "weekday":
			n, err := strconv.Atoi(v)
			limit := 23
			if name == "weekday" {
				limit = 6
			}
			if err != nil || n < 0 || n > limit {
				return nil, fmt.Errorf("%s: %q: want 0 to %d", name, v, limit)
			}
			if name == "hour" {
				f.Hour = n
			} else {
				f.Weekday = n
			}
		case name == "ip":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, fmt.Errorf("ip: %q: not an address", v)
			}
			f.IP = a
		case strings.HasPrefix(name, "param."):
			f.Params = append(f.Params, Param{Name: strings.TrimPrefix(name, "param."), Value: v})
		case name == "rnd" || name == "code":
			// the caller's
		default:
			return nil, fmt.Errorf("%s: unknown (want country, subdivision, city, device, os, browser, lang, bot, hour, weekday, ip, edge_region or param.NAME)", name)
		}
	}
	return f, nil
}
