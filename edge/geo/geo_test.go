package geo

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/geoip2-golang/v2"

	"github.com/clickedge/clickedge/edge/geo/geotest"
)

var countryNets = map[string]string{
	"81.2.69.0/24":   "GB",
	"89.160.20.0/22": "SE",
	"5.9.0.0/16":     "DE",
	"10.0.0.0/8":     "US",
	"2001:218::/32":  "JP",
	"2a02:2e0::/32":  "DE",
}

var cityNets = map[string]geotest.City{
	"81.2.69.0/24":   {Country: "GB", Subdivision: "GB-ENG", Name: "London"},
	"89.160.20.0/22": {Country: "SE", Subdivision: "E", Name: "Linköping"},
	"5.9.0.0/16":     {Country: "DE", Subdivision: "DE-BY", Name: "Munich"},
	"5.10.0.0/16":    {Country: "DE"}, // country only
	"2001:218::/32":  {Country: "JP", Subdivision: "JP-13", Name: "Tokyo"},
	"2a02:2e0::/32":  {Country: "DE", Subdivision: "DE-BE", Name: "Berlin"},
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func openT(t *testing.T, path string, opts *Options) *DB {
	t.Helper()
	db, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestLookupCountry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geotest.WriteCountryDB(t, path, countryNets)
	db := openT(t, path, nil)

	tests := []struct {
		ip   string
		want Location
	}{
		{"81.2.69.142", Location{Country: "GB"}},
		{"89.160.23.255", Location{Country: "SE"}},
		{"5.9.1.2", Location{Country: "DE"}},
		{"10.1.2.3", Location{Country: "US"}},
		{"2001:218:1::1", Location{Country: "JP"}},
		{"2a02:2e0:ffff::1", Location{Country: "DE"}},
		{"::ffff:81.2.69.142", Location{Country: "GB"}}, // IPv4-mapped IPv6
		{"fe80::1%eth0", Location{}},                    // zone, not in DB
		{"2a02:2e0::1%eth0", Location{Country: "DE"}},   // zone ignored
		{"1.1.1.1", Location{}},                         // unknown
		{"2606:4700::1111", Location{}},                 // unknown IPv6
		{"0.0.0.0", Location{}},
	}
	for _, tt := range tests {
		if got := db.Lookup(mustAddr(t, tt.ip)); got != tt.want {
			t.Errorf("Lookup(%s) = %+v, want %+v", tt.ip, got, tt.want)
		}
	}
	if got := db.Lookup(netip.Addr{}); got != (Location{}) {
		t.Errorf("Lookup(invalid) = %+v, want zero", got)
	}
	// Repeated lookups come from the cache and must agree.
	for range 3 {
		if got := db.Lookup(mustAddr(t, "5.9.1.2")); got.Country != "DE" {
			t.Fatalf("cached Lookup(5.9.1.2) = %+v, want DE", got)
		}
	}
	if s := db.Stats(); s.LookupErrors != 0 || s.DatabaseType != geotest.CountryType {
		t.Errorf("Stats() = %+v, want no lookup errors and type %s", s, geotest.CountryType)
	}
}

func TestLookupCity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.WriteCityDB(t, path, cityNets)
	db := openT(t, path, nil)

	tests := []struct {
		ip   string
		want Location
	}{
		{"81.2.69.142", Location{"GB", "GB-ENG", "London"}},
		{"89.160.20.112", Location{"SE", "SE-E", "Linköping"}},
		{"5.9.200.1", Location{"DE", "DE-BY", "Munich"}},
		{"5.10.0.1", Location{Country: "DE"}},
		{"2001:218::5", Location{"JP", "JP-13", "Tokyo"}},
		{"::ffff:5.9.200.1", Location{"DE", "DE-BY", "Munich"}},
		{"2a02:2e0::1", Location{"DE", "DE-BE", "Berlin"}},
		{"8.8.8.8", Location{}},
	}
	for _, tt := range tests {
		for pass := range 2 { // decode, then cache
			if got := db.Lookup(mustAddr(t, tt.ip)); got != tt.want {
				t.Errorf("pass %d: Lookup(%s) = %+v, want %+v", pass, tt.ip, got, tt.want)
			}
		}
	}
}

// TestLookupMatchesGeoIP2 checks the hand-written decoder against the full
// geoip2 City model on the same file.
func TestLookupMatchesGeoIP2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.WriteCityDB(t, path, cityNets)
	db := openT(t, path, &Options{CacheSize: -1})
	ref, err := geoip2.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for _, s := range []string{"81.2.69.1", "89.160.21.4", "5.9.0.0", "5.10.255.255", "2001:218::", "2a02:2e0::9", "9.9.9.9"} {
		ip := mustAddr(t, s)
		c, err := ref.City(ip)
		if err != nil {
			t.Fatalf("geoip2 City(%s): %v", s, err)
		}
		want := Location{Country: c.Country.ISOCode, City: c.City.Names.English}
		if len(c.Subdivisions) > 0 {
			want.Subdivision = c.Country.ISOCode + "-" + c.Subdivisions[0].ISOCode
		}
		if got := db.Lookup(ip); got != want {
			t.Errorf("Lookup(%s) = %+v, geoip2 says %+v", s, got, want)
		}
	}
}

func TestLookupRegisteredCountryFallback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geotest.Write(t, path, geotest.Options{DatabaseType: "GeoIP2-Country"}, map[string]mmdbtype.Map{
		"81.2.69.0/24": {
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("GB")},
		},
		"81.2.70.0/24": {
			"country":            mmdbtype.Map{"iso_code": mmdbtype.String("FR")},
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("GB")},
		},
		"81.2.71.0/24": {"continent": mmdbtype.Map{"code": mmdbtype.String("EU")}},
	})
	db := openT(t, path, nil)
	for ip, want := range map[string]string{"81.2.69.1": "GB", "81.2.70.1": "FR", "81.2.71.1": ""} {
		if got := db.Lookup(mustAddr(t, ip)); got != (Location{Country: want}) {
			t.Errorf("Lookup(%s) = %+v, want Country %q", ip, got, want)
		}
	}
}

func TestLookupIPv4OnlyDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v4.mmdb")
	geotest.Write(t, path, geotest.Options{IPVersion: 4, RecordSize: 24}, map[string]mmdbtype.Map{
		"81.2.69.0/24": geotest.CountryRecord("GB"),
	})
	db := openT(t, path, nil)
	tests := []struct {
		ip   string
		want string
	}{
		{"81.2.69.142", "GB"},
		{"::ffff:81.2.69.142", "GB"},
		{"2001:218::1", ""},
		{"1.2.3.4", ""},
	}
	for _, tt := range tests {
		if got := db.Lookup(mustAddr(t, tt.ip)); got.Country != tt.want {
			t.Errorf("Lookup(%s) = %+v, want Country %q", tt.ip, got, tt.want)
		}
	}
	if n := db.Stats().LookupErrors; n != 0 {
		t.Errorf("LookupErrors = %d, want 0 (IPv6 in an IPv4 database is unknown, not an error)", n)
	}
}

func TestRecordSizes(t *testing.T) {
	for _, size := range []int{24, 28, 32} {
		path := filepath.Join(t.TempDir(), "c.mmdb")
		geotest.Write(t, path, geotest.Options{RecordSize: size, DatabaseType: geotest.CityType}, map[string]mmdbtype.Map{
			"5.9.0.0/16":    geotest.CityRecord(geotest.City{Country: "DE", Subdivision: "BY", Name: "Munich"}),
			"2001:218::/32": geotest.CityRecord(geotest.City{Country: "JP"}),
		})
		db := openT(t, path, nil)
		if got, want := db.Lookup(mustAddr(t, "5.9.0.1")), (Location{"DE", "DE-BY", "Munich"}); got != want {
			t.Errorf("record size %d: Lookup(5.9.0.1) = %+v, want %+v", size, got, want)
		}
		if got := db.Lookup(mustAddr(t, "2001:218::1")); got.Country != "JP" {
			t.Errorf("record size %d: Lookup(2001:218::1) = %+v, want JP", size, got)
		}
	}
}

func TestLookupDecodeErrorCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd.mmdb")
	// A record whose country is a string, not a map: the file is a valid
	// MaxMind DB, but not in the GeoIP2 layout.
	geotest.Write(t, path, geotest.Options{}, map[string]mmdbtype.Map{
		"81.2.69.0/24": {"country": mmdbtype.String("GB")},
	})
	db := openT(t, path, nil)
	if got := db.Lookup(mustAddr(t, "81.2.69.1")); got != (Location{}) {
		t.Errorf("Lookup(bad record) = %+v, want zero", got)
	}
	if n := db.Stats().LookupErrors; n != 1 {
		t.Errorf("LookupErrors = %d, want 1", n)
	}
}

func TestCacheSizes(t *testing.T) {
	nets := map[string]geotest.City{}
	want := map[string]Location{}
	for i := range 200 {
		ip := netip.AddrFrom4([4]byte{20, byte(i), 0, 0})
		cc := string([]byte{'A' + byte(i%26), 'A' + byte(i/26)})
		name := "City" + ip.String()
		nets[ip.String()+"/16"] = geotest.City{Country: cc, Subdivision: "S", Name: name}
		want[ip.Next().String()] = Location{cc, cc + "-S", name}
	}
	path := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.WriteCityDB(t, path, nets)
	for _, size := range []int{-1, 1, 3, 0} {
		db := openT(t, path, &Options{CacheSize: size})
		for pass := range 3 {
			for ip, w := range want {
				if got := db.Lookup(mustAddr(t, ip)); got != w {
					t.Fatalf("CacheSize %d pass %d: Lookup(%s) = %+v, want %+v", size, pass, ip, got, w)
				}
			}
		}
	}
}

func TestNilDB(t *testing.T) {
	var db *DB
	if got := db.Lookup(mustAddr(t, "81.2.69.142")); got != (Location{}) {
		t.Errorf("nil Lookup = %+v, want zero", got)
	}
	if changed, err := db.Reload(); changed || err != nil {
		t.Errorf("nil Reload() = %v, %v, want false, nil", changed, err)
	}
	if s := db.Stats(); s != (Stats{}) {
		t.Errorf("nil Stats() = %+v, want zero", s)
	}
	if err := db.Close(); err != nil {
		t.Errorf("nil Close() = %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	valid, err := geotest.Build(geotest.Options{}, map[string]mmdbtype.Map{"81.2.69.0/24": geotest.CountryRecord("GB")})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	asn := filepath.Join(dir, "asn.mmdb")
	geotest.Write(t, asn, geotest.Options{DatabaseType: "GeoLite2-ASN"}, map[string]mmdbtype.Map{
		"81.2.69.0/24": {"autonomous_system_number": mmdbtype.Uint32(20712)},
	})
	custom := filepath.Join(dir, "custom.mmdb")
	geotest.Write(t, custom, geotest.Options{DatabaseType: "Acme-Geo"}, map[string]mmdbtype.Map{
		"81.2.69.0/24": geotest.CountryRecord("GB"),
	})
	// A corrupt search tree: the metadata is intact, so only the verifier
	// notices.
	corrupt := append([]byte(nil), valid...)
	for i := range 64 {
		corrupt[i] = 0xff
	}

	tests := []struct {
		name string
		path string
		want error // nil: any error
		msg  string
	}{
		{"missing", filepath.Join(dir, "nope.mmdb"), os.ErrNotExist, "no such file"},
		{"empty", write("empty.mmdb", nil), ErrInvalidDB, "empty file"},
		{"garbage", write("garbage.mmdb", []byte("hello, not a database")), ErrInvalidDB, "invalid MaxMind DB"},
		{"truncated", write("trunc.mmdb", valid[:len(valid)/2]), ErrInvalidDB, "MaxMind"},
		{"directory", dir, ErrInvalidDB, "directory"},
		{"asn", asn, ErrNoCountry, `"GeoLite2-ASN"`},
		{"unknown type", custom, ErrNoCountry, `"Acme-Geo"`},
		{"corrupt tree", write("corrupt.mmdb", corrupt), ErrInvalidDB, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(tt.path, nil)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%s) = nil error, want %v", tt.name, tt.want)
			}
			t.Logf("Open: %v", err)
			if !errors.Is(err, tt.want) {
				t.Errorf("Open(%s) = %v, want errors.Is %v", tt.name, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Open(%s) error %q, want it to name %q and say %q", tt.name, err, tt.path, tt.msg)
			}
		})
	}
}

func TestOpenAcceptsKnownTypes(t *testing.T) {
	for _, typ := range []string{"GeoLite2-Country", "GeoIP2-Country", "GeoLite2-City", "GeoIP2-City", "GeoIP2-Enterprise", "DBIP-Country-Lite", "DBIP-City-Lite"} {
		path := filepath.Join(t.TempDir(), "db.mmdb")
		geotest.Write(t, path, geotest.Options{DatabaseType: typ}, map[string]mmdbtype.Map{
			"81.2.69.0/24": geotest.CityRecord(geotest.City{Country: "GB", Name: "London"}),
		})
		db := openT(t, path, nil)
		if got := db.Lookup(mustAddr(t, "81.2.69.1")); got.Country != "GB" {
			t.Errorf("type %s: Lookup = %+v, want GB", typ, got)
		}
		if got := db.Stats().DatabaseType; got != typ {
			t.Errorf("Stats().DatabaseType = %q, want %q", got, typ)
		}
	}
}

func TestStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	built := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	geotest.Write(t, path, geotest.Options{BuildTime: built}, map[string]mmdbtype.Map{
		"81.2.69.0/24": geotest.CountryRecord("GB"),
	})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db := openT(t, path, &Options{Now: func() time.Time { return now }})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	got := db.Stats()
	want := Stats{
		Path:         path,
		DatabaseType: geotest.CountryType,
		BuildTime:    built,
		LoadedAt:     now,
		Size:         fi.Size(),
	}
	if !got.BuildTime.Equal(want.BuildTime) {
		t.Errorf("Stats().BuildTime = %v, want %v", got.BuildTime, want.BuildTime)
	}
	got.BuildTime = want.BuildTime
	if got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestLookupDoesNotAllocateWhenCached(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.WriteCityDB(t, path, cityNets)
	db := openT(t, path, nil)
	for _, s := range []string{"81.2.69.142", "2001:218::5", "::ffff:5.9.200.1", "8.8.8.8"} {
		ip := mustAddr(t, s)
		db.Lookup(ip) // fill the cache
		if n := testing.AllocsPerRun(20, func() { db.Lookup(ip) }); n != 0 {
			t.Errorf("Lookup(%s) allocates %.1f times once cached, want 0", s, n)
		}
	}
}

func TestOpenVerify(t *testing.T) {
	nets := map[string]mmdbtype.Map{}
	for i := range 50 {
		nets[fmt.Sprintf("81.2.%d.0/24", i)] = geotest.CityRecord(geotest.City{Country: "GB", Name: fmt.Sprintf("Town %d", i)})
	}
	data, err := geotest.Build(geotest.Options{DatabaseType: geotest.CityType}, nets)
	if err != nil {
		t.Fatal(err)
	}
	// Damage the end of the data section, where the last records are; no
	// probe address falls in 81.2.0.0/16, so only the verifier notices.
	marker := bytes.LastIndex(data, []byte("\xAB\xCD\xEFMaxMind.com"))
	for i := marker - 40; i < marker; i++ {
		data[i] = 0xff
	}
	path := filepath.Join(t.TempDir(), "damaged.mmdb")
	if err := geotest.WriteFileAtomic(path, data); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open(damaged, no Verify) = %v, want the cheap checks to pass", err)
	}
	db.Close()
	if _, err := Open(path, &Options{Verify: true}); !errors.Is(err, ErrInvalidDB) {
		t.Fatalf("Open(damaged, Verify) = %v, want ErrInvalidDB", err)
	}
}
