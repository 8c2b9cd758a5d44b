package edge

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/edge/geo"
	"github.com/clickedge/clickedge/outbox"
)

// Server answers the public click endpoints, /r/{code} and /c/{code}. It is
// safe for concurrent use; its configuration is fixed at New, and only the
// catalog changes (SetCatalog).
type Server struct {
	region     string
	node       string
	exchange   string
	routingKey string          // "click.<region>", built once
	headers    []outbox.Header // region, node, schema: shared by every record, never modified
	recorder   Recorder
	geo        *geo.DB
	trusted    []netip.Prefix // IPv4 prefixes in IPv4 form, so unmapped addresses match
	onError    RecordErrorPolicy
	onFate     bool // count accepted clicks when CountFate reports them
	bots       BotPolicy
	now        func() time.Time // nil: time.Now, and the request's start time is reused
	log        *slog.Logger
	limiter    logLimiter

	catalog atomic.Pointer[catalog.Catalog]
	pool    sync.Pool // *scratch
	m       *metrics
}

// New returns a Server for cfg. It copies cfg; later changes to it have no
// effect. It fails, naming the field, if cfg is invalid (see Config).
// The Server serves no link until SetCatalog is called.
func New(cfg *Config) (*Server, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	c := *cfg
	if err := c.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		region:     c.Region,
		node:       c.Node,
		exchange:   c.Exchange,
		routingKey: "click." + c.Region,
		headers: []outbox.Header{
			{Key: "region", Value: c.Region},
			{Key: "node", Value: c.Node},
			{Key: "schema", Value: int64(schemaVersion)},
		},
		recorder: c.Recorder,
		geo:      c.Geo,
		onError:  c.OnRecordError,
		onFate:   c.CountOnFate,
		bots:     c.BotClicks,
		now:      c.Now,
		log:      c.Logger,
		m:        newMetrics(c.Region),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	clock := s.now
	if clock == nil {
		clock = time.Now
	}
	s.limiter.now = clock
	for _, p := range c.TrustedProxies {
		s.trusted = append(s.trusted, normalizePrefix(p))
	}
	s.pool.New = func() any { return newScratch() }
	return s, nil
}

// normalizePrefix turns ::ffff:10.0.0.0/104 into 10.0.0.0/8 and masks the
// address, because client addresses are unmapped before they are matched.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// SetCatalog makes c the catalog that requests use from now on. Requests
// in flight finish with the catalog they started with. A nil c serves no
// links. Safe to call at any time, from any goroutine.
func (s *Server) SetCatalog(c *catalog.Catalog) { s.catalog.Store(c) }

// Catalog returns the catalog being served, or nil before SetCatalog.
func (s *Server) Catalog() *catalog.Catalog { return s.catalog.Load() }

// Handler returns the Server as an http.Handler for the public listener.
func (s *Server) Handler() http.Handler { return s }

// Collectors returns the Server's Prometheus collectors, for the caller to
// register: clickedge_http_request_duration_seconds,
// clickedge_clicks_total and clickedge_bot_clicks_total.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.m.duration, s.m.clicks, s.m.botClicks}
}

// Routes, the route label of the request duration histogram.
type route uint8

const (
	routeRedirect route = iota // /r/{code}
	routeRegister              // /c/{code}
	routeOther                 // anything else
	numRoutes
)

var routeNames = [numRoutes]string{"redirect", "register", "other"}

// request is what the click path reads from an HTTP request, whatever the
// transport delivered it. The front-ends (ServeHTTP, ServeFast) fill it;
// its strings may point into the transport's own buffers, so it is valid
// only while the request is being served and nothing keeps it.
type request struct {
	method   string
	path     string     // percent-decoded, as url.URL.Path
	rawQuery string     // as url.URL.RawQuery
	ua       string     // the first User-Agent value
	lang     string     // the first Accept-Language value
	uid      string     // the sticky-split cookie's value (stickyCookie); "" when absent
	xff      []string   // the X-Forwarded-For values in order; read only when peer is trusted
	peer     netip.Addr // the TCP peer, unmapped, without zone; the zero Addr when unknown
}

// contentType is the Content-Type of an answer.
type contentType uint8

const (
	ctypeNone contentType = iota
	ctypeText
	ctypeJSON
	ctypeHTML
)

var ctypeNames = [...]string{ctypeNone: "", ctypeText: "text/plain; charset=utf-8", ctypeJSON: "application/json", ctypeHTML: "text/html; charset=utf-8"}

// response is the answer the click path decided on; a front-end writes it.
// Every answer carries Cache-Control: no-store and Content-Length:
// len(body). A HEAD gets the same header and no body.
type response struct {
	status     int
	location   []byte      // 301, 302, 307: the target; points into the scratch
	ctype      contentType // ctypeNone: no Content-Type
	body       []byte      // the GET's body: canned, or in the scratch
	clen       []string    // net/http's Content-Length value when known in advance; nil: len(body)
	noSniff    bool        // X-Content-Type-Options: nosniff (plain-text reasons)
	allow      bool        // Allow: GET, HEAD (405)
	retryAfter bool        // Retry-After: 1 (503)
	noReferrer bool        // Referrer-Policy: no-referrer (a meta refresh)
	setCookie  []byte      // a Set-Cookie value (the sticky-split cookie); points into the scratch
}

// ServeHTTP answers one request from net/http. See the package
// documentation for the contract.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sc := s.getScratch()
	sc.req = request{
		method:   r.Method,
		path:     r.URL.Path,
		rawQuery: r.URL.RawQuery,
		ua:       headerValue(r.Header, "User-Agent"),
		lang:     headerValue(r.Header, "Accept-Language"),
		uid:      cookieValue(r.Header["Cookie"], stickyCookie),
		xff:      r.Header["X-Forwarded-For"],
		peer:     parsePeer(r.RemoteAddr),
	}
	rt := s.handle(sc, start)
	writeHTTP(w, r.Method == http.MethodHead, &sc.res)
	status := sc.res.status
	s.putScratch(sc)
	s.m.observe(rt, status, time.Since(start))
}

// handle answers sc.req into sc.res and returns the request's route. It
// is the whole click path, independent of the transport.
func (s *Server) handle(sc *scratch, start time.Time) route {
	q, res := &sc.req, &sc.res
	path := q.path
	var rt route
	switch {
	case strings.HasPrefix(path, "/r/"):
		rt = routeRedirect
	case strings.HasPrefix(path, "/c/"):
		rt = routeRegister
	default:
		res.canned(&replyNotFound)
		return routeOther
	}
	if q.method != http.MethodGet && q.method != http.MethodHead {
		res.canned(&replyMethod)
		return rt
	}
	code := path[len("/r/"):]
	switch {
	case code == "":
		res.canned(&replyNoCode)
	case strings.IndexByte(code, '/') >= 0:
		res.canned(&replyNotFound) // a trailing slash or more segments
	case !validCode(code):
		res.canned(&replyMalformed)
	default:
		s.serveClick(sc, rt, code, start)
	}
	return rt
}

// codeChar marks the bytes of [A-Za-z0-9_-].
var codeChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	return t
}()

// validCode reports whether code has the shape of a link code,
// [A-Za-z0-9_-]{1,64}; only such codes are looked up.
func validCode(code string) bool {
	if len(code) == 0 || len(code) > 64 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if !codeChar[code[i]] {
			return false
		}
	}
	return true
}

// Shared header values for net/http. net/http copies the header map when
// the status is written (and Header.Add would not write into a full slice),
// so these are never modified.
var (
	hdrNoStore = []string{"no-store"}
	hdrZero    = []string{"0"}
	hdrNoSniff = []string{"nosniff"}
	hdrAllow   = []string{"GET, HEAD"}
	hdrRetry   = []string{"1"}
	hdrCtype   = [...][]string{ctypeNone: nil, ctypeText: {ctypeNames[ctypeText]}, ctypeJSON: {ctypeNames[ctypeJSON]}, ctypeHTML: {ctypeNames[ctypeHTML]}}
	hdrNoRef   = []string{"no-referrer"}
)

// A canned answer with a short plain-text reason.
type cannedReply struct {
	status int
	body   []byte
	clen   []string
}

func newReply(status int, reason string) cannedReply {
	body := []byte(reason + "\n")
	return cannedReply{status: status, body: body, clen: []string{strconv.Itoa(len(body))}}
}

var (
	replyNotFound    = newReply(http.StatusNotFound, "not found")
	replyNoCode      = newReply(http.StatusNotFound, "missing link code")
	replyMalformed   = newReply(http.StatusNotFound, "malformed link code")
	replyUnknown     = newReply(http.StatusNotFound, "unknown link")
	replyPaused      = newReply(http.StatusNotFound, "link paused")
	replyMethod      = newReply(http.StatusMethodNotAllowed, "method not allowed")
	replyUnavailable = newReply(http.StatusServiceUnavailable, "the click could not be recorded; try again")
	replyInternal    = newReply(http.StatusInternalServerError, "internal error")
)

// canned makes res the canned answer c.
func (res *response) canned(c *cannedReply) {
	res.text(c.status, c.body)
	res.clen = c.clen
}

// text makes res a plain-text reason; body must stay valid until the
// answer is written (canned, or in the scratch).
func (res *response) text(status int, body []byte) {
	*res = response{
		status:     status,
		ctype:      ctypeText,
		body:       body,
		noSniff:    true,
		allow:      status == http.StatusMethodNotAllowed,
		retryAfter: status == http.StatusServiceUnavailable,
	}
}

// writeHTTP writes res to a net/http ResponseWriter.
func writeHTTP(w http.ResponseWriter, head bool, res *response) {
	h := w.Header()
	if res.location != nil {
		// A copy: net/http writes the header after ServeHTTP has returned
		// and the scratch the URL lives in has gone back to the pool.
		h["Location"] = []string{string(res.location)}
	}
	if res.ctype != ctypeNone {
		h["Content-Type"] = hdrCtype[res.ctype]
	}
	if res.noSniff {
		h["X-Content-Type-Options"] = hdrNoSniff
	}
	h["Cache-Control"] = hdrNoStore
	clen := res.clen
	if clen == nil {
		clen = []string{strconv.Itoa(len(res.body))}
	}
	h["Content-Length"] = clen
	if res.allow {
		h["Allow"] = hdrAllow
	}
	if res.retryAfter {
		h["Retry-After"] = hdrRetry
	}
	if res.noReferrer {
		h["Referrer-Policy"] = hdrNoRef
	}
	if res.setCookie != nil {
		h["Set-Cookie"] = []string{string(res.setCookie)}
	}
	w.WriteHeader(res.status)
	if !head && len(res.body) > 0 {
		w.Write(res.body) // copied into net/http's buffer before it returns
	}
}

// trustedPeer reports whether a is in one of the trusted proxy networks.
func (s *Server) trustedPeer(a netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
