package outbox_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

var t0 = time.Date(2025, 11, 27, 6, 0, 0, 0, time.UTC)

// scanFixture appends n records one millisecond apart, acks every third
// one, and returns the outbox (open read-write) and its path.
func scanFixture(t *testing.T, n int) (*outbox.Outbox, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := outbox.Open(path, &outbox.Options{Durability: outbox.Async, Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	for i := range n {
		r := outboxtest.Record(fmt.Sprintf("r%04d", i))
		r.Time = t0.Add(time.Duration(i) * time.Millisecond)
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	o.Sync()
	for seq := uint64(1); seq <= uint64(n); seq += 3 {
		o.Ack(seq)
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	return o, path
}

func scanSeqs(t *testing.T, o *outbox.Outbox, opts *outbox.ScanOptions) []uint64 {
	t.Helper()
	var seqs []uint64
	err := o.Scan(opts, func(r *outbox.Record) error {
		seqs = append(seqs, r.Seq)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%+v) = %v", opts, err)
	}
	return seqs
}

func TestScanFilters(t *testing.T) {
	o, _ := scanFixture(t, 100)
	seqRange := func(from, to uint64, keep func(uint64) bool) []uint64 {
		var s []uint64
		for q := from; q <= to; q++ {
			if keep(q) {
				s = append(s, q)
			}
		}
		return s
	}
	all := func(uint64) bool { return true }
	delivered := func(q uint64) bool { return (q-1)%3 == 0 }
	pending := func(q uint64) bool { return !delivered(q) }
	tests := []struct {
		name string
		opts *outbox.ScanOptions
		want []uint64
	}{
		{"nil", nil, seqRange(1, 100, all)},
		{"all, small batches", &outbox.ScanOptions{Batch: 7}, seqRange(1, 100, all)},
		{"pending", &outbox.ScanOptions{State: outbox.StatePending, Batch: 5}, seqRange(1, 100, pending)},
		{"delivered", &outbox.ScanOptions{State: outbox.StateDelivered}, seqRange(1, 100, delivered)},
		{"after", &outbox.ScanOptions{After: 90}, seqRange(91, 100, all)},
		{"after the end", &outbox.ScanOptions{After: 100}, nil},
		// Record i (seq i+1) was appended at t0 + i ms.
		{"from", &outbox.ScanOptions{From: t0.Add(50 * time.Millisecond)}, seqRange(51, 100, all)},
		{"to is exclusive", &outbox.ScanOptions{To: t0.Add(10 * time.Millisecond), Batch: 3}, seqRange(1, 10, all)},
		{"range and state", &outbox.ScanOptions{From: t0.Add(10 * time.Millisecond), To: t0.Add(20 * time.Millisecond), State: outbox.StateDelivered},
			seqRange(11, 20, delivered)},
		{"empty range", &outbox.ScanOptions{From: t0.Add(time.Hour)}, nil},
	}
	for _, tt := range tests {
		if got := scanSeqs(t, o, tt.opts); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Scan = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestScanRecordsAreWhole(t *testing.T) {
	o, _ := scanFixture(t, 10)
	var recs []*outbox.Record
	o.Scan(&outbox.ScanOptions{Batch: 2}, func(r *outbox.Record) error {
		recs = append(recs, r) // kept past the call: fn owns it
		return nil
	})
	for i, r := range recs {
		id := fmt.Sprintf("r%04d", i)
		if r.MessageID != id || r.Seq != uint64(i+1) || !strings.Contains(string(r.Body), id) || !r.Time.Equal(t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Errorf("record %d = seq %d id %q time %v body %s", i, r.Seq, r.MessageID, r.Time, r.Body)
		}
		if wantDelivered := i%3 == 0; r.Pending() == wantDelivered {
			t.Errorf("record %d: pending %v, want %v", i, r.Pending(), !wantDelivered)
		}
	}
}

func TestScanStopsOnError(t *testing.T) {
	o, _ := scanFixture(t, 50)
	stop := errors.New("stop")
	n := 0
	err := o.Scan(&outbox.ScanOptions{Batch: 4}, func(r *outbox.Record) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if err != stop || n != 10 {
		t.Fatalf("Scan = %v after %d records, want the callback's error after 10", err, n)
	}
}

// Acks during a scan move records between the buckets; each is still seen
// exactly once.
func TestScanWhileAcking(t *testing.T) {
	o, _ := scanFixture(t, 300)
	seen := map[uint64]int{}
	err := o.Scan(&outbox.ScanOptions{Batch: 16}, func(r *outbox.Record) error {
		seen[r.Seq]++
		if r.Pending() {
			o.Ack(r.Seq, r.Seq+1, r.Seq+2, r.Seq+20)
			o.Sync()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 300; seq++ {
		if seen[seq] != 1 {
			t.Fatalf("record %d seen %d times, want once", seq, seen[seq])
		}
	}
}

func TestSummarize(t *testing.T) {
	o, path := scanFixture(t, 100)
	s, err := o.Summarize()
	if err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if s.Pending.Count != 66 || s.Delivered.Count != 34 || s.Pending.Bytes != st.PendingBytes || s.Delivered.Bytes != st.RetainedBytes {
		t.Errorf("counts = %d/%d bytes %d/%d, want 66/34 and %d/%d", s.Pending.Count, s.Delivered.Count,
			s.Pending.Bytes, s.Delivered.Bytes, st.PendingBytes, st.RetainedBytes)
	}
	if s.Pending.FirstSeq != 2 || s.Pending.LastSeq != 99 || s.Delivered.FirstSeq != 1 || s.Delivered.LastSeq != 100 {
		t.Errorf("seqs: pending %d..%d, delivered %d..%d; want 2..99, 1..100",
			s.Pending.FirstSeq, s.Pending.LastSeq, s.Delivered.FirstSeq, s.Delivered.LastSeq)
	}
	if !s.Pending.OldestAppend.Equal(t0.Add(time.Millisecond)) || !s.Pending.NewestAppend.Equal(t0.Add(98*time.Millisecond)) {
		t.Errorf("pending appended %v .. %v", s.Pending.OldestAppend, s.Pending.NewestAppend)
	}
	if !s.Delivered.OldestDelivery.Equal(t0.Add(time.Hour)) || !s.Delivered.NewestDelivery.Equal(t0.Add(time.Hour)) || !s.Pending.OldestDelivery.IsZero() {
		t.Errorf("delivery times: delivered %v .. %v, pending %v", s.Delivered.OldestDelivery, s.Delivered.NewestDelivery, s.Pending.OldestDelivery)
	}
	if s.NextSeq != 101 || s.Path != path || s.FileSize <= 0 {
		t.Errorf("next seq %d path %q size %d", s.NextSeq, s.Path, s.FileSize)
	}
}

// Tools open files read-only: several at once, never creating one.
func TestReadOnlyOpenForTools(t *testing.T) {
	o, path := scanFixture(t, 20)
	o.Close()
	a, err := outbox.Open(path, &outbox.Options{ReadOnly: true, LockTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := outbox.Open(path, &outbox.Options{ReadOnly: true, LockTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("second read-only Open = %v, want success beside the first", err)
	}
	if got := len(scanSeqs(t, b, nil)); got != 20 {
		t.Errorf("read-only scan saw %d records, want 20", got)
	}
	b.Close()
	if _, err := outbox.Open(path, &outbox.Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, outbox.ErrLocked) {
		t.Errorf("read-write Open beside a reader = %v, want ErrLocked", err)
	}

	missing := filepath.Join(t.TempDir(), "none", "outbox.db")
	if _, err := outbox.Open(missing, &outbox.Options{ReadOnly: true}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open of a missing file = %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open created %s", missing)
	}
}

// BenchmarkScan reads 10,000 records per iteration, decoding each.
func BenchmarkScan(b *testing.B) {
	path := filepath.Join(b.TempDir(), "outbox.db")
	o, err := outbox.Open(path, &outbox.Options{Durability: outbox.Async})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	for i := range 10000 {
		o.Append(outboxtest.Record(fmt.Sprintf("r%05d", i)))
	}
	o.Sync()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		o.Scan(nil, func(*outbox.Record) error { n++; return nil })
		if n != 10000 {
			b.Fatalf("scanned %d", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10000), "ns/record")
}
