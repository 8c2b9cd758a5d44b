// Package e2e is clickedge's black-box reliability suite: it runs the built
// binary against a private RabbitMQ node through a fault proxy, kills and
// cuts things off, and checks that no answered click is lost.
//
// The tests are behind the build tag e2e, so `go test ./...` does not run
// them; `make e2e` does:
//
//	go test -tags e2e -count=1 -timeout 25m -v ./e2e/
//
// They talk to the edge only through its outward contract (docs: the design
// brief and docs/reliability.md): GET /r/{code}, /postback (signed as an
// advertiser would, from the contract), the admin /metrics, the clicks and
// actions exchanges, the process's exit code and stderr, and its data
// directory as a file. Nothing here imports the edge's packages.
//
// Environment (read by the tests only):
//
//   - E2E_BIN: the clickedge binary; default: built from ./cmd/clickedge.
//   - E2E_CYCLES: kill -9 cycles of scenario 1 (default 40; 1000 for the
//     long run); scenario 1b runs half of them, at least 10.
//   - E2E_WRITE_PATH: outbox.write_path of every edge but scenario 1b's
//     (tree or log; default: the edge's, log). Scenario 1b runs the kill -9
//     cycles on the other path, so both are crashed in every run; the
//     stage names in the report say which path each ran.
//   - E2E_RATE: clicks per second the load driver offers (default 1000).
//   - E2E_BLACKHOLE: how long the partition lasts (default 60s).
//   - E2E_SEED: seed of the random kill moments (default: the clock; logged).
//   - E2E_REPORT: where the JSON results go (default
//     $TMPDIR/clickedge-e2e-report.json).
//   - E2E_LOGDIR: keep the edge's logs there (default: the test's temp dir,
//     removed afterwards; the tail is printed on failure).
package e2e
