package main

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// The bench is a module of its own (bench/go.mod), so that its load and
// plotting libraries are not dependencies of clickedge's go.mod. It still
// measures the working tree around it: clickedge is built from the
// repository root, and the default output goes to the root's docs/bench,
// whether it runs as `go -C bench run .` from the root or `go run .` in
// bench/.

// productModule is the module whose root the bench looks for.
const productModule = "github.com/clickedge/clickedge"

// repoRoot returns the nearest directory at or above the working directory
// whose go.mod declares productModule.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if moduleOf(filepath.Join(dir, "go.mod")) == productModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside a clickedge checkout (no go.mod of " + productModule + " at or above the working directory)")
		}
		dir = parent
	}
}

// moduleOf returns the module path a go.mod declares, or "".
func moduleOf(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// inRepo resolves a relative path against the repository root; an absolute
// path, or a relative one outside a checkout, is returned as it is.
func inRepo(path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	root, err := repoRoot()
	if err != nil {
		return path
	}
	return filepath.Join(root, path)
}
