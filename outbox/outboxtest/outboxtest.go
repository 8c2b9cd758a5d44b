// Package outboxtest holds test helpers for code that uses an outbox.
package outboxtest

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/clickedge/clickedge/outbox"
)

// Open opens an outbox in a fresh temporary directory. On cleanup it closes
// the outbox and checks the file with outbox.Verify, failing the test if the
// file is damaged or its counters disagree with its records.
func Open(t testing.TB, opts *outbox.Options) *outbox.Outbox {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := outbox.Open(path, opts)
	if err != nil {
		t.Fatalf("outbox.Open(%s) = %v", path, err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Errorf("outbox.Close() = %v", err)
		}
		CheckFile(t, path)
	})
	return o
}

// CheckFile fails the test if the outbox file at path does not verify.
func CheckFile(t testing.TB, path string) *outbox.VerifyReport {
	t.Helper()
	rep, err := outbox.Verify(path)
	if err != nil {
		t.Errorf("outbox.Verify(%s) = %v", path, err)
	}
	return rep
}

// Record returns a click-like record with the given message id.
func Record(id string) *outbox.Record {
	return &outbox.Record{
		Exchange:   "clicks",
		RoutingKey: "click.test",
		MessageID:  id,
		Headers:    []outbox.Header{{Key: "region", Value: "test"}, {Key: "node", Value: "t1"}, {Key: "schema", Value: int64(1)}},
		Body:       fmt.Appendf(nil, `{"v":1,"click_id":%q,"link":"demo","url":"https://shop.example/?cid=%s","region":"test","node":"t1","country":"","device":"desktop","params":{}}`, id, id),
	}
}

// ReadAll returns every pending record, in order.
func ReadAll(t testing.TB, o *outbox.Outbox) []outbox.Record {
	t.Helper()
	var all []outbox.Record
	// With Options.Log an answered record reaches the file, where readers
	// look, after Append returns: wait for it. (A closed or failing outbox
	// reads what it has.)
	_ = o.Sync()
	var after uint64
	for {
		recs, err := o.ReadPending(nil, after, 1000, 0)
		if err != nil {
			t.Fatalf("ReadPending(after %d) = %v", after, err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
		after = recs[len(recs)-1].Seq
	}
}
