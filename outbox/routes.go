package outbox

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Routes: what is the same for every record of one kind from one node
// (exchange, routing key, headers) is stored once, not in every record.
//
// The routes bucket maps a route id (4 bytes, big-endian, from 1) to a
// CRC-32C of key and route, then the encoded route (record.go). A
// version-3 record names its route by id. Routes are interned by the
// encoder: the table maps a route's bytes to its id, is loaded at Open and
// grows as new routes are appended. A new route is written by the writer
// in the transaction that commits the first record naming it, so a
// committed record's route is always committed: a crash cannot leave a
// record whose route is missing. An id given out for a record that never
// committed (a failed commit, then a crash) is simply never written; ids
// are not reused within a process, and a new process starts above every
// id in the file.
//
// Routes are never deleted: their count is bounded by maxRoutes, and a
// route beyond it, or longer than maxRouteBytes, is stored inline in the
// record (route id 0), so a stream of distinct routing keys cannot grow
// the table or the bucket without limit. Their bytes are not counted in
// Options.MaxBytes.

var bucketRoutes = []byte("routes")

const (
	// maxRoutes bounds the route table. A node has a handful of routes
	// (clicks, actions, links, hand-offs from a few peers); thousands is
	// room for every region's peers and still a few hundred KiB.
	maxRoutes = 4096
	// maxRouteBytes keeps an oversized route out of the table.
	maxRouteBytes = 1024
	// maxRouteID is the largest id a record may name.
	maxRouteID = 1<<32 - 1
)

// storedRoute is one interned route, decoded once. (The forwarder's
// route is only its exchange and routing key.)
type storedRoute struct {
	exchange, routingKey string
	headers              []Header
	enc                  string // the encoded route
}

// routeTable is the in-memory copy of the routes bucket plus the routes
// given out since Open. Safe for concurrent use.
//
// Every Append looks its route up, so reads take no lock: they load an
// immutable snapshot. A new route (a handful in a node's life, at most
// maxRoutes) copies the snapshot under mu and publishes the copy.
type routeTable struct {
	snap atomic.Pointer[routeSnap]
	mu   sync.Mutex // serialises writers of snap
}

// routeSnap is one immutable state of a routeTable.
type routeSnap struct {
	ids  map[string]uint32 // encoded route → id
	byID map[uint32]*storedRoute
	next uint32
	full bool // maxRoutes reached: new routes go inline
}

func newRouteTable() *routeTable {
	t := &routeTable{}
	t.snap.Store(&routeSnap{ids: map[string]uint32{}, byID: map[uint32]*storedRoute{}, next: 1})
	return t
}

// lookup returns the route with id, or nil. t may be nil.
func (t *routeTable) lookup(id uint64) *storedRoute {
	if t == nil || id > maxRouteID {
		return nil
	}
	return t.snap.Load().byID[uint32(id)]
}

// intern returns the id of the encoded route enc, giving it a new one if
// it has none; 0 means "store it inline" (the table is full, or enc too
// long). enc is not kept.
func (t *routeTable) intern(enc []byte) uint32 {
	if len(enc) > maxRouteBytes {
		return 0
	}
	sn := t.snap.Load()
	if id := sn.ids[string(enc)]; id != 0 || sn.full {
		return id
	}
	r, err := parseRoute(enc)
	if err != nil {
		return 0 // cannot happen: appendRoute made it
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sn = t.snap.Load()
	if id := sn.ids[r.enc]; id != 0 || sn.full {
		return id
	}
	if len(sn.byID) >= maxRoutes || sn.next == 0 {
		c := *sn
		c.full = true
		t.snap.Store(&c)
		return 0
	}
	id := sn.next
	t.add(id, r)
	return id
}

// add publishes a copy of the table with r under id. t.mu is held (or t
// not yet shared).
func (t *routeTable) add(id uint32, r *storedRoute) {
	old := t.snap.Load()
	sn := &routeSnap{
		ids:  make(map[string]uint32, len(old.ids)+1),
		byID: make(map[uint32]*storedRoute, len(old.byID)+1),
		next: old.next,
	}
	for k, v := range old.ids {
		sn.ids[k] = v
	}
	for k, v := range old.byID {
		sn.byID[k] = v
	}
	sn.ids[r.enc] = id
	sn.byID[id] = r
	if id >= sn.next {
		sn.next = id + 1
	}
	sn.full = len(sn.byID) >= maxRoutes
	t.snap.Store(sn)
}

// load reads the routes bucket (nil in a file older than format 3).
func (t *routeTable) load(b *bolt.Bucket) error {
	if b == nil {
		return nil
	}
	// t is not shared yet: fill one snapshot in place rather than copy it
	// per route.
	sn := t.snap.Load()
	err := b.ForEach(func(k, v []byte) error {
		id, r, err := decodeRouteEntry(k, v)
		if err != nil {
			return err
		}
		sn.ids[r.enc] = id
		sn.byID[id] = r
		if id >= sn.next {
			sn.next = id + 1
		}
		return nil
	})
	sn.full = len(sn.byID) >= maxRoutes
	return err
}

// put writes the route id into the routes bucket.
func (t *routeTable) put(b *bolt.Bucket, id uint32) error {
	r := t.lookup(uint64(id))
	if r == nil {
		return fmt.Errorf("outbox: route %d is not in the table", id)
	}
	k, v := routeEntry(id, r.enc)
	return b.Put(k, v)
}

// routeKey is route id's key in the routes bucket.
func routeKey(id uint32) []byte { return binary.BigEndian.AppendUint32(nil, id) }

// routeEntry returns the key and value of route id in the routes bucket.
func routeEntry(id uint32, enc string) (k, v []byte) {
	k = routeKey(id)
	v = make([]byte, 4, 4+len(enc))
	v = append(v, enc...)
	binary.BigEndian.PutUint32(v, routeChecksum(k, v[4:]))
	return k, v
}

func routeChecksum(k, enc []byte) uint32 {
	return crc32.Update(crc32.Checksum(k, castagnoli), castagnoli, enc)
}

// decodeRouteEntry checks and decodes an element of the routes bucket.
func decodeRouteEntry(k, v []byte) (uint32, *storedRoute, error) {
	if len(k) != 4 || len(v) < 4 {
		return 0, nil, fmt.Errorf("routes: entry %x has a %d-byte key and a %d-byte value", k, len(k), len(v))
	}
	id := binary.BigEndian.Uint32(k)
	if id == 0 {
		return 0, nil, fmt.Errorf("routes: route id 0 is reserved for inline routes")
	}
	if want, got := binary.BigEndian.Uint32(v), routeChecksum(k, v[4:]); want != got {
		return 0, nil, fmt.Errorf("routes: route %d fails its checksum", id)
	}
	r, err := parseRoute(v[4:])
	if err != nil {
		return 0, nil, fmt.Errorf("routes: route %d: %w", id, err)
	}
	return id, r, nil
}

// parseRoute decodes an encoded route; nothing may follow it.
func parseRoute(enc []byte) (*storedRoute, error) {
	d := decoder{b: enc}
	r := &storedRoute{exchange: d.string(), routingKey: d.string(), headers: d.headers()}
	if d.err == nil && d.off != len(enc) {
		d.fail(fmt.Sprintf("%d trailing bytes", len(enc)-d.off))
	}
	if d.err != nil {
		return nil, d.err
	}
	r.enc = string(enc)
	return r, nil
}
