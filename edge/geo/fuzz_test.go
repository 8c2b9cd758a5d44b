package geo

import (
	"net/netip"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/geoip2-golang/v2"

	"github.com/clickedge/clickedge/edge/geo/geotest"
)

func fuzzSeedDBs(f testing.TB) [][]byte {
	f.Helper()
	var out [][]byte
	for _, opts := range []geotest.Options{
		{DatabaseType: geotest.CityType},
		{DatabaseType: geotest.CountryType, IPVersion: 4, RecordSize: 24},
		{DatabaseType: geotest.CityType, RecordSize: 32},
	} {
		nets := map[string]mmdbtype.Map{}
		for cidr, c := range cityNets {
			if opts.IPVersion == 4 && netip.MustParsePrefix(cidr).Addr().Is6() {
				continue
			}
			nets[cidr] = geotest.CityRecord(c)
		}
		data, err := geotest.Build(opts, nets)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

var fuzzIPs = []netip.Addr{
	netip.MustParseAddr("81.2.69.142"),
	netip.MustParseAddr("5.9.0.1"),
	netip.MustParseAddr("2001:218::1"),
	netip.MustParseAddr("::ffff:89.160.20.1"),
	netip.MustParseAddr("::"),
	netip.MustParseAddr("255.255.255.255"),
}

// FuzzOpenBytes feeds damaged files to the loader and, when one is accepted
// (with or without the verifier), looks addresses up in it: neither may
// panic, hang, or return more than the decoder's bounds allow.
func FuzzOpenBytes(f *testing.F) {
	for _, data := range fuzzSeedDBs(f) {
		f.Add(data, false)
		f.Add(data, true)
	}
	f.Add([]byte("\xAB\xCD\xEFMaxMind.com"), true)
	f.Fuzz(func(t *testing.T, data []byte, verify bool) {
		file, err := openBytes(data, &Options{Verify: verify})
		if err != nil {
			return
		}
		for _, ip := range fuzzIPs {
			loc, _ := file.lookup(ip)
			if len(loc.Country) > maxISOLen || len(loc.City) > maxNameLen {
				t.Fatalf("lookup(%s) = %+v: longer than the decoder allows", ip, loc)
			}
		}
	})
}

// FuzzLookup compares Lookup with the geoip2 City model for any address.
func FuzzLookup(f *testing.F) {
	data := fuzzSeedDBs(f)[0]
	file, err := openBytes(data, &Options{})
	if err != nil {
		f.Fatal(err)
	}
	ref, err := geoip2.OpenBytes(data)
	if err != nil {
		f.Fatal(err)
	}
	for _, ip := range fuzzIPs {
		b := ip.AsSlice()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, _ := netip.AddrFromSlice(b)
		got, err := file.lookup(ip)
		if err != nil {
			t.Fatalf("lookup(%s): %v", ip, err)
		}
		if !ip.IsValid() {
			if got != (Location{}) {
				t.Fatalf("lookup(invalid) = %+v", got)
			}
			return
		}
		c, err := ref.City(ip.Unmap())
		if err != nil {
			t.Fatalf("geoip2 City(%s): %v", ip, err)
		}
		want := Location{Country: c.Country.ISOCode, City: c.City.Names.English}
		if want.Country == "" {
			want.Country = c.RegisteredCountry.ISOCode
		}
		if len(c.Subdivisions) > 0 {
			want.Subdivision = want.Country + "-" + c.Subdivisions[0].ISOCode
		}
		if got != want {
			t.Fatalf("lookup(%s) = %+v, geoip2 says %+v", ip, got, want)
		}
	})
}
