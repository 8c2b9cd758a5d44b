package outbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CompactOptions configures Compact. A nil *CompactOptions means defaults.
type CompactOptions struct {
	// LockTimeout is how long to wait for the file's lock. Zero means
	// DefaultLockTimeout.
	LockTimeout time.Duration

	// HoldLock is how long the lock on the original file is kept after the
	// compacted copy took its name. A node started during the compaction
	// may already have the original open and be waiting for its lock; held
	// longer than that node's lock timeout, the lock makes it fail and
	// start again on the new file instead of running on the old one. Zero
	// means DefaultLockTimeout plus half a second; negative means no wait.
	HoldLock time.Duration

	// Now names the backup. Nil means time.Now.
	Now func() time.Time
}

// CompactReport says what Compact did.
type CompactReport struct {
	Path       string
	Backup     string // the original file, kept under this name
	SizeBefore int64
	SizeAfter  int64
	Pending    int64
	Retained   int64
	NextSeq    uint64
}

// compactTxBytes bounds one transaction of the copy.
const compactTxBytes = 64 << 20

// Compact rewrites the outbox file at path without its free pages.
//
// It locks the file exclusively (ErrLocked while a node runs on it) and
// checks it first: a damaged file is refused with ErrCorrupt, since a copy
// would carry the damage on; salvage it instead. The copy, every record
// with its sequence, state and times and the counters with next_seq, is
// written next to the file, fsynced and verified. Then the original is
// linked (or, where links fail, copied) to <path>.pre-compact-<time>, the
// directory fsynced, and the copy renamed over path and the directory
// fsynced again: at every moment path names a complete outbox, the old or
// the new one. The backup is kept; removing it is the operator's call.
func Compact(path string, opts *CompactOptions) (*CompactReport, error) {
	var co CompactOptions
	if opts != nil {
		co = *opts
	}
	if co.Now == nil {
		co.Now = time.Now
	}
	if co.HoldLock == 0 {
		co.HoldLock = DefaultLockTimeout + 500*time.Millisecond
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("outbox: compact: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return nil, fmt.Errorf("outbox: compact: %s is not an outbox file", path)
	}
	rep := &CompactReport{Path: path, SizeBefore: fi.Size()}

	// Exclusive, checked, and held until the copy has taken the name.
	bo := (&Options{LockTimeout: co.LockTimeout}).withDefaults()
	src, err := openBolt(path, &bo)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil, fmt.Errorf("outbox: compact refused, the file is damaged: %w", err)
		}
		return nil, err
	}
	locked := true
	defer func() {
		if locked {
			src.Close()
		}
	}()
	var want counts
	err = src.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return fmt.Errorf("%s is not an outbox (no meta bucket)", path)
		}
		if f := getUint64(m, metaFormat); !formatKnown(f) {
			return fmt.Errorf("%s has file format %d; this build reads formats %d to %d", path, f, oldestFileFormat, fileFormat)
		}
		want = counts{
			nextSeq:       getUint64(m, metaNextSeq),
			pendingCount:  int64(getUint64(m, metaPendingCount)),
			pendingBytes:  int64(getUint64(m, metaPendingBytes)),
			retainedCount: int64(getUint64(m, metaRetainedCount)),
			retainedBytes: int64(getUint64(m, metaRetainedBytes)),
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: compact: %w", err)
	}

	tmp := path + ".compact-tmp"
	// A leftover of an interrupted compaction; the lock says none runs now.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("outbox: compact: %w", err)
	}
	if err := compactInto(tmp, src); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("outbox: compact: write %s: %w", tmp, err)
	}
	vr, err := Verify(tmp)
	if err == nil && (vr.NextSeq != want.nextSeq || vr.Pending != want.pendingCount || vr.PendingBytes != want.pendingBytes ||
		vr.Retained != want.retainedCount || vr.RetainedBytes != want.retainedBytes) {
		err = fmt.Errorf("the copy holds %d pending and %d retained records (next_seq %d), the original %d and %d (next_seq %d)",
			vr.Pending, vr.Retained, vr.NextSeq, want.pendingCount, want.retainedCount, want.nextSeq)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("outbox: compact: the copy does not check out, the original is untouched: %w", err)
	}

	rep.Backup = fmt.Sprintf("%s.pre-compact-%s", path, co.Now().UTC().Format("20060102T150405Z"))
	if err := keepOriginal(path, rep.Backup); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("outbox: compact: keep the original as %s: %w", rep.Backup, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("outbox: compact: the original is untouched, a copy is at %s: %w", rep.Backup, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("outbox: compact: the compacted file is in place but %w", err)
	}
	if co.HoldLock > 0 {
		time.Sleep(co.HoldLock)
	}
	locked = false
	if err := src.Close(); err != nil {
		return nil, fmt.Errorf("outbox: compact: close the original: %w", err)
	}

	if fi, err := os.Stat(path); err == nil {
		rep.SizeAfter = fi.Size()
	}
	rep.Pending, rep.Retained, rep.NextSeq = vr.Pending, vr.Retained, vr.NextSeq
	return rep, nil
}

// compactInto copies src, a checked outbox, into a new file at path and
// fsyncs it.
func compactInto(path string, src *bolt.DB) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	dst, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, src, compactTxBytes); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return syncFileAndDir(path)
}

// keepOriginal makes backup a second name of the original file (a copy
// where hard links are not supported) and makes it durable.
func keepOriginal(path, backup string) error {
	if err := os.Link(path, backup); err != nil {
		if errors.Is(err, os.ErrExist) {
			return err
		}
		if err := copyFile(path, backup); err != nil {
			os.Remove(backup)
			return err
		}
	}
	return syncDir(filepath.Dir(backup))
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
