// Package backoff spaces the attempts of a retry loop: waits that double
// from a minimum to a cap, spread by jitter so that nodes that failed
// together (a broker restart, a partition healing) do not retry together,
// and that start again from the minimum after a success. The forwarder,
// the links feed, the cluster's join loop and the collector use it.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter says how a wait is spread below its base d.
type Jitter uint8

const (
	// Half draws the wait from [d/2, d]: never less than half the base,
	// so the back-off still grows.
	Half Jitter = iota
	// Full draws the wait from [0, d].
	Full
	// None waits exactly d.
	None
)

// Backoff is the state of one retry loop. The zero value is not useful:
// set Min and Max. Not safe for concurrent use; the loop that retries owns
// it.
type Backoff struct {
	Min, Max time.Duration // the first base, and the cap of the base
	Jitter   Jitter        // default Half

	// Rand returns a uniform value in [0, n]; nil means math/rand/v2.
	// Tests inject a deterministic one.
	Rand func(n int64) int64

	base time.Duration // the next wait's base; 0: Min
}

// Next returns the wait before the next attempt, and doubles the base for
// the one after, up to Max.
func (b *Backoff) Next() time.Duration {
	d := b.Base()
	b.base = min(2*d, max(b.Max, b.Min))
	if d <= 0 {
		return 0
	}
	switch b.Jitter {
	case None:
		return d
	case Full:
		return time.Duration(b.rand(int64(d)))
	default:
		return d/2 + time.Duration(b.rand(int64(d-d/2)))
	}
}

// Base returns the base of the next wait (before jitter), for logs.
func (b *Backoff) Base() time.Duration {
	if b.base <= 0 {
		return b.Min
	}
	return b.base
}

// Reset starts again from Min: the thing retried worked.
func (b *Backoff) Reset() { b.base = 0 }

func (b *Backoff) rand(n int64) int64 {
	if b.Rand != nil {
		return b.Rand(n)
	}
	return rand.Int64N(n + 1)
}
