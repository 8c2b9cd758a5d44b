// Package catalog holds the link catalog as immutable snapshots: links, their
// rules and their URL templates.
//
// # Snapshots
//
// Parse (or Load) builds a complete *Catalog or returns errors; there is no
// partial catalog. Nothing in a Catalog, Link, Rule or Template changes after
// Parse returns, so any number of goroutines may use one without locks, and
// the edge replaces the whole catalog by swapping an atomic.Pointer. A *Link
// or *Template taken from an old snapshot stays valid after the swap.
// A nil *Catalog is an empty one. (The catalog a Store serves compiles each
// link when it is first looked up, once, safe for concurrent callers; what
// it serves never changes, only when the work is done.)
//
// # Big catalogs
//
// A catalog of a million links must load in about a second and fit in a
// few hundred megabytes, so the layout is built for that:
//
//   - Links are stored by value in chunks of 4096, not one allocation each;
//     their strings (codes, templates, rule names) are copied into
//     pointer-free arenas (chunks growing to 256 KiB, so a parse of one
//     link holds a few KB), and links with the same params list share
//     one slice. The GC has little to scan, and the parse's garbage
//     does not pin the survivors' spans.
//   - Lookup is an open-addressing table of 16-byte slots holding the
//     code's length and first 11 bytes next to the link number: finding a
//     code reads one slot (one cache miss in a big catalog), and a miss
//     never touches a link. Codes longer than 11 bytes are compared in
//     full.
//   - Links are checked and compiled in parallel, on every CPU, in batches.
//   - A file whose first byte (after white space and a byte order mark) is
//     '{' is JSON, which is also YAML: it is read by a small hand-written
//     decoder that never builds a syntax tree, and the link objects are
//     handed to the workers as they are found. A YAML file goes through
//     goccy/go-yaml, which builds the whole document's AST first and takes
//     tens of microseconds per link: fine for the hundreds of links a
//     person writes, too slow for a million. A feed that writes big
//     catalogs should write JSON. Both decoders are strict in the same
//     way and build the same catalog from the same document (a fuzz test
//     holds them to it); errors in a JSON file carry line and column too.
//
// # Errors
//
// A bad file is refused with every problem at once (at most 20, sorted by
// position), each an *Error naming the file, the line and column, the link,
// the rule and the key:
//
//	links.yaml:7:15: link "tv-sale": rule "de-mobile": when: unknown name cuntry (1:1)
//
// Decoding is strict: an unknown key is an error. All of them wrap
// ErrInvalid; an unreadable file (Load) does not.
//
// # Routing
//
// (*Link).Route evaluates the link's rules in file order; the first whose
// `when` holds decides (a rule without `when` always matches, and rules after
// it are refused as unreachable). A split picks its branch from the caller's
// rnd: the same rnd always picks the same branch, and a uniform 64-bit rnd
// gives each branch weight/total of the traffic. With no match Route returns
// the link's URL and rule "". Route never returns a nil template and never
// looks at Paused: the caller checks Paused and uses Fallback.
//
// Expressions are checked and compiled when the catalog loads: unknown
// variables, non-bool results, cidr prefixes that do not parse and constant
// params keys the link does not record are refused. The common shapes
// (==, !=, <, <=, >, >=, in, &&, ||, !, ?:, contains, startsWith, endsWith,
// matches, cidr, params[...] over the variables and constants) run as Go
// closures and allocate nothing; anything else runs on a pooled expr VM,
// which allocates a little.
// Reading the `ip` variable as a string allocates; cidr does not. An
// expression that fails at run time (only possible on the VM) does not match.
// The client address is unmapped first, so an IPv4 client on a dual-stack
// listener matches cidr("10.0.0.0/8").
//
// # No open redirect
//
// Every URL in the file (url, fallback_url, rule url, split url) must be an
// absolute http or https URL whose scheme, host and port are literal: macros
// may only appear after the authority, userinfo is refused outright, and the
// host may only hold letters, digits, '.', '-', '_' or a bracketed IPv6
// address. Literal parts may not hold spaces, control characters (CR, LF),
// non-ASCII bytes, backslashes or other characters that browsers and servers
// read differently, and percent signs must start valid escapes.
// AppendURL escapes every macro value for where it stands (url.PathEscape in
// the path, url.QueryEscape in the query and the fragment), and neither
// escaping lets through '/', '?', '#', '\', CR, LF or any other control
// byte. A rendered Location therefore always starts with the template's
// literal scheme://host[:port], never contains CR or LF, and a value cannot
// add a path segment, start a query or fragment, or add a query parameter.
// A path value of ".." is kept as it is (escaping it would not stop a
// browser from resolving it), so it can move the request up the path of the
// same host, never off it.
//
// Parameter macros ({subid}, {subidN}, {param:NAME}) must name a parameter
// the link records, so every value that reaches a target is also in the
// click.//
// # The replicated store
//
// A Store (store.go) is the catalog as a replicated map from code to Entry,
// which the admin API, the links feed, catalog.file and the cluster all
// write through. Its rules:
//
//   - Every entry and tombstone carries a version: a hybrid logical clock
//     (uint64, ms since the epoch << 16 | a counter) and the writer's node
//     id. The higher (HLC, node) wins; for equal versions (only entries
//     seeded from different files with one modification time) the higher
//     link bytes win and a tombstone loses. So Merge is commutative,
//     associative and idempotent: replicas that saw the same entries, in
//     any order, any number of times, hold the same map (a property test,
//     TestMergeConverges, holds it to that).
//   - This node's clock issues max(wall ms << 16, last issued or seen + 1),
//     so its writes are newer than anything it has seen.
//   - A delete is a tombstone, kept at least Options.TombstoneTTL (30
//     days), then dropped at a compaction.
//   - Nothing is applied that fails validation (the same checks as a
//     catalog file); Apply (the API's batches) is all or nothing, Merge
//     refuses the bad entries and takes the rest.
//   - Digest is the lane-wise sum mod 2^64 of SHA-256(code, HLC, node) over
//     every entry, tombstones included: equal sets give equal digests
//     whatever the order they were built in, and a change updates it in
//     O(1), so peers can compare it as often as they gossip. (A hash over
//     the sorted pairs would say the same but cost a sort of a million
//     codes per change.)
//   - Entries pages through every entry in bytewise code order for
//     anti-entropy; Merge takes such pages.
//   - Changes are persisted (appended to a log and fsynced) before Apply,
//     Merge or Seed return; see disk.go for the files. Appends are one at
//     a time, so a crash or a power loss can tear only the last: Open cuts
//     whatever it left and refuses a bad record with a valid one after it. The served *Catalog
//     is replaced atomically: small changes are laid over the base (an
//     overlay map that Lookup reads first); once the overlay passes 1/8 of
//     the catalog (at least 1024 changes) the store compacts and serves
//     the new base.
//
// # Big stores
//
// Ten million links must open in seconds and a few GB, so the store does
// not decode its snapshot (base.go). The entries as of the last
// compaction stay in the snapshot's bytes as read; an array holds where
// each entry starts, in code order (a snapshot is written sorted, and one
// that is not is refused as damaged), and the index of a parsed catalog
// maps a code to its entry. Only the changes since are a map. Get reads
// the map, then the index; Entries merges the map's sorted codes into a
// binary search and walk of the array.
//
// The served catalog reads the same base and compiles a link from its
// JSON the first time Lookup is asked for it: checked as any change is,
// built by one builder under a mutex (so the links share its arenas) and
// published through an atomic.Pointer per entry, which later lookups read
// without a lock. What is compiled stays compiled, across compactions
// too for entries that did not change. A stored link that fails to
// compile (a bug: each was checked on its way in) is logged and not
// served. A compaction builds the new snapshot in memory, writes it and
// makes it the base, so for a moment it holds two snapshots' bytes.
//
// # catalog.file and the other writers
//
// Seed loads catalog.file as entries written by "file", versioned by the
// file's modification time, so every node seeded from one file holds equal
// versions. Precedence is the merge rule: the newest write wins, whether
// it came from the file, the API, the feed or a peer. A change made after
// the file was last written stays until the file is written again and
// loaded; a seed never overrides a newer version. Only a reload that drops
// a code the previous load of the same file had makes a tombstone (at the
// file's version, so it loses to a newer API write); a start or a reload
// removes nothing learned elsewhere. A file with no links where the
// previous load had some is refused unless forced.
package catalog
