package outbox_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// Many writers, one reader that acknowledges what it reads (like the
// forwarder), and aggressive pruning, all at once. At the end every
// appended record was read exactly once, in sequence order, and every
// record is accounted for: pending, retained or pruned.
func TestConcurrentWritersReaderAcksAndPruning(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Add(int64(time.Millisecond))) }
	o := outboxtest.Open(t, &outbox.Options{
		Retention: 50 * time.Millisecond, PruneInterval: time.Millisecond, PruneBatch: 50,
		MaxBatchRecords: 64, Now: now,
	})
	const writers, each = 32, 200
	var appended sync.Map
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("%d-%d", w, i)
				if err := o.Append(outboxtest.Record(id)); err != nil {
					t.Errorf("Append(%s) = %v", id, err)
					return
				}
				appended.Store(id, true)
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	read := map[string]uint64{}
	lastPerWriter := map[int]int{}
	var after uint64
	finished := false
	for !finished {
		select {
		case <-writersDone:
			finished = true
			o.Sync() // with Options.Log, the last moves into the file
		case <-o.Notify():
		case <-time.After(10 * time.Millisecond):
		}
		for {
			recs, err := o.ReadPending(nil, after, 100, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			var seqs []uint64
			for _, r := range recs {
				if r.Seq <= after {
					t.Fatalf("ReadPending(after %d) returned seq %d", after, r.Seq)
				}
				if prev, dup := read[r.MessageID]; dup {
					t.Fatalf("%s read twice (seq %d and %d)", r.MessageID, prev, r.Seq)
				}
				read[r.MessageID] = r.Seq
				var w, i int
				fmt.Sscanf(r.MessageID, "%d-%d", &w, &i)
				if last, ok := lastPerWriter[w]; ok && i <= last {
					t.Fatalf("writer %d: record %d read after record %d", w, i, last)
				}
				lastPerWriter[w] = i
				after = r.Seq
				seqs = append(seqs, r.Seq)
			}
			o.Ack(seqs...)
		}
	}
	if len(read) != writers*each {
		t.Fatalf("read %d records, want %d", len(read), writers*each)
	}
	appended.Range(func(k, _ any) bool {
		if _, ok := read[k.(string)]; !ok {
			t.Fatalf("appended %s never read", k)
		}
		return true
	})
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Pending != 0 || int(st.Retained)+int(st.Pruned) != writers*each || st.Acked != writers*each {
		t.Fatalf("pending %d, retained %d + pruned %d, acked %d; want 0, %d in all, %d",
			st.Pending, st.Retained, st.Pruned, st.Acked, writers*each, writers*each)
	}
	if st.Pruned == 0 {
		t.Fatal("nothing was pruned: pruning did not run alongside the writers")
	}
	t.Logf("%d commits, %d pruned, batch p50 %v, commit p99 %vs, prune commit p99 %vs",
		st.Commits, st.Pruned, st.BatchSize.Quantile(0.5), st.CommitLatency.Quantile(0.99), st.PruneLatency.Quantile(0.99))
}

// On a really full filesystem Append fails with ErrWrite (wrapping ENOSPC),
// never blocks, and the outbox recovers once space is freed. Needs root to
// mount a small tmpfs; skipped with the reason otherwise.
func TestFullFilesystem(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt).CombinedOutput(); err != nil {
		// harden #9: CI runs as root; a skip there would hide a missing
		// fixture, not a missing privilege.
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: cannot mount a 2 MiB tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a 2 MiB tmpfs to fill (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })

	path := filepath.Join(mnt, "outbox.db")
	o, err := outbox.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	// Fill the rest of the filesystem so the outbox's next growth fails.
	filler := filepath.Join(mnt, "filler")
	f, _ := os.Create(filler)
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()

	var stored, failed int
	var firstErr error
	for i := 0; i < 20000 && failed < 50; i++ {
		start := time.Now()
		err := o.Append(outboxtest.Record(fmt.Sprintf("r%06d", i)))
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Append on a full disk took %v", d)
		}
		switch {
		case err == nil:
			stored++
		case errors.Is(err, outbox.ErrWrite):
			if firstErr == nil {
				firstErr = err
			}
			failed++
			if err := o.Spill(outboxtest.Record(fmt.Sprintf("r%06d", i))); err != nil {
				t.Fatalf("Spill = %v", err)
			}
		default:
			t.Fatalf("Append on a full disk = %v, want nil or ErrWrite", err)
		}
	}
	if failed == 0 {
		t.Fatalf("appended %d records to a full 2 MiB filesystem without an error", stored)
	}
	t.Logf("stored %d, then: %v", stored, firstErr)
	st := o.Stats()
	if st.CommitErrors == 0 || st.Spill.Records != failed || st.Pending != int64(stored) {
		t.Fatalf("stats: commit errors %d, spill %d (want %d), pending %d (want %d)",
			st.CommitErrors, st.Spill.Records, failed, st.Pending, stored)
	}
	// Free the space: appends succeed again.
	os.Remove(filler)
	deadline := time.Now().Add(10 * time.Second)
	for o.Append(outboxtest.Record("after")) != nil {
		if time.Now().After(deadline) {
			t.Fatal("outbox did not recover after space was freed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	// Everything acknowledged is there, and the file is sound.
	o2, err := outbox.Open(path, nil)
	if err != nil {
		t.Fatalf("reopen after ENOSPC: %v", err)
	}
	defer o2.Close()
	// harden #3: the spilled records went back into the file once it had
	// room again.
	if st := o.Stats(); st.Spill.Restored != uint64(failed) || st.Spill.Dropped != 0 {
		t.Fatalf("spill restored %d dropped %d, want %d and 0", st.Spill.Restored, st.Spill.Dropped, failed)
	}
	if got := len(outboxtest.ReadAll(t, o2)); got != stored+failed+1 {
		t.Fatalf("after reopen %d pending, want %d stored + %d spilled + 1", got, stored, failed)
	}
}
