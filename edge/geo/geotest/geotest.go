// Package geotest writes small MaxMind DB files for tests of geo and of the packages that use it.
package geotest

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Database types written by WriteCountryDB and WriteCityDB. geo accepts both.
const (
	CountryType = "GeoLite2-Country"
	CityType    = "GeoLite2-City"
)

// City is what a City database says about one network.
type City struct {
	// Country is the ISO 3166-1 alpha-2 code, e.g. "DE". Empty writes no country.
	Country string
	// Subdivision is the ISO 3166-2 code as geo reports it ("DE-BY") or only
	// its subdivision part ("BY"); the file stores the part after the dash, as
	// MaxMind does. Empty writes no subdivisions.
	Subdivision string
	// Name is the English city name. Empty writes no city.
	Name string
}

// Options describe the file Write produces.
type Options struct {
	// DatabaseType is the metadata database_type. Zero: CountryType.
	DatabaseType string
	// IPVersion is 4 or 6. Zero: 6 (an IPv6 tree with the IPv4 space aliased
	// under ::ffff:0:0/96, as MaxMind ships it).
	IPVersion int
	// RecordSize is 24, 28 or 32 bits. Zero: 28.
	RecordSize int
	// BuildTime is the metadata build_epoch. Zero: 2024-01-02T03:04:05Z, so
	// files are reproducible.
	BuildTime time.Time
}

// WriteCountryDB writes a GeoLite2-Country style database at path, mapping
// each CIDR in networks to an ISO country code. The file is replaced
// atomically (written beside path, then renamed), the way geoipupdate does.
func WriteCountryDB(tb testing.TB, path string, networks map[string]string) {
	tb.Helper()
	records := make(map[string]mmdbtype.Map, len(networks))
	for cidr, iso := range networks {
		records[cidr] = CountryRecord(iso)
	}
	Write(tb, path, Options{DatabaseType: CountryType}, records)
}

// WriteCityDB writes a GeoLite2-City style database at path, mapping each
// CIDR in networks to a City. The file is replaced atomically.
func WriteCityDB(tb testing.TB, path string, networks map[string]City) {
	tb.Helper()
	records := make(map[string]mmdbtype.Map, len(networks))
	for cidr, c := range networks {
		records[cidr] = CityRecord(c)
	}
	Write(tb, path, Options{DatabaseType: CityType}, records)
}

// Write writes a database with any layout: networks maps CIDRs to
// top-level records (see CountryRecord and CityRecord). The file is replaced
// atomically. Reserved networks (private, documentation ranges) may be used.
func Write(tb testing.TB, path string, opts Options, networks map[string]mmdbtype.Map) {
	tb.Helper()
	data, err := Build(opts, networks)
	if err != nil {
		tb.Fatalf("geotest: %v", err)
	}
	if err := WriteFileAtomic(path, data); err != nil {
		tb.Fatalf("geotest: %v", err)
	}
}

// Build returns the bytes of a database; Write is Build plus WriteFileAtomic.
func Build(opts Options, networks map[string]mmdbtype.Map) ([]byte, error) {
	if opts.DatabaseType == "" {
		opts.DatabaseType = CountryType
	}
	if opts.BuildTime.IsZero() {
		opts.BuildTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            opts.DatabaseType,
		Description:             map[string]string{"en": "clickedge test database"},
		Languages:               []string{"en", "de", "ru"},
		IPVersion:               opts.IPVersion,
		RecordSize:              opts.RecordSize,
		BuildEpoch:              opts.BuildTime.Unix(),
		IncludeReservedNetworks: true,
	})
	if err != nil {
		return nil, fmt.Errorf("new tree: %w", err)
	}
	for cidr, rec := range networks {
		_, network, err := net.ParseCIDR(cidr)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", cidr, err)
		}
		if err := tree.Insert(network, rec); err != nil {
			return nil, fmt.Errorf("insert %q: %w", cidr, err)
		}
	}
	var b bytes.Buffer
	if _, err := tree.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("write tree: %w", err)
	}
	return b.Bytes(), nil
}

// WriteFileAtomic writes data to a temporary file beside path and renames it
// over path, so a reader never sees a half-written file and the new file has
// a new inode.
func WriteFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".geotest-*.mmdb")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// CountryRecord returns the record a GeoLite2-Country database holds for a
// network in country iso: continent, country and registered_country with
// localized names, like the real files (so decoding skips realistic data).
func CountryRecord(iso string) mmdbtype.Map {
	rec := mmdbtype.Map{
		"continent": mmdbtype.Map{
			"code":       mmdbtype.String("EU"),
			"geoname_id": mmdbtype.Uint32(6255148),
			"names":      names("Europe"),
		},
	}
	if iso != "" {
		rec["country"] = countryMap(iso)
		rec["registered_country"] = countryMap(iso)
	}
	return rec
}

// CityRecord returns the record a GeoLite2-City database holds for a network:
// CountryRecord plus city, location, postal and subdivisions.
func CityRecord(c City) mmdbtype.Map {
	rec := CountryRecord(c.Country)
	rec["location"] = mmdbtype.Map{
		"accuracy_radius": mmdbtype.Uint16(20),
		"latitude":        mmdbtype.Float64(48.1374),
		"longitude":       mmdbtype.Float64(11.5755),
		"time_zone":       mmdbtype.String("Europe/Berlin"),
	}
	if c.Name != "" {
		rec["city"] = mmdbtype.Map{
			"geoname_id": mmdbtype.Uint32(id(c.Name)),
			"names":      names(c.Name),
		}
		rec["postal"] = mmdbtype.Map{"code": mmdbtype.String("80331")}
	}
	if c.Subdivision != "" {
		sub := strings.TrimPrefix(c.Subdivision, c.Country+"-")
		rec["subdivisions"] = mmdbtype.Slice{
			mmdbtype.Map{
				"geoname_id": mmdbtype.Uint32(id(c.Country + sub)),
				"iso_code":   mmdbtype.String(sub),
				"names":      names("Subdivision " + sub),
			},
			// A second, smaller subdivision, as MaxMind has for some
			// countries: geo must report the first one.
			mmdbtype.Map{
				"geoname_id": mmdbtype.Uint32(id(c.Country + sub + "2")),
				"iso_code":   mmdbtype.String("ZZ"),
				"names":      names("Inner " + sub),
			},
		}
	}
	return rec
}

func countryMap(iso string) mmdbtype.Map {
	return mmdbtype.Map{
		"geoname_id":           mmdbtype.Uint32(id(iso)),
		"is_in_european_union": mmdbtype.Bool(true),
		"iso_code":             mmdbtype.String(iso),
		"names":                names("Country " + iso),
	}
}

func names(en string) mmdbtype.Map {
	return mmdbtype.Map{
		"de":    mmdbtype.String(en + " (de)"),
		"en":    mmdbtype.String(en),
		"es":    mmdbtype.String(en + " (es)"),
		"fr":    mmdbtype.String(en + " (fr)"),
		"ja":    mmdbtype.String(en + " (ja)"),
		"pt-BR": mmdbtype.String(en + " (pt)"),
		"ru":    mmdbtype.String(en + " (ru)"),
		"zh-CN": mmdbtype.String(en + " (zh)"),
	}
}

func id(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32() & 0x7fffffff
}
