package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// boundLedger wraps AckLedger and fails the test if the window's bound is
// ever exceeded: records in flight plus confirmed-but-unpersisted.
type boundLedger struct {
	outbox.AckLedger
	t        *testing.T
	inflight int
	window   int
}

func (l *boundLedger) Published(seq uint64) {
	l.inflight++
	if n := l.inflight + l.Unpersisted(); n > l.window {
		l.t.Fatalf("%d in flight + %d unpersisted > window %d: a crash would republish more than a window",
			l.inflight, l.Unpersisted(), l.window)
	}
}
func (l *boundLedger) Confirmed(seq uint64) error { l.inflight--; return l.AckLedger.Confirmed(seq) }
func (l *boundLedger) Failed(uint64)              { l.inflight-- }

// harden #10: replay publishes through the outbox's engine, with the
// forwarder's rule: a pending record is acknowledged only after its
// confirm (a returned one stays pending), and what a crash would publish
// again stays within one window.
func TestReplayerAcksConfirmedOnly(t *testing.T) {
	o := outboxtest.Open(t, nil)
	for i := range 100 {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("rp-%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	o.Sync() // with Options.Log, Scan sees records once moved
	p := outboxtest.NewFakePublisher()
	sess, err := p.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	l := &boundLedger{AckLedger: outbox.AckLedger{O: o}, t: t, window: 8}
	r, err := outbox.NewReplayer(outbox.ReplayConfig{Session: sess, Ledger: l, Window: 8, Exchange: "replayed"})
	if err != nil {
		t.Fatal(err)
	}
	err = o.Scan(&outbox.ScanOptions{State: outbox.StatePending}, func(rec *outbox.Record) error {
		if rec.Exchange == "" {
			t.Fatal("record without exchange")
		}
		p.Unroutable.Store(rec.MessageID >= "rp-090") // the last 10 come back
		return r.Publish(context.Background(), rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Drain(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(false); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Published != 100 || st.Confirmed != 90 || st.Returned != 10 || st.FirstReturn == "" {
		t.Fatalf("stats %+v, want 100 published, 90 confirmed, 10 returned", st)
	}
	left := outboxtest.ReadAll(t, o)
	if len(left) != 10 || left[0].MessageID != "rp-090" {
		t.Fatalf("%d pending after the replay (first %v), want the 10 returned", len(left), left)
	}
	if got := p.Received(); len(got) != 90 {
		t.Fatalf("%d ids reached the broker, want 90", len(got))
	}
}
