package postback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Limits on what a postback may carry. A request beyond them is refused
// with 400 before anything else is looked at.
const (
	MaxQueryBytes  = 8 << 10 // query string and form body together
	MaxParams      = 64
	MaxKeyBytes    = 64
	MaxValueBytes  = 1024
	MaxOrderBytes  = 128
	maxAmountBytes = 24
)

// Param is one decoded query or form parameter.
type Param struct {
	Key, Value string
}

// Params are a postback's parameters in the order received.
type Params []Param

// Get returns the value of key and whether it was given.
func (ps Params) Get(key string) (string, bool) {
	for _, p := range ps {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// FieldError is a refusal that names the parameter at fault.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ParseQuery appends the parameters of a query string or form body
// (application/x-www-form-urlencoded: '&'-separated key=value pairs,
// percent-escapes and '+' for a space) to ps. Empty pieces ("a=1&&b=2")
// are skipped; a piece without '=' is a key with an empty value. A key
// given twice, a malformed escape, an empty key and the limits above are
// errors: a postback is signed, and a signature over an ambiguous request
// proves nothing.
func ParseQuery(ps Params, raw string) (Params, error) {
	for raw != "" {
		var piece string
		piece, raw, _ = strings.Cut(raw, "&")
		if piece == "" {
			continue
		}
		rk, rv, _ := strings.Cut(piece, "=")
		k, ok := unescape(rk)
		if !ok {
			return ps, &FieldError{Field: clip(rk), Reason: "malformed percent-escape in the name"}
		}
		if k == "" {
			return ps, &FieldError{Field: "", Reason: "a parameter has an empty name"}
		}
		if len(k) > MaxKeyBytes {
			return ps, &FieldError{Field: clip(k), Reason: fmt.Sprintf("parameter name longer than %d bytes", MaxKeyBytes)}
		}
		v, ok := unescape(rv)
		if !ok {
			return ps, &FieldError{Field: k, Reason: "malformed percent-escape in the value"}
		}
		if len(v) > MaxValueBytes {
			return ps, &FieldError{Field: k, Reason: fmt.Sprintf("value longer than %d bytes", MaxValueBytes)}
		}
		if _, dup := ps.Get(k); dup {
			return ps, &FieldError{Field: k, Reason: "given more than once"}
		}
		if len(ps) >= MaxParams {
			return ps, &FieldError{Field: k, Reason: fmt.Sprintf("more than %d parameters", MaxParams)}
		}
		ps = append(ps, Param{Key: k, Value: v})
	}
	return ps, nil
}

// clip shortens a name quoted back in an error.
func clip(s string) string {
	if len(s) > MaxKeyBytes {
		return s[:MaxKeyBytes]
	}
	return s
}

// unescape decodes form encoding: %XX (either case) and '+' for a space.
func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b = append(b, ' ')
		case '%':
			if i+2 >= len(s) {
				return "", false
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi > 15 || lo > 15 {
				return "", false
			}
			b = append(b, hi<<4|lo)
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b), true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}

// Canonical returns the string a signature covers: every parameter but
// sig, sorted by name then value (bytes, decoded), each written
// name=value with RFC 3986 escaping (unreserved bytes as they are,
// everything else %XX in upper case, so a space is %20), joined with '&'.
func Canonical(ps Params) string {
	sorted := make([]Param, 0, len(ps))
	for _, p := range ps {
		if p.Key != "sig" {
			sorted = append(sorted, p)
		}
	}
	slices.SortFunc(sorted, func(a, b Param) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	var b strings.Builder
	for i, p := range sorted {
		if i > 0 {
			b.WriteByte('&')
		}
		escapeTo(&b, p.Key)
		b.WriteByte('=')
		escapeTo(&b, p.Value)
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

// escapeTo writes s escaped as RFC 3986 requires outside the unreserved
// set (ALPHA / DIGIT / "-" / "." / "_" / "~").
func escapeTo(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
}

// Escape returns s escaped as in the canonical query.
func Escape(s string) string {
	var b strings.Builder
	escapeTo(&b, s)
	return b.String()
}

// Sign returns the lowercase hex HMAC-SHA256 of canonical with secret.
func Sign(secret []byte, canonical string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(canonical))
	return hex.EncodeToString(m.Sum(nil))
}

// checkSig reports whether sig (hex, either case) is the HMAC of canonical
// with secret. The comparison takes the same time wherever the first
// difference is.
func checkSig(secret []byte, canonical, sig string) bool {
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(canonical))
	return hmac.Equal(got, m.Sum(nil))
}

// SignedQuery returns the canonical query of ps (which must not hold sig)
// followed by its sig: a query string an advertiser can send.
func SignedQuery(secret []byte, ps Params) string {
	c := Canonical(ps)
	return c + "&sig=" + Sign(secret, c)
}
