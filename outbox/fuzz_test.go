package outbox

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeRecord feeds arbitrary bytes to the decoder: it must never
// panic, and what it accepts must re-encode to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	r := &Record{Time: time.Unix(1, 2), Exchange: "clicks", RoutingKey: "click.eu", MessageID: "id",
		Headers: []Header{{"region", "eu"}, {"schema", int64(1)}, {"ok", true}}, Body: []byte(`{"v":1}`)}
	n, _ := encodedLen(r)
	f.Add(appendRecord(make([]byte, 0, n), r))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := decodeRecord(b, &r); err != nil {
			return
		}
		n, err := encodedLen(&r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		again := appendRecord(make([]byte, 0, n), &r)
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
		n, err := encodedLen(&r)
		if err != nil {
			t.Fatal(err)
		}
		b := appendRecord(nil, &r)
		if len(b) != n {
			t.Fatalf("encodedLen = %d, encoded %d bytes", n, len(b))
		}
		var got Record
		if err := decodeRecord(b, &got); err != nil {
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
			if err := decodeRecord(b, &got); err == nil {
				t.Fatalf("flipped bit at byte %d not detected", i)
			}
			b[i] ^= 0x04
		}
	})
}
