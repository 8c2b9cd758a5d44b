package edge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/internal/bearer"
)

// LinksConfig configures link management on the admin listener.
type LinksConfig struct {
	// Store is the replicated catalog the API reads and writes; required.
	Store *catalog.Store
	// WriteRate is how many write requests per second the API takes (a
	// bulk counts once), WriteBurst how many at once; beyond them it
	// answers 429 with Retry-After. Defaults 20 and 100.
	WriteRate  float64
	WriteBurst int
	// Logger gets one line per accepted or refused write: who (the token's
	// id) and what. Nil: discard.
	Logger *slog.Logger
	// Now is the clock for trace's default hour. Nil: time.Now.
	Now func() time.Time
}

// Request body limits: one link, and a bulk of many.
const (
	maxLinkBody = 1 << 20
	maxBulkBody = 64 << 20
	maxPageSize = 10_000
)

type linksAPI struct {
	cfg     LinksConfig
	token   *bearer.Token // nil: none configured
	tokenID string
	limit   *rate.Limiter
	log     *slog.Logger
}

// mountLinks registers:
//
//	GET    /admin/links?after=CODE&limit=N  {"links":[...],"next":"CODE"}
//	GET    /admin/links/{code}               the link (file form); 404 unknown or deleted
//	PUT    /admin/links/{code}               token; upsert one link
//	DELETE /admin/links/{code}               token; tombstone
//	POST   /admin/links/bulk                 token; {"upsert":[links],"delete":[codes]}, atomic
//	GET    /admin/links/{code}/trace?...     dry run, records nothing
func mountLinks(mux *http.ServeMux, cfg LinksConfig, token string) {
	if cfg.WriteRate <= 0 {
		cfg.WriteRate = 20
	}
	if cfg.WriteBurst <= 0 {
		cfg.WriteBurst = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &linksAPI{cfg: cfg, limit: rate.NewLimiter(rate.Limit(cfg.WriteRate), cfg.WriteBurst), log: cfg.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.token = bearer.New(token); l.token != nil {
		l.tokenID = TokenID(token)
	}
	mux.HandleFunc("GET /admin/links", l.list)
	mux.HandleFunc("GET /admin/links/{code}", l.get)
	mux.HandleFunc("PUT /admin/links/{code}", l.write(l.put))
	mux.HandleFunc("DELETE /admin/links/{code}", l.write(l.delete))
	mux.HandleFunc("POST /admin/links/bulk", l.write(l.bulk))
	mux.HandleFunc("GET /admin/links/{code}/trace", l.trace)
}

// TokenID names a token in logs without revealing it: the first 12 hex
// digits of its SHA-256.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

var linksRefusals = bearer.Reasons{
	NotConfigured: "admin.token is not configured: link management is read-only",
	Missing:       "missing bearer token (Authorization: Bearer <admin.token>)",
	Wrong:         "wrong bearer token",
}

// problem is the body of every 4xx and 5xx of the links API.
type problem struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	Code  string `json:"code,omitempty"`  // the link, in a bulk
	Index *int   `json:"index,omitempty"` // its place in the bulk's upserts then deletes
}

func (l *linksAPI) fail(w http.ResponseWriter, status int, p problem) {
	adminJSON(w, status, p)
}

// write wraps a state-changing endpoint: the token (missing 401, wrong or
// none configured 403), then the rate limit.
func (l *linksAPI) write(h func(w http.ResponseWriter, r *http.Request) (what string, err error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		allowed := l.token.Allow(w, r, linksRefusals, func(w http.ResponseWriter, status int, reason string) {
			if reason == linksRefusals.Wrong {
				tok, _ := bearer.Parse(r.Header.Get("Authorization"))
				l.log.Warn("links: write refused: wrong token", "who", TokenID(tok), "remote", r.RemoteAddr,
					"method", r.Method, "path", r.URL.Path)
			}
			l.fail(w, status, problem{Error: reason})
		})
		if !allowed {
			return
		}
		if res := l.limit.Reserve(); !res.OK() || res.Delay() > 0 {
			delay := res.Delay()
			res.Cancel()
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(delay.Seconds())))))
			l.log.Warn("links: write refused: rate limited", "who", l.tokenID, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			l.fail(w, http.StatusTooManyRequests, problem{Error: "too many writes; retry later"})
			return
		}
		what, err := h(w, r)
		if err != nil {
			l.log.Warn("links: write refused", "who", l.tokenID, "remote", r.RemoteAddr, "what", what, "err", err)
			return
		}
		l.log.Info("links: write", "who", l.tokenID, "remote", r.RemoteAddr, "what", what)
	}
}

func (l *linksAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			l.fail(w, http.StatusBadRequest, problem{Error: fmt.Sprintf("limit %q: want 1 to %d", s, maxPageSize), Field: "limit"})
			return
		}
		limit = n
	}
	es, next := l.cfg.Store.Links(q.Get("after"), limit)
	links := make([]json.RawMessage, len(es))
	for i := range es {
		links[i] = es[i].Link
	}
	adminJSON(w, http.StatusOK, struct {
		Links []json.RawMessage `json:"links"`
		Next  string            `json:"next"`
	}{links, next})
}

func versionHeader(w http.ResponseWriter, e catalog.Entry) {
	w.Header().Set("X-Catalog-Version", strconv.FormatUint(e.HLC, 10))
	w.Header().Set("X-Catalog-Writer", e.Node)
}

func (l *linksAPI) get(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	e, ok := l.cfg.Store.Get(code)
	if !ok || e.Deleted {
		l.fail(w, http.StatusNotFound, problem{Error: fmt.Sprintf("no link %q", code)})
		return
	}
	versionHeader(w, e)
	adminJSON(w, http.StatusOK, e.Link)
}

// changed is the answer to a write: what each code now is.
type changed struct {
	Code    string `json:"code"`
	Version string `json:"version"` // decimal: above 2^53
	Node    string `json:"node"`
	Deleted bool   `json:"deleted,omitempty"`
}

func answer(es []catalog.Entry) []changed {
	out := make([]changed, len(es))
	for i, e := range es {
		out[i] = changed{Code: e.Code, Version: strconv.FormatUint(e.HLC, 10), Node: e.Node, Deleted: e.Deleted}
	}
	return out
}

// readBody reads at most limit bytes, answering 413 beyond.
func (l *linksAPI) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			l.fail(w, http.StatusRequestEntityTooLarge, problem{Error: fmt.Sprintf("body over %d bytes", limit)})
		} else {
			l.fail(w, http.StatusBadRequest, problem{Error: "read body: " + err.Error()})
		}
		return nil, false
	}
	return body, true
}

// applyFailed answers a refused Apply: 422 for a bad link, 500 when the
// store could not persist.
func (l *linksAPI) applyFailed(w http.ResponseWriter, err error, bulk bool, upserts int) {
	var oe *catalog.OpError
	if errors.As(err, &oe) {
		p := problem{Error: oe.Err.Error(), Field: catalog.FieldOf(oe.Err)}
		if bulk {
			p.Code, p.Index = oe.Code, &oe.Index
		}
		l.fail(w, http.StatusUnprocessableEntity, p)
		return
	}
	l.fail(w, http.StatusInternalServerError, problem{Error: "not stored: " + err.Error()})
}

func (l *linksAPI) put(w http.ResponseWriter, r *http.Request) (string, error) {
	code := r.PathValue("code")
	what := "put " + code
	body, ok := l.readBody(w, r, maxLinkBody)
	if !ok {
		return what, errors.New("body refused")
	}
	_, had := l.cfg.Store.Get(code)
	es, err := l.cfg.Store.Apply([]catalog.Op{{Code: code, Link: body}})
	if err != nil {
		l.applyFailed(w, err, false, 1)
		return what, err
	}
	versionHeader(w, es[0])
	status := http.StatusOK
	if !had {
		status = http.StatusCreated
	}
	adminJSON(w, status, answer(es)[0])
	return what, nil
}

func (l *linksAPI) delete(w http.ResponseWriter, r *http.Request) (string, error) {
	code := r.PathValue("code")
	what := "delete " + code
	if e, ok := l.cfg.Store.Get(code); !ok || e.Deleted {
		l.fail(w, http.StatusNotFound, problem{Error: fmt.Sprintf("no link %q", code)})
		return what, errors.New("no such link")
	}
	es, err := l.cfg.Store.Apply([]catalog.Op{{Code: code, Delete: true}})
	if err != nil {
		l.applyFailed(w, err, false, 0)
		return what, err
	}
	versionHeader(w, es[0])
	adminJSON(w, http.StatusOK, answer(es)[0])
	return what, nil
}

// bulkRequest is POST /admin/links/bulk: links to upsert (each with its
// code) and codes to delete, applied as one.
type bulkRequest struct {
	Upsert []json.RawMessage `json:"upsert"`
	Delete []string          `json:"delete"`
}

func (l *linksAPI) bulk(w http.ResponseWriter, r *http.Request) (string, error) {
	body, ok := l.readBody(w, r, maxBulkBody)
	if !ok {
		return "bulk", errors.New("body refused")
	}
	var req bulkRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		l.fail(w, http.StatusBadRequest, problem{Error: "want {\"upsert\": [links], \"delete\": [codes]}: " + err.Error()})
		return "bulk", err
	}
	ops := make([]catalog.Op, 0, len(req.Upsert)+len(req.Delete))
	for i, raw := range req.Upsert {
		var head struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(raw, &head); err != nil || head.Code == "" {
			l.fail(w, http.StatusUnprocessableEntity, problem{Error: "every upserted link needs its code", Field: "code", Index: &i})
			return "bulk", errors.New("upsert without a code")
		}
		ops = append(ops, catalog.Op{Code: head.Code, Link: raw})
	}
	for _, code := range req.Delete {
		ops = append(ops, catalog.Op{Code: code, Delete: true})
	}
	what := fmt.Sprintf("bulk: %d upserts, %d deletes", len(req.Upsert), len(req.Delete))
	if len(ops) == 0 {
		l.fail(w, http.StatusBadRequest, problem{Error: "nothing to do: upsert and delete are empty"})
		return what, errors.New("empty bulk")
	}
	es, err := l.cfg.Store.Apply(ops)
	if err != nil {
		l.applyFailed(w, err, true, len(req.Upsert))
		return what, err
	}
	adminJSON(w, http.StatusOK, struct {
		Applied int       `json:"applied"`
		Version string    `json:"version"`
		Changes []changed `json:"changes"`
	}{len(es), strconv.FormatUint(l.cfg.Store.Version(), 10), answer(es)})
	return what, nil
}

func (l *linksAPI) trace(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	link := l.cfg.Store.Catalog().Lookup(code)
	if link == nil {
		l.fail(w, http.StatusNotFound, problem{Error: fmt.Sprintf("no link %q", code)})
		return
	}
	q := r.URL.Query()
	f, err := catalog.FactsFromQuery(q, l.cfg.Now())
	if err != nil {
		l.fail(w, http.StatusBadRequest, problem{Error: err.Error()})
		return
	}
	rnd := rand.Uint64()
	if s := q.Get("rnd"); s != "" {
		if rnd, err = strconv.ParseUint(s, 10, 64); err != nil {
			l.fail(w, http.StatusBadRequest, problem{Error: fmt.Sprintf("rnd %q: want an unsigned 64-bit integer", s), Field: "rnd"})
			return
		}
	}
	adminJSON(w, http.StatusOK, link.Trace(f, rnd))
}
