package outbox_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// Summarize counts the records of each exchange, pending and delivered.
func TestSummarizeByExchange(t *testing.T) {
	o := outboxtest.Open(t, &outbox.Options{Retention: time.Hour})
	for i := range 5 {
		r := outboxtest.Record(fmt.Sprint("c", i))
		if i >= 3 {
			r.Exchange = "actions"
		}
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	o.Ack(1) // a click
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	s, err := o.Summarize()
	if err != nil {
		t.Fatal(err)
	}
	c, a := s.Exchanges["clicks"], s.Exchanges["actions"]
	if c == nil || a == nil || c.Pending != 2 || c.Delivered != 1 || a.Pending != 2 || a.Delivered != 0 || len(s.Exchanges) != 2 {
		t.Fatalf("Summarize().Exchanges = %v (clicks %+v, actions %+v), want clicks 2 pending 1 delivered, actions 2 pending", s.Exchanges, c, a)
	}
	if c.PendingBytes+a.PendingBytes != s.Pending.Bytes {
		t.Fatalf("pending bytes by exchange %d + %d, total %d", c.PendingBytes, a.PendingBytes, s.Pending.Bytes)
	}
}
