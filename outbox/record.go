package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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

// Encoded record format, version 1. All integers are big-endian or uvarint.
//
//	0      1 byte   format version (1)
//	1      4 bytes  CRC-32C (Castagnoli) of every byte after this field
//	5      8 bytes  append time, Unix nanoseconds
//	13     8 bytes  delivery time, Unix nanoseconds; 0 while pending
//	21     ...      exchange, routing key, message id: uvarint length + bytes each
//	       uvarint  header count, then per header: uvarint key length, key,
//	                a type byte ('s' string, 'i' int64 zig-zag varint,
//	                'b' bool byte) and the value
//	       uvarint  body length, body
//
// Nothing may follow the body. The sequence number is the bbolt key, not part
// of the value, so that a record can move between buckets unchanged but for
// the delivery time.
const (
	recordVersion  = 1
	recordFixedLen = 21
	offCRC         = 1
	offTime        = 5
	offDelivered   = 13

	maxHeaders = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrInvalidRecord is returned by Append and Spill when a record cannot be
// encoded: an unsupported header type, too many headers, or a record larger
// than Options.MaxRecordBytes.
var ErrInvalidRecord = errors.New("outbox: invalid record")

// errDecode is wrapped by every decoding failure; on a committed record it
// means the file is damaged.
var errDecode = errors.New("outbox: undecodable record")

// encodedLen returns the exact encoded size of r, or an error.
func encodedLen(r *Record) (int, error) {
	n := recordFixedLen
	n += uvarintLen(len(r.Exchange)) + len(r.Exchange)
	n += uvarintLen(len(r.RoutingKey)) + len(r.RoutingKey)
	n += uvarintLen(len(r.MessageID)) + len(r.MessageID)
	if len(r.Headers) > maxHeaders {
		return 0, fmt.Errorf("%w: %d headers, at most %d", ErrInvalidRecord, len(r.Headers), maxHeaders)
	}
	n += uvarintLen(len(r.Headers))
	for _, h := range r.Headers {
		n += uvarintLen(len(h.Key)) + len(h.Key) + 1
		switch v := h.Value.(type) {
		case string:
			n += uvarintLen(len(v)) + len(v)
		case int64:
			n += varintLen(v)
		case int:
			n += varintLen(int64(v))
		case bool:
			n++
		default:
			return 0, fmt.Errorf("%w: header %q has type %T; want string, int64 or bool", ErrInvalidRecord, h.Key, h.Value)
		}
	}
	n += uvarintLen(len(r.Body)) + len(r.Body)
	return n, nil
}

// appendRecord appends the encoding of r to dst. The caller has checked r
// with encodedLen.
func appendRecord(dst []byte, r *Record) []byte {
	start := len(dst)
	dst = append(dst, recordVersion, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(r.Time)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(r.Delivered)))
	dst = appendString(dst, r.Exchange)
	dst = appendString(dst, r.RoutingKey)
	dst = appendString(dst, r.MessageID)
	dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
	for _, h := range r.Headers {
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
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Body)))
	dst = append(dst, r.Body...)
	sealRecord(dst[start:])
	return dst
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
	if b[0] != recordVersion {
		return fmt.Errorf("%w: unknown format version %d", errDecode, b[0])
	}
	if want, got := binary.BigEndian.Uint32(b[offCRC:]), crc32.Checksum(b[offTime:], castagnoli); want != got {
		return fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", errDecode, want, got)
	}
	return nil
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

// decodeRecord decodes b into r. Strings and the body are copied, so r does
// not alias b. It verifies the checksum first.
func decodeRecord(b []byte, r *Record) error {
	if err := checkRecord(b); err != nil {
		return err
	}
	d := decoder{b: b, off: recordFixedLen}
	ts, dl := recordTimes(b)
	r.Time = fromUnixNano(ts)
	r.Delivered = fromUnixNano(dl)
	r.Exchange = d.string()
	r.RoutingKey = d.string()
	r.MessageID = d.string()
	n := d.uvarint()
	if n > maxHeaders {
		return fmt.Errorf("%w: %d headers, at most %d", errDecode, n, maxHeaders)
	}
	r.Headers = nil
	if n > 0 && d.err == nil {
		r.Headers = make([]Header, 0, n)
	}
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
		r.Headers = append(r.Headers, h)
	}
	r.Body = d.bytes()
	if d.err == nil && d.off != len(b) {
		d.fail(fmt.Sprintf("%d trailing bytes", len(b)-d.off))
	}
	return d.err
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
