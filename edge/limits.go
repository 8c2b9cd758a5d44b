package edge

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits both listeners apply, public and admin, whatever the HTTP server
// (see docs/configuration.md, "Limits").
const (
	// DefaultMaxHeaderBytes bounds a request's line and header block; a
	// larger one is answered 431.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxHeaderCount bounds a request's header lines; more are
	// answered 431.
	DefaultMaxHeaderCount = 100
	// DefaultMaxConns bounds the public listener's open connections. The
	// fasthttp listener costs about 8 KiB per idle connection
	// (TestIdleConnectionCost) and 64 KiB more per connection in the middle
	// of reading a request (its read buffer), so the cap keeps a flood
	// under about 600 MiB even when every connection is a slow client.
	DefaultMaxConns = 8192
	// DefaultAdminMaxConns bounds the admin listener's open connections:
	// scrapers, probes and operators, a few at a time.
	DefaultAdminMaxConns = 256
	// DefaultAdminMaxBody bounds an admin request's body; a larger one is
	// answered 413.
	DefaultAdminMaxBody = 1 << 20
	// DefaultEvictQuiet is how long an idle connection must have been
	// quiet (nothing read or written) before a full listener may close it
	// to admit a new one: long enough to spare a client whose request is
	// on its way.
	DefaultEvictQuiet = 100 * time.Millisecond
)

// Listener names, the listener label of the HTTP limit metrics.
const (
	ListenerPublic = "public"
	ListenerAdmin  = "admin"
)

// refusedCodes are the answers a listener gives before any handler runs,
// or instead of it, pre-initialised as label values.
var refusedCodes = [...]int{400, 408, 413, 431, 503}

// Limits counts what the listeners refuse: clickedge_http_refused_total
// {listener, code} (431 header too large or too many headers, 413 body too
// large, 400 unparsable, 408 too slow, 503 no connection slot),
// clickedge_http_connections_evicted_total{listener} and
// clickedge_http_open_connections{listener}. One Limits serves both
// listeners; its methods are safe for concurrent use.
type Limits struct {
	refused *prometheus.CounterVec
	evicted *prometheus.CounterVec
	open    *prometheus.GaugeVec
}

// NewLimits returns a Limits with every label value of both listeners
// initialised to zero.
func NewLimits() *Limits {
	l := &Limits{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_http_refused_total",
			Help: "Requests and connections a listener refused before or instead of its handler, by listener (public, admin) and status: 431 header too large or too many headers, 413 body too large, 400 unparsable, 408 too slow, 503 no connection slot.",
		}, []string{"listener", "code"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_http_connections_evicted_total",
			Help: "Quiet connections a full listener closed to admit a new one, by listener.",
		}, []string{"listener"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickedge_http_open_connections",
			Help: "Open connections, by listener.",
		}, []string{"listener"}),
	}
	for _, ln := range []string{ListenerPublic, ListenerAdmin} {
		for _, c := range refusedCodes {
			l.refused.WithLabelValues(ln, strconv.Itoa(c))
		}
		l.evicted.WithLabelValues(ln)
		l.open.WithLabelValues(ln)
	}
	return l
}

// Collectors returns the metrics, for the caller to register.
func (l *Limits) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.refused, l.evicted, l.open}
}

// Refused counts one refusal with status code on listener. A nil Limits
// counts nothing.
func (l *Limits) Refused(listener string, code int) {
	if l == nil {
		return
	}
	l.refused.WithLabelValues(listener, strconv.Itoa(code)).Inc()
}

// ---- connections ----

// ListenerOptions configures Listen's connection cap.
type ListenerOptions struct {
	// Name is the listener label: ListenerPublic or ListenerAdmin.
	Name string
	// MaxConns caps the open connections. When the cap is reached, a new
	// connection takes the slot of an idle one (the quietest of a sample),
	// else it is answered 503 with Retry-After: 1 and closed. Idle means:
	// quiet for EvictQuiet or longer, and not in the middle of a request
	// (the last bytes moved were an answer, or none). A connection whose
	// request is being read or served is never closed for another. Zero:
	// DefaultMaxConns.
	MaxConns int
	// EvictQuiet is how long an idle connection must have read and written
	// nothing before it may be closed for a new one. Zero:
	// DefaultEvictQuiet. Negative: never evict.
	EvictQuiet time.Duration
	// NetHTTP makes the listener count the answers net/http writes itself
	// (431 for a header over http.Server.MaxHeaderBytes, 400 for an
	// unparsable request), which no handler sees. Leave false for fasthttp,
	// whose ErrorHandler counts them.
	NetHTTP bool
	// Limits receives the counts. Nil: nothing is counted.
	Limits *Limits
}

// Listen wraps ln with a cap on open connections (see ListenerOptions), so
// that a flood of idle or slow connections costs bounded memory and, while
// quiet ones can be closed, does not lock other clients out.
func Listen(ln net.Listener, opts ListenerOptions) net.Listener {
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.EvictQuiet == 0 {
		opts.EvictQuiet = DefaultEvictQuiet
	}
	l := &limitListener{Listener: ln, opts: opts, conns: make(map[*limitConn]struct{}, min(opts.MaxConns, 1024))}
	if opts.Limits != nil {
		l.open = opts.Limits.open.WithLabelValues(opts.Name)
		l.evicted = opts.Limits.evicted.WithLabelValues(opts.Name)
		l.refused = opts.Limits.refused.WithLabelValues(opts.Name, "503")
	}
	return l
}

type limitListener struct {
	net.Listener
	opts ListenerOptions

	open             prometheus.Gauge   // nil without Limits
	evicted, refused prometheus.Counter // nil without Limits

	mu    sync.Mutex
	conns map[*limitConn]struct{}

	counts *readAheadCounts // set by tests right after Listen; nil otherwise
}

// evictSample is how many connections a full listener looks at to find a
// quiet one: map iteration starts at a random place, so this is a random
// sample, and a flood of accepts does not scan every connection each time.
const evictSample = 64

// canned503 is the answer to a connection that finds no slot.
var canned503 = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 23\r\n\r\ntoo many connections\r\n\r\n")

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &limitConn{Conn: c, l: l, counts: l.counts}
		if sc, ok := c.(syscall.Conn); ok {
			if lc.raw, _ = sc.SyscallConn(); lc.raw != nil {
				lc.readFD = lc.readOnce // made once: a closure per read would allocate
			}
		}
		lc.touch()
		l.mu.Lock()
		var victim *limitConn
		if len(l.conns) >= l.opts.MaxConns {
			victim = l.quietest()
			if victim == nil {
				l.mu.Unlock()
				// A fresh socket's send buffer takes this at once; the
				// deadline only guards against a broken stack.
				c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				c.Write(canned503)
				c.Close()
				inc(l.refused)
				continue
			}
			l.forget(victim)
		}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close() // its server goroutine sees the error and lets go
			inc(l.evicted)
		}
		if l.open != nil {
			l.open.Inc()
		}
		return lc, nil
	}
}

// quietest returns the connection of a sample that has been quiet longest,
// if that is at least EvictQuiet; l.mu is held.
func (l *limitListener) quietest() *limitConn {
	if l.opts.EvictQuiet < 0 {
		return nil
	}
	limit := time.Now().Add(-l.opts.EvictQuiet).UnixNano()
	var best *limitConn
	bestAt := limit + 1
	n := 0
	for c := range l.conns {
		if c.busy.Load() {
			continue
		}
		if at := c.active.Load(); at < bestAt {
			best, bestAt = c, at
		}
		if n++; n == evictSample {
			break
		}
	}
	return best
}

// forget removes c from the open set, once; l.mu is held. It reports
// whether c was still there.
func (l *limitListener) forget(c *limitConn) bool {
	if _, ok := l.conns[c]; !ok {
		return false
	}
	delete(l.conns, c)
	if l.open != nil {
		l.open.Dec()
	}
	return true
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

// limitConn is a connection that holds a slot until it is closed (or
// evicted), and remembers when it last moved bytes and in which direction.
type limitConn struct {
	net.Conn
	l      *limitListener
	active atomic.Int64 // unix nanos of the last read or write that moved bytes
	// busy: the last bytes moved were read, so a request is being read or
	// served. Written bytes (the answer) clear it.
	busy atomic.Bool

	// ahead holds what a small read took from the socket beyond what its
	// caller asked for (readAhead), and aheadBuf the pooled chunk it lies
	// in. Only Read touches them: a connection is read by one goroutine.
	ahead    []byte
	aheadBuf *[]byte
	raw      syscall.RawConn // nil when the connection has no descriptor to read
	readFD   func(fd uintptr) bool
	rd       rawRead          // what readFD read, for readRaw
	counts   *readAheadCounts // the listener's; nil but in tests
}

func (c *limitConn) touch() { c.active.Store(time.Now().UnixNano()) }

// moved notes n bytes read.
func (c *limitConn) moved(n int) {
	if n > 0 {
		c.touch()
		if !c.busy.Load() {
			c.busy.Store(true)
		}
	}
}

func (c *limitConn) Write(p []byte) (int, error) {
	if c.l.opts.NetHTTP && c.l.opts.Limits != nil {
		if code := netHTTPRefusal(p); code != 0 {
			c.l.opts.Limits.Refused(c.l.opts.Name, code)
		}
	}
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
		if c.busy.Load() {
			c.busy.Store(false)
		}
	}
	return n, err
}

func (c *limitConn) Close() error {
	c.l.mu.Lock()
	c.l.forget(c)
	c.l.mu.Unlock()
	err := c.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil // evicted: the listener closed it first
	}
	return err
}

// netHTTPErrorHeaders follows the status line of every answer net/http
// writes itself, without a handler (net/http's errorHeaders). A handler's
// answer always has other headers first (Cache-Control here).
var netHTTPErrorHeaders = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")

// netHTTPRefusal returns the status of an answer net/http wrote itself, or
// 0 for anything else.
func netHTTPRefusal(p []byte) int {
	const prefix = "HTTP/1.1 "
	if len(p) < len(prefix)+3 || string(p[:len(prefix)]) != prefix || p[len(prefix)] != '4' {
		return 0
	}
	eol := bytes.Index(p, []byte("\r\n"))
	if eol < 0 || !bytes.HasPrefix(p[eol:], netHTTPErrorHeaders) {
		return 0
	}
	code, err := strconv.Atoi(string(p[len(prefix) : len(prefix)+3]))
	if err != nil {
		return 0
	}
	return code
}

// ---- net/http ----

// HTTPLimits are the per-request limits LimitHTTP enforces.
type HTTPLimits struct {
	// Name is the listener label: ListenerPublic or ListenerAdmin.
	Name string
	// MaxHeaderCount caps the header lines, Host included; more are
	// answered 431. Zero: DefaultMaxHeaderCount.
	MaxHeaderCount int
	// MaxBody caps a request body: a larger Content-Length is answered 413
	// before the handler runs, and a longer chunked body fails the
	// handler's read. Zero: no cap.
	MaxBody int64
	// Limits receives the counts. Nil: nothing is counted.
	Limits *Limits
}

// LimitHTTP wraps a net/http handler with the limits net/http lacks: a
// header count, and a body size. (The header block's size is
// http.Server.MaxHeaderBytes; slow clients are bounded by the server's
// timeouts.)
func LimitHTTP(h http.Handler, lim HTTPLimits) http.Handler {
	if lim.MaxHeaderCount <= 0 {
		lim.MaxHeaderCount = DefaultMaxHeaderCount
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if r.Host != "" {
			n++ // net/http moves Host out of the map
		}
		for _, v := range r.Header {
			n += len(v)
		}
		if n > lim.MaxHeaderCount {
			lim.Limits.Refused(lim.Name, http.StatusRequestHeaderFieldsTooLarge)
			refuse(w, http.StatusRequestHeaderFieldsTooLarge, "too many header lines (limit "+strconv.Itoa(lim.MaxHeaderCount)+")")
			return
		}
		if lim.MaxBody > 0 {
			if r.ContentLength > lim.MaxBody {
				lim.Limits.Refused(lim.Name, http.StatusRequestEntityTooLarge)
				refuse(w, http.StatusRequestEntityTooLarge, "request body too large (limit "+strconv.FormatInt(lim.MaxBody, 10)+" bytes)")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, lim.MaxBody)
		}
		h.ServeHTTP(w, r)
	})
}

// refuse answers a request the limits turn away, and closes the
// connection: what is left of the request is not worth reading.
func refuse(w http.ResponseWriter, status int, reason string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Connection", "close")
	w.WriteHeader(status)
	w.Write([]byte(reason + "\n"))
}
