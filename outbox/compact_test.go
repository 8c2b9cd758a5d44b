package outbox_test

import (
	"bytes"
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

// After a backlog drains, the file keeps its size; Compact gives the space
// back and keeps every record, its sequence, state and times, and next_seq.
func TestCompactAfterDrain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := outbox.Open(path, &outbox.Options{Durability: outbox.Async, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 400)
	for i := range 20000 {
		r := outboxtest.Record(fmt.Sprintf("big-%05d", i))
		r.Body = append(r.Body, pad...)
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	o.Sync()
	// Drain all but a few; they are deleted on delivery (retention -1).
	recs := outboxtest.ReadAll(t, o)
	for _, r := range recs[:19900] {
		o.Ack(r.Seq)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	want := openContents2(t, path)
	before, _ := os.Stat(path)

	fixed := time.Date(2025, 11, 27, 7, 8, 9, 0, time.UTC)
	rep, err := outbox.Compact(path, &outbox.CompactOptions{HoldLock: -1, Now: func() time.Time { return fixed }})
	if err != nil {
		t.Fatalf("Compact = %v", err)
	}
	if rep.SizeBefore != before.Size() || rep.SizeAfter >= rep.SizeBefore/10 {
		t.Errorf("sizes %d -> %d (file was %d), want at least 10x smaller", rep.SizeBefore, rep.SizeAfter, before.Size())
	}
	if wantBackup := path + ".pre-compact-20251127T070809Z"; rep.Backup != wantBackup {
		t.Errorf("backup = %q, want %q", rep.Backup, wantBackup)
	}
	if fi, err := os.Stat(rep.Backup); err != nil || fi.Size() != before.Size() {
		t.Errorf("backup: %v, size %v; want the original", err, fi)
	}
	if rep.Pending != 100 || rep.NextSeq != 20001 {
		t.Errorf("report: %d pending, next seq %d; want 100, 20001", rep.Pending, rep.NextSeq)
	}
	if _, err := outbox.Verify(path); err != nil {
		t.Fatalf("Verify(compacted) = %v", err)
	}
	got := openContents2(t, path)
	if len(got) != len(want) {
		t.Fatalf("compacted file holds %d records, want %d", len(got), len(want))
	}
	for seq, w := range want {
		if got[seq] != w {
			t.Fatalf("record %d = %q, want %q", seq, got[seq], w)
		}
	}
	// The backup is the untouched original.
	if old := openContents2(t, rep.Backup); len(old) != len(want) {
		t.Errorf("backup holds %d records, want %d", len(old), len(want))
	}
	// The compacted outbox carries on: the next append gets seq 20001.
	o, err = outbox.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Append(outboxtest.Record("after"))
	recs = outboxtest.ReadAll(t, o)
	if last := recs[len(recs)-1]; last.MessageID != "after" || last.Seq != 20001 {
		t.Errorf("append after compaction got seq %d (%s), want 20001", last.Seq, last.MessageID)
	}
	o.Close()
	if _, err := os.Stat(path + ".compact-tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

// openContents2 returns seq -> the record, with its state and times.
func openContents2(t *testing.T, path string) map[uint64]string {
	t.Helper()
	o, err := outbox.Open(path, &outbox.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	m := map[uint64]string{}
	err = o.Scan(nil, func(r *outbox.Record) error {
		m[r.Seq] = fmt.Sprintf("%v|%v|%s|%s|%v|%s", r.Time.UnixNano(), r.Delivered.UnixNano(), r.RoutingKey, r.MessageID, r.Headers, r.Body)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCompactKeepsDeliveredRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, _ := outbox.Open(path, &outbox.Options{Durability: outbox.Async})
	for i := range 500 {
		o.Append(outboxtest.Record(fmt.Sprintf("r%d", i)))
	}
	o.Sync()
	for seq := uint64(1); seq <= 300; seq++ {
		o.Ack(seq)
	}
	o.Close()
	want := openContents2(t, path)
	if _, err := outbox.Compact(path, &outbox.CompactOptions{HoldLock: -1}); err != nil {
		t.Fatal(err)
	}
	got := openContents2(t, path)
	for seq, w := range want {
		if got[seq] != w {
			t.Fatalf("record %d = %q, want %q", seq, got[seq], w)
		}
	}
	rep := outboxtest.CheckFile(t, path)
	if rep.Pending != 200 || rep.Retained != 300 {
		t.Errorf("compacted: %d pending, %d retained; want 200, 300", rep.Pending, rep.Retained)
	}
}

func TestCompactRefuses(t *testing.T) {
	t.Run("locked", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		o, err := outbox.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		o.Append(outboxtest.Record("a"))
		start := time.Now()
		_, err = outbox.Compact(path, &outbox.CompactOptions{LockTimeout: 100 * time.Millisecond, HoldLock: -1})
		if !errors.Is(err, outbox.ErrLocked) || !strings.Contains(err.Error(), "node running") {
			t.Fatalf("Compact of a live file = %v, want ErrLocked saying why", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Compact took %v to give up", d)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		o, _ := outbox.Open(path, nil)
		for i := range 200 {
			o.Append(outboxtest.Record(fmt.Sprintf("r%d", i)))
		}
		o.Close()
		data, _ := os.ReadFile(path)
		needle := []byte(`"click_id":"r150"`)
		if !bytes.Contains(data, needle) {
			t.Fatal("record r150 not found in the file")
		}
		for i := 0; ; {
			j := bytes.Index(data[i:], needle)
			if j < 0 {
				break
			}
			data[i+j+5] ^= 0x20 // a bit in a record's body, in every copy
			i += j + 1
		}
		os.WriteFile(path, data, 0o600)
		_, err := outbox.Compact(path, &outbox.CompactOptions{HoldLock: -1})
		if !errors.Is(err, outbox.ErrCorrupt) || !strings.Contains(err.Error(), "salvage") {
			t.Fatalf("Compact of a damaged file = %v, want ErrCorrupt pointing to salvage", err)
		}
		after, _ := os.ReadFile(path)
		if string(after) != string(data) {
			t.Errorf("Compact changed the damaged file")
		}
		matches, _ := filepath.Glob(path + ".*")
		matches = slices.DeleteFunc(matches, func(m string) bool { return m == path+".log" }) // Open's (Options.Log)
		if len(matches) != 0 {
			t.Errorf("Compact left files behind: %v", matches)
		}
	})
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		if _, err := outbox.Compact(path, nil); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Compact of a missing file = %v, want ErrNotExist", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Compact created %s", path)
		}
	})
}
