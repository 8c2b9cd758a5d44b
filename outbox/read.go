package outbox

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ReadPending appends to dst up to max pending records with Seq > after, in
// sequence order, stopping early once maxBytes of encoded records were read
// (at least one record is returned when any is pending; maxBytes <= 0 means
// no byte limit). It runs in a read transaction and never blocks appends.
//
// A record that fails its checksum makes ReadPending return an error
// wrapping ErrCorrupt that names its sequence; it is never skipped.
func (o *Outbox) ReadPending(dst []Record, after uint64, max, maxBytes int) ([]Record, error) {
	return o.read(bucketPending, dst, after, max, maxBytes)
}

// ReadRetained is ReadPending for delivered records kept for replay.
func (o *Outbox) ReadRetained(dst []Record, after uint64, max, maxBytes int) ([]Record, error) {
	return o.read(bucketRetained, dst, after, max, maxBytes)
}

func (o *Outbox) read(bucket []byte, dst []Record, after uint64, max, maxBytes int) ([]Record, error) {
	if max <= 0 {
		return dst, nil
	}
	err := o.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k0 := seqKey(after + 1)
		bytes := 0
		for k, v := c.Seek(k0[:]); k != nil && max > 0; k, v = c.Next() {
			if maxBytes > 0 && bytes > 0 && bytes+len(v) > maxBytes {
				break
			}
			seq := keySeq(k)
			var r Record
			if err := decodeRecord(v, &r); err != nil {
				return corruptError(o.path, fmt.Errorf("record %d in %s: %w", seq, bucket, err))
			}
			r.Seq = seq
			dst = append(dst, r)
			bytes += len(v)
			max--
		}
		return nil
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return dst, ErrClosed
	}
	return dst, err
}
