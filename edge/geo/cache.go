package geo

import (
	"math/bits"
	"sync/atomic"
)

// defaultCacheSize is the number of cache slots when Options.CacheSize is 0:
// enough for every record of a Country database (a few hundred) and for the
// hot cities of a City database, in 64 KiB of slots (plus 64 bytes per
// entry in use).
const defaultCacheSize = 8192

// locationCache maps record offsets to decoded Locations. It is two-way
// set-associative and lock-free: a slot holds a pointer to an immutable
// entry; a new record goes to the first slot of its set and pushes the older
// one to the second, so two hot records that collide can both stay. Offsets
// are only meaningful for one file, so each loaded file has its own cache and
// a reload starts cold.
type locationCache struct {
	slots []atomic.Pointer[cacheEntry]
	shift uint // 64 - log2(number of sets)
}

type cacheEntry struct {
	offset uintptr
	loc    Location
}

// newLocationCache returns a cache of at least size slots (rounded up to a
// power of two, at least 2), or nil for size <= 0, which caches nothing.
func newLocationCache(size int) *locationCache {
	if size <= 0 {
		return nil
	}
	n := max(2, 1<<bits.Len(uint(size-1)))
	return &locationCache{
		slots: make([]atomic.Pointer[cacheEntry], n),
		shift: uint(64 - bits.TrailingZeros(uint(n/2))),
	}
}

// set returns the two slots offset may live in.
func (c *locationCache) set(offset uintptr) []atomic.Pointer[cacheEntry] {
	// Fibonacci hashing spreads the offsets, which are clustered, over the
	// sets.
	i := 2 * ((uint64(offset) * 0x9E3779B97F4A7C15) >> c.shift)
	return c.slots[i : i+2 : i+2]
}

func (c *locationCache) get(offset uintptr) (Location, bool) {
	if c == nil {
		return Location{}, false
	}
	set := c.set(offset)
	if e := set[0].Load(); e != nil && e.offset == offset {
		return e.loc, true
	}
	if e := set[1].Load(); e != nil && e.offset == offset {
		return e.loc, true
	}
	return Location{}, false
}

// put adds a Location. Concurrent puts to one set may lose an entry or
// store one twice; both are harmless, the entries are immutable.
func (c *locationCache) put(offset uintptr, loc Location) {
	if c == nil {
		return
	}
	set := c.set(offset)
	if old := set[0].Load(); old != nil {
		set[1].Store(old)
	}
	set[0].Store(&cacheEntry{offset: offset, loc: loc})
}
