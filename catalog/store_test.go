package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func linkJSON(code, url string) []byte {
	return []byte(fmt.Sprintf(`{"code":%q,"url":%q}`, code, url))
}

func openMem(t *testing.T, node string) *Store {
	t.Helper()
	s, err := Open("", &Options{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// allEntries pages through every entry, checking the paging on the way.
func allEntries(t *testing.T, s *Store) []Entry {
	t.Helper()
	var all []Entry
	after := ""
	for {
		es, next := s.Entries(after, 7)
		all = append(all, es...)
		if next == "" {
			break
		}
		if next != es[len(es)-1].Code {
			t.Fatalf("Entries next = %q, want the last code %q", next, es[len(es)-1].Code)
		}
		after = next
	}
	if !slices.IsSortedFunc(all, func(a, b Entry) int { return strings.Compare(a.Code, b.Code) }) {
		t.Fatal("Entries not in code order")
	}
	return all
}

func sameEntries(t *testing.T, name string, a, b []Entry) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d entries, want %d", name, len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Code != y.Code || x.HLC != y.HLC || x.Node != y.Node || x.Deleted != y.Deleted || !bytes.Equal(x.Link, y.Link) {
			t.Fatalf("%s: entry %d = %+v, want %+v", name, i, x, y)
		}
	}
}

// The merge rule as a property: random changes from several writers,
// delivered to several replicas shuffled, duplicated and in batches of any
// size, leave every replica with the same entries, the same digest, the
// same version and the same served links.
func TestMergeConverges(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			codes := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
			writers := []string{"n1", "n2", "n3"}
			var changes []Entry
			for i := range 200 {
				e := Entry{
					Code: codes[rng.IntN(len(codes))],
					// Few distinct clocks, so equal HLCs from different
					// writers happen and the node must break the tie.
					HLC:  uint64(1_700_000_000_000+rng.IntN(40)) << 16,
					Node: writers[rng.IntN(len(writers))],
				}
				if rng.IntN(4) == 0 {
					e.Deleted = true
				} else {
					e.Link = linkJSON(e.Code, fmt.Sprintf("https://x.example/%d", i))
				}
				changes = append(changes, e)
			}
			var replicas []*Store
			for r := range 4 {
				s := openMem(t, fmt.Sprintf("r%d", r))
				deliver := slices.Clone(changes)
				deliver = append(deliver, changes[:rng.IntN(len(changes))]...) // duplicates
				rng.Shuffle(len(deliver), func(i, j int) { deliver[i], deliver[j] = deliver[j], deliver[i] })
				for len(deliver) > 0 {
					n := min(len(deliver), 1+rng.IntN(30))
					if _, err := s.Merge(deliver[:n], SourceFeed); err != nil {
						t.Fatal(err)
					}
					deliver = deliver[n:]
				}
				replicas = append(replicas, s)
			}
			want := allEntries(t, replicas[0])
			for i, s := range replicas[1:] {
				sameEntries(t, fmt.Sprintf("replica %d", i+1), allEntries(t, s), want)
				if s.Digest() != replicas[0].Digest() {
					t.Fatalf("replica %d digest %s, want %s", i+1, s.Digest(), replicas[0].Digest())
				}
				if s.Version() != replicas[0].Version() {
					t.Fatalf("replica %d version %d, want %d", i+1, s.Version(), replicas[0].Version())
				}
			}
			// What is served is what the entries say: the winner per code.
			for _, s := range replicas {
				for _, code := range codes {
					var win *Entry
					for i := range changes {
						if changes[i].Code == code && (win == nil || changes[i].Newer(win)) {
							win = &changes[i]
						}
					}
					l := s.Catalog().Lookup(code)
					switch {
					case win == nil || win.Deleted:
						if l != nil {
							t.Fatalf("Lookup(%q) = %v, want nil (deleted)", code, l.URL())
						}
					case l == nil:
						t.Fatalf("Lookup(%q) = nil, want %s", code, win.Link)
					case !bytes.Contains(win.Link, []byte(l.URL().String())):
						t.Fatalf("Lookup(%q) url %s, want the one in %s", code, l.URL(), win.Link)
					}
				}
			}
		})
	}
}

// Anti-entropy the way the cluster does it: a replica pages through a
// peer's Entries and merges them; afterwards digests are equal.
func TestEntriesMergeSyncsReplicas(t *testing.T) {
	a, b := openMem(t, "a"), openMem(t, "b")
	for i := range 50 {
		if _, err := a.Put(fmt.Sprintf("l%02d", i), linkJSON(fmt.Sprintf("l%02d", i), "https://a.example/")); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.Delete("l07"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put("l03", linkJSON("l03", "https://b.example/")); err != nil { // newer than a's l03
		t.Fatal(err)
	}
	if a.Digest() == b.Digest() {
		t.Fatal("digests equal before the sync")
	}
	for _, pair := range [][2]*Store{{a, b}, {b, a}} {
		after := ""
		for {
			es, next := pair[0].Entries(after, 10)
			if _, err := pair[1].Merge(es, SourceCluster); err != nil {
				t.Fatal(err)
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	if a.Digest() != b.Digest() {
		t.Fatalf("digests differ after the sync: %s, %s", a.Digest(), b.Digest())
	}
	if got := a.Catalog().Lookup("l03").URL().String(); got != "https://b.example/" {
		t.Fatalf("l03 on a = %s, want b's newer write", got)
	}
	if a.Catalog().Lookup("l07") != nil || b.Catalog().Lookup("l07") != nil {
		t.Fatal("l07 served after its delete was synced")
	}
	if links, tombs := b.Counts(); links != 49 || tombs != 1 {
		t.Fatalf("b Counts = %d, %d, want 49, 1", links, tombs)
	}
	if n := b.Changes(SourceCluster, Applied); n != 49 { // a's l03 is older than b's
		t.Fatalf("b applied %d from the cluster, want 49", n)
	}
}

func TestPutGetDelete(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	var got []Entry
	s, err := Open("", &Options{Node: "eu-1", Now: func() time.Time { return now },
		OnChange: func(es []Entry, src Source) {
			if src != SourceAPI {
				t.Errorf("OnChange source %v, want api", src)
			}
			got = append(got, es...)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d0 := s.Digest()
	e1, err := s.Put("tv", []byte(`{"url":"https://shop.example/tv?cid={click_id}"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(now.UnixMilli()) << 16; e1.HLC != want || e1.Node != "eu-1" {
		t.Fatalf("Put version = (%d, %s), want (%d, eu-1)", e1.HLC, e1.Node, want)
	}
	e2, err := s.Put("tv", []byte(`{"code":"tv","url":"https://shop.example/tv2"}`))
	if err != nil {
		t.Fatal(err)
	}
	if e2.HLC != e1.HLC+1 { // the same millisecond: the counter moves
		t.Fatalf("second Put HLC = %d, want %d", e2.HLC, e1.HLC+1)
	}
	if s.Version() != e2.HLC {
		t.Fatalf("Version = %d, want %d", s.Version(), e2.HLC)
	}
	if l := s.Catalog().Lookup("tv"); l == nil || l.URL().String() != "https://shop.example/tv2" {
		t.Fatalf("Lookup(tv) = %v, want the second version", l)
	}
	if s.Digest() == d0 {
		t.Fatal("digest unchanged by a Put")
	}
	e, ok := s.Get("tv")
	if !ok || string(e.Link) != `{"code":"tv","url":"https://shop.example/tv2"}` {
		t.Fatalf("Get(tv) = %s, %v", e.Link, ok)
	}
	_, existed, err := s.Delete("tv")
	if err != nil || !existed {
		t.Fatalf("Delete = %v, %v", existed, err)
	}
	if s.Catalog().Lookup("tv") != nil || s.Catalog().Len() != 0 {
		t.Fatal("deleted link still served")
	}
	if e, ok := s.Get("tv"); !ok || !e.Deleted {
		t.Fatalf("Get after Delete = %+v, %v; want a tombstone", e, ok)
	}
	if len(got) != 3 {
		t.Fatalf("OnChange saw %d entries, want 3", len(got))
	}
	if es, _ := s.Links("", 10); len(es) != 0 {
		t.Fatalf("Links lists %d, want none (tombstones are not links)", len(es))
	}
}

func TestApplyIsAtomicAndNamesTheField(t *testing.T) {
	s := openMem(t, "n")
	if _, err := s.Put("keep", linkJSON("keep", "https://k.example/")); err != nil {
		t.Fatal(err)
	}
	d, v := s.Digest(), s.Version()
	for _, tc := range []struct {
		name  string
		ops   []Op
		index int
		field string
	}{
		{"bad when", []Op{{Code: "ok", Link: linkJSON("ok", "https://o.example/")}, {Code: "bad", Link: []byte(
			`{"url":"https://b.example/","rules":[{"name":"r","when":"cuntry == \"DE\"","url":"https://d.example/"}]}`)}}, 1, "rules[0].when"},
		{"bad weight", []Op{{Code: "w", Link: []byte(
			`{"url":"https://b.example/","rules":[{"name":"r","split":[{"url":"https://d.example/","weight":0}]}]}`)}}, 0, "rules[0].split[0].weight"},
		{"code mismatch", []Op{{Code: "x", Link: linkJSON("y", "https://o.example/")}}, 0, "code"},
		{"open redirect", []Op{{Code: "x", Link: linkJSON("x", "{param:u}")}}, 0, "url"},
		{"bad code", []Op{{Code: "a/b", Delete: true}}, 0, "code"},
		{"twice", []Op{{Code: "keep", Delete: true}, {Code: "keep", Link: linkJSON("keep", "https://k.example/")}}, 1, "code"},
		{"unknown key", []Op{{Code: "u", Link: []byte(`{"url":"https://o.example/","colour":"red"}`)}}, 0, "colour"},
		{"not an object", []Op{{Code: "u", Link: []byte(`[1]`)}}, 0, ""},
	} {
		_, err := s.Apply(tc.ops)
		var oe *OpError
		if !errors.As(err, &oe) || !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: Apply err = %v, want an *OpError wrapping ErrInvalid", tc.name, err)
		}
		if oe.Index != tc.index || FieldOf(err) != tc.field {
			t.Fatalf("%s: error at #%d field %q (%v), want #%d field %q", tc.name, oe.Index, FieldOf(err), err, tc.index, tc.field)
		}
		if s.Digest() != d || s.Version() != v || s.Catalog().Len() != 1 {
			t.Fatalf("%s: a refused batch changed the store", tc.name)
		}
	}
	if n := s.Changes(SourceAPI, Invalid); n == 0 {
		t.Fatal("invalid API changes not counted")
	}
	es, err := s.Apply([]Op{{Code: "a", Link: linkJSON("a", "https://a.example/")}, {Code: "keep", Delete: true}})
	if err != nil || len(es) != 2 {
		t.Fatalf("Apply = %v, %v", es, err)
	}
	if s.Catalog().Lookup("a") == nil || s.Catalog().Lookup("keep") != nil {
		t.Fatal("batch not applied as a whole")
	}
}

func TestMergeRefusesInvalid(t *testing.T) {
	s := openMem(t, "n")
	good := Entry{Code: "g", HLC: 5 << 16, Node: "x", Link: linkJSON("g", "https://g.example/")}
	for _, bad := range []Entry{
		{Code: "b", HLC: 6 << 16, Node: "x", Link: linkJSON("b", "javascript:alert(1)")},
		{Code: "c", HLC: 6 << 16, Node: "x", Link: linkJSON("other", "https://g.example/")},
		{Code: "d", HLC: 0, Node: "x", Link: linkJSON("d", "https://g.example/")},
		{Code: "e", HLC: 6 << 16, Node: "", Deleted: true},
		{Code: "f", HLC: 6 << 16, Node: "x"},
		{Code: "bad code!", HLC: 6 << 16, Node: "x", Deleted: true},
	} {
		n, err := s.Merge([]Entry{bad, good}, SourceFeed)
		if err == nil || !errors.Is(err, ErrInvalid) {
			t.Fatalf("Merge(%+v) err = %v, want ErrInvalid", bad, err)
		}
		if s.Catalog().Lookup(bad.Code) != nil {
			t.Fatalf("invalid entry %q served", bad.Code)
		}
		_ = n
	}
	if v := s.Version(); v != 5<<16 {
		t.Fatalf("Version = %d after invalid entries, want %d: only applied entries move the clock", v, 5<<16)
	}
	if _, err := s.Merge([]Entry{{Code: "far", HLC: 1 << 62, Node: "x", Link: linkJSON("far", "ftp://x/")}}, SourceFeed); err == nil || s.Version() != 5<<16 {
		t.Fatalf("an invalid entry from the far future moved the clock to %d", s.Version())
	}
	if got := s.Changes(SourceFeed, Invalid); got != 7 {
		t.Fatalf("invalid count = %d, want 7", got)
	}
	if got := s.Changes(SourceFeed, Applied); got != 1 {
		t.Fatalf("applied count = %d, want 1 (then stale)", got)
	}
	if got := s.Changes(SourceFeed, Stale); got != 5 {
		t.Fatalf("stale count = %d, want 5", got)
	}
}

// A big batch is validated in one parse; a bad entry in it is still found
// and refused alone, and a link filed under another entry's code is caught.
func TestMergeBigBatchRefusesInvalid(t *testing.T) {
	s := openMem(t, "n")
	var es []Entry
	for i := range 30 {
		code := fmt.Sprintf("c%02d", i)
		es = append(es, Entry{Code: code, HLC: 7 << 16, Node: "x", Link: linkJSON(code, "https://ok.example/")})
	}
	es[3].Link, es[4].Link = es[4].Link, es[3].Link // swapped: each link names the other's code
	es[10].Link = linkJSON("c10", "https://ok.example/{param:nope}")
	n, err := s.Merge(es, SourceCluster)
	if n != 27 || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Merge = %d, %v; want 27 applied and ErrInvalid", n, err)
	}
	for _, code := range []string{"c03", "c04", "c10"} {
		if s.Catalog().Lookup(code) != nil {
			t.Fatalf("invalid %s served", code)
		}
	}
	if s.Changes(SourceCluster, Invalid) != 3 {
		t.Fatalf("invalid = %d, want 3", s.Changes(SourceCluster, Invalid))
	}
}

func TestEntryJSON(t *testing.T) {
	e := Entry{Code: "a", HLC: 1<<60 + 1, Node: "n", Link: json.RawMessage(`{"code":"a","url":"https://a.example/"}`)}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"hlc":"1152921504606846977"`) {
		t.Fatalf("HLC not a decimal string: %s", b)
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || back.HLC != e.HLC || !bytes.Equal(back.Link, e.Link) {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
}

func TestStorePersists(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		code := fmt.Sprintf("p%d", i)
		if _, err := s.Put(code, linkJSON(code, "https://p.example/")); err != nil {
			t.Fatal(err)
		}
	}
	s.Delete("p3")
	s.Merge([]Entry{{Code: "feed", HLC: 9 << 16, Node: "n2", Link: linkJSON("feed", "https://f.example/")}}, SourceFeed)
	digest, version := s.Digest(), s.Version()
	want := allEntries(t, s)
	s.Close()

	reopen := func(name string) *Store {
		t.Helper()
		s, err := Open(dir, &Options{Node: "n1"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameEntries(t, name, allEntries(t, s), want)
		if s.Digest() != digest || s.Version() != version {
			t.Fatalf("%s: digest/version %s/%d, want %s/%d", name, s.Digest(), s.Version(), digest, version)
		}
		live := 0
		for _, e := range want {
			if !e.Deleted {
				live++
			}
		}
		if s.Catalog().Len() != live || s.Catalog().Lookup("p3") != nil || s.Catalog().Lookup("feed") == nil {
			t.Fatalf("%s: served %d links", name, s.Catalog().Len())
		}
		return s
	}
	s = reopen("reopen from the log")
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = reopen("reopen from the snapshot")
	s.Put("after", linkJSON("after", "https://a.example/"))
	want = allEntries(t, s)
	digest, version = s.Digest(), s.Version()
	s.Close()

	// A torn append (a crash mid-write, never answered) is cut off.
	f, _ := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 1, 0, 9, 9})
	f.Close()
	s = reopen("reopen after a torn append")
	if _, err := s.Put("more", linkJSON("more", "https://m.example/")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, nil)
	if err != nil || s.Catalog().Lookup("more") == nil {
		t.Fatalf("append after the cut lost: %v", err)
	}
	s.Close()

	// Damage inside the snapshot refuses to open.
	sp := filepath.Join(dir, snapshotFile)
	data, _ := os.ReadFile(sp)
	data[len(data)/2] ^= 0xff
	os.WriteFile(sp, data, 0o640)
	if _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a damaged snapshot = %v, want ErrCorrupt", err)
	}
}

func TestStoreIsLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	s.Close()
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	s.Close()
}

func TestCompactionPrunesOldTombstones(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { return now }
	s, err := Open(t.TempDir(), &Options{Node: "n", Now: clock, CompactBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Put("a", linkJSON("a", "https://a.example/"))
	s.Put("b", linkJSON("b", "https://b.example/"))
	s.Delete("a")
	now = now.Add(29 * 24 * time.Hour)
	s.Compact()
	if _, tombs := s.Counts(); tombs != 1 {
		t.Fatalf("tombstones after 29 days = %d, want 1 (kept 30 days)", tombs)
	}
	now = now.Add(2 * 24 * time.Hour)
	s.Compact()
	if _, tombs := s.Counts(); tombs != 0 {
		t.Fatalf("tombstones after 31 days = %d, want 0", tombs)
	}
	if _, ok := s.Get("a"); ok {
		t.Fatal("pruned tombstone still there")
	}
}

// Many changes: past the overlay's limit the snapshot is rebuilt, and what
// is served stays right either way.
func TestSnapshotRebuildsAfterManyChanges(t *testing.T) {
	s := openMem(t, "n")
	for i := range 3000 {
		code := fmt.Sprintf("c%d", i%1500)
		if i%7 == 0 {
			s.Delete(code)
			continue
		}
		if _, err := s.Put(code, linkJSON(code, fmt.Sprintf("https://x.example/%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	links, _ := s.Counts()
	if got := s.Catalog().Len(); got != links {
		t.Fatalf("Catalog().Len() = %d, want %d", got, links)
	}
	n := 0
	for l := range s.Catalog().Links() {
		e, ok := s.Get(l.Code)
		if !ok || e.Deleted || !bytes.Contains(e.Link, []byte(l.URL().String())) {
			t.Fatalf("served %s %s, store has %+v", l.Code, l.URL(), e)
		}
		n++
	}
	if n != links {
		t.Fatalf("Links() yields %d, want %d", n, links)
	}
}

func TestSeed(t *testing.T) {
	mtime := time.UnixMilli(1_700_000_000_000)
	v1 := []byte("links:\n  - code: a\n    url: https://a.example/\n  - code: b\n    url: https://b.example/\n")
	v2 := []byte(`{"links":[{"code":"a","url":"https://a2.example/"}]}`)

	a, b := openMem(t, "na"), openMem(t, "nb")
	for _, s := range []*Store{a, b} {
		res, err := s.Seed("links.yaml", v1, mtime, false)
		if err != nil || res.Applied != 2 {
			t.Fatalf("Seed = %+v, %v", res, err)
		}
	}
	if a.Digest() != b.Digest() {
		t.Fatal("two nodes seeded from one file have different digests")
	}
	if e, _ := a.Get("a"); e.Node != FileWriter || e.HLC>>16 != uint64(mtime.UnixMilli()) {
		t.Fatalf("seeded entry version (%d, %s), want the file's mtime and writer file", e.HLC, e.Node)
	}
	// Learned from the feed after the file was written: a restart's seed
	// (the same file) neither overrides nor removes it.
	a.Merge([]Entry{{Code: "b", HLC: uint64(mtime.UnixMilli()+5) << 16, Node: "nx", Link: linkJSON("b", "https://api.example/")},
		{Code: "z", HLC: uint64(mtime.UnixMilli()+5) << 16, Node: "nx", Link: linkJSON("z", "https://z.example/")}}, SourceFeed)
	if res, err := a.Seed("links.yaml", v1, mtime, false); err != nil || res.Applied != 0 || res.Deleted != 0 {
		t.Fatalf("re-seed = %+v, %v; want nothing applied", res, err)
	}
	if a.Catalog().Lookup("b").URL().String() != "https://api.example/" || a.Catalog().Lookup("z") == nil {
		t.Fatal("a seed overrode or removed a newer change")
	}
	// A reload of a newer file that drops b: a tombstone, but only for
	// what the file had; the API's newer b is older than the new file, so
	// the file's delete wins; z was never the file's and stays.
	mtime2 := mtime.Add(time.Minute)
	res, err := a.Seed("links.yaml", v2, mtime2, false)
	if err != nil || res.Applied != 1 || res.Deleted != 1 {
		t.Fatalf("reload = %+v, %v; want 1 applied, 1 deleted", res, err)
	}
	if a.Catalog().Lookup("b") != nil || a.Catalog().Lookup("z") == nil {
		t.Fatal("reload: b should be deleted and z kept")
	}
	b.Seed("links.yaml", v2, mtime2, false)
	b.Merge([]Entry{{Code: "z", HLC: uint64(mtime.UnixMilli()+5) << 16, Node: "nx", Link: linkJSON("z", "https://z.example/")}}, SourceFeed)
	if a.Digest() != b.Digest() {
		t.Fatal("nodes with the same history through different paths differ")
	}
	// An empty file is refused unless forced.
	empty := []byte("links: []\n")
	if _, err := a.Seed("links.yaml", empty, mtime2.Add(time.Minute), false); !errors.Is(err, ErrEmptySeed) {
		t.Fatalf("empty seed err = %v, want ErrEmptySeed", err)
	}
	if res, err := a.Seed("links.yaml", empty, mtime2.Add(time.Minute), true); err != nil || res.Deleted != 1 {
		t.Fatalf("forced empty seed = %+v, %v", res, err)
	}
	if a.Catalog().Lookup("a") != nil || a.Catalog().Lookup("z") == nil {
		t.Fatal("forced empty seed: a should be gone, z kept")
	}
	// A bad file changes nothing.
	d := a.Digest()
	if _, err := a.Seed("links.yaml", []byte("links:\n  - code: q\n"), mtime2.Add(time.Hour), false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad seed err = %v", err)
	}
	if a.Digest() != d {
		t.Fatal("a bad file changed the store")
	}
}

func TestSeedStatePersists(t *testing.T) {
	dir := t.TempDir()
	mtime := time.UnixMilli(1_700_000_000_000)
	s, _ := Open(dir, nil)
	s.Seed("f", []byte(`{"links":[{"code":"a","url":"https://a.example/"},{"code":"b","url":"https://b.example/"}]}`), mtime, false)
	s.Compact()
	s.Seed("f", []byte(`{"links":[{"code":"a","url":"https://a.example/"},{"code":"b","url":"https://b.example/"},{"code":"c","url":"https://c.example/"}]}`), mtime.Add(time.Second), false)
	s.Close()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// After a restart the node still knows what its last load had: a
	// reload without b and c deletes them.
	res, err := s.Seed("f", []byte(`{"links":[{"code":"a","url":"https://a.example/"}]}`), mtime.Add(2*time.Second), false)
	if err != nil || res.Deleted != 2 {
		t.Fatalf("reload after restart = %+v, %v; want 2 deleted", res, err)
	}
}

func TestWriteFileRoundTrips(t *testing.T) {
	s := openMem(t, "n")
	s.Put("b", []byte(`{"url":"https://b.example/?s={subid}","status":"paused","fallback_url":"https://f.example/","params":["subid"],
		"rules":[{"name":"de","when":"country == \"DE\"","url":"https://de.example/"},{"name":"s","split":[{"url":"https://1.example/","weight":70},{"url":"https://2.example/","weight":30}]}]}`))
	s.Put("a", linkJSON("a", "https://a.example/"))
	s.Put("gone", linkJSON("gone", "https://g.example/"))
	s.Delete("gone")
	var buf bytes.Buffer
	if err := s.WriteFile(&buf); err != nil {
		t.Fatal(err)
	}
	specs, err := ParseSpecs("export", buf.Bytes())
	if err != nil {
		t.Fatalf("export does not validate: %v\n%s", err, buf.Bytes())
	}
	if len(specs) != 2 || specs[0].Code != "a" || specs[1].Code != "b" {
		t.Fatalf("export = %+v", specs)
	}
	t2 := openMem(t, "m")
	if _, err := t2.Seed("export", buf.Bytes(), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"a", "b"} {
		e1, _ := s.Get(code)
		e2, _ := t2.Get(code)
		if !bytes.Equal(e1.Link, e2.Link) {
			t.Fatalf("%s: %s after the round trip, want %s", code, e2.Link, e1.Link)
		}
	}
}

// FuzzCheckLink: whatever a PUT body holds, CheckLink never panics, and a
// link it accepts comes back in a canonical form that it accepts again
// unchanged.
func FuzzCheckLink(f *testing.F) {
	f.Add("tv", []byte(`{"url":"https://shop.example/tv?cid={click_id}","rules":[{"name":"r","when":"country == \"DE\"","url":"https://d.example/","redirect":301}]}`))
	f.Add("x", []byte(`{"code":"x","url":"https://x.example/","status":"paused","params":[],"rules":[{"name":"s","sticky":true,"split":[{"url":"https://a.example/","weight":1}]}]}`))
	f.Add("x", []byte(`{"url":"https://x.example/"},{"code":"y","url":"https://y.example/"}`))
	f.Add("x", []byte(`{}`))
	f.Fuzz(func(t *testing.T, code string, raw []byte) {
		canon, l, err := CheckLink(code, raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CheckLink error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if l == nil || l.Code != code {
			t.Fatalf("CheckLink(%q) built %v", code, l)
		}
		again, _, err := CheckLink(code, canon)
		if err != nil || !bytes.Equal(again, canon) {
			t.Fatalf("canonical %s: CheckLink again = %s, %v", canon, again, err)
		}
	})
}

// An empty node catching up takes a big catalog in many small batches;
// the served catalog is rebuilt only a logarithmic number of times, so
// the work stays linear in the catalog's size.
func TestBulkCatchUpRebuildsRarely(t *testing.T) {
	s := openMem(t, "n")
	const n, batch = 40_000, 500
	es := make([]Entry, 0, batch)
	for i := range n {
		code := fmt.Sprintf("c%06d", i)
		es = append(es, Entry{Code: code, HLC: uint64(i+1) << 16, Node: "x", Link: linkJSON(code, "https://x.example/")})
		if len(es) == batch {
			if _, err := s.Merge(es, SourceFeed); err != nil {
				t.Fatal(err)
			}
			es = es[:0]
		}
	}
	if s.Catalog().Len() != n {
		t.Fatalf("served %d, want %d", s.Catalog().Len(), n)
	}
	// 8 * ln(40000/1024) is about 29, plus the first builds.
	if r := s.rebuilds.Load(); r > 40 {
		t.Fatalf("%d full rebuilds for %d links in batches of %d, want at most 40", r, n, batch)
	}
}

func TestEncodeFeedBatches(t *testing.T) {
	var es []Entry
	for i := range 300 {
		code := fmt.Sprintf("c%03d", i)
		es = append(es, Entry{Code: code, HLC: 1 << 16, Node: "n", Link: linkJSON(code, "https://x.example/"+strings.Repeat("a", 200))})
	}
	bs, err := EncodeFeedBatches("n", es, 8<<10)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, b := range bs {
		if len(b.Body) > 8<<10 {
			t.Fatalf("batch of %d bytes, over the limit", len(b.Body))
		}
		m, err := DecodeFeed(b.Body)
		if err != nil || len(m.Entries) != len(b.Entries) {
			t.Fatalf("batch decodes to %v, %v", m, err)
		}
		total += len(b.Entries)
	}
	if total != 300 || len(bs) < 2 {
		t.Fatalf("%d entries in %d batches", total, len(bs))
	}
	if _, err := EncodeFeedBatches("n", es[:1], 100); err == nil {
		t.Fatal("an entry bigger than a message was accepted")
	}
}

// A snapshot without the digest's sum (the first format) loads and
// computes it; rewritten in the current format, it keeps the same digest.
func TestSnapshotFormats(t *testing.T) {
	dir := t.TempDir()
	prepareStore(t, dir, 3000)
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	digest, want := s.Digest(), allEntries(t, s)
	if links, _ := s.Counts(); links != 3000 {
		t.Fatalf("loaded %d links, want 3000", links)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if data, _ := os.ReadFile(filepath.Join(dir, snapshotFile)); !bytes.HasPrefix(data, []byte(snapshotMagic)) {
		t.Fatal("compaction did not write the current format")
	}
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Digest() != digest {
		t.Fatalf("digest %s after the rewrite, want %s", s.Digest(), digest)
	}
	sameEntries(t, "rewritten", allEntries(t, s), want)
}

// Reopening a snapshot with changes logged after it serves exactly what
// the entries say: the catalog built from the snapshot while the map
// loads gets the log's updates, deletes and new codes laid on top.
func TestReopenSnapshotPlusLog(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		code := fmt.Sprintf("k%02d", i)
		s.Put(code, linkJSON(code, "https://old.example/"))
	}
	s.Delete("k07")
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	s.Put("k01", linkJSON("k01", "https://new.example/"))  // update
	s.Delete("k02")                                        // delete
	s.Put("k07", linkJSON("k07", "https://back.example/")) // undelete
	s.Put("fresh", linkJSON("fresh", "https://fresh.example/"))
	want := allEntries(t, s)
	s.Close()

	s, err = Open(dir, &Options{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sameEntries(t, "reopened", allEntries(t, s), want)
	live := 0
	for _, e := range want {
		l := s.Catalog().Lookup(e.Code)
		switch {
		case e.Deleted && l != nil:
			t.Fatalf("%s served after its delete", e.Code)
		case !e.Deleted && (l == nil || !bytes.Contains(e.Link, []byte(l.URL().String()))):
			t.Fatalf("%s served as %v, want %s", e.Code, l, e.Link)
		case !e.Deleted:
			live++
		}
	}
	if s.Catalog().Len() != live {
		t.Fatalf("Len = %d, want %d", s.Catalog().Len(), live)
	}
	n := 0
	for range s.Catalog().Links() {
		n++
	}
	if n != live {
		t.Fatalf("Links yields %d, want %d", n, live)
	}
}

// A power loss can leave more of the last append than kill -9 does: a
// header of zeros, a file size ahead of its data (zeros to the end), or
// the append's later sectors without its first. Appends are fsynced one at
// a time, so only the last can be torn: whatever it left is cut, and the
// store opens with every answered change. A bad record followed by a
// valid one is damage and refuses to open, even when its length field
// says it runs to the end of the file (before, that cut the answered
// changes after it without a word).
func TestStoreLogAfterPowerLoss(t *testing.T) {
	// build returns a store directory whose log holds the changes a, b, c,
	// one record each, and the records' offsets.
	build := func(t *testing.T) (string, []int) {
		dir := t.TempDir()
		s, err := Open(dir, &Options{Node: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, code := range []string{"a", "b", "c"} {
			if _, err := s.Put(code, linkJSON(code, "https://"+code+".example/")); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		data, err := os.ReadFile(filepath.Join(dir, logFile))
		if err != nil {
			t.Fatal(err)
		}
		var offs []int
		for off := 0; off < len(data); {
			end, ok := recordAt(data, off)
			if !ok {
				t.Fatalf("the log does not parse at offset %d", off)
			}
			offs = append(offs, off)
			off = end
		}
		if len(offs) != 3 {
			t.Fatalf("the log holds %d records, want 3", len(offs))
		}
		return dir, offs
	}
	edit := func(t *testing.T, dir string, f func([]byte) []byte) {
		p := filepath.Join(dir, logFile)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	opens := func(t *testing.T, dir string, want ...string) {
		s, err := Open(dir, &Options{Node: "n1"})
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		for _, code := range []string{"a", "b", "c"} {
			if got, w := s.Catalog().Lookup(code) != nil, slices.Contains(want, code); got != w {
				t.Errorf("link %s served: %v, want %v", code, got, w)
			}
		}
		// Appends go on after the cut, and are read back.
		if _, err := s.Put("d", linkJSON("d", "https://d.example/")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err = Open(dir, &Options{Node: "n1"})
		if err != nil || s.Catalog().Lookup("d") == nil {
			t.Fatalf("the append after the cut: Open = %v, or d is not served", err)
		}
		s.Close()
	}

	t.Run("size ahead of the data", func(t *testing.T) {
		dir, _ := build(t)
		edit(t, dir, func(b []byte) []byte { return append(b, make([]byte, 300)...) })
		opens(t, dir, "a", "b", "c")
	})
	t.Run("the last append without its first sector", func(t *testing.T) {
		dir, offs := build(t)
		edit(t, dir, func(b []byte) []byte {
			clear(b[offs[2] : offs[2]+12]) // its header and a little more, as zeros
			return b
		})
		opens(t, dir, "a", "b")
	})
	t.Run("the last append, its length field torn", func(t *testing.T) {
		dir, offs := build(t)
		edit(t, dir, func(b []byte) []byte {
			b[offs[2]] = 0x7f
			return b
		})
		opens(t, dir, "a", "b")
	})
	for _, c := range []struct {
		name string
		f    func(b []byte, offs []int)
	}{
		{"a middle record's length runs past the end", func(b []byte, offs []int) { b[offs[1]] = 0x7f }},
		{"a middle record's header zeroed", func(b []byte, offs []int) { clear(b[offs[1] : offs[1]+8]) }},
		{"a middle record's payload damaged", func(b []byte, offs []int) { b[offs[1]+10] ^= 0x40 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, offs := build(t)
			edit(t, dir, func(b []byte) []byte { c.f(b, offs); return b })
			if _, err := Open(dir, &Options{Node: "n1"}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
		})
	}
}
