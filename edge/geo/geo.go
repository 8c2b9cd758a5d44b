package geo

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Open and Reload, wrapped with the operation and file.
var (
	// ErrInvalidDB is returned when a file is not a readable MaxMind DB:
	// empty, truncated, not an mmdb at all, or failing the verifier.
	ErrInvalidDB = errors.New("not a valid MaxMind DB file")
	// ErrNoCountry is returned when a file is a valid MaxMind DB whose
	// database type carries no country (ASN, ISP, Domain, Anonymous IP,
	// Connection Type) or is a type geo does not know.
	ErrNoCountry = errors.New("database type carries no country")
	// ErrClosed is returned by Reload after Close.
	ErrClosed = errors.New("database is closed")
)

// Location is where an address is, as far as the database knows. Every field
// is "" when unknown or when the database type does not carry it (a Country
// database has no Subdivision or City).
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code, e.g. "DE". When a network has
	// no located country, the registered country is used.
	Country string
	// Subdivision is the ISO 3166-2 code of the largest subdivision, country
	// and subdivision joined by a dash, e.g. "DE-BY".
	Subdivision string
	// City is the English city name, e.g. "Munich".
	City string
}

// Options configure a DB. A nil *Options means all defaults.
type Options struct {
	// PollInterval is how often a background goroutine checks the file and
	// reloads it when it changed. Zero (or negative): no polling; the owner
	// calls Reload (on SIGHUP, from the admin API).
	PollInterval time.Duration

	// Verify runs the library's full verifier on each file before it
	// serves. Zero (false): only the cheap checks: a MaxMind DB with valid
	// metadata, a database type with countries, and a sample of lookups
	// that decode. Verifying walks every node and record: 1-2 s and 300 MB
	// of short-lived allocations for a 10 MB City file, proportionally more
	// for GeoLite2-City (60 MB). A lookup into a damaged part of an
	// unverified file returns the zero Location and counts in
	// Stats.LookupErrors.
	Verify bool

	// CacheSize is the number of decoded locations kept per loaded file,
	// rounded up to a power of two. Zero: 8192 (64 KiB of slots, plus the
	// entries). Negative: no cache, every lookup decodes its record.
	CacheSize int

	// Logger receives loads and refused reloads. Nil: discard.
	Logger *slog.Logger

	// Now is the clock for Stats.LoadedAt and Stats.LastErrorAt. Nil: time.Now.
	Now func() time.Time
}

// DB answers Lookups from the last good version of one MaxMind DB file.
// All methods are safe for concurrent use, and all accept a nil *DB, which
// stands for "no database configured".
type DB struct {
	path string
	opts Options // defaults applied

	cur          atomic.Pointer[file]
	lookupErrors atomic.Uint64

	mu        sync.Mutex // serializes Reload and Close; guards the fields below
	closed    bool
	reloads   uint64
	reloadErr uint64
	lastErr   error
	lastErrAt time.Time
	// The last refused file and the last stat error, so that an unchanged
	// bad file is not read, refused, counted and logged again on every poll.
	failInfo    fileInfo
	failErr     error
	failStat    string
	failStatErr error

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Open loads the MaxMind DB at path and returns a DB serving it. It refuses a
// file that is not a valid MaxMind DB (ErrInvalidDB) or whose type carries no
// country (ErrNoCountry), with an error naming the file. With
// opts.PollInterval > 0 it starts a goroutine that reloads the file when it
// changes, until Close.
func Open(path string, opts *Options) (*DB, error) {
	db := &DB{path: path, stop: make(chan struct{})}
	if opts != nil {
		db.opts = *opts
	}
	if db.opts.Logger == nil {
		db.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if db.opts.Now == nil {
		db.opts.Now = time.Now
	}
	f, err := loadFile(path, &db.opts)
	if err != nil {
		return nil, err
	}
	db.cur.Store(f)
	db.logLoaded("geo: database loaded", f)
	if db.opts.PollInterval > 0 {
		db.wg.Add(1)
		go func() {
			defer db.wg.Done()
			db.poll(db.opts.PollInterval)
		}()
	}
	return db, nil
}

// Lookup returns the location of ip. An IPv4-mapped IPv6 address is looked up
// as IPv4. It returns the zero Location when db is nil or closed, when ip is
// invalid or not in the database, and when the record cannot be decoded (which
// is counted in Stats.LookupErrors).
func (db *DB) Lookup(ip netip.Addr) Location {
	if db == nil {
		return Location{}
	}
	f := db.cur.Load()
	if f == nil {
		return Location{}
	}
	loc, err := f.lookup(ip)
	if err != nil {
		db.lookupErrors.Add(1)
	}
	return loc
}

// Close stops the polling goroutine and releases the loaded file; later
// Lookups return the zero Location. It is safe to call more than once and
// always returns nil.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	db.closeOnce.Do(func() {
		close(db.stop)
		db.wg.Wait()
		db.mu.Lock()
		db.closed = true
		db.cur.Store(nil)
		db.mu.Unlock()
	})
	return nil
}

// Stats is a snapshot of a DB's state, for metrics and the admin API.
type Stats struct {
	Path         string    // the file as given to Open
	DatabaseType string    // metadata database_type of the serving file, e.g. "GeoLite2-City"
	BuildTime    time.Time // metadata build_epoch of the serving file
	LoadedAt     time.Time // when the serving file was loaded
	Size         int64     // size in bytes of the serving file
	Reloads      uint64    // files swapped in after the first
	ReloadErrors uint64    // files (or stat failures) refused by Reload, each counted once
	LastError    string    // the most recent refusal, "" if none; compare LastErrorAt with LoadedAt
	LastErrorAt  time.Time // when LastError happened
	LookupErrors uint64    // Lookups that found a record they could not decode
}

// Stats returns a snapshot of db's state. For a nil or closed DB only the
// counters (and Path) are set.
func (db *DB) Stats() Stats {
	if db == nil {
		return Stats{}
	}
	db.mu.Lock()
	s := Stats{
		Path:         db.path,
		Reloads:      db.reloads,
		ReloadErrors: db.reloadErr,
		LastErrorAt:  db.lastErrAt,
		LookupErrors: db.lookupErrors.Load(),
	}
	if db.lastErr != nil {
		s.LastError = db.lastErr.Error()
	}
	db.mu.Unlock()
	if f := db.cur.Load(); f != nil {
		s.DatabaseType = f.dbType
		s.BuildTime = f.built
		s.LoadedAt = f.loadedAt
		s.Size = f.info.size
	}
	return s
}

func (db *DB) logLoaded(msg string, f *file) {
	db.opts.Logger.Info(msg,
		"path", db.path,
		"type", f.dbType,
		"build", f.built.UTC().Format(time.RFC3339),
		"bytes", f.info.size)
}
