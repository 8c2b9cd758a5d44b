package outbox

import (
	"errors"
	"fmt"
)

// ReadPending appends to dst up to max pending records with Seq > after, in
// sequence order, stopping early once maxBytes of encoded records were read
// (at least one record is returned when any is pending; maxBytes <= 0 means
// no byte limit). It runs in a read transaction and never blocks appends.
// Delivered records are skipped a span at a time.
//
// A record that fails its checksum makes ReadPending return an error
// wrapping ErrCorrupt that names its sequence; it is never skipped.
func (o *Outbox) ReadPending(dst []Record, after uint64, max, maxBytes int) ([]Record, error) {
	return o.read(StatePending, dst, after, max, maxBytes)
}

// ReadRetained is ReadPending for delivered records kept for replay. Their
// Delivered time is the delivery of the latest record of their span (see
// delivered.go), or their own in a file written before spans.
func (o *Outbox) ReadRetained(dst []Record, after uint64, max, maxBytes int) ([]Record, error) {
	return o.read(StateDelivered, dst, after, max, maxBytes)
}

func (o *Outbox) read(state State, dst []Record, after uint64, max, maxBytes int) ([]Record, error) {
	if max <= 0 {
		return dst, nil
	}
	bytes := 0
	_, _, err := o.walk(state, after, max, func(seq uint64, bucket, v []byte, delivered int64) error {
		if maxBytes > 0 && bytes > 0 && bytes+len(v) > maxBytes {
			return errReadFull
		}
		var r Record
		if err := decodeRecord(v, &r, o.routes); err != nil {
			return corruptError(o.path, fmt.Errorf("record %d in %s: %w", seq, bucket, err))
		}
		r.Seq = seq
		if delivered != 0 && r.Delivered.IsZero() {
			r.Delivered = fromUnixNano(delivered)
		}
		dst = append(dst, r)
		bytes += len(v)
		return nil
	})
	if errors.Is(err, errReadFull) {
		err = nil
	}
	return dst, err
}

// errReadFull stops a read at its byte limit.
var errReadFull = errors.New("outbox: read limit")
