package outbox

import "encoding/binary"

// One reader of bbolt's on-disk pages for Verify and Salvage (harden #12):
// they differ in what they do with damage (Verify reports it, Salvage
// works around it), not in how a page is laid out. Every function here
// bounds-checks what it reads and reports false rather than panic; none
// trusts a count or an offset read from the file.
//
// Layout (bbolt format 2, little-endian): a page header of 16 bytes (id
// u64, flags u16, count u16, overflow u32), then count elements of 16
// bytes. A leaf element is flags u32, pos u32, ksize u32, vsize u32; a
// branch element is pos u32, ksize u32, child page id u64; pos counts from
// the element's own start. A bucket's value in its parent is its root page
// id u64 and a sequence u64, followed by an inline leaf page when the root
// is 0.

// pageHeader is the header of one page.
type pageHeader struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

// readPageHeader decodes the page header at data[off:].
func readPageHeader(data []byte, off int) (pageHeader, bool) {
	if off < 0 || off > len(data)-pageHeaderSize {
		return pageHeader{}, false
	}
	h := data[off:]
	le := binary.LittleEndian
	return pageHeader{id: le.Uint64(h), flags: le.Uint16(h[8:]), count: le.Uint16(h[10:]), overflow: le.Uint32(h[12:])}, true
}

// elementsFit reports whether count elements fit in page p.
func elementsFit(p []byte, count uint16) bool {
	return pageHeaderSize+int(count)*elementSize <= len(p)
}

// leafElement decodes element i of leaf page p. ok is false when the
// element, its key or its value lies outside p.
func leafElement(p []byte, i int) (flags uint32, k, v []byte, ok bool) {
	e := pageHeaderSize + i*elementSize
	if i < 0 || e+elementSize > len(p) {
		return 0, nil, nil, false
	}
	le := binary.LittleEndian
	flags, pos := le.Uint32(p[e:]), int(le.Uint32(p[e+4:]))
	ksize, vsize := int(le.Uint32(p[e+8:])), int(le.Uint32(p[e+12:]))
	k, ok1 := slice(p, e+pos, ksize)
	v, ok2 := slice(p, e+pos+ksize, vsize)
	return flags, k, v, ok1 && ok2
}

// branchElement decodes element i of branch page p: its key and child
// page. ok is false when the element or its key lies outside p (child is
// then still set when the element itself is inside).
func branchElement(p []byte, i int) (k []byte, child uint64, ok bool) {
	e := pageHeaderSize + i*elementSize
	if i < 0 || e+elementSize > len(p) {
		return nil, 0, false
	}
	le := binary.LittleEndian
	child = le.Uint64(p[e+8:])
	k, ok = slice(p, e+int(le.Uint32(p[e:])), int(le.Uint32(p[e+4:])))
	return k, child, ok
}

// elementEnd returns where the data of element i of page p ends, counted
// from the page's start (it may lie beyond p: in overflow pages, or
// nowhere when damaged). The element itself must lie inside p.
func elementEnd(p []byte, i int, leaf bool) int {
	e := pageHeaderSize + i*elementSize
	le := binary.LittleEndian
	if leaf {
		return e + int(le.Uint32(p[e+4:])) + int(le.Uint32(p[e+8:])) + int(le.Uint32(p[e+12:]))
	}
	return e + int(le.Uint32(p[e:])) + int(le.Uint32(p[e+4:]))
}

// bucketValue decodes a bucket's value in its parent: its root page, and
// when that is 0 the inline page that follows. ok is false when val is
// shorter than the bucket header.
func bucketValue(val []byte) (root uint64, inline []byte, ok bool) {
	if len(val) < 16 {
		return 0, nil, false
	}
	return binary.LittleEndian.Uint64(val), val[16:], true
}

// inlineLeaf returns the element count of an inline page that is a leaf;
// ok is false when it is too short or of another type.
func inlineLeaf(inline []byte) (count uint16, ok bool) {
	h, ok := readPageHeader(inline, 0)
	if !ok || h.flags != leafPageFlag {
		return 0, false
	}
	return h.count, true
}
