package outbox

import (
	"encoding/binary"
	"testing"
)

// harden #12: Verify and Salvage read pages through one reader. It must
// never read outside the page, whatever the header and element fields
// say: each decoded key and value lies inside p, and nothing panics.
func FuzzPageReader(f *testing.F) {
	leaf := make([]byte, 64)
	binary.LittleEndian.PutUint16(leaf[8:], leafPageFlag)
	binary.LittleEndian.PutUint16(leaf[10:], 1)
	binary.LittleEndian.PutUint32(leaf[16+4:], 16) // pos: just past the element
	binary.LittleEndian.PutUint32(leaf[16+8:], 8)  // ksize
	binary.LittleEndian.PutUint32(leaf[16+12:], 8) // vsize
	f.Add(leaf, 0)
	f.Add(leaf[:20], 0)
	f.Add([]byte{}, 3)
	f.Fuzz(func(t *testing.T, p []byte, i int) {
		inside := func(b []byte) {
			if len(b) == 0 {
				return
			}
			// b must alias p: its start lies within p's backing array.
			start := len(p) - len(b)
			for off := 0; off <= start; off++ {
				if &p[off] == &b[0] {
					return
				}
			}
			t.Fatalf("element slice of %d bytes lies outside the page", len(b))
		}
		h, ok := readPageHeader(p, 0)
		if ok != (len(p) >= pageHeaderSize) {
			t.Fatalf("readPageHeader(%d bytes) ok = %v", len(p), ok)
		}
		if ok {
			_ = elementsFit(p, h.count)
		}
		if _, k, v, ok := leafElement(p, i); ok {
			inside(k)
			inside(v)
		}
		if k, _, ok := branchElement(p, i); ok {
			inside(k)
		}
		if root, inline, ok := bucketValue(p); ok && root == 0 {
			_, _ = inlineLeaf(inline)
		}
	})
}

// harden #12: the reader decodes what bbolt writes. A leaf with one
// element, a branch with two, a bucket value with an inline page.
func TestPageReaderDecodes(t *testing.T) {
	le := binary.LittleEndian
	leaf := make([]byte, 64)
	le.PutUint64(leaf, 7)
	le.PutUint16(leaf[8:], leafPageFlag)
	le.PutUint16(leaf[10:], 1)
	le.PutUint32(leaf[16:], bucketLeafFlag)
	le.PutUint32(leaf[16+4:], 16)
	le.PutUint32(leaf[16+8:], 3)
	le.PutUint32(leaf[16+12:], 2)
	copy(leaf[32:], "keyva")
	h, ok := readPageHeader(leaf, 0)
	if !ok || h.id != 7 || h.flags != leafPageFlag || h.count != 1 || !elementsFit(leaf, h.count) {
		t.Fatalf("readPageHeader = %+v %v", h, ok)
	}
	flags, k, v, ok := leafElement(leaf, 0)
	if !ok || flags != bucketLeafFlag || string(k) != "key" || string(v) != "va" {
		t.Fatalf("leafElement = %d %q %q %v, want 1 key va true", flags, k, v, ok)
	}
	if end := elementEnd(leaf, 0, true); end != 16+16+3+2 {
		t.Fatalf("elementEnd = %d, want 37", end)
	}
	if _, _, _, ok := leafElement(leaf, 3); ok {
		t.Fatal("leafElement past the page: ok")
	}
	le.PutUint32(leaf[16+12:], 1000) // value beyond the page
	if _, _, _, ok := leafElement(leaf, 0); ok {
		t.Fatal("leafElement with its value beyond the page: ok")
	}

	branch := make([]byte, 64)
	le.PutUint16(branch[8:], branchPageFlag)
	le.PutUint16(branch[10:], 2)
	le.PutUint32(branch[16:], 32) // pos of key 0: 16+32 = 48
	le.PutUint32(branch[16+4:], 2)
	le.PutUint64(branch[16+8:], 42)
	le.PutUint32(branch[32:], 18) // key 1 at 32+18 = 50
	le.PutUint32(branch[32+4:], 2)
	le.PutUint64(branch[32+8:], 43)
	copy(branch[48:], "aabb")
	if k, child, ok := branchElement(branch, 1); !ok || string(k) != "bb" || child != 43 {
		t.Fatalf("branchElement(1) = %q %d %v, want bb 43 true", k, child, ok)
	}
	if k, child, ok := branchElement(branch, 0); !ok || string(k) != "aa" || child != 42 {
		t.Fatalf("branchElement(0) = %q %d %v, want aa 42 true", k, child, ok)
	}

	val := append(make([]byte, 16), leaf...)
	root, inline, ok := bucketValue(val)
	if n, lok := inlineLeaf(inline); !ok || root != 0 || !lok || n != 1 {
		t.Fatalf("bucketValue/inlineLeaf = %d, %d %v %v", root, n, ok, lok)
	}
	if _, _, ok := bucketValue(val[:15]); ok {
		t.Fatal("bucketValue of 15 bytes: ok")
	}
}
