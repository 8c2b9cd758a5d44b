package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// ServeFast answers one request from fasthttp; it is a
// fasthttp.RequestHandler. It gives the same answers as ServeHTTP (see the
// package documentation) and allocates nothing of its own.
//
// It expects fasthttp's default header handling: header names normalized
// (Server.DisableHeaderNamesNormalizing false), as FastServer sets it.
func (s *Server) ServeFast(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	h := &ctx.Request.Header
	uri := h.RequestURI()
	if len(uri) == 1 && uri[0] == '*' {
		// OPTIONS * (fasthttp lets no other method have it) is about the
		// server, not a resource: net/http answers it 200 itself.
		ctx.Response.SetStatusCode(http.StatusOK)
		ctx.Response.Header.SetContentLength(0)
		return
	}
	sc := s.getScratch()
	if !sc.setTarget(uri) {
		// net/http refuses such a request line before any handler runs;
		// so does this front-end, the same way, uncounted.
		s.putScratch(sc)
		fastProtocolError(ctx, http.StatusBadRequest)
		return
	}
	// The views below point into ctx's buffers, which stay put until this
	// handler returns; sc forgets them in putScratch.
	q := &sc.req
	q.method = bytesView(h.Method())
	q.ua = bytesView(h.UserAgent())
	q.lang = bytesView(h.Peek("Accept-Language"))
	q.uid = bytesView(h.Cookie(stickyCookie))
	q.peer = fastPeer(ctx.RemoteAddr())
	if q.peer.IsValid() && len(s.trusted) > 0 && s.trustedPeer(q.peer) {
		// Only a trusted peer's X-Forwarded-For is read (clientAddr), so
		// only then is it collected.
		for _, v := range h.PeekAll("X-Forwarded-For") {
			sc.xff = append(sc.xff, bytesView(v))
		}
		q.xff = sc.xff
	}
	rt := s.handle(sc, start)
	writeFast(ctx, &sc.res)
	status := sc.res.status
	s.putScratch(sc)
	s.m.observe(rt, status, time.Since(start))
}

// bytesView returns b's bytes as a string without copying. The string is
// valid only as long as b's array is not reused.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// fastPeer is the TCP peer as parsePeer gives it for net/http: unmapped,
// without zone, the zero Addr for anything but TCP (a Unix socket).
func fastPeer(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// setTarget sets sc.req's path and raw query from a request-target the way
// url.ParseRequestURI does for net/http, so that both front-ends route the
// same bytes the same way: the query starts at the first '?', a '#' is
// part of the path, the path is percent-decoded (a '+' stays a '+'). It
// reports false where net/http would answer 400 before routing: a
// malformed escape in the path.
func (sc *scratch) setTarget(uri []byte) bool {
	if len(uri) == 0 || uri[0] != '/' {
		// Absolute-form ("http://host/r/x") and the like: rare, so let
		// net/url do it, allocations and all.
		u, err := url.ParseRequestURI(string(uri))
		if err != nil {
			return false
		}
		sc.req.path, sc.req.rawQuery = u.Path, u.RawQuery
		return true
	}
	path, query, _ := strings.Cut(bytesView(uri), "?")
	sc.req.rawQuery = query
	if strings.IndexByte(path, '%') < 0 {
		sc.req.path = path
		return true
	}
	b, ok := unescapePath(sc.path[:0], path)
	if !ok {
		return false
	}
	sc.path = b
	sc.req.path = bytesView(b)
	return true
}

// unescapePath appends the percent-decoding of a request path to dst, as
// net/url decodes a path: %XX only, '+' is itself. ok is false on a
// malformed escape.
func unescapePath(dst []byte, s string) (_ []byte, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return dst, false
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi > 15 || lo > 15 {
				return dst, false
			}
			c = hi<<4 | lo
			i += 2
		}
		dst = append(dst, c)
	}
	return dst, true
}

// Header names and constant values for fasthttp, which copies them.
var (
	keyLocation     = []byte("Location")
	keyCacheControl = []byte("Cache-Control")
	keyNoSniff      = []byte("X-Content-Type-Options")
	keyAllow        = []byte("Allow")
	keyRetryAfter   = []byte("Retry-After")
	keyReferrer     = []byte("Referrer-Policy")
	keySetCookie    = []byte("Set-Cookie")
	valNoReferrer   = []byte("no-referrer")
	valNoStore      = []byte(hdrNoStore[0])
	valNoSniff      = []byte(hdrNoSniff[0])
	valAllow        = []byte(hdrAllow[0])
	valRetry        = []byte(hdrRetry[0])
)

// writeFast writes res into ctx's response. Everything is copied:
// fasthttp sends the response after ServeFast has returned and the scratch
// that res points into has gone back to the pool.
func writeFast(ctx *fasthttp.RequestCtx, res *response) {
	r := &ctx.Response
	r.SetStatusCode(res.status)
	h := &r.Header
	if res.location != nil {
		h.SetCanonical(keyLocation, res.location)
	}
	if res.ctype != ctypeNone {
		h.SetContentType(ctypeNames[res.ctype])
	}
	if res.noSniff {
		h.SetCanonical(keyNoSniff, valNoSniff)
	}
	h.SetCanonical(keyCacheControl, valNoStore)
	if res.allow {
		h.SetCanonical(keyAllow, valAllow)
	}
	if res.retryAfter {
		h.SetCanonical(keyRetryAfter, valRetry)
	}
	if res.noReferrer {
		h.SetCanonical(keyReferrer, valNoReferrer)
	}
	if res.setCookie != nil {
		h.SetCanonical(keySetCookie, res.setCookie)
	}
	if len(res.body) > 0 {
		r.SetBody(res.body)
	}
	// Set even on HEAD: fasthttp leaves the body out for HEAD but keeps
	// the length, as net/http does with the header ServeHTTP sets.
	h.SetContentLength(len(res.body))
}

// fastProtocolError answers a request that could not be parsed the way
// net/http does: "400 Bad Request" as plain text, and the connection
// closed.
func fastProtocolError(ctx *fasthttp.RequestCtx, status int) {
	r := &ctx.Response
	r.Reset()
	r.SetStatusCode(status)
	r.Header.SetContentType(ctypeNames[ctypeText])
	r.SetBodyString(strconv.Itoa(status) + " " + http.StatusText(status))
	ctx.SetConnectionClose()
}

// fastErrorHandler is fasthttp's Server.ErrorHandler: what a client gets
// when its request could not be read, counted in lim. Statuses and bodies
// are net/http's where net/http has them.
func fastErrorHandler(lim *Limits) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		status := fastErrorStatus(err)
		lim.Refused(ListenerPublic, status)
		fastProtocolError(ctx, status)
	}
}

// fastErrorStatus is the answer to a request fasthttp could not read.
func fastErrorStatus(err error) int {
	status := http.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		status = http.StatusRequestHeaderFieldsTooLarge // the header does not fit in MaxHeaderBytes
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.As(err, &netErr) && netErr.Timeout():
		status = http.StatusRequestTimeout
	}
	return status
}

// fastLimitHeaders answers 431 to a request with more than max header
// lines, as net/http's LimitHTTP does, before h runs.
func fastLimitHeaders(h fasthttp.RequestHandler, max int, lim *Limits) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if ctx.Request.Header.Len() > max {
			lim.Refused(ListenerPublic, http.StatusRequestHeaderFieldsTooLarge)
			fastProtocolError(ctx, http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		h(ctx)
	}
}

// FastOptions configures the fasthttp server FastServer builds. The zero
// value means the defaults; each field says what its zero value does.
type FastOptions struct {
	// ReadTimeout bounds reading one request, line, header and body, from
	// its first byte (the accept, for a connection's first request). It is
	// the slow-loris guard, like net/http's ReadHeaderTimeout: a click has
	// no body. Zero: DefaultFastReadTimeout (5s, http.read_header_timeout's
	// default).
	ReadTimeout time.Duration

	// WriteTimeout bounds writing one answer, from the handler's return (a
	// slow fsync does not count against it). An answer is a few hundred
	// bytes; a client that cannot take them in seconds is gone. Zero:
	// DefaultFastWriteTimeout (5s).
	WriteTimeout time.Duration

	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request. Zero: DefaultFastIdleTimeout (120s, http.idle_timeout's
	// default).
	IdleTimeout time.Duration

	// MaxHeaderBytes is the largest request line and header block
	// accepted; a larger one gets 431. fasthttp reads a request into one
	// buffer of this size, taken from a pool when the request's first byte
	// arrives and given back once it is read (ReduceMemoryUsage): an idle
	// connection holds none, a connection in the middle of a request
	// holds one. Zero: DefaultFastMaxHeaderBytes (64 KiB,
	// http.max_header_bytes' default).
	MaxHeaderBytes int

	// MaxHeaderCount caps a request's header lines; more get 431. Zero:
	// DefaultMaxHeaderCount (100).
	MaxHeaderCount int

	// Concurrency caps the connections served at once; a connection over
	// the cap is answered 503 and closed. Listen's cap (http.max_conns)
	// normally comes first. Zero: DefaultMaxConns (8192).
	Concurrency int

	// Limits counts the requests fasthttp refuses before ServeFast runs
	// (clickedge_http_refused_total{listener="public"}). Nil: not
	// counted.
	Limits *Limits

	// Logger receives the server's own errors (a connection it could not
	// serve, a listener error) at Warn, at most one line per second with
	// a count of those left out. Requests that fail to parse are answered
	// 400/431 and not logged one by one. Zero: the Server's
	// Config.Logger.
	Logger *slog.Logger
}

// Defaults for FastOptions.
const (
	DefaultFastReadTimeout    = 5 * time.Second
	DefaultFastWriteTimeout   = 5 * time.Second
	DefaultFastIdleTimeout    = 120 * time.Second
	DefaultFastMaxHeaderBytes = DefaultMaxHeaderBytes
)

// fastMaxBody is the largest request body fasthttp reads before calling
// ServeFast; a larger one gets 413. Clicks have no body; a small POST to
// /r/ still gets its 405, as from net/http.
const fastMaxBody = 4 << 10

// FastServer returns a fasthttp server for the public listener, with
// ServeFast as its handler. Start it with Serve(listener); stop it with
// ShutdownWithContext, which stops accepting, lets the requests in flight
// finish (an answered click is recorded) and closes idle connections.
//
// The settings not in opts, and why:
//   - MaxRequestBodySize 4 KiB: clicks have no body, and fasthttp reads
//     the whole body before the handler runs.
//   - DisablePreParseMultipartForm: nothing reads forms; a multipart POST
//     is not parsed just to be answered 405.
//   - DisableHeaderNamesNormalizing false: ServeFast looks headers up by
//     their canonical names.
//   - NoDefaultServerHeader: no Server header, like net/http; nothing to
//     fingerprint.
//   - NoDefaultDate false: a Date header, like net/http (RFC 9110 wants
//     one from a server with a clock).
//   - NoDefaultContentType: no Content-Type where ServeFast sets none
//     (302), like net/http.
//   - ReduceMemoryUsage true: each connection's read buffer (64 KiB by
//     default) goes back to a pool between requests, so an idle
//     connection costs about 8 KiB instead of 76 KiB
//     (TestIdleConnectionCost); the cost is a pool Get and Put per
//     request, and a 1-byte read for each request's first byte, which
//     the listener's read ahead (limitConn.Read) answers together with
//     the rest of the request: one read system call per request, as
//     without it (TestListenerReadsAhead).
//   - SecureErrorLogMessage: fasthttp's errors would otherwise quote the
//     request, query parameters included, into the log.
//   - CloseOnShutdown: answers sent while shutting down carry
//     Connection: close, so keep-alive clients reconnect elsewhere.
//   - ErrorHandler: unparsable requests get net/http's answers (400
//     "400 Bad Request", 431 for a header over MaxHeaderBytes), not
//     fasthttp's wording, and are counted in opts.Limits.
//   - Handler: ServeFast behind a header-count check (MaxHeaderCount,
//     431, counted).
//   - Logger: an slog adapter at Warn, rate-limited (see Logger).
//
// It is not counted in clickedge_http_request_duration_seconds when
// fasthttp itself answers (unparsable requests, the concurrency cap), as
// net/http's own 400s are not.
func (s *Server) FastServer(opts FastOptions) *fasthttp.Server {
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultFastReadTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultFastWriteTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultFastIdleTimeout
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultFastMaxHeaderBytes
	}
	if opts.MaxHeaderCount <= 0 {
		opts.MaxHeaderCount = DefaultMaxHeaderCount
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultMaxConns
	}
	lg := opts.Logger
	if lg == nil {
		lg = s.log
	}
	return &fasthttp.Server{
		Handler:                       fastLimitHeaders(s.ServeFast, opts.MaxHeaderCount, opts.Limits),
		ErrorHandler:                  fastErrorHandler(opts.Limits),
		Logger:                        &fastLogger{lim: &s.limiter, log: lg},
		Concurrency:                   opts.Concurrency,
		ReadBufferSize:                opts.MaxHeaderBytes,
		ReadTimeout:                   opts.ReadTimeout,
		WriteTimeout:                  opts.WriteTimeout,
		IdleTimeout:                   opts.IdleTimeout,
		MaxRequestBodySize:            fastMaxBody,
		DisablePreParseMultipartForm:  true,
		DisableHeaderNamesNormalizing: false,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 false,
		NoDefaultContentType:          true,
		ReduceMemoryUsage:             true,
		SecureErrorLogMessage:         true,
		CloseOnShutdown:               true,
	}
}

// fastLogger adapts slog to fasthttp.Logger. Printf is called from any
// connection's goroutine; the limiter takes no lock.
type fastLogger struct {
	lim *logLimiter
	log *slog.Logger
}

var _ fasthttp.Logger = (*fastLogger)(nil)

func (l *fastLogger) Printf(format string, args ...any) {
	suppressed, ok := l.lim.allow(eventTransport)
	if !ok {
		return
	}
	l.log.Log(context.Background(), eventLevel(eventTransport), "edge: fasthttp: "+fmt.Sprintf(format, args...),
		"suppressed", suppressed)
}
