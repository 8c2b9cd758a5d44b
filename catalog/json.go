package catalog

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/parser"
)

// A catalog file that is a JSON object is read by the decoder in this file
// instead of goccy/go-yaml: JSON is YAML, so the file means the same either
// way, but this decoder reads a link in a few hundred nanoseconds, streams
// (it builds no tree of the file) and runs alongside the workers that check
// and build the links.
//
// It decodes natively what machine-written catalogs hold: objects with the
// format's keys, strings, lists of strings and plain integer weights. A
// link with anything else in it (an unknown key, null, a number where a
// string belongs, a value of the wrong kind) is handed, as its own text, to
// the YAML decoder, so it gets exactly YAML's reading and YAML's errors.
// Whatever is not JSON is refused here, with its position: the YAML parser
// never sees the file as a whole.

// maxDepth bounds the nesting of JSON values; the format needs 7.
const maxDepth = 64

// jsonDec reads JSON text from s at i. Its problems are fatal: it panics
// with a *jsonError, which decodeJSON recovers.
type jsonDec struct {
	s   string
	i   int
	src *source // for positions in messages; nil in jsonLookup
	buf []byte  // strings with escapes are decoded here
}

// jsonError stops the decoder. Either e is set (a problem already placed)
// or off and msg are.
type jsonError struct {
	off int
	msg string
	e   *Error
}

// decodeJSON reads a catalog written as JSON.
func (p *parse) decodeJSON() {
	d := &jsonDec{s: p.src.data, src: p.src}
	defer func() {
		if r := recover(); r != nil {
			je, ok := r.(*jsonError)
			if !ok {
				panic(r)
			}
			if je.e == nil {
				line, col := p.src.lineCol(je.off)
				je.e = &Error{Line: line, Column: col, Msg: je.msg}
			}
			p.fatal(je.e)
		}
	}()
	if strings.HasPrefix(d.s, bom) {
		d.i = len(bom)
	}
	d.ws()
	d.expect('{', "'{'")
	d.ws()
	found, linksAt := false, -1
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			at := d.key()
			key := d.str()
			d.ws()
			d.expect(':', "':'")
			d.ws()
			if key != "links" {
				line, col := p.src.lineCol(at)
				panic(&jsonError{e: &Error{Line: line, Column: col, Msg: fmt.Sprintf("unknown key %q", key)}})
			}
			if linksAt >= 0 {
				d.duplicate(linksAt, at, key)
			}
			linksAt = at
			switch d.peek() {
			case '[':
				found = true
				d.links(p)
			case 'n':
				d.literal("null")
			default:
				kind := d.kind()
				line, col := p.src.lineCol(d.i)
				panic(&jsonError{e: &Error{Line: line, Column: col, Field: "links", Msg: "want a list, got " + kind}})
			}
			if !d.next('}') {
				break
			}
		}
	}
	d.ws()
	if d.i < len(d.s) {
		d.fail(d.i, "unexpected data after the top-level object")
	}
	if !found {
		p.fatal(&Error{Line: 1, Field: "links", Msg: "missing (links: [] for no links)"})
	}
}

// links reads the links list.
func (d *jsonDec) links(p *parse) {
	d.i++
	d.ws()
	if d.peek() == ']' {
		d.i++
		return
	}
	for {
		rl := p.next()
		start := d.i
		rl.where.off = start
		if !d.link(rl) {
			rl.fl = fileLink{}
			d.i = start
			d.skip(3)
			p.yamlLink(rl, start, d.i)
		}
		if !d.next(']') {
			return
		}
	}
}

// next reads the ',' or the closing byte after a member or an element and
// reports whether another follows.
func (d *jsonDec) next(closing byte) bool {
	d.ws()
	switch d.peek() {
	case ',':
		d.i++
		d.ws()
		return true
	case closing:
		d.i++
		return false
	}
	d.unexpected(fmt.Sprintf("',' or '%c'", closing))
	return false
}

var (
	linkKeys   = []string{"code", "url", "status", "fallback_url", "params", "rules", "redirect"}
	ruleKeys   = []string{"name", "when", "url", "split", "sticky", "redirect"}
	targetKeys = []string{"url", "weight"}
)

// link decodes the link at d.i into rl. It returns false, leaving d.i
// anywhere in the link, when the link needs YAML's reading.
func (d *jsonDec) link(rl *rawLink) bool {
	fl := &rl.fl
	return d.object(linkKeys, func(k int) bool {
		switch k {
		case 0:
			return d.string(&fl.Code)
		case 1:
			return d.string(&fl.URL)
		case 2:
			return d.string(&fl.Status)
		case 3:
			return d.string(&fl.FallbackURL)
		case 4:
			return d.params(fl)
		case 6:
			return d.redirect(&fl.Redirect)
		}
		return d.rules(fl)
	})
}

func (d *jsonDec) params(fl *fileLink) bool {
	ps := []string{}
	fl.Params = &ps
	return d.array(func() bool {
		if d.peek() != '"' {
			return false
		}
		ps = append(ps, d.str())
		return true
	})
}

func (d *jsonDec) rules(fl *fileLink) bool {
	return d.array(func() bool {
		fl.Rules = append(fl.Rules, fileRule{})
		fr := &fl.Rules[len(fl.Rules)-1]
		return d.object(ruleKeys, func(k int) bool {
			switch k {
			case 0:
				return d.string(&fr.Name)
			case 1:
				fr.When = new(string)
				return d.string(fr.When)
			case 2:
				return d.string(&fr.URL)
			case 4:
				return d.boolean(&fr.Sticky)
			case 5:
				return d.redirect(&fr.Redirect)
			}
			split := []fileTarget{}
			fr.Split = &split
			return d.array(func() bool {
				split = append(split, fileTarget{})
				t := &split[len(split)-1]
				return d.object(targetKeys, func(k int) bool {
					if k == 0 {
						return d.string(&t.URL)
					}
					return d.weight(t)
				})
			})
		})
	})
}

// redirect reads a redirect written as a string; a number is left to
// YAML, which reads it as one.
func (d *jsonDec) redirect(dst *any) bool {
	var s string
	if !d.string(&s) {
		return false
	}
	*dst = s
	return true
}

// boolean reads true or false.
func (d *jsonDec) boolean(dst *bool) bool {
	switch {
	case strings.HasPrefix(d.s[d.i:], "true"):
		*dst = true
		d.i += 4
	case strings.HasPrefix(d.s[d.i:], "false"):
		*dst = false
		d.i += 5
	default:
		return false
	}
	return true
}

// weight reads a weight written as a plain integer of up to 7 digits,
// which YAML reads the same way; anything else is left to YAML.
func (d *jsonDec) weight(t *fileTarget) bool {
	start, w := d.i, uint64(0)
	for d.i < len(d.s) && isDigit(d.s[d.i]) && d.i-start < 8 {
		w = w*10 + uint64(d.s[d.i]-'0')
		d.i++
	}
	n := d.i - start
	if n == 0 || n > 7 || (n > 1 && d.s[start] == '0') {
		return false
	}
	if c := d.peek(); c == '.' || c == 'e' || c == 'E' || isDigit(c) {
		return false
	}
	t.Weight = w
	return true
}

// object reads the object at d.i, whose keys must be among keys, calling
// member with d.i at each value, which member must read. It returns false
// when member does or a key is unknown.
func (d *jsonDec) object(keys []string, member func(k int) bool) bool {
	if d.peek() != '{' {
		return false
	}
	d.i++
	var seen [8]int // the offset + 1 of each key read
	d.ws()
	if d.peek() == '}' {
		d.i++
		return true
	}
	for {
		at := d.key()
		key := d.str()
		d.ws()
		d.expect(':', "':'")
		d.ws()
		k := slices.Index(keys, key)
		if k < 0 {
			return false
		}
		if seen[k] != 0 {
			d.duplicate(seen[k]-1, at, key)
		}
		seen[k] = at + 1
		if !member(k) {
			return false
		}
		if !d.next('}') {
			return true
		}
	}
}

// array reads the array at d.i, calling elem with d.i at each element,
// which elem must read. It returns false when elem does.
func (d *jsonDec) array(elem func() bool) bool {
	if d.peek() != '[' {
		return false
	}
	d.i++
	d.ws()
	if d.peek() == ']' {
		d.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		if !d.next(']') {
			return true
		}
	}
}

// string reads a string into dst, or returns false for any other value.
func (d *jsonDec) string(dst *string) bool {
	if d.peek() != '"' {
		return false
	}
	*dst = d.str()
	return true
}

// duplicate refuses a key given twice in one object, in YAML's words.
func (d *jsonDec) duplicate(first, again int, key string) {
	line, col := d.src.lineCol(first)
	d.fail(again, fmt.Sprintf("mapping key %q already defined at [%d:%d]", key, line, col))
}

// yamlLink decodes the link in s[start:end], valid JSON, the YAML way.
func (p *parse) yamlLink(rl *rawLink, start, end int) {
	line, col := p.src.lineCol(start)
	w := where{line: line - 1, col: col - 1}
	f, err := parser.ParseBytes([]byte(p.src.data[start:end]), 0)
	if err != nil || len(f.Docs) != 1 || f.Docs[0].Body == nil {
		e := &Error{Line: line, Column: col, Msg: "not a link"}
		if err != nil {
			e = yamlError(err, nil)
			e.Line, e.Column = w.shift(e.Line, e.Column)
		}
		panic(&jsonError{e: e})
	}
	if p.yaml == nil {
		p.yaml = newYAMLDecoder()
	}
	w.node = f.Docs[0].Body
	rl.where = w
	p.yaml.link(rl, w.node)
	for _, e := range rl.errs {
		e.Line, e.Column = w.shift(e.Line, e.Column)
	}
}

func (d *jsonDec) fail(off int, msg string) {
	panic(&jsonError{off: off, msg: "JSON: " + msg})
}

func (d *jsonDec) unexpected(want string) {
	if d.i >= len(d.s) {
		d.fail(d.i, "unexpected end of input, want "+want)
	}
	r, _ := utf8.DecodeRuneInString(d.s[d.i:])
	d.fail(d.i, fmt.Sprintf("unexpected %q, want %s", r, want))
}

// peek returns the byte at d.i, or 0 at the end.
func (d *jsonDec) peek() byte {
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

func (d *jsonDec) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDec) expect(c byte, want string) {
	if d.peek() != c {
		d.unexpected(want)
	}
	d.i++
}

// key checks that a key starts at d.i and returns its offset.
func (d *jsonDec) key() int {
	if d.peek() != '"' {
		d.unexpected("a key in double quotes")
	}
	return d.i
}

// kind names the value at d.i, for errors.
func (d *jsonDec) kind() string {
	switch c := d.peek(); {
	case c == '{':
		return "a mapping"
	case c == '[':
		return "a list"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == '-' || isDigit(c):
		return "a number"
	}
	d.unexpected("a value")
	return ""
}

// jsonStop marks the bytes that end the fast scan of a string.
var jsonStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// str reads the string at d.i. Without escapes it is a substring of the
// input, which the builder copies before keeping.
func (d *jsonDec) str() string {
	i := d.i + 1
	for i < len(d.s) && !jsonStop[d.s[i]] {
		i++
	}
	switch {
	case i == len(d.s):
		d.fail(i, "unterminated string")
	case d.s[i] == '"':
		s := d.s[d.i+1 : i]
		d.i = i + 1
		return s
	case d.s[i] != '\\':
		d.fail(i, fmt.Sprintf("control character %#02x in a string: escape it", d.s[i]))
	}
	return d.escaped(i)
}

// escaped reads the rest of a string with escapes from i, its first.
func (d *jsonDec) escaped(i int) string {
	b := append(d.buf[:0], d.s[d.i+1:i]...)
	for {
		if i >= len(d.s) {
			d.fail(i, "unterminated string")
		}
		c := d.s[i]
		switch {
		case c == '"':
			d.i = i + 1
			d.buf = b
			return string(b)
		case c < 0x20:
			d.fail(i, fmt.Sprintf("control character %#02x in a string: escape it", c))
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(d.s) {
			d.fail(i+1, "unterminated string")
		}
		switch e := d.s[i+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := d.hex4(i + 2)
			switch {
			case r >= 0xD800 && r < 0xDC00:
				if i+7 >= len(d.s) || d.s[i+6] != '\\' || d.s[i+7] != 'u' {
					d.fail(i, "unpaired UTF-16 surrogate")
				}
				r2 := d.hex4(i + 8)
				if r2 < 0xDC00 || r2 >= 0xE000 {
					d.fail(i, "unpaired UTF-16 surrogate")
				}
				r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
				i += 6
			case r >= 0xDC00 && r < 0xE000:
				d.fail(i, "unpaired UTF-16 surrogate")
			}
			b = utf8.AppendRune(b, r)
			i += 4
		default:
			d.fail(i, fmt.Sprintf("bad escape \\%c", e))
		}
		i += 2
	}
}

func (d *jsonDec) hex4(i int) rune {
	if i+4 > len(d.s) {
		d.fail(i, "bad \\u escape")
	}
	var r rune
	for _, c := range []byte(d.s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			d.fail(i, "bad \\u escape")
		}
		r = r<<4 | rune(c)
	}
	return r
}

func (d *jsonDec) literal(word string) {
	if !strings.HasPrefix(d.s[d.i:], word) {
		d.unexpected("a value")
	}
	d.i += len(word)
}

func (d *jsonDec) number() {
	if d.peek() == '-' {
		d.i++
	}
	switch c := d.peek(); {
	case c == '0':
		d.i++
	case isDigit(c):
		d.digits()
	default:
		d.unexpected("a digit")
	}
	if d.peek() == '.' {
		d.i++
		d.digits()
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.i++
		if c := d.peek(); c == '+' || c == '-' {
			d.i++
		}
		d.digits()
	}
}

func (d *jsonDec) digits() {
	if !isDigit(d.peek()) {
		d.unexpected("a digit")
	}
	for isDigit(d.peek()) {
		d.i++
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skip reads the value at d.i, at the given depth, checking its syntax.
func (d *jsonDec) skip(depth int) {
	if depth > maxDepth {
		d.fail(d.i, fmt.Sprintf("nested deeper than %d levels", maxDepth))
	}
	switch c := d.peek(); {
	case c == '{':
		d.i++
		d.ws()
		if d.peek() == '}' {
			d.i++
			return
		}
		for {
			d.key()
			d.str()
			d.ws()
			d.expect(':', "':'")
			d.ws()
			d.skip(depth + 1)
			if !d.next('}') {
				return
			}
		}
	case c == '[':
		d.i++
		d.ws()
		if d.peek() == ']' {
			d.i++
			return
		}
		for {
			d.skip(depth + 1)
			if !d.next(']') {
				return
			}
		}
	case c == '"':
		d.str()
	case c == 't':
		d.literal("true")
	case c == 'f':
		d.literal("false")
	case c == 'n':
		d.literal("null")
	case c == '-' || isDigit(c):
		d.number()
	default:
		d.unexpected("a value")
	}
}

// jsonLookup returns the offset of the value at path (string keys, int
// indexes) under the JSON value at off, or of the nearest one on the path
// that exists; an object is placed at its first key. The text there was
// decoded before, so it is valid.
func jsonLookup(s string, off int, path ...any) int {
	d := &jsonDec{s: s, i: off}
	for _, p := range path {
		d.i = off
		next := -1
		switch k := p.(type) {
		case string:
			next = d.member(k)
		case int:
			next = d.element(k)
		}
		if next < 0 {
			break
		}
		off = next
	}
	d.i = off
	if d.peek() == '{' {
		d.i++
		d.ws()
		if d.peek() == '"' {
			return d.i
		}
	}
	return off
}

// member returns the offset of the value of key in the object at d.i, or -1.
func (d *jsonDec) member(key string) int {
	if d.peek() != '{' {
		return -1
	}
	d.i++
	d.ws()
	for d.peek() == '"' {
		k := d.str()
		d.ws()
		d.i++ // ':'
		d.ws()
		if k == key {
			return d.i
		}
		d.skip(0)
		if !d.next('}') {
			break
		}
	}
	return -1
}

// element returns the offset of the k-th element of the array at d.i, or -1.
func (d *jsonDec) element(k int) int {
	if d.peek() != '[' {
		return -1
	}
	d.i++
	d.ws()
	if d.peek() == ']' {
		return -1
	}
	for j := 0; ; j++ {
		if j == k {
			return d.i
		}
		d.skip(0)
		if !d.next(']') {
			return -1
		}
	}
}
