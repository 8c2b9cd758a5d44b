package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"
)

// base is the store's entries as of its last compaction, read straight
// from the snapshot's bytes: no map, no object per entry. offs says where
// each entry starts, in code order (the snapshot is written sorted), and
// the index finds a code's entry in one slot read, as a parsed catalog's
// does. The served catalog reads its links from here too, compiling each
// the first time it is looked up (see lookup): a node opening ten million
// links does not build ten million links it may never route.
//
// Everything but links and the compiler is immutable once newBase returns.
type base struct {
	data  []byte // the snapshot, or an image of one in memory; never written
	offs  []int  // where each entry starts in data, in bytewise code order
	index index  // code → entry number, tombstones included
	live  int
	tombs int
	clock uint64 // the highest HLC of an entry

	// links holds each entry's link once compiled: gone for a tombstone
	// or a link that failed to compile (a bug: every entry was checked on
	// its way in), nil until first looked up. What is compiled stays.
	links []atomic.Pointer[Link]
	mu    sync.Mutex // serialises compiles: bld is not safe for concurrent use
	bld   *builder
	log   *slog.Logger
}

// gone marks a base entry that serves no link.
var gone = &Link{}

// newBase reads n entries from data[start:] (a snapshot's entries) and
// indexes them. It returns the offset just past them. Codes must be in
// strictly increasing order, as every snapshot is written, so a code twice
// is refused with the rest of the damage.
func newBase(data []byte, start int, n uint64, log *slog.Logger) (*base, int, error) {
	if n > uint64(len(data)-start) {
		return nil, 0, errors.New("bad entry count")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &base{data: data, offs: make([]int, n), links: make([]atomic.Pointer[Link], n), log: log}
	r := &reader{b: data[start:]}
	prev := ""
	for i := range b.offs {
		b.offs[i] = len(data) - len(r.b)
		code := r.view(r.uvarint())
		hlc := r.u64()
		r.bytes(r.uvarint()) // node
		ln := r.uvarint()
		if ln > 0 {
			r.bytes(ln - 1)
		}
		if r.err != nil {
			return nil, 0, r.err
		}
		if !validCode(code) {
			return nil, 0, fmt.Errorf("entry %d: bad code %q", i, code)
		}
		if i > 0 && code <= prev {
			return nil, 0, fmt.Errorf("entry %d: code %q out of order (after %q)", i, code, prev)
		}
		prev = code
		if ln == 0 {
			b.links[i].Store(gone)
			b.tombs++
		} else {
			b.live++
		}
		b.clock = max(b.clock, hlc)
	}
	b.index = newIndex(maphash.MakeSeed(), len(b.offs))
	b.index.fill(len(b.offs), b.code) // codes are unique: checked above
	return b, len(data) - len(r.b), nil
}

// emptyBase is the base of a store with no snapshot.
func emptyBase(log *slog.Logger) *base {
	b, _, _ := newBase(nil, 0, 0, log)
	return b
}

func (b *base) len() int { return len(b.offs) }

// code returns entry i's code, a view into data.
func (b *base) code(i int) string {
	r := reader{b: b.data[b.offs[i]:]}
	return r.view(r.uvarint())
}

// entry returns entry i: its code and version, its node and link views
// into data.
func (b *base) entry(i int) (string, entry) {
	r := reader{b: b.data[b.offs[i]:]}
	code := r.view(r.uvarint())
	e := entry{hlc: r.u64()}
	e.node = r.view(r.uvarint())
	if n := r.uvarint(); n > 0 {
		e.link = r.bytes(n - 1)
	}
	return code, e
}

// find returns the number of the entry with code, or -1.
func (b *base) find(code string) int { return b.index.find(code, b.code) }

// search returns the number of the first entry whose code is after after.
func (b *base) search(after string) int {
	return sort.Search(len(b.offs), func(i int) bool { return b.code(i) > after })
}

// lookup returns the link of code, compiled, or nil if the base has no
// live link with that code.
func (b *base) lookup(code string) *Link {
	i := b.find(code)
	if i < 0 {
		return nil
	}
	return b.link(i)
}

// link returns entry i's link, compiling it the first time, or nil for a
// tombstone.
func (b *base) link(i int) *Link {
	l := b.links[i].Load()
	if l == nil {
		l = b.compile(i)
	}
	if l == gone {
		return nil
	}
	return l
}

func (b *base) compile(i int) *Link {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l := b.links[i].Load(); l != nil {
		return l // compiled by another caller meanwhile
	}
	code, e := b.entry(i)
	l, err := b.build(code, e.link)
	if err != nil {
		b.log.Error("catalog: a stored link does not compile; it is not served", "code", code, "err", err)
		l = gone
	}
	b.links[i].Store(l)
	return l
}

// build checks and compiles one link's JSON, as Parse would, with the
// base's one builder, so links compiled one at a time share its arenas
// and caches instead of taking a parse's each.
func (b *base) build(code string, raw []byte) (l *Link, err error) {
	defer func() {
		if r := recover(); r != nil {
			l, err = nil, fmt.Errorf("internal error while compiling (please report): %v", r)
		}
	}()
	doc := make([]byte, 0, len(raw)+12)
	doc = append(append(append(doc, `{"links":[`...), raw...), "]}"...)
	p := &parse{
		src:  &source{data: unsafe.String(unsafe.SliceData(doc), len(doc))},
		errs: errorList{file: "(replicated catalog)", limit: maxErrors},
	}
	// A small batch: next would make one of linkChunk raw links. (More
	// than two links in raw panic, which is recovered as an error.)
	var rls [2]rawLink
	p.cur = &batch{raw: rls[:0]}
	p.batches = []*batch{p.cur}
	p.decodeJSON()
	if p.failed.Load() {
		return nil, p.errs.err()
	}
	if len(p.cur.raw) != 1 {
		return nil, errors.New("not one link")
	}
	if b.bld == nil {
		b.bld = newBuilder(p.src, b.index.seed)
	}
	b.bld.src = p.src
	l = new(Link)
	b.bld.build(&p.cur.raw[0], l)
	b.bld.src = nil // nothing built points into doc
	errs := b.bld.errs
	b.bld.errs = nil
	for _, e := range errs {
		p.errs.add(e)
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	if l.Code != code {
		return nil, fmt.Errorf("link code %q in the entry of %q", l.Code, code)
	}
	return l, nil
}

// carry moves the links old compiled to b where b holds the same version
// of the same code, so a compaction does not make every link pay its first
// compile again. (The overlay's links are not carried: each was built by
// its own parse, with arenas of its own, and compiles again densely here.)
func (b *base) carry(old *base) {
	for i := range old.links {
		l := old.links[i].Load()
		if l == nil || l == gone {
			continue
		}
		code, e := old.entry(i)
		if j := b.find(code); j >= 0 {
			c, ne := b.entry(j)
			if c == code && ne.hlc == e.hlc && ne.node == e.node && bytes.Equal(ne.link, e.link) {
				b.links[j].Store(l)
			}
		}
	}
}

// digest returns the digest's sum over every entry (for a snapshot in the
// first format, which does not keep it), on two goroutines.
func (b *base) digest() [4]uint64 {
	var sums [2][4]uint64
	var wg sync.WaitGroup
	half := len(b.offs) / 2
	for k, r := range [2][2]int{{0, half}, {half, len(b.offs)}} {
		wg.Go(func() {
			for i := r[0]; i < r[1]; i++ {
				code, e := b.entry(i)
				h := entryHash(code, e.hlc, e.node)
				for j := range h {
					sums[k][j] += h[j]
				}
			}
		})
	}
	wg.Wait()
	var sum [4]uint64
	for j := range sum {
		sum[j] = sums[0][j] + sums[1][j]
	}
	return sum
}
