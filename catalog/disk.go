package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// The store's directory holds a lock file (flocked while a process has the
// store open) and two data files:
//
//	snapshot  every entry and seed state at the last compaction:
//	          "CECATS2\n", the digest's sum (32 bytes), uvarint count,
//	          entries in bytewise code order (the store reads them where
//	          they are: base.go), uvarint count, seeds, CRC-32C of everything before
//	          it (4 bytes, big-endian). "CECATS1\n" files have no sum: it
//	          is computed as they load.
//	log       changes since, appended and fsynced before they are answered:
//	          records of [u32 length][u32 CRC-32C][payload], payload a kind
//	          byte (1 entries, 2 a seed state) and its data
//
// An entry is its code, HLC (8 bytes), node and link (uvarint length + 1,
// 0 for a tombstone); strings are uvarint-length-prefixed. Appends are
// one at a time, each fsynced before the next, so a crash can tear only
// the last one: whatever a power loss left of it (a header of zeros, some
// sectors of it and zeros, a file size ahead of its data) is cut off. A
// bad record followed by a valid one is damage, not a torn append (the
// one after it was answered), and refuses to open, as does a bad snapshot.
const (
	snapshotFile    = "snapshot"
	logFile         = "log"
	snapshotMagic   = "CECATS2\n"
	snapshotMagicV1 = "CECATS1\n"

	recEntries = 1
	recSeed    = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned by Open when the store's files are damaged other
// than by a torn last append.
var ErrCorrupt = errors.New("catalog: store corrupt")

// ErrLocked is returned by Open when another process has the store open.
var ErrLocked = errors.New("catalog: store locked by another process (is another clickedge using this data_dir?)")

type disk struct {
	dir      string
	lock     *os.File // flocked while the store is open: one process per store
	log      *os.File
	logSize  int64
	snapSize int64
	noSync   bool
	compact  int64
	buf      []byte
}

func openDisk(dir string, s *Store) (*disk, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("catalog: store: %w", err)
	}
	d := &disk{dir: dir, noSync: s.opts.NoSync, compact: s.opts.CompactBytes}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("catalog: store: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %s (%v)", ErrLocked, dir, err)
	}
	d.lock = lock
	ok := false
	defer func() {
		if !ok {
			lock.Close() // releases the lock
		}
	}()
	data, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("catalog: store: %w", err)
	default:
		if err := loadSnapshot(data, s); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Join(dir, snapshotFile), err)
		}
		d.snapSize = int64(len(data))
	}
	lp := filepath.Join(dir, logFile)
	data, err = os.ReadFile(lp)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("catalog: store: %w", err)
	}
	good, err := replayLog(data, s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, lp, err)
	}
	d.log, err = os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("catalog: store: %w", err)
	}
	if good < int64(len(data)) {
		s.log.Warn("catalog: cut a torn record off the end of the change log", "file", lp, "bytes", int64(len(data))-good)
		if err := d.log.Truncate(good); err != nil {
			d.log.Close()
			return nil, fmt.Errorf("catalog: store: %w", err)
		}
	}
	if _, err := d.log.Seek(good, io.SeekStart); err != nil {
		d.log.Close()
		return nil, fmt.Errorf("catalog: store: %w", err)
	}
	d.logSize = good
	if err := syncDir(dir); err != nil && !d.noSync {
		d.log.Close()
		return nil, err
	}
	ok = true
	return d, nil
}

func (d *disk) close() error {
	err := d.log.Close()
	d.lock.Close()
	return err
}

func (d *disk) needsCompaction() bool {
	return d.logSize > d.compact || (d.logSize > 1<<20 && d.logSize > d.snapSize)
}

// append writes one record of entries and fsyncs it.
func (d *disk) append(es []Entry) error {
	p := append(d.buf[:0], make([]byte, 8)...)
	p = append(p, recEntries)
	p = binary.AppendUvarint(p, uint64(len(es)))
	for i := range es {
		p = appendEntry(p, es[i].Code, es[i].HLC, es[i].Node, es[i].Link)
	}
	return d.write(p)
}

// appendSeed writes the codes a seed file's load had.
func (d *disk) appendSeed(name string, codes map[string]struct{}) error {
	p := append(d.buf[:0], make([]byte, 8)...)
	p = append(p, recSeed)
	p = appendSeedState(p, name, codes)
	return d.write(p)
}

func (d *disk) write(p []byte) error {
	binary.BigEndian.PutUint32(p[0:], uint32(len(p)-8))
	binary.BigEndian.PutUint32(p[4:], crc32.Checksum(p[8:], castagnoli))
	d.buf = p[:0]
	if _, err := d.log.Write(p); err != nil {
		// A partial write is a torn record: cut it so the next append
		// does not follow garbage.
		_ = d.log.Truncate(d.logSize)
		_, _ = d.log.Seek(d.logSize, io.SeekStart)
		return fmt.Errorf("catalog: store: append: %w", err)
	}
	if !d.noSync {
		if err := d.log.Sync(); err != nil {
			return fmt.Errorf("catalog: store: fsync: %w", err)
		}
	}
	d.logSize += int64(len(p))
	return nil
}

func appendString(p []byte, s string) []byte {
	return append(binary.AppendUvarint(p, uint64(len(s))), s...)
}

func appendEntry(p []byte, code string, hlc uint64, node string, link []byte) []byte {
	p = appendString(p, code)
	p = binary.BigEndian.AppendUint64(p, hlc)
	p = appendString(p, node)
	if link == nil {
		return append(p, 0)
	}
	p = binary.AppendUvarint(p, uint64(len(link))+1)
	return append(p, link...)
}

func appendSeedState(p []byte, name string, codes map[string]struct{}) []byte {
	p = appendString(p, name)
	p = binary.AppendUvarint(p, uint64(len(codes)))
	for c := range codes {
		p = appendString(p, c)
	}
	return p
}

// reader decodes the formats above. Codes and links point into its data
// (read from a file, never written again), and node ids are interned: a
// big store loads without an allocation per entry, and the GC has few
// objects to mark.
type reader struct {
	b     []byte
	err   error
	nodes map[string]string
}

// view returns n bytes of the data as a string, without a copy.
func (r *reader) view(n uint64) string {
	b := r.bytes(n)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes(r.uvarint())) }

func (r *reader) u64() uint64 {
	b := r.bytes(8)
	if r.err != nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (r *reader) entry() (e Entry) {
	e.Code = r.view(r.uvarint())
	e.HLC = r.u64()
	node := r.bytes(r.uvarint())
	if e.Node = r.nodes[string(node)]; e.Node == "" && r.err == nil {
		if r.nodes == nil {
			r.nodes = make(map[string]string)
		}
		e.Node = string(node)
		r.nodes[e.Node] = e.Node
	}
	if n := r.uvarint(); n > 0 {
		e.Link = r.bytes(n - 1)
	} else {
		e.Deleted = true
	}
	return e
}

func (r *reader) seed(seeds map[string]map[string]struct{}) {
	name := r.string()
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errors.New("bad seed state")
		return
	}
	codes := make(map[string]struct{}, n)
	for range n {
		codes[r.string()] = struct{}{}
	}
	if r.err == nil {
		seeds[name] = codes
	}
}

// load applies e if it is newer than the store's entry (the log may repeat
// what a snapshot holds, after a crash during compaction).
func (s *Store) load(e *Entry) {
	if old, ok := s.get(e.Code); ok && compareVersions(e.HLC, e.Node, e.Link, old.hlc, old.node, old.link) <= 0 {
		return
	}
	s.put(e)
}

// snapshot is a snapshot file read: its entries as a base, the digest's
// sum over them, and the seed states.
type snapshot struct {
	base  *base
	sum   [4]uint64
	seeds map[string]map[string]struct{}
}

func loadSnapshot(data []byte, s *Store) error {
	snap, err := readSnapshot(data, s.log)
	if err != nil {
		return err
	}
	s.base, s.sum, s.seeds = snap.base, snap.sum, snap.seeds
	s.live, s.tombs = snap.base.live, snap.base.tombs
	s.clock = max(s.clock, snap.base.clock)
	return nil
}

// readSnapshot checks a snapshot and indexes its entries where they are:
// the base keeps data.
func readSnapshot(data []byte, log *slog.Logger) (*snapshot, error) {
	if len(data) < len(snapshotMagic)+4 {
		return nil, errors.New("not a catalog snapshot")
	}
	magic := string(data[:len(snapshotMagic)])
	if magic != snapshotMagic && magic != snapshotMagicV1 {
		return nil, errors.New("not a catalog snapshot")
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(data[len(data)-4:]) {
		return nil, errors.New("checksum mismatch")
	}
	r := &reader{b: body[len(snapshotMagic):]}
	// The digest's sum is kept, not recomputed: a hash per entry is a tenth
	// of a big store's open, and the CRC covers the sum as it does the
	// entries.
	snap := &snapshot{seeds: make(map[string]map[string]struct{})}
	kept := magic == snapshotMagic
	if kept {
		b := r.bytes(32)
		if r.err != nil {
			return nil, r.err
		}
		for i := range snap.sum {
			snap.sum[i] = binary.BigEndian.Uint64(b[i*8:])
		}
	}
	n := r.uvarint()
	if r.err != nil {
		return nil, r.err
	}
	b, end, err := newBase(body, len(body)-len(r.b), n, log)
	if err != nil {
		return nil, err
	}
	snap.base = b
	if !kept {
		snap.sum = b.digest()
	}
	r.b = body[end:]
	for range r.uvarint() {
		r.seed(snap.seeds)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, errors.New("trailing data")
	}
	return snap, nil
}

// replayLog applies the log's records and returns the length of its intact
// prefix. Only the last record may be torn: a bad record with a valid one
// anywhere after it is damage.
func replayLog(data []byte, s *Store) (int64, error) {
	off := 0
	for off < len(data) {
		end, ok := recordAt(data, off)
		if !ok {
			if at := validRecordAfter(data, off+1); at >= 0 {
				return 0, fmt.Errorf("bad record at offset %d, and a valid one follows at offset %d", off, at)
			}
			return int64(off), nil // the last append, torn
		}
		r := &reader{b: data[off+9 : end]}
		switch data[off+8] {
		case recEntries:
			for range r.uvarint() {
				e := r.entry()
				if r.err != nil {
					break
				}
				s.load(&e)
			}
		case recSeed:
			r.seed(s.seeds)
		default:
			return 0, fmt.Errorf("unknown record kind %d at offset %d", data[off+8], off)
		}
		if r.err != nil {
			return 0, fmt.Errorf("record at offset %d: %v", off, r.err)
		}
		off = end
	}
	return int64(off), nil
}

// recordAt reads the record at off: where it ends, and whether it is whole
// with a matching CRC.
func recordAt(data []byte, off int) (end int, ok bool) {
	if len(data)-off < 8 {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(data[off:]))
	end = off + 8 + n
	if n < 1 || end > len(data) {
		return 0, false
	}
	return end, crc32.Checksum(data[off+8:end], castagnoli) == binary.BigEndian.Uint32(data[off+4:])
}

// validRecordAfter returns the first offset at or after from where a whole
// record with a matching CRC starts, or -1. After a torn append there is
// none: the torn append was the last thing written.
func validRecordAfter(data []byte, from int) int {
	for at := from; at+8 < len(data); at++ {
		if _, ok := recordAt(data, at); ok {
			return at
		}
	}
	return -1
}

// image returns a snapshot of every entry, less tombstones past the TTL,
// and seed state, in the current format: what compact writes and rebase
// makes the store's base (and its counts and digest). s.mu is held.
func (s *Store) image() []byte {
	horizon := uint64(s.opts.Now().Add(-s.opts.TombstoneTTL).UnixMilli()) << 16
	var drop map[string]bool
	sum, n := s.sum, s.live+s.tombs
	s.each("", func(code string, e entry) bool {
		if e.link == nil && e.hlc < horizon {
			if drop == nil {
				drop = make(map[string]bool)
			}
			drop[code] = true
			h := entryHash(code, e.hlc, e.node)
			for i := range sum {
				sum[i] -= h[i]
			}
			n--
		}
		return true
	})
	size := len(s.base.data) + 64
	for code, e := range s.over {
		size += len(code) + len(e.node) + len(e.link) + 3*binary.MaxVarintLen64 + 8
	}
	p := make([]byte, 0, size)
	p = append(p, snapshotMagic...)
	for _, v := range sum {
		p = binary.BigEndian.AppendUint64(p, v)
	}
	p = binary.AppendUvarint(p, uint64(n))
	s.each("", func(code string, e entry) bool {
		if !drop[code] {
			p = appendEntry(p, code, e.hlc, e.node, e.link)
		}
		return true
	})
	p = binary.AppendUvarint(p, uint64(len(s.seeds)))
	for name, cs := range s.seeds {
		p = appendSeedState(p, name, cs)
	}
	return binary.BigEndian.AppendUint32(p, crc32.Checksum(p, castagnoli))
}

// compact writes every entry (less tombstones past the TTL) and seed state
// to a new snapshot, empties the log and makes the snapshot the store's
// base. s.mu is held.
func (s *Store) compact() error {
	d := s.disk
	data := s.image()
	tmp := filepath.Join(d.dir, snapshotFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("catalog: compact: %w", err)
	}
	defer os.Remove(tmp) // after a successful rename: nothing there
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("catalog: compact: %w", err)
	}
	if !d.noSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("catalog: compact: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("catalog: compact: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, snapshotFile)); err != nil {
		return fmt.Errorf("catalog: compact: %w", err)
	}
	if !d.noSync {
		if err := syncDir(d.dir); err != nil {
			return err
		}
	}
	// The snapshot holds everything the log did: empty it. A crash before
	// this replays the log over the snapshot, which changes nothing.
	if err := d.log.Truncate(0); err != nil {
		return fmt.Errorf("catalog: compact: %w", err)
	}
	if _, err := d.log.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("catalog: compact: %w", err)
	}
	if !d.noSync {
		if err := d.log.Sync(); err != nil {
			return fmt.Errorf("catalog: compact: %w", err)
		}
	}
	d.snapSize, d.logSize = int64(len(data)), 0
	s.log.Info("catalog: compacted the change log into the snapshot", "entries", s.live+s.tombs, "bytes", d.snapSize)
	return s.rebase(data)
}

// Compact folds the change log into the snapshot now (and drops
// tombstones past the TTL). A store in memory only just drops them.
func (s *Store) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.disk == nil {
		return s.rebase(s.image())
	}
	return s.compact()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("catalog: store: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("catalog: store: fsync %s: %w", dir, err)
	}
	return nil
}
