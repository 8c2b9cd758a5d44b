package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/catalog/catalogtest"
	"github.com/clickedge/clickedge/cluster"
)

// TestAntiEntropyLargeCatalog measures a new node's first (full) pull of a
// big replicated catalog from a peer, through the real stores and the
// signed HTTP pages: CLUSTER_BENCH_LINKS=1000000 go test -run
// TestAntiEntropyLargeCatalog -v ./cmd/clickedge. Skipped without it.
func TestAntiEntropyLargeCatalog(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CLUSTER_BENCH_LINKS"))
	if n <= 0 {
		t.Skip("set CLUSTER_BENCH_LINKS to the number of links")
	}
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := catalogtest.Write(&buf, n, "json"); err != nil {
		t.Fatal(err)
	}
	open := func(name string) *catalog.Store {
		s, err := catalog.Open(filepath.Join(dir, name), &catalog.Options{Node: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	sa, sb := open("a"), open("b")
	start := time.Now()
	if _, err := sa.Seed("links.json", buf.Bytes(), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d links in %v", n, time.Since(start).Round(time.Millisecond))
	key := filepath.Join(dir, "keyring.json")
	os.WriteFile(key, []byte(`["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]`), 0o600)
	node := func(name string, st *catalog.Store, join []string) *cluster.Cluster {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		kr, err := cluster.LoadKeyring(key)
		if err != nil {
			t.Fatal(err)
		}
		cfg := cluster.DefaultConfig()
		cfg.Name, cfg.Region, cfg.Bind, cfg.Join, cfg.Keyring = name, "bench", "127.0.0.1:0", join, kr
		cfg.Meta = cluster.Meta{Region: "bench", Admin: ln.Addr().String()}
		cfg.Catalog = storeCatalog{st}
		c, err := cluster.Create(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: c.Handler("")}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close(); c.Shutdown() })
		return c
	}
	a := node("a", sa, nil)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start = time.Now()
	b := node("b", sb, []string{a.Addr()})
	for sb.Digest() != sa.Digest() {
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("not converged after 10 min: %+v", b.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	links, _ := sb.Counts()
	for b.Stats().CatalogPulls == 0 { // the pull's own bookkeeping follows its last merge
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("new node pulled %d links (%d entries, %d full pulls) in %v; process heap %d MB after (both stores in one process)",
		links, b.Stats().CatalogEntries, b.Stats().CatalogFull, took.Round(time.Millisecond), after.HeapAlloc>>20)
}
