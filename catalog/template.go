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
	// data is the compiled template (see the layout below). It holds no
	// pointers, lives in the catalog's arena and is shared by every
	// identical template of the catalog.
	data   string
	params *[]string // the parameters its macros name; nil when none
}

// The layout of Template.data: a header, the source as written, the link's
// code when the template uses {link}, then the program. Offsets are 16-bit:
// a source is at most maxURLLen bytes, so data stays well under 64 KiB.
//
// The program is a list of ops of opLen bytes: the start and end offset in
// data of a literal, then a macro byte (macroKind in the low 3 bits, opQuery
// for query escaping, the index into params in the high 4 bits). AppendURL
// appends the literal, then the macro's escaped value.
const (
	hdrSrcLen = 0 // uint16: length of the source
	hdrOrigin = 2 // uint16: length of scheme://host[:port]
	hdrUses   = 4 // Macro
	hdrProg   = 5 // uint16: offset of the program
	hdrLen    = 7

	opLen   = 5
	opQuery = 1 << 3
)

type macroKind uint8

const (
	macroNone macroKind = iota // a literal alone
	macroClickID
	macroCountry
	macroRegion
	macroParam
)

func (t *Template) u16(off int) int { return int(t.data[off]) | int(t.data[off+1])<<8 }

// String returns the template as written in the catalog.
func (t *Template) String() string { return t.data[hdrLen : hdrLen+t.u16(hdrSrcLen)] }

// Origin returns "scheme://host[:port]" as written: every URL the template
// renders starts with it, followed by "/", "?", "#" or nothing.
func (t *Template) Origin() string { return t.data[hdrLen : hdrLen+t.u16(hdrOrigin)] }

// Uses reports whether the template references any of the macros in m.
func (t *Template) Uses(m Macro) bool { return Macro(t.data[hdrUses])&m != 0 }

// Params returns the query parameters the template's macros name, in order of
// first use. The slice is shared: do not modify it.
func (t *Template) Params() []string {
	if t.params == nil {
		return nil
	}
	return *t.params
}

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
	d := t.data
	for i := t.u16(hdrProg); i+opLen <= len(d); i += opLen {
		start := int(d[i]) | int(d[i+1])<<8
		end := int(d[i+2]) | int(d[i+3])<<8
		m := d[i+4]
		dst = append(dst, d[start:end]...)
		var s string
		switch macroKind(m & 7) {
		case macroNone:
			continue
		case macroClickID:
			s = v.ClickID
		case macroCountry:
			s = v.Country
		case macroRegion:
			s = v.Region
		case macroParam:
			s = v.Params.Get((*t.params)[m>>4])
		}
		dst = appendEscaped(dst, s, m&opQuery != 0)
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

// parseTemplate checks src against the open-redirect rules and compiles it
// on its own (the catalog compiles through a builder, which shares the
// result). code fills {link}; params is the link's recorded parameter list,
// which every parameter macro must name.
func parseTemplate(src, code string, params []string) (*Template, error) {
	var c tplCompiler
	if err := c.compile(src, code, params); err != nil {
		return nil, err
	}
	t := &Template{data: string(c.data)}
	if len(c.params) > 0 {
		ps := slices.Clone(c.params)
		t.params = &ps
	}
	return t, nil
}

// tplCompiler turns template sources into Template data, reusing its buffers
// from one template to the next.
type tplCompiler struct {
	data    []byte   // the compiled data of the last template
	params  []string // the parameters its macros name, in order of first use
	prog    []byte
	origins map[string]struct{} // origins checkOrigin passed
}

// maxOrigins bounds tplCompiler.origins; a catalog with more hosts than
// this pays for url.Parse on some of them again.
const maxOrigins = 1 << 16

// checkOrigin is belt and braces: the standard parser must agree on the
// scheme and host. The checks before made the origin end where url.Parse
// ends the authority, and left nothing in the rest that could change what
// it reads there, so the origin alone is parsed; catalogs repeat hosts, so
// it is parsed once.
func (c *tplCompiler) checkOrigin(origin, host string) error {
	if _, ok := c.origins[origin]; ok {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return errors.Unwrap(err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil || u.Host != host {
		return errors.New("not an absolute http or https URL with a literal host")
	}
	if c.origins == nil || len(c.origins) == maxOrigins {
		c.origins = make(map[string]struct{})
	}
	c.origins[strings.Clone(origin)] = struct{}{}
	return nil
}

// compile checks src and leaves its compiled form in c.data and c.params.
func (c *tplCompiler) compile(src, code string, params []string) error {
	if src == "" {
		return errors.New("missing")
	}
	if len(src) > maxURLLen {
		return fmt.Errorf("longer than %d bytes", maxURLLen)
	}
	schemeEnd := 0
	switch {
	case hasPrefixFold(src, "https://"):
		schemeEnd = len("https://")
	case hasPrefixFold(src, "http://"):
		schemeEnd = len("http://")
	default:
		return fmt.Errorf("%q: must be an absolute http:// or https:// URL", src)
	}
	authEnd := schemeEnd + strings.IndexAny(src[schemeEnd:], "/?#{}")
	if authEnd < schemeEnd {
		authEnd = len(src)
	}
	if authEnd < len(src) && (src[authEnd] == '{' || src[authEnd] == '}') {
		return fmt.Errorf("%q: macros are not allowed in the scheme, userinfo, host or port", src)
	}
	if err := checkAuthority(src[schemeEnd:authEnd]); err != nil {
		return fmt.Errorf("%q: %w", src, err)
	}

	// The header, then the source; ops point into the source, and at the
	// code appended after it for {link}.
	c.data = append(c.data[:0], make([]byte, hdrLen)...)
	c.data = append(c.data, src...)
	c.params = c.params[:0]
	c.prog = c.prog[:0]
	var uses Macro
	codeAt := -1
	op := func(start, end int, m byte) {
		c.prog = append(c.prog, byte(start), byte(start>>8), byte(end), byte(end>>8), m)
	}

	// Walk the rest, splitting literals from macros and tracking whether we
	// are in the path, the query or the fragment.
	const (
		inPath = iota
		inQuery
		inFragment
	)
	where := inPath
	litStart := 0 // offset in src of the pending literal
	for i := authEnd; i < len(src); {
		ch := src[i]
		if plainLiteral[ch] {
			i++
			continue
		}
		switch {
		case ch == '{':
			end := strings.IndexByte(src[i:], '}')
			if end < 0 {
				return fmt.Errorf("%q: unterminated macro at byte %d", src, i)
			}
			name := src[i+1 : i+end]
			m := byte(0)
			if where != inPath {
				m = opQuery
			}
			param := ""
			switch {
			case name == "click_id":
				m, uses = m|byte(macroClickID), uses|MacroClickID
			case name == "link":
				// Codes are [A-Za-z0-9_-], which no escaping changes: the
				// code is a literal, kept once after the source.
				if codeAt < 0 {
					codeAt = len(c.data)
					c.data = append(c.data, code...)
				}
				op(hdrLen+litStart, hdrLen+i, byte(macroNone))
				op(codeAt, codeAt+len(code), byte(macroNone))
				uses |= MacroLink
				i += end + 1
				litStart = i
				continue
			case name == "country":
				m, uses = m|byte(macroCountry), uses|MacroCountry
			case name == "region":
				m, uses = m|byte(macroRegion), uses|MacroRegion
			case name == "subid" || (len(name) == 6 && strings.HasPrefix(name, "subid") && name[5] >= '1' && name[5] <= '4'):
				param = name
			case strings.HasPrefix(name, "param:"):
				param = name[len("param:"):]
				if !validParam(param) {
					return fmt.Errorf("%q: macro {%s}: parameter names are [A-Za-z0-9_.-]{1,64}", src, name)
				}
			default:
				return fmt.Errorf("%q: unknown macro {%s}", src, name)
			}
			if param != "" {
				if !slices.Contains(params, param) {
					return fmt.Errorf("%q: macro {%s}: the link does not record parameter %q (params: %s)",
						src, name, param, strings.Join(params, ", "))
				}
				uses |= MacroParam
				k := slices.Index(c.params, param)
				if k < 0 {
					k = len(c.params)
					c.params = append(c.params, param)
				}
				if k >= maxParams { // only with a params list already refused
					return fmt.Errorf("%q: more than %d parameter macros", src, maxParams)
				}
				m |= byte(macroParam) | byte(k)<<4
			}
			op(hdrLen+litStart, hdrLen+i, m)
			i += end + 1
			litStart = i
			continue
		case ch == '}':
			return fmt.Errorf("%q: unmatched } at byte %d", src, i)
		case ch == '%':
			if i+2 >= len(src) || !ishex(src[i+1]) || !ishex(src[i+2]) {
				return fmt.Errorf("%q: bad percent-encoding at byte %d", src, i)
			}
		case ch == '?' && where == inPath:
			where = inQuery
		case ch == '#' && where != inFragment:
			where = inFragment
		case badLiteral[ch]:
			return fmt.Errorf("%q: byte %d: %w", src, i, checkLiteral(ch))
		}
		i++
	}
	if litStart < len(src) || len(c.prog) == 0 {
		op(hdrLen+litStart, hdrLen+len(src), byte(macroNone))
	}

	if err := c.checkOrigin(src[:authEnd], src[schemeEnd:authEnd]); err != nil {
		return fmt.Errorf("%q: %w", src, err)
	}

	progAt := len(c.data)
	c.data = append(c.data, c.prog...)
	put16 := func(off, v int) { c.data[off], c.data[off+1] = byte(v), byte(v>>8) }
	put16(hdrSrcLen, len(src))
	put16(hdrOrigin, authEnd)
	c.data[hdrUses] = byte(uses)
	put16(hdrProg, progAt)
	return nil
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

// badLiteral marks the bytes checkLiteral refuses; plainLiteral the bytes
// that are simply part of a literal.
var badLiteral, plainLiteral = func() (bad, plain [256]bool) {
	for c := range 256 {
		bad[c] = checkLiteral(byte(c)) != nil
		plain[c] = !bad[c] && strings.IndexByte("{}%?#", byte(c)) < 0
	}
	return bad, plain
}()

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
