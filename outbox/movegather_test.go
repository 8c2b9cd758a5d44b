package outbox

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// pacedAppends appends n records with the log in Sync mode, one at a time,
// spaced apart, while a reader notes when each becomes readable. It returns
// the stats and the longest time from an Append's return to its record
// being readable by ReadPending.
func pacedAppends(t *testing.T, opts *Options, n int, gap time.Duration) (Stats, time.Duration) {
	t.Helper()
	o, err := Open(filepath.Join(t.TempDir(), "outbox.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	answered := make([]time.Time, n)
	var mu sync.Mutex
	seen := make([]time.Time, n)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var after uint64
		for {
			recs, err := o.ReadPending(nil, after, 1000, 0)
			if err != nil {
				t.Error(err)
				return
			}
			now := time.Now()
			mu.Lock()
			for _, r := range recs {
				var i int
				fmt.Sscanf(r.MessageID, "m%d", &i)
				seen[i] = now
				after = r.Seq
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-o.Notify():
			case <-time.After(time.Millisecond):
			}
		}
	}()
	for i := range n {
		appendIDs(t, o, fmt.Sprintf("m%d", i))
		mu.Lock()
		answered[i] = time.Now()
		mu.Unlock()
		time.Sleep(gap)
	}
	// Every record readable, without forcing a move (Sync would).
	deadline := time.Now().Add(5 * time.Second)
	for o.Stats().Moving > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the reader's last pass
	close(stop)
	<-readerDone
	s := o.Stats()
	var worst time.Duration
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if seen[i].IsZero() {
			t.Fatalf("record m%d was never readable", i)
		}
		worst = max(worst, seen[i].Sub(answered[i]))
	}
	return s, worst
}

// At a low rate the writer lets logged batches gather for MoveDelay and
// moves them in one commit, not one commit per batch; a record is still
// readable within MoveDelay and a commit of its Append.
func TestMovesGatherAtALowRate(t *testing.T) {
	const n = 200
	s, worst := pacedAppends(t, &Options{Log: true}, n, time.Millisecond)
	batches := s.LogLatency.Count
	t.Logf("%d log batches, %d moves, %d commits; move latency p50 %.1fms p99 %.1fms; appended to readable at most %v",
		batches, s.Moves, s.Commits, 1e3*s.MoveLatency.Quantile(0.5), 1e3*s.MoveLatency.Quantile(0.99), worst)
	if batches < n/2 {
		t.Fatalf("only %d log batches for %d paced appends: the test is not at a low rate", batches, n)
	}
	if s.Moves == 0 || s.Moves > batches/3 {
		t.Errorf("%d moves for %d log batches, want at most %d", s.Moves, batches, batches/3)
	}
	// Generous: the machine is shared and the race detector is slow. The
	// histogram's buckets are √2 apart, so the bound is a bucket's.
	limit := DefaultMoveDelay + 100*time.Millisecond
	if p99 := time.Duration(s.MoveLatency.Quantile(0.99) * 1e9); p99 > limit {
		t.Errorf("move latency p99 %v, want at most %v", p99, limit)
	}
	if worst > limit {
		t.Errorf("a record became readable %v after its Append, want at most %v", worst, limit)
	}
}

// A negative MoveDelay moves each logged batch at once, as before.
func TestMovesAtOnceWithoutMoveDelay(t *testing.T) {
	const n = 60
	s, _ := pacedAppends(t, &Options{Log: true, MoveDelay: -1}, n, 2*time.Millisecond)
	batches := s.LogLatency.Count
	t.Logf("%d log batches, %d moves", batches, s.Moves)
	if s.Moves < batches/2 {
		t.Errorf("%d moves for %d log batches without a move delay, want about one each", s.Moves, batches)
	}
}

// Moves do not wait for a direct commit queued behind them (Sync), nor at
// Close: the records are readable when Sync returns, and after a reopen.
func TestGatheredMovesDoNotDelaySyncOrClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := Open(path, &Options{Log: true, MoveDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendIDs(t, o, "a", "b")
	start := time.Now()
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Sync took %v behind gathering moves", d)
	}
	recs, err := o.ReadPending(nil, 0, 10, 0)
	if err != nil || len(recs) != 2 {
		t.Fatalf("after Sync: %d records, %v; want 2", len(recs), err)
	}
	appendIDs(t, o, "c")
	start = time.Now()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v behind gathering moves", d)
	}
	o, err = Open(path, &Options{Log: true})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if s := o.Stats(); s.LogReplayed != 0 {
		t.Errorf("Close left %d records in the log only", s.LogReplayed)
	}
	if recs, _ := o.ReadPending(nil, 0, 10, 0); len(recs) != 3 {
		t.Errorf("after reopen: %d records, want 3", len(recs))
	}
}
