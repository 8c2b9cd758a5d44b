package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// maxPage bounds the entries a peer may ask for in one page.
const maxPage = 10000

// pullRetry is how long a peer whose pull failed is left alone: a failed
// full pull is costly, and another peer may have what it had.
const pullRetry = 10 * time.Second

// catalogPage is the body of GET /cluster/v1/catalog.
type catalogPage struct {
	Entries []Entry `json:"entries"`
	Next    string  `json:"next"` // "" on the last page
}

// antiEntropyLoop compares digests every AntiEntropyInterval and pulls
// from one differing peer at a time.
func (c *Cluster) antiEntropyLoop() {
	t := time.NewTicker(c.cfg.AntiEntropyInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.antiEntropy()
	}
}

// antiEntropy pulls from the peer with the highest catalog version among
// those whose digest differs from this node's and was not pulled already.
func (c *Cluster) antiEntropy() {
	mine := c.cfg.Catalog.Digest()
	var best *Member
	var bestV uint64
	peers := c.alivePeers()
	c.mu.Lock()
	for i := range peers {
		m := &peers[i]
		d := m.Live.CatalogDigest
		if d == "" || d == mine || c.pulled[m.Name] == d || time.Now().Before(c.retryAt[m.Name]) {
			continue
		}
		v, _ := strconv.ParseUint(m.Live.CatalogVersion, 10, 64)
		if best == nil || v > bestV {
			best, bestV = m, v
		}
	}
	c.mu.Unlock()
	if best == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	changed, pages, err := c.pull(ctx, *best)
	if err != nil {
		c.pullErrors.Add(1)
		c.mu.Lock()
		c.retryAt[best.Name] = time.Now().Add(pullRetry)
		c.mu.Unlock()
		c.log.Warn("catalog pull failed; trying again later", "peer", best.Name, "retry_in", pullRetry, "err", err)
		return
	}
	c.pulls.Add(1)
	c.merged.Add(uint64(changed))
	c.mu.Lock()
	c.pulled[best.Name] = best.Live.CatalogDigest
	c.mu.Unlock()
	c.log.Info("catalog pulled from peer", "peer", best.Name, "changed", changed, "pages", pages,
		"duration_ms", time.Since(start).Milliseconds(), "digest", c.cfg.Catalog.Digest())
}

// pull pages through m's catalog and merges every page.
func (c *Cluster) pull(ctx context.Context, m Member) (changed, pages int, err error) {
	after := ""
	for {
		var page catalogPage
		q := url.Values{"after": {after}, "limit": {strconv.Itoa(c.cfg.PageSize)}}
		if err := c.call(ctx, m, http.MethodGet, "/cluster/v1/catalog?"+q.Encode(), nil, &page); err != nil {
			return changed, pages, err
		}
		pages++
		n, err := c.cfg.Catalog.Merge(page.Entries)
		changed += n
		if err != nil {
			return changed, pages, fmt.Errorf("merge page after %q: %w", after, err)
		}
		if page.Next == "" {
			return changed, pages, nil
		}
		if page.Next <= after {
			return changed, pages, errors.New("peer's page cursor went backwards")
		}
		after = page.Next
	}
}

// serveCatalog is GET /cluster/v1/catalog?after=CODE&limit=N.
func (c *Cluster) serveCatalog(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Catalog == nil {
		httpError(w, http.StatusNotFound, "this node has no replicated catalog")
		return
	}
	q := r.URL.Query()
	limit := c.cfg.PageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPage {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1..%d, got %q", maxPage, s))
			return
		}
		limit = n
	}
	entries, err := c.cfg.Catalog.Entries(q.Get("after"), limit)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	page := catalogPage{Entries: entries}
	if page.Entries == nil {
		page.Entries = []Entry{}
	}
	if len(entries) == limit {
		page.Next = entries[len(entries)-1].Code
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(page)
}
