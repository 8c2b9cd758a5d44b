package edge

import (
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/clickedge/clickedge/catalog"
)

// Limits on recorded query parameters, as the design states them.
const (
	maxParams     = 16  // recorded parameters per click
	maxParamBytes = 256 // bytes per value, after percent-decoding
)

// parseParams records the query parameters named in names from the raw
// query into sc.params: the first occurrence of each, percent-decoded the
// way url.ParseQuery decodes ('+' is a space), cut to maxParamBytes at a
// UTF-8 boundary (the name then goes into sc.truncated). Keys are decoded
// too. It returns the name of a recorded parameter whose value holds a
// malformed escape, or "".
//
// Values without escapes are substrings of raw; decoded ones live in sc.dec.
// Either way they are only valid while the request and sc are.
func (sc *scratch) parseParams(names []string, raw string) (bad string) {
	sc.params = sc.params[:0]
	sc.truncated = sc.truncated[:0]
	sc.dec = sc.dec[:0]
	if len(names) == 0 || raw == "" {
		return ""
	}
	var seen uint64
	for raw != "" && len(sc.params) < maxParams {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		key, val, _ := strings.Cut(pair, "=")
		if key == "" {
			continue
		}
		i := sc.paramIndex(names, key)
		if i < 0 || i >= 64 || seen&(1<<i) != 0 {
			continue
		}
		seen |= 1 << i
		name := names[i] // the catalog's string, not the request's
		v, cut, ok := sc.decodeValue(val)
		if !ok {
			return name
		}
		if cut {
			sc.truncated = append(sc.truncated, name)
		}
		sc.params = append(sc.params, catalog.Param{Name: name, Value: v})
	}
	return ""
}

// paramIndex returns the index of key, decoded, in names, or -1.
func (sc *scratch) paramIndex(names []string, key string) int {
	if needsUnescape(key) {
		// Recorded names are at most 64 bytes; a longer key matches none.
		b, n, ok := unescape(sc.key[:0], key, len(sc.key))
		if !ok || n > len(sc.key) {
			return -1
		}
		key = unsafe.String(unsafe.SliceData(b), len(b)) // compared only, never kept
		if len(b) == 0 {
			return -1
		}
	}
	for i, n := range names {
		if n == key {
			return i
		}
	}
	return -1
}

// decodeValue percent-decodes v and caps it. ok is false on a malformed
// escape anywhere in v, even past the cap.
func (sc *scratch) decodeValue(v string) (s string, cut, ok bool) {
	if !needsUnescape(v) {
		s, cut = capValue(v)
		return s, cut, true
	}
	start := len(sc.dec)
	// Keep a few bytes past the cap, so that capValue can cut at a rune
	// boundary; decode the rest only to check it.
	b, _, ok := unescape(sc.dec, v, maxParamBytes+utf8.UTFMax)
	if !ok {
		return "", false, false
	}
	sc.dec = b
	d := b[start:]
	// The string points into sc.dec's array. A later append that grows
	// sc.dec moves it to a new array and leaves this one (and the string)
	// alone, so earlier values stay intact.
	s, cut = capValue(unsafe.String(unsafe.SliceData(d), len(d)))
	return s, cut, true
}

// needsUnescape reports whether s holds '%' or '+'. Two IndexByte scans
// (vectorized) beat strings.ContainsAny, which builds a set per call.
func needsUnescape(s string) bool {
	return strings.IndexByte(s, '%') >= 0 || strings.IndexByte(s, '+') >= 0
}

// capValue cuts s to at most maxParamBytes, backing up to the start of the
// rune that would be split (at most utf8.UTFMax-1 bytes, so invalid UTF-8
// cannot make it back up far).
func capValue(s string) (string, bool) {
	if len(s) <= maxParamBytes {
		return s, false
	}
	i := maxParamBytes
	for j := 0; j < utf8.UTFMax-1 && i > 0 && !utf8.RuneStart(s[i]); j++ {
		i--
	}
	return s[:i], true
}

// unescape appends the query-decoding of s to dst, at most keep bytes of
// it, and returns the full decoded length. ok is false if s holds a
// malformed escape.
func unescape(dst []byte, s string, keep int) (b []byte, n int, ok bool) {
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '%':
			if i+2 >= len(s) {
				return dst, n, false
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi > 15 || lo > 15 {
				return dst, n, false
			}
			c = hi<<4 | lo
			i += 3
		case '+':
			c = ' '
			i++
		default:
			i++
		}
		if n < keep {
			dst = append(dst, c)
		}
		n++
	}
	return dst, n, true
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

// primaryLang returns the primary language subtag of the first entry of an
// Accept-Language header, lowercased ("de-DE,de;q=0.9" gives "de"), or ""
// when there is none or it is not 1 to 8 ASCII letters ("*" gives "").
// Browsers list the preferred language first. buf holds a lowercased copy
// when one is needed.
func primaryLang(h string, buf *[8]byte) string {
	h = strings.TrimLeft(h, " \t")
	end := 0
	lower := true
	for end < len(h) {
		c := h[end]
		if 'a' <= c && c <= 'z' {
		} else if 'A' <= c && c <= 'Z' {
			lower = false
		} else {
			break
		}
		end++
	}
	if end == 0 || end > len(buf) {
		return ""
	}
	if end < len(h) {
		switch h[end] {
		case '-', '_', ',', ';', ' ', '\t':
		default:
			return "" // "de1", "en.US": not a language tag
		}
	}
	if lower {
		return h[:end]
	}
	for i := 0; i < end; i++ {
		buf[i] = h[i] | 0x20
	}
	return unsafe.String(&buf[0], end)
}
