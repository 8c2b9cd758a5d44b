package outbox_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

func TestAppendReadAckReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := outbox.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		r := outboxtest.Record(fmt.Sprintf("id-%d", i))
		if err := o.Append(r); err != nil {
			t.Fatalf("Append(%d) = %v", i, err)
		}
	}
	recs := outboxtest.ReadAll(t, o)
	if len(recs) != 10 {
		t.Fatalf("ReadPending returned %d records, want 10", len(recs))
	}
	want := outboxtest.Record("id-3")
	got := recs[3]
	if got.MessageID != "id-3" || got.Exchange != want.Exchange || got.RoutingKey != want.RoutingKey ||
		string(got.Body) != string(want.Body) || got.Header("schema") != int64(1) || got.Header("region") != "test" {
		t.Fatalf("record 3 = %+v, want fields of %+v", got, want)
	}
	if got.Time.IsZero() || !got.Delivered.IsZero() {
		t.Fatalf("record 3 times = %v / %v, want set / zero", got.Time, got.Delivered)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("seq %d after %d: not increasing", recs[i].Seq, recs[i-1].Seq)
		}
	}
	// Ack the first 4, then reopen: 6 pending, 4 retained.
	if err := o.Ack(recs[0].Seq, recs[1].Seq, recs[2].Seq, recs[3].Seq); err != nil {
		t.Fatal(err)
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Pending != 6 || st.Retained != 4 || st.Acked != 4 {
		t.Fatalf("Stats pending/retained/acked = %d/%d/%d, want 6/4/4", st.Pending, st.Retained, st.Acked)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if err := o.Append(outboxtest.Record("late")); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}

	o, err = outbox.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	st := o.Stats()
	if st.Pending != 6 || st.Retained != 4 {
		t.Fatalf("after reopen pending/retained = %d/%d, want 6/4", st.Pending, st.Retained)
	}
	if st.OldestPending.IsZero() || st.OldestRetained.IsZero() {
		t.Fatalf("oldest pending/retained = %v/%v, want both set", st.OldestPending, st.OldestRetained)
	}
	recs = outboxtest.ReadAll(t, o)
	if len(recs) != 6 || recs[0].MessageID != "id-4" {
		t.Fatalf("after reopen pending = %d starting %q, want 6 starting id-4", len(recs), recs[0].MessageID)
	}
	ret, err := o.ReadRetained(nil, 0, 100, 0)
	if err != nil || len(ret) != 4 || ret[0].Delivered.IsZero() {
		t.Fatalf("ReadRetained = %d records (err %v), want 4 delivered", len(ret), err)
	}
	// A new append continues the sequence.
	if err := o.Append(outboxtest.Record("id-10")); err != nil {
		t.Fatal(err)
	}
	recs = outboxtest.ReadAll(t, o)
	if last := recs[len(recs)-1]; last.MessageID != "id-10" || last.Seq != 11 {
		t.Fatalf("new record = %q seq %d, want id-10 seq 11", last.MessageID, last.Seq)
	}
}

func TestReadPendingLimits(t *testing.T) {
	o := outboxtest.Open(t, nil)
	for i := range 20 {
		if err := o.Append(outboxtest.Record(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	o.Sync() // with Options.Log, records are read once moved
	recs, err := o.ReadPending(nil, 0, 5, 0)
	if err != nil || len(recs) != 5 {
		t.Fatalf("ReadPending(max 5) = %d, %v", len(recs), err)
	}
	recs, err = o.ReadPending(nil, recs[4].Seq, 100, 1)
	if err != nil || len(recs) != 1 || recs[0].MessageID != "5" {
		t.Fatalf("ReadPending(maxBytes 1) = %v, %v; want exactly record 5", recs, err)
	}
	recs, _ = o.ReadPending(nil, 1<<40, 100, 0)
	if len(recs) != 0 {
		t.Fatalf("ReadPending past the end = %d records", len(recs))
	}
}

func TestGroupCommitBatchesConcurrentAppends(t *testing.T) {
	o := outboxtest.Open(t, nil)
	const writers, each = 64, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := o.Append(outboxtest.Record(fmt.Sprintf("%d-%d", w, i))); err != nil {
					t.Errorf("Append = %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	o.Sync() // with Options.Log, Pending counts records once moved
	st := o.Stats()
	if st.Pending != writers*each {
		t.Fatalf("pending = %d, want %d", st.Pending, writers*each)
	}
	// 3200 sync appends from 64 writers must share commits.
	if st.Commits*4 > writers*each {
		t.Fatalf("%d commits for %d appends: appends are not grouped", st.Commits, writers*each)
	}
	if st.BatchSize.Count != st.Commits-1 && st.BatchSize.Count > st.Commits {
		t.Fatalf("batch histogram count %d vs %d commits", st.BatchSize.Count, st.Commits)
	}
	t.Logf("%d appends in %d commits, p50 batch %v, p99 commit %v s", writers*each, st.Commits,
		st.BatchSize.Quantile(0.5), st.CommitLatency.Quantile(0.99))
}

func TestAsyncReturnsBeforeCommit(t *testing.T) {
	block := make(chan struct{})
	var hang atomic.Bool
	opts := &outbox.Options{Durability: outbox.Async, FlushInterval: time.Millisecond}
	outbox.SetBeforeCommit(opts, func() error {
		if hang.Load() {
			<-block
		}
		return nil
	})
	o := outboxtest.Open(t, opts)
	if err := o.Append(outboxtest.Record("a")); err != nil {
		t.Fatal(err)
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	// Commits now block, yet Append returns.
	hang.Store(true)
	defer func() {
		if hang.Swap(false) {
			close(block)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- o.Append(outboxtest.Record("b")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("async Append = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("async Append waited for a blocked commit")
	}
	if st := o.Stats(); st.Pending != 1 {
		t.Fatalf("pending while commit blocked = %d, want 1", st.Pending)
	}
	hang.Store(false)
	close(block)
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Pending != 2 {
		t.Fatalf("pending after Sync = %d, want 2", st.Pending)
	}
}

func TestAsyncCommitsWithinFlushInterval(t *testing.T) {
	o := outboxtest.Open(t, &outbox.Options{Durability: outbox.Async, FlushInterval: 20 * time.Millisecond})
	start := time.Now()
	if err := o.Append(outboxtest.Record("a")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for o.Stats().Pending != 1 {
		if time.Now().After(deadline) {
			t.Fatal("async record not committed within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	// The writer waits for the interval to gather more; it must not commit
	// before it (which would mean one fsync per async append).
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Fatalf("committed after %v, before the 20ms flush interval", d)
	}
}

// The ack delay is real time, whatever Options.Now says: with a clock set
// ahead, an ack must still be committed after the delay, without a Sync.
func TestAckCommitsWithClockAhead(t *testing.T) {
	ahead := time.Now().Add(24 * time.Hour)
	// No prune step (PruneInterval) commits the ack instead.
	o := outboxtest.Open(t, &outbox.Options{Now: func() time.Time { return ahead }, PruneInterval: time.Hour})
	if err := o.Append(outboxtest.Record("a")); err != nil {
		t.Fatal(err)
	}
	recs := outboxtest.ReadAll(t, o)
	if err := o.Ack(recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for o.Stats().Acked != 1 {
		if time.Now().After(deadline) {
			t.Fatal("ack not committed within 5s without a Sync")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRetentionPrunesDeliveredRecords(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	opts := &outbox.Options{Retention: time.Hour, PruneInterval: time.Hour, PruneBatch: 3, Now: clock}
	// A step that deletes PruneBatch records has the writer run another
	// at once, since more may have expired. To see one step's result, the
	// hook holds the commit after the Prune's until it is read: once armed
	// (1), it counts commits and holds the second.
	var commits atomic.Int32
	release := make(chan struct{})
	outbox.SetBeforeCommit(opts, func() error {
		if commits.Load() > 0 && commits.Add(1) == 3 {
			<-release
		}
		return nil
	})
	var released sync.Once
	unhold := func() { released.Do(func() { close(release) }) }
	defer unhold()
	o := outboxtest.Open(t, opts)
	for i := range 10 {
		if err := o.Append(outboxtest.Record(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	recs := outboxtest.ReadAll(t, o)
	// Deliver 0..4 now and 5..7 half an hour later; 8, 9 stay pending.
	for _, r := range recs[:5] {
		o.Ack(r.Seq)
	}
	o.Sync()
	now.Add(int64(30 * time.Minute))
	for _, r := range recs[5:8] {
		o.Ack(r.Seq)
	}
	o.Sync()

	now.Add(int64(45 * time.Minute)) // 0..4 are 75 min old, 5..7 are 45
	commits.Store(1)
	if err := o.Prune(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Retained != 5 || st.Pruned != 3 {
		t.Fatalf("after one prune step retained/pruned = %d/%d, want 5/3 (PruneBatch 3)", st.Retained, st.Pruned)
	}
	unhold()
	o.Prune()
	o.Prune()
	st := o.Stats()
	if st.Retained != 3 || st.Pruned != 5 || st.Pending != 2 {
		t.Fatalf("retained/pruned/pending = %d/%d/%d, want 3/5/2", st.Retained, st.Pruned, st.Pending)
	}
	ret, _ := o.ReadRetained(nil, 0, 100, 0)
	if len(ret) != 3 || ret[0].MessageID != "5" {
		t.Fatalf("retained = %v, want records 5..7", ret)
	}
	// Pending records are never pruned, however old.
	now.Add(int64(100 * time.Hour))
	for range 3 {
		o.Prune()
	}
	if st := o.Stats(); st.Pending != 2 || st.Retained != 0 {
		t.Fatalf("after 100h pending/retained = %d/%d, want 2/0", st.Pending, st.Retained)
	}
}

func TestNegativeRetentionDeletesOnAck(t *testing.T) {
	o := outboxtest.Open(t, &outbox.Options{Retention: -1})
	o.Append(outboxtest.Record("a"))
	recs := outboxtest.ReadAll(t, o)
	o.Ack(recs[0].Seq)
	o.Sync()
	if st := o.Stats(); st.Pending != 0 || st.Retained != 0 || st.Acked != 1 {
		t.Fatalf("pending/retained/acked = %d/%d/%d, want 0/0/1", st.Pending, st.Retained, st.Acked)
	}
}

// Retained records left by a run with retention (or a replay tool) are
// pruned by a node that keeps nothing.
func TestNegativeRetentionPrunesLeftovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, _ := outbox.Open(path, nil)
	o.Append(outboxtest.Record("a"))
	o.Append(outboxtest.Record("b"))
	for _, r := range outboxtest.ReadAll(t, o) {
		o.Ack(r.Seq)
	}
	o.Close()
	o, err := outbox.Open(path, &outbox.Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if st := o.Stats(); st.Retained != 2 {
		t.Fatalf("retained before prune = %d, want 2", st.Retained)
	}
	o.Prune()
	if st := o.Stats(); st.Retained != 0 || st.Pruned != 2 {
		t.Fatalf("retained/pruned after prune = %d/%d, want 0/2", st.Retained, st.Pruned)
	}
}

func TestAckUnknownAndDuplicateIgnored(t *testing.T) {
	o := outboxtest.Open(t, nil)
	o.Append(outboxtest.Record("a"))
	recs := outboxtest.ReadAll(t, o)
	o.Ack(recs[0].Seq, recs[0].Seq, 999)
	o.Sync()
	o.Ack(recs[0].Seq)
	o.Sync()
	st := o.Stats()
	if st.Acked != 1 || st.AckUnknown != 2 || st.Retained != 1 {
		t.Fatalf("acked/unknown/retained = %d/%d/%d, want 1/2/1", st.Acked, st.AckUnknown, st.Retained)
	}
}

func TestMaxBytesRefusesAndEvictsRetained(t *testing.T) {
	rec := outboxtest.Record("x")
	o := outboxtest.Open(t, &outbox.Options{MaxBytes: 20 * 400})
	var n int
	for ; n < 100; n++ {
		err := o.Append(outboxtest.Record(fmt.Sprintf("%05d", n)))
		if errors.Is(err, outbox.ErrFull) {
			break
		}
		if err != nil {
			t.Fatalf("Append(%d) = %v", n, err)
		}
	}
	st := o.Stats()
	if n == 100 || st.Full != 1 {
		t.Fatalf("appended %d records of ~%d bytes under a 8000-byte limit; Full = %d", n, len(rec.Body), st.Full)
	}
	if st.PendingBytes > 20*400 {
		t.Fatalf("pending bytes %d above the limit", st.PendingBytes)
	}
	// Delivering makes room: retained records are evicted for new ones.
	recs := outboxtest.ReadAll(t, o)
	for _, r := range recs {
		o.Ack(r.Seq)
	}
	o.Sync()
	for i := range n {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("%05d", 1000+i))); err != nil {
			t.Fatalf("Append after delivery (%d) = %v", i, err)
		}
	}
	// With the log (OUTBOX_TEST_LOG=1) the records, and the evictions
	// that make room for them, reach the tree with their move, which may
	// wait for others (Options.MoveDelay): Sync moves them.
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	st = o.Stats()
	if st.Evicted == 0 || st.PendingBytes+st.RetainedBytes > 20*400 {
		t.Fatalf("evicted %d, held %d bytes; want evictions and <= 8000 bytes", st.Evicted, st.PendingBytes+st.RetainedBytes)
	}
}

func TestWriteErrorFailsFastThenRecovers(t *testing.T) {
	var fail atomic.Bool
	diskErr := errors.New("injected EIO")
	opts := &outbox.Options{}
	outbox.SetBeforeCommit(opts, func() error {
		if fail.Load() {
			return diskErr
		}
		return nil
	})
	o := outboxtest.Open(t, opts)
	fail.Store(true)
	err := o.Append(outboxtest.Record("a"))
	if !errors.Is(err, outbox.ErrWrite) || !errors.Is(err, diskErr) {
		t.Fatalf("Append on failing disk = %v, want ErrWrite wrapping the cause", err)
	}
	// During the back-off Appends fail without waiting for a commit.
	start := time.Now()
	if err := o.Append(outboxtest.Record("b")); !errors.Is(err, outbox.ErrWrite) {
		t.Fatalf("Append during back-off = %v, want ErrWrite", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("Append during back-off took %v", d)
	}
	st := o.Stats()
	if !st.Failing || st.CommitErrors == 0 || st.LastError == "" || st.Pending != 0 {
		t.Fatalf("stats during failure = failing %v errors %d last %q pending %d", st.Failing, st.CommitErrors, st.LastError, st.Pending)
	}
	fail.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := o.Append(outboxtest.Record("c"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append still failing 10s after the disk recovered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	o.Sync() // with Options.Log, Pending counts records once moved
	if st := o.Stats(); st.Pending != 1 || st.Failing {
		t.Fatalf("after recovery pending %d failing %v, want 1 false", st.Pending, st.Failing)
	}
}

func TestCommitTimeoutUnblocksAppend(t *testing.T) {
	release := make(chan struct{})
	var hang atomic.Bool
	opts := &outbox.Options{CommitTimeout: 100 * time.Millisecond}
	outbox.SetBeforeCommit(opts, func() error {
		if hang.Load() {
			<-release
		}
		return nil
	})
	o := outboxtest.Open(t, opts)
	hang.Store(true)
	start := time.Now()
	err := o.Append(outboxtest.Record("slow"))
	if !errors.Is(err, outbox.ErrTimeout) {
		t.Fatalf("Append on a hung disk = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Append returned after %v, want about the 100ms timeout", d)
	}
	hang.Store(false)
	close(release)
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	// harden #4: the batch was failed before its commit point, so the
	// writer rolled it back: ErrTimeout means "not stored", and a caller
	// that spills the record makes no duplicate.
	if st := o.Stats(); st.Pending != 0 || st.Timeouts != 1 {
		t.Fatalf("pending/timeouts = %d/%d, want 0/1", st.Pending, st.Timeouts)
	}
}

func TestOverloadedWhenQueueFull(t *testing.T) {
	release := make(chan struct{})
	opts := &outbox.Options{Durability: outbox.Async, MaxQueueBytes: 4000, FlushInterval: time.Millisecond}
	var once sync.Once
	outbox.SetBeforeCommit(opts, func() error {
		once.Do(func() { <-release })
		return nil
	})
	o := outboxtest.Open(t, opts)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = o.Append(outboxtest.Record(fmt.Sprint(i)))
	}
	close(release)
	if !errors.Is(err, outbox.ErrOverloaded) {
		t.Fatalf("Append with a stuck writer = %v, want ErrOverloaded", err)
	}
	if st := o.Stats(); st.Overloaded != 1 {
		t.Fatalf("Overloaded = %d, want 1", st.Overloaded)
	}
}

func TestInvalidRecordRefused(t *testing.T) {
	o := outboxtest.Open(t, &outbox.Options{MaxRecordBytes: 1000})
	r := outboxtest.Record("a")
	r.Headers = append(r.Headers, outbox.Header{Key: "f", Value: 1.5})
	if err := o.Append(r); !errors.Is(err, outbox.ErrInvalidRecord) {
		t.Fatalf("Append(float header) = %v, want ErrInvalidRecord", err)
	}
	r = outboxtest.Record("b")
	r.Body = make([]byte, 2000)
	if err := o.Append(r); !errors.Is(err, outbox.ErrInvalidRecord) {
		t.Fatalf("Append(2000-byte body) = %v, want ErrInvalidRecord", err)
	}
}

func TestSpill(t *testing.T) {
	probe := outboxtest.Open(t, nil)
	if err := probe.Spill(outboxtest.Record("0")); err != nil {
		t.Fatal(err)
	}
	one := int(probe.Stats().Spill.Bytes) + 8 // the size of one spilled record, and some
	o := outboxtest.Open(t, &outbox.Options{SpillBytes: 3 * one})
	var spilled int
	for i := range 10 {
		if err := o.Spill(outboxtest.Record(fmt.Sprint(i))); err != nil {
			if !errors.Is(err, outbox.ErrSpillFull) {
				t.Fatalf("Spill = %v", err)
			}
			continue
		}
		spilled++
	}
	st := o.Stats().Spill
	if spilled < 2 || spilled > 3 || st.Records != spilled || st.Dropped != uint64(10-spilled) || st.Spilled != uint64(spilled) {
		t.Fatalf("spilled %d; stats %+v", spilled, st)
	}
	select {
	case <-o.Notify():
	default:
		t.Fatal("Spill did not notify the reader")
	}
	recs := o.ReadSpill(nil, 0, 100)
	if len(recs) != spilled || !recs[0].Spilled || recs[0].MessageID != "0" {
		t.Fatalf("ReadSpill = %+v", recs)
	}
	if more := o.ReadSpill(nil, recs[0].Seq, 100); len(more) != spilled-1 {
		t.Fatalf("ReadSpill(after first) = %d records, want %d", len(more), spilled-1)
	}
	o.AckSpill(recs[1].Seq)
	o.AckSpill(recs[0].Seq, recs[0].Seq)
	st = o.Stats().Spill
	if st.Records != spilled-2 || st.Delivered != 2 {
		t.Fatalf("after acks: %+v", st)
	}
	if rest := o.ReadSpill(nil, 0, 100); len(rest) != spilled-2 {
		t.Fatalf("ReadSpill after acks = %d, want %d", len(rest), spilled-2)
	}
	// Space freed by acks is reusable.
	if err := o.Spill(outboxtest.Record("again")); err != nil {
		t.Fatalf("Spill after acks = %v", err)
	}
}

func TestSpillDisabled(t *testing.T) {
	o := outboxtest.Open(t, &outbox.Options{SpillBytes: -1})
	if err := o.Spill(outboxtest.Record("a")); !errors.Is(err, outbox.ErrSpillFull) {
		t.Fatalf("Spill with spill disabled = %v, want ErrSpillFull", err)
	}
	if st := o.Stats().Spill; st.Dropped != 1 {
		t.Fatalf("dropped = %d, want 1", st.Dropped)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := outbox.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	start := time.Now()
	_, err = outbox.Open(path, &outbox.Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, outbox.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	if _, err := outbox.Verify(path); !errors.Is(err, outbox.ErrLocked) {
		t.Fatalf("Verify of a locked file = %v, want ErrLocked", err)
	}
}

func TestReadOnlyOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, _ := outbox.Open(path, nil)
	o.Append(outboxtest.Record("a"))
	o.Close()
	ro, err := outbox.Open(path, &outbox.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if recs := outboxtest.ReadAll(t, ro); len(recs) != 1 {
		t.Fatalf("read-only pending = %d, want 1", len(recs))
	}
	if err := ro.Append(outboxtest.Record("b")); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("Append on read-only = %v, want ErrClosed", err)
	}
}
