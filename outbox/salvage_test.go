package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests are in package outbox: they build damaged files page by page
// and need the on-disk layout. outboxtest imports outbox, so its helpers
// are not available here.

var fixtureBase = time.Date(2025, 11, 27, 6, 0, 0, 0, time.UTC)

func fixtureRecord(i int) *Record {
	id := fmt.Sprintf("%032x", i)
	return &Record{
		Time:       fixtureBase.Add(time.Duration(i) * time.Millisecond),
		Exchange:   "clicks",
		RoutingKey: "click.test",
		MessageID:  id,
		Headers:    []Header{{Key: "region", Value: "test"}, {Key: "node", Value: "t1"}, {Key: "schema", Value: int64(1)}},
		Body:       fmt.Appendf(nil, `{"v":1,"click_id":%q,"link":"l%d","region":"test","node":"t1","params":{}}`, id, i%7),
	}
}

type fixture struct {
	n, acked int
	compact  bool // rewrite the file so that it holds one copy of each record
	// prune deletes the first acked records after their delivery.
	prune int
	// stale holds a read transaction open while the file is written, as
	// the forwarder's reads do: no page a commit frees is reused, so the
	// free pages surely hold every older copy of the pages the commits
	// rewrote (records, spans, counters). Without it, which old copies
	// survive depends on how many commits the build took (timing) and on
	// which free pages bbolt's freelist handed out (random).
	stale bool
}

// build writes the fixture's outbox at dir/outbox.db and returns its path
// and contents.
func (fx fixture) build(t *testing.T) (string, map[uint64]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	now := fixtureBase.Add(time.Hour)
	clock := func() time.Time { return now }
	o, err := Open(path, &Options{Durability: Async, Retention: time.Hour, Now: clock, PruneBatch: 100000, PruneInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	unpin := func() {}
	if fx.stale {
		rtx, err := o.db.Begin(false)
		if err != nil {
			t.Fatal(err)
		}
		unpin = func() { rtx.Rollback() }
	}
	for i := range fx.n {
		if err := o.Append(fixtureRecord(i)); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 {
			o.Sync() // several commits: stale copies in free pages
		}
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= uint64(fx.acked); seq++ {
		if seq == uint64(fx.prune)+1 {
			o.Sync()
			now = now.Add(2 * time.Hour) // the first fx.prune expire
		}
		o.Ack(seq)
		if seq%300 == 0 {
			o.Sync()
		}
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if fx.prune > 0 {
		now = now.Add(30 * time.Minute)
		if err := o.Prune(); err != nil {
			t.Fatal(err)
		}
	}
	// Close commits nothing more, so the pages the reader kept stay as
	// they are; and it waits for readers, so the reader goes first.
	unpin()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if fx.compact {
		rep, err := Compact(path, &CompactOptions{HoldLock: -1})
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(rep.Backup)
	}
	return path, readContents(t, path)
}

// describe is how the tests compare records: everything but the checksum.
func describe(r *Record) string {
	state := "P"
	if !r.Pending() {
		state = "D@" + r.Delivered.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s|%s|%s|%s|%s|%v|%s", state, r.Time.Format(time.RFC3339Nano), r.Exchange, r.RoutingKey, r.MessageID, r.Headers, r.Body)
}

func readContents(t *testing.T, path string) map[uint64]string {
	t.Helper()
	o, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	defer o.Close()
	m := map[uint64]string{}
	if err := o.Scan(nil, func(r *Record) error { m[r.Seq] = describe(r); return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// layout is where the records of an undamaged file are. It is read with a
// plain, trusting walk, independent of the salvager's.
type layout struct {
	pageSize int
	leafOf   map[uint64]uint64 // seq -> leaf page
	val      map[uint64][2]int // seq -> offset and length of the value
	leaves   []uint64          // leaf pages holding records
	branches []uint64          // branch pages of the record buckets
}

func readLayout(t *testing.T, path string) *layout {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	l := &layout{leafOf: map[uint64]uint64{}, val: map[uint64][2]int{}}
	l.pageSize = int(le.Uint32(data[pageHeaderSize+8:]))
	meta := data[pageHeaderSize:]
	if m1 := data[l.pageSize+pageHeaderSize:]; le.Uint64(m1[48:]) > le.Uint64(meta[48:]) {
		meta = m1
	}
	var walk func(off int, pgid uint64, records bool, fn func(pgid uint64, k []byte, voff, vlen int, flags uint32))
	walk = func(off int, pgid uint64, records bool, fn func(pgid uint64, k []byte, voff, vlen int, flags uint32)) {
		p := data[off:]
		flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
		for i := range count {
			e := pageHeaderSize + i*elementSize
			if flags == branchPageFlag {
				child := le.Uint64(p[e+8:])
				walk(int(child)*l.pageSize, child, records, fn)
				continue
			}
			ef, pos, ks, vs := le.Uint32(p[e:]), int(le.Uint32(p[e+4:])), int(le.Uint32(p[e+8:])), int(le.Uint32(p[e+12:]))
			fn(pgid, p[e+pos:e+pos+ks], off+e+pos+ks, vs, ef)
		}
		if flags == branchPageFlag && records {
			l.branches = append(l.branches, pgid)
		}
	}
	root := le.Uint64(meta[16:])
	walk(int(root)*l.pageSize, root, false, func(rootPage uint64, name []byte, voff, vlen int, _ uint32) {
		if string(name) == "meta" || string(name) == "routes" {
			return
		}
		collect := func(pgid uint64, k []byte, voff, vlen int, _ uint32) {
			seq := binary.BigEndian.Uint64(k)
			l.leafOf[seq] = pgid
			l.val[seq] = [2]int{voff, vlen}
			if !slices.Contains(l.leaves, pgid) {
				l.leaves = append(l.leaves, pgid)
			}
		}
		if broot := le.Uint64(data[voff:]); broot != 0 {
			walk(int(broot)*l.pageSize, broot, true, collect)
		} else {
			walk(voff+16, rootPage, true, collect)
		}
	})
	slices.Sort(l.leaves)
	return l
}

func damage(t *testing.T, path string, f func(data []byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRefuse(t *testing.T, path string) {
	t.Helper()
	if o, err := Open(path, &Options{ReadOnly: true}); err == nil {
		o.Close()
		t.Fatalf("Open(%s) succeeded on the damaged file; the test damaged nothing that matters", path)
	} else if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(%s) = %v, want ErrCorrupt", path, err)
	}
}

func salvage(t *testing.T, src string) (*SalvageReport, map[uint64]string) {
	t.Helper()
	before, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "salvaged", "outbox.db")
	rep, err := Salvage(src, dst, nil)
	if err != nil {
		t.Fatalf("Salvage(%s) = %v", src, err)
	}
	after, _ := os.ReadFile(src)
	if string(before) != string(after) {
		t.Fatalf("Salvage modified its source")
	}
	if _, err := Verify(dst); err != nil {
		t.Fatalf("Verify(salvaged) = %v", err)
	}
	got := readContents(t, dst)
	if rep.Pending+rep.Delivered != int64(len(got)) {
		t.Errorf("report says %d+%d records, the file holds %d", rep.Pending, rep.Delivered, len(got))
	}
	o, err := Open(dst, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if ns := o.Stats().NextSeq; ns != rep.NextSeq {
		t.Errorf("salvaged next_seq = %d, report says %d", ns, rep.NextSeq)
	}
	o.Close()
	return rep, got
}

func diffContents(t *testing.T, got, want map[uint64]string) {
	t.Helper()
	diffContentsDemoted(t, got, want, false)
}

// demoted reports whether got is the delivered record want come back
// pending. Since format 2 a record's delivery lives in a span (delivered.go)
// beside its bytes, not in them: damage that destroys every copy of the
// span leaves the record's bytes intact, and salvage returns it pending, to
// be published again. The reverse, a pending record come back delivered,
// would be a loss and is never allowed.
func demoted(want, got string) bool {
	i := strings.IndexByte(want, '|')
	return strings.HasPrefix(want, "D@") && i > 0 && got == "P"+want[i:]
}

// diffContentsDemoted is diffContents, taking a demoted record (see
// demoted) as recovered when allowDemoted is set; it logs how many.
func diffContentsDemoted(t *testing.T, got, want map[uint64]string, allowDemoted bool) {
	t.Helper()
	var missing, extra, changed []uint64
	nDemoted := 0
	for seq, w := range want {
		g, ok := got[seq]
		switch {
		case !ok:
			missing = append(missing, seq)
		case g != w && allowDemoted && demoted(w, g):
			nDemoted++
		case g != w:
			changed = append(changed, seq)
		}
	}
	if nDemoted > 0 {
		t.Logf("%d delivered records came back pending: their spans were lost", nDemoted)
	}
	for seq := range got {
		if _, ok := want[seq]; !ok {
			extra = append(extra, seq)
		}
	}
	if len(missing)+len(extra)+len(changed) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		slices.Sort(changed)
		t.Fatalf("salvaged %d records, want %d: missing %d %v, extra %d %v, changed %d %v",
			len(got), len(want), len(missing), head(missing), len(extra), head(extra), len(changed), head(changed))
	}
}

func head(s []uint64) []uint64 { return s[:min(len(s), 10)] }

func TestSalvageIntactFile(t *testing.T) {
	path, want := fixture{n: 3000, acked: 1200}.build(t)
	rep, got := salvage(t, path)
	diffContents(t, got, want)
	if !rep.MetaOK || !rep.TreeComplete || rep.FromScan != 0 || rep.LostCount != 0 || rep.BadChecksums != 0 {
		t.Errorf("report = %+v, want good metas, a complete tree, nothing from the scan, nothing lost", rep)
	}
	if rep.Pending != 1800 || rep.Delivered != 1200 {
		t.Errorf("recovered %d pending, %d delivered; want 1800, 1200", rep.Pending, rep.Delivered)
	}
	if !rep.CountersOK || rep.ExpectedPending != 1800 || rep.ExpectedDelivered != 1200 || rep.NextSeq != 3001 {
		t.Errorf("counters: ok %v, %d pending, %d delivered, next seq %d; want 1800, 1200, 3001",
			rep.CountersOK, rep.ExpectedPending, rep.ExpectedDelivered, rep.NextSeq)
	}
}

func TestSalvageTruncated(t *testing.T) {
	path, all := fixture{n: 3000, acked: 1000, compact: true}.build(t)
	l := readLayout(t, path)
	// The file is longer than its records (bbolt grows it ahead): cut
	// two thirds into the pages that hold them.
	pages := int64(l.leaves[len(l.leaves)-1]) + 1
	cut := pages * 2 / 3 // whole pages kept
	want := map[uint64]string{}
	for seq, s := range all {
		if int64(l.leafOf[seq]) < cut {
			want[seq] = s
		}
	}
	if len(want) == len(all) || len(want) == 0 {
		t.Fatalf("cutting at page %d of %d keeps %d of %d records: a useless fixture", cut, pages, len(want), len(all))
	}
	damage(t, path, func(b []byte) []byte { return b[:cut*int64(l.pageSize)] })
	mustRefuse(t, path)

	rep, got := salvage(t, path)
	diffContentsDemoted(t, got, want, true)
	if rep.TreeComplete {
		t.Errorf("report says the tree is complete after a truncation")
	}
	if rep.CountersOK && (rep.ExpectedPending != 2000 || rep.ExpectedDelivered != 1000) {
		t.Errorf("counters = %d pending, %d delivered; want 2000, 1000", rep.ExpectedPending, rep.ExpectedDelivered)
	}
	if rep.NextSeq < 3001 && rep.CountersOK {
		t.Errorf("next seq %d went backwards (was 3001)", rep.NextSeq)
	}
	t.Logf("truncated to %d of %d pages: recovered %d of %d; lost ranges %v; %d problems, first %q",
		cut, pages, len(got), len(all), rep.LostRanges, len(rep.Problems), rep.Problems[0])
}

func TestSalvageBitFlips(t *testing.T) {
	path, all := fixture{n: 3000, acked: 1000, compact: true}.build(t)
	l := readLayout(t, path)
	if len(l.leaves) < 10 || len(l.branches) == 0 {
		t.Fatalf("fixture has %d leaves and %d branch pages; want a deeper tree", len(l.leaves), len(l.branches))
	}
	bySeq := func(page uint64) []uint64 {
		var s []uint64
		for seq, p := range l.leafOf {
			if p == page {
				s = append(s, seq)
			}
		}
		slices.Sort(s)
		return s
	}
	ps := l.pageSize
	flipped := bySeq(l.leaves[2])[3:6] // a bit in each of three records' bodies
	headerPage := l.leaves[5]          // the page header: type and count
	elemPage := l.leaves[7]            // the first element's position
	branch := l.branches[0]            // a whole branch page
	want := map[uint64]string{}
	for seq, s := range all {
		if !slices.Contains(flipped, seq) {
			want[seq] = s
		}
	}
	damage(t, path, func(b []byte) []byte {
		for _, seq := range flipped {
			v := l.val[seq]
			b[v[0]+v[1]-3] ^= 0x10
		}
		h := int(headerPage) * ps
		b[h+8] ^= 0x07 // leaf (0x02) -> 0x05
		b[h+10] ^= 0xff
		e := int(elemPage)*ps + pageHeaderSize
		binary.LittleEndian.PutUint32(b[e+4:], 1<<20)
		bp := int(branch) * ps
		for i := bp; i < bp+ps; i++ {
			b[i] ^= 0x5a
		}
		return b
	})
	mustRefuse(t, path)

	rep, got := salvage(t, path)
	diffContents(t, got, want)
	if rep.LostCount != 3 || !slices.Equal(rep.Lost, flipped) {
		t.Errorf("lost = %d %v, want exactly the flipped records %v", rep.LostCount, rep.Lost, flipped)
	}
	if rep.BadChecksums < 3 {
		t.Errorf("bad checksums = %d, want at least 3", rep.BadChecksums)
	}
	if rep.PagesCarved == 0 || rep.UnreadablePages == 0 {
		t.Errorf("carved %d pages, %d unreadable; want both > 0", rep.PagesCarved, rep.UnreadablePages)
	}
	if !rep.MetaOK {
		t.Errorf("meta pages reported damaged: %v", rep.Meta)
	}
}

func TestSalvageBothMetaPagesBroken(t *testing.T) {
	for _, fx := range []fixture{
		{n: 3000, acked: 1000, compact: true},
		// Free pages hold pending copies of the delivered records: the
		// delivered copy must win.
		{n: 3000, acked: 1000, stale: true},
	} {
		t.Run(fmt.Sprintf("compact=%v", fx.compact), func(t *testing.T) {
			path, want := fx.build(t)
			l := readLayout(t, path)
			damage(t, path, func(b []byte) []byte {
				b[pageHeaderSize+48] ^= 0x01            // txid of meta 0
				b[l.pageSize+pageHeaderSize+20] ^= 0x80 // root of meta 1
				return b
			})
			mustRefuse(t, path)
			rep, got := salvage(t, path)
			diffContents(t, got, want)
			if rep.MetaOK || rep.Meta[0] == "ok" || rep.Meta[1] == "ok" {
				t.Errorf("meta report = %q, want both damaged", rep.Meta)
			}
			if !rep.PageSizeGuessed || rep.PageSize != l.pageSize {
				t.Errorf("page size %d (guessed %v), want %d guessed", rep.PageSize, rep.PageSizeGuessed, l.pageSize)
			}
			if rep.NextSeq != 3001 {
				t.Errorf("next seq = %d, want 3001", rep.NextSeq)
			}
			if !fx.compact && rep.Copies == 0 {
				t.Errorf("no extra copies found in a file with free pages")
			}
		})
	}
}

// Records delivered and pruned stay pruned while the tree is readable;
// where it is not, old copies in free pages may bring them back. Never as
// something they were not.
func TestSalvagePrunedRecords(t *testing.T) {
	path, want := fixture{n: 3000, acked: 1500, prune: 600}.build(t)
	if len(want) != 2400 {
		t.Fatalf("fixture holds %d records, want 2400 after pruning 600", len(want))
	}
	_, got := salvage(t, path)
	diffContents(t, got, want)

	l := readLayout(t, path)
	damage(t, path, func(b []byte) []byte {
		b[pageHeaderSize+48] ^= 0x01
		b[l.pageSize+pageHeaderSize+48] ^= 0x01
		return b
	})
	rep, got := salvage(t, path)
	for seq, w := range want {
		if got[seq] != w {
			t.Fatalf("record %d = %q, want %q", seq, got[seq], w)
		}
	}
	for seq, g := range got {
		if _, ok := want[seq]; ok {
			continue
		}
		r := fixtureRecord(int(seq - 1))
		if seq > 600 || !strings.Contains(g, r.MessageID) {
			t.Fatalf("resurrected record %d = %q is not one of the pruned ones", seq, g)
		}
	}
	t.Logf("both metas lost: %d pruned records came back from free pages (%d copies dropped)", len(got)-len(want), rep.Copies)
}

// Random damage: never a panic, and every record whose bytes survived is
// recovered as it was, or pending where its delivered span was destroyed
// (see demoted), under its sequence or (a flipped key) another.
// Nothing is recovered that never was: old copies come back only as an
// earlier state of a record. CLICKEDGE_SALVAGE_SEEDS runs more seeds.
func TestSalvageRandomDamage(t *testing.T) {
	seeds := 12
	if n, err := strconv.Atoi(os.Getenv("CLICKEDGE_SALVAGE_SEEDS")); err == nil {
		seeds = n
	}
	for _, fx := range []fixture{
		{n: 2000, acked: 700, compact: true},
		{n: 2000, acked: 700},
	} {
		t.Run(fmt.Sprintf("compact=%v", fx.compact), func(t *testing.T) {
			path, all := fx.build(t)
			l := readLayout(t, path)
			orig, _ := os.ReadFile(path)
			identity := map[string]string{} // message id -> the record but its state
			for _, w := range all {
				f := strings.SplitN(w, "|", 2)
				identity[strings.Split(f[1], "|")[3]] = f[1]
			}
			for seed := range seeds {
				rng := rand.New(rand.NewPCG(uint64(seed), 42))
				b := slices.Clone(orig)
				for range 1 + rng.IntN(40) {
					i := rng.IntN(len(b))
					b[i] ^= byte(1 + rng.IntN(255))
				}
				if rng.IntN(3) == 0 {
					b = b[:rng.IntN(len(b))]
				}
				p := filepath.Join(t.TempDir(), "outbox.db")
				os.WriteFile(p, b, 0o600)
				dst := filepath.Join(t.TempDir(), "outbox.db")
				rep, err := Salvage(p, dst, nil)
				if err != nil {
					t.Fatalf("seed %d: Salvage = %v", seed, err)
				}
				got := readContents(t, dst)
				byID := map[string]string{}
				for _, g := range got {
					f := strings.SplitN(g, "|", 2)
					id := strings.Split(f[1], "|")[3]
					if identity[id] != f[1] {
						t.Fatalf("seed %d: salvaged a record that never was: %q", seed, g)
					}
					byID[id] = g
				}
				for seq, w := range all {
					v := l.val[seq]
					if v[0]+v[1] > len(b) || string(b[v[0]:v[0]+v[1]]) != string(orig[v[0]:v[0]+v[1]]) {
						continue // its bytes were hit
					}
					id := strings.Split(w, "|")[4]
					if byID[id] != w && !demoted(w, byID[id]) {
						t.Fatalf("seed %d: record %d (%s) survived intact but was not recovered as it was (got %q); problems %q",
							seed, seq, id, byID[id], rep.Problems)
					}
				}
			}
		})
	}
}

func TestSalvageRefuses(t *testing.T) {
	path, _ := fixture{n: 10}.build(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "outbox.db")
	os.WriteFile(existing, []byte("x"), 0o600)
	tests := []struct {
		name, src, dst string
		want           string
	}{
		{"missing source", filepath.Join(dir, "nope.db"), filepath.Join(dir, "a", "outbox.db"), "no such file"},
		{"existing destination", path, existing, "never overwrites"},
		{"source as destination", path, path, "is the source file"},
		{"empty source", existing + ".empty", filepath.Join(dir, "b", "outbox.db"), "empty"},
	}
	os.WriteFile(existing+".empty", nil, 0o600)
	for _, tt := range tests {
		_, err := Salvage(tt.src, tt.dst, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Salvage = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}

	o, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	_, err = Salvage(path, filepath.Join(dir, "c", "outbox.db"), &SalvageOptions{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("Salvage of a file in use = %v, want ErrLocked", err)
	}
}

func TestRecordLen(t *testing.T) {
	for i := range 50 {
		r := fixtureRecord(i)
		if i%3 == 0 {
			r.Headers = append(r.Headers, Header{"flag", true}, Header{"n", int64(-i)})
		}
		b := mustInline(r)
		if i%2 == 1 {
			b = appendRecordV1(nil, r)
		}
		padded := append(slices.Clone(b), 1, 2, 3, 4, 5)
		if n, ok := recordLen(padded); !ok || n != len(b) {
			t.Fatalf("recordLen(record %d + 5 bytes) = %d, %v; want %d, true", i, n, ok, len(b))
		}
		for cut := 0; cut < len(b); cut += 7 {
			if n, ok := recordLen(b[:cut]); ok {
				t.Fatalf("recordLen(first %d of %d bytes) = %d, true; want false", cut, len(b), n)
			}
		}
	}
}

func FuzzRecordLen(f *testing.F) {
	f.Add(mustInline(fixtureRecord(1)))
	f.Add(appendRecordV1(nil, fixtureRecord(1)))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := recordLen(b)
		if ok && (n < recordFixedLen || n > len(b)) {
			t.Fatalf("recordLen = %d for %d bytes", n, len(b))
		}
		if ok && checkRecord(b[:n]) == nil {
			if id, _ := recordRouteID(b); id != 0 {
				return // names a route: decodes only with a table (FuzzDecodeRecord)
			}
			var r Record
			if err := decodeRecord(b[:n], &r, nil); err != nil {
				t.Fatalf("recordLen accepted %d bytes that decodeRecord refuses: %v", n, err)
			}
		}
	})
}

func TestMergeRanges(t *testing.T) {
	tests := []struct {
		in, want []SeqRange
	}{
		{nil, nil},
		{[]SeqRange{{5, 10}, {1, 3}}, []SeqRange{{1, 3}, {5, 10}}},
		{[]SeqRange{{5, 10}, {8, 12}, {12, 13}}, []SeqRange{{5, 13}}},
		{[]SeqRange{{5, 0}, {8, 12}, {1, 2}}, []SeqRange{{1, 2}, {5, 0}}},
		{[]SeqRange{{5, 10}, {6, 7}}, []SeqRange{{5, 10}}},
	}
	for _, tt := range tests {
		if got := mergeRanges(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("mergeRanges(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// The newer meta page is damaged: the older tree lacks the last commit,
// whose appends and acks must still come back.
func TestSalvageNewestMetaBroken(t *testing.T) {
	path, _ := fixture{n: 1000}.build(t)
	o, err := Open(path, &Options{Durability: Async, Retention: time.Hour, Now: func() time.Time { return fixtureBase.Add(5 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1000; i < 1040; i++ {
		o.Append(fixtureRecord(i))
	}
	for seq := uint64(1); seq <= 100; seq++ {
		o.Ack(seq)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	want := readContents(t, path)
	if len(want) != 1040 {
		t.Fatalf("fixture holds %d records, want 1040", len(want))
	}
	l := readLayout(t, path)
	damage(t, path, func(b []byte) []byte {
		m0, m1 := pageHeaderSize, l.pageSize+pageHeaderSize
		newest := m0
		if binary.LittleEndian.Uint64(b[m1+48:]) > binary.LittleEndian.Uint64(b[m0+48:]) {
			newest = m1
		}
		b[newest+60] ^= 0xff // its checksum
		return b
	})
	mustRefuse(t, path)
	rep, got := salvage(t, path)
	diffContents(t, got, want)
	if rep.MetaOK || rep.NextSeq != 1041 {
		t.Errorf("report: metas ok %v, next seq %d; want a damaged meta and 1041", rep.MetaOK, rep.NextSeq)
	}
}

// BenchmarkSalvage salvages a 3,000-record file whose meta pages are both
// broken: a full page scan, the worst case.
func BenchmarkSalvage(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "outbox.db")
	o, err := Open(path, &Options{Durability: Async})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 3000 {
		o.Append(fixtureRecord(i))
	}
	o.Close()
	data, _ := os.ReadFile(path)
	data[pageHeaderSize+48] ^= 1
	data[os.Getpagesize()+pageHeaderSize+48] ^= 1
	os.WriteFile(path, data, 0o600)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		i++
		rep, err := Salvage(path, filepath.Join(dir, fmt.Sprintf("out%d", i), "outbox.db"), nil)
		if err != nil || rep.Pending != 3000 {
			b.Fatalf("Salvage = %v, %d pending", err, rep.Pending)
		}
	}
}
