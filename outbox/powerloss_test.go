package outbox

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	path := filepath.Join(dir, "outbox.db")
	trace := &powerTrace{}
	var (
		mu    sync.Mutex
		trees []treeImage
	)
	opts := &Options{Log: true, LogBytes: minLogBytes}
	opts.logTrace = trace
	opts.afterCommit = func() {
		img, err := readImage(path)
		if err != nil {
			t.Error(err)
		}
		img.at = trace.len()
		mu.Lock()
		trees = append(trees, img)
		mu.Unlock()
	}
	o, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	initialLog, err := os.ReadFile(logPath(path))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	first, err := readImage(path) // at 0: no commit since Open yet, or the same state
	if err != nil {
		t.Fatal(err)
	}
	trees = append([]treeImage{first}, trees...)
	mu.Unlock()

	const writers, each = 8, 120
	type answer struct {
		id string
		at int // trace length when Append returned
	}
	answers := make([][]answer, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", g, i)
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
	restarts := o.Stats().LogRestarts
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if restarts < 3 {
		t.Fatalf("the log started over %d times in the run; the test needs a few", restarts)
	}
	events := trace.events

	points := 200
	if testing.Short() {
		points = 40
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OUTBOX_POWERLOSS_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	rng := rand.New(rand.NewPCG(seed, 17))
	t.Logf("trace: %d log writes and fdatasyncs, %d tree commits, the log started over %d times; image seed %d (OUTBOX_POWERLOSS_SEED)",
		len(events), len(trees)-1, restarts, seed)
	// Crash points: at random, and twice inside each start-over of the
	// log (its header and first frame written, not yet synced).
	var crashes []int
	for range points {
		crashes = append(crashes, 1+rng.IntN(len(events)))
	}
	for i := 1; i < len(events); i++ {
		if h := events[i-1]; h.data != nil && h.off < logDataStart && events[i].data != nil {
			crashes = append(crashes, i+1, i+1)
		}
	}
	replayedAny, tornAny := 0, 0
	for p, c := range crashes {
		tree := trees[0]
		for _, ti := range trees {
			if ti.at <= c {
				tree = ti
			}
		}
		img, torn := logImage(initialLog, events, c, rng)
		if torn > 0 {
			tornAny++
		}
		cdir := filepath.Join(dir, fmt.Sprintf("crash%d", p))
		if err := os.Mkdir(cdir, 0o700); err != nil {
			t.Fatal(err)
		}
		cpath := filepath.Join(cdir, "outbox.db")
		tree.write(t, cpath)
		if err := os.WriteFile(logPath(cpath), img, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(cpath, &Options{Log: true, LogBytes: minLogBytes})
		if err != nil {
			t.Fatalf("crash at trace position %d of %d (tree as of position %d, %d sectors torn): Open = %v", c, len(events), tree.at, torn, err)
		}
		if r.Stats().LogReplayed > 0 {
			replayedAny++
		}
		seen := map[string]int{}
		if err := r.Scan(nil, func(rec *Record) error { seen[rec.MessageID]++; return nil }); err != nil {
			t.Fatal(err)
		}
		r.Close()
		for _, as := range answers {
			for _, a := range as {
				if a.at <= c && seen[a.id] != 1 {
					t.Fatalf("crash at trace position %d (tree as of %d, %d sectors torn): %s, answered at %d, is in the file %d times, want once",
						c, tree.at, torn, a.id, a.at, seen[a.id])
				}
			}
		}
		for id, n := range seen {
			if n > 1 {
				t.Fatalf("crash at trace position %d: %s is in the file %d times", c, id, n)
			}
		}
		os.RemoveAll(cdir)
	}
	t.Logf("%d crash images (%d inside a start-over of the log): %d with torn writes, %d with records moved from the log by Open",
		len(crashes), len(crashes)-points, tornAny, replayedAny)
	if replayedAny == 0 || tornAny == 0 {
		t.Fatal("no image had records in the log only, or none had a torn write: the test proved nothing about them")
	}
}
