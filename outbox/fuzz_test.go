package outbox

import (
	"bytes"
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
