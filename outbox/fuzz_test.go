package outbox

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"path/filepath"
	"testing"
	"time"
)

// FuzzDecodeRecord feeds arbitrary bytes to the decoder, with a route
// table holding route 1: it must never panic, and what it accepts must
// re-encode to the same bytes (version 1, or version 3 with its route
// inline, named or carried).
func FuzzDecodeRecord(f *testing.F) {
	r := &Record{Time: time.Unix(1, 2), Exchange: "clicks", RoutingKey: "click.eu", MessageID: "id",
		Headers: []Header{{"region", "eu"}, {"schema", int64(1)}, {"ok", true}}, Body: []byte(`{"v":1}`)}
	routes := newRouteTable()
	enc, _ := appendRoute(nil, r.Exchange, r.RoutingKey, r.Headers)
	if id := routes.intern(enc); id != 1 {
		f.Fatalf("intern = %d, want 1", id)
	}
	named := appendRecord(nil, r, 1, enc)
	f.Add(mustInline(r))
	f.Add(named)
	f.Add(defineRoute(nil, named, 1, string(enc)))
	f.Add(appendRecordV1(nil, r))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := decodeRecord(b, &r, routes); err != nil {
			return
		}
		var again []byte
		id, inline, _ := recordRoute(b)
		switch {
		case b[0] == recordV1:
			again = appendRecordV1(nil, &r)
		case !inline:
			again = appendRecord(nil, &r, id, nil)
		default:
			var err error
			if again, err = encodeInline(&r); err != nil {
				t.Fatalf("decoded record does not encode: %v", err)
			}
			if id != 0 {
				enc, _ := appendRoute(nil, r.Exchange, r.RoutingKey, r.Headers)
				again = defineRoute(nil, appendRecord(nil, &r, id, nil), id, string(enc))
			}
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}

// FuzzRecordRoundTrip encodes arbitrary field values and decodes them back.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add(int64(1), int64(0), "clicks", "click.eu", "0190b2c4", "region", "eu", int64(-5), true, []byte("{}"))
	f.Fuzz(func(t *testing.T, ts, delivered int64, ex, key, id, hk, hv string, hi int64, hb bool, body []byte) {
		r := Record{Time: fromUnixNano(ts), Delivered: fromUnixNano(delivered), Exchange: ex, RoutingKey: key,
			MessageID: id, Headers: []Header{{hk, hv}, {"i", hi}, {"b", hb}}, Body: body}
		route, err := appendRoute(nil, r.Exchange, r.RoutingKey, r.Headers)
		if err != nil {
			t.Fatal(err)
		}
		n := encodedLen(&r, 0, route)
		b := appendRecord(nil, &r, 0, route)
		if len(b) != n {
			t.Fatalf("encodedLen = %d, encoded %d bytes", n, len(b))
		}
		var got Record
		if err := decodeRecord(b, &got, nil); err != nil {
			t.Fatalf("decode(encode(r)) = %v", err)
		}
		if !got.Time.Equal(r.Time) || !got.Delivered.Equal(r.Delivered) || got.Exchange != ex || got.RoutingKey != key ||
			got.MessageID != id || !bytes.Equal(got.Body, body) || len(got.Headers) != 3 ||
			got.Headers[0] != (Header{hk, hv}) || got.Headers[1] != (Header{"i", hi}) || got.Headers[2] != (Header{"b", hb}) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
		// Any single flipped bit is caught by the checksum.
		for i := range b {
			b[i] ^= 0x04
			if err := decodeRecord(b, &got, nil); err == nil {
				t.Fatalf("flipped bit at byte %d not detected", i)
			}
			b[i] ^= 0x04
		}
	})
}

// FuzzScanLog scans logs whose frames are arbitrary bytes after a valid
// header: the scan must never panic, and what it reads must hold to the
// log's rules: records in strictly growing sequence, the end on a page
// boundary within the file, frames past the end only past it; and check
// must call a log damaged for some next exactly when a frame past the end
// holds records at or above next.
func FuzzScanLog(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed.db")
	l, _, err := openWAL(path, minLogBytes)
	if err != nil {
		f.Fatal(err)
	}
	r1, r2 := []byte("one"), []byte("two")
	for _, seq := range []uint64{5, 3} {
		if err := l.write([]*[]byte{&r1, &r2}, seq, false); err != nil {
			f.Fatal(err)
		}
	}
	whole := make([]byte, logPage+64)
	if _, err := l.f.ReadAt(whole, logDataStart); err != nil {
		f.Fatal(err)
	}
	l.f.Close()
	f.Add(whole)
	f.Add(whole[:40])
	torn := bytes.Clone(whole)
	torn[40] ^= 1
	f.Add(torn)
	f.Add([]byte{})
	// A frame whose count is far above what its payload holds, its CRC
	// right: the scan must not size anything by the count.
	huge := bytes.Clone(whole[:logPage])
	n := binary.BigEndian.Uint32(huge[4:])
	binary.BigEndian.PutUint32(huge[24:], 1<<31)
	binary.BigEndian.PutUint32(huge[28:], crc32.Update(crc32.Checksum(huge[:28], castagnoli), castagnoli, huge[frameHeadLen:frameHeadLen+n]))
	f.Add(huge)
	f.Fuzz(func(t *testing.T, frames []byte) {
		if len(frames) > 3*logPage {
			return
		}
		img := make([]byte, logDataStart+len(frames))
		copy(img, logHeader(1))
		copy(img[logDataStart:], frames)
		s, err := scanLogAt(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatalf("scanLog = %v on a readable file", err)
		}
		if s.end%logPage != 0 || s.end < logDataStart || s.end > int64(len(img))+logPage {
			t.Fatalf("end %d", s.end)
		}
		for i := 1; i < len(s.records); i++ {
			if s.records[i].seq <= s.records[i-1].seq {
				t.Fatalf("record %d has seq %d after %d", i, s.records[i].seq, s.records[i-1].seq)
			}
		}
		var top uint64 // the highest sequence past the end, plus one
		for _, fi := range s.after {
			if fi.off < s.end {
				t.Fatalf("a frame past the end at %d, before the end %d", fi.off, s.end)
			}
			top = max(top, fi.seq+uint64(fi.count))
		}
		for _, next := range []uint64{0, top - min(top, 1), top} {
			if damaged := s.check(next) != nil; damaged != (len(s.after) > 0 && top > next) {
				t.Fatalf("check(%d) damaged %v, frames past the end %+v", next, damaged, s.after)
			}
		}
	})
}
