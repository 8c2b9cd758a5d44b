package postback

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/internal/clientip"
	"github.com/clickedge/clickedge/outbox"
)

// Store is where registrations go: the outbox. IndexGet and AppendIndexed
// are called from many requests at once.
type Store interface {
	IndexGet(key [outbox.IndexKeyLen]byte) (outbox.IndexEntry, bool, error)
	AppendIndexed(r *outbox.Record, u outbox.IndexUpdate) error
}

var _ Store = (*outbox.Outbox)(nil)

// Config configures a Handler. Build it with DefaultConfig.
type Config struct {
	// Region and Node name this node in messages and headers; the routing
	// key is "action.<Region>". Required.
	Region, Node string
	// Exchange receives the actions. Default "actions".
	Exchange string
	// Store takes the records. Required.
	Store Store
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// when an advertiser's allowlist is checked. Default none: the client
	// is the TCP peer.
	TrustedProxies []netip.Prefix
	// MaxSkew is how far a signed postback's ts may be from the node's
	// clock. Default 300s.
	MaxSkew time.Duration
	// MaxClickFuture is how far in the future a click id's time may be.
	// Default 5m.
	MaxClickFuture time.Duration
	// Now is the clock. Default time.Now. The Store judges index expiry by
	// its own clock, which must agree (tests set both).
	Now func() time.Time
	// Logger receives refusals (at most one line per second, with a count
	// of those left out) and store errors. Default discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() *Config {
	return &Config{
		Exchange:       "actions",
		MaxSkew:        300 * time.Second,
		MaxClickFuture: 5 * time.Minute,
		Now:            time.Now,
	}
}

// Handler answers GET and POST /postback. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	routing string
	headers []outbox.Header
	log     *slog.Logger
	m       *metrics
	advs    atomic.Pointer[Advertisers]
	locks   [1024]sync.Mutex // per order, by key: one decision at a time
	logged  atomic.Int64     // unix second of the last refusal logged
	quiet   atomic.Int64     // refusals not logged since
}

// New returns a Handler with no advertisers: every postback is 401 until
// SetAdvertisers.
func New(cfg *Config) (*Handler, error) {
	c := *DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	d := DefaultConfig()
	if c.Exchange == "" {
		c.Exchange = d.Exchange
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = d.MaxSkew
	}
	if c.MaxClickFuture <= 0 {
		c.MaxClickFuture = d.MaxClickFuture
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case c.Store == nil:
		return nil, errors.New("postback: no Store")
	case c.Region == "" || c.Node == "":
		return nil, errors.New("postback: Region and Node are required")
	}
	return &Handler{
		cfg:     c,
		routing: "action." + c.Region,
		headers: []outbox.Header{{Key: "region", Value: c.Region}, {Key: "node", Value: c.Node}, {Key: "schema", Value: int64(1)}},
		log:     c.Logger,
		m:       newMetrics(),
	}, nil
}

// SetAdvertisers swaps the advertisers in; requests in flight finish with
// the set they started with.
func (h *Handler) SetAdvertisers(a *Advertisers) { h.advs.Store(a) }

// Advertisers returns the set in use (nil before the first SetAdvertisers).
func (h *Handler) Advertisers() *Advertisers { return h.advs.Load() }

// Collectors returns the handler's Prometheus collectors.
func (h *Handler) Collectors() []prometheus.Collector { return h.m.collectors() }

// CountLost counts n records of rec's route (the outbox's Options.OnLost)
// that the outbox lost after they were answered: actions, that is records
// of Config.Exchange, in clickedge_postbacks_dropped_total. Actions are
// committed before their answer (and a peer's, taken over in a hand-off,
// before the hand-off is acknowledged), so it stays 0 unless that breaks.
// Records of another exchange
// (clicks, the links feed) are not actions and are ignored: the edge
// counts its clicks (edge.Server.CountLost). Safe for concurrent use.
func (h *Handler) CountLost(rec *outbox.Record, n int) {
	if n > 0 && rec.Exchange == h.cfg.Exchange {
		h.m.dropped.Add(float64(n))
	}
}

// request is a postback, whichever server read it.
type request struct {
	method      string
	rawQuery    string
	body        string
	contentType string
	auth        string
	peer        netip.Addr
	xff         []string
}

// answer is the JSON reply.
type answer struct {
	status int
	Result string `json:"result,omitempty"`
	ID     string `json:"action_id,omitempty"`
	Error  string `json:"error,omitempty"`
	Field  string `json:"field,omitempty"`
	reason reason
	adv    string // for the log, when known
}

func refuse(status int, r reason, field, format string, args ...any) *answer {
	return &answer{status: status, reason: r, Field: field, Error: fmt.Sprintf(format, args...)}
}

func (a *answer) json() []byte {
	b, _ := json.Marshal(a)
	return append(b, '\n')
}

// ServeHTTP answers a postback from net/http.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := request{
		method:      r.Method,
		rawQuery:    r.URL.RawQuery,
		contentType: r.Header.Get("Content-Type"),
		auth:        r.Header.Get("Authorization"),
		peer:        clientip.ParsePeer(r.RemoteAddr),
		xff:         r.Header["X-Forwarded-For"],
	}
	var a *answer
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxQueryBytes+1))
		switch {
		case err != nil:
			a = refuse(http.StatusBadRequest, reasonBadRequest, "", "cannot read the body: %v", err)
		case len(b) > MaxQueryBytes:
			a = refuse(http.StatusRequestEntityTooLarge, reasonBadRequest, "", "body larger than %d bytes", MaxQueryBytes)
		}
		q.body = string(b)
	}
	if a == nil {
		a = h.handle(&q)
	}
	h.finish(a, start)
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	if a.status == http.StatusMethodNotAllowed {
		hd.Set("Allow", "GET, POST")
	}
	if a.status == http.StatusServiceUnavailable {
		hd.Set("Retry-After", "1")
	}
	w.WriteHeader(a.status)
	w.Write(a.json())
}

// ServeFast answers a postback from fasthttp.
func (h *Handler) ServeFast(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	hd := &ctx.Request.Header
	q := request{
		method:      string(hd.Method()),
		rawQuery:    string(ctx.URI().QueryString()),
		contentType: string(hd.ContentType()),
		auth:        string(hd.Peek("Authorization")),
	}
	if t, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			q.peer = ip.Unmap()
		}
	}
	if len(h.cfg.TrustedProxies) > 0 {
		for _, v := range hd.PeekAll("X-Forwarded-For") {
			q.xff = append(q.xff, string(v))
		}
	}
	var a *answer
	if q.method == http.MethodPost {
		b := ctx.PostBody()
		if len(b) > MaxQueryBytes {
			a = refuse(http.StatusRequestEntityTooLarge, reasonBadRequest, "", "body larger than %d bytes", MaxQueryBytes)
		}
		q.body = string(b)
	}
	if a == nil {
		a = h.handle(&q)
	}
	h.finish(a, start)
	res := &ctx.Response
	res.SetStatusCode(a.status)
	res.Header.SetContentType("application/json")
	res.Header.Set("Cache-Control", "no-store")
	if a.status == http.StatusMethodNotAllowed {
		res.Header.Set("Allow", "GET, POST")
	}
	if a.status == http.StatusServiceUnavailable {
		res.Header.Set("Retry-After", "1")
	}
	res.SetBody(a.json())
}

// finish counts and, for refusals, logs the answer.
func (h *Handler) finish(a *answer, start time.Time) {
	h.m.duration.Observe(time.Since(start).Seconds())
	switch a.Result {
	case "registered":
		h.m.byResult[resultRegistered].Inc()
		return
	case "duplicate":
		h.m.byResult[resultDuplicate].Inc()
		return
	case "updated":
		h.m.byResult[resultUpdated].Inc()
		return
	}
	h.m.byResult[resultRefused].Inc()
	h.m.byReason[a.reason].Inc()
	now := time.Now().Unix()
	if last := h.logged.Load(); last != now && h.logged.CompareAndSwap(last, now) {
		h.log.Info("postback refused", "adv", a.adv, "status", a.status, "reason", reasonNames[a.reason], "error", a.Error,
			"field", a.Field, "suppressed", h.quiet.Swap(0))
		return
	}
	h.quiet.Add(1)
}

// handle judges a postback and, when it is new or moves forward, stores it
// before answering. See the package documentation for the order of checks.
func (h *Handler) handle(q *request) (a *answer) {
	var advID string
	defer func() { a.adv = clip(advID) }()
	if q.method != http.MethodGet && q.method != http.MethodPost {
		return refuse(http.StatusMethodNotAllowed, reasonBadRequest, "", "method %s not allowed; use GET or POST", clipMethod(q.method))
	}
	if len(q.rawQuery)+len(q.body) > MaxQueryBytes {
		return refuse(http.StatusBadRequest, reasonBadRequest, "", "parameters longer than %d bytes", MaxQueryBytes)
	}
	ps, err := ParseQuery(nil, q.rawQuery)
	if err == nil && q.method == http.MethodPost && q.body != "" {
		if mt, _, _ := mime.ParseMediaType(q.contentType); mt != "application/x-www-form-urlencoded" {
			return refuse(http.StatusBadRequest, reasonBadRequest, "", "a POST body must be application/x-www-form-urlencoded")
		}
		ps, err = ParseQuery(ps, q.body)
	}
	if err != nil {
		fe := err.(*FieldError)
		return refuse(http.StatusBadRequest, reasonBadRequest, fe.Field, "%s", fe.Reason)
	}
	now := h.cfg.Now()

	advID, _ = ps.Get("adv")
	if advID == "" {
		return refuse(http.StatusBadRequest, reasonBadRequest, "adv", "missing")
	}
	advs := h.advs.Load() // one set for the whole request
	adv := advs.Lookup(advID)
	if adv == nil {
		return refuse(http.StatusUnauthorized, reasonUnauthorized, "adv", "unknown advertiser")
	}
	if len(adv.Allow) > 0 {
		ip := clientip.Resolve(q.peer, q.xff, h.cfg.TrustedProxies)
		if !ip.IsValid() || !clientip.Contains(adv.Allow, ip) {
			return refuse(http.StatusForbidden, reasonForbidden, "", "address %s is not allowed for this advertiser", ip)
		}
	}
	if refusal := h.authenticate(adv, ps, q.auth, now); refusal != nil {
		return refusal
	}

	p, refusal := checkFields(ps)
	if refusal != nil {
		return refusal
	}
	if p.clickTime.Sub(now) > h.cfg.MaxClickFuture {
		return refuse(http.StatusUnprocessableEntity, reasonOutOfWindow, "click_id", "the click is from the future (%s)", formatTS(p.clickTime))
	}
	if now.Sub(p.clickTime) > adv.Window {
		return refuse(http.StatusUnprocessableEntity, reasonOutOfWindow, "click_id",
			"the click (%s) is older than the advertiser's window (%s)", formatTS(p.clickTime), adv.Window)
	}
	// An order's entry must outlive every postback that could still be
	// accepted for it: its click may be MaxClickFuture ahead and then
	// count for the longest window.
	return h.register(adv, p, now, advs.MaxWindow()+h.cfg.MaxClickFuture)
}

// authenticate checks the signature (secret) or the token; nil means the
// postback is the advertiser's.
func (h *Handler) authenticate(adv *Advertiser, ps Params, auth string, now time.Time) *answer {
	if adv.Secret == nil {
		tok, ok := ps.Get("token")
		if !ok {
			if b, found := strings.CutPrefix(auth, "Bearer "); found {
				tok, ok = strings.TrimSpace(b), true
			}
		}
		if !ok || tok == "" {
			return refuse(http.StatusUnauthorized, reasonUnauthorized, "token", "missing token")
		}
		// Digests of equal length: the comparison leaks neither the token
		// nor its length.
		got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(adv.Token))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return refuse(http.StatusUnauthorized, reasonUnauthorized, "token", "bad token")
		}
		return nil
	}
	sig, ok := ps.Get("sig")
	if !ok || sig == "" {
		return refuse(http.StatusUnauthorized, reasonUnauthorized, "sig", "missing signature")
	}
	tsRaw, ok := ps.Get("ts")
	if !ok || tsRaw == "" {
		return refuse(http.StatusUnauthorized, reasonUnauthorized, "ts", "a signed postback needs ts (unix seconds)")
	}
	if !checkSig(adv.Secret, Canonical(ps), sig) {
		return refuse(http.StatusUnauthorized, reasonUnauthorized, "sig", "bad signature")
	}
	ts, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		return refuse(http.StatusUnauthorized, reasonUnauthorized, "ts", "not unix seconds")
	}
	skew := now.Sub(time.Unix(ts, 0))
	if skew > h.cfg.MaxSkew || skew < -h.cfg.MaxSkew {
		return refuse(http.StatusUnauthorized, reasonUnauthorized, "ts",
			"ts is %s from this node's clock, more than %s", skew.Round(time.Second), h.cfg.MaxSkew)
	}
	return nil
}

// postback is a checked postback.
type postback struct {
	clickID   string
	clickTime time.Time
	orderID   string
	action    string
	status    Status
	amount    string
	currency  string
}

// first returns the value of the first of keys given.
func first(ps Params, keys ...string) (string, bool) {
	for _, k := range keys {
		if v, ok := ps.Get(k); ok {
			return v, true
		}
	}
	return "", false
}

func checkFields(ps Params) (*postback, *answer) {
	bad := func(field, format string, args ...any) (*postback, *answer) {
		return nil, refuse(http.StatusBadRequest, reasonBadRequest, field, format, args...)
	}
	p := &postback{action: "sale", status: Approved}

	cid, ok := first(ps, "click_id", "cid", "clickid", "subid")
	if !ok || cid == "" {
		return bad("click_id", "missing")
	}
	id, err := clickid.Parse(cid)
	if err != nil || len(cid) != clickid.Len {
		return bad("click_id", "not a click id made by an edge: want 32 lowercase hex digits of a UUIDv7")
	}
	p.clickID, p.clickTime = cid, id.Time()

	oid, ok := first(ps, "order_id", "tid", "txid", "transaction_id")
	switch {
	case !ok || oid == "":
		return bad("order_id", "missing")
	case len(oid) > MaxOrderBytes:
		return bad("order_id", "longer than %d bytes", MaxOrderBytes)
	case !utf8.ValidString(oid):
		return bad("order_id", "not valid UTF-8")
	case strings.IndexFunc(oid, unicode.IsControl) >= 0:
		return bad("order_id", "contains control characters")
	}
	p.orderID = oid

	if v, ok := ps.Get("action"); ok {
		if !validAction(v) {
			return bad("action", "must match [a-z0-9_-]{1,32}")
		}
		p.action = v
	}
	if v, ok := ps.Get("status"); ok {
		s, ok := ParseStatus(v)
		if !ok {
			return bad("status", "must be pending, approved or declined")
		}
		p.status = s
	}
	amount, hasAmount := ps.Get("amount")
	currency, hasCurrency := ps.Get("currency")
	switch {
	case hasAmount && !hasCurrency:
		return bad("currency", "missing: amount and currency go together")
	case hasCurrency && !hasAmount:
		return bad("amount", "missing: amount and currency go together")
	case hasAmount && !validAmount(amount):
		return bad("amount", "must be a decimal number with at most 2 decimals, such as 12.50")
	case hasCurrency && !validCurrency(currency):
		return bad("currency", "must be an ISO 4217 code in upper case, such as EUR")
	}
	p.amount, p.currency = amount, currency
	return p, nil
}

func validAction(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validAmount accepts digits, then optionally '.' and one or two digits.
func validAmount(s string) bool {
	if len(s) == 0 || len(s) > maxAmountBytes {
		return false
	}
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || dot && (len(frac) == 0 || len(frac) > 2) {
		return false
	}
	for _, part := range []string{whole, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

func validCurrency(s string) bool {
	return len(s) == 3 && 'A' <= s[0] && s[0] <= 'Z' && 'A' <= s[1] && s[1] <= 'Z' && 'A' <= s[2] && s[2] <= 'Z'
}

func clipMethod(m string) string {
	if len(m) > 16 {
		m = m[:16]
	}
	return strconv.Quote(m)
}

// maxRaces bounds how often one postback re-reads the index after another
// change of the same order raced it; the order lock makes even one rare.
const maxRaces = 3

// register judges the postback against the order's index entry and, when
// it is new or moves forward, commits its record and the entry together
// before answering.
func (h *Handler) register(adv *Advertiser, p *postback, now time.Time, keep time.Duration) *answer {
	key := orderKey(adv.ID, p.orderID, p.action)
	lock := &h.locks[(int(key[0])<<8|int(key[1]))%len(h.locks)]
	lock.Lock()
	defer lock.Unlock()
	actionID := ActionID(adv.ID, p.orderID, p.action, p.status)
	for range maxRaces {
		e, ok, err := h.cfg.Store.IndexGet(key)
		if err != nil {
			h.log.Error("postback: status index unreadable", "err", err)
			return refuse(http.StatusServiceUnavailable, reasonUnavailable, "", "the postback could not be registered; try again")
		}
		d := decide(e, ok, p.status)
		switch d {
		case Duplicate:
			return &answer{status: http.StatusOK, Result: "duplicate", ID: actionID}
		case Conflict:
			cur, _ := entryStatus(e.Value)
			return refuse(http.StatusConflict, reasonConflict, "status", "status cannot move from %s to %s", cur, p.status)
		}
		_, seen := entryStatus(e.Value)
		u := outbox.IndexUpdate{Key: key, Old: e, OldOK: ok, New: outbox.IndexEntry{
			Value:   entryValue(p.status, seen|p.status),
			Expires: now.Add(keep),
		}}
		body := (&message{
			V: 1, ActionID: actionID, ClickID: p.clickID, ClickTS: formatTS(p.clickTime),
			Adv: adv.ID, Action: p.action, OrderID: p.orderID, Status: p.status.String(),
			Amount: p.amount, Currency: p.currency, TS: formatTS(now),
			Region: h.cfg.Region, Node: h.cfg.Node,
		}).encode()
		rec := &outbox.Record{
			Exchange: h.cfg.Exchange, RoutingKey: h.routing, MessageID: actionID,
			Headers: h.headers, Body: body,
		}
		err = h.cfg.Store.AppendIndexed(rec, u)
		switch {
		case err == nil && d == Register:
			return &answer{status: http.StatusOK, Result: "registered", ID: actionID}
		case err == nil:
			return &answer{status: http.StatusOK, Result: "updated", ID: actionID}
		case errors.Is(err, outbox.ErrIndexChanged):
			continue
		}
		h.log.Error("postback: outbox refused the action", "action_id", actionID, "err", err)
		return refuse(http.StatusServiceUnavailable, reasonUnavailable, "", "the postback could not be registered; try again")
	}
	return refuse(http.StatusServiceUnavailable, reasonUnavailable, "", "the order changed while registering; try again")
}
