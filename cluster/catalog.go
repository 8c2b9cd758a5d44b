package cluster

import "encoding/json"

// Catalog is what anti-entropy needs of the replicated catalog. Every
// method may be called from several goroutines at once (the anti-entropy
// loop and peers' page requests) and must be thread-safe.
type Catalog interface {
	// Digest is a hash over the sorted (code, version) pairs, tombstones
	// included: equal digests mean equal catalogs.
	Digest() string

	// Version is the highest version the catalog has seen (a hybrid
	// logical clock); 0 when empty.
	Version() uint64

	// Entries returns up to limit entries whose code sorts (bytewise)
	// after the given one, in code order, tombstones included. Fewer than
	// limit means the end.
	Entries(after string, limit int) ([]Entry, error)

	// Merge applies entries by the catalog's rule (the higher (version,
	// node) wins; a tombstone is an entry) and persists them before it
	// returns. It returns how many entries changed the catalog. A bad
	// entry is skipped and reported in the error; the others still apply.
	Merge(entries []Entry) (changed int, err error)
}

// Entry is one catalog entry as peers exchange it.
type Entry struct {
	Code    string `json:"code"`
	Version uint64 `json:"version,string"`
	Node    string `json:"node"`
	Deleted bool   `json:"deleted,omitempty"`
	// Link is the link as the catalog encodes it (its JSON form); empty
	// for a tombstone.
	Link json.RawMessage `json:"link,omitempty"`
}
