package catalog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickedge/clickedge/catalog/catalogtest"
)

// writeSnapshot writes a snapshot in the current format holding es as
// given (in their order, not sorted), with a valid checksum: damage only
// the store's own checks can find.
func writeSnapshot(t *testing.T, dir string, es []Entry) {
	t.Helper()
	var sum [4]uint64
	for _, e := range es {
		h := entryHash(e.Code, e.HLC, e.Node)
		for i := range sum {
			sum[i] += h[i]
		}
	}
	p := []byte(snapshotMagic)
	for _, v := range sum {
		p = binary.BigEndian.AppendUint64(p, v)
	}
	p = binary.AppendUvarint(p, uint64(len(es)))
	for _, e := range es {
		var link []byte
		if !e.Deleted {
			link = e.Link
		}
		p = appendEntry(p, e.Code, e.HLC, e.Node, link)
	}
	p = binary.AppendUvarint(p, 0)
	p = binary.BigEndian.AppendUint32(p, crc32.Checksum(p, castagnoli))
	if err := os.WriteFile(filepath.Join(dir, snapshotFile), p, 0o640); err != nil {
		t.Fatal(err)
	}
}

// issue #14 (links): a store opened from its snapshot compiles a link the
// first time it is looked up, once however many look it up at once; a
// compiled link stays compiled across a compaction unless its entry
// changed.
func TestLinksCompileWhenFirstLookedUp(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		code := fmt.Sprintf("c%03d", i)
		if _, err := s.Put(code, linkJSON(code, "https://x.example/"+code)); err != nil {
			t.Fatal(err)
		}
	}
	s.Delete("c050")
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(dir, &Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := s.Catalog()
	compiled := func() int {
		n := 0
		for i := range c.lazy.links {
			if l := c.lazy.links[i].Load(); l != nil && l != gone {
				n++
			}
		}
		return n
	}
	if n := compiled(); n != 0 {
		t.Fatalf("%d links compiled at open, want 0", n)
	}
	if c.Len() != 99 || c.Lookup("c050") != nil {
		t.Fatalf("Len = %d, Lookup(c050) = %v: want 99 and the tombstone not served", c.Len(), c.Lookup("c050"))
	}

	var wg sync.WaitGroup
	got := make([]*Link, 8)
	for g := range got {
		wg.Go(func() { got[g] = c.Lookup("c007") })
	}
	wg.Wait()
	for g, l := range got {
		if l == nil || l != got[0] || l.URL().String() != "https://x.example/c007" {
			t.Fatalf("goroutine %d: Lookup(c007) = %p %v, want one link %p for https://x.example/c007", g, l, l, got[0])
		}
	}
	if n := compiled(); n != 1 {
		t.Fatalf("%d links compiled after looking up one, want 1", n)
	}

	l8 := c.Lookup("c008")
	s.Put("c007", linkJSON("c007", "https://changed.example/"))
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	c2 := s.Catalog()
	if c2.lazy == c.lazy {
		t.Fatal("Compact kept the old base")
	}
	if l := c2.Lookup("c008"); l != l8 {
		t.Fatalf("after Compact, Lookup(c008) = %p, want the link compiled before, %p", l, l8)
	}
	if l := c2.Lookup("c007"); l == nil || l.URL().String() != "https://changed.example/" {
		t.Fatalf("after Compact, Lookup(c007) = %v, want the changed link", l)
	}
	if l := c.Lookup("c007"); l != got[0] {
		t.Fatal("the old catalog no longer serves what it did")
	}
}

// issue #14 (links): a snapshot that is damaged but checksums right (codes
// out of order or twice, a bad code) is refused with the file and the
// reason, as a bad checksum is.
func TestSnapshotDamageIsNamed(t *testing.T) {
	link := func(code string) Entry {
		return Entry{Code: code, HLC: 1 << 16, Node: "n", Link: linkJSON(code, "https://x.example/")}
	}
	for _, tc := range []struct {
		name string
		es   []Entry
		want string
	}{
		{"out of order", []Entry{link("b"), link("a")}, `code "a" out of order (after "b")`},
		{"twice", []Entry{link("a"), link("a")}, `code "a" out of order (after "a")`},
		{"bad code", []Entry{link("a b")}, `bad code "a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSnapshot(t, dir, tc.es)
			_, err := Open(dir, nil)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Join(dir, snapshotFile)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want ErrCorrupt naming %s and %q", err, filepath.Join(dir, snapshotFile), tc.want)
			}
		})
	}
	dir := t.TempDir()
	writeSnapshot(t, dir, []Entry{link("a"), link("b")})
	sp := filepath.Join(dir, snapshotFile)
	data, _ := os.ReadFile(sp)
	data[len(data)-10] ^= 1
	os.WriteFile(sp, data, 0o640)
	if _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), sp+": checksum mismatch") {
		t.Fatalf("Open = %v, want ErrCorrupt: %s: checksum mismatch", err, sp)
	}
}

// A stored link that no longer compiles (a bug: entries are checked on
// their way in) is not served; the store keeps its entry, and every other
// link serves.
func TestStoredLinkThatFailsToCompile(t *testing.T) {
	dir := t.TempDir()
	writeSnapshot(t, dir, []Entry{
		{Code: "bad", HLC: 1 << 16, Node: "n", Link: []byte(`{"code":"bad","url":"ftp://x.example/"}`)},
		{Code: "good", HLC: 1 << 16, Node: "n", Link: linkJSON("good", "https://g.example/")},
	})
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l := s.Catalog().Lookup("bad"); l != nil {
		t.Fatalf("Lookup(bad) = %v, want nil", l)
	}
	if l := s.Catalog().Lookup("good"); l == nil {
		t.Fatal("Lookup(good) = nil")
	}
	if e, ok := s.Get("bad"); !ok || !bytes.Contains(e.Link, []byte("ftp:")) {
		t.Fatalf("Get(bad) = %+v, %v: want the entry kept", e, ok)
	}
}

// A link written through the API is parsed alone and waits in the overlay
// until the next compaction (up to an eighth of the catalog): it must hold
// a few KB, not the chunks a big parse allocates (it held 339 KB each).
func TestOverlayLinksAreSmall(t *testing.T) {
	s := openMem(t, "n")
	const n = 1000
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := range n {
		code := fmt.Sprintf("c%04d", i)
		link := fmt.Sprintf(`{"code":%q,"url":"https://x.example/","rules":[{"name":"r","when":"country == \"DE\"","split":[{"url":"https://d.example/","weight":1}]}]}`, code)
		if _, err := s.Put(code, []byte(link)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if s.Catalog().overlaid() != n {
		t.Fatalf("%d links in the overlay, want %d", s.Catalog().overlaid(), n)
	}
	if per := (int64(m1.HeapAlloc) - int64(m0.HeapAlloc)) / n; per > 32<<10 {
		t.Fatalf("%d bytes live per link written, want at most 32 KiB", per)
	}
}

// issue #14 (links): the snapshot format is unchanged by the new layout: a
// snapshot written by main before it (59dcd4b: 5 links with rules, one
// deleted) opens with the same digest, version and links, and the store
// writes it again byte for byte.
func TestSnapshotFromBeforeTheLayoutOpens(t *testing.T) {
	fixture, err := os.ReadFile(filepath.Join("testdata", "snapshot-main-59dcd4b"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, snapshotFile), fixture, 0o640); err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_790_000_000_000)
	s, err := Open(dir, &Options{Node: "new", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const digest = "4113193936a2ee69d16dd0f449729b2f6e5f83052b39ad2b8428de480d0a97e7"
	if s.Digest() != digest || s.Version() != 117309440000000005 {
		t.Fatalf("digest/version %s/%d, want %s/117309440000000005", s.Digest(), s.Version(), digest)
	}
	if links, tombs := s.Counts(); links != 4 || tombs != 1 {
		t.Fatalf("Counts = %d, %d, want 4, 1", links, tombs)
	}
	c := s.Catalog()
	if l := c.Lookup("k2"); l == nil || l.URL().String() != "https://x.example/2" || len(l.Rules) != 1 {
		t.Fatalf("Lookup(k2) = %v", l)
	}
	if c.Lookup("k3") != nil || c.Len() != 4 {
		t.Fatalf("Lookup(k3) = %v, Len = %d: want the tombstone not served, 4 links", c.Lookup("k3"), c.Len())
	}
	s.mu.Lock()
	again := s.image()
	s.mu.Unlock()
	if !bytes.Equal(again, fixture) {
		t.Fatalf("the store writes the snapshot as\n%q\nwant\n%q", again, fixture)
	}
}

// The store reads its entries from two places, the base (the last
// compaction) and the overlay; whatever falls where, Get, Entries, Links
// and the served catalog agree with a plain map of the changes made,
// before and after a reopen.
func TestBaseAndOverlayAgree(t *testing.T) {
	rnd := rand.New(rand.NewPCG(14, 14))
	dir := t.TempDir()
	s, err := Open(dir, &Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // code → URL; "" for a tombstone
	check := func(name string) {
		t.Helper()
		codes := slices.Sorted(maps.Keys(want))
		all := allEntries(t, s)
		if len(all) != len(codes) {
			t.Fatalf("%s: Entries has %d, want %d", name, len(all), len(codes))
		}
		var live []string
		for i, code := range codes {
			url := want[code]
			if all[i].Code != code || all[i].Deleted != (url == "") || (url != "" && !bytes.Contains(all[i].Link, []byte(url))) {
				t.Fatalf("%s: entry %d = %s %s, want %s %q", name, i, all[i].Code, all[i].Link, code, url)
			}
			if e, ok := s.Get(code); !ok || e.Deleted != (url == "") {
				t.Fatalf("%s: Get(%s) = %+v, %v", name, code, e, ok)
			}
			l := s.Catalog().Lookup(code)
			if (url == "") != (l == nil) || (l != nil && l.URL().String() != url) {
				t.Fatalf("%s: Lookup(%s) = %v, want %q", name, code, l, url)
			}
			if url != "" {
				live = append(live, code)
			}
		}
		var listed []string
		for after := ""; ; {
			es, next := s.Links(after, 5)
			for _, e := range es {
				listed = append(listed, e.Code)
			}
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(listed, live) || s.Catalog().Len() != len(live) {
			t.Fatalf("%s: Links lists %v and Len is %d, want %v", name, listed, s.Catalog().Len(), live)
		}
		if _, ok := s.Get("absent"); ok {
			t.Fatalf("%s: Get(absent) found an entry", name)
		}
	}
	for round := range 6 {
		for range 60 {
			code := fmt.Sprintf("c%02d", rnd.IntN(80))
			if rnd.IntN(4) == 0 {
				if _, _, err := s.Delete(code); err != nil {
					t.Fatal(err)
				}
				want[code] = ""
				continue
			}
			url := fmt.Sprintf("https://x.example/%d", rnd.IntN(1000))
			if _, err := s.Put(code, linkJSON(code, url)); err != nil {
				t.Fatal(err)
			}
			want[code] = url
			if rnd.IntN(3) == 0 {
				s.Catalog().Lookup(fmt.Sprintf("c%02d", rnd.IntN(80))) // compile some
			}
		}
		check(fmt.Sprintf("round %d", round))
		if round%2 == 0 {
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("round %d, compacted", round))
		}
		s.Close()
		if s, err = Open(dir, &Options{Node: "n"}); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("round %d, reopened", round))
	}
	s.Close()
}

// issue #14 (links): what makes 10M links open in 2 GB, at a scale a test
// can run: an open holds the snapshot's bytes and well under 64 bytes per
// entry beside them (offset, link pointer, index slots: about 37), and
// compiles nothing. A map of entries, or links built at open, would take
// several hundred bytes per entry.
func TestOpenHoldsLittleBesideTheSnapshot(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's allocations blur the heap figure")
	}
	const n = 50_000
	dir := t.TempDir()
	prepareStore(t, dir, n)
	convertStore(t, dir)
	fi, err := os.Stat(filepath.Join(dir, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	beside := int64(m1.HeapAlloc) - int64(m0.HeapAlloc) - fi.Size()
	t.Logf("%d links: snapshot %d bytes, %d bytes per entry beside it", n, fi.Size(), beside/n)
	if beside > 64*n {
		t.Fatalf("the open holds %d bytes per entry beside the snapshot, want at most 64", beside/n)
	}
	for i := range s.Catalog().lazy.links {
		if l := s.Catalog().lazy.links[i].Load(); l != nil && l != gone {
			t.Fatalf("entry %d compiled at open", i)
		}
	}
	if s.Catalog().Lookup(catalogtest.LinkCode(n/2)) == nil || s.Catalog().Len() != n {
		t.Fatalf("Lookup(%s) = nil or Len = %d, want a link and %d", catalogtest.LinkCode(n/2), s.Catalog().Len(), n)
	}
}
