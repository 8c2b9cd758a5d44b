package catalog

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Source says where a change came from, for the metrics and for OnChange.
type Source uint8

const (
	SourceAPI     Source = iota // the admin API of this node
	SourceFeed                  // the central links feed
	SourceFile                  // catalog.file
	SourceCluster               // a peer, by anti-entropy
	numSources
)

var sourceNames = [numSources]string{"api", "feed", "file", "cluster"}

func (s Source) String() string {
	if s < numSources {
		return sourceNames[s]
	}
	return "source(" + strconv.Itoa(int(s)) + ")"
}

// Result is what became of one change offered to the store.
type Result uint8

const (
	Applied Result = iota // newer than what the store had: it serves it now
	Stale                 // not newer (a duplicate or an older version): ignored
	Invalid               // failed validation: refused
	numResults
)

var resultNames = [numResults]string{"applied", "stale", "invalid"}

func (r Result) String() string {
	if r < numResults {
		return resultNames[r]
	}
	return "result(" + strconv.Itoa(int(r)) + ")"
}

// FileWriter is the node id of entries seeded from catalog.file.
const FileWriter = "file"

// Entry is one versioned entry of the replicated catalog: a link, or a
// tombstone (Deleted, no Link). It is what the feed and the cluster carry
// and what Merge takes.
type Entry struct {
	Code    string          `json:"code"`
	HLC     uint64          `json:"hlc,string"`        // hybrid logical clock: ms since epoch << 16 | counter
	Node    string          `json:"node"`              // the writer's node id, or "file"
	Deleted bool            `json:"deleted,omitempty"` // a tombstone
	Link    json.RawMessage `json:"link,omitempty"`    // the link, canonical JSON in the file's form; nil for a tombstone
	_       [0]func()       // not comparable: compare with Newer
}

// Time returns the wall-clock part of the entry's version.
func (e *Entry) Time() time.Time { return time.UnixMilli(int64(e.HLC >> 16)) }

// Newer reports whether e wins over o: the higher (HLC, node) wins; for
// equal versions (only possible for entries seeded from different files
// with the same modification time) the higher link bytes win, a tombstone
// lowest, so every replica picks the same one.
func (e *Entry) Newer(o *Entry) bool {
	return compareVersions(e.HLC, e.Node, e.Link, o.HLC, o.Node, o.Link) > 0
}

func compareVersions(h1 uint64, n1 string, l1 []byte, h2 uint64, n2 string, l2 []byte) int {
	if c := cmp.Compare(h1, h2); c != 0 {
		return c
	}
	if c := cmp.Compare(n1, n2); c != 0 {
		return c
	}
	return bytes.Compare(l1, l2)
}

// Op is one change asked of the store by this node (the admin API): an
// upsert of Link (JSON in the file's form) or, with Delete, a tombstone.
type Op struct {
	Code   string
	Link   []byte
	Delete bool
}

// OpError is returned by Apply when an op fails validation; nothing of the
// batch was applied.
type OpError struct {
	Index int    // the op's position in the batch
	Code  string // its code
	Err   error  // the validation error (wrapping ErrInvalid, with *Error inside)
}

func (e *OpError) Error() string { return fmt.Sprintf("link %q (#%d): %v", e.Code, e.Index, e.Err) }
func (e *OpError) Unwrap() error { return e.Err }

// Errors of the store.
var (
	// ErrClosed is returned by writes after Close.
	ErrClosed = errors.New("catalog: store closed")
	// ErrEmptySeed is returned by Seed when a file with no links would
	// delete every link the previous load of it had; pass force to mean it.
	ErrEmptySeed = errors.New("catalog: file has no links but its previous load had some: refused (force to empty it)")
)

// Options configure a Store. A nil *Options means the defaults.
type Options struct {
	// Node is this node's id, the writer of its API changes. Empty: "local".
	Node string
	// TombstoneTTL is how long a tombstone is kept at least; older ones are
	// dropped when the log is compacted. Zero: 30 days.
	TombstoneTTL time.Duration
	// CompactBytes is the size of the change log past which it is folded
	// into the snapshot (also whenever it outgrows the snapshot). Zero:
	// 64 MiB.
	CompactBytes int64
	// NoSync skips fsync (tests and benchmarks only).
	NoSync bool
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Logger gets compactions and refused changes. Nil: discard.
	Logger *slog.Logger
	// OnChange is called with every batch of entries the store applied,
	// after they are persisted, in the order they were applied, with the
	// store's write lock held: it must not call the store's write methods,
	// and should be quick (the feed appends to the outbox). Nil: nothing.
	OnChange func(es []Entry, src Source)
}

// Store is the replicated catalog: a map from code to the newest Entry,
// persisted in a directory, with the immutable *Catalog it serves. Every
// method is safe for concurrent use; writes are serialised.
type Store struct {
	opts Options
	log  *slog.Logger

	mu sync.Mutex
	// The entries are base, as of the last compaction, with over (what
	// changed since, by code) on top.
	base   *base
	over   map[string]entry
	codes  []string // over's codes, sorted; nil when a code was added since
	clock  uint64   // the HLC: the highest version issued or seen
	sum    [4]uint64
	live   int
	tombs  int
	seeds  map[string]map[string]struct{} // per seed file name: the codes its last load had
	disk   *disk                          // nil: in memory only
	closed bool

	snap    atomic.Pointer[Catalog]
	version atomic.Uint64
	digest  atomic.Pointer[string]
	counts  [numSources][numResults]atomic.Uint64

	rebuilds atomic.Uint64 // new bases of the served catalog, for tests
}

type entry struct {
	hlc  uint64
	node string
	link []byte // nil: a tombstone
}

func (e entry) export(code string) Entry {
	return Entry{Code: code, HLC: e.hlc, Node: e.node, Deleted: e.link == nil, Link: e.link}
}

// Open opens the store persisted in dir, creating it if needed. An empty
// dir keeps the store in memory only.
func Open(dir string, opts *Options) (*Store, error) {
	s := &Store{over: make(map[string]entry), seeds: make(map[string]map[string]struct{})}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.Node == "" {
		s.opts.Node = "local"
	}
	if s.opts.TombstoneTTL == 0 {
		s.opts.TombstoneTTL = 30 * 24 * time.Hour
	}
	if s.opts.CompactBytes == 0 {
		s.opts.CompactBytes = 64 << 20
	}
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	s.log = s.opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.base = emptyBase(s.log)
	if dir != "" {
		d, err := openDisk(dir, s)
		if err != nil {
			return nil, err
		}
		s.disk = d
	}
	if err := s.serveBase(nil); err != nil {
		if s.disk != nil {
			s.disk.close()
		}
		return nil, err
	}
	return s, nil
}

// Close closes the store's files; safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.disk != nil {
		return s.disk.close()
	}
	return nil
}

// Catalog returns the snapshot the store serves: every live link. It is
// never nil.
func (s *Store) Catalog() *Catalog { return s.snap.Load() }

// Version returns the highest version (HLC) the store has issued or seen.
func (s *Store) Version() uint64 { return s.version.Load() }

// Digest returns a hash of every (code, HLC, node) the store holds,
// tombstones included, as 64 hex digits: two stores with equal digests hold
// the same versions of the same codes. See doc.go for how it is kept.
func (s *Store) Digest() string { return *s.digest.Load() }

// Counts returns how many links and tombstones the store holds.
func (s *Store) Counts() (links, tombstones int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live, s.tombs
}

// Changes returns how many changes from src had result r since Open.
func (s *Store) Changes(src Source, r Result) uint64 { return s.counts[src][r].Load() }

// Get returns the entry of code (a tombstone too) and whether there is one.
func (s *Store) Get(code string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get(code)
	if !ok {
		return Entry{}, false
	}
	return e.export(code), true
}

// get returns the entry of code. s.mu is held.
func (s *Store) get(code string) (entry, bool) {
	if e, ok := s.over[code]; ok {
		return e, true
	}
	if i := s.base.find(code); i >= 0 {
		_, e := s.base.entry(i)
		return e, true
	}
	return entry{}, false
}

// each calls f with every entry with a code after after, in bytewise code
// order, until f returns false: base and over merged. s.mu is held.
func (s *Store) each(after string, f func(code string, e entry) bool) {
	if s.codes == nil {
		s.codes = make([]string, 0, len(s.over))
		for code := range s.over {
			s.codes = append(s.codes, code)
		}
		slices.Sort(s.codes)
	}
	i, n := s.base.search(after), s.base.len()
	j := sort.SearchStrings(s.codes, after)
	if j < len(s.codes) && s.codes[j] == after {
		j++
	}
	for i < n || j < len(s.codes) {
		var code string
		var e entry
		switch {
		case j == len(s.codes):
			code, e = s.base.entry(i)
			i++
		case i == n:
			code, e = s.codes[j], s.over[s.codes[j]]
			j++
		case s.base.code(i) < s.codes[j]:
			code, e = s.base.entry(i)
			i++
		default:
			if s.base.code(i) == s.codes[j] {
				i++ // changed since the base
			}
			code, e = s.codes[j], s.over[s.codes[j]]
			j++
		}
		if !f(code, e) {
			return
		}
	}
}

// Entries returns up to limit entries, tombstones included, with codes
// after after in bytewise order, and the code to pass as after for the next
// page ("" after the last). limit <= 0 means 1000.
func (s *Store) Entries(after string, limit int) (es []Entry, next string) {
	return s.page(after, limit, true)
}

// Links is Entries without tombstones: the admin API's listing.
func (s *Store) Links(after string, limit int) (es []Entry, next string) {
	return s.page(after, limit, false)
}

func (s *Store) page(after string, limit int, tombs bool) ([]Entry, string) {
	if limit <= 0 {
		limit = 1000
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var es []Entry
	next := ""
	s.each(after, func(code string, e entry) bool {
		if !tombs && e.link == nil {
			return true
		}
		if len(es) == limit {
			next = es[len(es)-1].Code
			return false
		}
		es = append(es, e.export(code))
		return true
	})
	return es, next
}

// Apply validates and applies a batch of this node's changes atomically:
// either every op is applied, with versions from this node's clock, or
// none (an *OpError names the first op that fails validation). It returns
// the entries made, persisted before it returns.
func (s *Store) Apply(ops []Op) ([]Entry, error) {
	type checked struct {
		canon []byte
		link  *Link
	}
	cs := make([]checked, len(ops))
	seen := make(map[string]int, len(ops))
	for i, op := range ops {
		if j, dup := seen[op.Code]; dup {
			return nil, &OpError{Index: i, Code: op.Code, Err: &Error{File: "link", Field: "code", Path: "code",
				Msg: fmt.Sprintf("changed twice in one batch (also #%d)", j)}}
		}
		seen[op.Code] = i
		if op.Delete {
			if !validCode(op.Code) {
				return nil, &OpError{Index: i, Code: op.Code, Err: &Error{File: "link", Field: "code", Path: "code",
					Msg: fmt.Sprintf("%q: must match [A-Za-z0-9_-]{1,64}", op.Code)}}
			}
			continue
		}
		canon, l, err := CheckLink(op.Code, op.Link)
		if err != nil {
			s.counts[SourceAPI][Invalid].Add(1)
			return nil, &OpError{Index: i, Code: op.Code, Err: err}
		}
		cs[i] = checked{canon, l}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	es := make([]Entry, len(ops))
	changes := make(map[string]*Link, len(ops))
	for i, op := range ops {
		e := Entry{Code: op.Code, HLC: s.tick(), Node: s.opts.Node, Deleted: op.Delete, Link: cs[i].canon}
		es[i] = e
		changes[op.Code] = cs[i].link
	}
	if err := s.commit(es, changes); err != nil {
		return nil, err
	}
	s.counts[SourceAPI][Applied].Add(uint64(len(es)))
	if s.opts.OnChange != nil && len(es) > 0 {
		s.opts.OnChange(es, SourceAPI)
	}
	return es, nil
}

// Put upserts one link (JSON in the file's form) as this node's change.
func (s *Store) Put(code string, link []byte) (Entry, error) {
	es, err := s.Apply([]Op{{Code: code, Link: link}})
	if err != nil {
		var oe *OpError
		if errors.As(err, &oe) {
			return Entry{}, oe.Err
		}
		return Entry{}, err
	}
	return es[0], nil
}

// Delete makes a tombstone for code as this node's change. existed says
// whether a live link had the code.
func (s *Store) Delete(code string) (e Entry, existed bool, err error) {
	s.mu.Lock()
	old, ok := s.get(code)
	existed = ok && old.link != nil
	s.mu.Unlock()
	es, err := s.Apply([]Op{{Code: code, Delete: true}})
	if err != nil {
		return Entry{}, existed, err
	}
	return es[0], existed, nil
}

// Merge offers entries written elsewhere (the feed, a peer) to the store.
// Each is validated (a bad one is refused, counted as invalid and named in
// err; the others still count) and applied only if newer than the store's
// entry for its code, so merging is commutative and idempotent. applied
// counts the entries now served; they are persisted before Merge returns.
// Entries not newer than the store's are skipped before validation, so a
// repeated batch costs little.
func (s *Store) Merge(es []Entry, src Source) (applied int, err error) {
	// The newest entry per code in the batch that may be newer than the
	// store's; checked again under the lock, as a write may come between.
	s.mu.Lock()
	best := make(map[string]int, len(es))
	stale := 0
	for i := range es {
		e := &es[i]
		if old, ok := s.get(e.Code); ok && compareVersions(e.HLC, e.Node, e.Link, old.hlc, old.node, old.link) <= 0 {
			stale++
			continue
		}
		if j, ok := best[e.Code]; ok {
			stale++
			if !e.Newer(&es[j]) {
				continue
			}
		}
		best[e.Code] = i
	}
	s.mu.Unlock()
	cands := make([]Entry, 0, len(best))
	for i := range es {
		if j, ok := best[es[i].Code]; ok && j == i {
			cands = append(cands, es[i])
		}
	}
	links, bad := checkEntries(cands)
	for _, err := range bad {
		if err != nil {
			s.counts[src][Invalid].Add(1)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	var newer []Entry
	changes := make(map[string]*Link, len(cands))
	for i := range cands {
		e := &cands[i]
		if bad[i] != nil {
			continue
		}
		if old, ok := s.get(e.Code); ok && compareVersions(e.HLC, e.Node, e.Link, old.hlc, old.node, old.link) <= 0 {
			stale++
			continue
		}
		newer = append(newer, *e)
		changes[e.Code] = links[i]
	}
	s.counts[src][Stale].Add(uint64(stale))
	if len(newer) > 0 {
		if err := s.commit(newer, changes); err != nil {
			return 0, err
		}
		s.counts[src][Applied].Add(uint64(len(newer)))
		if s.opts.OnChange != nil {
			s.opts.OnChange(newer, src)
		}
	}
	return len(newer), errors.Join(bad...)
}

// checkEntries validates entries from elsewhere (codes unique) and returns
// each one's built link (nil for a tombstone) and error. A big batch is
// checked by one Parse, on every CPU; only when that fails is each entry
// checked alone, to name the bad ones.
func checkEntries(es []Entry) ([]*Link, []error) {
	links := make([]*Link, len(es))
	bad := make([]error, len(es))
	if len(es) >= 16 {
		n, size := 0, 16
		for i := range es {
			size += len(es[i].Link) + 1
		}
		doc := make([]byte, 0, size)
		doc = append(doc, `{"links":[`...)
		ok := true
		for i := range es {
			e := &es[i]
			if e.Deleted {
				if _, _, err := checkEntry(e); err != nil {
					ok = false
					break
				}
				continue
			}
			if n > 0 {
				doc = append(doc, ',')
			}
			doc = append(doc, e.Link...)
			n++
		}
		doc = append(doc, "]}"...)
		if ok {
			if c, err := Parse("entries", doc); err == nil && c.Len() == n {
				k := 0 // the link's place in doc, which is its place in c
				for i := range es {
					e := &es[i]
					if e.Deleted {
						continue
					}
					links[i] = c.link(k)
					k++
					if links[i].Code != e.Code || !validEntryHead(e) {
						ok = false
						break
					}
				}
				if ok {
					return links, bad
				}
			}
		}
		clear(links)
	}
	for i := range es {
		e := &es[i]
		l, canon, err := checkEntry(e)
		if err != nil {
			bad[i] = fmt.Errorf("entry %q (%d, %s): %w", e.Code, e.HLC, e.Node, err)
			continue
		}
		links[i] = l
		if canon != nil {
			e.Link = canon
		}
	}
	return links, bad
}

// validEntryHead checks what checkEntry checks besides the link.
func validEntryHead(e *Entry) bool {
	return validCode(e.Code) && e.Node != "" && len(e.Node) <= 255 && e.HLC != 0 && (e.Deleted == (len(e.Link) == 0))
}

// checkEntry validates an entry from elsewhere and returns its link built
// and in canonical form.
func checkEntry(e *Entry) (*Link, []byte, error) {
	switch {
	case !validCode(e.Code):
		return nil, nil, fmt.Errorf("%w: code %q: must match [A-Za-z0-9_-]{1,64}", ErrInvalid, e.Code)
	case e.Node == "" || len(e.Node) > 255:
		return nil, nil, fmt.Errorf("%w: node: must be 1 to 255 bytes", ErrInvalid)
	case e.HLC == 0:
		return nil, nil, fmt.Errorf("%w: hlc: missing", ErrInvalid)
	case e.Deleted && len(e.Link) > 0:
		return nil, nil, fmt.Errorf("%w: a tombstone with a link", ErrInvalid)
	case e.Deleted:
		return nil, nil, nil
	case len(e.Link) == 0:
		return nil, nil, fmt.Errorf("%w: link: missing (deleted not set)", ErrInvalid)
	}
	canon, l, err := CheckLink(e.Code, e.Link)
	if err != nil {
		return nil, nil, err
	}
	return l, canon, nil
}

// tick issues the next version of this node's clock: the wall clock in ms
// shifted left 16, or one more than the last version issued or seen.
func (s *Store) tick() uint64 {
	pt := uint64(s.opts.Now().UnixMilli()) << 16
	if pt > s.clock {
		s.clock = pt
	} else {
		s.clock++
	}
	return s.clock
}

// commit persists es, then applies them to the map and the snapshot.
// changes holds each code's built link (nil for a tombstone). s.mu is held.
func (s *Store) commit(es []Entry, changes map[string]*Link) error {
	if s.disk != nil {
		if err := s.disk.append(es); err != nil {
			return err
		}
	}
	for i := range es {
		s.put(&es[i])
	}
	s.update(changes)
	if s.disk != nil && s.disk.needsCompaction() {
		if err := s.compact(); err != nil {
			s.log.Error("catalog: compaction failed; the log keeps growing", "err", err)
		}
	}
	return nil
}

// put sets the map entry of e (newer than the one there, checked by the
// caller) and keeps the counts and the digest. s.mu is held, or the store
// is being opened.
func (s *Store) put(e *Entry) {
	if old, ok := s.get(e.Code); ok {
		s.digestRemove(e.Code, old.hlc, old.node)
		if old.link == nil {
			s.tombs--
		} else {
			s.live--
		}
	}
	if _, ok := s.over[e.Code]; !ok {
		s.codes = nil
	}
	ne := entry{hlc: e.HLC, node: e.Node, link: e.Link}
	if e.Deleted {
		ne.link = nil
		s.tombs++
	} else {
		s.live++
	}
	s.over[e.Code] = ne
	s.digestAdd(e.Code, e.HLC, e.Node)
	if s.clock < e.HLC {
		s.clock = e.HLC
	}
}

// The digest is the sum, lane by lane mod 2^64, of SHA-256(code, hlc,
// node) over every entry: equal for equal sets whatever the order they were
// built in, and kept up to date in O(1) per change.
func entryHash(code string, hlc uint64, node string) [4]uint64 {
	var buf [64 + 1 + 8 + 256]byte // code, 0, hlc, node: the limits checkEntry holds
	b := append(buf[:0], code...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, hlc)
	b = append(b, node...)
	sum := sha256.Sum256(b)
	return [4]uint64{
		binary.BigEndian.Uint64(sum[0:]), binary.BigEndian.Uint64(sum[8:]),
		binary.BigEndian.Uint64(sum[16:]), binary.BigEndian.Uint64(sum[24:]),
	}
}

func (s *Store) digestAdd(code string, hlc uint64, node string) {
	h := entryHash(code, hlc, node)
	for i := range s.sum {
		s.sum[i] += h[i]
	}
}

func (s *Store) digestRemove(code string, hlc uint64, node string) {
	h := entryHash(code, hlc, node)
	for i := range s.sum {
		s.sum[i] -= h[i]
	}
}

// publishState makes the version and digest readable without the lock.
func (s *Store) publishState() {
	s.version.Store(s.clock)
	var b [32]byte
	for i, v := range s.sum {
		binary.BigEndian.PutUint64(b[i*8:], v)
	}
	d := hex.EncodeToString(b[:])
	s.digest.Store(&d)
}

// update makes the served catalog serve changes: on top of the current one
// while the changes since its base are at most an eighth of it (or 1024),
// else the entries are compacted into a new base. Copying the overlay per
// change grows with it, and compacting at a fixed fraction keeps a bulk
// load into a growing catalog (an empty node catching up) linear: each
// compaction is followed by at least an eighth of its size in changes.
func (s *Store) update(changes map[string]*Link) {
	cur := s.snap.Load()
	if cur.overlaid()+len(changes) > max(1024, cur.Len()/8) {
		var err error
		if s.disk != nil {
			err = s.compact()
		} else {
			err = s.rebase(s.image())
		}
		if err == nil {
			return
		}
		// The changes are persisted in the log: keep serving them on top.
		s.log.Error("catalog: compaction failed; serving the changes on top of the last base", "err", err)
	}
	s.publishState()
	s.snap.Store(cur.with(changes, s.Digest()[:12]))
}

// serveBase serves the store's base with its overlay on top: what the
// log changed after the snapshot at open, nothing after a compaction. The
// links old (the catalog served until now) compiled stay compiled. s.mu
// is held, or the store is being opened.
func (s *Store) serveBase(old *Catalog) error {
	s.publishState()
	c := &Catalog{name: "(replicated catalog)", version: s.Digest()[:12], lazy: s.base, n: s.base.live}
	if old != nil && old.lazy != nil {
		s.base.carry(old.lazy)
	}
	if len(s.over) > 0 {
		es := make([]Entry, 0, len(s.over))
		for code, e := range s.over {
			es = append(es, e.export(code))
		}
		links, bad := checkEntries(es)
		changes := make(map[string]*Link, len(es))
		for i := range es {
			if bad[i] != nil {
				return fmt.Errorf("catalog: build from the store: %w", bad[i])
			}
			changes[es[i].Code] = links[i]
		}
		c = c.with(changes, c.version)
	}
	s.snap.Store(c)
	s.rebuilds.Add(1)
	return nil
}

// rebase makes data, an image of every entry (image), the store's base
// and serves it. s.mu is held.
func (s *Store) rebase(data []byte) error {
	snap, err := readSnapshot(data, s.log)
	if err != nil {
		return fmt.Errorf("catalog: rebase: %w", err)
	}
	old := s.snap.Load()
	s.base, s.over, s.codes = snap.base, make(map[string]entry), nil
	s.sum, s.live, s.tombs = snap.sum, snap.base.live, snap.base.tombs
	return s.serveBase(old)
}

// WriteFile writes every live link as a catalog file (JSON, which the file
// loader, validate and push read), in code order.
func (s *Store) WriteFile(w io.Writer) error {
	after := ""
	if _, err := io.WriteString(w, "{\"links\": [\n"); err != nil {
		return err
	}
	first := true
	for {
		es, next := s.Links(after, 4096)
		for _, e := range es {
			sep := ",\n  "
			if first {
				sep, first = "  ", false
			}
			if _, err := io.WriteString(w, sep); err != nil {
				return err
			}
			if _, err := w.Write(e.Link); err != nil {
				return err
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	_, err := io.WriteString(w, "\n]}\n")
	return err
}
