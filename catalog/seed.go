package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/goccy/go-yaml"
)

// SeedResult says what a Seed did.
type SeedResult struct {
	Links   int // links in the file
	Applied int // entries the store took (newer than what it had)
	Stale   int // entries the store already had at a higher version
	Deleted int // tombstones made for links the previous load of the file had
}

// Seed loads a catalog file into the store (catalog.file). The whole file
// is checked first (Parse's errors; nothing changes on a bad file). Each
// link becomes an entry written by FileWriter whose version is the file's
// modification time as the clock, with a hash of the link as the counter,
// so nodes seeded from one file hold equal versions and a change made
// after the file was written (API, feed) is not overridden. A code that
// name's previous load had and this one lacks becomes a tombstone (with
// the same kind of version), so a reload deletes what was removed from the
// file, and nothing learned elsewhere. A file with no links when the
// previous load had some is refused with ErrEmptySeed unless force.
func (s *Store) Seed(name string, data []byte, mtime time.Time, force bool) (SeedResult, error) {
	c, err := Parse(name, data)
	if err != nil {
		s.counts[SourceFile][Invalid].Add(1)
		return SeedResult{}, err
	}
	specs, err := decodeSpecs(data)
	if err != nil {
		return SeedResult{}, fmt.Errorf("catalog: %s: %w", name, err)
	}
	clock := uint64(mtime.UnixMilli()) << 16
	es := make([]Entry, 0, len(specs))
	codes := make(map[string]struct{}, len(specs))
	for i := range specs {
		canon, err := json.Marshal(&specs[i])
		if err != nil {
			return SeedResult{}, fmt.Errorf("catalog: %s: encode link %q: %w", name, specs[i].Code, err)
		}
		codes[specs[i].Code] = struct{}{}
		es = append(es, Entry{Code: specs[i].Code, HLC: clock | uint64(crc32.ChecksumIEEE(canon)&0xfffe), Node: FileWriter, Link: canon})
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return SeedResult{}, ErrClosed
	}
	res := SeedResult{Links: len(specs)}
	prev := s.seeds[name]
	if len(specs) == 0 && len(prev) > 0 && !force {
		return res, ErrEmptySeed
	}
	for code := range prev {
		if _, kept := codes[code]; !kept {
			// The counter's top value: above every link the file seeds.
			es = append(es, Entry{Code: code, HLC: clock | 0xffff, Node: FileWriter, Deleted: true})
		}
	}
	var newer []Entry
	changes := make(map[string]*Link)
	for i := range es {
		e := &es[i]
		if old, ok := s.get(e.Code); ok && compareVersions(e.HLC, e.Node, e.Link, old.hlc, old.node, old.link) <= 0 {
			res.Stale++
			continue
		}
		if e.Deleted {
			if _, ok := s.get(e.Code); !ok {
				continue // nothing to delete; no need for a tombstone
			}
			res.Deleted++
			changes[e.Code] = nil
		} else {
			res.Applied++
			changes[e.Code] = c.Lookup(e.Code)
		}
		newer = append(newer, *e)
	}
	if len(newer) > 0 {
		if err := s.commit(newer, changes); err != nil {
			return SeedResult{}, err
		}
	}
	if s.disk != nil {
		if err := s.disk.appendSeed(name, codes); err != nil {
			return SeedResult{}, err
		}
	}
	s.seeds[name] = codes
	s.counts[SourceFile][Applied].Add(uint64(len(newer)))
	s.counts[SourceFile][Stale].Add(uint64(res.Stale))
	if s.opts.OnChange != nil && len(newer) > 0 {
		s.opts.OnChange(newer, SourceFile)
	}
	return res, nil
}

// decodeSpecs reads a catalog file (that Parse accepted) into specs.
func decodeSpecs(data []byte) ([]LinkSpec, error) {
	var doc struct {
		Links []LinkSpec `json:"links" yaml:"links"`
	}
	if isJSON(data) {
		d := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(data, []byte(bom))))
		if err := d.Decode(&doc); err != nil {
			return nil, err
		}
	} else if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	return doc.Links, nil
}

// ParseSpecs checks a catalog file as Parse does and returns its links in
// the form the store and the feed carry, in file order (links push, links
// export).
func ParseSpecs(name string, data []byte) ([]LinkSpec, error) {
	if _, err := Parse(name, data); err != nil {
		return nil, err
	}
	specs, err := decodeSpecs(data)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", name, err)
	}
	return specs, nil
}
