package geo

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickedge/clickedge/edge/geo/geotest"
)

// clock is a settable Now for tests.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) now() time.Time  { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) set(t time.Time) { c.t.Store(t.UnixNano()) }

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geotest.WriteCountryDB(t, path, map[string]string{"81.2.69.0/24": "GB"})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	db := openT(t, path, &Options{Now: clk.now})
	ip := mustAddr(t, "81.2.69.142")

	if changed, err := db.Reload(); changed || err != nil {
		t.Fatalf("Reload(unchanged) = %v, %v, want false, nil", changed, err)
	}

	// Replace with a City database that says something else.
	geotest.WriteCityDB(t, path, map[string]geotest.City{"81.2.69.0/24": {Country: "FR", Subdivision: "IDF", Name: "Paris"}})
	t1 := t0.Add(time.Hour)
	clk.set(t1)
	if changed, err := db.Reload(); !changed || err != nil {
		t.Fatalf("Reload(changed) = %v, %v, want true, nil", changed, err)
	}
	if got, want := db.Lookup(ip), (Location{"FR", "FR-IDF", "Paris"}); got != want {
		t.Errorf("after reload Lookup = %+v, want %+v", got, want)
	}
	s := db.Stats()
	if s.Reloads != 1 || s.ReloadErrors != 0 || s.DatabaseType != geotest.CityType || !s.LoadedAt.Equal(t1) {
		t.Errorf("Stats() = %+v, want 1 reload, 0 errors, type %s, loaded at %v", s, geotest.CityType, t1)
	}
	if changed, err := db.Reload(); changed || err != nil {
		t.Fatalf("second Reload = %v, %v, want false, nil", changed, err)
	}
}

func TestReloadSameContentNewInode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	nets := map[string]string{"81.2.69.0/24": "GB"}
	geotest.WriteCountryDB(t, path, nets)
	db := openT(t, path, nil)
	// Same bytes, same size, maybe even the same mtime tick: the rename
	// still gives a new inode, which counts as a new version.
	geotest.WriteCountryDB(t, path, nets)
	if changed, err := db.Reload(); !changed || err != nil {
		t.Fatalf("Reload(same bytes, new inode) = %v, %v, want true, nil", changed, err)
	}
}

func TestReloadRefusesBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geotest.WriteCountryDB(t, path, map[string]string{"81.2.69.0/24": "GB"})
	logs := &lockedBuffer{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	db := openT(t, path, &Options{Now: clk.now, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ip := mustAddr(t, "81.2.69.142")
	want := Location{Country: "GB"}

	bad := []struct {
		name  string
		write func()
		is    error
	}{
		{"garbage", func() { mustWriteAtomic(t, path, []byte("<html>502 Bad Gateway</html>")) }, ErrInvalidDB},
		{"asn", func() {
			geotest.Write(t, path, geotest.Options{DatabaseType: "GeoLite2-ASN"}, nil)
		}, ErrNoCountry},
		{"removed", func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, os.ErrNotExist},
	}
	var errs uint64
	for _, b := range bad {
		b.write()
		clk.set(clk.now().Add(time.Minute))
		changed, err := db.Reload()
		if changed || !errors.Is(err, b.is) || !strings.Contains(err.Error(), path) {
			t.Fatalf("%s: Reload() = %v, %v, want false and an error naming %s that is %v", b.name, changed, err, path, b.is)
		}
		errs++
		if got := db.Lookup(ip); got != want {
			t.Fatalf("%s: Lookup after refused reload = %+v, want the old %+v", b.name, got, want)
		}
		// Unchanged bad file: same error, not counted or logged again.
		changed, err2 := db.Reload()
		if changed || err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("%s: second Reload() = %v, %v, want false, %v", b.name, changed, err2, err)
		}
		s := db.Stats()
		if s.ReloadErrors != errs || s.LastError != err.Error() || !s.LastErrorAt.Equal(clk.now()) || s.Reloads != 0 {
			t.Fatalf("%s: Stats() = %+v, want %d reload errors, last %q at %v", b.name, s, errs, err, clk.now())
		}
		if n := strings.Count(logs.String(), "reload refused"); uint64(n) != errs {
			t.Fatalf("%s: %d refusals logged, want %d:\n%s", b.name, n, errs, logs)
		}
	}

	geotest.WriteCountryDB(t, path, map[string]string{"81.2.69.0/24": "IE"})
	if changed, err := db.Reload(); !changed || err != nil {
		t.Fatalf("Reload(fixed) = %v, %v, want true, nil", changed, err)
	}
	if got := db.Lookup(ip); got.Country != "IE" {
		t.Errorf("Lookup after fix = %+v, want IE", got)
	}
	if s := db.Stats(); s.Reloads != 1 || s.ReloadErrors != errs {
		t.Errorf("Stats() = %+v, want 1 reload, %d errors", s, errs)
	}
}

func mustWriteAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := geotest.WriteFileAtomic(path, data); err != nil {
		t.Fatal(err)
	}
}

func TestPoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geotest.WriteCountryDB(t, path, map[string]string{"81.2.69.0/24": "GB"})
	db, err := Open(path, &Options{PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ip := mustAddr(t, "81.2.69.142")
	geotest.WriteCountryDB(t, path, map[string]string{"81.2.69.0/24": "NL"})
	deadline := time.Now().Add(10 * time.Second)
	for db.Lookup(ip).Country != "NL" {
		if time.Now().After(deadline) {
			t.Fatalf("poller did not pick up the new file in 10s; Stats() = %+v", db.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if s := db.Stats(); s.Reloads != 1 {
		t.Errorf("Stats().Reloads = %d, want 1", s.Reloads)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	if got := db.Lookup(ip); got != (Location{}) {
		t.Errorf("Lookup after Close = %+v, want zero", got)
	}
	if _, err := db.Reload(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reload after Close = %v, want ErrClosed", err)
	}
}

// TestConcurrentLookupsDuringReloads swaps between two databases while
// lookups run; every answer must come whole from one of them. Run with -race.
func TestConcurrentLookupsDuringReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "geo.mmdb")
	a := map[string]geotest.City{
		"81.2.69.0/24":  {Country: "GB", Subdivision: "ENG", Name: "London"},
		"2001:218::/32": {Country: "JP", Subdivision: "13", Name: "Tokyo"},
	}
	b := map[string]geotest.City{
		"81.2.69.0/24":  {Country: "FR", Subdivision: "IDF", Name: "Paris"},
		"2001:218::/32": {Country: "KR", Subdivision: "11", Name: "Seoul"},
	}
	geotest.WriteCityDB(t, path, a)
	db := openT(t, path, &Options{CacheSize: 4})

	ips := []netip.Addr{mustAddr(t, "81.2.69.1"), mustAddr(t, "2001:218::1"), mustAddr(t, "::ffff:81.2.69.200"), mustAddr(t, "8.8.8.8")}
	allowed := map[Location]bool{
		{"GB", "GB-ENG", "London"}: true, {"JP", "JP-13", "Tokyo"}: true,
		{"FR", "FR-IDF", "Paris"}: true, {"KR", "KR-11", "Seoul"}: true,
		{}: true,
	}
	var stop atomic.Bool
	var bad atomic.Value
	var lookups atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; !stop.Load(); i++ {
				loc := db.Lookup(ips[i%len(ips)])
				if !allowed[loc] {
					bad.Store(loc)
				}
				lookups.Add(1)
			}
		}()
	}
	const reloads = 30
	for i := range reloads {
		if i%2 == 0 {
			geotest.WriteCityDB(t, path, b)
		} else {
			geotest.WriteCityDB(t, path, a)
		}
		if changed, err := db.Reload(); !changed || err != nil {
			t.Errorf("Reload %d = %v, %v, want true, nil", i, changed, err)
		}
	}
	// Let the lookups see the last version at least once.
	for start := lookups.Load(); lookups.Load() < start+100; {
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("a lookup returned %+v, which neither database holds", v)
	}
	if s := db.Stats(); s.Reloads != reloads || s.LookupErrors != 0 {
		t.Errorf("Stats() = %+v, want %d reloads and no lookup errors", s, reloads)
	}
	if got, want := db.Lookup(ips[0]), (Location{"GB", "GB-ENG", "London"}); got != want {
		t.Errorf("final Lookup = %+v, want %+v", got, want)
	}
}

func TestFileInfoSame(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi1, _ := os.Stat(p)
	info := newFileInfo(fi1)
	if !info.same(fi1) {
		t.Fatal("same(itself) = false")
	}
	if err := os.Chtimes(p, time.Time{}, fi1.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(p)
	if info.same(fi2) {
		t.Error("same(touched file) = true, want false")
	}
	if (fileInfo{}).same(fi1) {
		t.Error("zero fileInfo same = true, want false")
	}
}

func TestReloadBadFileComesBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geotest.WriteCountryDB(t, path, map[string]string{"81.2.69.0/24": "GB"})
	db := openT(t, path, nil)
	mustWriteAtomic(t, path, []byte("garbage"))
	_, errBad := db.Reload()
	if !errors.Is(errBad, ErrInvalidDB) {
		t.Fatalf("Reload(garbage) = %v, want ErrInvalidDB", errBad)
	}
	if err := os.Rename(path, path+".bak"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Reload(missing) = %v, want ErrNotExist", err)
	}
	// The same bad file (same inode and mtime) comes back: it is refused
	// with its own error, and not counted again.
	if err := os.Rename(path+".bak", path); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Reload(); err == nil || err.Error() != errBad.Error() {
		t.Fatalf("Reload(bad file back) = %v, want %v", err, errBad)
	}
	if s := db.Stats(); s.ReloadErrors != 2 {
		t.Errorf("Stats().ReloadErrors = %d, want 2", s.ReloadErrors)
	}
}
