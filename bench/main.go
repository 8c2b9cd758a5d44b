// Command bench load-tests clickedge side by side with a bare net/http
// redirect and a publish-and-confirm-per-click server, and writes JSON, a
// Markdown table and charts to docs/bench/.
//
// It is a module of its own (bench/go.mod, with a replace directive to the
// checkout around it), so its load and plotting libraries stay out of
// clickedge's go.mod. Run it from the repository root:
//
//	go -C bench run . -quick       # about a minute: a smoke test of the tool
//	go -C bench run .              # the full run
//	go -C bench run . report       # redraw results.md and the charts from results.json
//
// or as `go run .` inside bench/. The servers under test are separate
// processes: clickedge itself (built from the root's ./cmd/clickedge), and this binary's own "bare" and "direct"
// subcommands. The link-cache measurement runs in a child process too, so
// that its memory figures are its own. See docs/performance.md for what the
// scenarios are and how to read the results.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand; with none (or only flags) it is "run".
func run(args []string, stdout, stderr io.Writer) int {
	name := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	switch name {
	case "run":
		return cmdRun(args, stdout, stderr)
	case "report":
		return cmdReport(args, stdout, stderr)
	case "bare":
		return cmdBare(args, stderr)
	case "direct":
		return cmdDirect(args, stderr)
	case "ceiling":
		return cmdCeiling(args, stdout, stderr)
	case "load":
		return cmdLoad(args, stdout, stderr)
	case "postback":
		return cmdPostback(args, stdout, stderr)
	case "gencatalog":
		return cmdGenCatalog(args, stdout, stderr)
	case "linkcache":
		return cmdLinkCache(args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "bench: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: go -C bench run . [command] [flags]   (from the repository root)

commands:
  run        run the benchmarks and write docs/bench/ (the default)
  report     redraw results.md and the charts from a results.json
  bare       serve the bare net/http 302 baseline (used by run)
  direct     serve the publish-and-confirm-per-click server (used by run)
  ceiling    publish to the broker as fast as it confirms (used by run's drain phase)
  load       drive load at a running server: -addr, -workers or -rate, -d
  postback   signed postbacks/s at sync durability beside the redirect path (docs/performance.md)
  gencatalog write a generated catalog of -n links to stdout
  linkcache  load a catalog file and measure it (used by run)

Run 'go -C bench run . run -h' for the flags.
`)
}
