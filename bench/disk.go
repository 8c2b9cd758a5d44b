package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// DiskRun is the disk's own fsync latency, measured in the same run as the
// edge so that the outbox's figures can be read against it: n writes of
// 4 KiB at increasing offsets of one file, each followed by fdatasync, as
// a bbolt commit writes and syncs its pages. The file is in the directory
// that holds the edges' outboxes.
type DiskRun struct {
	At    time.Time   `json:"at"`
	Phase string      `json:"phase"` // the phase it ran before
	Rep   int         `json:"rep"`
	N     int         `json:"n"`
	Sync  Percentiles `json:"fdatasync"`
}

// diskSyncs is how many fdatasyncs one probe makes: about 0.5 s here.
const diskSyncs = 1500

// probeDisk measures n write+fdatasync pairs in dir.
func probeDisk(dir string, n int) (Percentiles, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return Percentiles{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	h := newHist()
	for i := range n {
		// Wrap within 4 MiB, as a file whose pages are rewritten.
		off := int64(i%1024) * 4096
		start := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return Percentiles{}, err
		}
		if err := fdatasync(f); err != nil {
			return Percentiles{}, fmt.Errorf("fdatasync %s: %w", filepath.Base(f.Name()), err)
		}
		record(h, time.Since(start))
	}
	return percentiles(h), nil
}

// diskProbe runs one probe before a phase's repetition and keeps it.
func (b *bencher) diskProbe(phase string, rep int) {
	p, err := probeDisk(b.tmp, diskSyncs)
	if err != nil {
		b.problem("disk probe: %v", err)
		return
	}
	b.res.Disk = append(b.res.Disk, DiskRun{At: time.Now(), Phase: phase, Rep: rep, N: diskSyncs, Sync: p})
	b.logf("  disk: 4 KiB write + fdatasync p50 %.3f p99 %.3f p99.9 %.3f ms", p.P50/1e3, p.P99/1e3, p.P999/1e3)
}

// diskSummary is the median of the probes' p50 and p99, in µs.
func (r *Results) diskSummary() (p50, p99 Stat, ok bool) {
	var a, b []float64
	for _, d := range r.Disk {
		a = append(a, d.Sync.P50)
		b = append(b, d.Sync.P99)
	}
	if len(a) == 0 {
		return Stat{}, Stat{}, false
	}
	return statOf(a), statOf(b), true
}

func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
