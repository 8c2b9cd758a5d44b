package main

import (
	"testing"
	"time"

	"github.com/clickedge/clickedge/edge/clickid"
)

// MicroRun is one in-process micro-benchmark.
type MicroRun struct {
	Name        string  `json:"name"`
	Rep         int     `json:"rep"`
	NsPerOp     float64 `json:"ns_per_op"`
	AllocsPerOp int64   `json:"allocs_per_op"`
	BytesPerOp  int64   `json:"bytes_per_op"`
	N           int     `json:"n"`
}

// micros are the click id benchmarks: New as the edge's hot path calls it
// (the clock read included), and with its hex form appended to a buffer.
var micros = []struct {
	name string
	fn   func(b *testing.B)
}{
	{"clickid.New", func(b *testing.B) {
		b.ReportAllocs()
		var id clickid.ID
		for b.Loop() {
			id = clickid.New()
		}
		sinkID = id
	}},
	{"clickid.NewAt+AppendHex", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, clickid.Len)
		now := time.Now()
		for b.Loop() {
			buf = clickid.NewAt(now).AppendHex(buf[:0])
		}
		sinkBytes = buf
	}},
}

var (
	sinkID    clickid.ID
	sinkBytes []byte
)

func runMicro(rep int) []MicroRun {
	var out []MicroRun
	for _, m := range micros {
		r := testing.Benchmark(m.fn)
		out = append(out, MicroRun{
			Name: m.name, Rep: rep, N: r.N,
			NsPerOp:     float64(r.T.Nanoseconds()) / float64(max(r.N, 1)),
			AllocsPerOp: r.AllocsPerOp(),
			BytesPerOp:  r.AllocedBytesPerOp(),
		})
	}
	return out
}
