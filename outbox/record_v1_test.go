package outbox

import (
	"encoding/binary"
	"fmt"
)

// appendRecordV1 is the encoder of record format 1, as builds before file
// format 3 wrote every record (route inline, message id before the
// headers), kept so that tests can build the files those builds left.
func appendRecordV1(dst []byte, r *Record) []byte {
	start := len(dst)
	dst = append(dst, recordV1, 0, 0, 0, 0)
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
		default:
			panic(fmt.Sprintf("header type %T", v))
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Body)))
	dst = append(dst, r.Body...)
	sealRecord(dst[start:])
	return dst
}

// mustInline is encodeInline for tests.
func mustInline(r *Record) []byte {
	b, err := encodeInline(r)
	if err != nil {
		panic(err)
	}
	return b
}
