package outbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	bolt "go.etcd.io/bbolt"
)

// Benchmarks of the outbox. docs/performance.md has the figures and the
// commands. They report rates as custom metrics (appends/s, records/s) and
// latencies from HDR histograms, since ns/op of a concurrent benchmark is
// not a latency.

// benchRecords returns n distinct benchRecords.
func benchRecords(n int) []*Record {
	recs := make([]*Record, n)
	for i := range recs {
		recs[i] = benchRecord(i)
	}
	return recs
}

func benchRecord(i int) *Record {
	id := fmt.Sprintf("0190f3c2a1b27c3d8e4f%012d", i)
	return &Record{
		Exchange:   "clicks",
		RoutingKey: "click.eu-central",
		MessageID:  id,
		Headers:    []Header{{"region", "eu-central"}, {"node", "eu-1"}, {"schema", int64(1)}},
		Body: fmt.Appendf(nil, `{"v":1,"click_id":%q,"ts":"2026-11-27T05:10:00.123Z","link":"tv-sale",`+
			`"url":"https://shop.example/tv?cid=%s&sub=aff-42","rule":"","region":"eu-central","node":"eu-1",`+
			`"country":"DE","device":"mobile","params":{"subid":"aff-42"}}`, id, id),
	}
}

// runWriters runs n goroutines that together call fn b.N times, and reports
// appends/s.
func runWriters(b *testing.B, n int, fn func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > b.N {
					return
				}
				if err := fn(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkAppendSync compares the group commit with one bbolt Update per
// record, both fsyncing before the append returns.
//
//	go test -run '^$' -bench 'AppendSync' -benchtime 3s ./outbox/
func BenchmarkAppendSync(b *testing.B) {
	for _, writers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d/group-commit", writers), func(b *testing.B) {
			o, err := Open(filepath.Join(b.TempDir(), "o.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			recs := benchRecords(1024)
			runWriters(b, writers, func(i int) error {
				r := *recs[i%len(recs)]
				return o.Append(&r)
			})
			st := o.Stats()
			b.ReportMetric(float64(st.Appended)/float64(st.Commits), "records/commit")
		})
		b.Run(fmt.Sprintf("writers=%d/update-per-record", writers), func(b *testing.B) {
			db, err := bolt.Open(filepath.Join(b.TempDir(), "b.db"), 0o600, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketPending); return err })
			enc := make([][]byte, 1024)
			for i := range enc {
				enc[i] = mustInline(benchRecord(i))
			}
			runWriters(b, writers, func(i int) error {
				return db.Update(func(tx *bolt.Tx) error {
					bk := tx.Bucket(bucketPending)
					seq, _ := bk.NextSequence()
					k := seqKey(seq)
					return bk.Put(k[:], enc[i%len(enc)])
				})
			})
		})
	}
}

// BenchmarkAppendLatency offers appends at a fixed rate (open model: each
// append starts at its scheduled time whether or not earlier ones
// finished) and reports p50/p99/max from the scheduled start, so a stall
// is not hidden by coordinated omission.
//
//	go test -run '^$' -bench 'AppendLatency' -benchtime 1x ./outbox/
func BenchmarkAppendLatency(b *testing.B) {
	for _, mode := range []Durability{Sync, Async} {
		for _, rate := range []int{10000, 30000} {
			b.Run(fmt.Sprintf("%v/rate=%d", mode, rate), func(b *testing.B) {
				o, err := Open(filepath.Join(b.TempDir(), "o.db"), &Options{Durability: mode})
				if err != nil {
					b.Fatal(err)
				}
				defer o.Close()
				h, svc := openLoop(b, rate, 3*time.Second, func(i int) error { return o.Append(benchRecord(i)) })
				b.ReportMetric(float64(h.ValueAtQuantile(50))/1e3, "p50-µs")
				b.ReportMetric(float64(h.ValueAtQuantile(99))/1e3, "p99-µs")
				b.ReportMetric(float64(h.Max())/1e3, "max-µs")
				b.ReportMetric(float64(svc.ValueAtQuantile(50))/1e3, "svc-p50-µs")
				b.ReportMetric(float64(svc.ValueAtQuantile(99))/1e3, "svc-p99-µs")
				st := o.Stats()
				b.ReportMetric(float64(st.Appended)/float64(st.Commits), "records/commit")
				b.ReportMetric(st.CommitLatency.Quantile(0.5)*1e6, "commit-p50-µs")
				b.ReportMetric(st.CommitLatency.Quantile(0.99)*1e6, "commit-p99-µs")
			})
		}
	}
}

// BenchmarkAppendLatencyLive is issue 17's "forwarding costs the edge
// nothing" at the outbox: sync appends at a fixed rate with nothing read
// (forwarder cut off) and with a reader that acknowledges every record a
// millisecond after its commit (a live forwarder whose broker confirms at
// once), so that every commit carries the acks of the one before.
//
//	go test -run '^$' -bench AppendLatencyLive -benchtime 1x ./outbox/
func BenchmarkAppendLatencyLive(b *testing.B) {
	for _, rate := range []int{4000, 10000} {
		for _, live := range []bool{false, true} {
			b.Run(fmt.Sprintf("rate=%d/live=%v", rate, live), func(b *testing.B) {
				o, err := Open(filepath.Join(b.TempDir(), "o.db"), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer o.Close()
				stop := make(chan struct{})
				var wg sync.WaitGroup
				if live {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var after uint64
						var buf []Record
						var err error
						t := time.NewTicker(time.Millisecond)
						defer t.Stop()
						for {
							select {
							case <-stop:
								return
							case <-t.C:
							}
							buf, err = o.ReadPending(buf[:0], after, 4096, 0)
							if err != nil {
								b.Error(err)
								return
							}
							for _, r := range buf {
								o.Ack(r.Seq)
								after = r.Seq
							}
						}
					}()
				}
				h, svc := openLoop(b, rate, 3*time.Second, func(i int) error { return o.Append(benchRecord(i)) })
				close(stop)
				wg.Wait()
				b.ReportMetric(float64(h.ValueAtQuantile(50))/1e3, "p50-µs")
				b.ReportMetric(float64(h.ValueAtQuantile(99))/1e3, "p99-µs")
				b.ReportMetric(float64(svc.ValueAtQuantile(50))/1e3, "svc-p50-µs")
				b.ReportMetric(float64(svc.ValueAtQuantile(99))/1e3, "svc-p99-µs")
				st := o.Stats()
				b.ReportMetric(st.CommitLatency.Quantile(0.5)*1e6, "commit-p50-µs")
				b.ReportMetric(st.CommitLatency.Quantile(0.99)*1e6, "commit-p99-µs")
				b.ReportMetric(float64(st.Acked), "acked")
			})
		}
	}
}

// openLoop calls fn at rate per second for d, each call on its own
// goroutine, and returns two latency histograms in ns: from each call's
// scheduled start (coordinated-omission free: a stall delays every call
// due during it) and from its actual start (the service time alone). The
// scheduler wakes every 200µs and starts every call that is due, so its
// own timer jitter shows only in the first histogram.
func openLoop(b *testing.B, rate int, d time.Duration, fn func(i int) error) (fromDue, service *hdrhistogram.Histogram) {
	total := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	var mu sync.Mutex
	fromDue = hdrhistogram.New(1, int64(30*time.Second), 3)
	service = hdrhistogram.New(1, int64(30*time.Second), 3)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < total; {
		now := time.Now()
		for ; i < total && !start.Add(time.Duration(i)*interval).After(now); i++ {
			due := start.Add(time.Duration(i) * interval)
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				began := time.Now()
				if err := fn(i); err != nil {
					b.Error(err)
				}
				end := time.Now()
				mu.Lock()
				fromDue.RecordValue(int64(end.Sub(due)))
				service.RecordValue(int64(end.Sub(began)))
				mu.Unlock()
			}(i)
		}
		time.Sleep(200 * time.Microsecond)
	}
	wg.Wait()
	b.StopTimer()
	return fromDue, service
}

// BenchmarkReadAck measures the forwarder's side: read pending records in
// batches and acknowledge them, until the backlog is delivered and the acks
// committed.
//
//	go test -run '^$' -bench 'ReadAck' -benchtime 1x ./outbox/
func BenchmarkReadAck(b *testing.B) {
	o, err := Open(filepath.Join(b.TempDir(), "o.db"), &Options{Durability: Async})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	n := fill(b, o, 200_000)
	b.ResetTimer()
	start := time.Now()
	drain(b, o, 1000)
	d := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/d.Seconds(), "records/s")
	if st := o.Stats(); st.Pending != 0 || st.Retained != int64(n) {
		b.Fatalf("after drain pending %d retained %d", st.Pending, st.Retained)
	}
}

// fill appends n records (rounded down to a multiple of 256) and returns
// how many.
func fill(b *testing.B, o *Outbox, n int) int {
	var wg sync.WaitGroup
	const writers = 256
	per := n / writers
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				err := o.Append(benchRecord(w*per + i))
				for errors.Is(err, ErrOverloaded) { // async: let the disk catch up
					time.Sleep(time.Millisecond)
					err = o.Append(benchRecord(w*per + i))
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := o.Sync(); err != nil {
		b.Fatal(err)
	}
	return per * writers
}

// drain reads and acks every pending record, then waits for the acks'
// commit. It returns the commit latencies seen meanwhile.
func drain(b *testing.B, o *Outbox, batch int) {
	var after uint64
	var buf []Record
	seqs := make([]uint64, 0, batch)
	for {
		var err error
		buf, err = o.ReadPending(buf[:0], after, batch, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(buf) == 0 {
			break
		}
		seqs = seqs[:0]
		for _, r := range buf {
			seqs = append(seqs, r.Seq)
		}
		o.Ack(seqs...)
		after = buf[len(buf)-1].Seq
	}
	if err := o.Sync(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBacklog fills a backlog (a long partition), reopens, drains it
// and reopens again, reporting file sizes and open times, for each freelist
// setting. OUTBOX_BENCH_BACKLOG sets the record count (default 1M; the
// documented run uses 5M).
//
//	OUTBOX_BENCH_BACKLOG=5000000 go test -run '^$' -bench 'Backlog' -benchtime 1x -timeout 60m ./outbox/
func BenchmarkBacklog(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("OUTBOX_BENCH_BACKLOG"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for _, fl := range []struct {
		name   string
		typ    bolt.FreelistType
		noSync bool
	}{
		{"map-synced", bolt.FreelistMapType, false},
		{"array-synced", bolt.FreelistArrayType, false},
		{"map-nosync", bolt.FreelistMapType, true},
	} {
		b.Run(fmt.Sprintf("n=%d/freelist=%s", n, fl.name), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "o.db")
			// Delivered records are deleted at once: the drained file is
			// the steady state after retention, full of free pages.
			opts := &Options{Durability: Async, Retention: -1, freelistType: fl.typ, noFreelistSync: &fl.noSync}
			o, err := Open(path, opts)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			n := fill(b, o, n)
			fillRate := float64(n) / time.Since(start).Seconds()
			o.Close()
			size1 := fileSize(path)

			start = time.Now()
			o, err = Open(path, opts)
			if err != nil {
				b.Fatal(err)
			}
			open1 := time.Since(start)

			before := o.Stats().CommitLatency
			start = time.Now()
			drain(b, o, 2000)
			drainRate := float64(n) / time.Since(start).Seconds()
			after := o.Stats().CommitLatency
			o.Close()
			size2 := fileSize(path)

			// Sync-mode appends after the drain pay for the freelist.
			start = time.Now()
			o, err = Open(path, &Options{Retention: -1, freelistType: fl.typ, noFreelistSync: &fl.noSync})
			if err != nil {
				b.Fatal(err)
			}
			open2 := time.Since(start)
			for i := range 2000 {
				if err := o.Append(benchRecord(i)); err != nil {
					b.Fatal(err)
				}
			}
			post := o.Stats().CommitLatency
			o.Close()
			start = time.Now()
			o, err = Open(path, &Options{SkipVerify: true, Retention: -1, freelistType: fl.typ, noFreelistSync: &fl.noSync})
			if err != nil {
				b.Fatal(err)
			}
			open2Skip := time.Since(start)
			o.Close()

			b.ReportMetric(fillRate, "fill-records/s")
			b.ReportMetric(float64(size1)/(1<<20), "full-MiB")
			b.ReportMetric(open1.Seconds(), "open-full-s")
			b.ReportMetric(drainRate, "drain-records/s")
			b.ReportMetric(diffQuantile(before, after, 0.99)*1e3, "drain-commit-p99-ms")
			b.ReportMetric(post.Quantile(0.99)*1e3, "after-drain-commit-p99-ms")
			b.ReportMetric(float64(size2)/(1<<20), "drained-MiB")
			b.ReportMetric(open2.Seconds(), "open-drained-s")
			b.ReportMetric(open2Skip.Seconds(), "open-drained-noverify-s")
		})
	}
}

// diffQuantile estimates a quantile of the observations made between two
// snapshots of a histogram.
func diffQuantile(a, b Histogram, q float64) float64 {
	d := Histogram{Bounds: b.Bounds, Counts: make([]uint64, len(b.Counts)), Count: b.Count - a.Count}
	for i := range d.Counts {
		d.Counts[i] = b.Counts[i] - a.Counts[i]
	}
	return d.Quantile(q)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// BenchmarkPruneStall measures how much pruning adds to commits: appends at
// a fixed rate while 200k retained records expire at once, against the same
// load with nothing to prune.
//
//	go test -run '^$' -bench 'PruneStall' -benchtime 1x ./outbox/
func BenchmarkPruneStall(b *testing.B) {
	for _, prune := range []bool{false, true} {
		for _, batch := range []int{1000, 10000} {
			if !prune && batch != 1000 {
				continue
			}
			b.Run(fmt.Sprintf("prune=%v/batch=%d", prune, batch), func(b *testing.B) {
				var clock atomic.Int64
				clock.Store(time.Now().UnixNano())
				o, err := Open(filepath.Join(b.TempDir(), "o.db"), &Options{
					Retention: time.Hour, PruneInterval: time.Millisecond, PruneBatch: batch,
					Now: func() time.Time { return time.Unix(0, clock.Load()) },
				})
				if err != nil {
					b.Fatal(err)
				}
				defer o.Close()
				fill(b, o, 200_000)
				drain(b, o, 2000)
				if prune {
					clock.Add(int64(2 * time.Hour)) // every retained record expires
				}
				before := o.Stats()
				h, _ := openLoop(b, 5000, 2*time.Second, func(i int) error { return o.Append(benchRecord(i)) })
				after := o.Stats()
				b.ReportMetric(float64(h.ValueAtQuantile(50))/1e3, "append-p50-µs")
				b.ReportMetric(float64(h.ValueAtQuantile(99))/1e3, "append-p99-µs")
				b.ReportMetric(float64(h.Max())/1e3, "append-max-µs")
				b.ReportMetric(diffQuantile(before.CommitLatency, after.CommitLatency, 0.99)*1e3, "commit-p99-ms")
				b.ReportMetric(float64(after.Pruned-before.Pruned), "pruned")
			})
		}
	}
}

// BenchmarkFdatasync is the disk's floor: one 4 KiB write and fdatasync per
// op, as bbolt does twice per commit (pages, then the meta page). Run it
// beside AppendLatency: no commit can be faster than two of these.
//
//	go test -run '^$' -bench 'Fdatasync|AppendLatency' -benchtime 1x ./outbox/
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	h := hdrhistogram.New(1, int64(10*time.Second), 3)
	n := max(b.N, 2000)
	b.ResetTimer()
	for i := range n {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		h.RecordValue(int64(time.Since(start)))
	}
	b.StopTimer()
	b.ReportMetric(float64(h.ValueAtQuantile(50))/1e3, "p50-µs")
	b.ReportMetric(float64(h.ValueAtQuantile(99))/1e3, "p99-µs")
	b.ReportMetric(float64(h.Max())/1e3, "max-µs")
}

// BenchmarkAppendSyncLog compares sync appends committed to the tree (one
// bbolt commit, two fdatasyncs, per batch) with the log before the tree
// (Options.Log: one write and one fdatasync per batch, moved into the tree
// later), at a fixed number of writers, each with one append outstanding.
// It reports appends/s, the latency of each append (p50/p99), records per
// fdatasync'd batch, and with the log the delay from a batch's fdatasync
// to its commit in the tree (move-p50/p99: what the log adds before the
// forwarder can read a record). Sub-benchmarks alternate, so with -count
// the two are interleaved A/B/A/B; run BenchmarkFdatasync in the same
// invocation for the disk's own figures.
//
//	go test -run '^$' -bench 'AppendSyncLog|Fdatasync' -benchtime 3s -count 3 ./outbox/
func BenchmarkAppendSyncLog(b *testing.B) {
	for _, writers := range []int{64} {
		for _, log := range []bool{false, true} {
			name := "tree"
			if log {
				name = "log"
			}
			b.Run(fmt.Sprintf("writers=%d/%s", writers, name), func(b *testing.B) {
				o, err := Open(filepath.Join(b.TempDir(), "o.db"), &Options{Log: log})
				if err != nil {
					b.Fatal(err)
				}
				defer o.Close()
				recs := benchRecords(1024)
				var mu sync.Mutex
				h := hdrhistogram.New(1, int64(10*time.Second), 3)
				runWriters(b, writers, func(i int) error {
					r := *recs[i%len(recs)]
					start := time.Now()
					err := o.Append(&r)
					d := time.Since(start)
					mu.Lock()
					h.RecordValue(int64(d))
					mu.Unlock()
					return err
				})
				if err := o.Sync(); err != nil {
					b.Fatal(err)
				}
				st := o.Stats()
				b.ReportMetric(float64(h.ValueAtQuantile(50))/1e3, "p50-µs")
				b.ReportMetric(float64(h.ValueAtQuantile(99))/1e3, "p99-µs")
				if log {
					b.ReportMetric(float64(st.Logged)/float64(st.LogLatency.Count), "records/batch")
					b.ReportMetric(float64(st.Appended)/float64(st.Commits), "records/commit")
					b.ReportMetric(st.MoveLatency.Quantile(0.5)*1e6, "move-p50-µs")
					b.ReportMetric(st.MoveLatency.Quantile(0.99)*1e6, "move-p99-µs")
					b.ReportMetric(st.LogLatency.Quantile(0.5)*1e6, "write-p50-µs")
				} else {
					b.ReportMetric(float64(st.Appended)/float64(st.Commits), "records/batch")
					b.ReportMetric(st.CommitLatency.Quantile(0.5)*1e6, "write-p50-µs")
				}
			})
		}
	}
}

// BenchmarkEncode is the caller's share of an Append: format 3 (the route
// interned, harden #11) against format 1 (the route in every record).
//
//	go test -run '^$' -bench 'Encode' -benchmem ./outbox/
func BenchmarkEncode(b *testing.B) {
	r := benchRecord(1)
	b.Run("format=3", func(b *testing.B) {
		o, err := Open(filepath.Join(b.TempDir(), "o.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer o.Close()
		var n int
		for b.Loop() {
			buf, err := o.encode(r)
			if err != nil {
				b.Fatal(err)
			}
			n = len(*buf)
			o.putBuf(buf)
		}
		b.ReportMetric(float64(n), "bytes/record")
	})
	b.Run("format=1", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = appendRecordV1(buf[:0], r)
		}
		b.ReportMetric(float64(len(buf)), "bytes/record")
	})
}

// BenchmarkAppendSyncLogRate is the log at a low, paced rate: one appender,
// one Append per tick of -rate (default 1k/s), b.N appends, with the moves
// into the tree made at once (MoveDelay < 0, as before it existed) and
// gathered (the default MoveDelay). It reports the process's CPU per 1,000
// records (user+system, getrusage), bbolt commits per second, log batches
// per move and the move latency. A tick missed while an Append runs is
// dropped (appends/s says the rate reached). -count runs each
// sub-benchmark's repetitions in a row: for A/B/A/B, repeat the command.
//
//	for i in 1 2 3; do go test -run '^$' -bench 'AppendSyncLogRate' -benchtime 3000x ./outbox/; done
func BenchmarkAppendSyncLogRate(b *testing.B) {
	rate := 1000
	if s := os.Getenv("OUTBOX_BENCH_RATE"); s != "" {
		rate, _ = strconv.Atoi(s)
	}
	var logBytes int64 // OUTBOX_BENCH_LOG_BYTES: a small log is reused often
	if s := os.Getenv("OUTBOX_BENCH_LOG_BYTES"); s != "" {
		logBytes, _ = strconv.ParseInt(s, 10, 64)
	}
	for _, delay := range []time.Duration{-1, 0} {
		name := "moveDelay=default"
		if delay < 0 {
			name = "moveDelay=none"
		}
		b.Run(fmt.Sprintf("rate=%d/%s", rate, name), func(b *testing.B) {
			o, err := Open(filepath.Join(b.TempDir(), "o.db"), &Options{Log: true, LogBytes: logBytes, MoveDelay: delay})
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			recs := benchRecords(1024)
			h := hdrhistogram.New(1, int64(10*time.Second), 3)
			before := o.Stats()
			cpu0 := cpuTime()
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			start := time.Now()
			b.ResetTimer()
			for i := range b.N {
				<-tick.C
				r := *recs[i%len(recs)]
				t0 := time.Now()
				if err := o.Append(&r); err != nil {
					b.Fatal(err)
				}
				h.RecordValue(int64(time.Since(t0)))
			}
			// Wait for the last moves as they come, not forced by Sync.
			for o.Stats().Moving > 0 {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			cpu := cpuTime() - cpu0
			b.StopTimer()
			st := o.Stats()
			commits := st.Commits - before.Commits
			b.ReportMetric(cpu.Seconds()/float64(b.N)*1000, "cpu-s/1k-records")
			b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
			b.ReportMetric(float64(commits)/elapsed.Seconds(), "commits/s")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
			b.ReportMetric(float64(st.LogLatency.Count)/float64(max(st.Moves, 1)), "batches/move")
			b.ReportMetric(st.MoveLatency.Quantile(0.5)*1e3, "move-p50-ms")
			b.ReportMetric(st.MoveLatency.Quantile(0.99)*1e3, "move-p99-ms")
			b.ReportMetric(float64(h.ValueAtQuantile(99))/1e6, "append-p99-ms")
			b.ReportMetric(float64(h.Max())/1e6, "append-max-ms")
			b.ReportMetric(float64(o.ctr.logWaits.Load()), "log-full-waits")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
