package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

func TestForwarderContractFake(t *testing.T) {
	outboxtest.RunForwarderContract(t, func(t *testing.T) *outboxtest.ForwarderEnv {
		p := outboxtest.NewFakePublisher()
		return &outboxtest.ForwarderEnv{
			Publisher: p, Exchange: "clicks", RoutingKey: "click.test",
			Received: p.Received, Break: p.Break,
			Unroutable: func(b bool) { p.Unroutable.Store(b) },
			Timeout:    10 * time.Second,
		}
	})
}

// A record is acknowledged in the outbox only after its confirm: with
// confirms held, nothing leaves pending; a broken session loses the held
// confirms and the records are published again.
func TestForwarderAcksOnlyAfterConfirm(t *testing.T) {
	p := outboxtest.NewFakePublisher()
	p.HoldConfirms.Store(true)
	o := outboxtest.Open(t, &outbox.Options{Durability: outbox.Async})
	for i := range 50 {
		o.Append(outboxtest.Record(string(rune('a'+i%26)) + time.Now().String()))
	}
	o.Sync()
	cfg := outbox.DefaultForwarderConfig()
	cfg.Publisher = p
	cfg.ReconnectMin = 10 * time.Millisecond
	f, err := outbox.NewForwarder(o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	outboxtest.WaitFor(t, 5*time.Second, "50 publishes", func() bool { return f.Stats().InFlight == 50 })
	o.Sync()
	if st := o.Stats(); st.Pending != 50 || st.Acked != 0 {
		t.Fatalf("with confirms held: pending %d acked %d, want 50 and 0", st.Pending, st.Acked)
	}
	p.Break()
	outboxtest.WaitFor(t, 5*time.Second, "a new session", func() bool { return p.Sessions() == 2 && f.Stats().InFlight == 50 })
	if fs := f.Stats(); fs.Republished != 50 {
		t.Fatalf("republished = %d, want 50", fs.Republished)
	}
	p.Release()
	outboxtest.WaitFor(t, 5*time.Second, "acks", func() bool { o.Sync(); return o.Stats().Pending == 0 })
}

// While the broker blocks publishing the forwarder waits without dropping
// the session or deadlocking, and resumes when unblocked.
func TestForwarderPausesWhileBlocked(t *testing.T) {
	p := outboxtest.NewFakePublisher()
	o := outboxtest.Open(t, &outbox.Options{Durability: outbox.Async})
	cfg := outbox.DefaultForwarderConfig()
	cfg.Publisher = p
	cfg.PublishTimeout = 50 * time.Millisecond
	f, _ := outbox.NewForwarder(o, cfg)
	defer f.Close(context.Background())
	outboxtest.WaitFor(t, 5*time.Second, "connected", func() bool { return f.Stats().Connected })
	p.SetBlocked(true)
	o.Append(outboxtest.Record("blocked-1"))
	outboxtest.WaitFor(t, 5*time.Second, "blocked state", func() bool { return f.Stats().Blocked })
	// harden #9: wait for several publish timeouts to have passed (each
	// retried Publish waits on the block again), not for a fixed sleep.
	outboxtest.WaitFor(t, 5*time.Second, "three blocked publishes", func() bool { return p.BlockedWaits() >= 3 })
	if fs := f.Stats(); fs.Published != 0 || p.Sessions() != 1 {
		t.Fatalf("while blocked: published %d, sessions %d; want 0 and 1", fs.Published, p.Sessions())
	}
	p.SetBlocked(false)
	outboxtest.WaitFor(t, 5*time.Second, "delivery after unblock", func() bool { o.Sync(); return o.Stats().Pending == 0 })
}

func TestForwarderReconnectsWithBackoff(t *testing.T) {
	p := outboxtest.NewFakePublisher()
	p.RefuseConnect.Store(true)
	o := outboxtest.Open(t, nil)
	o.Append(outboxtest.Record("waits"))
	cfg := outbox.DefaultForwarderConfig()
	cfg.Publisher = p
	cfg.ReconnectMin = 10 * time.Millisecond
	cfg.ReconnectMax = 40 * time.Millisecond
	f, _ := outbox.NewForwarder(o, cfg)
	defer f.Close(context.Background())
	outboxtest.WaitFor(t, 5*time.Second, "connect errors", func() bool { return f.Stats().ConnectErrors >= 3 })
	if fs := f.Stats(); fs.Connected || fs.LastError == "" {
		t.Fatalf("refused broker: %+v", fs)
	}
	p.RefuseConnect.Store(false)
	outboxtest.WaitFor(t, 5*time.Second, "delivery", func() bool { o.Sync(); return o.Stats().Pending == 0 })
}

// A return holds only its route: while the broker returns every action
// (an unbound exchange or queue), clicks on their own route are delivered
// at once, not after the actions' back-off; the actions stay pending, are
// probed a few at a time, and are delivered once their route takes them.
func TestForwarderReturnHoldsOnlyItsRoute(t *testing.T) {
	p := outboxtest.NewFakePublisher()
	p.SetUnroutableKeys("action.test")
	o := outboxtest.Open(t, &outbox.Options{Durability: outbox.Async})
	cfg := outbox.DefaultForwarderConfig()
	cfg.Publisher = p
	cfg.Window = 64
	// A back-off far longer than the clicks may take: on the old forwarder
	// (one pause for every route) the clicks waited it out.
	cfg.RetryMin, cfg.RetryMax = 3*time.Second, 3*time.Second
	f, err := outbox.NewForwarder(o, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())

	var actions []string
	for i := range 40 {
		r := outboxtest.Record(fmt.Sprintf("action-%d", i))
		r.RoutingKey = "action.test"
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
		actions = append(actions, r.MessageID)
	}
	outboxtest.WaitFor(t, 5*time.Second, "the actions' route held", func() bool { return f.Stats().HeldRoutes == 1 })
	returned := f.Stats().Returned

	start := time.Now()
	var clicks []string
	for i := range 200 {
		r := outboxtest.Record(fmt.Sprintf("click-%d", i))
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
		clicks = append(clicks, r.MessageID)
	}
	outboxtest.WaitFor(t, 2*time.Second, "every click delivered while the actions are held", func() bool {
		got := p.Received()
		for _, id := range clicks {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	took := time.Since(start)

	fs := f.Stats()
	if !fs.Retrying || fs.HeldRoutes != 1 {
		t.Fatalf("while actions are returned: retrying %v, held routes %d; want true and 1", fs.Retrying, fs.HeldRoutes)
	}
	// The held route was not published again before its back-off ended.
	if took < cfg.RetryMin && fs.Returned != returned {
		t.Fatalf("actions returned %d times more within %v of a %v hold", fs.Returned-returned, took, cfg.RetryMin)
	}
	o.Sync()
	if st := o.Stats(); st.Pending != int64(len(actions)) {
		t.Fatalf("pending = %d, want the %d returned actions", st.Pending, len(actions))
	}
	for _, id := range actions {
		if n := p.Received()[id]; n != 0 {
			t.Fatalf("action %s reached the broker %d times while unroutable", id, n)
		}
	}

	p.SetUnroutableKeys()
	outboxtest.WaitFor(t, 10*time.Second, "the actions delivered once routable", func() bool {
		o.Sync()
		return o.Stats().Pending == 0
	})
	if fs := f.Stats(); fs.HeldRoutes != 0 || fs.Retrying {
		t.Fatalf("after the route delivers again: held routes %d, retrying %v; want 0 and false", fs.HeldRoutes, fs.Retrying)
	}
	outboxtest.CheckDelivered(t, o, append(actions, clicks...), p.Received, 5*time.Second)
}
