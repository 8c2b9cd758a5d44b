package catalog

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// index maps link codes to link numbers. It is an open-addressing table with
// linear probing whose 16-byte slots hold the code's length and first
// inlineCode bytes next to the link number, so finding a short code (all
// real ones) reads one slot, usually one cache line, and never the link
// itself: a lookup in a big catalog costs one DRAM miss instead of the
// three of a map[string]*Link (bucket, key bytes, value). The table holds no
// pointers, so the GC does not scan it.
//
// The table is sized for a load of at most 3/4 and is immutable once built.
type index struct {
	seed  maphash.Seed
	slots []slot
}

// slot is one entry: a holds the link number + 1 in its low 32 bits (0 for
// an empty slot) and, above, the code's length and first 3 bytes; b holds
// the code's next 8 bytes.
type slot struct{ a, b uint64 }

const (
	inlineCode = 11
	slotNumber = 1<<32 - 1 // the link-number bits of slot.a
)

func newIndex(seed maphash.Seed, n int) index {
	return index{seed: seed, slots: make([]slot, n+n/3+1)}
}

// key packs code like a slot does, with no link number.
func key(code string) (a, b uint64) {
	var buf [16]byte
	buf[4] = byte(len(code))
	copy(buf[5:], code)
	return binary.LittleEndian.Uint64(buf[:8]), binary.LittleEndian.Uint64(buf[8:])
}

// home is where the probe sequence of a code with hash h starts. It grows
// with h, so inserting codes in the order of their hashes fills the table
// from start to end.
func (x *index) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(x.slots)))
	return int(hi)
}

// find returns the number of the link with the given code, or -1. full
// returns the code of link i, for codes longer than the slot holds.
func (x *index) find(code string, full func(i int) string) int {
	if len(x.slots) == 0 || len(code) > maxName {
		return -1
	}
	ka, kb := key(code)
	for i := x.home(maphash.String(x.seed, code)); ; {
		s := &x.slots[i]
		if s.a == 0 {
			return -1
		}
		if s.a>>32 == ka>>32 && s.b == kb {
			n := int(s.a&slotNumber) - 1
			if len(code) <= inlineCode || full(n) == code {
				return n
			}
		}
		if i++; i == len(x.slots) {
			i = 0
		}
	}
}

// insert adds the code of link e.n, or returns the link that already has
// it. Codes are at most maxName bytes.
func (x *index) insert(e *hashed, full func(i int) string) (prev int, dup bool) {
	for i := x.home(e.h); ; {
		s := &x.slots[i]
		if s.a == 0 {
			*s = slot{a: e.a | uint64(e.n+1), b: e.b}
			return 0, false
		}
		if s.a>>32 == e.a>>32 && s.b == e.b {
			p := int(s.a&slotNumber) - 1
			if e.a>>32&0xff <= inlineCode || full(p) == full(e.n) {
				return p, true
			}
		}
		if i++; i == len(x.slots) {
			i = 0
		}
	}
}

// hashed is what the index needs of a link's code: its hash and its slot
// form, which workers compute alongside the links so that building the
// index reads neither the links nor the codes.
type hashed struct {
	h, a, b uint64
	n       int
}

func hashCode(seed maphash.Seed, code string, n int) hashed {
	a, b := key(code)
	return hashed{h: maphash.String(seed, code), a: a, b: b, n: n}
}

// sortHashed orders hs by the top 16 bits of their hashes, stably, so
// inserting them in order walks the table once, and the first of two equal
// codes is still the one earlier in the file.
func sortHashed(hs []hashed) []hashed {
	var count [1 << 16]int
	for _, e := range hs {
		count[e.h>>48]++
	}
	sum := 0
	for i, c := range count {
		count[i] = sum
		sum += c
	}
	out := make([]hashed, len(hs))
	for _, e := range hs {
		out[count[e.h>>48]] = e
		count[e.h>>48]++
	}
	return out
}

// fill inserts the codes of links 0..n-1, which must be unique, grouped
// by the 4096th of the table their homes fall in, so the inserts of a
// group stay in a few cache-sized pieces of it instead of missing the
// cache each (at ten million codes). 4096 groups are few enough for the
// grouping's own writes to stay in cache. It holds 24 bytes per code
// meanwhile, half of what sortHashed takes.
func (x *index) fill(n int, code func(i int) string) {
	const bits = 12
	count := make([]int, 1<<bits)
	for i := range n {
		count[maphash.String(x.seed, code(i))>>(64-bits)]++
	}
	sum := 0
	for i, c := range count {
		count[i] = sum
		sum += c
	}
	type packed struct{ h, a, b uint64 } // a holds the link number + 1, as in a slot
	out := make([]packed, n)
	for i := range n {
		c := code(i)
		h := maphash.String(x.seed, c)
		a, b := key(c)
		out[count[h>>(64-bits)]] = packed{h: h, a: a | uint64(i+1), b: b}
		count[h>>(64-bits)]++
	}
	for _, p := range out {
		e := hashed{h: p.h, a: p.a &^ slotNumber, b: p.b, n: int(p.a&slotNumber) - 1}
		x.insert(&e, code)
	}
}
