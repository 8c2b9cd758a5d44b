package postback

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCheckSignature is the CPU cost of authenticating one postback:
// parsing the query, the canonical query and the HMAC.
func BenchmarkCheckSignature(b *testing.B) {
	q := signed("amount", "12.50", "currency", "EUR")
	secret := []byte(testSecret)
	b.ReportAllocs()
	for b.Loop() {
		ps, err := ParseQuery(nil, q)
		if err != nil {
			b.Fatal(err)
		}
		sig, _ := ps.Get("sig")
		if !checkSig(secret, Canonical(ps), sig) {
			b.Fatal("bad signature")
		}
	}
}

// BenchmarkRegister is one new order end to end through the fasthttp
// front-end and a real outbox at sync durability, from many goroutines at
// once (the commits are grouped): ns/op is the inverse of the throughput.
func BenchmarkRegister(b *testing.B) {
	e := newEnv(b, nil)
	cid := clickAt(-time.Hour)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			q := SignedQuery([]byte(testSecret), Params{{"adv", "signed"}, {"click_id", cid},
				{"order_id", fmt.Sprint("B", n.Add(1))}, {"ts", ts}})
			if r := e.do("fasthttp", call{query: q}); r.Status != 200 {
				b.Errorf("answer %d %q", r.Status, r.Error) // not Fatal: this is not the benchmark's goroutine
				return
			}
		}
	})
}
