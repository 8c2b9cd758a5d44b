package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// fillToFull appends records until a size-limited outbox refuses one with
// ErrFull, and returns the ids stored.
func fillToFull(t *testing.T, o *outbox.Outbox, prefix string) []string {
	t.Helper()
	var ids []string
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		err := o.Append(outboxtest.Record(id))
		if errors.Is(err, outbox.ErrFull) {
			return ids
		}
		if err != nil {
			t.Fatalf("Append(%s) = %v", id, err)
		}
		ids = append(ids, id)
		if i > 100000 {
			t.Fatal("MaxBytes never reached")
		}
	}
}

// harden #3: the memory spill does not die with the process. A
// size-limited outbox fills up, clicks go to the spill, the file is freed
// (its records delivered), and the writer moves the spill back into the
// file on its own; after a restart every spilled record is in the file.
func TestSpillMovesBackIntoFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	opts := &outbox.Options{MaxBytes: 64 << 10, Retention: -1, PruneInterval: 20 * time.Millisecond}
	o, err := outbox.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	stored := fillToFull(t, o, "disk")
	var spilled []string
	for i := range 30 {
		id := fmt.Sprintf("spill-%05d", i)
		if err := o.Append(outboxtest.Record(id)); !errors.Is(err, outbox.ErrFull) {
			t.Fatalf("Append(%s) to a full outbox = %v, want ErrFull", id, err)
		}
		if err := o.Spill(outboxtest.Record(id)); err != nil {
			t.Fatal(err)
		}
		spilled = append(spilled, id)
	}
	if st := o.Stats(); st.Spill.Records != len(spilled) || st.Spill.Restored != 0 {
		t.Fatalf("spill holds %d (restored %d), want %d (0) while the file is full", st.Spill.Records, st.Spill.Restored, len(spilled))
	}
	// Deliver (and so delete) the file's records: the file has room again.
	recs := outboxtest.ReadAll(t, o)
	seqs := make([]uint64, len(recs))
	for i, r := range recs {
		seqs[i] = r.Seq
	}
	if err := o.Ack(seqs...); err != nil {
		t.Fatal(err)
	}
	outboxtest.WaitFor(t, 5*time.Second, "the spill moved into the file", func() bool {
		return o.Stats().Spill.Records == 0
	})
	if st := o.Stats(); st.Spill.Restored != uint64(len(spilled)) || st.Spill.Dropped != 0 || st.Pending != int64(len(spilled)) {
		t.Fatalf("restored %d dropped %d pending %d, want %d, 0, %d", st.Spill.Restored, st.Spill.Dropped, st.Pending, len(spilled), len(spilled))
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o, err = outbox.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got := outboxtest.ReadAll(t, o)
	if len(got) != len(spilled) {
		t.Fatalf("after restart %d pending, want the %d spilled (%d were delivered)", len(got), len(spilled), len(stored))
	}
	for i, r := range got {
		if r.MessageID != spilled[i] || r.Spilled {
			t.Fatalf("pending[%d] = %s (spilled flag %v), want %s from the file", i, r.MessageID, r.Spilled, spilled[i])
		}
	}
}

// harden #3: Close tries the spill once more, and counts what the file
// still cannot take as lost (Stats.Spill.Dropped, Options.OnLost).
func TestCloseCountsSpillLeft(t *testing.T) {
	var lost atomic.Int64
	o, err := outbox.Open(filepath.Join(t.TempDir(), "outbox.db"), &outbox.Options{
		MaxBytes: 32 << 10, Retention: -1, OnLost: func(_ *outbox.Record, n int) { lost.Add(int64(n)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	fillToFull(t, o, "disk")
	for i := range 7 {
		if err := o.Spill(outboxtest.Record(fmt.Sprintf("spill-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); lost.Load() != 7 || st.Spill.Dropped != 7 || st.Spill.Records != 0 {
		t.Fatalf("after Close: OnLost got %d, Spill.Dropped %d, Spill.Records %d; want 7, 7, 0", lost.Load(), st.Spill.Dropped, st.Spill.Records)
	}
}

// harden #3: spilled records the forwarder has in flight are not moved
// into the file (that would publish them twice); once its session ends
// they are, and nothing was published twice.
func TestSpillInFlightStaysUntilSessionEnds(t *testing.T) {
	o := outboxtest.Open(t, &outbox.Options{PruneInterval: 10 * time.Millisecond})
	for i := range 10 {
		if err := o.Spill(outboxtest.Record(fmt.Sprintf("s-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	p := outboxtest.NewFakePublisher()
	p.HoldConfirms.Store(true)
	cfg := outbox.DefaultForwarderConfig()
	cfg.Publisher = p
	cfg.ReconnectMin = 10 * time.Millisecond
	f, err := outbox.NewForwarder(o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		f.Close(ctx)
	}()
	outboxtest.WaitFor(t, 5*time.Second, "10 in flight", func() bool { return f.Stats().InFlight == 10 })
	// The writer runs (prune ticks, a commit) with the spill in flight.
	if err := o.Append(outboxtest.Record("disk-1")); err != nil {
		t.Fatal(err)
	}
	if err := o.Prune(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats().Spill; st.Restored != 0 || st.Records != 10 {
		t.Fatalf("with the spill in flight: restored %d, held %d; want 0 and 10", st.Restored, st.Records)
	}
	p.RefuseConnect.Store(true)
	p.Break()
	outboxtest.WaitFor(t, 5*time.Second, "the spill moved into the file after the session ended", func() bool {
		return o.Stats().Spill.Restored == 10
	})
	for id, n := range p.Received() {
		if n != 1 {
			t.Fatalf("%s published %d times, want once", id, n)
		}
	}
}

// actionRecord is a record of the other kind an outbox carries: a
// postback action, on its own exchange.
func actionRecord(id string) *outbox.Record {
	return &outbox.Record{
		Exchange:   "actions",
		RoutingKey: "action.test",
		MessageID:  id,
		Headers:    []outbox.Header{{Key: "region", Value: "test"}, {Key: "node", Value: "t1"}, {Key: "schema", Value: int64(1)}},
		Body:       fmt.Appendf(nil, `{"v":1,"action_id":%q,"adv":"acme","order_id":"A-1","action":"sale","status":"pending"}`, id),
	}
}

// Lost records are reported with their route, so each kind is counted
// under its own metric above the outbox (edge/lost.go, postback.Handler
// CountLost). Async mode on a disk that never takes a commit: clicks and
// actions are appended (as a hand-off appends a peer's records), their
// commit fails, the spill takes some and the rest are lost; at Close the
// spill is lost too. Every record is reported once, under its own
// exchange: per kind, spilled + lost at the commit = appended, lost at
// the commit + lost at Close = appended, and OnLost's counts add up to
// Stats.Spill.Dropped.
func TestLostReportedByKind(t *testing.T) {
	type kind struct{ spilled, lostAtCommit, lost int }
	var (
		mu      sync.Mutex
		kinds   = map[string]*kind{"clicks": {}, "actions": {}}
		closing bool
	)
	get := func(r *outbox.Record, what string) *kind {
		k := kinds[r.Exchange]
		if k == nil || r.Header("node") != "t1" || r.RoutingKey != map[string]string{"clicks": "click.test", "actions": "action.test"}[r.Exchange] {
			t.Errorf("%s records of route %+v, want clicks or actions of t1", what, r)
			return new(kind)
		}
		return k
	}
	one := len(outboxtest.Record("c-00").Body) + 100
	opts := &outbox.Options{
		Durability: outbox.Async, FlushInterval: 200 * time.Millisecond, MaxBatchRecords: 1000,
		SpillBytes: 12 * one, // room for about 12 of the 30
		OnLost: func(r *outbox.Record, n int) {
			mu.Lock()
			defer mu.Unlock()
			k := get(r, "lost")
			k.lost += n
			if !closing {
				k.lostAtCommit += n
			}
		},
		OnAsyncFate: func(r *outbox.Record, f outbox.Fate, n int) {
			mu.Lock()
			defer mu.Unlock()
			if f != outbox.FateSpilled {
				t.Errorf("%d records %v on a disk that takes no commit", n, f)
			}
			get(r, "spilled").spilled += n
		},
	}
	outbox.SetBeforeCommit(opts, func() error { return syscall.ENOSPC })
	o, err := outbox.Open(filepath.Join(t.TempDir(), "outbox.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	// Runs of each kind, long and short, so that reports come per run.
	appended := map[string]int{}
	for i := range 30 {
		r := outboxtest.Record(fmt.Sprintf("c-%02d", i))
		if i%5 >= 3 || i >= 24 {
			r = actionRecord(fmt.Sprintf("a-%02d", i))
		}
		if err := o.Append(r); err != nil {
			t.Fatalf("async Append(%s) = %v", r.MessageID, err)
		}
		appended[r.Exchange]++
	}
	if err := o.Sync(); !errors.Is(err, outbox.ErrWrite) {
		t.Fatalf("Sync on a failing disk = %v, want ErrWrite", err)
	}
	mu.Lock()
	closing = true
	for ex, k := range kinds {
		if k.spilled+k.lostAtCommit != appended[ex] || k.lost != k.lostAtCommit {
			t.Errorf("%s after the failed commit: %d spilled + %d lost, want the %d appended", ex, k.spilled, k.lostAtCommit, appended[ex])
		}
	}
	for ex, k := range kinds {
		if k.spilled == 0 || k.lostAtCommit == 0 {
			t.Errorf("%s: %d spilled, %d lost; want some of each (both kinds in the spill and in the loss)", ex, k.spilled, k.lostAtCommit)
		}
	}
	mu.Unlock()
	if err := o.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for ex, k := range kinds {
		if k.lost != appended[ex] || k.lost-k.lostAtCommit != k.spilled {
			t.Errorf("%s: %d lost (%d at the commit, %d from the spill at Close), want the %d appended, the %d spilled lost at Close",
				ex, k.lost, k.lostAtCommit, k.lost-k.lostAtCommit, appended[ex], k.spilled)
		}
		total += k.lost
	}
	if st := o.Stats(); st.Spill.Dropped != uint64(total) || total != 30 {
		t.Errorf("OnLost reported %d, Stats.Spill.Dropped %d; want 30 each", total, st.Spill.Dropped)
	}
}
