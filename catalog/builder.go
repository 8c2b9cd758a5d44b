package catalog

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
)

// builder checks decoded links and builds them into their compact form:
// strings in an arena, rules and templates in slabs, identical templates,
// parameter lists, rule names and expressions shared. Each worker of Parse
// has its own, so nothing in it is locked; what it builds is shared with
// the other workers' only through the finished catalog.
type builder struct {
	src *source

	arena     arena
	rules     slab[Rule]
	rulePtrs  slab[*Rule]
	templates slab[Template]
	targets   slab[Target]

	tc       tplCompiler
	seed     maphash.Seed       // the template cache's
	codeSeed maphash.Seed       // the index's
	tcache   [tplCache]tplEntry // recently built templates, by source

	paramLists map[string][]string  // Link.Params, by the names joined
	tplParams  map[string]*[]string // Template.params, the same way
	lastParams []string             // the last of each, which the next link likely repeats
	lastTP     *[]string
	strs       map[string]string   // rule names
	whens      map[string]compiled // by expression and params
	key        []byte

	errs []*Error
}

// tplCache is the number of templates a builder remembers. Catalogs repeat
// a template across many links (one advertiser's landing page); a small
// direct-mapped cache catches that without the cost of a map of every
// template when they are all different.
const tplCache = 1024

type tplEntry struct {
	src  string // the source, pointing into data
	data string
	ps   *[]string
}

type compiled struct {
	when string // the expression, in the arena
	m    matcher
	err  error
}

func newBuilder(src *source, codeSeed maphash.Seed) *builder {
	return &builder{
		src:        src,
		codeSeed:   codeSeed,
		seed:       maphash.MakeSeed(),
		paramLists: make(map[string][]string),
		tplParams:  make(map[string]*[]string),
		strs:       make(map[string]string),
		whens:      make(map[string]compiled),
	}
}

// buildBatch builds every link of b into b.links and its problems into
// b.errs, and lets go of the raw links.
func (b *builder) buildBatch(bt *batch) {
	bt.links = make([]Link, len(bt.raw))
	bt.wheres = make([]where, len(bt.raw))
	bt.codes = make([]hashed, 0, len(bt.raw))
	for i := range bt.raw {
		l := &bt.links[i]
		b.build(&bt.raw[i], l)
		bt.wheres[i] = bt.raw[i].where
		if l.Code != "" {
			bt.codes = append(bt.codes, hashCode(b.codeSeed, l.Code, bt.first+i))
		}
	}
	bt.errs, b.errs = b.errs, nil
	bt.raw = nil
}

// build checks rl and builds it into l. A link with problems is left
// incomplete; its code is set whenever it is valid, for duplicate checks.
func (b *builder) build(rl *rawLink, l *Link) {
	fl := &rl.fl
	b.errs = append(b.errs, rl.errs...)
	if rl.skip {
		return
	}
	fail := func(rule, field, msg string, path ...any) {
		line, col := b.src.pos(&rl.where, path...)
		b.errs = append(b.errs, &Error{Line: line, Column: col, Link: rl.label(rl.where.node), Rule: rule, Field: field, Path: fieldPath(path...), Msg: msg})
	}
	// YAML reads code: 007 as the number 7; a link must keep the code ops wrote.
	verbatim := func(rule, field, decoded string, path ...any) {
		if rl.where.node == nil { // JSON: a string field only takes a string
			return
		}
		if text, ok := yamlVerbatim(rl.where.node, path...); ok && text != decoded {
			fail(rule, field, fmt.Sprintf("%s is read by YAML as the number %s: quote it", text, decoded), path...)
		}
	}
	verbatim("", "code", fl.Code, "code")

	switch {
	case fl.Code == "":
		fail("", "code", "missing")
	case !validCode(fl.Code):
		fail("", "code", fmt.Sprintf("%q: must match [A-Za-z0-9_-]{1,64}", fl.Code), "code")
	default:
		l.Code = b.arena.addString(fl.Code)
	}

	switch fl.Status {
	case "", "active":
	case "paused":
		l.paused = true
	default:
		fail("", "status", fmt.Sprintf("%q: must be active or paused", fl.Status), "status")
	}

	if rd, err := parseRedirect(fl.Redirect); err != nil {
		fail("", "redirect", err.Error(), "redirect")
	} else {
		l.redirect = rd
	}

	l.Params = defaultParams
	if fl.Params != nil {
		ps := *fl.Params
		if len(ps) > maxParams {
			fail("", "params", fmt.Sprintf("%d parameters: at most %d", len(ps), maxParams), "params")
		}
		for j, name := range ps {
			if rl.where.node != nil {
				verbatim("", fmt.Sprintf("params[%d]", j), name, "params", j)
			}
			switch {
			case !validParam(name):
				fail("", fmt.Sprintf("params[%d]", j), fmt.Sprintf("%q: parameter names are [A-Za-z0-9_.-]{1,64}", name), "params", j)
			case slices.Index(ps, name) < j:
				fail("", fmt.Sprintf("params[%d]", j), fmt.Sprintf("%q: listed twice", name), "params", j)
			}
		}
		l.Params = b.paramList(ps)
	}

	if err := b.template(&l.url, fl.URL, fl.Code, l.Params); err != nil {
		fail("", "url", err.Error(), "url")
	}
	if fl.FallbackURL != "" {
		l.fallback = b.templates.alloc()
		if err := b.template(l.fallback, fl.FallbackURL, fl.Code, l.Params); err != nil {
			fail("", "fallback_url", err.Error(), "fallback_url")
		}
	}

	if len(fl.Rules) > 0 {
		l.Rules = b.rulePtrs.slice(len(fl.Rules))
	}
	catchAll := ""
	for j := range fl.Rules {
		fr := &fl.Rules[j]
		rlabel := func() string {
			if fr.Name != "" {
				return fmt.Sprintf("rule %q", fr.Name)
			}
			return fmt.Sprintf("rule #%d", j+1)
		}
		rfail := func(field, msg string, path ...any) {
			fail(rlabel(), field, msg, append([]any{"rules", j}, path...)...)
		}
		r := b.rules.alloc()
		l.Rules[j] = r
		r.Name = b.str(fr.Name)
		if rl.where.node != nil {
			verbatim(rlabel(), "name", fr.Name, "rules", j, "name")
		}
		switch {
		case fr.Name == "":
			rfail("name", "missing")
		case !validParam(fr.Name):
			rfail("name", "must match [A-Za-z0-9_.-]{1,64}", "name")
		case slices.ContainsFunc(l.Rules[:j], func(o *Rule) bool { return o.Name == fr.Name }):
			rfail("name", "duplicate rule name in this link", "name")
		}
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
			c := b.when(*fr.When, l.Params)
			r.When, r.matcher = c.when, c.m
			if c.err != nil {
				rfail("when", c.err.Error(), "when")
			}
		}

		if rd, err := parseRedirect(fr.Redirect); err != nil {
			rfail("redirect", err.Error(), "redirect")
		} else {
			r.Redirect = rd
		}
		if fr.Sticky {
			if fr.Split == nil {
				rfail("sticky", "only a split can be sticky", "sticky")
			}
			r.Sticky, r.salt = true, stickySalt(fl.Code, fr.Name)
		}

		switch {
		case fr.URL != "" && fr.Split != nil:
			rfail("", "has both url and split: want one")
		case fr.URL == "" && fr.Split == nil:
			rfail("", "has neither url nor split: want one")
		case fr.URL != "":
			r.URL = b.templates.alloc()
			if err := b.template(r.URL, fr.URL, fl.Code, l.Params); err != nil {
				rfail("url", err.Error(), "url")
			}
		case len(*fr.Split) == 0:
			rfail("split", "needs at least one entry", "split")
		default:
			r.Split = b.targets.slice(len(*fr.Split))
			for k, ft := range *fr.Split {
				t := &r.Split[k]
				t.URL = b.templates.alloc()
				if err := b.template(t.URL, ft.URL, fl.Code, l.Params); err != nil {
					rfail(fmt.Sprintf("split[%d].url", k), err.Error(), "split", k, "url")
				}
				var err error
				if t.Weight, err = weight(ft.Weight); err != nil {
					rfail(fmt.Sprintf("split[%d].weight", k), err.Error(), "split", k, "weight")
				}
				r.total += uint64(t.Weight)
				t.upTo = r.total
			}
		}
	}
}

// template compiles src into t, sharing the data of an identical template
// built before.
func (b *builder) template(t *Template, src, code string, params []string) error {
	e := &b.tcache[maphash.String(b.seed, src)&(tplCache-1)]
	if e.src == src && src != "" && paramsRecorded(e.ps, params) {
		t.data, t.params = e.data, e.ps
		return nil
	}
	if err := b.tc.compile(src, code, params); err != nil {
		return err
	}
	t.data = b.arena.add(b.tc.data)
	t.params = b.tplParamList(b.tc.params)
	if !t.Uses(MacroLink) { // the data holds the code: only this link's
		*e = tplEntry{src: t.String(), data: t.data, ps: t.params}
	}
	return nil
}

// paramsRecorded reports whether a link recording params may use a template naming
// ps: compiling would refuse a name it does not record, with the error
// only a compile can give.
func paramsRecorded(ps *[]string, params []string) bool {
	if ps == nil {
		return true
	}
	for _, p := range *ps {
		if !slices.Contains(params, p) {
			return false
		}
	}
	return true
}

// paramList returns a link's parameter list, shared with every link that
// lists the same names.
func (b *builder) paramList(ps []string) []string {
	if len(ps) == 0 {
		return []string{}
	}
	if b.lastParams != nil && slices.Equal(b.lastParams, ps) {
		return b.lastParams
	}
	b.lastParams = b.paramListSlow(ps)
	return b.lastParams
}

func (b *builder) paramListSlow(ps []string) []string {
	b.key = b.key[:0]
	for _, p := range ps {
		b.key = append(append(b.key, p...), 0)
	}
	if l, ok := b.paramLists[string(b.key)]; ok {
		return l
	}
	l := make([]string, len(ps))
	for i, p := range ps {
		l[i] = b.str(p)
	}
	b.paramLists[string(b.key)] = l
	return l
}

func (b *builder) tplParamList(ps []string) *[]string {
	if len(ps) == 0 {
		return nil
	}
	if b.lastTP != nil && slices.Equal(*b.lastTP, ps) {
		return b.lastTP
	}
	b.lastTP = b.tplParamListSlow(ps)
	return b.lastTP
}

func (b *builder) tplParamListSlow(ps []string) *[]string {
	b.key = b.key[:0]
	for _, p := range ps {
		b.key = append(append(b.key, p...), 0)
	}
	if l, ok := b.tplParams[string(b.key)]; ok {
		return l
	}
	l := make([]string, len(ps))
	for i, p := range ps {
		l[i] = b.str(p)
	}
	b.tplParams[string(b.key)] = &l
	return &l
}

// str returns s from the arena, once per distinct string: rule and
// parameter names repeat across links.
func (b *builder) str(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := b.strs[s]; ok {
		return v
	}
	v := b.arena.addString(s)
	b.strs[v] = v
	return v
}

// when compiles a rule's expression for a link recording params, once per
// distinct pair: catalogs repeat the same conditions across many links.
func (b *builder) when(src string, params []string) compiled {
	b.key = append(b.key[:0], src...)
	for _, p := range params {
		b.key = append(append(b.key, 0), p...)
	}
	if c, ok := b.whens[string(b.key)]; ok {
		return c
	}
	c := compiled{when: b.arena.addString(src)}
	c.m, c.err = compileMatcher(c.when, params)
	b.whens[string(b.key)] = c
	return c
}
