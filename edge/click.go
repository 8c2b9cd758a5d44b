package edge

import (
	"time"
	"unicode/utf8"

	"github.com/clickedge/clickedge/catalog"
)

// schemaVersion is the click body's "v" field and the AMQP schema header.
const schemaVersion = 1

// click is one click message, schema version 1. Its strings may point into
// the request and the per-request scratch; it lives no longer than they do.
type click struct {
	ID          string    // click_id: 32 lowercase hex digits
	Time        time.Time // ts: written in UTC to the millisecond
	Link        string    // link: the code
	URL         string    // url: the target the user was sent to
	Rule        string    // rule: the rule that matched, "" for the link's url and for a paused link
	Region      string    // region
	Node        string    // node
	Country     string    // country: ISO 3166-1 alpha-2 or ""
	Subdivision string    // subdivision: ISO 3166-2 or ""
	City        string    // city or ""
	Device      string    // device: desktop | mobile | tablet | bot | unknown
	OS          string    // os
	Browser     string    // browser (the bot's name for bots)
	Lang        string    // lang: primary language tag of Accept-Language, "" when none
	Bot         bool      // bot: an automated client
	Preview     bool      // preview: a link-preview fetcher (implies bot)
	Params      catalog.Params
	Catalog     string   // catalog: version of the catalog that routed the click
	Truncated   []string // truncated: parameters whose values were cut; omitted when none
	Paused      bool     // paused: the link was paused and the user went to its fallback; omitted when false
}

// appendJSON appends the click as one JSON object. It is written by hand,
// once per click, because encoding/json's reflection costs more than the
// rest of the request; FuzzClickJSON checks that the result is always valid
// JSON that decodes to the same strings.
func (c *click) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"v":1,"click_id":`...)
	dst = appendJSONString(dst, c.ID)
	dst = append(dst, `,"ts":"`...)
	dst = appendTimestamp(dst, c.Time)
	dst = append(dst, `","link":`...)
	dst = appendJSONString(dst, c.Link)
	dst = append(dst, `,"url":`...)
	dst = appendJSONString(dst, c.URL)
	dst = append(dst, `,"rule":`...)
	dst = appendJSONString(dst, c.Rule)
	dst = append(dst, `,"region":`...)
	dst = appendJSONString(dst, c.Region)
	dst = append(dst, `,"node":`...)
	dst = appendJSONString(dst, c.Node)
	dst = append(dst, `,"country":`...)
	dst = appendJSONString(dst, c.Country)
	dst = append(dst, `,"subdivision":`...)
	dst = appendJSONString(dst, c.Subdivision)
	dst = append(dst, `,"city":`...)
	dst = appendJSONString(dst, c.City)
	dst = append(dst, `,"device":`...)
	dst = appendJSONString(dst, c.Device)
	dst = append(dst, `,"os":`...)
	dst = appendJSONString(dst, c.OS)
	dst = append(dst, `,"browser":`...)
	dst = appendJSONString(dst, c.Browser)
	dst = append(dst, `,"lang":`...)
	dst = appendJSONString(dst, c.Lang)
	dst = append(dst, `,"bot":`...)
	dst = appendBool(dst, c.Bot)
	dst = append(dst, `,"preview":`...)
	dst = appendBool(dst, c.Preview)
	dst = append(dst, `,"params":{`...)
	for i, p := range c.Params {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, p.Name)
		dst = append(dst, ':')
		dst = appendJSONString(dst, p.Value)
	}
	dst = append(dst, `},"catalog":`...)
	dst = appendJSONString(dst, c.Catalog)
	if len(c.Truncated) > 0 {
		dst = append(dst, `,"truncated":[`...)
		for i, name := range c.Truncated {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, name)
		}
		dst = append(dst, ']')
	}
	if c.Paused {
		dst = append(dst, `,"paused":true`...)
	}
	return append(dst, '}')
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, "true"...)
	}
	return append(dst, "false"...)
}

// jsonSafe marks the ASCII bytes that go into a JSON string as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// Bytes repeated over a word, for jsonPlain8.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// jsonPlain8 reports whether all 8 bytes of s go into a JSON string as
// they are: none is a control byte, '"', '\\' or non-ASCII. It tests them
// at once in a word; a false answer only sends them to the byte loop.
func jsonPlain8(s string) bool {
	_ = s[7]
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	// (v - ones) &^ v & highs is non-zero iff some byte of v is zero, and
	// (x - n*ones) &^ x & highs iff some byte of x is below n (n <= 0x80).
	ctl := (x - 0x20*ones) &^ x
	q := x ^ '"'*ones
	quote := (q - ones) &^ q
	b := x ^ '\\'*ones
	backslash := (b - ones) &^ b
	return (ctl|quote|backslash|x)&highs == 0
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// \ufffd (as encoding/json does), and U+2028 and U+2029 are escaped so the
// body is also valid JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && jsonPlain8(s[i:i+8]) {
			i += 8 // most of a click is plain ASCII: skip it a word at a time
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&15])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendTimestamp appends t in UTC as RFC 3339 with exactly three
// fractional digits: 2026-11-27T05:10:00.123Z. Faster than AppendFormat,
// and it never allocates.
func appendTimestamp(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, min, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+min/10), byte('0'+min%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}
