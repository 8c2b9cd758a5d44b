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

const (
	// maxPage bounds the entries a peer may ask for in one page.
	maxPage = 10000
	// scanChunk is how many entries a page request reads at a time while
	// it looks for entries newer than "since".
	scanChunk = 4096
	// maxScan bounds the entries one page request reads, so that a
	// request for a few changes in a huge catalog answers in bounded time
	// (the client follows "next").
	maxScan = 1 << 20
	// pullRetry is how long a peer whose pull failed is left alone: a
	// failed pull may be costly, and another peer may have what it had.
	pullRetry = 10 * time.Second
)

// catalogPage is the body of GET /cluster/v1/catalog.
type catalogPage struct {
	Entries []Entry `json:"entries"`
	Next    string  `json:"next"` // "" on the last page
	// Version is the serving catalog's version when the page was read:
	// every entry written there later has a higher one.
	Version uint64 `json:"version,string"`
}

// pullState is what this node remembers of its pulls from one peer.
type pullState struct {
	digest     string    // the peer's digest at the last pull (incremental or full)
	fullDigest string    // the peer's digest at the last full pull
	watermark  uint64    // the peer's version when that pull began: later writes there are above it
	diffSince  time.Time // since when the peer's digest, already pulled, still differs from ours
	retryAt    time.Time // no pull before this, after a failure
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

// antiEntropy picks, among peers whose digest differs from this node's,
// the one with the highest catalog version that needs a pull, and pulls:
//
//   - a digest not pulled before: the entries written since the watermark
//     of the last pull from that peer (everything, the first time);
//   - a digest already pulled that still differs after FullPullAfter: every
//     entry. That catches entries the peer merged from elsewhere with
//     versions below the watermark; if the difference is on this node's
//     side instead, the peer pulls from here.
func (c *Cluster) antiEntropy() {
	mine := c.cfg.Catalog.Digest()
	now := time.Now()
	var best *Member
	var bestV, since uint64
	full := false
	peers := c.alivePeers()
	c.mu.Lock()
	for i := range peers {
		m := &peers[i]
		d := m.Live.CatalogDigest
		st := c.pulls[m.Name]
		if st == nil {
			st = &pullState{}
			c.pulls[m.Name] = st
		}
		if d == "" || d == mine {
			st.diffSince = time.Time{}
			continue
		}
		if now.Before(st.retryAt) || d == st.fullDigest {
			continue
		}
		mFull, mSince := false, st.watermark
		if d == st.digest {
			if st.diffSince.IsZero() {
				st.diffSince = now
			}
			if now.Sub(st.diffSince) < c.cfg.FullPullAfter {
				continue
			}
			mFull, mSince = true, 0
		}
		v, _ := strconv.ParseUint(m.Live.CatalogVersion, 10, 64)
		if best == nil || v > bestV {
			best, bestV, since, full = m, v, mSince, mFull || mSince == 0
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
	res, err := c.pull(ctx, *best, since)
	c.entriesPulled.Add(uint64(res.entries))
	c.merged.Add(uint64(res.changed))
	c.mu.Lock()
	st := c.pulls[best.Name]
	if st == nil { // pruned meanwhile
		st = &pullState{}
		c.pulls[best.Name] = st
	}
	if err != nil {
		st.retryAt = time.Now().Add(pullRetry)
		c.mu.Unlock()
		c.pullErrors.Add(1)
		c.log.Warn("catalog pull failed; trying again later", "peer", best.Name, "full", full,
			"retry_in", pullRetry, "err", err)
		return
	}
	st.digest, st.watermark, st.diffSince = best.Live.CatalogDigest, res.version, time.Time{}
	if full {
		st.fullDigest = best.Live.CatalogDigest
	}
	c.mu.Unlock()
	c.pullsOK.Add(1)
	if full {
		c.fullPulls.Add(1)
	}
	c.log.Info("catalog pulled from peer", "peer", best.Name, "full", full, "since", since,
		"entries", res.entries, "changed", res.changed, "pages", res.pages,
		"duration_ms", time.Since(start).Milliseconds(), "digest", c.cfg.Catalog.Digest())
}

// pullResult says what one pull did.
type pullResult struct {
	entries, changed, pages int
	version                 uint64 // the peer's version at the first page
}

// pull pages through m's entries newer than since (all for 0) and merges
// them in batches of up to MergeBatch entries: each Merge persists (an
// fsync) and may rebuild the served snapshot, so fewer, bigger merges make
// a big catch-up much cheaper, for a bounded amount of memory.
func (c *Cluster) pull(ctx context.Context, m Member, since uint64) (pullResult, error) {
	var res pullResult
	var batch []Entry
	after := ""
	merge := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := c.cfg.Catalog.Merge(batch)
		res.changed += n
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("merge entries up to %q: %w", after, err)
		}
		return nil
	}
	for {
		var page catalogPage
		q := url.Values{"after": {after}, "limit": {strconv.Itoa(c.cfg.PageSize)}}
		if since > 0 {
			q.Set("since", strconv.FormatUint(since, 10))
		}
		if err := c.call(ctx, m, http.MethodGet, "/cluster/v1/catalog?"+q.Encode(), nil, &page); err != nil {
			if merr := merge(); merr != nil { // keep what arrived
				return res, errors.Join(err, merr)
			}
			return res, err
		}
		if res.pages == 0 {
			res.version = page.Version
		}
		res.pages++
		res.entries += len(page.Entries)
		batch = append(batch, page.Entries...)
		if page.Next != "" && page.Next <= after {
			return res, errors.Join(errors.New("peer's page cursor went backwards"), merge())
		}
		after = page.Next
		if len(batch) >= c.cfg.MergeBatch || after == "" {
			if err := merge(); err != nil {
				return res, err
			}
		}
		if after == "" {
			return res, nil
		}
	}
}

// serveCatalog is GET /cluster/v1/catalog?after=CODE&limit=N[&since=V]:
// up to N entries (tombstones included) with codes after CODE and, with
// since, versions above V; "next" continues the scan.
func (c *Cluster) serveCatalog(w http.ResponseWriter, r *http.Request) {
	cat := c.cfg.Catalog
	if cat == nil {
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
	var since uint64
	if s := q.Get("since"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("since must be a version (decimal uint64), got %q", s))
			return
		}
		since = v
	}
	page := catalogPage{Entries: []Entry{}, Version: cat.Version()}
	cursor, scanned := q.Get("after"), 0
	chunk := limit
	if since > 0 {
		chunk = max(limit, scanChunk)
	}
scan:
	for {
		es, err := cat.Entries(cursor, chunk)
		if err != nil {
			httpError(w, http.StatusInternalServerError, err.Error())
			return
		}
		for _, e := range es {
			cursor = e.Code
			if since > 0 && e.Version <= since {
				continue
			}
			page.Entries = append(page.Entries, e)
			if len(page.Entries) == limit {
				page.Next = cursor
				break scan
			}
		}
		scanned += len(es)
		switch {
		case len(es) < chunk:
			break scan // the end: Next stays ""
		case scanned >= maxScan:
			page.Next = cursor
			break scan
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(page)
}
