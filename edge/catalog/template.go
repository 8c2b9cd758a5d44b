package catalog

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// maxURLLen bounds a target in the file; affiliate URLs are long, but not this long.
const maxURLLen = 8192

// Macro is a set of macros a template references.
type Macro uint8

const (
	MacroClickID Macro = 1 << iota // {click_id}
	MacroLink                      // {link}
	MacroCountry                   // {country}
	MacroRegion                    // {region}
	MacroParam                     // {subid}, {subid1}..{subid4} or {param:NAME}
)

// Values are the per-click inputs of a template. The zero value renders
// every macro as the empty string.
type Values struct {
	ClickID string // {click_id}
	Country string // {country}: ISO 3166-1 alpha-2, "" when unknown
	Region  string // {region}: the edge region (node.region), as in the click's region field
	Params  Params // {subid}, {subidN}, {param:NAME}: the recorded query parameters
}

// noValues stands in for a nil *Values without an allocation.
var noValues Values

// Template is a target URL whose macros are filled per click. It is
// immutable and safe for concurrent use.
//
// A template only exists if its scheme is http or https, its host and port
// are literal and its literal parts hold no space, control character or
// backslash; macros sit after the authority and their values are escaped, so
// whatever the values, the rendered URL keeps the template's scheme and host
// and contains no CR or LF.
type Template struct {
	src    string
	origin string // scheme://host[:port] exactly as written
	parts  []part
	uses   Macro
	params []string // parameters its macros name, in order of first use
}

type macroKind uint8

const (
	macroNone macroKind = iota // the trailing literal
	macroClickID
	macroCountry
	macroRegion
	macroParam
)

// part is a literal followed by one macro (or nothing, for the last part).
type part struct {
	lit   string
	kind  macroKind
	query bool   // escape as a query component (query and fragment) rather than a path segment
	param string // for macroParam
}

// String returns the template as written in the catalog.
func (t *Template) String() string { return t.src }

// Origin returns "scheme://host[:port]" as written: every URL the template
// renders starts with it, followed by "/", "?", "#" or nothing.
func (t *Template) Origin() string { return t.origin }

// Uses reports whether the template references any of the macros in m.
func (t *Template) Uses(m Macro) bool { return t.uses&m != 0 }

// Params returns the query parameters the template's macros name, in order of
// first use. The slice is shared: do not modify it.
func (t *Template) Params() []string { return t.params }

// AppendURL appends the URL for v to dst and returns the extended buffer.
// It allocates only to grow dst. A nil v renders every macro empty.
//
// Values are escaped for where they stand: as a path segment (url.PathEscape)
// before the query, as a query component (url.QueryEscape) in the query and
// the fragment.
func (t *Template) AppendURL(dst []byte, v *Values) []byte {
	if v == nil {
		v = &noValues
	}
	for i := range t.parts {
		p := &t.parts[i]
		dst = append(dst, p.lit...)
		var s string
		switch p.kind {
		case macroNone:
			continue
		case macroClickID:
			s = v.ClickID
		case macroCountry:
			s = v.Country
		case macroRegion:
			s = v.Region
		case macroParam:
			s = v.Params.Get(p.param)
		}
		dst = appendEscaped(dst, s, p.query)
	}
	return dst
}

// escapeQuery and escapePath say which bytes url.QueryEscape and
// url.PathEscape change; deriving them from the standard library keeps
// AppendURL byte-for-byte compatible with it.
var escapeQuery, escapePath [256]bool

func init() {
	for c := range 256 {
		s := string([]byte{byte(c)})
		escapeQuery[c] = url.QueryEscape(s) != s
		escapePath[c] = url.PathEscape(s) != s
	}
}

const upperhex = "0123456789ABCDEF"

func appendEscaped(dst []byte, s string, query bool) []byte {
	tab := &escapePath
	if query {
		tab = &escapeQuery
	}
	i := 0
	for i < len(s) && !tab[s[i]] {
		i++
	}
	dst = append(dst, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case !tab[c]:
			dst = append(dst, c)
		case c == ' ' && query:
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
		}
	}
	return dst
}

// parseTemplate checks src against the open-redirect rules and compiles it.
// code fills {link}; params is the link's recorded parameter list, which
// every parameter macro must name.
func parseTemplate(src, code string, params []string) (*Template, error) {
	if src == "" {
		return nil, errors.New("missing")
	}
	if len(src) > maxURLLen {
		return nil, fmt.Errorf("longer than %d bytes", maxURLLen)
	}
	t := &Template{src: src}

	schemeEnd := 0
	switch {
	case hasPrefixFold(src, "https://"):
		schemeEnd = len("https://")
	case hasPrefixFold(src, "http://"):
		schemeEnd = len("http://")
	default:
		return nil, fmt.Errorf("%q: must be an absolute http:// or https:// URL", src)
	}
	authEnd := schemeEnd + strings.IndexAny(src[schemeEnd:], "/?#{}")
	if authEnd < schemeEnd {
		authEnd = len(src)
	}
	if authEnd < len(src) && (src[authEnd] == '{' || src[authEnd] == '}') {
		return nil, fmt.Errorf("%q: macros are not allowed in the scheme, userinfo, host or port", src)
	}
	if err := checkAuthority(src[schemeEnd:authEnd]); err != nil {
		return nil, fmt.Errorf("%q: %w", src, err)
	}
	t.origin = src[:authEnd]

	// Walk the rest, splitting literals from macros and tracking whether we
	// are in the path, the query or the fragment.
	const (
		inPath = iota
		inQuery
		inFragment
	)
	where := inPath
	var lit strings.Builder
	lit.WriteString(src[:authEnd])
	placeholder := []byte(src[:authEnd]) // src with macros replaced, for url.Parse
	for i := authEnd; i < len(src); {
		c := src[i]
		switch {
		case c == '{':
			end := strings.IndexByte(src[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%q: unterminated macro at byte %d", src, i)
			}
			name := src[i+1 : i+end]
			p := part{query: where != inPath}
			switch {
			case name == "click_id":
				p.kind, t.uses = macroClickID, t.uses|MacroClickID
			case name == "link":
				// Codes are [A-Za-z0-9_-], which no escaping changes.
				lit.WriteString(code)
				placeholder = append(placeholder, code...)
				t.uses |= MacroLink
				i += end + 1
				continue
			case name == "country":
				p.kind, t.uses = macroCountry, t.uses|MacroCountry
			case name == "region":
				p.kind, t.uses = macroRegion, t.uses|MacroRegion
			case name == "subid" || (len(name) == 6 && strings.HasPrefix(name, "subid") && name[5] >= '1' && name[5] <= '4'):
				p.kind, p.param = macroParam, name
			case strings.HasPrefix(name, "param:"):
				p.kind, p.param = macroParam, name[len("param:"):]
				if !validParam(p.param) {
					return nil, fmt.Errorf("%q: macro {%s}: parameter names are [A-Za-z0-9_.-]{1,64}", src, name)
				}
			default:
				return nil, fmt.Errorf("%q: unknown macro {%s}", src, name)
			}
			if p.kind == macroParam {
				if !slices.Contains(params, p.param) {
					return nil, fmt.Errorf("%q: macro {%s}: the link does not record parameter %q (params: %s)",
						src, name, p.param, strings.Join(params, ", "))
				}
				t.uses |= MacroParam
				if !slices.Contains(t.params, p.param) {
					t.params = append(t.params, p.param)
				}
			}
			p.lit = lit.String()
			lit.Reset()
			t.parts = append(t.parts, p)
			placeholder = append(placeholder, 'x')
			i += end + 1
			continue
		case c == '}':
			return nil, fmt.Errorf("%q: unmatched } at byte %d", src, i)
		case c == '%':
			if i+2 >= len(src) || !ishex(src[i+1]) || !ishex(src[i+2]) {
				return nil, fmt.Errorf("%q: bad percent-encoding at byte %d", src, i)
			}
		case c == '?' && where == inPath:
			where = inQuery
		case c == '#' && where != inFragment:
			where = inFragment
		default:
			if err := checkLiteral(c); err != nil {
				return nil, fmt.Errorf("%q: byte %d: %w", src, i, err)
			}
		}
		lit.WriteByte(c)
		placeholder = append(placeholder, c)
		i++
	}
	t.parts = append(t.parts, part{lit: lit.String()})

	// Belt and braces: the standard parser must agree on scheme and host.
	u, err := url.Parse(string(placeholder))
	if err != nil {
		return nil, fmt.Errorf("%q: %w", src, errors.Unwrap(err))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil ||
		u.Host != src[schemeEnd:authEnd] {
		return nil, fmt.Errorf("%q: not an absolute http or https URL with a literal host", src)
	}
	return t, nil
}

// checkAuthority accepts host[:port] where host is a DNS name, an IPv4
// address or a bracketed IPv6 address. Userinfo is refused outright:
// "https://trusted.example@evil.example/" is a phishing shape, and a
// redirect target has no use for credentials.
func checkAuthority(a string) error {
	if strings.IndexByte(a, '@') >= 0 {
		return errors.New("userinfo (user@) is not allowed")
	}
	host, port := a, ""
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return errors.New("unterminated IPv6 address")
		}
		ip, err := netip.ParseAddr(a[1:end])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return fmt.Errorf("bad IPv6 host %q", a[:end+1])
		}
		host, port = a[:end+1], a[end+1:]
		if port != "" && port[0] != ':' {
			return fmt.Errorf("bad host %q", a)
		}
	} else {
		if i := strings.IndexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i:]
		}
		if host == "" {
			return errors.New("missing host")
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !isAlnum(c) && c != '.' && c != '-' && c != '_' {
				return fmt.Errorf("bad host %q: use letters, digits, '.', '-' (punycode for IDNs)", host)
			}
		}
		if host[0] == '.' || host[0] == '-' {
			return fmt.Errorf("bad host %q", host)
		}
	}
	if port != "" {
		n, err := strconv.ParseUint(port[1:], 10, 16)
		if err != nil || n == 0 || port[1] == '+' {
			return fmt.Errorf("bad port %q", port[1:])
		}
	}
	return nil
}

// checkLiteral refuses bytes that have no business in a Location header or
// that browsers and servers read differently (a backslash is a slash to a
// browser).
func checkLiteral(c byte) error {
	switch {
	case c == ' ':
		return errors.New("space; percent-encode it as %20")
	case c < 0x20 || c == 0x7f:
		return fmt.Errorf("control character %#02x", c)
	case c >= 0x80:
		return fmt.Errorf("non-ASCII byte %#02x; percent-encode it", c)
	case strings.IndexByte("\\\"<>^`|", c) >= 0:
		return fmt.Errorf("character %q is not allowed; percent-encode it", c)
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
