package outbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// clickRecord is a typical edge click, as edge/server.go builds it.
func clickRecord(i int) *Record {
	r := benchRecord(i)
	r.Time = fixtureBase.Add(time.Duration(i) * time.Millisecond)
	return r
}

// routeCount returns the number of entries of the routes bucket.
func routeCount(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketRoutes); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

// harden #11: a click record stores a route id, not the exchange, routing
// key and headers; the route is stored once.
func TestRouteStoredOnce(t *testing.T) {
	r := clickRecord(1)
	v1 := len(appendRecordV1(nil, r))
	o, err := Open(filepath.Join(t.TempDir(), "o.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := o.encode(r)
	if err != nil {
		t.Fatal(err)
	}
	v3 := len(*buf)
	route, _ := appendRoute(nil, r.Exchange, r.RoutingKey, r.Headers)
	t.Logf("a typical click record: %d bytes in format 1, %d in format 3 (the route, %d bytes, is stored once)", v1, v3, len(route))
	if v3 > v1-len(route)+2 {
		t.Errorf("format-3 click record is %d bytes; want at most %d (format 1's %d less the %d-byte route, plus the id)", v3, v1-len(route)+2, v1, len(route))
	}
	for i := range 100 {
		if err := o.Append(clickRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	path := o.path
	o.Close()
	if n := routeCount(t, path); n != 1 {
		t.Errorf("routes bucket holds %d routes after 100 clicks of one route, want 1", n)
	}
	o, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	recs, err := o.ReadPending(nil, 0, 1000, 0)
	if err != nil || len(recs) != 100 {
		t.Fatalf("ReadPending = %d records, %v; want 100", len(recs), err)
	}
	want := clickRecord(7)
	got := recs[7]
	if got.Exchange != want.Exchange || got.RoutingKey != want.RoutingKey || !slices.Equal(got.Headers, want.Headers) ||
		got.MessageID != want.MessageID || string(got.Body) != string(want.Body) {
		t.Errorf("record 8 = %+v, want %+v", got, want)
	}
	// Each record owns its headers.
	recs[0].Headers[0].Value = "changed"
	if recs[1].Headers[0].Value != "eu-central" {
		t.Errorf("changing one record's headers changed another's: %v", recs[1].Headers)
	}
}

// harden #11: a route is written in the transaction of the first record
// that commits with it; a commit that failed leaves it to the next one.
func TestRouteWrittenWithItsFirstCommit(t *testing.T) {
	var fail atomic.Bool // read by the writer
	fail.Store(true)
	opts := &Options{}
	opts.beforeCommit = func() error {
		if fail.Load() {
			return errors.New("injected")
		}
		return nil
	}
	opts.beforeLog = opts.beforeCommit // the same disk, with the log
	path := filepath.Join(t.TempDir(), "o.db")
	o, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Append(clickRecord(1)); err == nil {
		t.Fatal("Append with a failing commit succeeded")
	}
	fail.Store(false)
	// A commit the writer was making meanwhile (a prune step) may still
	// fail and start a write back-off: clear it until an Append gets in.
	// (With the log, the logger's own back-off ends by itself: poll.)
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.failedUntil.Store(0)
		o.logFailedUntil.Store(0)
		err := o.Append(clickRecord(2))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrWrite) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // polling the back-off, with a deadline
	}
	o.Close()
	if _, err := Verify(path); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if n := routeCount(t, path); n != 1 {
		t.Fatalf("routes bucket holds %d routes, want 1", n)
	}
}

// harden #11: at most maxRoutes routes are interned; more distinct routes
// are stored inline, and every record reads back as it was appended.
func TestRouteTableBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	o, err := Open(path, &Options{Durability: Async})
	if err != nil {
		t.Fatal(err)
	}
	n := maxRoutes + 50
	for i := range n {
		r := clickRecord(i)
		r.RoutingKey = fmt.Sprintf("click.hostile-%d", i)
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if got := routeCount(t, path); got != maxRoutes {
		t.Errorf("routes bucket holds %d routes after %d distinct ones, want the bound %d", got, n, maxRoutes)
	}
	o, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	recs, err := o.ReadPending(nil, 0, 2*n, 0)
	if err != nil || len(recs) != n {
		t.Fatalf("ReadPending = %d, %v; want %d", len(recs), err, n)
	}
	for i, r := range recs {
		if want := fmt.Sprintf("click.hostile-%d", i); r.RoutingKey != want {
			t.Fatalf("record %d: routing key %q, want %q", i, r.RoutingKey, want)
		}
	}
}

// harden #11: a record that names a route the file does not hold is damage:
// Verify reports it and Open refuses the file.
func TestVerifyUnknownRoute(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	o, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := o.Append(clickRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRoutes).Delete([]byte{0, 0, 0, 1}) })
	db.Close()
	rep, err := Verify(path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(strings.Join(rep.Problems, "\n"), "names route 1") {
		t.Fatalf("Verify of a file missing its route = %v (%q), want ErrCorrupt naming route 1", err, rep.Problems)
	}
	if _, err := Open(path, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a file missing its route = %v, want ErrCorrupt", err)
	}
	// Salvage finds the route in the record that carries it (the first,
	// then one in defineEvery), and so keeps every record.
	dst := filepath.Join(t.TempDir(), "s", "o.db")
	srep, err := Salvage(path, dst, nil)
	if err != nil {
		t.Fatalf("Salvage = %v", err)
	}
	if srep.Pending != 10 || srep.NoRoute != 0 || srep.Routes != 1 {
		t.Fatalf("Salvage: %d pending, %d without a route, %d routes; want 10, 0, 1 (%q)", srep.Pending, srep.NoRoute, srep.Routes, srep.Problems)
	}
	o, err = Open(dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	recs, err := o.ReadPending(nil, 0, 100, 0)
	if err != nil || len(recs) != 10 || recs[9].RoutingKey != "click.eu-central" {
		t.Fatalf("salvaged ReadPending = %+v, %v", recs, err)
	}
}

// harden #11: a file written by the build before format 3 (version-1
// records, file format 2, one of them delivered) opens, drains, exports,
// verifies and salvages with this one; new records go in as format 3
// beside the old ones.
func TestFormat2FileDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	var old []oldRecord
	for i := 1; i <= 5; i++ {
		rec := oldRecord{v: appendRecordV1(nil, clickRecord(i))}
		if i == 1 {
			rec.delivered = fixtureBase.UnixNano()
		}
		old = append(old, rec)
	}
	writeOldFile(t, path, 2, old)
	if _, err := Verify(path); err != nil {
		t.Fatalf("Verify of the format-2 file = %v", err)
	}

	o, err := Open(path, &Options{Retention: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Append(clickRecord(6)); err != nil {
		t.Fatal(err)
	}
	if err := o.Sync(); err != nil { // with the log, readers see it once moved
		t.Fatal(err)
	}
	recs, err := o.ReadPending(nil, 0, 100, 0)
	if err != nil || len(recs) != 5 {
		t.Fatalf("ReadPending = %d records, %v; want 4 old and 1 new", len(recs), err)
	}
	for i, r := range recs {
		want := clickRecord(i + 2)
		if r.MessageID != want.MessageID || r.RoutingKey != want.RoutingKey || !slices.Equal(r.Headers, want.Headers) || string(r.Body) != string(want.Body) {
			t.Fatalf("record %d = %+v, want %+v", r.Seq, r, want)
		}
	}
	var all []Record
	err = o.Scan(&ScanOptions{State: StateAll}, func(r *Record) error { all = append(all, *r); return nil })
	if err != nil || len(all) != 6 || all[0].MessageID != clickRecord(1).MessageID || all[0].Pending() {
		t.Fatalf("Scan(all) = %d records, %v; want 6, the first delivered", len(all), err)
	}
	for _, r := range recs {
		o.Ack(r.Seq)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(path); err != nil {
		t.Fatalf("Verify after draining = %v", err)
	}
	dst := filepath.Join(t.TempDir(), "s", "o.db")
	rep, err := Salvage(path, dst, nil)
	if err != nil || rep.Delivered != 6 || rep.Pending != 0 {
		t.Fatalf("Salvage = %+v, %v; want 6 delivered", rep, err)
	}
}

// harden #11: a route in the routes bucket that differs from the one its
// records carry (the writer copies the bucket's) is damage: records would
// be published with another exchange, routing key or headers.
func TestVerifyRouteMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	o, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Append(clickRecord(1)); err != nil {
		t.Fatal(err)
	}
	o.Close()
	if _, err := Verify(path); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		other, _ := appendRoute(nil, "clicks", "click.elsewhere", nil)
		k, v := routeEntry(1, string(other))
		return tx.Bucket(bucketRoutes).Put(k, v)
	})
	db.Close()
	rep, err := Verify(path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(strings.Join(rep.Problems, "\n"), "carries route 1, which differs") {
		t.Fatalf("Verify of a file whose route changed = %v (%q), want ErrCorrupt naming route 1", err, rep.Problems)
	}
}
