package main

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// decodeConfig overlays the YAML document data (called name in errors) on
// c: keys absent from data, or null, keep their value in c.
//
// The document is first checked against Config's shape, so that every
// unknown key and every value of the wrong type is reported at once, with
// its key path and line, and so that the decoder's silent conversions (a
// float truncated into an int, a number turned into a string) never apply.
// Only then does goccy/go-yaml decode it, in strict mode.
//
// It returns the line of every key in data, by key path ("http.listen",
// "http.trusted_proxies[1]").
func decodeConfig(name string, data []byte, c *Config) (lines map[string]int, err error) {
	defer func() {
		// A config is outside input: a parser bug must not crash the node.
		if r := recover(); r != nil {
			lines, err = nil, fmt.Errorf("%s: cannot parse YAML: %v", name, r)
		}
	}()
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", name, yamlErrorText(err))
	}
	var body ast.Node
	for _, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		if body != nil {
			return nil, fmt.Errorf("%s: more than one YAML document (line %d)", name, line(d.Body))
		}
		body = d.Body
	}
	s := &scanner{name: name, lines: make(map[string]int), anchors: make(map[string]ast.Node)}
	s.check(body, reflect.TypeFor[Config](), "")
	if len(s.errs) > 0 {
		return nil, errors.Join(s.errs...)
	}
	if v, _ := s.value(body); isNull(v) {
		return s.lines, nil // empty or comments only: nothing to overlay
	}
	if err := yaml.NodeToValue(body, c, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%s: %s", name, yamlErrorText(err))
	}
	return s.lines, nil
}

// yamlErrorText is a goccy/go-yaml error on one line, without the source
// excerpt it prints by default.
func yamlErrorText(err error) string {
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return fmt.Sprintf("%s (line %d)", ye.GetMessage(), tk.Position.Line)
		}
		return ye.GetMessage()
	}
	return err.Error()
}

// scanner checks a YAML tree against the Config type.
type scanner struct {
	name    string
	lines   map[string]int
	anchors map[string]ast.Node
	errs    []error
}

func (s *scanner) errorf(n ast.Node, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	s.errs = append(s.errs, fmt.Errorf("%s: %s (line %d)", s.name, msg, line(n)))
}

func line(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

func isNull(n ast.Node) bool { return n == nil || n.Type() == ast.NullType }

// value strips tags and anchors from n and follows aliases; str reports an
// explicit !!str tag.
func (s *scanner) value(n ast.Node) (v ast.Node, str bool) {
	for range 32 { // bounded: aliases could otherwise chase each other
		switch t := n.(type) {
		case *ast.TagNode:
			if t.Start != nil && t.Start.Value == "!!str" {
				str = true
			}
			n = t.Value
		case *ast.AnchorNode:
			if t.Name != nil && t.Name.GetToken() != nil {
				s.anchors[t.Name.GetToken().Value] = t.Value
			}
			n = t.Value
		case *ast.AliasNode:
			if t.Value == nil || t.Value.GetToken() == nil {
				return nil, str
			}
			n = s.anchors[t.Value.GetToken().Value] // unknown: nil, the parser has already complained
		default:
			return n, str
		}
	}
	return nil, str
}

// check reports every problem in n, the value of key, which has type t.
func (s *scanner) check(n ast.Node, t reflect.Type, key string) {
	n, str := s.value(n)
	if isNull(n) {
		return
	}
	switch kindOf(t) {
	case kindSection:
		s.checkSection(n, t, key)
	case kindString:
		s.checkString(n, str, key)
	case kindStrings:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			s.errorf(n, key, "expected a list of strings, got %s", describeValue(key, n))
			return
		}
		for i, e := range seq.Values {
			ek := fmt.Sprintf("%s[%d]", key, i)
			s.lines[ek] = line(e)
			e, str := s.value(e)
			if isNull(e) {
				s.errorf(seq, ek, "expected a string, got null")
				continue
			}
			s.checkString(e, str, ek)
		}
	case kindInt:
		if sn, ok := n.(*ast.StringNode); ok && !str && sn.Token.Type == token.StringType && isDigits(sn.Value) {
			s.errorf(n, key, "%s is too large", sn.Value) // goccy makes a string of it
			return
		}
		in, ok := n.(*ast.IntegerNode)
		if !ok || str {
			s.errorf(n, key, "expected an integer, got %s", describeValue(key, n))
			return
		}
		if u, ok := in.Value.(uint64); ok && u > math.MaxInt {
			s.errorf(n, key, "%d is too large", u)
		}
	case kindFloat:
		switch n.Type() {
		case ast.IntegerType, ast.FloatType, ast.InfinityType, ast.NanType:
		default:
			s.errorf(n, key, "expected a number, got %s", describeValue(key, n))
		}
	case kindDuration:
		switch n.Type() {
		case ast.StringType:
			if _, err := ParseDuration(n.(*ast.StringNode).Value); err != nil {
				s.errorf(n, key, "%v", err)
			}
		case ast.IntegerType:
			if n.GetToken().Value != "0" {
				s.errorf(n, key, "invalid duration %s: missing unit (e.g. %ss or %sms)",
					n.GetToken().Value, n.GetToken().Value, n.GetToken().Value)
			}
		default:
			s.errorf(n, key, "expected a duration like 5s, got %s", describeValue(key, n))
		}
	case kindByteSize:
		switch n.Type() {
		case ast.StringType:
			if _, err := ParseByteSize(n.(*ast.StringNode).Value); err != nil {
				s.errorf(n, key, "%v", err)
			}
		case ast.IntegerType:
			switch v := n.(*ast.IntegerNode).Value.(type) {
			case int64:
				if v < 0 {
					s.errorf(n, key, "invalid size %d: must not be negative", v)
				}
			case uint64:
				if v > math.MaxInt64 {
					s.errorf(n, key, "invalid size %d: too large", v)
				}
			}
		default:
			s.errorf(n, key, "expected a size like 32MiB, got %s", describeValue(key, n))
		}
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (s *scanner) checkString(n ast.Node, str bool, key string) {
	switch n.Type() {
	case ast.StringType, ast.LiteralType:
		return
	case ast.MappingType, ast.MappingValueType, ast.SequenceType:
		s.errorf(n, key, "expected a string, got %s", describeValue(key, n))
	default:
		if !str {
			// goccy would turn 0123 or 1e3 into text that differs from what
			// was written; quoting says which text is meant.
			s.errorf(n, key, "expected a string, got %s; quote it to use it as text", describeValue(key, n))
		}
	}
}

func (s *scanner) checkSection(n ast.Node, t reflect.Type, key string) {
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		if key == "" {
			s.errorf(n, "", "expected a mapping of keys (node:, http:, ...), got %s", describeValue(key, n))
			return
		}
		s.errorf(n, key, "expected a mapping of keys, got %s", describeValue(key, n))
		return
	}
	seen := make(map[string]int)
	for _, mv := range values {
		if mv == nil || mv.Key == nil {
			continue
		}
		if mv.Key.IsMergeKey() {
			s.errorf(mv.Key, key, "merge keys (<<) are not supported")
			continue
		}
		name := keyText(mv.Key)
		k := joinKey(key, name)
		if first, dup := seen[name]; dup {
			s.errorf(mv.Key, k, "duplicate key (first at line %d)", first)
			continue
		}
		seen[name] = line(mv.Key)
		s.lines[k] = line(mv.Key)
		f, ok := fieldByYAMLName(t, name)
		if !ok {
			s.errorf(mv.Key, k, "unknown key%s", keySuggestion(t, key, name))
			continue
		}
		s.check(mv.Value, f.Type, k)
	}
}

func keyText(k ast.MapKeyNode) string {
	if sn, ok := k.(*ast.StringNode); ok {
		return sn.Value
	}
	if tk := k.GetToken(); tk != nil {
		return tk.Value
	}
	return k.String()
}

func fieldByYAMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if n := yamlName(f); n != "" && n == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func keySuggestion(t reflect.Type, section, name string) string {
	var names []string
	for i := range t.NumField() {
		if n := yamlName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	if s := closest(name, names); s != "" {
		return "; did you mean " + joinKey(section, s) + "?"
	}
	return ""
}

// secretKeys are the keys whose values errors must not quote.
var secretKeys = []string{"admin.token", "forwarder.amqp_urls"}

// describeValue names a node's type and value for an error about key, or
// only its type if key holds secrets.
func describeValue(key string, n ast.Node) string {
	base, _, _ := strings.Cut(key, "[")
	if slices.Contains(secretKeys, base) {
		switch n.Type() {
		case ast.MappingType, ast.MappingValueType, ast.SequenceType, ast.NullType:
		default:
			return "a value of type " + n.Type().YAMLName() + " (not shown: it may be secret)"
		}
	}
	return describe(n)
}

// describe names a node's YAML type and value for error messages.
func describe(n ast.Node) string {
	switch n.Type() {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.NullType:
		return "null"
	case ast.StringType:
		return fmt.Sprintf("string %q", n.(*ast.StringNode).Value)
	}
	v := ""
	if tk := n.GetToken(); tk != nil {
		v = tk.Value
	}
	return n.Type().YAMLName() + " " + v
}
