package edge

import (
	"html"
	"net/textproto"
	"strconv"
	"strings"
)

// stickyCookie holds the user id that sticky splits draw from: 16 hex
// digits, random, set by the first answer that a sticky split decided, for
// a year. It identifies nothing but the browser's draw, and is sent only
// back to this host.
const stickyCookie = "ce_uid"

// parseUID reads the sticky cookie's value; ok is false when it is absent
// or malformed (a fresh id is drawn then).
func parseUID(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

// appendUIDCookie appends the Set-Cookie value for user.
func appendUIDCookie(dst []byte, user uint64) []byte {
	dst = append(dst, stickyCookie+"="...)
	var hex [16]byte
	for i := 15; i >= 0; i-- {
		hex[i] = "0123456789abcdef"[user&0xf]
		user >>= 4
	}
	dst = append(dst, hex[:]...)
	return append(dst, "; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax"...)
}

// cookieValue finds the cookie called name in Cookie header values, as
// net/http's Request.Cookie does, without allocating.
func cookieValue(headers []string, name string) string {
	for _, h := range headers {
		for part := range strings.SplitSeq(h, ";") {
			k, v, ok := strings.Cut(textproto.TrimString(part), "=")
			if ok && k == name {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// appendMetaRefresh appends the page a meta-refresh link answers with: the
// browser goes on to url and, by the page's referrer policy (and the
// Referrer-Policy header beside it), tells the target nothing of where the
// user came from.
func appendMetaRefresh(dst, url []byte) []byte {
	u := html.EscapeString(string(url))
	dst = append(dst, `<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><meta http-equiv="refresh" content="0;url=`...)
	dst = append(dst, u...)
	dst = append(dst, `"><title>Redirecting</title></head><body><a href="`...)
	dst = append(dst, u...)
	return append(dst, `" rel="noreferrer">Continue</a></body></html>`...)
}
