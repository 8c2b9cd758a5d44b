package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

const (
	maxExpansion      = 10        // how much YAML aliases may multiply the file's nodes
	minExpansionCheck = 100_000   // expanded node count below which any ratio is fine
	maxParams         = 16        // per link, as the click caps them
	maxWeight         = 1_000_000 // per split branch; keeps sums far from overflow
	maxName           = 64        // codes, rule names, parameter names
)

// The file format. Decoding is strict: an unknown key is an error.
type (
	fileCatalog struct {
		Links *[]ast.Node `yaml:"links"`
	}
	fileLink struct {
		Code        string     `yaml:"code"`
		URL         string     `yaml:"url"`
		Status      string     `yaml:"status"`
		FallbackURL string     `yaml:"fallback_url"`
		Params      *[]string  `yaml:"params"`
		Rules       []fileRule `yaml:"rules"`
	}
	fileRule struct {
		Name  string        `yaml:"name"`
		When  *string       `yaml:"when"`
		URL   string        `yaml:"url"`
		Split *[]fileTarget `yaml:"split"`
	}
	fileTarget struct {
		URL    string `yaml:"url"`
		Weight any    `yaml:"weight"`
	}
)

// Parse parses a catalog file. name is used in errors (the file name). All
// problems are reported at once, joined and sorted by position (at most 20);
// each is an *Error wrapping ErrInvalid.
func Parse(name string, data []byte) (c *Catalog, err error) {
	// A reload must never take the node down: a panic in a library on odd
	// input becomes an error, and the last good catalog keeps serving.
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, &Error{File: name, Msg: fmt.Sprintf("internal error while parsing (please report): %v", r)}
		}
	}()
	p := &parser{
		errs: errorList{file: name},
		cat: &Catalog{
			name:   name,
			byCode: make(map[string]*Link),
		},
		seen:  make(map[string]int),
		whens: make(map[string]compiled),
	}
	sum := sha256.Sum256(data)
	p.cat.version = hex.EncodeToString(sum[:6])

	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.Strict())
	p.lenient = yaml.NewDecoder(bytes.NewReader(data))
	var fc fileCatalog
	if err := dec.Decode(&fc); err != nil {
		if err == io.EOF {
			p.errs.add(&Error{Msg: "empty file: want a top-level links list (links: [] for no links)"})
		} else {
			p.errs.add(yamlError(err, nil))
		}
		return nil, p.errs.err()
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		p.errs.add(&Error{Msg: "more than one YAML document"})
		return nil, p.errs.err()
	}
	if fc.Links == nil {
		p.errs.add(&Error{Line: 1, Field: "links", Msg: "missing (links: [] for no links)"})
		return nil, p.errs.err()
	}
	if plain, expanded := expansion(*fc.Links); expanded > maxExpansion*plain && expanded > minExpansionCheck {
		p.errs.add(&Error{Line: 1, Field: "links", Msg: fmt.Sprintf(
			"YAML aliases expand %d nodes to %d: at most %d times", plain, expanded, maxExpansion)})
		return nil, p.errs.err()
	}
	for i, n := range *fc.Links {
		p.link(dec, i, n)
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return p.cat, nil
}

type parser struct {
	errs errorList
	cat  *Catalog
	seen map[string]int // code -> line of its first use

	lenient *yaml.Decoder // ignores unknown keys, to check the rest of a link that has one

	// whens caches compiled expressions by source and params: catalogs
	// repeat the same conditions across many links.
	whens map[string]compiled
}

type compiled struct {
	m   matcher
	err error
}

// link decodes and checks the i-th link, adding it to the catalog when good.
func (p *parser) link(dec *yaml.Decoder, i int, n ast.Node) {
	label := fmt.Sprintf("link #%d", i+1)
	if c := scalar(lookup(n, "code")); validCode(c) {
		label = fmt.Sprintf("link %q", c)
	}
	errsBefore := len(p.errs.errs)
	var fl fileLink
	if err := dec.DecodeFromNode(n, &fl); err != nil {
		e := yamlError(err, n)
		e.Link = label
		p.errs.add(e)
		// After an unknown key, check the rest of the link too, so one pass
		// finds every problem.
		var uf *yaml.UnknownFieldError
		if !errors.As(err, &uf) {
			return
		}
		fl = fileLink{}
		if p.lenient.DecodeFromNode(n, &fl) != nil {
			return
		}
	}
	fail := func(rule, field, msg string, path ...any) {
		line, col := pos(lookup(n, path...))
		p.errs.add(&Error{Line: line, Column: col, Link: label, Rule: rule, Field: field, Msg: msg})
	}

	// YAML reads code: 007 as the number 7; a link must keep the code ops wrote.
	verbatim := func(rule, field, decoded string, path ...any) {
		n := at(n, path...)
		switch unwrap(n).(type) {
		case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode, *ast.BoolNode:
			if text := n.GetToken().Value; text != decoded {
				fail(rule, field, fmt.Sprintf("%s is read by YAML as the number %s: quote it", text, decoded), path...)
			}
		}
	}
	verbatim("", "code", fl.Code, "code")

	l := &Link{Code: fl.Code}
	switch {
	case fl.Code == "":
		fail("", "code", "missing")
	case !validCode(fl.Code):
		fail("", "code", fmt.Sprintf("%q: must match [A-Za-z0-9_-]{1,64}", fl.Code), "code")
	default:
		line, _ := pos(lookup(n, "code"))
		if first, dup := p.seen[fl.Code]; dup {
			fail("", "code", fmt.Sprintf("duplicate: already used at line %d", first), "code")
		} else {
			p.seen[fl.Code] = line
		}
	}

	switch fl.Status {
	case "", "active":
	case "paused":
		l.paused = true
	default:
		fail("", "status", fmt.Sprintf("%q: must be active or paused", fl.Status), "status")
	}

	l.Params = slices.Clone(defaultParams)
	if fl.Params != nil {
		l.Params = *fl.Params
		if len(l.Params) > maxParams {
			fail("", "params", fmt.Sprintf("%d parameters: at most %d", len(l.Params), maxParams), "params")
		}
		for j, name := range l.Params {
			verbatim("", fmt.Sprintf("params[%d]", j), name, "params", j)
			switch {
			case !validParam(name):
				fail("", fmt.Sprintf("params[%d]", j), fmt.Sprintf("%q: parameter names are [A-Za-z0-9_.-]{1,64}", name), "params", j)
			case slices.Index(l.Params, name) < j:
				fail("", fmt.Sprintf("params[%d]", j), fmt.Sprintf("%q: listed twice", name), "params", j)
			}
		}
	}

	var err error
	if l.url, err = parseTemplate(fl.URL, fl.Code, l.Params); err != nil {
		fail("", "url", err.Error(), "url")
	}
	if fl.FallbackURL != "" {
		if l.fallback, err = parseTemplate(fl.FallbackURL, fl.Code, l.Params); err != nil {
			fail("", "fallback_url", err.Error(), "fallback_url")
		}
	}

	names := make(map[string]bool, len(fl.Rules))
	catchAll := ""
	for j := range fl.Rules {
		fr := &fl.Rules[j]
		rlabel := fmt.Sprintf("rule #%d", j+1)
		if fr.Name != "" {
			rlabel = fmt.Sprintf("rule %q", fr.Name)
		}
		rfail := func(field, msg string, path ...any) {
			fail(rlabel, field, msg, append([]any{"rules", j}, path...)...)
		}
		r := &Rule{Name: fr.Name}
		verbatim(rlabel, "name", fr.Name, "rules", j, "name")
		switch {
		case fr.Name == "":
			rfail("name", "missing")
		case !validParam(fr.Name):
			rfail("name", "must match [A-Za-z0-9_.-]{1,64}", "name")
		case names[fr.Name]:
			rfail("name", "duplicate rule name in this link", "name")
		}
		names[fr.Name] = true
		if catchAll != "" {
			rfail("", fmt.Sprintf("unreachable: rule %q before it has no when and always matches", catchAll))
		}

		switch {
		case fr.When == nil:
			r.fast = always
			if catchAll == "" {
				catchAll = fr.Name
			}
		case strings.TrimSpace(*fr.When) == "":
			rfail("when", "empty expression (leave when out for a rule that always matches)", "when")
		default:
			key := *fr.When + "\x00" + strings.Join(l.Params, ",")
			c, ok := p.whens[key]
			if !ok {
				c.m, c.err = compileMatcher(*fr.When, l.Params)
				p.whens[key] = c
			}
			r.When, r.matcher = *fr.When, c.m
			if c.err != nil {
				rfail("when", c.err.Error(), "when")
			}
		}

		switch {
		case fr.URL != "" && fr.Split != nil:
			rfail("", "has both url and split: want one")
		case fr.URL == "" && fr.Split == nil:
			rfail("", "has neither url nor split: want one")
		case fr.URL != "":
			if r.URL, err = parseTemplate(fr.URL, fl.Code, l.Params); err != nil {
				rfail("url", err.Error(), "url")
			}
		case len(*fr.Split) == 0:
			rfail("split", "needs at least one entry", "split")
		default:
			for k, ft := range *fr.Split {
				field := fmt.Sprintf("split[%d]", k)
				t := Target{}
				if t.URL, err = parseTemplate(ft.URL, fl.Code, l.Params); err != nil {
					rfail(field+".url", err.Error(), "split", k, "url")
				}
				if t.Weight, err = weight(ft.Weight); err != nil {
					rfail(field+".weight", err.Error(), "split", k, "weight")
				}
				r.total += uint64(t.Weight)
				t.upTo = r.total
				r.Split = append(r.Split, t)
			}
		}
		l.Rules = append(l.Rules, r)
	}

	if len(p.errs.errs) > errsBefore {
		return
	}
	p.cat.byCode[l.Code] = l
	p.cat.links = append(p.cat.links, l)
}

func weight(v any) (int, error) {
	var w uint64
	switch v := v.(type) {
	case nil:
		return 0, errors.New("missing")
	case uint64:
		w = v
	case int64:
		if v > 0 {
			w = uint64(v)
		}
	case int:
		if v > 0 {
			w = uint64(v)
		}
	default:
		return 0, fmt.Errorf("%v: must be a positive integer", v)
	}
	if w == 0 || w > maxWeight {
		return 0, fmt.Errorf("%v: must be a positive integer up to %d", v, maxWeight)
	}
	return int(w), nil
}

func validCode(s string) bool {
	if len(s) == 0 || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func validParam(s string) bool {
	if len(s) == 0 || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// yamlError turns a goccy error into an *Error with its position; root, when
// set, names the key the error is under.
func yamlError(err error, root ast.Node) *Error {
	var ye yaml.Error
	if !errors.As(err, &ye) || ye.GetToken() == nil {
		return &Error{Msg: err.Error()}
	}
	tk := ye.GetToken()
	e := &Error{Line: tk.Position.Line, Column: tk.Position.Column, Msg: ye.GetMessage()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		e.Msg = fmt.Sprintf("want %s, got %s", kindName(te.DstType.String()), kindName(te.SrcType.String()))
	}
	if root != nil {
		e.Field = pathAt(root, tk.Position.Line, tk.Position.Column, "")
	}
	e.Msg = strings.Replace(e.Msg, "unknown field", "unknown key", 1)
	return e
}

func kindName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case goType == "string":
		return "a string"
	}
	return goType
}

// unwrap looks through anchors and tags.
func unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		default:
			return n
		}
	}
}

// lookup follows path (string keys, int indexes) from n as far as it
// exists and returns the last node reached, so an error about a missing
// key points at its parent.
func lookup(n ast.Node, path ...any) ast.Node {
	for _, p := range path {
		next := child(unwrap(n), p)
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// at follows path from n and returns nil when it does not exist.
func at(n ast.Node, path ...any) ast.Node {
	for _, p := range path {
		if n = child(unwrap(n), p); n == nil {
			return nil
		}
	}
	return n
}

func child(n ast.Node, p any) ast.Node {
	switch k := p.(type) {
	case string:
		for _, mv := range mappingValues(n) {
			if mv.Key != nil && mv.Key.GetToken() != nil && mv.Key.GetToken().Value == k {
				return mv.Value
			}
		}
	case int:
		if s, ok := n.(*ast.SequenceNode); ok && k < len(s.Values) {
			return s.Values[k]
		}
	}
	return nil
}

func mappingValues(n ast.Node) []*ast.MappingValueNode {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}
	}
	return nil
}

func pos(n ast.Node) (line, col int) {
	if n == nil {
		return 0, 0
	}
	if mv := mappingValues(unwrap(n)); len(mv) > 0 && mv[0].Key != nil {
		n = mv[0].Key // a mapping starts at its first key
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}

func scalar(n ast.Node) string {
	if n == nil {
		return ""
	}
	if s, ok := unwrap(n).(ast.ScalarNode); ok {
		if v, ok := s.GetValue().(string); ok {
			return v
		}
	}
	return ""
}

// pathAt names the key path under n of the node at line:col, e.g.
// "rules[0].split[1].weight", for errors that only carry a token.
func pathAt(n ast.Node, line, col int, prefix string) string {
	n = unwrap(n)
	if n == nil {
		return prefix
	}
	switch v := n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		for _, mv := range mappingValues(v) {
			key := mv.Key.GetToken()
			p := key.Value
			if prefix != "" {
				p = prefix + "." + p
			}
			if key.Position.Line == line && key.Position.Column == col {
				return p
			}
			if within(mv.Value, line, col) {
				return pathAt(mv.Value, line, col, p)
			}
		}
	case *ast.SequenceNode:
		for i, e := range v.Values {
			if within(e, line, col) {
				return pathAt(e, line, col, fmt.Sprintf("%s[%d]", prefix, i))
			}
		}
	}
	return prefix
}

// within reports whether line:col falls inside n, judged by the positions
// of its first and last tokens.
func within(n ast.Node, line, col int) bool {
	if n == nil {
		return false
	}
	first, last := n.GetToken(), lastToken(n)
	if first == nil || last == nil {
		return false
	}
	before := func(a, b *token.Position) bool {
		return a.Line < b.Line || a.Line == b.Line && a.Column <= b.Column
	}
	// A block mapping's own token may come after its first key.
	if mv := mappingValues(unwrap(n)); len(mv) > 0 && mv[0].Key != nil {
		if k := mv[0].Key.GetToken(); before(k.Position, first.Position) {
			first = k
		}
	}
	at := &token.Position{Line: line, Column: col}
	return before(first.Position, at) && before(at, last.Position)
}

func lastToken(n ast.Node) *token.Token {
	n = unwrap(n)
	switch v := n.(type) {
	case *ast.MappingNode:
		if len(v.Values) > 0 {
			return lastToken(v.Values[len(v.Values)-1])
		}
	case *ast.MappingValueNode:
		return lastToken(v.Value)
	case *ast.SequenceNode:
		if len(v.Values) > 0 {
			return lastToken(v.Values[len(v.Values)-1])
		}
	}
	if n == nil {
		return nil
	}
	return n.GetToken()
}

// expansion counts the nodes of the links as written and as the decoder sees
// them with every alias replaced by its anchor. Aliases are handy for sharing
// rules between links, but nested ones multiply: a few kilobytes could
// otherwise make Parse build billions of templates.
func expansion(links []ast.Node) (plain, expanded int) {
	anchors := make(map[string]int)
	var walk func(n ast.Node) (int, int)
	walk = func(n ast.Node) (p, e int) {
		add := func(c ast.Node) {
			cp, ce := walk(c)
			p, e = p+cp, e+ce
		}
		p, e = 1, 1
		switch v := n.(type) {
		case nil:
			return 0, 0
		case *ast.AnchorNode:
			add(v.Value)
			if v.Name != nil {
				anchors[v.Name.GetToken().Value] = e
			}
		case *ast.AliasNode:
			if v.Value != nil {
				e = max(e, anchors[v.Value.GetToken().Value])
			}
		case *ast.TagNode:
			add(v.Value)
		case *ast.MappingNode:
			for _, mv := range v.Values {
				add(mv)
			}
		case *ast.MappingValueNode:
			add(v.Key)
			add(v.Value)
		case *ast.SequenceNode:
			for _, c := range v.Values {
				add(c)
			}
		}
		return p, e
	}
	for _, n := range links {
		p, e := walk(n)
		plain, expanded = plain+p, expanded+e
	}
	return plain, expanded
}
