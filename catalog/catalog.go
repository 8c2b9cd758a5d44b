package catalog

import (
	"fmt"
	"iter"
	"os"
)

// Catalog is one immutable snapshot of the links. It is safe for concurrent
// use; to change the catalog, parse a new one and swap the pointer.
type Catalog struct {
	name    string
	version string
	chunks  [][]Link // the links in file order, linkChunk to a chunk
	n       int      // links served: the base's, less those the overlay deletes, plus those it adds
	index   index

	// lazy, in a catalog a Store serves, holds the links instead of chunks
	// and index: the store's entries, each link compiled when first looked
	// up (base.go).
	lazy *base

	// over holds links changed since the chunks were built (a nil *Link:
	// deleted), so one change to a big catalog does not rebuild it. Lookup
	// reads it before the base; it is never written after the catalog is
	// made.
	over map[string]*Link
}

// Links are stored in chunks, each built by one worker of Parse as one
// batch, so no link is ever copied or moved after it is built.
const (
	linkChunkBits = 12
	linkChunk     = 1 << linkChunkBits
)

// link returns the i-th link in file order.
func (c *Catalog) link(i int) *Link { return &c.chunks[i>>linkChunkBits][i&(linkChunk-1)] }

// Load reads and parses the catalog file at path. A file that cannot be read
// yields an *fs.PathError; a bad catalog yields the errors of Parse.
func Load(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return Parse(path, data)
}

// Lookup returns the link with the given code, or nil. Codes are
// case-sensitive. A nil *Catalog has no links.
func (c *Catalog) Lookup(code string) *Link {
	if c == nil {
		return nil
	}
	if c.over != nil {
		if l, ok := c.over[code]; ok {
			return l
		}
	}
	if c.lazy != nil {
		return c.lazy.lookup(code)
	}
	if i := c.index.find(code, func(i int) string { return c.link(i).Code }); i >= 0 {
		return c.link(i)
	}
	return nil
}

// Len returns the number of links.
func (c *Catalog) Len() int {
	if c == nil {
		return 0
	}
	return c.n
}

// Version identifies the input: the first 12 hex digits of its SHA-256, so
// nodes that loaded the same bytes report the same version. For the catalog
// a Store serves: the first 12 hex digits of the store's digest, equal on
// nodes that hold the same entries.
func (c *Catalog) Version() string { return c.version }

// Name returns the name given to Parse (the path, for Load).
func (c *Catalog) Name() string { return c.name }

// Links yields the links in file order (in a catalog a Store serves: its
// entries' links in code order as of the last compaction, then those
// changed since; each is compiled if it was not yet).
func (c *Catalog) Links() iter.Seq[*Link] {
	return func(yield func(*Link) bool) {
		if c == nil {
			return
		}
		if b := c.lazy; b != nil {
			for i := range b.len() {
				if _, changed := c.over[b.code(i)]; changed {
					continue
				}
				if l := b.link(i); l != nil && !yield(l) {
					return
				}
			}
		}
		for _, chunk := range c.chunks {
			for i := range chunk {
				if _, changed := c.over[chunk[i].Code]; changed {
					continue
				}
				if !yield(&chunk[i]) {
					return
				}
			}
		}
		for _, l := range c.over {
			if l != nil && !yield(l) {
				return
			}
		}
	}
}

// with returns a catalog that serves c's links with changes applied (a nil
// *Link deletes the code). c is not modified; the new catalog shares its
// base.
func (c *Catalog) with(changes map[string]*Link, version string) *Catalog {
	nc := *c
	nc.version = version
	nc.over = make(map[string]*Link, len(c.over)+len(changes))
	for code, l := range c.over {
		nc.over[code] = l
	}
	for code, l := range changes {
		if c.has(code) {
			nc.n--
		}
		if l != nil {
			nc.n++
		}
		nc.over[code] = l
	}
	return &nc
}

// has reports whether c serves a link with code, without compiling it.
func (c *Catalog) has(code string) bool {
	if l, ok := c.over[code]; ok {
		return l != nil
	}
	if c.lazy != nil {
		i := c.lazy.find(code)
		return i >= 0 && c.lazy.links[i].Load() != gone
	}
	return c.Lookup(code) != nil
}

// overlaid returns how many changes the catalog holds on top of its base.
func (c *Catalog) overlaid() int { return len(c.over) }

// Link is one entry of the catalog. It is immutable; its exported fields are
// for reading and must not be modified (Params and Rules may be shared with
// other links).
type Link struct {
	Code   string   // [A-Za-z0-9_-]{1,64}
	Params []string // the query parameters a click records; without a list in the file, subid and subid1..subid4
	Rules  []*Rule  // in file order; the first that matches wins

	url      Template
	fallback *Template
	paused   bool
	redirect Redirect // how the link answers; rules may override it
}

// defaultParams are the parameters recorded for a link without a params
// list; every such link shares this slice (its capacity is its length, so an
// append copies).
var defaultParams = []string{"subid", "subid1", "subid2", "subid3", "subid4"}[:5:5]

// Paused reports whether the link is paused; the edge then sends users to
// Fallback instead of routing.
func (l *Link) Paused() bool { return l.paused }

// URL returns the link's default target, used when no rule matches.
func (l *Link) URL() *Template { return &l.url }

// Fallback returns the target for a paused link, or nil when it has none.
func (l *Link) Fallback() *Template { return l.fallback }

// Route picks the target for a request: the first rule whose expression holds
// decides, and a split chooses a branch by weight from rnd (the same rnd
// picks the same branch, and uniform rnd gives the weighted distribution).
// With no matching rule it returns the link's URL and rule "". The template is
// never nil. Route ignores Paused: the caller checks that first. A nil f is a
// request about which nothing is known.
//
// Route does not allocate for rules the closure compiler handles (see
// matcher.go); other expressions run on a pooled expr VM.
func (l *Link) Route(f *Facts, rnd uint64) (t *Template, rule string) {
	if f == nil {
		f = &noFacts
	}
	for _, r := range l.Rules {
		if !r.matches(f) {
			continue
		}
		if r.URL != nil {
			return r.URL, r.Name
		}
		return r.pick(rnd), r.Name
	}
	return &l.url, ""
}
