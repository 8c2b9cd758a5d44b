package outbox

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Salvage copies every readable record of a damaged outbox into a fresh one.
//
// It reads the file itself, as the verifier does, with every offset
// bounds-checked, and never writes to it. Two passes find the records:
//
//  1. The tree walk starts at the newest meta page that passes its checksum
//     and follows the B-tree tolerantly: a page that is out of bounds, of
//     the wrong type, referenced twice or with elements outside it is
//     skipped with its subtree, and the walk goes on with its siblings. The
//     sequence range that a skipped subtree covered (known from its parent
//     branch page) is noted as lost.
//  2. The page scan reads every page of the file, in use or free, and takes
//     the records of every leaf page whose elements decode to a record with
//     a valid checksum. A page whose header or elements are damaged is
//     carved: every offset is tried as the start of a record, and one whose
//     structure parses and whose checksum matches is taken, with the eight
//     bytes before it (bbolt stores a key right before its value) as its
//     sequence. This finds records when both meta pages are lost, when the
//     file is truncated, and when bits flipped in a page header.
//
// Free pages hold old copies of records: a pending copy of a record that
// was delivered since, or a copy of a record that was pruned. So which copy
// of a sequence wins is a rule:
//
//   - The copy in the tree wins: it is the last committed state. But for
//     its state: a delivered copy of the same record anywhere in the file
//     wins over a pending one, since a delivered copy is written only after
//     the broker confirmed the record (basic.ack without basic.return); it
//     proves delivery. Preferring the pending copy would publish again
//     every record whose stale pending copy lingers in a free page, which
//     after the loss of both meta pages is all of them.
//   - Other copies count only for sequences the tree cannot vouch for:
//     those in the range of a skipped subtree, those whose tree copy failed
//     its checksum, every sequence when no tree could be read, and every
//     sequence from the tree's next_seq on when one meta page is damaged
//     (it may have held the last commit, whose appends the older tree
//     lacks). A record pruned in a readable part of the tree stays pruned.
//     Copies found by the page scan in pages the tree reaches are current,
//     not stale, and always count.
//   - Among those copies, a delivered one wins over a pending one, as
//     above.
//   - Copies of one sequence that are different records (a bit flipped in a
//     key, which the record checksum does not cover) are all kept: the
//     tree's or else the most frequent keeps the sequence, the others get
//     new sequences above every other one. A duplicate is acceptable; a
//     loss is not.
//
// The trade-off: where the tree is damaged, records that were delivered and
// then pruned may come back from free pages (as delivered, or as pending
// when only a pending copy survived); a pending one is then published
// again. Consumers deduplicate by message id.

// SalvageOptions configures Salvage. A nil *SalvageOptions means defaults.
type SalvageOptions struct {
	// LockTimeout is how long to wait for the source file's lock (a shared
	// one: a running node holds it exclusively). Zero means
	// DefaultLockTimeout.
	LockTimeout time.Duration
}

// SeqRange is a range of sequence numbers, From inclusive, To exclusive; a
// To of 0 means no upper bound.
type SeqRange struct {
	From, To uint64
}

func (r SeqRange) contains(seq uint64) bool {
	return seq >= r.From && (r.To == 0 || seq < r.To)
}

func (r SeqRange) String() string {
	if r.To == 0 {
		return fmt.Sprintf("[%d, end)", r.From)
	}
	return fmt.Sprintf("[%d, %d)", r.From, r.To)
}

// SalvageReport says what Salvage read, what it wrote and what it could
// not read.
type SalvageReport struct {
	Source   string
	Dest     string
	FileSize int64
	PageSize int
	// PageSizeGuessed is true when neither meta page gave the page size and
	// it was inferred from the pages.
	PageSizeGuessed bool

	// Meta holds "ok" or the problem of meta page 0 and meta page 1.
	Meta [2]string
	// MetaOK is true when both meta pages passed their checksums.
	MetaOK bool
	// TxID is the transaction of the meta page whose tree was walked; 0
	// when no tree could be walked.
	TxID uint64
	// TreeComplete is true when every page of that tree was read and every
	// record in it passed its checksum: nothing was lost.
	TreeComplete bool
	// TreePages counts the pages of the tree that were read;
	// UnreadablePages the ones that were skipped with their subtrees.
	TreePages       int
	UnreadablePages int
	// PagesScanned counts the pages the page scan examined; PagesCarved the
	// ones searched byte by byte because their header or elements were
	// damaged.
	PagesScanned int
	PagesCarved  int

	// Pending and Delivered count the records written to the new outbox.
	Pending, Delivered int64
	// FromTree counts those found in the tree, FromScan those found only
	// by the page scan.
	FromTree, FromScan int64
	// FromLog counts the records of the log next to the file (Options.Log)
	// that the file lacked, appended with new sequences; LogDamage says
	// why the log could not be read to its end, "" when it could.
	FromLog   int
	LogDamage string
	// Copies counts the extra copies of a record that were found and
	// dropped.
	Copies int64
	// Reassigned counts records that got a new sequence because another
	// record held theirs.
	Reassigned int64
	// BadChecksums counts record copies that failed their checksum.
	BadChecksums int64
	// Routes counts the routes (routes.go) copied; NoRoute counts record
	// copies that name a route no intact copy of the routes bucket holds:
	// they are treated as damaged.
	Routes  int
	NoRoute int64
	// Lost lists (at most 100 of) the sequences of records that were seen
	// only damaged; LostCount counts them all.
	Lost      []uint64
	LostCount int64
	// LostRanges lists the sequence ranges of tree pages that could not be
	// read. Records in them were recovered only where the page scan found
	// an intact copy.
	LostRanges []SeqRange

	// CountersOK is true when the meta bucket (the outbox's counters) was
	// read; Expected* are its counts then.
	CountersOK        bool
	ExpectedPending   int64
	ExpectedDelivered int64
	ExpectedNextSeq   uint64

	// NextSeq is the new outbox's next sequence: above every sequence seen
	// and never below the old file's.
	NextSeq uint64

	// Problems lists the damage found, at most 50 entries.
	Problems []string
}

const (
	maxSalvageProblems = 50
	maxLostListed      = 100
	maxTreeDepth       = 64
)

// Salvage copies every readable record of the outbox file at src into a new
// outbox file at dst, keeping each record's sequence (but see the rules
// above), state and times, and reports what it found. It never modifies
// src, and it works on files that Open refuses. dst must not exist; its
// directory is created if needed. The new file passes Verify.
//
// It fails with ErrLocked when a running node holds src.
func Salvage(src, dst string, opts *SalvageOptions) (*SalvageReport, error) {
	timeout := DefaultLockTimeout
	if opts != nil && opts.LockTimeout > 0 {
		timeout = opts.LockTimeout
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("outbox: salvage: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("outbox: salvage: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("outbox: salvage: %s is not a regular file", src)
	}
	if di, err := os.Stat(dst); err == nil {
		if os.SameFile(fi, di) {
			return nil, fmt.Errorf("outbox: salvage: the destination %s is the source file", dst)
		}
		return nil, fmt.Errorf("outbox: salvage: %s exists; salvage writes a new outbox and never overwrites one", dst)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("outbox: salvage: %w", err)
	}
	if err := lockFile(f, false, timeout); err != nil {
		return nil, fmt.Errorf("%w: %s (is a clickedge node running on this data directory?)", ErrLocked, src)
	}
	if fi.Size() == 0 {
		return nil, fmt.Errorf("outbox: salvage: %s is empty: there is nothing to salvage", src)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("outbox: salvage: mmap %s: %w", src, err)
	}
	defer syscall.Munmap(data)

	rep := &SalvageReport{Source: src, Dest: dst, FileSize: fi.Size()}
	s := &salvager{data: data, rep: rep}
	if err := s.read(); err != nil {
		return rep, err
	}
	s.dropRouteless()
	picked := s.pick()
	if err := writeSalvaged(dst, s, picked); err != nil {
		return rep, err
	}
	if _, err := Verify(dst); err != nil {
		return rep, fmt.Errorf("outbox: salvage: the new file does not verify: %w", err)
	}
	// Records answered from the log (Options.Log) and not yet moved into
	// the file are in the log only.
	n, err := salvageLog(src, dst)
	rep.FromLog = n
	rep.Pending += int64(n)
	if err != nil {
		rep.LogDamage = err.Error()
	}
	return rep, nil
}

// Where a copy was found, best first.
const (
	tierTree    = iota // in the tree, as the tree says
	tierCurrent        // in a page the tree reaches, by the page scan
	tierStale          // anywhere else: free pages, lost subtrees
	tierRecord         // a route found in a record that defines it
)

// copyOf is one copy of a record in the source file.
type copyOf struct {
	seq       uint64
	v         []byte // the encoded record, inside the file's mapping
	id        uint64
	tier      uint8 // tierTree, tierCurrent or tierStale
	delivered bool
}

type salvager struct {
	data     []byte
	rep      *SalvageReport
	pageSize int
	pages    uint64 // whole or partial pages in the file

	copies    []copyOf
	lost      []SeqRange      // tree ranges that could not be read
	damaged   map[uint64]bool // sequences whose tree copy is damaged
	badCopies map[uint64]bool // sequences with a damaged copy outside the tree
	noTree    bool
	oneMeta   int      // 1 + the index of the only good meta page; 0 when both are good
	visited   []uint64 // bitset: pages reached by the tree walk
	clean     []uint64 // bitset: tree pages read without a problem
	counters  map[string]uint64
	// scanNextSeq is the highest next_seq in any copy of the meta bucket
	// the page scan found: next_seq only grows, so it is the latest.
	scanNextSeq uint64
	maxSeq      uint64
	// spans are the delivered spans read from the tree (format 2): the
	// records they cover are written delivered. Spans the walk could not
	// read leave their records pending, to be published again.
	spans []span
	// routes are the intact routes found, the tree's copy first.
	routes map[uint32]routeCopy
}

// routeCopy is an intact route found in the source file.
type routeCopy struct {
	v    []byte // the routes bucket's value: checksum and route
	tier uint8
}

func (s *salvager) problem(format string, args ...any) {
	if len(s.rep.Problems) < maxSalvageProblems {
		s.rep.Problems = append(s.rep.Problems, fmt.Sprintf(format, args...))
	}
}

// read runs both passes. A fault reading the mapping (the file shrank
// under us) is returned as an error rather than a crash.
func (s *salvager) read() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("outbox: salvage: reading %s failed: %v", s.rep.Source, p)
		}
	}()
	root := s.readMetas()
	s.visited = make([]uint64, (s.pages+63)/64)
	s.clean = make([]uint64, (s.pages+63)/64)
	s.damaged = map[uint64]bool{}
	s.badCopies = map[uint64]bool{}
	if root == 0 {
		s.noTree = true
	} else {
		s.walkTree(root)
		if s.oneMeta != 0 {
			// The damaged meta page may have been the newer one: the tree
			// then misses the last commit's appends (and acks, which the
			// delivered-copy rule recovers).
			from := s.maxSeq + 1
			if s.counters != nil {
				from = min(from, max(s.counters[string(metaNextSeq)], 1))
			}
			s.problem("meta page %d is damaged and may have held the last commit: records from sequence %d on are taken from anywhere in the file", 2-s.oneMeta, from)
			s.loseRange(bound{from, true}, bound{})
		}
	}
	s.scanPages()
	s.rep.TreeComplete = !s.noTree && len(s.lost) == 0 && s.rep.UnreadablePages == 0
	s.rep.LostRanges = mergeRanges(s.lost)
	return nil
}

// readMetas finds the page size and the newest good meta page, and returns
// its root page id, or 0 when no tree can be walked.
func (s *salvager) readMetas() uint64 {
	v := &verifier{data: s.data, rep: &VerifyReport{}}
	m0, err0 := v.readMeta(0)
	var m1 boltMeta
	err1 := errors.New("not found")
	if err0 == nil {
		s.pageSize = int(m0.pageSize)
		m1, err1 = v.readMeta(s.pageSize)
		if err1 == nil && m1.pageSize != m0.pageSize {
			err1 = fmt.Errorf("page size %d, meta page 0 says %d", m1.pageSize, m0.pageSize)
		}
	} else {
		// Meta page 1 sits one page in; try every plausible page size.
		for _, ps := range pageSizeCandidates() {
			if m, err := v.readMeta(ps); err == nil && int(m.pageSize) == ps {
				m1, err1, s.pageSize = m, nil, ps
				break
			}
		}
	}
	s.rep.Meta = [2]string{"ok", "ok"}
	if err0 != nil {
		s.rep.Meta[0] = err0.Error()
		s.problem("meta page 0: %v", err0)
	}
	if err1 != nil {
		s.rep.Meta[1] = err1.Error()
		s.problem("meta page 1: %v", err1)
	}
	s.rep.MetaOK = err0 == nil && err1 == nil
	if s.pageSize == 0 {
		s.pageSize = s.guessPageSize()
		s.rep.PageSizeGuessed = true
		s.problem("both meta pages are damaged: page size %d inferred from the pages; the tree cannot be walked, every page is scanned", s.pageSize)
	}
	s.rep.PageSize = s.pageSize
	s.pages = uint64((len(s.data) + s.pageSize - 1) / s.pageSize)

	var m *boltMeta
	switch {
	case err0 == nil && err1 == nil:
		m = &m0
		if m1.txid > m0.txid {
			m = &m1
		}
	case err0 == nil:
		m = &m0
		s.oneMeta = 1
	case err1 == nil:
		m = &m1
		s.oneMeta = 2
	default:
		return 0
	}
	s.rep.TxID = m.txid
	if need := int64(m.pgid) * int64(s.pageSize); int64(len(s.data)) < need {
		s.problem("file is %d bytes, shorter than the %d pages (%d bytes) it holds: truncated", len(s.data), m.pgid, need)
	}
	if m.root < 2 || m.root >= m.pgid {
		s.problem("meta: root page %d out of bounds", m.root)
		return 0
	}
	return m.root
}

func pageSizeCandidates() []int {
	c := []int{os.Getpagesize(), 4096}
	for ps := 512; ps <= 1<<16; ps <<= 1 {
		c = append(c, ps)
	}
	return c
}

// guessPageSize picks the page size under which most pages carry their own
// id and a known type.
func (s *salvager) guessPageSize() int {
	best, bestScore := 4096, -1
	for _, ps := range pageSizeCandidates() {
		score := 0
		for id := 2; id*ps+pageHeaderSize <= len(s.data); id++ {
			h, _ := readPageHeader(s.data, id*ps)
			switch h.flags {
			case branchPageFlag, leafPageFlag, freelistPageFlag:
				if h.id == uint64(id) {
					score++
				}
			}
		}
		if score > bestScore {
			best, bestScore = ps, score
		}
	}
	return best
}

func setBit(b []uint64, id uint64)      { b[id/64] |= 1 << (id % 64) }
func hasBit(b []uint64, id uint64) bool { return b[id/64]&(1<<(id%64)) != 0 }

// bound is a key bound of a subtree: a sequence, or none.
type bound struct {
	seq uint64
	set bool
}

func (s *salvager) loseRange(lo, hi bound) {
	r := SeqRange{}
	if lo.set {
		r.From = lo.seq
	}
	if hi.set {
		r.To = hi.seq
		if r.To == 0 {
			return // an empty range below sequence 0
		}
	}
	s.lost = append(s.lost, r)
}

// walkTree walks the root bucket, whose elements are the outbox's buckets.
func (s *salvager) walkTree(root uint64) {
	seen := map[string]bool{}
	ok := s.walkPage(root, bound{}, bound{}, 0, "root", func(k, val []byte, flags uint32, lo, hi bound) bool {
		if flags&bucketLeafFlag == 0 {
			s.problem("root: key %q is not a bucket", k)
			return true
		}
		name := string(k)
		seen[name] = true
		if isIndexBucket(name) {
			return true // no records; a salvaged outbox starts without its index
		}
		s.walkBucket(name, val)
		return true
	})
	if !ok {
		s.problem("root page %d unreadable: no bucket can be found through the tree", root)
	}
	for _, name := range []string{"pending", "retained"} {
		if !seen[name] {
			if ok {
				s.problem("bucket %q not found in the tree", name)
			}
			s.loseRange(bound{}, bound{})
		}
	}
	if !seen["meta"] {
		s.problem("bucket \"meta\" not found: the counters and next_seq are unknown")
	}
}

// walkBucket walks one bucket given its value in the root: the bucket
// header, then an inline page when its root page is 0.
func (s *salvager) walkBucket(name string, val []byte) {
	what := "bucket " + name
	if name == "meta" {
		s.counters = map[string]uint64{}
	}
	visit := func(k, v []byte, flags uint32, lo, hi bound) bool { return s.visitTree(name, k, v, flags, lo, hi) }
	root, inline, ok := bucketValue(val)
	if !ok {
		s.problem("%s: header is %d bytes", what, len(val))
		s.loseRange(bound{}, bound{})
		return
	}
	if root != 0 {
		s.walkPage(root, bound{}, bound{}, 0, what, visit)
		return
	}
	count, ok := inlineLeaf(inline)
	if !ok {
		s.problem("%s: inline page damaged", what)
		s.loseRange(bound{}, bound{})
		return
	}
	s.walkLeaf(inline, count, bound{}, bound{}, what+" (inline)", visit)
}

// visitTree takes one element of an outbox bucket found in the tree.
func (s *salvager) visitTree(bucket string, k, v []byte, flags uint32, lo, hi bound) bool {
	if flags&bucketLeafFlag != 0 {
		// A flipped flag bit, most likely: take the record if it is one,
		// and call the page damaged.
		s.problem("bucket %q: unexpected nested bucket %q", bucket, k)
		if bucket != "meta" && len(k) == 8 {
			s.take(keySeq(k), v, tierCurrent)
		}
		return false
	}
	if bucket == "meta" {
		if len(v) == 8 {
			s.counters[string(k)] = binary.BigEndian.Uint64(v)
		}
		return true
	}
	if bucket == string(bucketRoutes) {
		if !s.takeRoute(k, v, tierTree) {
			s.problem("bucket %q: damaged route at key %x", bucket, k)
			return false
		}
		return true
	}
	if bucket == string(bucketDelivered) {
		if !s.takeSpan(k, v) {
			// Its records come back pending: published again, not lost.
			s.problem("bucket %q: damaged span at key %x", bucket, k)
			return false
		}
		return true
	}
	if len(k) != 8 {
		s.problem("bucket %q: key %x is not a sequence number", bucket, k)
		return false
	}
	seq := keySeq(k)
	if (lo.set && seq < lo.seq) || (hi.set && seq >= hi.seq) {
		// Out of its page's range: a flipped key bit. Keep the record,
		// but not as the tree's word on that sequence.
		s.problem("bucket %q: key %d outside its page's range", bucket, seq)
		s.take(seq, v, tierCurrent)
		return false
	}
	if !s.take(seq, v, tierTree) {
		s.problem("bucket %q: record %d is damaged", bucket, seq)
		s.damaged[seq] = true
		return false
	}
	return true
}

// take records v, the value stored under seq (a slice of the file's
// mapping), as a copy of a record. It reports false when v is not an
// intact record, and counts a failed checksum.
func (s *salvager) take(seq uint64, v []byte, tier uint8) bool {
	err := checkRecord(v)
	if err == nil {
		if n, ok := recordLen(v); !ok || n != len(v) {
			err = errDecode // a checksum that matches garbage
		}
	}
	if err != nil {
		if len(v) >= recordFixedLen && knownVersion(v[0]) {
			s.rep.BadChecksums++
			if tier != tierTree {
				s.badCopies[seq] = true
			}
		}
		return false
	}
	if id, inline, n := recordRoute(v); inline && id != 0 {
		// A record that defines its route: a copy of last resort.
		d := decoder{b: v, off: recordFixedLen + n}
		d.string()
		d.string()
		d.headers()
		if d.err == nil {
			k, rv := routeEntry(id, string(v[recordFixedLen+n:d.off]))
			s.takeRoute(k, rv, tierRecord)
		}
	}
	_, delivered := recordTimes(v)
	s.copies = append(s.copies, copyOf{
		seq:       seq,
		v:         v,
		id:        recordIdentity(v),
		tier:      tier,
		delivered: delivered != 0,
	})
	s.maxSeq = max(s.maxSeq, seq)
	return true
}

// recordIdentity hashes what makes a record itself: everything but the
// checksum and the delivery time.
func recordIdentity(v []byte) uint64 {
	h := fnv.New64a()
	h.Write(v[offTime:offDelivered])
	h.Write(v[recordFixedLen:])
	return h.Sum64()
}

// walkPage walks the subtree at page id, whose keys lie in [lo, hi), and
// calls visit for each leaf element (visit returns false for an element it
// could not use). It reports whether the whole subtree was read.
func (s *salvager) walkPage(id uint64, lo, hi bound, depth int, what string,
	visit func(k, v []byte, flags uint32, lo, hi bound) bool) bool {
	p, flags, count, ok := s.treePage(id, depth, what)
	if !ok {
		s.rep.UnreadablePages++
		s.loseRange(lo, hi)
		return false
	}
	s.rep.TreePages++
	switch flags {
	case leafPageFlag:
		if s.walkLeaf(p, count, lo, hi, what, visit) {
			s.markClean(id, p, count, true)
			return true
		}
		return false
	case branchPageFlag:
		all := true
		for i := 0; i < int(count); i++ {
			k, child, ok := branchElement(p, i)
			clo := lo
			if ok && len(k) == 8 && i > 0 {
				clo = bound{keySeq(k), true}
			}
			chi := hi
			if i+1 < int(count) {
				if nk, _, ok := branchElement(p, i+1); ok && len(nk) == 8 {
					chi = bound{keySeq(nk), true}
				} else {
					chi = hi
				}
			}
			if !ok {
				s.problem("%s: branch page %d element %d out of the page", what, id, i)
				s.loseRange(clo, chi)
				all = false
				continue
			}
			if !s.walkPage(child, clo, chi, depth+1, what, visit) {
				all = false
			}
		}
		if all {
			s.markClean(id, p, count, false)
		}
		return all
	}
	// treePage checked the type.
	return false
}

// markClean notes that page id was read without a problem, with the
// overflow pages its elements' data reaches into (not the overflow its
// header claims, which may be a flipped bit): the page scan skips them.
func (s *salvager) markClean(id uint64, p []byte, count uint16, leaf bool) {
	extent := pageHeaderSize + int(count)*elementSize
	for i := 0; i < int(count); i++ {
		extent = max(extent, elementEnd(p, i, leaf))
	}
	for i := range uint64((extent + s.pageSize - 1) / s.pageSize) {
		setBit(s.clean, id+i)
		setBit(s.visited, id+i)
	}
}

// treePage returns page id of the tree with its overflow pages, or false
// when it cannot be used.
func (s *salvager) treePage(id uint64, depth int, what string) (p []byte, flags, count uint16, ok bool) {
	if depth > maxTreeDepth {
		s.problem("%s: page %d is %d levels deep: a cycle?", what, id, depth)
		return nil, 0, 0, false
	}
	if id < 2 || id >= s.pages {
		s.problem("%s: page %d is beyond the end of the file", what, id)
		return nil, 0, 0, false
	}
	if hasBit(s.visited, id) {
		s.problem("%s: page %d referenced twice", what, id)
		return nil, 0, 0, false
	}
	setBit(s.visited, id)
	off := int(id) * s.pageSize
	h, ok := readPageHeader(s.data, off)
	if !ok {
		s.problem("%s: page %d is cut off by the end of the file", what, id)
		return nil, 0, 0, false
	}
	if h.id != id {
		s.problem("%s: page %d says it is page %d", what, id, h.id)
		return nil, 0, 0, false
	}
	flags, count = h.flags, h.count
	if flags != leafPageFlag && flags != branchPageFlag {
		s.problem("%s: page %d has type %#x, want a branch or leaf page", what, id, flags)
		return nil, 0, 0, false
	}
	overflow := uint64(h.overflow)
	end := off + s.pageSize
	if overflow > 0 {
		if id+overflow >= s.pages {
			s.problem("%s: page %d overflows the file", what, id)
		} else {
			end = off + int(overflow+1)*s.pageSize
		}
	}
	end = min(end, len(s.data))
	p = s.data[off:end]
	if !elementsFit(p, count) {
		s.problem("%s: page %d has %d elements, more than fit", what, id, count)
		return nil, 0, 0, false
	}
	return p, flags, count, true
}

// walkLeaf calls visit for each element of a leaf page. It reports whether
// every element was read and used.
func (s *salvager) walkLeaf(p []byte, count uint16, lo, hi bound, what string,
	visit func(k, v []byte, flags uint32, lo, hi bound) bool) bool {
	all := true
	n := min(int(count), (len(p)-pageHeaderSize)/elementSize)
	if n < int(count) {
		all = false
	}
	for i := 0; i < n; i++ {
		flags, k, v, ok := leafElement(p, i)
		if !ok {
			all = false
			continue
		}
		if !visit(k, v, flags, lo, hi) {
			all = false
		}
	}
	if !all {
		s.problem("%s: a leaf page has unreadable elements", what)
		s.loseRange(lo, hi)
	}
	return all
}

// scanPages reads every page that the tree walk did not read cleanly.
func (s *salvager) scanPages() {
	for id := uint64(2); id < s.pages; id++ {
		if hasBit(s.clean, id) {
			continue
		}
		s.rep.PagesScanned++
		off := int(id) * s.pageSize
		h, ok := readPageHeader(s.data, off)
		if !ok {
			continue
		}
		flags, count := h.flags, h.count
		overflow := uint64(h.overflow)
		end := off + s.pageSize
		if overflow > 0 && overflow < s.pages {
			end = off + int(overflow+1)*s.pageSize
		}
		end = min(end, len(s.data))
		p := s.data[off:end]
		sane := h.id == id && elementsFit(p, count)
		switch {
		case sane && flags == leafPageFlag:
			tier := uint8(tierStale)
			if hasBit(s.visited, id) {
				tier = tierCurrent
			}
			if !s.scanLeaf(p, count, 0, tier) {
				s.carve(off, end, tier)
			}
		case sane && (flags == branchPageFlag || flags == freelistPageFlag || flags == metaPageFlag):
			// No records.
		default:
			tier := uint8(tierStale)
			if hasBit(s.visited, id) {
				tier = tierCurrent
			}
			s.carve(off, min(off+s.pageSize, len(s.data)), tier)
		}
	}
}

// scanLeaf takes the records of a leaf page found by the page scan,
// descending into inline buckets. It reports whether every element was
// sound.
func (s *salvager) scanLeaf(p []byte, count uint16, depth int, tier uint8) bool {
	sound := true
	records, counters := 0, 0
	for i := 0; i < int(count); i++ {
		if pageHeaderSize+(i+1)*elementSize > len(p) {
			return false
		}
		flags, k, v, ok := leafElement(p, i)
		if !ok {
			sound = false
			continue
		}
		if flags&bucketLeafFlag != 0 && !(len(k) == 8 && len(v) >= recordFixedLen && knownVersion(v[0])) {
			if root, inline, ok := bucketValue(v); depth == 0 && ok && root == 0 && len(inline) >= pageHeaderSize {
				if string(k) == "meta" {
					s.scanMeta(inline)
					continue
				}
				if n, ok := inlineLeaf(inline); ok && !s.scanLeaf(inline, n, depth+1, tier) {
					sound = false
				}
			}
			continue
		}
		switch {
		case len(k) == 8 && len(v) == spanValueLen && s.takeSpan(k, v):
			// A delivered span, current or stale: a sequence once
			// delivered stays delivered, so any intact copy is true.
		case len(k) == 4 && s.takeRoute(k, v, tier):
			// A route: routes are never changed, so any intact copy is
			// true (but see takeRoute).
		case len(k) == 8 && len(v) >= recordFixedLen:
			if s.take(keySeq(k), v, tier) {
				records++
			} else {
				sound = false
			}
		case len(v) == 8 && len(k) <= 64:
			counters++ // the meta bucket's
		default:
			sound = false // a damaged element: carve the page
		}
	}
	// The meta bucket holds no records: a "counter" among records is a
	// record whose element is damaged.
	return sound && (records == 0 || counters == 0)
}

// scanMeta reads next_seq from an inline copy of the meta bucket.
func (s *salvager) scanMeta(p []byte) {
	count, ok := inlineLeaf(p)
	if !ok {
		return
	}
	for i := 0; i < int(count); i++ {
		if pageHeaderSize+(i+1)*elementSize > len(p) {
			return
		}
		_, k, v, ok := leafElement(p, i)
		if ok && string(k) == string(metaNextSeq) && len(v) == 8 {
			s.scanNextSeq = max(s.scanNextSeq, binary.BigEndian.Uint64(v))
		}
	}
}

// carve searches data[start:end] byte by byte for intact records.
func (s *salvager) carve(start, end int, tier uint8) {
	s.rep.PagesCarved++
	for i := start + 8; i+recordFixedLen <= end; i++ {
		if !knownVersion(s.data[i]) {
			continue
		}
		n, ok := recordLen(s.data[i:end])
		if !ok || checkRecord(s.data[i:i+n]) != nil {
			continue
		}
		seq := keySeq(s.data[i-8 : i])
		if s.take(seq, s.data[i:i+n], tier) {
			i += n - 1
		}
	}
}

// recordLen parses the structure of the encoded record at the start of b
// without copying and returns its length.
func recordLen(b []byte) (int, bool) {
	if len(b) < recordFixedLen || !knownVersion(b[0]) {
		return 0, false
	}
	off := recordFixedLen
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b[off:])
		if n <= 0 {
			return 0, false
		}
		off += n
		return v, true
	}
	skip := func() bool {
		l, ok := uv()
		if !ok || l > uint64(len(b)-off) {
			return false
		}
		off += int(l)
		return true
	}
	if b[0] == recordV1 {
		// exchange, routing key, message id, headers
		if !skip() || !skip() || !skip() || !skipHeaders(b, &off, skip) {
			return 0, false
		}
	} else {
		f, ok := uv()
		if !ok || f == 0 || f>>1 > maxRouteID {
			return 0, false
		}
		// an inline route: exchange, routing key, headers; then message id
		if f&1 == 1 && (!skip() || !skip() || !skipHeaders(b, &off, skip)) {
			return 0, false
		}
		if !skip() {
			return 0, false
		}
	}
	if !skip() { // body
		return 0, false
	}
	return off, true
}

// skipHeaders moves *off past an encoded header list in b.
func skipHeaders(b []byte, off *int, skip func() bool) bool {
	nh, n := binary.Uvarint(b[*off:])
	if n <= 0 || nh > maxHeaders {
		return false
	}
	*off += n
	for range nh {
		if !skip() || *off >= len(b) {
			return false
		}
		t := b[*off]
		*off++
		switch t {
		case 's':
			if !skip() {
				return false
			}
		case 'i':
			_, n := binary.Varint(b[*off:])
			if n <= 0 {
				return false
			}
			*off += n
		case 'b':
			if *off >= len(b) || b[*off] > 1 {
				return false
			}
			*off++
		default:
			return false
		}
	}
	return true
}

// trusted reports whether only the tree's copy of seq counts.
func (s *salvager) trusted(seq uint64) bool {
	if s.noTree || s.damaged[seq] {
		return false
	}
	for _, r := range s.lost {
		if r.contains(seq) {
			return false
		}
	}
	return true
}

// picked is a record chosen for the new file.
type picked struct {
	seq uint64
	c   copyOf
}

// pick applies the rules at the top of this file and fills the report's
// counts. The result is in sequence order.
func (s *salvager) pick() []picked {
	slices.SortFunc(s.copies, func(a, b copyOf) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.tier, b.tier))
	})
	var out, moved []picked
	rep := s.rep
	for i := 0; i < len(s.copies); {
		j := i
		for j < len(s.copies) && s.copies[j].seq == s.copies[i].seq {
			j++
		}
		group := s.copies[i:j]
		i = j
		seq := group[0].seq
		trusted := s.trusted(seq)
		if group[0].tier == tierTree {
			// The tree's copy wins, but for its state: a delivered copy
			// of the same record anywhere proves delivery. Another record
			// claiming the same sequence (a flipped key bit) moves to a
			// new sequence unless it is a stale copy where the tree
			// vouches for the sequence.
			rep.FromTree++
			win := group[0]
			ids := map[uint64]bool{win.id: true}
			for _, c := range group[1:] {
				if c.id == win.id && c.delivered && !win.delivered {
					win = c
				}
				if ids[c.id] || (c.tier == tierStale && trusted) {
					rep.Copies++
					continue
				}
				ids[c.id] = true
				moved = append(moved, picked{0, c})
			}
			out = append(out, picked{seq, win})
			continue
		}
		// No tree copy. Stale copies count only where the tree cannot
		// vouch for the sequence; copies in the tree's own pages always.
		eligible := group
		if trusted {
			eligible = nil
			for _, c := range group {
				if c.tier == tierCurrent {
					eligible = append(eligible, c)
				}
			}
			rep.Copies += int64(len(group) - len(eligible))
		}
		if len(eligible) > 0 {
			out, moved = s.pickScanned(eligible, out, moved)
		}
	}
	// Records a delivered span covers are delivered: written with the
	// span's time, into the retained bucket of the fresh file. Only those
	// that kept their sequence: a moved one's old sequence is not its own.
	s.spans = unionSpans(s.spans)
	for i := range out {
		p := &out[i]
		if p.c.delivered {
			continue
		}
		if j := spanIndex(s.spans, p.seq); j >= 0 && s.spans[j].last >= p.seq {
			p.c.v = markDelivered(nil, p.c.v, fromUnixNano(s.spans[j].at))
			p.c.delivered = true
		}
	}
	// Give the records that lost their sequence new ones.
	next := s.maxSeq + 1
	for _, m := range moved {
		m.seq = next
		next++
		out = append(out, m)
		rep.Reassigned++
	}
	// Lost: seen damaged where it counted, and never seen intact.
	var lost []uint64
	for seq := range s.damaged {
		lost = append(lost, seq)
	}
	for seq := range s.badCopies {
		if !s.damaged[seq] && !s.trusted(seq) {
			lost = append(lost, seq)
		}
	}
	slices.Sort(lost)
	for _, seq := range lost {
		if _, found := slices.BinarySearchFunc(out, seq, func(p picked, seq uint64) int { return cmp.Compare(p.seq, seq) }); !found {
			rep.LostCount++
			if len(rep.Lost) < maxLostListed {
				rep.Lost = append(rep.Lost, seq)
			}
		}
	}
	for _, p := range out {
		if p.c.delivered {
			rep.Delivered++
		} else {
			rep.Pending++
		}
	}

	rep.NextSeq = max(next, s.scanNextSeq)
	if c := s.counters; c != nil {
		rep.CountersOK = true
		rep.ExpectedPending = int64(c[string(metaPendingCount)])
		rep.ExpectedDelivered = int64(c[string(metaRetainedCount)])
		rep.ExpectedNextSeq = c[string(metaNextSeq)]
		rep.NextSeq = max(rep.NextSeq, rep.ExpectedNextSeq)
	}
	return out
}

// pickScanned chooses among copies of one sequence that the tree does not
// vouch for: the most frequent record keeps the sequence (delivered copy
// first), every other distinct record moves.
func (s *salvager) pickScanned(group []copyOf, out, moved []picked) ([]picked, []picked) {
	type cand struct {
		best  copyOf
		count int
	}
	var cands []*cand
	byID := map[uint64]*cand{}
	for _, c := range group {
		k := byID[c.id]
		if k == nil {
			k = &cand{best: c}
			byID[c.id] = k
			cands = append(cands, k)
		} else {
			s.rep.Copies++
			if c.delivered && !k.best.delivered {
				k.best = c
			}
		}
		k.count++
	}
	slices.SortStableFunc(cands, func(a, b *cand) int { return cmp.Compare(b.count, a.count) })
	s.rep.FromScan += int64(len(cands))
	out = append(out, picked{group[0].seq, cands[0].best})
	for _, k := range cands[1:] {
		moved = append(moved, picked{0, k.best})
	}
	return out, moved
}

// mergeRanges sorts and merges overlapping ranges.
func mergeRanges(rs []SeqRange) []SeqRange {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b SeqRange) int { return cmp.Compare(a.From, b.From) })
	out := []SeqRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if last.To == 0 || r.From <= last.To {
			if last.To != 0 && (r.To == 0 || r.To > last.To) {
				last.To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// writeSalvaged writes the picked records into a new outbox file at dst.
func writeSalvaged(dst string, s *salvager, recs []picked) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("outbox: salvage: %w", err)
	}
	w, err := createFresh(dst)
	if err != nil {
		return err
	}
	if err := w.putRoutes(s.routes); err != nil {
		w.abort()
		return fmt.Errorf("outbox: salvage: write %s: %w", dst, err)
	}
	s.rep.Routes = len(s.routes)
	for _, p := range recs {
		if err := w.put(p.seq, p.c.v); err != nil {
			w.abort()
			return fmt.Errorf("outbox: salvage: write %s: %w", dst, err)
		}
	}
	if err := w.finish(s.rep.NextSeq); err != nil {
		return fmt.Errorf("outbox: salvage: write %s: %w", dst, err)
	}
	return nil
}

// freshWriter writes encoded records with their sequences into a new
// outbox file, in sequence order, in transactions of bounded size.
type freshWriter struct {
	path string
	db   *bolt.DB
	tx   *bolt.Tx
	txN  int
	c    counts
}

const freshTxBytes = 32 << 20

func createFresh(path string) (*freshWriter, error) {
	// O_EXCL: never write into a file that appeared meanwhile.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("outbox: create %s: %w", path, err)
	}
	f.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("outbox: create %s: %w", path, err)
	}
	w := &freshWriter{path: path, db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketPending, bucketRetained, bucketRoutes} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return putUint64(tx.Bucket(bucketMeta), metaFormat, fileFormat)
	})
	if err != nil {
		w.abort()
		return nil, fmt.Errorf("outbox: create %s: %w", path, err)
	}
	return w, nil
}

// putRoutes writes routes (checked entries of a routes bucket) in a
// transaction of their own, before any record names them.
func (w *freshWriter) putRoutes(routes map[uint32]routeCopy) error {
	if len(routes) == 0 {
		return nil
	}
	return w.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRoutes)
		for id, r := range routes {
			if err := b.Put(routeKey(id), r.v); err != nil {
				return err
			}
		}
		return nil
	})
}

// put adds one encoded record under seq; seqs must increase.
func (w *freshWriter) put(seq uint64, v []byte) error {
	if w.tx == nil {
		tx, err := w.db.Begin(true)
		if err != nil {
			return err
		}
		w.tx = tx
		w.tx.Bucket(bucketPending).FillPercent = 1.0
		w.tx.Bucket(bucketRetained).FillPercent = 1.0
	}
	_, delivered := recordTimes(v)
	b, k := w.tx.Bucket(bucketPending), seqKey(seq)
	if delivered != 0 {
		b = w.tx.Bucket(bucketRetained)
		w.c.retainedCount++
		w.c.retainedBytes += int64(len(v))
	} else {
		w.c.pendingCount++
		w.c.pendingBytes += int64(len(v))
	}
	if err := b.Put(k[:], v); err != nil {
		return err
	}
	w.c.nextSeq = max(w.c.nextSeq, seq+1)
	w.txN += len(v) + 8
	if w.txN >= freshTxBytes {
		w.txN = 0
		tx := w.tx
		w.tx = nil
		return tx.Commit()
	}
	return nil
}

// finish writes the counters with nextSeq (at least one above the highest
// record), fsyncs and closes the file.
func (w *freshWriter) finish(nextSeq uint64) error {
	if w.tx == nil {
		tx, err := w.db.Begin(true)
		if err != nil {
			w.abort()
			return err
		}
		w.tx = tx
	}
	w.c.nextSeq = max(w.c.nextSeq, nextSeq, 1)
	if err := w.c.put(w.tx.Bucket(bucketMeta)); err != nil {
		w.abort()
		return err
	}
	tx := w.tx
	w.tx = nil
	if err := tx.Commit(); err != nil {
		w.abort()
		return err
	}
	if err := w.db.Sync(); err != nil {
		w.abort()
		return err
	}
	if err := w.db.Close(); err != nil {
		return err
	}
	return syncFileAndDir(w.path)
}

// abort drops the half-written file.
func (w *freshWriter) abort() {
	if w.tx != nil {
		_ = w.tx.Rollback()
		w.tx = nil
	}
	_ = w.db.Close()
	_ = os.Remove(w.path)
}

// syncFileAndDir fsyncs a file and the directory that names it.
func syncFileAndDir(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// takeRoute keeps an intact route found in the tree or a page. A route id
// is written once with one route, but an id given out in a commit that
// failed may have reached a free page with another route: the tree's copy
// wins, and two other copies that disagree are reported.
func (s *salvager) takeRoute(k, v []byte, tier uint8) bool {
	id, _, err := decodeRouteEntry(k, v)
	if err != nil {
		return false
	}
	if s.routes == nil {
		s.routes = map[uint32]routeCopy{}
	}
	old, ok := s.routes[id]
	switch {
	case !ok || tier < old.tier:
		s.routes[id] = routeCopy{v: v, tier: tier}
	case string(old.v) != string(v) && tier == old.tier && tier != tierTree && tier != tierRecord:
		s.problem("route %d: two different copies outside the tree; the first found is kept", id)
	}
	return true
}

// dropRouteless treats every record copy that names a route not found as
// damaged: it cannot be published as it was written.
func (s *salvager) dropRouteless() {
	s.copies = slices.DeleteFunc(s.copies, func(c copyOf) bool {
		id, _ := recordRouteID(c.v)
		if id == 0 {
			return false
		}
		if _, ok := s.routes[id]; ok {
			return false
		}
		s.rep.NoRoute++
		s.problem("record %d names route %d, which no intact copy of the routes bucket holds", c.seq, id)
		if c.tier == tierTree {
			s.damaged[c.seq] = true
			s.rep.TreeComplete = false
		} else {
			s.badCopies[c.seq] = true
		}
		return true
	})
}

// takeSpan keeps an intact delivered span found in the tree or a page.
func (s *salvager) takeSpan(k, v []byte) bool {
	sp, err := decodeSpan(k, v)
	if err != nil {
		return false
	}
	s.spans = append(s.spans, sp)
	return true
}

// unionSpans sorts spans and merges those that overlap (copies of one span
// from several versions of the file), keeping the latest delivery time.
func unionSpans(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.first, b.first) })
	var out []span
	for _, sp := range spans {
		if n := len(out); n > 0 && sp.first <= out[n-1].last {
			p := &out[n-1]
			p.last, p.at = max(p.last, sp.last), max(p.at, sp.at)
			continue
		}
		out = append(out, sp)
	}
	return out
}
