package catalog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// yamlDecoder decodes links the YAML way, with goccy/go-yaml: every link of
// a YAML file, and the links of a JSON file that the JSON decoder leaves to
// YAML's semantics. It is used by one goroutine, in file order, so anchors
// are known by the time an alias refers to them.
type yamlDecoder struct {
	strict  *yaml.Decoder
	lenient *yaml.Decoder // ignores unknown keys, to check the rest of a link that has one
	nodes   []ast.Node    // every link node decoded so far, for lenient's catch-up
	caught  int           // how many of nodes lenient has seen
}

func newYAMLDecoder() *yamlDecoder {
	// DecodeFromNode needs a decoder that has read its input; an empty one
	// costs nothing, unlike one that decodes the whole file up front.
	return &yamlDecoder{
		strict:  yaml.NewDecoder(strings.NewReader(""), yaml.Strict()),
		lenient: yaml.NewDecoder(strings.NewReader("")),
	}
}

// link decodes the link at node n into rl.
func (d *yamlDecoder) link(rl *rawLink, n ast.Node) {
	d.nodes = append(d.nodes, n)
	err := d.strict.DecodeFromNode(n, &rl.fl)
	if err == nil {
		return
	}
	e := yamlError(err, n)
	e.Link = rl.label(n)
	rl.errs = append(rl.errs, e)
	// After an unknown key, check the rest of the link too, so one pass
	// finds every problem.
	var uf *yaml.UnknownFieldError
	if !errors.As(err, &uf) {
		rl.skip = true
		return
	}
	rl.fl = fileLink{}
	// lenient must know the anchors of every link before this one.
	var discard fileLink
	for ; d.caught < len(d.nodes)-1; d.caught++ {
		_ = d.lenient.DecodeFromNode(d.nodes[d.caught], &discard)
	}
	d.caught++
	if d.lenient.DecodeFromNode(n, &rl.fl) != nil {
		rl.skip = true
	}
}

// decodeYAML reads a YAML catalog: goccy parses the whole file into one
// tree, then each link is decoded from its node.
func (p *parse) decodeYAML() {
	f, err := parser.ParseBytes([]byte(p.src.data), 0)
	if err != nil {
		p.fatal(yamlError(err, nil))
		return
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d.Body != nil {
			docs = append(docs, d)
		}
	}
	switch {
	case len(docs) == 0:
		p.fatal(&Error{Msg: "empty file: want a top-level links list (links: [] for no links)"})
		return
	case len(docs) > 1:
		p.fatal(&Error{Msg: "more than one YAML document"})
		return
	}
	var links *ast.SequenceNode
	switch body := unwrap(docs[0].Body).(type) {
	case *ast.NullNode:
	case *ast.MappingNode, *ast.MappingValueNode:
		for _, mv := range mappingValues(body) {
			k := mv.Key.GetToken()
			if k.Value != "links" {
				p.fatal(&Error{Line: k.Position.Line, Column: k.Position.Column, Msg: fmt.Sprintf("unknown key %q", k.Value)})
				return
			}
			switch v := unwrap(mv.Value).(type) {
			case *ast.NullNode:
			case *ast.SequenceNode:
				links = v
			default:
				line, col := tokenPos(mv.Value)
				p.fatal(&Error{Line: line, Column: col, Field: "links", Msg: "want a list, got " + yamlKind(v)})
				return
			}
		}
	default:
		line, col := tokenPos(body)
		p.fatal(&Error{Line: line, Column: col, Msg: "want a mapping with a links list, got " + yamlKind(body)})
		return
	}
	if links == nil {
		p.fatal(&Error{Line: 1, Field: "links", Msg: "missing (links: [] for no links)"})
		return
	}
	if plain, expanded := expansion(links.Values); expanded > maxExpansion*plain && expanded > minExpansionCheck {
		p.fatal(&Error{Line: 1, Field: "links", Msg: fmt.Sprintf(
			"YAML aliases expand %d nodes to %d: at most %d times", plain, expanded, maxExpansion)})
		return
	}
	d := newYAMLDecoder()
	for _, n := range links.Values {
		rl := p.next()
		rl.where = where{node: n}
		d.link(rl, n)
	}
}

// yamlKind names the kind of a node for errors.
func yamlKind(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.AliasNode:
		return "an alias"
	}
	return "a " + strings.ToLower(n.Type().String())
}

// yamlVerbatim returns the text of the scalar at path under n when YAML
// reads it as a number or a boolean, which a string field gets in YAML's
// spelling rather than the file's.
func yamlVerbatim(n ast.Node, path ...any) (string, bool) {
	n = at(n, path...)
	switch unwrap(n).(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode, *ast.BoolNode:
		return n.GetToken().Value, true
	}
	return "", false
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

// tokenPos is where n itself starts: a mapping's '{', not its first key.
func tokenPos(n ast.Node) (line, col int) {
	if n == nil || n.GetToken() == nil || n.GetToken().Position == nil {
		return 0, 0
	}
	p := n.GetToken().Position
	return p.Line, p.Column
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
