package edge

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/internal/bearer"
)

// AdminConfig configures the admin listener's handler. Every func may be
// called from many requests at once, so each must be thread-safe.
type AdminConfig struct {
	// Gatherer is what /metrics serves. Nil: /metrics answers 404.
	Gatherer prometheus.Gatherer

	// Token guards the admin listener: when set, every request but GET
	// /metrics, /healthz and /readyz needs "Authorization: Bearer <Token>"
	// (missing: 401, wrong: 403), /debug/pprof/ and every /admin/ route
	// included, whoever registered it. Empty: the endpoints that change
	// state answer 403 (a read-only admin) and reads are open, which
	// cmd/clickedge allows only on a loopback address.
	Token string

	// Ready says whether the node can take traffic: /readyz answers 200
	// when it returns nil, else 503 with the error. Nil: always ready.
	Ready func() error

	// OutboxStatus returns what GET /admin/outbox shows, any value that
	// encoding/json can marshal (cmd passes the outbox and forwarder
	// stats). Nil: /admin/outbox answers 404.
	OutboxStatus func() any

	// ReloadCatalog reloads the catalog (POST /admin/catalog/reload). An
	// error wrapping catalog.ErrInvalid (a bad file) answers 422, any other
	// error 400, both with the error text; the last good catalog keeps
	// serving. Nil: the endpoint answers 404.
	ReloadCatalog func() error

	// ForceReloadCatalog reloads the catalog even where ReloadCatalog
	// refuses on purpose (ErrRefused: a file with no links while links are
	// serving); POST /admin/catalog/reload?force=1. Nil: force answers 400.
	ForceReloadCatalog func() error

	// Server, when set, names the catalog version in the reload answer and
	// in GET /admin/catalog. Nil: the version is "".
	Server *Server

	// Status returns what GET /status shows (status.go); the page needs
	// the token when one is configured. Nil: /status answers 404.
	Status func() *Status

	// Links, when set, mounts link management under /admin/links (see
	// links_admin.go), and GET /admin/catalog shows the replicated
	// catalog's version, digest and counts. Nil: not mounted.
	Links *LinksConfig
}

// ErrRefused is returned (wrapped) by AdminConfig.ReloadCatalog when it
// refuses a valid catalog on purpose, such as one that would stop every
// link; the admin answers 409 and the reason, which says how to force it.
var ErrRefused = errors.New("refused")

// NewAdmin returns the handler for the admin listener:
//
//	GET  /metrics                 Prometheus exposition of cfg.Gatherer
//	GET  /healthz                 200 "ok" while the process serves
//	GET  /readyz                  200 "ready", or 503 with cfg.Ready's error
//	     /debug/pprof/...         net/http/pprof, on this mux only
//	GET  /admin/outbox            JSON of cfg.OutboxStatus()
//	GET  /admin/catalog           JSON {"version", "name", "links"}; with Links {"version", "digest", "links", "tombstones"}
//	     /admin/links...          link management, with Links (links_admin.go)
//	POST /admin/catalog/reload    token; 200 JSON {"version": ...} or 400/409/422;
//	                              ?force=1 loads a catalog that would stop every link
//	GET  /status                  HTML page of cfg.Status(); token if set
//
// With a Token, everything but /metrics, /healthz and /readyz needs it
// (openAdminPaths); without one, reads are open and the listener must not
// be public.
func NewAdmin(cfg AdminConfig) http.Handler {
	a := &admin{cfg: cfg, token: bearer.New(cfg.Token)}
	mux := http.NewServeMux()
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		adminText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	// Registered here by hand: importing net/http/pprof also registers them
	// on http.DefaultServeMux, which clickedge never serves.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if cfg.OutboxStatus != nil {
		mux.HandleFunc("GET /admin/outbox", func(w http.ResponseWriter, r *http.Request) {
			adminJSON(w, http.StatusOK, cfg.OutboxStatus())
		})
	}
	mux.HandleFunc("GET /admin/catalog", a.catalogInfo)
	if cfg.Status != nil {
		// /status checks the token itself: it also takes it as the password
		// of basic authentication, so that a browser can ask for it
		// (readAuthorized).
		mux.HandleFunc("GET /status", a.readAuthorized(a.status))
		a.selfAuth = map[string]bool{"/status": true}
	}
	if cfg.Links != nil {
		mountLinks(mux, *cfg.Links, cfg.Token)
	}
	if cfg.ReloadCatalog != nil {
		mux.HandleFunc("POST /admin/catalog/reload", a.authorized(a.reload))
	}
	if a.token == nil {
		return mux
	}
	return a.gate(mux)
}

// openAdminPaths answer without a token: what Prometheus and the probes of
// a load balancer or Kubernetes read, which have no secret to send.
var openAdminPaths = map[string]bool{"/metrics": true, "/healthz": true, "/readyz": true}

// gate makes every request outside openAdminPaths pass the token check, so
// that an endpoint added to the mux later (pprof, link management, cluster
// status) cannot be left open by forgetting to wrap it.
func (a *admin) gate(h http.Handler) http.Handler {
	inner := a.authorized(h.ServeHTTP)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openAdminPaths[r.URL.Path] || a.selfAuth[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		inner(w, r)
	})
}

type admin struct {
	cfg      AdminConfig
	token    *bearer.Token   // nil: no token configured
	selfAuth map[string]bool // paths whose handlers check the token themselves
}

func (a *admin) readyz(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Ready != nil {
		if err := a.cfg.Ready(); err != nil {
			adminText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	adminText(w, http.StatusOK, "ready")
}

func (a *admin) catalogVersion() (version, name string, links int) {
	if a.cfg.Server == nil {
		return "", "", 0
	}
	c := a.cfg.Server.Catalog()
	if c == nil {
		return "", "", 0
	}
	return c.Version(), c.Name(), c.Len()
}

func (a *admin) catalogInfo(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Links != nil {
		st := a.cfg.Links.Store
		links, tombs := st.Counts()
		adminJSON(w, http.StatusOK, struct {
			Version    string `json:"version"` // the HLC, decimal: above 2^53
			Digest     string `json:"digest"`
			Links      int    `json:"links"`
			Tombstones int    `json:"tombstones"`
		}{strconv.FormatUint(st.Version(), 10), st.Digest(), links, tombs})
		return
	}
	v, name, n := a.catalogVersion()
	adminJSON(w, http.StatusOK, struct {
		Version string `json:"version"`
		Name    string `json:"name"`
		Links   int    `json:"links"`
	}{v, name, n})
}

func (a *admin) reload(w http.ResponseWriter, r *http.Request) {
	do := a.cfg.ReloadCatalog
	switch r.URL.Query().Get("force") {
	case "":
	case "1", "true":
		if do = a.cfg.ForceReloadCatalog; do == nil {
			adminText(w, http.StatusBadRequest, "force is not supported here")
			return
		}
	default:
		adminText(w, http.StatusBadRequest, "force: want 1 or true")
		return
	}
	if err := do(); err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, catalog.ErrInvalid):
			status = http.StatusUnprocessableEntity
		case errors.Is(err, ErrRefused):
			status = http.StatusConflict
		}
		adminText(w, status, "catalog not reloaded, the previous one keeps serving: "+err.Error())
		return
	}
	v, _, n := a.catalogVersion()
	adminJSON(w, http.StatusOK, struct {
		Version string `json:"version"`
		Links   int    `json:"links"`
	}{v, n})
}

// authorized wraps an endpoint with the bearer token check
// (internal/bearer): no token configured 403, none sent 401, a wrong one
// 403.
func (a *admin) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.token.Allow(w, r, adminRefusals, adminText) {
			h(w, r)
		}
	}
}

var adminRefusals = bearer.Reasons{
	NotConfigured: "admin token not configured; this endpoint is disabled",
	Missing:       "missing bearer token (Authorization: Bearer <token>)",
	Wrong:         "wrong bearer token",
}

func adminText(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		adminText(w, http.StatusInternalServerError, "encode: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
