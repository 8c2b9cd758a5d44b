package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"
)

// Record is one outgoing AMQP message.
//
// Records are encoded once, by Append, and stored as the bytes described in
// the format comment below. A Record returned by a read owns its memory: it
// stays valid after the read returns.
type Record struct {
	// Seq is the record's position in the outbox, assigned at commit time:
	// strictly increasing in commit order, never reused. Spilled records
	// carry a sequence of their own (see Spilled).
	Seq uint64

	// Time is when the record was appended. Append sets it when zero.
	Time time.Time

	// Delivered is when the broker confirmed the record; zero while pending.
	Delivered time.Time

	// Spilled is true for records that live only in the memory spill.
	Spilled bool

	Exchange   string
	RoutingKey string
	MessageID  string
	Headers    []Header
	Body       []byte
}

// Header is one AMQP header. Value is a string, an int64 or a bool; encoding
// any other type fails with ErrInvalidRecord.
type Header struct {
	Key   string
	Value any
}

// Pending reports whether the broker has not yet confirmed the record.
func (r *Record) Pending() bool { return r.Delivered.IsZero() }

// Header returns the value of the header named key, or nil.
func (r *Record) Header(key string) any {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// Encoded record formats. All integers are big-endian or uvarint. Both
// start with the same 21 bytes, so the checksum, the times and the
// delivery mark are read and written the same way in either:
//
//	0      1 byte   format version (1 or 3; there is no record version 2)
//	1      4 bytes  CRC-32C (Castagnoli) of every byte after this field
//	5      8 bytes  append time, Unix nanoseconds
//	13     8 bytes  delivery time, Unix nanoseconds; 0 while pending
//
// Version 3, written since file format 3:
//
//	21     uvarint  route: id<<1 | inline. id is the key of the record's
//	                route in the routes bucket (routes.go), 0 for a route
//	                not interned; inline is 1 when the route follows
//	       ...      the route, only when inline is 1 (see below). With a
//	                non-zero id the record defines its route as well as
//	                naming it: the writer writes the first record of each
//	                commit that names a route so, for Salvage's sake.
//	       uvarint  message id length, message id
//	       uvarint  body length, body
//
// A route is what is the same for every record of one kind from one
// node: exchange, routing key (uvarint length + bytes each), then the
// headers: uvarint header count, then per header uvarint key length, key,
// a type byte ('s' string, 'i' int64 zig-zag varint, 'b' bool byte) and
// the value.
//
// Version 1, written before file format 3 and still read:
//
//	21     ...      exchange, routing key, message id: uvarint length + bytes
//	                each, then the headers as in a route
//	       uvarint  body length, body
//
// Nothing may follow the body. The sequence number is the bbolt key, not part
// of the value, so that a record can move between buckets unchanged but for
// the delivery time.
const (
	recordV1       = 1
	recordV3       = 3
	recordVersion  = recordV3 // what Append writes
	recordFixedLen = 21
	offCRC         = 1
	offTime        = 5
	offDelivered   = 13

	maxHeaders = 64
)

// knownVersion reports whether b is the version byte of a record format
// this build reads.
func knownVersion(b byte) bool { return b == recordV1 || b == recordV3 }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrInvalidRecord is returned by Append and Spill when a record cannot be
// encoded: an unsupported header type, too many headers, or a record larger
// than Options.MaxRecordBytes.
var ErrInvalidRecord = errors.New("outbox: invalid record")

// errDecode is wrapped by every decoding failure; on a committed record it
// means the file is damaged.
var errDecode = errors.New("outbox: undecodable record")

// appendRoute appends the encoding of a route to dst, or fails with
// ErrInvalidRecord for headers it cannot encode.
func appendRoute(dst []byte, exchange, routingKey string, headers []Header) ([]byte, error) {
	dst = appendString(dst, exchange)
	dst = appendString(dst, routingKey)
	return appendHeaders(dst, headers)
}

// appendHeaders appends an encoded header list to dst, or fails with
// ErrInvalidRecord.
func appendHeaders(dst []byte, headers []Header) ([]byte, error) {
	if len(headers) > maxHeaders {
		return dst, fmt.Errorf("%w: %d headers, at most %d", ErrInvalidRecord, len(headers), maxHeaders)
	}
	dst = binary.AppendUvarint(dst, uint64(len(headers)))
	for _, h := range headers {
		dst = appendString(dst, h.Key)
		switch v := h.Value.(type) {
		case string:
			dst = append(dst, 's')
			dst = appendString(dst, v)
		case int64:
			dst = append(dst, 'i')
			dst = binary.AppendVarint(dst, v)
		case int:
			dst = append(dst, 'i')
			dst = binary.AppendVarint(dst, int64(v))
		case bool:
			dst = append(dst, 'b', boolByte(v))
		default:
			return dst, fmt.Errorf("%w: header %q has type %T; want string, int64 or bool", ErrInvalidRecord, h.Key, h.Value)
		}
	}
	return dst, nil
}

// routeField is the route field of a version-3 record.
func routeField(id uint32, inline bool) uint64 {
	f := uint64(id) << 1
	if inline {
		f |= 1
	}
	return f
}

// encodedLen returns the exact size of r encoded in version 3 with route
// id id, or with the encoded route inline when id is 0.
func encodedLen(r *Record, id uint32, route []byte) int {
	n := recordFixedLen + uvarintLen(int(routeField(id, id == 0)))
	if id == 0 {
		n += len(route)
	}
	n += uvarintLen(len(r.MessageID)) + len(r.MessageID)
	n += uvarintLen(len(r.Body)) + len(r.Body)
	return n
}

// appendRecord appends the version-3 encoding of r to dst: with route id id,
// or with route (r's route, encoded by appendRoute) inline when id is 0.
func appendRecord(dst []byte, r *Record, id uint32, route []byte) []byte {
	start := len(dst)
	dst = append(dst, recordV3, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(r.Time)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(r.Delivered)))
	dst = binary.AppendUvarint(dst, routeField(id, id == 0))
	if id == 0 {
		dst = append(dst, route...)
	}
	dst = appendString(dst, r.MessageID)
	dst = binary.AppendUvarint(dst, uint64(len(r.Body)))
	dst = append(dst, r.Body...)
	sealRecord(dst[start:])
	return dst
}

// encodeInline returns r encoded in version 3 with its route inline, for
// tests and tools that have no route table.
func encodeInline(r *Record) ([]byte, error) {
	route, err := appendRoute(nil, r.Exchange, r.RoutingKey, r.Headers)
	if err != nil {
		return nil, err
	}
	return appendRecord(make([]byte, 0, encodedLen(r, 0, route)), r, 0, route), nil
}

// sealRecord writes the checksum of an encoded record in place.
func sealRecord(b []byte) {
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offTime:], castagnoli))
}

// checkRecord verifies the version and checksum of an encoded record without
// decoding it.
func checkRecord(b []byte) error {
	if len(b) < recordFixedLen {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", errDecode, len(b), recordFixedLen)
	}
	if !knownVersion(b[0]) {
		return fmt.Errorf("%w: unknown format version %d", errDecode, b[0])
	}
	if want, got := binary.BigEndian.Uint32(b[offCRC:]), crc32.Checksum(b[offTime:], castagnoli); want != got {
		return fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", errDecode, want, got)
	}
	return nil
}

// recordRouteID returns the id of the route an encoded record that passed
// checkRecord names without carrying it: 0 for a version-1 record or a
// record with its route inline, and false when the field does not parse.
func recordRouteID(b []byte) (uint32, bool) {
	id, inline, n := recordRoute(b)
	if n < 0 {
		return 0, false
	}
	if inline {
		return 0, true
	}
	return id, true
}

// recordRoute parses the route field of a version-3 record that passed
// checkRecord: the id, whether the route is inline, and the field's
// length (0 for a version-1 record, -1 when it does not parse).
func recordRoute(b []byte) (id uint32, inline bool, n int) {
	if b[0] != recordV3 {
		return 0, true, 0
	}
	f, n := binary.Uvarint(b[recordFixedLen:])
	if n <= 0 || f>>1 > maxRouteID || f == 0 {
		return 0, false, -1
	}
	return uint32(f >> 1), f&1 == 1, n
}

// defineRoute appends to dst a copy of the version-3 record b, which names
// route id without carrying it, that carries enc, the route, as well.
func defineRoute(dst, b []byte, id uint32, enc string) []byte {
	_, _, n := recordRoute(b)
	start := len(dst)
	dst = append(dst, b[:recordFixedLen]...)
	dst = binary.AppendUvarint(dst, routeField(id, true))
	dst = append(dst, enc...)
	dst = append(dst, b[recordFixedLen+n:]...)
	sealRecord(dst[start:])
	return dst
}

// routeCarriedBy returns the id and the encoded route that a version-3
// record that passed checkRecord both names and carries (defineRoute's
// form), or 0.
func routeCarriedBy(b []byte) (uint32, []byte) {
	id, inline, n := recordRoute(b)
	if n <= 0 || !inline || id == 0 {
		return 0, nil
	}
	d := decoder{b: b, off: recordFixedLen + n}
	start := d.off
	d.raw()
	d.raw()
	d.headers()
	if d.err != nil {
		return 0, nil
	}
	return id, b[start:d.off]
}

// definedLen is the size of defineRoute's copy.
func definedLen(b []byte, id uint32, enc string) int {
	_, _, n := recordRoute(b)
	return len(b) - n + uvarintLen(int(routeField(id, true))) + len(enc)
}

// markDelivered returns a copy of the encoded record b with its delivery time
// set to t, appended to dst.
func markDelivered(dst, b []byte, t time.Time) []byte {
	start := len(dst)
	dst = append(dst, b...)
	binary.BigEndian.PutUint64(dst[start+offDelivered:], uint64(unixNano(t)))
	sealRecord(dst[start:])
	return dst
}

// recordTimes returns the append and delivery times of an encoded record
// that passed checkRecord.
func recordTimes(b []byte) (appended, delivered int64) {
	return int64(binary.BigEndian.Uint64(b[offTime:])), int64(binary.BigEndian.Uint64(b[offDelivered:]))
}

// decodeRecord decodes b into r, resolving a route id through routes (nil
// when there is no route table: then only inline routes decode). Strings
// and the body are copied, so r does not alias b. It verifies the checksum
// first. A route id routes does not know is damage.
func decodeRecord(b []byte, r *Record, routes *routeTable) error {
	if err := checkRecord(b); err != nil {
		return err
	}
	d := decoder{b: b, off: recordFixedLen}
	ts, dl := recordTimes(b)
	r.Time = fromUnixNano(ts)
	r.Delivered = fromUnixNano(dl)
	if b[0] == recordV1 {
		r.Exchange = d.string()
		r.RoutingKey = d.string()
		r.MessageID = d.string()
		r.Headers = d.headers()
	} else {
		f := d.uvarint()
		switch {
		case d.err != nil:
		case f == 0:
			d.fail("route field 0")
		case f&1 == 1:
			r.Exchange = d.string()
			r.RoutingKey = d.string()
			r.Headers = d.headers()
		default:
			id := f >> 1
			rt := routes.lookup(id)
			if rt == nil {
				return fmt.Errorf("%w: unknown route %d", errDecode, id)
			}
			r.Exchange, r.RoutingKey = rt.exchange, rt.routingKey
			// Each record owns its headers: a caller may change them.
			r.Headers = slices.Clone(rt.headers)
		}
		r.MessageID = d.string()
	}
	r.Body = d.bytes()
	if d.err == nil && d.off != len(b) {
		d.fail(fmt.Sprintf("%d trailing bytes", len(b)-d.off))
	}
	return d.err
}

// headers decodes a header list, nil when empty.
func (d *decoder) headers() []Header {
	n := d.uvarint()
	if n > maxHeaders {
		d.fail(fmt.Sprintf("%d headers, at most %d", n, maxHeaders))
		return nil
	}
	if n == 0 || d.err != nil {
		return nil
	}
	hs := make([]Header, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		h := Header{Key: d.string()}
		switch t := d.byte(); t {
		case 's':
			h.Value = d.string()
		case 'i':
			h.Value = d.varint()
		case 'b':
			switch d.byte() {
			case 0:
				h.Value = false
			case 1:
				h.Value = true
			default:
				d.fail("bad bool")
			}
		default:
			d.fail(fmt.Sprintf("unknown header type %q", t))
		}
		hs = append(hs, h)
	}
	return hs
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", errDecode, msg, d.off)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(fmt.Sprintf("length %d past the end", n))
		return nil
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) string() string { return string(d.raw()) }

func (d *decoder) bytes() []byte {
	s := d.raw()
	if s == nil {
		return nil
	}
	return append([]byte(nil), s...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func uvarintLen(n int) int {
	l := 1
	for u := uint64(n); u >= 0x80; u >>= 7 {
		l++
	}
	return l
}

func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	l := 1
	for ; u >= 0x80; u >>= 7 {
		l++
	}
	return l
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// unixNano is t.UnixNano with the zero Time mapped to 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// seqKey is the bbolt key of a sequence number: big-endian, so that byte
// order is numeric order.
func seqKey(seq uint64) [8]byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k
}

func keySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k) }
