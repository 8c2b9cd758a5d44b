package geo

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/geoip2-golang/v2"

	"github.com/clickedge/clickedge/edge/geo/geotest"
)

// benchDB is a synthetic database shaped like the real ones: many networks
// (IPv4 /24s and IPv6 /48s spread over the address space), few distinct
// records per country, a few thousand distinct cities.
type benchDB struct {
	data []byte
	ips  []netip.Addr // addresses inside the networks, in random order
}

const benchNetworks = 20000

var benchDBs = sync.OnceValue(func() map[string]benchDB {
	out := map[string]benchDB{}
	for _, typ := range []string{geotest.CountryType, geotest.CityType} {
		rng := rand.New(rand.NewPCG(1, 2))
		nets := make(map[string]mmdbtype.Map, benchNetworks)
		var ips []netip.Addr
		for i := range benchNetworks {
			cc := string([]byte{'A' + byte(i%20), 'A' + byte(i/20%10)}) // 200 countries
			var rec mmdbtype.Map
			if typ == geotest.CityType {
				rec = geotest.CityRecord(geotest.City{Country: cc, Subdivision: "S", Name: fmt.Sprintf("City %d", i%5000)})
			} else {
				rec = geotest.CountryRecord(cc)
			}
			var ip netip.Addr
			var cidr string
			if i%4 == 3 {
				var a [16]byte
				a[0], a[1] = 0x2a, 0x02
				for j := 2; j < 6; j++ {
					a[j] = byte(rng.UintN(256))
				}
				ip = netip.AddrFrom16(a)
				cidr = ip.String() + "/48"
				a[15] = 7
				ip = netip.AddrFrom16(a)
			} else {
				ip = netip.AddrFrom4([4]byte{byte(1 + rng.UintN(222)), byte(rng.UintN(256)), byte(rng.UintN(256)), 0})
				cidr = ip.String() + "/24"
				ip = ip.Next()
			}
			nets[cidr] = rec
			ips = append(ips, ip)
		}
		data, err := geotest.Build(geotest.Options{DatabaseType: typ}, nets)
		if err != nil {
			panic(err)
		}
		rng.Shuffle(len(ips), func(i, j int) { ips[i], ips[j] = ips[j], ips[i] })
		out[typ] = benchDB{data: data, ips: ips}
	}
	return out
})

func benchFile(b *testing.B, typ string, opts *Options) (*DB, []netip.Addr) {
	b.Helper()
	bd := benchDBs()[typ]
	f, err := openBytes(bd.data, opts)
	if err != nil {
		b.Fatal(err)
	}
	db := &DB{}
	db.cur.Store(f)
	return db, bd.ips
}

// BenchmarkLookup measures Lookup over addresses spread across the whole
// database. "hot" cycles over 1024 addresses (the cache holds them: the
// steady state for a Country database, and for a City database under
// traffic with locality); "cold" disables the cache, so every lookup decodes
// its record.
func BenchmarkLookup(b *testing.B) {
	for _, typ := range []string{geotest.CountryType, geotest.CityType} {
		for _, mode := range []string{"hot", "cold"} {
			b.Run(typ+"/"+mode, func(b *testing.B) {
				opts := &Options{}
				if mode == "cold" {
					opts.CacheSize = -1
				}
				db, ips := benchFile(b, typ, opts)
				ips = ips[:1024]
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					loc := db.Lookup(ips[i&1023])
					if loc.Country == "" {
						b.Fatalf("Lookup(%s) found nothing", ips[i&1023])
					}
					i++
				}
			})
		}
	}
	b.Run("unknown", func(b *testing.B) {
		db, _ := benchFile(b, geotest.CityType, &Options{})
		ip := netip.MustParseAddr("240.0.0.1")
		b.ReportAllocs()
		for b.Loop() {
			if loc := db.Lookup(ip); loc.Country != "" {
				b.Fatal(loc)
			}
		}
	})
	b.Run("nil", func(b *testing.B) {
		var db *DB
		ip := netip.MustParseAddr("81.2.69.142")
		b.ReportAllocs()
		for b.Loop() {
			db.Lookup(ip)
		}
	})
}

func BenchmarkLookupParallel(b *testing.B) {
	db, ips := benchFile(b, geotest.CityType, &Options{})
	ips = ips[:1024]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(1024)
		for pb.Next() {
			db.Lookup(ips[i&1023])
			i++
		}
	})
}

// BenchmarkGeoIP2 is the baseline: the library's full model, as
// geoip2.Reader.Country and City decode it.
func BenchmarkGeoIP2(b *testing.B) {
	for _, typ := range []string{geotest.CountryType, geotest.CityType} {
		b.Run(typ, func(b *testing.B) {
			bd := benchDBs()[typ]
			r, err := geoip2.OpenBytes(bd.data)
			if err != nil {
				b.Fatal(err)
			}
			ips := bd.ips[:1024]
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if typ == geotest.CityType {
					_, err = r.City(ips[i&1023])
				} else {
					_, err = r.Country(ips[i&1023])
				}
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkOpenBytes is the cost of loading a file (what a reload costs, off
// the hot path), with and without the verifier.
func BenchmarkOpenBytes(b *testing.B) {
	for _, typ := range []string{geotest.CountryType, geotest.CityType} {
		for _, verify := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/verify=%v", typ, verify), func(b *testing.B) {
				data := benchDBs()[typ].data
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := openBytes(data, &Options{Verify: verify}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
