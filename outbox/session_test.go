package outbox_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// harden #5: confirms the session delivered before it ended are applied,
// so the records they confirm are not published again. Each round: 40
// publishes whose confirms are held, then the broker blocks publishing and
// the forwarder waits inside a 41st Publish; the confirms arrive and the
// connection drops while it waits, so Publish fails. The old forwarder
// returned from that failure without taking the confirms and republished
// all 40 on the next session.
func TestForwarderKeepsConfirmsOfEndedSession(t *testing.T) {
	p := outboxtest.NewFakePublisher()
	o := outboxtest.Open(t, &outbox.Options{Durability: outbox.Async, FlushInterval: time.Millisecond})
	cfg := outbox.DefaultForwarderConfig()
	cfg.Publisher = p
	cfg.ReconnectMin = time.Millisecond
	cfg.ReconnectMax = 2 * time.Millisecond
	cfg.PublishTimeout = time.Minute
	f, err := outbox.NewForwarder(o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())

	const rounds, each = 3, 40
	var ids []string
	appendRec := func(id string) {
		ids = append(ids, id)
		if err := o.Append(outboxtest.Record(id)); err != nil {
			t.Fatal(err)
		}
	}
	for r := range rounds {
		outboxtest.WaitFor(t, 5*time.Second, "a session with everything delivered", func() bool {
			fs := f.Stats()
			return o.Sync() == nil && o.Stats().Pending == 0 && fs.Connected && fs.InFlight == 0
		})
		p.HoldConfirms.Store(true)
		for i := range each {
			appendRec(fmt.Sprintf("r%d-%03d", r, i))
		}
		outboxtest.WaitFor(t, 5*time.Second, fmt.Sprintf("round %d in flight", r), func() bool {
			return f.Stats().InFlight == each
		})
		p.SetBlocked(true)
		appendRec(fmt.Sprintf("r%d-blocked", r))
		outboxtest.WaitFor(t, 5*time.Second, "a Publish waiting on the blocked session", func() bool {
			return p.WaitingPublishes() == 1
		})
		sessions := p.Sessions()
		p.HoldConfirms.Store(false)
		p.ReleaseAndBreak()
		outboxtest.WaitFor(t, 5*time.Second, "the next session", func() bool {
			return p.Sessions() > sessions
		})
	}
	outboxtest.WaitFor(t, 5*time.Second, "every ack committed", func() bool {
		return o.Sync() == nil && o.Stats().Pending == 0
	})
	if fs := f.Stats(); fs.Republished != 0 {
		t.Fatalf("%d records republished although their confirms had arrived", fs.Republished)
	}
	got := p.Received()
	for _, id := range ids {
		if got[id] != 1 {
			t.Fatalf("%s reached the broker %d times, want once", id, got[id])
		}
	}
}

// harden #5: a broker that accepts the connection and drops it at once is
// retried with a growing, jittered back-off, as a refused connection is,
// not at ReconnectMin forever. With ReconnectMin 10ms the old forwarder
// reconnected every 5-10ms; now the gap doubles up to ReconnectMax.
func TestForwarderFailingSessionsBackOff(t *testing.T) {
	p := outboxtest.NewFakePublisher()
	p.DropSessions.Store(true)
	o := outboxtest.Open(t, nil)
	cfg := outbox.DefaultForwarderConfig()
	cfg.Publisher = p
	cfg.ReconnectMin = 10 * time.Millisecond
	cfg.ReconnectMax = 640 * time.Millisecond
	f, err := outbox.NewForwarder(o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	outboxtest.WaitFor(t, 10*time.Second, "7 sessions", func() bool { return p.Sessions() >= 7 })
	ts := p.ConnectTimes()
	gaps := make([]time.Duration, 0, len(ts))
	for i := 1; i < len(ts); i++ {
		gaps = append(gaps, ts[i].Sub(ts[i-1]))
	}
	t.Logf("gaps between connects: %v", gaps)
	// The 6th wait is jitter(10ms << 5) = [160ms, 320ms); a constant
	// back-off would be [5ms, 10ms). Lower bounds only: a slow machine
	// makes gaps longer, never shorter.
	if gaps[5] < 160*time.Millisecond {
		t.Fatalf("6th reconnect after %v, want >= 160ms (back-off growing): %v", gaps[5], gaps)
	}
	for i := 1; i < 6; i++ {
		if min := (cfg.ReconnectMin << i) / 2; gaps[i] < min {
			t.Fatalf("reconnect %d after %v, want >= %v: %v", i+1, gaps[i], min, gaps)
		}
	}
	if fs := f.Stats(); fs.SessionErrors < 6 {
		t.Fatalf("session errors = %d, want >= 6", fs.SessionErrors)
	}
}

// harden #5: the backlog pass at a new session waits until the acks of
// earlier confirms are committed. Here the confirms of 30 records arrive,
// the session breaks, and the disk fails every commit: the old forwarder
// ignored the failed Sync and published all 30 again. Now the pass is
// postponed until the acks commit, and nothing is republished.
func TestForwarderPassWaitsForAckCommit(t *testing.T) {
	var failing atomic.Bool
	opts := &outbox.Options{Durability: outbox.Async, FlushInterval: time.Millisecond}
	outbox.SetBeforeCommit(opts, func() error {
		if failing.Load() {
			return syscall.EIO
		}
		return nil
	})
	o := outboxtest.Open(t, opts)
	for i := range 30 {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("c-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	p := outboxtest.NewFakePublisher()
	p.HoldConfirms.Store(true)
	cfg := outbox.DefaultForwarderConfig()
	cfg.Publisher = p
	cfg.ReconnectMin = time.Millisecond
	cfg.RetryMin = 20 * time.Millisecond
	cfg.RetryMax = 40 * time.Millisecond
	f, err := outbox.NewForwarder(o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	outboxtest.WaitFor(t, 5*time.Second, "30 in flight", func() bool { return f.Stats().InFlight == 30 })
	failing.Store(true)
	p.HoldConfirms.Store(false)
	p.ReleaseAndBreak()
	outboxtest.WaitFor(t, 5*time.Second, "a new session whose pass is postponed", func() bool {
		return p.Sessions() >= 2 && f.Stats().Connected && o.Stats().CommitErrors > 0
	})
	failing.Store(false)
	outboxtest.WaitFor(t, 10*time.Second, "the acks committed", func() bool {
		return o.Sync() == nil && o.Stats().Pending == 0
	})
	if fs := f.Stats(); fs.Republished != 0 || fs.Published != 30 {
		t.Fatalf("published %d, republished %d; want 30 and 0 (the pass must wait for the acks)", fs.Published, fs.Republished)
	}
}
