package cluster

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"testing"
)

// sliceCatalog is a sorted, read-only Catalog for page tests.
type sliceCatalog []Entry

func (s sliceCatalog) Digest() string  { return "" }
func (s sliceCatalog) Version() uint64 { return uint64(len(s)) }
func (s sliceCatalog) Merge([]Entry) (int, error) {
	return 0, nil
}
func (s sliceCatalog) Entries(after string, limit int) ([]Entry, error) {
	i := sort.Search(len(s), func(i int) bool { return s[i].Code > after })
	return s[i:min(len(s), i+limit)], nil
}

// Paging with and without "since" returns exactly the entries asked for,
// each once, whatever the page size.
func TestServeCatalogPages(t *testing.T) {
	var cat sliceCatalog
	for i := range 9000 {
		cat = append(cat, Entry{Code: fmt.Sprintf("c%05d", i), Version: uint64(i % 100), Node: "n", Link: json.RawMessage(`{}`)})
	}
	c := &Cluster{cfg: Config{Catalog: cat, PageSize: 2000}}
	for _, tc := range []struct{ since, limit, want int }{
		{0, 7, 9000}, {0, 2000, 9000}, {98, 5, 90}, {98, 1000, 90}, {50, 3, 4410}, {99, 10, 0},
	} {
		got, pages, after := 0, 0, ""
		seen := map[string]bool{}
		for {
			q := url.Values{"after": {after}, "limit": {strconv.Itoa(tc.limit)}}
			if tc.since > 0 {
				q.Set("since", strconv.Itoa(tc.since))
			}
			w := httptest.NewRecorder()
			c.serveCatalog(w, httptest.NewRequest("GET", "/cluster/v1/catalog?"+q.Encode(), nil))
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			var p catalogPage
			json.Unmarshal(w.Body.Bytes(), &p)
			pages++
			for _, e := range p.Entries {
				if seen[e.Code] || int(e.Version) <= tc.since && tc.since > 0 {
					t.Fatalf("since %d: entry %+v twice or not newer", tc.since, e)
				}
				seen[e.Code] = true
				got++
			}
			if p.Next == "" {
				break
			}
			after = p.Next
		}
		if got != tc.want {
			t.Errorf("since %d limit %d: %d entries in %d pages, want %d", tc.since, tc.limit, got, pages, tc.want)
		}
	}
	for _, q := range []string{"limit=0", "limit=10001", "limit=x", "since=-1", "since=x"} {
		w := httptest.NewRecorder()
		c.serveCatalog(w, httptest.NewRequest("GET", "/cluster/v1/catalog?"+q, nil))
		if w.Code != 400 {
			t.Errorf("?%s = %d, want 400", q, w.Code)
		}
	}
}
