package edge

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
	"unsafe"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/edge/device"
	"github.com/clickedge/clickedge/outbox"
)

// scratch is the per-request working memory, pooled so that a click
// allocates almost nothing of its own. Everything the request builds (the
// click id, decoded parameters, the URL, the body, the record) lives here
// and is reused by a later request once this one has returned.
type scratch struct {
	req       request  // the request being served
	res       response // its answer
	xff       []string // ServeFast: the X-Forwarded-For values, as views of the request
	path      []byte   // ServeFast: the percent-decoded path, when it had escapes
	id        [clickid.Len]byte
	lang      [8]byte
	key       [64]byte // a decoded query key, for comparison only
	dec       []byte   // decoded parameter values
	url       []byte
	body      []byte
	cookie    []byte
	params    catalog.Params
	truncated []string
	facts     catalog.Facts
	values    catalog.Values
	click     click
	rec       outbox.Record
}

func newScratch() any {
	return &scratch{
		xff:       make([]string, 0, 4),
		path:      make([]byte, 0, 128),
		dec:       make([]byte, 0, maxParams*(maxParamBytes+4)),
		url:       make([]byte, 0, 512),
		body:      make([]byte, 0, 1024),
		params:    make(catalog.Params, 0, maxParams),
		truncated: make([]string, 0, maxParams),
	}
}

// Buffers beyond these sizes are not kept for the next request: one huge
// click should not pin memory in the pool.
const (
	maxPooledURL  = 16 << 10
	maxPooledBody = 64 << 10
	maxPooledPath = 16 << 10
	maxPooledXFF  = 64
)

func (s *Server) getScratch() *scratch { return s.pool.Get().(*scratch) }

func (s *Server) putScratch(sc *scratch) {
	if cap(sc.url) > maxPooledURL || cap(sc.body) > maxPooledBody || cap(sc.path) > maxPooledPath || cap(sc.xff) > maxPooledXFF {
		return
	}
	// Drop the references into the request and the catalog, so that a
	// pooled scratch does not keep them alive. Entries past len were
	// cleared by the previous put and not written since.
	sc.req = request{}
	sc.res = response{}
	clear(sc.xff)
	sc.xff = sc.xff[:0]
	clear(sc.params)
	clear(sc.truncated)
	sc.facts = catalog.Facts{}
	sc.values = catalog.Values{}
	sc.click = click{}
	sc.rec = outbox.Record{}
	s.pool.Put(sc)
}

// serveClick answers GET and HEAD on /r/{code} and /c/{code} for a code of
// the right shape, into sc.res.
func (s *Server) serveClick(sc *scratch, rt route, code string, start time.Time) {
	q, res := &sc.req, &sc.res
	cat := s.catalog.Load()
	link := cat.Lookup(code)
	if link == nil {
		res.canned(&replyUnknown)
		return
	}

	if bad := sc.parseParams(link.Params, q.rawQuery); bad != "" {
		// Built in sc.body, which holds nothing yet.
		b := append(sc.body[:0], "bad percent-encoding in parameter "...)
		b = strconv.AppendQuote(b, bad)
		sc.body = append(b, '\n')
		res.text(http.StatusBadRequest, sc.body)
		return
	}
	paused := link.Paused()
	var tmpl *catalog.Template
	if paused {
		if tmpl = link.Fallback(); tmpl == nil {
			res.canned(&replyPaused)
			return
		}
	}

	now := start
	if s.now != nil {
		now = s.now()
	}
	ip := s.clientAddr(q)
	loc := s.geo.Lookup(ip)
	dev := device.Classify(q.ua)
	f := &sc.facts
	*f = catalog.Facts{
		Country:     loc.Country,
		Subdivision: loc.Subdivision,
		City:        loc.City,
		Device:      dev.Class,
		OS:          dev.OS,
		Browser:     dev.Browser,
		Lang:        primaryLang(q.lang, &sc.lang),
		Bot:         dev.Bot,
		Params:      sc.params,
		IP:          ip,
		EdgeRegion:  s.region,
	}
	f.SetTime(now)
	var rule string
	redir := link.RedirectOf()
	user, known := parseUID(q.uid)
	if !known {
		user = rand.Uint64() | 1
	}
	sticky := false
	if !paused {
		d := link.Decide(f, rand.Uint64(), user)
		tmpl, rule, redir, sticky = d.URL, d.Rule, d.Redirect, d.Sticky
	}

	id := clickid.NewAt(now)
	id.AppendHex(sc.id[:0])
	// The id's bytes are in sc, which is reused after this request: the
	// string is passed only to code that copies it before returning
	// (AppendURL, appendJSON, Recorder.Append and Spill), and the answer
	// is written (copied) before sc goes back to the pool.
	idStr := unsafe.String(&sc.id[0], len(sc.id))
	sc.values = catalog.Values{ClickID: idStr, Country: loc.Country, Region: s.region, Params: sc.params}
	sc.url = tmpl.AppendURL(sc.url[:0], &sc.values)
	if !safeTarget(sc.url, tmpl.Origin()) {
		// The catalog makes this impossible; if a bug ever makes it
		// possible, no header gets the URL.
		s.limiter.log(s.log, eventBadTarget, "edge: refusing a target URL the catalog should not have produced", nil,
			"link", link.Code, "template", tmpl.String())
		res.canned(&replyInternal)
		return
	}

	if q.method == http.MethodGet && s.keep(dev) {
		ts := now.UTC().Truncate(time.Millisecond)
		sc.click = click{
			ID:          idStr,
			Time:        ts,
			Link:        link.Code,
			URL:         unsafe.String(unsafe.SliceData(sc.url), len(sc.url)),
			Rule:        rule,
			Region:      s.region,
			Node:        s.node,
			Country:     f.Country,
			Subdivision: f.Subdivision,
			City:        f.City,
			Device:      f.Device,
			OS:          f.OS,
			Browser:     f.Browser,
			Lang:        f.Lang,
			Bot:         dev.Bot,
			Preview:     dev.Preview,
			Params:      sc.params,
			Catalog:     cat.Version(),
			Truncated:   sc.truncated,
			Paused:      paused,
		}
		sc.body = sc.click.appendJSON(sc.body[:0])
		sc.rec = outbox.Record{
			Time:       ts,
			Exchange:   s.exchange,
			RoutingKey: s.routingKey,
			MessageID:  idStr, // see above: Append copies it
			Headers:    s.headers,
			Body:       sc.body,
		}
		if !s.record(&sc.rec, link.Code) {
			res.canned(&replyUnavailable)
			return
		}
	}

	if rt == routeRegister {
		registered(sc, idStr)
		return
	}
	if redir == catalog.RedirectMeta {
		sc.body = appendMetaRefresh(sc.body[:0], sc.url)
		*res = response{status: http.StatusOK, ctype: ctypeHTML, body: sc.body, noReferrer: true}
	} else {
		*res = response{status: redir.Status(), location: sc.url, clen: hdrZero}
	}
	if sticky && !known {
		sc.cookie = appendUIDCookie(sc.cookie[:0], user)
		res.setCookie = sc.cookie
	}
}

// keep reports whether a GET from this client is recorded, and counts bots.
func (s *Server) keep(dev device.Info) bool {
	if !dev.Bot {
		return true
	}
	s.m.botClick(dev.Preview)
	if s.bots == Skip {
		s.m.outcome(outcomeSkippedBot)
		return false
	}
	return true
}

// record hands the click to the Recorder and applies the failure policy.
// It returns false when the request must be refused (Reject).
func (s *Server) record(rec *outbox.Record, link string) bool {
	err := s.recorder.Append(rec)
	if err == nil {
		if !s.onFate {
			s.m.outcome(outcomeRecorded)
		} // else counted by CountFate or CountLost (lost.go)
		return true
	}
	kind := errorKind(err)
	if s.onError == Reject {
		s.m.outcome(outcomeRejected)
		s.limiter.log(s.log, eventRejected+kind, "edge: click not recorded; answered 503", err, "link", link)
		return false
	}
	if serr := s.recorder.Spill(rec); serr != nil {
		s.m.outcome(outcomeDropped)
		s.limiter.log(s.log, eventDropped+errorKind(serr), "edge: click LOST: not recorded and not spilled; redirected anyway",
			serr, "link", link, "append_error", err.Error())
		return true
	}
	s.m.outcome(outcomeSpilled)
	s.limiter.log(s.log, eventSpilled+kind, "edge: click not recorded; spilled to memory", err, "link", link)
	return true
}

// registered answers /c/{code}: {"click_id":"...","url":"..."}.
func registered(sc *scratch, id string) {
	// The record (if any) is stored, so the body buffer is free again.
	b := append(sc.body[:0], `{"click_id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"url":`...)
	b = appendJSONString(b, unsafe.String(unsafe.SliceData(sc.url), len(sc.url)))
	b = append(b, "}\n"...)
	sc.body = b
	sc.res = response{status: http.StatusOK, ctype: ctypeJSON, body: b}
}

// safeTarget checks what the catalog promises about a rendered URL: it
// starts with the template's scheme://host[:port], followed by a path, a
// query, a fragment or nothing, and holds no control byte or space.
func safeTarget(u []byte, origin string) bool {
	if !bytes.HasPrefix(u, []byte(origin)) {
		return false
	}
	if len(u) > len(origin) {
		switch u[len(origin)] {
		case '/', '?', '#':
		default:
			return false
		}
	}
	for _, c := range u {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// headerValue returns the first value of a header given in canonical form,
// without Header.Get's canonicalization.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
