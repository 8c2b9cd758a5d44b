package outbox

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A power loss, unlike kill -9, also loses what the page cache held: every
// write to the log since its last fdatasync may reach the disk in part, any
// 512-byte sector of it or none. TestLogPowerLoss builds such disk images
// from a real run's trace of the log's writes and fdatasyncs, and pairs each
// with the tree as of its last commit before that moment.
const sectorSize = 512

// powerTrace records the log's writes and fdatasyncs (logTracer).
type powerTrace struct {
	mu     sync.Mutex
	events []traceEvent
}

type traceEvent struct {
	off  int64
	data []byte // nil for an fdatasync
}

func (t *powerTrace) wrote(off int64, p []byte) {
	t.mu.Lock()
	t.events = append(t.events, traceEvent{off: off, data: append([]byte(nil), p...)})
	t.mu.Unlock()
}

func (t *powerTrace) synced() {
	t.mu.Lock()
	t.events = append(t.events, traceEvent{})
	t.mu.Unlock()
}

func (t *powerTrace) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.events)
}

// treeImage is the outbox file as of a commit: its data extents (the file
// is sparse: bbolt grows it by truncation) and its size. at is the length
// of the log's trace then: the commit is durable for every crash at or
// after it.
type treeImage struct {
	at      int
	size    int64
	extents []extent
}

type extent struct {
	off  int64
	data []byte
}

// readImage copies the file at path, extent by extent where the file
// system tells them apart (SEEK_DATA, SEEK_HOLE), else whole.
func readImage(path string) (treeImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return treeImage{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return treeImage{}, err
	}
	img := treeImage{size: st.Size()}
	const seekData, seekHole = 3, 4
	for off := int64(0); off < img.size; {
		d, err := syscall.Seek(int(f.Fd()), off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // no data after off
		}
		h, herr := syscall.Seek(int(f.Fd()), d, seekHole)
		if err != nil || herr != nil {
			d, h = off, img.size // no hole support: all of it
		}
		b := make([]byte, h-d)
		if _, err := f.ReadAt(b, d); err != nil {
			return treeImage{}, err
		}
		img.extents = append(img.extents, extent{off: d, data: b})
		off = h
	}
	return img, nil
}

func (img treeImage) write(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, e := range img.extents {
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(img.size); err != nil {
		t.Fatal(err)
	}
}

// logImage is the log as a power loss at trace position c leaves it: the
// log as Open left it, every write before the last fdatasync before c, and
// of the writes after that fdatasync a random choice of sectors.
func logImage(initial []byte, events []traceEvent, c int, rng *rand.Rand) (img []byte, torn int) {
	img = append([]byte(nil), initial...)
	synced := 0 // events before it are durable
	for i := range c {
		if events[i].data == nil {
			synced = i
		}
	}
	for i, e := range events[:c] {
		if e.data == nil {
			continue
		}
		if i < synced {
			copy(img[e.off:], e.data)
			continue
		}
		// Not synced: each sector of the write reached the disk or not.
		for s := e.off &^ (sectorSize - 1); s < e.off+int64(len(e.data)); s += sectorSize {
			lo, hi := max(s, e.off), min(s+sectorSize, e.off+int64(len(e.data)))
			if rng.IntN(2) == 0 {
				copy(img[lo:], e.data[lo-e.off:hi-e.off])
			} else {
				torn++
			}
		}
	}
	return img, torn
}

// powerRun is a traced run: the outbox's files as Open left them (the log,
// and the tree as the first of trees), the log's writes and fdatasyncs,
// the tree after each commit, and the appends answered with the trace's
// length at the answer.
type powerRun struct {
	initialLog []byte
	trees      []treeImage
	events     []traceEvent
	answers    []answer
	restarts   uint64 // of the log in the run (Stats.LogRestarts)
}

type answer struct {
	id string
	at int
}

// tracedRun opens the outbox at path (its files may be a crash image) with
// a small log, appends each records from 8 goroutines with ids prefixed by
// prefix, and closes it, tracing all of it.
func tracedRun(t *testing.T, path, prefix string, each int) *powerRun {
	t.Helper()
	trace := &powerTrace{}
	run := &powerRun{}
	var mu sync.Mutex
	opts := &Options{Log: true, LogBytes: minLogBytes}
	opts.logTrace = trace
	opts.afterCommit = func() {
		img, err := readImage(path)
		if err != nil {
			t.Error(err)
		}
		img.at = trace.len()
		mu.Lock()
		run.trees = append(run.trees, img)
		mu.Unlock()
	}
	o, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	if run.initialLog, err = os.ReadFile(logPath(path)); err != nil {
		t.Fatal(err)
	}
	first, err := readImage(path) // as Open left it: no commit since, or the same state
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	run.trees = append([]treeImage{first}, run.trees...)
	mu.Unlock()

	const writers = 8
	answers := make([][]answer, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("%s-w%d-%d", prefix, g, i)
				r := &Record{Exchange: "clicks", RoutingKey: "click.test", MessageID: id, Body: []byte(`{"v":1}`)}
				if err := o.Append(r); err != nil {
					t.Errorf("Append(%s) = %v", id, err)
					return
				}
				answers[g] = append(answers[g], answer{id: id, at: trace.len()})
				if i%16 == 0 {
					time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	run.restarts = o.Stats().LogRestarts
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	run.events = trace.events
	for _, as := range answers {
		run.answers = append(run.answers, as...)
	}
	return run
}

// crashPoints returns n trace positions at random and, for each start-over
// of the log in the run (its header and first frame written, not yet
// synced), two inside it.
func (run *powerRun) crashPoints(n int, rng *rand.Rand) []int {
	var cs []int
	for range n {
		cs = append(cs, 1+rng.IntN(len(run.events)))
	}
	for i := 1; i < len(run.events); i++ {
		if h := run.events[i-1]; h.data != nil && h.off < logDataStart && run.events[i].data != nil {
			cs = append(cs, i+1, i+1)
		}
	}
	return cs
}

// image writes the disk a power loss at trace position c leaves into a new
// directory under dir, and returns the outbox's path there and the sectors
// of unsynced writes lost.
func (run *powerRun) image(t *testing.T, dir string, c int, rng *rand.Rand) (string, int) {
	t.Helper()
	tree := run.trees[0]
	for _, ti := range run.trees {
		if ti.at <= c {
			tree = ti
		}
	}
	img, torn := logImage(run.initialLog, run.events, c, rng)
	cdir, err := os.MkdirTemp(dir, "crash")
	if err != nil {
		t.Fatal(err)
	}
	cpath := filepath.Join(cdir, "outbox.db")
	tree.write(t, cpath)
	if err := os.WriteFile(logPath(cpath), img, 0o600); err != nil {
		t.Fatal(err)
	}
	return cpath, torn
}

// answeredBy returns the records answered at or before trace position c.
func (run *powerRun) answeredBy(c int) []string {
	var ids []string
	for _, a := range run.answers {
		if a.at <= c {
			ids = append(ids, a.id)
		}
	}
	return ids
}

// checkImage opens the crash image at path and checks that it holds every
// record in want once, no record twice, and counts that agree with it
// (nothing is acknowledged in these runs: every record is pending); and
// that the file verifies once closed. It returns the records Open moved
// from the log.
func checkImage(t *testing.T, path, what string, want []string) int {
	t.Helper()
	r, err := Open(path, &Options{Log: true, LogBytes: minLogBytes})
	if err != nil {
		t.Fatalf("%s: Open = %v", what, err)
	}
	defer func() {
		r.Close()
		if rep, err := Verify(path); err != nil || len(rep.Problems) > 0 {
			t.Fatalf("%s: Verify after Open = %v, %v", what, err, rep.Problems)
		}
	}()
	seen := map[string]int{}
	if err := r.Scan(nil, func(rec *Record) error { seen[rec.MessageID]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Fatalf("%s: %s, answered before the crash, is in the file %d times, want once", what, id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Fatalf("%s: %s is in the file %d times", what, id, n)
		}
	}
	st := r.Stats()
	if st.Pending != int64(len(seen)) {
		t.Fatalf("%s: %d records pending by the file's count, %d in it", what, st.Pending, len(seen))
	}
	return st.LogReplayed
}

func powerSeed(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OUTBOX_POWERLOSS_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("image seed %d (OUTBOX_POWERLOSS_SEED repeats the images)", seed)
	return rand.New(rand.NewPCG(seed, 17))
}

// Issue 17, the log under power loss. A run appends from 8 goroutines to
// an outbox with a small log (it starts over every few frames) while the
// writer moves logged records into the tree; every write to the log, every
// fdatasync and every commit of the tree is recorded. Then, for crash
// points along the run, a disk image is built: the log with its unsynced
// writes torn sector by sector at random, the tree as of its last commit
// before that point. Open must accept every image (no ErrCorrupt: a node
// that will not start loses service) and hold every record answered
// before the crash point, once.
func TestLogPowerLoss(t *testing.T) {
	dir := t.TempDir()
	run := tracedRun(t, filepath.Join(dir, "outbox.db"), "r1", 120)
	if run.restarts < 3 {
		t.Fatalf("the log started over %d times in the run; the test needs a few", run.restarts)
	}
	points := 200
	if testing.Short() {
		points = 40
	}
	rng := powerSeed(t)
	crashes := run.crashPoints(points, rng)
	t.Logf("trace: %d log writes and fdatasyncs, %d tree commits, the log started over %d times",
		len(run.events), len(run.trees)-1, run.restarts)
	replayedAny, tornAny := 0, 0
	for _, c := range crashes {
		path, torn := run.image(t, dir, c, rng)
		if torn > 0 {
			tornAny++
		}
		what := fmt.Sprintf("crash at trace position %d of %d, %d sectors torn", c, len(run.events), torn)
		if checkImage(t, path, what, run.answeredBy(c)) > 0 {
			replayedAny++
		}
		os.RemoveAll(filepath.Dir(path))
	}
	t.Logf("%d crash images (%d inside a start-over of the log): %d with torn writes, %d with records moved from the log by Open",
		len(crashes), len(crashes)-points, tornAny, replayedAny)
	if replayedAny == 0 || tornAny == 0 {
		t.Fatal("no image had records in the log only, or none had a torn write: the test proved nothing about them")
	}
}

// The same, twice: a node restarted on a crash image works on, and loses
// power again. The second run starts from an image of the first taken
// inside a start-over of the log, where the frames of the old generation
// past the new one may be valid again; frames the restarted node writes
// must never be read together with them. Every record answered before
// either crash is in the second image's file, once.
func TestLogPowerLossTwice(t *testing.T) {
	dir := t.TempDir()
	run := tracedRun(t, filepath.Join(dir, "outbox.db"), "r1", 80)
	rng := powerSeed(t)
	firsts := run.crashPoints(0, rng) // inside start-overs only
	if len(firsts) == 0 {
		t.Fatal("the first run never started the log over")
	}
	if testing.Short() {
		firsts = firsts[:min(len(firsts), 4)]
	}
	images := 0
	for _, c1 := range firsts {
		path, torn1 := run.image(t, dir, c1, rng)
		before := run.answeredBy(c1)
		// The node restarts on the image (Open moves what the log holds)
		// and works on.
		run2 := tracedRun(t, path, "r2", 40)
		for range 8 {
			c2 := 1 + rng.IntN(len(run2.events))
			path2, torn2 := run2.image(t, dir, c2, rng)
			what := fmt.Sprintf("crash at %d of the first run (%d sectors torn), then at %d of %d of the second (%d torn)",
				c1, torn1, c2, len(run2.events), torn2)
			checkImage(t, path2, what, append(slices.Clone(before), run2.answeredBy(c2)...))
			os.RemoveAll(filepath.Dir(path2))
			images++
		}
		os.RemoveAll(filepath.Dir(path))
	}
	t.Logf("%d second-crash images after %d first crashes inside a start-over of the log", images, len(firsts))
}
