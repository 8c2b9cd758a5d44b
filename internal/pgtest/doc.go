// Package pgtest gives tests a private PostgreSQL cluster that they may
// stop, crash and restart: never the system's server on 5432.
//
// A cluster is a fresh data directory under the temp directory, served by
// the postgres binary of the newest /usr/lib/postgresql/*/bin (or
// CLICKEDGE_TEST_PG_BIN) on 127.0.0.1 and a free port, with its unix socket
// inside its own directory, trust authentication for the user postgres and
// no other listener.
//
// Invariants:
//
//   - Without PostgreSQL installed, Start fails the test (never skips it);
//     scripts/ensure-postgres.sh, which `make test` runs, installs it.
//   - As root the server runs as the postgres user (PostgreSQL refuses to
//     run as root); the directories it writes are handed to that user.
//   - initdb runs once per test binary; every cluster starts from a copy
//     of that template, so a cluster costs a copy and a server start.
//   - The postmaster is a child of the test binary (not daemonized by
//     pg_ctl) with a parent-death signal, so it cannot outlive the test
//     binary; t.Cleanup stops it and removes its directory, and the next
//     test binary removes directories left by dead ones.
//   - Crash stops the server as a crash of PostgreSQL would (immediate
//     shutdown, no checkpoint, WAL recovery at the next start): committed
//     transactions survive it. The tests crash the server, never the
//     kernel, so fsync is off unless Options.Durable (for benchmarks).
//   - Start gives a test its own cluster; SharedDatabase a fresh database
//     on one cluster shared by the test binary, for tests that neither
//     stop nor crash it. Main (from TestMain) stops the shared cluster and
//     removes initdb's template; without it the next test binary's sweep
//     removes them (about 40 MB each).
package pgtest
