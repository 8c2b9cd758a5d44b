package outbox

import (
	"encoding/binary"
	"testing"

	bolt "go.etcd.io/bbolt"
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
	dst, err := appendHeaders(dst, r.Headers)
	if err != nil {
		panic(err)
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

// oldRecord is a record of a file written before format 3: v is its
// format-1 encoding; delivered ones go, in file format 1, moved into the
// retained bucket (v marked delivered), in file format 2, into a span.
type oldRecord struct {
	v         []byte
	delivered int64 // Unix nanoseconds; 0 while pending
}

// writeOldFile writes recs, with sequences from 1, into a new file of
// file format format (1 or 2) at path, with its counters, as those builds
// left it.
func writeOldFile(t *testing.T, path string, format uint64, recs []oldRecord) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var c counts
	err = db.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucket(bucketMeta)
		p, _ := tx.CreateBucket(bucketPending)
		r, _ := tx.CreateBucket(bucketRetained)
		var d *bolt.Bucket
		if format >= 2 {
			d, _ = tx.CreateBucket(bucketDelivered)
		}
		for i, rec := range recs {
			k := seqKey(uint64(i + 1))
			v := rec.v
			switch {
			case rec.delivered == 0:
				p.Put(k[:], v)
				c.pendingCount++
				c.pendingBytes += int64(len(v))
				continue
			case format == 1:
				v = markDelivered(nil, v, fromUnixNano(rec.delivered))
				r.Put(k[:], v)
			default:
				p.Put(k[:], v)
				s := span{first: uint64(i + 1), last: uint64(i + 1), since: rec.delivered, at: rec.delivered, bytes: int64(len(v))}
				d.Put(k[:], s.value())
			}
			c.retainedCount++
			c.retainedBytes += int64(len(v))
		}
		c.nextSeq = uint64(len(recs) + 1)
		if err := putUint64(m, metaFormat, format); err != nil {
			return err
		}
		return c.put(m)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
}
