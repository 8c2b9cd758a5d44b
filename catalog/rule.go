package catalog

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Rule is one entry of a link's rules: when When holds, the request goes to
// URL, or to one of Split chosen by weight. A Rule is immutable; its exported
// fields are for tools and must not be modified.
type Rule struct {
	Name  string    // unique within the link; recorded in the click as "rule"
	When  string    // the expression as written; "" when the rule always matches
	URL   *Template // nil for a split
	Split []Target  // nil unless the rule splits traffic
	// Sticky splits draw from the user (Decide's user), not the click, so
	// a user keeps a branch.
	Sticky bool
	// Redirect is how a request this rule routes is answered; 0: the
	// link's.
	Redirect Redirect

	salt uint64 // a sticky split's: from the link code and rule name, equal on every node

	matcher
	total uint64 // sum of Split weights
}

// matcher is a compiled `when`. Rules with the same expression and the same
// recorded params share one.
type matcher struct {
	fast       boolFn      // the expression as Go closures; nil when it needs the VM
	prog       *vm.Program // the expression for the expr VM; nil without When
	needIP     bool        // prog reads ip
	needParams bool        // prog reads params
}

// Target is one branch of a split.
type Target struct {
	URL    *Template
	Weight int    // positive
	upTo   uint64 // cumulative weight, exclusive upper bound of the branch's draws
}

// matches reports whether the rule applies to f. An expression that fails at
// run time (only possible on the VM, e.g. a modulo by zero) does not match.
func (r *Rule) matches(f *Facts) bool {
	if r.fast != nil {
		return r.fast(f)
	}
	return r.runVM(f)
}

// pick maps rnd onto the cumulative weights. The multiply-high maps uniform
// 64-bit draws onto [0, total) with negligible bias and no division.
func (r *Rule) pick(rnd uint64) *Template {
	hi, _ := bits.Mul64(rnd, r.total)
	for i := range r.Split {
		if hi < r.Split[i].upTo {
			return r.Split[i].URL
		}
	}
	return r.Split[len(r.Split)-1].URL
}

// exprEnv declares the variables of `when` to the expr checker and carries
// them into the VM.
type exprEnv struct {
	Country     string            `expr:"country"`
	Subdivision string            `expr:"subdivision"`
	City        string            `expr:"city"`
	Device      string            `expr:"device"`
	OS          string            `expr:"os"`
	Browser     string            `expr:"browser"`
	Lang        string            `expr:"lang"`
	Bot         bool              `expr:"bot"`
	Params      map[string]string `expr:"params"`
	Hour        int               `expr:"hour"`
	Weekday     int               `expr:"weekday"`
	IP          string            `expr:"ip"`
	EdgeRegion  string            `expr:"edge_region"`
}

// vmState is what one VM evaluation needs, pooled so the VM's stack and the
// params map are reused.
type vmState struct {
	vm     vm.VM
	env    exprEnv
	params map[string]string
}

var vmPool = sync.Pool{New: func() any {
	return &vmState{params: make(map[string]string, maxParams)}
}}

func (r *Rule) runVM(f *Facts) bool {
	s := vmPool.Get().(*vmState)
	s.env = exprEnv{
		Country:     f.Country,
		Subdivision: f.Subdivision,
		City:        f.City,
		Device:      f.Device,
		OS:          f.OS,
		Browser:     f.Browser,
		Lang:        f.Lang,
		Bot:         f.Bot,
		Hour:        f.Hour,
		Weekday:     f.Weekday,
		EdgeRegion:  f.EdgeRegion,
	}
	if r.needIP {
		s.env.IP = ipString(f.IP)
	}
	if r.needParams {
		clear(s.params)
		for _, p := range f.Params {
			if _, dup := s.params[p.Name]; !dup {
				s.params[p.Name] = p.Value
			}
		}
		s.env.Params = s.params
	}
	out, err := s.vm.Run(r.prog, &s.env)
	s.env = exprEnv{}
	vmPool.Put(s)
	ok, _ := out.(bool)
	return err == nil && ok
}

// cidrPatcher turns cidr("10.0.0.0/8") into cidr(ip, "10.0.0.0/8"), so the
// VM needs one function, and a pure one.
type cidrPatcher struct{}

func (cidrPatcher) Visit(node *ast.Node) {
	c, ok := (*node).(*ast.CallNode)
	if !ok || len(c.Arguments) != 1 || !isIdent(c.Callee, "cidr") {
		return
	}
	ip := &ast.IdentifierNode{Value: "ip"}
	ip.SetLocation(c.Location())
	c.Arguments = []ast.Node{ip, c.Arguments[0]}
}

func isIdent(n ast.Node, name string) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == name
}

func cidrFunc(args ...any) (any, error) {
	s, _ := args[0].(string)
	p, _ := args[1].(string)
	prefix, err := netip.ParsePrefix(p)
	if err != nil {
		return nil, err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false, nil
	}
	return prefix.Contains(clientAddr(a)), nil
}

func exprOptions(optimize bool) []expr.Option {
	return []expr.Option{
		expr.Env(exprEnv{}),
		expr.AsBool(),
		expr.Function("cidr", cidrFunc, new(func(string, string) bool)),
		expr.Patch(cidrPatcher{}),
		expr.Optimize(optimize),
	}
}

// compileWhen compiles src for r. params is the link's recorded parameter
// list: a constant key of params that the link does not record is refused,
// since it could never be set.
func (r *Rule) compileWhen(src string, params []string) error {
	m, err := compileMatcher(src, params)
	if err != nil {
		return err
	}
	r.When, r.matcher = src, m
	return nil
}

func compileMatcher(src string, params []string) (matcher, error) {
	// The unoptimized tree keeps the shapes the closure compiler knows.
	plain, err := expr.Compile(src, exprOptions(false)...)
	if err != nil {
		return matcher{}, exprError(err)
	}
	tree := plain.Node()
	c := &treeCheck{src: src, params: params}
	ast.Walk(&tree, c)
	if c.err != nil {
		return matcher{}, c.err
	}
	m := matcher{fast: fastBool(tree), prog: plain, needIP: c.needIP, needParams: c.needParams}
	if m.fast == nil {
		// The VM will run it: give it the optimized program.
		if m.prog, err = expr.Compile(src, exprOptions(true)...); err != nil {
			return matcher{}, exprError(err)
		}
	}
	return m, nil
}

// exprError flattens expr's multi-line error into "message (line:col)".
func exprError(err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		if fe.Snippet == "" {
			return errors.New(fe.Message)
		}
		return fmt.Errorf("%s (%d:%d)", fe.Message, fe.Line, fe.Column+1)
	}
	return err
}

// treeCheck finds what expr's checker cannot know: params keys the link does
// not record and cidr prefixes that do not parse. It also notes which
// variables the VM must be given.
type treeCheck struct {
	src        string
	params     []string
	err        error
	needIP     bool
	needParams bool
}

func (c *treeCheck) Visit(node *ast.Node) {
	if c.err != nil {
		return
	}
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		switch n.Value {
		case "ip":
			c.needIP = true
		case "params":
			c.needParams = true
		case "$env":
			c.needIP, c.needParams = true, true
		}
	case *ast.MemberNode:
		if name, ok := varName(n.Node); ok && name == "params" {
			if k, ok := n.Property.(*ast.StringNode); ok {
				c.checkParam(k.Value, n)
			}
		}
	case *ast.BinaryNode:
		if name, ok := varName(n.Right); ok && name == "params" && (n.Operator == "in") {
			if k, ok := n.Left.(*ast.StringNode); ok {
				c.checkParam(k.Value, n)
			}
		}
	case *ast.CallNode:
		if !isIdent(n.Callee, "cidr") || len(n.Arguments) == 0 {
			return
		}
		last := n.Arguments[len(n.Arguments)-1]
		s, ok := last.(*ast.StringNode)
		if !ok {
			c.fail(last, "cidr: the prefix must be a string literal")
			return
		}
		if _, err := netip.ParsePrefix(s.Value); err != nil {
			c.fail(last, fmt.Sprintf("cidr: bad prefix %q", s.Value))
		}
	}
}

func (c *treeCheck) checkParam(key string, n ast.Node) {
	if !slices.Contains(c.params, key) {
		c.fail(n, fmt.Sprintf("params[%q]: the link does not record parameter %q", key, key))
	}
}

func (c *treeCheck) fail(n ast.Node, msg string) {
	line, col := 1, 1
	from := n.Location().From
	for i, r := range []rune(c.src) {
		if i == from {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	c.err = fmt.Errorf("%s (%d:%d)", msg, line, col)
}
