package geo

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// file is one loaded version of the database. It is immutable once loaded,
// except for its cache, which is safe for concurrent use.
type file struct {
	reader   *maxminddb.Reader
	ipv4Only bool
	dbType   string
	built    time.Time
	loadedAt time.Time
	info     fileInfo
	cache    *locationCache
}

// fileInfo identifies a version of the file on disk.
type fileInfo struct {
	fi   os.FileInfo // for os.SameFile: device and inode
	size int64
	mod  time.Time
}

func newFileInfo(fi os.FileInfo) fileInfo {
	return fileInfo{fi: fi, size: fi.Size(), mod: fi.ModTime()}
}

// same reports whether fi describes the same, unmodified file.
func (a fileInfo) same(fi os.FileInfo) bool {
	return a.fi != nil && fi != nil &&
		os.SameFile(a.fi, fi) && a.size == fi.Size() && a.mod.Equal(fi.ModTime())
}

var errChanging = errors.New("file changed while it was read; replace it atomically (write a new file and rename it over the old one)")

// loadFile reads, checks and opens the database at path.
func loadFile(path string, opts *Options) (*file, error) {
	fail := func(err error) (*file, error) {
		return nil, fmt.Errorf("geo: load %q: %w", path, err)
	}
	fh, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer fh.Close()
	before, err := fh.Stat()
	if err != nil {
		return fail(err)
	}
	if before.IsDir() {
		return fail(fmt.Errorf("%w: is a directory", ErrInvalidDB))
	}
	var buf bytes.Buffer
	buf.Grow(int(before.Size()) + bytes.MinRead)
	if _, err := buf.ReadFrom(fh); err != nil {
		return fail(err)
	}
	after, err := fh.Stat()
	if err != nil {
		return fail(err)
	}
	info := newFileInfo(before)
	if !info.same(after) || int64(buf.Len()) != after.Size() {
		return fail(errChanging)
	}
	f, err := openBytes(buf.Bytes(), opts)
	if err != nil {
		return fail(err)
	}
	f.info = info
	return f, nil
}

// openBytes checks data and returns a file serving it. data is retained.
func openBytes(data []byte, opts *Options) (*file, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrInvalidDB)
	}
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDB, err)
	}
	if err := checkType(data, r.Metadata.DatabaseType); err != nil {
		return nil, err
	}
	if err := probe(r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDB, err)
	}
	if opts.Verify {
		if err := r.Verify(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidDB, err)
		}
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	cacheSize := opts.CacheSize
	if cacheSize == 0 {
		cacheSize = defaultCacheSize
	}
	return &file{
		reader:   r,
		ipv4Only: r.Metadata.IPVersion == 4,
		dbType:   r.Metadata.DatabaseType,
		built:    r.Metadata.BuildTime(),
		loadedAt: now(),
		cache:    newLocationCache(cacheSize),
	}, nil
}

// checkType refuses database types without country data. geoip2 keeps the
// list of MaxMind and DB-IP types and which of them carry a country, so geo
// asks it rather than keep a copy: a type geoip2 refuses to answer Country
// for is refused here.
func checkType(data []byte, dbType string) error {
	g, err := geoip2.OpenBytes(data)
	if errors.As(err, new(geoip2.UnknownDatabaseTypeError)) {
		return fmt.Errorf("%w: %q is not a Country, City or Enterprise type", ErrNoCountry, dbType)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidDB, err)
	}
	if _, err := g.Country(netip.IPv4Unspecified()); errors.As(err, new(geoip2.InvalidMethodError)) {
		return fmt.Errorf("%w: %q", ErrNoCountry, dbType)
	}
	return nil
}

// probeAddrs are spread over the IPv4 space and the allocated IPv6 space.
var probeAddrs = func() []netip.Addr {
	var addrs []netip.Addr
	for i := 1; i < 224; i += 3 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{byte(i), byte(i * 7), byte(i * 13), 1}))
	}
	for _, p := range []uint16{0x2001, 0x2400, 0x2600, 0x2800, 0x2a00, 0x2a02, 0x2c0f} {
		addrs = append(addrs, netip.AddrFrom16([16]byte{byte(p >> 8), byte(p), 0x12, 0x34, 15: 1}))
	}
	return addrs
}()

// probe looks up and decodes a sample of addresses, a cheap check that
// catches most damage to the search tree or the data section without the
// cost of Verify (seconds and hundreds of MB for a City database).
func probe(r *maxminddb.Reader) error {
	for _, ip := range probeAddrs {
		if r.Metadata.IPVersion == 4 && ip.Is6() {
			continue
		}
		var rec record
		if err := r.Lookup(ip).Decode(&rec); err != nil {
			return fmt.Errorf("record for %s: %w", ip, err)
		}
	}
	return nil
}

// lookup returns the location of ip, or an error when its record is corrupt.
func (f *file) lookup(ip netip.Addr) (Location, error) {
	ip = ip.Unmap()
	if !ip.IsValid() || (f.ipv4Only && !ip.Is4()) {
		return Location{}, nil
	}
	res := f.reader.Lookup(ip)
	if err := res.Err(); err != nil {
		return Location{}, err
	}
	if !res.Found() {
		return Location{}, nil
	}
	off := res.Offset()
	if loc, ok := f.cache.get(off); ok {
		return loc, nil
	}
	var rec record
	if err := res.Decode(&rec); err != nil {
		return Location{}, err
	}
	loc := rec.location()
	f.cache.put(off, loc)
	return loc, nil
}

func (r *record) location() Location {
	cc := r.country
	if cc == "" {
		cc = r.registered
	}
	loc := Location{Country: internCountry(cc), City: r.city}
	if loc.Country != "" && r.sub != "" {
		loc.Subdivision = loc.Country + "-" + r.sub
	}
	return loc
}

// countryCodes holds every pair of capital letters, "AAABAC...ZZ", so that
// cached Locations share one copy of each country code instead of holding
// one string per decoded record.
var countryCodes = func() string {
	b := make([]byte, 0, 26*26*2)
	for i := byte('A'); i <= 'Z'; i++ {
		for j := byte('A'); j <= 'Z'; j++ {
			b = append(b, i, j)
		}
	}
	return string(b)
}()

func internCountry(cc string) string {
	if len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' {
		return cc
	}
	i := (int(cc[0]-'A')*26 + int(cc[1]-'A')) * 2
	return countryCodes[i : i+2]
}
