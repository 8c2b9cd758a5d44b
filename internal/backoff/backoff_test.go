package backoff

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The base doubles from Min to Max and stays there; Reset starts again.
func TestGrowthCapReset(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Jitter: None}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("Next #%d = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 100*time.Millisecond {
		t.Fatalf("Next after Reset = %v, want 100ms", got)
	}
}

// Jitter keeps every wait within its bounds, and draws across them: the
// extremes of the injected source give the bounds exactly.
func TestJitterBounds(t *testing.T) {
	for _, tt := range []struct {
		j      Jitter
		lo, hi time.Duration // for a base of 1s
	}{
		{Half, 500 * time.Millisecond, time.Second},
		{Full, 0, time.Second},
	} {
		lowest := Backoff{Min: time.Second, Max: time.Second, Jitter: tt.j, Rand: func(int64) int64 { return 0 }}
		highest := Backoff{Min: time.Second, Max: time.Second, Jitter: tt.j, Rand: func(n int64) int64 { return n }}
		if got := lowest.Next(); got != tt.lo {
			t.Errorf("jitter %d: lowest draw = %v, want %v", tt.j, got, tt.lo)
		}
		if got := highest.Next(); got != tt.hi {
			t.Errorf("jitter %d: highest draw = %v, want %v", tt.j, got, tt.hi)
		}
		r := rand.New(rand.NewPCG(1, 2))
		b := Backoff{Min: 10 * time.Millisecond, Max: time.Second, Jitter: tt.j, Rand: func(n int64) int64 { return r.Int64N(n + 1) }}
		var prevBase time.Duration
		distinct := map[time.Duration]bool{}
		for i := range 200 {
			base := b.Base()
			if base < prevBase || base > time.Second {
				t.Fatalf("jitter %d, attempt %d: base %v after %v (cap 1s)", tt.j, i, base, prevBase)
			}
			prevBase = base
			d := b.Next()
			lo := base / 2
			if tt.j == Full {
				lo = 0
			}
			if d < lo || d > base {
				t.Fatalf("jitter %d, attempt %d: wait %v outside [%v, %v]", tt.j, i, d, lo, base)
			}
			distinct[d] = true
		}
		if len(distinct) < 100 {
			t.Errorf("jitter %d: %d distinct waits in 200: not spread", tt.j, len(distinct))
		}
	}
}

// The default source stays in bounds too.
func TestDefaultRand(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: 8 * time.Millisecond}
	for range 100 {
		base := b.Base()
		if d := b.Next(); d < base/2 || d > base {
			t.Fatalf("wait %v outside [%v, %v]", d, base/2, base)
		}
	}
}
