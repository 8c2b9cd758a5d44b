package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/clickedge/clickedge/cluster"
	"github.com/clickedge/clickedge/outbox"
)

func openOutbox(t *testing.T, dir string, spill int) *outbox.Outbox {
	t.Helper()
	o, err := outbox.Open(filepath.Join(dir, "outbox.db"), &outbox.Options{SpillBytes: spill})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// clickRecord is a record as the edge writes it.
func clickRecord(i int) *outbox.Record {
	return &outbox.Record{
		Exchange: "clicks", RoutingKey: "click.eu", MessageID: fmt.Sprintf("%032x", i),
		Time: time.Unix(1_764_547_200, int64(i)*1000).UTC(),
		Headers: []outbox.Header{{Key: "region", Value: "eu"}, {Key: "node", Value: "a"},
			{Key: "schema", Value: int64(1)}, {Key: "bot", Value: false}},
		Body: []byte(fmt.Sprintf(`{"v":1,"click_id":"%032x","node":"a"}`, i)),
	}
}

// pendingAll reads every pending record of o.
func pendingAll(t *testing.T, o *outbox.Outbox) []outbox.Record {
	t.Helper()
	var all []outbox.Record
	var after uint64
	for {
		recs, err := o.ReadPending(nil, after, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
		after = recs[len(recs)-1].Seq
	}
}

// checkHandedOff checks that every record of want is pending in got,
// unchanged (message id, exchange, routing key, headers with their types,
// body, time), and returns the duplicates.
func checkHandedOff(t *testing.T, got []outbox.Record, want []*outbox.Record) int {
	t.Helper()
	byID := map[string][]outbox.Record{}
	for _, r := range got {
		byID[r.MessageID] = append(byID[r.MessageID], r)
	}
	dups := 0
	for _, w := range want {
		rs := byID[w.MessageID]
		if len(rs) == 0 {
			t.Errorf("record %s lost", w.MessageID)
			continue
		}
		dups += len(rs) - 1
		r := rs[0]
		if r.Exchange != w.Exchange || r.RoutingKey != w.RoutingKey || string(r.Body) != string(w.Body) ||
			!r.Time.Equal(w.Time) || !slices.Equal(r.Headers, w.Headers) {
			t.Errorf("record %s changed in the hand-off:\n got %+v\nwant %+v", w.MessageID, r, *w)
		}
	}
	return dups
}

// Every pending record of a stopping node, the memory spill included, is
// committed unchanged in a peer's outbox before the sender acks it; the
// sender ends with nothing pending.
func TestHandOffDeliversEverything(t *testing.T) {
	oa := openOutbox(t, t.TempDir(), 0)
	ob := openOutbox(t, t.TempDir(), 0)
	var want []*outbox.Record
	for i := range 1234 {
		r := clickRecord(i)
		if err := oa.Append(r); err != nil {
			t.Fatal(err)
		}
		want = append(want, clickRecord(i))
	}
	for i := 5000; i < 5010; i++ {
		if err := oa.Spill(clickRecord(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, clickRecord(i))
	}
	a := startNode(t, nodeOpts{name: "a", outbox: oa})
	b := startNode(t, nodeOpts{name: "b", outbox: ob, join: []string{a.Addr()}})
	allAlive(t, 10*time.Second, a, b)

	res, err := a.HandOff(context.Background(), oa)
	if err != nil {
		t.Fatalf("HandOff: %v (%+v)", err, res)
	}
	if res.Sent != len(want) || res.Pending != 0 || res.Spilled != 0 || !slices.Equal(res.Peers, []string{"b"}) {
		t.Fatalf("HandOff = %+v, want %d sent to b, nothing left", res, len(want))
	}
	if st := oa.Stats(); st.Pending != 0 || st.Spill.Records != 0 {
		t.Fatalf("sender still holds %d pending, %d spilled", st.Pending, st.Spill.Records)
	}
	if dups := checkHandedOff(t, pendingAll(t, ob), want); dups != 0 {
		t.Errorf("%d duplicates in an uninterrupted hand-off", dups)
	}
	if a.Stats().HandoffSent != uint64(len(want)) || b.Stats().HandoffReceived != uint64(len(want)) {
		t.Errorf("counters: sent %d, received %d, want %d", a.Stats().HandoffSent, b.Stats().HandoffReceived, len(want))
	}
}

// A hand-off interrupted mid-way (the peer fails a batch after committing
// it, as when the answer is lost) keeps the unacked records on the sender;
// the next attempt resumes and moves them. Duplicates are allowed, losses
// are not.
func TestHandOffInterruptedResumes(t *testing.T) {
	oa := openOutbox(t, t.TempDir(), 0)
	ob := openOutbox(t, t.TempDir(), 0)
	var want []*outbox.Record
	for i := range 2000 {
		if err := oa.Append(clickRecord(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, clickRecord(i))
	}
	var batches, failAt atomic.Int64
	failAt.Store(2)
	lossy := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/cluster/v1/handoff" {
				h.ServeHTTP(w, r)
				return
			}
			n := batches.Add(1)
			if n == failAt.Load() {
				// Commit, then lose the answer.
				h.ServeHTTP(discard{}, r)
				http.Error(w, "connection lost", http.StatusBadGateway)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	a := startNode(t, nodeOpts{name: "a", outbox: oa})
	b := startNode(t, nodeOpts{name: "b", outbox: ob, join: []string{a.Addr()}, wrap: lossy})
	allAlive(t, 10*time.Second, a, b)

	res, err := a.HandOff(context.Background(), oa)
	if err == nil {
		t.Fatalf("HandOff with a lost answer = %+v, nil error; want an error", res)
	}
	if res.Sent != 500 || res.Pending != 1500 {
		t.Fatalf("interrupted HandOff = %+v, want 500 sent (one batch) and 1500 pending", res)
	}
	res, err = a.HandOff(context.Background(), oa)
	if err != nil || res.Pending != 0 {
		t.Fatalf("resumed HandOff = %+v, %v; want nothing left", res, err)
	}
	dups := checkHandedOff(t, pendingAll(t, ob), want)
	if dups != 500 {
		t.Errorf("duplicates = %d, want the 500 of the batch whose answer was lost", dups)
	}
}

type discard struct{ h http.Header }

func (d discard) Header() http.Header {
	if d.h == nil {
		return http.Header{}
	}
	return d.h
}
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// A peer whose outbox cannot commit refuses the batch; the sender keeps
// every record and says so. Alone, a node has no one to hand off to.
func TestHandOffRefusedKeepsRecords(t *testing.T) {
	oa := openOutbox(t, t.TempDir(), 0)
	for i := range 10 {
		if err := oa.Append(clickRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	a := startNode(t, nodeOpts{name: "a", outbox: oa})
	res, err := a.HandOff(context.Background(), oa)
	if !errors.Is(err, ErrNoPeer) || res.Pending != 10 {
		t.Fatalf("HandOff alone = %+v, %v; want ErrNoPeer and 10 pending", res, err)
	}

	ob := openOutbox(t, t.TempDir(), 0)
	ob.Close() // every Append fails
	b := startNode(t, nodeOpts{name: "b", outbox: ob, join: []string{a.Addr()}})
	allAlive(t, 10*time.Second, a, b)
	res, err = a.HandOff(context.Background(), oa)
	if err == nil || res.Sent != 0 || res.Pending != 10 {
		t.Fatalf("HandOff to a failing peer = %+v, %v; want an error and 10 pending", res, err)
	}
}

// The hand-off endpoint refuses malformed batches with a 400 and a reason,
// and commits nothing of them.
func TestHandOffBadBatch(t *testing.T) {
	ob := openOutbox(t, t.TempDir(), 0)
	b := startNode(t, nodeOpts{name: "b", outbox: ob})
	for _, body := range []string{
		`not json`,
		`{"records":[{"exchange":"clicks","message_id":""}]}`,
		`{"records":[{"exchange":"","message_id":"x"}]}`,
		`{"records":[{"exchange":"clicks","message_id":"x","headers":[{"k":"a"}]}]}`,
		`{"records":[{"exchange":"clicks","message_id":"x","headers":[{"k":"a","s":"1","i":1}]}]}`,
	} {
		code, out := do(t, "POST", "http://"+b.admin+"/cluster/v1/handoff", "", body)
		if code != 400 {
			t.Errorf("POST handoff %s = %d %s, want 400", body, code, out)
		}
	}
	if st := ob.Stats(); st.Pending != 0 {
		t.Errorf("bad batches committed %d records", st.Pending)
	}
}
