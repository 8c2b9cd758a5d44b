package cluster_test

import (
	"fmt"
	"testing"
	"time"

	. "github.com/clickedge/clickedge/cluster"
	"github.com/clickedge/clickedge/cluster/clustertest"
)

// A change written on any node reaches every node of the pool within 5 s
// with no broker at all (the region is cut off from the centre): digests
// differ, nodes pull pages from a peer and merge. Deletes travel as
// tombstones; concurrent writes converge on the higher version.
func TestAntiEntropyWithoutCentre(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "k.json", newKey(3, 32))
	cats := []*clustertest.Catalog{clustertest.NewCatalog(), clustertest.NewCatalog(), clustertest.NewCatalog()}
	// A seeded catalog bigger than a page, on a only.
	for i := range 25 {
		cats[0].Put(fmt.Sprintf("seed-%02d", i), map[string]string{"url": "https://x.example/"}, uint64(100+i), "file")
	}
	a := startNode(t, nodeOpts{name: "a", keyFile: key, catalog: cats[0]})
	b := startNode(t, nodeOpts{name: "b", keyFile: key, catalog: cats[1], join: []string{a.Addr()}})
	c := startNode(t, nodeOpts{name: "c", keyFile: key, catalog: cats[2], join: []string{a.Addr()}})
	allAlive(t, 10*time.Second, a, b, c)
	converged := func(what string) time.Duration {
		t.Helper()
		return waitFor(t, 5*time.Second, func() string {
			return fmt.Sprintf("%s: digests %s %s %s, sizes %d %d %d", what,
				cats[0].Digest()[:8], cats[1].Digest()[:8], cats[2].Digest()[:8], cats[0].Len(), cats[1].Len(), cats[2].Len())
		}, func() bool {
			d := cats[0].Digest()
			return cats[1].Digest() == d && cats[2].Digest() == d
		})
	}
	t.Logf("initial catalog (25 entries, pages of 10) everywhere after %v", converged("initial"))

	cats[1].Put("tv-sale", map[string]string{"url": "https://shop.example/tv"}, 1000, "b")
	t.Logf("a link written on b everywhere after %v", converged("put on b"))
	if e, ok := cats[2].Get("tv-sale"); !ok || e.Node != "b" {
		t.Fatalf("c's tv-sale = %+v, %v", e, ok)
	}

	cats[2].Delete("seed-03", 1001, "c")
	t.Logf("a delete on c everywhere after %v", converged("delete on c"))
	if e, _ := cats[0].Get("seed-03"); !e.Deleted {
		t.Fatalf("a's seed-03 = %+v, want a tombstone", e)
	}

	// Concurrent writes of one code on two nodes: the higher version wins
	// everywhere.
	cats[0].Put("race", map[string]string{"url": "https://a.example/"}, 2000, "a")
	cats[2].Put("race", map[string]string{"url": "https://c.example/"}, 2001, "c")
	converged("concurrent writes")
	for i, cat := range cats {
		if e, _ := cat.Get("race"); e.Version != 2001 || e.Node != "c" {
			t.Errorf("node %d: race = %+v, want c's version 2001", i, e)
		}
	}
	if s := b.Stats(); s.CatalogPulls == 0 || s.CatalogMerged == 0 {
		t.Errorf("b's stats %+v: want pulls and merged entries counted", s)
	}
}

// A node that joins late, with an empty catalog, gets everything; a node
// restarted after missing changes catches up.
func TestAntiEntropyCatchUp(t *testing.T) {
	ca, cb := clustertest.NewCatalog(), clustertest.NewCatalog()
	for i := range 57 {
		ca.Put(fmt.Sprintf("l%03d", i), map[string]int{"i": i}, uint64(i+1), "a")
	}
	ca.Delete("l010", 500, "a")
	a := startNode(t, nodeOpts{name: "a", catalog: ca})
	startNode(t, nodeOpts{name: "b", catalog: cb, join: []string{a.Addr()}})
	took := waitFor(t, 5*time.Second, func() string { return fmt.Sprintf("b holds %d of %d", cb.Len(), ca.Len()) },
		func() bool { return cb.Digest() == ca.Digest() })
	t.Logf("late joiner has 57 entries (6 pages) after %v", took)
	if e, _ := cb.Get("l010"); !e.Deleted {
		t.Errorf("tombstone not pulled: %+v", e)
	}
}

var _ Catalog = (*clustertest.Catalog)(nil)

// After the first (full) pull, a change costs one entry on the wire: pulls
// ask for the entries above the peer's version at the previous pull.
func TestAntiEntropyIncremental(t *testing.T) {
	ca, cb := clustertest.NewCatalog(), clustertest.NewCatalog()
	for i := range 500 {
		ca.Put(fmt.Sprintf("l%03d", i), map[string]int{"i": i}, uint64(1000+i), "a")
	}
	a := startNode(t, nodeOpts{name: "a", catalog: ca})
	b := startNode(t, nodeOpts{name: "b", catalog: cb, join: []string{a.Addr()}})
	waitFor(t, 5*time.Second, func() string { return fmt.Sprintf("b holds %d", cb.Len()) },
		func() bool { return cb.Digest() == ca.Digest() })
	s0 := b.Stats()
	if s0.CatalogFull != 1 || s0.CatalogEntries != 500 {
		t.Fatalf("first sync: %+v, want one full pull of 500 entries", s0)
	}
	ca.Put("new", map[string]int{"i": -1}, 5000, "a")
	waitFor(t, 5*time.Second, func() string { return "b lacks new" }, func() bool { return cb.Digest() == ca.Digest() })
	s1 := b.Stats()
	if s1.CatalogFull != 1 || s1.CatalogEntries-s0.CatalogEntries != 1 {
		t.Fatalf("after one change: %+v (before %+v), want one more entry and no full pull", s1, s0)
	}
}

// An entry that reaches a peer late with a version below what was pulled
// from it (merged there from the feed or another node) is not in an
// incremental pull; the difference persists, and a full pull after
// FullPullAfter brings it.
func TestAntiEntropyFullPullFallback(t *testing.T) {
	ca, cb := clustertest.NewCatalog(), clustertest.NewCatalog()
	ca.Put("x", map[string]int{"i": 1}, 1000, "a")
	a := startNode(t, nodeOpts{name: "a", catalog: ca})
	b := startNode(t, nodeOpts{name: "b", catalog: cb, join: []string{a.Addr()}})
	waitFor(t, 5*time.Second, func() string { return "first sync" }, func() bool { return cb.Digest() == ca.Digest() })

	ca.Put("old", map[string]int{"i": 2}, 10, "q") // written long ago elsewhere
	took := waitFor(t, 10*time.Second, func() string { return fmt.Sprintf("b: %+v", b.Stats()) },
		func() bool { return cb.Digest() == ca.Digest() })
	if s := b.Stats(); s.CatalogFull != 2 {
		t.Fatalf("stats %+v: want a second, full pull", s)
	}
	t.Logf("late old entry pulled after %v (FullPullAfter 500ms)", took)
}
