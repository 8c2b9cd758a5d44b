// Package geo maps client IP addresses to country, subdivision and city from a MaxMind DB file that it reloads when the file changes.
//
// # Invariants
//
//   - Lookup never blocks, never fails and is safe for concurrent use,
//     including with Reload and Close. A nil *DB, an unknown or invalid
//     address, and a closed DB all give the zero Location.
//   - The file is read into memory, never memory-mapped. A Lookup that races a
//     reload keeps using the reader it loaded, whose bytes stay valid until the
//     garbage collector sees that no Lookup holds them: the GC is the
//     reference count. So nothing an operator does to the file on disk
//     (rewriting it in place, truncating it, deleting it) can make a Lookup
//     read unmapped or changing memory. The price is the file's size in heap
//     (about 9 MB for GeoLite2-Country, 60 MB for GeoLite2-City), twice for
//     the moment of a reload; the bytes hold no pointers, so the GC does not
//     scan them.
//   - A file is accepted only if it is a MaxMind DB with valid metadata,
//     whose database type carries country data (the GeoIP2/GeoLite2 and
//     DB-IP Country, City and Enterprise types), and whose records for a
//     sample of addresses decode; with Options.Verify the library's full
//     verifier must pass too. A refused file never replaces the serving one.
//   - Reloads are serialized. A file is identified by its inode, size and
//     modification time; replace it atomically (write a new file, rename it
//     over the old one, as geoipupdate does) so that each version is seen
//     whole. A file caught while it is being written is refused or skipped and
//     picked up once it stops changing.
//
// # Lookup cost
//
// A lookup walks the search tree (no allocation) and then finds the decoded
// Location in a small per-file cache keyed by the record's offset, so repeated
// records (every lookup in a Country database once warm; the hot cities in a
// City database) cost no allocation. A cache miss decodes only the fields
// geo reports, straight from the file bytes, and allocates the strings.
package geo
