package outbox_test

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

func indexKey(s string) (k [outbox.IndexKeyLen]byte) {
	sum := sha256.Sum256([]byte(s))
	copy(k[:], sum[:])
	return k
}

func mustGet(t *testing.T, o *outbox.Outbox, key string) (outbox.IndexEntry, bool) {
	t.Helper()
	e, ok, err := o.IndexGet(indexKey(key))
	if err != nil {
		t.Fatalf("IndexGet(%q) = %v", key, err)
	}
	return e, ok
}

func TestIndexAppendAndConditions(t *testing.T) {
	o := outboxtest.Open(t, nil)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	if _, ok := mustGet(t, o, "a"); ok {
		t.Fatal("IndexGet on an empty index found an entry")
	}
	first := outbox.IndexUpdate{Key: indexKey("a"), New: outbox.IndexEntry{Value: 1, Expires: exp}}
	if err := o.AppendIndexed(outboxtest.Record("r1"), first); err != nil {
		t.Fatalf("AppendIndexed(absent -> 1) = %v", err)
	}
	e, ok := mustGet(t, o, "a")
	if !ok || e.Value != 1 || !e.Expires.Equal(exp) {
		t.Fatalf("IndexGet = %+v, %v; want value 1 expiring %v", e, ok, exp)
	}
	// The same condition again no longer holds: nothing is stored.
	if err := o.AppendIndexed(outboxtest.Record("r2"), first); !errors.Is(err, outbox.ErrIndexChanged) {
		t.Fatalf("AppendIndexed with a stale condition = %v, want ErrIndexChanged", err)
	}
	// A wrong old value is refused too.
	wrong := outbox.IndexUpdate{Key: indexKey("a"), OldOK: true, Old: outbox.IndexEntry{Value: 7, Expires: exp},
		New: outbox.IndexEntry{Value: 2, Expires: exp}}
	if err := o.AppendIndexed(outboxtest.Record("r3"), wrong); !errors.Is(err, outbox.ErrIndexChanged) {
		t.Fatalf("AppendIndexed with a wrong old value = %v, want ErrIndexChanged", err)
	}
	move := outbox.IndexUpdate{Key: indexKey("a"), OldOK: true, Old: e, New: outbox.IndexEntry{Value: 2, Expires: exp.Add(time.Hour)}}
	if err := o.AppendIndexed(outboxtest.Record("r4"), move); err != nil {
		t.Fatalf("AppendIndexed(1 -> 2) = %v", err)
	}
	if e, _ := mustGet(t, o, "a"); e.Value != 2 {
		t.Fatalf("after the move IndexGet = %+v, want value 2", e)
	}
	var ids []string
	for _, r := range outboxtest.ReadAll(t, o) {
		ids = append(ids, r.MessageID)
	}
	if got := strings.Join(ids, ","); got != "r1,r4" {
		t.Fatalf("pending records = %s, want r1,r4 (refused updates store no record)", got)
	}
	if n, x := outbox.IndexCounts(o); n != 1 || x != 1 {
		t.Fatalf("index holds %d entries and %d expiry keys, want 1 and 1 (the old expiry key is replaced)", n, x)
	}
}

// Concurrent appends that all expect the key to be absent: exactly one
// wins, whether they meet in one batch or in several.
func TestIndexConcurrentSameKey(t *testing.T) {
	for _, mode := range []outbox.Durability{outbox.Sync, outbox.Async} {
		t.Run(mode.String(), func(t *testing.T) {
			o := outboxtest.Open(t, &outbox.Options{Durability: mode})
			exp := time.Now().Add(time.Hour)
			var won, changed atomic.Int64
			var wg sync.WaitGroup
			for i := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := o.AppendIndexed(outboxtest.Record(fmt.Sprintf("r%d", i)),
						outbox.IndexUpdate{Key: indexKey("k"), New: outbox.IndexEntry{Value: uint16(i), Expires: exp}})
					switch {
					case err == nil:
						won.Add(1)
					case errors.Is(err, outbox.ErrIndexChanged):
						changed.Add(1)
					default:
						t.Errorf("AppendIndexed = %v", err)
					}
				}()
			}
			wg.Wait()
			if won.Load() != 1 || changed.Load() != 31 {
				t.Fatalf("%d appends won and %d were refused, want 1 and 31", won.Load(), changed.Load())
			}
			recs := outboxtest.ReadAll(t, o)
			e, _ := mustGet(t, o, "k")
			if len(recs) != 1 || recs[0].MessageID != fmt.Sprintf("r%d", e.Value) {
				t.Fatalf("pending = %d records, index value %d; want the winner's record alone", len(recs), e.Value)
			}
		})
	}
}

// A failed commit stores neither the record nor the index change.
func TestIndexFailedCommitStoresNothing(t *testing.T) {
	var fail atomic.Bool
	opts := &outbox.Options{}
	outbox.SetBeforeCommit(opts, func() error {
		if fail.Load() {
			return errors.New("injected disk error")
		}
		return nil
	})
	o := outboxtest.Open(t, opts)
	fail.Store(true)
	err := o.AppendIndexed(outboxtest.Record("r1"),
		outbox.IndexUpdate{Key: indexKey("a"), New: outbox.IndexEntry{Value: 1, Expires: time.Now().Add(time.Hour)}})
	if !errors.Is(err, outbox.ErrWrite) {
		t.Fatalf("AppendIndexed on a failing disk = %v, want ErrWrite", err)
	}
	fail.Store(false)
	if _, ok := mustGet(t, o, "a"); ok {
		t.Fatal("the index holds an entry whose commit failed")
	}
	if recs := outboxtest.ReadAll(t, o); len(recs) != 0 {
		t.Fatalf("%d records pending after a failed commit, want 0", len(recs))
	}
}

// In Async mode a failed commit moves its answered records to the spill
// (harden #2), but not a record of AppendIndexed: its caller waited for the
// commit and was told it failed, so spilling it would deliver an action
// whose caller was told "not stored" (and whose entry was not written).
func TestIndexAsyncFailedCommitSpillsOnlyAnswered(t *testing.T) {
	var lost atomic.Int64
	opts := &outbox.Options{
		Durability: outbox.Async, FlushInterval: 300 * time.Millisecond, MaxBatchRecords: 1000,
		OnLost: func(_ *outbox.Record, n int) { lost.Add(int64(n)) },
	}
	outbox.SetBeforeCommit(opts, func() error { return syscall.ENOSPC })
	o := outboxtest.Open(t, opts)
	for i := range 3 {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("plain-%d", i))); err != nil {
			t.Fatalf("async Append = %v", err)
		}
	}
	err := o.AppendIndexed(outboxtest.Record("indexed"),
		outbox.IndexUpdate{Key: indexKey("a"), New: outbox.IndexEntry{Value: 1, Expires: time.Now().Add(time.Hour)}})
	if !errors.Is(err, outbox.ErrWrite) {
		t.Fatalf("AppendIndexed on a failing disk = %v, want ErrWrite", err)
	}
	var got []string
	for _, r := range o.ReadSpill(nil, 0, 100) {
		got = append(got, r.MessageID)
	}
	if want := "plain-0 plain-1 plain-2"; strings.Join(got, " ") != want || lost.Load() != 0 {
		t.Fatalf("spill holds [%s], %d lost; want [%s], 0 lost", strings.Join(got, " "), lost.Load(), want)
	}
	if _, ok := mustGet(t, o, "a"); ok {
		t.Fatal("the index holds an entry whose commit failed")
	}
}

// Entries vanish for IndexGet at their expiry and are deleted by the
// prune step; a renewed entry survives the prune of its old expiry.
func TestIndexExpiry(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	o := outboxtest.Open(t, &outbox.Options{Now: clock, PruneInterval: time.Hour})
	t0 := clock()
	put := func(key string, old *outbox.IndexEntry, e outbox.IndexEntry) {
		t.Helper()
		u := outbox.IndexUpdate{Key: indexKey(key), New: e}
		if old != nil {
			u.Old, u.OldOK = *old, true
		}
		if err := o.AppendIndexed(outboxtest.Record(key), u); err != nil {
			t.Fatalf("AppendIndexed(%s) = %v", key, err)
		}
	}
	put("short", nil, outbox.IndexEntry{Value: 1, Expires: t0.Add(time.Minute)})
	put("long", nil, outbox.IndexEntry{Value: 1, Expires: t0.Add(time.Minute)})
	old, _ := mustGet(t, o, "long")
	put("long", &old, outbox.IndexEntry{Value: 2, Expires: t0.Add(time.Hour)})

	now.Store(t0.Add(time.Minute).Unix())
	if _, ok := mustGet(t, o, "short"); ok {
		t.Fatal("IndexGet found an entry at its expiry")
	}
	// An expired entry counts as absent for a condition, too.
	put("short", nil, outbox.IndexEntry{Value: 3, Expires: t0.Add(2 * time.Minute)})
	now.Store(t0.Add(3 * time.Minute).Unix())
	if err := o.Prune(); err != nil {
		t.Fatal(err)
	}
	if n, x := outbox.IndexCounts(o); n != 1 || x != 1 {
		t.Fatalf("after the prune the index holds %d entries and %d expiry keys, want 1 and 1", n, x)
	}
	if e, ok := mustGet(t, o, "long"); !ok || e.Value != 2 {
		t.Fatalf("IndexGet(long) = %+v, %v; want the renewed entry", e, ok)
	}
}

// Entries survive a reopen; Verify accepts a file with an index and
// Salvage copies its records without it.
func TestIndexReopenVerifySalvage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	o, err := outbox.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	for i := range 50 {
		err := o.AppendIndexed(outboxtest.Record(fmt.Sprintf("r%d", i)),
			outbox.IndexUpdate{Key: indexKey(fmt.Sprint(i)), New: outbox.IndexEntry{Value: uint16(i), Expires: exp}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	outboxtest.CheckFile(t, path)
	o, err = outbox.Open(path, &outbox.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok, err := o.IndexGet(indexKey("7")); err != nil || !ok || e.Value != 7 {
		t.Fatalf("after reopen IndexGet(7) = %+v, %v, %v; want value 7", e, ok, err)
	}
	o.Close()
	rep, err := outbox.Salvage(path, filepath.Join(dir, "salvaged"), nil)
	if err != nil {
		t.Fatalf("Salvage = %v", err)
	}
	if rep.Pending != 50 || len(rep.Problems) != 0 || !rep.TreeComplete {
		t.Fatalf("Salvage: %d pending, problems %q, tree complete %v; want 50, none, true",
			rep.Pending, rep.Problems, rep.TreeComplete)
	}
}

// The kill -9 test: a child appends indexed records from several
// goroutines until it is killed; after each kill every index entry has its
// record and every record its entry, and every append the child saw
// succeed is there.

const indexCrashEnv = "OUTBOX_INDEX_CRASH_CHILD"

func TestIndexCrashChild(t *testing.T) {
	path := os.Getenv(indexCrashEnv)
	if path == "" {
		t.Skip("the child of TestIndexCrash")
	}
	prefix := os.Getenv("OUTBOX_CRASH_PREFIX")
	o, err := outbox.Open(path, &outbox.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	out := make(chan string, 4096)
	for g := range 8 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("%s-%d-%d", prefix, g, i)
				err := o.AppendIndexed(outboxtest.Record(id),
					outbox.IndexUpdate{Key: indexKey(id), New: outbox.IndexEntry{Value: 1, Expires: time.Now().Add(time.Hour)}})
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				out <- id
			}
		}()
	}
	w := bufio.NewWriter(os.Stdout)
	for id := range out {
		fmt.Fprintln(w, id)
		if len(out) == 0 {
			w.Flush()
		}
	}
}

func TestIndexCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 cycles")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	var acked []string
	for cycle := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIndexCrashChild$")
		cmd.Env = append(os.Environ(), indexCrashEnv+"="+path, fmt.Sprintf("OUTBOX_CRASH_PREFIX=c%d", cycle))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() && n < 200+cycle*50 {
			acked = append(acked, sc.Text())
			n++
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() { // lines already written before the kill
			if s := sc.Text(); strings.HasPrefix(s, "c") {
				acked = append(acked, s)
			}
		}
		cmd.Wait()
	}
	o, err := outbox.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	recs := outboxtest.ReadAll(t, o)
	have := make(map[string]bool, len(recs))
	for _, r := range recs {
		if have[r.MessageID] {
			t.Fatalf("record %s stored twice", r.MessageID)
		}
		have[r.MessageID] = true
		if _, ok := mustGet(t, o, r.MessageID); !ok {
			t.Fatalf("record %s has no index entry", r.MessageID)
		}
	}
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("append of %s returned nil but the record is gone", id)
		}
	}
	if n, _ := outbox.IndexCounts(o); n != len(recs) {
		t.Fatalf("the index holds %d entries for %d records", n, len(recs))
	}
	t.Logf("%d records, %d acknowledged to the child", len(recs), len(acked))
}
