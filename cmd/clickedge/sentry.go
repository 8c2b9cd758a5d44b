package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/getsentry/sentry-go"
	"github.com/valyala/fasthttp"
)

// SentryConfig is the sentry section: errors (log records at level error)
// and panics go to Sentry when DSN is set.
type SentryConfig struct {
	DSN         string `yaml:"dsn"`
	Environment string `yaml:"environment"`
}

func (s SentryConfig) check() []problem {
	if s.DSN == "" {
		return nil
	}
	if _, err := sentry.NewDsn(s.DSN); err != nil {
		// The DSN's key is not quoted: logs and CI output keep it private.
		return []problem{{"sentry.dsn", "invalid DSN: " + strings.ReplaceAll(err.Error(), s.DSN, redactSentryDSN(s.DSN))}}
	}
	return nil
}

// redactSentryDSN hides the key (the user part) of a DSN.
func redactSentryDSN(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return redactedSecret
	}
	u.User = url.User(redactedSecret)
	return u.String()
}

// sentryFlushTimeout bounds how long stopping (or a crash) waits for the
// events still queued.
const sentryFlushTimeout = 2 * time.Second

// reporter sends errors and panics to Sentry. A nil *reporter (no DSN)
// does nothing, so callers need no branches.
//
// Off the hot path: Capture* runs BeforeSend (the scrubber) and hands the
// event to the SDK's telemetry buffer, a bounded queue that a background
// goroutine sends from; a slow or unreachable Sentry drops events, it never
// blocks a request. Only error records and panics are sent, and the edge
// logs its per-request errors through a rate limiter (edge/ratelog.go).
type reporter struct {
	hub *sentry.Hub
}

// newReporter returns nil when cfg.Sentry.DSN is empty.
func newReporter(cfg *Config) (*reporter, error) {
	if cfg.Sentry.DSN == "" {
		return nil, nil
	}
	client, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:         cfg.Sentry.DSN,
		Environment: cfg.Sentry.Environment,
		Release:     "clickedge@" + version,
		// The node id, not the host name: what operators search by.
		ServerName:     cfg.Node.ID,
		SendDefaultPII: false,
		Tags:           map[string]string{"region": cfg.Node.Region, "node": cfg.Node.ID},
		BeforeSend:     func(e *sentry.Event, _ *sentry.EventHint) *sentry.Event { return scrubEvent(e) },
		BeforeBreadcrumb: func(b *sentry.Breadcrumb, _ *sentry.BreadcrumbHint) *sentry.Breadcrumb {
			return nil // breadcrumbs would carry request details; events say enough
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sentry.dsn: %w", err)
	}
	return &reporter{hub: sentry.NewHub(client, sentry.NewScope())}, nil
}

// close sends what is queued, waiting at most sentryFlushTimeout.
func (r *reporter) close() {
	if r == nil {
		return
	}
	r.hub.Flush(sentryFlushTimeout)
	r.hub.Client().Close()
}

// panicked reports a recovered panic and waits for it to be sent: the
// caller re-panics, and the process may be about to die.
func (r *reporter) panicked(v any) {
	if r == nil {
		return
	}
	r.hub.Recover(v)
	r.hub.Flush(sentryFlushTimeout)
}

// logger returns a logger that writes to base's handler and also sends
// records at level error to Sentry.
func (r *reporter) logger(base *slog.Logger) *slog.Logger {
	if r == nil {
		return base
	}
	return slog.New(&sentryHandler{inner: base.Handler(), rep: r})
}

// reporterOf finds the reporter behind a logger made by reporter.logger
// (and its With/WithGroup descendants), or nil.
func reporterOf(l *slog.Logger) *reporter {
	if l == nil {
		return nil
	}
	if h, ok := l.Handler().(*sentryHandler); ok {
		return h.rep
	}
	return nil
}

// recoverHTTP reports a handler's panic to Sentry and panics again, so
// net/http's own recovery and log stay as they were.
func (r *reporter) recoverHTTP(h http.Handler) http.Handler {
	if r == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					r.panicked(v)
				}
				panic(v)
			}
		}()
		h.ServeHTTP(w, req)
	})
}

// recoverFast is recoverHTTP for fasthttp, which does not recover: the
// process dies, after the report is sent.
func (r *reporter) recoverFast(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if r == nil {
		return h
	}
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if v := recover(); v != nil {
				r.panicked(v)
				panic(v)
			}
		}()
		h(ctx)
	}
}

// sentryHandler tees slog records at level error to Sentry. It is safe
// for concurrent use, as slog handlers must be.
type sentryHandler struct {
	inner slog.Handler
	rep   *reporter
	attrs []slog.Attr // from WithAttrs, group-qualified
	group string      // from WithGroup, dotted
}

func (h *sentryHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.inner.Enabled(ctx, l)
}

func (h *sentryHandler) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	if h.inner.Enabled(ctx, rec.Level) {
		err = h.inner.Handle(ctx, rec)
	}
	if rec.Level < slog.LevelError {
		return err
	}
	fields := make(map[string]any, len(h.attrs)+rec.NumAttrs())
	for _, a := range h.attrs {
		fields[a.Key] = a.Value.Resolve().String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		fields[key] = a.Value.Resolve().String()
		return true
	})
	ev := sentry.NewEvent()
	ev.Level = sentry.LevelError
	ev.Message = rec.Message
	ev.Logger = "slog"
	ev.Timestamp = rec.Time
	ev.Contexts = map[string]sentry.Context{"log": fields}
	if c, ok := fields["component"].(string); ok {
		ev.Tags = map[string]string{"component": c}
	}
	h.rep.hub.CaptureEvent(ev)
	return err
}

func (h *sentryHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.inner = h.inner.WithAttrs(attrs)
	n.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range attrs {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		n.attrs = append(n.attrs, a)
	}
	return &n
}

func (h *sentryHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.inner = h.inner.WithGroup(name)
	if h.group != "" {
		name = h.group + "." + name
	}
	n.group = name
	return &n
}

// ---- scrubbing ----

// redactedIP replaces every IP address in an event.
const redactedIP = "[ip]"

var (
	// Candidates only: each is confirmed by netip before it is replaced, so
	// times ("01:02:03") and versions ("1.26.8") stay.
	ipv4Re = regexp.MustCompile(`\d{1,3}(?:\.\d{1,3}){3}`)
	ipv6Re = regexp.MustCompile(`(?:[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,6}:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?:%[0-9A-Za-z]+)?`)
)

// scrubIPs replaces the IPv4 and IPv6 addresses in s. A replacement can
// uncover another address next to it ("0::0:0::1" holds two candidates that
// overlap), so it repeats until nothing changes (in practice once or twice).
func scrubIPs(s string) string {
	for range 8 {
		t := scrubIPsOnce(s)
		if t == s {
			break
		}
		s = t
	}
	return s
}

func scrubIPsOnce(s string) string {
	if !strings.ContainsAny(s, ".:") {
		return s
	}
	s = ipv6Re.ReplaceAllStringFunc(s, func(m string) string {
		// "::1:" from "[::1]:" or "addr ::1: refused": trailing colons are
		// punctuation.
		// Colons before or after may be punctuation (":0::1", "[::1]:",
		// "X::0::1"): the widest candidate that parses wins.
		trimmed := strings.TrimRight(m, ":")
		for i := 0; i < len(trimmed); i++ {
			if i > 0 && m[i-1] != ':' {
				break
			}
			for _, end := range [...]int{len(m), len(trimmed)} {
				if a, err := netip.ParseAddr(m[i:end]); err == nil && a.Is6() {
					return m[:i] + redactedIP + m[end:]
				}
			}
		}
		return m
	})
	return ipv4Re.ReplaceAllStringFunc(s, func(m string) string {
		if _, err := netip.ParseAddr(m); err == nil {
			return redactedIP
		}
		return m
	})
}

// scrubEvent removes IP addresses from everything an event carries: no
// user or request data at all, and addresses cut out of messages,
// exceptions, tags and contexts. clickedge never logs client addresses on
// purpose; this catches the accidental ones (an error quoting a peer, a
// panic value).
func scrubEvent(e *sentry.Event) *sentry.Event {
	e.User = sentry.User{}
	e.Request = nil
	e.Breadcrumbs = nil
	e.Message = scrubIPs(e.Message)
	e.Transaction = scrubIPs(e.Transaction)
	for i := range e.Exception {
		e.Exception[i].Value = scrubIPs(e.Exception[i].Value)
		e.Exception[i].Type = scrubIPs(e.Exception[i].Type)
	}
	for k, v := range e.Tags {
		e.Tags[k] = scrubIPs(v)
	}
	for _, c := range e.Contexts {
		for k, v := range c {
			c[k] = scrubAny(v)
		}
	}
	for i := range e.Threads {
		e.Threads[i].Name = scrubIPs(e.Threads[i].Name)
	}
	return e
}

func scrubAny(v any) any {
	switch v := v.(type) {
	case string:
		return scrubIPs(v)
	case map[string]any:
		for k, x := range v {
			v[k] = scrubAny(x)
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = scrubAny(x)
		}
		return v
	case []string:
		for i, x := range v {
			v[i] = scrubIPs(x)
		}
		return v
	case nil, bool, int, int64, uint64, float64:
		return v
	default:
		return scrubIPs(fmt.Sprint(v))
	}
}
