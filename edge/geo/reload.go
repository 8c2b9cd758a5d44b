package geo

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Reload checks the file and, if it changed since it was loaded (another
// inode, size or modification time), loads it and swaps it in atomically:
// Lookups already running finish on the old version, later ones see the new.
// It reports whether a new version now serves.
//
// A new version that cannot be loaded is refused with an error naming the
// file and the reason; the old version keeps serving. The refusal is counted
// in Stats and logged once: while the file stays the same, later calls
// return the same error without reading the file again. A nil DB has nothing
// to reload and returns (false, nil); after Close Reload returns ErrClosed.
// Reload is safe for concurrent use; calls are serialized.
func (db *DB) Reload() (changed bool, err error) {
	if db == nil {
		return false, nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return false, fmt.Errorf("geo: reload %q: %w", db.path, ErrClosed)
	}
	fi, err := os.Stat(db.path)
	if err != nil {
		msg := err.Error()
		if db.failStat == msg {
			return false, db.failStatErr
		}
		err = fmt.Errorf("geo: reload %q: %w", db.path, err)
		db.refuse(err)
		db.failStat, db.failStatErr = msg, err
		return false, err
	}
	db.failStat, db.failStatErr = "", nil
	if cur := db.cur.Load(); cur != nil && cur.info.same(fi) {
		return false, nil
	}
	if db.failInfo.same(fi) {
		return false, db.failErr
	}
	f, err := loadFile(db.path, &db.opts)
	if err != nil {
		db.refuse(err)
		// A file caught mid-write is retried on the next call, when it has
		// (we hope) stopped changing; any other refusal sticks to the
		// version that caused it.
		if !isChanging(err) {
			db.failInfo, db.failErr = newFileInfo(fi), err
		}
		return false, err
	}
	db.failInfo, db.failErr = fileInfo{}, nil
	db.cur.Store(f)
	db.reloads++
	db.logLoaded("geo: database reloaded", f)
	return true, nil
}

// refuse records a failed reload. db.mu is held.
func (db *DB) refuse(err error) {
	db.reloadErr++
	db.lastErr = err
	db.lastErrAt = db.opts.Now()
	db.opts.Logger.Error("geo: reload refused; the current database keeps serving",
		"path", db.path, "err", err)
}

// poll calls Reload every interval until Close. Reload logs its own
// failures.
func (db *DB) poll(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
			_, _ = db.Reload()
		}
	}
}

func isChanging(err error) bool { return errors.Is(err, errChanging) }
