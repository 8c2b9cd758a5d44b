package main

import (
	"errors"
	"fmt"
	"github.com/clickedge/clickedge/catalog"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/clickedge/clickedge/edge/geo"
)

// fileCheck validates one file (or directory) a configuration names,
// without binding a port or taking a lock a running node holds: `serve
// -check` runs beside the node it is about to restart. It returns nil when
// the key is unset or fine, else an error that names the key.
type fileCheck struct {
	key   string
	check func(cfg *Config) error
}

// fileChecks are what `serve -check` runs after LoadConfig has validated
// every key (and read admin.token_file). A feature that adds a key naming
// a file (cluster.keyring_file, postback.advertisers) appends its check
// here from an init in its own file, so -check covers it with no edit to
// this one.
var fileChecks = []fileCheck{
	{"catalog.file", checkCatalogFile},
	{"geoip.database", checkGeoIPFile},
	{"data_dir", checkDataDir},
}

// checkConfig is `serve -check`: cfg has loaded; now every file it names.
// It prints one line per problem (each naming the key and the file) and a
// summary, and returns the exit code.
func checkConfig(cfg *Config, stdout, stderr io.Writer) int {
	source := cfg.Path()
	if source == "" {
		source = "(embedded defaults)"
	}
	var errs []error
	for _, fc := range fileChecks {
		if err := fc.check(cfg); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", source, fc.key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		printError(stderr, "clickedge serve -check: ", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok: node %s, region %s\n", source, cfg.Node.ID, cfg.Node.Region)
	return 0
}

func checkCatalogFile(cfg *Config) error {
	p := cfg.CatalogPath()
	if p == "" {
		return nil // the embedded demo catalog seeds the store
	}
	_, err := catalog.Load(p) // compiles every rule, as serve would
	return err
}

func checkGeoIPFile(cfg *Config) error {
	p := cfg.GeoIPPath()
	if p == "" {
		return nil
	}
	db, err := geo.Open(p, nil) // no polling: nothing is left running
	if err != nil {
		return err
	}
	return db.Close()
}

// checkDataDir accepts a writable directory, or a path that does not
// exist yet under a directory (serve creates it). It does not open the
// outbox: a running node holds its lock.
func checkDataDir(cfg *Config) error {
	dir := cfg.DataDir
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case err == nil:
		if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
			return fmt.Errorf("%s is not writable: %w", dir, err)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	// Missing: the nearest existing ancestor must be a directory.
	for p := filepath.Dir(filepath.Clean(dir)); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s cannot be created: %s is not a directory", dir, p)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
