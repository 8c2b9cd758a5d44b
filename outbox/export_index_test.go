package outbox

import bolt "go.etcd.io/bbolt"

// IndexCounts returns the number of elements of the index buckets, expired
// ones included, for the index tests.
func IndexCounts(o *Outbox) (entries, expiries int) {
	_ = o.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketIndex); b != nil {
			entries = b.Stats().KeyN
		}
		if b := tx.Bucket(bucketIndexExpiry); b != nil {
			expiries = b.Stats().KeyN
		}
		return nil
	})
	return entries, expiries
}
