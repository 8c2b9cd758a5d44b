// Package clustertest holds test helpers for the cluster package and its
// users: an in-memory replicated catalog with the catalog's merge rule.
package clustertest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/clickedge/clickedge/cluster"
)

// Catalog is an in-memory cluster.Catalog: a map from code to entry where
// the higher (version, node) wins. Safe for concurrent use.
type Catalog struct {
	mu      sync.Mutex
	entries map[string]cluster.Entry
	merges  int // Merge calls, for tests that count pulls
}

var _ cluster.Catalog = (*Catalog)(nil)

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog { return &Catalog{entries: make(map[string]cluster.Entry)} }

// Put writes a link (its JSON) at version by node, as the admin API would.
func (c *Catalog) Put(code string, link any, version uint64, node string) {
	b, _ := json.Marshal(link)
	c.Merge([]cluster.Entry{{Code: code, Version: version, Node: node, Link: b}})
}

// Delete writes a tombstone.
func (c *Catalog) Delete(code string, version uint64, node string) {
	c.Merge([]cluster.Entry{{Code: code, Version: version, Node: node, Deleted: true}})
}

// Get returns the entry of code.
func (c *Catalog) Get(code string) (cluster.Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[code]
	return e, ok
}

// Len counts entries, tombstones included.
func (c *Catalog) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Digest hashes the sorted (code, version, node, deleted) tuples.
func (c *Catalog) Digest() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	codes := make([]string, 0, len(c.entries))
	for k := range c.entries {
		codes = append(codes, k)
	}
	sort.Strings(codes)
	h := sha256.New()
	for _, k := range codes {
		e := c.entries[k]
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00%t\n", k, e.Version, e.Node, e.Deleted)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Version is the highest version held.
func (c *Catalog) Version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v uint64
	for _, e := range c.entries {
		v = max(v, e.Version)
	}
	return v
}

// Entries pages in code order.
func (c *Catalog) Entries(after string, limit int) ([]cluster.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	codes := make([]string, 0, len(c.entries))
	for k := range c.entries {
		if k > after {
			codes = append(codes, k)
		}
	}
	slices.Sort(codes)
	if len(codes) > limit {
		codes = codes[:limit]
	}
	out := make([]cluster.Entry, len(codes))
	for i, k := range codes {
		out[i] = c.entries[k]
	}
	return out, nil
}

// Merge applies the higher (version, node) per code.
func (c *Catalog) Merge(entries []cluster.Entry) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.merges++
	n := 0
	var errs []error
	for _, e := range entries {
		if e.Code == "" || (!e.Deleted && len(e.Link) == 0) {
			errs = append(errs, fmt.Errorf("entry %q: no code or no link", e.Code))
			continue
		}
		old, ok := c.entries[e.Code]
		if ok && (old.Version > e.Version || old.Version == e.Version && old.Node >= e.Node) {
			continue
		}
		c.entries[e.Code] = e
		n++
	}
	return n, errors.Join(errs...)
}

// Merges counts Merge calls.
func (c *Catalog) Merges() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.merges
}
