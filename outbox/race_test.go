package outbox_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// harden #4: a batch's fate has one owner. Commits take a random time
// around the commit timeout, so the timeout loop and the writer race for
// many batches; afterwards the stored records are exactly those whose
// Append returned nil. Before the fix, a batch failed with ErrTimeout was
// still committed, and this found stored records whose Append had failed.
func TestBatchFateSingleOwner(t *testing.T) {
	const timeout = 4 * time.Millisecond
	opts := &outbox.Options{CommitTimeout: timeout, MaxBatchRecords: 8}
	outbox.SetBeforeCommit(opts, func() error {
		time.Sleep(time.Duration(rand.N(int64(2 * timeout))))
		return nil
	})
	o := outboxtest.Open(t, opts)

	const writers, each = 16, 60
	var mu sync.Mutex
	ok := map[string]bool{}
	timedOut := 0
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				err := o.Append(outboxtest.Record(id))
				mu.Lock()
				switch {
				case err == nil:
					ok[id] = true
				case errors.Is(err, outbox.ErrTimeout):
					timedOut++
				default:
					t.Errorf("Append(%s) = %v, want nil or ErrTimeout", id, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := o.Sync(); err != nil && !errors.Is(err, outbox.ErrTimeout) {
		t.Fatal(err)
	}
	// Let every commit in progress end.
	outboxtest.WaitFor(t, 10*time.Second, "a final commit", func() bool { return o.Sync() == nil })

	stored := map[string]bool{}
	for _, r := range outboxtest.ReadAll(t, o) {
		if stored[r.MessageID] {
			t.Fatalf("%s stored twice", r.MessageID)
		}
		stored[r.MessageID] = true
		if !ok[r.MessageID] {
			t.Errorf("%s is stored but its Append returned an error", r.MessageID)
		}
	}
	for id := range ok {
		if !stored[id] {
			t.Errorf("%s: Append returned nil but the record is not stored", id)
		}
	}
	if timedOut == 0 || len(ok) == 0 {
		t.Fatalf("%d timed out, %d stored: the race was not exercised", timedOut, len(ok))
	}
	if st := o.Stats(); st.Timeouts != uint64(timedOut) {
		t.Errorf("Stats.Timeouts = %d, want the %d ErrTimeout returns", st.Timeouts, timedOut)
	}
	t.Logf("%d stored, %d timed out", len(ok), timedOut)
}

// harden #2: in Async mode Append returns before the commit, so a commit
// that fails must not make its records vanish: each goes to the spill, and
// those the spill cannot take are counted as dropped and reported through
// Options.OnLost. Every accepted record ends up stored, spilled or counted.
func TestAsyncCommitFailureSpillsOrCounts(t *testing.T) {
	one := len(outboxtest.Record("r-00").Body) + 100
	var failing atomic.Bool
	failing.Store(true)
	var lost atomic.Int64
	opts := &outbox.Options{
		Durability: outbox.Async, FlushInterval: 200 * time.Millisecond, MaxBatchRecords: 1000,
		SpillBytes: 8 * one, // room for 8 of the 20
		OnLost:     func(_ *outbox.Record, n int) { lost.Add(int64(n)) },
	}
	outbox.SetBeforeCommit(opts, func() error {
		if failing.Load() {
			return syscall.ENOSPC
		}
		return nil
	})
	o := outboxtest.Open(t, opts)
	const n = 20
	for i := range n {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("r-%02d", i))); err != nil {
			t.Fatalf("async Append(%d) = %v", i, err)
		}
	}
	if err := o.Sync(); !errors.Is(err, outbox.ErrWrite) {
		t.Fatalf("Sync on a failing disk = %v, want ErrWrite", err)
	}
	spilled := o.ReadSpill(nil, 0, 100)
	st := o.Stats()
	if len(spilled) == 0 || lost.Load() == 0 {
		t.Fatalf("%d spilled, %d lost: want both (spill holds 8 of 20)", len(spilled), lost.Load())
	}
	if got := int64(len(spilled)) + lost.Load(); got != n || st.Pending != 0 {
		t.Fatalf("spilled %d + lost %d = %d, pending %d; want %d accepted records accounted for, none stored",
			len(spilled), lost.Load(), got, st.Pending, n)
	}
	if st.Spill.Dropped != uint64(lost.Load()) || st.Rescued != uint64(len(spilled)) {
		t.Fatalf("Stats: spill dropped %d rescued %d, want %d and %d", st.Spill.Dropped, st.Rescued, lost.Load(), len(spilled))
	}
	t.Logf("%d accepted: %d spilled, %d counted lost", n, len(spilled), lost.Load())
	// The spilled copies are the first records, intact and in order.
	for i, r := range spilled {
		if want := fmt.Sprintf("r-%02d", i); r.MessageID != want || !r.Spilled {
			t.Fatalf("spill[%d] = %s (spilled %v), want %s", i, r.MessageID, r.Spilled, want)
		}
	}
}

// harden #2, issue 12's async double count: every record an Async Append
// accepted is reported once, as committed or spilled (OnAsyncFate) or lost
// (OnLost), whether its commit failed or not; records of a route arrive
// with that route.
func TestAsyncFateReportedOnce(t *testing.T) {
	one := len(outboxtest.Record("r-00").Body) + 100
	var failing atomic.Bool
	failing.Store(true)
	var lost, committed, spilled atomic.Int64
	opts := &outbox.Options{
		Durability: outbox.Async, FlushInterval: time.Millisecond, MaxBatchRecords: 1000,
		SpillBytes: 8 * one,
		OnLost: func(r *outbox.Record, n int) {
			if r.Exchange != "clicks" || r.Header("node") != "t1" {
				t.Errorf("%d records lost of route %+v, want the clicks of t1", n, r)
			}
			lost.Add(int64(n))
		},
		OnAsyncFate: func(r *outbox.Record, f outbox.Fate, n int) {
			if r.Exchange != "clicks" || r.Header("node") != "t1" {
				t.Errorf("fate of %d records of route %+v, want the clicks of t1", n, r)
			}
			switch f {
			case outbox.FateCommitted:
				committed.Add(int64(n))
			case outbox.FateSpilled:
				spilled.Add(int64(n))
			}
		},
	}
	outbox.SetBeforeCommit(opts, func() error {
		if failing.Load() {
			return syscall.ENOSPC
		}
		return nil
	})
	o := outboxtest.Open(t, opts)
	for i := range 20 {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("r-%02d", i))); err != nil {
			t.Fatalf("async Append(%d) = %v", i, err)
		}
	}
	if err := o.Sync(); !errors.Is(err, outbox.ErrWrite) {
		t.Fatalf("Sync on a failing disk = %v, want ErrWrite", err)
	}
	failing.Store(false)
	o.ClearWriteBackoff()
	for i := range 10 {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("s-%02d", i))); err != nil {
			t.Fatalf("async Append(%d) = %v", i, err)
		}
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if spilled.Load() == 0 || lost.Load() == 0 || committed.Load() != 10 || spilled.Load()+lost.Load() != 20 {
		t.Fatalf("30 accepted: %d committed, %d spilled, %d lost; want 10 committed and 20 spilled or lost, some of each",
			committed.Load(), spilled.Load(), lost.Load())
	}
}
