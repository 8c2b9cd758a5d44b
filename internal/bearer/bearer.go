// Package bearer checks the admin token a request presents: one check for
// every endpoint that needs admin.token (the admin API, the status page,
// link management, the cluster API, drain).
//
// The token is kept as its SHA-256 and compared in constant time, so
// neither its bytes nor its length leak through timing. A request with no
// usable token is Missing (401, with a challenge); one with another token
// is Wrong (403); with no token configured, an endpoint that needs one is
// NotConfigured (403). Each endpoint words its own body.
package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Token is a configured admin token. A nil *Token means none is
// configured.
type Token struct {
	sum [sha256.Size]byte
}

// New returns the Token for token, or nil when token is empty (or only
// spaces, which no request could present).
func New(token string) *Token {
	if strings.TrimSpace(token) == "" {
		return nil
	}
	return &Token{sum: sha256.Sum256([]byte(token))}
}

// Result is what Check found.
type Result uint8

const (
	OK            Result = iota // the configured token
	NotConfigured               // no token configured: the endpoint is closed
	Missing                     // no bearer token in the request
	Wrong                       // another token
)

// Status is the HTTP status of a refusal: 401 for Missing, 403 for Wrong
// and NotConfigured; 200 for OK.
func (r Result) Status() int {
	switch r {
	case Missing:
		return http.StatusUnauthorized
	case Wrong, NotConfigured:
		return http.StatusForbidden
	}
	return http.StatusOK
}

// Realm is the realm of every challenge.
const Realm = "clickedge admin"

// Challenge sets WWW-Authenticate for a refusal: a bearer challenge for
// Missing, the same with error="invalid_token" for Wrong (RFC 6750), none
// otherwise.
func Challenge(h http.Header, r Result) {
	switch r {
	case Missing:
		h.Set("WWW-Authenticate", `Bearer realm="`+Realm+`"`)
	case Wrong:
		h.Set("WWW-Authenticate", `Bearer realm="`+Realm+`", error="invalid_token"`)
	}
}

// Parse returns the token of an Authorization header value of the bearer
// scheme: the scheme's name in any case, then spaces, then the token with
// surrounding spaces removed. It reports false for another scheme or an
// empty token.
func Parse(authorization string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimLeft(authorization, " "), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.Trim(token, " \t")
	return token, token != ""
}

// Check checks the request's bearer token against t (nil: none
// configured).
func (t *Token) Check(r *http.Request) Result {
	tok, ok := Parse(r.Header.Get("Authorization"))
	if t == nil {
		return NotConfigured
	}
	if !ok {
		return Missing
	}
	return t.Match(tok)
}

// Reasons words one endpoint's refusals.
type Reasons struct {
	NotConfigured, Missing, Wrong string
}

// Allow checks the request's bearer token. It reports true when the
// request may go on; else it sets the challenge and answers through
// refuse, with the status and the reason for what it found, and reports
// false.
func (t *Token) Allow(w http.ResponseWriter, r *http.Request, why Reasons, refuse func(w http.ResponseWriter, status int, reason string)) bool {
	res := t.Check(r)
	if res == OK {
		return true
	}
	Challenge(w.Header(), res)
	reason := why.Wrong
	switch res {
	case NotConfigured:
		reason = why.NotConfigured
	case Missing:
		reason = why.Missing
	}
	refuse(w, res.Status(), reason)
	return false
}

// Match compares a presented token (from a bearer header or elsewhere,
// such as the password of basic authentication) with t: OK, Wrong, or
// Missing when tok is empty.
func (t *Token) Match(tok string) Result {
	if t == nil {
		return NotConfigured
	}
	if tok == "" {
		return Missing
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], t.sum[:]) != 1 {
		return Wrong
	}
	return OK
}
