package outbox

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestSpanEditAdd(t *testing.T) {
	const w = time.Second
	sec := int64(time.Second)
	type run struct {
		first, last uint64
		at          int64
	}
	for _, c := range []struct {
		name string
		runs []run
		want string
	}{
		{"in order joins", []run{{1, 10, 0}, {11, 20, 1}, {21, 21, 2}}, "[1-21 since 0 at 2]"},
		{"a gap stays", []run{{1, 10, 0}, {12, 20, 1}}, "[1-10 since 0 at 0] [12-20 since 1 at 1]"},
		{"the gap filled joins both", []run{{1, 10, 0}, {12, 20, 1}, {11, 11, 2}}, "[1-20 since 0 at 2]"},
		{"joins the next span", []run{{12, 20, 0}, {5, 11, 3}}, "[5-20 since 0 at 3]"},
		{"past the window a new span", []run{{1, 10, 0}, {11, 20, 2 * sec}}, fmt.Sprintf("[1-10 since 0 at 0] [11-20 since %d at %d]", 2*sec, 2*sec)},
		{"both sides past the window", []run{{1, 10, 0}, {12, 20, 0}, {11, 11, 5 * sec}}, fmt.Sprintf("[1-10 since 0 at 0] [11-11 since %d at %d] [12-20 since 0 at 0]", 5*sec, 5*sec)},
		{"out of order inserts", []run{{30, 40, 0}, {1, 5, 0}, {10, 12, 0}}, "[1-5 since 0 at 0] [10-12 since 0 at 0] [30-40 since 0 at 0]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newSpanEdit(nil)
			for _, r := range c.runs {
				e.add(r.first, r.last, int64(r.last-r.first+1)*10, r.at, w)
			}
			got := ""
			var bytes int64
			for i, s := range e.spans {
				if i > 0 {
					got += " "
				}
				got += fmt.Sprintf("[%d-%d since %d at %d]", s.first, s.last, s.since, s.at)
				bytes += s.bytes
				if s.bytes != s.count()*10 {
					t.Errorf("span %d-%d holds %d bytes, want %d", s.first, s.last, s.bytes, s.count()*10)
				}
				if !e.put[s.first] {
					t.Errorf("span %d-%d is not marked to be written", s.first, s.last)
				}
			}
			if got != c.want {
				t.Errorf("spans = %s, want %s", got, c.want)
			}
			for first := range e.del {
				if e.put[first] {
					t.Errorf("key %d both written and deleted", first)
				}
			}
		})
	}
}

func TestSpanIndex(t *testing.T) {
	spans := []span{{first: 1, last: 5}, {first: 8, last: 8}, {first: 10, last: 20}}
	for seq, want := range map[uint64]int{0: -1, 1: 0, 5: 0, 6: -1, 8: 1, 9: -1, 10: 2, 20: 2, 21: -1} {
		if got := spanIndex(spans, seq); got != want {
			t.Errorf("spanIndex(%d) = %d, want %d", seq, got, want)
		}
	}
}

// TestAckCommitWritesNoRecordPages proves issue 17's ack path: a commit
// that acknowledges records writes the same few pages whether it carries 64
// acks or 4096, because no record is moved or rewritten, only a span
// extended. Moving 4096 records of ~500 bytes rewrote about a thousand
// pages (their copies in the retained bucket and the pending pages they
// left).
func TestAckCommitWritesNoRecordPages(t *testing.T) {
	o, err := Open(filepath.Join(t.TempDir(), "o.db"), &Options{Durability: Async})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	const n = 64 + 4096
	for i := range n {
		r := &Record{Exchange: "clicks", RoutingKey: "click.test", MessageID: fmt.Sprintf("%032d", i),
			Body: []byte(strings.Repeat("b", 450))}
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	recs, err := o.ReadPending(nil, 0, n, 0)
	if err != nil || len(recs) != n {
		t.Fatalf("ReadPending = %d records, %v", len(recs), err)
	}
	pagesFor := func(recs []Record) int64 {
		st := o.db.Stats()
		before := st.TxStats.GetWrite()
		for _, r := range recs {
			o.Ack(r.Seq)
		}
		if err := o.Sync(); err != nil {
			t.Fatal(err)
		}
		st = o.db.Stats()
		return st.TxStats.GetWrite() - before
	}
	small, big := pagesFor(recs[:64]), pagesFor(recs[64:])
	if big > 16 || big > 2*small+4 {
		t.Errorf("acking 64 records wrote %d pages, 4096 wrote %d: want a few, the same for both", small, big)
	}
	st := o.Stats()
	if st.Pending != 0 || st.Retained != n {
		t.Errorf("Stats: %d pending, %d retained; want 0, %d", st.Pending, st.Retained, n)
	}
	t.Logf("pages written by the ack commit: %d for 64 acks, %d for 4096", small, big)
}

// TestSpansAgainstModel drives the outbox with random appends, acks (out of
// order, repeated, unknown), retention pruning and reopens, and checks
// after each step that ReadPending, ReadRetained, Stats and Verify agree
// with a plain model of which records are pending and which delivered.
func TestSpansAgainstModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 17))
			now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
			var clockNs atomic.Int64 // read by the writer
			clockNs.Store(now.UnixNano())
			advance := func(d time.Duration) { now = now.Add(d); clockNs.Store(now.UnixNano()) }
			clock := func() time.Time { return time.Unix(0, clockNs.Load()).UTC() }
			path := filepath.Join(t.TempDir(), "o.db")
			// Pruning only when the test asks (Prune), so that what the
			// checks read does not change under them.
			opts := &Options{Retention: time.Hour, Now: clock, PruneBatch: 50, PruneInterval: 24 * time.Hour}
			o, err := Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { o.Close() }()
			pending := map[uint64]bool{}
			delivered := map[uint64]time.Time{} // seq -> ack time
			var next uint64 = 1
			window := spanWindow(opts.Retention)
			check := func(step int, pruned bool) {
				t.Helper()
				// A prune step that hit its bound goes on in the next
				// commits (the first commit after a reopen prunes too):
				// let it finish, so nothing changes while we read.
				for {
					before := o.Stats().Pruned
					if err := o.Sync(); err != nil { // after any commit in progress
						t.Fatal(err)
					}
					if !o.pruneNow.Load() && o.Stats().Pruned == before {
						break
					}
				}
				var gotP, gotD []uint64
				for _, r := range readAll(t, o.ReadPending) {
					gotP = append(gotP, r.Seq)
				}
				kept := map[uint64]bool{}
				for _, r := range readAll(t, o.ReadRetained) {
					gotD = append(gotD, r.Seq)
					kept[r.Seq] = true
					if at := delivered[r.Seq]; r.Delivered.Before(at) {
						t.Fatalf("step %d: record %d delivered at %v, reads as %v: earlier", step, r.Seq, at, r.Delivered)
					}
				}
				// Retention: a record is kept at least Retention after its
				// delivery; pruning (in the background too) may delete it
				// from then on, and after an explicit prune it is gone
				// once a span's window past it.
				for s, at := range delivered {
					age := now.Sub(at)
					if age >= opts.Retention && !kept[s] {
						delete(delivered, s)
					}
					if pruned && age > opts.Retention+window && kept[s] {
						t.Fatalf("step %d: record %d delivered %v ago still kept after pruning (retention %v)", step, s, age, opts.Retention)
					}
				}
				if want := sortedKeys(pending); fmt.Sprint(gotP) != fmt.Sprint(want) {
					t.Fatalf("step %d: pending %v\nwant %v", step, gotP, want)
				}
				if want := sortedKeys(delivered); fmt.Sprint(gotD) != fmt.Sprint(want) {
					t.Fatalf("step %d: delivered %v\nwant %v", step, gotD, want)
				}
				if st := o.Stats(); st.Pending != int64(len(pending)) || st.Retained != int64(len(delivered)) {

					t.Fatalf("step %d: Stats %d pending %d retained, want %d %d", step, st.Pending, st.Retained, len(pending), len(delivered))
				}
			}
			for step := range 60 {
				op := rng.IntN(10)
				switch {
				case op < 4: // appends
					for range 1 + rng.IntN(40) {
						if err := o.Append(&Record{Exchange: "x", RoutingKey: "k", MessageID: fmt.Sprint(next), Body: []byte("b")}); err != nil {
							t.Fatal(err)
						}
						pending[next] = true
						next++
					}
				case op < 8: // acks, mostly in order, some repeated or unknown
					var seqs []uint64
					for _, s := range sortedKeys(pending) {
						if rng.IntN(4) != 0 {
							seqs = append(seqs, s)
						}
					}
					seqs = append(seqs, next+5) // unknown
					if len(seqs) > 2 {
						seqs = append(seqs, seqs[0])
					}
					rng.Shuffle(len(seqs), func(i, j int) { seqs[i], seqs[j] = seqs[j], seqs[i] })
					o.Ack(seqs...)
					if err := o.Sync(); err != nil { // committed at now
						t.Fatal(err)
					}
					for _, s := range seqs {
						if pending[s] {
							delete(pending, s)
							delivered[s] = now
						}
					}
					advance(time.Duration(rng.IntN(30)) * time.Minute)
				case op < 9: // retention: prune until nothing expired is left
					advance(time.Duration(rng.IntN(90)) * time.Minute)
					if err := o.Sync(); err != nil {
						t.Fatal(err)
					}
					for range 100 {
						if err := o.Prune(); err != nil {
							t.Fatal(err)
						}
					}
				default: // reopen
					if err := o.Close(); err != nil {
						t.Fatal(err)
					}
					if _, err := Verify(path); err != nil {
						t.Fatalf("step %d: Verify: %v", step, err)
					}
					if o, err = Open(path, opts); err != nil {
						t.Fatal(err)
					}
				}
				if err := o.Sync(); err != nil {
					t.Fatal(err)
				}
				check(step, op == 8)
			}
		})
	}
}

func readAll(t *testing.T, read func([]Record, uint64, int, int) ([]Record, error)) []Record {
	t.Helper()
	var out []Record
	var after uint64
	for {
		recs, err := read(nil, after, 7, 0) // small pages: reads resume inside spans
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
}

func sortedKeys[V any](m map[uint64]V) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestFormat1FileUpgraded opens a file as the previous build wrote it
// (format 1: delivered records moved, marked, into the retained bucket),
// and checks that it is read, acknowledged into, pruned and verified as
// before, and carries the current format afterwards; a format from a newer build is
// refused, untouched.
func TestFormat1FileUpgraded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var old []oldRecord
	for i := 1; i <= 5; i++ {
		r := &Record{Time: t0, Exchange: "x", RoutingKey: "k", MessageID: fmt.Sprint(i), Body: []byte("b")}
		rec := oldRecord{v: appendRecordV1(nil, r)}
		if i <= 2 {
			rec.delivered = t0.Add(time.Minute).UnixNano()
		}
		old = append(old, rec)
	}
	writeOldFile(t, path, 1, old)

	var clock atomic.Int64 // read by the writer
	clock.Store(t0.Add(10 * time.Minute).UnixNano())
	o, err := Open(path, &Options{Retention: 30 * time.Minute, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatalf("Open of a format-1 file: %v", err)
	}
	if st := o.Stats(); st.Pending != 3 || st.Retained != 2 {
		t.Fatalf("Stats: %d pending %d retained, want 3 and 2", st.Pending, st.Retained)
	}
	o.Ack(3)
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range readAll(t, o.ReadRetained) {
		seqs = append(seqs, r.Seq)
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Errorf("delivered = %v, want the two moved by format 1 and the one acked now: [1 2 3]", seqs)
	}
	// The moved ones expire (delivered 34 minutes before), the new one not
	// (25 minutes).
	clock.Store(t0.Add(35 * time.Minute).UnixNano())
	if err := o.Prune(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Pending != 2 || st.Retained != 1 || st.Pruned != 2 {
		t.Errorf("after pruning: %d pending %d retained %d pruned, want 2, 1, 2", st.Pending, st.Retained, st.Pruned)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(path); err != nil {
		t.Fatalf("Verify after the upgrade: %v", err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		if f := getUint64(tx.Bucket(bucketMeta), metaFormat); f != fileFormat {
			t.Errorf("format after the upgrade = %d, want %d", f, fileFormat)
		}
		return putUint64(tx.Bucket(bucketMeta), metaFormat, fileFormat+1)
	})
	db.Close()
	if _, err := Open(path, nil); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("file format %d", fileFormat+1)) {
		t.Errorf("Open of a format-%d file = %v, want a refusal naming the format", fileFormat+1, err)
	}
}
