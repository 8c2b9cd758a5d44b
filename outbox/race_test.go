package outbox_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
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
