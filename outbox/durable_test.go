package outbox_test

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// AppendDurable returns once the record is committed to the file, in
// Async mode too, and a failed commit is the caller's to handle: the
// record is not spilled. (Append followed by Sync does not promise that:
// a record whose commit failed goes to the memory spill, and a Sync queued
// once the write back-off has ended commits before the writer moves the
// spill back, so it can succeed with the record only in memory.)
func TestAppendDurable(t *testing.T) {
	errDisk := errors.New("test: disk refuses the write")
	for _, log := range []bool{false, true} {
		t.Run(map[bool]string{false: "tree", true: "log"}[log], func(t *testing.T) {
			var failLog, failTree atomic.Bool
			opts := &outbox.Options{Durability: outbox.Async, Log: log, SpillBytes: 1 << 20}
			outbox.SetBeforeMove(opts, func() error {
				if failTree.Load() {
					return errDisk
				}
				return nil
			})
			if log {
				outbox.SetBeforeLog(opts, func() error {
					if failLog.Load() {
						return errDisk
					}
					return nil
				})
			}
			path := filepath.Join(t.TempDir(), "outbox.db")
			o, err := outbox.Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()

			if log {
				// The log is not on its way: a failing log does not
				// fail it.
				failLog.Store(true)
			}
			if err := o.AppendDurable(outboxtest.Record("durable-1")); err != nil {
				t.Fatalf("AppendDurable = %v", err)
			}
			failLog.Store(false)
			// Committed when it returns, with no Sync.
			st := o.Stats()
			if st.Pending != 1 {
				t.Fatalf("after AppendDurable returned: %d pending, want 1 (committed)", st.Pending)
			}
			spilled := st.Spill.Records

			failTree.Store(true)
			failLog.Store(true)
			err = o.AppendDurable(outboxtest.Record("durable-2"))
			if !errors.Is(err, outbox.ErrWrite) {
				t.Fatalf("AppendDurable with the disk failing = %v, want ErrWrite", err)
			}
			if st := o.Stats(); st.Spill.Records != spilled || st.Pending != 1 {
				t.Fatalf("after a failed AppendDurable: %d spilled (was %d), %d pending; want neither to change: the caller keeps the record", st.Spill.Records, spilled, st.Pending)
			}
		})
	}
}
