package catalog

import (
	"net/netip"
	"regexp"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// The expr VM boxes every value it loads (a string read from the env
// allocates), so the shapes rules are made of — comparisons of variables
// with constants, in, &&, ||, !, cidr, params[...] — are compiled into Go
// closures over *Facts, which allocate nothing. Anything else returns nil
// and the rule runs on the VM. The closures must agree with the VM on every
// input; matcher_test.go checks that differentially.

type (
	boolFn func(*Facts) bool
	strFn  func(*Facts) string
	intFn  func(*Facts) int
)

func always(*Facts) bool { return true }

// smallSet is the size up to which `in [...]` scans a slice instead of
// hashing.
const smallSet = 8

// varName returns the variable n reads, for `name` and `$env.name`.
func varName(n ast.Node) (string, bool) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		if n.Value != "$env" {
			return n.Value, true
		}
	case *ast.MemberNode:
		if isIdent(n.Node, "$env") && !n.Optional && !n.Method {
			if s, ok := n.Property.(*ast.StringNode); ok {
				return s.Value, true
			}
		}
	}
	return "", false
}

func fastBool(n ast.Node) boolFn {
	if name, ok := varName(n); ok {
		if name == "bot" {
			return func(f *Facts) bool { return f.Bot }
		}
		return nil
	}
	switch n := n.(type) {
	case *ast.BoolNode:
		if n.Value {
			return always
		}
		return func(*Facts) bool { return false }
	case *ast.UnaryNode:
		if n.Operator == "!" || n.Operator == "not" {
			if x := fastBool(n.Node); x != nil {
				return func(f *Facts) bool { return !x(f) }
			}
		}
	case *ast.ConditionalNode:
		c, a, b := fastBool(n.Cond), fastBool(n.Exp1), fastBool(n.Exp2)
		if c != nil && a != nil && b != nil {
			return func(f *Facts) bool {
				if c(f) {
					return a(f)
				}
				return b(f)
			}
		}
	case *ast.BinaryNode:
		return fastBinary(n)
	case *ast.CallNode:
		return fastCidr(n)
	}
	return nil
}

func fastBinary(n *ast.BinaryNode) boolFn {
	switch n.Operator {
	case "&&", "and":
		l, r := fastBool(n.Left), fastBool(n.Right)
		if l != nil && r != nil {
			return func(f *Facts) bool { return l(f) && r(f) }
		}
	case "||", "or":
		l, r := fastBool(n.Left), fastBool(n.Right)
		if l != nil && r != nil {
			return func(f *Facts) bool { return l(f) || r(f) }
		}
	case "==", "!=":
		eq := fastEqual(n.Left, n.Right)
		if eq == nil || n.Operator == "==" {
			return eq
		}
		return func(f *Facts) bool { return !eq(f) }
	case "<", "<=", ">", ">=":
		return fastCompare(n.Operator, n.Left, n.Right)
	case "in":
		return fastIn(n.Left, n.Right)
	case "contains", "startsWith", "endsWith":
		l, r := fastStr(n.Left), fastStr(n.Right)
		if l == nil || r == nil {
			return nil
		}
		switch n.Operator {
		case "contains":
			return func(f *Facts) bool { return strings.Contains(l(f), r(f)) }
		case "startsWith":
			return func(f *Facts) bool { return strings.HasPrefix(l(f), r(f)) }
		default:
			return func(f *Facts) bool { return strings.HasSuffix(l(f), r(f)) }
		}
	case "matches":
		l := fastStr(n.Left)
		p, ok := n.Right.(*ast.StringNode)
		if l == nil || !ok {
			return nil
		}
		re, err := regexp.Compile(p.Value)
		if err != nil {
			return nil
		}
		return func(f *Facts) bool { return re.MatchString(l(f)) }
	}
	return nil
}

func fastEqual(left, right ast.Node) boolFn {
	// A constant compared directly saves a closure call per evaluation.
	if _, ok := left.(*ast.StringNode); ok {
		left, right = right, left
	}
	if _, ok := left.(*ast.IntegerNode); ok {
		left, right = right, left
	}
	if c, ok := right.(*ast.StringNode); ok {
		if l := fastStr(left); l != nil {
			v := c.Value
			return func(f *Facts) bool { return l(f) == v }
		}
		return nil
	}
	if c, ok := right.(*ast.IntegerNode); ok {
		if l := fastInt(left); l != nil {
			v := c.Value
			return func(f *Facts) bool { return l(f) == v }
		}
		return nil
	}
	if l, r := fastStr(left), fastStr(right); l != nil && r != nil {
		return func(f *Facts) bool { return l(f) == r(f) }
	}
	if l, r := fastInt(left), fastInt(right); l != nil && r != nil {
		return func(f *Facts) bool { return l(f) == r(f) }
	}
	if l, r := fastBool(left), fastBool(right); l != nil && r != nil {
		return func(f *Facts) bool { return l(f) == r(f) }
	}
	return nil
}

func fastCompare(op string, left, right ast.Node) boolFn {
	if l, r := fastInt(left), fastInt(right); l != nil && r != nil {
		if c, ok := right.(*ast.IntegerNode); ok {
			v := c.Value
			switch op {
			case "<":
				return func(f *Facts) bool { return l(f) < v }
			case "<=":
				return func(f *Facts) bool { return l(f) <= v }
			case ">":
				return func(f *Facts) bool { return l(f) > v }
			default:
				return func(f *Facts) bool { return l(f) >= v }
			}
		}
		switch op {
		case "<":
			return func(f *Facts) bool { return l(f) < r(f) }
		case "<=":
			return func(f *Facts) bool { return l(f) <= r(f) }
		case ">":
			return func(f *Facts) bool { return l(f) > r(f) }
		default:
			return func(f *Facts) bool { return l(f) >= r(f) }
		}
	}
	if l, r := fastStr(left), fastStr(right); l != nil && r != nil {
		switch op {
		case "<":
			return func(f *Facts) bool { return l(f) < r(f) }
		case "<=":
			return func(f *Facts) bool { return l(f) <= r(f) }
		case ">":
			return func(f *Facts) bool { return l(f) > r(f) }
		default:
			return func(f *Facts) bool { return l(f) >= r(f) }
		}
	}
	return nil
}

func fastIn(left, right ast.Node) boolFn {
	if name, ok := varName(right); ok {
		if l := fastStr(left); l != nil && name == "params" {
			return func(f *Facts) bool { _, ok := f.Params.Lookup(l(f)); return ok }
		}
		return nil
	}
	switch r := right.(type) {
	case *ast.ArrayNode:
		if l := fastStr(left); l != nil {
			set := make([]string, 0, len(r.Nodes))
			for _, e := range r.Nodes {
				s, ok := e.(*ast.StringNode)
				if !ok {
					return nil
				}
				set = append(set, s.Value)
			}
			if len(set) > smallSet {
				m := make(map[string]struct{}, len(set))
				for _, s := range set {
					m[s] = struct{}{}
				}
				return func(f *Facts) bool { _, ok := m[l(f)]; return ok }
			}
			return func(f *Facts) bool {
				v := l(f)
				for _, s := range set {
					if v == s {
						return true
					}
				}
				return false
			}
		}
		if l := fastInt(left); l != nil {
			set := make([]int, 0, len(r.Nodes))
			for _, e := range r.Nodes {
				i, ok := e.(*ast.IntegerNode)
				if !ok {
					return nil
				}
				set = append(set, i.Value)
			}
			return func(f *Facts) bool {
				v := l(f)
				for _, s := range set {
					if v == s {
						return true
					}
				}
				return false
			}
		}
	case *ast.BinaryNode:
		lo, ok1 := r.Left.(*ast.IntegerNode)
		hi, ok2 := r.Right.(*ast.IntegerNode)
		l := fastInt(left)
		if r.Operator == ".." && ok1 && ok2 && l != nil {
			a, b := lo.Value, hi.Value
			return func(f *Facts) bool { v := l(f); return v >= a && v <= b }
		}
	}
	return nil
}

// fastCidr compiles cidr(x, "prefix"); the one-argument form has already
// been patched to read ip.
func fastCidr(n *ast.CallNode) boolFn {
	if !isIdent(n.Callee, "cidr") || len(n.Arguments) != 2 {
		return nil
	}
	s, ok := n.Arguments[1].(*ast.StringNode)
	if !ok {
		return nil
	}
	p, err := netip.ParsePrefix(s.Value)
	if err != nil {
		return nil
	}
	if name, ok := varName(n.Arguments[0]); ok && name == "ip" {
		return func(f *Facts) bool { return p.Contains(clientAddr(f.IP)) }
	}
	x := fastStr(n.Arguments[0])
	if x == nil {
		return nil
	}
	return func(f *Facts) bool {
		a, err := netip.ParseAddr(x(f))
		return err == nil && p.Contains(clientAddr(a))
	}
}

func fastStr(n ast.Node) strFn {
	if s, ok := n.(*ast.StringNode); ok {
		v := s.Value
		return func(*Facts) string { return v }
	}
	if name, ok := varName(n); ok {
		switch name {
		case "country":
			return func(f *Facts) string { return f.Country }
		case "subdivision":
			return func(f *Facts) string { return f.Subdivision }
		case "city":
			return func(f *Facts) string { return f.City }
		case "device":
			return func(f *Facts) string { return f.Device }
		case "os":
			return func(f *Facts) string { return f.OS }
		case "browser":
			return func(f *Facts) string { return f.Browser }
		case "lang":
			return func(f *Facts) string { return f.Lang }
		case "edge_region":
			return func(f *Facts) string { return f.EdgeRegion }
		case "ip":
			return func(f *Facts) string { return ipString(f.IP) }
		}
		return nil
	}
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Optional || m.Method {
		return nil
	}
	if name, ok := varName(m.Node); !ok || name != "params" {
		return nil
	}
	if k, ok := m.Property.(*ast.StringNode); ok {
		key := k.Value
		return func(f *Facts) string { return f.Params.Get(key) }
	}
	if k := fastStr(m.Property); k != nil {
		return func(f *Facts) string { return f.Params.Get(k(f)) }
	}
	return nil
}

func fastInt(n ast.Node) intFn {
	switch n := n.(type) {
	case *ast.IntegerNode:
		v := n.Value
		return func(*Facts) int { return v }
	case *ast.UnaryNode:
		x := fastInt(n.Node)
		if x == nil {
			return nil
		}
		switch n.Operator {
		case "-":
			return func(f *Facts) int { return -x(f) }
		case "+":
			return x
		}
		return nil
	}
	if name, ok := varName(n); ok {
		switch name {
		case "hour":
			return func(f *Facts) int { return f.Hour }
		case "weekday":
			return func(f *Facts) int { return f.Weekday }
		}
	}
	return nil
}
