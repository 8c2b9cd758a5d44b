package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/goccy/go-yaml/ast"
)

const (
	maxExpansion      = 10        // how much YAML aliases may multiply the file's nodes
	minExpansionCheck = 100_000   // expanded node count below which any ratio is fine
	maxParams         = 16        // per link, as the click caps them
	maxWeight         = 1_000_000 // per split branch; keeps sums far from overflow
	maxName           = 64        // codes, rule names, parameter names

	// freeAfter is the input size from which Parse returns the memory its
	// garbage held to the OS before it returns: a big catalog's parse
	// allocates several times the catalog, and a node should not keep that
	// resident until the scavenger gets to it.
	freeAfter = 32 << 20
)

// The file format. Decoding is strict: an unknown key is an error.
type (
	fileLink struct {
		Code        string     `yaml:"code"`
		URL         string     `yaml:"url"`
		Status      string     `yaml:"status"`
		FallbackURL string     `yaml:"fallback_url"`
		Params      *[]string  `yaml:"params"`
		Rules       []fileRule `yaml:"rules"`
		Redirect    any        `yaml:"redirect"`
	}
	fileRule struct {
		Name     string        `yaml:"name"`
		When     *string       `yaml:"when"`
		URL      string        `yaml:"url"`
		Split    *[]fileTarget `yaml:"split"`
		Sticky   bool          `yaml:"sticky"`
		Redirect any           `yaml:"redirect"`
	}
	fileTarget struct {
		URL    string `yaml:"url"`
		Weight any    `yaml:"weight"`
	}
)

// Parse parses a catalog file. name is used in errors (the file name). All
// problems are reported at once, joined and sorted by position (at most 20);
// each is an *Error wrapping ErrInvalid.
//
// A file whose first byte other than white space (and a UTF-8 byte order
// mark) is '{' is read as JSON, which is YAML too, by a faster decoder; see
// the package documentation. Parse does not keep data, and data must not
// change while Parse runs.
func Parse(name string, data []byte) (c *Catalog, err error) {
	return parseFile(name, data, maxErrors)
}

// Validate checks a catalog file as Parse does and returns every problem
// (not only the first 20), for `clickedge links validate`.
func Validate(name string, data []byte) error {
	_, err := parseFile(name, data, 0)
	return err
}

// parseFile is Parse reporting at most limit problems (0: all).
func parseFile(name string, data []byte, limit int) (c *Catalog, err error) {
	// A reload must never take the node down: a panic in a library on odd
	// input becomes an error, and the last good catalog keeps serving.
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, &Error{File: name, Msg: fmt.Sprintf("internal error while parsing (please report): %v", r)}
		}
	}()
	p := &parse{
		src:  &source{data: unsafe.String(unsafe.SliceData(data), len(data))},
		seed: maphash.MakeSeed(),
		errs: errorList{file: name, limit: limit},
	}
	defer p.stop()
	// The version's hash of a big file takes a while: it runs alongside.
	var sum [sha256.Size]byte
	var hashed sync.WaitGroup
	defer hashed.Wait() // data is the caller's again once Parse returns
	if len(data) >= 1<<20 {
		hashed.Go(func() { sum = sha256.Sum256(data) })
	} else {
		sum = sha256.Sum256(data)
	}
	if isJSON(data) {
		p.decodeJSON()
	} else {
		p.decodeYAML()
	}
	c, err = p.finish()
	if err != nil {
		return nil, err
	}
	c.name = name
	hashed.Wait()
	c.version = hex.EncodeToString(sum[:6])
	if len(data) >= freeAfter {
		debug.FreeOSMemory()
	}
	return c, nil
}

// isJSON reports whether data is to be read as JSON: its first byte other
// than white space or a byte order mark opens an object.
func isJSON(data []byte) bool {
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
		case '{':
			return true
		default:
			return i == 0 && len(data) >= 3 && string(data[:3]) == bom && isJSON(data[3:])
		}
	}
	return false
}

const bom = "\uFEFF"

// rawLink is one link as decoded from the file, before it is checked.
type rawLink struct {
	fl    fileLink
	where where
	i     int      // the link's number in the file, from 0
	errs  []*Error // decoding problems, reported before the checks' own
	skip  bool     // decoding failed: report errs and check nothing
	name  string   // the label, once made
}

// label names the link in errors: `link "code"` when the code as written is
// usable, else `link #n`. For YAML, n is the link's node: a code YAML reads
// as a number does not count as written.
func (rl *rawLink) label(n ast.Node) string {
	if rl.name == "" {
		code := rl.fl.Code
		if n != nil {
			code = scalar(lookup(n, "code"))
		}
		rl.name = fmt.Sprintf("link #%d", rl.i+1)
		if validCode(code) {
			rl.name = fmt.Sprintf("link %q", code)
		}
	}
	return rl.name
}

// where locates a link in the file, to place errors.
type where struct {
	node ast.Node // the link's YAML node; nil for a link the JSON decoder read
	off  int      // JSON: the offset in the file of the link's value
	// line and col shift the positions in node: a JSON link decoded the
	// YAML way was parsed on its own, so its first line starts at col.
	line, col int
}

// source is the input of one Parse.
type source struct {
	data      string // the input; nothing of the catalog points into it
	linesOnce sync.Once
	lines     []int // offsets where lines start; built when first needed
}

// pos returns the line and column of the node at path under the link at w,
// or of the nearest node on the path that exists; a mapping is placed at
// its first key.
func (s *source) pos(w *where, path ...any) (line, col int) {
	if w.node == nil {
		return s.lineCol(jsonLookup(s.data, w.off, path...))
	}
	line, col = pos(lookup(w.node, path...))
	return w.shift(line, col)
}

func (w *where) shift(line, col int) (int, int) {
	if line == 1 {
		col += w.col
	}
	if line > 0 {
		line += w.line
	}
	return line, col
}

// lineCol turns an offset into a 1-based line and column. Columns count
// characters, as YAML's do; lines end at LF, CRLF or a lone CR.
func (s *source) lineCol(off int) (line, col int) {
	s.linesOnce.Do(func() {
		s.lines = []int{0}
		for i := 0; i < len(s.data); i++ {
			switch s.data[i] {
			case '\n':
				s.lines = append(s.lines, i+1)
			case '\r':
				if i+1 == len(s.data) || s.data[i+1] != '\n' {
					s.lines = append(s.lines, i+1)
				}
			}
		}
	})
	n := sort.SearchInts(s.lines, off+1) // lines[n-1] <= off < lines[n]
	start := s.lines[n-1]
	if start == 0 && len(s.data) >= len(bom) && s.data[:len(bom)] == bom {
		start = len(bom)
	}
	return n, 1 + utf8.RuneCountInString(s.data[start:max(start, off)])
}

// parse is the state of one Parse: the decoder (the calling goroutine)
// fills batches of raw links, and workers check and build them, each into
// its own chunk of the catalog.
type parse struct {
	src     *source
	seed    maphash.Seed // the index's
	errs    errorList
	failed  atomic.Bool // a fatal problem: errs says which, and nothing else counts
	batches []*batch
	cur     *batch

	work    chan *batch
	free    chan []rawLink // built batches' raw links, for the decoder to reuse
	workers sync.WaitGroup

	yaml *yamlDecoder // for JSON links read the YAML way
}

// batch is up to linkChunk consecutive links.
type batch struct {
	first  int // the number of its first link
	raw    []rawLink
	links  []Link
	wheres []where
	codes  []hashed // the valid codes, for the index
	errs   []*Error
}

// fatal records a problem after which nothing else is checked (syntax, an
// unknown top-level key): the file is refused with it alone.
func (p *parse) fatal(e *Error) {
	p.errs.add(e)
	p.failed.Store(true)
}

// next returns the raw link to decode the next link of the file into.
func (p *parse) next() *rawLink {
	if p.cur == nil || len(p.cur.raw) == linkChunk {
		if p.cur != nil {
			p.dispatch(p.cur)
		}
		first := len(p.batches) * linkChunk
		var raw []rawLink
		select {
		case raw = <-p.free:
		default:
			raw = make([]rawLink, 0, linkChunk)
		}
		p.cur = &batch{first: first, raw: raw}
		p.batches = append(p.batches, p.cur)
	}
	p.cur.raw = p.cur.raw[:len(p.cur.raw)+1]
	rl := &p.cur.raw[len(p.cur.raw)-1]
	rl.i = p.cur.first + len(p.cur.raw) - 1
	return rl
}

// dispatch hands a full batch to the workers, starting them on the first.
func (p *parse) dispatch(b *batch) {
	if p.work == nil {
		n := runtime.GOMAXPROCS(0)
		p.work = make(chan *batch, n)
		p.free = make(chan []rawLink, n+1)
		for range n {
			p.workers.Add(1)
			go func() {
				defer p.workers.Done()
				bld := newBuilder(p.src, p.seed)
				for b := range p.work {
					if p.failed.Load() {
						continue
					}
					raw := b.raw
					bld.buildBatch(b)
					clear(raw)
					select {
					case p.free <- raw[:0]:
					default:
					}
				}
			}()
		}
	}
	p.work <- b
}

// stop ends the workers and waits for them; safe to call twice.
func (p *parse) stop() {
	if p.work != nil {
		close(p.work)
		p.workers.Wait()
		p.work = nil
	}
}

// finish builds the last batch, waits for the workers, indexes the codes
// and returns the catalog or every problem found.
func (p *parse) finish() (*Catalog, error) {
	if p.failed.Load() {
		return nil, p.errs.err()
	}
	if b := p.cur; b != nil {
		if p.work == nil {
			newBuilder(p.src, p.seed).buildBatch(b) // a small catalog: no goroutines
		} else {
			p.dispatch(b)
		}
	}
	p.stop()
	if p.failed.Load() { // a worker cannot fail, but the decoder may have after its last dispatch
		return nil, p.errs.err()
	}
	c := &Catalog{chunks: make([][]Link, len(p.batches))}
	for i, b := range p.batches {
		c.chunks[i] = b.links
		c.n += len(b.links)
		for _, e := range b.errs {
			p.errs.add(e)
		}
	}

	// Duplicate codes: the index finds them as it is built. Links with
	// other problems take part, so each duplicate is reported once.
	hs := make([]hashed, 0, c.n)
	for _, b := range p.batches {
		hs = append(hs, b.codes...)
	}
	if len(hs) > linkChunk {
		hs = sortHashed(hs)
	}
	c.index = newIndex(p.seed, c.n)
	code := func(i int) string { return c.link(i).Code }
	for k := range hs {
		i := hs[k].n
		if first, dup := c.index.insert(&hs[k], code); dup {
			l := c.link(i)
			w1, w2 := p.where(first), p.where(i)
			firstLine, _ := p.src.pos(w1, "code")
			line, col := p.src.pos(w2, "code")
			p.errs.add(&Error{Line: line, Column: col, Link: fmt.Sprintf("link %q", l.Code), Field: "code",
				Msg: fmt.Sprintf("duplicate: already used at line %d", firstLine)})
		}
	}
	p.batches, p.cur = nil, nil // the raw links' places: YAML nodes, the whole tree
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *parse) where(i int) *where {
	return &p.batches[i>>linkChunkBits].wheres[i&(linkChunk-1)]
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
