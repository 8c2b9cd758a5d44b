package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"runtime/debug"
	"slices"
	"syscall"
)

// The verifier reads bbolt's on-disk format itself, with every offset
// bounds-checked, instead of trusting bbolt: bbolt assumes its pages are
// sound and on a damaged file it panics, sometimes on a goroutine of its
// own where no recover can reach. Open runs it before bbolt sees the file;
// `clickedge outbox verify` runs it on demand.
//
// It checks: both meta pages (magic, version, checksum); the file is as
// long as the high-water mark says; every page reachable from the root is
// in bounds, of the right type, referenced once, with its elements inside
// the page and its keys in order; the freelist does not hold reachable
// pages; every record's checksum; every route a record names is in the
// routes bucket, and every route a record carries is the bucket's; and
// the counters in the meta bucket match the records.
//
// A meta page that fails its checksum is damage, not a torn write: the meta
// fields sit in the page's first 80 bytes, inside one disk sector, so a
// crash leaves them old or new but whole. bbolt would silently fall back to
// the older meta page and drop the last commit; the verifier refuses.

// bbolt format constants (format version 2).
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16
	elementSize      = 16
	metaSize         = 64
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	metaPageFlag     = 0x04
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01
	noFreelist       = ^uint64(0)
	maxProblems      = 20
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	FileSize    int64
	PageSize    int
	Pages       uint64 // high-water mark
	TxID        uint64
	FreePages   int
	LeakedPages int // neither reachable nor free: wasted, not damage

	NextSeq       uint64
	Pending       int64
	PendingBytes  int64
	Retained      int64
	RetainedBytes int64

	// Problems lists the damage found, at most 20 entries; empty when the
	// file is sound.
	Problems []string

	// Log describes the log next to the file (Options.Log), nil when there
	// is none; LogUnmoved counts its records the file does not hold yet
	// (the node moves them into it when it starts).
	Log        *LogReport
	LogUnmoved int
}

// Verify checks the outbox file at path without modifying it. It takes a
// shared lock, so it fails with ErrLocked on the file of a running node.
// The error wraps ErrCorrupt when the file is damaged; the report says
// where.
func Verify(path string) (*VerifyReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("outbox: verify: %w", err)
	}
	defer f.Close()
	if err := lockFile(f, false, DefaultLockTimeout); err != nil {
		return nil, fmt.Errorf("%w: %s (is a clickedge node running on this data directory?)", ErrLocked, path)
	}
	rep, err := verifyFile(f)
	if rep == nil {
		return rep, err
	}
	lrep, lerr := inspectLog(path, rep.NextSeq)
	if lerr != nil {
		rep.Problems = append(rep.Problems, lerr.Error())
		return rep, errors.Join(err, lerr)
	}
	if rep.Log = lrep; lrep != nil && lrep.Records > 0 && lrep.LastSeq >= rep.NextSeq {
		rep.LogUnmoved = int(lrep.LastSeq - max(lrep.FirstSeq, rep.NextSeq) + 1)
	}
	return rep, err
}

// verifyFile checks an open, locked file. An empty file is a new outbox.
func verifyFile(f *os.File) (rep *VerifyReport, err error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("outbox: verify: %w", err)
	}
	rep = &VerifyReport{FileSize: fi.Size()}
	if fi.Size() == 0 {
		return rep, nil
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("outbox: verify: mmap: %w", err)
	}
	defer syscall.Munmap(data)

	// Every access is bounds-checked; this is a second net for a fault on a
	// file that shrinks under us.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("reading the file failed: %v", p))
			err = corruptError(f.Name(), errors.New(rep.Problems[0]))
		}
	}()

	v := &verifier{data: data, rep: rep}
	v.run()
	if len(rep.Problems) > 0 {
		msg := rep.Problems[0]
		if n := len(rep.Problems); n > 1 {
			msg = fmt.Sprintf("%s (and %d more problems)", msg, n-1)
		}
		return rep, corruptError(f.Name(), errors.New(msg))
	}
	return rep, nil
}

type verifier struct {
	data      []byte
	rep       *VerifyReport
	pageSize  int
	hwm       uint64
	reachable []uint64 // bitset of page ids
	meta      map[string]uint64

	// The delivered spans (visited before the pending bucket: buckets are
	// walked in name order) and, while the pending bucket is walked, the
	// records found of the current one.
	spans        []span
	spanAt       int
	spanRecords  int64
	spanBytes    int64
	pendingBegun bool

	// routes are the routes bucket's routes by id; named the ids records
	// name, each with the first record naming it; carried the routes that
	// records carry with their id (record.go), each with the first such
	// record. The routes bucket is walked after the records, so they are
	// compared at the end.
	routes  map[uint32]string
	named   map[uint32]uint64
	carried map[uint32]carriedRoute
}

// carriedRoute is a route a record carries with its id.
type carriedRoute struct {
	seq uint64
	enc string
}

func (v *verifier) problem(format string, args ...any) {
	if len(v.rep.Problems) < maxProblems {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf(format, args...))
	}
}

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// readMeta decodes and validates the meta struct at off.
func (v *verifier) readMeta(off int) (boltMeta, error) {
	if off+pageHeaderSize+metaSize > len(v.data) {
		return boltMeta{}, errors.New("past the end of the file")
	}
	b := v.data[off+pageHeaderSize : off+pageHeaderSize+metaSize]
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic {
		return boltMeta{}, errors.New("bad magic")
	}
	if le.Uint32(b[4:]) != boltVersion {
		return boltMeta{}, fmt.Errorf("format version %d, want %d", le.Uint32(b[4:]), boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if h.Sum64() != le.Uint64(b[56:]) {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	m := boltMeta{
		pageSize: le.Uint32(b[8:]),
		root:     le.Uint64(b[16:]),
		freelist: le.Uint64(b[32:]),
		pgid:     le.Uint64(b[40:]),
		txid:     le.Uint64(b[48:]),
	}
	if ps := m.pageSize; ps < 512 || ps > 1<<16 || ps&(ps-1) != 0 {
		return boltMeta{}, fmt.Errorf("implausible page size %d", ps)
	}
	return m, nil
}

func (v *verifier) run() {
	m0, err0 := v.readMeta(0)
	if err0 != nil {
		v.problem("meta page 0: %v", err0)
		return
	}
	v.pageSize = int(m0.pageSize)
	m1, err1 := v.readMeta(v.pageSize)
	if err1 != nil {
		v.problem("meta page 1: %v", err1)
		return
	}
	m := m0
	if m1.txid > m0.txid {
		m = m1
	}
	v.rep.PageSize = v.pageSize
	v.rep.Pages = m.pgid
	v.rep.TxID = m.txid
	v.hwm = m.pgid
	if m.pgid < 2 {
		v.problem("meta: high-water mark %d", m.pgid)
		return
	}
	if need := int64(m.pgid) * int64(v.pageSize); int64(len(v.data)) < need {
		v.problem("file is %d bytes, shorter than the %d pages (%d bytes) it holds: truncated", len(v.data), m.pgid, need)
		return
	}
	v.reachable = make([]uint64, (m.pgid+63)/64)
	v.mark(0, 0, "meta")
	v.mark(1, 0, "meta")

	var free []uint64
	if m.freelist != noFreelist {
		free = v.readFreelist(m.freelist)
	}
	if m.root == 0 || m.root >= m.pgid {
		v.problem("meta: root page %d out of bounds", m.root)
		return
	}
	v.walkRoot(m.root)

	freeSet := make(map[uint64]bool, len(free))
	for _, id := range free {
		switch {
		case id < 2 || id >= m.pgid:
			v.problem("freelist: page %d out of bounds", id)
		case freeSet[id]:
			v.problem("freelist: page %d freed twice", id)
		case v.isMarked(id):
			v.problem("freelist: page %d is free but in use: it would be overwritten", id)
		}
		freeSet[id] = true
	}
	v.rep.FreePages = len(freeSet)
	if m.freelist != noFreelist {
		for id := uint64(2); id < m.pgid; id++ {
			if !v.isMarked(id) && !freeSet[id] {
				v.rep.LeakedPages++
			}
		}
	}
	v.checkCounters()
	v.checkRoutes()
}

func (v *verifier) isMarked(id uint64) bool { return v.reachable[id/64]&(1<<(id%64)) != 0 }

// mark records pages id..id+overflow as reachable.
func (v *verifier) mark(id uint64, overflow uint32, what string) bool {
	if id+uint64(overflow) >= v.hwm {
		v.problem("%s: page %d (+%d overflow) beyond the high-water mark %d", what, id, overflow, v.hwm)
		return false
	}
	for i := id; i <= id+uint64(overflow); i++ {
		if v.isMarked(i) {
			v.problem("%s: page %d referenced twice", what, i)
			return false
		}
		v.reachable[i/64] |= 1 << (i % 64)
	}
	return true
}

// page returns the bytes of page id with its overflow, or nil.
func (v *verifier) page(id uint64, what string) (p []byte, flags, count uint16) {
	off := int64(id) * int64(v.pageSize)
	h, ok := readPageHeader(v.data, int(off))
	if id >= v.hwm || off > int64(len(v.data)) || !ok {
		v.problem("%s: page %d beyond the end", what, id)
		return nil, 0, 0
	}
	if h.id != id {
		v.problem("%s: page %d says it is page %d", what, id, h.id)
		return nil, 0, 0
	}
	flags, count = h.flags, h.count
	overflow := h.overflow
	if !v.mark(id, overflow, what) {
		return nil, 0, 0
	}
	end := off + int64(overflow+1)*int64(v.pageSize)
	if end > int64(len(v.data)) {
		v.problem("%s: page %d overflows the file", what, id)
		return nil, 0, 0
	}
	return v.data[off:end], flags, count
}

func (v *verifier) readFreelist(id uint64) []uint64 {
	p, flags, count := v.page(id, "freelist")
	if p == nil {
		return nil
	}
	if flags != freelistPageFlag {
		v.problem("freelist: page %d has type %#x", id, flags)
		return nil
	}
	n, off := uint64(count), pageHeaderSize
	if count == 0xFFFF {
		if len(p) < pageHeaderSize+8 {
			v.problem("freelist: page %d too short", id)
			return nil
		}
		n = binary.LittleEndian.Uint64(p[pageHeaderSize:])
		off += 8
	}
	if n > uint64(len(p)-off)/8 {
		v.problem("freelist: page %d claims %d ids, room for %d", id, n, (len(p)-off)/8)
		return nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = binary.LittleEndian.Uint64(p[off+8*i:])
	}
	return ids
}

// walkRoot walks the root bucket, whose leaf entries are the outbox's
// buckets.
func (v *verifier) walkRoot(root uint64) {
	seen := map[string]bool{}
	v.walkPage(root, nil, nil, "root", func(k, val []byte, flags uint32) {
		name := string(k)
		if flags&bucketLeafFlag == 0 {
			v.problem("root: key %q is not a bucket", name)
			return
		}
		switch {
		case name == "meta", name == "pending", name == "retained", name == "delivered", name == "routes", isIndexBucket(name):
		default:
			v.problem("root: unexpected bucket %q: not an outbox file?", name)
			return
		}
		seen[name] = true
		v.walkBucket(name, val)
	})
	if len(seen) == 0 {
		return // a new file: bbolt initialised it, the outbox did not yet
	}
	for _, name := range []string{"meta", "pending", "retained"} {
		if !seen[name] {
			v.problem("bucket %q missing", name)
		}
	}
}

// walkBucket walks a bucket given its value in the parent (an InBucket
// header, followed by an inline page when the bucket's root is 0).
func (v *verifier) walkBucket(name string, val []byte) {
	if len(val) < 16 {
		v.problem("bucket %q: header is %d bytes", name, len(val))
		return
	}
	if name == "meta" {
		v.meta = map[string]uint64{}
	}
	visit := func(k, val []byte, flags uint32) { v.visit(name, k, val, flags) }
	root, inline, _ := bucketValue(val)
	if root != 0 {
		v.walkPage(root, nil, nil, "bucket "+name, visit)
		return
	}
	h, ok := readPageHeader(inline, 0)
	if !ok {
		v.problem("bucket %q: inline page is %d bytes", name, len(inline))
		return
	}
	if h.flags != leafPageFlag {
		v.problem("bucket %q: inline page has type %#x", name, h.flags)
		return
	}
	v.walkLeaf(inline, h.count, nil, nil, "bucket "+name+" (inline)", visit)
}

// walkPage walks the subtree at page id. Every key must be >= lo and < hi
// (nil for no bound).
func (v *verifier) walkPage(id uint64, lo, hi []byte, what string, visit func(k, val []byte, flags uint32)) {
	p, flags, count := v.page(id, what)
	if p == nil {
		return
	}
	if !elementsFit(p, count) {
		v.problem("%s: page %d has %d elements, more than fit", what, id, count)
		return
	}
	switch flags {
	case leafPageFlag:
		v.walkLeaf(p, count, lo, hi, what, visit)
	case branchPageFlag:
		var prev []byte
		for i := 0; i < int(count); i++ {
			k, child, ok := branchElement(p, i)
			if !ok {
				v.problem("%s: branch page %d element %d out of the page", what, id, i)
				return
			}
			if !v.ordered(prev, k, lo, hi, i == 0) {
				v.problem("%s: branch page %d key %d out of order", what, id, i)
				return
			}
			next := hi
			if i+1 < int(count) {
				if nk, _, ok := branchElement(p, i+1); ok {
					next = nk
				}
			}
			v.walkPage(child, k, next, what, visit)
			prev = k
		}
	default:
		v.problem("%s: page %d has type %#x, want a branch or leaf page", what, id, flags)
	}
}

func (v *verifier) walkLeaf(p []byte, count uint16, lo, hi []byte, what string, visit func(k, val []byte, flags uint32)) {
	if !elementsFit(p, count) {
		v.problem("%s: leaf has %d elements, more than fit", what, count)
		return
	}
	var prev []byte
	for i := 0; i < int(count); i++ {
		flags, k, val, ok := leafElement(p, i)
		if !ok {
			v.problem("%s: leaf element %d out of the page", what, i)
			return
		}
		if !v.ordered(prev, k, lo, hi, i == 0) {
			v.problem("%s: leaf key %x out of order", what, k)
			return
		}
		visit(k, val, flags)
		prev = k
	}
}

// ordered checks prev < k (or, for the first key, lo <= k) and k < hi.
func (v *verifier) ordered(prev, k, lo, hi []byte, first bool) bool {
	if first {
		if lo != nil && string(k) < string(lo) {
			return false
		}
	} else if string(prev) >= string(k) {
		return false
	}
	return hi == nil || string(k) < string(hi)
}

// slice returns p[off:off+n] when it lies inside p.
func slice(p []byte, off, n int) ([]byte, bool) {
	if off < 0 || n < 0 || off > len(p) || n > len(p)-off {
		return nil, false
	}
	return p[off : off+n], true
}

// visit checks one key/value pair of an outbox bucket.
func (v *verifier) visit(bucket string, k, val []byte, flags uint32) {
	if flags&bucketLeafFlag != 0 {
		v.problem("bucket %q: unexpected nested bucket %q", bucket, k)
		return
	}
	if isIndexBucket(bucket) {
		if msg := checkIndexElement(bucket, k, val); msg != "" {
			v.problem("%s: %s", bucket, msg)
		}
		return
	}
	if bucket == "delivered" {
		if v.pendingBegun {
			v.problem("delivered: walked after the pending bucket")
			return
		}
		sp, err := decodeSpan(k, val)
		if err != nil {
			v.problem("%v", err)
			return
		}
		if n := len(v.spans); n > 0 && sp.first <= v.spans[n-1].last {
			v.problem("delivered: span %d-%d overlaps %d-%d", sp.first, sp.last, v.spans[n-1].first, v.spans[n-1].last)
			return
		}
		v.spans = append(v.spans, sp)
		return
	}
	if bucket == "routes" {
		id, r, err := decodeRouteEntry(k, val)
		if err != nil {
			v.problem("%v", err)
			return
		}
		if v.routes == nil {
			v.routes = map[uint32]string{}
		}
		v.routes[id] = r.enc
		return
	}
	if bucket == "meta" {
		if len(val) == 8 {
			v.meta[string(k)] = binary.BigEndian.Uint64(val)
		} else {
			v.problem("meta: key %q has a %d-byte value", k, len(val))
		}
		return
	}
	if len(k) != 8 {
		v.problem("%s: key %x is not a sequence number", bucket, k)
		return
	}
	seq := keySeq(k)
	if err := checkRecord(val); err != nil {
		v.problem("%s: record %d: %v", bucket, seq, err)
		return
	}
	switch id, inline, n := recordRoute(val); {
	case n < 0:
		v.problem("%s: record %d: bad route field", bucket, seq)
	case !inline:
		if v.named == nil {
			v.named = map[uint32]uint64{}
		}
		if _, ok := v.named[id]; !ok {
			v.named[id] = seq
		}
	case id != 0:
		if v.carried == nil {
			v.carried = map[uint32]carriedRoute{}
		}
		if _, ok := v.carried[id]; !ok {
			if _, enc := routeCarriedBy(val); enc == nil {
				v.problem("%s: record %d: the route it carries does not decode", bucket, seq)
			} else {
				v.carried[id] = carriedRoute{seq, string(enc)}
			}
		}
	}
	_, delivered := recordTimes(val)
	switch bucket {
	case "pending":
		v.pendingBegun = true
		if delivered != 0 {
			v.problem("pending: record %d is marked delivered", seq)
		}
		for v.spanAt < len(v.spans) && v.spans[v.spanAt].last < seq {
			v.endSpan()
		}
		if v.spanAt < len(v.spans) && v.spans[v.spanAt].first <= seq {
			// Delivered in place: kept for replay.
			v.spanRecords++
			v.spanBytes += int64(len(val))
			v.rep.Retained++
			v.rep.RetainedBytes += int64(len(val))
			break
		}
		v.rep.Pending++
		v.rep.PendingBytes += int64(len(val))
	case "retained":
		if delivered == 0 {
			v.problem("retained: record %d is not marked delivered", seq)
		}
		v.rep.Retained++
		v.rep.RetainedBytes += int64(len(val))
	}
	if seq > v.rep.NextSeq {
		v.rep.NextSeq = seq // highest seen, compared with next_seq below
	}
}

// endSpan checks that the current span named exactly the records found in
// it, and moves to the next.
func (v *verifier) endSpan() {
	sp := v.spans[v.spanAt]
	// Pruning deletes a span's records from its first on and moves the
	// span's start in the same commit, so every sequence in it is there.
	if v.spanRecords != sp.count() || v.spanBytes != sp.bytes {
		v.problem("delivered: span %d-%d names %d records (%d bytes), the pending bucket holds %d (%d bytes)",
			sp.first, sp.last, sp.count(), sp.bytes, v.spanRecords, v.spanBytes)
	}
	v.spanAt++
	v.spanRecords, v.spanBytes = 0, 0
}

// checkRoutes reports every route a record names that the routes bucket
// does not hold (such a record cannot be published as it was written), and
// every route a record carries that differs from the bucket's (the writer
// copies the bucket's, so one of them is not what was written).
func (v *verifier) checkRoutes() {
	var ids []uint32
	for id := range v.named {
		if _, ok := v.routes[id]; !ok {
			ids = append(ids, id)
		}
	}
	for id := range v.carried {
		if _, named := v.named[id]; !named {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		seq, ok := v.named[id]
		if !ok {
			seq = v.carried[id].seq
		}
		if _, ok := v.routes[id]; !ok {
			v.problem("record %d names route %d, which the routes bucket does not hold", seq, id)
		}
	}
	for id, c := range v.carried {
		if enc, ok := v.routes[id]; ok && enc != c.enc {
			v.problem("record %d carries route %d, which differs from the routes bucket's", c.seq, id)
		}
	}
}

func (v *verifier) checkCounters() {
	for v.spanAt < len(v.spans) {
		v.endSpan()
	}
	if v.meta == nil {
		return
	}
	highest := v.rep.NextSeq
	v.rep.NextSeq = v.meta[string(metaNextSeq)]
	if highest >= v.rep.NextSeq && (v.rep.Pending+v.rep.Retained) > 0 {
		v.problem("meta: next_seq %d is not above the highest record %d", v.rep.NextSeq, highest)
	}
	check := func(key []byte, got int64) {
		if want := int64(v.meta[string(key)]); want != got {
			v.problem("meta: %s says %d, the records add up to %d", key, want, got)
		}
	}
	check(metaPendingCount, v.rep.Pending)
	check(metaPendingBytes, v.rep.PendingBytes)
	check(metaRetainedCount, v.rep.Retained)
	check(metaRetainedBytes, v.rep.RetainedBytes)
}
