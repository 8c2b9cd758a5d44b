package edge

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/clickedge/clickedge/internal/bearer"
)

// Status is what GET /status shows: one node at a glance, for a person
// with a browser (the JSON endpoints are for tools).
type Status struct {
	Node, Region, Version string
	Roles                 []string
	Started               time.Time
	Now                   time.Time

	OutboxPending   int64
	OutboxOldestAge time.Duration
	OutboxFileBytes int64
	SpillRecords    int
	Forwarder       string // "connected", "disconnected", "blocked", "retrying"
	ForwarderBroker string
	ForwarderError  string

	CatalogVersion string
	CatalogLinks   int
	CatalogLoaded  time.Time

	// Members of the node's region, this node included; nil when the node
	// runs without a cluster (the page says so).
	Members []StatusMember
	// Sections are more tables that features add (postbacks, feed, ...).
	Sections []StatusSection
}

// StatusMember is one member of the region's pool as this node sees it.
type StatusMember struct {
	Name, Addr, State, Roles string
	OutboxPending            int64
	OutboxOldestAge          time.Duration
	Forwarder                string
	CatalogVersion           string
	Age                      time.Duration // of its live state
}

// StatusSection is a titled table of key/value rows.
type StatusSection struct {
	Title string
	Rows  [][2]string
}

// statusPage is self-contained: inline CSS, no script, no external asset
// (the Content-Security-Policy forbids them), so it works from a bastion
// with no internet and leaks no request to a CDN.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"secs": func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() },
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
	"since": func(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() },
	"bytes": humanBytes,
	"join":  func(s []string) string { return strings.Join(s, ", ") },
	"bad":   func(s string) bool { return s != "connected" && s != "alive" },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<title>clickedge {{.Node}} ({{.Region}})</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#eee}.bad{color:#b00;font-weight:bold}.ok{color:#070}.muted{color:#777}
</style></head><body>
<h1 id="node">clickedge {{.Node}}</h1>
<div class="muted">region <b id="region">{{.Region}}</b> · version {{.Version}}{{if .Roles}} · roles {{join .Roles}}{{end}} · up {{since .Now .Started}} · {{.Now.UTC.Format "2006-01-02 15:04:05 UTC"}}</div>
<h2>Outbox and forwarder</h2>
<table id="outbox">
<tr><th>pending records</th><td id="pending">{{.OutboxPending}}</td></tr>
<tr><th>oldest pending</th><td id="oldest">{{secs .OutboxOldestAge}}</td></tr>
<tr><th>outbox file</th><td>{{bytes .OutboxFileBytes}}</td></tr>
<tr><th>memory spill</th><td{{if .SpillRecords}} class="bad"{{end}}>{{.SpillRecords}} records</td></tr>
<tr><th>forwarder</th><td id="forwarder" class="{{if bad .Forwarder}}bad{{else}}ok{{end}}">{{.Forwarder}}{{if .ForwarderBroker}} ({{.ForwarderBroker}}){{end}}</td></tr>
{{if .ForwarderError}}<tr><th>last error</th><td>{{.ForwarderError}}</td></tr>{{end}}
</table>
<h2>Catalog</h2>
<table id="catalog">
<tr><th>version</th><td id="catalog-version">{{.CatalogVersion}}</td></tr>
<tr><th>links</th><td>{{.CatalogLinks}}</td></tr>
<tr><th>loaded</th><td>{{ago .Now .CatalogLoaded}}</td></tr>
</table>
<h2>Region {{.Region}}: members</h2>
{{if .Members}}<table id="members">
<tr><th>member</th><th>address</th><th>state</th><th>roles</th><th>pending</th><th>oldest</th><th>forwarder</th><th>catalog</th><th>state age</th></tr>
{{range .Members}}<tr><td>{{.Name}}</td><td>{{.Addr}}</td><td class="{{if bad .State}}bad{{else}}ok{{end}}">{{.State}}</td><td>{{.Roles}}</td><td>{{.OutboxPending}}</td><td>{{secs .OutboxOldestAge}}</td><td{{if bad .Forwarder}} class="bad"{{end}}>{{.Forwarder}}</td><td>{{.CatalogVersion}}</td><td>{{secs .Age}}</td></tr>
{{end}}</table>{{else}}<p id="members" class="muted">No cluster configured: this node runs alone.</p>{{end}}
{{range .Sections}}<h2>{{.Title}}</h2><table>{{range .Rows}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
{{end}}</body></html>
`))

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// RenderStatus writes s as the status page.
func RenderStatus(s *Status) ([]byte, error) {
	var b bytes.Buffer
	if err := statusPage.Execute(&b, s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// status is GET /status.
func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	page, err := RenderStatus(a.cfg.Status())
	if err != nil {
		adminText(w, http.StatusInternalServerError, "status: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(http.StatusOK)
	w.Write(page)
}

// readAuthorized guards a read-only page for people: with a token
// configured it takes the token as a bearer token or as the password of
// HTTP Basic authentication (so a browser can ask for it); without one the
// admin listener is read-only and the page is open, like /admin/outbox.
func (a *admin) readAuthorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.token == nil {
			h(w, r)
			return
		}
		var token string
		if _, pass, ok := r.BasicAuth(); ok {
			token = pass
		} else {
			token, _ = bearer.Parse(r.Header.Get("Authorization"))
		}
		if a.token.Match(token) != bearer.OK {
			w.Header().Set("WWW-Authenticate", `Basic realm="clickedge admin", charset="UTF-8"`)
			adminText(w, http.StatusUnauthorized, "the admin token is needed: as a bearer token, or as the password of basic authentication")
			return
		}
		h(w, r)
	}
}
