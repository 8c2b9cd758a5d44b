package outbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// heldMoves opens an outbox with the log whose moves into the tree wait
// while hold is set: answered records stay in the log only.
func heldMoves(t *testing.T, logBytes int64) (*Outbox, *atomic.Bool, chan struct{}) {
	t.Helper()
	return heldMovesAt(t, filepath.Join(t.TempDir(), "outbox.db"), logBytes)
}

// heldMovesAt is heldMoves for the outbox at path. Closing release lets
// the moves go on for good (the cleanup does it when the test has not).
func heldMovesAt(t *testing.T, path string, logBytes int64) (*Outbox, *atomic.Bool, chan struct{}) {
	t.Helper()
	var hold atomic.Bool
	release := make(chan struct{})
	opts := &Options{Log: true, LogBytes: logBytes}
	opts.beforeCommit = func() error {
		if hold.Load() {
			<-release
		}
		return nil
	}
	o, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hold.Store(false)
		select {
		case <-release:
		default:
			close(release)
		}
		o.Close()
	})
	hold.Store(true)
	return o, &hold, release
}

// crashCopy copies the outbox file and its log as a crash would leave
// them: what the process wrote is in the files.
func crashCopy(t *testing.T, o *Outbox) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "outbox.db")
	for _, suffix := range []string{"", logSuffix} {
		b, err := os.ReadFile(o.path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func appendIDs(t *testing.T, o *Outbox, ids ...string) {
	t.Helper()
	for _, id := range ids {
		r := &Record{Exchange: "clicks", RoutingKey: "click.test", MessageID: id, Body: []byte(`{"v":1}`)}
		if err := o.Append(r); err != nil {
			t.Fatalf("Append(%s) = %v", id, err)
		}
	}
}

func pendingIDs(t *testing.T, path string) []string {
	t.Helper()
	o, err := Open(path, &Options{Log: true})
	if err != nil {
		t.Fatalf("Open after the crash = %v", err)
	}
	defer o.Close()
	recs, err := o.ReadPending(nil, 0, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.MessageID
	}
	return ids
}

// Issue 17: records answered from the log and not yet moved into the tree
// are in the file after a crash; a frame torn by the crash (its appenders
// were never answered) is ignored; a damaged frame with valid frames after
// it is not a torn tail and makes Open refuse the file.
func TestLogReplayTornTailAndDamage(t *testing.T) {
	o, _, _ := heldMoves(t, 1<<20)
	appendIDs(t, o, "a", "b", "c", "d", "e") // one frame each, one page each
	if st := o.Stats(); st.Pending != 0 || st.Moving != 5 || st.Logged != 5 {
		t.Fatalf("pending %d moving %d logged %d, want 0 5 5 while moves wait", st.Pending, st.Moving, st.Logged)
	}

	t.Run("unmoved", func(t *testing.T) {
		path := crashCopy(t, o)
		if got := fmt.Sprint(pendingIDs(t, path)); got != "[a b c d e]" {
			t.Fatalf("after the crash the file holds %s, want [a b c d e]", got)
		}
		// Moved once: a second open finds nothing more to move.
		if got := fmt.Sprint(pendingIDs(t, path)); got != "[a b c d e]" {
			t.Fatalf("after a second open the file holds %s, want [a b c d e]", got)
		}
	})
	t.Run("torn tail", func(t *testing.T) {
		path := crashCopy(t, o)
		damageLog(t, path, logDataStart+4*logPage+frameHeadLen+3) // in e's frame, the last
		if got := fmt.Sprint(pendingIDs(t, path)); got != "[a b c d]" {
			t.Fatalf("after a torn tail the file holds %s, want [a b c d]", got)
		}
	})
	t.Run("damage before the tail", func(t *testing.T) {
		path := crashCopy(t, o)
		damageLog(t, path, logDataStart+1*logPage+frameHeadLen+3) // in b's frame
		_, err := Open(path, &Options{Log: true})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open with a damaged frame before valid ones = %v, want ErrCorrupt", err)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		path := crashCopy(t, o)
		_, err := Open(path, &Options{ReadOnly: true})
		if !errors.Is(err, ErrLogPending) {
			t.Fatalf("read-only Open with records only in the log = %v, want ErrLogPending", err)
		}
		rep, err := InspectLog(path)
		if err != nil || rep == nil || rep.Records != 5 || rep.FirstSeq != 1 || rep.LastSeq != 5 {
			t.Fatalf("InspectLog = %+v, %v; want 5 records, seq 1 to 5", rep, err)
		}
		// Opened for writing without the log (Async mode has none): moved,
		// and the log removed.
		w, err := Open(path, &Options{Durability: Async})
		if err != nil {
			t.Fatal(err)
		}
		if st := w.Stats(); st.Pending != 5 || st.LogReplayed != 5 {
			t.Fatalf("pending %d replayed %d, want 5 5", st.Pending, st.LogReplayed)
		}
		w.Close()
		if _, err := os.Stat(path + logSuffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the log is still there after a move without Options.Log: %v", err)
		}
		r, err := Open(path, &Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("read-only Open after the move = %v", err)
		}
		r.Close()
	})
}

func damageLog(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path+logSuffix, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Issue 17: the log is reused once everything in it is in the tree, under
// a new generation; frames of older generations left on disk are never
// taken for new ones, across reopens, and appends go on when the log is
// full (they wait for the move and the reuse).
func TestLogReuseAcrossGenerations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	var want []string
	for round := range 3 {
		o, err := Open(path, &Options{Log: true, LogBytes: minLogBytes})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 { // one page each: about six times the log
			id := fmt.Sprintf("r%d-%03d", round, i)
			appendIDs(t, o, id)
			want = append(want, id)
		}
		gen := o.wal.gen
		if st := o.Stats(); st.LogRestarts < 2 {
			t.Fatalf("round %d: Stats.LogRestarts = %d after 100 frames in a 16-frame log, want several", round, st.LogRestarts)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if gen < 3 {
			t.Fatalf("round %d: log generation %d after 100 frames in a 16-frame log, want several", round, gen)
		}
	}
	got := pendingIDs(t, path)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the file holds %d records, want %d in order", len(got), len(want))
	}
}

// Issue 17: when the log is full and the tree takes no writes, Append
// fails (the caller spills), rather than wait; after the tree takes
// writes again, appends are answered again.
func TestLogFullWhileTreeFails(t *testing.T) {
	var fail atomic.Bool
	opts := &Options{Log: true, LogBytes: minLogBytes}
	opts.beforeCommit = func() error {
		if fail.Load() {
			return errors.New("injected EIO")
		}
		return nil
	}
	o, err := Open(filepath.Join(t.TempDir(), "outbox.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	fail.Store(true)
	taken := 0
	for ; taken < 100; taken++ {
		r := &Record{Exchange: "clicks", MessageID: fmt.Sprint(taken), Body: []byte("{}")}
		if err = o.Append(r); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrWrite) || taken == 0 || taken > 16 {
		t.Fatalf("after %d appends into a full log = %v, want ErrWrite after at most 16 (the log's pages)", taken, err)
	}
	if o.Stats().LogFull == 0 {
		t.Fatal("Stats.LogFull = 0, want the refusal counted")
	}
	fail.Store(false)
	for i := 0; ; i++ {
		r := &Record{Exchange: "clicks", MessageID: "after", Body: []byte("{}")}
		if err = o.Append(r); err == nil {
			break
		}
		if i > 1000 {
			t.Fatalf("Append still failing after the tree recovered: %v", err)
		}
		<-o.moved // the writer tried again (its back-off) : no sleep
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Pending != int64(taken+1) {
		t.Fatalf("pending %d, want %d", st.Pending, taken+1)
	}
}

// When the log has no room, the logger waits for the writer to move what
// was logged (the answers wait meanwhile), counts the wait, and answers
// once the moves are in.
func TestLogWaitsForRoomAndCountsIt(t *testing.T) {
	release := make(chan struct{})
	var block atomic.Bool
	opts := &Options{Log: true, LogBytes: minLogBytes}
	opts.beforeCommit = func() error {
		if block.Load() {
			<-release
		}
		return nil
	}
	o, err := Open(filepath.Join(t.TempDir(), "outbox.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	block.Store(true)
	done := make(chan error, 1)
	go func() {
		for i := range 40 { // one page each: more than the log's 16
			r := &Record{Exchange: "clicks", MessageID: fmt.Sprint(i), Body: []byte("{}")}
			if err := o.Append(r); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	deadline := time.Now().Add(10 * time.Second)
	for o.Stats().LogWaits == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the log never waited for room with the writer blocked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("40 appends into a 16-page log finished while the writer was blocked: %v", err)
	default:
	}
	block.Store(false)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Pending != 40 || st.LogRestarts == 0 {
		t.Fatalf("pending %d, log restarts %d; want 40 and at least 1", st.Pending, st.LogRestarts)
	}
}

// Issue 17: the offline tools do not ignore records that are only in the
// log: Verify counts them, Salvage copies them into the new outbox.
func TestLogToolsSeeLoggedRecords(t *testing.T) {
	o, _, _ := heldMoves(t, 1<<20)
	appendIDs(t, o, "x", "y", "z")
	path := crashCopy(t, o)
	rep, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Log == nil || rep.LogUnmoved != 3 || rep.Pending != 0 {
		t.Fatalf("Verify: log %+v, %d unmoved, %d pending; want 3 unmoved, 0 pending", rep.Log, rep.LogUnmoved, rep.Pending)
	}
	dst := filepath.Join(t.TempDir(), "outbox.db")
	srep, err := Salvage(path, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if srep.FromLog != 3 || srep.LogDamage != "" {
		t.Fatalf("Salvage: %d from the log (damage %q), want 3", srep.FromLog, srep.LogDamage)
	}
	if got := fmt.Sprint(pendingIDs(t, dst)); got != "[x y z]" {
		t.Fatalf("the salvaged outbox holds %s, want [x y z]", got)
	}
}

// A crash while the log starts over: the new generation's first frame and
// its header slot go out in one fdatasync, and the frame may reach the disk
// without the header. The scan then reads the old generation, which ends at
// that frame, and the old frames past it are valid frames of the current
// generation again. Their records are all in the file (the log starts over
// only once everything is moved), so Open takes them for what they are,
// not for damage, whether the new frame is whole or torn; Verify agrees.
// A frame past the end holding records the file lacks is still damage.
func TestLogStartOverTornHeader(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprintf("torn=%v", torn), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox.db")
			o, err := Open(path, &Options{Log: true, LogBytes: minLogBytes})
			if err != nil {
				t.Fatal(err)
			}
			appendIDs(t, o, "a", "b", "c", "d") // one frame each
			if err := o.Close(); err != nil {   // moved into the file
				t.Fatal(err)
			}
			l, s, err := openWAL(path, minLogBytes)
			if err != nil {
				t.Fatal(err)
			}
			if s.frames != 4 || len(s.after) != 0 {
				t.Fatalf("log of %d frames, %d past the end; want 4 and 0", s.frames, len(s.after))
			}
			slot := make([]byte, logSlotSize)
			if _, err := l.f.ReadAt(slot, headerSlot(l.gen+1)); err != nil {
				t.Fatal(err)
			}
			rec := []byte("a record the crash lost")
			if err := l.write([]*[]byte{&rec}, 5, true); err != nil {
				t.Fatal(err)
			}
			// The header did not reach the disk.
			if _, err := l.f.WriteAt(slot, headerSlot(l.gen)); err != nil {
				t.Fatal(err)
			}
			l.f.Close()
			if torn {
				damageLog(t, path, logDataStart+frameHeadLen+3)
			}
			if rep, err := Verify(path); err != nil || len(rep.Problems) != 0 || rep.LogUnmoved != 0 {
				t.Fatalf("Verify = %+v, %v; want no problem and nothing unmoved", rep, err)
			}
			if got := fmt.Sprint(pendingIDs(t, path)); got != "[a b c d]" {
				t.Fatalf("after the crash the file holds %s, want [a b c d]", got)
			}
			// Appends go on in a new generation: a frame written where
			// the scan ended would make the old frames past it the log's
			// again. A crash while e is in the log only: Open moves e,
			// and nothing else.
			o, hold, release := heldMovesAt(t, path, minLogBytes)
			appendIDs(t, o, "e")
			path2 := crashCopy(t, o)
			hold.Store(false)
			close(release)
			if st := o.Stats(); st.LogRestarts != 1 {
				t.Errorf("the log started over %d times, want 1 (its first frame after the crash)", st.LogRestarts)
			}
			o.Close()
			if got := fmt.Sprint(pendingIDs(t, path2)); got != "[a b c d e]" {
				t.Fatalf("after appends and a crash the file holds %s, want [a b c d e]", got)
			}
			r, err := Open(path2, &Options{Log: true, LogBytes: minLogBytes})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if st := r.Stats(); st.Pending != 5 || st.LogReplayed != 0 {
				t.Fatalf("reopened: pending %d, replayed %d; want 5 and 0", st.Pending, st.LogReplayed)
			}
		})
	}
}

// Within a generation sequences only grow: a frame whose first record is
// not above the last one read is left from before the log started over,
// and ends the scan; check takes it for damage only when its records are
// not in the file.
func TestLogScanEndsAtOlderSequence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	l, _, err := openWAL(path, minLogBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer l.f.Close()
	rec := []byte("r")
	for _, seq := range []uint64{10, 11, 3} {
		if err := l.write([]*[]byte{&rec}, seq, false); err != nil {
			t.Fatal(err)
		}
	}
	s, err := scanLog(l.f)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.records) != 2 || s.records[1].seq != 11 || len(s.after) != 1 || s.after[0].seq != 3 {
		t.Fatalf("scan read %d records (last %+v), %d frames past the end; want 2 (up to seq 11) and the frame of seq 3",
			len(s.records), s.records[len(s.records)-1], len(s.after))
	}
	if err := s.check(12); err != nil {
		t.Errorf("check with the frame's record in the file = %v, want nil", err)
	}
	if err := s.check(3); err == nil {
		t.Error("check with the frame's record not in the file = nil, want damage")
	}
}
