package outbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// A damaged file must either be refused with ErrCorrupt or, when the damage
// hit bytes that hold nothing (free pages, slack), open with exactly the
// records it had. Opening with records missing or changed would be a silent
// loss; a panic would be a crash loop.

// damageFixture writes an outbox with pending and retained records and
// returns its path and contents.
func damageFixture(t *testing.T) (string, []byte, map[uint64]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := outbox.Open(path, &outbox.Options{Durability: outbox.Async})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("rec-%05d", i))); err != nil {
			t.Fatal(err)
		}
	}
	o.Sync()
	recs := outboxtest.ReadAll(t, o)
	for _, r := range recs[:1000] {
		o.Ack(r.Seq)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data, contents(t, path)
}

// contents opens path and returns seq -> "P|R:id:body" for every record, or
// nil and the error.
func openContents(path string) (map[uint64]string, error) {
	o, err := outbox.Open(path, nil)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	m := map[uint64]string{}
	for _, pass := range []struct {
		tag  string
		read func([]outbox.Record, uint64, int, int) ([]outbox.Record, error)
	}{{"P", o.ReadPending}, {"R", o.ReadRetained}} {
		var after uint64
		for {
			recs, err := pass.read(nil, after, 1000, 0)
			if err != nil {
				return nil, err
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				m[r.Seq] = pass.tag + ":" + r.MessageID + ":" + string(r.Body)
			}
			after = recs[len(recs)-1].Seq
		}
	}
	return m, nil
}

func contents(t *testing.T, path string) map[uint64]string {
	t.Helper()
	m, err := openContents(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameContents(a, b map[uint64]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkDamaged opens a damaged copy and applies the rule above. It reports
// whether the damage was detected.
func checkDamaged(t *testing.T, path string, want map[uint64]string, what string) bool {
	t.Helper()
	got, err := openContents(path)
	if err != nil {
		if !errors.Is(err, outbox.ErrCorrupt) {
			t.Fatalf("%s: Open = %v, want ErrCorrupt or success", what, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "salvage") {
			t.Fatalf("%s: error %q does not name the file and the salvage command", what, msg)
		}
		return true
	}
	if !sameContents(got, want) {
		t.Fatalf("%s: file opened with %d records, want the original %d unchanged: silent loss", what, len(got), len(want))
	}
	return false
}

func TestCorruptTruncatedFileRefused(t *testing.T) {
	path, data, want := damageFixture(t)
	rep, err := outbox.Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	used := int(rep.Pages) * rep.PageSize
	for _, size := range []int{0 + 100, 4096, 4096 * 2, 4096*3 + 17, used / 2, used - 4096, used - 1} {
		os.WriteFile(path, data[:size], 0o600)
		if !checkDamaged(t, path, want, fmt.Sprintf("truncated to %d of %d bytes", size, used)) {
			t.Fatalf("truncation to %d bytes (used %d) went unnoticed", size, used)
		}
	}
	// Cutting only the unused tail beyond the high-water mark loses nothing.
	if len(data) > used {
		os.WriteFile(path, data[:used], 0o600)
		if checkDamaged(t, path, want, "tail beyond the high-water mark cut") {
			t.Fatal("cutting the unused tail was reported as damage")
		}
	}
}

func TestCorruptMetaPageRefused(t *testing.T) {
	path, data, want := damageFixture(t)
	for _, off := range []int{16 + 40, 4096 + 16 + 48} { // pgid of meta 0, txid of meta 1
		d := bytes.Clone(data)
		d[off] ^= 0x01
		os.WriteFile(path, d, 0o600)
		if !checkDamaged(t, path, want, fmt.Sprintf("meta bit flip at %d", off)) {
			t.Fatalf("flipped bit in a meta page at %d went unnoticed", off)
		}
	}
}

func TestCorruptRecordBytesRefused(t *testing.T) {
	path, data, want := damageFixture(t)
	for _, id := range []string{"rec-00007", "rec-01500", "rec-02999"} {
		// Old copies of a record linger in free pages (bbolt copies pages on
		// write), so flip every copy: each must be caught or harmless, and
		// at least the live copy must be caught.
		detected := 0
		for i := 0; ; {
			j := bytes.Index(data[i:], []byte(id))
			if j < 0 {
				break
			}
			off := i + j + 2
			i = off
			d := bytes.Clone(data)
			d[off] ^= 0x10
			os.WriteFile(path, d, 0o600)
			if checkDamaged(t, path, want, fmt.Sprintf("bit flip in %s at %d", id, off)) {
				detected++
			}
		}
		if detected == 0 {
			t.Fatalf("no flipped bit in record %s was noticed", id)
		}
	}
}

func TestCorruptRandomBitFlipsNeverLoseSilently(t *testing.T) {
	path, data, want := damageFixture(t)
	rep, err := outbox.Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	used := int(rep.Pages) * rep.PageSize
	trials := 400
	if testing.Short() {
		trials = 50
	}
	rng := rand.New(rand.NewPCG(1, 2))
	detected := 0
	for trial := range trials {
		d := bytes.Clone(data)
		flips := 1 + rng.IntN(8)
		var where []int
		for range flips {
			off := rng.IntN(used)
			d[off] ^= 1 << rng.IntN(8)
			where = append(where, off)
		}
		os.WriteFile(path, d, 0o600)
		if checkDamaged(t, path, want, fmt.Sprintf("trial %d: %d bit flips at %v", trial, flips, where)) {
			detected++
		}
	}
	t.Logf("%d of %d random damages detected; the rest hit unused bytes and changed nothing", detected, trials)
	if detected == 0 {
		t.Fatal("no random damage was detected: the check proves nothing")
	}
}
