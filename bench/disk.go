package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// DiskRun is the disk's own fsync latency, measured in the same run as the
// edge so that the outbox's figures can be read against it: n writes of
// 4 KiB at increasing offsets of one file, each followed by fdatasync, as
// the log writes its frames and a bbolt commit its pages. The file is in
// the directory that holds the edges' outboxes, and written in full before
// the probe, so that every write measured overwrites data, as in the log
// (zero-filled when created) and in bbolt once its pages are in use: a
// write into a hole or past the end also commits the file system's
// journal. Here that made the probe's p50 318–355 µs against 224 µs for
// overwrites (2026-12-02).
type DiskRun struct {
	At    time.Time   `json:"at"`
	Phase string      `json:"phase"` // the phase it ran before
	Rep   int         `json:"rep"`
	N     int         `json:"n"`
	Sync  Percentiles `json:"fdatasync"`
	// CPU is the CPU time (user and system, of the probing thread) per
	// write+fdatasync, in µs. On a virtual disk an fdatasync can cost the
	// guest CPU, not only time: each frame of the log then takes CPU from
	// the redirects, and more, smaller frames cost more of it.
	CPU float64 `json:"cpu_per_sync_us,omitempty"`
}

// diskSyncs is how many fdatasyncs one probe makes: about 0.5 s here.
const diskSyncs = 1500

// diskProbeBytes is the probe file's size, written before the probe.
const diskProbeBytes = 4 << 20

// probeDisk measures n write+fdatasync pairs in dir: their latency, and
// the CPU time they take per pair, in µs (the probing thread's own).
func probeDisk(dir string, n int) (Percentiles, float64, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return Percentiles{}, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < diskProbeBytes; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero, off); err != nil {
			return Percentiles{}, 0, err
		}
	}
	if err := fdatasync(f); err != nil {
		return Percentiles{}, 0, fmt.Errorf("fdatasync %s: %w", filepath.Base(f.Name()), err)
	}
	h := newHist()
	// One thread for the whole probe, so that its CPU time is the probe's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0, cerr := threadCPU()
	for i := range n {
		// Wrap within the file, as the log does.
		off := int64(i) * 4096 % diskProbeBytes
		start := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return Percentiles{}, 0, err
		}
		if err := fdatasync(f); err != nil {
			return Percentiles{}, 0, fmt.Errorf("fdatasync %s: %w", filepath.Base(f.Name()), err)
		}
		record(h, time.Since(start))
	}
	cpu1, cerr1 := threadCPU()
	if cerr != nil || cerr1 != nil {
		return percentiles(h), 0, nil // no CPU figure: not fatal
	}
	return percentiles(h), float64(cpu1-cpu0) / float64(time.Microsecond) / float64(n), nil
}

// threadCPU is the calling thread's CPU time, user and system.
func threadCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// diskProbe runs one probe before a phase's repetition and keeps it.
func (b *bencher) diskProbe(phase string, rep int) {
	p, cpu, err := probeDisk(b.tmp, diskSyncs)
	if err != nil {
		b.problem("disk probe: %v", err)
		return
	}
	b.res.Disk = append(b.res.Disk, DiskRun{At: time.Now(), Phase: phase, Rep: rep, N: diskSyncs, Sync: p, CPU: cpu})
	b.logf("  disk: 4 KiB write + fdatasync p50 %.3f p99 %.3f p99.9 %.3f ms, %.0f µs CPU each", p.P50/1e3, p.P99/1e3, p.P999/1e3, cpu)
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
