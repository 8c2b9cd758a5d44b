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

	"github.com/clickedge/clickedge/edge/catalog"
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

// ServeHTTP answers one request. See the package documentation for the
// contract.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, status := s.serve(w, r, start)
	s.m.observe(rt, status, time.Since(start))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, start time.Time) (route, int) {
	path := r.URL.Path
	var rt route
	switch {
	case strings.HasPrefix(path, "/r/"):
		rt = routeRedirect
	case strings.HasPrefix(path, "/c/"):
		rt = routeRegister
	default:
		return routeOther, reply(w, r, &replyNotFound)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return rt, reply(w, r, &replyMethod)
	}
	code := path[len("/r/"):]
	switch {
	case code == "":
		return rt, reply(w, r, &replyNoCode)
	case strings.IndexByte(code, '/') >= 0:
		return rt, reply(w, r, &replyNotFound) // a trailing slash or more segments
	case !validCode(code):
		return rt, reply(w, r, &replyMalformed)
	}
	return rt, s.serveClick(w, r, rt, code, start)
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

// Shared header values. net/http copies the header map when the status is
// written (and Header.Add would not write into a full slice), so these are
// never modified.
var (
	hdrNoStore = []string{"no-store"}
	hdrZero    = []string{"0"}
	hdrText    = []string{"text/plain; charset=utf-8"}
	hdrJSON    = []string{"application/json"}
	hdrNoSniff = []string{"nosniff"}
	hdrAllow   = []string{"GET, HEAD"}
	hdrRetry   = []string{"1"}
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

// reply writes a canned answer and returns its status.
func reply(w http.ResponseWriter, r *http.Request, c *cannedReply) int {
	h := w.Header()
	h["Content-Type"] = hdrText
	h["X-Content-Type-Options"] = hdrNoSniff
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = c.clen
	switch c.status {
	case http.StatusMethodNotAllowed:
		h["Allow"] = hdrAllow
	case http.StatusServiceUnavailable:
		h["Retry-After"] = hdrRetry
	}
	w.WriteHeader(c.status)
	if r.Method != http.MethodHead {
		w.Write(c.body)
	}
	return c.status
}

// replyText writes a plain-text reason built per request (rare answers).
func replyText(w http.ResponseWriter, r *http.Request, status int, reason string) int {
	c := newReply(status, reason)
	return reply(w, r, &c)
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
