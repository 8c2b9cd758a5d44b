package bearer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tok := New("s3cret")
	tests := []struct {
		name   string
		token  *Token
		header string
		want   Result
		status int
	}{
		{"right", tok, "Bearer s3cret", OK, 200},
		{"scheme in any case", tok, "bearer s3cret", OK, 200},
		{"spaces around", tok, "  Bearer   s3cret  ", OK, 200},
		{"wrong", tok, "Bearer nope", Wrong, 403},
		{"prefix of the token", tok, "Bearer s3cre", Wrong, 403},
		{"no header", tok, "", Missing, 401},
		{"empty token", tok, "Bearer ", Missing, 401},
		{"other scheme", tok, "Basic czNjcmV0", Missing, 401},
		{"no scheme", tok, "s3cret", Missing, 401},
		{"none configured", nil, "Bearer s3cret", NotConfigured, 403},
		{"none configured, none sent", nil, "", NotConfigured, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/admin/x", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			got := tt.token.Check(r)
			if got != tt.want || got.Status() != tt.status {
				t.Fatalf("Check(%q) = %v (status %d), want %v (%d)", tt.header, got, got.Status(), tt.want, tt.status)
			}
		})
	}
}

func TestNewEmpty(t *testing.T) {
	for _, s := range []string{"", "  "} {
		if New(s) != nil {
			t.Errorf("New(%q) != nil: an empty token must mean none configured", s)
		}
	}
}

func TestChallenge(t *testing.T) {
	for _, tt := range []struct {
		r    Result
		want string
	}{
		{Missing, `Bearer realm="clickedge admin"`},
		{Wrong, `Bearer realm="clickedge admin", error="invalid_token"`},
		{NotConfigured, ""},
		{OK, ""},
	} {
		h := http.Header{}
		Challenge(h, tt.r)
		if got := h.Get("WWW-Authenticate"); got != tt.want {
			t.Errorf("Challenge(%v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

// FuzzParse: Parse never panics; a token it returns is non-empty, has no
// surrounding spaces, and is what the header carries after the scheme;
// and "Bearer " + any such token parses back to it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc ", "Basic x", "", "Bearer", "Bearer \t", "  BEARER a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := Parse(h)
		if !ok {
			if tok != "" {
				t.Fatalf("Parse(%q) = %q, false; want no token", h, tok)
			}
			return
		}
		if tok == "" || strings.Trim(tok, " \t") != tok || !strings.Contains(h, tok) {
			t.Fatalf("Parse(%q) = %q: empty, untrimmed or not in the header", h, tok)
		}
		if !strings.HasPrefix(strings.ToLower(strings.TrimLeft(h, " ")), "bearer ") {
			t.Fatalf("Parse(%q) accepted a header of another scheme", h)
		}
		if again, ok := Parse("Bearer " + tok); !ok || again != tok {
			t.Fatalf("Parse(Bearer %q) = %q, %v", tok, again, ok)
		}
	})
}

// Allow answers each refusal through the endpoint's own wording, with the
// challenge, and lets the right token through untouched.
func TestAllow(t *testing.T) {
	why := Reasons{NotConfigured: "off", Missing: "none", Wrong: "bad"}
	for _, tt := range []struct {
		token   *Token
		header  string
		allowed bool
		status  int
		reason  string
	}{
		{New("k"), "Bearer k", true, 0, ""},
		{New("k"), "", false, 401, "none"},
		{New("k"), "Bearer j", false, 403, "bad"},
		{nil, "Bearer k", false, 403, "off"},
	} {
		r := httptest.NewRequest("POST", "/admin/x", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		w := httptest.NewRecorder()
		var status int
		var reason string
		got := tt.token.Allow(w, r, why, func(_ http.ResponseWriter, s int, msg string) { status, reason = s, msg })
		if got != tt.allowed || status != tt.status || reason != tt.reason {
			t.Errorf("Allow(%q) = %v, refused %d %q; want %v, %d %q", tt.header, got, status, reason, tt.allowed, tt.status, tt.reason)
		}
		if tt.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("Allow(%q): 401 without a challenge", tt.header)
		}
	}
}
