package catalog

import "unsafe"

// arena hands out strings from large byte chunks. A catalog's strings (codes,
// template data, rule names, expressions) then sit in a few hundred
// pointer-free allocations instead of millions of small ones: less per-object
// overhead, nothing for the GC to scan, and no heap fragmentation left behind
// by the parse's garbage.
//
// A chunk is never written again once a string points into it, so the
// strings are immutable like any other. An arena is used by one goroutine.
type arena struct {
	chunk []byte // the current chunk; len is the used part
}

// Chunks start small and double up to the full size, so a parse of one
// link (every API write, kept in the store's overlay until a compaction)
// holds a few KB, not a big catalog's chunk.
const (
	arenaChunk = 256 << 10 // bytes per chunk, at most
	arenaFirst = 4 << 10   // bytes of the first chunk
	arenaLarge = 4 << 10   // strings from this size get an allocation of their own
)

// add copies b into the arena.
func (a *arena) add(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) >= arenaLarge {
		return string(b)
	}
	if len(a.chunk)+len(b) > cap(a.chunk) {
		a.chunk = make([]byte, 0, min(max(2*cap(a.chunk), arenaFirst), arenaChunk))
	}
	n := len(a.chunk)
	a.chunk = append(a.chunk, b...)
	return unsafe.String(&a.chunk[n], len(b))
}

// addString copies s into the arena.
func (a *arena) addString(s string) string {
	return a.add(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// slab hands out pointers to values allocated a chunk at a time, for the
// catalog's rules, templates and rule lists.
type slab[T any] struct {
	chunk []T
}

// Values per chunk: the first holds slabFirst, each next one twice the
// last, up to slabChunk (as the arena's chunks grow).
const (
	slabChunk = 512
	slabFirst = 4
)

func (s *slab[T]) grow(n int) {
	s.chunk = make([]T, 0, max(n, min(max(2*cap(s.chunk), slabFirst), slabChunk)))
}

// alloc returns a pointer to a new zero T.
func (s *slab[T]) alloc() *T {
	if len(s.chunk) == cap(s.chunk) {
		s.grow(1)
	}
	s.chunk = s.chunk[:len(s.chunk)+1]
	return &s.chunk[len(s.chunk)-1]
}

// slice returns a new zero []T of length n with no spare capacity, so an
// append by a reader cannot write into a neighbour.
func (s *slab[T]) slice(n int) []T {
	if n == 0 {
		return nil
	}
	if n > slabChunk/4 {
		return make([]T, n)
	}
	if len(s.chunk)+n > cap(s.chunk) {
		s.grow(n)
	}
	m := len(s.chunk)
	s.chunk = s.chunk[:m+n]
	return s.chunk[m : m+n : m+n]
}
