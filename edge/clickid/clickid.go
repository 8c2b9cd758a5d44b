// Package clickid makes click ids: UUIDv7 (RFC 9562) written as 32 lowercase hex digits.
package clickid

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrSyntax is returned (wrapped) by Parse when its input is not a UUIDv7
// in one of the accepted forms.
var ErrSyntax = errors.New("clickid: not a UUIDv7 click id")

// ID is a UUIDv7, most significant byte first:
//
//	bytes 0-5    unix_ts_ms: milliseconds since the Unix epoch (48 bits)
//	byte  6-7    version 7 (4 bits), then rand_a: the sub-millisecond
//	             fraction in 1/4096 ms (12 bits, RFC 9562 section 6.2 method 3)
//	bytes 8-15   variant 0b10 (2 bits), then 62 random bits
//
// Ids made on one node sort by creation time to about 250 ns; ids from
// different nodes never collide in practice (62 random bits per
// 244 ns slot). The zero ID is not a valid click id.
type ID [16]byte

// Len is the length of an ID's string form.
const Len = 32

// New returns a fresh id for the current time.
func New() ID { return NewAt(time.Now()) }

// NewAt returns a fresh id for time t, so a caller that has read the clock
// already can stamp the id and the click with the same instant. Times before
// the Unix epoch or after the year 10889 do not fit 48 bits of milliseconds
// and wrap.
//
// The random bits come from math/rand/v2's global source: a ChaCha8 generator
// per thread, seeded from the operating system, with no lock and no system
// call. That is enough for click ids. They must be unique, which 62 random
// bits per 1/4096 ms give with overwhelming probability, and hard to guess
// so that one click's id does not reveal its neighbours, which ChaCha8's
// output is. They need not be secrets: an id authorizes nothing on its own
// (postbacks are authenticated by each advertiser's HMAC signature, not by
// knowing a click id), so crypto/rand's system call per id would buy nothing.
func NewAt(t time.Time) ID {
	ms := uint64(t.UnixMilli())               // floors, also before 1970
	sub := uint64(t.Nanosecond() % 1_000_000) // nanoseconds into that millisecond
	frac := sub * 4096 / 1e6                  // < 4096
	rnd := rand.Uint64()

	var id ID
	id[0] = byte(ms >> 40)
	id[1] = byte(ms >> 32)
	id[2] = byte(ms >> 24)
	id[3] = byte(ms >> 16)
	id[4] = byte(ms >> 8)
	id[5] = byte(ms)
	id[6] = 0x70 | byte(frac>>8)
	id[7] = byte(frac)
	id[8] = 0x80 | byte(rnd>>56)&0x3f
	id[9] = byte(rnd >> 48)
	id[10] = byte(rnd >> 40)
	id[11] = byte(rnd >> 32)
	id[12] = byte(rnd >> 24)
	id[13] = byte(rnd >> 16)
	id[14] = byte(rnd >> 8)
	id[15] = byte(rnd)
	return id
}

const hexDigits = "0123456789abcdef"

// AppendHex appends the id's 32 lowercase hex digits to dst.
func (id ID) AppendHex(dst []byte) []byte {
	var b [Len]byte
	for i, c := range id {
		b[2*i] = hexDigits[c>>4]
		b[2*i+1] = hexDigits[c&15]
	}
	return append(dst, b[:]...)
}

// String returns the id as 32 lowercase hex digits, the form used in URLs,
// message bodies and AMQP message ids.
func (id ID) String() string {
	var b [Len]byte
	return string(id.AppendHex(b[:0]))
}

// Time returns the creation time the id carries, to 1/4096 ms, in UTC.
func (id ID) Time() time.Time {
	ms := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 |
		int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
	frac := int64(id[6]&0x0f)<<8 | int64(id[7])
	return time.UnixMilli(ms).Add(time.Duration(frac * 1e6 / 4096)).UTC()
}

// Valid reports whether id carries version 7 and the RFC 9562 variant.
func (id ID) Valid() bool {
	return id[6]>>4 == 7 && id[8]>>6 == 2
}

// Parse parses a click id. It accepts the 32-digit form the edge writes,
// which must be lowercase since ids are compared as strings downstream (the
// AMQP message id), and the canonical 36-character form with dashes
// (8-4-4-4-12), in either case, as UUID libraries print it. The id must be a
// version 7 UUID with the RFC 9562 variant. Errors wrap ErrSyntax.
func Parse(s string) (ID, error) {
	var id ID
	switch len(s) {
	case Len:
		for i := range id {
			hi, lo := unhexLower(s[2*i]), unhexLower(s[2*i+1])
			if hi > 15 || lo > 15 {
				return ID{}, syntaxError(s, "want 32 lowercase hex digits")
			}
			id[i] = hi<<4 | lo
		}
	case 36:
		j := 0
		for i := 0; i < len(s); {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return ID{}, syntaxError(s, "want dashes at 8, 13, 18 and 23")
				}
				i++
				continue
			}
			hi, lo := unhex(s[i]), unhex(s[i+1])
			if hi > 15 || lo > 15 {
				return ID{}, syntaxError(s, "not a hex digit")
			}
			id[j] = hi<<4 | lo
			i += 2
			j++
		}
	default:
		return ID{}, syntaxError(s, "want 32 hex digits")
	}
	if !id.Valid() {
		return ID{}, syntaxError(s, "not version 7 with the RFC 9562 variant")
	}
	return id, nil
}

func syntaxError(s, why string) error {
	const max = 40 // an id is 36 at most; do not echo a hostile megabyte
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Errorf("clickid: parse %q: %s: %w", s, why, ErrSyntax)
}

// unhexLower returns the value of a lowercase hex digit, or 255.
func unhexLower(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 255
}

// unhex returns the value of a hex digit of either case, or 255.
func unhex(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c - 'A' + 10
	}
	return unhexLower(c)
}
